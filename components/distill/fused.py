"""Full-catalogue cross-entropy (and full-softmax logits KD) fused with the output projection.

The scores of N positions against I items form an (N, I) matrix (on Beauty: ~1,000 x 12,101 per
batch, 48 MB). Built whole, the step is bound by memory traffic, not arithmetic: the scores are
written, soft-maxed, turned into a gradient and read twice more by the backward products. Here the
positions are processed in chunks whose (chunk, I) block stays in the CPU cache, and the gradients
with respect to the hidden states and the item embedding are accumulated during the forward pass
(the "fused linear cross-entropy" of Liger-Kernel and Cut Cross-Entropy, in plain PyTorch):

    z_n = h_n W^T                                   (I,) scores of position n
    L   = w_hard * (1/N) sum_n CE(z_n, y_n)
        + w_kd * T^2 * (1/M) sum_{n matched} KL(p_n || softmax(z_n / T))   over the teacher's top-K
        + w_rank * (1/M) sum_{n matched} sum_r -w_r log softmax(z_n)[c_nr]      r < k (ranking KD)
    dL/dz_n = w_hard/N (softmax(z_n) - onehot(y_n)) + w_kd T/M (softmax(z_n / T) - p~_n)
            + w_rank/M (softmax(z_n) - w~_n)

where p_n = softmax(teacher top-K logits / T) and p~_n scatters it onto the catalogue (zero outside
the teacher's top-K; this is ``LogitsKD(mode="full")``); w~_n scatters the ranking weights w_r
onto the teacher's first k items (``RankingKD``: a weighted cross-entropy, so it shares the CE's
soft-max). Values and gradients equal the unfused reference (tested); it never holds more than one
(chunk, I) block, and no extra matrix product is spent on recomputation.
"""

from __future__ import annotations

import torch

from shopdistill.components.kernels import item_scores


def _chunk_rows(n_items: int, dim: int) -> int:
    """Rows per (chunk, I) block. Narrow models are bound by the soft-max's memory traffic and want
    small cache-resident blocks; wide ones by the products, which want tall blocks. The sizes were
    picked by timing Beauty epochs (12,101 items, 2 threads) at 0.25-48 MB blocks per width."""
    block_bytes = min(max(dim // 4, 2), 32) << 20  # d=16: 4 MB, d=64: 16 MB, d>=128: 32 MB
    return max(16, block_bytes // (4 * max(n_items, 1)))


def _scatter_layout(targets, kd_rows, kd_cols, kd_probs, kd_scale, rank_w, w_rank, w_hard):
    """The (N, K + 1) columns of each row's scatter and the values subtracted there: the teacher's K
    items (kd_scale * p_nk, + w_rank/M w_k for the first k) on rows with labels, zeros onto the row's
    own target elsewhere; then the target, w_hard/N. Laid out for the whole batch once."""
    n, m = targets.shape[0], (0 if kd_rows is None else kd_rows.shape[0])
    k = kd_cols.shape[1] if m else 0
    cols = targets[:, None].repeat(1, k + 1)
    vals = torch.zeros((n, k + 1), dtype=torch.float32)
    vals[:, k] = -w_hard / max(n, 1)
    if m:
        kd_vals = kd_probs * -kd_scale  # (M, K)
        if rank_w is not None:
            kd_vals[:, : rank_w.shape[0]] -= rank_w * (w_rank / m)
        cols[kd_rows, :k], vals[kd_rows, :k] = kd_cols, kd_vals
    return cols, vals


def _shared_softmax(h, weight, targets, kd_rows, kd_cols, kd_probs, w_hard, w_kd, rank_w=None, w_rank=0.0):
    """CE alone, or CE + KD (+ ranking KD) at T = 1: the terms share one softmax per row, so each
    (c, I) block is touched by one soft-max, one gather, one scale and one scatter. Per row n the
    gradient is

        g_n = a_n p_n - sum_j v_nj e_(c_nj),   a_n = w_hard/N + (w_kd + w_rank)/M [n has labels]

    where the scatter columns c_n are the teacher's K items plus the target (values w_kd/M p_nk
    + w_rank/M w_k for the first k, and w_hard/N), laid out for the whole batch once; the
    probabilities gathered at the same columns give the CE, KD and ranking values after the loop."""
    n, m = h.shape[0], (0 if kd_rows is None else kd_rows.shape[0])
    k = kd_cols.shape[1] if m else 0
    cols, vals = _scatter_layout(
        targets, kd_rows, kd_cols, kd_probs, w_kd / max(m, 1), rank_w, w_rank, w_hard
    )
    inv_n = 1.0 / max(n, 1)
    coef: float | torch.Tensor = w_hard * inv_n
    kr = 0 if rank_w is None or not m else rank_w.shape[0]
    whole = m > 0 and m == n and bool(torch.equal(kd_rows, torch.arange(n)))  # all rows labelled, in order
    if whole:
        coef = w_hard * inv_n + (w_kd + w_rank) / m
    elif m:
        coef = torch.full((n, 1), w_hard * inv_n, dtype=h.dtype)
        coef[kd_rows] += (w_kd + w_rank) / m
    q = torch.empty((n, k + 1), dtype=h.dtype)  # student probabilities at those columns
    grad_h, grad_w = torch.empty_like(h), torch.zeros_like(weight)
    step = _chunk_rows(weight.shape[0], weight.shape[1])
    for s in range(0, n, step):
        e = min(s + step, n)
        hc = h[s:e]  # (c, d)
        p = torch.softmax(item_scores(hc, weight), dim=1)  # (c, I): scores on the fastest CPU kernel
        torch.gather(p, 1, cols[s:e], out=q[s:e])
        p.mul_(coef if isinstance(coef, float) else coef[s:e])
        p.scatter_add_(1, cols[s:e], vals[s:e])  # p is now the gradient block g
        grad_h[s:e] = p @ weight  # (c, d)
        grad_w.addmm_(p.T, hc)  # (I, d)
    log_q = q.clamp_min(1e-38).log().double()
    ce_sum = -log_q[:, k].sum()
    kd_sum = rank_sum = None
    if m:
        probs = kd_probs.double()
        plogp = torch.where(probs > 0, probs * probs.clamp_min(1e-300).log(), 0.0).sum()
        log_q_kd = log_q[:, :k] if whole else log_q[kd_rows, :k]  # (M, K)
        kd_sum = plogp - (probs * log_q_kd).sum()
        if kr:
            rank_sum = -(log_q_kd[:, :kr] * rank_w.double()).sum()
    return grad_h, grad_w, ce_sum, kd_sum, rank_sum


def _tempered(
    h, weight, targets, kd_rows, kd_cols, kd_probs, w_hard, w_kd, temperature, rank_w=None, w_rank=0.0
):
    """CE + KD (+ ranking KD) at T != 1. Each (c, I) block is shifted by its row maxima mu once; then
    e_T = exp((z - mu) / T) and e = exp(z - mu) give both soft-maxes, softmax(z / T) = e_T / S_T and
    softmax(z) = e / S (two exponentials per score, not three as with a log-sum-exp), and the gradient

        g_n = a_n e_n / S_n + b_n e_Tn / S_Tn - sum_j v_nj e_(c_nj),
        a_n = w_hard/N + w_rank/M [n has labels],   b_n = w_kd T/M [n has labels]

    with the scatter of ``_shared_softmax`` (teacher's K items, then the target). The shifted scores at
    those columns and log S, log S_T give the CE, KD and ranking values after the loop."""
    n, m, k = h.shape[0], kd_rows.shape[0], kd_cols.shape[1]
    kr = 0 if rank_w is None else rank_w.shape[0]
    cols, vals = _scatter_layout(
        targets, kd_rows, kd_cols, kd_probs, w_kd * temperature / m, rank_w, w_rank, w_hard
    )
    coef_a = torch.full((n, 1), w_hard / max(n, 1), dtype=h.dtype)
    coef_a[kd_rows] += w_rank / m
    coef_b = torch.zeros((n, 1), dtype=h.dtype)
    coef_b[kd_rows] = w_kd * temperature / m
    zc = torch.empty((n, k + 1), dtype=h.dtype)  # shifted scores z - mu at those columns
    log_s, log_st = torch.empty((n, 1), dtype=h.dtype), torch.empty((n, 1), dtype=h.dtype)
    grad_h, grad_w = torch.empty_like(h), torch.zeros_like(weight)
    step = _chunk_rows(weight.shape[0], weight.shape[1])
    for s in range(0, n, step):
        e = min(s + step, n)
        hc = h[s:e]  # (c, d)
        z = item_scores(hc, weight)  # (c, I), on the fastest CPU kernel
        z.sub_(z.amax(dim=1, keepdim=True))  # z - mu
        torch.gather(z, 1, cols[s:e], out=zc[s:e])
        e_t = torch.mul(z, 1.0 / temperature).exp_()  # (c, I) exp((z - mu) / T)
        p = z.exp_()  # (c, I) exp(z - mu)
        s_1, s_t = p.sum(dim=1, keepdim=True), e_t.sum(dim=1, keepdim=True)
        torch.log(s_1, out=log_s[s:e])
        torch.log(s_t, out=log_st[s:e])
        p.mul_(coef_a[s:e] / s_1).addcmul_(e_t, coef_b[s:e] / s_t)
        p.scatter_add_(1, cols[s:e], vals[s:e])  # p is now the gradient block g
        grad_h[s:e] = p @ weight  # (c, d)
        grad_w.addmm_(p.T, hc)  # (I, d)
    zc, log_s, log_st = zc.double(), log_s.double(), log_st.double()
    ce_sum = -(zc[:, k] - log_s[:, 0]).sum()
    probs = kd_probs.double()
    plogp = torch.where(probs > 0, probs * probs.clamp_min(1e-300).log(), 0.0).sum()
    zk = zc[kd_rows, :k]  # (M, K)
    kd_sum = plogp - (probs * (zk / temperature - log_st[kd_rows])).sum()
    rank_sum = -((zk[:, :kr] - log_s[kd_rows]) * rank_w.double()).sum() if kr else None
    return grad_h, grad_w, ce_sum, kd_sum, rank_sum


class _LinearSoftmaxLoss(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx, h, weight, targets, kd_rows, kd_cols, kd_probs, w_hard, w_kd, temperature, rank_w, w_rank
    ):
        # h: (N, d); weight: (I, d); targets: (N,) columns; kd_rows: (M,) indices into N;
        # kd_cols: (M, K) columns; kd_probs: (M, K) teacher probabilities at temperature T;
        # rank_w: (k,) ranking weights of the first k of kd_cols, or None
        n = h.shape[0]
        m = 0 if kd_rows is None else kd_rows.shape[0]
        use_kd = m > 0 and w_kd > 0
        use_rank = m > 0 and rank_w is not None and w_rank > 0
        rank = (rank_w, w_rank) if use_rank else (None, 0.0)
        if use_kd and temperature != 1.0:
            parts = _tempered(
                h, weight, targets, kd_rows, kd_cols, kd_probs, w_hard, w_kd, temperature, *rank
            )
        elif use_kd or use_rank:
            parts = _shared_softmax(h, weight, targets, kd_rows, kd_cols, kd_probs, w_hard, w_kd, *rank)
        else:
            parts = _shared_softmax(h, weight, targets, None, None, None, w_hard, 0.0)
        grad_h, grad_w, ce_sum, kd_sum, rank_sum = parts
        ce = ce_sum.float() / max(n, 1)
        kd = (kd_sum.float() * temperature**2 / m) if use_kd else ce.new_zeros(())
        rk = (rank_sum.float() / m) if use_rank else ce.new_zeros(())
        loss = w_hard * ce + (w_kd * kd if use_kd else 0.0) + (w_rank * rk if use_rank else 0.0)
        ctx.save_for_backward(grad_h, grad_w)
        ctx.mark_non_differentiable(ce, kd, rk)
        return loss, ce, kd, rk

    @staticmethod
    def backward(ctx, grad_loss, _grad_ce, _grad_kd, _grad_rank):
        grad_h, grad_w = ctx.saved_tensors
        return (grad_h * grad_loss, grad_w * grad_loss) + (None,) * 9


def linear_softmax_loss(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    *,
    w_hard: float = 1.0,
    kd_rows: torch.Tensor | None = None,
    kd_cols: torch.Tensor | None = None,
    kd_logits: torch.Tensor | None = None,
    w_kd: float = 0.0,
    temperature: float = 1.0,
    rank_weights: torch.Tensor | None = None,
    w_rank: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(loss, ce, kd, ranking)`` for scores ``hidden @ weight.T`` without building the (N, I) matrix.

    Args:
        hidden: (N, d) student hidden states (requires grad).
        weight: (I, d) output item embeddings; score column c is row c of ``weight``.
        targets: (N,) the true next item as a column index.
        kd_rows: (M,) which of the N rows have teacher labels; ``kd_cols`` (M, K) the teacher's top-K
            columns (sorted by the teacher's score) and ``kd_logits`` (M, K) its raw logits there
            (softmaxed at ``temperature`` here).
        rank_weights: (k,) with k <= K, the ranking-KD weights of the teacher's first k items
            (``RankingKD.weights``), applied with ``w_rank`` to the rows with labels.
    Returns the weighted loss (differentiable) and its unweighted parts (for logging; zero when off).
    """
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(
            f"hidden (N, d) and weight (I, d) expected, got {tuple(hidden.shape)} and {tuple(weight.shape)}"
        )
    use_rank = rank_weights is not None and w_rank > 0
    if use_rank and (kd_cols is None or rank_weights.shape[0] > kd_cols.shape[1]):
        raise ValueError(
            f"ranking KD needs the teacher's top-k columns (k = {rank_weights.shape[0]}) in kd_cols, got "
            f"{None if kd_cols is None else tuple(kd_cols.shape)}"
        )
    probs = None
    if kd_rows is not None and w_kd > 0:
        probs = torch.softmax(kd_logits.float() / temperature, dim=1)
    elif kd_rows is not None and use_rank:  # ranking KD alone: the teacher's order, not its probabilities
        probs = hidden.new_zeros(kd_cols.shape)
    return _LinearSoftmaxLoss.apply(
        hidden,
        weight,
        targets,
        kd_rows if probs is not None else None,
        kd_cols,
        probs,
        float(w_hard),
        float(w_kd),
        float(temperature),
        rank_weights if use_rank else None,
        float(w_rank),
    )
