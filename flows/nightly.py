"""The nightly distillation flow: read top to bottom, it is the pipeline.

    prepare_dataset -> train_teacher -> cache_soft_labels (or its shards)
    -> distill_student (KD: one, or several candidates side by side, then choose_student)
    -> distill_student (no-KD) -> evaluate -> decide_gate -> register

``prepare_dataset`` reads the source, checks it (Great Expectations), preprocesses and checks again.

Run locally with no server to start by hand (Prefect starts a temporary one):
    python -m shopdistill.flows.nightly [--profile demo] [--set key=value ...]
A run whose candidate fails the gate registers it as ``challenger`` only and ends in a ``Failed`` state
named ``GateFailed``, so a missed night is visible, never a silent Completed.
"""

from __future__ import annotations

import argparse
import datetime
import sys

from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.logging.loggers import flow_run_logger
from prefect.runtime import flow_run as this_run
from prefect.states import Completed, Failed

from shopdistill.components import stores
from shopdistill.components.artifacts import Handle
from shopdistill.components.candidates import fill_candidates
from shopdistill.components.config import (
    DistillConfig,
    PipelineConfig,
    RunParameters,
    RuntimeConfig,
    StudentConfig,
    TeacherConfig,
)
from shopdistill.components.training.warm_start import WarmStart
from shopdistill.flows.environment import apply_quiet_defaults, exit_on_terminate, show_progress
from shopdistill.flows.executors import task_resources, task_runner
from shopdistill.tasks.data import prepare_dataset
from shopdistill.tasks.evaluation import decide_gate, evaluate
from shopdistill.tasks.registration import register
from shopdistill.tasks.training import (
    assemble_teacher,
    cache_soft_labels,
    champion_start,
    choose_student,
    distill_student,
    finish_soft_labels,
    soft_label_part,
    train_teacher,
    train_teacher_member,
)


class GateFailed(Exception):
    """The state's data when the candidate missed the gate: the message and the run's summary.

    A failed state's data must be an exception (Prefect raises it from ``state.result()``)."""

    def __init__(self, message: str, summary: dict):
        super().__init__(message, summary)  # both in args, so it pickles with Prefect's results
        self.summary = summary

    def __str__(self) -> str:
        return str(self.args[0])


def scheduled_night() -> datetime.date | None:
    """The day before a scheduled run's scheduled start (in the start's timezone); None for runs
    started by hand (from the UI, the CLI or a backfill)."""
    run_id = this_run.get_id()
    if run_id is None:
        return None
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
    if not run.auto_scheduled or run.expected_start_time is None:
        return None
    return run.expected_start_time.date() - datetime.timedelta(days=1)


def _summarise_failure(flow, flow_run, state) -> None:
    flow_run_logger(flow_run, flow).error(
        "nightly distillation %s did not finish: %s. Nothing is promoted by a failed run; the "
        "champion is unchanged.",
        flow_run.name,
        state.message,
    )


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
    as_of: datetime.date | None = None,
):
    """``params`` (profile + common knobs, a form in the UI) unless a full ``config`` is given.

    ``as_of``: the night, for a partitioned event log. Unset, a scheduled run reads through the last
    complete day before its scheduled start (a 02:00 run on 2 December reads through 1 December); any
    other run through the newest complete day partition."""
    log = get_run_logger()
    show_progress()
    config = config or params.to_config()
    if config.data.reads_nights():
        night = as_of or scheduled_night()
        if night:
            config = config.model_copy(update={"data": config.data.model_copy(update={"as_of": night})})
            log.info("night %s", night)
    run_dir = str(stores.new_run_dir(config.runtime.root, config.data.name, "nightly"))
    root, runtime = str(config.runtime.root), config.runtime
    log.info("run folder %s (data root %s)", run_dir, root)

    dataset = prepare_dataset(config.data, root, run_dir)
    log.info("Data Docs %s/data_docs/index.html", run_dir)
    config = fill_candidates(config, dataset.meta["items"])
    for c in config.candidates.students:
        if "pq_full_rows" in c.model:
            log.info("candidate %s: %s full item rows", c.name, f"{c.model['pq_full_rows']:,}")
    config.check_catalogue(dataset.meta["items"])
    teacher = teacher_of(dataset, config.teacher, runtime)
    soft_labels = soft_labels_of(dataset, teacher, config.distill, runtime)
    # on a night after another, the KD student continues from the champion (when its shape fits)
    start = (
        champion_start(dataset, config.student, config.registry, runtime, run_dir)
        if dataset.meta.get("previous")
        else None
    )
    candidate, student = kd_student(dataset, soft_labels, config, start, run_dir)
    baseline = distill_student(dataset, None, student, config.distill, runtime, "student-nokd")
    report = evaluate(
        dataset,
        teacher,
        baseline,
        candidate,
        config.registry,
        runtime,
        run_dir,
        latency_requests,
        config.gate.max_champion_decay,
    )
    gate = decide_gate(report, config.gate)
    version = register(config, dataset, teacher, soft_labels, candidate, report, gate, run_dir)

    summary = {
        "run_dir": run_dir,
        "dataset": dataset.uri,
        "report": report.uri,
        "gate": gate.meta,
        "model": version.meta,
        "data_docs": f"{run_dir}/data_docs/index.html",
        "champion_decayed": report.meta["champion_decayed"],
    }
    return final_state(summary)


def teacher_of(dataset, teacher: TeacherConfig, runtime: RuntimeConfig):
    """The teacher: trained in one task, or on Ray an ensemble's members as parallel tasks (in turn
    when each member trains on DDP workers of its own, ``teacher.train.workers > 1``)."""
    if runtime.executor != "ray" or teacher.ensemble == 1 or teacher.train.workers > 1:
        return train_teacher(dataset, teacher, runtime)
    return train_ensemble.with_options(task_runner=task_runner(runtime))(dataset, teacher, runtime)


@flow(name="teacher-ensemble", log_prints=True)
def train_ensemble(dataset: Handle, teacher: TeacherConfig, runtime: RuntimeConfig) -> Handle:
    """Each member of the ensemble teacher as a task of its own, then the ensemble's record."""
    with task_resources(runtime):
        members = [train_teacher_member.submit(dataset, teacher, runtime, i) for i in range(teacher.ensemble)]
    return assemble_teacher(dataset, teacher, runtime, [m.result() for m in members])


def soft_labels_of(dataset, teacher, distill: DistillConfig, runtime: RuntimeConfig):
    """The teacher's soft labels: one pass, or ``runtime.soft_label_shards`` parts on ``runtime.executor``."""
    if runtime.soft_label_shards == 1:
        return cache_soft_labels(dataset, teacher, distill, runtime)
    return shard_soft_labels.with_options(task_runner=task_runner(runtime))(
        dataset, teacher, distill, runtime
    )


@flow(name="soft-label-shards", log_prints=True)
def shard_soft_labels(
    dataset: Handle, teacher: Handle, distill: DistillConfig, runtime: RuntimeConfig
) -> Handle:
    """Each user shard of the soft labels as a task of its own, then one manifest over the parts."""
    with task_resources(runtime):
        parts = [
            soft_label_part.submit(dataset, teacher, distill, runtime, i)
            for i in range(runtime.soft_label_shards)
        ]
    return finish_soft_labels(dataset, teacher, distill, runtime, [p.result() for p in parts])


def kd_student(dataset, soft_labels, config: PipelineConfig, start, run_dir: str):
    """(the KD student, its settings): the one configured student, or the candidate chosen among
    ``candidates.students``, trained side by side on ``runtime.executor``."""
    candidates = config.student_candidates()
    if not config.candidates.students:
        name, student, distill = candidates[0]
        return distill_student(dataset, soft_labels, student, distill, config.runtime, name, start), student
    runner = task_runner(config.runtime)
    trained = train_candidates.with_options(task_runner=runner)(
        dataset, soft_labels, candidates, config.student, config.runtime, start
    )
    return choose_student(dataset, trained, candidates, config, run_dir)


@flow(name="student-candidates", log_prints=True)
def train_candidates(
    dataset: Handle,
    soft_labels: Handle,
    candidates: list[tuple[str, StudentConfig, DistillConfig]],
    configured: StudentConfig,
    runtime: RuntimeConfig,
    start: WarmStart | None = None,
) -> dict[str, Handle]:
    """Every KD candidate as a task of its own, all submitted at once (``runtime.executor``: one at
    a time locally, in parallel on Ray). The champion's weights start only the candidate with the
    champion's settings."""
    with task_resources(runtime):
        futures = {
            name: distill_student.submit(
                dataset,
                soft_labels,
                student,
                distill,
                runtime,
                name,
                start if student == configured else None,
            )
            for name, student, distill in candidates
        }
    return {name: future.result() for name, future in futures.items()}


def final_state(summary: dict):
    """``GateFailed`` (a Failed state) when the candidate missed the gate; ``ChampionDecayed`` (a
    Completed state) when the night's champion had decayed; else the summary (Completed)."""
    log = get_run_logger()
    decayed = (
        " The champion had decayed since its registration (see the drift artifact)."
        if summary["champion_decayed"]
        else ""
    )
    if not summary["gate"]["passed"]:
        log.warning("gate failed; v%s registered as challenger only", summary["model"]["version"])
        message = "candidate failed the gate: " + "; ".join(
            r for r in summary["gate"]["reasons"] if r.startswith("FAILED")
        )
        return Failed(
            name="GateFailed", message=message + decayed, data=GateFailed(message + decayed, summary)
        )
    log.info("v%s is the new champion", summary["model"]["version"])
    if decayed:
        log.warning(decayed.strip())
        return Completed(name="ChampionDecayed", message=decayed.strip(), data=summary)
    return summary


def _main(argv: list[str]) -> int:
    """``python -m shopdistill.flows.nightly [--profile demo] [--set key=value ...]``: one run."""
    parser = argparse.ArgumentParser(prog="python -m shopdistill.flows.nightly")
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    state = nightly_distillation(
        params=RunParameters(profile=args.profile, overrides=args.overrides), return_state=True
    )
    return 0 if state.is_completed() else 1


if __name__ == "__main__":
    apply_quiet_defaults()
    exit_on_terminate()
    sys.exit(_main(sys.argv[1:]))
