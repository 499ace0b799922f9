"""Truncated or byte-flipped files in every stored kind: detected by checksum, then rebuilt by the
stage that owns them (same content as before the damage) or refused with a clear error; never used."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from shopdistill.components.artifacts import sha256_file
from shopdistill.components.config import load_config
from shopdistill.components.data.dataset import load_dataset, prepare_dataset
from shopdistill.components.data.schema import DatasetCorruptError
from shopdistill.components.distill.student import distill_student
from shopdistill.components.export import ExportError, OnnxScorer, export_student, onnx_available
from shopdistill.components.models.checkpoint import CheckpointError, load_model, load_teacher
from shopdistill.components.sequences import SequenceData
from shopdistill.components.soft_labels.format import SoftLabelCacheError, verify_soft_labels
from shopdistill.components.soft_labels.writer import cache_soft_labels
from shopdistill.components.training.teacher import train_teacher
from tests.tiny import TINY_PIPELINE

pytestmark = [pytest.mark.faults, pytest.mark.slow]

CONFIG = load_config(profile="demo", overrides=TINY_PIPELINE)


@dataclass
class Stored:
    """What one pass of every stage wrote, and how to run each stage again."""

    root: Path

    def dataset(self) -> Any:
        return prepare_dataset(CONFIG.data, self.root, validate=False)

    def teacher(self) -> Any:
        ds = self.dataset().handle
        return train_teacher(CONFIG.teacher, SequenceData.from_path(ds.uri), ds.sha256, self.root, "demo", 0)[
            1
        ]

    def soft_labels(self) -> Any:
        ds, run = self.dataset().handle, self.teacher()
        return cache_soft_labels(
            load_teacher(run.checkpoint, run.checkpoint_sha256),
            SequenceData.from_path(ds.uri),
            self.root,
            teacher_digest=run.checkpoint_sha256,
            dataset_digest=ds.sha256,
            max_len=CONFIG.teacher.model.max_len,
            top_k=CONFIG.distill.top_k,
        )[0]

    def student(self) -> Any:
        ds, cache = self.dataset().handle, self.soft_labels()
        data = SequenceData.from_path(ds.uri)
        s = CONFIG.student
        return distill_student(
            data, s.model, s.train, CONFIG.distill, self.root, dataset_digest=ds.sha256, cache=cache
        )[1]

    def export(self) -> Any:
        result = self.student()
        ds = load_dataset(self.dataset().handle.uri)
        return export_student(result.checkpoint, ds, self.root / "exports" / "student")


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """Every stage run once; the digests of what they wrote."""
    root = tmp_path_factory.mktemp("pristine")
    stored = Stored(root)
    digests = {
        "dataset": stored.dataset().handle.sha256,
        "teacher": stored.teacher().checkpoint_sha256,
        "soft_labels": stored.soft_labels().sha256,
        "student": stored.student().checkpoint_sha256,
    }
    if onnx_available():
        digests["export"] = sha256_file(stored.export().path / "model.onnx")
    return root, digests


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = (torch.load(p, weights_only=True)["state_dict"] for p in (a, b))
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: max(1, path.stat().st_size // 2)])


def flip(path: Path) -> None:
    blob = bytearray(path.read_bytes())
    blob[len(blob) * 3 // 4] ^= 0x01  # one bit, inside the payload
    path.write_bytes(bytes(blob))


def one(root: Path, pattern: str) -> Path:
    (path,) = [p for p in root.rglob(pattern) if not any(part.startswith(".") for part in p.parts[-3:])]
    return path


# (kind, file pattern, damage, how the damage is detected without rebuilding)
CASES = [
    (
        "dataset",
        "datasets/*/interactions.parquet",
        flip,
        lambda s, f: load_dataset(f.parent),
        DatasetCorruptError,
    ),
    (
        "dataset",
        "datasets/*/manifest.json",
        truncate,
        lambda s, f: load_dataset(f.parent),
        DatasetCorruptError,
    ),
    (
        "soft_labels",
        "soft_labels/*/soft_labels.parquet",
        flip,
        lambda s, f: verify_soft_labels(f.parent),
        SoftLabelCacheError,
    ),
    (
        "soft_labels",
        "soft_labels/*/manifest.json",
        truncate,
        lambda s, f: verify_soft_labels(f.parent),
        SoftLabelCacheError,
    ),
    ("teacher", "teachers/*/best.pt", flip, "teacher", CheckpointError),
    ("teacher", "teachers/*/last.pt", truncate, None, None),
    ("student", "students/*/best.pt", flip, "student", CheckpointError),
    ("student", "students/*/last.pt", flip, None, None),
    ("export", "exports/student/model.onnx", flip, lambda s, f: OnnxScorer(f.parent), ExportError),
    ("export", "exports/student/export.json", truncate, lambda s, f: OnnxScorer(f.parent), ExportError),
]


@pytest.mark.parametrize(
    "kind, pattern, damage, detect, error",
    CASES,
    ids=[f"{c[0]}-{c[1].split('/')[-1]}-{c[2].__name__}" for c in CASES],
)
def test_damage_is_detected_and_the_stage_rebuilds_the_same_output(
    pristine, tmp_path, kind, pattern, damage, detect, error
):
    if kind == "export" and not onnx_available():
        pytest.skip("the [onnx] extra is not installed")
    base, digests = pristine
    root = tmp_path / "root"
    shutil.copytree(base, root)
    stored = Stored(root)
    file = one(root, pattern.split("/", 1)[0] + "/" + pattern.split("/", 1)[1])
    damage(file)
    if detect in ("teacher", "student"):  # loading by the handle's digest refuses the changed file
        with pytest.raises(CheckpointError, match="does not match its recorded sha256"):
            load_model(file, digests[kind])
    elif detect is not None:
        with pytest.raises(error):
            detect(stored, file)
    # the owning stage notices, rebuilds, and ends with exactly what it had before the damage
    if kind == "dataset":
        again = stored.dataset()
        assert not again.reused and again.handle.sha256 == digests[kind]
        load_dataset(again.handle.uri)
    elif kind in ("teacher", "student"):
        # torch.save's bytes differ per call: the same weights, and a digest that names the new file
        run = stored.teacher() if kind == "teacher" else stored.student()
        path, digest = (run.checkpoint, run.checkpoint_sha256)
        assert same_weights(path, base / path.relative_to(root)) and sha256_file(path) == digest
        load_model(path, digest)
    elif kind == "soft_labels":
        assert stored.soft_labels().sha256 == digests[kind]
    else:
        assert sha256_file(stored.export().path / "model.onnx") == digests[kind]
        OnnxScorer(file.parent)
