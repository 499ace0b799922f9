"""The distillation study: which kind of knowledge, at which temperature, top-K and student size.

    for each seed: teacher -> soft-label caches (see :func:`cache_spec`; smaller K slice a cache)
        for each variant: train the student (no KD, or KD with the variant's settings)
                          -> validation and test metrics, training seconds
    -> mean and spread over seeds per variant -> choice on validation -> JSON + markdown + plots

Variants come in groups: ``headline`` (the profile's student, no KD vs. KD, SASRec and GRU),
``ablation`` (logits, + feature, + relation, + ranking), ``temperature``, ``top_k``, ``size``
(d = 16, 32, 64 with and without KD) and ``compressed`` (the profile's student architecture at d = 32
and 64 over a compressed item table, pq and qr, with and without KD: models/embeddings.py; a pq
student has d/4 code groups and as many full rows as keep it within the profile's full-table
student's parameters and bytes, ``models/budget.py``). The quick
grid is the headline; ``full=True`` runs every group,
``groups=("headline", "size")`` the ones named.
The choice of a distillation setting uses validation NDCG@10 only; test numbers are reported, never
used to choose. Every stage is stored by what determines it and reused on rerun.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shopdistill.benchmarks.stages import soft_labels_for, student_for, teacher_for
from shopdistill.benchmarks.targets import TEACHER_MIN_NDCG
from shopdistill.components.artifacts import write_json_atomic
from shopdistill.components.config import DistillConfig, ModelConfig, PipelineConfig
from shopdistill.components.data.dataset import prepare_dataset
from shopdistill.components.evaluation import evaluate_model, latency_profile, model_size_bytes
from shopdistill.components.models import build_model, count_parameters
from shopdistill.components.models.budget import fill_budget, size_budget
from shopdistill.components.models.checkpoint import load_model
from shopdistill.components.models.ensemble import Ensemble
from shopdistill.components.sequences import SequenceData
from shopdistill.components.training.runtime import configure_torch

METRICS = ("NDCG@10", "HR@10", "MRR@10", "coverage@10", "popularity_pct@10")
GROUPS = ("headline", "ablation", "temperature", "top_k", "size", "compressed")
COMPRESSED_SCHEMES, COMPRESSED_SIZES = ("pq", "qr"), (32, 64)
PQ_SUB_DIM = 4  # pq students: d / 4 code groups of 4 dimensions, 256 codes each
EPOCH_BUDGETS = (10, 20, 40)  # "same epochs budget": KD vs no KD when training may last only E epochs


@dataclass(frozen=True)
class Variant:
    """One student setting of the study."""

    name: str
    group: str
    arch: str
    d_model: int
    kd: bool
    distill: dict[str, Any] = field(default_factory=dict)  # overrides of the profile's distill section
    model: dict[str, Any] = field(default_factory=dict)  # overrides of the student's model section
    fill: bool = False  # pq: as many full rows as the size budget leaves (:func:`fill_budget`)

    @property
    def shape(self) -> str:
        """What latency depends on: architecture, width and item table."""
        return f"{self.arch}-d{self.d_model}" + (f"-{self.model['item_embedding']}" if self.model else "")

    def model_config(self, config: PipelineConfig) -> ModelConfig:
        update = {"arch": self.arch, "d_model": self.d_model, "n_heads": 1 if self.d_model <= 16 else 2}
        # validated, not model_copy'd, so an override keys the same stored student however it is written
        return ModelConfig.model_validate({**config.student.model.model_dump(), **update, **self.model})


def study_grid(
    config: PipelineConfig,
    full: bool = False,
    archs: tuple[str, ...] = ("sasrec", "gru"),
    groups: tuple[str, ...] | None = None,
    variants: tuple[str, ...] | None = None,
) -> list[Variant]:
    """The quick grid (headline), the full one (every group of the study) or the ``groups``
    named. ``archs`` limits the headline to some student architectures (the other groups are SASRec
    students); ``variants`` to the rows named. A variant that two groups share (the size group's
    student at the profile's width is the headline's) is trained and reported once."""
    if groups is None:
        groups = GROUPS if full else ("headline",)
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown or not groups:
        raise ValueError(f"unknown study group(s) {unknown or list(groups)}; choose from {', '.join(GROUPS)}")
    grid = [v for v in _all_variants(config, archs) if v.group in groups]
    unique: dict[str, Variant] = {}
    for v in grid:
        unique.setdefault(v.name, v)  # the first group that names it keeps it
    if variants:
        missing = sorted(set(variants) - set(unique))
        if missing:
            raise ValueError(f"no variant(s) {missing} in the grid; it has {', '.join(unique)}")
        return [v for name, v in unique.items() if name in variants]
    return list(unique.values())


def _all_variants(config: PipelineConfig, archs: tuple[str, ...]) -> list[Variant]:
    d = config.student.model.d_model
    grid = [
        Variant(f"{a}-d{d}-{'kd' if kd else 'nokd'}", "headline", a, d, kd)
        for a in archs
        for kd in (False, True)
    ]
    arch = config.student.model.arch
    grid += [
        Variant(
            f"{arch}-d{size}-{scheme}-{'kd' if kd else 'nokd'}",
            "compressed",
            arch,
            size,
            kd,
            model={"item_embedding": scheme, **({"pq_groups": size // PQ_SUB_DIM} if scheme == "pq" else {})},
            fill=scheme == "pq",
        )
        for scheme in COMPRESSED_SCHEMES
        for size in COMPRESSED_SIZES
        for kd in (False, True)
    ]
    if "sasrec" not in archs:
        return grid
    logits = {"w_feature": 0.0, "w_relation": 0.0, "w_ranking": 0.0}
    grid += [
        Variant(f"sasrec-d{d}-logits", "ablation", "sasrec", d, True, logits),
        Variant(f"sasrec-d{d}-logits+feature", "ablation", "sasrec", d, True, {**logits, "w_feature": 1.0}),
        Variant(
            f"sasrec-d{d}-logits+feature+rkd",
            "ablation",
            "sasrec",
            d,
            True,
            {**logits, "w_feature": 1.0, "w_relation": 1.0},
        ),
        Variant(
            f"sasrec-d{d}-logits+feature+rkd+ranking",
            "ablation",
            "sasrec",
            d,
            True,
            {"w_feature": 1.0, "w_relation": 1.0, "w_ranking": 0.5},
        ),
    ]
    # temperature and top-K are settings of logits KD, whatever other terms the profile adds
    grid += [
        Variant(f"sasrec-d{d}-T{t:g}", "temperature", "sasrec", d, True, {**logits, "temperature": t})
        for t in (1, 2, 4, 8)
    ]
    grid += [
        Variant(f"sasrec-d{d}-K{k}", "top_k", "sasrec", d, True, {**logits, "top_k": k})
        for k in (20, 50, 100, 200)
    ]
    for size in (16, 32, 64):
        grid += [
            Variant(f"sasrec-d{size}-{'kd' if kd else 'nokd'}", "size", "sasrec", size, kd)
            for kd in (False, True)
        ]
    return grid


SHARED_CACHE_GROUPS = ("ablation", "temperature", "top_k")


def cache_spec(group: str, config: PipelineConfig) -> tuple[int, bool]:
    """``(top_k, cache_hidden)`` of the soft-label cache a group's students learn from.

    ``headline`` and ``size`` use the profile's cache, so their KD students are the ones the flow and
    ``bench quality`` train. The KD-setting groups share one cache holding the largest top-K any of
    them uses and the teacher's hidden states. The cache is part of a student's stored key, so this
    rule makes a variant's model independent of the other groups run with it: ``--groups ablation``
    today and ``--groups top_k`` tomorrow reuse each other's students.
    """
    top_k, hidden = config.distill.top_k, config.distill.cache_hidden
    if group not in SHARED_CACHE_GROUPS:
        return top_k, hidden
    for v in _all_variants(config, ("sasrec",)):
        if v.kd and v.group in SHARED_CACHE_GROUPS:
            top_k = max(top_k, v.distill.get("top_k", top_k))
            hidden = hidden or v.distill.get("w_feature", 0) > 0 or v.distill.get("w_relation", 0) > 0
    return top_k, hidden


def _summary(values: list[float]) -> dict[str, float]:
    a = np.asarray(values, dtype=float)
    return {
        "mean": float(a.mean()),
        "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
        "min": float(a.min()),
        "max": float(a.max()),
        "n": len(a),
    }


def run_study(
    config: PipelineConfig,
    out_dir: str | Path,
    *,
    seeds: tuple[int, ...] = (0, 1, 2),
    full: bool = False,
    archs: tuple[str, ...] = ("sasrec", "gru"),
    groups: tuple[str, ...] | None = None,
    variants: tuple[str, ...] | None = None,
    teacher_per_seed: bool | None = None,
    requests: int = 500,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run the grid (see :func:`study_grid`) for every seed; write ``study.json``, ``study.md`` and the plots.

    ``teacher_per_seed`` (default: only with ``full``) trains one teacher per seed; otherwise the
    profile's teacher (seed ``runtime.seed``, the one the flow and ``bench quality`` use) serves every
    student seed, so the spread is the students' own and ``seeds=(1, 2)`` extends a ``(0,)`` study.
    """
    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    configure_torch(config.runtime.threads)
    teacher_per_seed = full if teacher_per_seed is None else teacher_per_seed
    grid = study_grid(config, full, archs, groups, variants)
    grid_name = "full" if full and groups is None else "quick" if groups is None else "+".join(groups)
    grid_name += f" ({len(grid)} variants named)" if variants else ""

    prepared = prepare_dataset(config.data, config.runtime.root, report_dir=out_dir)
    data = SequenceData.from_path(prepared.handle.uri)
    digest = prepared.handle.sha256
    budget = size_budget(config.student.model, data.n_items)  # the profile's student, full table
    shapes = {
        v.name: fill_budget(v.model_config(config), data.n_items, budget)
        if v.fill
        else v.model_config(config)
        for v in grid
    }
    log(
        f"study on {config.data.name}: {data.n_users:,} users, {data.n_items:,} items; {len(grid)} variants x "
        f"{len(seeds)} seeds ({grid_name} grid)"
    )

    runs: list[dict[str, Any]] = []
    teachers: dict[int, dict[str, Any]] = {}
    for seed in seeds:
        t_seed = seed if teacher_per_seed else config.runtime.seed
        if t_seed not in teachers:
            t0 = time.perf_counter()
            teacher, t_result = teacher_for(config, data, digest, t_seed, log=log)
            caches = {}
            for spec in dict.fromkeys(cache_spec(v.group, config) for v in grid if v.kd):
                caches[spec] = soft_labels_for(
                    config, data, digest, teacher, t_result, top_k=spec[0], cache_hidden=spec[1]
                )[0]
            teachers[t_seed] = {
                "caches": caches,
                "params": count_parameters(teacher),
                "valid": evaluate_model(teacher, data, "valid", config.teacher.model.max_len),
                "test": evaluate_model(teacher, data, "test", config.teacher.model.max_len),
                "train_seconds": t_result.train_seconds,
                "members": [
                    {
                        "seed": t_seed + i,
                        **{
                            split: evaluate_model(
                                load_model(m.checkpoint)[0], data, split, config.teacher.model.max_len
                            )
                            for split in ("valid", "test")
                        },
                    }
                    for i, m in enumerate(t_result.members)
                ]
                if len(t_result.members) > 1
                else [],
                "wall_seconds": time.perf_counter() - t0,
            }
        for v in grid:
            spec = cache_spec(v.group, config)
            model_cfg = shapes[v.name]
            # validated, not model_copy'd: a setting given as 2 must key the same stored student as 2.0
            distill = (
                DistillConfig.model_validate(
                    {**config.distill.model_dump(), **v.distill, "cache_hidden": spec[1]}
                )
                if v.kd
                else None
            )
            cache = teachers[t_seed]["caches"][spec] if v.kd else None
            t0 = time.perf_counter()
            student, result = student_for(
                config, data, digest, model_cfg, cache, seed, distill=distill, log=log, name=v.name
            )
            valid = evaluate_model(student, data, "valid", model_cfg.max_len)
            test = evaluate_model(student, data, "test", model_cfg.max_len)
            runs.append(
                {
                    "variant": v.name,
                    "seed": seed,
                    "teacher_seed": t_seed,
                    "params": count_parameters(student),
                    "size_bytes": model_size_bytes(student),  # the stored state, codes included
                    "valid": valid,
                    "test": test,
                    "epochs": len(result.history),
                    "best_epoch": result.best_epoch,
                    "train_seconds": sum(h["seconds"] for h in result.history),
                    "valid_curve": [h["valid"]["NDCG@10"] for h in result.history],
                    "wall_seconds": time.perf_counter() - t0,
                }
            )

    # latency depends on the architecture and width only: one measurement each, and the teacher's
    latency: dict[str, dict[str, float]] = {}
    for v in grid:
        key = v.shape
        if key not in latency:
            m_cfg = shapes[v.name]
            latency[key] = latency_profile(
                build_model(m_cfg, data.n_items).eval(), data, m_cfg.max_len, requests=requests
            )
    torch.manual_seed(0)
    members = [build_model(config.teacher.model, data.n_items) for _ in range(config.teacher.ensemble)]
    t_model = members[0] if len(members) == 1 else Ensemble(members)  # an ensemble serves every member
    latency["teacher"] = latency_profile(
        t_model.eval(), data, config.teacher.model.max_len, requests=requests
    )

    result = _aggregate(config, grid, runs, teachers, latency, seeds, grid_name, teacher_per_seed, budget)
    for name, row in result["rows"].items():
        row["model"] = shapes[name].model_dump(mode="json")  # the student as trained (full rows filled in)
    result["dataset"] = {
        "name": config.data.name,
        "digest": digest,
        "users": data.n_users,
        "items": data.n_items,
    }
    result["wall_seconds"] = round(time.perf_counter() - t_start, 1)
    result["machine"] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": config.runtime.threads,
    }
    result["config"] = config.model_dump(mode="json")
    write_json_atomic(out_dir / "study.json", result)
    (out_dir / "study.md").write_text(render_study(result))
    plot_size_curve(result, out_dir)
    plot_epoch_budget(result, out_dir)
    return result


def best_within(curve: list[float], epochs: int) -> float:
    """The best validation score a run had reached after ``epochs`` epochs: what a student trained on a
    budget of that many epochs (keeping its best checkpoint) would ship. A run that stopped earlier
    (early stopping) keeps its best."""
    return max(curve[:epochs])


def _aggregate(
    config, grid, runs, teachers, latency, seeds, grid_name, teacher_per_seed, budget
) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {}
    for v in grid:
        mine = [r for r in runs if r["variant"] == v.name]
        row: dict[str, Any] = {**asdict(v), "params": mine[0]["params"], "seeds": [r["seed"] for r in mine]}
        row["size_bytes"] = mine[0].get("size_bytes")
        for split in ("valid", "test"):
            row[split] = {m: _summary([r[split][m] for r in mine]) for m in METRICS}
        row["valid_within_epochs"] = {
            str(e): _summary([best_within(r["valid_curve"], e) for r in mine]) for e in EPOCH_BUDGETS
        }
        row["train_seconds"] = _summary([r["train_seconds"] for r in mine])
        row["epochs"] = _summary([r["epochs"] for r in mine])
        row["latency_p99_ms"] = latency[v.shape]["latency_p99_ms"]
        rows[v.name] = row
    t_rows = list(teachers.values())
    teacher = {
        "params": t_rows[0]["params"],
        "valid": {m: _summary([t["valid"][m] for t in t_rows]) for m in METRICS},
        "test": {m: _summary([t["test"][m] for t in t_rows]) for m in METRICS},
        "train_seconds": _summary([t["train_seconds"] for t in t_rows]),
        "latency_p99_ms": latency["teacher"]["latency_p99_ms"],
        "seeds": list(teachers),
        "ensemble": config.teacher.ensemble,
    }
    members = [m for t in t_rows for m in t["members"]]
    if members:  # each member alone: the single-model teachers the ensemble is made of
        teacher["members"] = {
            split: {m: _summary([x[split][m] for x in members]) for m in METRICS}
            for split in ("valid", "test")
        }
    d = config.student.model.d_model
    # the shipped student: the best KD row at the profile's width, any architecture, on validation
    kd_rows = [n for n, r in rows.items() if r["kd"] and r["d_model"] == d]
    chosen = max(kd_rows, key=lambda n: rows[n]["valid"]["NDCG@10"]["mean"]) if kd_rows else None
    checks = _checks(rows, teacher, chosen, d) + _compressed_checks(rows, teacher, budget)
    return {
        "grid": grid_name,
        "seeds": list(seeds),
        "teacher_per_seed": teacher_per_seed,
        "teacher": teacher,
        "rows": rows,
        "runs": runs,
        "chosen_on_validation": chosen,
        "checks": checks,
        "size_budget": {"params": budget[0], "bytes": budget[1]},
    }


def _checks(rows, teacher, chosen, d) -> list[dict[str, Any]]:
    """The study's targets, measured on test means (the setting itself was chosen on validation)."""
    out = []
    t = teacher["test"]["NDCG@10"]["mean"]
    out.append(
        {"check": f"teacher NDCG@10 >= {TEACHER_MIN_NDCG}", "value": t, "passed": t >= TEACHER_MIN_NDCG}
    )
    for arch in ("sasrec", "gru"):
        kd_name = chosen if chosen and rows[chosen]["arch"] == arch else f"{arch}-d{d}-kd"
        nokd_name = f"{arch}-d{d}-nokd"
        if kd_name not in rows or nokd_name not in rows:
            continue
        kd, nokd = rows[kd_name], rows[nokd_name]
        ratio_t = kd["test"]["NDCG@10"]["mean"] / t
        size = teacher["params"] / kd["params"]
        out.append(
            {
                "check": f"{kd_name}: >= 8x fewer params and NDCG@10 >= 0.95 x teacher",
                "value": ratio_t,
                "params_ratio": size,
                "passed": size >= 8 and kd["d_model"] <= 16 and ratio_t >= 0.95,
            }
        )
        gain = kd["test"]["NDCG@10"]["mean"] / max(nokd["test"]["NDCG@10"]["mean"], 1e-12)
        out.append({"check": f"{kd_name} >= 1.15 x {nokd_name}", "value": gain, "passed": gain >= 1.15})
        for metric, worse in (
            ("coverage@10", lambda a, b: a < 0.9 * b),
            ("popularity_pct@10", lambda a, b: a > 1.1 * b),
        ):
            a, b = kd["test"][metric]["mean"], nokd["test"][metric]["mean"]
            out.append(
                {
                    "check": f"{kd_name} {metric} within 10% of {nokd_name}",
                    "value": a / max(b, 1e-12),
                    "passed": not worse(a, b),
                }
            )
    return out


def _compressed_checks(rows, teacher, budget) -> list[dict[str, Any]]:
    """The compressed student's targets: the best KD row of the group on validation that is no larger
    than the profile's full-table student (``budget``: parameters and stored bytes) against the
    teacher, its own no-KD twin and the teacher's p99 (test means; chosen on validation)."""
    max_params, max_bytes = budget
    fits = [
        n
        for n, r in rows.items()
        if r["group"] == "compressed"
        and r["kd"]
        and r["params"] <= max_params
        and (r["size_bytes"] or 0) <= max_bytes
    ]
    if not fits:
        return []
    name = max(fits, key=lambda n: rows[n]["valid"]["NDCG@10"]["mean"])
    kd, t = rows[name], teacher["test"]["NDCG@10"]["mean"]
    nokd = rows.get(name[: -len("-kd")] + "-nokd")
    out = [
        {
            "check": f"{name} (chosen on validation, <= {max_params:,} params, <= {max_bytes / 1e6:.2f} MB): "
            "NDCG@10 >= 0.95 x teacher",
            "value": kd["test"]["NDCG@10"]["mean"] / t,
            "passed": kd["test"]["NDCG@10"]["mean"] >= 0.95 * t,
        },
        {
            "check": f"{name}: p99 <= 0.1 x teacher",
            "value": kd["latency_p99_ms"] / teacher["latency_p99_ms"],
            "passed": kd["latency_p99_ms"] <= 0.1 * teacher["latency_p99_ms"],
        },
    ]
    if nokd:
        gain = kd["test"]["NDCG@10"]["mean"] / max(nokd["test"]["NDCG@10"]["mean"], 1e-12)
        out.append({"check": f"{name} >= 1.15 x its no-KD twin", "value": gain, "passed": gain >= 1.15})
    return out


def _fmt(s: dict[str, float]) -> str:
    return f"{s['mean']:.4f} ± {s['std']:.4f}" if s["n"] > 1 else f"{s['mean']:.4f}"


def render_study(result: dict[str, Any]) -> str:
    ds, t = result["dataset"], result["teacher"]
    lines = [
        f"# Distillation study: {ds['name']} ({result['grid']} grid, seeds {result['seeds']})",
        "",
        f"{ds['users']:,} users, {ds['items']:,} items; mean ± sample std over seeds; the KD setting is "
        f"chosen on validation (chosen: `{result['chosen_on_validation']}`), test reported; "
        f"{'one teacher per seed' if result['teacher_per_seed'] else 'one teacher (seed ' + str(t['seeds'][0]) + ') for every student seed'}; "
        f"wall time {result['wall_seconds'] / 60:.1f} min (stages already done are reused).",
        "",
        "| model | group | params | MB | valid NDCG@10 | test NDCG@10 | test HR@10 | coverage@10 | popularity pct | "
        "epochs | train s | p99 ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        f"| teacher | | {t['params']:,} | | {_fmt(t['valid']['NDCG@10'])} | {_fmt(t['test']['NDCG@10'])} | "
        f"{_fmt(t['test']['HR@10'])} | {t['test']['coverage@10']['mean']:.3f} | {t['test']['popularity_pct@10']['mean']:.3f} "
        f"| | {t['train_seconds']['mean']:.0f} | {t['latency_p99_ms']:.2f} |",
    ]
    if "members" in t:
        mem = t["members"]
        lines.append(
            f"| teacher members alone ({t['ensemble']} seeds) | | {t['params'] // t['ensemble']:,} each | | "
            f"{_fmt(mem['valid']['NDCG@10'])} | {_fmt(mem['test']['NDCG@10'])} | {_fmt(mem['test']['HR@10'])} | "
            f"{mem['test']['coverage@10']['mean']:.3f} | {mem['test']['popularity_pct@10']['mean']:.3f} | | | |"
        )
    for name, r in result["rows"].items():
        lines.append(
            f"| {name} | {r['group']} | {r['params']:,} | {_mb(r)} | {_fmt(r['valid']['NDCG@10'])} | {_fmt(r['test']['NDCG@10'])} | "
            f"{_fmt(r['test']['HR@10'])} | {r['test']['coverage@10']['mean']:.3f} | "
            f"{r['test']['popularity_pct@10']['mean']:.3f} | {r['epochs']['mean']:.0f} | "
            f"{r['train_seconds']['mean']:.0f} | {r['latency_p99_ms']:.2f} |"
        )
    lines += _tradeoff_table(result)
    lines += ["", "| target (test means) | measured | met |", "|---|---|---|"]
    for c in result["checks"]:
        lines.append(f"| {c['check']} | {c['value']:.4f} | {'yes' if c['passed'] else 'no'} |")
    lines += _budget_table(result["rows"])
    return "\n".join(lines) + "\n"


def _mb(row: dict[str, Any]) -> str:
    return f"{row['size_bytes'] / 1e6:.2f}" if row.get("size_bytes") else ""


def _tradeoff_table(result: dict[str, Any]) -> list[str]:
    """Each student against the teacher: the numbers behind the size-curve plots (means over seeds)."""
    t = result["teacher"]
    out = [
        "",
        "Against the teacher (means over seeds; the target: a student no wider than d=16, with >= 8x "
        "fewer parameters, at >= 0.95x its test NDCG@10):",
        "",
        "| model | x fewer params | valid NDCG@10 / teacher | test NDCG@10 / teacher | p99 / teacher |",
        "|---|---|---|---|---|",
    ]
    for name, r in result["rows"].items():
        valid, test = (
            r[s]["NDCG@10"]["mean"] / max(t[s]["NDCG@10"]["mean"], 1e-12) for s in ("valid", "test")
        )
        out.append(
            f"| {name} | {t['params'] / r['params']:.1f} | {valid:.3f} | {test:.3f} | "
            f"{r['latency_p99_ms'] / t['latency_p99_ms']:.3f} |"
        )
    return out


def _budget_table(rows: dict[str, dict[str, Any]]) -> list[str]:
    """KD vs no KD on the same epoch budget: the best validation NDCG@10 reached within E epochs."""
    pairs = [(n, n[: -len("-kd")] + "-nokd") for n, r in rows.items() if r["kd"] and n.endswith("-kd")]
    pairs = [(kd, nokd) for kd, nokd in pairs if nokd in rows]
    if not pairs:
        return []
    budgets = list(rows[pairs[0][0]]["valid_within_epochs"])
    out = [
        "",
        "Same epoch budget (validation NDCG@10: the best reached within the first E epochs, mean over "
        "seeds; KD / no KD):",
        "",
        "| student | " + " | ".join(f"E = {e}" for e in budgets) + " | until early stopping |",
        "|---|" + "---|" * (len(budgets) + 1),
    ]
    for kd, nokd in pairs:
        cells = []
        for e in budgets:
            a, b = rows[kd]["valid_within_epochs"][e]["mean"], rows[nokd]["valid_within_epochs"][e]["mean"]
            cells.append(f"{a:.4f} / {b:.4f} ({a / max(b, 1e-12):.2f}x)")
        a, b = rows[kd]["valid"]["NDCG@10"]["mean"], rows[nokd]["valid"]["NDCG@10"]["mean"]
        cells.append(f"{a:.4f} / {b:.4f} ({a / max(b, 1e-12):.2f}x)")
        out.append(f"| {kd} | " + " | ".join(cells) + " |")
    return out


def _short_number(x: float, _pos: int | None = None) -> str:
    return f"{x / 1e6:g}M" if x >= 1e6 else f"{x / 1e3:g}k" if x >= 1e3 else f"{x:g}"


def plot_size_curve(result: dict[str, Any], out_dir: Path) -> list[Path]:
    """Test NDCG@10 against parameters and against p99 latency, KD and no-KD, teacher marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    paths = []
    t = result["teacher"]
    for x_key, label, name in (
        ("params", "parameters", "size_curve_params.png"),
        ("latency_p99_ms", "p99 latency ms (batch 1, 1 thread)", "size_curve_latency.png"),
    ):
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for arch in ("sasrec", "gru"):
            for kd, style in ((False, "o--"), (True, "o-")):
                pts = sorted(
                    (r[x_key], r["test"]["NDCG@10"]["mean"], r["test"]["NDCG@10"]["std"])
                    for r in result["rows"].values()
                    if r["arch"] == arch and r["kd"] == kd and r["group"] in ("headline", "size")
                )
                pts = sorted({p[0]: p for p in pts}.values())
                if pts:
                    xs, ys, es = zip(*pts, strict=True)
                    ax.errorbar(
                        xs, ys, yerr=es, fmt=style, capsize=3, label=f"{arch} {'KD' if kd else 'no KD'}"
                    )
                for scheme, marker in (("pq", "s"), ("qr", "^")):
                    pts = sorted(
                        (r[x_key], r["test"]["NDCG@10"]["mean"], r["test"]["NDCG@10"]["std"])
                        for r in result["rows"].values()
                        if r["arch"] == arch
                        and r["kd"] == kd
                        and r["group"] == "compressed"
                        and r["model"].get("item_embedding") == scheme
                    )
                    if pts:
                        xs, ys, es = zip(*pts, strict=True)
                        ax.errorbar(
                            xs, ys, yerr=es, fmt=marker + style[1:], capsize=3,
                            label=f"{arch} {scheme} {'KD' if kd else 'no KD'}",
                        )  # fmt: skip
        ax.scatter(
            [t[x_key]],
            [t["test"]["NDCG@10"]["mean"]],
            marker="*",
            s=160,
            color="k",
            label="teacher",
            zorder=5,
        )
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))  # 1-2-5 labels, none overlapping
        ax.xaxis.set_major_formatter(FuncFormatter(_short_number))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(label)
        ax.set_ylabel("test NDCG@10")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=110)
        plt.close(fig)
        paths.append(out_dir / name)
    return paths


def plot_epoch_budget(result: dict[str, Any], out_dir: Path) -> Path | None:
    """Validation NDCG@10 reached within E epochs against E, KD and no KD, one line per headline row
    (mean over seeds): how much sooner KD gets there, and whether the no-KD student catches up."""
    rows = [(n, r) for n, r in result["rows"].items() if r["group"] == "headline"]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, r in rows:
        curves = [run["valid_curve"] for run in result["runs"] if run["variant"] == name]
        longest = max(len(c) for c in curves)
        xs = list(range(1, longest + 1))
        ys = [float(np.mean([best_within(c, e) for c in curves])) for e in xs]
        color = {"sasrec": "C0", "gru": "C3"}.get(r["arch"])  # one colour per architecture
        ax.plot(xs, ys, "-" if r["kd"] else "--", color=color, label=name)
    ax.set_xlabel("epoch budget E")
    ax.set_ylabel("best validation NDCG@10 within E epochs")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out_dir / "epoch_budget.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
