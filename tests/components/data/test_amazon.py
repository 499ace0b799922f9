"""The real Amazon Beauty benchmark (../shared/data/amazon-beauty); skipped when absent."""

import pytest

from shopdistill.components.config import AmazonSource, load_config
from shopdistill.components.data.amazon import _split_brand_and_category, read_amazon
from shopdistill.components.data.dataset import load_dataset, prepare_dataset
from shopdistill.components.data.schema import DataSourceError


def test_brand_and_category_split():
    names = [["OPI", "Makeup", "Nails"], ["Makeup", "Face"], ["Unknown", "Skin Care", "Face"], []]
    brands, cats = _split_brand_and_category(names)
    assert brands == ["OPI", None, None, None]
    assert cats == ["Makeup > Nails", "Makeup > Face", "Skin Care > Face", None]


def test_missing_directory_is_clear(tmp_path):
    with pytest.raises(DataSourceError, match="Amazon benchmark directory not found: .*nowhere"):
        read_amazon(AmazonSource(path=tmp_path / "nowhere"))


def test_misaligned_timestamps_are_rejected(tmp_path):
    (tmp_path / "Toy.txt").write_text("1 1 2 3\n2 2 3 4\n")
    (tmp_path / "Toy_timestamps.txt").write_text("1 10 20 30\n2 10 20\n")
    with pytest.raises(
        DataSourceError,
        match="line 2: user 2 has 3 items in Toy.txt but the timestamps file has user 2 with 2 times",
    ):
        read_amazon(AmazonSource(path=tmp_path, name="Toy"))


@pytest.mark.real_data
def test_beauty_exact_counts_and_protocol(shared_data, tmp_path):
    cfg = load_config(profile="beauty", overrides=[f"data.source.path={shared_data / 'amazon-beauty'}"])
    result = prepare_dataset(cfg.data, tmp_path)
    counts = result.manifest["counts"]
    assert (counts["users"], counts["items"], counts["interactions"]) == (22_363, 12_101, 198_502)
    # leave-one-out: one test and one validation item per user, the rest train
    assert counts["splits"] == {"test": 22_363, "train": 198_502 - 2 * 22_363, "valid": 22_363}
    assert counts["sequence_length"]["min"] == 5 and counts["sequence_length"]["max"] == 204
    assert counts["time_range"] == ["2002-06-12T00:00:00+00:00", "2014-07-23T00:00:00+00:00"]
    ds = load_dataset(result.handle.path)
    # ids keep the published numbering: item k of Beauty.txt is item_id k, user 1 is user_id 0
    first_user = ds.interactions[ds.interactions["user_id"] == 0]
    assert first_user["item_id"].tolist() == [1, 2, 3, 4, 5]
    assert first_user["split"].tolist() == ["train", "train", "train", "valid", "test"]
    assert ds.item_map["raw_item_id"].iloc[0] == "1"
    # side information: titles for 12,094 items, brands and category paths
    assert ds.items["title"].notna().sum() == 12_094
    assert ds.items.loc[0, "brand"] == "OPI"
    assert ds.items.loc[0, "category"] == "Makeup > Nails > Nail Polish"
    assert ds.items["brand"].notna().mean() > 0.5
    assert result.validation.passed
