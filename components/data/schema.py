"""The canonical dataset layout every source normalises into.

Source frames (what a reader returns, raw ids as strings)::

    interactions: user_id str, item_id str, ts int64 (Unix seconds, UTC), event str,
                  price float64?, session_id str?, seq int64 (tie-breaker for equal ts)
    items:        item_id str, title str?, brand str?, category str? (" > " path), price float64?

Prepared frames (what is written as Parquet, ids dense integers, raw ids in the id maps)::

    interactions.parquet: user_id int32 (0..U-1), item_id int32 (1..I; 0 is reserved for padding),
                          ts int64, event str, price float64?, session_id str?, split str
                          sorted by user, then time, then source order
    items.parquet:        item_id int32, title, brand, category str?, price float64?
    user_map.parquet:     user_id int32, raw_user_id str
    item_map.parquet:     item_id int32, raw_item_id str

Columns marked ``?`` are always present and may be null.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

SCHEMA_VERSION = 1
SPLITS = ("train", "valid", "test")
# Strength order used when collapsing repeated rows of one item ("consecutive" dedupe).
EVENT_STRENGTH = {"view": 0, "click": 0, "review": 1, "cart": 2, "purchase": 3}

INTERACTIONS_SCHEMA = pa.schema(
    [
        ("user_id", pa.int32()),
        ("item_id", pa.int32()),
        ("ts", pa.int64()),
        ("event", pa.string()),
        ("price", pa.float64()),
        ("session_id", pa.string()),
        ("split", pa.string()),
    ]
)
ITEMS_SCHEMA = pa.schema(
    [
        ("item_id", pa.int32()),
        ("title", pa.string()),
        ("brand", pa.string()),
        ("category", pa.string()),
        ("price", pa.float64()),
    ]
)
USER_MAP_SCHEMA = pa.schema([("user_id", pa.int32()), ("raw_user_id", pa.string())])
ITEM_MAP_SCHEMA = pa.schema([("item_id", pa.int32()), ("raw_item_id", pa.string())])
TABLE_SCHEMAS = {
    "interactions": INTERACTIONS_SCHEMA,
    "items": ITEMS_SCHEMA,
    "user_map": USER_MAP_SCHEMA,
    "item_map": ITEM_MAP_SCHEMA,
}

SOURCE_INTERACTION_COLUMNS = ("user_id", "item_id", "ts", "event", "price", "session_id", "seq")
SOURCE_ITEM_COLUMNS = ("item_id", "title", "brand", "category", "price")


class DataSourceError(ValueError):
    """A data source cannot be read as the configuration says; the message says what and where."""


class DatasetTooSmallError(DataSourceError):
    """Too little data left to make the requested split."""


class DatasetCorruptError(DataSourceError):
    """A stored dataset does not match its manifest (missing file, checksum mismatch)."""


def source_interactions(user_id, item_id, ts, event, price=None, session_id=None, seq=None) -> pd.DataFrame:
    """Build a source interactions frame with canonical dtypes (ids as strings)."""
    n = len(user_id)
    frame = pd.DataFrame(
        {
            "user_id": pd.array(user_id, dtype="string"),
            "item_id": pd.array(item_id, dtype="string"),
            "ts": pd.array(ts, dtype="int64"),
            "event": pd.array(event, dtype="string"),
            "price": pd.array([None] * n if price is None else price, dtype="Float64"),
            "session_id": pd.array([None] * n if session_id is None else session_id, dtype="string"),
            "seq": pd.array(range(n) if seq is None else seq, dtype="int64"),
        }
    )
    return frame


def source_items(item_id, title=None, brand=None, category=None, price=None) -> pd.DataFrame:
    """Build a source items frame with canonical dtypes."""
    n = len(item_id)

    def col(values, dtype):
        return pd.array([None] * n if values is None else values, dtype=dtype)

    return pd.DataFrame(
        {
            "item_id": pd.array(item_id, dtype="string"),
            "title": col(title, "string"),
            "brand": col(brand, "string"),
            "category": col(category, "string"),
            "price": col(price, "Float64"),
        }
    )


def to_arrow(name: str, frame: pd.DataFrame) -> pa.Table:
    """Convert a prepared frame to an Arrow table with the canonical schema (column order enforced)."""
    schema = TABLE_SCHEMAS[name]
    return pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)
