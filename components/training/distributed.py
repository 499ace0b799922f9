"""Data-parallel training of one model: PyTorch DDP in Ray Train workers (``teacher.train.workers``).

Every worker runs :func:`~shopdistill.components.training.loop.fit` on the same shuffled sequence of
global batches (one seed) and trains on its share of each: the users of a batch dealt out in turn, so
every rank gets rows of similar length. DDP averages the gradients over the ranks; each rank's loss is
weighted by its share of the batch's positions, so the average is the gradient of the whole batch's
mean loss, as one process computes it (Li et al., 2020, "PyTorch Distributed: Experiences on
Accelerating Data Parallel Training"):

    L_r = (N * n_r / n) * mean_{positions of rank r} CE,   (1/N) sum_r grad L_r = grad mean_{batch} CE

with N ranks, n_r of the batch's n positions on rank r. The global batch (``train.batch_size``) is what
one process would use, so the same settings train the same model within run-to-run noise
(docs/results/scale-out.md measures it). Ranks talk over gloo: the training loop runs on CPU.

Every rank validates a share of the users (``replicas.py``); rank 0 writes ``last.pt`` every epoch and
saves ``best.pt`` into the model's folder, which every worker must reach (a shared filesystem on a cluster, as for the rest of the store). When a worker
dies, Ray Train restarts the group (``runtime.ray_worker_restarts`` times) and every rank resumes from
that ``last.pt``, the same resume a killed single process gets.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from shopdistill.components.config import ModelConfig, RuntimeConfig, TrainConfig
from shopdistill.components.models import build_model
from shopdistill.components.models.checkpoint import load_model
from shopdistill.components.replicas import Replicas
from shopdistill.components.sequences import SequenceData, TrainBatch, length_bucketed
from shopdistill.components.training.loop import TrainResult, fit
from shopdistill.components.training.losses import StepLoss, hard_label_loss, negative_proposal
from shopdistill.components.training.progress import progress

RAY_TRAIN_HINT = "teacher.train.workers > 1 trains with Ray Train: pip install 'shopdistill[ray]'"


class DistributedUnavailableError(RuntimeError):
    """Data-parallel training was asked for but Ray Train cannot be imported."""


class DistributedTrainingError(RuntimeError):
    """The worker group failed more often than ``runtime.ray_worker_restarts`` allows."""


@dataclass(frozen=True)
class Cluster:
    """Where the workers run: Ray at ``address`` (None: a local instance for this training, unless this
    process is already connected), ``cpus`` each, the group restarted at most ``restarts`` times."""

    address: str | None = None
    cpus: float = 1.0
    restarts: int = 2

    @classmethod
    def of(cls, runtime: RuntimeConfig) -> Cluster:
        return cls(runtime.ray_address, runtime.ray_cpus_per_task, runtime.ray_worker_restarts)


def replica_batches(
    data: SequenceData, batch_size: int, max_len: int, replicas: Replicas
) -> Callable[[int, np.random.Generator], Iterator[tuple[TrainBatch, float]]]:
    """``batches(epoch, rng)`` for :func:`fit`: this rank's share of every global batch and its weight
    ``N * n_r / n`` (a rank left without users gets the batch's first user at weight 0)."""
    positions = data.train_positions(max_len)

    def batches(epoch: int, rng: np.random.Generator) -> Iterator[tuple[TrainBatch, float]]:
        users = data.train_users()
        for chunk in length_bucketed(users, positions[users], batch_size, rng):
            mine = chunk[replicas.rank :: replicas.size]
            weight = replicas.size * positions[mine].sum() / positions[chunk].sum()
            if len(mine) == 0:
                mine, weight = chunk[:1], 0.0
            yield data.train_batch(mine, max_len), float(weight)

    return batches


def weighted(step_loss: StepLoss) -> Callable[[tuple[TrainBatch, float]], tuple[torch.Tensor, dict]]:
    """The step loss of a ``(batch, weight)`` pair from :func:`replica_batches`, its parts weighted
    alike (their mean over the ranks is then the whole batch's)."""

    def step(item: tuple[TrainBatch, float]) -> tuple[torch.Tensor, dict[str, float]]:
        batch, weight = item
        loss, parts = step_loss(batch)
        return loss * weight, {k: v * weight for k, v in parts.items()}

    return step


class _Forward:
    """The DDP wrapper's forward (which synchronises the gradients) with the module's other methods."""

    def __init__(self, wrapped: nn.Module):
        self._wrapped = wrapped

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._wrapped(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(getattr(self._wrapped, "module", self._wrapped), name)


def fit_replicated(
    model: nn.Module,
    data: SequenceData,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    out_dir: Path,
    *,
    seed: int,
    threads: int,
    fingerprint: str,
    cluster: Cluster,
    name: str,
    log: Callable[[str], None] = progress,
) -> TrainResult:
    """:func:`fit` with hard labels on ``train_cfg.workers`` DDP workers, starting from ``model``'s
    weights; ``model`` ends with the best weights, as after :func:`fit`."""
    ray, train, torch_train = _ray_train()
    started = not ray.is_initialized()
    if started:
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=True)
    out_dir = Path(out_dir).resolve()
    storage = out_dir / "ray-train"
    config = {
        "data": ray.put(data),
        "initial": ray.put({k: v.detach().clone() for k, v in model.state_dict().items()}),
        "model_cfg": model_cfg,
        "train_cfg": train_cfg,
        "out_dir": str(out_dir),
        "seed": seed,
        "threads": threads,
        "fingerprint": fingerprint,
        "name": name,
    }
    trainer = torch_train.TorchTrainer(
        _worker,
        train_loop_config=config,
        scaling_config=train.ScalingConfig(
            num_workers=train_cfg.workers, resources_per_worker={"CPU": cluster.cpus}
        ),
        run_config=train.RunConfig(
            name=f"{name}-{time.time_ns()}",
            storage_path=str(storage),
            failure_config=train.FailureConfig(max_failures=cluster.restarts),
        ),
    )
    log(f"[{name}] DDP on {train_cfg.workers} Ray Train workers ({cluster.cpus:g} CPU each)")
    try:
        outcome = trainer.fit()
        with outcome.checkpoint.as_directory() as folder:
            result = _result_from(json.loads((Path(folder) / "result.json").read_text()))
    except train.TrainingFailedError as exc:
        raise DistributedTrainingError(
            f"[{name}] data-parallel training failed after {cluster.restarts} restart(s): {exc}"
        ) from exc
    finally:
        shutil.rmtree(storage, ignore_errors=True)
        if started:
            ray.shutdown()
    model.load_state_dict(load_model(result.checkpoint, result.checkpoint_sha256)[0].state_dict())
    model.eval()
    return result


def _worker(config: dict[str, Any]) -> None:
    """One DDP rank (runs in a Ray Train worker, with the process group set up)."""
    import ray
    import ray.train
    import ray.train.torch

    context = ray.train.get_context()
    replicas = Replicas(context.get_world_rank(), context.get_world_size())
    data: SequenceData = ray.get(config["data"])
    model_cfg, train_cfg = config["model_cfg"], config["train_cfg"]
    model = build_model(model_cfg, data.n_items)
    model.load_state_dict(ray.get(config["initial"]))
    # gradients as views into DDP's buckets: no copy into and out of them every step, same values
    wrapped = ray.train.torch.prepare_model(
        model, move_to_device=False, parallel_strategy_kwargs={"gradient_as_bucket_view": True}
    )
    sampled = train_cfg.sampled_negatives
    proposal = negative_proposal(data.train_counts, train_cfg.sampling) if sampled else None
    result = fit(
        model,
        data,
        model_cfg,
        train_cfg,
        config["out_dir"],
        seed=config["seed"],
        threads=config["threads"],
        step_loss=weighted(hard_label_loss(_Forward(wrapped), sampled, proposal)),
        batches=replica_batches(data, train_cfg.batch_size, model_cfg.max_len, replicas),
        fingerprint=config["fingerprint"],
        name=config["name"],
        log=progress if replicas.is_main else _silent,
        replicas=replicas,
    )
    if not replicas.is_main:
        ray.train.report({"best_epoch": result.best_epoch}, checkpoint=None)
        return
    with tempfile.TemporaryDirectory() as folder:
        record = asdict(result) | {"checkpoint": str(result.checkpoint)}
        (Path(folder) / "result.json").write_text(json.dumps(record))
        ray.train.report(
            {"best_epoch": result.best_epoch}, checkpoint=ray.train.Checkpoint.from_directory(folder)
        )


def _result_from(record: dict[str, Any]) -> TrainResult:
    return TrainResult(**(record | {"checkpoint": Path(record["checkpoint"])}))


def _silent(message: str) -> None:
    del message


def _ray_train():
    try:
        import ray
        import ray.train
        import ray.train.torch
    except ImportError as exc:
        raise DistributedUnavailableError(f"{RAY_TRAIN_HINT} ({exc})") from None
    return ray, ray.train, ray.train.torch
