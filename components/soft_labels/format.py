"""The soft-label file format: folder layout, Parquet schema, manifest and its verification.

For every training position (user, position of the input item) the teacher's top-K item ids (int32)
and raw logits (float16 or float32; raw, so any temperature can be applied later), optionally the
teacher's final hidden state (float16) for feature and relation distillation, and the hard target
(to check alignment with the student's data). Layout (the folder name comes from ``stores.py``)::

    <root>/soft_labels/<teacher12>-<data12>-k<K>-<dtype>[-hidden]/
        soft_labels.parquet   fixed-size list columns, zstd (no dictionary pages for the list columns:
                              item ids and logits hardly repeat within a page), one row group per
                              block of whole users
        teacher_items.npy     the teacher's item embeddings (I, D) float32, row c = item c + 1 (an
                              ensemble's members side by side), to initialise a student's items from
        manifest.json         digests of teacher checkpoint and dataset, K, dtype, rows, sha256 per file

The folder is written atomically and reused only when the manifest matches and every checksum holds;
a partial or corrupt cache is rebuilt, never silently used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from shopdistill.components.artifacts import verify_manifest

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


def schema(top_k: int, dtype: str, hidden_dim: int | None) -> pa.Schema:
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


def fixed_list(values: np.ndarray, arrow_type: pa.DataType) -> pa.Array:
    flat = pa.array(values.reshape(-1), type=arrow_type.value_type)
    return pa.FixedSizeListArray.from_arrays(flat, values.shape[1])


def verify_soft_labels(path: str | Path) -> dict[str, Any]:
    """The manifest of an intact cache; raises :class:`SoftLabelCacheError` otherwise."""
    return verify_manifest(
        path, what="soft-label cache", schema_version=SCHEMA_VERSION, error=SoftLabelCacheError
    )
