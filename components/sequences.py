"""Per-user chronological sequences from a prepared dataset, and the batches models train on.

A user's items are stored once, in time order, with their split label. For training, the input is a
user's train items without the last one and the target at every position is the next train item
(every position predicts, full-softmax). Validation predicts a user's last validation item from
everything before it; test predicts the last test item from everything before it (train, validation
and the test period's earlier items: the history a live service would see). With the leave-one-out
split (one of each per user) this is exactly the standard protocol.

Batches are right-padded with item 0 to the longest sequence in the batch (never to a global maximum),
so a causal model needs no padding mask: real positions only ever see earlier real positions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from shopdistill.components.data.dataset import Dataset, verify_dataset

PAD = 0


@dataclass(frozen=True)
class TrainBatch:
    users: np.ndarray  # (B,) user ids
    inputs: torch.Tensor  # (B, L) long, right-padded with 0
    targets: torch.Tensor  # (B, L) long, 0 where padded
    mask: torch.Tensor  # (B, L) bool, real positions
    positions: torch.Tensor  # (B, L) long, absolute index of the input position in the user's train input


@dataclass(frozen=True)
class EvalBatch:
    users: np.ndarray  # (B,)
    inputs: torch.Tensor  # (B, L) right-padded
    lengths: torch.Tensor  # (B,) real length of each row (>= 1)
    targets: torch.Tensor  # (B,) the item to rank
    history_rows: torch.Tensor  # (H,) batch row of each already-interacted item
    history_items: torch.Tensor  # (H,) the item


@dataclass(frozen=True)
class SequenceData:
    n_users: int
    n_items: int  # item ids are 1..n_items; 0 is padding
    offsets: np.ndarray  # (U + 1,) start of each user's items in ``items``
    items: np.ndarray  # (N,) int64, chronological per user
    n_train: np.ndarray  # (U,) train items per user (a prefix of the user's sequence)
    valid_index: np.ndarray  # (U,) index into ``items`` of the validation target, -1 if none
    test_index: np.ndarray  # (U,) index into ``items`` of the test target, -1 if none
    train_counts: np.ndarray  # (n_items + 1,) how often each item occurs in train

    @classmethod
    def from_dataset(cls, ds: Dataset) -> SequenceData:
        inter = ds.interactions
        split = inter["split"].to_numpy(dtype=object)
        return cls.from_arrays(
            inter["user_id"].to_numpy(np.int64),
            inter["item_id"].to_numpy(np.int64),
            split == "train",
            split == "valid",
            split == "test",
            len(ds.user_map),
            len(ds.item_map),
        )

    @classmethod
    def from_path(cls, path: str | Path) -> SequenceData:
        """The same as ``from_dataset(load_dataset(path))`` (verified the same way) without building
        the pandas tables: only the user, item and split columns are read, with pyarrow. On a
        6.8M-interaction shop this took the distillation process from 1,749 to 726 MB before its first
        batch (``shopdistill bench speed --only scale --full``)."""
        path = Path(path)
        verify_dataset(path)
        inter = pq.read_table(path / "interactions.parquet", columns=["user_id", "item_id", "split"])
        split = inter.column("split")

        def is_(name: str) -> np.ndarray:
            return pc.fill_null(pc.equal(split, name), False).to_numpy(zero_copy_only=False)

        return cls.from_arrays(
            inter.column("user_id").to_numpy().astype(np.int64, copy=False),
            inter.column("item_id").to_numpy().astype(np.int64, copy=False),
            is_("train"),
            is_("valid"),
            is_("test"),
            pq.ParquetFile(path / "user_map.parquet").metadata.num_rows,
            pq.ParquetFile(path / "item_map.parquet").metadata.num_rows,
        )

    @classmethod
    def from_arrays(
        cls,
        users: np.ndarray,
        items: np.ndarray,
        is_train: np.ndarray,
        is_valid: np.ndarray,
        is_test: np.ndarray,
        n_users: int,
        n_items: int,
    ) -> SequenceData:
        """From the interactions in dataset order (sorted by user, then time)."""
        counts = np.bincount(users, minlength=n_users)
        offsets = np.concatenate([[0], np.cumsum(counts)])
        # train items must form a prefix of each user's sequence (true for leave-one-out and time split)
        n_train = np.bincount(users[is_train], minlength=n_users)
        valid_index = _last_index(users, is_valid, n_users)
        test_index = _last_index(users, is_test, n_users)
        train_counts = np.bincount(items[is_train], minlength=n_items + 1)
        return cls(n_users, n_items, offsets, items, n_train, valid_index, test_index, train_counts)

    # ------------------------------------------------------------------------------ training
    def train_users(self) -> np.ndarray:
        """Users with at least one (input, next item) training pair."""
        return np.flatnonzero(self.n_train >= 2)

    def train_positions(self, max_len: int) -> np.ndarray:
        """Number of predicted positions per user (``n_train - 1`` capped at ``max_len``)."""
        return np.clip(self.n_train - 1, 0, max_len)

    def train_batch(self, users: np.ndarray, max_len: int) -> TrainBatch:
        """Inputs are the last ``max_len`` train items before the last; targets are shifted by one."""
        lengths = np.clip(self.n_train[users] - 1, 0, max_len)  # train_positions of these users only
        width = int(lengths.max())
        inputs = np.zeros((len(users), width), dtype=np.int64)
        targets = np.zeros_like(inputs)
        positions = np.zeros_like(inputs)
        for row, u in enumerate(users):
            n, start = self.n_train[u], self.offsets[u]
            ln = lengths[row]
            first = n - 1 - ln  # absolute index of the first input position used
            inputs[row, :ln] = self.items[start + first : start + n - 1]
            targets[row, :ln] = self.items[start + first + 1 : start + n]
            positions[row, :ln] = np.arange(first, n - 1)
        t_inputs = torch.from_numpy(inputs)
        return TrainBatch(
            users=np.asarray(users),
            inputs=t_inputs,
            targets=torch.from_numpy(targets),
            mask=t_inputs != PAD,
            positions=torch.from_numpy(positions),
        )

    def iter_train_batches(
        self, batch_size: int, max_len: int, rng: np.random.Generator | None, users: np.ndarray | None = None
    ):
        """Shuffled batches of users with similar lengths (little padding), in shuffled order."""
        users = self.train_users() if users is None else users
        for chunk in length_bucketed(users, self.train_positions(max_len)[users], batch_size, rng):
            yield self.train_batch(chunk, max_len)

    # ---------------------------------------------------------------------------- evaluation
    def eval_users(self, split: str) -> np.ndarray:
        index = self.valid_index if split == "valid" else self.test_index
        return np.flatnonzero((index >= 0) & (self._eval_lengths(split) > 0))

    def _eval_lengths(self, split: str) -> np.ndarray:
        index = self.valid_index if split == "valid" else self.test_index
        return np.where(index >= 0, index - self.offsets[:-1], 0)

    def eval_batch(self, users: np.ndarray, split: str, max_len: int, mask_history: bool = True) -> EvalBatch:
        """Input: everything before the target (last ``max_len`` items); history: all of it."""
        index = self.valid_index if split == "valid" else self.test_index
        full = self._eval_lengths(split)[users]
        lengths = np.minimum(full, max_len)
        inputs = np.zeros((len(users), int(lengths.max())), dtype=np.int64)
        hist_rows, hist_items = [], []
        for row, u in enumerate(users):
            start, end = self.offsets[u], index[u]
            inputs[row, : lengths[row]] = self.items[end - lengths[row] : end]
            if mask_history:
                seen = np.unique(self.items[start:end])
                hist_rows.append(np.full(len(seen), row))
                hist_items.append(seen)
        targets = self.items[index[users]]
        return EvalBatch(
            users=np.asarray(users),
            inputs=torch.from_numpy(inputs),
            lengths=torch.from_numpy(lengths),
            targets=torch.from_numpy(targets),
            history_rows=_concat(hist_rows),
            history_items=_concat(hist_items),
        )

    def iter_eval_batches(
        self,
        split: str,
        batch_size: int,
        max_len: int,
        mask_history: bool = True,
        share: tuple[int, int] = (0, 1),
    ):
        """Batches of the split's users; ``share=(i, n)``: only every n-th user from the i-th."""
        users = self.eval_users(split)[share[0] :: share[1]]
        # similar lengths together: the model runs on the batch's longest sequence
        users = users[np.argsort(np.minimum(self._eval_lengths(split)[users], max_len), kind="stable")]
        for i in range(0, len(users), batch_size):
            yield self.eval_batch(users[i : i + batch_size], split, max_len, mask_history)


def _concat(parts: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.concatenate(parts)).long() if parts else torch.zeros(0, dtype=torch.long)


def _last_index(users: np.ndarray, selected: np.ndarray, n_users: int) -> np.ndarray:
    """Index of each user's last selected row, -1 where the user has none."""
    out = np.full(n_users, -1, dtype=np.int64)
    idx = np.flatnonzero(selected)
    # rows are sorted by user: a user's last selected row is where the next one's user differs
    last = np.r_[users[idx][1:] != users[idx][:-1], True] if len(idx) else np.zeros(0, dtype=bool)
    out[users[idx[last]]] = idx[last]
    return out


BUCKET_WINDOW = 50  # batches sorted by length together before the batch order is shuffled


def length_bucketed(
    users: np.ndarray,
    lengths: np.ndarray,
    batch_size: int,
    rng: np.random.Generator | None,
    window: int = BUCKET_WINDOW,
) -> list[np.ndarray]:
    """Split ``users`` into batches of similar length: shuffle, sort by length inside windows of
    ``window`` batches, cut, then shuffle the batch order. Without ``rng`` the order is deterministic."""
    order = rng.permutation(len(users)) if rng is not None else np.arange(len(users))
    batches: list[np.ndarray] = []
    span = batch_size * window
    for start in range(0, len(order), span):
        part = order[start : start + span]
        part = part[np.argsort(lengths[part], kind="stable")]
        batches.extend(users[part[i : i + batch_size]] for i in range(0, len(part), batch_size))
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches
