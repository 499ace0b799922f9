"""Prepare a dataset (read -> validate -> preprocess -> validate -> write) and load it back.

A prepared dataset is a folder ``<root>/datasets/<name>-<digest12>/`` holding the four canonical
Parquet tables (``schema.py``) and ``manifest.json``. The digest is a sha256 over the tables' content
(not their bytes on disk), so it is the dataset's version: it goes into every later cache key and
registry tag. The folder is written atomically; a folder that already exists with the same digest
and intact files is reused. Loading checks every file's sha256 against the manifest.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from shopdistill.components import stores
from shopdistill.components.artifacts import (
    Handle,
    atomic_directory,
    sha256_file,
    verify_manifest,
    write_json_atomic,
)
from shopdistill.components.config import DataConfig
from shopdistill.components.data import partitions
from shopdistill.components.data.event_log import read_event_log
from shopdistill.components.data.preprocess import PreparedFrames, prepare_frames
from shopdistill.components.data.schema import (
    SCHEMA_VERSION,
    TABLE_SCHEMAS,
    DatasetCorruptError,
    DataSourceError,
    to_arrow,
)
from shopdistill.components.data.sources import describe_source, read_source
from shopdistill.components.locks import exclusive

MANIFEST = "manifest.json"
KIND = "dataset"


@dataclass(frozen=True)
class Dataset:
    """A loaded, verified dataset."""

    path: Path
    manifest: dict[str, Any]
    interactions: pd.DataFrame
    items: pd.DataFrame
    user_map: pd.DataFrame
    item_map: pd.DataFrame

    @property
    def digest(self) -> str:
        return self.manifest["digest"]


@dataclass(frozen=True)
class PreparedDataset:
    """What :func:`prepare_dataset` returns: a handle plus the numbers worth printing."""

    handle: Handle
    manifest: dict[str, Any]
    validation: Any  # ValidationReport, or None when validation was skipped
    reused: bool
    seconds: float


def content_digest(tables: dict[str, pd.DataFrame]) -> str:
    """sha256 over table names, canonical schemas and row hashes of every column, in a fixed order."""
    h = hashlib.sha256()
    for name in sorted(TABLE_SCHEMAS):
        frame = tables[name][TABLE_SCHEMAS[name].names]
        h.update(name.encode())
        h.update(str(TABLE_SCHEMAS[name]).encode())
        h.update(str(len(frame)).encode())
        for col in frame.columns:
            h.update(col.encode())
            h.update(pd.util.hash_pandas_object(frame[col], index=False).to_numpy().tobytes())
    return h.hexdigest()


def _counts(prep: PreparedFrames) -> dict[str, Any]:
    inter = prep.interactions
    lengths = inter.groupby("user_id").size()
    return {
        "users": int(len(prep.user_map)),
        "items": int(len(prep.item_map)),
        "interactions": int(len(inter)),
        "splits": {k: int(v) for k, v in inter["split"].value_counts().sort_index().items()},
        "events": {k: int(v) for k, v in inter["event"].value_counts().sort_index().items()},
        "sequence_length": {
            "min": int(lengths.min()),
            "median": float(lengths.median()),
            "mean": round(float(lengths.mean()), 3),
            "max": int(lengths.max()),
        },
        "time_range": [
            pd.Timestamp(int(inter["ts"].min()), unit="s", tz="UTC").isoformat(),
            pd.Timestamp(int(inter["ts"].max()), unit="s", tz="UTC").isoformat(),
        ],
        "preprocessing": prep.stats,
    }


def verify_dataset(path: str | Path) -> dict[str, Any]:
    """Return the manifest if every listed file exists with its recorded size and sha256, else raise."""
    return verify_manifest(
        path, what="prepared dataset", schema_version=SCHEMA_VERSION, error=DatasetCorruptError
    )


def load_dataset(path: str | Path) -> Dataset:
    """Load and verify a prepared dataset folder."""
    path = Path(path)
    manifest = verify_dataset(path)
    tables = {name: pq.read_table(path / f"{name}.parquet").to_pandas() for name in TABLE_SCHEMAS}
    return Dataset(path=path, manifest=manifest, **tables)


def prepare_dataset(
    cfg: DataConfig,
    root: str | Path,
    *,
    report_dir: str | Path | None = None,
    validate: bool = True,
) -> PreparedDataset:
    """Read the configured source, validate, preprocess, validate again and write the dataset.

    With ``report_dir``, the checks are also written there, passed or not: ``validation.json``,
    ``validation.md`` and offline Data Docs under ``data_docs/`` (every suite of both passes).

    Raises:
        DataSourceError: the source cannot be read (missing file, bad delimiter, columns, encoding...)
            or too little data is left to split.
        DataValidationError: a critical expectation failed (the message lists every failure).
    No dataset is written unless every step succeeds.
    """
    t0 = time.perf_counter()
    checks = _Checks(Path(report_dir) if report_dir else None) if validate else None
    interactions, items, night = _read(cfg, checks)
    if len(interactions) == 0:
        raise DataSourceError(f"the data source {describe_source(cfg.source)} has no interactions")
    if checks:
        checks.source(cfg, interactions, items)
    as_of = dt.date.fromisoformat(night["as_of"]) if night else None
    previous = previous_id_maps(Path(root), cfg.name, as_of) if as_of else None
    if night:
        night["id_maps_from"] = previous[0] if previous else None
    prep = prepare_frames(
        interactions, items, cfg.preprocess, as_of=as_of, previous=previous[1] if previous else None
    )
    report = checks.prepared(cfg, prep) if checks else None
    tables = {
        "interactions": prep.interactions,
        "items": prep.items,
        "user_map": prep.user_map,
        "item_map": prep.item_map,
    }
    digest = content_digest(tables)
    target = stores.dataset_dir(Path(root), cfg.name, digest)
    with exclusive(target, what="the prepared dataset"):
        try:
            manifest = verify_dataset(target)
            reused = manifest["digest"] == digest
        except DatasetCorruptError:
            reused = False
        if not reused:
            manifest = _write(target, tables, _manifest(cfg, digest, prep, report, night))
    handle = Handle(
        uri=str(target),
        sha256=digest,
        kind=KIND,
        meta={"name": cfg.name, "items": manifest["counts"]["items"], **_night_meta(manifest.get("night"))},
    )
    return PreparedDataset(handle, manifest, report, reused, time.perf_counter() - t0)


def _read(
    cfg: DataConfig, checks: _Checks | None
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any] | None]:
    """The source frames, and for a night (a partitioned event log, or ``as_of`` set) what it read.

    A partitioned log is read for the days of the night's window only, after the partition checks."""
    src = cfg.source
    if not cfg.reads_nights():
        interactions, items = read_source(src)
        night = {"as_of": cfg.as_of.isoformat(), "window_days": None} if cfg.as_of else None
        return interactions, items, night
    parts = partitions.list_partitions(src.path)
    as_of = cfg.as_of or partitions.latest_complete_day(parts)
    chosen = partitions.select(parts, as_of, cfg.window_days)
    if checks:
        checks.partitions(cfg, partitions.day_summary(parts, chosen, as_of, cfg.window_days), as_of)
    interactions, items = read_event_log(src, [f for p in chosen for f in p.files])
    night = {
        "as_of": as_of.isoformat(),
        "window_days": cfg.window_days,
        "days": [chosen[0].day.isoformat(), chosen[-1].day.isoformat()],
        "partitions": len(chosen),
    }
    return interactions, items, night


def _night_meta(night: dict[str, Any] | None) -> dict[str, Any]:
    """What the later stages need of a night: its date and last night's dataset (warm starts)."""
    return {"as_of": night["as_of"], "previous": night.get("id_maps_from")} if night else {}


def previous_id_maps(
    root: Path, name: str, as_of: dt.date
) -> tuple[str, tuple[pd.DataFrame, pd.DataFrame]] | None:
    """The id maps of the newest intact dataset of ``name`` from a night before ``as_of``, with its
    digest (None on the first night). Only the candidate taken is verified (checksums), newest first."""
    nights = []
    for folder in (root / "datasets").glob(f"{name}-*"):
        try:
            night = (json.loads((folder / MANIFEST).read_text()).get("night") or {}).get("as_of")
        except (OSError, ValueError):
            continue
        if night and night < as_of.isoformat():
            nights.append((night, folder))
    for _, folder in sorted(nights, reverse=True):
        try:
            digest = verify_dataset(folder)["digest"]
        except DatasetCorruptError:
            continue
        maps = tuple(pq.read_table(folder / f"{t}.parquet").to_pandas() for t in ("user_map", "item_map"))
        return digest, maps
    return None


class _Checks:
    """The source-row suites, then the prepared-data suites, in one validation session; with a
    ``report_dir`` every pass (failed or not) rewrites the summary and Data Docs there."""

    def __init__(self, report_dir: Path | None):
        from shopdistill.components.validation import ValidationSession

        self.report_dir = report_dir
        self.session = ValidationSession(report_dir / "data_docs" if report_dir else None)

    def partitions(self, cfg: DataConfig, summary: pd.DataFrame, as_of: dt.date) -> None:
        from shopdistill.components.validation.suites import partition_flags, partition_suite

        self._run(
            {"partitions": partition_flags(summary)}, [partition_suite(cfg.validation, as_of.isoformat())]
        )

    def source(self, cfg: DataConfig, interactions: pd.DataFrame, items: pd.DataFrame) -> None:
        from shopdistill.components.validation.suites import (
            interaction_suite,
            item_suite,
            with_catalogue_flag,
        )

        frames = {"interactions": with_catalogue_flag(interactions, items), "items": items}
        self._run(
            frames,
            [interaction_suite(cfg.validation, list(interactions.columns)), item_suite(cfg.validation)],
        )

    def prepared(self, cfg: DataConfig, prep: PreparedFrames):
        from shopdistill.components.validation.suites import prepared_suite, sequence_lengths, sequence_suite

        frames = {"prepared": prep.interactions, "sequences": sequence_lengths(prep.interactions)}
        return self._run(frames, [prepared_suite(cfg.validation), sequence_suite(cfg.validation)])

    def _run(self, frames: dict[str, pd.DataFrame], suites: list):
        from shopdistill.components.validation.docs import write_data_docs, write_summary

        self.session.run(frames, suites)
        report = self.session.report()
        if self.report_dir is not None:
            write_data_docs(report, self.session.docs_dir)
            write_summary(report, self.report_dir)
        report.raise_for_failures()
        return report


def _manifest(
    cfg: DataConfig, digest: str, prep: PreparedFrames, report: Any, night: dict[str, Any] | None
) -> dict[str, Any]:
    return {
        "night": night,
        "schema_version": SCHEMA_VERSION,
        "kind": KIND,
        "name": cfg.name,
        "digest": digest,
        "source": describe_source(cfg.source),
        "config": cfg.model_dump(mode="json"),
        "counts": _counts(prep),
        "validation": {k: v for k, v in report.summary().items() if k != "results"} if report else None,
        "created_at": pd.Timestamp.now(tz="UTC").isoformat(),
        "files": {},
    }


def _write(target: Path, tables: dict[str, pd.DataFrame], manifest: dict[str, Any]) -> dict[str, Any]:
    """Publish the tables and their manifest atomically under ``target``."""
    with atomic_directory(target, overwrite=True) as tmp:
        for name, frame in tables.items():
            file = tmp / f"{name}.parquet"
            pq.write_table(to_arrow(name, frame), file, compression="zstd")
            manifest["files"][file.name] = {"sha256": sha256_file(file), "bytes": file.stat().st_size}
        write_json_atomic(tmp / MANIFEST, manifest)
    return manifest
