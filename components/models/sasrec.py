"""SASRec (Kang & McAuley, ICDM 2018): a causal Transformer over the item sequence.

Item + learned position embeddings, N pre-norm Transformer blocks with causal self-attention, a final
LayerNorm; the score of item i at position t is <h_t, E_i> with the item embedding E tied to the input.
Trained with full-softmax cross-entropy at every position (stronger than the original one-negative BCE).
Attention is ``scaled_dot_product_attention(..., is_causal=True)``: no mask tensor, so torch.export
(ONNX, MLflow pt2) can trace the model.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from shopdistill.components.models import ModelOutput, catalogue_scores
from shopdistill.components.models.layers import Block, Dropout


class SASRec(nn.Module):
    def __init__(
        self,
        n_items: int,
        d_model: int,
        n_layers: int,
        n_heads: int,
        dropout: float,
        max_len: int,
        ffn_mult: int = 4,
        items: nn.Module | None = None,
    ):
        super().__init__()
        self.d_model, self.max_len = d_model, max_len
        # (I + 1, d): the full table, or a compressed one (models/embeddings.py)
        self.item_emb = nn.Embedding(n_items + 1, d_model, padding_idx=0) if items is None else items
        self.pos_emb = nn.Embedding(max_len, d_model)  # (max_len, d)
        self.drop = Dropout(dropout)
        self.blocks = nn.ModuleList(Block(d_model, n_heads, dropout, ffn_mult) for _ in range(n_layers))
        self.norm = nn.LayerNorm(d_model)
        if items is None:
            nn.init.normal_(self.item_emb.weight, std=d_model**-0.5)
        nn.init.normal_(self.pos_emb.weight, std=0.02)
        if items is None:
            with torch.no_grad():
                self.item_emb.weight[0].zero_()

    def forward(self, items: torch.Tensor) -> ModelOutput:
        # items: (B, L) long, right-padded with 0; only the last max_len positions are used
        items = items[:, -self.max_len :]
        length = items.shape[1]
        pos = torch.arange(length, device=items.device)  # (L,)
        x = self.item_emb(items) * math.sqrt(self.d_model) + self.pos_emb(pos)  # (B, L, d)
        x = self.drop(x)
        layers = []
        for block in self.blocks:
            x = block(x)  # (B, L, d)
            layers.append(x)
        return ModelOutput(hidden=self.norm(x), layers=layers)

    def scores(self, hidden: torch.Tensor) -> torch.Tensor:
        # hidden: (..., d) -> (..., I), column c = item c + 1
        return catalogue_scores(hidden, self.item_emb.weight)

    def output_weight(self) -> torch.Tensor:
        # (I, d): row c scores item c + 1 (the padding row left out)
        return self.item_emb.weight[1:]
