import html
import json
import re

import pyarrow.parquet as pq
import pytest

from shopdistill.components.config import DataConfig, SyntheticSource
from shopdistill.components.data import dataset as dataset_module
from shopdistill.components.data.dataset import content_digest, load_dataset, prepare_dataset, verify_dataset
from shopdistill.components.data.schema import DatasetCorruptError
from shopdistill.components.validation import DataValidationError

TINY = DataConfig(name="tiny", source=SyntheticSource(seed=1, n_users=300, n_items=120))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("root")
    return root, prepare_dataset(TINY, root, report_dir=root / "report")


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


@pytest.mark.faults
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


@pytest.mark.faults
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
    leftovers = [p for p in (tmp_path / "datasets").iterdir() if p.suffix != ".lock"]  # locks hold no data
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


EXTERNAL = re.compile(r'<(?:script|link|img)[^>]*\b(?:src|href)="(?:https?:)?//', re.I)


def test_the_report_folder_holds_every_suite_offline(prepared):
    """Both validation passes (source rows and prepared data) reach one offline Data Docs site."""
    root, result = prepared
    report_dir = root / "report"
    summary = json.loads((report_dir / "validation.json").read_text())
    suites = {r["suite"] for r in summary["results"]}
    assert suites == {"interactions", "items", "prepared", "sequences"}
    assert summary["checks"] == len(result.validation.results)
    assert "| interactions | every row has a user id |" in (report_dir / "validation.md").read_text()
    index = (report_dir / "data_docs" / "index.html").read_text()
    for suite in suites:
        assert f'<h2 id="{suite}">' in index
    for check in result.validation.results:
        assert html.escape(check.description) in index
    # every GX page the index links to exists, and no page loads anything from the network
    links = re.findall(r'href="(gx/[^"]+)"', index)
    assert len(links) == 4 and all((report_dir / "data_docs" / link).is_file() for link in links)
    for page in (report_dir / "data_docs").rglob("*.html"):
        assert not EXTERNAL.search(page.read_text()), page


@pytest.mark.faults
def test_a_failed_check_is_in_the_data_docs_and_no_dataset_is_written(tmp_path):
    bad = TINY.model_copy(update={"validation": TINY.validation.model_copy(update={"min_users": 10_000})})
    with pytest.raises(DataValidationError, match="users"):
        prepare_dataset(bad, tmp_path / "root", report_dir=tmp_path / "report")
    assert not (tmp_path / "root" / "datasets").exists()
    summary = json.loads((tmp_path / "report" / "validation.json").read_text())
    assert summary["passed"] is False and summary["failed"] >= 1
    index = (tmp_path / "report" / "data_docs" / "index.html").read_text()
    assert "Data validation: FAILED" in index and "\u2718 FAIL" in index
