"""The ``shopdistill`` command line.

    shopdistill run [--profile demo|beauty] [--config FILE] [--set key=value ...]   the nightly flow, once
    shopdistill data prepare [--profile ...] [--config FILE] [--set key=value ...]  prepare + validate data
    shopdistill serve [--profile ...] [--cron "0 2 * * *"] [--timezone UTC]         schedule locally
    shopdistill promote VERSION | rollback                                          move the champion alias
    shopdistill recommend --user ID [--k 10] [--engine torch|onnx|onnx-int8]       the shopping-guide view
    shopdistill bench quality [--profile beauty] [--students sasrec,gru] [--set key=value ...]
    shopdistill bench study [--profile beauty] [--full] [--groups size] [--seeds 0,1,2] [--recipe]  the distillation study
    shopdistill bench speed [--profile beauty] [--full] [--only serving,scale,...]       performance benchmark

Exit codes: 0 ok, 1 bad data / failed run, 2 bad config or usage (also ``--engine onnx*`` without the
[onnx] extra or for a champion registered without an ONNX export), 3 the gate (or a benchmark target)
was missed, 4 registry error (no champion, unknown version or user, a corrupt download).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from pathlib import Path

# Quiet and offline-safe by default; a busy 2-core machine needs more than Prefect's 20 s to start
# its temporary server. Set before prefect is imported; explicit settings in the environment win.
for _key, _value in {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
}.items():
    os.environ.setdefault(_key, _value)

import pandas as pd  # noqa: E402

from components.config import ConfigError, PipelineConfig, available_profiles, load_config  # noqa: E402


def _add_config_args(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument("--profile", help=f"a profile from data/profiles ({', '.join(available_profiles())})")
    group.add_argument("--config", type=Path, help="a YAML configuration file")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one setting, e.g. --set data.source.n_users=500 (repeatable)",
    )


def _load(args: argparse.Namespace) -> PipelineConfig:
    default_profile = "beauty" if args.command == "bench" else "demo"
    profile = args.profile if args.profile or args.config else default_profile
    return load_config(args.config, profile=profile, overrides=args.overrides)


def _run_dir(config: PipelineConfig, label: str = "") -> Path:
    stamp = pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%SZ")
    name = f"{label}-{config.data.name}" if label else config.data.name
    return config.runtime.root / "runs" / f"{stamp}-{name}-{uuid.uuid4().hex[:6]}"


def _fmt_splits(splits: dict[str, int]) -> str:
    return " / ".join(f"{k} {splits.get(k, 0):,}" for k in ("train", "valid", "test"))


def prepare_data(config: PipelineConfig) -> int:
    """Prepare + validate the configured dataset; print what a data engineer wants to see."""
    from components.data.dataset import prepare_dataset
    from components.data.schema import DataSourceError
    from components.validation import DataValidationError

    run_dir = _run_dir(config)
    docs = run_dir / "data_docs"
    print(f"preparing dataset {config.data.name!r} ...", flush=True)
    try:
        result = prepare_dataset(config.data, config.runtime.root, docs_dir=docs)
    except DataValidationError as exc:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "validation.json").write_text(json.dumps(exc.report.summary(), indent=2, default=str))
        print(f"error: {exc}", file=sys.stderr)
        print("no dataset was written.", file=sys.stderr)
        return 1
    except DataSourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        print("no dataset was written.", file=sys.stderr)
        return 1
    m = result.manifest
    c = m["counts"]
    report = result.validation
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "validation.json").write_text(json.dumps(report.summary(), indent=2, default=str))
    (run_dir / "validation.md").write_text(report.to_markdown() + "\n")
    seq = c["sequence_length"]
    print(
        "\n".join(
            [
                f"source       {m['source']}",
                f"dataset      {result.handle.uri}{' (reused: same content digest)' if result.reused else ''}",
                f"digest       sha256:{result.handle.sha256}",
                f"users        {c['users']:,}",
                f"items        {c['items']:,}",
                f"interactions {c['interactions']:,} ({_fmt_splits(c['splits'])})",
                f"events       {', '.join(f'{k} {v:,}' for k, v in c['events'].items())}",
                f"history      min {seq['min']}, median {seq['median']:g}, mean {seq['mean']:g}, max {seq['max']}",
                f"time range   {c['time_range'][0]} .. {c['time_range'][1]}",
                "",
                report.to_markdown(),
                "",
                f"validation   {'passed' if report.passed else 'FAILED'}: {len(report.results)} checks, "
                f"{len(report.failures)} failed, {len(report.warnings)} warnings",
                f"data docs    {report.docs_path}",
                f"run folder   {run_dir}",
                f"wall time    {result.seconds:.1f} s",
            ]
        )
    )
    for w in report.warnings:
        print(f"warning: {w.sentence()}")
    return 0


def _bench(run, out: Path, report: str, checks: str) -> int:
    """Run a benchmark; bad data exits 1, a missed target 3; the markdown report is printed."""
    from components.data.schema import DataSourceError
    from components.validation import DataValidationError

    try:
        result = run()
    except (DataSourceError, DataValidationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print((out / report).read_text())
    print(f"report: {out / report} (+ JSON{' and plots' if report == 'study.md' else ''} in {out})")
    return 0 if all(t["passed"] for t in result[checks]) else 3


def bench_quality(config: PipelineConfig, students: tuple[str, ...] | None, requests: int) -> int:
    """Teacher vs. student with and without KD on the test split; JSON + markdown report."""
    from components.quality import run_quality_benchmark

    out = _run_dir(config, "bench-quality")
    return _bench(
        lambda: run_quality_benchmark(config, out, students=students, requests=requests),
        out,
        "report.md",
        "targets",
    )


def bench_study(config: PipelineConfig, args: argparse.Namespace) -> int:
    """The distillation study (quick grid, or every group with --full) over seeds; JSON + markdown + plots."""
    from components.study import run_study, study_grid

    groups = tuple(args.groups.split(",")) if args.groups else None
    try:
        study_grid(
            config, args.full, tuple(args.students.split(",")), groups
        )  # a bad name fails before any work
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = _run_dir(config, "bench-study")

    def run() -> dict:
        cfg = _with_recipe(config, args) if args.recipe else config
        return run_study(
            cfg,
            out,
            seeds=tuple(int(s) for s in args.seeds.split(",")),
            full=args.full,
            archs=tuple(args.students.split(",")),
            groups=groups,
            requests=args.requests,
        )

    return _bench(run, out, "study.md", "checks")


def _with_recipe(config: PipelineConfig, args: argparse.Namespace) -> PipelineConfig:
    """Model sizes from the dataset's statistics; settings given with --set still win."""
    from components.data.dataset import prepare_dataset
    from components.recipe import dataset_stats, suggest
    from components.sequences import SequenceData

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
    from components.perf import SECTIONS, run_perf_benchmark

    out = _run_dir(config, "bench-speed")
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


def run_flow(config: PipelineConfig) -> int:
    """Run the nightly flow once (a temporary Prefect server starts if no PREFECT_API_URL is set)."""
    from flows.nightly import nightly_distillation

    state = nightly_distillation(config=config, return_state=True)
    summary = state.data if isinstance(state.data, dict) else None
    if summary is None:
        try:
            summary = state.result(raise_on_failure=False)
        except Exception:  # noqa: BLE001 - a failed run may have no result to read
            summary = None
    if isinstance(summary, dict) and "report" in summary:
        model = summary["model"]
        print(Path(summary["report"]).with_suffix(".md").read_text())
        print("\n".join(summary["gate"]["reasons"]))
        print(
            f"\nmodel        {model['name']} v{model['version']} ({', '.join(model['aliases'])})\n"
            f"report       {summary['report']}\n"
            f"data docs    {summary['data_docs']}\n"
            f"run folder   {summary['run_dir']}\n"
            f"mlflow       mlflow ui --backend-store-uri {_tracking_uri(config)}"
        )
    if state.is_completed():
        return 0
    print(f"error: {state.name}: {state.message}", file=sys.stderr)
    return 3 if state.name == "GateFailed" else 1


def _tracking_uri(config: PipelineConfig) -> str:
    from components.registry import tracking_uri

    return tracking_uri(config.registry, config.runtime.root)


def serve(config: PipelineConfig, cron: str, timezone: str) -> int:
    """Schedule the flow from this process with ``flow.serve`` (stopping it pauses the schedule)."""
    from prefect.schedules import Cron

    from flows.nightly import nightly_distillation

    nightly_distillation.serve(
        name="nightly-local",
        schedule=Cron(cron, timezone=timezone),
        parameters={"config": config.model_dump(mode="json")},  # the profile and --set, fixed at serve time
        tags=["shopdistill", config.data.name],
    )
    return 0


def registry_command(args: argparse.Namespace, config: PipelineConfig) -> int:
    from components.registry import Registry, RegistryError

    reg = Registry(config.registry, config.runtime.root)
    try:
        if args.command == "promote":
            v = reg.promote(args.version)
            print(f"champion is now {v.name} v{v.version}")
        elif args.command == "rollback":
            v = reg.rollback()
            print(f"champion rolled back to {v.name} v{v.version}")
        else:
            return recommend(reg, args.user, args.k, args.engine)
    except RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 4
    return 0


def _onnx_scorer(reg, champ, engine: str):
    """The champion's ONNX export on onnxruntime; None (after saying why) when this engine cannot serve it."""
    from components.export import ExportError, OnnxScorer, OnnxUnavailableError, require_onnx
    from components.registry import NoOnnxExportError, RegistryError

    try:
        require_onnx("onnxruntime")
        folder = reg.download_onnx(champ)
        return OnnxScorer(folder, quantized=engine == "onnx-int8")
    except (OnnxUnavailableError, NoOnnxExportError) as exc:
        print(f"error: --engine {engine}: {exc}", file=sys.stderr)
        return None
    except ExportError as exc:
        raise RegistryError(f"the champion's ONNX export cannot be used: {exc}") from None


def recommend(reg, user: str, k: int, engine: str = "torch") -> int:
    from components.data.dataset import load_dataset
    from components.data.schema import DataSourceError
    from components.registry import RegistryError
    from components.serving import UnknownUserError, recommend_for_user
    from components.training import load_model

    champ = reg.champion()
    if champ is None:
        raise RegistryError(f"no champion registered for {reg.name!r} yet: run `shopdistill run` first")
    if engine == "torch":
        model, cfg, _ = load_model(reg.download_student(champ) / "best.pt")
        max_len, how = cfg.max_len, "champion"
    else:
        model = _onnx_scorer(reg, champ, engine)
        if model is None:
            return 2
        max_len, how = model.max_len, f"champion, onnxruntime {model.variant}"
    try:
        dataset = load_dataset(champ.tags["dataset_uri"])
    except (KeyError, DataSourceError) as exc:
        raise RegistryError(f"the champion's dataset is not available here: {exc}") from None
    try:
        guide = recommend_for_user(model, dataset, user, k=k, max_len=max_len)
    except UnknownUserError as exc:
        raise RegistryError(str(exc)) from None
    pd.set_option("display.width", 160)
    pd.set_option("display.max_colwidth", 60)
    print(f"{champ.name} v{champ.version} ({how}) for user {user}\n\nrecently viewed:")
    print(guide.history.to_string(index=False))
    print(f"\nrecommended for you (top {k}):")
    print(guide.recommendations.to_string(index=False))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shopdistill", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the nightly distillation flow once")
    _add_config_args(run)
    serve_p = sub.add_parser("serve", help="schedule the flow locally with flow.serve")
    _add_config_args(serve_p)
    serve_p.add_argument("--cron", default="0 2 * * *")
    serve_p.add_argument("--timezone", default="UTC")
    promote = sub.add_parser("promote", help="make a registered version the champion")
    _add_config_args(promote)
    promote.add_argument("version")
    rollback = sub.add_parser("rollback", help="return the champion alias to the previous champion")
    _add_config_args(rollback)
    rec = sub.add_parser("recommend", help="recommend products for a user with the champion")
    _add_config_args(rec)
    rec.add_argument("--user", required=True, help="the user's id as in the source data")
    rec.add_argument("--k", type=int, default=10)
    rec.add_argument(
        "--engine",
        choices=("torch", "onnx", "onnx-int8"),
        default="torch",
        help="torch: the champion's best.pt; onnx / onnx-int8: its ONNX export on onnxruntime (the [onnx] extra)",
    )
    data = sub.add_parser("data", help="dataset commands")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    prep = data_sub.add_parser("prepare", help="prepare and validate a dataset")
    _add_config_args(prep)
    bench = sub.add_parser("bench", help="benchmarks")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True)
    quality = bench_sub.add_parser("quality", help="teacher vs. students with and without KD (test split)")
    _add_config_args(quality)
    quality.add_argument(
        "--students", default=None, help="student architectures, comma-separated (default: the profile's)"
    )
    quality.add_argument("--requests", type=int, default=1000, help="latency requests per model")
    study = bench_sub.add_parser(
        "study", help="distillation study: ablation, temperature, top-K, sizes, seeds"
    )
    _add_config_args(study)
    study.add_argument("--full", action="store_true", help="every group (default: the headline rows only)")
    study.add_argument(
        "--groups",
        default=None,
        help="only these groups, comma-separated: headline, ablation, temperature, top_k, size",
    )
    study.add_argument("--seeds", default="0,1,2", help="student seeds, comma-separated")
    study.add_argument("--recipe", action="store_true", help="model sizes from the dataset's statistics")
    study.add_argument("--students", default="sasrec,gru", help="student architectures of the headline rows")
    study.add_argument("--requests", type=int, default=500, help="latency requests per architecture")
    speed = bench_sub.add_parser("speed", help="serving, distillation cost, cache I/O, training speed, scale")
    _add_config_args(speed)
    speed.add_argument("--full", action="store_true", help="adds 10M interactions and teacher convergence")
    speed.add_argument("--only", default="", help="sections, comma-separated (serving, distill_cost, ...)")
    speed.add_argument("--repeats", type=int, default=3, help="runs per figure (the median is reported)")
    speed.add_argument("--requests", type=int, default=1000, help="latency requests per run")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = _load(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.command == "data":
        return prepare_data(config)
    if args.command == "run":
        return run_flow(config)
    if args.command == "serve":
        return serve(config, args.cron, args.timezone)
    if args.command in ("promote", "rollback", "recommend"):
        return registry_command(args, config)
    if args.command == "bench" and args.bench_command == "study":
        return bench_study(config, args)
    if args.command == "bench" and args.bench_command == "speed":
        return bench_speed(config, args)
    if args.command == "bench":
        students = tuple(args.students.split(",")) if args.students else None
        return bench_quality(config, students, args.requests)
    return 2


if __name__ == "__main__":
    sys.exit(main())
