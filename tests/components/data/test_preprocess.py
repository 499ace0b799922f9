import numpy as np
import pandas as pd
import pytest

from shopdistill.components.config import PreprocessConfig
from shopdistill.components.data.preprocess import (
    build_id_maps,
    dedupe,
    k_core,
    leave_one_out_split,
    prepare_frames,
    sort_chronologically,
    time_split,
)
from shopdistill.components.data.schema import DatasetTooSmallError, source_interactions, source_items


def frame(rows):
    """rows: (user, item, ts, event)"""
    u, i, t, e = zip(*rows, strict=True)
    return source_interactions(list(u), list(i), list(t), list(e))


def test_sort_keeps_source_order_for_equal_times():
    f = frame([("a", "3", 5, "view"), ("a", "1", 5, "view"), ("a", "2", 1, "view"), ("b", "9", 0, "view")])
    out = sort_chronologically(f)
    assert out["item_id"].tolist() == ["2", "3", "1", "9"]


def test_dedupe_policies():
    f = sort_chronologically(
        frame(
            [
                ("a", "1", 1, "view"),
                ("a", "1", 1, "view"),  # exact repeat
                ("a", "1", 2, "cart"),
                ("a", "1", 3, "purchase"),
                ("a", "2", 4, "view"),
                ("a", "1", 5, "view"),  # same item again later: not consecutive
            ]
        )
    )
    assert len(dedupe(f, "none")) == 6
    assert len(dedupe(f, "exact")) == 5
    cons = dedupe(f, "consecutive")
    assert cons[["item_id", "ts", "event"]].values.tolist() == [
        ["1", 1, "purchase"],
        ["2", 4, "view"],
        ["1", 5, "view"],
    ]
    first = dedupe(f, "user_item_first")
    assert first[["item_id", "ts"]].values.tolist() == [["1", 1], ["2", 4]]
    with pytest.raises(ValueError, match="unknown dedupe policy"):
        dedupe(f, "sometimes")


def test_k_core_is_iterative():
    # item z has 2 users, but user c only has 1 interaction; removing c drops z below 2
    rows = [
        ("a", "x", 1, "v"),
        ("a", "y", 2, "v"),
        ("b", "x", 1, "v"),
        ("b", "y", 2, "v"),
        ("b", "z", 3, "v"),
    ]
    rows += [("c", "z", 1, "v")]
    out = k_core(frame(rows), min_user=2, min_item=2)
    assert sorted(out["item_id"].unique()) == ["x", "y"]
    assert sorted(out["user_id"].unique()) == ["a", "b"]


def test_id_maps_are_stable_and_natural():
    f = frame([("10", "2", 1, "v"), ("9", "10", 1, "v"), ("10", "1", 2, "v")])
    users, items = build_id_maps(f)
    assert users["raw_user_id"].tolist() == ["9", "10"]  # numeric order, not "10" < "9"
    assert users["user_id"].tolist() == [0, 1]
    assert items["raw_item_id"].tolist() == ["1", "2", "10"]
    assert items["item_id"].tolist() == [1, 2, 3]  # 0 is the padding id
    again = build_id_maps(f.iloc[::-1].reset_index(drop=True))
    pd.testing.assert_frame_equal(users, again[0])
    pd.testing.assert_frame_equal(items, again[1])
    text_ids = build_id_maps(frame([("b", "q", 1, "v"), ("a", "p", 1, "v")]))[0]
    assert text_ids["raw_user_id"].tolist() == ["a", "b"]


def test_leave_one_out_golden():
    f = sort_chronologically(
        frame(
            [("a", "1", 1, "v"), ("a", "2", 2, "v"), ("a", "3", 3, "v"), ("a", "4", 4, "v")]
            + [("b", "1", 1, "v"), ("b", "2", 2, "v")]
            + [("c", "5", 1, "v"), ("c", "6", 2, "v"), ("c", "7", 3, "v")]
        )
    )
    split = leave_one_out_split(f)
    assert split.tolist() == ["train", "train", "valid", "test", "train", "train", "train", "valid", "test"]


def test_leave_one_out_too_small():
    f = frame([("a", "1", 1, "v"), ("a", "2", 2, "v"), ("b", "1", 1, "v")])
    with pytest.raises(
        DatasetTooSmallError,
        match=r"cannot make a leave-one-out split: no user has the 3 interactions it needs "
        r"\(train, validation, test\); the longest history has 2",
    ):
        leave_one_out_split(f)


def test_time_split():
    f = frame([("a", str(i), t, "v") for i, t in enumerate([0, 10, 50, 85, 95, 100])])
    assert time_split(f, 0.1, 0.1).tolist() == ["train", "train", "train", "valid", "test", "test"]
    same = frame([("a", "1", 5, "v"), ("b", "2", 5, "v")])
    with pytest.raises(DatasetTooSmallError, match="cannot make a time split"):
        time_split(same, 0.1, 0.1)


def test_prepare_frames_end_to_end():
    inter = frame(
        [("u2", "p1", 3, "view"), ("u2", "p2", 4, "view"), ("u2", "p3", 5, "purchase")]
        + [("u1", "p2", 1, "view"), ("u1", "p2", 2, "cart"), ("u1", "p3", 3, "view"), ("u1", "p1", 9, "view")]
    )
    items = source_items(["p1", "p2", "p3", "p4"], title=["A", "B", "C", "D"], price=[1.0, 2.0, None, 4.0])
    prep = prepare_frames(inter, items, PreprocessConfig(dedupe="consecutive"))
    i = prep.interactions
    assert i.columns.tolist() == ["user_id", "item_id", "ts", "event", "price", "session_id", "split"]
    assert i["user_id"].tolist() == [0, 0, 0, 1, 1, 1]
    assert i["item_id"].tolist() == [2, 3, 1, 1, 2, 3]
    assert i["event"].tolist() == ["cart", "view", "view", "view", "view", "purchase"]
    assert i["split"].tolist() == ["train", "valid", "test"] * 2
    assert prep.items["item_id"].tolist() == [1, 2, 3]
    assert prep.items["title"].tolist() == ["A", "B", "C"]
    assert prep.stats == {
        "source_rows": 7,
        "dropped_by_dedupe": 1,
        "dropped_by_k_core": 0,
        "catalogue_items_without_interactions": 1,
    }
    assert i["user_id"].dtype == np.int32 and i["item_id"].dtype == np.int32


def test_k_core_that_removes_everything_is_a_clear_error():
    inter = frame([("a", "1", 1, "v"), ("b", "2", 1, "v")])
    cfg = PreprocessConfig(min_user_interactions=5)
    with pytest.raises(DatasetTooSmallError, match="no interactions left after the k-core filter"):
        prepare_frames(inter, source_items(["1", "2"]), cfg)
