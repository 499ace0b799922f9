"""Data-parallel training: batch shares and their weights, and DDP on a local 2-CPU Ray instance
(equal to one process, a killed worker's resume)."""

import signal
import sys
import threading
import time

import numpy as np
import psutil
import pytest
import torch

from shopdistill.components.config import ModelConfig, StudentConfig, TrainConfig
from shopdistill.components.models import build_model
from shopdistill.components.replicas import Replicas
from shopdistill.components.training.distributed import (
    Cluster,
    DistributedUnavailableError,
    fit_replicated,
    replica_batches,
    weighted,
)
from shopdistill.components.training.loop import LAST, fit
from shopdistill.components.training.losses import hard_label_loss

MODEL = ModelConfig(d_model=16, n_layers=1, n_heads=2, dropout=0.0, max_len=20)
TRAIN = TrainConfig(epochs=4, batch_size=64, lr=3e-3, patience=10)


def quiet(_msg):
    pass


def fresh(n_items):
    torch.manual_seed(0)
    return build_model(MODEL, n_items)


def test_shares_deal_out_every_batch_and_their_weights_add_up_to_the_ranks(tiny_data):
    shares = [
        list(replica_batches(tiny_data, 64, MODEL.max_len, Replicas(r, 3))(1, np.random.default_rng(0)))
        for r in range(3)
    ]
    whole = list(tiny_data.iter_train_batches(64, MODEL.max_len, np.random.default_rng(0)))
    assert [len(s) for s in shares] == [len(whole)] * 3
    for i, batch in enumerate(whole):
        users = [shares[r][i][0].users for r in range(3) if shares[r][i][1] > 0]  # 0: a stand-in
        assert sorted(np.concatenate(users).tolist()) == sorted(batch.users.tolist())
        weights = [shares[r][i][1] for r in range(3)]
        assert sum(weights) == pytest.approx(3.0)
        positions = [int(shares[r][i][0].mask.sum()) * (shares[r][i][1] > 0) for r in range(3)]
        assert weights == pytest.approx([3 * p / int(batch.mask.sum()) for p in positions])


def test_a_rank_without_users_trains_on_a_copy_at_weight_zero(tiny_data):
    users = tiny_data.train_users()[:2]

    class TwoUsers:  # a one-batch dataset of two users, dealt to three ranks
        train_counts = tiny_data.train_counts

        def train_users(self):
            return users

        def train_positions(self, max_len):
            return tiny_data.train_positions(max_len)

        def train_batch(self, chosen, max_len):
            return tiny_data.train_batch(chosen, max_len)

    ((batch, weight),) = replica_batches(TwoUsers(), 64, MODEL.max_len, Replicas(2, 3))(1, None)
    assert weight == 0.0 and len(batch.users) == 1


def test_the_mean_of_weighted_rank_gradients_is_the_whole_batch_gradient(tiny_data):
    model = fresh(tiny_data.n_items)
    step = hard_label_loss(model)
    whole = next(iter(tiny_data.iter_train_batches(64, MODEL.max_len, np.random.default_rng(1))))
    model.zero_grad()
    step(whole)[0].backward()
    expected = [p.grad.clone() for p in model.parameters()]
    summed = [torch.zeros_like(p) for p in model.parameters()]
    for rank in range(2):
        share = next(
            iter(
                replica_batches(tiny_data, 64, MODEL.max_len, Replicas(rank, 2))(1, np.random.default_rng(1))
            )
        )
        model.zero_grad()
        weighted(step)(share)[0].backward()
        summed = [s + p.grad for s, p in zip(summed, model.parameters(), strict=True)]
    for got, want in zip(summed, expected, strict=True):
        torch.testing.assert_close(got / 2, want, rtol=1e-4, atol=1e-6)  # DDP's average over 2 ranks


def test_students_train_in_one_process():
    with pytest.raises(ValueError, match="data-parallel training is for the teacher"):
        StudentConfig(train=TrainConfig(workers=2))


def test_without_ray_train_it_says_what_to_install(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(DistributedUnavailableError, match=r"pip install 'shopdistill\[ray\]'"):
        fit_replicated(
            fresh(tiny_data.n_items), tiny_data, MODEL, TRAIN.model_copy(update={"workers": 2}), tmp_path,
            seed=0, threads=1, fingerprint="f", cluster=Cluster(), name="t", log=quiet,
        )  # fmt: skip


def test_two_ddp_workers_train_what_one_process_trains(local_ray, tiny_data, tmp_path):
    one = fresh(tiny_data.n_items)
    alone = fit(one, tiny_data, MODEL, TRAIN, tmp_path / "one", seed=0, log=quiet)
    two = fresh(tiny_data.n_items)
    ddp = fit_replicated(
        two, tiny_data, MODEL, TRAIN.model_copy(update={"workers": 2}), tmp_path / "two",
        seed=0, threads=1, fingerprint="f", cluster=Cluster(), name="t", log=quiet,
    )  # fmt: skip
    # the same global batches and seed: per epoch the same validation NDCG@10 (summation order aside)
    for a, b in zip(alone.history, ddp.history, strict=True):
        assert b["valid"]["NDCG@10"] == pytest.approx(a["valid"]["NDCG@10"], abs=2e-3)
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-3)  # the mean over the ranks' shares
    for p, q in zip(one.state_dict().values(), two.state_dict().values(), strict=True):
        torch.testing.assert_close(p, q, rtol=0, atol=0.02)
    assert ddp.checkpoint == (tmp_path / "two" / "best.pt").resolve() and ddp.best_epoch == alone.best_epoch
    assert not (tmp_path / "two" / "ray-train").exists()  # Ray Train's own storage is cleaned up


def _kill_a_worker_after(last: str, epoch: int, killed: list) -> None:
    deadline, reached = time.monotonic() + 600, None  # generous: a loaded machine starts Ray slowly
    while time.monotonic() < deadline:
        time.sleep(0.1)
        try:
            reached = torch.load(last, weights_only=True)["epoch"]
        except Exception:  # noqa: BLE001 - not written yet, or being replaced
            continue
        if reached >= epoch:
            break
    if reached is None or reached < epoch:
        killed.append((reached, []))  # the test fails on it: training never reached the epoch
        return
    workers = [
        p
        for p in psutil.process_iter(["cmdline"])
        if any("RayTrainWorker" in c for c in p.info["cmdline"] or [])
    ]
    killed.append((reached, [p.pid for p in workers]))
    workers[-1].send_signal(signal.SIGKILL)


def test_a_killed_worker_resumes_from_the_last_epoch(local_ray, tiny_data, tmp_path):
    train = TRAIN.model_copy(update={"epochs": 60, "lr": 1e-3, "patience": 100, "workers": 2})
    killed: list = []
    killer = threading.Thread(target=_kill_a_worker_after, args=(str(tmp_path / LAST), 2, killed))
    killer.start()
    result = fit_replicated(
        fresh(tiny_data.n_items), tiny_data, MODEL, train, tmp_path,
        seed=0, threads=1, fingerprint="f", cluster=Cluster(restarts=1), name="t", log=quiet,
    )  # fmt: skip
    killer.join()
    ((reached, pids),) = killed
    assert len(pids) == 2, pids  # both workers were running when one was killed
    # the restarted group went on from the last finished epoch: no epoch lost, none trained twice
    assert result.resumed_from is not None and 2 < result.resumed_from <= 61
    assert [h["epoch"] for h in result.history] == list(range(1, 61))
    assert result.trained_epochs == 60 - result.resumed_from + 1 and result.stopped == "epochs"
    # and it trained as an uninterrupted run does (no randomness: dropout 0, full softmax)
    uninterrupted = fit(fresh(tiny_data.n_items), tiny_data, MODEL, train.model_copy(update={"workers": 1}),
                        tmp_path / "one", seed=0, log=quiet)  # fmt: skip
    assert result.best_valid["NDCG@10"] == pytest.approx(uninterrupted.best_valid["NDCG@10"], abs=5e-3)
