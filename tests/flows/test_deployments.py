"""deployments/prefect.yaml: both deployments share one concurrency limit (their work queue's)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request

import pytest
import yaml

from tests.conftest import PROJECT_ROOT

PREFECT_FILE = PROJECT_ROOT / "deployments" / "prefect.yaml"


def test_both_deployments_share_one_queue_and_declare_no_limit_of_their_own():
    """A deployment's own ``concurrency_limit`` is a limit per deployment (two deployments, two limits):
    the shared limit is the queue's."""
    spec = yaml.safe_load(PREFECT_FILE.read_text())
    deployments = {d["name"]: d for d in spec["deployments"]}
    assert set(deployments) == {"nightly", "manual"}
    queues = {d["work_pool"]["work_queue_name"] for d in deployments.values()}
    assert queues == {"shopdistill-runs"}
    assert all("concurrency_limit" not in d for d in deployments.values())
    assert (
        "work-queue create shopdistill-runs --pool shopdistill-process --limit 1" in PREFECT_FILE.read_text()
    )


@pytest.mark.slow
def test_prefect_deploy_puts_both_deployments_on_the_limited_queue(prefect_harness, tmp_path):
    """The documented commands, against a Prefect API: one queue with limit 1 holds both deployments."""
    from prefect.settings import PREFECT_API_URL

    api = PREFECT_API_URL.value()
    env = {**os.environ, "PREFECT_API_URL": api, "SHOPDISTILL_PROJECT_DIR": str(PROJECT_ROOT)}
    prefect = [sys.executable, "-m", "prefect"]

    def cli(*args: str) -> None:
        subprocess.run(
            [*prefect, *args], env=env, cwd=PROJECT_ROOT, check=True, timeout=120, capture_output=True
        )

    cli("work-pool", "create", "shopdistill-process", "--type", "process")
    cli("work-queue", "create", "shopdistill-runs", "--pool", "shopdistill-process", "--limit", "1")
    cli("--no-prompt", "deploy", "--all", "--prefect-file", str(PREFECT_FILE))

    def post(path: str, body: dict) -> list[dict]:
        request = urllib.request.Request(
            f"{api}{path}", json.dumps(body).encode(), {"content-type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    deployments = post("/deployments/filter", {})
    assert {d["name"]: d["work_queue_name"] for d in deployments} == {
        "nightly": "shopdistill-runs",
        "manual": "shopdistill-runs",
    }
    assert all(d.get("concurrency_limit") in (None, 0) for d in deployments)
    queue = post("/work_pools/shopdistill-process/queues/filter", {})
    assert {q["name"]: q["concurrency_limit"] for q in queue}["shopdistill-runs"] == 1
