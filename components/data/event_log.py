"""Event-log files (CSV or Parquet) with a column mapping, plus an optional catalogue file.

Handles the common shop-log layouts, e.g. ``timestamp, visitorid, event, itemid`` with events
``view / addtocart / transaction`` (map them with ``event_map``). Timestamps may be Unix seconds,
Unix milliseconds or ISO strings (``timestamp_unit: auto`` tells them apart). Every way a file can be
unreadable raises :class:`DataSourceError` naming the file and what to change.
"""

from __future__ import annotations

import codecs
from pathlib import Path

import numpy as np
import pandas as pd

from shopdistill.components.config import CatalogFile, EventLogSource
from shopdistill.components.data.schema import DataSourceError, source_interactions, source_items
from shopdistill.components.messages import clip

_OTHER_DELIMITERS = (",", ";", "\t", "|")
# Unix seconds beyond this (year 5138) are taken to be milliseconds.
_MS_THRESHOLD = 100_000_000_000


def _first_undecodable(path: Path, encoding: str, block: int = 1 << 20) -> tuple[int, int, int]:
    """(byte offset in the file, the byte, 1-based line) of the first byte ``encoding`` cannot decode.

    pandas decodes in chunks and reports the offset inside a chunk, so the file is decoded again
    here, incrementally, counting from its start.
    """
    decoder = codecs.getincrementaldecoder(encoding)()
    start, lines = 0, 1  # file offset of the bytes the decoder is given next; newlines before them
    with open(path, "rb") as f:
        while chunk := f.read(block):
            pending = decoder.getstate()[0]  # bytes held back from the previous chunk
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                data = pending + chunk
                return (
                    start - len(pending) + exc.start,
                    data[exc.start],
                    lines + data[: exc.start].count(b"\n"),
                )
            lines += chunk.count(b"\n")
            start += len(chunk)
    raise DataSourceError(f"{path} could not be decoded as {encoding}, but no undecodable byte was found")


def _format_of(path: Path, declared: str) -> str:
    if declared != "auto":
        return declared
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".csv", ".tsv", ".txt", ".gz"):
        return "csv"
    raise DataSourceError(
        f"{path}: cannot tell the format from the suffix {suffix!r}; set format: csv or parquet"
    )


def read_table(
    path: Path,
    fmt: str,
    delimiter: str,
    encoding: str,
    required: list[str],
    what: str,
    empty_ok: bool = False,
) -> pd.DataFrame:
    """Read a CSV/Parquet file as strings (CSV) with clear errors; check that ``required`` columns exist.
    ``empty_ok``: a header without rows is an empty frame, not an error (a day partition)."""
    if not path.exists():
        raise DataSourceError(f"{what} file not found: {path}")
    if path.is_dir():
        raise DataSourceError(f"{what} path is a directory, expected a file: {path}")
    fmt = _format_of(path, fmt)
    if path.stat().st_size == 0:
        raise DataSourceError(f"{what} file is empty: {path}")
    if fmt == "parquet":
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types for a bad file
            raise DataSourceError(f"{what} file {path} is not a readable Parquet file: {exc}") from None
    else:
        try:
            frame = pd.read_csv(
                path, sep=delimiter, encoding=encoding, dtype=str, keep_default_na=False, na_values=[""]
            )
        except UnicodeDecodeError:
            offset, byte, line = _first_undecodable(path, encoding)
            raise DataSourceError(
                f"{what} file {path} is not valid {encoding}: byte 0x{byte:02x} at offset {offset:,} "
                f"(line {line:,}); re-encode the file as UTF-8 or set encoding in the data source"
            ) from None
        except pd.errors.EmptyDataError:
            raise DataSourceError(f"{what} file is empty: {path}") from None
        except pd.errors.ParserError as exc:
            raise DataSourceError(
                f"{what} file {path} cannot be parsed as CSV with delimiter {delimiter!r}: {exc}"
            ) from None
    missing = [c for c in required if c not in frame.columns]
    if missing:
        found = list(frame.columns)
        hint = ""
        if fmt == "csv" and len(found) == 1:
            other = [d for d in _OTHER_DELIMITERS if d != delimiter and d in str(found[0])]
            if other:
                hint = f"; the header looks {other[0]!r}-separated: set delimiter: {other[0]!r}"
        raise DataSourceError(
            f"{what} file {path} lacks the column(s) {', '.join(map(repr, missing))} named in the "
            f"column mapping; it has {', '.join(map(repr, found))}{hint}"
        )
    if len(frame) == 0 and not empty_ok:
        raise DataSourceError(f"{what} file {path} has a header but no rows")
    return frame


def parse_timestamps(values: pd.Series, unit: str, where: str) -> np.ndarray:
    """Timestamps as Unix seconds (int64). ``unit``: auto | s | ms | iso."""
    raw = values.astype("string")
    missing = raw.isna()
    if unit == "auto":
        # numbers (seconds or milliseconds by magnitude) when most values are numbers, else ISO strings
        numeric = pd.to_numeric(raw[~missing], errors="coerce").dropna()
        if len(numeric) > 0.5 * (~missing).sum():
            unit = "ms" if numeric.abs().median() >= _MS_THRESHOLD else "s"
        else:
            unit = "iso"
    if unit in ("s", "ms"):
        numeric = pd.to_numeric(raw, errors="coerce")
        bad = numeric.isna() & ~missing
        seconds = numeric / 1000.0 if unit == "ms" else numeric
    else:
        parsed = pd.to_datetime(raw, errors="coerce", utc=True, format="ISO8601")
        bad = parsed.isna() & ~missing
        seconds = (parsed - pd.Timestamp(0, tz="UTC")).dt.total_seconds()
    if missing.any():
        rows = np.flatnonzero(missing.to_numpy())[:3].tolist()
        raise DataSourceError(
            f"{where}: {int(missing.sum())} timestamp(s) are empty, e.g. at data rows {rows}"
        )
    if bad.any():
        idx = np.flatnonzero(bad.to_numpy())
        examples = ", ".join(f"row {i}: {clip(raw.iloc[i])}" for i in idx[:3])
        expected = {"s": "Unix seconds", "ms": "Unix milliseconds", "iso": "ISO-8601 dates"}[unit]
        raise DataSourceError(
            f"{where}: {len(idx)} value(s) cannot be parsed as timestamps ({expected}), e.g. {examples}"
        )
    return np.floor(seconds.to_numpy(dtype=np.float64)).astype(np.int64)


def _read_catalog(cat: CatalogFile) -> pd.DataFrame:
    m = cat.columns
    mapped = {"item_id": m.item, "title": m.title, "brand": m.brand, "category": m.category, "price": m.price}
    required = [c for c in mapped.values() if c is not None]
    frame = read_table(cat.path, cat.format, cat.delimiter, cat.encoding, required, "catalogue")
    cols = {k: (frame[v].astype("string").to_numpy() if v else None) for k, v in mapped.items()}
    price = None
    if m.price:
        price = _parse_prices(frame[m.price], f"catalogue file {cat.path}, column {m.price!r}")
    return source_items(cols["item_id"], cols["title"], cols["brand"], cols["category"], price)


def _parse_prices(values: pd.Series, where: str) -> np.ndarray:
    numeric = pd.to_numeric(values.astype("string"), errors="coerce")
    bad = numeric.isna() & values.notna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataSourceError(
            f"{where}: {int(bad.sum())} price(s) are not numbers, e.g. row {i}: {clip(values.iloc[i])}"
        )
    return numeric.to_numpy(dtype="float64", na_value=np.nan)


def _required_columns(src: EventLogSource) -> list[str]:
    """The event-log columns named in the column mapping, in mapping order."""
    m = src.columns
    mapped = (m.user, m.item, m.timestamp, m.event, m.price, m.category, m.session, m.order, m.time_offset)
    return [c for c in mapped if c]


def _event_timestamps(frame: pd.DataFrame, src: EventLogSource) -> np.ndarray:
    """Unix seconds (int64) of each event: the timestamp column plus the time-offset column when mapped."""
    m = src.columns
    where = f"event log {src.path}, column {m.timestamp!r}"
    ts = parse_timestamps(frame[m.timestamp], src.timestamp_unit, where)
    if not m.time_offset:
        return ts
    offset = pd.to_numeric(frame[m.time_offset], errors="coerce")
    if offset.isna().any():
        i = int(np.flatnonzero(offset.isna().to_numpy())[0])
        raise DataSourceError(
            f"event log {src.path}, column {m.time_offset!r}: time offsets must be numbers, "
            f"e.g. row {i}: {clip(frame[m.time_offset].iloc[i])}"
        )
    scale = 1000.0 if src.time_offset_unit == "ms" else 1.0
    return ts + np.floor(offset.to_numpy(dtype=np.float64) / scale).astype(np.int64)


def _event_names(frame: pd.DataFrame, src: EventLogSource) -> np.ndarray:
    """Each row's event after ``event_map``, or ``default_event`` for every row without an event column."""
    m = src.columns
    if not m.event:
        return np.full(len(frame), src.default_event, dtype=object)
    raw_events = frame[m.event].astype("string")
    events = raw_events.map(lambda v: src.event_map.get(v, v) if v is not pd.NA else v)
    return events.astype("string").to_numpy()


def _order_values(frame: pd.DataFrame, src: EventLogSource) -> np.ndarray | None:
    """The order column as int64 (None when it is not mapped); a value that is not a number raises."""
    m = src.columns
    if not m.order:
        return None
    seq = pd.to_numeric(frame[m.order], errors="coerce")
    if seq.isna().any():
        raise DataSourceError(f"event log {src.path}, column {m.order!r}: order values must be integers")
    return seq.to_numpy(dtype=np.int64)


def _items_from_log(frame: pd.DataFrame, interactions: pd.DataFrame, src: EventLogSource) -> pd.DataFrame:
    """Source items when there is no catalogue: the items seen in the log, each with the first non-empty
    category (when mapped) and price among its rows."""
    m = src.columns
    first = pd.DataFrame({"item_id": interactions["item_id"]})
    first["category"] = frame[m.category].astype("string").to_numpy() if m.category else None
    first["price"] = interactions["price"].to_numpy()
    first = first.dropna(subset=["item_id"]).groupby("item_id", sort=True).first().reset_index()
    return source_items(
        first["item_id"].to_numpy(),
        category=first["category"].to_numpy() if m.category else None,
        price=first["price"].to_numpy(),
    )


def _read_files(src: EventLogSource, files: list[Path]) -> pd.DataFrame:
    """The rows of several partition files, in file order (each read and checked like one log)."""
    required = _required_columns(src)
    frames = [  # an empty day is the partition checks' finding, not a read error
        read_table(f, src.format, src.delimiter, src.encoding, required, "event log partition", empty_ok=True)
        for f in files
        if f.stat().st_size > 0
    ]
    frames = [f for f in frames if len(f)]
    if not frames:
        raise DataSourceError(f"the day partitions read from {src.path} hold no events")
    return pd.concat(frames, ignore_index=True)


def read_event_log(src: EventLogSource, files: list[Path] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read an event log into source frames ``(interactions, items)``: the file at ``src.path``, or
    the partition ``files`` a night reads (``components/data/partitions.py``)."""
    m = src.columns
    if files is not None:
        frame = _read_files(src, files)
    else:
        frame = read_table(
            src.path, src.format, src.delimiter, src.encoding, _required_columns(src), "event log"
        )
    ts = _event_timestamps(frame, src)
    events = _event_names(frame, src)
    price = _parse_prices(frame[m.price], f"event log {src.path}, column {m.price!r}") if m.price else None
    interactions = source_interactions(
        frame[m.user].astype("string").to_numpy(),
        frame[m.item].astype("string").to_numpy(),
        ts,
        events,
        price=price,
        session_id=frame[m.session].astype("string").to_numpy() if m.session else None,
        seq=_order_values(frame, src),
    )
    items = (
        _read_catalog(src.catalog) if src.catalog is not None else _items_from_log(frame, interactions, src)
    )
    return interactions, items
