"""Model sizes from a dataset's statistics, so a new shop log gets sensible defaults without tuning.

Rules (calibrated on Amazon Beauty, where they reproduce the ``beauty`` profile; see README):

* ``max_len``: the 99th percentile of sequence length rounded up to a multiple of 10 (10..200):
  longer windows only add padding work.
* teacher width by evidence per item (interactions / items, ``r``): d=128 when ``r >= 10`` and the
  catalogue has >= 5,000 items, d=64 when ``r >= 3``, else d=32. On Beauty (r = 16.4) a d=32 model
  overfit least at dropout 0.2, but d=128 at dropout 0.5 was best on validation.
* teacher dropout 0.5 when ``r < 50`` (sparse: overfits quickly), else 0.2.
* student: the widest power of two <= 16 whose parameter count is >= 8x below the teacher's
  (embeddings dominate: about ``items x d``); one layer, one head.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from shopdistill.components.sequences import SequenceData


def dataset_stats(data: SequenceData) -> dict[str, Any]:
    lengths = np.diff(data.offsets)
    return {
        "users": int(data.n_users),
        "items": int(data.n_items),
        "interactions": int(len(data.items)),
        "per_item": float(len(data.items) / max(data.n_items, 1)),
        "length_p50": float(np.percentile(lengths, 50)),
        "length_p99": float(np.percentile(lengths, 99)),
    }


def sasrec_params(items: int, d: int, layers: int, max_len: int, ffn_mult: int = 4) -> int:
    """Parameter count of ``components.models.sasrec.SASRec`` (tested against the model)."""
    per_block = (
        2 * 2 * d
        + (3 * d * d + 3 * d)
        + (d * d + d)
        + (ffn_mult * d * d + ffn_mult * d)
        + (ffn_mult * d * d + d)
    )
    return (items + 1) * d + max_len * d + layers * per_block + 2 * d


def suggest(stats: dict[str, Any]) -> dict[str, Any]:
    """Dotted config overrides (``teacher.model.d_model`` ...) for a dataset with these statistics."""
    max_len = int(min(max(math.ceil(stats["length_p99"] / 10) * 10, 10), 200))
    r, items = stats["per_item"], stats["items"]
    t_d = 128 if r >= 10 and items >= 5000 else 64 if r >= 3 else 32
    t_layers = 2
    t_params = sasrec_params(items, t_d, t_layers, max_len)
    s_d = 16
    while s_d > 2 and sasrec_params(items, s_d, 1, max_len) * 8 > t_params:
        s_d //= 2
    return {
        "teacher.model.d_model": t_d,
        "teacher.model.n_layers": t_layers,
        "teacher.model.n_heads": 2,
        "teacher.model.dropout": 0.5 if r < 50 else 0.2,
        "teacher.model.max_len": max_len,
        "student.model.d_model": s_d,
        "student.model.n_layers": 1,
        "student.model.n_heads": 1,
        "student.model.max_len": max_len,
    }
