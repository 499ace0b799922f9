"""Handles, content digests, atomic writes and the code version.

A :class:`Handle` is what crosses task boundaries: a path plus the sha256 of its content, never the
payload itself. Directories are published with :func:`atomic_directory`: they are written under a
temporary name beside the target and renamed into place only when complete, so a crash or a bad input
never leaves a folder that a later stage could mistake for valid.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Handle:
    """A small, picklable pointer to a stage output: location + content digest + kind."""

    uri: str
    sha256: str
    kind: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return Path(self.uri)


def sha256_file(path: str | Path) -> str:
    """sha256 of a file's bytes, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sha256_dir(path: str | Path, exclude: tuple[str, ...] = ()) -> str:
    """sha256 over every file of a directory: relative paths and contents, in sorted order."""
    root = Path(path)
    h = hashlib.sha256()
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = file.relative_to(root).as_posix()
        if rel in exclude:
            continue
        h.update(rel.encode())
        h.update(b"\0")
        h.update(sha256_file(file).encode())
    return h.hexdigest()


def sha256_json(obj: Any) -> str:
    """sha256 of a JSON-serialisable object in canonical form (sorted keys, no whitespace)."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def tree_digest(obj: Any) -> str:
    """sha256 of a nested structure of dicts, lists, tensors, arrays and plain values, by content
    (a tensor by dtype, shape and bytes), independent of how it is serialised."""
    h = hashlib.sha256()

    def feed(x: Any) -> None:
        if isinstance(x, dict):
            h.update(b"{")
            for key in sorted(x, key=str):
                h.update(str(key).encode() + b":")
                feed(x[key])
            h.update(b"}")
        elif isinstance(x, (list, tuple)):
            h.update(b"[")
            for item in x:
                feed(item)
            h.update(b"]")
        elif hasattr(x, "detach"):  # a torch tensor: its raw bytes, whatever the dtype
            import torch

            t = x.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif hasattr(x, "tobytes"):  # a numpy array or scalar
            h.update(f"A{x.dtype}{getattr(x, 'shape', ())}".encode() + x.tobytes())
        else:
            h.update(repr(x).encode())

    feed(obj)
    return h.hexdigest()


@contextlib.contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; it replaces ``path`` when the block succeeds.

    The temporary name is unique per call, so processes that write the same file at once (two
    benchmarks reusing one stored teacher, say) never clobber each other's half-written file: each
    ``os.replace`` publishes a complete one. On an exception ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write JSON to ``path`` via a temporary file and ``os.replace``."""
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write UTF-8 text to ``path`` via a temporary file and ``os.replace``."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


@contextlib.contextmanager
def atomic_directory(target: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary directory that is renamed to ``target`` when the block succeeds.

    On any exception the temporary directory is removed and ``target`` is untouched. With
    ``overwrite=False`` an existing ``target`` raises :class:`FileExistsError` before anything is
    written. With ``overwrite=True`` the old directory is swapped out only after the new one is
    complete.
    """
    target = Path(target)
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} already exists")
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned(target)
    tmp = target.with_name(f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.partial")
    tmp.mkdir()
    try:
        yield tmp
        if target.exists():
            trash = target.with_name(f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.old")
            os.replace(target, trash)
            os.replace(tmp, target)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def remove_abandoned(target: Path) -> list[Path]:
    """Delete the temporary siblings of ``target`` (``.<name>.<pid>-<id>.partial`` / ``.old``) whose
    writing process is gone (killed mid-write); a live writer's are left alone. Returns what it removed."""
    removed = []
    for tmp in target.parent.glob(f".{target.name}.*-*"):
        if tmp.suffix not in (".partial", ".old"):
            continue
        pid = tmp.name[len(target.name) + 2 :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)
            removed.append(tmp)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def verify_manifest(
    path: str | Path,
    *,
    what: str,
    schema_version: int,
    error: type[Exception],
    manifest: str = "manifest.json",
) -> dict[str, Any]:
    """Load ``path/manifest`` and check every file it lists (presence, size, sha256).

    Raises ``error`` naming the folder and the first problem: no manifest, bad JSON, another schema
    version, a missing file, or a file whose size or checksum differs (a partial or corrupt write).
    """
    path = Path(path)
    manifest_path = path / manifest
    if not manifest_path.is_file():
        raise error(f"{path} is not a {what}: {manifest} is missing")
    try:
        content = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise error(f"{manifest_path} is not valid JSON: {exc}") from None
    if content.get("schema_version") != schema_version:
        raise error(
            f"{path}: schema version {content.get('schema_version')} != {schema_version}; build it again"
        )
    for name, meta in content["files"].items():
        file = path / name
        if not file.is_file():
            raise error(f"{path}: {name} listed in the manifest is missing")
        if file.stat().st_size != meta["bytes"] or sha256_file(file) != meta["sha256"]:
            raise error(f"{path}: {name} does not match its size/sha256 in the manifest")
    return content


@functools.cache
def code_version(package_dir: str | Path | None = None) -> str:
    """sha256 over the source of ``components/`` (the product's library code, computed once per
    process): the explicit code version in cache keys and registry tags.

    Prefect's TASK_SOURCE policy hashes only a task's own source; the behaviour lives here.
    """
    root = Path(package_dir) if package_dir else Path(__file__).resolve().parent
    h = hashlib.sha256()
    for file in sorted(root.rglob("*.py")):
        h.update(file.relative_to(root).as_posix().encode())
        h.update(b"\0")
        h.update(file.read_bytes())
    return h.hexdigest()
