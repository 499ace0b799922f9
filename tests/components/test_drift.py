"""The night's drift report: new products, popularity and history-length shift, champion decay."""

from __future__ import annotations

import datetime as dt

import pytest

from shopdistill.components.data.dataset import load_dataset, prepare_dataset
from shopdistill.components.drift import champion_drift, data_drift, drift_markdown
from tests.components.data.test_partitions import START, day_rows, nightly, ten_days, write_days


def test_new_products_and_the_popularity_shift_are_measured_against_last_night(tmp_path):
    log = ten_days(tmp_path)
    late = START + dt.timedelta(10)
    write_days(log, {late: day_rows(late, range(20), items=16)})  # p12..p15 launch on the last day
    out = tmp_path / "out"
    a = load_dataset(prepare_dataset(nightly(log, START + dt.timedelta(9)), out).handle.uri)
    b = load_dataset(prepare_dataset(nightly(log, late), out).handle.uri)
    drift = data_drift(b, a)
    assert drift["new_items"] == 4 and drift["new_item_share"] == pytest.approx(4 / 16)
    assert 0 < drift["new_item_event_share"] < 1  # the last day's events include the new products
    assert 0 < drift["popularity_shift"] <= 1
    assert drift["sequence_length_ratio"] > 1  # one more day of history per user
    same = data_drift(a, a)
    assert same["new_items"] == 0 and same["popularity_shift"] == 0 and same["sequence_length_ratio"] == 1


def test_a_champion_below_its_registration_quality_by_more_than_the_bound_is_decayed():
    assert champion_drift(0.07, 0.10, 0.2) | {} == {
        "champion_ndcg_tonight": 0.07,
        "champion_ndcg_at_registration": 0.10,
        "champion_ratio": pytest.approx(0.7),
        "champion_decayed": True,
    }
    assert champion_drift(0.085, 0.10, 0.2)["champion_decayed"] is False
    assert champion_drift(None, 0.1, 0.2) == {} and champion_drift(0.1, None, 0.2) == {}
    assert "The champion decayed" in drift_markdown(champion_drift(0.07, 0.10, 0.2), 0.2)
    assert "first night" in drift_markdown({}, 0.2)
