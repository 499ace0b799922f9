"""``shopdistill bench ...``: the benchmarks as a plugin command of the ``shopdistill`` CLI.

Registered through the ``shopdistill.commands`` entry point (pyproject.toml), so the product's CLI
lists it without importing this package. Exit codes as the CLI's: 1 bad data, 2 bad usage, 3 a
benchmark target missed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from shopdistill.components import stores
from shopdistill.components.config import PipelineConfig, load_config


def register(
    sub: argparse._SubParsersAction, add_config_args: Callable[[argparse.ArgumentParser], None]
) -> None:
    """Add ``bench quality|study|speed`` to the CLI's sub-commands."""
    bench = sub.add_parser("bench", help="benchmarks")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True)
    quality = bench_sub.add_parser("quality", help="teacher vs. students with and without KD (test split)")
    add_config_args(quality)
    quality.add_argument(
        "--students", default=None, help="student architectures, comma-separated (default: the profile's)"
    )
    quality.add_argument("--requests", type=int, default=1000, help="latency requests per model")
    study = bench_sub.add_parser(
        "study", help="distillation study: ablation, temperature, top-K, sizes, seeds"
    )
    add_config_args(study)
    study.add_argument("--full", action="store_true", help="every group (default: the headline rows only)")
    study.add_argument(
        "--groups",
        default=None,
        help="only these groups, comma-separated: headline, ablation, temperature, top_k, size, compressed",
    )
    study.add_argument("--variants", default=None, help="only these rows of the groups, comma-separated")
    study.add_argument("--seeds", default="0,1,2", help="student seeds, comma-separated")
    study.add_argument("--recipe", action="store_true", help="model sizes from the dataset's statistics")
    study.add_argument("--students", default="sasrec,gru", help="student architectures of the headline rows")
    study.add_argument("--requests", type=int, default=500, help="latency requests per architecture")
    speed = bench_sub.add_parser("speed", help="serving, distillation cost, cache I/O, training speed, scale")
    add_config_args(speed)
    speed.add_argument("--full", action="store_true", help="adds 10M interactions and teacher convergence")
    speed.add_argument("--only", default="", help="sections, comma-separated (serving, distill_cost, ...)")
    speed.add_argument("--repeats", type=int, default=3, help="runs per figure (the median is reported)")
    speed.add_argument("--requests", type=int, default=1000, help="latency requests per run")
    nights = bench_sub.add_parser("nights", help="nights on a partitioned log: warm starts vs cold vs frozen")
    add_config_args(nights)
    nights.add_argument("--from", dest="first", required=True, help="first night, YYYY-MM-DD")
    nights.add_argument("--to", dest="last", required=True, help="last night, YYYY-MM-DD")
    scale = bench_sub.add_parser(
        "scale-out", help="four student candidates and the soft labels, one at a time vs on Ray"
    )
    add_config_args(scale)
    scale.add_argument("--shards", type=int, default=2, help="soft-label shards of the Ray run")
    ddp = bench_sub.add_parser("ddp", help="one teacher member: DDP workers on Ray vs one process")
    add_config_args(ddp)
    ddp.add_argument("--workers", type=int, default=2, help="DDP workers (and threads of the third setting)")
    ddp.add_argument("--seeds", default="0,1,2", help="seeds, comma-separated")
    ddp.add_argument(
        "--epochs", type=int, default=None, help="at most this many epochs (default: the profile's)"
    )
    serve = bench_sub.add_parser("serve", help="load test of the recommendation service (serve-api)")
    add_config_args(serve)
    serve.add_argument("--requests", type=int, default=2000, help="most requests per concurrency level")
    serve.add_argument("--seconds", type=float, default=20.0, help="most seconds per concurrency level")
    serve.add_argument("--reloads", type=int, default=10, help="forced hot reloads under load")
    serve.add_argument("--version", help="serve this registered version instead of the champion")
    bench.set_defaults(handler=run_bench, default_profile="beauty")


def run_bench(config: PipelineConfig, args: argparse.Namespace) -> int:
    if args.bench_command == "nights":
        return bench_nights(config, args.first, args.last)
    if args.bench_command == "serve":
        return bench_serve(config, args)
    if args.bench_command == "scale-out":
        return bench_scale_out(config, args)
    if args.bench_command == "ddp":
        return bench_ddp(config, args)
    if args.bench_command == "study":
        return bench_study(config, args)
    if args.bench_command == "speed":
        return bench_speed(config, args)
    students = tuple(args.students.split(",")) if args.students else None
    return bench_quality(config, students, args.requests)


def _bench(run, out: Path, report: str, checks: str) -> int:
    """Run a benchmark; bad data exits 1, a missed target 3; the markdown report is printed."""
    from shopdistill.components.data.schema import DataSourceError
    from shopdistill.components.validation import DataValidationError

    try:
        result = run()
    except (DataSourceError, DataValidationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print((out / report).read_text())
    print(f"report: {out / report} (+ JSON{' and plots' if report == 'study.md' else ''} in {out})")
    return 0 if all(t["passed"] for t in result[checks]) else 3


def bench_nights(config: PipelineConfig, first: str, last: str) -> int:
    """Warm-started nights against a cold retrain each night and a frozen first-night model."""
    import datetime as dt

    from shopdistill.benchmarks.nights import run_nights
    from shopdistill.components.data.schema import DataSourceError

    try:
        start, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    except ValueError as exc:
        print(f"error: --from/--to: {exc}", file=sys.stderr)
        return 2
    if end < start or not config.data.reads_nights():
        print(
            "error: bench nights needs --from <= --to and a partitioned event log (--profile nightly)",
            file=sys.stderr,
        )
        return 2
    out = stores.new_run_dir(config.runtime.root, config.data.name, "bench-nights")
    try:
        run_nights(config, start, end, out)
    except DataSourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print((out / "nights.md").read_text())
    print(f"report: {out / 'nights.md'} (+ nights.json)")
    return 0


def bench_scale_out(config: PipelineConfig, args: argparse.Namespace) -> int:
    """The fanned-out stages one at a time and on a local Ray instance (benchmarks/scale_out.py)."""
    from shopdistill.benchmarks.scale_out import run_scale_out_benchmark

    out = stores.new_run_dir(config.runtime.root, config.data.name, "bench-scale-out")
    source = ("--config", str(args.config)) if args.config else ("--profile", args.profile or "demo")
    try:
        run_scale_out_benchmark(out, source=source, shards=args.shards, overrides=args.overrides)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 4
    print((out / "scale_out.md").read_text())
    print(f"report: {out / 'scale_out.md'} (+ scale_out.json)")
    return 0


def bench_ddp(config: PipelineConfig, args: argparse.Namespace) -> int:
    """One teacher member by DDP workers vs one process (benchmarks/ddp.py); 3: quality not within noise."""
    from shopdistill.benchmarks.ddp import run_ddp_benchmark
    from shopdistill.components.data.schema import DataSourceError

    if args.workers < 2:
        print("error: --workers must be at least 2", file=sys.stderr)
        return 2
    seeds = tuple(int(s) for s in args.seeds.split(","))
    out = stores.new_run_dir(config.runtime.root, config.data.name, "bench-ddp")
    try:
        result = run_ddp_benchmark(config, out, workers=args.workers, seeds=seeds, epochs=args.epochs)
    except DataSourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print((out / "ddp.md").read_text())
    print(f"report: {out / 'ddp.md'} (+ ddp.json)")
    return 0 if result["quality"]["passed"] else 3


def bench_serve(config: PipelineConfig, args: argparse.Namespace) -> int:
    """The service in its own process under load: student (ONNX) vs teacher, and hot reloads."""
    from shopdistill.benchmarks.serve import run_serve_benchmark

    out = stores.new_run_dir(config.runtime.root, config.data.name, "bench-serve")
    try:
        result = run_serve_benchmark(
            config,
            out,
            version=args.version,
            requests=args.requests,
            seconds=args.seconds,
            reloads=args.reloads,
        )
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 4
    print((out / "serve.md").read_text())
    print(f"report: {out / 'serve.md'} (+ serve.json)")
    return 0 if all(t["passed"] for t in result["targets"]) else 3


def bench_quality(config: PipelineConfig, students: tuple[str, ...] | None, requests: int) -> int:
    """Teacher vs. student with and without KD on the test split; JSON + markdown report."""
    from shopdistill.benchmarks.quality import run_quality_benchmark

    out = stores.new_run_dir(config.runtime.root, config.data.name, "bench-quality")
    return _bench(
        lambda: run_quality_benchmark(config, out, students=students, requests=requests),
        out,
        "report.md",
        "targets",
    )


def bench_study(config: PipelineConfig, args: argparse.Namespace) -> int:
    """The distillation study (quick grid, or every group with --full) over seeds; JSON + markdown + plots."""
    from shopdistill.benchmarks.study import run_study, study_grid

    groups = tuple(args.groups.split(",")) if args.groups else None
    variants = tuple(args.variants.split(",")) if args.variants else None
    try:  # a bad name fails before any work
        study_grid(config, args.full, tuple(args.students.split(",")), groups, variants)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = stores.new_run_dir(config.runtime.root, config.data.name, "bench-study")

    def run() -> dict:
        cfg = _with_recipe(config, args) if args.recipe else config
        return run_study(
            cfg,
            out,
            seeds=tuple(int(s) for s in args.seeds.split(",")),
            full=args.full,
            archs=tuple(args.students.split(",")),
            groups=groups,
            variants=variants,
            requests=args.requests,
        )

    return _bench(run, out, "study.md", "checks")


def _with_recipe(config: PipelineConfig, args: argparse.Namespace) -> PipelineConfig:
    """Model sizes from the dataset's statistics; settings given with --set still win."""
    from shopdistill.benchmarks.recipe import dataset_stats, suggest
    from shopdistill.components.data.dataset import prepare_dataset
    from shopdistill.components.sequences import SequenceData

    prepared = prepare_dataset(config.data, config.runtime.root)
    stats = dataset_stats(SequenceData.from_path(prepared.handle.uri))
    explicit = {item.split("=", 1)[0] for item in args.overrides}
    chosen = {k: v for k, v in suggest(stats).items() if k not in explicit}
    print("recipe: " + ", ".join(f"{k}={v}" for k, v in chosen.items()) + f" (from {stats})")
    profile = args.profile if args.profile or args.config else "beauty"
    return load_config(
        args.config, profile=profile, overrides=[*(f"{k}={v}" for k, v in chosen.items()), *args.overrides]
    )


def bench_speed(config: PipelineConfig, args: argparse.Namespace) -> int:
    """Serving, distillation cost, cache I/O, training speed and scale; JSON + markdown."""
    from shopdistill.benchmarks.speed import SECTIONS, run_perf_benchmark

    out = stores.new_run_dir(config.runtime.root, config.data.name, "bench-speed")
    sections = tuple(args.only.split(",")) if args.only else SECTIONS
    unknown = sorted(set(sections) - set(SECTIONS))
    if unknown:
        print(
            f"error: unknown benchmark section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}",
            file=sys.stderr,
        )
        return 2
    return _bench(
        lambda: run_perf_benchmark(
            config, out, full=args.full, repeats=args.repeats, requests=args.requests, sections=sections
        ),
        out,
        "report.md",
        "targets",
    )
