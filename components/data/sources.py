"""One entry point over every data source kind."""

from __future__ import annotations

import pandas as pd

from shopdistill.components.config import AmazonSource, DataSource, EventLogSource, SyntheticSource


def read_source(source: DataSource) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read any configured source into source frames ``(interactions, items)`` (see ``schema.py``)."""
    if isinstance(source, SyntheticSource):
        from shopdistill.components.data.synthetic import generate

        return generate(source)
    if isinstance(source, EventLogSource):
        from shopdistill.components.data.event_log import read_event_log

        return read_event_log(source)
    if isinstance(source, AmazonSource):
        from shopdistill.components.data.amazon import read_amazon

        return read_amazon(source)
    raise TypeError(f"unknown data source {type(source).__name__}")


def describe_source(source: DataSource) -> str:
    if isinstance(source, SyntheticSource):
        return f"synthetic shop (seed {source.seed}, {source.n_users:,} users, {source.n_items:,} items)"
    return f"{source.kind} at {source.path}"
