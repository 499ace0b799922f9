"""Run Great Expectations suites on in-memory frames; return a plain summary; write Data Docs.

GX is used through an ephemeral context (nothing written outside ``docs_dir``, no telemetry). The
returned :class:`ValidationReport` holds plain Python values only, so it can be printed, stored as
JSON, published as a Prefect table or logged to MLflow without GX.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from shopdistill.components.messages import clip, shorten
from shopdistill.components.validation.suites import CRITICAL, Suite

EXAMPLES = 5
GX_SITE = "gx"  # Great Expectations' own site, under the Data Docs folder


class DataValidationError(ValueError):
    """Data failed one or more critical expectations; the message lists each in words."""

    def __init__(self, report: ValidationReport):
        self.report = report
        super().__init__(report.failure_message())


@dataclass(frozen=True)
class CheckResult:
    suite: str
    expectation: str
    column: str | None
    description: str
    severity: str
    success: bool
    observed_value: Any = None
    unexpected_count: int | None = None
    element_count: int | None = None
    examples: list[Any] = field(default_factory=list)
    error: str | None = None

    def sentence(self) -> str:
        """One line a data engineer can act on."""
        head = f"{self.suite}: {self.description}"
        if self.success:
            return f"{head}: ok"
        if self.error:
            return f"{head}: could not be checked ({self.error})"
        if self.unexpected_count is not None and self.element_count:
            share = self.unexpected_count / self.element_count
            examples = ", ".join(clip(e) for e in self.examples)
            return f"{head}: {self.unexpected_count:,} of {self.element_count:,} rows ({share:.2%}) fail" + (
                f", e.g. {examples}" if examples else ""
            )
        if self.expectation == "expect_column_to_exist":
            return f"{head}: the column is missing"
        return f"{head}: observed {clip(_plain(self.observed_value))}"


@dataclass(frozen=True)
class ValidationReport:
    results: list[CheckResult]
    docs_path: Path | None = None

    @property
    def passed(self) -> bool:
        return all(r.success for r in self.results if r.severity == CRITICAL)

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if not r.success and r.severity == CRITICAL]

    @property
    def warnings(self) -> list[CheckResult]:
        return [r for r in self.results if not r.success and r.severity != CRITICAL]

    def failure_message(self) -> str:
        lines = [f"data validation failed: {len(self.failures)} of {len(self.results)} checks"]
        lines += [f"  - {r.sentence()}" for r in self.failures]
        if self.docs_path:
            lines.append(f"Data Docs: {self.docs_path}")
        return "\n".join(lines)

    def raise_for_failures(self) -> None:
        if not self.passed:
            raise DataValidationError(self)

    def summary(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "checks": len(self.results),
            "failed": len(self.failures),
            "warnings": len(self.warnings),
            "docs": str(self.docs_path) if self.docs_path else None,
            "results": [asdict(r) for r in self.results],
        }

    def to_markdown(self) -> str:
        rows = ["| suite | check | severity | result | observed / unexpected |", "|---|---|---|---|---|"]
        for r in self.results:
            status = "pass" if r.success else ("FAIL" if r.severity == CRITICAL else "warn")
            detail = (
                f"{r.unexpected_count:,} of {r.element_count:,}"
                if r.unexpected_count is not None and r.element_count is not None
                else str(_plain(r.observed_value))
                if r.observed_value is not None
                else ""
            )
            rows.append(f"| {r.suite} | {r.description} | {r.severity} | {status} | {detail} |")
        return "\n".join(rows)


def _plain(value: Any) -> Any:
    """JSON-friendly scalars (numpy -> python, NaN -> None)."""
    if hasattr(value, "item") and not isinstance(value, (list, dict)):
        try:
            value = value.item()
        except (ValueError, AttributeError):
            pass
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _examples(cfg_meta: dict[str, Any], raw: list[Any], frame: pd.DataFrame, column: str | None) -> list[Any]:
    if cfg_meta.get("examples_from") and column:
        bad = frame.loc[~frame[column].astype(bool), cfg_meta["examples_from"]]
        return [shorten(_plain(v)) for v in bad.drop_duplicates().head(EXAMPLES).tolist()]
    values = [shorten(_plain(v)) for v in raw[:EXAMPLES]]
    if cfg_meta.get("format") == "timestamp":
        values = [
            pd.Timestamp(v, unit="s", tz="UTC").isoformat() if isinstance(v, (int, float)) else v
            for v in values
        ]
    return values


def _ephemeral_context(docs_dir: Path | None) -> tuple[Any, str | None]:
    """A quiet ephemeral GX context (errors-only logging, no progress bars) and the name of its Data
    Docs site under ``docs_dir`` (None, and no site, without ``docs_dir``)."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    if docs_dir is None:
        return context, None
    site = "shopdistill"
    context.add_data_docs_site(
        site_name=site,
        site_config={
            "class_name": "SiteBuilder",
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(docs_dir),
            },
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    return context, site


def _suite_checkpoint(context: Any, source: Any, suite: Suite, site: str | None) -> Any:
    """A GX checkpoint for ``suite``: a whole-dataframe asset of ``source``, the expectation suite and
    its validation definition; it updates the Data Docs ``site`` when one is given."""
    import great_expectations as gx

    batch_def = source.add_dataframe_asset(suite.name).add_batch_definition_whole_dataframe("all")
    gx_suite = context.suites.add(gx.ExpectationSuite(name=suite.name))
    for exp in suite.expectations:
        gx_suite.add_expectation(exp)
    vd = context.validation_definitions.add(
        gx.ValidationDefinition(name=suite.name, data=batch_def, suite=gx_suite)
    )
    actions = [gx.checkpoint.UpdateDataDocsAction(name="docs", site_names=[site])] if site else []
    return context.checkpoints.add(
        gx.Checkpoint(
            name=f"check-{suite.name}",
            validation_definitions=[vd],
            actions=actions,
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": 20},
        )
    )


def _check_result(suite: str, r: Any, frame: pd.DataFrame) -> CheckResult:
    """One GX expectation result as a :class:`CheckResult` (examples of failing values only when it failed)."""
    cfg = r.expectation_config
    res = r.result or {}
    exc = r.exception_info or {}
    raised = exc.get("raised_exception") if isinstance(exc, dict) else False
    column = cfg.kwargs.get("column")
    return CheckResult(
        suite=suite,
        expectation=cfg.type,
        column=column or (",".join(cfg.kwargs.get("column_list", [])) or None),
        description=cfg.description or cfg.type,
        severity=str(getattr(cfg, "severity", CRITICAL) or CRITICAL).split(".")[-1].lower(),
        success=bool(r.success),
        observed_value=_plain(res.get("observed_value")),
        unexpected_count=res.get("unexpected_count"),
        element_count=res.get("element_count"),
        examples=_examples(cfg.meta or {}, res.get("partial_unexpected_list") or [], frame, column)
        if not r.success
        else [],
        error=str(exc.get("exception_message")) if raised else None,
    )


class ValidationSession:
    """One GX context for every suite of a run, so its Data Docs index lists all of them.

    GX writes its site under ``docs_dir/gx``; ``docs.write_data_docs`` adds the offline index beside it.
    """

    def __init__(self, docs_dir: str | Path | None = None):
        self.docs_dir = Path(docs_dir).resolve() if docs_dir is not None else None
        gx_dir = self.docs_dir / GX_SITE if self.docs_dir else None
        self._context, self._site = _ephemeral_context(gx_dir)
        self._source = self._context.data_sources.add_pandas("shop")
        self.results: list[CheckResult] = []

    def run(self, frames: dict[str, pd.DataFrame], suites: list[Suite]) -> ValidationReport:
        """Validate ``frames[suite.name]`` against each suite; the report covers these suites only."""
        results: list[CheckResult] = []
        for suite in suites:
            frame = frames[suite.name]
            checkpoint = _suite_checkpoint(self._context, self._source, suite, self._site)
            run = checkpoint.run(batch_parameters={"dataframe": frame})
            for vres in run.run_results.values():
                results.extend(_check_result(suite.name, r, frame) for r in vres.results)
        self.results.extend(results)
        return ValidationReport(results, docs_path=self.index_path)

    @property
    def index_path(self) -> Path | None:
        return self.docs_dir / "index.html" if self.docs_dir else None

    def report(self) -> ValidationReport:
        """Every check run in this session so far."""
        return ValidationReport(list(self.results), docs_path=self.index_path)


def run_suites(
    frames: dict[str, pd.DataFrame], suites: list[Suite], docs_dir: str | Path | None = None
) -> ValidationReport:
    """Validate ``frames[suite.name]`` against each suite; build Data Docs under ``docs_dir``."""
    session = ValidationSession(docs_dir)
    session.run(frames, suites)
    report = session.report()
    if session.docs_dir is not None:
        from shopdistill.components.validation.docs import write_data_docs

        write_data_docs(report, session.docs_dir)
    return report
