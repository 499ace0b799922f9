"""The catalogue product on the oneDNN path equals ``h @ W.T`` and falls back wherever it must."""

import pytest
import torch

from shopdistill.components import kernels
from shopdistill.components.kernels import item_scores, uses_onednn

needs_onednn = pytest.mark.skipif(
    kernels._ONEDNN_LINEAR is None, reason="this torch build has no usable oneDNN linear kernel"
)


@needs_onednn
@pytest.mark.parametrize("n,d,items", [(32, 16, 1000), (346, 64, 12101), (100, 7, 33)])
def test_onednn_scores_equal_the_plain_product(n, d, items):
    g = torch.Generator().manual_seed(n)
    h, w = torch.randn(n, d, generator=g), torch.randn(items, d, generator=g)
    assert uses_onednn(h, w)
    torch.testing.assert_close(item_scores(h, w), h @ w.T, rtol=1e-5, atol=1e-5)


@needs_onednn
def test_a_slice_of_the_embedding_table_is_a_valid_operand():
    emb = torch.nn.Embedding(51, 8)
    h = torch.randn(40, 8)
    with torch.no_grad():
        assert uses_onednn(h, emb.weight[1:])
        torch.testing.assert_close(item_scores(h, emb.weight[1:]), h @ emb.weight[1:].T)


def test_falls_back_when_autograd_needs_the_product():
    h = torch.randn(64, 8, requires_grad=True)
    w = torch.randn(20, 8)
    assert not uses_onednn(h, w)
    item_scores(h, w).sum().backward()
    torch.testing.assert_close(h.grad, w.sum(0).expand(64, 8))


def test_falls_back_for_small_batches_other_dtypes_and_shapes():
    w = torch.randn(20, 8)
    assert not uses_onednn(torch.randn(kernels.MIN_ROWS - 1, 8), w)  # serving one request
    assert not uses_onednn(torch.randn(64, 8, dtype=torch.float64), w.double())
    assert not uses_onednn(torch.randn(4, 16, 8), w)
    assert not uses_onednn(torch.randn(64, 8), torch.randn(8, 20).T)  # non-contiguous table
    h3 = torch.randn(4, 16, 8)
    torch.testing.assert_close(item_scores(h3, w), h3 @ w.T)


def test_the_switch_turns_the_fast_path_off(monkeypatch):
    monkeypatch.setattr(kernels, "enabled", False)
    assert not uses_onednn(torch.randn(64, 8), torch.randn(20, 8))
