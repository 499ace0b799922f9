"""Item embedding tables for the sequence models: the full table, or a compressed one.

Every model reads its items through ``item_emb``: ``item_emb(ids)`` maps (B, L) ids to (B, L, d) and
``item_emb.weight`` is the (I + 1, d) table, row 0 the padding. The score layer is tied to that table,
so a compressed table shrinks the input and the output layer at once. On a catalogue of 12,101 items
a d=16 student keeps 98% of its parameters in the table; compressed, a d=64 model fits the same bytes.

``full``: ``nn.Embedding``, (I + 1) x d parameters (the teachers' table).

``pq``: sub-item codes, i.e. product quantisation of the item embeddings (RecJPQ: Petrov &
Macdonald, WSDM 2024, "RecJPQ: Training Large-Catalogue Sequential Recommenders"). The d dimensions
are split into m groups of d/m; item i has one code c_ij in [0, K) per group, and its embedding is the
concatenation of the groups' codebook rows:

    e_i = [C_1[c_i1], C_2[c_i2], ..., C_m[c_im]],    C_j in R^(K x d/m)

Trained: the m codebooks, K x d parameters in all. Stored besides: the codes, I x m integers of one
byte each while K <= 256. :meth:`PQEmbedding.assign` quantises a given (I, d) table: each group's
d/m columns clustered into K centroids by k-means (:func:`pq_codes`), the codes the clusters and
the codebooks starting at the centroids. For a KD student that table is the start a full-table
student gets from the teacher's item embeddings (``distill/item_init.py``), so the codes group items
the teacher places close together. A student without a teacher takes its codes from the training
interactions instead (``distill/item_init.py``).

With ``full_rows = H > 0`` the H items most frequent in training keep a full row of their own
(mixed-dimension embeddings by popularity in the spirit of Ginart et al., ISIT 2021: the few items
most sequences contain get the most capacity) and only the long tail is coded:

    e_i = F[s_i]  if item i is among the H most frequent,  else  [C_1[c_i1], ..., C_m[c_im]]

Trained: the codebooks and F (H x d). Stored besides: the codes and s (I integers, two bytes each
while H < 32,768), so the table costs K x d + H x d parameters and I x (m + 2) bytes.

``qr``: the quotient-remainder trick (Shi et al., KDD 2020, "Compositional Embeddings Using
Complementary Partitions for Memory-Efficient Recommendation Systems"): two tables of about sqrt(I)
rows, combined elementwise, with R = ceil(sqrt(I)):

    e_i = Q[(i - 1) // R] * S[(i - 1) % R]

(ceil(I / R) + R) x d parameters and no codes: items that share a quotient or a remainder share one
factor, and no two items share both.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def build_item_embedding(
    scheme: str, n_items: int, d_model: int, groups: int = 8, centroids: int = 256, full_rows: int = 0
) -> nn.Module:
    """The item table of ``scheme`` (full | pq | qr) for ids 1..n_items (0 pads)."""
    if scheme == "full":
        table = nn.Embedding(n_items + 1, d_model, padding_idx=0)  # (I + 1, d)
        nn.init.normal_(table.weight, std=d_model**-0.5)
        with torch.no_grad():
            table.weight[0].zero_()
        return table
    if scheme == "pq":
        return PQEmbedding(n_items, d_model, groups, centroids, full_rows)
    if scheme == "qr":
        return QREmbedding(n_items, d_model)
    raise ValueError(f"unknown item embedding {scheme!r} (full, pq, qr)")


class PQEmbedding(nn.Module):
    """Sub-item codes: item i is the concatenation of one codebook row per group, or one of the
    ``full_rows`` rows of its own (see the module)."""

    def __init__(self, n_items: int, d_model: int, groups: int, centroids: int, full_rows: int = 0):
        super().__init__()
        if d_model % groups:
            raise ValueError(f"pq: d_model {d_model} must split into {groups} equal groups")
        if not 2 <= centroids <= 65536:
            raise ValueError(f"pq: centroids must be in [2, 65536], not {centroids}")
        if not 0 <= full_rows < n_items:
            raise ValueError(
                f"pq: full_rows must be in [0, {n_items:,}) (the rest are coded), not {full_rows:,}"
            )
        self.n_items, self.d_model, self.groups, self.centroids = n_items, d_model, groups, centroids
        self.full_rows = full_rows
        dtype = torch.uint8 if centroids <= 256 else torch.int32
        generator = torch.Generator().manual_seed(0)
        codes = torch.randint(0, centroids, (n_items, groups), generator=generator)  # until assigned
        self.register_buffer("codes", codes.to(dtype))  # (I, m)
        sub = d_model // groups
        self.codebooks = nn.Parameter(torch.randn(groups, centroids, sub) * d_model**-0.5)  # (m, K, d/m)
        if full_rows:
            self.rows = nn.Parameter(torch.randn(full_rows, d_model) * d_model**-0.5)  # (H, d)
            slot = torch.zeros(n_items, dtype=torch.int16 if full_rows < 32768 else torch.int32)
            slot[:full_rows] = torch.arange(1, full_rows + 1, dtype=slot.dtype)  # until assigned
            self.register_buffer("slot", slot)  # (I,) 1 + the item's row in ``rows``, 0: coded

    @property
    def weight(self) -> torch.Tensor:
        return _inference_cached(self, self._table)

    def _table(self) -> torch.Tensor:
        group = torch.arange(self.groups, device=self.codes.device)  # (m,)
        rows = self.codebooks[group, self.codes.long()].reshape(self.n_items, self.d_model)  # (I, d)
        if self.full_rows:
            own = F.pad(self.rows, (0, 0, 1, 0))[self.slot.long()]  # (I, d), zeros where coded
            rows = torch.where((self.slot > 0).unsqueeze(1), own, rows)
        return F.pad(rows, (0, 0, 1, 0))  # (I + 1, d), row 0 zeros

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.weight)  # (B, L, d)

    @torch.no_grad()
    def assign(self, table: np.ndarray, seed: int = 0, counts: np.ndarray | None = None) -> None:
        """Codes and starting codebooks that quantise an (I, d) table (row r: item r + 1), see
        :func:`pq_codes`. With full rows, ``counts`` (I,) are the items' training frequencies: the
        most frequent start their own rows at their table rows and the codes fit the rest."""
        coded = None
        if self.full_rows:
            if counts is None or len(counts) != self.n_items:
                raise ValueError(f"pq with full_rows: assign needs the {self.n_items:,} items' counts")
            head = np.argsort(-np.asarray(counts), kind="stable")[: self.full_rows]  # (H,) rows of table
            self.slot.zero_()
            self.slot[torch.from_numpy(head)] = torch.arange(1, self.full_rows + 1, dtype=self.slot.dtype)
            self.rows.copy_(torch.from_numpy(np.asarray(table, dtype=np.float32)[head]))
            coded = np.ones(self.n_items, dtype=bool)
            coded[head] = False
        codes, books = pq_codes(table, self.groups, self.centroids, seed, fit_rows=coded)
        self.codes.copy_(torch.from_numpy(codes).to(self.codes.dtype))
        self.codebooks.copy_(torch.from_numpy(books))


class QREmbedding(nn.Module):
    """Quotient-remainder embeddings: the elementwise product of two small tables (see the module)."""

    def __init__(self, n_items: int, d_model: int):
        super().__init__()
        self.n_items, self.d_model = n_items, d_model
        self.base = math.isqrt(n_items - 1) + 1 if n_items > 1 else 1  # R = ceil(sqrt(I))
        quotients = -(-n_items // self.base)
        # a product of two N(0, s^2) factors has std s^2: each factor at d^-1/4 gives the full table's d^-1/2
        std = d_model**-0.25
        self.quotient = nn.Parameter(torch.randn(quotients, d_model) * std)  # (ceil(I / R), d)
        self.remainder = nn.Parameter(torch.randn(self.base, d_model) * std)  # (R, d)
        index = torch.arange(n_items)
        self.register_buffer("q_index", index // self.base, persistent=False)  # (I,)
        self.register_buffer("r_index", index % self.base, persistent=False)  # (I,)

    @property
    def weight(self) -> torch.Tensor:
        return _inference_cached(self, self._table)

    def _table(self) -> torch.Tensor:
        rows = self.quotient[self.q_index] * self.remainder[self.r_index]  # (I, d)
        return F.pad(rows, (0, 0, 1, 0))  # (I + 1, d), row 0 zeros

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.weight)  # (B, L, d)


def _inference_cached(module: nn.Module, build: Callable[[], torch.Tensor]) -> torch.Tensor:
    """``build()``, kept while nothing it depends on changes when no gradient is needed.

    A compressed table is rebuilt from its parts on every call (cheap next to a training step); at
    inference that rebuild costs more than the model itself (a request scores one history), so the
    (I + 1, d) table is kept and rebuilt only when a parameter or buffer changes (in place, e.g. a
    loaded state, or moved). Training and tracing (torch.export, TorchScript) always rebuild. A
    forward with gradients also drops the kept table: the optimiser step after it may change the
    parts without a trace in their version counters (fused AdamW does not bump them)."""
    if torch.is_grad_enabled() or torch.compiler.is_compiling() or torch.jit.is_tracing():
        module.__dict__.pop("_cached_table", None)
        return build()
    key = tuple((t.data_ptr(), t._version) for t in (*module.parameters(), *module.buffers()))
    cached = module.__dict__.get("_cached_table")
    if cached is None or cached[0] != key:
        cached = (key, build())
        module.__dict__["_cached_table"] = cached
    return cached[1]


def pq_codes(
    table: np.ndarray, groups: int, centroids: int, seed: int = 0, fit_rows: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Sub-item codes for an (I, d) item table: (I, m) codes and (m, K, d/m) centroids.

    The table's d columns are split into ``groups`` blocks of d/m, and each block's rows (those
    ``fit_rows`` marks, every row by default) are clustered by k-means (scikit-learn) into
    ``centroids`` codes; every row gets its nearest centroid's code. A block with fewer distinct rows
    than codes leaves the extra codes unused (their centroids at zero).
    """
    from sklearn.cluster import KMeans

    x = np.asarray(table, dtype=np.float32)
    n_items, d_model = x.shape
    if d_model % groups:
        raise ValueError(f"pq: d_model {d_model} must split into {groups} equal groups")
    fit = x if fit_rows is None else x[fit_rows]
    sub = d_model // groups
    codes = np.zeros((n_items, groups), dtype=np.int64)
    books = np.zeros((groups, centroids, sub), dtype=np.float32)
    for j in range(groups):
        block = fit[:, j * sub : (j + 1) * sub]
        k = min(centroids, len(np.unique(block, axis=0)))
        fitted = KMeans(n_clusters=k, n_init=1, random_state=seed + j).fit(block)
        codes[:, j] = fitted.labels_ if fit_rows is None else fitted.predict(x[:, j * sub : (j + 1) * sub])
        books[j, :k] = fitted.cluster_centers_
    return codes, books
