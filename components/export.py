"""ONNX export of a student (projector heads are never part of it), and serving it with onnxruntime.

:func:`export_onnx` writes one folder, atomically (``artifacts.atomic_directory``):

    model.onnx       fp32: ``items`` (B, L) int64, right-padded with 0 -> ``scores`` (B, I) float32,
                     column c = item id c + 1; B and L dynamic (torch.export: ``torch.onnx.export(dynamo=True)``)
    model.int8.onnx  the same graph after onnxruntime's dynamic int8 quantization (``quantize_dynamic``)
    items.parquet    column c -> item_id c + 1 -> raw_item_id (the product id), with title, brand, category
    export.json      manifest: input/output names and dynamic axes, opset, max_len, library versions,
                     sha256 + size of each file, the fp32 parity measured at export, what int8 covers
                     and, when data is given, what it costs (NDCG@10 etc. of fp32 vs int8 on a split)

The graph keeps each row's last ``max_len`` real items (the window the student is trained and evaluated
on), so a caller may send a whole history of any length. The export fails, and leaves no folder,
unless onnxruntime reproduces PyTorch within ``atol`` (1e-4) on random batches of several sizes and
lengths, length 1 and longer than ``max_len`` included.

What int8 covers (onnxruntime 1.32 ``quantize_dynamic``, QInt8 weights): every MatMul with a constant
weight becomes a MatMulInteger with int8 weights and activations quantized on the fly, above all the
catalogue-scoring MatMul (weight (d, I), the large one), in SASRec also the attention and MLP
projections; the item-embedding Gather reads a uint8 table through a DequantizeLinear. Left in fp32:
position embeddings, LayerNorms, the attention products (no constant operand) and the GRU cell
(onnxruntime has no dynamic-int8 GRU kernel). Defaults: per-channel weights with ``reduce_range`` (7-bit),
as onnxruntime advises for CPUs without VNNI, whose u8 x s8 kernels saturate; per-tensor weights, or
per-channel without ``reduce_range``, cost more accuracy on such CPUs. ``make bench`` measures the int8
accuracy cost on Beauty (README, "Performance").

onnx, onnxruntime and onnxscript are the optional ``[onnx]`` extra, imported inside the functions that
need them; without them the error says ``pip install 'shopdistill[onnx]'``.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from shopdistill.components.artifacts import (
    Handle,
    atomic_directory,
    sha256_dir,
    sha256_file,
    verify_manifest,
    write_json_atomic,
)
from shopdistill.components.data.dataset import Dataset
from shopdistill.components.evaluation import evaluate_scores
from shopdistill.components.locks import exclusive
from shopdistill.components.metrics import KS
from shopdistill.components.sequences import SequenceData

SCHEMA_VERSION = 1
KIND = "onnx_export"
MANIFEST = "export.json"
MODEL_FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx"}
ITEMS_FILE = "items.parquet"
INPUT, OUTPUT = "items", "scores"
DEFAULT_OPSET = 18
PARITY_ATOL = 1e-4
INSTALL_HINT = "pip install 'shopdistill[onnx]'"
EXTRA_MODULES = ("onnx", "onnxruntime", "onnxscript")
ACCURACY_KEYS = ("NDCG@10", "HR@10", "MRR@10", "NDCG@20", "HR@20")


class ExportError(RuntimeError):
    """An export cannot be written or used: parity failed, a file is missing or does not match."""


class OnnxUnavailableError(ExportError, ImportError):
    """The optional ``[onnx]`` extra is not installed (an ImportError too, for callers that skip on it)."""


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def onnx_available(modules: tuple[str, ...] = EXTRA_MODULES) -> bool:
    """Whether the ``[onnx]`` extra (or the given part of it) is installed."""
    return all(_installed(name) for name in modules)


def require_onnx(*modules: str) -> list[Any]:
    """Import the extra's modules (all three by default), or raise :class:`OnnxUnavailableError`."""
    names = modules or EXTRA_MODULES
    missing = [name for name in names if not _installed(name)]
    if missing:
        raise OnnxUnavailableError(
            f"ONNX export and serving need the optional [onnx] extra ({', '.join(missing)} missing): {INSTALL_HINT}"
        )
    return [importlib.import_module(name) for name in names]


class WindowedScorer(nn.Module):
    """(B, L) right-padded item ids, any L -> (B, I): the scores of ``serving.NextItemScorer`` on each
    row's last ``max_len`` items. The window has a fixed width in the graph (trailing padding changes no
    earlier position of a causal model), so no shape depends on the data. The catalogue weight is a
    (d, I) constant, a second copy of the item embedding: the exporter does not fold ``item_emb[1:].T``
    for a large catalogue, and quantize_dynamic only turns a MatMul with a constant weight into int8."""

    def __init__(self, model: nn.Module, max_len: int):
        super().__init__()
        self.model = model
        self.max_len = max_len
        self.register_buffer("catalogue", model.output_weight().detach().T.contiguous())  # (d, I)

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        lengths = (items != 0).sum(dim=1)  # (B,)
        padded = torch.cat([items, items.new_zeros(items.shape[0], self.max_len)], dim=1)  # (B, L + W)
        start = (lengths - self.max_len).clamp(min=0)  # (B,)
        window = padded.gather(1, start[:, None] + torch.arange(self.max_len, device=items.device))  # (B, W)
        hidden = self.model(window).hidden  # (B, W, d)
        last = (lengths - start).clamp(min=1) - 1  # (B,) last real position in the window
        picked = hidden.gather(1, last[:, None, None].expand(-1, 1, hidden.shape[2])).squeeze(1)  # (B, d)
        return picked @ self.catalogue  # (B, I), column c = item c + 1


@dataclass(frozen=True)
class ExportResult:
    path: Path
    manifest: dict[str, Any]
    reused: bool = False

    @property
    def handle(self) -> Handle:
        meta = {"parity_max_abs_diff": self.manifest["parity_max_abs_diff"], "reused": self.reused}
        if self.manifest["int8"].get("accuracy"):
            meta["int8_delta"] = self.manifest["int8"]["accuracy"]["delta"]
        return Handle(str(self.path), sha256_dir(self.path), KIND, meta)


class _DropNoise(logging.Filter):
    """Drops two known, harmless warnings: quantize_dynamic's pre-processing hint (logged on the root
    logger) and the exporter's note that torchvision is absent."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        return not msg.startswith(("Please consider to run pre-processing", "torchvision is not installed"))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    loggers = [logging.getLogger(), logging.getLogger("torch.onnx._internal.exporter._registration")]
    noise = _DropNoise()
    for logger in loggers:
        logger.addFilter(noise)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.export internals
            warnings.simplefilter("ignore", UserWarning)  # GRU flat weights "assigned during export"
            yield
    finally:
        for logger in loggers:
            logger.removeFilter(noise)


def parity_batches(n_items: int, max_len: int, seed: int = 0) -> list[np.ndarray]:
    """Random right-padded batches: batch 1 x length 1, short, exactly ``max_len`` and longer."""
    rng = np.random.default_rng(seed)
    batches = []
    for batch, length in ((1, 1), (2, 3), (5, max_len), (3, max_len + 7)):
        items = rng.integers(1, n_items + 1, size=(batch, length))
        lengths = rng.integers(1, length + 1, size=batch)
        lengths[0] = length  # one full row per batch
        items[np.arange(length)[None, :] >= lengths[:, None]] = 0
        batches.append(items.astype(np.int64))
    return batches


@torch.no_grad()
def _torch_scores(module: nn.Module, batches: list[np.ndarray]) -> list[np.ndarray]:
    return [module(torch.from_numpy(b)).numpy() for b in batches]


def _session(path: Path, threads: int = 1):
    (ort,) = require_onnx("onnxruntime")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def _export_graph(module: nn.Module, path: Path, opset: int) -> None:
    # batch and length > 1 in the example, so torch.export does not specialise either to 1
    example = torch.tensor([[1, 2, 3], [1, 0, 0]], dtype=torch.int64)
    batch, length = torch.export.Dim("batch", min=1), torch.export.Dim("length", min=1)
    with _quiet():
        torch.onnx.export(
            module,
            (example,),
            str(path),
            dynamo=True,
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_shapes=({0: batch, 1: length},),
            opset_version=opset,
            external_data=False,
            verbose=False,
        )


def _quantize(src: Path, dst: Path, per_channel: bool, reduce_range: bool) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with _quiet():
        quantize_dynamic(
            str(src),
            str(dst),
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            reduce_range=reduce_range,
        )


def int8_coverage(path: str | Path, n_items: int) -> dict[str, Any]:
    """Which parts of a quantized graph are int8: op counts, int8 weights, weights left in fp32."""
    import onnx
    from onnx import TensorProto

    graph = onnx.load(str(path)).graph
    inits = {i.name: i for i in graph.initializer}
    low = (TensorProto.INT8, TensorProto.UINT8)
    ops = Counter(node.op_type for node in graph.node)
    catalogue = any(
        node.op_type == "MatMulInteger"
        and node.input[1] in inits
        and list(inits[node.input[1]].dims)[-1:] == [n_items]
        for node in graph.node
    )
    embedding = any(
        node.op_type == "Gather" and node.input[0] in inits and inits[node.input[0]].data_type in low
        for node in graph.node
    )
    watched = ("MatMulInteger", "DynamicQuantizeLinear", "DequantizeLinear", "MatMul", "Gather", "GRU")
    return {
        "catalogue_matmul_int8": catalogue,
        "item_embedding_int8": embedding,
        "op_counts": {op: ops[op] for op in watched if ops[op]},
        "int8_weights": {
            n: list(i.dims) for n, i in inits.items() if i.data_type in low and len(i.dims) >= 2
        },
        "fp32_weights": {
            n: list(i.dims) for n, i in inits.items() if i.data_type == TensorProto.FLOAT and len(i.dims) >= 2
        },
    }


def _top_overlap(a: np.ndarray, b: np.ndarray, k: int = 10) -> float:
    k = min(k, a.shape[1])
    ta, tb = np.argsort(-a, axis=1)[:, :k], np.argsort(-b, axis=1)[:, :k]
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(ta, tb, strict=True)]))


def _item_table(item_map: pd.DataFrame, n_items: int, catalog: pd.DataFrame | None) -> pd.DataFrame:
    ids = item_map.sort_values("item_id")
    if not np.array_equal(ids["item_id"].to_numpy(), np.arange(1, n_items + 1)):
        raise ExportError(
            f"the item map does not match the model: {len(ids)} items, the model scores {n_items} "
            f"(ids 1..{n_items} expected): export with the dataset the student was trained on"
        )
    table = pd.DataFrame(
        {
            "column": np.arange(n_items, dtype=np.int32),
            "item_id": np.arange(1, n_items + 1, dtype=np.int32),
            "raw_item_id": ids["raw_item_id"].astype(str).to_numpy(),
        }
    )
    if catalog is not None:
        cols = [c for c in ("title", "brand", "category") if c in catalog.columns]
        table = table.merge(
            catalog[["item_id", *cols]].astype({"item_id": np.int32}), on="item_id", how="left"
        )
    return table


def _versions() -> dict[str, str]:
    onnx, ort, onnxscript = require_onnx()
    return {
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": ort.__version__,
        "onnxscript": onnxscript.__version__,
    }


def _onnx_scores(path: Path, batches: list[np.ndarray]) -> list[np.ndarray]:
    """The scores onnxruntime gives for each batch with the graph at ``path``."""
    session = _session(path)
    return [session.run([OUTPUT], {INPUT: b})[0] for b in batches]


def _check_parity(
    got: list[np.ndarray], expected: list[np.ndarray], batches: list[np.ndarray], atol: float
) -> float:
    """The largest |onnxruntime - PyTorch| over the batches; :class:`ExportError` when it exceeds ``atol``."""
    diffs = [float(np.abs(g - e).max()) for g, e in zip(got, expected, strict=True)]
    if not max(diffs) <= atol:
        worst = int(np.argmax(diffs))
        raise ExportError(
            f"ONNX export does not reproduce PyTorch: max |diff| {max(diffs):.3g} > {atol:g} at batch "
            f"{batches[worst].shape[0]} x length {batches[worst].shape[1]}; nothing was written"
        )
    return max(diffs)


def _io_spec(n_items: int) -> dict[str, Any]:
    """The manifest's ``input``, ``output`` and ``dynamic_axes`` entries."""
    return {
        "input": {
            "name": INPUT,
            "dtype": "int64",
            "shape": ["batch", "length"],
            "meaning": "item ids (1..I), right-padded with 0; any length, the last max_len are used",
        },
        "output": {
            "name": OUTPUT,
            "dtype": "float32",
            "shape": ["batch", n_items],
            "meaning": "next-item scores; column c is item_id c + 1 (see items.parquet)",
        },
        "dynamic_axes": {INPUT: {"0": "batch", "1": "length"}, OUTPUT: {"0": "batch"}},
    }


def _int8_entry(
    int8: Path,
    n_items: int,
    per_channel: bool,
    reduce_range: bool,
    got: list[np.ndarray],
    quantized: list[np.ndarray],
) -> dict[str, Any]:
    """The manifest's ``int8`` entry: the quantization settings, what is int8 (:func:`int8_coverage`)
    and how far int8 scores are from fp32 on the parity batches; ``accuracy`` is left None."""
    return {
        "method": "onnxruntime.quantization.quantize_dynamic",
        "weight_type": "QInt8",
        "per_channel": per_channel,
        "reduce_range": reduce_range,
        **int8_coverage(int8, n_items),
        "max_abs_diff_vs_fp32": max(float(np.abs(q - g).max()) for q, g in zip(quantized, got, strict=True)),
        "top10_overlap_vs_fp32": _top_overlap(np.concatenate(got), np.concatenate(quantized)),
        "accuracy": None,
    }


def _file_entries(folder: Path) -> dict[str, dict[str, Any]]:
    """sha256 and size in bytes of each model file and the items table in ``folder``."""
    return {
        name: {"sha256": sha256_file(folder / name), "bytes": (folder / name).stat().st_size}
        for name in (*MODEL_FILES.values(), ITEMS_FILE)
    }


def _manifest(
    model: nn.Module,
    *,
    n_items: int,
    opset: int,
    max_len: int,
    atol: float,
    parity: float,
    batches: list[np.ndarray],
    int8: dict[str, Any],
    source: dict[str, Any] | None,
) -> dict[str, Any]:
    """The ``export.json`` contents except ``files``, which is left empty for the caller to fill."""
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": KIND,
        "model_class": type(model).__name__,
        **_io_spec(n_items),
        "opset": opset,
        "max_len": max_len,
        "n_items": n_items,
        "models": dict(MODEL_FILES),
        "items": ITEMS_FILE,
        "versions": _versions(),
        "parity_atol": atol,
        "parity_max_abs_diff": parity,
        "parity_shapes": [list(b.shape) for b in batches],
        "int8": int8,
        "source": source or {},
        "files": {},
    }


def export_onnx(
    model: nn.Module,
    out_dir: str | Path,
    *,
    item_ids: pd.DataFrame,
    max_len: int,
    catalog: pd.DataFrame | None = None,
    opset: int = DEFAULT_OPSET,
    per_channel: bool = True,
    reduce_range: bool = True,
    atol: float = PARITY_ATOL,
    eval_data: SequenceData | None = None,
    eval_split: str = "test",
    source: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> ExportResult:
    """Export ``model`` (a student: ``forward`` -> hidden states, ``scores``) to ``out_dir`` (see the module
    docstring). ``item_ids``: the dataset's item map (``item_id -> raw_item_id``); ``catalog``: its items table.
    With ``eval_data`` the int8 accuracy cost is measured on ``eval_split`` and kept in the manifest."""
    require_onnx()
    module = WindowedScorer(model, max_len).eval()
    batches = parity_batches(module.catalogue.shape[1], max_len)
    expected = _torch_scores(module, batches)
    n_items = expected[0].shape[1]
    items = _item_table(item_ids, n_items, catalog)
    with atomic_directory(out_dir, overwrite=overwrite) as tmp:
        fp32, int8 = tmp / MODEL_FILES["fp32"], tmp / MODEL_FILES["int8"]
        _export_graph(module, fp32, opset)
        got = _onnx_scores(fp32, batches)
        parity = _check_parity(got, expected, batches, atol)
        _quantize(fp32, int8, per_channel, reduce_range)
        quantized = _onnx_scores(int8, batches)
        items.to_parquet(tmp / ITEMS_FILE, index=False)
        manifest = _manifest(
            model,
            n_items=n_items,
            opset=opset,
            max_len=max_len,
            atol=atol,
            parity=parity,
            batches=batches,
            int8=_int8_entry(int8, n_items, per_channel, reduce_range, got, quantized),
            source=source,
        )
        manifest["files"] = _file_entries(tmp)
        write_json_atomic(tmp / MANIFEST, manifest)
        if eval_data is not None:
            manifest["int8"]["accuracy"] = int8_accuracy(tmp, eval_data, eval_split)
            write_json_atomic(tmp / MANIFEST, manifest)
    return ExportResult(Path(out_dir), manifest)


def load_manifest(folder: str | Path) -> dict[str, Any]:
    """The folder's ``export.json``, after checking each listed file's size and sha256."""
    return verify_manifest(
        folder,
        what="shopdistill ONNX export",
        schema_version=SCHEMA_VERSION,
        error=ExportError,
        manifest=MANIFEST,
    )


class OnnxScorer:
    """An exported student on onnxruntime: (B, L) right-padded item ids -> (B, I) float32 scores.

    Checks the folder's checksums first. ``quantized``: the int8 graph instead of fp32; ``threads``:
    onnxruntime intra-op threads (1 suits a busy or small machine and a latency-bound server).
    """

    def __init__(self, folder: str | Path, *, quantized: bool = False, threads: int = 1):
        require_onnx("onnxruntime")
        self.path = Path(folder)
        self.manifest = load_manifest(self.path)
        self.variant = "int8" if quantized else "fp32"
        self.model_path = self.path / self.manifest["models"][self.variant]
        self.max_len = int(self.manifest["max_len"])
        self.n_items = int(self.manifest["n_items"])
        self.session = _session(self.model_path, threads)
        self._items: pd.DataFrame | None = None

    @property
    def items(self) -> pd.DataFrame:
        """column, item_id, raw_item_id (+ title, brand, category): row c describes score column c."""
        if self._items is None:
            self._items = pd.read_parquet(self.path / self.manifest["items"])
        return self._items

    def scores(self, items: np.ndarray) -> np.ndarray:
        items = np.ascontiguousarray(items, dtype=np.int64)
        if items.ndim != 2 or items.shape[1] == 0:
            raise ValueError(f"expected (batch, length) item ids with length >= 1, got shape {items.shape}")
        return self.session.run([OUTPUT], {INPUT: items})[0]

    def __call__(self, items: torch.Tensor) -> torch.Tensor:
        """The :class:`NextItemScorer` interface: a (B, L) tensor -> a (B, I) tensor."""
        return torch.from_numpy(self.scores(items.numpy()))

    def top_k(
        self, items: np.ndarray, k: int = 10, exclude_seen: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """(B, k) raw product ids and their scores, best first; items in the input excluded by default."""
        scores = self.scores(items)
        if exclude_seen:
            rows, cols = np.nonzero(np.asarray(items) > 0)
            scores[rows, np.asarray(items)[rows, cols] - 1] = -np.inf
        k = min(k, scores.shape[1])
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return self.items["raw_item_id"].to_numpy()[top], np.take_along_axis(scores, top, axis=1)


def evaluate_onnx(
    scorer: OnnxScorer,
    data: SequenceData,
    split: str,
    max_len: int | None = None,
    *,
    batch_size: int = 1024,
    ks=KS,
) -> dict[str, float]:
    """The full-ranking metrics of ``evaluation.evaluate_model``, scored by onnxruntime (inputs cut to
    ``max_len``, by default the export's)."""
    return evaluate_scores(
        lambda inputs, _: scorer(inputs), data, split, max_len or scorer.max_len, batch_size=batch_size, ks=ks
    )


def int8_accuracy(folder: str | Path, data: SequenceData, split: str = "test") -> dict[str, Any]:
    """fp32 vs int8 metrics of an export on ``split``: what the quantization costs."""
    fp32, int8 = (evaluate_onnx(OnnxScorer(folder, quantized=q), data, split) for q in (False, True))
    return {
        "split": split,
        "users": int(fp32["users"]),
        "fp32": {k: fp32[k] for k in ACCURACY_KEYS},
        "int8": {k: int8[k] for k in ACCURACY_KEYS},
        "delta": {k: int8[k] - fp32[k] for k in ACCURACY_KEYS},
    }


def export_student(
    student_path: str | Path, dataset: Dataset, out_dir: str | Path, *, eval_split: str | None = "test"
) -> ExportResult:
    """Export a saved student (``best.pt``) with its dataset's item map; reuse a valid export of the same
    checkpoint and dataset. With ``eval_split`` the int8 cost is measured on that split."""
    from shopdistill.components.models.checkpoint import load_model

    out, digest = Path(out_dir), sha256_file(student_path)
    source = {"checkpoint_sha256": digest, "dataset_digest": dataset.digest}
    with exclusive(out, what="the ONNX export"):
        if out.exists():
            with contextlib.suppress(ExportError):
                manifest = load_manifest(out)
                if manifest.get("source", {}).items() >= source.items():
                    return ExportResult(out, manifest, reused=True)
        model, cfg, _ = load_model(student_path)
        source |= {"arch": cfg.arch, "d_model": cfg.d_model}
        data = SequenceData.from_dataset(dataset) if eval_split else None
        return export_onnx(
            model,
            out,
            item_ids=dataset.item_map,
            catalog=dataset.items,
            max_len=cfg.max_len,
            eval_data=data,
            eval_split=eval_split or "test",
            source=source,
            overwrite=True,
        )
