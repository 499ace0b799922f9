"""A compressed student (pq codes plus full rows for the most frequent items) goes through the whole
product path unchanged: the nightly flow trains, exports and registers it, and the guide serves it on
ONNX and on torch with the same recommendations."""

from __future__ import annotations

import pytest

from shopdistill.components.config import load_config
from shopdistill.components.guide import Request, load_guide
from shopdistill.components.models.checkpoint import load_model
from shopdistill.components.registry import Registry
from shopdistill.flows.nightly import nightly_distillation
from tests.nights import TINY_SHOP

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

PQ = ["student.model.item_embedding=pq", "student.model.pq_groups=2", "student.model.pq_centroids=16"]


def test_a_pq_student_is_registered_and_served_on_both_engines(tmp_path):
    overrides = [*TINY_SHOP, *PQ, "student.model.pq_full_rows=10", f"runtime.output_dir={tmp_path}"]
    config = load_config(profile="demo", overrides=overrides)
    assert nightly_distillation(config=config, latency_requests=5, return_state=True).is_completed()
    registry = Registry(config.registry, config.runtime.root)
    (version,) = registry.versions()
    student, model_cfg, _ = load_model(registry.download_student(version, str(tmp_path / "dl")) / "best.pt")
    assert model_cfg.item_embedding == "pq" and model_cfg.pq_full_rows == 10
    assert int((student.item_emb.slot > 0).sum()) == 10  # ten items hold their own rows
    onnx = load_guide(registry, version=version.version, engine="onnx")
    torch_guide = load_guide(registry, version=version.version, engine="torch")
    session = [onnx.catalogue.raw[i] for i in (1, 2, 3)]
    a, b = (g.recommend(Request(items=session, k=5)) for g in (onnx, torch_guide))
    assert len(a["recommendations"]) == 5 and a["fallback"] is None
    assert [r["id"] for r in a["recommendations"]] == [r["id"] for r in b["recommendations"]]
