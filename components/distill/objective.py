"""The distillation objective: hard-label CE plus the enabled KD terms, one temperature for all.

    L = w_hard * CE(hard) + w_logits * KD_logits + w_feature * KD_feature
        + w_relation * KD_relation + w_ranking * KD_ranking

Logits KD over the full catalogue and ranking KD run inside the fused output layer (``fused.py``: no
(N, I) score matrix); top-K logits KD, feature KD and RKD use the reference modules of ``losses.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from shopdistill.components.config import DistillConfig
from shopdistill.components.distill.batches import KDBatch
from shopdistill.components.distill.fused import linear_softmax_loss
from shopdistill.components.distill.losses import FeatureKD, RankingKD, RKDLoss, topk_logits_kd


class DistillationObjective(nn.Module):
    """The weighted sum of hard-label CE and the enabled KD terms; holds the trainable projector.

    One temperature (``cfg.temperature``) serves every tempered term. Full-catalogue logits KD and
    ranking KD are computed inside the fused output layer together with the CE; in ``kd_mode: topk``
    the logits KD is the KL over the teacher's K items (:func:`~losses.topk_logits_kd`).
    """

    def __init__(self, cfg: DistillConfig, student_dim: int, teacher_dim: int | None):
        super().__init__()
        self.cfg = cfg
        self.temperature = cfg.temperature
        self.ranking = RankingKD(cfg.ranking_k, cfg.ranking_lambda)
        self.relation = RKDLoss(cfg.rkd_distance_weight, cfg.rkd_angle_weight)
        self.feature = FeatureKD(student_dim, teacher_dim) if cfg.w_feature > 0 and teacher_dim else None

    def step_loss(self, student: nn.Module) -> Callable[[KDBatch], tuple[torch.Tensor, dict[str, float]]]:
        def step(b: KDBatch) -> tuple[torch.Tensor, dict[str, float]]:
            h = student(b.train.inputs).hidden[b.train.mask]  # (N, d_S)
            loss, parts = self._output_terms(student, h, b)
            for term, value in self._representation_terms(h, b).items():
                loss = loss + getattr(self.cfg, f"w_{term}") * value
                parts[f"kd_{term}"] = value.item()
            return loss, parts

        return step

    def _output_terms(
        self, student: nn.Module, h: torch.Tensor, b: KDBatch
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """CE, logits KD and ranking KD: the terms on the student's scores."""
        cfg, m = self.cfg, b.matched
        kd_full = cfg.w_logits > 0 and cfg.kd_mode == "full"
        ranked = cfg.w_ranking > 0
        loss, ce, kd, rk = linear_softmax_loss(
            h,
            student.output_weight(),
            b.train.targets[b.train.mask] - 1,  # (N,) columns
            w_hard=cfg.w_hard,
            kd_rows=torch.nonzero(m).squeeze(1) if kd_full or ranked else None,
            kd_cols=b.topk_cols,
            kd_logits=b.teacher_logits,
            w_kd=cfg.w_logits if kd_full else 0.0,
            temperature=self.temperature,
            rank_weights=self.ranking.weights,
            w_rank=cfg.w_ranking,
        )
        parts = {"ce": ce.item()}
        if ranked:
            parts["kd_ranking"] = rk.item()
        if kd_full:
            parts["kd_logits"] = kd.item()
        elif cfg.w_logits > 0:  # top-K mode: the student's scores at the teacher's K items only
            z_k = torch.einsum("md,mkd->mk", h[m], student.output_weight()[b.topk_cols])  # (M, K)
            kd = topk_logits_kd(z_k, b.teacher_logits, self.temperature)
            loss = loss + cfg.w_logits * kd
            parts["kd_logits"] = kd.item()
        return loss, parts

    def _representation_terms(self, h: torch.Tensor, b: KDBatch) -> dict[str, torch.Tensor]:
        """Feature KD and RKD: the terms on the student's hidden states."""
        m, terms = b.matched, {}
        if self.feature is not None:
            terms["feature"] = self.feature(h[m], b.teacher_hidden)
        if self.cfg.w_relation > 0:
            # one representation per sequence: its last position, where the teacher row exists
            matched_index = torch.cumsum(m.long(), 0) - 1
            ok = m[b.last_index]
            last = b.last_index[ok]
            terms["relation"] = self.relation(h[last], b.teacher_hidden[matched_index[last]])
        return terms


def uses_cache(cfg: DistillConfig) -> bool:
    """Whether a student with these settings reads the soft-label cache (any KD term or the item start)."""
    weights = (cfg.w_logits, cfg.w_feature, cfg.w_relation, cfg.w_ranking)
    return any(w > 0 for w in weights) or cfg.item_init == "teacher"
