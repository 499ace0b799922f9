"""A partitioned event log read night by night: the window, the partition checks, stable id maps
across nights, and the next-day split."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pandas as pd
import pytest

from shopdistill.components.config import DataConfig, EventLogSource, PreprocessConfig, ValidationConfig
from shopdistill.components.data import partitions
from shopdistill.components.data.dataset import load_dataset, prepare_dataset
from shopdistill.components.data.schema import DataSourceError
from shopdistill.components.sequences import SequenceData
from shopdistill.components.validation import DataValidationError

START = dt.date(2025, 3, 1)
HEADER = "timestamp,user,item"
SMALL = ValidationConfig(min_users=5, min_items=5, min_interactions=50)


def day_rows(day: dt.date, users: range, items: int = 12, per_user: int = 2) -> list[str]:
    """``per_user`` views per user on ``day``; items cycle so that every item is seen."""
    t0 = int(pd.Timestamp(day, tz="UTC").timestamp()) + 3600
    return [
        f"{t0 + u * 60 + k},u{u},p{(u * 3 + k + day.day) % items}" for u in users for k in range(per_user)
    ]


def write_days(folder: Path, days: dict[dt.date, list[str]], hive: bool = True) -> Path:
    for day, rows in days.items():
        path = folder / f"date={day}" / "part-0.csv" if hive else folder / f"events-{day}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join([HEADER, *rows]) + "\n")
    return folder


def nightly(path: Path, as_of: dt.date | None = None, window: int | None = None, **validation) -> DataConfig:
    return DataConfig(
        name="log",
        source=EventLogSource(path=path, columns={"user": "user", "item": "item", "timestamp": "timestamp"}),
        as_of=as_of,
        window_days=window,
        preprocess=PreprocessConfig(split="next_day", dedupe="none"),
        validation=SMALL.model_copy(update=validation),
    )


def ten_days(tmp_path: Path, hive: bool = True, users: range = range(20)) -> Path:
    return write_days(
        tmp_path / "log",
        {START + dt.timedelta(d): day_rows(START + dt.timedelta(d), users) for d in range(10)},
        hive,
    )


@pytest.mark.parametrize("hive", [True, False], ids=["date=YYYY-MM-DD folders", "dated files"])
def test_both_layouts_list_their_days_and_a_night_reads_its_window(tmp_path, hive):
    log = ten_days(tmp_path, hive)
    parts = partitions.list_partitions(log if hive else log / "events-*.csv")
    assert [p.day for p in parts] == [START + dt.timedelta(d) for d in range(10)]
    chosen = partitions.select(parts, START + dt.timedelta(6), window_days=3)
    assert [p.day.day for p in chosen] == [5, 6, 7]
    assert partitions.latest_complete_day(parts, today=START + dt.timedelta(9)) == START + dt.timedelta(8)
    with pytest.raises(DataSourceError, match="no day partition in"):
        partitions.select(parts, START - dt.timedelta(1), window_days=2)


def test_a_night_reads_only_its_days_and_records_them(tmp_path):
    log = ten_days(tmp_path)
    result = prepare_dataset(nightly(log, START + dt.timedelta(6), window=4), tmp_path / "out")
    night = result.manifest["night"]
    assert (
        night["as_of"] == "2025-03-07"
        and night["days"] == ["2025-03-04", "2025-03-07"]
        and night["partitions"] == 4
    )
    ds = load_dataset(result.handle.uri)
    days = pd.to_datetime(ds.interactions["ts"], unit="s", utc=True).dt.date
    assert days.min() == START + dt.timedelta(3) and days.max() == START + dt.timedelta(6)


def test_the_next_day_split_tests_on_the_night_and_validates_on_the_day_before(tmp_path):
    log = ten_days(tmp_path)
    ds = load_dataset(prepare_dataset(nightly(log, START + dt.timedelta(5)), tmp_path / "out").handle.uri)
    day = pd.to_datetime(ds.interactions["ts"], unit="s", utc=True).dt.date
    by_split = ds.interactions.assign(day=day).groupby("split")["day"].agg(["min", "max"])
    assert by_split.loc["test"].tolist() == [START + dt.timedelta(5)] * 2
    assert by_split.loc["valid"].tolist() == [START + dt.timedelta(4)] * 2
    assert by_split.loc["train", "max"] == START + dt.timedelta(3)
    # the scored event is each user's last of the day, with the day's earlier events in its history
    data = SequenceData.from_dataset(ds)
    inter = ds.interactions
    for split in ("valid", "test"):
        batch = data.eval_batch(data.eval_users(split), split, max_len=100)
        last = inter[inter["split"] == split].groupby("user_id")["item_id"].last()
        assert batch.targets.tolist() == last.loc[batch.users].tolist()
        assert (
            batch.lengths.numpy()
            == [(inter["user_id"] == u).sum() - 1 - (split == "valid") * 2 for u in batch.users]
        ).all()


def test_ids_are_stable_across_nights_and_new_ones_are_appended(tmp_path):
    log = ten_days(tmp_path, users=range(20))
    late = START + dt.timedelta(10)
    write_days(log, {late: day_rows(late, range(15, 30), items=16)})  # new users u20..u29, items p12..p15
    out = tmp_path / "out"
    first = prepare_dataset(nightly(log, START + dt.timedelta(9)), out)
    second = prepare_dataset(nightly(log, late), out)
    a, b = load_dataset(first.handle.uri), load_dataset(second.handle.uri)
    for table, key in (("user_map", "user_id"), ("item_map", "item_id")):
        old, new = getattr(a, table), getattr(b, table)
        assert new.head(len(old)).reset_index(drop=True).equals(old.reset_index(drop=True)), table
        assert len(new) > len(old)
        assert new[key].tolist() == list(range(new[key].iloc[0], new[key].iloc[0] + len(new)))  # dense
    assert set(b.item_map["raw_item_id"].iloc[len(a.item_map) :]) == {"p12", "p13", "p14", "p15"}
    assert second.manifest["night"]["id_maps_from"] == first.handle.sha256
    stored = json.loads((second.handle.path / "manifest.json").read_text())
    assert stored["night"]["id_maps_from"] == first.handle.sha256


def test_a_missing_night_is_a_finding_that_names_the_day(tmp_path):
    log = ten_days(tmp_path)
    with pytest.raises(DataValidationError, match=r"the night's partition \(2025-03-12\) is there"):
        prepare_dataset(
            nightly(log, dt.date(2025, 3, 12), window=7), tmp_path / "out", report_dir=tmp_path / "r"
        )
    assert not (tmp_path / "out" / "datasets").exists()


def test_an_empty_night_fails_and_warn_mode_only_reports_it(tmp_path):
    log = ten_days(tmp_path)
    night = START + dt.timedelta(10)
    write_days(log, {night: []})  # a header and no rows: the export ran, nothing arrived
    with pytest.raises(DataValidationError, match=r"the night's partition \(2025-03-11\) holds events"):
        prepare_dataset(nightly(log, night), tmp_path / "out")
    lenient = nightly(log, night, partition_findings="warn")
    with pytest.raises(DataSourceError, match="next-day split for 2025-03-11: the test part is empty"):
        prepare_dataset(lenient, tmp_path / "out")  # reported only, but there is nothing to test on


def test_a_night_far_off_the_recent_volume_is_a_finding(tmp_path):
    log = ten_days(tmp_path, users=range(40))
    night = START + dt.timedelta(10)
    write_days(log, {night: day_rows(night, range(3))})  # 6 rows against 80 a night
    with pytest.raises(DataValidationError, match="the night's volume is 0.33x to 3x the median"):
        prepare_dataset(nightly(log, night), tmp_path / "out")
    report = prepare_dataset(nightly(log, night, partition_findings="warn"), tmp_path / "out").validation
    assert [w.description for w in report.warnings if w.suite == "partitions"] == [
        "the night's volume is 0.33x to 3x the median of the 7 nights before"
    ]


def test_the_simulator_writes_day_partitions_the_nightly_profile_reads(tmp_path, monkeypatch, capsys):
    from shopdistill.flows.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SHOPDISTILL_DATA_DIR", str(tmp_path / "out"))
    tiny = ["--set", "data.source.n_users=200", "--set", "data.source.n_items=60"]
    assert main(["simulate", "--days", "12", "--out", "data/simulated", *tiny]) == 0
    assert "in 12 day partitions (2025-01-01 .. 2025-01-12)" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "data/simulated").iterdir())[:2] == [
        "date=2025-01-01",
        "date=2025-01-02",
    ]
    small = ["--set", "data.validation.min_users=10", "--set", "data.validation.min_items=10"]
    small += ["--set", "data.validation.min_interactions=100"]
    assert main(["data", "prepare", "--profile", "nightly", *small]) == 0
    assert "night        2025-01-12, 12 day partitions 2025-01-01 .. 2025-01-12" in capsys.readouterr().out
    assert main(["simulate", "--days", "5", "--out", "x", "--launches", "2"]) == 2
    assert "--launches:" in capsys.readouterr().err
    assert main(["simulate", "--days", "5", "--out", "x", "--seasonality", "-1"]) == 2
    assert "--seasonality:" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["simulate", "--days", "0", "--out", "x"])
    assert usage.value.code == 2 and "--days must be between 1 and 3650" in capsys.readouterr().err


@pytest.mark.real_data
def test_amazon_beauty_by_day_is_a_nightly_log(shared_data, tmp_path, monkeypatch, capsys):
    """The benchmark's reviews as day partitions, read back for one night of July 2014."""
    from shopdistill.components.config import load_config
    from shopdistill.flows.cli import main

    monkeypatch.chdir(tmp_path)
    where = ["--set", f"data.source.path={shared_data / 'amazon-beauty'}"]
    assert main(["data", "partition", "--profile", "beauty", "--out", "data/beauty-days", *where]) == 0
    assert (
        "198,502 events of 12,101 products in 2,927 day partitions (2002-06-12 .. 2014-07-23)"
        in capsys.readouterr().out
    )
    config = load_config(
        profile="beauty-nightly", overrides=["data.as_of=2014-07-21", f"runtime.output_dir={tmp_path}"]
    )
    result = prepare_dataset(config.data, tmp_path)
    assert result.manifest["night"]["as_of"] == "2014-07-21"
    ds = load_dataset(result.handle.uri)
    day = pd.to_datetime(ds.interactions.loc[ds.interactions["split"] == "test", "ts"], unit="s", utc=True)
    assert set(day.dt.date) == {dt.date(2014, 7, 21)}
