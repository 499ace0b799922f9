import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from shopdistill.components.models import build_model
from shopdistill.components.soft_labels import (
    SoftLabelCacheError,
    SoftLabelReader,
    verify_soft_labels,
)
from shopdistill.components.soft_labels.format import DATA_FILE
from tests.components.tiny_teacher import TEACHER, build


def test_round_trip_matches_the_teacher(teacher, tiny_data, tmp_path):
    handle, manifest, reused = build(teacher, tiny_data, tmp_path, cache_hidden=True, logits_dtype="float32")
    assert not reused
    expected_rows = int(tiny_data.train_positions(20)[tiny_data.train_users()].sum())
    assert manifest["rows"] == expected_rows and manifest["top_k"] == 10 and manifest["hidden_dim"] == 16
    assert manifest["row_groups"] == int(np.ceil(len(tiny_data.train_users()) / 64)) > 1
    file = pq.ParquetFile(handle.path / DATA_FILE)
    ids_type = file.schema_arrow.field("topk_ids").type
    assert ids_type.list_size == 10 and str(ids_type.value_type) == "int32"
    reader = SoftLabelReader(handle.path)
    block = reader.read_block(0)
    u = int(block.users[0])
    rows = block.users == u
    batch = tiny_data.train_batch(np.array([u]), 20)
    with torch.no_grad():
        h = teacher(batch.inputs).hidden[batch.mask]
        logits, cols = torch.topk(teacher.scores(h), 10, dim=1)
    np.testing.assert_array_equal(block.topk_ids[rows], cols.numpy() + 1)
    np.testing.assert_allclose(block.topk_logits[rows], logits.numpy(), rtol=1e-6)
    np.testing.assert_allclose(block.hidden[rows], h.numpy(), atol=2e-3)  # float16
    np.testing.assert_array_equal(block.targets[rows], batch.targets[batch.mask].numpy())
    # logits are sorted, raw (no temperature)
    assert np.all(np.diff(block.topk_logits, axis=1) <= 0)


@pytest.mark.faults
def test_reused_when_digests_match_and_rebuilt_when_corrupt(teacher, tiny_data, tmp_path):
    handle, _, _ = build(teacher, tiny_data, tmp_path)
    again, _, reused = build(teacher, tiny_data, tmp_path)
    assert reused and again == handle
    data_file = handle.path / DATA_FILE
    data_file.write_bytes(data_file.read_bytes()[:-100])  # truncated: a partial write
    with pytest.raises(SoftLabelCacheError, match="does not match its size/sha256"):
        SoftLabelReader(handle.path)
    rebuilt, _, reused = build(teacher, tiny_data, tmp_path)
    assert not reused
    verify_soft_labels(rebuilt.path)
    other, _, _ = build(teacher, tiny_data, tmp_path, teacher_digest="x" * 64)
    assert other.path != handle.path


@pytest.mark.faults
def test_failed_build_leaves_no_cache(teacher, tiny_data, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = teacher.scores

    def failing(h):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("killed")
        return real(h)

    monkeypatch.setattr(teacher, "scores", failing)
    with pytest.raises(RuntimeError, match="killed"):
        build(teacher, tiny_data, tmp_path)
    assert [p for p in (tmp_path / "soft_labels").iterdir() if p.suffix != ".lock"] == []


def test_streaming_reader_covers_every_row_once(teacher, tiny_data, tmp_path):
    handle, manifest, _ = build(teacher, tiny_data, tmp_path)
    reader = SoftLabelReader(handle.path)
    lengths = tiny_data.train_positions(20)
    seen_users, rows = [], 0
    for users, block in reader.iter_user_batches(16, lengths, np.random.default_rng(0)):
        assert len(users) <= 16 and set(block.users.tolist()) == set(users.tolist())
        seen_users.extend(users.tolist())
        rows += len(block.users)
    assert sorted(seen_users) == sorted(tiny_data.train_users().tolist())
    assert rows == manifest["rows"]


@pytest.mark.parametrize("window_batches", [1, 3, 1000])
def test_batches_are_bucketed_across_row_groups(teacher, tiny_data, tmp_path, window_batches):
    """Blocks are gathered into windows of >= window_batches batches before bucketing by length, so a
    small row group does not cost extra padding; within one window the batches' lengths do not overlap."""
    handle, manifest, _ = build(teacher, tiny_data, tmp_path, users_per_group=16)
    reader = SoftLabelReader(handle.path)
    assert reader.num_row_groups > 3
    lengths = tiny_data.train_positions(20)
    batches = list(
        reader.iter_user_batches(8, lengths, np.random.default_rng(0), window_batches=window_batches)
    )
    users = np.concatenate([u for u, _ in batches])
    assert sorted(users.tolist()) == sorted(tiny_data.train_users().tolist())  # every user once
    assert sum(len(b.users) for _, b in batches) == manifest["rows"]
    for u, b in batches:  # the rows are exactly the batch's users' rows
        assert set(b.users.tolist()) == set(u.tolist())
    spans = sorted((lengths[u].min(), lengths[u].max()) for u, _ in batches)
    overlapping = sum(hi > nxt_lo for (_, hi), (nxt_lo, _) in zip(spans, spans[1:], strict=False))
    if window_batches == 1000:  # one window over the whole cache: sorted by length end to end
        assert overlapping == 0
    if window_batches == 1:  # one 16-user block per window: the blocks' length ranges overlap
        assert overlapping > 0
    # a row cap closes each window after one block, however many batches it asks for
    capped = list(
        reader.iter_user_batches(8, lengths, np.random.default_rng(0), window_batches=1000, window_rows=1)
    )
    assert sorted(np.concatenate([u for u, _ in capped]).tolist()) == sorted(users.tolist())
    spans = sorted((lengths[u].min(), lengths[u].max()) for u, _ in capped)
    assert sum(hi > nxt_lo for (_, hi), (nxt_lo, _) in zip(spans, spans[1:], strict=False)) > 0


def test_cache_stores_the_teachers_item_embeddings(teacher, tiny_data, tmp_path):
    import json

    from shopdistill.components.models.ensemble import Ensemble
    from shopdistill.components.soft_labels.format import ITEMS_FILE, MANIFEST

    def load_teacher_items(path):
        return SoftLabelReader(path).teacher_items()

    handle, manifest, _ = build(teacher, tiny_data, tmp_path)
    np.testing.assert_array_equal(
        load_teacher_items(handle.path), teacher.item_emb.weight[1:].detach().numpy()
    )
    assert ITEMS_FILE in manifest["files"] and handle.sha256 == manifest["files"][DATA_FILE]["sha256"]
    # a manifest without them: the reader says what is missing
    (handle.path / ITEMS_FILE).unlink()
    old = json.loads((handle.path / MANIFEST).read_text())
    del old["files"][ITEMS_FILE]
    (handle.path / MANIFEST).write_text(json.dumps(old))
    with pytest.raises(SoftLabelCacheError, match="holds no teacher item embeddings"):
        load_teacher_items(handle.path)
    # an ensemble's members side by side, like its hidden state
    torch.manual_seed(1)
    pair = Ensemble([teacher, build_model(TEACHER, tiny_data.n_items).eval()])
    both, _, _ = build(pair, tiny_data, tmp_path / "ens")
    items = load_teacher_items(both.path)
    assert items.shape == (tiny_data.n_items, 2 * TEACHER.d_model)
    np.testing.assert_array_equal(items[:, 16:], pair.members[1].item_emb.weight[1:].detach().numpy())
