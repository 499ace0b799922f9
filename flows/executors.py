"""Where fanned-out tasks run: ``runtime.executor`` (docs/scale-out.md).

``local``: one task at a time in the flow's process (two trainings on two cores only slow each
other down). ``ray``: Prefect's ``RayTaskRunner`` runs each submitted task in a Ray worker, asking
Ray for ``runtime.ray_cpus_per_task`` CPUs (and ``ray_gpus_per_task`` GPUs), so Ray runs as many at
once as the cluster has room for. Without ``runtime.ray_address`` the run starts a Ray instance on
this machine and stops it at the end; ``auto`` or an address joins a running cluster.

Ray workers report their task runs to the flow's Prefect API: the run's own (a temporary server on
loopback when none is configured) for a local instance; on a cluster, set ``PREFECT_API_URL`` to a
Prefect server the workers can reach.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from prefect.client.orchestration import get_client
from prefect.task_runners import ThreadPoolTaskRunner

from shopdistill.components.config import RuntimeConfig
from shopdistill.flows.environment import QUIET_DEFAULTS

RAY_HINT = "runtime.executor: ray needs the [ray] extra: pip install 'shopdistill[ray]'"


class ExecutorUnavailableError(RuntimeError):
    """The configured executor cannot be used here (the extra is missing)."""


def _worker_environment() -> dict[str, str]:
    """What every Ray worker needs in its environment: the flow's Prefect API, quiet defaults."""
    with get_client(sync_client=True) as client:
        api = str(client.api_url)
    env = {k: os.environ.get(k, v) for k, v in QUIET_DEFAULTS.items()}
    env |= {"PREFECT_API_URL": os.environ.get("PREFECT_API_URL", api), "RAY_USAGE_STATS_ENABLED": "0"}
    return env


def task_runner(runtime: RuntimeConfig):
    """The task runner for ``runtime.executor`` (see the module)."""
    if runtime.executor == "local":
        return ThreadPoolTaskRunner(max_workers=1)
    try:
        from prefect_ray import RayTaskRunner
    except ImportError as exc:
        raise ExecutorUnavailableError(f"{RAY_HINT} ({exc})") from None
    init = {"runtime_env": {"env_vars": _worker_environment()}}
    if runtime.ray_address is None:
        init |= {"include_dashboard": False}
    return RayTaskRunner(address=runtime.ray_address, init_kwargs=init)


@contextlib.contextmanager
def task_resources(runtime: RuntimeConfig) -> Iterator[None]:
    """Tasks submitted inside ask Ray for the configured CPUs and GPUs (nothing for ``local``)."""
    if runtime.executor != "ray":
        yield
        return
    from prefect_ray.context import remote_options

    with remote_options(num_cpus=runtime.ray_cpus_per_task, num_gpus=runtime.ray_gpus_per_task):
        yield
