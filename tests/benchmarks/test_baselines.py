import numpy as np
import pytest
import torch

from shopdistill.benchmarks.baselines import markov_scorer
from shopdistill.components.config import load_config
from shopdistill.components.data.dataset import prepare_dataset
from shopdistill.components.evaluation import evaluate_model, evaluate_scores
from shopdistill.components.sequences import SequenceData
from shopdistill.components.training.teacher import train_teacher


def _alternating_data(n_items: int = 12) -> SequenceData:
    # five users walk 1 -> 2 -> 1 -> 2 -> 1 (last item test, the one before it validation, the rest
    # train); one walks 3 -> 1 -> 3 -> 1 -> 3
    seqs = [[1, 2, 1, 2, 1]] * 5 + [[3, 1, 3, 1, 3]]
    users = np.repeat(np.arange(len(seqs)), 5)
    step = np.tile(np.arange(5), len(seqs))
    items = np.concatenate(seqs)
    return SequenceData.from_arrays(users, items, step < 3, step == 3, step == 4, len(seqs), n_items)


def test_markov_scores_the_most_frequent_successor_of_the_last_item():
    data = _alternating_data()
    # validation knows the train transitions: after 1 comes 2, after 3 comes 1
    valid = evaluate_scores(markov_scorer(data, "valid"), data, "valid", 10, mask_history=False, ks=(1,))
    assert valid["HR@1"] == 1
    # test also knows the validation steps: after 2 comes 1; after 1 comes 2 (5 times), not 3 (once)
    test = evaluate_scores(markov_scorer(data, "test"), data, "test", 10, mask_history=False, ks=(1,))
    assert test["HR@1"] == pytest.approx(5 / 6)
    # an item never followed by anything scores the catalogue by popularity, below any successor
    alone = markov_scorer(data, "test")(torch.tensor([[7]]), torch.tensor([1]))[0]
    assert alone.argmax().item() + 1 == 1 and alone.max() < 1


@pytest.mark.slow
def test_the_demo_teacher_beats_the_markov_baseline_by_a_wide_margin(tmp_path):
    # The demo shop's next products depend on the shopper's style, which only the history reveals.
    config = load_config(profile="demo")
    ds = prepare_dataset(config.data, tmp_path, validate=False).handle
    data = SequenceData.from_path(ds.uri)
    teacher, _ = train_teacher(config.teacher, data, ds.sha256, tmp_path, "demo", 0, log=lambda _: None)
    max_len = config.teacher.model.max_len
    learned = evaluate_model(teacher, data, "test", max_len)["NDCG@10"]
    markov = evaluate_scores(markov_scorer(data, "test"), data, "test", max_len)["NDCG@10"]
    assert learned >= 1.2 * markov, (learned, markov)
