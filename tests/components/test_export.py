"""ONNX export: fp32 parity with PyTorch, int8 coverage and cost, checksums, atomic writes, the item map."""

import json
import shutil

import numpy as np
import pytest
import torch

import shopdistill.components.export as export
from shopdistill.components.config import ModelConfig
from shopdistill.components.evaluation import evaluate_model
from shopdistill.components.export import (
    ExportError,
    OnnxScorer,
    OnnxUnavailableError,
    WindowedScorer,
    evaluate_onnx,
    export_onnx,
    export_student,
    require_onnx,
)
from shopdistill.components.guide import Guide, ModelInfo, Request, _item_vectors, _torch_scorer
from shopdistill.components.models import build_model
from shopdistill.components.models.checkpoint import save_model
from shopdistill.components.serving import NextItemScorer

MAX_LEN = 6
ARCHS = ["sasrec", "gru"]


def student(arch: str, n_items: int, seed: int = 0):
    torch.manual_seed(seed)
    cfg = ModelConfig(arch=arch, d_model=8, n_layers=1, n_heads=1, dropout=0.0, max_len=MAX_LEN)
    return build_model(cfg, n_items).eval(), cfg


@pytest.fixture(scope="module")
def onnx_extra():
    pytest.importorskip("onnxruntime", reason="needs the [onnx] extra: pip install 'shopdistill[onnx]'")
    pytest.importorskip("onnxscript", reason="needs the [onnx] extra: pip install 'shopdistill[onnx]'")


@pytest.fixture(scope="module")
def sasrec_export(onnx_extra, tiny_dataset, tiny_data, tmp_path_factory):
    """A SASRec student saved as best.pt and exported with export_student (int8 cost on the test split)."""
    model, cfg = student("sasrec", tiny_data.n_items)
    root = tmp_path_factory.mktemp("export-sasrec")
    save_model(root / "best.pt", model, cfg, tiny_data.n_items)
    result = export_student(root / "best.pt", tiny_dataset, root / "onnx")
    assert not result.reused
    return "sasrec", model, result.path


@pytest.fixture(scope="module", params=ARCHS)
def exported(request, onnx_extra, tiny_dataset, tiny_data, tmp_path_factory):
    """(arch, model, export folder): SASRec through export_student, GRU through export_onnx."""
    if request.param == "sasrec":
        return request.getfixturevalue("sasrec_export")
    model, _ = student("gru", tiny_data.n_items)
    out = tmp_path_factory.mktemp("export-gru") / "onnx"
    export_onnx(
        model,
        out,
        item_ids=tiny_dataset.item_map,
        catalog=tiny_dataset.items,
        max_len=MAX_LEN,
        eval_data=tiny_data,
    )
    return "gru", model, out


def right_padded(rng, n_items: int, batch: int, length: int) -> np.ndarray:
    items = rng.integers(1, n_items + 1, size=(batch, length))
    lengths = rng.integers(1, length + 1, size=batch)
    lengths[0] = length
    items[np.arange(length)[None, :] >= lengths[:, None]] = 0
    return items


@pytest.mark.parametrize("batch,length", [(1, 1), (3, 4), (2, MAX_LEN), (4, MAX_LEN + 5), (7, 3 * MAX_LEN)])
def test_fp32_matches_pytorch(exported, tiny_data, batch, length):
    _, model, folder = exported
    scorer = OnnxScorer(folder)
    items = right_padded(np.random.default_rng(batch * 100 + length), tiny_data.n_items, batch, length)
    got = scorer.scores(items)
    assert got.shape == (batch, tiny_data.n_items) and got.dtype == np.float32
    with torch.no_grad():
        windowed = WindowedScorer(model, MAX_LEN)(torch.from_numpy(items)).numpy()
        # the serving path: each row's last max_len real items through NextItemScorer
        rows = [r[r > 0][-MAX_LEN:] for r in items]
        served = np.concatenate([NextItemScorer(model)(torch.from_numpy(r)[None]).numpy() for r in rows])
    np.testing.assert_allclose(got, windowed, rtol=0, atol=1e-4)
    np.testing.assert_allclose(got, served, rtol=0, atol=1e-4)


def test_manifest_describes_the_export(exported, tiny_data):
    arch, _, folder = exported
    m = json.loads((folder / "export.json").read_text())
    assert m["input"]["name"] == "items" and m["output"]["name"] == "scores"
    assert m["dynamic_axes"] == {"items": {"0": "batch", "1": "length"}, "scores": {"0": "batch"}}
    assert (
        m["max_len"] == MAX_LEN and m["n_items"] == tiny_data.n_items and m["opset"] == export.DEFAULT_OPSET
    )
    assert set(m["versions"]) == {"torch", "onnx", "onnxruntime", "onnxscript"}
    assert set(m["files"]) == {"model.onnx", "model.int8.onnx", "items.parquet"}
    assert 0 <= m["parity_max_abs_diff"] <= 1e-4
    assert [1, 1] in m["parity_shapes"] and [3, MAX_LEN + 7] in m["parity_shapes"]
    int8 = m["int8"]
    # the big catalogue MatMul and the item-embedding table are int8; the GRU cell stays fp32
    assert int8["catalogue_matmul_int8"] and int8["item_embedding_int8"]
    assert int8["op_counts"]["MatMulInteger"] >= (5 if arch == "sasrec" else 1)
    assert ("GRU" in int8["op_counts"]) == (arch == "gru")
    assert int8["accuracy"]["split"] == "test" and int8["accuracy"]["users"] > 0


def test_int8_runs_and_mostly_agrees_with_fp32(exported, tiny_data):
    _, _, folder = exported
    fp32, int8 = OnnxScorer(folder), OnnxScorer(folder, quantized=True, threads=2)
    batch = tiny_data.eval_batch(tiny_data.eval_users("test")[:64], "test", MAX_LEN, mask_history=False)
    a, b = fp32.scores(batch.inputs.numpy()), int8.scores(batch.inputs.numpy())
    top_a, top_b = np.argsort(-a, axis=1)[:, :10], np.argsort(-b, axis=1)[:, :10]
    overlap = np.mean([len(set(x) & set(y)) / 10 for x, y in zip(top_a, top_b, strict=True)])
    assert overlap >= 0.8
    delta = int8.manifest["int8"]["accuracy"]["delta"]["NDCG@10"]
    assert abs(delta) < 0.05


def test_onnx_evaluation_uses_the_same_metrics_as_torch(exported, tiny_data):
    _, model, folder = exported
    expected = evaluate_model(model, tiny_data, "test", MAX_LEN)
    got = evaluate_onnx(OnnxScorer(folder), tiny_data, "test", MAX_LEN)
    for key in ("NDCG@10", "HR@10", "MRR@20", "coverage@10", "users"):
        assert got[key] == pytest.approx(expected[key], abs=1e-6), key


def test_item_map_round_trip_and_top_k(exported, tiny_dataset):
    _, model, folder = exported
    scorer = OnnxScorer(folder)
    items = scorer.items
    assert (items["column"].to_numpy() == np.arange(len(items))).all()
    assert (items["item_id"].to_numpy() == items["column"].to_numpy() + 1).all()
    expected = tiny_dataset.item_map.set_index("item_id")["raw_item_id"].astype(str)
    assert (items["raw_item_id"].to_numpy() == expected.reindex(items["item_id"]).to_numpy()).all()
    titles = tiny_dataset.items.set_index("item_id")["title"].reindex(items["item_id"])
    assert items["title"].fillna("").tolist() == titles.fillna("").tolist()

    history = np.array([[5, 9, 2, 0]])
    raw, scores = scorer.top_k(history, k=5)
    assert raw.shape == (1, 5) and (np.diff(scores[0]) <= 0).all()
    seen = set(expected.loc[[5, 9, 2]])
    assert not seen & set(raw[0])
    # the same products as the torch serving path, through the service's guide
    info = ModelInfo("m", "1", [], "onnx", {}, "tiny", MAX_LEN, len(tiny_dataset.item_map))
    user = Request(user=tiny_dataset.user_map["raw_user_id"].iloc[3], k=5)
    served = [
        Guide(s, _item_vectors(model), tiny_dataset, info).recommend(user)
        for s in (scorer, _torch_scorer(model))
    ]
    by_onnx, by_torch = ([r["id"] for r in answer["recommendations"]] for answer in served)
    assert by_onnx == by_torch and len(by_onnx) == 5


@pytest.mark.faults
def test_a_corrupted_or_incomplete_export_is_rejected(exported, tmp_path):
    _, _, folder = exported
    copy = shutil.copytree(folder, tmp_path / "copy")
    data = bytearray((copy / "model.int8.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "model.int8.onnx").write_bytes(bytes(data))
    with pytest.raises(ExportError, match="model.int8.onnx does not match its size/sha256"):
        OnnxScorer(copy)  # every listed file is checked, not only the variant loaded
    (copy / "export.json").unlink()
    with pytest.raises(ExportError, match="export.json is missing"):
        OnnxScorer(copy)


@pytest.mark.faults
def test_export_student_reuses_a_valid_export_and_rebuilds_a_corrupt_one(
    sasrec_export, tiny_dataset, monkeypatch
):
    _, _, folder = sasrec_export
    best = folder.parent / "best.pt"
    assert export_student(best, tiny_dataset, folder).reused
    calls = []
    monkeypatch.setattr(export, "export_onnx", lambda *a, **k: calls.append(k) or "rebuilt")
    (folder.parent / "corrupt").mkdir()
    (folder.parent / "corrupt" / "export.json").write_text("{")
    assert export_student(best, tiny_dataset, folder.parent / "corrupt") == "rebuilt"
    assert calls[0]["overwrite"] and calls[0]["max_len"] == MAX_LEN


@pytest.mark.faults
def test_failed_parity_leaves_no_folder(exported, tiny_dataset, tiny_data, tmp_path, monkeypatch):
    arch, _, folder = exported
    # a graph that is not the model's: the ONNX file of another student (fast: no second export)
    monkeypatch.setattr(
        export, "_export_graph", lambda module, path, opset: shutil.copy(folder / "model.onnx", path)
    )
    other, _ = student(arch, tiny_data.n_items, seed=1)
    out = tmp_path / "onnx"
    with pytest.raises(ExportError, match="does not reproduce PyTorch"):
        export_onnx(other, out, item_ids=tiny_dataset.item_map, max_len=MAX_LEN)
    assert list(tmp_path.iterdir()) == []  # neither the folder nor a partial one
    with pytest.raises(ExportError, match="item map does not match the model"):
        export_onnx(other, out, item_ids=tiny_dataset.item_map.iloc[:-1], max_len=MAX_LEN)
    assert list(tmp_path.iterdir()) == []


def test_missing_extra_names_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setattr(export, "_installed", lambda name: name != "onnxruntime")
    assert not export.onnx_available()
    assert issubclass(OnnxUnavailableError, ImportError)  # callers may skip on ImportError
    with pytest.raises(
        OnnxUnavailableError, match=r"onnxruntime missing\): pip install 'shopdistill\[onnx\]'"
    ):
        require_onnx()
    with pytest.raises(OnnxUnavailableError):
        OnnxScorer(tmp_path)
