"""The catalogue product ``h @ W^T`` on the CPU kernel that runs it fastest.

Scores against the whole catalogue are a short-and-wide product: (n, d) x (d, I) with d = 16-128
and I in the tens of thousands. torch's default CPU path for it (MKL sgemm in the x86 wheels) runs
at 10-35 GFLOPS on the AMD EPYC machines this project runs on; oneDNN's linear kernel, shipped in
the same torch build and run on the same thread pool, at 30-90. Measured on Beauty's 12,101 items
(``python -m shopdistill.benchmarks.kernel_timing`` prints these): d=16 x 256 rows 11.8 -> 4.3 ms,
d=64 x 346 rows 26.1 -> 12.5 ms, 1 thread. For a handful of rows (single-request serving) MKL is
faster, so small products keep the default path.

The oneDNN op is torch-internal (``torch.ops.mkldnn._linear_pointwise``, the kernel torch.compile's
CPU backend calls), so it is probed once and used only where it is safe: plain float32 CPU tensors,
no autograd needed, not under tracing or export. Everywhere else this is exactly ``h @ W.T``.
"""

from __future__ import annotations

import torch

MIN_ROWS = 32  # below this MKL's small-product path wins (batch-1 serving: 80 vs 99 us at d=16)
enabled = True  # switch for A/B timing and for tests of the fallback


def _probe_onednn_linear():
    op = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)
    if op is None or not torch.backends.mkldnn.is_available():
        return None
    try:  # private op: check the signature and the result before trusting it
        h, w = torch.randn(40, 8), torch.randn(50, 8)
        if torch.allclose(op(h, w, None, "none", [], ""), h @ w.T, atol=1e-5):
            return op
    except (RuntimeError, TypeError):
        pass
    return None


_ONEDNN_LINEAR = _probe_onednn_linear()


def _plain(t: torch.Tensor) -> bool:
    return (
        (type(t) is torch.Tensor or type(t) is torch.nn.Parameter)
        and t.device.type == "cpu"
        and t.dtype == torch.float32
    )


def uses_onednn(hidden: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether :func:`item_scores` takes the oneDNN path for these operands."""
    return (
        enabled
        and _ONEDNN_LINEAR is not None
        and hidden.dim() == 2
        and hidden.shape[0] >= MIN_ROWS
        and weight.dim() == 2
        and weight.is_contiguous()
        and _plain(hidden)
        and _plain(weight)
        and not (torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad))
        and not torch.compiler.is_compiling()
    )


def item_scores(hidden: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``hidden @ weight.T``: (n, d) x (I, d) -> (n, I) (any leading shape on the fallback path)."""
    if uses_onednn(hidden, weight):
        return _ONEDNN_LINEAR(hidden, weight, None, "none", [], "")
    return hidden @ weight.T
