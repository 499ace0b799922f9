"""Choosing one KD student among candidates trained the same night.

Each candidate (an architecture x width x KD recipe, ``candidates.students`` in the config) is
measured on what the choice may use and on what the report shows:

- validation NDCG@10: the best epoch's, as recorded by its training (the choice uses only this);
- test NDCG@10: reported beside it, never used to choose;
- trainable parameters and the size of its ``best.pt`` in MB;
- the p99 latency of its exported model: batch 1, one thread, full-catalogue top-10 over
  ``latency_requests`` test histories, through onnxruntime when the [onnx] extra is installed
  (the engine a phone or an edge box runs), through torch otherwise (the report says which).

The rule: drop every candidate over a bound (``max_params``, ``max_model_mb``, ``max_p99_ms``); of
the rest, keep the highest validation NDCG@10; a tie goes to fewer parameters, then to the name. When
no candidate fits, nothing is chosen and the run stops with the reasons.

A candidate with ``fill_budget`` (a pq item table) gets its full rows from the catalogue of the run
(:func:`fill_candidates`), so one profile keeps it within the configured student's size on any data.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shopdistill.components.config import CandidatesConfig, PipelineConfig
from shopdistill.components.evaluation import evaluate_model, latency_profile
from shopdistill.components.models.budget import fill_budget, size_budget
from shopdistill.components.models.checkpoint import load_model
from shopdistill.components.sequences import SequenceData


class NoCandidateFitsError(RuntimeError):
    """Every candidate is over a bound; the message lists each one's reasons."""


@dataclass
class CandidateRow:
    name: str
    arch: str
    d_model: int
    valid_ndcg: float
    test_ndcg: float
    params: int
    model_mb: float
    p99_ms: float
    latency_engine: str
    checkpoint: str
    over: list[str] = field(default_factory=list)  # the bounds it is over
    chosen: bool = False
    trained: dict[str, Any] = field(default_factory=dict)  # where and when it trained

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fill_candidates(config: PipelineConfig, n_items: int) -> PipelineConfig:
    """``config`` with each ``fill_budget`` candidate's ``model.pq_full_rows`` sized to this catalogue:
    as many full rows as keep it within ``student.model`` with a full item table."""
    if not any(c.fill_budget for c in config.candidates.students):
        return config
    budget = size_budget(config.student.model, n_items)
    students = []
    for c, (_, student, _) in zip(config.candidates.students, config.student_candidates(), strict=True):
        if c.fill_budget:
            rows = fill_budget(student.model, n_items, budget).pq_full_rows
            c = c.model_copy(update={"model": {**c.model, "pq_full_rows": rows}, "fill_budget": False})
        students.append(c)
    return config.model_copy(
        update={"candidates": config.candidates.model_copy(update={"students": students})}
    )


def _onnx_p99(folder: Path, data: SequenceData, max_len: int, requests: int, seed: int = 0) -> float:
    """p99 ms of one request (batch 1, one thread, top-10 of the whole catalogue) on onnxruntime."""
    from shopdistill.components.export import OnnxScorer

    scorer = OnnxScorer(folder, threads=1)
    users = np.random.default_rng(seed).choice(data.eval_users("test"), size=requests + 20, replace=True)
    times = []
    for i, u in enumerate(users):
        batch = data.eval_batch(np.array([u]), "test", max_len, mask_history=False)
        items = batch.inputs[:, : max(int(batch.lengths[0]), 1)].numpy()
        t0 = time.perf_counter()
        scores = scorer.scores(items)
        np.argpartition(-scores[0], 9)[:10]
        if i >= 20:  # warm-up
            times.append(time.perf_counter() - t0)
    return float(np.percentile(np.array(times) * 1000, 99))


def measure_candidate(
    name: str,
    checkpoint: str | Path,
    valid_ndcg: float,
    data: SequenceData,
    requests: int,
    export_folder: Path | None = None,
) -> CandidateRow:
    """A candidate's row (see the module); ``export_folder``: its verified ONNX export, if any."""
    model, cfg, _ = load_model(checkpoint)
    test = evaluate_model(model, data, "test", cfg.max_len)["NDCG@10"]
    if export_folder is not None:
        p99, engine = _onnx_p99(export_folder, data, cfg.max_len, requests), "onnx"
    else:
        p99, engine = latency_profile(model, data, cfg.max_len, requests=requests)["latency_p99_ms"], "torch"
    return CandidateRow(
        name=name,
        arch=cfg.arch,
        d_model=cfg.d_model,
        valid_ndcg=float(valid_ndcg),
        test_ndcg=float(test),
        params=sum(p.numel() for p in model.parameters() if p.requires_grad),
        model_mb=Path(checkpoint).stat().st_size / 1e6,
        p99_ms=p99,
        latency_engine=engine,
        checkpoint=str(checkpoint),
    )


def _over(row: CandidateRow, bounds: CandidatesConfig) -> list[str]:
    over = []
    if bounds.max_params is not None and row.params > bounds.max_params:
        over.append(f"{row.params:,} parameters > {bounds.max_params:,}")
    if bounds.max_model_mb is not None and row.model_mb > bounds.max_model_mb:
        over.append(f"{row.model_mb:.2f} MB > {bounds.max_model_mb} MB")
    if bounds.max_p99_ms is not None and row.p99_ms > bounds.max_p99_ms:
        over.append(f"p99 {row.p99_ms:.2f} ms > {bounds.max_p99_ms} ms")
    return over


def choose_candidate(rows: list[CandidateRow], bounds: CandidatesConfig) -> CandidateRow:
    """The candidate the rule keeps (see the module); marks ``over`` and ``chosen`` on every row."""
    for row in rows:
        row.over = _over(row, bounds)
    fitting = [r for r in rows if not r.over]
    if not fitting:
        why = "; ".join(f"{r.name}: {', '.join(r.over)}" for r in rows)
        raise NoCandidateFitsError(f"no student candidate fits the bounds: {why}")
    best = min(fitting, key=lambda r: (-r.valid_ndcg, r.params, r.name))
    best.chosen = True
    return best


def why_not(row: CandidateRow, chosen: CandidateRow) -> str:
    """The report's last column for ``row``."""
    if row.chosen:
        return "chosen"
    if row.over:
        return "over: " + ", ".join(row.over)
    if row.valid_ndcg < chosen.valid_ndcg:
        return f"validation NDCG@10 {row.valid_ndcg:.4f} < {chosen.valid_ndcg:.4f}"
    return f"tie on validation, more parameters ({row.params:,}) or later name"


def candidates_markdown(rows: list[CandidateRow], chosen: CandidateRow) -> str:
    head = (
        "| candidate | arch | d | valid NDCG@10 | test NDCG@10 | params | MB | p99 ms | engine | decision |"
    )
    lines = [head, "|---|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in rows:
        lines.append(
            f"| {r.name} | {r.arch} | {r.d_model} | {r.valid_ndcg:.4f} | {r.test_ndcg:.4f} | {r.params:,} | "
            f"{r.model_mb:.2f} | {r.p99_ms:.2f} | {r.latency_engine} | {why_not(r, chosen)} |"
        )
    lines.append(
        "\nChosen on validation NDCG@10 among the candidates within the bounds; test is reported only."
    )
    return "\n".join(lines)
