"""Evaluation stages: score teacher, students and the current champion on the test split; the gate."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact

from shopdistill.components import gate
from shopdistill.components.artifacts import Handle, sha256_file, write_json_atomic
from shopdistill.components.config import GateConfig, RegistryConfig, RuntimeConfig
from shopdistill.components.evaluation import compare_models
from shopdistill.components.models.checkpoint import load_model, load_teacher
from shopdistill.components.registry import Registry
from shopdistill.components.reporting import comparison_bars, learning_curves
from shopdistill.components.sequences import SequenceData
from shopdistill.tasks.policy import RETRY_DELAYS, retry_transient


def _champion(registry: RegistryConfig, runtime: RuntimeConfig, run_dir: Path, n_items: int):
    """The current champion as (version, model, max_len), or a note why it cannot be scored here."""
    reg = Registry(registry, runtime.root)
    champ = reg.champion()
    if champ is None:
        return None, "no champion yet"
    folder = reg.download_student(champ, run_dir / "champion")
    model, cfg, _ = load_model(folder / "best.pt")
    if model.item_emb.num_embeddings - 1 != n_items:
        return None, f"champion v{champ.version} was trained on another catalogue; compared as a first model"
    return (champ.version, model, cfg.max_len), f"champion v{champ.version}"


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
) -> Handle:
    """Teacher / student-KD / student-noKD / champion on the same test split -> report.json + plots."""
    run = Path(run_dir)
    data = SequenceData.from_path(dataset.uri)
    models = {}
    models["teacher"] = (load_teacher(teacher.uri), teacher.meta["max_len"])  # a checkpoint or an ensemble
    for name, handle in (("student-kd", candidate), ("student-nokd", baseline)):
        model, cfg, _ = load_model(handle.uri)
        models[name] = (model, cfg.max_len)
    champion, note = _champion(registry, runtime, run, data.n_items)
    if champion is not None:
        models["champion"] = champion[1:]
    report = compare_models(models, data, "test", requests=requests)
    rows = report.rows
    result = {
        "split": "test",
        "rows": rows,
        "champion": {"version": champion[0] if champion else None, "note": note},
        "dataset": dataset.sha256,
    }
    run.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run / "report.json", result)
    (run / "report.md").write_text(report.to_markdown() + f"\n\nChampion: {note}\n")
    histories = {
        n: h.meta.get("history", [])
        for n, h in (("teacher", teacher), ("student-kd", candidate), ("student-nokd", baseline))
    }
    (run / "histories.json").write_text(json.dumps(histories, default=float))
    learning_curves(histories, run / "learning_curves.png")
    comparison_bars(rows, run / "comparison.png")
    create_markdown_artifact(
        key="model-comparison",
        markdown=report.to_markdown() + f"\n\nChampion: {note}",
        description="Teacher vs students vs champion, test split",
    )
    return Handle(str(run / "report.json"), sha256_file(run / "report.json"), "report", {"champion": note})


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
