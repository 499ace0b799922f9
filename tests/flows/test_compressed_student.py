"""A compressed student (pq codes plus full rows for the most frequent items) goes through the whole
product path unchanged: the nightly flow sizes its full rows to the catalogue, trains, exports and
registers it, and the guide serves it on ONNX and on torch with the same recommendations."""

from __future__ import annotations

import pytest

from shopdistill.components.config import load_config
from shopdistill.components.guide import Request, load_guide
from shopdistill.components.models.budget import fill_budget, size_budget
from shopdistill.components.models.checkpoint import load_model
from shopdistill.components.registry import Registry
from shopdistill.flows.nightly import nightly_distillation
from tests.nights import TINY_SHOP

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

PQ = "{name: pq, model: {item_embedding: pq, pq_groups: 2, pq_centroids: 16}, fill_budget: true}"


def test_a_pq_student_is_registered_and_served_on_both_engines(tmp_path):
    overrides = [*TINY_SHOP, f"candidates.students=[{PQ}]", f"runtime.output_dir={tmp_path}"]
    config = load_config(profile="demo", overrides=overrides)
    assert nightly_distillation(config=config, latency_requests=5, return_state=True).is_completed()
    registry = Registry(config.registry, config.runtime.root)
    (version,) = registry.versions()
    student, model_cfg, _ = load_model(registry.download_student(version, str(tmp_path / "dl")) / "best.pt")
    n_items = student.item_emb.n_items
    rows = fill_budget(model_cfg, n_items, size_budget(config.student.model, n_items)).pq_full_rows
    assert model_cfg.item_embedding == "pq" and 0 < model_cfg.pq_full_rows == rows < n_items
    assert int((student.item_emb.slot > 0).sum()) == rows  # within the d=16 student's size
    onnx = load_guide(registry, version=version.version, engine="onnx")
    torch_guide = load_guide(registry, version=version.version, engine="torch")
    session = [onnx.catalogue.raw[i] for i in (1, 2, 3)]
    a, b = (g.recommend(Request(items=session, k=5)) for g in (onnx, torch_guide))
    assert len(a["recommendations"]) == 5 and a["fallback"] is None
    assert [r["id"] for r in a["recommendations"]] == [r["id"] for r in b["recommendations"]]
