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
    assert set(deployments) == {"nightly", "manual", "backfill"}
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
        "backfill": "shopdistill-runs",
    }
    assert all(d.get("concurrency_limit") in (None, 0) for d in deployments)
    queue = post("/work_pools/shopdistill-process/queues/filter", {})
    assert {q["name"]: q["concurrency_limit"] for q in queue}["shopdistill-runs"] == 1


@pytest.mark.slow
def test_the_backfill_deployment_runs_nights_through_a_worker(prefect_harness, tmp_path):
    """From the deployment, as the UI would start it: a process worker runs the backfill, and each
    night is a child flow run of it."""
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL

    from tests.nights import NIGHT_SETTINGS, simulate_nights

    logs = simulate_nights(tmp_path / "simulated")
    overrides = [*NIGHT_SETTINGS, f"runtime.output_dir={tmp_path / 'out'}"]
    overrides += [f"data.source.path={logs}", f"data.source.catalog.path={logs / 'items.parquet'}"]
    env = {
        **os.environ,
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "SHOPDISTILL_PROJECT_DIR": str(PROJECT_ROOT),
    }
    prefect = [sys.executable, "-m", "prefect"]
    for args in (
        ("work-pool", "create", "shopdistill-process", "--type", "process", "--overwrite"),
        ("work-queue", "create", "shopdistill-runs", "--pool", "shopdistill-process", "--limit", "1"),
        ("--no-prompt", "deploy", "--all", "--prefect-file", str(PREFECT_FILE)),
    ):
        subprocess.run([*prefect, *args], env=env, cwd=PROJECT_ROOT, timeout=120, capture_output=True)
    run = run_deployment(
        "backfill/backfill",
        parameters={
            "start": "2025-01-19",
            "end": "2025-01-20",
            "params": {"profile": "nightly", "overrides": overrides},
        },
        timeout=0,
    )
    worker = subprocess.run(
        [*prefect, "worker", "start", "--pool", "shopdistill-process", "--run-once"],
        env=env,
        cwd=PROJECT_ROOT,
        timeout=600,
        capture_output=True,
    )
    import asyncio

    async def read():
        async with get_client() as client:
            parent = await client.read_flow_run(run.id)
            from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

            children = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id]))
            )
            return parent, children

    parent, children = asyncio.run(read())
    assert parent.state.is_completed(), (
        parent.state,
        worker.stdout.decode()[-3000:],
        worker.stderr.decode()[-3000:],
    )
    assert sorted(c.parameters["as_of"] for c in children) == ["2025-01-19", "2025-01-20"]
    assert sorted(p.stem for p in (tmp_path / "out" / "nights" / "nightly").glob("*.json")) == [
        "2025-01-19",
        "2025-01-20",
    ]
