"""The ``shopdistill`` command line.

    shopdistill run [--profile demo|beauty] [--config FILE] [--set key=value ...]
    shopdistill data prepare [--profile ...] [--config FILE] [--set key=value ...]
    shopdistill bench quality [--profile beauty] [--students sasrec,gru] [--set key=value ...]

Until the nightly flow lands, ``run`` runs the data stage: prepare + validate the configured dataset
and print counts, digest and the validation summary. Exit codes: 0 ok, 1 bad data, 2 bad config, 3 a benchmark target was missed.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from pathlib import Path

import pandas as pd

from components.config import ConfigError, PipelineConfig, available_profiles, load_config


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


def bench_quality(config: PipelineConfig, students: tuple[str, ...], requests: int) -> int:
    """Teacher vs. student with and without KD on the test split; JSON + markdown report."""
    from components.data.schema import DataSourceError
    from components.quality import run_quality_benchmark
    from components.validation import DataValidationError

    out = _run_dir(config, "bench-quality")
    try:
        result = run_quality_benchmark(config, out, students=students, requests=requests)
    except (DataSourceError, DataValidationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print((out / "report.md").read_text())
    print(f"report: {out / 'report.json'} and {out / 'report.md'}")
    return 0 if all(t["passed"] for t in result["targets"]) else 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shopdistill", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the pipeline (for now: the data stage)")
    _add_config_args(run)
    data = sub.add_parser("data", help="dataset commands")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    prep = data_sub.add_parser("prepare", help="prepare and validate a dataset")
    _add_config_args(prep)
    bench = sub.add_parser("bench", help="benchmarks")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True)
    quality = bench_sub.add_parser("quality", help="teacher vs. students with and without KD (test split)")
    _add_config_args(quality)
    quality.add_argument("--students", default="sasrec", help="student architectures, comma-separated")
    quality.add_argument("--requests", type=int, default=1000, help="latency requests per model")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = _load(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.command in ("run", "data"):
        return prepare_data(config)
    if args.command == "bench":
        return bench_quality(config, tuple(args.students.split(",")), args.requests)
    return 2


if __name__ == "__main__":
    sys.exit(main())
