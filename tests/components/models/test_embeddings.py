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
    centres = rng.normal(size=(4, 6)) * 5
    labels = rng.integers(0, 4, size=200)
    items = centres[labels] + rng.normal(scale=0.01, size=(200, 6))
    codes, books = pq_codes(items, d_model=4, groups=1, centroids=4)
    assert codes.shape == (200, 1) and books.shape == (1, 4, 4)
    pairs = set(zip(labels.tolist(), codes[:, 0].tolist(), strict=True))
    assert len(pairs) == 4  # the codes partition the items as the true clusters do


def test_assigned_codebooks_reproduce_the_projected_table_closely():
    rng = np.random.default_rng(1)
    items = rng.normal(size=(300, 16)).astype(np.float32)
    table = PQEmbedding(n_items=300, d_model=8, groups=4, centroids=64)
    table.assign(items)
    rows = table.weight[1:].detach().numpy()  # (I, d) reconstructed from codes and centroids
    x = items - items.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    z = x @ vt[:8].T
    z *= 8**-0.5 / z.std()
    relative = np.linalg.norm(rows - z) / np.linalg.norm(z)
    assert relative < 0.5  # 64 codes per 2-dim block of 300 items: most of the table is kept


def test_a_table_narrower_than_the_student_is_padded_with_zero_columns():
    items = np.random.default_rng(2).normal(size=(40, 4))
    codes, books = pq_codes(items, d_model=8, groups=2, centroids=8)
    assert codes.shape == (40, 2) and np.allclose(books[1], 0)  # the second group: padding only


def test_bad_settings_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="equal groups"):
        PQEmbedding(10, 6, groups=4, centroids=8)
    with pytest.raises(ValueError, match="centroids"):
        PQEmbedding(10, 8, groups=4, centroids=1)
    with pytest.raises(ValueError, match="unknown item embedding"):
        build_item_embedding("hash", 10, 8)
