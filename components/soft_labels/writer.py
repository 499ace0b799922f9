"""Write the teacher's soft labels: run it over every training position, keep its top-K (``format.py``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import nn

from shopdistill.components import stores
from shopdistill.components.artifacts import (
    Handle,
    atomic_directory,
    atomic_file,
    sha256_file,
    write_json_atomic,
)
from shopdistill.components.locks import exclusive
from shopdistill.components.sequences import SequenceData, length_bucketed
from shopdistill.components.soft_labels.format import (
    DATA_FILE,
    ITEMS_FILE,
    KIND,
    MANIFEST,
    SCHEMA_VERSION,
    SoftLabelCacheError,
    fixed_list,
    schema,
    verify_soft_labels,
)


def teacher_item_embeddings(teacher: nn.Module) -> np.ndarray:
    """(I, D) float32: row c is item c + 1 as the teacher scores it. An ensemble's members side by
    side (its hidden state is its members' side by side too)."""
    members = list(getattr(teacher, "members", None) or [teacher])
    return torch.cat([m.output_weight().detach().float() for m in members], dim=1).numpy()


def write_items(folder: Path, teacher: nn.Module) -> dict[str, Any]:
    path = folder / ITEMS_FILE
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        np.save(f, teacher_item_embeddings(teacher))
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


@torch.no_grad()
def cache_soft_labels(
    teacher: nn.Module,
    data: SequenceData,
    root: str | Path,
    *,
    teacher_digest: str,
    dataset_digest: str,
    max_len: int,
    top_k: int = 100,
    logits_dtype: str = "float16",
    cache_hidden: bool = False,
    users_per_group: int = 2048,
    batch_size: int = 256,
) -> tuple[Handle, dict[str, Any], bool]:
    """Run the teacher over every training position and write its top-K; reuse a valid cache.

    Returns ``(handle, manifest, reused)``. The handle's digest is the soft labels' own; the teacher's
    item embeddings are stored beside them.
    """
    if top_k > data.n_items:
        raise ValueError(f"top_k={top_k} exceeds the catalogue size {data.n_items}")
    target = stores.soft_labels_dir(
        Path(root), teacher_digest, dataset_digest, top_k, logits_dtype, cache_hidden
    )
    with exclusive(target, what="the soft-label cache"):  # a second run waits, then reuses it
        manifest = _reusable(target, teacher_digest, dataset_digest)
        if manifest is not None:
            return Handle(str(target), manifest["digest"], KIND, {"top_k": top_k}), manifest, True
        t0 = time.perf_counter()
        teacher.eval()
        users = data.train_users()
        with atomic_directory(target, overwrite=True) as tmp:
            rows, hidden_dim = write_rows(
                teacher,
                data,
                users,
                tmp / DATA_FILE,
                max_len,
                top_k,
                logits_dtype,
                cache_hidden,
                users_per_group,
                batch_size,
            )
            manifest = {
                "schema_version": SCHEMA_VERSION,
                "kind": KIND,
                "teacher_digest": teacher_digest,
                "dataset_digest": dataset_digest,
                "top_k": top_k,
                "logits": "raw (temperature-independent)",
                "logits_dtype": logits_dtype,
                "hidden_dim": hidden_dim,
                "max_len": max_len,
                "rows": rows,
                "users": int(len(users)),
                **_files(tmp, teacher),
                "seconds": round(time.perf_counter() - t0, 3),
            }
            manifest["digest"] = manifest["files"][DATA_FILE]["sha256"]
            write_json_atomic(tmp / MANIFEST, manifest)
    return Handle(str(target), manifest["digest"], KIND, {"top_k": top_k}), manifest, False


def _reusable(target: Path, teacher_digest: str, dataset_digest: str) -> dict[str, Any] | None:
    """The manifest of an intact cache at ``target`` built from this teacher and dataset, else None."""
    try:
        manifest = verify_soft_labels(target)
    except SoftLabelCacheError:
        return None
    same = manifest["teacher_digest"] == teacher_digest and manifest["dataset_digest"] == dataset_digest
    return manifest if same else None


def _files(folder: Path, teacher: nn.Module) -> dict[str, Any]:
    """The Parquet file's row groups and checksum, and the teacher's item embeddings written beside it."""
    file = folder / DATA_FILE
    return {
        "row_groups": pq.ParquetFile(file).num_row_groups,
        "files": {
            DATA_FILE: {"sha256": sha256_file(file), "bytes": file.stat().st_size},
            ITEMS_FILE: write_items(folder, teacher),
        },
    }


def write_rows(
    teacher: nn.Module,
    data: SequenceData,
    users: np.ndarray,
    file: Path,
    max_len: int,
    top_k: int,
    logits_dtype: str,
    cache_hidden: bool,
    users_per_group: int,
    batch_size: int,
) -> tuple[int, int | None]:
    """Write one row group per block of ``users_per_group`` users; returns (rows, hidden width)."""
    writer, rows, hidden_dim = None, 0, None
    try:
        for g in range(0, len(users), users_per_group):
            cols = _teacher_rows(
                teacher,
                data,
                users[g : g + users_per_group],
                max_len,
                top_k,
                batch_size,
                logits_dtype,
                cache_hidden,
            )
            hidden_dim = cols["hidden"].shape[1] if "hidden" in cols else None
            table = _table(cols, top_k, logits_dtype, hidden_dim)
            if writer is None:
                writer = pq.ParquetWriter(
                    file, table.schema, compression="zstd", use_dictionary=["user_id", "pos", "target"]
                )
            writer.write_table(table, row_group_size=len(table))  # one row group per user block
            rows += len(table)
    finally:
        if writer is not None:
            writer.close()
    return rows, hidden_dim


def _teacher_rows(
    teacher: nn.Module,
    data: SequenceData,
    group: np.ndarray,
    max_len: int,
    top_k: int,
    batch_size: int,
    logits_dtype: str,
    cache_hidden: bool,
) -> dict[str, np.ndarray]:
    """The teacher's top-K at every training position of ``group``, sorted by (user, position)."""
    np_dtype = np.float16 if logits_dtype == "float16" else np.float32
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("user", "pos", "target", "ids", "logits", "hidden")}
    for chunk in length_bucketed(group, data.train_positions(max_len)[group], batch_size, None):
        chunk = np.sort(chunk)
        batch = data.train_batch(chunk, max_len)
        h = teacher(batch.inputs).hidden[batch.mask]  # (N, d), rows in (user, position) order
        logits, cols_idx = torch.topk(teacher.scores(h), top_k, dim=1)  # (N, K)
        cols["user"].append(torch.from_numpy(chunk)[:, None].expand_as(batch.mask)[batch.mask].numpy())
        cols["pos"].append(batch.positions[batch.mask].numpy())
        cols["target"].append(batch.targets[batch.mask].numpy())
        cols["ids"].append((cols_idx + 1).numpy())  # columns -> item ids
        cols["logits"].append(logits.numpy().astype(np_dtype))
        if cache_hidden:
            cols["hidden"].append(h.numpy().astype(np.float16))
    cat = {k: np.concatenate(v) for k, v in cols.items() if v}
    order = np.lexsort((cat["pos"], cat["user"]))
    return {k: v[order] for k, v in cat.items()}


def _table(cols: dict[str, np.ndarray], top_k: int, logits_dtype: str, hidden_dim: int | None) -> pa.Table:
    arrow = schema(top_k, logits_dtype, hidden_dim)
    arrays = [
        pa.array(cols["user"].astype(np.int32)),
        pa.array(cols["pos"].astype(np.int32)),
        pa.array(cols["target"].astype(np.int32)),
        fixed_list(cols["ids"].astype(np.int32), arrow.field("topk_ids").type),
        fixed_list(cols["logits"], arrow.field("topk_logits").type),
    ]
    if hidden_dim:
        arrays.append(fixed_list(cols["hidden"], arrow.field("hidden").type))
    return pa.Table.from_arrays(arrays, schema=arrow)
