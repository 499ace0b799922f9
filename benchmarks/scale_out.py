"""Scale-out benchmark (``shopdistill bench scale-out``): the fanned-out stages, one at a time and on Ray.

Two runs of the pipeline, each ``shopdistill run`` in a process of its own with the same profile,
four student candidates and a data folder of its own (nothing reused between them):

- ``local``: ``runtime.executor: local``, one soft-label pass;
- ``ray``: ``runtime.executor: ray`` on a local Ray instance, the soft labels in ``shards`` parts.

Measured from what the runs record: the candidates' span (first start to last end, from
``candidates.json``), the soft labels' span (one pass: the manifest's seconds; shards: first part's
start to last part's end), the machine's CPU use over each span (sampled every 0.5 s), and whether
the two soft-label caches hold the same rows (ids and positions exactly; logits within the stored
dtype).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from shopdistill.components.artifacts import write_json_atomic
from shopdistill.components.soft_labels import SoftLabelReader

CANDIDATES = (
    "candidates.students=[{name: gru}, {name: sasrec, model: {arch: sasrec}}, "
    "{name: gru-rank, distill: {w_ranking: 2.0}}, {name: sasrec-rank, model: {arch: sasrec}, distill: {w_ranking: 2.0}}]"
)


class CpuSampler:
    """The machine's CPU use (cores busy) every ``every`` seconds, in a thread, until :meth:`stop`."""

    def __init__(self, every: float = 0.5):
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._every = every
        self._thread = threading.Thread(target=self._run, daemon=True)
        psutil.cpu_percent(percpu=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self.samples.append((time.time(), sum(psutil.cpu_percent(percpu=True)) / 100))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def mean(self, start: float, end: float) -> float | None:
        inside = [c for t, c in self.samples if start <= t <= end]
        return round(float(np.mean(inside)), 2) if inside else None


def _run(source: list[str], root: Path, sets: list[str], log: Path) -> float:
    argv = [sys.executable, "-m", "shopdistill.flows.cli", "run", *source]
    for item in [*sets, f"runtime.output_dir={root}"]:
        argv += ["--set", item]
    t0 = time.time()
    with log.open("w") as out:
        code = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False).returncode
    if code not in (0, 3):  # 3: the gate failed, which does not matter here
        raise RuntimeError(f"`shopdistill run` exited with {code}: see {log}")
    return time.time() - t0


def _spans(root: Path) -> dict[str, Any]:
    (candidates,) = root.glob("runs/*/candidates.json")
    rows = json.loads(candidates.read_text())["candidates"]
    spans = [(r["trained"]["from"], r["trained"]["to"]) for r in rows]
    (manifest_path,) = root.glob("soft_labels/*/manifest.json")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("parts"):
        records = [
            json.loads((manifest_path.parent / p).with_suffix(".json").read_text()) for p in manifest["parts"]
        ]
        labels = (min(r["written"]["from"] for r in records), max(r["written"]["to"] for r in records))
    else:
        labels = (None, manifest["seconds"])
    return {
        "candidates": {
            r["name"]: {k: r[k] for k in ("valid_ndcg", "test_ndcg", "params", "chosen")} for r in rows
        },
        "candidates_span": (min(s for s, _ in spans), max(e for _, e in spans)),
        "candidate_seconds": [round(e - s, 2) for s, e in spans],
        "candidate_spans": spans,
        "pids": sorted({r["trained"]["pid"] for r in rows}),
        "soft_labels": manifest_path.parent,
        "soft_labels_span": labels,
        "rows": manifest["rows"],
    }


def _same_rows(a: Path, b: Path) -> dict[str, Any]:
    def rows(path: Path) -> dict[str, np.ndarray]:
        reader = SoftLabelReader(path)
        blocks = [reader.read_block(i) for i in range(reader.num_row_groups)]
        return {
            k: np.concatenate([getattr(x, k) for x in blocks])
            for k in ("users", "positions", "topk_ids", "topk_logits")
        }

    x, y = rows(a), rows(b)
    same_keys = bool(
        np.array_equal(x["users"], y["users"]) and np.array_equal(x["positions"], y["positions"])
    )
    diff = np.abs(x["topk_logits"].astype(np.float32) - y["topk_logits"].astype(np.float32))
    return {
        "same_positions": same_keys,
        "ids_equal_share": round(float((x["topk_ids"] == y["topk_ids"]).mean()), 6) if same_keys else 0.0,
        "max_logit_difference": round(float(diff.max()), 6) if same_keys else None,
    }


def run_scale_out_benchmark(
    out: Path, *, source: tuple[str, ...] = ("--profile", "demo"), shards: int = 2, overrides=()
) -> dict[str, Any]:
    """See the module; ``source``: the ``run`` arguments naming the configuration. JSON and markdown
    in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    common = [*overrides, CANDIDATES]
    setups = {
        "local": [*common, "runtime.executor=local", "runtime.soft_label_shards=1"],
        "ray": [*common, "runtime.executor=ray", f"runtime.soft_label_shards={shards}"],
    }
    sampler, result = CpuSampler(), {"source": " ".join(source), "shards": shards, "runs": {}}
    try:
        for name, sets in setups.items():
            wall = _run(list(source), out / name, sets, out / f"{name}.log")
            result["runs"][name] = {"wall_seconds": round(wall, 1), **_spans(out / name)}
    finally:
        sampler.stop()
    for run in result["runs"].values():
        start, end = run["candidates_span"]
        run["candidates_seconds"] = round(end - start, 2)
        run["candidates_cpu_cores"] = sampler.mean(start, end)
        first, last = run["soft_labels_span"]
        run["soft_labels_seconds"] = round(last - first, 2) if first is not None else last
        run["soft_labels_cpu_cores"] = sampler.mean(first, last) if first is not None else None
    local, ray = result["runs"]["local"], result["runs"]["ray"]
    result["candidates_speedup"] = round(local["candidates_seconds"] / ray["candidates_seconds"], 2)
    result["soft_labels_equal"] = _same_rows(local.pop("soft_labels"), ray.pop("soft_labels"))
    write_json_atomic(out / "scale_out.json", result)
    (out / "scale_out.md").write_text(_markdown(result) + "\n")
    return result


def _chosen(run: dict[str, Any]) -> str:
    return next(name for name, c in run["candidates"].items() if c["chosen"])


def _markdown(result: dict[str, Any]) -> str:
    head = "| run | wall s | candidates s | candidate each s | CPU cores (candidates) | soft labels s | CPU cores (soft labels) | worker pids |"
    lines = [head, "|---|---:|---:|---|---:|---:|---:|---:|"]
    for name, r in result["runs"].items():
        lines.append(
            f"| {name} | {r['wall_seconds']} | {r['candidates_seconds']} | {', '.join(map(str, r['candidate_seconds']))} | "
            f"{r['candidates_cpu_cores']} | {r['soft_labels_seconds']} | {r['soft_labels_cpu_cores'] or ''} | {len(r['pids'])} |"
        )
    eq = result["soft_labels_equal"]
    lines += [
        "",
        f"Candidates: {result['candidates_speedup']}x faster on Ray. Chosen: "
        + "; ".join(f"{n}: {_chosen(r)}" for n, r in result["runs"].items())
        + ".",
        f"Soft labels ({result['runs']['local']['rows']:,} rows): the same positions {'yes' if eq['same_positions'] else 'no'}, "
        f"top-K ids equal in {eq['ids_equal_share']:.4%} of entries, largest logit difference {eq['max_logit_difference']}.",
    ]
    return "\n".join(lines)
