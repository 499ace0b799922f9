"""Evaluate models on the validation or test split, and compare several side by side.

``evaluate_model`` gives the full-ranking metrics of ``metrics.py``; ``evaluate_scores`` the same for
any scorer (e.g. an onnxruntime session, ``export.py``). ``compare_models`` adds what a deployment
decision needs: parameter count, size on disk, CPU latency per request at batch 1 with one thread
(p50/p99 over >= 1,000 requests, each a full-catalogue top-10) and throughput at batch 256.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import nn

from shopdistill.components.metrics import KS, RankingAccumulator, mask_seen
from shopdistill.components.models.budget import model_size_bytes
from shopdistill.components.replicas import SINGLE, Replicas
from shopdistill.components.sequences import SequenceData


@torch.no_grad()
def last_position_scores(model: nn.Module, inputs: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """(B, L) right-padded inputs -> (B, I) scores for the next item (column c = item c + 1)."""
    out = model(inputs)
    rows = torch.arange(len(lengths))
    last = out.hidden[rows, lengths - 1]  # (B, d)
    return model.scores(last)


ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``(inputs (B, L) right-padded, lengths (B,)) -> (B, I)`` next-item scores (column c = item c + 1)."""


@torch.no_grad()
def evaluate_scores(
    score_fn: ScoreFn,
    data: SequenceData,
    split: str,
    max_len: int,
    *,
    batch_size: int = 1024,
    mask_history: bool = True,
    ks=KS,
    replicas: Replicas = SINGLE,
) -> dict[str, float]:
    """The metrics of :func:`evaluate_model` for any scorer (a torch model, an onnxruntime session);
    with ``replicas``, each rank scores a share of the users and all get the metrics of all."""
    acc = RankingAccumulator(data.n_items, data.train_counts[1:], ks)
    share = (replicas.rank, replicas.size)
    for batch in data.iter_eval_batches(split, batch_size, max_len, mask_history, share):
        scores = score_fn(batch.inputs, batch.lengths)
        mask_seen(scores, batch.history_rows, batch.history_items - 1)
        acc.update(scores, batch.targets - 1)
    acc.combine(replicas)
    return acc.result()


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    data: SequenceData,
    split: str,
    max_len: int,
    *,
    batch_size: int = 1024,
    mask_history: bool = True,
    ks=KS,
    replicas: Replicas = SINGLE,
) -> dict[str, float]:
    """Full-ranking HR/NDCG/MRR@K, coverage@10 and popularity percentile@10 on ``split``."""
    was_training = model.training
    model.eval()
    result = evaluate_scores(
        partial(last_position_scores, model),
        data,
        split,
        max_len,
        batch_size=batch_size,
        mask_history=mask_history,
        ks=ks,
        replicas=replicas,
    )
    model.train(was_training)
    return result


@torch.no_grad()
def latency_profile(
    model: nn.Module,
    data: SequenceData,
    max_len: int,
    *,
    requests: int = 1000,
    throughput_batch: int = 256,
    warmup: int = 50,
    seed: int = 0,
) -> dict[str, float]:
    """p50/p99 latency (ms) of one request (batch 1, full-catalogue top-10) and users/s at batch 256."""
    model.eval()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        users = data.eval_users("test")
        rng = np.random.default_rng(seed)
        picks = rng.choice(users, size=requests + warmup, replace=True)
        times = []
        for i, u in enumerate(picks):
            batch = data.eval_batch(np.array([u]), "test", max_len, mask_history=False)
            t0 = time.perf_counter()
            scores = last_position_scores(model, batch.inputs, batch.lengths)
            torch.topk(scores, 10, dim=1)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
        big = data.eval_batch(rng.choice(users, size=throughput_batch, replace=True), "test", max_len, False)
        runs = []
        for _ in range(5):
            t0 = time.perf_counter()
            torch.topk(last_position_scores(model, big.inputs, big.lengths), 10, dim=1)
            runs.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(threads)
    ms = np.array(times) * 1000
    return {
        "latency_p50_ms": float(np.percentile(ms, 50)),
        "latency_p99_ms": float(np.percentile(ms, 99)),
        "throughput_users_per_s": float(throughput_batch / np.median(runs)),
        "latency_requests": len(times),
    }


@dataclass
class ComparisonReport:
    split: str
    rows: dict[str, dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {"split": self.split, "rows": self.rows, "meta": self.meta}, indent=2, default=float
        )

    def to_markdown(self) -> str:
        cols = ["NDCG@10", "HR@10", "MRR@10", "NDCG@20", "HR@20", "coverage@10", "popularity_pct@10"]
        head = ["model", "params", "size MB", *cols, "p50 ms", "p99 ms", "users/s @256"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for name, r in self.rows.items():
            vals = [name, f"{r['params']:,}", f"{r['size_bytes'] / 1e6:.2f}"]
            vals += [f"{r[c]:.4f}" if c in r else "" for c in cols]
            vals += [
                f"{r['latency_p50_ms']:.2f}" if "latency_p50_ms" in r else "",
                f"{r['latency_p99_ms']:.2f}" if "latency_p99_ms" in r else "",
                f"{r['throughput_users_per_s']:,.0f}" if "throughput_users_per_s" in r else "",
            ]
            lines.append("| " + " | ".join(vals) + " |")
        return "\n".join(lines)


def compare_models(
    models: Mapping[str, tuple[nn.Module, int]],
    data: SequenceData,
    split: str = "test",
    *,
    latency: bool = True,
    requests: int = 1000,
) -> ComparisonReport:
    """Score every ``name -> (model, max_len)`` on the same split; add size and speed."""
    rows: dict[str, dict[str, Any]] = {}
    for name, (model, max_len) in models.items():
        row: dict[str, Any] = {
            "params": sum(p.numel() for p in model.parameters()),
            "size_bytes": model_size_bytes(model),
        }
        row.update(evaluate_model(model, data, split, max_len))
        if latency:
            row.update(latency_profile(model, data, max_len, requests=requests))
        rows[name] = row
    return ComparisonReport(split=split, rows=rows)
