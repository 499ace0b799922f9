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

A student without a teacher gets the same kind of start from the interactions instead
(:func:`item_init_from_interactions`): the rank-d truncated SVD of the binary user x item matrix of
the training split, the item side V_d S_d^(1/2) scaled the same way. It is how RecJPQ (Petrov &
Macdonald, WSDM 2024) assigns sub-item codes without a teacher, so a no-KD pq student has codes that
group items bought by the same users rather than random ones.
"""

from __future__ import annotations

import numpy as np
import torch

from shopdistill.components.sequences import SequenceData


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


def item_init_from_interactions(data: SequenceData, d: int, seed: int = 0) -> torch.Tensor:
    """(I, d) item factors of the training interactions' truncated SVD (see module docstring)."""
    from scipy.sparse import csr_matrix
    from sklearn.decomposition import TruncatedSVD

    lengths = data.n_train.astype(np.int64)  # (U,) a prefix of each user's items is train
    rows = np.repeat(np.arange(data.n_users), lengths)
    cols = (
        np.concatenate([data.items[o : o + n] for o, n in zip(data.offsets[:-1], lengths, strict=True)]) - 1
    )
    matrix = csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(data.n_users, data.n_items))
    matrix.data[:] = 1.0  # binary: a repeated purchase counts once
    k = min(d, min(matrix.shape) - 1)
    svd = TruncatedSVD(n_components=k, algorithm="randomized", random_state=seed).fit(matrix)
    x = svd.components_.T * np.sqrt(svd.singular_values_)  # (I, k)
    x = np.pad(x, ((0, 0), (0, d - k)))  # a tiny catalogue has fewer directions than d
    return torch.from_numpy((x * (d**-0.5 / max(x.std(), 1e-12))).astype(np.float32))
