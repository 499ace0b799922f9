"""Shared test set-up: quiet offline environment, temp output roots, the real-data location."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from shopdistill.flows.environment import apply_quiet_defaults

# Prefect reads PREFECT_HOME when it is first imported: a private one per test session keeps cached
# results and the temporary server's database out of ~/.prefect (and out of the next session).
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="shopdistill-prefect-")
apply_quiet_defaults()
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.pop("PREFECT_API_URL", None)
os.environ.setdefault("OMP_NUM_THREADS", "1")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SHOPDISTILL_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    """../shared/data, or a skip that says why."""
    beauty = SHARED_DATA / "amazon-beauty" / "Beauty.txt"
    if not beauty.is_file():
        pytest.skip(f"real data not available: {beauty} is absent (see DEVELOPERS.md, Data)")
    return SHARED_DATA


@pytest.fixture
def out_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private output root for datasets and runs."""
    root = tmp_path / "out"
    monkeypatch.setenv("SHOPDISTILL_DATA_DIR", str(root))
    return root


@pytest.fixture(scope="session")
def prefect_harness():
    """One temporary Prefect API for the session, heartbeats off (each would cost ~1 s per flow)."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
            yield


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """A small synthetic shop, prepared once per test session (no validation, for speed)."""
    from shopdistill.components.config import DataConfig, PreprocessConfig, SyntheticSource
    from shopdistill.components.data.dataset import load_dataset, prepare_dataset

    root = tmp_path_factory.mktemp("tiny")
    cfg = DataConfig(
        name="tiny",
        source=SyntheticSource(seed=5, n_users=300, n_items=80),
        preprocess=PreprocessConfig(dedupe="consecutive"),
    )
    result = prepare_dataset(cfg, root, validate=False)
    return load_dataset(result.handle.uri)


@pytest.fixture(scope="session")
def tiny_data(tiny_dataset):
    from shopdistill.components.sequences import SequenceData

    return SequenceData.from_dataset(tiny_dataset)


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray instance with 2 CPUs for a module's DDP runs (they join it instead of starting one)."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
