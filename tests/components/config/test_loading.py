"""Profiles that extend another one, path resolution per file, and the generated reference page."""

from pathlib import Path

import pytest

from shopdistill.components.config import ConfigError, DistillConfig, load_config
from shopdistill.components.config.reference import render_reference

DOCS = Path(__file__).resolve().parents[3] / "docs" / "configuration.md"


def test_a_profile_for_own_data_extends_beauty_with_its_data_section_only(tmp_path):
    (tmp_path / "events.csv").write_text("user_id,item_id,timestamp\n")
    own = tmp_path / "shop.yaml"
    own.write_text(
        "extends: beauty\n"
        "data:\n  name: shop\n  source: {kind: event_log, path: events.csv}\n"
        "  validation: {min_users: 1}\n"
        "student:\n  model: {d_model: 32}\n"
    )
    cfg = load_config(own)
    beauty = load_config(profile="beauty")
    assert cfg.data.source.kind == "event_log" and cfg.data.source.path == tmp_path / "events.csv"
    assert cfg.data.validation.min_users == 1
    assert cfg.data.validation.min_items == beauty.data.validation.min_items  # the rest is inherited
    assert cfg.teacher == beauty.teacher and cfg.distill == beauty.distill
    assert cfg.student.model.d_model == 32 and cfg.student.model.arch == beauty.student.model.arch


def test_extends_a_file_and_rejects_cycles_and_unknown_parents(tmp_path):
    (tmp_path / "base.yaml").write_text("teacher:\n  model: {d_model: 32}\n")
    (tmp_path / "child.yaml").write_text("extends: base.yaml\nteacher:\n  train: {epochs: 3}\n")
    cfg = load_config(tmp_path / "child.yaml")
    assert cfg.teacher.model.d_model == 32 and cfg.teacher.train.epochs == 3
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="extends: cycle"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("extends: nosuchprofile\n")
    with pytest.raises(ConfigError, match="unknown profile 'nosuchprofile'"):
        load_config(tmp_path / "c.yaml")


def test_code_defaults_are_the_recipe_the_profiles_ship():
    d = DistillConfig()
    assert (d.temperature, d.kd_mode, d.w_ranking, d.item_init) == (1.0, "full", 0.5, "teacher")
    assert load_config(profile="demo").distill == d
    # Beauty ranks by the teacher's top 10 at weight 2 (chosen on validation there); the rest is the same
    assert load_config(profile="beauty").distill == d.model_copy(update={"w_ranking": 2.0})


def test_the_configuration_reference_in_docs_is_up_to_date():
    assert DOCS.read_text() == render_reference(), (
        "docs/configuration.md is stale: run `make reference` (python -m "
        "shopdistill.components.config.reference > docs/configuration.md)"
    )
    assert "`distill.w_ranking`" in render_reference()
