"""Time ``components.kernels.item_scores`` against the default ``h @ W.T`` at the widths that matter.

python -m shopdistill.benchmarks.kernel_timing
"""

from __future__ import annotations

import time

import torch

from shopdistill.components import kernels


def main(items: int = 12101, repeats: int = 50) -> None:
    torch.set_num_threads(1)
    for d, n in [(16, 1), (16, 256), (64, 346), (128, 256)]:
        h, w = torch.randn(n, d), torch.randn(items, d)
        row = []
        for flag in (False, True):
            kernels.enabled = flag
            kernels.item_scores(h, w)
            t0 = time.perf_counter()
            for _ in range(repeats):
                kernels.item_scores(h, w)
            row.append((time.perf_counter() - t0) / repeats * 1e3)
        print(f"d={d:<4} rows={n:<4} default {row[0]:7.2f} ms   item_scores {row[1]:7.2f} ms")
    kernels.enabled = True


if __name__ == "__main__":
    main()
