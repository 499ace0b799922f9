"""The Amazon review benchmark in the S3-Rec layout (e.g. ``../shared/data/amazon-beauty/``).

Files read from the directory (``name`` = ``Beauty``):

* ``<name>.txt``: ``user item item ...`` per line, items in time order (ids from 1);
* ``<name>_timestamps.txt``: the same layout with the Unix time (day resolution) of each position;
* ``<name>_item_meta.tsv``: ``item_id, asin, title, attribute_ids, attribute_names``; the attribute
  names are the brand (first, when it is not a category name) and the category path.

Every review is one interaction with event ``review``. The file order is kept as the tie-breaker for
equal days, so the per-user order is exactly the published one.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd

from shopdistill.components.config import AmazonSource
from shopdistill.components.data.schema import DataSourceError, source_interactions, source_items


def _read_lines(path: Path) -> list[list[str]]:
    if not path.is_file():
        raise DataSourceError(f"Amazon benchmark file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataSourceError(f"{path} is not valid UTF-8 at offset {exc.start}") from None
    rows = [line.split() for line in text.splitlines() if line.strip()]
    if not rows:
        raise DataSourceError(f"Amazon benchmark file is empty: {path}")
    return rows


def _split_brand_and_category(names: list[list[str]]) -> tuple[list[str | None], list[str | None]]:
    """The first attribute is a brand unless that name also appears as a (sub-)category somewhere."""
    category_names = {n for parts in names for n in parts[1:]}
    brands: list[str | None] = []
    categories: list[str | None] = []
    for parts in names:
        if parts and parts[0] not in category_names:
            brand = parts[0] if parts[0] != "Unknown" else None
            path = parts[1:]
        else:
            brand, path = None, parts
        brands.append(brand)
        categories.append(" > ".join(path) if path else None)
    return brands, categories


def read_amazon(src: AmazonSource) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read the benchmark into source frames ``(interactions, items)``."""
    root = src.path
    if not root.is_dir():
        raise DataSourceError(f"Amazon benchmark directory not found: {root}")
    seqs = _read_lines(root / f"{src.name}.txt")
    times = _read_lines(root / f"{src.name}_timestamps.txt")
    if len(seqs) != len(times):
        raise DataSourceError(
            f"{src.name}.txt has {len(seqs)} users but {src.name}_timestamps.txt has {len(times)}"
        )
    users, items, ts = [], [], []
    for line, (seq, tline) in enumerate(zip(seqs, times, strict=True), start=1):
        if seq[0] != tline[0] or len(seq) != len(tline):
            raise DataSourceError(
                f"line {line}: user {seq[0]} has {len(seq) - 1} items in {src.name}.txt but the "
                f"timestamps file has user {tline[0]} with {len(tline) - 1} times"
            )
        users.extend([seq[0]] * (len(seq) - 1))
        items.extend(seq[1:])
        ts.extend(tline[1:])
    try:
        ts_arr = np.asarray(ts, dtype=np.int64)
    except ValueError:
        raise DataSourceError(f"{src.name}_timestamps.txt holds a value that is not an integer") from None
    interactions = source_interactions(users, items, ts_arr, np.full(len(users), "review", dtype=object))

    meta_path = root / f"{src.name}_item_meta.tsv"
    if meta_path.is_file():
        with open(meta_path, encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
        missing = {"item_id", "title", "attribute_names"} - set(rows[0] if rows else {})
        if missing:
            raise DataSourceError(f"{meta_path} lacks the column(s) {sorted(missing)}")
        names = [[p for p in (r["attribute_names"] or "").split("|") if p] for r in rows]
        brands, categories = _split_brand_and_category(names)
        item_frame = source_items(
            [r["item_id"] for r in rows],
            title=[r["title"] or None for r in rows],
            brand=brands,
            category=categories,
        )
    else:
        item_frame = source_items(sorted(set(items), key=int))
    return interactions, item_frame
