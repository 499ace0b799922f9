"""The knobs of a run started from the Prefect UI (a form), turned into a full configuration."""

from __future__ import annotations

from pydantic import Field

from shopdistill.components.config.loading import load_config
from shopdistill.components.config.schema import PipelineConfig, StrictModel


class RunParameters(StrictModel):
    """The knobs a person changes when triggering a run from the Prefect UI (rendered as a form).

    Everything else comes from the profile; unset fields keep the profile's value.
    """

    profile: str = Field("demo", description="a profile from data/profiles: demo, beauty, diginetica")
    data_path: str | None = Field(None, description="data.source.path: a directory or file to read")
    teacher_epochs: int | None = Field(None, ge=1)
    student_epochs: int | None = Field(None, ge=1)
    student_d_model: int | None = Field(None, ge=2, description="student width")
    temperature: float | None = Field(None, gt=0)
    w_hard: float | None = Field(None, ge=0)
    w_logits: float | None = Field(None, ge=0)
    w_feature: float | None = Field(None, ge=0)
    w_relation: float | None = Field(None, ge=0)
    w_ranking: float | None = Field(None, ge=0)
    min_ratio_to_teacher: float | None = Field(None, ge=0, description="gate: student >= ratio x teacher")
    max_regression: float | None = Field(None, ge=0, description="gate: allowed NDCG@10 drop vs champion")
    overrides: list[str] = Field(default_factory=list, description="more settings as key=value")

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

    def to_config(self) -> PipelineConfig:
        sets = [
            f"{key}={getattr(self, name)}"
            for name, key in self._KEYS.items()
            if getattr(self, name) is not None
        ]
        return load_config(profile=self.profile, overrides=[*sets, *self.overrides])
