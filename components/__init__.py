"""shopdistill components: pure library code (data, validation, models, losses, training, registry).

Nothing in this package imports prefect, ``tasks``, ``flows`` or ``benchmarks`` (enforced by import-linter).
"""
