"""Retry and cache policies shared by the tasks.

* Retries only for transient failures (I/O hiccups, a locked SQLite registry); deterministic failures
  (bad config, data that fails validation, a diverging loss) fail at once.
* Cache keys: the task name, the content digests of input handles, the hash of config inputs, and the
  code version of ``components/`` (Prefect's TASK_SOURCE policy would only see the thin task body).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from shopdistill.components.artifacts import Handle, code_version, sha256_json

RETRY_DELAYS = [2, 10, 30]
_DETERMINISTIC_OS_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError)


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, _DETERMINISTIC_OS_ERRORS):
        return False
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


def _key_part(value: Any) -> Any:
    if isinstance(value, Handle):
        return {"kind": value.kind, "sha256": value.sha256}
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {k: _key_part(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_key_part(v) for v in value]
    return value


def content_cache_key(context, parameters: dict[str, Any]) -> str:
    """``cache_key_fn``: digests of inputs + config + code version of ``components/``."""
    name = context.task.name if context is not None else ""
    return sha256_json({"task": name, "code": code_version(), "inputs": _key_part(parameters)})
