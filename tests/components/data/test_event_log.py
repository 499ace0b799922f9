"""Event-log source: the formats it reads, and every kind of bad input with its exact message.

Each bad input goes through ``prepare_dataset`` and must leave no dataset folder behind.
"""

from pathlib import Path

import pandas as pd
import pytest

from shopdistill.components.config import (
    CatalogFile,
    ColumnMapping,
    DataConfig,
    EventLogSource,
    ValidationConfig,
)
from shopdistill.components.data.dataset import load_dataset, prepare_dataset
from shopdistill.components.data.schema import DataSourceError
from shopdistill.components.validation import DataValidationError

BASE_TS = 1_700_000_000
HEADER = "timestamp,visitorid,event,itemid,price"
RETAIL_COLUMNS = ColumnMapping(
    user="visitorid", item="itemid", timestamp="timestamp", event="event", price="price"
)
RETAIL_EVENTS = {"addtocart": "cart", "transaction": "purchase"}
SMALL = ValidationConfig(min_users=10, min_items=10, min_interactions=100)


def good_rows(n_users=30, per_user=5, ts_scale=1):
    rows = []
    for u in range(n_users):
        for k in range(per_user):
            item = (u * 7 + k * 3) % 20
            event = ["view", "view", "addtocart", "transaction", "view"][k % 5]
            rows.append(f"{(BASE_TS + u * 1000 + k * 60) * ts_scale},{u},{event},{item},{item + 0.5}")
    return rows


def write(tmp_path: Path, lines, name="events.csv", encoding="utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes("\n".join(lines).encode(encoding) + b"\n")
    return path


def config(path: Path, **kw) -> DataConfig:
    source = dict(path=path, columns=RETAIL_COLUMNS, event_map=RETAIL_EVENTS)
    source.update(kw.pop("source", {}))
    return DataConfig(
        name="log", source=EventLogSource(**source), validation=kw.pop("validation", SMALL), **kw
    )


def assert_nothing_written(root: Path):
    datasets = root / "datasets"
    assert not datasets.exists() or not any(datasets.iterdir()), list(datasets.iterdir())


def prepare_fails(cfg: DataConfig, root: Path, error, match: str):
    with pytest.raises(error, match=match) as info:
        prepare_dataset(cfg, root)
    assert_nothing_written(root)
    return info


# ------------------------------------------------------------------------------------- formats
def test_reads_retail_log_with_event_map(tmp_path):
    path = write(tmp_path, [HEADER, *good_rows()])
    result = prepare_dataset(config(path), tmp_path / "out")
    ds = load_dataset(result.handle.uri)
    assert result.manifest["counts"]["users"] == 30
    assert set(ds.interactions["event"]) == {"view", "cart", "purchase"}
    assert ds.interactions["ts"].min() == BASE_TS
    assert ds.interactions["price"].notna().all()
    # no catalogue file: items come from the log
    assert len(ds.items) == 20 and ds.items["price"].notna().all()


@pytest.mark.parametrize("scale,unit", [(1, "auto"), (1000, "auto"), (1000, "ms"), (1, "s")])
def test_seconds_and_milliseconds(tmp_path, scale, unit):
    path = write(tmp_path, [HEADER, *good_rows(ts_scale=scale)])
    result = prepare_dataset(config(path, source={"timestamp_unit": unit}), tmp_path / "out")
    ds = load_dataset(result.handle.uri)
    assert ds.interactions["ts"].min() == BASE_TS


def test_iso_timestamps_and_parquet_input(tmp_path):
    frame = pd.read_csv(write(tmp_path, [HEADER, *good_rows()]), dtype=str)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"].astype(int), unit="s", utc=True).map(
        lambda t: t.isoformat()
    )
    frame.to_parquet(tmp_path / "events.parquet")
    result = prepare_dataset(config(tmp_path / "events.parquet"), tmp_path / "out")
    ds = load_dataset(result.handle.uri)
    assert ds.interactions["ts"].min() == BASE_TS


def test_catalogue_file_and_semicolons(tmp_path):
    lines = [line.replace(",", ";") for line in [HEADER, *good_rows()]]
    path = write(tmp_path, lines)
    cat = write(
        tmp_path,
        ["id;name;maker;cat"] + [f"{i};Item {i};Brand{i % 3};Shoes > Running" for i in range(25)],
        "cat.csv",
    )
    catalog = CatalogFile(
        path=cat, delimiter=";", columns={"item": "id", "title": "name", "brand": "maker", "category": "cat"}
    )
    result = prepare_dataset(config(path, source={"delimiter": ";", "catalog": catalog}), tmp_path / "out")
    ds = load_dataset(result.handle.uri)
    assert ds.items["title"].str.startswith("Item ").all()
    assert result.manifest["counts"]["preprocessing"]["catalogue_items_without_interactions"] == 5


def test_log_without_event_column_uses_default_event(tmp_path):
    lines = ["ts,user,item"] + [",".join(r.split(",")[i] for i in (0, 1, 3)) for r in good_rows()]
    cfg = DataConfig(
        name="log",
        source=EventLogSource(
            path=write(tmp_path, lines), columns={"user": "user", "item": "item", "timestamp": "ts"}
        ),
        validation=SMALL,
    )
    ds = load_dataset(prepare_dataset(cfg, tmp_path / "out").handle.uri)
    assert set(ds.interactions["event"]) == {"view"}


# --------------------------------------------------------------------------------- bad input
def test_missing_file(tmp_path):
    prepare_fails(
        config(tmp_path / "nope.csv"),
        tmp_path / "out",
        DataSourceError,
        r"event log file not found: .*nope\.csv",
    )


def test_wrong_delimiter(tmp_path):
    path = write(tmp_path, [line.replace(",", ";") for line in [HEADER, *good_rows()]])
    prepare_fails(
        config(path),
        tmp_path / "out",
        DataSourceError,
        r"lacks the column\(s\) 'visitorid', 'itemid', 'timestamp', 'event', 'price' named in the column mapping; "
        r"it has 'timestamp;visitorid;event;itemid;price'; the header looks ';'-separated: set delimiter: ';'",
    )


def test_misnamed_column(tmp_path):
    path = write(tmp_path, [HEADER.replace("visitorid", "visitor"), *good_rows()])
    prepare_fails(
        config(path),
        tmp_path / "out",
        DataSourceError,
        r"lacks the column\(s\) 'visitorid' named in the column mapping; it has 'timestamp', 'visitor', 'event', 'itemid', 'price'$",
    )


def test_empty_file_and_header_only(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    prepare_fails(config(empty), tmp_path / "out", DataSourceError, r"event log file is empty: .*empty\.csv")
    header = write(tmp_path, [HEADER], "header.csv")
    prepare_fails(config(header), tmp_path / "out", DataSourceError, r"header\.csv has a header but no rows")


def test_non_utf8_bytes(tmp_path):
    rows = [HEADER, *good_rows()]
    rows[5] = rows[5].replace(",view,", ",vi\u00e9w,")
    path = write(tmp_path, rows, encoding="latin-1")
    offset = path.read_bytes().index(b"\xe9")  # counted from the file's start; row 5 is line 6
    prepare_fails(
        config(path),
        tmp_path / "out",
        DataSourceError,
        rf"is not valid utf-8: byte 0xe9 at offset {offset:,} \(line 6\); re-encode the file as UTF-8 or set",
    )


def test_null_ids(tmp_path):
    rows = [HEADER, *good_rows()]
    parts = rows[3].split(",")
    parts[1] = ""
    rows[3] = ",".join(parts)
    prepare_fails(
        config(path := write(tmp_path, rows)),
        tmp_path / "out",
        DataValidationError,
        r"interactions: every row has a user id: 1 of 150 rows \(0\.67%\) fail",
    )
    assert path.exists()


def test_unparseable_timestamp(tmp_path):
    rows = [HEADER, *good_rows()]
    rows[4] = "yesterday" + rows[4][rows[4].index(",") :]
    prepare_fails(
        config(write(tmp_path, rows)),
        tmp_path / "out",
        DataSourceError,
        r"column 'timestamp': 1 value\(s\) cannot be parsed as timestamps \(Unix seconds\), e\.g\. row 3: 'yesterday'",
    )


def test_future_and_ancient_timestamps(tmp_path):
    rows = [HEADER, *good_rows()]
    rows[1] = "4102444800" + rows[1][rows[1].index(",") :]  # 2100-01-01
    rows[2] = "315532800" + rows[2][rows[2].index(",") :]  # 1980-01-01
    info = prepare_fails(
        config(write(tmp_path, rows)),
        tmp_path / "out",
        DataValidationError,
        r"interactions: timestamps lie between 1995-01-01 and now .*: 2 of 150 rows \(1\.33%\) fail, "
        r"e\.g\. '2100-01-01T00:00:00\+00:00', '1980-01-01T00:00:00\+00:00'",
    )
    assert len(info.value.report.failures) == 1


def test_negative_prices(tmp_path):
    rows = [HEADER, *good_rows()]
    rows[7] = rows[7].rsplit(",", 1)[0] + ",-3.5"
    prepare_fails(
        config(write(tmp_path, rows)),
        tmp_path / "out",
        DataValidationError,
        r"interactions: prices are >= 0 where present: 1 of 150 rows \(0\.67%\) fail, e\.g\. -3\.5",
    )


def test_duplicates_beyond_threshold(tmp_path):
    rows = good_rows()
    path = write(tmp_path, [HEADER, *rows, *rows[:20]])
    prepare_fails(
        config(path),
        tmp_path / "out",
        DataValidationError,
        r"interactions: at most 5\.0% of rows repeat another row exactly \(same user, item, time and event\): "
        r"40 of 170 rows \(23\.53%\) fail",
    )
    # below the threshold (or deduped when allowed) it passes
    ok = config(path, validation=SMALL.model_copy(update={"max_duplicate_rate": 0.3}))
    ok = ok.model_copy(update={"preprocess": ok.preprocess.model_copy(update={"dedupe": "exact"})})
    assert prepare_dataset(ok, tmp_path / "out").manifest["counts"]["interactions"] == 150


def test_unknown_events(tmp_path):
    rows = [HEADER, *good_rows()]
    path = write(tmp_path, rows)
    prepare_fails(
        config(path, source={"event_map": {}}),
        tmp_path / "out",
        DataValidationError,
        r"interactions: event is one of view, click, cart, purchase, review \(map other values with event_map\): "
        r"60 of 150 rows \(40\.00%\) fail, e\.g\. 'addtocart', 'transaction'",
    )


def test_items_absent_from_catalogue(tmp_path):
    path = write(tmp_path, [HEADER, *good_rows()])
    cat = write(tmp_path, ["item_id,title"] + [f"{i},Item {i}" for i in range(18)], "cat.csv")
    prepare_fails(
        config(path, source={"catalog": CatalogFile(path=cat, columns={"title": "title"})}),
        tmp_path / "out",
        DataValidationError,
        r"interactions: every interacted item exists in the catalogue: 14 of 150 rows \(9\.33%\) fail, e\.g\. '19', '18'",
    )


def test_dataset_too_small_to_split(tmp_path):
    rows = [HEADER] + [f"{BASE_TS + u},{u},view,{u % 20},1.0" for u in range(150)]  # one row per user
    prepare_fails(
        config(
            write(tmp_path, rows), validation=ValidationConfig(min_users=1, min_items=1, min_interactions=1)
        ),
        tmp_path / "out",
        DataSourceError,
        r"cannot make a leave-one-out split: no user has the 3 interactions it needs",
    )


def test_too_few_users_after_preprocessing(tmp_path):
    path = write(tmp_path, [HEADER, *good_rows()])
    prepare_fails(
        config(path, validation=ValidationConfig(min_users=100, min_items=10, min_interactions=100)),
        tmp_path / "out",
        DataValidationError,
        r"prepared: at least 100 users remain after preprocessing: observed 30",
    )


def test_several_failures_are_all_listed(tmp_path):
    rows = [HEADER, *good_rows()]
    parts = rows[3].split(",")
    parts[3] = ""  # null item
    parts[4] = "-1"  # negative price
    rows[3] = ",".join(parts)
    info = prepare_fails(
        config(write(tmp_path, rows)), tmp_path / "out", DataValidationError, "data validation failed: 3 of"
    )
    msg = str(info.value)
    assert "every row has an item id: 1 of 150" in msg
    assert "prices are >= 0 where present: 1 of 150" in msg
    assert "every interacted item exists in the catalogue" in msg
