"""The ``shopdistill`` command line.

    shopdistill run [--profile demo|beauty] [--config FILE] [--set key=value ...]   the nightly flow, once
    shopdistill data prepare [--profile ...] [--config FILE] [--set key=value ...]  prepare + validate data
    shopdistill data partition --out DIR [--profile ...]                           the source by day
    shopdistill simulate --days N --out DIR [--profile demo]                        a partitioned event log
    shopdistill backfill --from DATE --to DATE [--profile nightly] [--redo]         the nightly flow per night
    shopdistill serve [--profile ...] [--cron "0 2 * * *"] [--timezone UTC]         schedule locally
    shopdistill promote VERSION | rollback                                          move the champion alias
    shopdistill recommend --user ID [--k 10] [--engine torch|onnx|onnx-int8]       the shopping-guide view
    shopdistill serve-api [--port 8000] [--engine onnx|onnx-int8|torch]            the recommendation service
    shopdistill bench quality|study|speed ...                                      benchmarks (a plugin command)

Exit codes: 0 ok, 1 bad data / failed run, 2 bad config or usage (also ``--engine onnx*`` without the
[onnx] extra or for a champion registered without an ONNX export), 3 the gate (or a benchmark target)
was missed, 4 registry error (no champion, unknown version or user, a corrupt download).
"""

from __future__ import annotations

import argparse
import datetime
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pandas as pd

from shopdistill.components import stores
from shopdistill.components.config import ConfigError, PipelineConfig, available_profiles, load_config
from shopdistill.flows.environment import apply_quiet_defaults, exit_on_terminate

PLUGIN_GROUP = "shopdistill.commands"  # entry points: callables (subparsers, add_config_args) -> None


def add_config_args(p: argparse.ArgumentParser) -> None:
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
    profile = args.profile if args.profile or args.config else args.default_profile
    return load_config(args.config, profile=profile, overrides=args.overrides)


def _fmt_splits(splits: dict[str, int]) -> str:
    return " / ".join(f"{k} {splits.get(k, 0):,}" for k in ("train", "valid", "test"))


def partition_data(config: PipelineConfig, out: Path) -> int:
    """The configured source's events as day partitions (e.g. Amazon Beauty's daily timestamps)."""
    from shopdistill.components.data.schema import DataSourceError
    from shopdistill.components.data.simulate import write_days
    from shopdistill.components.data.sources import read_source

    try:
        interactions, items = read_source(config.data.source)
    except DataSourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    written = write_days(interactions, items, out)
    print(
        f"wrote {written['events']:,} events of {written['items']:,} products in {written['days']:,} day "
        f"partitions ({written['first']} .. {written['last']}) under {written['folder']}"
    )
    return 0


def _night_line(night: dict) -> str:
    read = (
        f", {night['partitions']} day partitions {night['days'][0]} .. {night['days'][1]}"
        if "days" in night
        else ""
    )
    maps = (
        f", id maps continued from dataset {night['id_maps_from'][:12]}" if night.get("id_maps_from") else ""
    )
    return f"night        {night['as_of']}{read}{maps}"


def prepare_data(config: PipelineConfig) -> int:
    """Prepare + validate the configured dataset; print what a data engineer wants to see."""
    from shopdistill.components.data.dataset import prepare_dataset
    from shopdistill.components.data.schema import DataSourceError
    from shopdistill.components.validation import DataValidationError

    run_dir = stores.new_run_dir(config.runtime.root, config.data.name)
    print(f"preparing dataset {config.data.name!r} ...", flush=True)
    try:
        result = prepare_dataset(config.data, config.runtime.root, report_dir=run_dir)
    except DataValidationError as exc:
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
                *([_night_line(m["night"])] if m.get("night") else []),
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


def run_flow(config: PipelineConfig) -> int:
    """Run the nightly flow once (a temporary Prefect server starts if no PREFECT_API_URL is set)."""
    from shopdistill.flows.nightly import GateFailed, nightly_distillation

    state = nightly_distillation(config=config, return_state=True)
    try:
        summary = state.result(raise_on_failure=False)
    except Exception:  # noqa: BLE001 - a crashed run may have no result to read
        summary = None
    if isinstance(summary, GateFailed):
        summary = summary.summary
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
    if state.name == "GateFailed":
        return 3
    return 2 if isinstance(summary, ConfigError) else 1


def _tracking_uri(config: PipelineConfig) -> str:
    from shopdistill.components.registry import tracking_uri

    return tracking_uri(config.registry, config.runtime.root)


def serve(config: PipelineConfig, cron: str, timezone: str) -> int:
    """Schedule the flow from this process with ``flow.serve`` (stopping it pauses the schedule)."""
    from prefect.schedules import Cron

    from shopdistill.flows.nightly import nightly_distillation

    nightly_distillation.serve(
        name="nightly-local",
        schedule=Cron(cron, timezone=timezone),
        parameters={"config": config.model_dump(mode="json")},  # the profile and --set, fixed at serve time
        tags=["shopdistill", config.data.name],
    )
    return 0


def registry_command(args: argparse.Namespace, config: PipelineConfig) -> int:
    from shopdistill.components.registry import Registry, RegistryError

    reg = Registry(config.registry, config.runtime.root)
    try:
        if args.command == "promote":
            v = reg.promote(args.version)
            print(f"champion is now {v.name} v{v.version}")
        elif args.command == "rollback":
            v = reg.rollback()
            print(f"champion rolled back to {v.name} v{v.version}")
        else:
            return recommend(reg, args.user, args.k, args.engine, config.runtime.threads)
    except RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 4
    return 0


def serve_api(config: PipelineConfig, args: argparse.Namespace) -> int:
    """The recommendation service on ``args.host:args.port`` until interrupted (docs/serving.md)."""
    import uvicorn

    from shopdistill.components.guide import EngineUnavailableError, GuideError, load_guide
    from shopdistill.components.registry import Registry, RegistryError
    from shopdistill.components.service import GuideHolder, create_app

    reg = Registry(config.registry, config.runtime.root)
    pinned = args.version or args.checkpoint

    def load(version: str | None):
        return load_guide(
            reg,
            version=version or args.version,
            engine=args.engine,
            checkpoint=args.checkpoint,
            threads=config.runtime.threads,
        )

    def champion() -> str | None:
        found = reg.champion()
        return found.version if found else None

    try:
        holder = GuideHolder(load, None if pinned else champion)
    except EngineUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (GuideError, RegistryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 4
    info = holder.guide.info
    print(
        f"serving {info.name} v{info.version} ({info.engine}) on http://{args.host}:{args.port}", flush=True
    )
    app = create_app(holder, poll_seconds=args.poll)
    # no access log: /metrics counts every request by endpoint and status
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


_ENGINE_NAMES = {
    "torch": "champion",
    "onnx": "champion, onnxruntime fp32",
    "onnx-int8": "champion, onnxruntime int8",
}


def _table(frame: pd.DataFrame, width: int = 40) -> str:
    """``frame`` as text, long titles, categories and reasons cut to ``width`` characters."""
    text = [c for c in ("title", "brand", "category", "reason") if c in frame]
    cut = {c: frame[c].map(lambda t: t if len(t) <= width else t[: width - 1] + "~") for c in text}
    return frame.assign(**cut).rename(columns={"id": "item"}).to_string(index=False)


def recommend(reg, user: str, k: int, engine: str = "torch", threads: int = 1) -> int:
    """The shopping-guide view of one known user, from the champion (the service's :class:`Guide`)."""
    from shopdistill.components.guide import EngineUnavailableError, GuideError, Request, load_guide
    from shopdistill.components.registry import RegistryError

    try:
        guide = load_guide(reg, engine=engine, threads=threads)
    except EngineUnavailableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except GuideError as exc:
        raise RegistryError(str(exc)) from None
    info, catalogue = guide.info, guide.catalogue
    if user not in guide.histories:
        examples = ", ".join(list(guide.histories)[:3])
        raise RegistryError(f"unknown user {user!r}: not in the champion's dataset (e.g. {examples})")
    answer = guide.recommend(Request(user=user, k=k))
    recent = [catalogue.describe(int(i)) for i in guide.histories[user][-5:]]
    recs = pd.DataFrame(answer["recommendations"])[["id", "score", "title", "brand", "category", "reason"]]
    recs.insert(0, "rank", range(1, len(recs) + 1))
    print(f"{info.name} v{info.version} ({_ENGINE_NAMES[info.engine]}) for user {user}\n\nrecently viewed:")
    print(_table(pd.DataFrame(recent)))
    print(f"\nrecommended for you (top {k}):")
    print(_table(recs))
    return 0


MAX_K = 1000


def _date(text: str) -> datetime.date:
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def run_backfill(config: PipelineConfig, first: datetime.date, last: datetime.date, redo: bool) -> int:
    """Every night from ``first`` to ``last``; a table of what each did."""
    from shopdistill.flows.backfill import backfill

    if last < first:
        print(f"error: --to {last} is before --from {first}", file=sys.stderr)
        return 2
    if not config.data.reads_nights():
        print("error: backfill needs a partitioned event log (e.g. --profile nightly)", file=sys.stderr)
        return 2
    state = backfill(first, last, config=config, redo=redo, return_state=True)
    for entry in state.result(raise_on_failure=False) if state.is_completed() else []:
        print(f"{entry['night']}  {entry['state']:<16} v{entry['version']:<4} {entry['seconds']:>7.1f} s")
    table = stores.night_record(config.runtime.root, config.data.name, first).parent / "nights.md"
    if table.is_file():
        print(table.read_text())
        print(f"table: {table}")
    if not state.is_completed():
        print(f"error: {state.message}", file=sys.stderr)
        return 1
    return 0


def _positive_days(text: str) -> int:
    try:
        days = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--days must be a whole number of days, not {text!r}") from None
    if not 1 <= days <= 3650:
        raise argparse.ArgumentTypeError(f"--days must be between 1 and 3650, not {days}")
    return days


# the shop's changes over time: SyntheticSource field -> simulate flag
_SIMULATE_FLAGS = {
    "launch_share": "launches",
    "retire_share": "retirements",
    "promotions": "promotions",
    "seasonality": "seasonality",
}


def simulate(config: PipelineConfig, days: int, out: Path, changes: dict[str, float]) -> int:
    """Write the profile's synthetic shop, ``days`` long, with the shop's ``changes`` (launch_share,
    retire_share, promotions, seasonality), as daily partitions under ``out``."""
    import pydantic

    from shopdistill.components.config import SyntheticSource
    from shopdistill.components.data.simulate import write_partitions

    source = config.data.source
    if not isinstance(source, SyntheticSource):
        print(
            f"error: simulate needs a synthetic data source; the profile has {source.kind}", file=sys.stderr
        )
        return 2
    try:
        source = SyntheticSource.model_validate({**source.model_dump(), "days": days, **changes})
    except pydantic.ValidationError as exc:
        error = exc.errors()[0]
        print(f"error: --{_SIMULATE_FLAGS[error['loc'][0]]}: {error['msg']}", file=sys.stderr)
        return 2
    written = write_partitions(source, out)
    print(
        f"wrote {written['events']:,} events of {written['items']:,} products in {written['days']} day "
        f"partitions ({written['first']} .. {written['last']}) under {written['folder']}"
    )
    return 0


def _positive_k(text: str) -> int:
    try:
        k = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--k must be a whole number, not {text!r}") from None
    if not 1 <= k <= MAX_K:
        raise argparse.ArgumentTypeError(f"--k must be between 1 and {MAX_K}, not {k}")
    return k


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shopdistill", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the nightly distillation flow once")
    add_config_args(run)
    serve_p = sub.add_parser("serve", help="schedule the flow locally with flow.serve")
    add_config_args(serve_p)
    serve_p.add_argument("--cron", default="0 2 * * *")
    serve_p.add_argument("--timezone", default="UTC")
    promote = sub.add_parser("promote", help="make a registered version the champion")
    add_config_args(promote)
    promote.add_argument("version")
    rollback = sub.add_parser("rollback", help="return the champion alias to the previous champion")
    add_config_args(rollback)
    rec = sub.add_parser("recommend", help="recommend products for a user with the champion")
    add_config_args(rec)
    rec.add_argument("--user", required=True, help="the user's id as in the source data")
    rec.add_argument("--k", type=_positive_k, default=10, help=f"how many products, 1..{MAX_K}")
    rec.add_argument(
        "--engine",
        choices=("torch", "onnx", "onnx-int8"),
        default="torch",
        help="torch: the champion's best.pt; onnx / onnx-int8: its ONNX export on onnxruntime (the [onnx] extra)",
    )
    api = sub.add_parser("serve-api", help="the recommendation service and its page (FastAPI)")
    add_config_args(api)
    api.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only)")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument("--engine", choices=("onnx", "onnx-int8", "torch"), default="onnx")
    api.add_argument("--version", help="serve this version and never follow the champion alias")
    api.add_argument("--checkpoint", type=Path, help="serve this model file (e.g. the teacher) with torch")
    api.add_argument("--poll", type=float, default=30.0, help="seconds between champion checks (0: never)")
    data = sub.add_parser("data", help="dataset commands")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    prep = data_sub.add_parser("prepare", help="prepare and validate a dataset")
    add_config_args(prep)
    part = data_sub.add_parser("partition", help="write the configured source as day partitions")
    add_config_args(part)
    part.add_argument("--out", type=Path, required=True, help="folder for date=YYYY-MM-DD/ partitions")
    sim = sub.add_parser("simulate", help="write the synthetic shop as daily partitions (an event log)")
    add_config_args(sim)
    sim.add_argument(
        "--days", type=_positive_days, required=True, help="days to simulate, from data.source.start"
    )
    sim.add_argument("--out", type=Path, required=True, help="folder for date=YYYY-MM-DD/ partitions")
    sim.add_argument("--launches", type=float, default=0.1, help="share of products launched during the span")
    sim.add_argument(
        "--retirements", type=float, default=0.05, help="share of products retired during the span"
    )
    sim.add_argument(
        "--promotions", type=float, default=0.1, help="share of fresh picks going to a product just launched"
    )
    sim.add_argument(
        "--seasonality", type=float, default=0.2, help="share of fresh picks from the department in season"
    )
    back = sub.add_parser("backfill", help="run the nightly flow for each night of a date range")
    add_config_args(back)
    back.add_argument("--from", dest="first", type=_date, required=True, help="first night, YYYY-MM-DD")
    back.add_argument("--to", dest="last", type=_date, required=True, help="last night, YYYY-MM-DD")
    back.add_argument("--redo", action="store_true", help="run nights that are done again")
    for command in entry_points(group=PLUGIN_GROUP):  # e.g. `bench` from shopdistill.benchmarks
        command.load()(sub, add_config_args)
    parser.set_defaults(default_profile="demo")
    return parser


def main(argv: list[str] | None = None) -> int:
    apply_quiet_defaults()
    exit_on_terminate()
    args = build_parser().parse_args(argv)
    try:
        config = _load(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.command == "data":
        return partition_data(config, args.out) if args.data_command == "partition" else prepare_data(config)
    if args.command == "run":
        return run_flow(config)
    if args.command == "serve":
        return serve(config, args.cron, args.timezone)
    if args.command == "serve-api":
        return serve_api(config, args)
    if args.command == "backfill":
        return run_backfill(config, args.first, args.last, args.redo)
    if args.command == "simulate":
        changes = {field: getattr(args, flag) for field, flag in _SIMULATE_FLAGS.items()}
        return simulate(config, args.days, args.out, changes)
    if args.command in ("promote", "rollback", "recommend"):
        return registry_command(args, config)
    if hasattr(args, "handler"):  # a plugin command
        return args.handler(config, args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
