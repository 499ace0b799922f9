"""Stream a verified soft-label cache one row group (a block of whole users) at a time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from shopdistill.components.sequences import BUCKET_WINDOW, length_bucketed
from shopdistill.components.soft_labels.format import (
    DATA_FILE,
    ITEMS_FILE,
    SoftLabelBlock,
    SoftLabelCacheError,
    verify_soft_labels,
)

WINDOW_ROWS = 65_536  # at most ~40 MB of top-100 ids and fp16 logits gathered for length bucketing


class SoftLabelReader:
    """Streams a verified cache one row group (a block of whole users) at a time."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.manifest = verify_soft_labels(self.path)
        # one file, or the parts of a sharded cache in order (shards.py)
        files = [pq.ParquetFile(self.path / name) for name in self.manifest.get("parts", [DATA_FILE])]
        self._groups = [(f, i) for f in files for i in range(f.num_row_groups)]
        self.has_hidden = "hidden" in files[0].schema_arrow.names
        self._logits_dtype = np.float16 if self.manifest.get("logits_dtype") == "float16" else np.float32

    def teacher_items(self) -> np.ndarray:
        """The teacher's item embeddings (I, D) (see :func:`teacher_item_embeddings`; checked with the
        rest of the cache when the reader opened it)."""
        if ITEMS_FILE not in self.manifest["files"]:
            raise SoftLabelCacheError(
                f"{self.path} holds no teacher item embeddings; delete it and run the soft-label stage "
                "again to rebuild it"
            )
        return np.load(self.path / ITEMS_FILE, allow_pickle=False)  # never unpickle a stored file

    @property
    def num_row_groups(self) -> int:
        return len(self._groups)

    def read_block(self, index: int) -> SoftLabelBlock:
        file, group = self._groups[index]
        t = file.read_row_group(group)

        def fixed(name: str, dtype) -> np.ndarray:
            col = t.column(name).combine_chunks()
            width = col.type.list_size
            return col.values.to_numpy(zero_copy_only=False).astype(dtype).reshape(-1, width)

        return SoftLabelBlock(
            users=t.column("user_id").to_numpy().astype(np.int64),
            positions=t.column("pos").to_numpy().astype(np.int64),
            targets=t.column("target").to_numpy().astype(np.int64),
            topk_ids=fixed("topk_ids", np.int32),  # stored dtypes: no epoch-wide widening copies
            topk_logits=fixed("topk_logits", self._logits_dtype),
            hidden=fixed("hidden", np.float32) if self.has_hidden else None,
        )

    def iter_blocks(self, rng: np.random.Generator | None = None) -> Iterator[SoftLabelBlock]:
        order = rng.permutation(self.num_row_groups) if rng is not None else range(self.num_row_groups)
        for i in order:
            yield self.read_block(int(i))

    def iter_user_batches(
        self,
        batch_size: int,
        lengths: np.ndarray,
        rng: np.random.Generator | None = None,
        window_batches: int = BUCKET_WINDOW,
        window_rows: int = WINDOW_ROWS,
    ) -> Iterator[tuple[np.ndarray, SoftLabelBlock]]:
        """Yield ``(users, rows)``: student batches of users (similar lengths together) with their
        cache rows. Blocks are read in shuffled order and gathered into windows of at least
        ``window_batches`` batches of users before bucketing by length, the window plain training
        buckets in (:func:`~components.sequences.length_bucketed`): per 2,048-user block alone the
        batches' longest sequences sum to ~20% more steps (Beauty), which a GRU student pays in full.
        A window also closes at ``window_rows`` cache rows, so memory stays bounded by a fixed size,
        not the cache (long-history shops get one row group per window, as before). ``lengths`` is
        per user id."""
        pending: list[SoftLabelBlock] = []
        n_users = n_rows = 0
        for block in self.iter_blocks(rng):
            pending.append(block)
            n_users += len(np.unique(block.users))
            n_rows += len(block.users)
            del block  # the window's copy is the only one kept while its batches are consumed
            if n_users >= batch_size * window_batches or n_rows >= window_rows:
                window = _concat(pending)
                pending.clear()
                n_users = n_rows = 0
                yield from _bucketed(window, batch_size, lengths, rng, window_batches)
                del window
        if pending:
            window = _concat(pending)
            pending.clear()
            yield from _bucketed(window, batch_size, lengths, rng, window_batches)


def _bucketed(
    window: SoftLabelBlock, batch_size: int, lengths: np.ndarray, rng: np.random.Generator | None, n: int
) -> Iterator[tuple[np.ndarray, SoftLabelBlock]]:
    if len(window.users) == 0:
        return
    starts = np.flatnonzero(
        np.r_[True, window.users[1:] != window.users[:-1]]
    )  # a user's rows are contiguous
    users, ends = window.users[starts], np.r_[starts[1:], len(window.users)]
    span = dict(zip(users.tolist(), zip(starts.tolist(), ends.tolist(), strict=True), strict=True))
    for chunk in length_bucketed(users, lengths[users], batch_size, rng, window=n):
        idx = np.concatenate([np.arange(*span[u]) for u in chunk.tolist()])
        yield chunk, _take(window, idx)


def _concat(blocks: list[SoftLabelBlock]) -> SoftLabelBlock:
    if len(blocks) == 1:
        return blocks[0]
    hidden = [b.hidden for b in blocks]
    return SoftLabelBlock(
        users=np.concatenate([b.users for b in blocks]),
        positions=np.concatenate([b.positions for b in blocks]),
        targets=np.concatenate([b.targets for b in blocks]),
        topk_ids=np.concatenate([b.topk_ids for b in blocks]),
        topk_logits=np.concatenate([b.topk_logits for b in blocks]),
        hidden=None if hidden[0] is None else np.concatenate(hidden),
    )


def _take(block: SoftLabelBlock, idx: np.ndarray) -> SoftLabelBlock:
    return SoftLabelBlock(
        users=block.users[idx],
        positions=block.positions[idx],
        targets=block.targets[idx],
        topk_ids=block.topk_ids[idx],
        topk_logits=block.topk_logits[idx],
        hidden=block.hidden[idx] if block.hidden is not None else None,
    )
