"""Train a student from the dataset plus the teacher's soft-label cache (never the teacher itself).

    L = w_hard * CE(hard) + w_logits * KD_logits + w_feature * KD_feature
        + w_relation * KD_relation + w_ranking * KD_ranking

Batches come from the cache reader, one row group (a block of whole users) at a time, so memory stays
flat; each student position is matched to its cache row by (user, position), and the cached hard
target must equal the student's target (a cache built for other data is refused). Without a cache, or
with every KD weight at zero, this is the no-KD baseline: the same student on hard labels only.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from components.artifacts import sha256_json
from components.config import DistillConfig, ModelConfig, TrainConfig
from components.distill.init import item_init_from_teacher
from components.distill.losses import FeatureKD, LogitsKD, RankingKD, RKDLoss
from components.linear_ce import linear_softmax_loss
from components.models import build_model
from components.sequences import SequenceData, TrainBatch
from components.soft_labels import SoftLabelBlock, SoftLabelCacheError, SoftLabelReader
from components.training import TrainResult, fit


@dataclass(frozen=True)
class KDBatch:
    """A student batch with the teacher's cached knowledge for its real positions."""

    train: TrainBatch
    matched: torch.Tensor  # (N,) bool over real positions (row-major over train.mask)
    topk_cols: torch.Tensor  # (M, K) teacher top-K as score columns (item id - 1)
    teacher_logits: torch.Tensor  # (M, K)
    teacher_hidden: torch.Tensor | None  # (M, d_T)
    last_index: torch.Tensor  # (B,) index into the N real positions of each user's last position


def kd_batch(
    data: SequenceData, users: np.ndarray, block: SoftLabelBlock, max_len: int, top_k: int | None = None
) -> KDBatch:
    """Align cache rows with the student's positions by (user, position); keep the teacher's first
    ``top_k`` items (the cache is sorted by teacher score, so a K=200 cache also serves K=50)."""
    tb = data.train_batch(users, max_len)
    rows, cols = np.nonzero(tb.mask.numpy())
    keys = (users[rows].astype(np.int64) << 32) | tb.positions.numpy()[rows, cols]
    block_keys = block.keys
    aligned = np.array_equal(block_keys, keys)
    if aligned:  # the reader's usual case: the same rows in the same order
        matched, src = np.ones(len(keys), dtype=bool), np.arange(len(keys))
    else:
        order = np.argsort(block_keys, kind="stable")
        sorted_keys = block_keys[order]
        at = np.clip(np.searchsorted(sorted_keys, keys), 0, max(len(sorted_keys) - 1, 0))
        matched = sorted_keys[at] == keys if len(sorted_keys) else np.zeros(len(keys), dtype=bool)
        src = order[at[matched]]
    student_targets = tb.targets.numpy()[rows, cols][matched]
    if not np.array_equal(block.targets[src], student_targets):
        bad = int(np.flatnonzero(block.targets[src] != student_targets)[0])
        raise SoftLabelCacheError(
            "the soft-label cache does not match the training data: user "
            f"{block.users[src][bad]}, position {block.positions[src][bad]} has cached target "
            f"{block.targets[src][bad]} but the dataset says {student_targets[bad]}; rebuild the cache"
        )
    lengths = tb.mask.sum(dim=1)
    take = slice(None) if aligned else src  # aligned: views, no gather copy
    return KDBatch(
        train=tb,
        matched=torch.from_numpy(matched),
        topk_cols=torch.from_numpy(np.subtract(block.topk_ids[take, :top_k], 1, dtype=np.int64)),  # one pass
        teacher_logits=torch.from_numpy(block.topk_logits[take, :top_k].astype(np.float32)),
        teacher_hidden=torch.from_numpy(block.hidden[take]) if block.hidden is not None else None,
        last_index=torch.cumsum(lengths, 0) - 1,
    )


class DistillationObjective(nn.Module):
    """The weighted sum of hard-label CE and the enabled KD terms; holds the trainable projector."""

    def __init__(self, cfg: DistillConfig, student_dim: int, teacher_dim: int | None):
        super().__init__()
        self.cfg = cfg
        self.logits = LogitsKD(cfg.temperature, cfg.kd_mode)
        self.ranking = RankingKD(cfg.ranking_k, cfg.ranking_lambda)
        self.relation = RKDLoss(cfg.rkd_distance_weight, cfg.rkd_angle_weight)
        self.feature = FeatureKD(student_dim, teacher_dim) if cfg.w_feature > 0 and teacher_dim else None

    def step_loss(self, student: nn.Module) -> Callable[[KDBatch], tuple[torch.Tensor, dict[str, float]]]:
        cfg = self.cfg

        # Full-softmax logits KD and ranking KD are fused with the hard-label CE (components.linear_ce:
        # no (N, I) score matrix). Top-K logits KD with ranking KD takes the plain path.
        fused = cfg.w_ranking == 0 or cfg.kd_mode == "full" or cfg.w_logits == 0

        def step(b: KDBatch) -> tuple[torch.Tensor, dict[str, float]]:
            out = student(b.train.inputs)
            h = out.hidden[b.train.mask]  # (N, d_S)
            targets = b.train.targets[b.train.mask] - 1  # (N,) columns
            m = b.matched
            if fused:
                kd_full = cfg.w_logits > 0 and cfg.kd_mode == "full"
                ranked = cfg.w_ranking > 0
                loss, ce, kd, rk = linear_softmax_loss(
                    h,
                    student.output_weight(),
                    targets,
                    w_hard=cfg.w_hard,
                    kd_rows=torch.nonzero(m).squeeze(1) if kd_full or ranked else None,
                    kd_cols=b.topk_cols,
                    kd_logits=b.teacher_logits,
                    w_kd=cfg.w_logits if kd_full else 0.0,
                    temperature=cfg.temperature,
                    rank_weights=self.ranking.weights,
                    w_rank=cfg.w_ranking,
                )
                parts = {"ce": ce.item()}
                if ranked:
                    parts["kd_ranking"] = rk.item()
                if kd_full:
                    parts["kd_logits"] = kd.item()
                elif cfg.w_logits > 0:  # top-K mode, no ranking: scores at the teacher's K items only
                    z_k = torch.einsum("md,mkd->mk", h[m], student.output_weight()[b.topk_cols])  # (M, K)
                    cols = torch.arange(z_k.shape[1]).expand_as(z_k)
                    kd = self.logits(z_k, cols, b.teacher_logits)
                    loss = loss + cfg.w_logits * kd
                    parts["kd_logits"] = kd.item()
            else:
                scores = student.scores(h)  # (N, I)
                ce = F.cross_entropy(scores, targets)
                loss = cfg.w_hard * ce
                parts = {"ce": ce.item()}
                if cfg.w_logits > 0:
                    kd = self.logits(scores[m], b.topk_cols, b.teacher_logits)
                    loss = loss + cfg.w_logits * kd
                    parts["kd_logits"] = kd.item()
                rk = self.ranking(scores[m], b.topk_cols)
                loss = loss + cfg.w_ranking * rk
                parts["kd_ranking"] = rk.item()
            if self.feature is not None:
                fk = self.feature(h[m], b.teacher_hidden)
                loss = loss + cfg.w_feature * fk
                parts["kd_feature"] = fk.item()
            if cfg.w_relation > 0:
                # one representation per sequence: its last position, where the teacher row exists
                matched_index = torch.cumsum(m.long(), 0) - 1
                ok = m[b.last_index]
                rel = self.relation(h[b.last_index[ok]], b.teacher_hidden[matched_index[b.last_index[ok]]])
                loss = loss + cfg.w_relation * rel
                parts["kd_relation"] = rel.item()
            return loss, parts

        return step


def prefetch(items: Iterator[KDBatch], depth: int = 2) -> Iterator[KDBatch]:
    """Build the next batches in a background thread (Parquet decoding and alignment release the GIL
    for most of their time), so reading the cache overlaps the student's step. Errors are re-raised
    here; a consumer that stops early stops the thread."""
    q: queue.Queue = queue.Queue(depth)
    stop = threading.Event()
    done = object()

    def work() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            q.put(exc)

    thread = threading.Thread(target=work, name="soft-label-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def kd_batches(
    reader: SoftLabelReader,
    data: SequenceData,
    batch_size: int,
    max_len: int,
    top_k: int,
    rng: np.random.Generator,
) -> Iterator[KDBatch]:
    """One epoch of student batches with their aligned cache rows.

    Prepared one step ahead in a background thread when a core is free for it (torch runs on fewer
    threads than the machine has cores); otherwise in line, because a third busy thread on two cores
    slows torch's own threads by more than it saves (Beauty, d=16 student, 2 cores: KD epoch / no-KD
    epoch 1.12-1.14 in line vs 1.14-1.23 prefetched at 2 threads; 1.07-1.10 prefetched vs 1.13-1.17
    in line at 1 thread)."""
    lengths = data.train_positions(max_len)
    aligned = (
        kd_batch(data, users, block, max_len, top_k)
        for users, block in reader.iter_user_batches(batch_size, lengths, rng)
    )
    return prefetch(aligned) if torch.get_num_threads() < available_cores() else aligned


def uses_cache(cfg: DistillConfig) -> bool:
    weights = (cfg.w_logits, cfg.w_feature, cfg.w_relation, cfg.w_ranking)
    return any(w > 0 for w in weights) or cfg.item_init == "teacher"


def distill_student(
    data: SequenceData,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    distill_cfg: DistillConfig,
    out_dir: str | Path,
    *,
    cache_path: str | Path | None = None,
    seed: int = 0,
    threads: int = 1,
    log: Callable[[str], None] = print,
    name: str = "student",
) -> tuple[nn.Module, TrainResult]:
    """Train a student with knowledge distillation from the cache, or the no-KD baseline without one."""
    torch.manual_seed(seed)
    student = build_model(model_cfg, data.n_items)
    kd = cache_path is not None and uses_cache(distill_cfg)
    fingerprint = sha256_json(
        {
            "model": model_cfg.model_dump(),
            "train": train_cfg.model_dump(),
            "seed": seed,
            "distill": distill_cfg.model_dump() if kd else None,
            "cache": str(cache_path) if kd else None,
        }
    )
    if not kd:
        result = fit(
            student,
            data,
            model_cfg,
            train_cfg,
            out_dir,
            seed=seed,
            threads=threads,
            fingerprint=fingerprint,
            log=log,
            name=name,
        )
        return student, result

    reader = SoftLabelReader(cache_path)
    teacher_dim = reader.manifest.get("hidden_dim")
    if distill_cfg.item_init == "teacher":
        teacher_items = reader.teacher_items()  # (I, D)
        if teacher_items.shape[0] != data.n_items:
            raise SoftLabelCacheError(
                f"{cache_path} holds item embeddings for {teacher_items.shape[0]:,} items, the data has "
                f"{data.n_items:,}; the cache belongs to another dataset"
            )
        with torch.no_grad():
            student.item_emb.weight[1:] = item_init_from_teacher(teacher_items, model_cfg.d_model)
    if (distill_cfg.w_feature > 0 or distill_cfg.w_relation > 0) and not reader.has_hidden:
        raise SoftLabelCacheError(
            f"feature and relation distillation need the teacher's hidden states, but {cache_path} was "
            "built without them; set distill.cache_hidden=true and rebuild the cache"
        )
    if distill_cfg.top_k > reader.manifest["top_k"]:
        raise SoftLabelCacheError(
            f"distill.top_k={distill_cfg.top_k} but the cache {cache_path} holds the teacher's top "
            f"{reader.manifest['top_k']} only; rebuild it with a larger top_k"
        )
    objective = DistillationObjective(distill_cfg, model_cfg.d_model, teacher_dim)

    def batches(epoch: int, rng: np.random.Generator) -> Iterator[KDBatch]:
        return kd_batches(reader, data, train_cfg.batch_size, model_cfg.max_len, distill_cfg.top_k, rng)

    result = fit(
        student,
        data,
        model_cfg,
        train_cfg,
        out_dir,
        seed=seed,
        threads=threads,
        step_loss=objective.step_loss(student),
        batches=batches,
        extra_modules=objective,
        fingerprint=fingerprint,
        log=log,
        name=name,
    )
    return student, result
