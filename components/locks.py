"""Inter-process locks on stored outputs (``filelock``): one writer per target, the others wait.

Two runs on one data folder (a nightly and a manual run, two clones sharing
``$SHOPDISTILL_DATA_DIR``, a benchmark beside the flow) reach the same content-addressed targets.
Atomic publishing already keeps every target whole; the lock also keeps two processes from training
into one checkpoint folder at once. The waiting process then finds the finished, verified output and
reuses it. Lock files are hidden siblings of their target (``.<name>.lock``) and hold no data; the
lock is the operating system's (``flock``), so a killed holder releases it and never blocks a rerun.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

log = logging.getLogger("shopdistill.locks")

# A waiting run gives up after this long (a beauty ensemble trains for about 80 minutes on 2 cores);
# $SHOPDISTILL_LOCK_TIMEOUT_S overrides it.
DEFAULT_TIMEOUT_S = 6 * 3600


class LockTimeoutError(RuntimeError):
    """Another process held a target's lock for longer than the timeout."""


def lock_path(target: str | Path) -> Path:
    target = Path(target)
    return target.parent / f".{target.name}.lock"


@contextlib.contextmanager
def exclusive(target: str | Path, what: str, timeout: float | None = None) -> Iterator[None]:
    """Hold the lock of ``target`` (a file or folder, present or not) for the block.

    Raises:
        LockTimeoutError: another process kept it for more than ``timeout`` seconds.
    """
    path = lock_path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info("waiting for another process that writes %s (%s)", what, target)
        wait = (
            float(os.environ.get("SHOPDISTILL_LOCK_TIMEOUT_S", DEFAULT_TIMEOUT_S))
            if timeout is None
            else timeout
        )
        try:
            lock.acquire(timeout=wait)
        except Timeout:
            raise LockTimeoutError(
                f"another process has been writing {what} ({target}) for more than {wait:g} s"
            ) from None
    try:
        yield
    finally:
        lock.release()
