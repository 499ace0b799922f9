"""Evaluation stages: score teacher, students and the current champion on the test split; the gate."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact

from shopdistill.components import comparison, gate
from shopdistill.components.artifacts import Handle, sha256_file, write_json_atomic
from shopdistill.components.config import GateConfig, RegistryConfig, RuntimeConfig
from shopdistill.components.drift import drift_markdown
from shopdistill.tasks import publish
from shopdistill.tasks.policy import RETRY_DELAYS, retry_transient


@task(retries=len(RETRY_DELAYS), retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=retry_transient)
def evaluate(
    dataset: Handle,
    teacher: Handle,
    baseline: Handle,
    candidate: Handle,
    registry: RegistryConfig,
    runtime: RuntimeConfig,
    run_dir: str,
    requests: int = 1000,
    max_champion_decay: float = 0.2,
) -> Handle:
    """Teacher / student-KD / student-noKD / champion on the same test split -> report.json + plots;
    on a night, the drift since the previous night."""
    models = {"teacher": teacher, "student-kd": candidate, "student-nokd": baseline}
    result = comparison.evaluate(
        dataset, models, registry, runtime.root, Path(run_dir), requests, max_champion_decay
    )
    if dataset.meta.get("as_of"):
        create_markdown_artifact(
            key="drift",
            markdown=drift_markdown(result.drift, max_champion_decay),
            description="Drift since last night",
        )
    create_markdown_artifact(
        key="model-comparison",
        markdown=publish.comparison_markdown(result.rows, result.champion_note, str(result.report)),
        description="Teacher vs students vs champion, test split",
    )
    create_markdown_artifact(
        key="charts",
        markdown=publish.charts_markdown(result.plots),
        description="NDCG@10 and learning curves",
    )
    meta = {"champion": result.champion_note, "champion_decayed": bool(result.drift.get("champion_decayed"))}
    return Handle(str(result.report), sha256_file(result.report), "report", meta)


@task
def decide_gate(report: Handle, thresholds: GateConfig) -> Handle:
    """Apply the gate to the report; publish the decision with its reasons."""
    rows = json.loads(Path(report.uri).read_text())["rows"]
    decision = gate.decide_gate(
        rows["student-kd"], rows.get("teacher"), rows.get("student-nokd"), rows.get("champion"), thresholds
    )
    path = Path(report.uri).with_name("gate.json")
    write_json_atomic(path, decision.to_dict())
    create_markdown_artifact(
        key="gate-decision", markdown=decision.to_markdown(), description="Gate decision"
    )
    return Handle(
        str(path), sha256_file(path), "gate", {"passed": decision.passed, "reasons": decision.reasons}
    )
