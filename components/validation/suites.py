"""Great Expectations suites for shop data, built in code from `ValidationConfig`.

Each expectation carries a ``description`` in words a data engineer understands (used in error
messages and Data Docs) and a ``severity``: ``critical`` checks fail the run, ``warning`` checks are
reported only (e.g. drift in history length, missing titles).

Frames validated (see ``components/data/schema.py``):

* ``interactions``: the source rows as read, before dedupe/k-core, with a derived ``in_catalogue`` flag;
* ``items``: the catalogue as read;
* ``prepared``: the prepared interactions (dense ids, split column);
* ``sequences``: one row per user of the prepared data with its history ``length``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import great_expectations.expectations as gxe
import pandas as pd

from shopdistill.components.config import ValidationConfig
from shopdistill.components.data.schema import SPLITS

CRITICAL = "critical"
WARNING = "warning"


@dataclass(frozen=True)
class Suite:
    """A named list of expectations for one frame."""

    name: str
    expectations: list[gxe.Expectation]


def _ts_bounds(cfg: ValidationConfig, now: float | None = None) -> tuple[int, int]:
    lo = int(pd.Timestamp(cfg.min_timestamp, tz="UTC").timestamp())
    hi = int((now if now is not None else time.time()) + cfg.max_future_seconds)
    return lo, hi


def interaction_suite(cfg: ValidationConfig, columns: list[str], now: float | None = None) -> Suite:
    lo, hi = _ts_bounds(cfg, now)
    lo_txt = pd.Timestamp(lo, unit="s").date().isoformat()
    exps: list[gxe.Expectation] = [
        gxe.ExpectColumnToExist(column=c, description=f"column {c!r} is present", severity=CRITICAL)
        for c in ("user_id", "item_id", "ts", "event")
    ]
    exps += [
        gxe.ExpectColumnValuesToBeInTypeList(
            column="ts", type_list=["int64", "Int64"], description="ts holds integer Unix seconds"
        ),
        gxe.ExpectColumnValuesToNotBeNull(column="user_id", description="every row has a user id"),
        gxe.ExpectColumnValuesToNotBeNull(column="item_id", description="every row has an item id"),
        gxe.ExpectColumnValuesToNotBeNull(column="event", description="every row has an event type"),
        gxe.ExpectColumnValuesToBeBetween(
            column="ts",
            min_value=lo,
            max_value=hi,
            description=f"timestamps lie between {lo_txt} and now (not in the future, not before {lo_txt})",
            meta={"format": "timestamp"},
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="event",
            value_set=list(cfg.allowed_events),
            description=f"event is one of {', '.join(cfg.allowed_events)} (map other values with event_map)",
        ),
        gxe.ExpectCompoundColumnsToBeUnique(
            column_list=["user_id", "item_id", "ts", "event"],
            mostly=1.0 - cfg.max_duplicate_rate,
            description=(
                f"at most {cfg.max_duplicate_rate:.1%} of rows repeat another row exactly "
                "(same user, item, time and event)"
            ),
        ),
        gxe.ExpectColumnValuesToBeInSet(
            column="in_catalogue",
            value_set=[True],
            description="every interacted item exists in the catalogue",
            meta={"examples_from": "item_id"},
        ),
    ]
    if "price" in columns:
        exps.append(
            gxe.ExpectColumnValuesToBeBetween(
                column="price", min_value=0, description="prices are >= 0 where present"
            )
        )
    return Suite("interactions", exps)


def item_suite(cfg: ValidationConfig) -> Suite:
    return Suite(
        "items",
        [
            gxe.ExpectColumnValuesToNotBeNull(
                column="item_id", description="every catalogue row has an item id"
            ),
            gxe.ExpectColumnValuesToBeUnique(column="item_id", description="catalogue item ids are unique"),
            gxe.ExpectColumnValuesToBeBetween(
                column="price", min_value=0, description="catalogue prices are >= 0 where present"
            ),
            gxe.ExpectColumnValuesToNotBeNull(
                column="title",
                mostly=cfg.min_title_coverage,
                description=f"at least {cfg.min_title_coverage:.0%} of items have a title",
                severity=WARNING,
            ),
        ],
    )


def prepared_suite(cfg: ValidationConfig) -> Suite:
    return Suite(
        "prepared",
        [
            gxe.ExpectTableRowCountToBeBetween(
                min_value=cfg.min_interactions,
                description=f"at least {cfg.min_interactions:,} interactions remain after preprocessing",
            ),
            gxe.ExpectColumnUniqueValueCountToBeBetween(
                column="user_id",
                min_value=cfg.min_users,
                description=f"at least {cfg.min_users:,} users remain after preprocessing",
            ),
            gxe.ExpectColumnUniqueValueCountToBeBetween(
                column="item_id",
                min_value=cfg.min_items,
                description=f"at least {cfg.min_items:,} items remain after preprocessing",
            ),
            gxe.ExpectColumnValuesToBeInSet(
                column="split", value_set=list(SPLITS), description="split is train, valid or test"
            ),
            gxe.ExpectColumnDistinctValuesToContainSet(
                column="split", value_set=list(SPLITS), description="train, valid and test are all non-empty"
            ),
        ],
    )


def sequence_suite(cfg: ValidationConfig) -> Suite:
    lo, hi = cfg.mean_sequence_length
    return Suite(
        "sequences",
        [
            gxe.ExpectColumnValuesToBeBetween(
                column="length",
                min_value=1,
                max_value=cfg.max_sequence_length,
                description=f"no user history is longer than {cfg.max_sequence_length:,} (bots, crawlers)",
            ),
            gxe.ExpectColumnMeanToBeBetween(
                column="length",
                min_value=lo,
                max_value=hi,
                description=f"mean history length lies between {lo:g} and {hi:g} (drift check)",
                severity=WARNING,
            ),
        ],
    )


def partition_suite(cfg: ValidationConfig, as_of: str) -> Suite:
    """Checks of the day partitions a night reads (``components/data/partitions.day_summary``)."""
    severity = CRITICAL if cfg.partition_findings == "fail" else WARNING
    lo, hi = cfg.volume_ratio
    return Suite(
        "partitions",
        [
            gxe.ExpectColumnValuesToBeInSet(
                column="tonight_present",
                value_set=[True],
                description=f"the night's partition ({as_of}) is there (missing or late otherwise)",
                severity=severity,
            ),
            gxe.ExpectColumnValuesToBeInSet(
                column="tonight_has_rows",
                value_set=[True],
                description=f"the night's partition ({as_of}) holds events",
                severity=severity,
            ),
            gxe.ExpectColumnValuesToBeBetween(
                column="volume_ratio",
                min_value=lo,
                max_value=hi,
                description=f"the night's volume is {lo:g}x to {hi:g}x the median of the 7 nights before",
                severity=severity,
            ),
            gxe.ExpectColumnValuesToBeInSet(
                column="present",
                value_set=[True],
                description="every day of the window has a partition",
                severity=WARNING,
                meta={"examples_from": "day"},
            ),
        ],
    )


def partition_flags(summary: pd.DataFrame) -> pd.DataFrame:
    """The day summary plus the per-row flags :func:`partition_suite` checks (True off the night)."""
    return summary.assign(
        tonight_present=summary["present"] | ~summary["tonight"],
        tonight_has_rows=((summary["rows"] > 0).fillna(False) | ~summary["tonight"]).astype(bool),
    )


def with_catalogue_flag(interactions: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
    """The interactions frame plus ``in_catalogue``: whether each row's item is in the catalogue."""
    catalogue = pd.Index(items["item_id"].dropna().unique())
    return interactions.assign(in_catalogue=interactions["item_id"].isin(catalogue).to_numpy())


def sequence_lengths(prepared: pd.DataFrame) -> pd.DataFrame:
    lengths = prepared.groupby("user_id", sort=True).size()
    return pd.DataFrame({"user_id": lengths.index.to_numpy(), "length": lengths.to_numpy()})
