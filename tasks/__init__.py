"""Prefect tasks: one thin @task per pipeline stage (added with the nightly flow)."""
