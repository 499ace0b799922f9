"""Prefect tasks: one thin @task per pipeline stage (a component call, an artifact, a handle)."""
