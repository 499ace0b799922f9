"""Data stages: ingest (read, validate at the source, preprocess, write) and validate (the stored data)."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from components.artifacts import Handle
from components.config import DataConfig, ValidationConfig
from components.data.dataset import load_dataset, prepare_dataset
from components.validation import run_suites
from components.validation.suites import prepared_suite, sequence_lengths, sequence_suite
from tasks.policy import RETRY_DELAYS, retry_transient


@task(retries=len(RETRY_DELAYS), retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=retry_transient)
def ingest(data: DataConfig, root: str, run_dir: str) -> Handle:
    """Prepare the dataset (reused when its content digest is unchanged); source checks run here."""
    result = prepare_dataset(data, Path(root), docs_dir=Path(run_dir) / "data_docs" / "source")
    c = result.manifest["counts"]
    create_markdown_artifact(
        key="dataset",
        markdown=f"**{data.name}** `sha256:{result.handle.sha256[:12]}` — {c['users']:,} users, "
        f"{c['items']:,} items, {c['interactions']:,} interactions; splits {c['splits']}"
        f"{' (reused)' if result.reused else ''}",
        description="Prepared dataset",
    )
    return result.handle


@task(retries=len(RETRY_DELAYS), retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=retry_transient)
def validate(dataset: Handle, cfg: ValidationConfig, run_dir: str) -> Handle:
    """Check the stored dataset (checksums + prepared suites); publish the validation table."""
    ds = load_dataset(dataset.uri)
    frames = {"prepared": ds.interactions, "sequences": sequence_lengths(ds.interactions)}
    report = run_suites(
        frames, [prepared_suite(cfg), sequence_suite(cfg)], Path(run_dir) / "data_docs" / "stored"
    )
    source = ds.manifest.get("validation") or {}
    create_table_artifact(
        key="data-validation",
        table=[
            {
                "suite": r.suite,
                "check": r.description,
                "severity": r.severity,
                "result": "pass" if r.success else "FAIL",
                "unexpected": r.unexpected_count,
                "observed": str(r.observed_value),
            }
            for r in report.results
        ],
        description=f"Data validation of {dataset.uri} (source checks: {source.get('checks', 0)} run, "
        f"{source.get('failed', 0)} failed)",
    )
    report.raise_for_failures()
    return dataset
