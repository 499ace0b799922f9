"""SIGTERM during a local run: the run stops, registers nothing, and leaves no process behind (the
temporary Prefect server it started included)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.tiny import TINY_PIPELINE

pytestmark = [pytest.mark.faults, pytest.mark.slow]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sigterm_mid_training_stops_the_run_and_its_temporary_server(tmp_path: Path):
    env = {
        **os.environ,
        "SHOPDISTILL_DATA_DIR": str(tmp_path / "data"),
        "PREFECT_HOME": str(tmp_path / "prefect"),
    }
    env.pop("PREFECT_API_URL", None)  # a local run: the CLI starts its own temporary server
    sets = [arg for item in TINY_PIPELINE for arg in ("--set", item)]
    # enough epochs that the signal lands inside teacher training
    argv = [sys.executable, "-m", "shopdistill.flows.cli", "run", "--profile", "demo", *sets]
    argv += ["--set", "teacher.train.epochs=200", "--set", "teacher.train.patience=200"]
    log = tmp_path / "run.log"
    with log.open("w") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while "[teacher] epoch" not in log.read_text():
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, "training did not start in time"
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=90)
        deadline = time.monotonic() + 30
        while _group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _group_alive(proc.pid), (
            "a process of the run (the temporary Prefect server?) is still running"
        )
    finally:
        if _group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
    text = log.read_text()
    assert rc != 0, text[-3000:]
    assert "Stopping temporary server" in text
    assert not (tmp_path / "data" / "mlruns").exists()  # nothing was registered
