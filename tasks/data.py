"""The data stage: read the source, check it, preprocess, check again, write (or reuse) the dataset."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

from shopdistill.components.artifacts import Handle
from shopdistill.components.config import DataConfig
from shopdistill.components.data import dataset as dataset_stage
from shopdistill.tasks.policy import RETRY_DELAYS, retry_transient


@task(retries=len(RETRY_DELAYS), retry_delay_seconds=RETRY_DELAYS, retry_condition_fn=retry_transient)
def prepare_dataset(data: DataConfig, root: str, run_dir: str) -> Handle:
    """The prepared dataset (reused when its content digest is unchanged), checked at the source and
    after preprocessing; a failed critical check raises and nothing is written."""
    result = dataset_stage.prepare_dataset(data, Path(root), report_dir=Path(run_dir))
    c = result.manifest["counts"]
    create_markdown_artifact(
        key="dataset",
        markdown=f"**{data.name}** `sha256:{result.handle.sha256[:12]}` — {c['users']:,} users, "
        f"{c['items']:,} items, {c['interactions']:,} interactions; splits {c['splits']}"
        f"{' (reused)' if result.reused else ''}",
        description="Prepared dataset",
    )
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
            for r in result.validation.results
        ],
        description=f"Data validation of {result.handle.uri} (Data Docs: {result.validation.docs_path})",
    )
    docs = result.validation.docs_path
    create_link_artifact(
        key="data-docs", link=docs.as_uri(), link_text=str(docs), description="Data Docs (opens offline)"
    )
    return result.handle
