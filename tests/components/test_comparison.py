"""The champion scored on tonight's catalogue through its own item map."""

import pandas as pd
import torch

from shopdistill.components.comparison import CatalogueRemap
from shopdistill.components.config import ModelConfig
from shopdistill.components.models import build_model


def _map(raw_ids: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"item_id": range(1, len(raw_ids) + 1), "raw_item_id": raw_ids})


def test_scores_follow_the_products_not_the_ids():
    torch.manual_seed(0)
    model = build_model(ModelConfig(d_model=8, n_layers=1, n_heads=1, max_len=6), 4).eval()
    own = _map(["a", "b", "c", "d"])  # the champion's ids 1..4
    tonight = _map(["c", "x", "a", "d", "b"])  # rebuilt ids, a new product "x", nothing retired
    remap = CatalogueRemap(model, own, tonight).eval()
    history_tonight = torch.tensor([[3, 5, 1, 0, 0, 0]])  # a, b, c in tonight's ids
    history_own = torch.tensor([[1, 2, 3, 0, 0, 0]])  # the same products in the champion's ids
    with torch.no_grad():
        got = remap.scores(remap(history_tonight).hidden[:, 2])  # (1, 5) over tonight's catalogue
        want = model.scores(model(history_own).hidden[:, 2])  # (1, 4) over the champion's
    # column j is tonight's item j + 1: c, x, a, d, b
    torch.testing.assert_close(got[0, [0, 2, 3, 4]], want[0, [2, 0, 3, 1]])
    assert got[0, 1] == float("-inf")  # "x" is unknown to the champion
    assert int((remap.to_own[1:] > 0).sum()) == 4
