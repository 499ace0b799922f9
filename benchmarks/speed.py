"""Performance benchmarks: serving, distillation cost, soft-label cache I/O, scale, training speed.

Absolute times on shared 2-core machines are noisy, so every figure is a median over repeated runs
and the targets are ratios measured side by side in one process (or one subprocess per measurement
where peak memory is reported: ``ru_maxrss`` of a fresh process is the only honest peak).

    serving          teacher vs student (torch) vs student (ONNX, ONNX int8): p50/p99 ms at batch 1 and
                     1 thread (full-catalogue top-10), users/s at batch 256, size on disk, peak RSS
    distill_cost     one epoch of the student: (a) no KD, (b) KD from the Parquet cache, (c) KD with
                     the teacher run online every step
    cache_io         soft-label write and read (rows/s, MB/s) against a plain pyarrow read
    training_speed   teacher epoch time at d=64, 2 layers, max length 50 (train and validation parts),
                     full softmax and sampled softmax; with ``full`` both trained to the best checkpoint
    scale            synthetic shops of 200k / 2M (/ 10M with ``full``) interactions: wall time and peak
                     RSS of ingest, validation, soft-label caching and one distillation epoch
"""

from __future__ import annotations

import multiprocessing as mp
import platform
import resource
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import torch

from shopdistill.benchmarks.stages import soft_labels_for, student_for, teacher_for
from shopdistill.components.artifacts import Handle, write_json_atomic
from shopdistill.components.config import ModelConfig, PipelineConfig, load_config
from shopdistill.components.data.dataset import load_dataset, prepare_dataset
from shopdistill.components.distill.batches import kd_batches
from shopdistill.components.distill.fused import linear_softmax_loss
from shopdistill.components.distill.objective import DistillationObjective
from shopdistill.components.evaluation import evaluate_model, last_position_scores, model_size_bytes
from shopdistill.components.models import build_model, count_parameters
from shopdistill.components.sequences import SequenceData
from shopdistill.components.soft_labels import SoftLabelReader, cache_soft_labels
from shopdistill.components.soft_labels.format import DATA_FILE
from shopdistill.components.training.loop import adamw
from shopdistill.components.training.losses import hard_label_loss, negative_proposal
from shopdistill.components.training.runtime import configure_torch

SECTIONS = ("serving", "distill_cost", "cache_io", "training_speed", "scale")


def _median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def _peak_rss_mb() -> float:
    """This process's peak resident memory. ``VmHWM`` belongs to the address space, so a freshly
    spawned process starts from zero; ``ru_maxrss`` survives exec and would carry the parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # elsewhere: KiB (Linux) as a fallback


def _in_subprocess(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run ``fn(*args)`` in a fresh process; its result gains ``peak_rss_mb`` of that process."""
    ctx = mp.get_context("spawn")
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        return pool.apply(_measured, (fn, *args))


def _measured(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    out = fn(*args)
    out["peak_rss_mb"] = round(_peak_rss_mb(), 1)
    return out


# ----------------------------------------------------------------------------------------- serving
def _requests(data: SequenceData, max_len: int, n: int, seed: int = 0) -> list[torch.Tensor]:
    users = np.random.default_rng(seed).choice(data.eval_users("test"), size=n, replace=True)
    return [data.eval_batch(np.array([u]), "test", max_len, mask_history=False).inputs for u in users]


def _latency(
    score: Callable[[torch.Tensor], torch.Tensor],
    requests: list[torch.Tensor],
    big: torch.Tensor,
    repeats: int,
    warmup: int = 50,
) -> dict[str, float]:
    """Median over ``repeats`` passes of p50/p99 ms per request (top-10), and users/s at batch 256."""
    for x in requests[:warmup]:
        torch.topk(score(x), 10, dim=1)
    p50s, p99s, tput = [], [], []
    for _ in range(repeats):
        times = []
        for x in requests:
            t0 = time.perf_counter()
            torch.topk(score(x), 10, dim=1)
            times.append(time.perf_counter() - t0)
        ms = np.array(times) * 1000
        p50s.append(float(np.percentile(ms, 50)))
        p99s.append(float(np.percentile(ms, 99)))
        t0 = time.perf_counter()
        torch.topk(score(big), 10, dim=1)
        tput.append(len(big) / (time.perf_counter() - t0))
    return {
        "latency_p50_ms": _median(p50s),
        "latency_p99_ms": _median(p99s),
        "throughput_users_per_s": _median(tput),
        "requests": len(requests),
        "repeats": repeats,
    }


def _serve_worker(
    kind: str, path: str, dataset: str, max_len: int, n_requests: int, repeats: int
) -> dict[str, Any]:
    """One engine in a fresh process (1 thread), so peak RSS is the engine's own."""
    configure_torch(1)
    data = SequenceData.from_path(dataset)
    base_rss = _peak_rss_mb()
    requests = _requests(data, max_len, n_requests)
    big = data.eval_batch(data.eval_users("test")[:256], "test", max_len, mask_history=False).inputs
    if kind == "torch":
        from shopdistill.components.models.checkpoint import load_teacher

        model = load_teacher(path)  # a checkpoint or an ensemble record
        lengths_of = lambda x: (x != 0).sum(dim=1).clamp(min=1)  # noqa: E731
        with torch.no_grad():
            out = _latency(lambda x: last_position_scores(model, x, lengths_of(x)), requests, big, repeats)
        out["size_mb"] = model_size_bytes(model) / 1e6
        out["params"] = count_parameters(model)
    else:
        from shopdistill.components.export import OnnxScorer

        scorer = OnnxScorer(path, quantized=kind == "onnx-int8", threads=1)
        out = _latency(lambda x: torch.from_numpy(scorer.scores(x.numpy())), requests, big, repeats)
        out["size_mb"] = scorer.model_path.stat().st_size / 1e6
    out["data_rss_mb"] = round(base_rss, 1)
    return out


def serving(
    config: PipelineConfig,
    data: SequenceData,
    data_uri: str,
    teacher_ckpt: Path,
    student_ckpt: Path,
    student: torch.nn.Module,
    workdir: Path,
    *,
    requests: int,
    repeats: int,
    log: Callable[[str], None],
) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {}
    t_len, s_len = config.teacher.model.max_len, config.student.model.max_len
    rows["teacher (torch)"] = _in_subprocess(
        _serve_worker, "torch", str(teacher_ckpt), data_uri, t_len, requests, repeats
    )
    rows["student (torch)"] = _in_subprocess(
        _serve_worker, "torch", str(student_ckpt), data_uri, s_len, requests, repeats
    )
    try:
        from shopdistill.components.export import export_onnx

        dataset = load_dataset(data_uri)
        export = export_onnx(student, workdir / "onnx", item_ids=dataset.item_map, max_len=s_len)
        for kind in ("onnx", "onnx-int8"):
            rows[f"student ({kind})"] = _in_subprocess(
                _serve_worker, kind, str(export.path), data_uri, s_len, requests, repeats
            )
        rows["student (onnx)"]["parity_max_abs_diff"] = export.manifest.get("parity_max_abs_diff")
    except ImportError as exc:
        export = None
        log(f"serving: ONNX rows skipped ({exc})")
    t_p99 = rows["teacher (torch)"]["latency_p99_ms"]
    for r in rows.values():
        r["p99_ratio_to_teacher"] = r["latency_p99_ms"] / t_p99
    out = {"rows": rows}
    if export is not None:
        out["onnx_accuracy"] = onnx_accuracy(student, data, export.path, s_len)
    return out


def onnx_accuracy(
    student: torch.nn.Module, data: SequenceData, export_dir: Path, max_len: int
) -> dict[str, Any]:
    """NDCG@10 of the student in torch and of its ONNX export (fp32, int8) on the test split."""
    from shopdistill.components.export import OnnxScorer, evaluate_onnx

    out = {"torch": evaluate_model(student, data, "test", max_len)["NDCG@10"]}
    for kind in ("onnx", "onnx-int8"):
        scorer = OnnxScorer(export_dir, quantized=kind == "onnx-int8", threads=torch.get_num_threads())
        out[kind] = evaluate_onnx(scorer, data, "test", max_len)["NDCG@10"]
    out["int8_delta"] = out["onnx-int8"] - out["onnx"]
    return out


# ------------------------------------------------------------------------------- distillation cost
def _epoch(step: Callable[[Any], torch.Tensor], batches, params) -> float:
    opt = adamw(params, lr=1e-3)
    t0 = time.perf_counter()
    for b in batches:
        loss = step(b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def distill_cost(
    config: PipelineConfig, data: SequenceData, teacher: torch.nn.Module, cache_uri: str, *, repeats: int
) -> dict[str, Any]:
    """Median epoch seconds of (a) no KD, (b) KD from the cache, (c) KD with the teacher online, and
    the median over repeats of the paired ratios b/a and b/c.

    All three use the same student, batch size, fused loss and thread count; (b) and (c) the same KD
    objective (the profile's), so the difference is where the teacher's knowledge comes from.
    """
    s_cfg, d_cfg, bs = config.student.model, config.distill, config.student.train.batch_size
    reader = SoftLabelReader(cache_uri)
    teacher.eval()
    k = d_cfg.top_k
    times: dict[str, list[float]] = {"no_kd": [], "kd_cache": [], "kd_online": []}
    for rep in range(repeats):
        for mode in times:
            torch.manual_seed(rep)
            student = build_model(s_cfg, data.n_items)
            rng = np.random.default_rng(rep)
            if mode == "no_kd":
                loss_fn = hard_label_loss(student)
                t = _epoch(
                    lambda b, f=loss_fn: f(b)[0],
                    data.iter_train_batches(bs, s_cfg.max_len, rng),
                    student.parameters(),
                )
            elif mode == "kd_cache":
                objective = DistillationObjective(d_cfg, s_cfg.d_model, reader.manifest.get("hidden_dim"))
                step = objective.step_loss(student)
                batches = kd_batches(
                    reader, data, bs, s_cfg.max_len, k, rng
                )  # exactly the trainer's input path
                t = _epoch(lambda b, f=step: f(b)[0], batches, student.parameters())
            else:

                def online(b, student=student):
                    with torch.no_grad():
                        h_t = teacher(b.inputs).hidden[b.mask]  # (N, d_T)
                        logits, cols = torch.topk(teacher.scores(h_t), k, dim=1)  # (N, K)
                    h = student(b.inputs).hidden[b.mask]
                    rows = torch.arange(len(h))
                    return linear_softmax_loss(
                        h,
                        student.output_weight(),
                        b.targets[b.mask] - 1,
                        w_hard=d_cfg.w_hard,
                        kd_rows=rows,
                        kd_cols=cols,
                        kd_logits=logits,
                        w_kd=d_cfg.w_logits,
                        temperature=d_cfg.temperature,
                    )[0]

                t = _epoch(online, data.iter_train_batches(bs, s_cfg.max_len, rng), student.parameters())
            times[mode].append(t)
    med = {m: _median(v) for m, v in times.items()}
    # The three modes run back to back within each repeat, so each repeat's ratio compares epochs
    # run under the same machine load; the median of those paired ratios is the reported figure
    # (on shared machines the absolute epoch time drifts by up to 2x within minutes).
    paired = {
        "kd_cache_over_no_kd": [c / a for c, a in zip(times["kd_cache"], times["no_kd"], strict=True)],
        "kd_cache_over_online": [c / o for c, o in zip(times["kd_cache"], times["kd_online"], strict=True)],
    }
    return {
        "epoch_seconds": med,
        "runs": times,
        "ratio_runs": paired,
        **{name: _median(v) for name, v in paired.items()},
        "kd_mode": d_cfg.kd_mode,
        "top_k": k,
    }


# ------------------------------------------------------------------------------------ cache I/O
def cache_io(cache_uri: str, workdir: Path, *, repeats: int) -> dict[str, Any]:
    """Write and read throughput of the soft-label Parquet file against a plain pyarrow read."""
    src = Path(cache_uri) / DATA_FILE
    table = pq.read_table(src)
    meta = pq.ParquetFile(src).metadata
    rows, file_mb = table.num_rows, src.stat().st_size / 1e6
    group_rows = meta.row_group(0).num_rows
    writes, reads, plain = [], [], []
    for _ in range(repeats):
        out = workdir / "cache_io.parquet"
        t0 = time.perf_counter()
        pq.write_table(table, out, compression="zstd", row_group_size=group_rows)
        writes.append(time.perf_counter() - t0)
        out.unlink()
        t0 = time.perf_counter()
        pq.read_table(src)
        plain.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        n = sum(len(block.users) for block in SoftLabelReader(cache_uri).iter_blocks())
        reads.append(time.perf_counter() - t0)
        if n != rows:
            raise RuntimeError(f"the reader returned {n:,} rows but {src} holds {rows:,}")
    w, r, p = _median(writes), _median(reads), _median(plain)
    return {
        "rows": rows,
        "file_mb": round(file_mb, 2),
        "arrow_mb": round(table.nbytes / 1e6, 2),
        "row_groups": meta.num_row_groups,
        "write_rows_per_s": rows / w,
        "write_mb_per_s": file_mb / w,
        "read_rows_per_s": rows / r,
        "read_mb_per_s": file_mb / r,
        "plain_read_rows_per_s": rows / p,
        "plain_read_mb_per_s": file_mb / p,
        "read_over_plain": r / p,
    }


# ------------------------------------------------------------------------------- training speed
SAMPLED_NEGATIVES = 2048  # the sampled-softmax variant of the training-speed section
SAMPLING = "mixed"  # its negatives: half uniform, half by popularity, logQ-corrected


def _teacher_epochs(
    config: PipelineConfig,
    data: SequenceData,
    m_cfg: ModelConfig,
    sampled: int | None,
    repeats: int,
    sampling: str = "uniform",
) -> dict[str, Any]:
    torch.manual_seed(0)
    model = build_model(m_cfg, data.n_items)
    loss_fn = hard_label_loss(
        model, sampled, negative_proposal(data.train_counts, sampling) if sampled else None
    )
    rng = np.random.default_rng(0)
    train_s, eval_s = [], []
    opt = adamw(model.parameters(), lr=config.teacher.train.lr)
    for _ in range(repeats):
        model.train()
        t0 = time.perf_counter()
        for b in data.iter_train_batches(config.teacher.train.batch_size, m_cfg.max_len, rng):
            loss = loss_fn(b)[0]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        train_s.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        evaluate_model(model, data, "valid", m_cfg.max_len)
        eval_s.append(time.perf_counter() - t0)
    return {
        "sampled_negatives": sampled,
        **({"sampling": sampling} if sampled else {}),
        "params": count_parameters(model),
        "train_epoch_s": _median(train_s),
        "valid_eval_s": _median(eval_s),
        "epoch_with_eval_s": _median(train_s) + _median(eval_s),
        "runs": train_s,
    }


CONVERGE_SEEDS = 2  # seeds per loss when both are trained to their best checkpoint


def _converge(
    config: PipelineConfig,
    data: SequenceData,
    digest: str,
    m_cfg: ModelConfig,
    sampled: int | None,
    log: Callable[[str], None],
    sampling: str = "uniform",
    seeds: int = CONVERGE_SEEDS,
) -> dict[str, Any]:
    """Train the teacher to its best checkpoint for ``seeds`` seeds (the profile's schedule and early
    stopping; reused when stored) and report how long that took and how good it is on validation
    (per seed, and the mean over seeds)."""
    train = config.teacher.train.model_copy(update={"sampled_negatives": sampled, "sampling": sampling})
    teacher = config.teacher.model_copy(update={"model": m_cfg, "train": train, "ensemble": 1})
    runs = []
    for seed in range(config.runtime.seed, config.runtime.seed + seeds):
        _, run = teacher_for(config.model_copy(update={"teacher": teacher}), data, digest, seed, log=log)
        r = run.members[0]
        runs.append(
            {
                "seed": seed,
                "epochs": len(r.history),
                "best_epoch": r.best_epoch,
                "valid_NDCG@10": r.best_valid["NDCG@10"],
                "seconds_to_best": sum(h["seconds"] for h in r.history[: r.best_epoch]),
                "seconds_total": sum(h["seconds"] for h in r.history),
            }
        )
    return {"runs": runs, **{k: float(np.mean([r[k] for r in runs])) for k in runs[0] if k != "seed"}}


def training_speed(
    config: PipelineConfig,
    data: SequenceData,
    digest: str,
    *,
    repeats: int,
    converge: bool,
    log: Callable[[str], None],
    sampled_negatives: int = SAMPLED_NEGATIVES,
    sampling: str = SAMPLING,
    converge_seeds: int = CONVERGE_SEEDS,
) -> dict[str, Any]:
    """Teacher epoch time at d=64, 2 layers, max length 50 (the reference size), with the
    full-catalogue softmax and with a sampled softmax (``sampled_negatives`` shared negatives drawn by ``sampling``,
    ``train.sampled_negatives``); with ``converge`` both are trained to their best checkpoint
    (``converge_seeds`` seeds each, means reported), so the speed of the sampled loss is shown next to
    what it costs in validation NDCG@10."""
    m_cfg = config.teacher.model.model_copy(
        update={"d_model": 64, "n_layers": 2, "n_heads": 2, "max_len": 50}
    )
    out: dict[str, Any] = {
        "model": m_cfg.model_dump(),
        **_teacher_epochs(config, data, m_cfg, None, repeats),
        "output_layer": output_layer_floor(data, m_cfg.d_model, m_cfg.max_len, repeats=repeats),
    }
    out["sampled"] = _teacher_epochs(config, data, m_cfg, sampled_negatives, repeats, sampling)
    if converge:
        out["converged"] = _converge(config, data, digest, m_cfg, None, log, seeds=converge_seeds)
        out["sampled"]["converged"] = _converge(
            config, data, digest, m_cfg, sampled_negatives, log, sampling, seeds=converge_seeds
        )
        out["sampled"]["valid_ratio_to_full"] = (
            out["sampled"]["converged"]["valid_NDCG@10"] / out["converged"]["valid_NDCG@10"]
        )
    return out


def gemm_gflops(n: int = 1536, repeats: int = 5) -> float:
    """This CPU's fp32 matrix-multiply rate on a large square product (the practical peak)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / _median(times) / 1e9


def output_layer_floor(data: SequenceData, dim: int, max_len: int, *, repeats: int) -> dict[str, Any]:
    """What the full-catalogue cross-entropy alone costs per epoch, and its arithmetic floor.

    Every epoch computes three (N x d) by (d x I) products over all N predicted positions (the
    scores, and the gradients for the hidden states and the item table): 6 N I d FLOPs. Timing
    :func:`linear_softmax_loss` on random hidden states of the epoch's size, next to the CPU's
    square-GEMM rate, says how much of the epoch is this layer and how close it runs to the peak.
    """
    n = int(data.train_positions(max_len).sum())
    g = torch.Generator().manual_seed(0)
    h = torch.randn(n, dim, generator=g) * 0.1
    w = torch.randn(data.n_items, dim, generator=g) * 0.1
    y = torch.randint(0, data.n_items, (n,), generator=g)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        linear_softmax_loss(h, w, y)  # values and both gradients are computed in the forward pass
        times.append(time.perf_counter() - t0)
    flops = 6.0 * n * data.n_items * dim
    peak = gemm_gflops()
    seconds = _median(times)
    return {
        "positions": n,
        "items": data.n_items,
        "seconds": seconds,
        "gflops": flops / seconds / 1e9,
        "gemm_peak_gflops": peak,
        "floor_s": flops / peak / 1e9,
    }


# ------------------------------------------------------------------------------------------- scale
def _scale_worker(
    stage: str, config_json: dict[str, Any], root: str, threads: int, dataset: tuple[str, str] | None = None
) -> dict[str, Any]:
    configure_torch(threads)
    config = PipelineConfig.model_validate(config_json)
    t0 = time.perf_counter()
    if stage in ("ingest", "ingest+validate"):
        prepared = prepare_dataset(config.data, root, validate=stage == "ingest+validate")
        return {
            "seconds": time.perf_counter() - t0,
            "interactions": prepared.manifest["counts"]["interactions"],
            "dataset": prepared.handle.uri,
            "digest": prepared.handle.sha256,
        }
    # the dataset the ingest stage wrote, read from disk (regenerating it would measure the generator)
    uri, digest = dataset
    data = SequenceData.from_path(uri)
    torch.manual_seed(0)
    teacher = build_model(
        config.teacher.model, data.n_items
    ).eval()  # untrained: cost does not depend on weights

    def cache() -> tuple[Handle, dict[str, Any], bool]:
        return cache_soft_labels(
            teacher,
            data,
            root,
            teacher_digest="scale-" + "0" * 58,
            dataset_digest=digest,
            max_len=config.teacher.model.max_len,
            top_k=config.distill.top_k,
        )

    if stage == "cache":
        t0 = time.perf_counter()
        handle, manifest, _ = cache()
        return {
            "seconds": time.perf_counter() - t0,
            "rows": manifest["rows"],
            "cache_mb": manifest["files"][DATA_FILE]["bytes"] / 1e6,
        }
    # one distillation epoch from the cache built by the "cache" stage
    cached = cache()[0]
    base = _peak_rss_mb()
    t0 = time.perf_counter()
    s_cfg, d_cfg = config.student.model, config.distill
    student = build_model(s_cfg, data.n_items)
    reader = SoftLabelReader(cached.uri)
    step = DistillationObjective(d_cfg, s_cfg.d_model, None).step_loss(student)
    rng = np.random.default_rng(0)
    batches = kd_batches(reader, data, config.student.train.batch_size, s_cfg.max_len, d_cfg.top_k, rng)
    seconds = _epoch(lambda b: step(b)[0], batches, student.parameters())
    return {
        "seconds": seconds,
        "rss_before_epoch_mb": round(base, 1),
        "setup_s": time.perf_counter() - t0 - seconds,
    }


def scale(
    config: PipelineConfig, sizes: tuple[int, ...], workdir: Path, *, log: Callable[[str], None]
) -> dict[str, Any]:
    """Each stage in its own process at each size; users scale with the target interaction count."""
    rows = []
    for target in sizes:
        users = max(int(target / 16.5), 100)  # the demo generator yields ~16.5 events per user
        # the built-in synthetic shop (the demo profile's data section), resized; models from ``config``
        demo = load_config(profile="demo").data
        src = demo.source.model_copy(update={"n_users": users, "n_items": 5000, "seed": 0})
        cfg = config.model_copy(
            update={"data": demo.model_copy(update={"name": f"scale-{target}", "source": src})}
        )
        root = workdir / f"scale-{target}"
        row: dict[str, Any] = {"target_interactions": target, "users": users}
        for stage in ("ingest", "ingest+validate", "cache", "distill_epoch"):
            log(f"scale {target:,}: {stage}")
            dataset = (row["ingest"]["dataset"], row["ingest"]["digest"]) if "ingest" in row else None
            row[stage] = _in_subprocess(
                _scale_worker, stage, cfg.model_dump(mode="json"), str(root), config.runtime.threads, dataset
            )
        row["interactions"] = row["ingest"]["interactions"]
        rows.append(row)
        shutil.rmtree(root, ignore_errors=True)
    out: dict[str, Any] = {"rows": rows}
    if len(rows) >= 2:
        a, b = rows[0], rows[-1]
        grow = b["interactions"] / a["interactions"]
        out["interaction_growth"] = grow
        for stage in ("ingest", "ingest+validate", "cache", "distill_epoch"):
            out[f"{stage}_time_growth"] = b[stage]["seconds"] / a[stage]["seconds"]
        # peak RSS of distillation per 10x of cache rows (log-scaled to the measured growth)
        rss = b["distill_epoch"]["peak_rss_mb"] / a["distill_epoch"]["peak_rss_mb"]
        out["distill_rss_growth"] = rss
        out["distill_rss_growth_per_10x"] = float(rss ** (1 / np.log10(grow))) if grow > 1 else 1.0
    return out


# ------------------------------------------------------------------------------------------ driver
def run_perf_benchmark(
    config: PipelineConfig,
    out_dir: str | Path,
    *,
    full: bool = False,
    repeats: int = 3,
    requests: int = 1000,
    sections: tuple[str, ...] = SECTIONS,
    scale_sizes: tuple[int, ...] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every section (or those named); ``report.json`` + ``report.md`` under ``out_dir``."""
    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    configure_torch(config.runtime.threads)
    seed = config.runtime.seed
    result: dict[str, Any] = {"full": full, "repeats": repeats, "sections": {}, "timings_s": {}}
    need_models = {"serving", "distill_cost", "cache_io", "training_speed"} & set(sections)
    with tempfile.TemporaryDirectory(prefix="shopdistill-bench-") as tmp:
        workdir = Path(tmp)
        if need_models:
            prepared = prepare_dataset(config.data, config.runtime.root, report_dir=out_dir)
            data = SequenceData.from_path(prepared.handle.uri)
            digest = prepared.handle.sha256
            teacher, t_result = teacher_for(config, data, digest, seed, log=log)
            cache, _, _ = soft_labels_for(config, data, digest, teacher, t_result)
            result["dataset"] = {"name": config.data.name, "users": data.n_users, "items": data.n_items}
        for name in sections:
            t0 = time.perf_counter()
            log(f"bench: {name}")
            if name == "serving":
                student, s_result = student_for(
                    config,
                    data,
                    digest,
                    config.student.model,
                    cache,
                    seed,
                    log=log,
                    name=f"student-{config.student.model.arch}-kd",
                )
                sec = serving(
                    config,
                    data,
                    prepared.handle.uri,
                    t_result.checkpoint,
                    s_result.checkpoint,
                    student,
                    workdir,
                    requests=requests,
                    repeats=repeats,
                    log=log,
                )
            elif name == "distill_cost":
                sec = distill_cost(config, data, teacher, cache.uri, repeats=repeats)
            elif name == "cache_io":
                sec = cache_io(cache.uri, workdir, repeats=repeats)
            elif name == "training_speed":
                sec = training_speed(config, data, digest, repeats=repeats, converge=full, log=log)
            elif name == "scale":
                sizes = scale_sizes or ((200_000, 2_000_000, 10_000_000) if full else (200_000, 2_000_000))
                sec = scale(config, sizes, workdir, log=log)
            else:
                raise ValueError(f"unknown benchmark section {name!r}")
            result["sections"][name] = sec
            result["timings_s"][name] = round(time.perf_counter() - t0, 1)
    result["targets"] = _targets(result["sections"])
    result["timings_s"]["total"] = round(time.perf_counter() - t_start, 1)
    result["machine"] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": _cpu_name(),
        "cores": mp.cpu_count(),
        "threads": config.runtime.threads,
    }
    write_json_atomic(out_dir / "report.json", result)
    (out_dir / "report.md").write_text(render_perf(result))
    return result


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _targets(sections: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    if "serving" in sections:
        for engine, row in sections["serving"]["rows"].items():  # the torch student and its exports
            if engine.startswith("student"):
                v = row["p99_ratio_to_teacher"]
                out.append({"check": f"{engine} p99 <= 0.1 x teacher p99", "value": v, "passed": v <= 0.1})
    if "distill_cost" in sections:
        d = sections["distill_cost"]
        out.append(
            {
                "check": "KD from cache / no KD epoch <= 1.25",
                "value": d["kd_cache_over_no_kd"],
                "passed": d["kd_cache_over_no_kd"] <= 1.25,
            }
        )
        out.append(
            {
                "check": "KD from cache / online teacher epoch <= 0.5",
                "value": d["kd_cache_over_online"],
                "passed": d["kd_cache_over_online"] <= 0.5,
            }
        )
    if "scale" in sections and "distill_rss_growth_per_10x" in sections["scale"]:
        v = sections["scale"]["distill_rss_growth_per_10x"]
        out.append(
            {"check": "distillation peak RSS growth <= 1.2x for a 10x cache", "value": v, "passed": v <= 1.2}
        )
    if "training_speed" in sections:
        t = sections["training_speed"]
        v = t["train_epoch_s"]
        out.append({"check": "teacher epoch (d=64, 2 layers) <= 10 s", "value": v, "passed": v <= 10.0})
        if "sampled" in t:
            v = t["sampled"]["train_epoch_s"]
            out.append(
                {
                    "check": f"teacher epoch, sampled softmax (S={t['sampled']['sampled_negatives']}) <= 10 s",
                    "value": v,
                    "passed": v <= 10.0,
                }
            )
        if "valid_ratio_to_full" in t.get("sampled", {}):
            v = t["sampled"]["valid_ratio_to_full"]
            n = len(t["sampled"]["converged"]["runs"])
            out.append(
                {
                    "check": f"sampled-softmax teacher valid NDCG@10 >= 0.98 x full softmax (mean of {n} seeds)",
                    "value": v,
                    "passed": v >= 0.98,
                }
            )
    return out


def render_perf(result: dict[str, Any]) -> str:
    m, s = result["machine"], result["sections"]
    lines = [
        f"# Performance benchmark ({'full' if result['full'] else 'quick'})",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, training threads {m['threads']}; "
        f"every figure is the median of {result['repeats']} runs; total {result['timings_s']['total'] / 60:.1f} min.",
        "",
    ]
    if "serving" in s:
        lines += [
            "## Serving (batch 1, 1 thread, full-catalogue top-10)",
            "",
            "| engine | p50 ms | p99 ms | p99 / teacher | users/s @256 | size MB | peak RSS MB |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, r in s["serving"]["rows"].items():
            lines.append(
                f"| {name} | {r['latency_p50_ms']:.2f} | {r['latency_p99_ms']:.2f} | {r['p99_ratio_to_teacher']:.3f} | "
                f"{r['throughput_users_per_s']:,.0f} | {r['size_mb']:.2f} | {r['peak_rss_mb']:.0f} |"
            )
        if "onnx_accuracy" in s["serving"]:
            a = s["serving"]["onnx_accuracy"]
            lines += [
                "",
                f"Test NDCG@10: torch {a['torch']:.4f}, ONNX {a['onnx']:.4f}, ONNX int8 {a['onnx-int8']:.4f} "
                f"(int8 delta {a['int8_delta']:+.4f}).",
            ]
        lines.append("")
    if "distill_cost" in s:
        d = s["distill_cost"]
        e = d["epoch_seconds"]
        lines += [
            "## Distillation cost (one student epoch)",
            "",
            "| no KD s | KD from cache s | KD, teacher online s | cache / no KD | cache / online |",
            "|---|---|---|---|---|",
            f"| {e['no_kd']:.1f} | {e['kd_cache']:.1f} | {e['kd_online']:.1f} | {d['kd_cache_over_no_kd']:.2f} | "
            f"{d['kd_cache_over_online']:.2f} |",
            "",
            "Epoch seconds are medians; the ratios are medians of the ratios within each repeat (the three "
            "epochs of a repeat run back to back under the same machine load).",
            "",
        ]
    if "cache_io" in s:
        c = s["cache_io"]
        lines += [
            f"## Soft-label cache I/O ({c['rows']:,} rows, {c['file_mb']} MB on disk, {c['arrow_mb']} MB in Arrow)",
            "",
            "| operation | rows/s | MB/s (on disk) |",
            "|---|---|---|",
            f"| write (zstd) | {c['write_rows_per_s']:,.0f} | {c['write_mb_per_s']:.1f} |",
            f"| read (SoftLabelReader, to numpy) | {c['read_rows_per_s']:,.0f} | {c['read_mb_per_s']:.1f} |",
            f"| plain pyarrow read_table | {c['plain_read_rows_per_s']:,.0f} | {c['plain_read_mb_per_s']:.1f} |",
            "",
        ]
    if "training_speed" in s:
        t = s["training_speed"]
        lines += [
            "## Training speed (teacher d=64, 2 layers, max length 50)",
            "",
            f"Train epoch {t['train_epoch_s']:.1f} s (full-catalogue softmax), validation {t['valid_eval_s']:.1f} s.",
        ]
        if "output_layer" in t:
            o = t["output_layer"]
            lines.append(
                f"Of the epoch, the full-catalogue cross-entropy alone ({o['positions']:,} positions x {o['items']:,} items, "
                f"three products) takes {o['seconds']:.1f} s at {o['gflops']:.0f} GFLOPS; this CPU's square-GEMM rate is "
                f"{o['gemm_peak_gflops']:.0f} GFLOPS, so those products need at least {o['floor_s']:.1f} s."
            )
        if "sampled" in t:
            sm = t["sampled"]
            lines += [
                "",
                "| loss | train epoch s | validation s | epochs (best), per seed | valid NDCG@10, per seed | min to best, per seed |",
                "|---|---|---|---|---|---|",
            ]
            for name, v in (
                ("full softmax", t),
                (f"sampled softmax, {sm['sampled_negatives']} {sm.get('sampling', 'uniform')} negatives", sm),
            ):
                c = v.get("converged")
                conv = (
                    " | ".join(
                        (
                            ", ".join(f"{r['epochs']} ({r['best_epoch']})" for r in c["runs"]),
                            ", ".join(f"{r['valid_NDCG@10']:.4f}" for r in c["runs"])
                            + f" (mean {c['valid_NDCG@10']:.4f})",
                            ", ".join(f"{r['seconds_to_best'] / 60:.1f}" for r in c["runs"]),
                        )
                    )
                    if c
                    else "not run (--full) | | "
                )
                lines.append(f"| {name} | {v['train_epoch_s']:.1f} | {v['valid_eval_s']:.1f} | {conv} |")
        lines.append("")
    if "scale" in s:
        sc = s["scale"]
        lines += [
            "## Scale (synthetic shop, 5,000 items; one process per stage)",
            "",
            "| interactions | ingest s | + validation s | caching s | distill epoch s | peak RSS MB (ingest / +val / cache / distill) | distill: RSS before the epoch / added by it MB |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in sc["rows"]:
            de = r["distill_epoch"]
            before = de.get("rss_before_epoch_mb")
            split = f"{before:.0f} / {de['peak_rss_mb'] - before:.0f}" if before is not None else ""
            lines.append(
                f"| {r['interactions']:,} | {r['ingest']['seconds']:.1f} | {r['ingest+validate']['seconds']:.1f} | "
                f"{r['cache']['seconds']:.1f} | {de['seconds']:.1f} | "
                f"{r['ingest']['peak_rss_mb']:.0f} / {r['ingest+validate']['peak_rss_mb']:.0f} / "
                f"{r['cache']['peak_rss_mb']:.0f} / {de['peak_rss_mb']:.0f} | {split} |"
            )
        if "interaction_growth" in sc:
            lines.append(
                f"\nInteractions x{sc['interaction_growth']:.1f}: time x{sc['ingest_time_growth']:.1f} ingest, "
                f"x{sc['cache_time_growth']:.1f} caching, x{sc['distill_epoch_time_growth']:.1f} distillation; "
                f"distillation peak RSS x{sc['distill_rss_growth']:.2f}."
            )
        lines.append("")
    lines += ["## Targets", "", "| target | measured | met |", "|---|---|---|"]
    for t in result["targets"]:
        lines.append(f"| {t['check']} | {t['value']:.3f} | {'yes' if t['passed'] else 'no'} |")
    return "\n".join(lines) + "\n"
