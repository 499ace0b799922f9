"""The teacher's soft labels, cached as Parquet so students never need the teacher.

For every training position (user, position of the input item) the teacher's top-K item ids (int32)
and raw logits (float16 or float32; raw, so any temperature can be applied later), optionally the
teacher's final hidden state (float16) for feature and relation distillation, and the hard target
(to check alignment with the student's data). Layout::

    <root>/soft_labels/<teacher12>-<data12>-k<K>-<dtype>[-hidden]/
        soft_labels.parquet   fixed-size list columns, zstd (no dictionary pages for the list columns),
                              one row group per block of whole users
        teacher_items.npy     the teacher's item embeddings (I, D) float32, row c = item c + 1 (an
                              ensemble's members side by side), to initialise a student's items from
        manifest.json         digests of teacher checkpoint and dataset, K, dtype, rows, sha256 per file

The folder is written atomically and reused only when the manifest matches and every checksum holds;
a partial or corrupt cache is rebuilt, never silently used. :class:`SoftLabelReader` streams one row
group at a time, so memory stays flat as the cache grows.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from torch import nn

from components.artifacts import (
    Handle,
    atomic_directory,
    atomic_file,
    sha256_file,
    verify_manifest,
    write_json_atomic,
)
from components.sequences import BUCKET_WINDOW, SequenceData, length_bucketed

# v2: the top-K and hidden columns are written without dictionary encoding (item ids and logits
# hardly repeat within a page; plain zstd pages read 2x faster and write faster, ~10% larger).
SCHEMA_VERSION = 2
DATA_FILE, MANIFEST, ITEMS_FILE = "soft_labels.parquet", "manifest.json", "teacher_items.npy"
KIND = "soft_labels"
_KEY_SHIFT = 32  # row key = user << 32 | position


class SoftLabelCacheError(ValueError):
    """A soft-label cache is missing, partial, corrupt, or does not belong to the given data."""


@dataclass(frozen=True)
class SoftLabelBlock:
    """Cache rows for a set of users, sorted by (user, position)."""

    users: np.ndarray  # (R,) int64
    positions: np.ndarray  # (R,) int64
    targets: np.ndarray  # (R,) int64 item ids
    topk_ids: np.ndarray  # (R, K) int32 item ids (as stored; batches widen them)
    topk_logits: np.ndarray  # (R, K) float16 or float32, as stored
    hidden: np.ndarray | None  # (R, d_teacher) float32

    @property
    def keys(self) -> np.ndarray:
        return (self.users << _KEY_SHIFT) | self.positions


def cache_dir(
    root: Path, teacher_digest: str, dataset_digest: str, top_k: int, dtype: str, hidden: bool
) -> Path:
    name = f"{teacher_digest[:12]}-{dataset_digest[:12]}-k{top_k}-{dtype}" + ("-hidden" if hidden else "")
    return Path(root) / "soft_labels" / name


def _schema(top_k: int, dtype: str, hidden_dim: int | None) -> pa.Schema:
    value = pa.float16() if dtype == "float16" else pa.float32()
    fields = [
        ("user_id", pa.int32()),
        ("pos", pa.int32()),
        ("target", pa.int32()),
        ("topk_ids", pa.list_(pa.int32(), top_k)),
        ("topk_logits", pa.list_(value, top_k)),
    ]
    if hidden_dim:
        fields.append(("hidden", pa.list_(pa.float16(), hidden_dim)))
    return pa.schema(fields)


def _fixed_list(values: np.ndarray, arrow_type: pa.DataType) -> pa.Array:
    flat = pa.array(values.reshape(-1), type=arrow_type.value_type)
    return pa.FixedSizeListArray.from_arrays(flat, values.shape[1])


def verify_soft_labels(path: str | Path) -> dict[str, Any]:
    """The manifest of an intact cache; raises :class:`SoftLabelCacheError` otherwise."""
    return verify_manifest(
        path, what="soft-label cache", schema_version=SCHEMA_VERSION, error=SoftLabelCacheError
    )


def teacher_item_embeddings(teacher: nn.Module) -> np.ndarray:
    """(I, D) float32: row c is item c + 1 as the teacher scores it. An ensemble's members side by
    side (its hidden state is its members' side by side too)."""
    members = list(getattr(teacher, "members", None) or [teacher])
    return torch.cat([m.output_weight().detach().float() for m in members], dim=1).numpy()


def _write_items(folder: Path, teacher: nn.Module) -> dict[str, Any]:
    path = folder / ITEMS_FILE
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        np.save(f, teacher_item_embeddings(teacher))
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


@torch.no_grad()
def build_soft_labels(
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
    item embeddings are stored beside them (added to a valid cache that predates them).
    """
    if top_k > data.n_items:
        raise ValueError(f"top_k={top_k} exceeds the catalogue size {data.n_items}")
    target = cache_dir(Path(root), teacher_digest, dataset_digest, top_k, logits_dtype, cache_hidden)
    try:
        manifest = verify_soft_labels(target)
        if manifest["teacher_digest"] == teacher_digest and manifest["dataset_digest"] == dataset_digest:
            if ITEMS_FILE not in manifest["files"]:
                manifest["files"][ITEMS_FILE] = _write_items(target, teacher)
                write_json_atomic(target / MANIFEST, manifest)
            return Handle(str(target), manifest["digest"], KIND, {"top_k": top_k}), manifest, True
    except SoftLabelCacheError:
        pass

    t0 = time.perf_counter()
    teacher.eval()
    users = data.train_users()
    hidden_dim = None
    writer = None
    rows = 0
    np_dtype = np.float16 if logits_dtype == "float16" else np.float32
    with atomic_directory(target, overwrite=True) as tmp:
        file = tmp / DATA_FILE
        try:
            for g in range(0, len(users), users_per_group):
                group = users[g : g + users_per_group]
                cols: dict[str, list[np.ndarray]] = {
                    k: [] for k in ("user", "pos", "target", "ids", "logits", "hidden")
                }
                for chunk in length_bucketed(group, data.train_positions(max_len)[group], batch_size, None):
                    chunk = np.sort(chunk)
                    batch = data.train_batch(chunk, max_len)
                    out = teacher(batch.inputs)
                    h = out.hidden[batch.mask]  # (N, d), rows in (user, position) order
                    logits, cols_idx = torch.topk(teacher.scores(h), top_k, dim=1)  # (N, K)
                    rows_user = torch.from_numpy(chunk)[:, None].expand_as(batch.mask)[batch.mask]
                    cols["user"].append(rows_user.numpy())
                    cols["pos"].append(batch.positions[batch.mask].numpy())
                    cols["target"].append(batch.targets[batch.mask].numpy())
                    cols["ids"].append((cols_idx + 1).numpy())  # columns -> item ids
                    cols["logits"].append(logits.numpy().astype(np_dtype))
                    if cache_hidden:
                        cols["hidden"].append(h.numpy().astype(np.float16))
                        hidden_dim = h.shape[1]
                cat = {k: np.concatenate(v) for k, v in cols.items() if v}
                order = np.lexsort((cat["pos"], cat["user"]))
                schema = _schema(top_k, logits_dtype, hidden_dim)
                arrays = [
                    pa.array(cat["user"][order].astype(np.int32)),
                    pa.array(cat["pos"][order].astype(np.int32)),
                    pa.array(cat["target"][order].astype(np.int32)),
                    _fixed_list(cat["ids"][order].astype(np.int32), schema.field("topk_ids").type),
                    _fixed_list(cat["logits"][order], schema.field("topk_logits").type),
                ]
                if cache_hidden:
                    arrays.append(_fixed_list(cat["hidden"][order], schema.field("hidden").type))
                table = pa.Table.from_arrays(arrays, schema=schema)
                if writer is None:
                    writer = pq.ParquetWriter(
                        file, schema, compression="zstd", use_dictionary=["user_id", "pos", "target"]
                    )
                writer.write_table(table, row_group_size=len(table))  # one row group per user block
                rows += len(table)
        finally:
            if writer is not None:
                writer.close()
        meta = {"sha256": sha256_file(file), "bytes": file.stat().st_size}
        items = _write_items(tmp, teacher)
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
            "row_groups": pq.ParquetFile(file).num_row_groups,
            "files": {DATA_FILE: meta, ITEMS_FILE: items},
            "digest": meta["sha256"],
            "seconds": round(time.perf_counter() - t0, 3),
        }
        write_json_atomic(tmp / MANIFEST, manifest)
    return Handle(str(target), manifest["digest"], KIND, {"top_k": top_k}), manifest, False


WINDOW_ROWS = 65_536  # at most ~40 MB of top-100 ids and fp16 logits gathered for length bucketing


class SoftLabelReader:
    """Streams a verified cache one row group (a block of whole users) at a time."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.manifest = verify_soft_labels(self.path)
        self._file = pq.ParquetFile(self.path / DATA_FILE)
        self.has_hidden = "hidden" in self._file.schema_arrow.names
        self._logits_dtype = np.float16 if self.manifest.get("logits_dtype") == "float16" else np.float32

    def teacher_items(self) -> np.ndarray:
        """The teacher's item embeddings (I, D) (see :func:`teacher_item_embeddings`; checked with the
        rest of the cache when the reader opened it)."""
        if ITEMS_FILE not in self.manifest["files"]:
            raise SoftLabelCacheError(
                f"{self.path} holds no teacher item embeddings (it was built before they were cached); "
                "run the soft-label stage again to add them"
            )
        return np.load(self.path / ITEMS_FILE)

    @property
    def num_row_groups(self) -> int:
        return self._file.num_row_groups

    def read_block(self, index: int) -> SoftLabelBlock:
        t = self._file.read_row_group(index)

        def fixed(name: str, dtype) -> np.ndarray:
            col = t.column(name).combine_chunks()
            width = col.type.list_size
            return col.values.to_numpy(zero_copy_only=False).astype(dtype).reshape(-1, width)

        return SoftLabelBlock(
            users=t.column("user_id").to_numpy().astype(np.int64),
            positions=t.column("pos").to_numpy().astype(np.int64),
            targets=t.column("target").to_numpy().astype(np.int64),
            topk_ids=fixed("topk_ids", np.int32),  # stored dtypes: no epoch-wide widening copies
            topk_logits=fixed("topk_logits", self._logits_dtype),
            hidden=fixed("hidden", np.float32) if self.has_hidden else None,
        )

    def iter_blocks(self, rng: np.random.Generator | None = None) -> Iterator[SoftLabelBlock]:
        order = rng.permutation(self.num_row_groups) if rng is not None else range(self.num_row_groups)
        for i in order:
            yield self.read_block(int(i))

    def iter_user_batches(
        self,
        batch_size: int,
        lengths: np.ndarray,
        rng: np.random.Generator | None = None,
        window_batches: int = BUCKET_WINDOW,
        window_rows: int = WINDOW_ROWS,
    ) -> Iterator[tuple[np.ndarray, SoftLabelBlock]]:
        """Yield ``(users, rows)``: student batches of users (similar lengths together) with their
        cache rows. Blocks are read in shuffled order and gathered into windows of at least
        ``window_batches`` batches of users before bucketing by length, the window plain training
        buckets in (:func:`~components.sequences.length_bucketed`): per 2,048-user block alone the
        batches' longest sequences sum to ~20% more steps (Beauty), which a GRU student pays in full.
        A window also closes at ``window_rows`` cache rows, so memory stays bounded by a fixed size,
        not the cache (long-history shops get one row group per window, as before). ``lengths`` is
        per user id."""
        pending: list[SoftLabelBlock] = []
        n_users = n_rows = 0
        for block in self.iter_blocks(rng):
            pending.append(block)
            n_users += len(np.unique(block.users))
            n_rows += len(block.users)
            del block  # the window's copy is the only one kept while its batches are consumed
            if n_users >= batch_size * window_batches or n_rows >= window_rows:
                window = _concat(pending)
                pending.clear()
                n_users = n_rows = 0
                yield from _bucketed(window, batch_size, lengths, rng, window_batches)
                del window
        if pending:
            window = _concat(pending)
            pending.clear()
            yield from _bucketed(window, batch_size, lengths, rng, window_batches)


def _bucketed(
    window: SoftLabelBlock, batch_size: int, lengths: np.ndarray, rng: np.random.Generator | None, n: int
) -> Iterator[tuple[np.ndarray, SoftLabelBlock]]:
    if len(window.users) == 0:
        return
    starts = np.flatnonzero(
        np.r_[True, window.users[1:] != window.users[:-1]]
    )  # a user's rows are contiguous
    users, ends = window.users[starts], np.r_[starts[1:], len(window.users)]
    span = dict(zip(users.tolist(), zip(starts.tolist(), ends.tolist(), strict=True), strict=True))
    for chunk in length_bucketed(users, lengths[users], batch_size, rng, window=n):
        idx = np.concatenate([np.arange(*span[u]) for u in chunk.tolist()])
        yield chunk, _take(window, idx)


def _concat(blocks: list[SoftLabelBlock]) -> SoftLabelBlock:
    if len(blocks) == 1:
        return blocks[0]
    hidden = [b.hidden for b in blocks]
    return SoftLabelBlock(
        users=np.concatenate([b.users for b in blocks]),
        positions=np.concatenate([b.positions for b in blocks]),
        targets=np.concatenate([b.targets for b in blocks]),
        topk_ids=np.concatenate([b.topk_ids for b in blocks]),
        topk_logits=np.concatenate([b.topk_logits for b in blocks]),
        hidden=None if hidden[0] is None else np.concatenate(hidden),
    )


def _take(block: SoftLabelBlock, idx: np.ndarray) -> SoftLabelBlock:
    return SoftLabelBlock(
        users=block.users[idx],
        positions=block.positions[idx],
        targets=block.targets[idx],
        topk_ids=block.topk_ids[idx],
        topk_logits=block.topk_logits[idx],
        hidden=block.hidden[idx] if block.hidden is not None else None,
    )
