"""What changed since last night: new products, popularity, history length, and the champion's decay.

Computed for a night (a dataset with a previous night, ``data/dataset.py``) from the two prepared
datasets and the evaluation:

* ``new_items``: products in tonight's id map that last night's did not have, and ``new_item_share``
  their share of the catalogue; ``new_item_event_share``: the share of the night's test-day events
  on them;
* ``popularity_shift``: total variation distance (0: same, 1: disjoint) between the item
  popularity of tonight's test day and of last night's;
* ``sequence_length_ratio``: tonight's mean history length over last night's;
* ``champion_ratio``: the champion's NDCG@10 tonight over its NDCG@10 on the night it was
  registered; below ``1 - max_champion_decay`` the champion counts as decayed (flagged in the run).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from shopdistill.components.data.dataset import Dataset


def _test_day_popularity(ds: Dataset) -> pd.Series:
    test = ds.interactions.loc[ds.interactions["split"] == "test", "item_id"]
    counts = test.value_counts()
    return counts / counts.sum() if counts.sum() else counts.astype(float)


def data_drift(tonight: Dataset, previous: Dataset) -> dict[str, float]:
    """Tonight's data against last night's (ids are stable across nights, so items compare by id)."""
    known = len(previous.item_map)
    new_items = max(0, len(tonight.item_map) - known)
    test = tonight.interactions.loc[tonight.interactions["split"] == "test", "item_id"].to_numpy()
    now, before = _test_day_popularity(tonight), _test_day_popularity(previous)
    union = now.index.union(before.index)
    tv = 0.5 * float(np.abs(now.reindex(union, fill_value=0) - before.reindex(union, fill_value=0)).sum())
    lengths = [d.interactions.groupby("user_id").size().mean() for d in (tonight, previous)]
    return {
        "new_items": float(new_items),
        "new_item_share": new_items / max(1, len(tonight.item_map)),
        "new_item_event_share": float((test > known).mean()) if len(test) else 0.0,
        "popularity_shift": tv,
        "sequence_length_ratio": float(lengths[0] / lengths[1]) if lengths[1] else float("nan"),
    }


def champion_drift(tonight: float | None, at_registration: float | None, max_decay: float) -> dict[str, Any]:
    """The champion's NDCG@10 tonight against the night it was registered, and whether it decayed."""
    if tonight is None or not at_registration:
        return {}
    ratio = tonight / at_registration
    return {
        "champion_ndcg_tonight": tonight,
        "champion_ndcg_at_registration": at_registration,
        "champion_ratio": ratio,
        "champion_decayed": bool(ratio < 1 - max_decay),
    }


def drift_markdown(drift: dict[str, Any], max_decay: float) -> str:
    if not drift:
        return "No drift report: this is the first night (no previous night to compare with)."
    rows = ["| measure | tonight |", "|---|---:|"]
    names = {
        "new_items": ("new products", "{:.0f}"),
        "new_item_share": ("share of the catalogue that is new", "{:.1%}"),
        "new_item_event_share": ("share of the test day's events on new products", "{:.1%}"),
        "popularity_shift": ("popularity shift vs last night (total variation)", "{:.3f}"),
        "sequence_length_ratio": ("mean history length vs last night", "{:.3f}x"),
        "champion_ratio": ("champion NDCG@10 tonight vs at its registration", "{:.3f}x"),
    }
    rows += [f"| {label} | {fmt.format(drift[key])} |" for key, (label, fmt) in names.items() if key in drift]
    if drift.get("champion_decayed"):
        rows.append(f"\n**The champion decayed** by more than {max_decay:.0%} since it was registered.")
    return "\n".join(rows)
