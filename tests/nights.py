"""Tiny simulated nights for the tests: the tiny demo shop written as 20 day partitions
(2025-01-01 .. 2025-01-20), and the ``nightly`` profile's settings that read them."""

from __future__ import annotations

from pathlib import Path

from shopdistill.components.config import PipelineConfig, load_config
from shopdistill.components.data.simulate import write_partitions
from tests.tiny import TINY_PIPELINE

# two epochs on tiny data make KD vs no-KD a coin flip and leave the d=8 GRU far below the teacher:
# these tests are about the mechanics
TINY_SHOP = [*TINY_PIPELINE, "gate.require_beats_baseline=false", "gate.min_ratio_to_teacher=0.2"]
NIGHT_SETTINGS = [
    *(o for o in TINY_SHOP if not o.startswith("data.source.")),  # the source is the partitions
    "data.validation.min_users=10",
    "data.validation.min_items=10",
    "data.validation.min_interactions=100",
    "gate.max_regression=1",  # a tiny night's test day is a few users: tonight vs the champion is noise
]


def simulate_nights(folder: Path, days: int = 20) -> Path:
    """``folder`` holding ``days`` day partitions of the tiny shop and its ``items.parquet``."""
    demo = load_config(profile="demo", overrides=TINY_SHOP)
    write_partitions(demo.data.source.model_copy(update={"days": days}), folder)
    return folder


def nightly_config(root: Path, *extra: str) -> PipelineConfig:
    """The ``nightly`` profile (partitions in ``./data/simulated``), tiny, writing under ``root``."""
    return load_config(profile="nightly", overrides=[*NIGHT_SETTINGS, f"runtime.output_dir={root}", *extra])


def nightly_args(root: Path, *extra: str) -> list[str]:
    """The same settings as ``--set`` arguments of the CLI."""
    return [
        arg for item in [*NIGHT_SETTINGS, f"runtime.output_dir={root}", *extra] for arg in ("--set", item)
    ]
