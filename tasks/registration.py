"""The register stage: ONNX export, MLflow run and model version (champion only if the gate passed)."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.runtime import flow_run

from shopdistill.components import registration
from shopdistill.components.artifacts import Handle
from shopdistill.components.config import PipelineConfig
from shopdistill.tasks.policy import RETRY_DELAYS, retry_transient
from shopdistill.tasks.publish import onnx_markdown


@task(retries=len(RETRY_DELAYS), retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=retry_transient)
def register(
    config: PipelineConfig,
    dataset: Handle,
    teacher: Handle,
    soft_labels: Handle,
    candidate: Handle,
    report: Handle,
    gate: Handle,
    run_dir: str,
) -> Handle:
    lineage = {"dataset": dataset, "teacher": teacher, "soft_labels": soft_labels, "candidate": candidate}
    done = registration.register(
        config,
        lineage,
        Path(report.uri),
        bool(gate.meta["passed"]),
        Path(run_dir),
        flow_run_id=str(flow_run.get_id() or ""),
    )
    v = done.version
    if done.rerun:
        create_markdown_artifact(
            key="registration",
            markdown=f"Unchanged: {v.name} v{v.version} already holds this student for this data and "
            f"config; nothing new registered ({', '.join(v.aliases)}).",
            description="Registration",
        )
    if done.onnx:
        create_markdown_artifact(
            key="onnx-export",
            markdown=onnx_markdown(done.onnx),
            description="ONNX export of the candidate (fp32 + int8)",
        )
    create_link_artifact(
        key="mlflow-run",
        link=done.ui_link,
        description=f"MLflow run {done.run_id}: model {v.name} v{v.version} ({', '.join(v.aliases)}); "
        f"open with `mlflow ui --backend-store-uri {done.tracking_uri}`",
    )
    meta = {
        "name": v.name,
        "version": v.version,
        "aliases": v.aliases,
        "run_id": done.run_id,
        "onnx_export": str(done.onnx.path) if done.onnx else None,
    }
    return Handle(v.source, candidate.sha256, "model_version", meta)
