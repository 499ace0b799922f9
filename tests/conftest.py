"""Shared test set-up: quiet offline environment, temp output roots, the real-data location."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
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
