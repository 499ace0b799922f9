from pathlib import Path

import pydantic
import pytest

from shopdistill.components.artifacts import sha256_json
from shopdistill.components.config import (
    AmazonSource,
    ConfigError,
    EventLogSource,
    PipelineConfig,
    SyntheticSource,
    available_profiles,
    config_hash,
    load_config,
)


def test_profiles_load_and_are_typed():
    assert {"demo", "beauty", "diginetica"} <= set(available_profiles())
    demo = load_config(profile="demo")
    assert isinstance(demo.data.source, SyntheticSource)
    assert demo.data.preprocess.split == "leave_one_out"
    beauty = load_config(profile="beauty")
    assert isinstance(beauty.data.source, AmazonSource)
    # relative paths in a profile resolve against the profile's folder: project/../shared/data
    assert beauty.data.source.path == (Path.cwd().parent / "shared" / "data" / "amazon-beauty")
    dig = load_config(profile="diginetica")
    assert isinstance(dig.data.source, EventLogSource)
    assert dig.data.source.catalog.path.name == "product-categories.csv"


def test_defaults_are_the_documented_sizes():
    cfg = PipelineConfig()
    assert (cfg.teacher.model.d_model, cfg.teacher.model.n_layers) == (128, 2)
    assert (cfg.student.model.d_model, cfg.student.model.n_layers) == (16, 1)
    assert cfg.runtime.threads == 1


def test_config_is_frozen():
    cfg = load_config(profile="demo")
    with pytest.raises(pydantic.ValidationError):
        cfg.data.name = "other"


def test_unknown_key_names_key_and_file(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("data:\n  source:\n    kind: synthetic\n    n_userz: 10\nteacher:\n  modle: {}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert str(path) in msg
    assert "data.source.n_userz: unknown key" in msg
    assert "teacher.modle: unknown key" in msg


def test_bad_value_names_key(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("student:\n  model:\n    d_model: -3\n")
    with pytest.raises(
        ConfigError, match=r"student\.model\.d_model: Input should be greater than or equal to 2"
    ):
        load_config(path)


def test_missing_file_and_bad_yaml(tmp_path: Path):
    with pytest.raises(ConfigError, match="configuration file not found: .*nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="is not valid YAML"):
        load_config(bad)
    top = tmp_path / "list.yaml"
    top.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must hold a mapping at the top level"):
        load_config(top)


def test_unknown_profile_lists_available():
    with pytest.raises(ConfigError, match=r"unknown profile 'nope'.*available: .*demo"):
        load_config(profile="nope")


def test_overrides_apply_with_types_and_are_named_in_errors():
    cfg = load_config(profile="demo", overrides=["student.model.d_model=8", "data.source.n_users=300"])
    assert cfg.student.model.d_model == 8
    assert cfg.data.source.n_users == 300
    with pytest.raises(
        ConfigError, match=r"with overrides student\.model\.widht=8[\s\S]*student\.model\.widht: unknown key"
    ):
        load_config(profile="demo", overrides=["student.model.widht=8"])
    with pytest.raises(ConfigError, match="must look like key=value"):
        load_config(profile="demo", overrides=["student.model.d_model"])


def test_override_paths_resolve_against_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = load_config(profile="beauty", overrides=["data.source.path=mydata"])
    assert cfg.data.source.path == tmp_path / "mydata"


def test_source_kind_is_checked():
    with pytest.raises(ConfigError, match="data.source"):
        load_config(overrides=["data.source.kind=ftp"])


def test_probabilities_checked():
    with pytest.raises(ConfigError, match="p_complement \\+ p_same_category must be <= 1"):
        load_config(overrides=["data.source.p_complement=0.8", "data.source.p_same_category=0.5"])


def test_config_hash_is_stable_and_sensitive():
    a = load_config(profile="demo")
    b = load_config(profile="demo")
    c = load_config(profile="demo", overrides=["distill.temperature=4"])
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash(c)


def test_output_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SHOPDISTILL_DATA_DIR", str(tmp_path))
    assert PipelineConfig().runtime.root == tmp_path


def test_run_parameters_apply_on_top_of_the_profile():
    from shopdistill.components.config import RunParameters

    cfg = RunParameters(
        profile="demo", student_d_model=32, temperature=4.0, overrides=["gate.max_model_mb=2"]
    ).to_config()
    demo = load_config(profile="demo")
    assert cfg.student.model.d_model == 32 and cfg.distill.temperature == 4.0 and cfg.gate.max_model_mb == 2
    assert cfg.teacher == demo.teacher and cfg.data == demo.data
    assert RunParameters().to_config() == demo
    with pytest.raises(pydantic.ValidationError, match="demo"):
        RunParameters(profile="nope")


def test_the_form_offers_the_profiles_and_shows_their_values(tmp_path):
    """The UI form's schema: profile is a choice of the packaged profiles; each knob's description
    names every profile's value (read from the profiles, not written by hand)."""
    from shopdistill.components.config import RunParameters, available_profiles

    schema = RunParameters.model_json_schema()
    profile = schema["$defs"]["Profile"]
    assert profile["enum"] == available_profiles() and "beauty" in profile["enum"]
    epochs = schema["properties"]["teacher_epochs"]["description"]
    for name in available_profiles():
        assert f"{name} {load_config(profile=name).teacher.train.epochs}" in epochs
    file = tmp_path / "shop.yaml"
    file.write_text("extends: demo\nstudent:\n  model:\n    d_model: 24\n")
    assert RunParameters(config_file=str(file), teacher_epochs=3).to_config().student.model.d_model == 24


def test_candidates_change_only_their_keys_and_are_checked_when_loaded():
    config = load_config(
        profile="demo",
        overrides=[
            "candidates.students=[{name: wide, model: {d_model: 32}}, {name: rank, distill: {w_ranking: 2.0}}]"
        ],
    )
    (n1, s1, d1), (n2, s2, d2) = config.student_candidates()
    assert (n1, s1.model.d_model, s1.model.arch, d1.w_ranking) == (
        "student-kd-wide",
        32,
        "gru",
        config.distill.w_ranking,
    )
    assert (n2, s2, d2.w_ranking, d2.temperature) == (
        "student-kd-rank",
        config.student,
        2.0,
        config.distill.temperature,
    )
    nightly = load_config(profile="beauty-nightly")  # no candidates: the one student
    assert nightly.student_candidates() == [("student-kd", nightly.student, nightly.distill)]
    bad = {
        "candidates.students=[{name: a, model: {arch: sasrec, d_model: 33, n_heads: 2}}]": "divisible by n_heads",
        "candidates.students=[{name: a, distill: {w_ranking: -1}}]": "candidates.students\\[a\\]",
        "candidates.students=[{name: a}, {name: a}]": "candidate names must be unique",
        "candidates.students=[{name: Bad_Name}]": "candidates.students.0.name",
        "candidates.students=[{name: a, model: {widht: 8}}]": "widht",
    }
    for override, message in bad.items():
        with pytest.raises(ConfigError, match=message):
            load_config(profile="demo", overrides=[override])


def test_how_fanned_out_stages_run_and_empty_candidates_leave_the_hash_alone():
    demo = load_config(profile="demo")
    on_ray = load_config(
        profile="demo",
        overrides=[
            "runtime.executor=ray",
            "runtime.ray_cpus_per_task=2",
            "runtime.soft_label_shards=4",
            "runtime.ray_worker_restarts=5",
            "teacher.train.workers=2",  # DDP trains the same teacher within noise
        ],
    )
    assert config_hash(on_ray) == config_hash(demo)
    beauty = load_config(profile="beauty-nightly")  # no candidates: hashed without the section
    dumped = beauty.model_dump(mode="json")
    for key in ("executor", "ray_address", "ray_cpus_per_task", "ray_gpus_per_task", "ray_worker_restarts"):
        dumped["runtime"].pop(key)
    dumped["runtime"].pop("soft_label_shards")
    assert "workers" not in dumped["teacher"]["train"]  # left out of dumps at its default
    del dumped["candidates"]
    assert config_hash(beauty) == sha256_json(dumped)
    assert config_hash(demo) != config_hash(load_config(profile="demo", overrides=["candidates.students=[]"]))
    assert PipelineConfig.model_validate(on_ray.model_dump(mode="json")) == on_ray
    with pytest.raises(ConfigError, match="runtime.executor"):
        load_config(profile="demo", overrides=["runtime.executor=dask"])


def test_the_beauty_candidates_fit_the_d16_students_size_and_the_catalogue_bounds_full_rows():
    from shopdistill.components.candidates import fill_candidates
    from shopdistill.components.config import ConfigError
    from shopdistill.components.evaluation import model_size_bytes
    from shopdistill.components.models import build_model, count_parameters

    beauty = fill_candidates(load_config(profile="beauty"), 12101)  # Beauty's catalogue
    (n16, s16, d16), (npq, spq, dpq) = beauty.student_candidates()
    assert (s16, d16.w_ranking, dpq.w_ranking) == (beauty.student, 2.0, 2.0)
    d16_model, pq_model = (build_model(s.model, 12101) for s in (s16, spq))
    assert count_parameters(pq_model) <= count_parameters(d16_model) <= 200_000
    assert model_size_bytes(pq_model) <= model_size_bytes(d16_model)
    assert spq.model.d_model == 64 and int(pq_model.item_emb.full_rows) == 1549
    beauty.check_catalogue(12101)
    with pytest.raises(
        ConfigError, match=r"student-kd-gru-d64-pq: model.pq_full_rows \(1,549\) must be below"
    ):
        beauty.check_catalogue(1500)  # rows given for another catalogue


def test_fill_budget_is_for_a_pq_candidate_whose_rows_are_not_given():
    def beauty_with(**model):
        dumped = load_config(profile="beauty").model_dump(mode="json")
        dumped["candidates"]["students"][1]["model"].update(model)
        return PipelineConfig.model_validate(dumped)

    with pytest.raises(pydantic.ValidationError, match="gru-d64-pq: set model.pq_full_rows or fill_budget"):
        beauty_with(pq_full_rows=10)
    with pytest.raises(
        pydantic.ValidationError, match=r"fill_budget sizes a pq item table's full rows.*'full'"
    ):
        beauty_with(item_embedding="full")


def test_the_no_kd_baselines_full_rows_are_checked_against_the_catalogue_too():
    from shopdistill.components.config import ConfigError

    overrides = [
        "student.model.item_embedding=pq",
        "student.model.pq_full_rows=100",
        "distill.top_k=10",
        "candidates.students=[{name: a, model: {item_embedding: full}}]",  # the KD candidate has none
    ]
    config = load_config(profile="demo", overrides=overrides)
    config.check_catalogue(3000)
    with pytest.raises(
        ConfigError, match=r"^student: model.pq_full_rows \(100\) must be below the catalogue of 60"
    ):
        config.check_catalogue(60)
