"""Start a student's item embeddings from the teacher's: its rank-d truncated SVD.

The teacher's item embeddings E_T (I, D) are stored with the soft labels (an ensemble's members side by
side). The student, d <= D wide, starts from

    E_T = U S V^T                         (thin SVD, singular values in decreasing order)
    E_S = c * U_d S_d^(1/2)               (I, d): the top-d left singular vectors, each scaled by the
                                           square root of its singular value
    c   = d^(-1/2) / std(U_d S_d^(1/2))   so E_S has the entry scale the models' random init uses

U_d S_d V_d^T is the closest rank-d matrix to E_T (Eckart-Young), so E_S keeps the directions along
which the teacher's items differ most; the square root flattens the spectrum, so the minor directions
of the d kept are not drowned out. Only the item table is transferred (the student's sequence encoder
starts random and may be another architecture): an embedding-level form of feature distillation in
the spirit of hint-based training (FitNets, Romero et al., ICLR 2015), done once at initialisation
instead of through a loss.
"""

from __future__ import annotations

import numpy as np
import torch


def item_init_from_teacher(teacher_items: np.ndarray, d: int) -> torch.Tensor:
    """(I, D) teacher item embeddings -> (I, d) initial student item embeddings (see module docstring)."""
    n_items, width = teacher_items.shape
    if d > width:
        raise ValueError(
            f"distill.item_init=teacher: the student (d={d}) is wider than the teacher's item embeddings "
            f"(D={width}); a rank-{d} start cannot come from them"
        )
    u, s, _ = torch.linalg.svd(
        torch.from_numpy(np.asarray(teacher_items, dtype=np.float32)), full_matrices=False
    )
    x = u[:, :d] * s[:d].sqrt()  # (I, d)
    return x * (d**-0.5 / x.std())
