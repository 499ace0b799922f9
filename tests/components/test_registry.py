import mlflow
import pytest

from shopdistill.components.config import RegistryConfig
from shopdistill.components.registry import (
    CHALLENGER,
    CHAMPION,
    NoOnnxExportError,
    Registry,
    RegistryError,
    flatten,
    tracking_uri,
)


@pytest.fixture
def registry(tmp_path):
    return Registry(RegistryConfig(model_name="test-model"), tmp_path)


def student_files(tmp_path) -> dict:
    files = {}
    for name in ("best.pt", "items.parquet", "item_map.parquet"):
        files[name] = tmp_path / name
        files[name].write_bytes(name.encode())
    return files


def new_version(registry, tmp_path, champion: bool, tag: str = "x"):
    run_id = registry.log_run(
        run_name="r",
        params={"a": {"b": 1}},
        metrics={"NDCG@10": 0.5},
        tags={"t": tag},
        artifacts={},
        student_files=student_files(tmp_path),
    )
    return registry.register(run_id, {"dataset_digest": tag}, make_champion=champion)


def test_tracking_uri_defaults_under_the_data_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri(RegistryConfig(), tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////elsewhere.db")
    assert tracking_uri(RegistryConfig(), tmp_path) == "sqlite:////elsewhere.db"
    assert tracking_uri(RegistryConfig(tracking_uri="sqlite:////cfg.db"), tmp_path) == "sqlite:////cfg.db"


def test_flatten():
    assert flatten({"a": {"b": 1, "c": {"d": "x"}}, "e": [1, 2]}) == {"a.b": "1", "a.c.d": "x", "e": "[1, 2]"}


def test_run_params_metrics_tags_and_artifacts_live_under_the_data_dir(registry, tmp_path):
    v = new_version(registry, tmp_path, champion=True)
    run = registry.client.get_run(v.run_id)
    assert run.data.params["a.b"] == "1"
    assert run.data.metrics["NDCG_at_10"] == 0.5
    assert run.data.tags["t"] == "x"
    assert run.info.artifact_uri.startswith((tmp_path / "mlruns").resolve().as_uri())
    folder = registry.download_student(v, tmp_path / "dl")
    assert (folder / "best.pt").read_bytes() == b"best.pt"
    assert (tmp_path / "mlflow.db").is_file()


def test_challenger_champion_promote_and_rollback_are_idempotent(registry, tmp_path):
    v1 = new_version(registry, tmp_path, champion=True)
    assert set(v1.aliases) == {CHALLENGER, CHAMPION}
    v2 = new_version(registry, tmp_path, champion=False)
    assert v2.aliases == [CHALLENGER]
    assert registry.champion().version == v1.version  # the gate did not pass: champion unchanged
    registry.promote(v2.version)
    registry.promote(v2.version)  # idempotent
    assert registry.champion().version == v2.version
    assert registry.rollback().version == v1.version
    assert registry.rollback().version == v1.version  # idempotent
    assert [v.version for v in registry.versions()] == [v1.version, v2.version]  # nothing deleted
    with pytest.raises(RegistryError, match="has no version 99"):
        registry.promote(99)


def test_rollback_without_history_is_a_clear_error(registry, tmp_path):
    with pytest.raises(RegistryError, match="not registered yet"):
        registry.rollback()
    new_version(registry, tmp_path, champion=True)
    with pytest.raises(RegistryError, match="has had only one champion"):
        registry.rollback()


@pytest.mark.faults
def test_failed_registration_leaves_no_version(registry, tmp_path, monkeypatch):
    new_version(registry, tmp_path, champion=True)

    def broken(*args, **kwargs):
        raise mlflow.exceptions.MlflowException("database is locked")

    monkeypatch.setattr(registry.client, "set_registered_model_alias", broken)
    with pytest.raises(mlflow.exceptions.MlflowException):
        new_version(registry, tmp_path, champion=True)
    monkeypatch.undo()
    assert [v.version for v in registry.versions()] == ["1"]
    assert registry.champion().version == "1"


def test_an_onnx_export_is_logged_with_its_version(registry, tmp_path):
    without = new_version(registry, tmp_path, champion=True)
    with pytest.raises(NoOnnxExportError, match="v1 has no ONNX export"):
        registry.download_onnx(without)
    export = tmp_path / "export"
    export.mkdir()
    (export / "model.onnx").write_bytes(b"graph")
    (export / "export.json").write_text("{}")
    run_id = registry.log_run(
        run_name="r",
        params={},
        metrics={},
        tags={},
        artifacts={},
        student_files=student_files(tmp_path),
    )
    registry.log_onnx_export(run_id, export)
    version = registry.register(run_id, {}, make_champion=True)
    folder = registry.download_onnx(version, tmp_path / "dl")
    assert (folder / "model.onnx").read_bytes() == b"graph" and (folder / "export.json").is_file()


@pytest.mark.faults
def test_an_unreachable_registry_is_not_an_empty_one(tmp_path):
    """A closed loopback port: every read says "unreachable" (after MLflow's bounded retries); none
    reads as "no champion" or "no versions", which would skip the no-regression rule."""
    import socket

    from shopdistill.components.registry import RegistryUnavailableError

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    reg = Registry(RegistryConfig(tracking_uri=f"http://127.0.0.1:{port}"), tmp_path)
    for read in (reg.champion, reg.versions, lambda: reg.version(1)):
        with pytest.raises(RegistryUnavailableError, match="registry unreachable"):
            read()


def test_a_version_is_complete_only_after_its_files_are_checked(registry, tmp_path):
    from shopdistill.components.artifacts import sha256_file
    from shopdistill.components.registry import COMPLETE

    files = student_files(tmp_path)
    digest = sha256_file(files["best.pt"])
    run_id = registry.log_run(run_name="r", params={}, metrics={}, tags={}, artifacts={}, student_files=files)
    good = registry.register(run_id, {"student_digest": digest, "gate_passed": "true"}, make_champion=True)
    assert good.tags[COMPLETE] == "true" and good.tags["gate_passed"] == "true"
    # a best.pt other than the one evaluated: refused, deleted, the champion untouched
    with pytest.raises(RegistryError, match="does not match student_digest"):
        registry.register(run_id, {"student_digest": "0" * 64, "gate_passed": "true"}, make_champion=True)
    # student files missing from the artifact store (a store deleted under the run): refused
    partial = registry.log_run(
        run_name="r",
        params={},
        metrics={},
        tags={},
        artifacts={},
        student_files={"best.pt": files["best.pt"]},
    )
    with pytest.raises(RegistryError, match="item_map.parquet, items.parquet missing"):
        registry.register(partial, {"student_digest": digest, "gate_passed": "true"}, make_champion=True)
    assert [v.version for v in registry.versions()] == [good.version]
    assert registry.champion().version == good.version
    # a version left without COMPLETE (a killed registration) is never reused as an earlier one
    assert registry.find_version({"student_digest": digest}).version == good.version
    registry.client.delete_model_version_tag(registry.name, good.version, COMPLETE)
    assert registry.find_version({"student_digest": digest}) is None


@pytest.mark.faults
def test_processes_opening_a_fresh_store_at_once_all_succeed(tmp_path):
    """MLflow creates a new SQLite store's schema on first use; four processes doing it at the same
    moment fail ("table ... already exists", "duplicate column") unless the first use is locked."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from shopdistill.components.config import RegistryConfig\n"
        "from shopdistill.components.registry import Registry\n"
        "print(len(Registry(RegistryConfig(), sys.argv[1]).versions()))\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(4)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err.decode()[-1500:] for _, err in results]
    assert [out.decode().strip() for out, _ in results] == ["0"] * 4
