"""Distillation losses. Each takes student tensors (with gradients) and cached teacher tensors
(constants), so gradients reach only the student and its projector.

The full-catalogue forms of logits and ranking KD run in training inside the fused output layer
(``fused.py``, which is tested against these modules); these are their reference formulas.

Conventions that implementations often get wrong, followed here: KL(teacher || student) is
``kl_div(student_log_probs, teacher_probs)``; ``reduction="batchmean"`` (sum over the distribution,
mean over rows), not ``"mean"``; the soft term is multiplied by T^2 so its gradient scale does not
shrink with the temperature; RKD normalises distances by their mean over off-diagonal pairs and
compares with smooth-L1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LogitsKD(nn.Module):
    """Logits distillation (Hinton, Vinyals & Dean, "Distilling the Knowledge in a Neural Network", 2015).

        L = T^2 * KL(p_T || q_S) = T^2 * (1/N) sum_n sum_k p_T[n,k] (log p_T[n,k] - log q_S[n,k])
        p_T = softmax(z_T / T) over the teacher's cached top-K items

    The cache holds only the teacher's top-K logits, so the student distribution must be stated:

    * ``mode="topk"``: q_S = softmax(z_S / T) restricted to the same K items (both distributions live
      on the K items; zero when the student's K logits equal the teacher's up to a constant);
    * ``mode="full"``: q_S = softmax(z_S / T) over the whole catalogue, compared on the K items
      (the teacher's mass outside its top-K is taken as zero, so the student is also pushed to move
      mass from the tail onto the teacher's top-K; minimal, not zero, when they agree on top-K).

    Args:
        temperature: T > 0; higher T exposes more of the teacher's ranking among non-top items.
    """

    def __init__(self, temperature: float = 2.0, mode: str = "topk"):
        super().__init__()
        if mode not in ("topk", "full"):
            raise ValueError(f"mode must be 'topk' or 'full', not {mode!r}")
        self.t, self.mode = temperature, mode

    def forward(
        self, student_scores: torch.Tensor, topk_cols: torch.Tensor, teacher_logits: torch.Tensor
    ) -> torch.Tensor:
        # student_scores: (N, I) over the catalogue; topk_cols: (N, K) columns; teacher_logits: (N, K)
        if self.mode == "topk":
            return topk_logits_kd(student_scores.gather(1, topk_cols), teacher_logits, self.t)
        p_teacher = F.softmax(teacher_logits / self.t, dim=-1)  # (N, K)
        log_q = F.log_softmax(student_scores / self.t, dim=-1).gather(1, topk_cols)  # (N, K)
        return F.kl_div(log_q, p_teacher, reduction="batchmean") * self.t**2


def topk_logits_kd(student_k: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """``LogitsKD(mode="topk")`` on the student's scores at the teacher's K items (both (N, K))."""
    p_teacher = F.softmax(teacher_logits / temperature, dim=-1)  # (N, K)
    log_q = F.log_softmax(student_k / temperature, dim=-1)  # (N, K)
    return F.kl_div(log_q, p_teacher, reduction="batchmean") * temperature**2


class FeatureKD(nn.Module):
    """Feature distillation (Romero et al., "FitNets: Hints for Thin Deep Nets", ICLR 2015).

        L = mean over positions and teacher dimensions of (W h_S + b - h_T)^2

    ``W`` is a learned linear projector from the student width to the teacher width (the identity when
    they match). It is trained with the student and dropped at export.
    """

    def __init__(self, student_dim: int, teacher_dim: int):
        super().__init__()
        self.projector = nn.Identity() if student_dim == teacher_dim else nn.Linear(student_dim, teacher_dim)

    def forward(self, student_hidden: torch.Tensor, teacher_hidden: torch.Tensor) -> torch.Tensor:
        # student_hidden: (N, d_S); teacher_hidden: (N, d_T)
        return F.mse_loss(self.projector(student_hidden), teacher_hidden)


def _normalised_distances(x: torch.Tensor) -> torch.Tensor:
    d = torch.cdist(x, x)  # (B, B)
    off = ~torch.eye(len(x), dtype=torch.bool, device=x.device)
    mean = d[off].mean().clamp_min(1e-12)
    return d / mean


def _angles(x: torch.Tensor) -> torch.Tensor:
    e = F.normalize(x.unsqueeze(0) - x.unsqueeze(1), p=2, dim=2)  # (B, B, d): e[j, i] = unit(x_i - x_j)
    return torch.bmm(e, e.transpose(1, 2))  # (B, B, B): cos of angle i-j-k


@torch.no_grad()
def _angles_by_distances(x: torch.Tensor) -> torch.Tensor:
    """``_angles(x)`` by the law of cosines, cos(i-j-k) = (D_ji^2 + D_jk^2 - D_ik^2) / (2 D_ji D_jk),
    on pairwise distances taken from the differences themselves (exactly 0 for equal rows, which then
    give 0 like ``F.normalize``), in float64: O(B^2 d + B^3) instead of O(B^3 d). For the teacher side,
    which needs no gradient and is wide (an ensemble's hidden states side by side: d = 384 on Beauty)."""
    x = x.double()
    dist = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist")  # (B, B)
    sq = dist * dist
    inv = torch.where(dist > 0, 1.0 / dist, 0.0)
    cos = sq.unsqueeze(2) + sq.unsqueeze(1) - sq.unsqueeze(0)  # (B, B, B): [j, i, k]
    return cos.mul_(inv.unsqueeze(2)).mul_(inv.unsqueeze(1)).mul_(0.5).float()


class RKDLoss(nn.Module):
    """Relational knowledge distillation (Park, Kim, Lu & Cho, "Relational Knowledge Distillation",
    CVPR 2019), on one representation per sequence within a batch.

        distance: psi_D(t_i, t_j) = ||t_i - t_j|| / mu,  mu = mean over off-diagonal pairs
                  L_D = smooth_l1(psi_D(s), psi_D(t))
        angle:    psi_A(t_i, t_j, t_k) = <unit(t_i - t_j), unit(t_k - t_j)>
                  L_A = smooth_l1(psi_A(s), psi_A(t))
        L = w_distance * L_D + w_angle * L_A     (the paper uses 1 and 2)

    Distances and angles are width-free, so student and teacher widths may differ.
    """

    def __init__(self, w_distance: float = 1.0, w_angle: float = 2.0):
        super().__init__()
        self.w_distance, self.w_angle = w_distance, w_angle

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        # student: (B, d_S); teacher: (B, d_T); B >= 3 for angles to exist
        if len(student) < 2:
            return student.sum() * 0.0
        loss = student.new_zeros(())
        if self.w_distance:
            with torch.no_grad():
                t_d = _normalised_distances(teacher)
            loss = loss + self.w_distance * F.smooth_l1_loss(_normalised_distances(student), t_d)
        if self.w_angle and len(student) >= 3:
            t_a = _angles_by_distances(teacher)
            loss = loss + self.w_angle * F.smooth_l1_loss(_angles(student), t_a)
        return loss


class RankingKD(nn.Module):
    """Ranking distillation (Tang & Wang, "Ranking Distillation", KDD 2018): the teacher's top-K items
    are extra positives for the student, weighted by rank.

        w_r = exp(-r / lambda) / sum_r' exp(-r' / lambda),  r = 0..K-1   (position importance)
        L = - (1/N) sum_n sum_r w_r log softmax(z_S[n])[topk_r]

    With full-softmax students the point-wise positives of the paper become a weighted cross-entropy.

    Args:
        k: how many of the teacher's top items count as positives.
        lam: lambda, the decay of the weights with rank.
    """

    def __init__(self, k: int = 10, lam: float = 3.0):
        super().__init__()
        self.k = k
        self.register_buffer("weights", torch.softmax(-torch.arange(k, dtype=torch.float32) / lam, dim=0))

    def forward(self, student_scores: torch.Tensor, topk_cols: torch.Tensor) -> torch.Tensor:
        # student_scores: (N, I); topk_cols: (N, K >= k), sorted by teacher score
        log_p = F.log_softmax(student_scores, dim=-1).gather(1, topk_cols[:, : self.k])  # (N, k)
        return -(log_p * self.weights).sum(dim=1).mean()
