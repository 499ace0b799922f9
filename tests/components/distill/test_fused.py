"""The fused output-layer loss equals the plain (N, I) computation, value and gradients."""

import pytest
import torch
import torch.nn.functional as F

import shopdistill.components.distill.fused as lce
from shopdistill.components.distill.fused import linear_softmax_loss
from shopdistill.components.distill.losses import LogitsKD, RankingKD


def _inputs(n=90, items=257, d=8, k=12, seed=0, every=3):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, d, generator=g, requires_grad=True)
    w = torch.randn(items, d, generator=g, requires_grad=True)
    y = torch.randint(0, items, (n,), generator=g)
    rows = torch.arange(0, n, abs(every))  # every=1: all rows have teacher labels; else only some
    if every < 0:  # labelled rows listed out of order
        rows = rows[torch.randperm(len(rows), generator=g)]
    cols = torch.stack([torch.randperm(items, generator=g)[:k] for _ in rows])
    logits = torch.randn(len(rows), k, generator=g) * 3
    return h, w, y, rows, cols, logits


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
@pytest.mark.parametrize("w_hard,w_kd", [(1.0, 0.0), (1.0, 0.5), (0.0, 1.0), (0.3, 2.0)])
@pytest.mark.parametrize("chunk", [7, 1000])  # several chunks (one partial) and a single one
@pytest.mark.parametrize("every", [1, 3, -1])  # dense, sparse, and all rows but out of order
def test_matches_reference(monkeypatch, temperature, w_hard, w_kd, chunk, every):
    monkeypatch.setattr(lce, "_chunk_rows", lambda n_items, dim: chunk)
    h, w, y, rows, cols, logits = _inputs(every=every)
    loss, ce, kd, _ = linear_softmax_loss(
        h,
        w,
        y,
        w_hard=w_hard,
        kd_rows=rows,
        kd_cols=cols,
        kd_logits=logits,
        w_kd=w_kd,
        temperature=temperature,
    )
    (2.5 * loss).backward()  # the incoming gradient is applied
    gh, gw = h.grad.clone(), w.grad.clone()
    h.grad = w.grad = None

    z = h @ w.T
    ce_ref = F.cross_entropy(z, y)
    kd_ref = LogitsKD(temperature, "full")(z[rows], cols, logits)
    ref = w_hard * ce_ref + w_kd * kd_ref
    (2.5 * ref).backward()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5, abs=1e-6)
    assert ce.item() == pytest.approx(ce_ref.item(), rel=1e-5)
    if w_kd:
        assert kd.item() == pytest.approx(kd_ref.item(), rel=1e-5, abs=1e-6)
    torch.testing.assert_close(gh, h.grad, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(gw, w.grad, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("temperature", [1.0, 2.0])
@pytest.mark.parametrize("w_hard,w_kd,w_rank", [(1.0, 1.0, 0.5), (1.0, 0.0, 0.5), (0.0, 0.0, 2.0)])
@pytest.mark.parametrize("chunk", [7, 1000])
@pytest.mark.parametrize("every", [1, 3, -1])
def test_ranking_kd_matches_reference(monkeypatch, temperature, w_hard, w_kd, w_rank, chunk, every):
    """Ranking KD shares the CE's soft-max: fused, it equals ``RankingKD`` on the full score matrix."""
    monkeypatch.setattr(lce, "_chunk_rows", lambda n_items, dim: chunk)
    h, w, y, rows, cols, logits = _inputs(every=every)
    rank = RankingKD(k=5, lam=2.0)
    loss, ce, kd, rk = linear_softmax_loss(
        h,
        w,
        y,
        w_hard=w_hard,
        kd_rows=rows,
        kd_cols=cols,
        kd_logits=logits,
        w_kd=w_kd,
        temperature=temperature,
        rank_weights=rank.weights,
        w_rank=w_rank,
    )
    (2.5 * loss).backward()
    gh, gw = h.grad.clone(), w.grad.clone()
    h.grad = w.grad = None

    z = h @ w.T
    rk_ref = rank(z[rows], cols)
    ref = (
        w_hard * F.cross_entropy(z, y)
        + w_kd * LogitsKD(temperature, "full")(z[rows], cols, logits)
        + w_rank * rk_ref
    )
    (2.5 * ref).backward()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5, abs=1e-6)
    assert rk.item() == pytest.approx(rk_ref.item(), rel=1e-5)
    assert (kd.item() == 0.0) == (w_kd == 0.0)
    torch.testing.assert_close(gh, h.grad, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(gw, w.grad, rtol=1e-4, atol=1e-7)


def test_ranking_kd_needs_enough_teacher_columns():
    h, w, y, rows, cols, logits = _inputs(k=3)
    with pytest.raises(ValueError, match=r"ranking KD needs the teacher's top-k columns \(k = 5\)"):
        linear_softmax_loss(
            h,
            w,
            y,
            kd_rows=rows,
            kd_cols=cols,
            kd_logits=logits,
            w_kd=1.0,
            rank_weights=RankingKD(k=5).weights,
            w_rank=1.0,
        )


def test_gradient_flows_through_a_sliced_embedding():
    emb = torch.nn.Embedding(11, 4, padding_idx=0)
    h = torch.randn(5, 4, requires_grad=True)
    y = torch.tensor([0, 3, 9, 2, 2])
    linear_softmax_loss(h, emb.weight[1:], y)[0].backward()
    ref_emb = torch.nn.Embedding(11, 4)
    ref_emb.weight.data.copy_(emb.weight.data)
    F.cross_entropy(h.detach() @ ref_emb.weight[1:].T, y).backward()
    torch.testing.assert_close(emb.weight.grad, ref_emb.weight.grad)
    assert emb.weight.grad[0].abs().sum() == 0  # the padding row gets nothing


def test_an_empty_batch_gives_zero_loss_and_gradients():
    h = torch.zeros(0, 4, requires_grad=True)
    w = torch.randn(10, 4, requires_grad=True)
    loss, ce, _, _ = linear_softmax_loss(h, w, torch.zeros(0, dtype=torch.long))
    loss.backward()
    assert loss.item() == 0.0 and ce.item() == 0.0
    assert not w.grad.any()


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match=r"hidden \(N, d\) and weight \(I, d\)"):
        linear_softmax_loss(torch.randn(3, 4), torch.randn(10, 5), torch.zeros(3, dtype=torch.long))
