"""Registration: log the run to MLflow and register the candidate (champion only if the gate passed)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from prefect import task
from prefect.artifacts import create_link_artifact
from prefect.runtime import flow_run

from components.artifacts import Handle
from components.config import PipelineConfig, config_hash
from components.data.dataset import load_dataset
from components.registry import Registry, metric_name
from components.serving import NextItemScorer
from components.training import load_model
from tasks.policy import RETRY_DELAYS, components_version, retry_transient


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
    run = Path(run_dir)
    rows = json.loads(Path(report.uri).read_text())["rows"]
    metrics = {f"{model}.{metric_name(k)}": v for model, row in rows.items() for k, v in row.items()
               if isinstance(v, (int, float))}  # fmt: skip
    tags = {
        "dataset_digest": dataset.sha256,
        "dataset_uri": dataset.uri,
        "teacher_digest": teacher.sha256,
        "soft_labels_digest": soft_labels.sha256,
        "student_digest": candidate.sha256,
        "config_hash": config_hash(config),
        "code_version": components_version(),
        "prefect_flow_run_id": str(flow_run.get_id() or ""),
        "gate_passed": str(gate.meta["passed"]).lower(),
    }
    ds = load_dataset(dataset.uri)
    artifacts = {p.name: p for p in run.glob("*") if p.suffix in (".json", ".md", ".png")}
    reg = Registry(config.registry, config.runtime.root)
    run_id = reg.log_run(
        run_name=f"{config.data.name}-{Path(run_dir).name}",
        params=config.model_dump(mode="json"),
        metrics=metrics,
        tags=tags,
        artifacts=artifacts,
        student_files={
            "best.pt": candidate.uri,
            "items.parquet": ds.path / "items.parquet",
            "item_map.parquet": ds.path / "item_map.parquet",
        },  # fmt: skip
    )
    model, cfg, _ = load_model(candidate.uri)
    example = np.zeros((2, cfg.max_len), dtype=np.int64)  # batch 2: torch.export keeps the batch dynamic
    example[0, :3], example[1, :1] = [1, 2, 3], [1]
    reg.log_student_model(run_id, NextItemScorer(model), example)
    version = reg.register(run_id, tags, make_champion=bool(gate.meta["passed"]))
    create_link_artifact(
        key="mlflow-run",
        link=reg.ui_link(run_id),
        description=f"MLflow run {run_id}: model {version.name} v{version.version} ({', '.join(version.aliases)}); "
        f"open with `mlflow ui --backend-store-uri {reg.uri}`",
    )
    return Handle(
        version.source,
        candidate.sha256,
        "model_version",
        {"name": version.name, "version": version.version, "aliases": version.aliases, "run_id": run_id},
    )
