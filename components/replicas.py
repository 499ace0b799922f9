"""The processes of one data-parallel training run, as the training loop sees them.

:func:`~shopdistill.components.training.loop.fit` runs unchanged in every DDP worker
(``training/distributed.py``); through :class:`Replicas` the ranks validate on a share of the users
each and add up their metric sums (so every rank sees the same scores and stops at the same epoch),
average the epoch's losses, stop together when the wall-clock budget runs out on any, and leave the
checkpoints and ``best.pt`` to the first rank (rank 0). One process is ``Replicas()``: no
collective calls at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class Replicas:
    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any (a collective call: all ranks must make it)."""
        if self.size == 1:
            return flag
        box = torch.tensor([int(flag)])
        dist.all_reduce(box, op=dist.ReduceOp.MAX)
        return bool(box.item())

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """The mean of ``values`` over the ranks, on every rank (a collective call)."""
        if self.size == 1:
            return values
        box = self.sum(torch.tensor(list(values.values()), dtype=torch.float64))
        return dict(zip(values, (box / self.size).tolist(), strict=True))

    def sum(self, values: torch.Tensor) -> torch.Tensor:
        """The elementwise sum of ``values`` over the ranks, on every rank (a collective call)."""
        if self.size == 1:
            return values
        values = values.clone()
        dist.all_reduce(values)
        return values

    def share(self, value: T) -> T:
        """Rank 0's ``value`` on every rank (a collective call: all ranks must make it)."""
        if self.size == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]


SINGLE = Replicas()
