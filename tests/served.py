"""A data folder with a registered tiny champion (v1) and a second version (v2), for the service tests."""

from __future__ import annotations

from pathlib import Path

from shopdistill.components.config import PipelineConfig, load_config
from shopdistill.components.registry import Registry
from shopdistill.flows.nightly import nightly_distillation
from tests.nights import TINY_SHOP


def register_two_versions(root: Path) -> tuple[PipelineConfig, Registry]:
    """Two nightly runs (seeds 0 and 1) of the tiny demo shop under ``root``; v1 is the champion."""
    config = load_config(profile="demo", overrides=[*TINY_SHOP, f"runtime.output_dir={root}"])
    assert nightly_distillation(config=config, latency_requests=5, return_state=True).is_completed()
    other = config.model_copy(update={"runtime": config.runtime.model_copy(update={"seed": 1})})
    nightly_distillation(config=other, latency_requests=5, return_state=True)
    registry = Registry(config.registry, config.runtime.root)
    assert len(registry.versions()) == 2
    registry.promote(1)
    return config, registry
