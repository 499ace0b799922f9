"""Preprocessing: dedupe, k-core, stable id maps, chronological sequences and splits.

Input is a source frame (raw string ids, see ``schema.py``); output the prepared frames that are
written as Parquet. Every function is pure: frames in, frames out.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import pandas as pd

from shopdistill.components.config import PreprocessConfig
from shopdistill.components.data.schema import EVENT_STRENGTH, DatasetTooSmallError


@dataclass(frozen=True)
class PreparedFrames:
    interactions: pd.DataFrame
    items: pd.DataFrame
    user_map: pd.DataFrame
    item_map: pd.DataFrame
    stats: dict[str, int]


def sort_chronologically(frame: pd.DataFrame) -> pd.DataFrame:
    """Sort by user, then timestamp, then source order (``seq``): the per-user sequence order."""
    return frame.sort_values(["user_id", "ts", "seq"], kind="stable", ignore_index=True)


def dedupe(frame: pd.DataFrame, policy: str) -> pd.DataFrame:
    """Apply a dedupe policy to a chronologically sorted source frame.

    * ``none``: keep every row.
    * ``exact``: drop rows equal in (user, item, ts, event), keeping the first.
    * ``consecutive``: collapse back-to-back rows of the same item by one user into one row that keeps
      the first row's time and the strongest event (purchase > cart > review > view/click): a
      view -> cart -> purchase funnel becomes one purchase step of the sequence.
    * ``user_item_first``: keep only each user's first interaction with an item.
    """
    if policy == "none":
        return frame
    if policy == "exact":
        return frame.drop_duplicates(["user_id", "item_id", "ts", "event"], ignore_index=True)
    if policy == "user_item_first":
        return frame.drop_duplicates(["user_id", "item_id"], ignore_index=True)
    if policy == "consecutive":
        user = frame["user_id"].to_numpy()
        item = frame["item_id"].to_numpy()
        starts = np.ones(len(frame), dtype=bool)
        starts[1:] = (user[1:] != user[:-1]) | (item[1:] != item[:-1])
        run = np.cumsum(starts) - 1
        strength = frame["event"].map(EVENT_STRENGTH).fillna(-1).to_numpy()
        # index of the strongest row within each run (first one on ties)
        order = np.lexsort((np.arange(len(frame)), -strength, run))
        first_of_run = np.r_[True, run[order][1:] != run[order][:-1]]
        strongest = order[first_of_run]
        out = frame.loc[starts].reset_index(drop=True)
        out["event"] = frame["event"].to_numpy()[strongest]
        return out
    raise ValueError(f"unknown dedupe policy {policy!r}")


def k_core(frame: pd.DataFrame, min_user: int, min_item: int) -> pd.DataFrame:
    """Iteratively drop users with < ``min_user`` and items with < ``min_item`` interactions."""
    if min_user <= 1 and min_item <= 1:
        return frame
    while True:
        n = len(frame)
        if min_item > 1:
            counts = frame["item_id"].map(frame["item_id"].value_counts())
            frame = frame[counts.to_numpy() >= min_item]
        if min_user > 1:
            counts = frame["user_id"].map(frame["user_id"].value_counts())
            frame = frame[counts.to_numpy() >= min_user]
        if len(frame) == n:
            return frame.reset_index(drop=True)


def _natural_order(values: pd.Series) -> np.ndarray:
    """Unique raw ids in a stable order: numerically when every id is an integer, else as text."""
    uniq = pd.unique(values.to_numpy())
    text = pd.Series(uniq, dtype="string")
    if text.str.fullmatch(r"\d{1,18}").all():
        return uniq[np.argsort(text.astype("int64").to_numpy(), kind="stable")]
    return uniq[np.argsort(text.to_numpy(dtype=object), kind="stable")]


def build_id_maps(
    frame: pd.DataFrame, previous: tuple[pd.DataFrame, pd.DataFrame] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Dense ids: users 0..U-1, items 1..I (0 stays free for padding), in natural raw-id order.

    With the ``previous`` night's ``(user_map, item_map)``, every user and item in them keeps its id
    (even one absent tonight) and new ones are appended after them, in natural order: a model of last
    night reads tonight's ids unchanged, and its item table only has to grow.
    """
    old_users, old_items = previous if previous is not None else (None, None)
    users = _extend(old_users["raw_user_id"] if old_users is not None else None, frame["user_id"])
    items = _extend(old_items["raw_item_id"] if old_items is not None else None, frame["item_id"])
    user_map = pd.DataFrame({"user_id": np.arange(len(users), dtype=np.int32), "raw_user_id": users})
    item_map = pd.DataFrame({"item_id": np.arange(1, len(items) + 1, dtype=np.int32), "raw_item_id": items})
    return user_map.astype({"raw_user_id": "string"}), item_map.astype({"raw_item_id": "string"})


def _extend(known: pd.Series | None, values: pd.Series) -> np.ndarray:
    """``known`` raw ids in their order, then the new ones of ``values`` in natural order."""
    if known is None:
        return _natural_order(values)
    known = known.astype(str).to_numpy()
    new = pd.Series(values[~values.astype(str).isin(known)])
    return np.concatenate([known, _natural_order(new)]) if len(new) else known


def leave_one_out_split(frame: pd.DataFrame) -> np.ndarray:
    """Split labels for a chronologically sorted frame: per user last = test, second-last = valid.

    Users with fewer than 3 interactions keep all of them in train (the usual protocol).
    """
    grouped = frame.groupby("user_id", sort=False)
    from_end = grouped.cumcount(ascending=False).to_numpy()
    length = grouped["user_id"].transform("size").to_numpy()
    if len(length) == 0 or length.max() < 3:
        longest = int(length.max()) if len(length) else 0
        raise DatasetTooSmallError(
            "cannot make a leave-one-out split: no user has the 3 interactions it needs "
            f"(train, validation, test); the longest history has {longest}"
        )
    split = np.full(len(frame), "train", dtype=object)
    eligible = length >= 3
    split[eligible & (from_end == 0)] = "test"
    split[eligible & (from_end == 1)] = "valid"
    return split


def time_split(frame: pd.DataFrame, valid_fraction: float, test_fraction: float) -> np.ndarray:
    """Global time split: the last ``test_fraction`` of the time span is test, the slice before it valid."""
    ts = frame["ts"].to_numpy()
    lo, hi = int(ts.min()), int(ts.max())
    span = hi - lo
    test_from = hi - test_fraction * span
    valid_from = test_from - valid_fraction * span
    split = np.where(ts > test_from, "test", np.where(ts > valid_from, "valid", "train")).astype(object)
    counts = {s: int((split == s).sum()) for s in ("train", "valid", "test")}
    empty = [s for s, c in counts.items() if c == 0]
    if span == 0 or empty:
        raise DatasetTooSmallError(
            f"cannot make a time split: the {', '.join(empty) or 'all'} part would be empty "
            f"(timestamps span {span} s; counts {counts})"
        )
    return split


def next_day_split(frame: pd.DataFrame, as_of: dt.date) -> np.ndarray:
    """Split labels for the night ``as_of``: events on that day (UTC) are test, on the day before
    valid, earlier ones train. Each user's last test (valid) event is the one scored, with the
    day's earlier events in its history (``sequences``)."""
    test_from = int(pd.Timestamp(as_of, tz="UTC").timestamp())
    valid_from = test_from - 86_400
    ts = frame["ts"].to_numpy()
    split = np.where(ts >= test_from, "test", np.where(ts >= valid_from, "valid", "train")).astype(object)
    counts = {s: int((split == s).sum()) for s in ("train", "valid", "test")}
    empty = [s for s, c in counts.items() if c == 0]
    if empty:
        raise DatasetTooSmallError(
            f"cannot make the next-day split for {as_of}: the {', '.join(empty)} part is empty "
            f"(test: {as_of}, valid: {as_of - dt.timedelta(days=1)}, train: before; counts {counts})"
        )
    return split


def _split(out: pd.DataFrame, cfg: PreprocessConfig, as_of: dt.date | None) -> np.ndarray:
    if cfg.split == "leave_one_out":
        return leave_one_out_split(out)
    if cfg.split == "next_day":
        return next_day_split(out, as_of or _last_day(out))
    return time_split(out, cfg.valid_fraction, cfg.test_fraction)


def _last_day(frame: pd.DataFrame) -> dt.date:
    return pd.Timestamp(int(frame["ts"].max()), unit="s", tz="UTC").date()


def prepare_frames(
    interactions: pd.DataFrame,
    items: pd.DataFrame,
    cfg: PreprocessConfig,
    *,
    as_of: dt.date | None = None,
    previous: tuple[pd.DataFrame, pd.DataFrame] | None = None,
) -> PreparedFrames:
    """Source frames -> prepared frames: dedupe, k-core, id maps, chronological order, split.

    ``as_of``: the night (events after its day are dropped; the next-day split's test day).
    ``previous``: the id maps to keep (:func:`build_id_maps`)."""
    n_raw = len(interactions)
    if as_of is not None:
        end = int(pd.Timestamp(as_of + dt.timedelta(days=1), tz="UTC").timestamp())
        interactions = interactions[interactions["ts"].to_numpy() < end]
    frame = dedupe(sort_chronologically(interactions), cfg.dedupe)
    n_deduped = len(frame)
    frame = k_core(frame, cfg.min_user_interactions, cfg.min_item_interactions)
    if len(frame) == 0:
        raise DatasetTooSmallError(
            "no interactions left after the k-core filter "
            f"(min_user_interactions={cfg.min_user_interactions}, "
            f"min_item_interactions={cfg.min_item_interactions})"
        )
    user_map, item_map = build_id_maps(frame, previous)
    uid = pd.Series(user_map["user_id"].to_numpy(), index=user_map["raw_user_id"].to_numpy())
    iid = pd.Series(item_map["item_id"].to_numpy(), index=item_map["raw_item_id"].to_numpy())
    out = pd.DataFrame(
        {
            "user_id": uid.reindex(frame["user_id"].to_numpy()).to_numpy().astype(np.int32),
            "item_id": iid.reindex(frame["item_id"].to_numpy()).to_numpy().astype(np.int32),
            "ts": frame["ts"].to_numpy(dtype=np.int64),
            "event": frame["event"].astype("string").to_numpy(),
            "price": frame["price"].astype("Float64").to_numpy(),
            "session_id": frame["session_id"].astype("string").to_numpy(),
            "seq": frame["seq"].to_numpy(dtype=np.int64),
        }
    )
    out = out.sort_values(["user_id", "ts", "seq"], kind="stable", ignore_index=True).drop(columns="seq")
    out["split"] = pd.Series(_split(out, cfg, as_of), dtype="string").to_numpy()

    catalogue = items.drop_duplicates("item_id").set_index("item_id")
    kept = catalogue.reindex(item_map["raw_item_id"].to_numpy())
    items_out = pd.DataFrame(
        {
            "item_id": item_map["item_id"].to_numpy(),
            "title": kept["title"].astype("string").to_numpy(),
            "brand": kept["brand"].astype("string").to_numpy(),
            "category": kept["category"].astype("string").to_numpy(),
            "price": kept["price"].astype("Float64").to_numpy(),
        }
    )
    stats = {
        "source_rows": n_raw,
        "dropped_by_dedupe": n_raw - n_deduped,
        "dropped_by_k_core": n_deduped - len(frame),
        "catalogue_items_without_interactions": int(len(catalogue) - len(item_map)),
    }
    return PreparedFrames(out, items_out, user_map, item_map, stats)
