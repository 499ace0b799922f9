"""Data validation with Great Expectations 1.x: suites built in code, a runner with a plain summary.

This package is the only place that imports great_expectations (enforced by import-linter).
"""

from shopdistill.components.validation.runner import (
    CheckResult,
    DataValidationError,
    ValidationReport,
    ValidationSession,
    run_suites,
)

__all__ = ["CheckResult", "DataValidationError", "ValidationReport", "ValidationSession", "run_suites"]
