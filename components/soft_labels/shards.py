"""Soft labels in user shards: the teacher's pass split into parts that can run in parallel.

The training users (in id order) are cut into ``shards`` contiguous ranges. Each part is written on
its own, in any process, as ``part-<i>-of-<n>.parquet`` beside a record of what it holds (teacher
and dataset digests, settings, rows, sha256); :func:`finish_parts` then writes the teacher's item
embeddings and one manifest listing every part (rows and sha256 each). Concatenated in order, the
parts hold the rows of the single-file cache (``writer.py``); the logits agree within the stored
dtype (the teacher sees its batches in other groupings). ``SoftLabelReader`` reads both layouts.

A part whose record matches and whose checksum holds is reused; a missing or damaged part is
written again alone. The manifest goes last, and is removed before any part is rewritten, so a
reader never sees a cache with a part missing.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch
from torch import nn

from shopdistill.components.artifacts import Handle, atomic_file, sha256_file, sha256_json, write_json_atomic
from shopdistill.components.locks import exclusive
from shopdistill.components.sequences import SequenceData
from shopdistill.components.soft_labels.format import (
    ITEMS_FILE,
    KIND,
    MANIFEST,
    SCHEMA_VERSION,
    SoftLabelCacheError,
    schema,
    verify_soft_labels,
)
from shopdistill.components.soft_labels.writer import write_items, write_rows


def part_name(index: int, shards: int) -> str:
    return f"part-{index:05d}-of-{shards:05d}.parquet"


def shard_users(users: np.ndarray, index: int, shards: int) -> np.ndarray:
    """The ``index``-th of ``shards`` contiguous ranges of ``users`` (sizes differ by at most one)."""
    bounds = np.linspace(0, len(users), shards + 1).round().astype(int)
    return users[bounds[index] : bounds[index + 1]]


def _settings(key: dict[str, Any], index: int, shards: int) -> dict[str, Any]:
    return {**key, "index": index, "shards": shards}


def _reusable_part(path: Path, settings: dict[str, Any]) -> dict[str, Any] | None:
    record_path = path.with_suffix(".json")
    if not path.is_file() or not record_path.is_file():
        return None
    try:
        record = json.loads(record_path.read_text())
    except ValueError:
        return None
    same = all(record.get(k) == v for k, v in settings.items())
    intact = record.get("bytes") == path.stat().st_size and record.get("sha256") == sha256_file(path)
    return record if same and intact else None


@torch.no_grad()
def write_part(
    teacher: nn.Module,
    data: SequenceData,
    target: str | Path,
    index: int,
    shards: int,
    key: dict[str, Any],
    *,
    users_per_group: int = 2048,
    batch_size: int = 256,
) -> tuple[dict[str, Any], bool]:
    """Write (or reuse) part ``index`` of ``shards`` in ``target``; returns (its record, reused).

    ``key``: teacher_digest, dataset_digest, max_len, top_k, logits_dtype, cache_hidden."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    name, settings = part_name(index, shards), _settings(key, index, shards)
    path = target / name
    with exclusive(path, what=f"soft-label part {name}"):
        record = _reusable_part(path, settings)
        if record is not None:
            return record, True
        (target / MANIFEST).unlink(missing_ok=True)  # the cache is incomplete until finish_parts
        teacher.eval()
        users = shard_users(data.train_users(), index, shards)
        t0, began = time.perf_counter(), time.time()
        with atomic_file(path) as tmp:
            args = (key["max_len"], key["top_k"], key["logits_dtype"], key["cache_hidden"])
            rows, hidden_dim = write_rows(teacher, data, users, tmp, *args, users_per_group, batch_size)
            if rows == 0:  # a shard without training positions: an empty part of the same schema
                width = getattr(teacher, "d_model", None) if key["cache_hidden"] else None
                pq.write_table(schema(key["top_k"], key["logits_dtype"], width).empty_table(), tmp)
        record = {
            **settings,
            "file": name,
            "rows": rows,
            "users": int(len(users)),
            "hidden_dim": hidden_dim,
            "row_groups": pq.ParquetFile(path).num_row_groups,
            "sha256": sha256_file(path),
            "bytes": path.stat().st_size,
            "seconds": round(time.perf_counter() - t0, 3),
            "written": {"from": began, "to": time.time()},
        }
        write_json_atomic(path.with_suffix(".json"), record)
    return record, False


def finish_parts(
    teacher: nn.Module, target: str | Path, records: list[dict[str, Any]], key: dict[str, Any]
) -> tuple[Handle, dict[str, Any], bool]:
    """One manifest over the parts (checked again here) and the teacher's item embeddings; reuses an
    intact manifest over the same parts. Returns (handle, manifest, reused)."""
    target = Path(target)
    records = sorted(records, key=lambda r: r["index"])
    shards = len(records)
    if [r["index"] for r in records] != list(range(shards)) or any(r["shards"] != shards for r in records):
        raise SoftLabelCacheError(f"{target}: expected parts 0..{shards - 1} of {shards}, got {records}")
    digest = sha256_json([r["sha256"] for r in records])
    with exclusive(target, what="the soft-label cache"):
        try:
            manifest = verify_soft_labels(target)
            if manifest.get("digest") == digest:
                return Handle(str(target), digest, KIND, {"top_k": key["top_k"]}), manifest, True
        except SoftLabelCacheError:
            pass
        for r in records:
            if _reusable_part(target / r["file"], _settings(key, r["index"], shards)) is None:
                raise SoftLabelCacheError(f"{target}: {r['file']} changed after it was written; run again")
        files = {r["file"]: {"sha256": r["sha256"], "bytes": r["bytes"]} for r in records}
        files[ITEMS_FILE] = write_items(target, teacher)
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "kind": KIND,
            **{k: key[k] for k in ("teacher_digest", "dataset_digest", "top_k", "logits_dtype", "max_len")},
            "logits": "raw (temperature-independent)",
            "hidden_dim": next((r["hidden_dim"] for r in records if r["hidden_dim"]), None),
            "rows": sum(r["rows"] for r in records),
            "users": sum(r["users"] for r in records),
            "parts": [r["file"] for r in records],
            "row_groups": sum(r["row_groups"] for r in records),
            "files": files,
            "seconds": round(sum(r["seconds"] for r in records), 3),
            "digest": digest,
        }
        write_json_atomic(target / MANIFEST, manifest)
    return Handle(str(target), digest, KIND, {"top_k": key["top_k"]}), manifest, False
