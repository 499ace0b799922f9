"""The register stage: export the candidate to ONNX, log the run to MLflow, register a version.

The export comes first: if it fails, nothing is logged or registered. The version becomes
``challenger``, and ``champion`` too when the gate passed (``registry.py``). Every version carries
the lineage of what made it: the digests of dataset, teacher, soft labels and student, the config hash
and the code version.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shopdistill.components import stores
from shopdistill.components.artifacts import Handle, code_version
from shopdistill.components.config import PipelineConfig, config_hash
from shopdistill.components.data.dataset import Dataset, load_dataset
from shopdistill.components.export import INSTALL_HINT, ExportResult, export_student, onnx_available
from shopdistill.components.locks import exclusive
from shopdistill.components.models.checkpoint import verify_digest
from shopdistill.components.registry import Registry, VersionInfo, metric_name

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Registered:
    version: VersionInfo
    run_id: str
    ui_link: str
    tracking_uri: str
    onnx: ExportResult | None
    rerun: bool = False  # the same student on the same data was registered before: nothing new


# what makes two registrations the same: the student's weights, the data it was scored on, the settings
SAME_VERSION_TAGS = ("student_digest", "dataset_digest", "config_hash")


def register(
    config: PipelineConfig,
    lineage: dict[str, Handle],
    report: Path,
    gate_passed: bool,
    run_dir: Path,
    flow_run_id: str = "",
) -> Registered:
    """``lineage``: the handles of ``dataset``, ``teacher``, ``soft_labels`` and ``candidate``.

    Runs under the data folder's registry lock, so two runs never both register one student. A
    candidate that passed the gate against one champion is not promoted if another run moved the
    champion since this run's evaluation: it stays challenger, for the next night to judge.
    """
    candidate = lineage["candidate"]
    verify_digest(candidate.uri, candidate.sha256)  # the files registered are the ones evaluated
    tags = lineage_tags(config, lineage, gate_passed, flow_run_id)
    reg = Registry(config.registry, config.runtime.root)
    with exclusive(stores.registry_lock(config.runtime.root), what="the model registry"):
        earlier = reg.find_version({k: tags[k] for k in SAME_VERSION_TAGS})
        if earlier is not None:
            return _rerun(reg, earlier, gate_passed)
        promote = gate_passed and _champion_unchanged(reg, report)
        return _register_new(config, reg, lineage, tags, report, run_dir, promote)


def _champion_unchanged(reg: Registry, report: Path) -> bool:
    evaluated = json.loads(report.read_text())["champion"]["version"]
    current = reg.champion()
    now = current.version if current else None
    if str(now) != str(evaluated):
        log.warning(
            "the champion changed during this run (evaluated against %s, now %s): registering as "
            "challenger only",
            evaluated or "none",
            now,
        )
        return False
    return True


def _register_new(
    config: PipelineConfig,
    reg: Registry,
    lineage: dict[str, Handle],
    tags: dict[str, str],
    report: Path,
    run_dir: Path,
    promote: bool,
) -> Registered:
    dataset, candidate = lineage["dataset"], lineage["candidate"]
    ds = load_dataset(dataset.uri)
    onnx = onnx_export(config, ds, dataset, candidate)
    tags["onnx_export"] = onnx.handle.sha256 if onnx else "none"
    run_id = reg.log_run(
        run_name=f"{config.data.name}-{run_dir.name}",
        params=config.model_dump(mode="json"),
        metrics=_report_metrics(report, onnx),
        tags=tags,
        artifacts={p.name: p for p in run_dir.glob("*") if p.suffix in (".json", ".md", ".png")},
        curves=json.loads((run_dir / "histories.json").read_text()),
        student_files={
            "best.pt": candidate.uri,
            "items.parquet": ds.path / "items.parquet",
            "item_map.parquet": ds.path / "item_map.parquet",
        },
    )
    if onnx:
        reg.log_onnx_export(run_id, onnx.path)
    source = None  # without the [onnx] extra the version holds the student's files only
    if onnx:  # the servable MLflow model
        source = reg.log_servable(run_id, onnx.path, ds.item_map["raw_item_id"].astype(str).head(3).tolist())
    version = reg.register(run_id, tags, make_champion=promote, source=source)
    return Registered(version, run_id, reg.ui_link(run_id), reg.uri, onnx)


def _rerun(reg: Registry, earlier: VersionInfo, gate_passed: bool) -> Registered:
    """Nothing new to register: the earlier version stands (and becomes champion if the gate passed)."""
    log.info(
        "%s v%s already holds this student for this data and config: nothing new registered",
        earlier.name,
        earlier.version,
    )
    version = reg.promote(earlier.version) if gate_passed else earlier
    return Registered(version, earlier.run_id, reg.ui_link(earlier.run_id), reg.uri, None, rerun=True)


def onnx_export(
    config: PipelineConfig, ds: Dataset, dataset: Handle, candidate: Handle
) -> ExportResult | None:
    """The candidate's ONNX export (reused while student, data and code are the same), or None when
    the export is off or the [onnx] extra is missing."""
    if not config.registry.onnx_export:
        log.info("registry.onnx_export is off: registering without an ONNX export")
        return None
    if not onnx_available():
        log.warning(
            "the [onnx] extra is not installed: registering without an ONNX export (%s)", INSTALL_HINT
        )
        return None
    folder = stores.export_dir(config.runtime.root, candidate.sha256, dataset.sha256, code_version())
    return export_student(candidate.uri, ds, folder)


def lineage_tags(
    config: PipelineConfig, lineage: dict[str, Handle], gate_passed: bool, flow_run_id: str
) -> dict[str, str]:
    return {
        "dataset_digest": lineage["dataset"].sha256,
        "dataset_uri": lineage["dataset"].uri,
        "teacher_digest": lineage["teacher"].sha256,
        "teacher_started_from": lineage["teacher"].meta.get("started_from", "cold"),
        "student_started_from": lineage["candidate"].meta.get("started_from", "cold"),
        "student_generation": str(lineage["candidate"].meta.get("generation", 0)),
        "night": lineage["dataset"].meta.get("as_of") or "none",
        "soft_labels_digest": lineage["soft_labels"].sha256,
        "student_digest": lineage["candidate"].sha256,
        "config_hash": config_hash(config),
        "code_version": code_version(),
        "prefect_flow_run_id": flow_run_id,
        "gate_passed": str(gate_passed).lower(),
    }


def _report_metrics(report: Path, onnx: ExportResult | None) -> dict[str, float]:
    body = json.loads(report.read_text())
    return run_metrics(body["rows"], onnx, body.get("drift"))


def run_metrics(
    rows: dict[str, dict[str, Any]], onnx: ExportResult | None, drift: dict[str, Any] | None = None
) -> dict[str, float]:
    """Every numeric value of the report as ``<model>.<metric>``, the night's ``drift.*``, plus the
    export's parity and int8 deltas."""
    metrics = {
        f"{model}.{metric_name(k)}": v
        for model, row in rows.items()
        for k, v in row.items()
        if isinstance(v, (int, float))
    }
    metrics |= {f"drift.{k}": float(v) for k, v in (drift or {}).items() if isinstance(v, (int, float, bool))}
    if onnx:
        acc = onnx.manifest["int8"]["accuracy"]
        metrics["onnx.parity_max_abs_diff"] = onnx.manifest["parity_max_abs_diff"]
        metrics |= {f"onnx_int8.{metric_name(k)}": v for k, v in acc["int8"].items()}
        metrics |= {f"onnx_int8.delta_{metric_name(k)}": v for k, v in acc["delta"].items()}
    return metrics
