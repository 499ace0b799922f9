"""The MLflow registry: runs, model versions and the ``challenger`` / ``champion`` aliases.

This is the only module that imports mlflow. The tracking URI comes from ``registry.tracking_uri``,
else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<data dir>/mlflow.db`` with artifacts under
``<data dir>/mlruns`` (never the current directory by accident).

Every evaluated candidate becomes a model version with alias ``challenger``; ``champion`` moves only
when the gate passes (or by an explicit ``promote``); earlier champions stay as versions. A promotion
records the champion it replaced on the registered model (tag ``previous_champion``), which is where
``rollback`` returns to; both are idempotent. A registration that fails half-way deletes the version it
created, so no half-registered version is left behind.

Serving loads a champion from its ``student/best.pt`` (a state dict + config, read with
``torch.load(weights_only=True)``), not from a pickled model, or from its ``onnx/`` folder (the ONNX
export of ``components/export.py``: fp32 + int8 graphs, item map, manifest) with onnxruntime.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from shopdistill.components.artifacts import sha256_file
from shopdistill.components.config import RegistryConfig
from shopdistill.components.locks import exclusive

EXPERIMENT = "shopdistill"
CHAMPION, CHALLENGER = "champion", "challenger"
COMPLETE = "complete"  # tagged last: the version's files were checked and its outcome is recorded
STUDENT_DIR = "student"
SERVABLE_DIR = "recommender"  # the MLflow model a registered version points at
ONNX_DIR = "onnx"
SERVING_PACKAGES = ("onnxruntime", "numpy", "pandas", "pyarrow")

logging.getLogger("mlflow").setLevel(logging.WARNING)
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# A remote store that does not answer fails in seconds (MLflow's defaults retry for minutes).
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
# what MLflow answers for a model or alias that does not exist (anything else: the store failed)
_ABSENT = {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}
_EXISTS = "RESOURCE_ALREADY_EXISTS"  # creating what a concurrent writer has just created


class RegistryError(RuntimeError):
    """A registry operation cannot be done as asked (no champion, unknown version, ...)."""


class RegistryUnavailableError(RegistryError):
    """The store cannot be reached or failed: unknown is not absent, so nothing may be decided on it."""


class NoOnnxExportError(RegistryError):
    """The version was registered without an ONNX export."""


@dataclass(frozen=True)
class VersionInfo:
    name: str
    version: str
    run_id: str
    source: str
    tags: dict[str, str]
    aliases: list[str]


def pinned_requirements() -> list[str]:
    """What serving the pyfunc needs, pinned to the versions it was logged with (no torch)."""
    return [f"{name}=={version(name)}" for name in SERVING_PACKAGES]


def tracking_uri(cfg: RegistryConfig, data_dir: Path) -> str:
    if cfg.tracking_uri:
        return cfg.tracking_uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{data_dir.resolve() / 'mlflow.db'}"


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": "1"}`` (MLflow params are flat strings)."""
    out: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        else:
            out[name] = str(value)[:6000]
    return out


def metric_name(name: str) -> str:
    """MLflow metric names allow ``[A-Za-z0-9_\\-. /]``: ``NDCG@10`` -> ``NDCG_at_10``."""
    return name.replace("@", "_at_")


class Registry:
    def __init__(self, cfg: RegistryConfig, data_dir: str | Path):
        self.cfg = cfg
        self.data_dir = Path(data_dir)
        self.uri = tracking_uri(cfg, self.data_dir)
        self.name = cfg.model_name
        if self.uri.startswith("sqlite:///"):
            self.client = self._open_sqlite(Path(self.uri.removeprefix("sqlite:///")))
        else:
            self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    def _open_sqlite(self, db: Path) -> MlflowClient:
        """MLflow creates or migrates a SQLite store's schema when a client first opens it, and
        processes doing that at once fail ("table ... already exists", "duplicate column"): the
        opening happens under the store's lock."""
        if not os.access(db.parent, os.W_OK):  # a read-only store (a mounted copy) is only read
            return MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
        with exclusive(db, what="the MLflow store's schema"):
            client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)
            client.search_registered_models(max_results=1)  # the registry's store, opened too
        return client

    @contextlib.contextmanager
    def _fluent(self) -> Iterator[None]:
        """Point MLflow's fluent API at this store for a block, then restore what was there.

        ``mlflow.set_tracking_uri`` also writes ``$MLFLOW_TRACKING_URI``; left in place it would leak
        into every later Registry in the process.
        """
        saved_tracking = os.environ.get("MLFLOW_TRACKING_URI")
        saved_registry = os.environ.get("MLFLOW_REGISTRY_URI")
        mlflow.set_tracking_uri(self.uri)
        mlflow.set_registry_uri(self.uri)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(saved_tracking)
            mlflow.set_registry_uri(saved_registry)
            if saved_registry is None:
                os.environ.pop("MLFLOW_REGISTRY_URI", None)

    # ----------------------------------------------------------------------------------- runs
    def _experiment_id(self) -> str:
        exp = self.client.get_experiment_by_name(EXPERIMENT)
        if exp is not None:
            return exp.experiment_id
        artifacts = (self.data_dir / "mlruns").resolve()
        artifacts.mkdir(parents=True, exist_ok=True)
        try:
            return self.client.create_experiment(EXPERIMENT, artifact_location=artifacts.as_uri())
        except MlflowException as exc:  # another writer created it a moment ago
            if exc.error_code != _EXISTS:
                raise
            return self.client.get_experiment_by_name(EXPERIMENT).experiment_id

    def log_run(
        self,
        *,
        run_name: str,
        params: Mapping[str, Any],
        metrics: Mapping[str, float],
        tags: Mapping[str, str],
        artifacts: Mapping[str, str | Path],
        student_files: Mapping[str, str | Path],
        curves: Mapping[str, list[Mapping[str, Any]]] | None = None,
    ) -> str:
        """One MLflow run: flattened params, metrics, tags, files; the student under ``student/``;
        ``curves`` (model -> epoch records) as metrics with the epoch as step (learning curves)."""
        with self._fluent(), mlflow.start_run(experiment_id=self._experiment_id(), run_name=run_name) as run:
            params = flatten(params)
            keys = list(params)
            for i in range(0, len(keys), 100):
                mlflow.log_params({k: params[k] for k in keys[i : i + 100]})
            mlflow.log_metrics({metric_name(k): float(v) for k, v in metrics.items()})
            for model, history in (curves or {}).items():
                for h in history:
                    per_epoch = {"loss": h["loss"], **{f"valid_{k}": v for k, v in h["valid"].items()}}
                    mlflow.log_metrics(
                        {metric_name(f"{model}.{k}"): float(v) for k, v in per_epoch.items()},
                        step=int(h["epoch"]),
                    )
            mlflow.set_tags(dict(tags))
            for path in artifacts.values():
                mlflow.log_artifact(str(path))
            for path in student_files.values():
                mlflow.log_artifact(str(path), artifact_path=STUDENT_DIR)
            return run.info.run_id

    def log_onnx_export(self, run_id: str, folder: str | Path) -> None:
        """The ONNX export folder (model.onnx, model.int8.onnx, items.parquet, export.json) under ``onnx/``."""
        self.client.log_artifacts(run_id, str(folder), artifact_path=ONNX_DIR)

    def log_servable(self, run_id: str, onnx_folder: str | Path, example_history: list[str]) -> str:
        """Log the servable model under ``recommender/``: the pyfunc of ``registry_pyfunc.py`` over
        the ONNX export, with pinned requirements and a signature whose history length is free.
        Returns its model URI (``models:/<model id>``), the source a version is registered from."""
        import mlflow.pyfunc
        from mlflow.models import infer_signature

        example = pd.DataFrame({"history": [example_history, example_history[:1]]})
        output = pd.DataFrame({"items": [["x"]], "scores": [[0.0]]})
        with self._fluent(), mlflow.start_run(run_id=run_id):
            info = mlflow.pyfunc.log_model(
                name=SERVABLE_DIR,
                python_model=str(Path(__file__).with_name("registry_pyfunc.py")),
                artifacts={"onnx": str(onnx_folder)},
                signature=infer_signature(example, output, params={"k": 10}),
                input_example=example,
                pip_requirements=pinned_requirements(),
            )
        return info.model_uri

    def ui_link(self, run_id: str, host: str = "http://127.0.0.1:5000") -> str:
        """Where the run shows in ``mlflow ui --backend-store-uri <uri>`` (default host and port)."""
        run = self.client.get_run(run_id)
        return f"{host}/#/experiments/{run.info.experiment_id}/runs/{run_id}"

    # ------------------------------------------------------------------------------- versions
    def register(
        self, run_id: str, tags: Mapping[str, str], make_champion: bool, source: str | None = None
    ) -> VersionInfo:
        """A new version from the run's ``student/`` folder: alias challenger, and champion if asked.

        The version is created without its outcome tags; its ``student/`` files are checked (present,
        and ``best.pt`` matching the ``student_digest`` tag) before any alias moves; only then is it
        tagged ``gate_passed`` and ``complete``. If any step fails, the version is deleted again, so a
        version without ``complete`` (a killed registration) is never an earlier version to reuse.
        """
        self._ensure_model()
        outcome = {k: tags[k] for k in ("gate_passed",) if k in tags}
        created = {k: v for k, v in tags.items() if k not in outcome}
        with self._fluent():  # a models:/ source is resolved through the fluent store
            mv = self.client.create_model_version(
                self.name, source=source or f"runs:/{run_id}/{STUDENT_DIR}", run_id=run_id, tags=created
            )
        try:
            self._verify_student(mv.version, run_id, tags.get("student_digest"))
            self.client.set_registered_model_alias(self.name, CHALLENGER, mv.version)
            for key, value in {**outcome, COMPLETE: "true"}.items():
                self.client.set_model_version_tag(self.name, mv.version, key, value)
            if make_champion:
                self.promote(mv.version)
        except Exception:
            self.client.delete_model_version(self.name, mv.version)
            raise
        return self.version(mv.version)

    def _ensure_model(self) -> None:
        try:
            self.client.get_registered_model(self.name)
        except MlflowException as exc:
            if exc.error_code not in _ABSENT:
                raise self._unavailable(exc) from None
            try:
                self.client.create_registered_model(self.name, description="shopdistill students")
            except MlflowException as created:  # another writer created it a moment ago
                if created.error_code != _EXISTS:
                    raise

    def _verify_student(self, version: str, run_id: str, digest: str | None) -> None:
        """The version's ``student/`` files are in the artifact store, and ``best.pt`` is the one named."""
        names = {Path(a.path).name for a in self.client.list_artifacts(run_id, STUDENT_DIR)}
        missing = {"best.pt", "items.parquet", "item_map.parquet"} - names
        if missing:
            raise RegistryError(
                f"{self.name} v{version}: {', '.join(sorted(missing))} missing from the artifact store"
            )
        with tempfile.TemporaryDirectory(prefix="shopdistill-verify-") as tmp:
            path = mlflow.artifacts.download_artifacts(
                run_id=run_id, artifact_path=f"{STUDENT_DIR}/best.pt", dst_path=tmp, tracking_uri=self.uri
            )
            if digest and sha256_file(path) != digest:
                raise RegistryError(
                    f"{self.name} v{version}: the stored best.pt does not match student_digest"
                )

    def version(self, version: str | int) -> VersionInfo:
        try:
            mv = self.client.get_model_version(self.name, str(version))
        except MlflowException as exc:
            if exc.error_code in _ABSENT:
                raise RegistryError(f"model {self.name!r} has no version {version}") from None
            raise self._unavailable(exc) from None
        return VersionInfo(self.name, str(mv.version), mv.run_id, mv.source, dict(mv.tags), list(mv.aliases))

    def _unavailable(self, exc: MlflowException) -> RegistryUnavailableError:
        return RegistryUnavailableError(f"registry unreachable ({self.uri}): {str(exc.message)[:300]}")

    def alias(self, alias: str) -> VersionInfo | None:
        """The version behind ``alias``, None when there is none; :class:`RegistryUnavailableError`
        when the store does not answer (an outage must not read as "no champion yet")."""
        try:
            mv = self.client.get_model_version_by_alias(self.name, alias)
        except MlflowException as exc:
            if exc.error_code in _ABSENT:
                return None
            raise self._unavailable(exc) from None
        return self.version(mv.version)

    def champion(self) -> VersionInfo | None:
        return self.alias(CHAMPION)

    def find_version(self, tags: Mapping[str, str]) -> VersionInfo | None:
        """The latest complete version whose tags include every ``tags`` item, or None."""
        for v in reversed(self.versions()):
            if v.tags.get(COMPLETE) == "true" and all(v.tags.get(k) == value for k, value in tags.items()):
                return v
        return None

    def versions(self) -> list[VersionInfo]:
        try:
            found = self.client.search_model_versions(f"name='{self.name}'")
        except MlflowException as exc:
            if exc.error_code in _ABSENT:
                return []
            raise self._unavailable(exc) from None
        return sorted((self.version(v.version) for v in found), key=lambda v: int(v.version))

    def promote(self, version: str | int) -> VersionInfo:
        """Make ``version`` the champion; remember the one it replaces. Promoting the champion is a no-op."""
        target = self.version(version)
        current = self.champion()
        if current is not None and current.version == target.version:
            return target
        if current is not None:
            self.client.set_registered_model_tag(self.name, "previous_champion", current.version)
        self.client.set_registered_model_alias(self.name, CHAMPION, target.version)
        return self.version(target.version)

    def rollback(self) -> VersionInfo:
        """Move the champion back to the one the last promotion replaced (again: no further change)."""
        try:
            model = self.client.get_registered_model(self.name)
        except MlflowException as exc:
            if exc.error_code not in _ABSENT:
                raise self._unavailable(exc) from None
            raise RegistryError(f"nothing to roll back: model {self.name!r} is not registered yet") from None
        previous = model.tags.get("previous_champion")
        if not previous:
            raise RegistryError(f"nothing to roll back to: {self.name!r} has had only one champion")
        self.client.set_registered_model_alias(self.name, CHAMPION, previous)
        return self.version(previous)

    def download_student(self, version: VersionInfo, dst: str | Path | None = None) -> Path:
        """The version's ``student/`` folder on local disk (best.pt, item metadata)."""
        dst = Path(dst) if dst else Path(tempfile.mkdtemp(prefix="shopdistill-"))
        path = mlflow.artifacts.download_artifacts(
            run_id=version.run_id, artifact_path=STUDENT_DIR, dst_path=str(dst), tracking_uri=self.uri
        )
        return Path(path)

    def download_onnx(self, version: VersionInfo, dst: str | Path | None = None) -> Path:
        """The version's ``onnx/`` export folder on local disk; :class:`NoOnnxExportError` if it has none."""
        if not self.client.list_artifacts(version.run_id, ONNX_DIR):
            raise NoOnnxExportError(
                f"{self.name} v{version.version} has no ONNX export (registered without the [onnx] extra "
                "or with registry.onnx_export=false); serve it with --engine torch"
            )
        dst = Path(dst) if dst else Path(tempfile.mkdtemp(prefix="shopdistill-onnx-"))
        path = mlflow.artifacts.download_artifacts(
            run_id=version.run_id, artifact_path=ONNX_DIR, dst_path=str(dst), tracking_uri=self.uri
        )
        return Path(path)
