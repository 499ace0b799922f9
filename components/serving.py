"""The next-item scorer: the part of a sequence model that serving and export run."""

from __future__ import annotations

import torch
from torch import nn


class NextItemScorer(nn.Module):
    """(B, L) right-padded item ids -> (B, I) scores of the next item (column c = item c + 1).

    Wraps a student for export (torch.export / MLflow pt2): the last real position is found from the
    padding, so the graph needs no second input.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        hidden = self.model(items).hidden  # (B, L, d)
        last = (items != 0).sum(dim=1).clamp(min=1) - 1  # (B,)
        picked = hidden.gather(1, last[:, None, None].expand(-1, 1, hidden.shape[2])).squeeze(1)  # (B, d)
        return self.model.scores(picked)
