"""The backfill flow: the nightly flow for each night of a date range, one child flow run per night.

    shopdistill backfill --from 2025-01-10 --to 2025-01-16 [--profile nightly] [--set ...]

Nights run in order, so each one warm-starts from the night before and is judged against the
champion the nights before it left. A night is done when its run finished (Completed, GateFailed or
ChampionDecayed): its record ``<data dir>/nights/<name>/<date>.json`` is written and a rerun of the
backfill skips it, so an interrupted backfill resumes at the first night without a record
(``redo`` runs every night again). A night that crashes or fails otherwise stops the backfill.
"""

from __future__ import annotations

import datetime
import time

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.states import Failed

from shopdistill.components import stores
from shopdistill.components.artifacts import write_json_atomic, write_text_atomic
from shopdistill.components.config import PipelineConfig, RunParameters
from shopdistill.components.reporting import nights_table
from shopdistill.flows.environment import show_progress
from shopdistill.flows.nightly import GateFailed, nightly_distillation

FINISHED = ("Completed", "GateFailed", "ChampionDecayed")


def nights(first: datetime.date, last: datetime.date) -> list[datetime.date]:
    if last < first:
        raise ValueError(f"the backfill ends ({last}) before it starts ({first})")
    return [first + datetime.timedelta(days=d) for d in range((last - first).days + 1)]


@flow(name="backfill", description="Run the nightly distillation for every night of a date range, in order.")
def backfill(
    start: datetime.date,
    end: datetime.date,
    params: RunParameters = RunParameters(),
    config: PipelineConfig | None = None,
    latency_requests: int = 200,
    redo: bool = False,
) -> list[dict]:
    """One child run of ``nightly-distillation`` per night from ``start`` to ``end`` (both included)."""
    log = get_run_logger()
    show_progress()
    config = config or params.to_config()
    if not config.data.reads_nights():
        raise ValueError(f"a backfill needs a partitioned event log; {config.data.name!r} is not one")
    done = []
    for night in nights(start, end):
        record = stores.night_record(config.runtime.root, config.data.name, night)
        if record.is_file() and not redo:
            log.info("night %s: done before (%s), skipped", night, record)
            continue
        t0 = time.perf_counter()
        state = nightly_distillation(
            config=config, latency_requests=latency_requests, as_of=night, return_state=True
        )
        if state.name not in FINISHED:
            _publish_table(config, start, end)
            return Failed(
                message=f"night {night} ended {state.name}: {state.message}; the backfill stops here"
            )
        summary = state.result(raise_on_failure=False)
        summary = summary.summary if isinstance(summary, GateFailed) else summary
        entry = {
            "night": night.isoformat(),
            "state": state.name,
            "version": summary["model"]["version"],
            "passed": summary["gate"]["passed"],
            "report": summary["report"],
            "seconds": round(time.perf_counter() - t0, 1),
        }
        write_json_atomic(record, entry)
        log.info("night %s: %s, v%s (%.0f s)", night, state.name, entry["version"], entry["seconds"])
        done.append(entry)
    _publish_table(config, start, end)
    return done


def _publish_table(config: PipelineConfig, start: datetime.date, end: datetime.date) -> None:
    """Every finished night of the range as a table: ``<data dir>/nights/<name>/nights.md`` and the
    ``backfill-nights`` artifact."""
    root, name = config.runtime.root, config.data.name
    records = [r for r in (stores.night_record(root, name, n) for n in nights(start, end)) if r.is_file()]
    if not records:
        return
    table = nights_table(records)
    write_text_atomic(records[0].parent / "nights.md", table + "\n")
    create_markdown_artifact(key="backfill-nights", markdown=table, description=f"{name}: {start} .. {end}")
