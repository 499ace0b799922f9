"""A source written as a partitioned event log: one ``date=YYYY-MM-DD/events.parquet`` per day, and
the catalogue as ``items.parquet`` beside them, the layout a shop's nightly export has. The
synthetic shop (``shopdistill simulate``) or any configured source (``shopdistill data partition``).

Read back with an ``event_log`` source whose ``path`` is the folder (``data/profiles/nightly.yaml``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from shopdistill.components.artifacts import atomic_file
from shopdistill.components.config import SyntheticSource
from shopdistill.components.data.synthetic import generate

EVENTS_FILE = "events.parquet"
ITEMS_FILE = "items.parquet"


def write_partitions(source: SyntheticSource, out: str | Path) -> dict[str, Any]:
    """Generate ``source`` and write it under ``out`` by day (UTC); returns what was written."""
    interactions, items = generate(source)
    end = int(pd.Timestamp(source.start, tz="UTC").timestamp()) + source.days * 86_400
    interactions = interactions[interactions["ts"].to_numpy() < end]  # sessions past the last day end there
    return write_days(interactions, items, out)


def write_days(interactions: pd.DataFrame, items: pd.DataFrame, out: str | Path) -> dict[str, Any]:
    """Source frames (``data/schema.py``) written under ``out`` as one partition per day (UTC), with
    the catalogue beside them: any source with real timestamps becomes a log to run nights on."""
    out = Path(out)
    events = pd.DataFrame(
        {
            "user_id": interactions["user_id"],
            "item_id": interactions["item_id"],
            "timestamp": interactions["ts"],
            "event": interactions["event"],
            "price": interactions["price"],
            "session_id": interactions["session_id"],
            "seq": interactions["seq"],
        }
    )
    day = pd.to_datetime(events["timestamp"], unit="s", utc=True).dt.strftime("%Y-%m-%d")
    written = {}
    for name, rows in events.groupby(day.to_numpy(), sort=True):
        folder = out / f"date={name}"
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_file(folder / EVENTS_FILE) as tmp:
            pq.write_table(pa.Table.from_pandas(rows, preserve_index=False), tmp, compression="zstd")
        written[name] = len(rows)
    with atomic_file(out / ITEMS_FILE) as tmp:
        pq.write_table(pa.Table.from_pandas(items, preserve_index=False), tmp, compression="zstd")
    return {
        "folder": str(out),
        "days": len(written),
        "first": min(written),
        "last": max(written),
        "events": int(sum(written.values())),
        "items": int(len(items)),
    }
