"""The hard-label objective of the training loop: full-softmax or sampled-softmax cross-entropy."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from shopdistill.components.distill.fused import linear_softmax_loss
from shopdistill.components.sequences import TrainBatch

StepLoss = Callable[[TrainBatch], tuple[torch.Tensor, dict[str, float]]]


def negative_proposal(train_counts: np.ndarray, sampling: str) -> torch.Tensor | None:
    """The distribution sampled negatives are drawn from, over item ids (index 0, padding, gets 0).

    ``uniform``: None (every item alike). ``mixed``: half uniform, half by training popularity, so
    the frequent items a full softmax pushes down hardest are drawn often while every item keeps at
    least half its uniform chance (bounded logQ corrections).
    """
    if sampling == "uniform":
        return None
    if sampling != "mixed":
        raise ValueError(f"unknown negative sampling {sampling!r}; expected 'uniform' or 'mixed'")
    counts = torch.as_tensor(train_counts, dtype=torch.float64)[1:]
    n_items = len(counts)
    pop = (
        counts / counts.sum()
        if counts.sum() > 0
        else torch.full((n_items,), 1.0 / n_items, dtype=torch.float64)
    )
    q = 0.5 / n_items + 0.5 * pop
    return torch.cat([torch.zeros(1, dtype=torch.float64), q]).float()


def hard_label_loss(
    model: nn.Module, sampled_negatives: int | None = None, proposal: torch.Tensor | None = None
) -> StepLoss:
    """Cross-entropy of the next item at every real position.

    Full softmax over the catalogue by default. With ``sampled_negatives=S`` (for very large
    catalogues, or a faster epoch): sampled softmax (Jean et al., 2015, "On Using Very Large Target
    Vocabulary for Neural Machine Translation"): the target against S negatives drawn per batch and
    shared by all positions, accidental hits masked. Negatives come uniformly (``proposal=None``: the
    logQ correction is a constant and is dropped) or from ``proposal`` (an (I + 1,) distribution over
    item ids, see :func:`negative_proposal`), with every candidate's score corrected by ``- log Q``:

        L = -log softmax([s_t - log Q(t), s_n1 - log Q(n1), ..., s_nS - log Q(nS)])[0]
    """
    log_q = None if proposal is None else torch.log(proposal.clamp_min(1e-30))

    def step(batch: TrainBatch) -> tuple[torch.Tensor, dict[str, float]]:
        out = model(batch.inputs)
        h = out.hidden[batch.mask]  # (N, d)
        targets = batch.targets[batch.mask]  # (N,) item ids
        if sampled_negatives is None:
            # == F.cross_entropy(model.scores(h), targets - 1), without the (N, I) score matrix
            loss = linear_softmax_loss(h, model.output_weight(), targets - 1)[0]
        else:
            weight = model.item_emb.weight  # (I + 1, d)
            if proposal is None:
                negatives = torch.randint(1, weight.shape[0], (sampled_negatives,))  # (S,)
            else:
                negatives = torch.multinomial(proposal, sampled_negatives, replacement=True)  # (S,)
            positive = (h * weight[targets]).sum(dim=1, keepdim=True)  # (N, 1)
            negative = h @ weight[negatives].T  # (N, S)
            if log_q is not None:
                positive = positive - log_q[targets][:, None]
                negative = negative - log_q[negatives][None, :]
            negative = negative.masked_fill(negatives[None, :] == targets[:, None], float("-inf"))
            logits = torch.cat([positive, negative], dim=1)  # (N, 1 + S), the target is column 0
            loss = F.cross_entropy(logits, torch.zeros(len(targets), dtype=torch.long))
        return loss, {"ce": loss.item()}

    return step
