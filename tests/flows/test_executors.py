"""Task runners for runtime.executor."""

import sys

import pytest
from prefect.task_runners import ThreadPoolTaskRunner

from shopdistill.components.config import RuntimeConfig
from shopdistill.flows.executors import ExecutorUnavailableError, task_runner


def test_local_runs_one_task_at_a_time():
    runner = task_runner(RuntimeConfig())
    assert isinstance(runner, ThreadPoolTaskRunner) and runner._max_workers == 1


def test_ray_without_the_extra_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "prefect_ray", None)  # an import of it raises ImportError
    with pytest.raises(ExecutorUnavailableError, match=r"pip install 'shopdistill\[ray\]'"):
        task_runner(RuntimeConfig(executor="ray"))
