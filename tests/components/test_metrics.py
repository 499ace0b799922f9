import math

import numpy as np
import pytest
import torch

from shopdistill.components.metrics import (
    RankingAccumulator,
    mask_seen,
    popularity_percentile,
    rank_metrics,
    target_ranks,
)


def test_ranks_hand_computed():
    scores = torch.tensor([[0.1, 0.9, 0.5, 0.3], [4.0, 3.0, 2.0, 1.0]])
    # row 0: target column 2 (0.5) is beaten by 0.9 only -> rank 1; row 1: target 3 is last -> rank 3
    assert target_ranks(scores, torch.tensor([2, 3])).tolist() == [1, 3]


def test_ties_count_against_the_model():
    scores = torch.tensor([[1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    # two other items tie with the target: pessimistic rank 2; a constant scorer ranks last
    assert target_ranks(scores, torch.tensor([0, 1])).tolist() == [2, 3]


def test_golden_metric_values():
    ranks = torch.tensor([0, 1, 4, 9, 10, 25])
    m = rank_metrics(ranks, ks=(5, 10, 20))
    assert m["HR@5"].tolist() == [1, 1, 1, 0, 0, 0]
    assert m["HR@10"].tolist() == [1, 1, 1, 1, 0, 0]
    assert m["HR@20"].tolist() == [1, 1, 1, 1, 1, 0]
    expected_ndcg10 = [1.0, 1 / math.log2(3), 1 / math.log2(6), 1 / math.log2(11), 0, 0]
    assert m["NDCG@10"].tolist() == pytest.approx(expected_ndcg10, abs=1e-12)
    assert m["MRR@10"].tolist() == pytest.approx([1.0, 0.5, 0.2, 0.1, 0, 0], abs=1e-12)
    assert m["NDCG@20"][4].item() == pytest.approx(1 / math.log2(12))


def test_masking_seen_items_changes_rank():
    scores = torch.tensor([[5.0, 4.0, 3.0, 2.0]])
    rows, cols = torch.tensor([0, 0]), torch.tensor([0, 1])
    assert target_ranks(mask_seen(scores.clone(), rows, cols), torch.tensor([2])).item() == 0
    # a target that was seen before is masked too: it becomes a miss
    masked = mask_seen(scores.clone(), rows, cols)
    assert target_ranks(masked, torch.tensor([1])).item() == 3


def test_accumulator_means_coverage_and_popularity():
    counts = np.array([10, 5, 5, 0])  # per column
    acc = RankingAccumulator(4, counts, ks=(1, 2), top_n=2)
    acc.update(torch.tensor([[4.0, 3.0, 2.0, 1.0]]), torch.tensor([0]))  # rank 0, recommends cols 0, 1
    acc.update(torch.tensor([[4.0, 3.0, 2.0, 1.0]]), torch.tensor([2]))  # rank 2
    out = acc.result()
    assert out["HR@1"] == 0.5 and out["HR@2"] == 0.5
    assert out["NDCG@2"] == pytest.approx(0.5)
    assert out["coverage@2"] == 0.5  # 2 of 4 items ever recommended
    pct = popularity_percentile(counts)
    assert pct.tolist() == pytest.approx([1.0, 0.5, 0.5, 0.0])
    assert out["popularity_pct@2"] == pytest.approx(0.75)
    assert out["users"] == 2
