"""The real-time shopping guide: a registered student, its catalogue and recommendations with reasons.

A :class:`Guide` holds one loaded model version (ONNX fp32 or int8 on onnxruntime, or torch) and what
it needs to answer a request without touching the registry again: the catalogue (titles, brands,
categories), the popularity order of the training data (the cold-start fallback) and every known
user's stored history.

Reasons are cheap: a recommended product's reason is the history product whose item embedding has
the largest dot product with the recommended product's (the student's item table, the same vectors
its output layer scores with), so one (k, history) product per request.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from shopdistill.components.data.dataset import Dataset, load_dataset
from shopdistill.components.registry import Registry, RegistryError, VersionInfo
from shopdistill.components.serving import NextItemScorer

ENGINES = ("onnx", "onnx-int8", "torch")
MAX_K = 100


class GuideError(RuntimeError):
    """A model version that cannot be loaded or does not pass its checks."""


class EngineUnavailableError(GuideError):
    """The engine asked for cannot run here (the [onnx] extra is missing, or the version has no export)."""


@dataclass(frozen=True)
class ModelInfo:
    """What ``/model`` reports about a loaded version."""

    name: str
    version: str
    aliases: list[str]
    engine: str
    digests: dict[str, str]
    dataset: str
    max_len: int
    n_items: int
    loaded_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))


@dataclass(frozen=True)
class Request:
    items: list[str] = field(default_factory=list)  # raw product ids, most recent last
    user: str | None = None
    k: int = 10
    exclude_seen: bool = True
    category: str | None = None  # a category, or a department (the part before " > ")
    brand: str | None = None


class Catalogue:
    """Raw ids, titles, brands and categories by internal item id (row 0 is padding)."""

    def __init__(self, dataset: Dataset):
        n = len(dataset.item_map)
        items = dataset.items.set_index("item_id").reindex(np.arange(1, n + 1))
        raw = dataset.item_map.set_index("item_id")["raw_item_id"].reindex(np.arange(1, n + 1))
        self.raw = np.array(["", *raw.astype(str)], dtype=object)
        self.title = np.array(["", *items["title"].fillna("").astype(str)], dtype=object)
        self.brand = np.array(["", *items["brand"].fillna("").astype(str)], dtype=object)
        self.category = np.array(["", *items["category"].fillna("").astype(str)], dtype=object)
        self.index = {r: i for i, r in enumerate(self.raw) if i}
        self._category = np.char.lower(self.category.astype(str))  # for case-insensitive filters
        self._brand = np.char.lower(self.brand.astype(str))
        self._everything = np.r_[False, np.ones(n, dtype=bool)]
        inter = dataset.interactions
        train = inter.loc[inter["split"] == "train", "item_id"].to_numpy(np.int64)
        self.popularity = np.bincount(train, minlength=n + 1).astype(np.float32)  # (I + 1,)

    def allowed(self, category: str | None, brand: str | None) -> np.ndarray:
        """(I + 1,) bool: items that pass the filters (case-insensitive; padding never)."""
        ok = self._everything.copy()
        if category:
            c = category.strip().lower()
            ok &= (self._category == c) | np.char.startswith(self._category, c + " > ")
        if brand:
            ok &= self._brand == brand.strip().lower()
        return ok

    def describe(self, item: int) -> dict[str, str]:
        return {
            "id": self.raw[item],
            "title": self.title[item],
            "brand": self.brand[item],
            "category": self.category[item],
        }


def _histories(dataset: Dataset) -> dict[str, np.ndarray]:
    """Every known user's stored items (internal ids, chronological), by raw user id."""
    inter = dataset.interactions
    raw = dataset.user_map.set_index("user_id")["raw_user_id"].astype(str)
    users = inter["user_id"].to_numpy()
    items = inter["item_id"].to_numpy(np.int64)
    cuts = np.flatnonzero(np.diff(users)) + 1
    starts = np.r_[0, cuts]
    return {raw[users[s]]: seq for s, seq in zip(starts, np.split(items, cuts), strict=True)}


class Guide:
    """One loaded model version and everything a request needs (see the module)."""

    def __init__(
        self,
        scorer: Callable[[torch.Tensor], torch.Tensor],
        embeddings: np.ndarray,
        dataset: Dataset,
        info: ModelInfo,
    ):
        self.scorer, self.embeddings, self.info = scorer, embeddings, info  # embeddings: (I + 1, d)
        self.catalogue = Catalogue(dataset)
        self.histories = _histories(dataset)
        self.check()

    def check(self) -> None:
        """The model answers one history with finite scores for the whole catalogue."""
        probe = torch.tensor([[int(np.argmax(self.catalogue.popularity))]])
        scores = self.scorer(probe)
        if tuple(scores.shape) != (1, self.info.n_items) or not torch.isfinite(scores).all():
            raise GuideError(
                f"{self.info.name} v{self.info.version}: the model's scores for one history have shape "
                f"{tuple(scores.shape)} (expected (1, {self.info.n_items})) or are not finite"
            )

    def history_of(self, request: Request) -> tuple[np.ndarray, list[str], bool]:
        """(internal ids, most recent last), the unknown product ids, whether the user is unknown."""
        stored = self.histories.get(request.user) if request.user is not None else None
        session = [self.catalogue.index.get(str(i)) for i in request.items]
        unknown = [str(i) for i, s in zip(request.items, session, strict=True) if s is None]
        known = np.array([s for s in session if s is not None], dtype=np.int64)
        history = np.concatenate([stored, known]) if stored is not None else known
        return history, unknown, request.user is not None and stored is None

    def recommend(self, request: Request) -> dict:
        """The response of ``POST /recommend`` (see ``docs/serving.md``)."""
        history, unknown, unknown_user = self.history_of(request)
        window = history[-self.info.max_len :]
        if len(window):
            scores = np.empty(len(self.catalogue.raw), np.float32)  # (I + 1,), row 0 is padding
            scores[1:] = self.scorer(torch.from_numpy(window)[None])[0].numpy()
            fallback = None
        else:
            scores = np.log1p(self.catalogue.popularity)
            fallback = "popularity"
        allowed = self.catalogue.allowed(request.category, request.brand)
        if request.exclude_seen:
            allowed[history] = False
        scores[~allowed] = -np.inf
        k = min(request.k, int(allowed.sum()))
        best = np.argpartition(-scores, k - 1)[:k] if k else np.zeros(0, dtype=np.int64)
        top = best[np.argsort(-scores[best], kind="stable")]
        return {
            "model": {"name": self.info.name, "version": self.info.version, "aliases": self.info.aliases},
            "fallback": fallback,
            "unknown_items": unknown,
            "unknown_user": request.user if unknown_user else None,
            "history_used": len(window),
            "truncated": max(len(history) - len(window), 0),
            "recommendations": [
                {**self.catalogue.describe(i), "score": round(float(scores[i]), 4), "reason": reason}
                for i, reason in zip(top, self.reasons(top, window, fallback), strict=True)
            ],
        }

    def reasons(self, top: np.ndarray, window: np.ndarray, fallback: str | None) -> list[str]:
        """A short reason per recommended item: the history item that contributes most (see module)."""
        if fallback or not len(window) or not len(top):
            return ["popular in the shop"] * len(top)
        seen = window  # a repeated item only repeats a column
        affinity = self.embeddings[top] @ self.embeddings[seen].T  # (k, H)
        best = seen[np.argmax(affinity, axis=1)]
        return [f"because you viewed {self.catalogue.title[b] or self.catalogue.raw[b]}" for b in best]


def _torch_scorer(model: torch.nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    scorer = NextItemScorer(model.eval())

    def score(items: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return scorer(items)

    return score


def _item_vectors(model: torch.nn.Module) -> np.ndarray:
    """(I + 1, d) the vectors the model scores items with (an ensemble's members side by side),
    row 0 the padding."""
    from shopdistill.components.soft_labels.writer import teacher_item_embeddings

    table = teacher_item_embeddings(model)
    return np.r_[np.zeros((1, table.shape[1]), np.float32), table]


def _version(registry: Registry, version: str | None) -> VersionInfo:
    found = registry.version(version) if version else registry.champion()
    if found is None:
        raise GuideError(f"no champion registered for {registry.name!r} yet: run `shopdistill run` first")
    return found


def _model(registry: Registry, found: VersionInfo, checkpoint: Path | None, tmp: str):
    """(model, window, digests): the version's student, or the model file ``checkpoint`` (a
    ``best.pt``, or a teacher ensemble's record), each checked against its recorded digest."""
    from shopdistill.components.models.checkpoint import ENSEMBLE_FILE, load_model, load_teacher

    if checkpoint is not None and (checkpoint.is_dir() or checkpoint.name == ENSEMBLE_FILE):
        model = load_teacher(checkpoint)  # every member checked against the record
        return model, model.max_len, {"model": str(checkpoint)}
    if checkpoint is not None:
        model, cfg, _ = load_model(checkpoint)
        return model, cfg.max_len, {"model": str(checkpoint)}
    digest = found.tags.get("student_digest")
    model, cfg, _ = load_model(registry.download_student(found, tmp) / "best.pt", digest)
    return model, cfg.max_len, {"student": digest or "", "onnx": found.tags.get("onnx_export", "")}


def _scorer(registry: Registry, found: VersionInfo, model, engine: str, threads: int, tmp: str):
    """Torch on ``model``, or the version's verified ONNX export on onnxruntime."""
    from shopdistill.components.export import OnnxScorer, OnnxUnavailableError
    from shopdistill.components.registry import NoOnnxExportError

    if engine == "torch":
        return _torch_scorer(model)
    try:
        folder = registry.download_onnx(found, tmp)
        return OnnxScorer(folder, quantized=engine == "onnx-int8", threads=threads)
    except (OnnxUnavailableError, NoOnnxExportError) as exc:
        raise EngineUnavailableError(f"--engine {engine}: {exc}") from exc


def load_guide(
    registry: Registry,
    *,
    version: str | None = None,
    engine: str = "onnx",
    checkpoint: Path | None = None,
    threads: int = 1,
) -> Guide:
    """Load ``version`` (default: the champion) with ``engine`` and check it; every failure is a
    :class:`GuideError` naming the version (:class:`EngineUnavailableError` when only the engine is
    missing). ``checkpoint``: serve that model file (a teacher's ``best.pt`` or ensemble record, for
    comparison) on torch with the version's dataset instead of the registered student."""
    from shopdistill.components.data.schema import DataSourceError
    from shopdistill.components.export import ExportError
    from shopdistill.components.models.checkpoint import CheckpointError

    if engine not in ENGINES:
        raise GuideError(f"unknown engine {engine!r}: one of {', '.join(ENGINES)}")
    found = _version(registry, version)
    engine = "torch" if checkpoint is not None else engine
    try:
        with tempfile.TemporaryDirectory(prefix="shopdistill-serve-") as tmp:  # read into memory here
            model, max_len, digests = _model(registry, found, checkpoint and Path(checkpoint), tmp)
            scorer = _scorer(registry, found, model, engine, threads, tmp)
        if "dataset_uri" not in found.tags:
            raise KeyError("the version has no dataset_uri tag")
        dataset = load_dataset(found.tags["dataset_uri"])
        info = ModelInfo(
            name=found.name if checkpoint is None else f"{found.name} ({Path(checkpoint).name})",
            version=found.version,
            aliases=sorted(found.aliases),
            engine=engine,
            digests=digests,
            dataset=found.tags.get("dataset_digest", dataset.path.name),
            max_len=max_len,
            n_items=len(dataset.item_map),
        )
        return Guide(scorer, _item_vectors(model), dataset, info)
    except GuideError:
        raise
    except (
        KeyError,
        OSError,
        DataSourceError,
        CheckpointError,
        ExportError,
        RegistryError,
        RuntimeError,
    ) as exc:
        raise GuideError(f"{found.name} v{found.version} cannot be served: {exc}") from exc
