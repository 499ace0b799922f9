import json

import pandas as pd
import pytest

from shopdistill.components.config import ValidationConfig
from shopdistill.components.data.schema import source_interactions, source_items
from shopdistill.components.validation import DataValidationError, run_suites
from shopdistill.components.validation.suites import (
    interaction_suite,
    item_suite,
    sequence_lengths,
    sequence_suite,
    with_catalogue_flag,
)

NOW = 1_800_000_000


def interactions(n=200, **overrides):
    data = dict(
        user_id=[f"u{i % 20}" for i in range(n)],
        item_id=[f"p{i % 15}" for i in range(n)],
        ts=[1_600_000_000 + i for i in range(n)],
        event=["view"] * n,
        price=[1.0] * n,
    )
    data.update(overrides)
    return source_interactions(**data)


def items(n=15, titles=True):
    return source_items([f"p{i}" for i in range(n)], title=[f"T{i}" for i in range(n)] if titles else None)


def run(frame, cat, cfg=ValidationConfig(), docs=None):
    suites = [interaction_suite(cfg, list(frame.columns), now=NOW), item_suite(cfg)]
    return run_suites({"interactions": with_catalogue_flag(frame, cat), "items": cat}, suites, docs)


def test_clean_data_passes_with_a_plain_summary(tmp_path):
    report = run(interactions(), items(), docs=tmp_path / "docs")
    assert report.passed and not report.failures and not report.warnings
    summary = report.summary()
    json.dumps(summary)  # plain values only
    assert summary["checks"] == len(summary["results"]) >= 15
    first = summary["results"][0]
    assert set(first) >= {"suite", "description", "success", "observed_value", "unexpected_count", "examples"}
    # Data Docs: an index plus one validation page per suite
    assert report.docs_path == tmp_path / "docs" / "index.html" and report.docs_path.is_file()
    pages = list((tmp_path / "docs" / "gx" / "validations").rglob("*.html"))
    assert len(pages) == 2
    assert "| interactions | every row has a user id | critical | pass | 0 of 200 |" in report.to_markdown()


def test_failures_carry_counts_examples_and_words():
    frame = interactions(event=["view"] * 197 + ["click", "oops", "oops"])
    report = run(frame, items())
    assert not report.passed
    [failure] = report.failures
    assert failure.unexpected_count == 2 and failure.element_count == 200
    assert failure.examples == ["oops", "oops"]
    assert failure.sentence() == (
        "interactions: event is one of view, click, cart, purchase, review (map other values with "
        "event_map): 2 of 200 rows (1.00%) fail, e.g. 'oops', 'oops'"
    )
    with pytest.raises(DataValidationError) as err:
        report.raise_for_failures()
    assert str(err.value).startswith("data validation failed: 1 of ")
    assert err.value.report is report


def test_warning_only_expectations_do_not_fail():
    report = run(interactions(), items(titles=False))
    assert report.passed
    [warning] = report.warnings
    assert warning.severity == "warning"
    assert warning.description == "at least 90% of items have a title"
    report.raise_for_failures()  # no exception


def test_sequence_drift_is_a_warning_and_bots_are_errors():
    prepared = pd.DataFrame({"user_id": [0] * 30 + [1] * 2, "item_id": 1})
    cfg = ValidationConfig(max_sequence_length=20, mean_sequence_length=(2, 10))
    report = run_suites({"sequences": sequence_lengths(prepared)}, [sequence_suite(cfg)])
    assert [f.description for f in report.failures] == ["no user history is longer than 20 (bots, crawlers)"]
    assert [w.observed_value for w in report.warnings] == [16.0]


def test_duplicate_catalogue_ids():
    cat = source_items(["p1", "p1", "p2"])
    report = run_suites({"items": cat}, [item_suite(ValidationConfig())])
    assert [f.description for f in report.failures] == ["catalogue item ids are unique"]
