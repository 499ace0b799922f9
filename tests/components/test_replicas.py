"""The collective calls of data-parallel training, on two real gloo ranks (processes of this test)."""

import json

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from shopdistill.components.config import ModelConfig
from shopdistill.components.evaluation import evaluate_model
from shopdistill.components.models import build_model
from shopdistill.components.replicas import Replicas

MODEL = ModelConfig(d_model=16, n_layers=1, n_heads=2, dropout=0.0, max_len=20)


def _rank(rank: int, size: int, init: str, data, out: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=size)
    try:
        replicas = Replicas(rank, size)
        torch.manual_seed(0)
        model = build_model(MODEL, data.n_items)
        record = {
            "valid": evaluate_model(model, data, "valid", MODEL.max_len, replicas=replicas),
            "any": [replicas.any(rank == 1), replicas.any(False)],
            "mean": replicas.mean({"loss": float(rank), "ce": 2.0 * rank}),
            "share": replicas.share({"from": rank}),
        }
        with open(f"{out}-{rank}.json", "w") as f:
            json.dump(record, f)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(tiny_data, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ranks")
    mp.spawn(_rank, args=(2, f"file://{folder}/init", tiny_data, str(folder / "rank")), nprocs=2, join=True)
    return [json.loads((folder / f"rank-{r}.json").read_text()) for r in range(2)]


def test_each_rank_validates_a_share_and_all_get_the_metrics_of_all_users(two_ranks, tiny_data):
    torch.manual_seed(0)
    whole = evaluate_model(build_model(MODEL, tiny_data.n_items), tiny_data, "valid", MODEL.max_len)
    for record in two_ranks:
        assert record["valid"]["users"] == whole["users"]
        for name, value in whole.items():
            assert record["valid"][name] == pytest.approx(value, abs=1e-9), name


def test_flags_means_and_rank_zeros_values_reach_every_rank(two_ranks):
    for record in two_ranks:
        assert record["any"] == [True, False]
        assert record["mean"] == {"loss": 0.5, "ce": 1.0}
        assert record["share"] == {"from": 0}
