"""Registration: export the candidate to ONNX, log the run to MLflow and register the candidate (champion
only if the gate passed). The export comes first: if it fails, nothing is logged or registered."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from prefect import get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.runtime import flow_run

from shopdistill.components.artifacts import Handle, sha256_json
from shopdistill.components.config import PipelineConfig, config_hash
from shopdistill.components.data.dataset import Dataset, load_dataset
from shopdistill.components.export import INSTALL_HINT, ExportResult, export_student, onnx_available
from shopdistill.components.models.checkpoint import load_model
from shopdistill.components.registry import Registry, metric_name
from shopdistill.components.serving import NextItemScorer
from shopdistill.tasks.policy import RETRY_DELAYS, components_version, retry_transient


def _onnx_export(
    config: PipelineConfig, ds: Dataset, dataset: Handle, candidate: Handle
) -> ExportResult | None:
    """The candidate's ONNX export (reused while student, data and code are the same), or None without the extra."""
    log = get_run_logger()
    if not config.registry.onnx_export:
        log.info("registry.onnx_export is off: registering without an ONNX export")
        return None
    if not onnx_available():
        log.warning(
            "the [onnx] extra is not installed: registering without an ONNX export (%s)", INSTALL_HINT
        )
        return None
    key = sha256_json({"student": candidate.sha256, "data": dataset.sha256, "code": components_version()})
    result = export_student(candidate.uri, ds, config.runtime.root / "exports" / key[:12])
    m = result.manifest
    acc = m["int8"]["accuracy"]
    create_markdown_artifact(
        key="onnx-export",
        markdown=f"ONNX export `{result.path}`{' (reused)' if result.reused else ''}: fp32 vs PyTorch max |diff| "
        f"{m['parity_max_abs_diff']:.2g} (atol {m['parity_atol']:g}); int8 NDCG@10 {acc['int8']['NDCG@10']:.4f} "
        f"vs fp32 {acc['fp32']['NDCG@10']:.4f} ({acc['delta']['NDCG@10']:+.5f}) on {acc['split']}",
        description="ONNX export of the candidate (fp32 + int8)",
    )
    return result


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
    metrics = {
        f"{model}.{metric_name(k)}": v
        for model, row in rows.items()
        for k, v in row.items()
        if isinstance(v, (int, float))
    }
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
    onnx = _onnx_export(config, ds, dataset, candidate)
    tags["onnx_export"] = onnx.handle.sha256 if onnx else "none"
    if onnx:
        acc = onnx.manifest["int8"]["accuracy"]
        metrics["onnx.parity_max_abs_diff"] = onnx.manifest["parity_max_abs_diff"]
        metrics |= {f"onnx_int8.{metric_name(k)}": v for k, v in acc["int8"].items()}
        metrics |= {f"onnx_int8.delta_{metric_name(k)}": v for k, v in acc["delta"].items()}
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
        },
    )
    if onnx:
        reg.log_onnx_export(run_id, onnx.path)
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
        {
            "name": version.name,
            "version": version.version,
            "aliases": version.aliases,
            "run_id": run_id,
            "onnx_export": str(onnx.path) if onnx else None,
        },
    )
