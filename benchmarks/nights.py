"""Many nights on a partitioned log: warm starts against a cold retrain each night and a frozen model.

For each night of the range, three students are scored on that night's next-day test split:

* ``nightly``: the product's path: the teacher continues from last night's, the KD student from last
  night's nightly student (``training/warm_start.py``), with the configured cold-start cadence;
* ``cold``: teacher and KD student trained from scratch on the same night's data;
* ``frozen``: the first night's nightly student, never retrained (new products score as the mean
  product: its item table grown as a warm start would).

Reported per night: NDCG@10 of each, the wall time of the nightly and the cold night (teacher, soft
labels and student), and the share of the nightly student's top-10 that are products new since the
first night. JSON, markdown and a plot (``nights.png``) under the run folder (``shopdistill bench
nights``).
"""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shopdistill.components.artifacts import write_json_atomic
from shopdistill.components.config import PipelineConfig
from shopdistill.components.data.dataset import prepare_dataset
from shopdistill.components.distill.student import distill_student
from shopdistill.components.evaluation import evaluate_model, last_position_scores
from shopdistill.components.models import build_model
from shopdistill.components.models.checkpoint import load_model
from shopdistill.components.reporting import nights_plot
from shopdistill.components.sequences import SequenceData
from shopdistill.components.soft_labels import cache_soft_labels
from shopdistill.components.training.teacher import train_teacher
from shopdistill.components.training.warm_start import WarmStart, choose, grow_items, warm_train

METRIC = "NDCG@10"


def _quiet(_msg: str) -> None:
    pass


def _night(config: PipelineConfig, night: dt.date) -> PipelineConfig:
    return config.model_copy(update={"data": config.data.model_copy(update={"as_of": night})})


def _train(
    config: PipelineConfig, data: SequenceData, ds, previous: str | None, start: WarmStart | None, root: Path
):
    """Teacher (warm from ``previous`` night's when given), soft labels and the KD student (from
    ``start`` when given), stored under ``root``; returns the student's result and the seconds it all
    took."""
    t0 = time.perf_counter()
    seed = config.runtime.seed
    teacher, run = train_teacher(
        config.teacher, data, ds.sha256, root, config.data.name, seed, previous_dataset=previous, log=_quiet
    )
    cache, _, _ = cache_soft_labels(
        teacher,
        data,
        root,
        teacher_digest=run.checkpoint_sha256,
        dataset_digest=ds.sha256,
        max_len=config.teacher.model.max_len,
        top_k=config.distill.top_k,
    )
    s = config.student
    train = warm_train(s.train, s.warm) if start else s.train
    _, result = distill_student(
        data,
        s.model,
        train,
        config.distill,
        root,
        dataset_digest=ds.sha256,
        cache=cache,
        seed=seed,
        log=_quiet,
        start=start,
    )
    return result, time.perf_counter() - t0, run


def _frozen_score(path: Path, digest: str, data: SequenceData) -> float:
    """The frozen student on tonight's split, its item table grown as a warm start would."""
    model, cfg, _ = load_model(path, digest)
    grown = build_model(cfg, data.n_items)
    grown.load_state_dict(grow_items(model.state_dict(), data.n_items))
    return evaluate_model(grown.eval(), data, "test", cfg.max_len)[METRIC]


def _new_item_share(path: Path, digest: str, data: SequenceData, first_items: int) -> float:
    """Share of the top-10 of test users that are items with an id past the first night's catalogue."""
    model, cfg, _ = load_model(path, digest)
    hits, total = 0, 0
    with torch.no_grad():
        for batch in data.iter_eval_batches("test", 256, cfg.max_len):
            scores = last_position_scores(model, batch.inputs, batch.lengths)
            top = torch.topk(scores, 10, dim=-1).indices + 1  # column c is item c + 1
            hits += int((top > first_items).sum())
            total += top.numel()
    return hits / total if total else 0.0


def _score(path: Path, digest: str, data: SequenceData) -> float:
    model, cfg, _ = load_model(path, digest)
    return evaluate_model(model, data, "test", cfg.max_len)[METRIC]


def run_nights(config: PipelineConfig, first: dt.date, last: dt.date, out: Path) -> dict[str, Any]:
    """Every night from ``first`` to ``last`` of the configured partitioned log (see the module)."""
    rows, previous, start, frozen, first_items = [], None, None, None, None
    for i in range((last - first).days + 1):
        night = first + dt.timedelta(days=i)
        cfg = _night(config, night)
        ds = prepare_dataset(cfg.data, cfg.runtime.root, validate=False).handle
        data = SequenceData.from_path(ds.uri)
        nightly, nightly_s, run = _train(cfg, data, ds, previous, start, cfg.runtime.root)
        # the cold retrains live apart, so the nightly chain never warm-starts from them
        cold_root = cfg.runtime.root / "bench-nights-cold"
        cold, cold_s, _ = (
            _train(cfg, data, ds, None, None, cold_root) if previous else (nightly, nightly_s, run)
        )
        if frozen is None:
            frozen, first_items = (nightly.checkpoint, nightly.checkpoint_sha256), data.n_items
        rows.append(
            {
                "night": night.isoformat(),
                "items": data.n_items,
                "nightly": _score(nightly.checkpoint, nightly.checkpoint_sha256, data),
                "cold": _score(cold.checkpoint, cold.checkpoint_sha256, data),
                "frozen": _frozen_score(*frozen, data),
                "nightly_seconds": round(nightly_s, 1),
                "cold_seconds": round(cold_s, 1),
                "teacher_warm": bool(run.started_from and run.started_from[0]),
                "student_warm": start is not None,
                "new_item_share_top10": _new_item_share(
                    nightly.checkpoint, nightly.checkpoint_sha256, data, first_items
                ),
            }
        )
        previous = ds.sha256
        generation = start.generation + 1 if start else 0
        start = choose(cfg.student.warm, WarmStart(nightly.checkpoint, nightly.checkpoint_sha256, generation))
    return _report(rows, out)


def _report(rows: list[dict[str, Any]], out: Path) -> dict[str, Any]:
    later = rows[1:] or rows
    mean = {k: float(np.mean([r[k] for r in later])) for k in ("nightly", "cold", "frozen")}
    warm_nights = [r for r in later if r["teacher_warm"]]
    cold_time = float(np.mean([r["cold_seconds"] for r in later]))
    summary = {
        "nights": len(rows),
        "mean_after_first": mean,
        "nightly_vs_cold": mean["nightly"] / mean["cold"] if mean["cold"] else float("nan"),
        "frozen_vs_cold": mean["frozen"] / mean["cold"] if mean["cold"] else float("nan"),
        "warm_time_ratio": float(np.mean([r["nightly_seconds"] for r in warm_nights])) / cold_time
        if warm_nights and cold_time
        else float("nan"),
    }
    result = {"rows": rows, "summary": summary}
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "nights.json", result)
    nights_plot(rows, out / "nights.png")
    (out / "nights.md").write_text(_markdown(result) + "\n\n![nights](nights.png)\n")
    return result


def _markdown(result: dict[str, Any]) -> str:
    head = "| night | items | nightly | cold | frozen | nightly s | cold s | teacher warm | new in top-10 |"
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---|---:|"]
    for r in result["rows"]:
        lines.append(
            f"| {r['night']} | {r['items']:,} | {r['nightly']:.4f} | {r['cold']:.4f} | {r['frozen']:.4f} | "
            f"{r['nightly_seconds']:.1f} | {r['cold_seconds']:.1f} | {'yes' if r['teacher_warm'] else 'no'} | "
            f"{r['new_item_share_top10']:.1%} |"
        )
    s = result["summary"]
    lines.append(
        f"\nAfter the first night (mean over {s['nights'] - 1} nights): nightly {s['mean_after_first']['nightly']:.4f}, "
        f"cold {s['mean_after_first']['cold']:.4f} ({s['nightly_vs_cold']:.3f}x), frozen "
        f"{s['mean_after_first']['frozen']:.4f} ({s['frozen_vs_cold']:.3f}x); a warm night takes "
        f"{s['warm_time_ratio']:.2f}x a cold night's wall time."
    )
    return "\n".join(lines)
