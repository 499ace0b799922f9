"""End-to-end runs of the nightly flow on tiny synthetic data, under one temporary Prefect API."""

import datetime
import json
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import torch
from prefect import flow

import shopdistill.components.export as export
import shopdistill.components.registration as registration
import shopdistill.tasks.data as data_tasks
import shopdistill.tasks.evaluation as evaluation_tasks
import shopdistill.tasks.registration as registration_tasks
import shopdistill.tasks.training as training_tasks
from shopdistill.components.config import load_config
from shopdistill.components.data.schema import DataSourceError
from shopdistill.components.registry import CHALLENGER, CHAMPION, Registry
from shopdistill.components.training import loop
from shopdistill.flows.cli import main as cli
from shopdistill.flows.nightly import GateFailed, nightly_distillation
from tests.nights import TINY_SHOP, nightly_config, simulate_nights

TINY = TINY_SHOP  # the tiny demo shop, gate relaxed: these tests are about the mechanics

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


def tiny_config(root: Path, *extra: str):
    return load_config(profile="demo", overrides=[*TINY, f"runtime.output_dir={root}", *extra])


@pytest.fixture
def counted(monkeypatch):
    """Count the expensive component calls made inside the tasks."""
    calls = {"fit": 0, "soft_labels": 0, "student": 0, "epochs": 0}

    def counting(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)

        return wrapper

    # "fit": teacher trainings (the task trains through components.training.teacher)
    monkeypatch.setattr(
        training_tasks.teacher_stage,
        "train_teacher",
        counting("fit", training_tasks.teacher_stage.train_teacher),
    )
    monkeypatch.setattr(
        training_tasks.soft_label_stage,
        "cache_soft_labels",
        counting("soft_labels", training_tasks.soft_label_stage.cache_soft_labels),
    )
    monkeypatch.setattr(
        training_tasks.student_stage,
        "distill_student",
        counting("student", training_tasks.student_stage.distill_student),
    )
    real_epoch = loop._train_epoch

    def epoch(*args, **kwargs):
        calls["epochs"] += 1
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(loop, "_train_epoch", epoch)
    return calls


@pytest.fixture
def published(monkeypatch):
    """The markdown of every artifact the tasks publish, by key (the last one of each key)."""
    seen: dict[str, str] = {}

    def record(real):
        def create(*args, **kwargs):
            seen[kwargs["key"]] = kwargs.get("markdown", kwargs.get("link", ""))
            return real(*args, **kwargs)

        return create

    for module in (training_tasks, evaluation_tasks, registration_tasks):
        monkeypatch.setattr(module, "create_markdown_artifact", record(module.create_markdown_artifact))
    monkeypatch.setattr(data_tasks, "create_link_artifact", record(data_tasks.create_link_artifact))
    return seen


def run_logs(state) -> list[str]:
    """The log messages the Prefect API holds for a flow run."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    async def read():
        await APILogHandler.aflush()
        async with get_client() as client:
            ids = LogFilterFlowRunId(any_=[state.state_details.flow_run_id])
            return await client.read_logs(LogFilter(flow_run_id=ids), limit=200)

    return [log.message for log in asyncio.run(read())]


def run(config):
    return nightly_distillation(config=config, latency_requests=20, return_state=True)


def recommended_items(out: str) -> list[str]:
    """The item column of the recommendations table that ``recommend`` prints."""
    table = out.split("recommended for you")[1].splitlines()[2:]
    return [line.split()[1] for line in table if line.strip()]


def test_first_run_registers_a_champion_and_a_second_run_reuses_the_expensive_stages(
    tmp_path, counted, published, capsys, monkeypatch
):
    config = tiny_config(tmp_path)
    state = run(config)
    assert state.is_completed(), state.message
    summary = state.result()
    first_epochs = counted["epochs"]
    logs = run_logs(state)
    assert any("[teacher] epoch   1/2" in m for m in logs)  # progress in the run's Prefect logs
    assert any(summary["run_dir"] in m and "run folder" in m for m in logs)
    assert any(summary["data_docs"] in m for m in logs)
    assert counted == {"fit": 1, "soft_labels": 1, "student": 2, "epochs": first_epochs} and first_epochs > 0
    assert {"teacher-metrics", "soft-labels", "student-kd-training", "model-comparison"} <= set(published)
    # the run page: a compact table, the charts inside the markdown, a link to the Data Docs
    header = published["model-comparison"].splitlines()[0]
    assert header.count("|") == 8 and "x teacher" in header
    assert published["charts"].count("](data:image/png;base64,") == 2
    assert published["data-docs"] == Path(summary["data_docs"]).as_uri()
    run_dir = Path(summary["run_dir"])
    for name in ("report.json", "report.md", "gate.json", "learning_curves.png", "comparison.png"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "data_docs" / "index.html").is_file()
    registry = Registry(config.registry, tmp_path)
    champion = registry.champion()
    assert champion.version == "1" and set(champion.aliases) == {CHALLENGER, CHAMPION}
    for tag in (
        "dataset_digest",
        "teacher_digest",
        "soft_labels_digest",
        "config_hash",
        "code_version",
        "prefect_flow_run_id",
    ):
        assert champion.tags[tag], tag
    folder = registry.download_student(champion, tmp_path / "dl")
    assert {"best.pt", "items.parquet", "item_map.parquet"} <= {p.name for p in folder.iterdir()}
    onnx = registry.download_onnx(champion, tmp_path / "dl-onnx")  # the ONNX export rides with the version
    assert {p.name for p in onnx.iterdir()} == {
        "model.onnx",
        "model.int8.onnx",
        "items.parquet",
        "export.json",
    }
    assert champion.tags["onnx_export"] != "none"
    assert "onnx_int8.delta_NDCG_at_10" in registry.client.get_run(champion.run_id).data.metrics
    # the champion is a real MLflow model: loaded by alias, a history of raw ids of any length in
    with monkeypatch.context() as m:
        m.setenv("MLFLOW_TRACKING_URI", registry.uri)
        served = mlflow.pyfunc.load_model(f"models:/{config.registry.model_name}@champion")
    history = Registry(config.registry, tmp_path).download_student(champion, tmp_path / "ids")
    raw = pd.read_parquet(history / "item_map.parquet")["raw_item_id"].astype(str).tolist()
    out = served.predict(pd.DataFrame({"history": [raw[:2], raw[:7], ["unknown"]]}), params={"k": 3})
    assert [len(items) for items in out["items"]] == [3, 3, 3]
    assert not set(out["items"][0]) & set(raw[:2])  # what the shopper saw is not recommended
    curve = registry.client.get_metric_history(champion.run_id, "student-kd.valid_NDCG_at_10")
    assert [m.step for m in curve] == [1, 2]  # a learning curve: one point per epoch (2 epochs here)

    # the shopping-guide view from the champion: torch, and the same products from onnxruntime
    where = ["--set", f"runtime.output_dir={tmp_path}"]
    capsys.readouterr()
    assert cli(["recommend", "--user", "u0000003", "--k", "3", *where]) == 0
    by_torch = recommended_items(capsys.readouterr().out)
    assert cli(["recommend", "--user", "u0000003", "--k", "3", "--engine", "onnx", *where]) == 0
    out = capsys.readouterr().out
    assert "(champion, onnxruntime fp32)" in out and recommended_items(out) == by_torch and len(by_torch) == 3
    assert cli(["recommend", "--user", "u0000003", "--k", "3", "--engine", "onnx-int8", *where]) == 0
    assert len(recommended_items(capsys.readouterr().out)) == 3
    with monkeypatch.context() as m:  # without the [onnx] extra: a usage error that says what to install
        m.setattr(export, "_installed", lambda name: False)
        assert cli(["recommend", "--user", "u0000003", "--engine", "onnx", *where]) == 2
        assert "pip install 'shopdistill[onnx]'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli(["recommend"])  # --user is required
    assert cli(["recommend", "--user", "nobody", "--set", f"runtime.output_dir={tmp_path}"]) == 4

    published.clear()
    state = run(config)
    assert state.is_completed(), state.message
    # every stage ran again, found its verified stored output and trained nothing
    assert counted == {"fit": 2, "soft_labels": 2, "student": 4, "epochs": counted["epochs"]}
    assert counted["epochs"] == first_epochs
    # and every artifact is there again, saying "reused"
    assert {"teacher-metrics", "soft-labels", "student-kd-training", "student-nokd-training"} <= set(
        published
    )
    for key in ("teacher-metrics", "soft-labels", "student-kd-training", "student-nokd-training"):
        assert "reused" in published[key], key
    # the same student on the same data and config: nothing new registered, the champion stands
    assert [v.version for v in registry.versions()] == ["1"] and registry.champion().version == "1"
    assert state.result()["model"]["version"] == "1" and "Unchanged: " in published["registration"]
    assert state.result()["report"] != summary["report"]


@pytest.mark.faults
def test_data_that_fails_validation_stops_before_training_and_registers_nothing(tmp_path, counted):
    config = tiny_config(tmp_path, "data.validation.min_users=100000")
    state = run(config)
    assert state.is_failed()
    assert "at least 100,000 users remain after preprocessing" in state.message
    assert counted == {"fit": 0, "soft_labels": 0, "student": 0, "epochs": 0}
    assert Registry(config.registry, tmp_path).versions() == []


@pytest.mark.faults
def test_a_candidate_that_fails_the_gate_is_only_a_challenger(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(registration, "onnx_available", lambda: False)  # as without the [onnx] extra
    config = tiny_config(tmp_path)
    assert run(config).is_completed()
    registry = Registry(config.registry, tmp_path)
    assert registry.champion().tags["onnx_export"] == "none"  # registered all the same, without an export
    capsys.readouterr()
    assert (
        cli(
            ["recommend", "--user", "u0000003", "--engine", "onnx", "--set", f"runtime.output_dir={tmp_path}"]
        )
        == 2
    )
    assert "has no ONNX export" in capsys.readouterr().err
    strict = tiny_config(tmp_path, "gate.min_ratio_to_teacher=10")
    state = run(strict)
    assert state.is_failed() and state.name == "GateFailed"
    assert "quality vs teacher" in state.message
    # the failed state's data resolves into an exception that carries the run's summary (a dict
    # there made the engine raise "dict cannot be resolved into an exception")
    with pytest.raises(GateFailed, match="candidate failed the gate") as failed:
        state.result()
    assert failed.value.summary["gate"]["passed"] is False and failed.value.summary["model"]["version"] == "2"
    assert registry.champion().version == "1"
    assert registry.alias(CHALLENGER).version == "2"
    assert registry.version(2).aliases == [CHALLENGER]
    # a person can still promote the challenger, and roll back; both idempotent
    where = ["--set", f"runtime.output_dir={tmp_path}"]
    assert cli(["promote", "2", *where]) == 0 and cli(["promote", "2", *where]) == 0
    assert registry.champion().version == "2"
    assert cli(["rollback", *where]) == 0 and cli(["rollback", *where]) == 0
    assert registry.champion().version == "1"


@pytest.mark.faults
def test_a_transient_error_is_retried_and_a_deterministic_one_is_not(tmp_path, monkeypatch):
    config = tiny_config(tmp_path)
    real = data_tasks.dataset_stage.prepare_dataset
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise OSError("I/O error: the disk hiccuped")
        return real(*args, **kwargs)

    monkeypatch.setattr(data_tasks.dataset_stage, "prepare_dataset", flaky)

    @flow
    def only_prepare():
        return data_tasks.prepare_dataset(config.data, str(tmp_path), str(tmp_path / "run"))

    handle = only_prepare()
    assert len(calls) == 2 and Path(handle.uri).is_dir()

    calls.clear()

    def broken(*args, **kwargs):
        calls.append(1)
        raise DataSourceError("event log file not found: /nowhere.csv")

    monkeypatch.setattr(data_tasks.dataset_stage, "prepare_dataset", broken)
    with pytest.raises(DataSourceError, match="event log file not found"):
        only_prepare()
    assert len(calls) == 1


def test_the_benchmarks_reuse_the_nightly_runs_stored_models(tmp_path):
    """One store for both: after a nightly run, the quality benchmark on the same config trains nothing."""
    from shopdistill.benchmarks.quality import run_quality_benchmark

    config = tiny_config(tmp_path)
    assert run(config).is_completed()
    lines = []
    result = run_quality_benchmark(config, tmp_path / "bench", requests=5, log=lines.append)
    trained = [line for line in lines if " epoch " in line and "resuming" not in line]
    assert trained == [], trained  # teacher and both students came from the flow's stores
    assert any("resuming after epoch" in line for line in lines)
    assert "reused" in next(line for line in lines if line.startswith("soft labels"))
    assert set(result["rows"]) == {"teacher", "student-gru-nokd", "student-gru-kd"}


@pytest.mark.faults
def test_two_data_roots_never_share_outputs_and_a_deleted_root_breaks_nothing(tmp_path):
    """Same config, two data folders (two clones side by side): each trains into its own."""
    import shutil

    first, second = tmp_path / "a", tmp_path / "b"
    assert run(tiny_config(first)).is_completed()
    state = run(tiny_config(second))
    assert state.is_completed(), state.message
    report = json.loads(Path(state.result()["report"]).read_text())
    assert report["dataset"]
    for kind in ("teachers", "soft_labels", "students"):
        assert list((second / kind).iterdir()), kind  # trained here, not handed over from the first root
    shutil.rmtree(first)
    again = run(tiny_config(second))
    assert again.is_completed(), again.message


@pytest.mark.faults
def test_damaged_stored_models_are_rebuilt_or_refused_never_used(tmp_path):
    """A truncated last.pt restarts that training; a changed best.pt is rewritten from last.pt; a
    corrupt soft-label file is rebuilt; each next run completes."""
    config = tiny_config(tmp_path)
    assert run(config).is_completed()
    teacher_dir = next((tmp_path / "teachers").glob("[!.]*"))
    last = teacher_dir / "last.pt"
    last.write_bytes(last.read_bytes()[:100])  # truncated
    student_best = next((tmp_path / "students").rglob("best.pt"))
    blob = bytearray(student_best.read_bytes())
    blob[-200:-184] = bytes(16)  # 16 bytes zeroed inside the weights
    student_best.write_bytes(bytes(blob))
    parquet = next((tmp_path / "soft_labels").rglob("soft_labels.parquet"))
    parquet.write_bytes(parquet.read_bytes()[:-10])
    state = run(config)
    assert state.is_completed(), state.message
    assert torch.load(last, weights_only=True)["epoch"] >= 1  # trained again from a fresh start
    summary = state.result()
    report = json.loads(Path(summary["report"]).read_text())
    assert report["rows"]["student-kd"]["NDCG@10"] > 0
    registry = Registry(config.registry, tmp_path)
    version = registry.version(summary["model"]["version"])
    folder = registry.download_student(version, tmp_path / "dl")
    from shopdistill.components.artifacts import sha256_file

    assert sha256_file(folder / "best.pt") == version.tags["student_digest"]  # the tag names the file


@pytest.mark.faults
def test_an_unreachable_registry_fails_the_run_instead_of_skipping_the_champion_check(tmp_path, capsys):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tiny_config(tmp_path, f"registry.tracking_uri=http://127.0.0.1:{port}")
    state = run(config)
    assert state.is_failed() and "registry unreachable" in state.message
    capsys.readouterr()
    where = [
        "--set",
        f"runtime.output_dir={tmp_path}",
        "--set",
        f"registry.tracking_uri=http://127.0.0.1:{port}",
    ]
    for command in (["recommend", "--user", "u0000003"], ["promote", "1"], ["rollback"]):
        assert cli([*command, *where]) == 4
        assert "registry unreachable" in capsys.readouterr().err


@pytest.mark.faults
def test_a_champion_from_another_catalogue_is_scored_through_its_item_map(tmp_path):
    """Item ids are rebuilt at every prepare; the no-regression rule still compares the same products."""
    assert run(tiny_config(tmp_path)).is_completed()
    state = run(tiny_config(tmp_path, "data.source.n_items=90"))  # a bigger catalogue, ids rebuilt
    summary = state.result() if state.is_completed() else state.result(raise_on_failure=False).summary
    report = json.loads(Path(summary["report"]).read_text())
    assert "champion" in report["rows"] and report["rows"]["champion"]["NDCG@10"] > 0
    assert report["champion"]["version"] == "1" and "of 90 products known to it" in report["champion"]["note"]
    assert not any("first model" in r for r in summary["gate"]["reasons"])


def test_mlflow_models_serve_answers_for_the_champion_on_loopback(tmp_path):
    """MLflow's own server, on the registered champion (pyfunc over the ONNX export), bounded in time."""
    import os
    import socket
    import subprocess
    import time
    import urllib.request

    config = tiny_config(tmp_path)
    assert run(config).is_completed()
    registry = Registry(config.registry, tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bin_dir = str(Path(sys.executable).parent)  # mlflow starts uvicorn from PATH
    env = {**os.environ, "MLFLOW_TRACKING_URI": registry.uri, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    uri = f"models:/{config.registry.model_name}@champion"
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    server = subprocess.Popen(
        [
            str(mlflow_cli),
            "models",
            "serve",
            "-m",
            uri,
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                assert server.poll() is None, server.stderr.read().decode()[-2000:]
                assert time.monotonic() < deadline, "mlflow models serve did not answer within 120 s"
                time.sleep(1)
        body = {
            "dataframe_split": {"columns": ["history"], "data": [[["unknown", "also unknown"]]]},
            "params": {"k": 4},
        }
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as r:
            answer = json.loads(r.read())
        [row] = answer["predictions"]
        assert len(row["items"]) == 4 and len(row["scores"]) == 4
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()


def test_a_night_of_a_partitioned_log_runs_end_to_end_and_keeps_ids_for_the_next(tmp_path, monkeypatch):
    """The simulated shop as day partitions: two nights in a row (``as_of``), the second continuing
    the first's id maps, each scored on its own next day."""
    from shopdistill.components.data.dataset import load_dataset

    monkeypatch.chdir(tmp_path)
    simulate_nights(tmp_path / "data" / "simulated")
    config = nightly_config(tmp_path)
    first = nightly_distillation(
        config=config, latency_requests=20, as_of=datetime.date(2025, 1, 19), return_state=True
    )
    second = nightly_distillation(
        config=config, latency_requests=20, as_of=datetime.date(2025, 1, 20), return_state=True
    )
    assert first.is_completed() and second.is_completed(), (first.message, second.message)
    a, b = (load_dataset(s.result()["dataset"]) for s in (first, second))
    assert a.manifest["night"]["as_of"] == "2025-01-19" and b.manifest["night"]["as_of"] == "2025-01-20"
    assert b.manifest["night"]["id_maps_from"] == a.digest
    assert b.item_map.head(len(a.item_map)).reset_index(drop=True).equals(a.item_map.reset_index(drop=True))
    test_days = pd.to_datetime(
        b.interactions.loc[b.interactions["split"] == "test", "ts"], unit="s", utc=True
    )
    assert set(test_days.dt.date) == {datetime.date(2025, 1, 20)}
    # the second night continued from the first: its teacher from last night's, its KD student from
    # the champion (v1, registered by the first night); both recorded in the version's lineage
    registry = Registry(config.registry, tmp_path)
    v1, v2 = registry.version(1), registry.version(2)
    assert v1.tags["teacher_started_from"] == "cold" and v1.tags["student_started_from"] == "cold"
    assert v2.tags["teacher_started_from"] == v1.tags["teacher_digest"]
    assert v2.tags["student_started_from"] == v1.tags["student_digest"]
    assert v2.tags["student_generation"] == "1" and v2.tags["night"] == "2025-01-20"
    # the drift since the previous night: in the report, as MLflow metrics, and the state is plain
    assert json.loads(Path(first.result()["report"]).read_text())["drift"] == {}
    drift = json.loads(Path(second.result()["report"]).read_text())["drift"]
    assert 0 <= drift["popularity_shift"] <= 1 and drift["new_items"] >= 0 and drift["champion_ratio"] > 0
    metrics = registry.client.get_run(v2.run_id).data.metrics
    assert metrics["drift.popularity_shift"] == pytest.approx(drift["popularity_shift"])
    assert second.name == ("ChampionDecayed" if drift["champion_decayed"] else "Completed")


def test_a_decayed_champion_is_flagged_in_the_run_state(tmp_path, monkeypatch):
    from shopdistill.components import drift

    monkeypatch.chdir(tmp_path)
    simulate_nights(tmp_path / "data" / "simulated")
    config = nightly_config(tmp_path)
    assert nightly_distillation(
        config=config, latency_requests=20, as_of=datetime.date(2025, 1, 19), return_state=True
    ).is_completed()
    real = drift.champion_drift
    # the champion scoring half of what it scored on the night it was registered
    monkeypatch.setattr(drift, "champion_drift", lambda tonight, at, decay: real(at * 0.5, at, decay))
    state = nightly_distillation(
        config=config, latency_requests=20, as_of=datetime.date(2025, 1, 20), return_state=True
    )
    assert state.is_completed() and state.name == "ChampionDecayed", state.message
    assert "The champion had decayed" in state.message and state.result()["champion_decayed"] is True


def test_a_scheduled_run_reads_through_the_day_before_its_start(monkeypatch):
    """Prefect's scheduler marks the runs it creates ``auto_scheduled``; runs started by hand are not."""
    import types

    import shopdistill.flows.nightly as nightly

    start = datetime.datetime(2026, 12, 2, 2, 0, tzinfo=datetime.timezone(datetime.timedelta(hours=1)))

    class Client:
        def __init__(self, auto):
            self.auto = auto

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read_flow_run(self, run_id):
            return types.SimpleNamespace(auto_scheduled=self.auto, expected_start_time=start)

    monkeypatch.setattr(nightly.this_run, "get_id", lambda: "some-run")
    monkeypatch.setattr(nightly, "get_client", lambda sync_client: Client(True))
    assert nightly.scheduled_night() == datetime.date(2026, 12, 1)
    monkeypatch.setattr(nightly, "get_client", lambda sync_client: Client(False))
    assert nightly.scheduled_night() is None
    monkeypatch.setattr(nightly.this_run, "get_id", lambda: None)
    assert nightly.scheduled_night() is None
