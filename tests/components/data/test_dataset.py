import json

import pyarrow.parquet as pq
import pytest

from shopdistill.components.config import DataConfig, SyntheticSource
from shopdistill.components.data import dataset as dataset_module
from shopdistill.components.data.dataset import content_digest, load_dataset, prepare_dataset, verify_dataset
from shopdistill.components.data.schema import DatasetCorruptError

TINY = DataConfig(name="tiny", source=SyntheticSource(seed=1, n_users=300, n_items=120))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("root")
    return root, prepare_dataset(TINY, root, docs_dir=root / "docs")


def test_layout_manifest_and_digest(prepared):
    root, result = prepared
    path = result.handle.path
    assert path.parent == root / "datasets" and path.name == f"tiny-{result.handle.sha256[:12]}"
    assert sorted(p.name for p in path.iterdir()) == [
        "interactions.parquet",
        "item_map.parquet",
        "items.parquet",
        "manifest.json",
        "user_map.parquet",
    ]
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["schema_version"] == 1
    assert manifest["digest"] == result.handle.sha256
    assert manifest["counts"]["interactions"] == pq.read_metadata(path / "interactions.parquet").num_rows
    assert manifest["validation"]["passed"] is True
    assert set(manifest["files"]) == {
        f"{n}.parquet" for n in ("interactions", "items", "user_map", "item_map")
    }
    ds = load_dataset(path)
    assert (
        content_digest(
            {
                "interactions": ds.interactions,
                "items": ds.items,
                "user_map": ds.user_map,
                "item_map": ds.item_map,
            }
        )
        == result.handle.sha256
    )
    assert ds.interactions["item_id"].min() == 1  # 0 is padding
    assert result.validation.docs_path.is_file()


def test_same_input_same_digest_and_reuse(prepared):
    root, first = prepared
    second = prepare_dataset(TINY, root)
    assert second.handle == first.handle
    assert second.reused


def test_different_data_different_digest(prepared, tmp_path):
    _, first = prepared
    other = prepare_dataset(
        TINY.model_copy(update={"source": SyntheticSource(seed=2, n_users=300, n_items=120)}), tmp_path
    )
    assert other.handle.sha256 != first.handle.sha256


def test_corruption_is_detected_and_repaired(tmp_path):
    result = prepare_dataset(TINY, tmp_path)
    target = result.handle.path / "items.parquet"
    target.write_bytes(target.read_bytes()[:-10])
    with pytest.raises(
        DatasetCorruptError, match="items.parquet does not match its size/sha256 in the manifest"
    ):
        load_dataset(result.handle.path)
    again = prepare_dataset(TINY, tmp_path)
    assert not again.reused
    verify_dataset(again.handle.path)
    (again.handle.path / "user_map.parquet").unlink()
    with pytest.raises(DatasetCorruptError, match="user_map.parquet listed in the manifest is missing"):
        verify_dataset(again.handle.path)
    with pytest.raises(DatasetCorruptError, match="manifest.json is missing"):
        verify_dataset(tmp_path)


def test_crash_while_writing_leaves_no_dataset(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = pq.write_table

    def flaky(table, where, **kw):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")
        return real(table, where, **kw)

    monkeypatch.setattr(dataset_module.pq, "write_table", flaky)
    with pytest.raises(OSError, match="disk full"):
        prepare_dataset(TINY, tmp_path)
    leftovers = list((tmp_path / "datasets").iterdir())
    assert leftovers == []


def test_sequences_read_from_the_path_equal_those_from_the_pandas_tables(prepared, tmp_path):
    import numpy as np

    from shopdistill.components.sequences import SequenceData

    _, result = prepared
    lean = SequenceData.from_path(result.handle.path)
    full = SequenceData.from_dataset(load_dataset(result.handle.path))
    for name in full.__dataclass_fields__:
        a, b = getattr(full, name), getattr(lean, name)
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and np.array_equal(a, b), name
        else:
            assert a == b, name
    broken = prepare_dataset(TINY, tmp_path)
    target = broken.handle.path / "interactions.parquet"
    target.write_bytes(target.read_bytes()[:-10])
    with pytest.raises(DatasetCorruptError, match="interactions.parquet does not match"):
        SequenceData.from_path(broken.handle.path)
