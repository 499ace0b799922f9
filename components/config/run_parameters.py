"""The knobs of a run started from the Prefect UI (a form), turned into a full configuration.

The form offers the packaged profiles as a choice and shows, for every knob, the value each profile
uses; an empty field keeps the chosen profile's value (a filled one overrides it).
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import Field

from shopdistill.components.config.loading import available_profiles, load_config
from shopdistill.components.config.schema import PipelineConfig, StrictModel

Profile = Enum("Profile", {name: name for name in available_profiles()}, type=str)
Profile.__doc__ = "A profile packaged with shopdistill (data/profiles)."

_KEYS = {
    "data_path": "data.source.path",
    "teacher_epochs": "teacher.train.epochs",
    "student_epochs": "student.train.epochs",
    "student_d_model": "student.model.d_model",
    "temperature": "distill.temperature",
    "w_hard": "distill.w_hard",
    "w_logits": "distill.w_logits",
    "w_feature": "distill.w_feature",
    "w_relation": "distill.w_relation",
    "w_ranking": "distill.w_ranking",
    "min_ratio_to_teacher": "gate.min_ratio_to_teacher",
    "max_regression": "gate.max_regression",
}


def _dotted(config: PipelineConfig, key: str) -> Any:
    value: Any = config
    for part in key.split("."):
        value = getattr(value, part, None)
    return value


def profile_values() -> dict[str, dict[str, Any]]:
    """``knob -> {profile: value}`` for every form knob, read from the packaged profiles."""
    configs = {name: load_config(profile=name) for name in available_profiles()}
    return {knob: {name: _dotted(cfg, key) for name, cfg in configs.items()} for knob, key in _KEYS.items()}


def _described(knob: str, what: str, values: dict[str, dict[str, Any]]) -> str:
    shown = "; ".join(f"{name} {value}" for name, value in values[knob].items() if value is not None)
    return f"{what} (`{_KEYS[knob]}`). Empty keeps the profile's value" + (f": {shown}" if shown else "")


_VALUES = profile_values()


def _knob(knob: str, what: str, **bounds: Any) -> Any:
    return Field(None, description=_described(knob, what, _VALUES), **bounds)


class RunParameters(StrictModel):
    """The knobs a person changes when triggering a run from the Prefect UI (rendered as a form).

    Everything else comes from the profile (or ``config_file``); unset fields keep its value.
    """

    profile: Profile = Field(Profile("demo"), description="the packaged profile the run starts from")
    config_file: str | None = Field(
        None, description="a YAML configuration on the worker, used instead of the profile"
    )
    data_path: str | None = _knob("data_path", "a directory or file to read")
    teacher_epochs: int | None = _knob("teacher_epochs", "teacher epochs", ge=1)
    student_epochs: int | None = _knob("student_epochs", "student epochs", ge=1)
    student_d_model: int | None = _knob("student_d_model", "student width", ge=2)
    temperature: float | None = _knob("temperature", "KD temperature", gt=0)
    w_hard: float | None = _knob("w_hard", "weight of the hard-label loss", ge=0)
    w_logits: float | None = _knob("w_logits", "weight of logits KD", ge=0)
    w_feature: float | None = _knob("w_feature", "weight of feature KD", ge=0)
    w_relation: float | None = _knob("w_relation", "weight of relation KD", ge=0)
    w_ranking: float | None = _knob("w_ranking", "weight of ranking KD", ge=0)
    min_ratio_to_teacher: float | None = _knob(
        "min_ratio_to_teacher", "gate: student >= ratio x teacher", ge=0
    )
    max_regression: float | None = _knob("max_regression", "gate: allowed NDCG@10 drop vs champion", ge=0)
    overrides: list[str] = Field(default_factory=list, description="more settings as key=value")

    def to_config(self) -> PipelineConfig:
        sets = [
            f"{key}={getattr(self, name)}" for name, key in _KEYS.items() if getattr(self, name) is not None
        ]
        if self.config_file:
            return load_config(self.config_file, overrides=[*sets, *self.overrides])
        return load_config(profile=self.profile.value, overrides=[*sets, *self.overrides])
