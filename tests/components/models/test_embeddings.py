"""Item embedding tables: shapes, padding, parameter counts, code assignment."""

import numpy as np
import pytest
import torch

from shopdistill.components.models.embeddings import PQEmbedding, QREmbedding, build_item_embedding, pq_codes


@pytest.mark.parametrize("scheme", ["full", "pq", "qr"])
def test_every_scheme_maps_ids_to_rows_of_its_table_with_a_zero_padding_row(scheme):
    table = build_item_embedding(scheme, n_items=50, d_model=8, groups=4, centroids=16)
    ids = torch.tensor([[3, 1, 0], [50, 7, 0]])
    out = table(ids)
    assert out.shape == (2, 3, 8) and table.weight.shape == (51, 8)
    torch.testing.assert_close(out, table.weight[ids])
    assert torch.count_nonzero(table.weight[0]) == 0 and torch.count_nonzero(out[:, 2]) == 0


def test_pq_trains_only_its_codebooks_and_stores_one_byte_per_code():
    table = PQEmbedding(n_items=12101, d_model=64, groups=8, centroids=256)
    assert sum(p.numel() for p in table.parameters()) == 8 * 256 * 8  # K x d
    assert table.codes.shape == (12101, 8) and table.codes.dtype == torch.uint8
    assert set(table.state_dict()) == {"codes", "codebooks"}  # the codes are saved with the weights


def test_pq_gradients_reach_only_the_codebook_rows_items_use():
    table = PQEmbedding(n_items=20, d_model=4, groups=2, centroids=8)
    table(torch.tensor([[1, 2]])).sum().backward()
    used = {(j, int(table.codes[i, j])) for i in (0, 1) for j in range(2)}
    grad = table.codebooks.grad
    for j in range(2):
        for k in range(8):
            assert bool(grad[j, k].abs().sum() > 0) == ((j, k) in used)


def test_qr_gives_every_item_its_own_pair_of_factors():
    table = QREmbedding(n_items=12101, d_model=16)
    assert table.base == 111 and table.quotient.shape == (110, 16) and table.remainder.shape == (111, 16)
    pairs = set(zip(table.q_index.tolist(), table.r_index.tolist(), strict=True))
    assert len(pairs) == 12101
    assert set(table.state_dict()) == {"quotient", "remainder"}  # the index maps are rebuilt, not stored


def test_pq_codes_of_a_clustered_table_recover_its_clusters():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 4)) * 5
    labels = rng.integers(0, 4, size=200)
    table = centres[labels] + rng.normal(scale=0.01, size=(200, 4))
    codes, books = pq_codes(table, groups=2, centroids=4)
    assert codes.shape == (200, 2) and books.shape == (2, 4, 2)
    for j in range(2):  # each group's codes partition the items as the true clusters do
        pairs = set(zip(labels.tolist(), codes[:, j].tolist(), strict=True))
        assert len(pairs) == 4
        np.testing.assert_allclose(books[j][codes[:, j]], table[:, 2 * j : 2 * j + 2], atol=0.05)


def test_assigned_codebooks_reproduce_the_table_closely():
    table = np.random.default_rng(1).normal(size=(300, 8)).astype(np.float32)
    pq = PQEmbedding(n_items=300, d_model=8, groups=4, centroids=64)
    pq.assign(table)
    rows = pq.weight[1:].detach().numpy()  # (I, d) from the codes and the codebooks
    assert np.linalg.norm(rows - table) / np.linalg.norm(table) < 0.5  # 64 codes per 2-dim block


def test_a_block_with_fewer_distinct_rows_than_codes_leaves_codes_unused():
    table = np.zeros((40, 4), dtype=np.float32)
    table[:20, :2] = 1.0
    codes, books = pq_codes(table, groups=2, centroids=8)
    assert set(codes[:, 0].tolist()) == {0, 1} and set(codes[:, 1].tolist()) == {0}
    assert np.allclose(books[0, 2:], 0) and np.allclose(books[1], 0)


def test_bad_settings_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="equal groups"):
        PQEmbedding(10, 6, groups=4, centroids=8)
    with pytest.raises(ValueError, match="centroids"):
        PQEmbedding(10, 8, groups=4, centroids=1)
    with pytest.raises(ValueError, match="unknown item embedding"):
        build_item_embedding("hash", 10, 8)


@pytest.mark.parametrize(
    "arch,scheme,full_rows", [("sasrec", "pq", 0), ("gru", "pq", 0), ("gru", "pq", 20), ("gru", "qr", 0)]
)
def test_compressed_students_export_to_onnx_with_parity_and_int8(
    arch, scheme, full_rows, tiny_dataset, tiny_data, tmp_path
):
    pytest.importorskip("onnxruntime", reason="needs the [onnx] extra: pip install 'shopdistill[onnx]'")
    from shopdistill.components.config import ModelConfig
    from shopdistill.components.export import OnnxScorer, export_student
    from shopdistill.components.models import build_model
    from shopdistill.components.models.checkpoint import load_model, save_model

    cfg = ModelConfig(arch=arch, d_model=8, n_layers=1, n_heads=1, dropout=0.0, max_len=6, item_embedding=scheme,
                      pq_groups=2, pq_centroids=16, pq_full_rows=full_rows)  # fmt: skip
    torch.manual_seed(0)
    model = build_model(cfg, tiny_data.n_items).eval()
    if scheme == "pq":
        table = np.random.default_rng(0).normal(size=(tiny_data.n_items, 8)).astype(np.float32)
        model.item_emb.assign(table, counts=tiny_data.train_counts[1:])
    save_model(tmp_path / "best.pt", model, cfg, tiny_data.n_items)
    loaded, _, _ = load_model(tmp_path / "best.pt")  # codes and codebooks (or factors) round-trip
    torch.testing.assert_close(loaded.item_emb.weight, model.item_emb.weight)
    result = export_student(tmp_path / "best.pt", tiny_dataset, tmp_path / "onnx")  # checks fp32 parity
    batch = tiny_data.eval_batch(tiny_data.eval_users("test")[:32], "test", 6, mask_history=False)
    fp32 = OnnxScorer(result.path).scores(batch.inputs.numpy())
    with torch.no_grad():
        hidden = model(batch.inputs).hidden[torch.arange(32), batch.lengths - 1]
        expected = (hidden @ model.output_weight().T).numpy()
    np.testing.assert_allclose(fp32, expected, rtol=1e-4, atol=1e-4)
    int8 = OnnxScorer(result.path, quantized=True).scores(batch.inputs.numpy())
    top_a, top_b = np.argsort(-fp32, axis=1)[:, :10], np.argsort(-int8, axis=1)[:, :10]
    assert np.mean([len(set(x) & set(y)) / 10 for x, y in zip(top_a, top_b, strict=True)]) >= 0.8


def test_pq_full_rows_give_the_most_frequent_items_their_own_rows():
    rng = np.random.default_rng(0)
    table = rng.normal(size=(30, 4)).astype(np.float32)
    counts = rng.permutation(30) + 1  # (I,) distinct frequencies
    pq = PQEmbedding(n_items=30, d_model=4, groups=2, centroids=4, full_rows=3)
    assert sum(p.numel() for p in pq.parameters()) == 4 * 4 + 3 * 4  # K x d codebooks + H x d rows
    assert set(pq.state_dict()) == {"codes", "codebooks", "rows", "slot"} and pq.slot.dtype == torch.int16
    pq.assign(table, counts=counts)
    head = np.argsort(-counts)[:3]
    rows = pq.weight[1:].detach().numpy()
    np.testing.assert_allclose(rows[head], table[head])  # exactly their own start
    tail = np.setdiff1d(np.arange(30), head)
    group = np.arange(2)
    coded = pq.codebooks.detach().numpy()[group, pq.codes.numpy()[tail].astype(int)].reshape(-1, 4)
    np.testing.assert_allclose(rows[tail], coded)  # the rest through their codes
    pq(torch.tensor([[int(head[0]) + 1]])).sum().backward()  # a head item trains only its own row
    assert pq.codebooks.grad.abs().sum() == 0 and pq.rows.grad.abs().sum(1).nonzero().numel() == 1
    with pytest.raises(ValueError, match="counts"):
        pq.assign(table)
    with pytest.raises(ValueError, match="full_rows"):
        PQEmbedding(n_items=30, d_model=4, groups=2, centroids=4, full_rows=31)


@pytest.mark.parametrize("scheme", ["pq", "qr"])
def test_inference_keeps_the_built_table_until_a_part_changes(scheme):
    table = build_item_embedding(scheme, n_items=50, d_model=8, groups=4, centroids=16)
    with torch.no_grad():
        first = table.weight
        assert table.weight is first  # kept: a request does not rebuild 50 x 8 rows
        next(table.parameters()).mul_(2.0)  # an in-place change (an optimiser step, a loaded state)
        rebuilt = table.weight
    assert rebuilt is not first and not torch.equal(rebuilt, first)
    torch.testing.assert_close(rebuilt, table._table())
    assert table.weight.requires_grad and table.weight is not rebuilt  # training always rebuilds


@pytest.mark.parametrize("scheme", ["pq", "qr"])
def test_validation_after_a_fused_adamw_step_sees_the_updated_table(scheme):
    # fused AdamW updates parameters without bumping their version counters
    torch.manual_seed(0)
    table = build_item_embedding(scheme, n_items=50, d_model=8, groups=4, centroids=16)
    opt = torch.optim.AdamW(table.parameters(), lr=0.1, fused=True)
    for _ in range(3):
        with torch.no_grad():
            before = table.weight.clone()  # a validation pass keeps the table
        table(torch.tensor([[1, 2, 3]])).pow(2).sum().backward()
        opt.step()
        opt.zero_grad()
        with torch.no_grad():
            after = table.weight
            assert not torch.equal(after, before)
            torch.testing.assert_close(after, table._table())
