"""A teacher ensemble: several independently trained models whose log-probabilities are averaged.

Distilling an ensemble into one small model is the classic use of knowledge distillation (Hinton et
al. 2015; Bucilua et al. 2006): the ensemble is more accurate than any member, and the student sees
one smoothed distribution instead of several.

    log p_E(i | x) = (1/M) sum_m log softmax(z_m(x))_i       (a normalised geometric mean, up to a
                                                                constant per row: softmax is shift-free)

The ensemble follows the model interface (``forward -> ModelOutput``, ``scores(hidden)``): its hidden
state is the members' hidden states side by side, and ``scores`` splits it again, so evaluation and the
soft-label cache treat it like any single model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from shopdistill.components.models import ModelOutput


class Ensemble(nn.Module):
    def __init__(self, members: list[nn.Module]):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)
        self.widths = [m.d_model for m in members]
        self.d_model = sum(self.widths)
        self.max_len = min(getattr(m, "max_len", 10**9) for m in members)

    def forward(self, items: torch.Tensor) -> ModelOutput:
        # items: (B, L) -> hidden (B, L, sum of member widths)
        outs = [m(items) for m in self.members]
        return ModelOutput(hidden=torch.cat([o.hidden for o in outs], dim=-1), layers=[])

    def scores(self, hidden: torch.Tensor) -> torch.Tensor:
        # hidden: (..., sum d_m) -> (..., I) mean member log-probabilities; column c = item c + 1
        parts = hidden.split(self.widths, dim=-1)
        total = None
        for member, h in zip(self.members, parts, strict=True):
            logp = F.log_softmax(member.scores(h), dim=-1)
            total = logp if total is None else total.add_(logp)
        return total / len(self.members)
