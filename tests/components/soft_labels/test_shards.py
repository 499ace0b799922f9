"""Soft labels in user shards: equal to the one-pass cache, read by the same reader, repaired part by part."""

import numpy as np
import pytest

from shopdistill.components.soft_labels import SoftLabelCacheError, SoftLabelReader, verify_soft_labels
from shopdistill.components.soft_labels.shards import finish_parts, part_name, shard_users, write_part
from tests.components.tiny_teacher import build

KEY = {
    "teacher_digest": "t" * 64,
    "dataset_digest": "d" * 64,
    "max_len": 20,
    "top_k": 10,
    "logits_dtype": "float16",
    "cache_hidden": True,
}


def sharded(teacher, data, folder, shards: int):
    """Every part, then the manifest: (records with reused flags, (handle, manifest, reused))."""
    parts = [write_part(teacher, data, folder, i, shards, KEY, users_per_group=64) for i in range(shards)]
    return parts, finish_parts(teacher, folder, [r for r, _ in parts], KEY)


def rows(path) -> dict[str, np.ndarray]:
    reader = SoftLabelReader(path)
    blocks = [reader.read_block(i) for i in range(reader.num_row_groups)]
    return {
        name: np.concatenate([getattr(b, name) for b in blocks])
        for name in ("users", "positions", "targets", "topk_ids", "topk_logits", "hidden")
    }


def test_user_shards_cover_every_user_once_in_order():
    users = np.arange(10, 20)
    parts = [shard_users(users, i, 3) for i in range(3)]
    assert np.array_equal(np.concatenate(parts), users) and [len(p) for p in parts] == [3, 4, 3]


def test_the_sharded_cache_holds_the_rows_of_the_one_pass_cache(teacher, tiny_data, tmp_path):
    one, single, _ = build(teacher, tiny_data, tmp_path / "one", cache_hidden=True)
    parts, (handle, manifest, reused) = sharded(teacher, tiny_data, tmp_path / "sharded", 3)
    assert not reused and not any(r for _, r in parts)
    assert manifest["rows"] == single["rows"] and manifest["users"] == single["users"]
    assert manifest["parts"] == [part_name(i, 3) for i in range(3)] and handle.sha256 == manifest["digest"]
    a, b = rows(one.path), rows(handle.path)
    for name in ("users", "positions", "targets"):
        np.testing.assert_array_equal(a[name], b[name])
    assert (a["topk_ids"] == b["topk_ids"]).mean() > 0.999  # only near-ties may swap
    np.testing.assert_allclose(a["topk_logits"], b["topk_logits"], rtol=2e-3, atol=2e-3)  # float16
    np.testing.assert_allclose(a["hidden"], b["hidden"], atol=2e-3)
    np.testing.assert_array_equal(
        SoftLabelReader(handle.path).teacher_items(), SoftLabelReader(one.path).teacher_items()
    )


@pytest.mark.faults
def test_a_missing_or_corrupt_part_is_found_and_rebuilt_alone(teacher, tiny_data, tmp_path):
    folder = tmp_path / "sharded"
    _, (handle, _, _) = sharded(teacher, tiny_data, folder, 3)
    before = rows(handle.path)
    parts, (_, _, reused) = sharded(teacher, tiny_data, folder, 3)
    assert reused and all(r for _, r in parts)  # intact: everything reused
    (folder / part_name(1, 3)).unlink()
    with pytest.raises(
        SoftLabelCacheError, match="part-00001-of-00003.parquet listed in the manifest is missing"
    ):
        SoftLabelReader(folder)
    data = bytearray((folder / part_name(2, 3)).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / part_name(2, 3)).write_bytes(bytes(data))
    parts, (handle, _, reused) = sharded(teacher, tiny_data, folder, 3)
    assert [r for _, r in parts] == [True, False, False] and not reused  # parts 1 and 2 written again
    verify_soft_labels(handle.path)
    after = rows(handle.path)
    for name in ("users", "positions", "targets", "topk_ids"):
        np.testing.assert_array_equal(before[name], after[name])


def test_more_shards_than_users_leave_empty_parts_that_read_as_nothing(teacher, tiny_data, tmp_path):
    shards = len(tiny_data.train_users()) + 2
    _, (handle, manifest, _) = sharded(teacher, tiny_data, tmp_path / "many", shards)
    assert manifest["rows"] == int(tiny_data.train_positions(20)[tiny_data.train_users()].sum())
    assert len(rows(handle.path)["users"]) == manifest["rows"]
