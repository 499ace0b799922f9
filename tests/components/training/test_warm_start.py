"""Warm starts across nights: the item table grows, training continues for the warm bound, the
lineage records where each night started, and a cold start comes when it is due or asked for."""

from __future__ import annotations

import json

import pytest
import torch

from shopdistill.components.config import ModelConfig, TeacherConfig, TrainConfig, WarmStartConfig
from shopdistill.components.models import build_model
from shopdistill.components.models.checkpoint import CheckpointError, save_model
from shopdistill.components.training import warm_start
from shopdistill.components.training.teacher import train_teacher
from shopdistill.components.training.warm_start import WarmStart, choose, grow_items, start_from

MODEL = ModelConfig(d_model=8, n_layers=1, n_heads=1, max_len=20)


def quiet(_msg):
    pass


def test_the_item_table_grows_with_the_mean_item_and_keeps_every_known_row(tmp_path):
    torch.manual_seed(0)
    old = build_model(MODEL, 10)
    digest = save_model(tmp_path / "best.pt", old, MODEL, 10)
    new = build_model(MODEL, 14)
    start_from(new, WarmStart(tmp_path / "best.pt", digest, 0), 14)
    table, before = new.item_emb.weight.detach(), old.item_emb.weight.detach()
    assert table.shape == (15, 8)
    torch.testing.assert_close(table[:11], before)  # items 1..10 (and padding) unchanged
    torch.testing.assert_close(table[11:], before[1:].mean(0).expand(4, -1))
    for key, value in old.state_dict().items():
        if key != "item_emb.weight":
            torch.testing.assert_close(new.state_dict()[key], value)
    with pytest.raises(CheckpointError, match="cannot shrink"):
        grow_items(old.state_dict(), 5)
    with pytest.raises(CheckpointError, match="does not fit this model"):
        start_from(
            build_model(MODEL.model_copy(update={"d_model": 12}), 14),
            WarmStart(tmp_path / "best.pt", digest, 0),
            14,
        )


@pytest.mark.parametrize("scheme", ["pq", "qr"])
def test_a_compressed_item_table_continues_on_the_same_catalogue_and_refuses_to_grow(tmp_path, scheme):
    cfg = MODEL.model_copy(update={"item_embedding": scheme, "pq_groups": 2, "pq_centroids": 4})
    torch.manual_seed(0)
    old = build_model(cfg, 10)
    digest = save_model(tmp_path / "best.pt", old, cfg, 10)
    same = build_model(cfg, 10)
    start_from(same, WarmStart(tmp_path / "best.pt", digest, 0), 10)
    torch.testing.assert_close(same.item_emb.weight, old.item_emb.weight)
    with pytest.raises(CheckpointError, match=f"a {scheme} item table of 10 items cannot grow to 14"):
        start_from(build_model(cfg, 14), WarmStart(tmp_path / "best.pt", digest, 0), 14)


def test_a_cold_start_comes_every_n_nights_or_when_asked():
    every3 = WarmStartConfig(full_retrain_every=3)
    first, second, third = (WarmStart(None, "abc", generation=g) for g in (0, 1, 2))
    assert choose(every3, first) is first and choose(every3, second) is second
    assert choose(every3, third) is None  # a third warm night would be due: cold
    assert choose(WarmStartConfig(full_retrain_every=1), first) is None
    assert choose(WarmStartConfig(cold=True), first) is None
    assert choose(WarmStartConfig(), None) is None


def test_the_teacher_continues_from_last_nights_and_records_it(tiny_data, tmp_path):
    teacher = TeacherConfig(
        model=MODEL,
        train=TrainConfig(epochs=3, batch_size=64, patience=10),
        warm=WarmStartConfig(epochs=1, full_retrain_every=3),
    )
    args = dict(root=tmp_path, data_name="shop", seed=0, log=quiet)
    _, night1 = train_teacher(teacher, tiny_data, "dataset-1", **args)
    _, night2 = train_teacher(teacher, tiny_data, "dataset-2", previous_dataset="dataset-1", **args)
    _, night3 = train_teacher(teacher, tiny_data, "dataset-3", previous_dataset="dataset-2", **args)
    _, night4 = train_teacher(teacher, tiny_data, "dataset-4", previous_dataset="dataset-3", **args)
    assert night1.started_from == [None] and len(night1.history) == 3
    assert night2.started_from == [night1.checkpoint_sha256] and len(night2.history) == 1  # the warm bound
    assert night3.started_from == [night2.checkpoint_sha256]
    assert night4.started_from == [None] and len(night4.history) == 3  # full_retrain_every=3: cold again
    records = [
        json.loads((r.checkpoint.parent / warm_start.LINEAGE).read_text())
        for r in (night1, night2, night3, night4)
    ]
    assert [r["generation"] for r in records] == [0, 1, 2, 0]
    assert (
        records[1]["started_from"] == night1.checkpoint_sha256 and records[1]["dataset_digest"] == "dataset-2"
    )
