import json
from pathlib import Path

import pytest

from shopdistill.flows.cli import main

pytestmark = pytest.mark.slow

TINY = ["--set", "data.source.n_users=300", "--set", "data.source.n_items=100"]


def test_data_prepare_prints_counts_digest_and_docs(out_root: Path, capsys):
    assert main(["data", "prepare", "--profile", "demo", *TINY]) == 0
    out = capsys.readouterr().out
    assert "digest       sha256:" in out
    assert "users        300" in out
    assert "validation   passed:" in out
    docs = next(line for line in out.splitlines() if line.startswith("data docs")).split()[-1]
    assert Path(docs).is_file() and Path(docs).is_relative_to(out_root / "runs")
    run_dir = Path(next(line for line in out.splitlines() if line.startswith("run folder")).split()[-1])
    assert (run_dir / "validation.json").is_file() and (run_dir / "validation.md").is_file()
    assert len(list((out_root / "datasets").glob("[!.]*"))) == 1  # hidden: the folder's lock file


def test_prepare_defaults_to_demo_and_reuses_the_dataset(out_root: Path, capsys):
    assert main(["data", "prepare", *TINY]) == 0
    assert main(["data", "prepare", *TINY]) == 0
    assert "(reused: same content digest)" in capsys.readouterr().out


@pytest.mark.faults
def test_bad_config_exits_2_with_the_key(out_root: Path, capsys):
    assert main(["run", "--set", "student.model.widht=3"]) == 2
    err = capsys.readouterr().err
    assert "student.model.widht: unknown key" in err


@pytest.mark.parametrize(
    "setting,message",
    [
        ("teacher.model.n_heads=3", "d_model (64) must be divisible by n_heads (3)"),
        ("registry.model_name=' '", "registry.model_name: String should match pattern"),
        ("data.source.start=2025-13-40", "data.source.start: Input should be a valid date"),
    ],
)
def test_settings_that_cannot_work_exit_2_before_anything_runs(out_root: Path, capsys, setting, message):
    assert main(["run", "--set", setting]) == 2
    assert message in capsys.readouterr().err
    assert not out_root.exists()  # no dataset, no teacher, no registry


@pytest.mark.usefixtures("prefect_harness")
def test_a_top_k_larger_than_the_catalogue_exits_2_before_training(out_root: Path, capsys):
    assert main(["run", *TINY, "--set", "distill.top_k=5000"]) == 2
    assert "distill.top_k (5000) exceeds the catalogue of" in capsys.readouterr().err
    assert not (out_root / "teachers").exists() and not (out_root / "mlflow.db").exists()


@pytest.mark.parametrize(
    "k,message",
    [("0", "between 1 and 1000, not 0"), ("-5", "between 1 and 1000"), ("ten", "a whole number, not 'ten'")],
)
@pytest.mark.faults
def test_recommend_refuses_a_k_out_of_bounds(capsys, k, message):
    with pytest.raises(SystemExit) as exited:
        main(["recommend", "--user", "u1", "--k", k])
    assert exited.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.faults
def test_bad_data_exits_1_and_writes_nothing(out_root: Path, tmp_path: Path, capsys):
    code = main(
        ["data", "prepare", "--profile", "beauty", "--set", f"data.source.path={tmp_path / 'missing'}"]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "Amazon benchmark directory not found" in err and "no dataset was written." in err
    assert not (out_root / "datasets").exists()


@pytest.mark.faults
def test_validation_failure_exits_1_and_keeps_the_report(out_root: Path, capsys):
    code = main(["data", "prepare", *TINY, "--set", "data.validation.min_users=1000"])
    assert code == 1
    err = capsys.readouterr().err
    assert "prepared: at least 1,000 users remain after preprocessing: observed 300" in err
    assert not (out_root / "datasets").exists()
    [run_dir] = (out_root / "runs").iterdir()
    assert (run_dir / "validation.json").is_file()
    assert (run_dir / "data_docs" / "index.html").is_file()


def test_bench_quality_prints_the_report(out_root: Path, capsys):
    args = ["bench", "quality", "--profile", "demo", "--requests", "10"]
    args += [
        "--set",
        "data.source.n_users=200",
        "--set",
        "data.source.n_items=60",
        "--set",
        "distill.top_k=10",
    ]
    args += [
        "--set",
        "teacher.train.epochs=1",
        "--set",
        "student.train.epochs=1",
        "--set",
        "teacher.model.d_model=16",
    ]
    code = main(args)
    out = capsys.readouterr().out
    assert code in (0, 3)  # 3: a quality target was missed, which one epoch on tiny data may well do
    assert "| student-gru-kd |" in out and "report: " in out
    report = Path(out.strip().splitlines()[-1].split()[1])
    assert report.is_file() and report.is_relative_to(out_root / "runs")


def test_registry_commands_without_a_champion_explain_themselves(out_root: Path, capsys, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert main(["recommend", "--user", "u1"]) == 4
    assert (
        "no champion registered for 'shopdistill-student' yet: run `shopdistill run` first"
        in capsys.readouterr().err
    )
    assert main(["rollback"]) == 4
    assert (
        "nothing to roll back: model 'shopdistill-student' is not registered yet" in capsys.readouterr().err
    )
    assert main(["promote", "3"]) == 4
    assert "has no version 3" in capsys.readouterr().err


TINY_BENCH = [
    "--set",
    "data.source.n_users=200",
    "--set",
    "data.source.n_items=60",
    "--set",
    "distill.top_k=10",
    "--set",
    "teacher.train.epochs=1",
    "--set",
    "student.train.epochs=1",
    "--set",
    "teacher.model.d_model=16",
]


def test_bench_study_with_recipe_prints_the_table(out_root: Path, capsys):
    code = main(
        ["bench", "study", "--profile", "demo", "--seeds", "0", "--recipe", "--requests", "10", *TINY_BENCH]
    )
    out = capsys.readouterr().out
    assert code in (0, 3)  # 3: a target was missed, as one epoch on a tiny shop will
    assert out.startswith("recipe: ") and "teacher.model.d_model" not in out.splitlines()[0]  # --set wins
    assert "| sasrec-d" in out and "| gru-d" in out and "study.md (+ JSON and plots" in out
    [run] = (out_root / "runs").glob("*-bench-study-demo-*")
    assert (run / "size_curve_params.png").is_file()


def test_bench_study_runs_the_groups_named(out_root: Path, capsys):
    assert main(["bench", "study", "--profile", "demo", "--groups", "sizes"]) == 2
    assert "unknown study group(s) ['sizes']; choose from headline" in capsys.readouterr().err
    assert not (out_root / "runs").exists() or not list((out_root / "runs").glob("*-bench-study-*"))
    code = main(
        [
            "bench",
            "study",
            "--profile",
            "demo",
            "--seeds",
            "0",
            "--groups",
            "size",
            "--requests",
            "10",
            *TINY_BENCH,
            "--set",
            "distill.item_init=random",  # the size curve's d=64 student is wider than this tiny teacher
        ]
    )
    assert code in (0, 3)
    [run] = (out_root / "runs").glob("*-bench-study-demo-*")
    result = json.loads((run / "study.json").read_text())
    assert result["grid"] == "size"
    assert sorted(result["rows"]) == sorted(f"sasrec-d{d}-{k}" for d in (16, 32, 64) for k in ("kd", "nokd"))


def test_bench_speed_selected_sections(out_root: Path, capsys):
    code = main(
        [
            "bench",
            "speed",
            "--profile",
            "demo",
            "--only",
            "distill_cost,cache_io",
            "--repeats",
            "1",
            *TINY_BENCH,
        ]
    )
    out = capsys.readouterr().out
    assert code in (0, 3)
    assert "## Distillation cost" in out and "## Soft-label cache I/O" in out and "## Serving" not in out


def test_bench_speed_rejects_an_unknown_section(out_root: Path, capsys):
    assert main(["bench", "speed", "--profile", "demo", "--only", "serving,nope", *TINY_BENCH]) == 2
    assert "unknown benchmark section(s) nope; choose from serving, distill_cost" in capsys.readouterr().err
    assert not (out_root / "runs").exists()
