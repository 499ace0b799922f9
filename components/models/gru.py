"""GRU4Rec-style student (Hidasi et al., ICLR 2016), trained with full-softmax cross-entropy.

Item embedding -> GRU -> LayerNorm; scores through the tied item embedding. Structurally different
from SASRec (recurrent, no attention), so distillation is shown across architectures, not only widths.
"""

from __future__ import annotations

import torch
from torch import nn

from shopdistill.components.models import ModelOutput, catalogue_scores
from shopdistill.components.models.layers import Dropout


class GRURec(nn.Module):
    def __init__(
        self, n_items: int, d_model: int, n_layers: int, dropout: float, items: nn.Module | None = None
    ):
        super().__init__()
        self.d_model = d_model
        # (I + 1, d): the full table, or a compressed one (models/embeddings.py)
        self.item_emb = nn.Embedding(n_items + 1, d_model, padding_idx=0) if items is None else items
        self.drop = Dropout(dropout)
        self.gru = nn.GRU(
            d_model, d_model, num_layers=n_layers, batch_first=True, dropout=dropout if n_layers > 1 else 0.0
        )
        self.norm = nn.LayerNorm(d_model)
        if items is None:
            nn.init.normal_(self.item_emb.weight, std=d_model**-0.5)
            with torch.no_grad():
                self.item_emb.weight[0].zero_()

    def forward(self, items: torch.Tensor) -> ModelOutput:
        # items: (B, L) right-padded; position t only sees positions <= t
        out, _ = self.gru(self.drop(self.item_emb(items)))  # (B, L, d)
        return ModelOutput(hidden=self.norm(out), layers=[out])

    def scores(self, hidden: torch.Tensor) -> torch.Tensor:
        return catalogue_scores(hidden, self.item_emb.weight)

    def output_weight(self) -> torch.Tensor:
        # (I, d): row c scores item c + 1 (the padding row left out)
        return self.item_emb.weight[1:]
