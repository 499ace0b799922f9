"""The nightly distillation flow: read top to bottom, it is the pipeline.

    ingest -> validate -> teacher -> soft labels -> students (KD and no-KD) -> evaluate -> gate -> register

Run locally with no server to start by hand (Prefect starts a temporary one):
    python -m flows.nightly [--profile demo] [--set key=value ...]
A run whose candidate fails the gate registers it as ``challenger`` only and ends in a ``Failed`` state
named ``GateFailed``, so a missed night is visible, never a silent Completed.
"""

from __future__ import annotations

import sys
import uuid

import pandas as pd
from prefect import flow, get_run_logger
from prefect.logging.loggers import flow_run_logger
from prefect.states import Failed

from components.config import PipelineConfig, RunParameters
from tasks.data import ingest, validate
from tasks.evaluation import decide_gate, evaluate
from tasks.registration import register
from tasks.training import cache_soft_labels, distill_student, train_teacher


def _summarise_failure(flow, flow_run, state) -> None:
    flow_run_logger(flow_run, flow).error(
        "nightly distillation %s did not finish: %s. Nothing is promoted by a failed run; the "
        "champion is unchanged.",
        flow_run.name,
        state.message,
    )


def new_run_dir(config: PipelineConfig) -> str:
    stamp = pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%SZ")
    return str(config.runtime.root / "runs" / f"{stamp}-nightly-{config.data.name}-{uuid.uuid4().hex[:6]}")


@flow(
    name="nightly-distillation",
    description="Distil the teacher recommender into a small student and register it if it passes the gate.",
    on_failure=[_summarise_failure],
    on_crashed=[_summarise_failure],
    log_prints=True,
)
def nightly_distillation(
    params: RunParameters = RunParameters(),
    config: PipelineConfig | None = None,
    latency_requests: int = 1000,
):
    """``params`` (profile + common knobs, a form in the UI) unless a full ``config`` is given."""
    log = get_run_logger()
    config = config or params.to_config()
    run_dir = new_run_dir(config)
    root, runtime = str(config.runtime.root), config.runtime

    dataset = ingest(config.data, root, run_dir)
    dataset = validate(dataset, config.data.validation, run_dir)
    teacher = train_teacher(dataset, config.teacher, runtime)
    soft_labels = cache_soft_labels(dataset, teacher, config.distill, runtime)
    baseline = distill_student(dataset, None, config.student, config.distill, runtime, "student-nokd")
    candidate = distill_student(dataset, soft_labels, config.student, config.distill, runtime, "student-kd")
    report = evaluate(
        dataset, teacher, baseline, candidate, config.registry, runtime, run_dir, latency_requests
    )
    gate = decide_gate(report, config.gate)
    version = register(config, dataset, teacher, soft_labels, candidate, report, gate, run_dir)

    summary = {
        "run_dir": run_dir,
        "dataset": dataset.uri,
        "report": report.uri,
        "gate": gate.meta,
        "model": version.meta,
        "data_docs": f"{run_dir}/data_docs",
    }
    if not gate.meta["passed"]:
        log.warning("gate failed; v%s registered as challenger only", version.meta["version"])
        return Failed(
            name="GateFailed",
            message="candidate failed the gate: "
            + "; ".join(r for r in gate.meta["reasons"] if r.startswith("FAILED")),
            data=summary,
        )
    log.info("v%s is the new champion", version.meta["version"])
    return summary


if __name__ == "__main__":
    from flows.cli import main

    sys.exit(main(["run", *sys.argv[1:]]))
