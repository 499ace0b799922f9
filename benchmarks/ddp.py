"""DDP benchmark (``shopdistill bench ddp``): one teacher member trained by 1 process and by N DDP workers.

For each seed the profile's teacher model (one member, its ``teacher.train`` settings, ``--epochs`` to
bound them) trains from the same initial weights three ways, each into a folder of its own:

- ``1 process, 1 thread``: :func:`fit`, as the pipeline trains by default;
- ``N workers, 1 thread each``: :func:`fit_replicated` on a local Ray instance (DDP over gloo), the
  same global batch;
- ``1 process, N threads``: :func:`fit` with torch's intra-op threads, the other way to use N cores
  of one machine.

Reported per setting: the epoch time (training plus rank 0's validation, the mean over epochs and
seeds), the wall time of the whole training (Ray's start-up included), the best validation NDCG@10
and its test NDCG@10. The quality check: DDP's mean validation NDCG@10 over the seeds differs from
one process's by at most the tolerance, ``2 * sqrt(s1^2/n + s2^2/n)`` with s the two settings'
standard deviations over the n seeds (about a 95% interval for the difference of two means).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shopdistill.components.artifacts import write_json_atomic
from shopdistill.components.config import PipelineConfig
from shopdistill.components.data.dataset import prepare_dataset
from shopdistill.components.evaluation import evaluate_model
from shopdistill.components.models import build_model
from shopdistill.components.sequences import SequenceData
from shopdistill.components.training.distributed import Cluster, fit_replicated
from shopdistill.components.training.loop import fit


def run_ddp_benchmark(
    config: PipelineConfig,
    out: Path,
    *,
    workers: int = 2,
    seeds: tuple[int, ...] = (0, 1, 2),
    epochs: int | None = None,
    log=print,
) -> dict[str, Any]:
    """See the module. JSON and markdown in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    prepared = prepare_dataset(config.data, config.runtime.root, report_dir=out)
    data = SequenceData.from_path(prepared.handle.uri)
    t_cfg = config.teacher
    train = t_cfg.train.model_copy(update={"epochs": epochs} if epochs else {})
    settings = {
        "1 process, 1 thread": (1, 1),
        f"{workers} workers, 1 thread each": (workers, 1),
        f"1 process, {workers} threads": (1, workers),
    }
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in settings}
    for seed in seeds:
        for name, (n_workers, threads) in settings.items():
            folder = out / f"w{n_workers}-t{threads}-s{seed}"
            torch.manual_seed(seed)
            model = build_model(t_cfg.model, data.n_items)
            t0 = time.perf_counter()
            args = dict(
                seed=seed, threads=threads, fingerprint=f"bench-ddp-{seed}", log=log, name=folder.name
            )
            if n_workers > 1:
                cfg = train.model_copy(update={"workers": n_workers})
                result = fit_replicated(model, data, t_cfg.model, cfg, folder, cluster=Cluster(), **args)
            else:
                result = fit(model, data, t_cfg.model, train, folder, **args)
            wall = time.perf_counter() - t0
            torch.set_num_threads(1)
            test = evaluate_model(model, data, "test", t_cfg.model.max_len)
            seconds = [h["seconds"] for h in result.history]
            rows[name].append(
                {
                    "seed": seed,
                    "epochs": len(result.history),
                    "best_epoch": result.best_epoch,
                    "epoch_seconds": round(float(np.mean(seconds)), 3),
                    "wall_seconds": round(wall, 1),
                    "valid_ndcg": result.best_valid["NDCG@10"],
                    "test_ndcg": test["NDCG@10"],
                    "valid_per_epoch": [h["valid"]["NDCG@10"] for h in result.history],
                }
            )
            log(f"[bench ddp] {name} seed {seed}: {rows[name][-1]['epoch_seconds']} s/epoch")
    result = {
        "dataset": {"name": config.data.name, "digest": prepared.handle.sha256, "users": data.n_users},
        "model": t_cfg.model.model_dump(mode="json"),
        "train": train.model_dump(mode="json"),
        "seeds": list(seeds),
        "workers": workers,
        "settings": {name: _summary(r) for name, r in rows.items()},
        "runs": rows,
    }
    single, ddp = (result["settings"][n] for n in list(settings)[:2])
    result["ddp_speedup"] = round(single["epoch_seconds"] / ddp["epoch_seconds"], 2)
    result["quality"] = _same_quality(rows[list(settings)[0]], rows[list(settings)[1]])
    write_json_atomic(out / "ddp.json", result)
    (out / "ddp.md").write_text(_markdown(result) + "\n")
    return result


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def mean_sd(key: str) -> tuple[float, float]:
        values = [r[key] for r in runs]
        return round(float(np.mean(values)), 4), round(
            float(np.std(values, ddof=1)) if len(values) > 1 else 0.0, 4
        )

    return {
        "epoch_seconds": round(float(np.mean([r["epoch_seconds"] for r in runs])), 3),
        "wall_seconds": round(float(np.mean([r["wall_seconds"] for r in runs])), 1),
        "valid_ndcg": mean_sd("valid_ndcg"),
        "test_ndcg": mean_sd("test_ndcg"),
    }


def _same_quality(single: list[dict[str, Any]], ddp: list[dict[str, Any]]) -> dict[str, Any]:
    """DDP's mean best validation NDCG@10 against one process's, within two standard errors."""
    a = np.array([r["valid_ndcg"] for r in single])
    b = np.array([r["valid_ndcg"] for r in ddp])
    n = len(a)
    spread = math.sqrt((a.var(ddof=1) + b.var(ddof=1)) / n) if n > 1 else 0.0
    difference = float(b.mean() - a.mean())
    return {
        "difference": round(difference, 5),
        "tolerance": round(2 * spread, 5),
        "per_seed_difference": [round(float(x), 5) for x in b - a],
        "passed": n > 1 and abs(difference) <= 2 * spread,
    }


def _markdown(result: dict[str, Any]) -> str:
    lines = [
        "| setting | s / epoch | wall s (mean) | valid NDCG@10 (mean ± sd) | test NDCG@10 (mean ± sd) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, s in result["settings"].items():
        lines.append(
            f"| {name} | {s['epoch_seconds']} | {s['wall_seconds']} | {s['valid_ndcg'][0]:.4f} ± {s['valid_ndcg'][1]:.4f} "
            f"| {s['test_ndcg'][0]:.4f} ± {s['test_ndcg'][1]:.4f} |"
        )
    q = result["quality"]
    lines += [
        "",
        f"DDP with {result['workers']} workers: {result['ddp_speedup']}x the epoch speed of one process "
        f"(1 thread each). Validation NDCG@10, DDP minus one process: {q['difference']:+.5f} "
        f"(per seed {', '.join(f'{d:+.5f}' for d in q['per_seed_difference'])}); tolerance "
        f"±{q['tolerance']:.5f} (two standard errors over {len(result['seeds'])} seeds): "
        f"{'within' if q['passed'] else 'NOT within'}.",
    ]
    return "\n".join(lines)
