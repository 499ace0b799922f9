"""Students distilled from the soft-label cache: batch alignment, the objective, item init, prefetch."""

import numpy as np
import pytest
import torch

from shopdistill.components.config import DistillConfig, TrainConfig
from shopdistill.components.distill import batches as batches_module
from shopdistill.components.distill import objective as objective_module
from shopdistill.components.distill import student as student_module
from shopdistill.components.distill.batches import kd_batch
from shopdistill.components.distill.student import distill_student
from shopdistill.components.models import build_model
from shopdistill.components.soft_labels import (
    SoftLabelCacheError,
    SoftLabelReader,
)
from tests.components.tiny_teacher import DATA, STUDENT, build


def test_kd_batch_alignment_and_mismatch(teacher, tiny_data, tmp_path):
    handle, _, _ = build(teacher, tiny_data, tmp_path, cache_hidden=True)
    reader = SoftLabelReader(handle.path)
    users, block = next(reader.iter_user_batches(8, tiny_data.train_positions(20)))
    kb = kd_batch(tiny_data, users, block, max_len=20)
    assert bool(kb.matched.all()) and kb.topk_cols.shape == (int(kb.train.mask.sum()), 10)
    # a shorter student window matches the most recent positions only
    short = kd_batch(tiny_data, users, block, max_len=3)
    assert short.matched.all() and short.topk_cols.shape[0] == int(short.train.mask.sum())
    corrupted = block.__class__(**{**block.__dict__, "targets": block.targets + 1})
    with pytest.raises(SoftLabelCacheError, match="does not match the training data"):
        kd_batch(tiny_data, users, corrupted, max_len=20)


@pytest.mark.parametrize(
    "mode,temperature,w_ranking",
    [
        ("full", 1.0, 0.0),
        ("full", 2.0, 0.0),
        ("topk", 2.0, 0.0),
        ("full", 1.0, 0.5),
        ("full", 2.0, 0.5),
        ("topk", 1.0, 0.5),
    ],
)
def test_fused_objective_equals_the_plain_formula(teacher, tiny_data, tmp_path, mode, temperature, w_ranking):
    """The objective's fused CE + logits KD (+ ranking KD) step gives the textbook loss and gradients."""
    import torch.nn.functional as F

    from shopdistill.components.distill.losses import LogitsKD, RankingKD

    handle, _, _ = build(teacher, tiny_data, tmp_path, logits_dtype="float32")
    users, block = next(SoftLabelReader(handle.path).iter_user_batches(8, tiny_data.train_positions(20)))
    kb = kd_batch(tiny_data, users, block, max_len=20)
    cfg = DistillConfig(
        kd_mode=mode, temperature=temperature, w_hard=0.7, w_logits=1.3, w_ranking=w_ranking, ranking_k=5
    )
    torch.manual_seed(0)
    student = build_model(STUDENT.model_copy(update={"dropout": 0.0}), tiny_data.n_items)
    objective = objective_module.DistillationObjective(cfg, STUDENT.d_model, None)
    loss, parts = objective.step_loss(student)(kb)
    loss.backward()
    grads = [p.grad.clone() for p in student.parameters()]
    student.zero_grad()

    scores = student.scores(student(kb.train.inputs).hidden[kb.train.mask])
    ce = F.cross_entropy(scores, kb.train.targets[kb.train.mask] - 1)
    kd = LogitsKD(temperature, mode)(scores[kb.matched], kb.topk_cols, kb.teacher_logits)
    rk = RankingKD(5, cfg.ranking_lambda)(scores[kb.matched], kb.topk_cols)
    ref = 0.7 * ce + 1.3 * kd + w_ranking * rk
    ref.backward()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)
    assert parts["kd_logits"] == pytest.approx(kd.item(), rel=1e-5)
    if w_ranking:
        assert parts["kd_ranking"] == pytest.approx(rk.item(), rel=1e-5)
    for got, p in zip(grads, student.parameters(), strict=True):
        torch.testing.assert_close(got, p.grad, rtol=1e-4, atol=1e-6)


def test_student_trains_from_the_cache_without_the_teacher(teacher, tiny_data, tmp_path, monkeypatch):
    handle, _, _ = build(teacher, tiny_data, tmp_path, cache_hidden=True)
    built = []
    real_build = student_module.build_model
    monkeypatch.setattr(student_module, "build_model", lambda cfg, n: built.append(cfg) or real_build(cfg, n))

    def no_torch_load(*a, **k):
        raise AssertionError("the trainer must not load any checkpoint (the teacher)")

    monkeypatch.setattr(torch, "load", no_torch_load)
    cfg = DistillConfig(
        top_k=10, cache_hidden=True, w_logits=1.0, w_feature=0.5, w_relation=0.5, w_ranking=0.5
    )
    student, result = distill_student(
        tiny_data,
        STUDENT,
        TrainConfig(epochs=2, batch_size=32),
        cfg,
        tmp_path / "kd",
        cache=handle,
        dataset_digest=DATA,
        log=lambda m: None,
    )
    assert built == [STUDENT]
    parts = result.history[-1]
    assert {"ce", "kd_logits", "kd_feature", "kd_relation", "kd_ranking"} <= set(parts)
    assert all(np.isfinite(parts[k]) for k in ("kd_logits", "kd_feature", "kd_relation", "kd_ranking"))
    # the projector is trained but is not part of the exported student
    assert not any(k.startswith("projector") for k in student.state_dict())


def test_no_kd_baseline_and_missing_hidden(teacher, tiny_data, tmp_path):
    handle, _, _ = build(teacher, tiny_data, tmp_path)  # no hidden states cached
    _, result = distill_student(
        tiny_data,
        STUDENT,
        TrainConfig(epochs=1),
        DistillConfig(),
        tmp_path / "nokd",
        dataset_digest=DATA,
        log=lambda m: None,
    )
    assert set(result.history[0]) >= {"ce"} and "kd_logits" not in result.history[0]
    with pytest.raises(SoftLabelCacheError, match="built without them; set distill.cache_hidden=true"):
        distill_student(
            tiny_data,
            STUDENT,
            TrainConfig(epochs=1),
            DistillConfig(cache_hidden=True, w_feature=1.0),
            tmp_path / "feat",
            cache=handle,
            dataset_digest=DATA,
            log=lambda m: None,
        )


def test_prefetch_keeps_order_reraises_and_stops_early():
    import threading

    from shopdistill.components.distill.batches import prefetch

    assert list(prefetch(iter(range(50)))) == list(range(50))

    def broken():
        yield 1
        raise SoftLabelCacheError("corrupt block")

    with pytest.raises(SoftLabelCacheError, match="corrupt block"):
        list(prefetch(broken()))
    gen = prefetch(iter(range(1000)), depth=1)
    assert next(gen) == 0
    gen.close()  # the consumer stops (e.g. the wall-clock budget): the worker thread ends too
    assert not any(t.name == "soft-label-prefetch" and t.is_alive() for t in threading.enumerate())


@pytest.mark.parametrize("cores,threads,prefetched", [(2, 1, True), (2, 2, False), (1, 1, False)])
def test_kd_batches_prefetch_only_with_a_spare_core(
    teacher, tiny_data, tmp_path, monkeypatch, cores, threads, prefetched
):
    handle, manifest, _ = build(teacher, tiny_data, tmp_path)
    calls = []
    real_prefetch = batches_module.prefetch
    monkeypatch.setattr(batches_module, "prefetch", lambda items: calls.append(1) or real_prefetch(items))
    monkeypatch.setattr(batches_module, "available_cores", lambda: cores)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        reader = SoftLabelReader(handle.path)
        batches = list(batches_module.kd_batches(reader, tiny_data, 16, 20, 5, np.random.default_rng(0)))
    finally:
        torch.set_num_threads(before)
    assert bool(calls) == prefetched
    assert sum(int(b.matched.sum()) for b in batches) == manifest["rows"]


def test_item_init_from_teacher_is_the_scaled_rank_d_svd():
    from shopdistill.components.distill.item_init import item_init_from_teacher

    rng = np.random.default_rng(0)
    items = (rng.normal(size=(300, 6)) @ rng.normal(size=(6, 32))).astype(np.float32)  # rank 6
    x = item_init_from_teacher(items, 4)
    assert x.shape == (300, 4)
    assert abs(float(x.std()) - 4**-0.5) < 1e-5  # the models' own init scale
    u = np.linalg.svd(items, full_matrices=False)[0][:, :4]
    np.testing.assert_allclose(u @ (u.T @ x.numpy()), x.numpy(), atol=1e-4)  # inside the top-4 subspace
    # column j is u_j * sqrt(s_j): x^T x = c^2 diag(s_1..s_4)
    s = np.linalg.svd(items, compute_uv=False)[:4]
    gram = x.numpy().T @ x.numpy()
    np.testing.assert_allclose(gram, np.diag(np.diag(gram)), atol=1e-4)
    np.testing.assert_allclose(np.diag(gram) / gram[0, 0], s / s[0], rtol=1e-4)
    with pytest.raises(
        ValueError, match=r"student \(d=64\) is wider than the teacher's item embeddings \(D=32\)"
    ):
        item_init_from_teacher(items, 64)


def test_student_items_start_from_the_teacher_and_the_baseline_ignores_it(teacher, tiny_data, tmp_path):
    from shopdistill.components.distill.item_init import item_init_from_teacher

    handle, _, _ = build(teacher, tiny_data, tmp_path)
    cfg = DistillConfig(top_k=10, item_init="teacher")
    frozen = TrainConfig(epochs=1, batch_size=32, lr=1e-9)  # one step of nothing: the start is kept
    student, _ = distill_student(
        tiny_data,
        STUDENT,
        frozen,
        cfg,
        tmp_path / "init",
        cache=handle,
        dataset_digest=DATA,
        log=lambda m: None,
    )
    want = item_init_from_teacher(SoftLabelReader(handle.path).teacher_items(), STUDENT.d_model)
    torch.testing.assert_close(student.item_emb.weight[1:].detach(), want, atol=1e-6, rtol=0)
    # the no-KD baseline learns without the teacher, whatever the distill section says
    base, _ = distill_student(
        tiny_data, STUDENT, frozen, cfg, tmp_path / "nokd", dataset_digest=DATA, log=lambda m: None
    )
    assert not torch.allclose(base.item_emb.weight[1:], want, atol=1e-3)
    with pytest.raises(ValueError, match="wider than the teacher's item embeddings"):
        wide = STUDENT.model_copy(update={"d_model": 32})
        distill_student(
            tiny_data,
            wide,
            frozen,
            cfg,
            tmp_path / "wide",
            cache=handle,
            dataset_digest=DATA,
            log=lambda m: None,
        )


def test_a_pq_student_takes_its_codes_from_the_teachers_items(teacher, tiny_data, tmp_path):
    from shopdistill.components.distill.item_init import item_init_from_teacher
    from shopdistill.components.models.embeddings import pq_codes

    handle, _, _ = build(teacher, tiny_data, tmp_path)
    cfg = DistillConfig(top_k=10, item_init="teacher")
    pq = STUDENT.model_copy(update={"item_embedding": "pq", "pq_groups": 2, "pq_centroids": 8})
    frozen = TrainConfig(epochs=1, batch_size=32, lr=1e-9)
    student, result = distill_student(
        tiny_data, pq, frozen, cfg, tmp_path / "pq", cache=handle, dataset_digest=DATA, log=lambda m: None
    )
    start = item_init_from_teacher(SoftLabelReader(handle.path).teacher_items(), pq.d_model).numpy()
    codes, books = pq_codes(start, groups=2, centroids=8, seed=0)
    np.testing.assert_array_equal(student.item_emb.codes.numpy(), codes)
    torch.testing.assert_close(
        student.item_emb.codebooks.detach(), torch.from_numpy(books), atol=1e-5, rtol=0
    )
    assert result.best_valid["NDCG@10"] > 0
    # a quotient-remainder student has no per-item rows to start: it trains from its own start
    qr = STUDENT.model_copy(update={"item_embedding": "qr"})
    _, result = distill_student(
        tiny_data, qr, frozen, cfg, tmp_path / "qr", cache=handle, dataset_digest=DATA, log=lambda m: None
    )
    assert result.trained_epochs == 1


def test_a_pq_student_without_a_teacher_takes_its_codes_from_the_interactions(tiny_data, tmp_path):
    from shopdistill.components.distill.item_init import item_init_from_interactions
    from shopdistill.components.models.embeddings import pq_codes

    pq = STUDENT.model_copy(
        update={"item_embedding": "pq", "pq_groups": 2, "pq_centroids": 8, "pq_full_rows": 5}
    )
    frozen = TrainConfig(epochs=1, batch_size=32, lr=1e-9)
    student, _ = distill_student(
        tiny_data, pq, frozen, DistillConfig(), tmp_path / "pq", dataset_digest=DATA, log=lambda m: None
    )
    start = item_init_from_interactions(tiny_data, pq.d_model, seed=0).numpy()
    head = np.argsort(-tiny_data.train_counts[1:], kind="stable")[:5]
    coded = np.ones(tiny_data.n_items, dtype=bool)
    coded[head] = False
    codes, _ = pq_codes(start, groups=2, centroids=8, seed=0, fit_rows=coded)
    np.testing.assert_array_equal(student.item_emb.codes.numpy(), codes)
    # the five most frequent items in training start their own rows at their interaction factors
    np.testing.assert_allclose(student.item_emb.weight[1:][head].detach().numpy(), start[head], atol=1e-6)


def test_interaction_factors_place_items_bought_by_the_same_users_together():
    from shopdistill.components.distill.item_init import item_init_from_interactions

    # two groups of items, each bought only by its own half of the users
    from shopdistill.components.sequences import SequenceData

    users = np.repeat(np.arange(40), 4)
    items = np.concatenate([[1, 2, 3, 1] if u % 2 else [4, 5, 6, 4] for u in range(40)])
    is_train = np.tile([True, True, True, False], 40)
    last = ~is_train
    data = SequenceData.from_arrays(users, items, is_train, last, np.zeros_like(last), n_users=40, n_items=6)
    x = item_init_from_interactions(data, d=2).numpy()  # (6, 2)
    sim = x @ x.T / np.outer(np.linalg.norm(x, axis=1), np.linalg.norm(x, axis=1))
    assert sim[0, 1] > 0.9 and sim[3, 4] > 0.9 and abs(sim[0, 3]) < 0.1  # items 1, 2 vs 4, 5
    assert x.shape == (6, 2) and abs(x.std() - 2**-0.5) < 1e-5
