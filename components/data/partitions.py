"""Daily partitions of an event log: which days exist, which ones a night reads, what they hold.

Two layouts are read:

* Hive style: ``<dir>/date=YYYY-MM-DD/*.parquet|*.csv`` (the layout ``shopdistill simulate`` writes);
* dated files: a glob such as ``logs/events-*.csv`` (or a folder of such files), one day per file,
  the day taken from the ``YYYY-MM-DD`` in each file name.

A night ``as_of`` reads the days in ``(as_of - window_days, as_of]``. :func:`day_summary` describes
those days (rows per day, and tonight's volume against the recent median) as a frame the
``partitions`` validation suite checks: a missing, empty or late partition for the night, or a day
whose volume is far off the recent nights, is a finding with a message that names the day.
"""

from __future__ import annotations

import datetime as dt
import glob
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from shopdistill.components.data.schema import DataSourceError

_HIVE = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")
_DATED = re.compile(r"(\d{4}-\d{2}-\d{2})")
SUFFIXES = (".parquet", ".csv")
RECENT_NIGHTS = 7  # tonight's volume is compared with the median of this many nights before it


@dataclass(frozen=True)
class Partition:
    day: dt.date
    files: tuple[Path, ...]


def is_partitioned(path: Path) -> bool:
    """A folder (of day partitions or dated files) or a glob pattern, rather than one file."""
    return path.is_dir() or glob.has_magic(str(path))


def _day(text: str, where: Path) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise DataSourceError(f"{where}: {text!r} is not a valid date (YYYY-MM-DD)") from None


def list_partitions(path: Path) -> list[Partition]:
    """Every day partition under ``path``, oldest first."""
    days: dict[dt.date, list[Path]] = {}
    if path.is_dir() and any(_HIVE.match(p.name) for p in path.iterdir() if p.is_dir()):
        for folder in sorted(p for p in path.iterdir() if p.is_dir() and _HIVE.match(p.name)):
            day = _day(_HIVE.match(folder.name).group(1), folder)
            days[day] = sorted(f for f in folder.iterdir() if f.suffix in SUFFIXES and f.is_file())
    else:
        files = sorted(path.iterdir()) if path.is_dir() else sorted(map(Path, glob.glob(str(path))))
        for file in (f for f in files if f.is_file() and f.suffix in SUFFIXES):
            found = _DATED.search(file.name)
            if found:
                days.setdefault(_day(found.group(1), file), []).append(file)
    if not days:
        raise DataSourceError(
            f"no day partitions under {path}: expected date=YYYY-MM-DD/ folders or files named with a "
            "YYYY-MM-DD date (.parquet or .csv)"
        )
    return [Partition(day, tuple(files)) for day, files in sorted(days.items())]


def latest_complete_day(partitions: list[Partition], today: dt.date | None = None) -> dt.date:
    """The newest partition day before ``today`` (UTC): today's partition is still being written."""
    today = today or dt.datetime.now(dt.UTC).date()
    done = [p.day for p in partitions if p.day < today]
    if not done:
        raise DataSourceError(f"no complete day partition before {today}: the newest is {partitions[-1].day}")
    return done[-1]


def select(partitions: list[Partition], as_of: dt.date, window_days: int | None) -> list[Partition]:
    """The partitions a night reads: days in ``(as_of - window_days, as_of]`` (all up to ``as_of``
    without a window)."""
    first = as_of - dt.timedelta(days=window_days - 1) if window_days else dt.date.min
    chosen = [p for p in partitions if first <= p.day <= as_of]
    if not chosen:
        raise DataSourceError(
            f"no day partition in {first} .. {as_of}; the partitions span "
            f"{partitions[0].day} .. {partitions[-1].day}"
        )
    return chosen


def rows_in(file: Path) -> int:
    """Data rows of one partition file (Parquet metadata; CSV lines after the header)."""
    if file.suffix == ".parquet":
        return pq.read_metadata(file).num_rows
    lines, last = 0, b"\n"
    with file.open("rb") as f:
        while chunk := f.read(1 << 20):
            lines, last = lines + chunk.count(b"\n"), chunk[-1:]
    if file.stat().st_size == 0:
        return 0
    return max(0, lines + (last != b"\n") - 1)


def day_summary(
    partitions: list[Partition], chosen: list[Partition], as_of: dt.date, window_days: int | None
) -> pd.DataFrame:
    """One row per day of the window (a day without a partition has ``present`` False), with the rows
    of the night and the :data:`RECENT_NIGHTS` before it (counted for those days only; NA before),
    and for ``as_of`` the ratio of its rows to the median of those nights."""
    first = chosen[0].day if not window_days else as_of - dt.timedelta(days=window_days - 1)
    by_day = {p.day: p for p in partitions}
    days = pd.date_range(max(first, partitions[0].day), as_of, freq="D").date
    counted = set(days[-(RECENT_NIGHTS + 1) :])
    rows = [
        (sum(rows_in(f) for f in by_day[d].files) if d in by_day else 0) if d in counted else None
        for d in days
    ]
    frame = pd.DataFrame(
        {
            "day": [d.isoformat() for d in days],
            "present": [d in by_day for d in days],
            "rows": pd.array(rows, dtype="Int64"),
            "tonight": [d == as_of for d in days],
        }
    )
    recent = frame["rows"].iloc[:-1].tail(RECENT_NIGHTS).dropna()
    median = float(recent[recent > 0].median()) if (recent > 0).any() else float("nan")
    tonight_rows = float(frame["rows"].iloc[-1])
    frame["volume_ratio"] = np.where(
        frame["tonight"], tonight_rows / median if median == median else np.nan, np.nan
    )
    return frame
