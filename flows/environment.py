"""The process environment every shopdistill entry point starts with: quiet and offline-safe.

No telemetry from Prefect, MLflow or anything honouring ``DO_NOT_TRACK``, and more than Prefect's
default 20 s for its temporary server to start on a busy 2-core machine. Applied before prefect or
mlflow is imported (the CLI's ``main``, the flow's ``__main__``, the test suite); a value already set
in the environment wins. The deployments in ``deployments/prefect.yaml`` pass the same variables to
their workers.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

QUIET_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    # the components' loggers (training progress per epoch) appear in each run's Prefect logs
    "PREFECT_LOGGING_EXTRA_LOGGERS": "shopdistill",
}


def show_progress() -> None:
    """Let the components' INFO lines (training epochs) through: Prefect gives the ``shopdistill``
    logger its handlers (``PREFECT_LOGGING_EXTRA_LOGGERS``) but not a level, and the root's is WARNING."""
    logger = logging.getLogger("shopdistill")
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)


def apply_quiet_defaults() -> None:
    """Set every variable of :data:`QUIET_DEFAULTS` that the environment does not set already."""
    for key, value in QUIET_DEFAULTS.items():
        os.environ.setdefault(key, value)


def exit_on_terminate() -> None:
    """Treat SIGTERM (``kill``, a stopped container or service) like Ctrl-C's clean exit.

    Python's default for SIGTERM ends the process at once, without ``atexit``: the temporary Prefect
    server a local run starts would be left running. Raising ``SystemExit`` instead fails the run
    (nothing is registered by a run that did not finish) and lets Prefect stop its server. Only from
    the main thread, and only where no other handler is installed.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None):
        return

    def _exit(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)
