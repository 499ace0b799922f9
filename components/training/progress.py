"""Where training progress goes by default: the ``shopdistill.training`` logger.

Components log through the logging module and stay free of Prefect. Prefect shows these lines in a
run's logs because the entry points list ``shopdistill`` in ``PREFECT_LOGGING_EXTRA_LOGGERS``
(``flows/environment.py``); benchmarks and tests pass ``log=print`` or a list's ``append``.
"""

from __future__ import annotations

import logging

LOGGER = logging.getLogger("shopdistill.training")


def progress(message: str) -> None:
    """One line of training progress (an epoch, a resume, a budget reached)."""
    LOGGER.info(message)
