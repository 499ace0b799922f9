"""Where stored things live: the keys say exactly what determines each output."""

from pathlib import Path

from shopdistill.components import stores
from shopdistill.components.config import DistillConfig, ModelConfig, TeacherConfig, TrainConfig

MODEL, TRAIN = ModelConfig(d_model=16), TrainConfig(epochs=3)


def test_a_no_kd_baseline_is_keyed_without_cache_or_distillation_settings():
    base = stores.student_key("d" * 64, MODEL, TRAIN, 0)
    assert base == stores.student_key("d" * 64, MODEL, TRAIN, 0)
    assert base != stores.student_key("e" * 64, MODEL, TRAIN, 0)  # another dataset
    assert base != stores.student_key("d" * 64, MODEL, TRAIN, 1)  # another seed
    kd = stores.student_key("d" * 64, MODEL, TRAIN, 0, cache_digest="c" * 64, distill=DistillConfig())
    assert kd != base
    warmer = DistillConfig(temperature=2.0)
    assert kd != stores.student_key("d" * 64, MODEL, TRAIN, 0, cache_digest="c" * 64, distill=warmer)
    # the cache digest covers teacher and dataset: a KD student does not key on the dataset again
    assert kd == stores.student_key("e" * 64, MODEL, TRAIN, 0, cache_digest="c" * 64, distill=DistillConfig())
    assert stores.student_dir(Path("/r"), kd) == Path("/r/students") / kd[:12]


def test_an_ensemble_member_is_the_single_teacher_of_its_seed():
    one, three = TeacherConfig(ensemble=1), TeacherConfig(ensemble=3)
    assert stores.teacher_key("d" * 64, one, 1) == stores.teacher_key("d" * 64, three, 1)
    assert stores.teacher_key("d" * 64, one, 1) != stores.teacher_key("d" * 64, one, 2)
    assert stores.ensemble_dir(Path("/r"), "shop", ["a", "b"]) != stores.ensemble_dir(
        Path("/r"), "shop", ["b", "a"]
    )


def test_run_folders_are_new_each_time_and_name_the_data():
    a, b = (
        stores.new_run_dir(Path("/r"), "shop", "nightly"),
        stores.new_run_dir(Path("/r"), "shop", "nightly"),
    )
    assert a != b and a.parent == Path("/r/runs") and "-nightly-shop-" in a.name
