"""Prefect flows and the `shopdistill` command line."""
