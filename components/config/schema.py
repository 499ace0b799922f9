"""Typed pipeline configuration: one frozen pydantic model per stage, composed into `PipelineConfig`.

Profiles are YAML files under ``data/profiles/`` (``demo``, ``beauty``, ...). Loading rejects unknown
keys and reports every problem with its dotted key and the file it came from. Relative paths inside a
YAML file are resolved against that file's folder; paths given with ``--set`` against the current
directory. Models are defined at module level so Prefect can pickle them as flow parameters.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    model_serializer,
    model_validator,
)

CANONICAL_EVENTS = ("view", "click", "cart", "purchase", "review")


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the key and the file."""


def default_data_dir() -> Path:
    """Root of run outputs: ``$SHOPDISTILL_DATA_DIR``, else ``data/`` in the current directory."""
    env = os.environ.get("SHOPDISTILL_DATA_DIR")
    return Path(env).expanduser().resolve() if env else Path.cwd() / "data"


def _resolve_path(value: Path | None, info: ValidationInfo) -> Path | None:
    if value is None:
        return None
    value = Path(value).expanduser()
    if not value.is_absolute():
        base = (info.context or {}).get("base_dir") or Path.cwd()
        value = Path(base) / value
    return Path(os.path.normpath(value))


ResolvedPath = Annotated[Path, AfterValidator(_resolve_path)]


class StrictModel(BaseModel):
    """Frozen, unknown keys rejected."""

    model_config = ConfigDict(frozen=True, extra="forbid")


# --------------------------------------------------------------------------------------- data sources
class SyntheticSource(StrictModel):
    """The built-in synthetic shop (components/data/synthetic.py). Deterministic from ``seed``."""

    kind: Literal["synthetic"] = Field("synthetic", description="the built-in synthetic shop")
    seed: int = Field(0, description="random seed of the generator")
    n_users: int = Field(2_000, ge=10, description="shoppers")
    n_items: int = Field(600, ge=30, description="products")
    n_brands: int = Field(60, ge=2, description="brands")
    sessions_per_user: float = Field(3.0, gt=0, description="mean sessions per user (Poisson, >= 1)")
    views_per_session: float = Field(4.0, gt=0, description="mean product views per session")
    zipf_exponent: float = Field(1.05, ge=0, description="item popularity ~ rank^-exponent")
    p_complement: float = Field(0.45, ge=0, le=1, description="next view is a complement of the last")
    p_same_category: float = Field(0.25, ge=0, le=1, description="next view is a substitute")
    p_cart: float = Field(0.25, ge=0, le=1, description="a view becomes an add-to-cart")
    p_purchase: float = Field(0.5, ge=0, le=1, description="a cart becomes a purchase")
    brand_loyalty: float = Field(0.35, ge=0, le=1, description="mean chance to pick a favourite brand")
    taste_drift: float = Field(0.5, ge=0, le=1, description="how far tastes move over the time span")
    structured_complements: bool = Field(
        True,
        description="a product's complements prefer its brand and tier and popular products (a "
        "low-rank pattern); false: any product of the complementary category, uniformly",
    )
    launch_share: float = Field(
        0.0, ge=0, le=0.9, description="share of products launched during the span (on sale from then on)"
    )
    retire_share: float = Field(
        0.0, ge=0, le=0.9, description="share of products retired during the span (off sale from then on)"
    )
    promotions: float = Field(
        0.0,
        ge=0,
        le=1,
        description="share of fresh picks that go to a product launched in the last promotion_days, "
        "when there is one (a launch promotion; needs launch_share)",
    )
    promotion_days: int = Field(14, ge=1, description="days a launched product is promoted")
    seasonality: float = Field(
        0.0,
        ge=0,
        le=1,
        description="share of fresh picks from the department in season (the departments take turns "
        "over each year)",
    )
    styles: int = Field(
        1,
        ge=1,
        le=8,
        description="shopper styles: each has its own complements per product and each shopper one "
        "style, which only their history reveals (1: the same complements for everyone)",
    )
    start: datetime.date = Field(
        datetime.date(2025, 1, 1), description="first day of the event log (YYYY-MM-DD)"
    )
    days: int = Field(365, ge=1, description="days the log spans")

    @model_validator(mode="after")
    def _probabilities(self) -> SyntheticSource:
        if self.p_complement + self.p_same_category > 1:
            raise ValueError("p_complement + p_same_category must be <= 1")
        return self


class ColumnMapping(StrictModel):
    """Names of the source columns that hold each canonical field (None: absent)."""

    user: str = Field("user_id", description="column of the user (or session) id")
    item: str = Field("item_id", description="column of the product id")
    timestamp: str = Field("timestamp", description="column of the event time")
    event: str | None = Field(None, description="column of the event type (view, cart, ...)")
    price: str | None = Field(None, description="column of the price")
    category: str | None = Field(None, description="column of the product category")
    session: str | None = Field(None, description="column of the session id")
    order: str | None = Field(None, description="tie-breaker for equal timestamps, e.g. a sequence no.")
    time_offset: str | None = Field(
        None, description="added to the timestamp, e.g. ms since session start next to a date column"
    )


class CatalogMapping(StrictModel):
    item: str = Field("item_id", description="column of the product id")
    title: str | None = Field(None, description="column of the product title")
    brand: str | None = Field(None, description="column of the brand")
    category: str | None = Field(None, description="column of the category")
    price: str | None = Field(None, description="column of the price")


class TableFile(StrictModel):
    """How to read a CSV or Parquet file (the event log, the catalogue)."""

    path: ResolvedPath = Field(description="the file (relative: to the YAML file's folder)")
    format: Literal["auto", "csv", "parquet"] = Field(
        "auto", description="file format; auto: from the suffix"
    )
    delimiter: str = Field(",", description="CSV field separator")
    encoding: str = Field("utf-8", description="text encoding of a CSV")


class CatalogFile(TableFile):
    """A product catalogue: titles, brands, categories, prices by product id."""

    columns: CatalogMapping = CatalogMapping()


class EventLogSource(TableFile):
    """A CSV or Parquet event log with a column mapping, plus an optional catalogue file."""

    kind: Literal["event_log"] = Field("event_log", description="a CSV or Parquet event log")
    columns: ColumnMapping = ColumnMapping()
    timestamp_unit: Literal["auto", "s", "ms", "iso"] = Field(
        "auto", description="unit of the timestamp column; auto: guessed from its values"
    )
    time_offset_unit: Literal["s", "ms"] = Field("ms", description="unit of the time-offset column")
    event_map: dict[str, str] = Field(
        default_factory=dict, description="raw event value -> canonical event (view/cart/...)"
    )
    default_event: str = Field("view", description="event used when no event column is mapped")
    catalog: CatalogFile | None = None


class AmazonSource(StrictModel):
    """The Amazon review benchmark files (S3-Rec preprocessing): ``<name>.txt`` and friends."""

    kind: Literal["amazon"] = Field("amazon", description="the Amazon review benchmark files")
    path: ResolvedPath = Field(description="folder with <name>.txt and its metadata files")
    name: str = Field("Beauty", description="file stem, e.g. Beauty for Beauty.txt")


def _source_kind(value: Any) -> str:
    """The ``kind`` tag of a data source; a source without one is the synthetic default."""
    if isinstance(value, dict):
        return value.get("kind", "synthetic")
    return getattr(value, "kind", "synthetic")


DataSource = Annotated[
    Annotated[SyntheticSource, Tag("synthetic")]
    | Annotated[EventLogSource, Tag("event_log")]
    | Annotated[AmazonSource, Tag("amazon")],
    Discriminator(_source_kind),
]


class PreprocessConfig(StrictModel):
    dedupe: Literal["none", "exact", "consecutive", "user_item_first"] = Field(
        "exact",
        description=(
            "none: keep every row; exact: drop rows equal in user, item, ts and event; consecutive: "
            "collapse back-to-back rows of one item into one (strongest event kept); user_item_first: "
            "keep each user's first interaction with an item"
        ),
    )
    min_user_interactions: int = Field(0, ge=0, description="k-core: users need this many (0: off)")
    min_item_interactions: int = Field(0, ge=0, description="k-core: items need this many (0: off)")
    split: Literal["leave_one_out", "time", "next_day"] = Field(
        "leave_one_out",
        description="leave_one_out: last item test, second-to-last validation; time: by time span; "
        "next_day: each user's last event on the night's day is test (the day's earlier ones in its "
        "history), on the day before validation",
    )
    valid_fraction: float = Field(0.1, gt=0, lt=0.5, description="time split: share of the time span")
    test_fraction: float = Field(0.1, gt=0, lt=0.5, description="time split: share of the time span")


class ValidationConfig(StrictModel):
    allowed_events: tuple[str, ...] = Field(
        CANONICAL_EVENTS, description="event types the source may contain"
    )
    min_timestamp: str = Field("1995-01-01", description="earliest plausible event date")
    max_future_seconds: int = Field(86_400, ge=0, description="tolerated clock skew into the future")
    max_duplicate_rate: float = Field(0.05, ge=0, le=1, description="share of exactly repeated rows")
    min_users: int = Field(10, ge=1, description="users needed after preprocessing")
    min_items: int = Field(10, ge=1, description="items needed after preprocessing")
    min_interactions: int = Field(100, ge=1, description="interactions needed after preprocessing")
    max_sequence_length: int = Field(10_000, ge=1, description="longer user histories look like bots")
    mean_sequence_length: tuple[float, float] = Field(
        (2.0, 500.0), description="warn-only drift check on the mean history length"
    )
    min_title_coverage: float = Field(0.9, ge=0, le=1, description="warn-only: share with a title")
    partition_findings: Literal["fail", "warn"] = Field(
        "fail",
        description="day partitions: a missing, empty or late partition for the night, or a volume "
        "off the recent nights, fails the run (fail) or is reported only (warn)",
    )
    volume_ratio: tuple[float, float] = Field(
        (0.33, 3.0), description="day partitions: tonight's rows / the median of the 7 nights before"
    )


class DataConfig(StrictModel):
    name: str = Field(
        "demo",
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="names the prepared dataset's folder and the run folders",
    )
    source: DataSource = SyntheticSource()
    as_of: datetime.date | None = Field(
        None,
        description="the night's date for a partitioned event log: days up to it are read (unset: "
        "the latest complete day)",
    )
    window_days: int | None = Field(
        None, ge=1, description="days of a partitioned event log read up to as_of (unset: every day)"
    )
    preprocess: PreprocessConfig = PreprocessConfig()
    validation: ValidationConfig = ValidationConfig()

    def reads_nights(self) -> bool:
        """A partitioned event log (a folder or glob of day partitions): each run is one night."""
        from shopdistill.components.data.partitions import is_partitioned

        return isinstance(self.source, EventLogSource) and is_partitioned(self.source.path)


# ------------------------------------------------------------------------------- models and training
class ModelConfig(StrictModel):
    arch: Literal["sasrec", "gru"] = Field(
        "sasrec", description="sasrec: causal Transformer; gru: GRU4Rec-style recurrent"
    )
    d_model: int = Field(64, ge=2, description="hidden and item-embedding width")
    n_layers: int = Field(2, ge=0, description="Transformer blocks or GRU layers")
    n_heads: int = Field(1, ge=1, description="attention heads (SASRec; d_model must divide by it)")
    ffn_mult: int = Field(4, ge=1, description="feed-forward width = ffn_mult * d_model")
    dropout: float = Field(0.2, ge=0, lt=1, description="dropout on embeddings and blocks")
    max_len: int = Field(50, ge=2, description="most recent items a model reads")
    item_embedding: Literal["full", "pq", "qr"] = Field(
        "full",
        description="the item table (input and tied output): full; pq: sub-item codes (product "
        "quantisation); qr: quotient-remainder (models/embeddings.py)",
    )
    pq_groups: int = Field(8, ge=1, description="item_embedding pq: code groups (d_model must divide by it)")
    pq_centroids: int = Field(256, ge=2, le=65536, description="item_embedding pq: codes per group")
    pq_full_rows: int = Field(
        0,
        ge=0,
        description="item_embedding pq: the items most frequent in training keep a full row of their own",
    )

    @model_validator(mode="after")
    def _heads_divide_width(self) -> ModelConfig:
        if self.arch == "sasrec" and self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if self.item_embedding == "pq" and self.d_model % self.pq_groups:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by pq_groups ({self.pq_groups})")
        return self

    @model_serializer(mode="wrap")
    def _omit_default_items(self, handler: Any) -> dict[str, Any]:
        # the full table and the pq settings at their defaults are left out, so the stored keys of
        # full-table models do not depend on options they do not use
        dumped = handler(self)
        if dumped.get("item_embedding") != "pq":
            dumped.pop("pq_groups", None)
            dumped.pop("pq_centroids", None)
            dumped.pop("pq_full_rows", None)
        return _drop_default(_drop_default(dumped, "pq_full_rows", 0), "item_embedding", "full")


def _drop_default(dumped: dict[str, Any], key: str, default: Any) -> dict[str, Any]:
    """Leave an option out of a dump while it has its default (stored models are keyed by dumps)."""
    if key in dumped and dumped[key] == default:
        dumped.pop(key)
    return dumped


class TrainConfig(StrictModel):
    epochs: int = Field(30, ge=1, description="most epochs")
    batch_size: int = Field(128, ge=1, description="users per batch")
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    lr_schedule: Literal["constant", "cosine"] = Field(
        "constant", description="constant, or cosine decay over the epochs"
    )
    sampled_negatives: int | None = Field(
        None, ge=1, description="sampled softmax with this many shared negatives (None: full softmax)"
    )
    sampling: Literal["uniform", "mixed"] = Field(
        "uniform",
        description="where sampled negatives come from: uniform over the catalogue, or half uniform and "
        "half by training popularity (logQ-corrected)",
    )
    patience: int = Field(5, ge=1, description="epochs without validation gain before stopping")
    max_wall_seconds: float | None = Field(
        None, gt=0, description="wall-clock budget, checked inside the epoch (None: none)"
    )
    workers: int = Field(
        1,
        ge=1,
        le=256,
        description="teacher only: DDP workers on Ray Train, each with a share of every batch of "
        "batch_size users (the [ray] extra; docs/scale-out.md); 1: this process",
    )

    @model_validator(mode="after")
    def _sampling_needs_negatives(self) -> TrainConfig:
        if self.sampling != "uniform" and self.sampled_negatives is None:
            raise ValueError(
                f"sampling: {self.sampling} chooses how sampled negatives are drawn, but sampled_negatives "
                "is not set (the full softmax samples nothing); set sampled_negatives, e.g. 2048"
            )
        return self

    @model_serializer(mode="wrap")
    def _omit_default_sampling(self, handler: Any) -> dict[str, Any]:
        # ``sampling`` only matters with sampled negatives, ``workers`` is how a model trains, not
        # which: both left out at their defaults, so stored keys do not depend on them
        return _drop_default(_drop_default(handler(self), "sampling", "uniform"), "workers", 1)


class WarmStartConfig(StrictModel):
    """Nightly runs on a partitioned log: continue from last night's model (training/warm_start.py)."""

    epochs: int = Field(5, ge=1, description="most epochs of a warm-started night (early stopping applies)")
    full_retrain_every: int = Field(
        7, ge=1, description="a cold start every this many nights (1: every night cold)"
    )
    cold: bool = Field(False, description="start cold tonight whatever the count")


class TeacherConfig(StrictModel):
    model: ModelConfig = ModelConfig(d_model=128, n_layers=2, n_heads=2)
    train: TrainConfig = TrainConfig()
    warm: WarmStartConfig = WarmStartConfig()
    ensemble: int = Field(
        1,
        ge=1,
        le=16,
        description="members trained with seeds seed..seed+n-1; their log-probabilities are averaged",
    )


class StudentConfig(StrictModel):
    model: ModelConfig = ModelConfig(d_model=16, n_layers=1, n_heads=1)
    train: TrainConfig = TrainConfig()
    warm: WarmStartConfig = WarmStartConfig()

    @model_validator(mode="after")
    def _one_worker(self) -> StudentConfig:
        if self.train.workers != 1:
            raise ValueError(
                f"student.train.workers is {self.train.workers}, but data-parallel training is for the "
                "teacher; students are small: train several at once as candidates (docs/scale-out.md)"
            )
        return self


class DistillConfig(StrictModel):
    """Objective: w_hard*CE + w_logits*KD_logits + w_feature*KD_feature + w_relation*RKD + w_ranking*RD.

    The defaults are the recipe the distillation study chose on validation (docs/results): logits KD
    over the full catalogue at T=1, ranking KD at 0.5, the student's items started from the teacher's.
    """

    temperature: float = Field(1.0, gt=0, description="T of logits KD (the soft term is scaled by T^2)")
    kd_mode: Literal["topk", "full"] = Field(
        "full", description="student softmax over the whole catalogue, or over the teacher's top-K items"
    )
    top_k: int = Field(100, ge=1, description="teacher items cached per position")
    logits_dtype: Literal["float32", "float16"] = Field(
        "float16", description="dtype of the cached teacher logits"
    )
    cache_hidden: bool = Field(False, description="cache the teacher's hidden states (feature/relation KD)")
    w_hard: float = Field(1.0, ge=0, description="weight of the hard-label cross-entropy")
    w_logits: float = Field(1.0, ge=0, description="weight of logits KD (Hinton et al. 2015)")
    w_feature: float = Field(0.0, ge=0, description="weight of feature KD (FitNets; needs cache_hidden)")
    w_relation: float = Field(0.0, ge=0, description="weight of relational KD (RKD; needs cache_hidden)")
    w_ranking: float = Field(
        0.5, ge=0, description="ranking KD (Tang & Wang 2018) on the teacher's top items"
    )
    rkd_distance_weight: float = Field(1.0, ge=0, description="RKD distance term weight")
    rkd_angle_weight: float = Field(2.0, ge=0, description="RKD angle term weight")
    ranking_k: int = Field(10, ge=1, description="teacher's top items that ranking KD uses")
    ranking_lambda: float = Field(3.0, gt=0, description="decay of ranking KD's weights with rank")
    item_init: Literal["random", "teacher"] = Field(
        "teacher",
        description="the student's item embeddings start random, or from the teacher's (rank-d SVD of "
        "the item embeddings stored with the soft labels)",
    )

    @model_validator(mode="after")
    def _needs_hidden(self) -> DistillConfig:
        if (self.w_feature > 0 or self.w_relation > 0) and not self.cache_hidden:
            raise ValueError("w_feature or w_relation > 0 needs cache_hidden: true (teacher hidden states)")
        if self.ranking_k > self.top_k:
            raise ValueError(f"ranking_k ({self.ranking_k}) cannot exceed top_k ({self.top_k})")
        return self


class GateConfig(StrictModel):
    min_ratio_to_teacher: float = Field(0.90, ge=0, description="candidate NDCG@10 >= this x the teacher's")
    require_beats_baseline: bool = Field(
        True, description="candidate must match the no-KD student (within baseline_tolerance)"
    )
    baseline_tolerance: float = Field(
        0.0, ge=0, description="allowed NDCG@10 shortfall vs the no-KD baseline"
    )
    max_regression: float = Field(0.0, ge=0, description="allowed NDCG@10 drop vs the champion")
    min_improvement: float = Field(0.0, ge=0, description="required NDCG@10 gain over the champion (0: off)")
    max_p99_latency_ms: float | None = Field(
        None, gt=0, description="bound on the candidate's p99 latency (None: off)"
    )
    max_model_mb: float | None = Field(None, gt=0, description="bound on the candidate's size (None: off)")
    max_champion_decay: float = Field(
        0.2,
        ge=0,
        le=1,
        description="nights: the champion counts as decayed when its NDCG@10 tonight is below (1 - this) "
        "x its NDCG@10 on the night it was registered (flagged in the run; not a gate rule)",
    )


class RegistryConfig(StrictModel):
    tracking_uri: str | None = Field(None, description="default: $MLFLOW_TRACKING_URI or a SQLite file")
    model_name: str = Field(
        "shopdistill-student",
        min_length=1,
        pattern=r"^\S(.*\S)?$",
        description="registered model name in MLflow",
    )
    onnx_export: bool = Field(
        True,
        description="log an ONNX export (fp32 + int8, components/export.py) with each registered version "
        "when the [onnx] extra is installed",
    )


class RuntimeConfig(StrictModel):
    output_dir: ResolvedPath | None = Field(None, description="default: $SHOPDISTILL_DATA_DIR or data/")
    threads: int = Field(1, ge=1, description="torch threads; 1 is fastest on 2 busy cores")
    seed: int = Field(0, description="seed of teacher and students")
    executor: Literal["local", "ray"] = Field(
        "local",
        description="where fanned-out tasks (candidates, soft-label shards, ensemble members) run: one at a time here, "
        "or in parallel on Ray (the [ray] extra; docs/scale-out.md)",
    )
    ray_address: str | None = Field(
        None,
        description="executor ray: unset starts a local Ray instance for the run; 'auto' or an address joins a cluster",
    )
    ray_cpus_per_task: float = Field(1.0, gt=0, description="executor ray: CPUs each task asks Ray for")
    ray_gpus_per_task: float = Field(0.0, ge=0, description="executor ray: GPUs each task asks Ray for")
    ray_worker_restarts: int = Field(
        2,
        ge=0,
        description="teacher.train.workers > 1: times a failed DDP worker group restarts from the last epoch",
    )
    soft_label_shards: int = Field(
        1,
        ge=1,
        le=1024,
        description="user shards of the teacher's soft-label pass, each a task (in parallel on Ray); "
        "1: one file written in one pass",
    )

    @property
    def root(self) -> Path:
        return self.output_dir or default_data_dir()


class CandidateConfig(StrictModel):
    """One student candidate: the ``student.model`` and ``distill`` settings it changes."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,39}$", description="lower-case letters, digits, dashes")
    model: dict[str, Any] = Field(
        default_factory=dict, description="student.model keys to change, e.g. {arch: sasrec, d_model: 32}"
    )
    distill: dict[str, Any] = Field(
        default_factory=dict, description="distill keys to change, e.g. {w_ranking: 2.0}"
    )
    fill_budget: bool = Field(
        False,
        description="item_embedding pq: model.pq_full_rows = as many as keep the candidate within "
        "student.model with a full item table (parameters and stored bytes), sized to the catalogue "
        "of each run (models/budget.py)",
    )

    @model_validator(mode="after")
    def _rows_filled_or_given(self) -> CandidateConfig:
        if self.fill_budget and "pq_full_rows" in self.model:
            raise ValueError(f"{self.name}: set model.pq_full_rows or fill_budget, not both")
        return self


class CandidatesConfig(StrictModel):
    """Several KD students trained side by side; the flow keeps one by validation NDCG@10 under the
    bounds below (components/candidates.py). Empty: the one student of ``student`` and ``distill``."""

    students: list[CandidateConfig] = Field(default_factory=list, description="the candidates")
    max_params: int | None = Field(None, ge=1, description="most trainable parameters (None: no bound)")
    max_model_mb: float | None = Field(None, gt=0, description="largest best.pt in MB (None: no bound)")
    max_p99_ms: float | None = Field(
        None,
        gt=0,
        description="slowest p99 of the exported model, batch 1, one thread, full-catalogue top-10 (None: no bound)",
    )
    latency_requests: int = Field(300, ge=20, description="requests behind each candidate's p99")

    @model_validator(mode="after")
    def _names_are_unique(self) -> CandidatesConfig:
        names = [c.name for c in self.students]
        if len(set(names)) != len(names):
            raise ValueError(f"candidate names must be unique, got {names}")
        return self


class PipelineConfig(StrictModel):
    data: DataConfig = DataConfig()
    teacher: TeacherConfig = TeacherConfig()
    student: StudentConfig = StudentConfig()
    distill: DistillConfig = DistillConfig()
    gate: GateConfig = GateConfig()
    registry: RegistryConfig = RegistryConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    candidates: CandidatesConfig = CandidatesConfig()

    @model_validator(mode="after")
    def _candidates_build(self) -> PipelineConfig:
        self.student_candidates()  # every candidate's settings are valid model / distill settings
        return self

    def student_candidates(self) -> list[tuple[str, StudentConfig, DistillConfig]]:
        """(name, student, distill) of each KD candidate; without candidates, the one student."""
        if not self.candidates.students:
            return [("student-kd", self.student, self.distill)]
        out = []
        for c in self.candidates.students:
            try:
                model = ModelConfig(**{**self.student.model.model_dump(), **c.model})
                distill = DistillConfig(**{**self.distill.model_dump(), **c.distill})
            except ValueError as exc:
                raise ValueError(f"candidates.students[{c.name}]: {exc}") from None
            if c.fill_budget and model.item_embedding != "pq":
                raise ValueError(
                    f"candidates.students[{c.name}]: fill_budget sizes a pq item table's full rows, "
                    f"but its model.item_embedding is {model.item_embedding!r}"
                )
            out.append((f"student-kd-{c.name}", self.student.model_copy(update={"model": model}), distill))
        return out

    def check_catalogue(self, n_items: int) -> None:
        """The settings that depend on the data, checked once it is prepared and before any training."""
        if self.distill.top_k > n_items:
            raise ConfigError(
                f"distill.top_k ({self.distill.top_k}) exceeds the catalogue of {n_items:,} items; "
                f"set it to at most {n_items}"
            )
        # the candidates and the no-KD baseline (the profile's student)
        for name, student in [*((n, s) for n, s, _ in self.student_candidates()), ("student", self.student)]:
            rows = student.model.pq_full_rows if student.model.item_embedding == "pq" else 0
            if rows >= n_items:
                raise ConfigError(
                    f"{name}: model.pq_full_rows ({rows:,}) must be below the catalogue of {n_items:,} items "
                    "(the rest are coded); `shopdistill bench study --groups compressed` sizes it for your data"
                )
