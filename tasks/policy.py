"""The retry policy shared by the tasks, and why no task uses Prefect's result cache.

* Retries only for transient failures (I/O hiccups, a locked SQLite registry); deterministic failures
  (bad config, data that fails validation, a diverging loss, a full disk) fail at once.
* No result cache. Every expensive stage already reuses its own stored output, found by content under
  this run's data root and verified before use (``components/stores.py``): a finished teacher or
  student is recognised from its checkpoint, a soft-label cache by its manifest and checksums. A
  Prefect cache hit would skip that verification and could hand out a path from another data root or
  a file damaged since; it would save only the seconds the verification takes. So every task runs on
  every night, and publishes its artifacts each time, saying "reused" where it reused.
"""

from __future__ import annotations

import errno

RETRY_DELAYS = [2, 10, 30]
_DETERMINISTIC_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, _DETERMINISTIC_OS_ERRORS):
        return False
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
        return False  # a full disk or a read-only store stays so for the seconds a retry waits
    if isinstance(exc, (OSError, TimeoutError, ConnectionError)):
        return True
    text = str(exc).lower()
    return "database is locked" in text or "temporarily unavailable" in text


def retry_transient(task, task_run, state) -> bool:
    """``retry_condition_fn``: retry only when the failure looks transient."""
    try:
        state.result()
    except BaseException as exc:  # noqa: BLE001 - we only classify it
        return is_transient(exc)
    return False
