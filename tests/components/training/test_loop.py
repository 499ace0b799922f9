import numpy as np
import pytest
import torch

from shopdistill.components.config import ModelConfig, TrainConfig
from shopdistill.components.models import build_model
from shopdistill.components.models.checkpoint import load_model
from shopdistill.components.training.loop import BEST, LAST, TrainingDivergedError, fit

MODEL = ModelConfig(d_model=8, n_layers=1, n_heads=1, dropout=0.2, max_len=20)
TRAIN = TrainConfig(epochs=4, batch_size=64, lr=3e-3, patience=10)


def quiet(_msg):
    pass


def fresh():
    torch.manual_seed(0)
    return build_model(MODEL, 80)


def test_training_improves_and_keeps_best(tiny_data, tmp_path):
    model = build_model(MODEL, tiny_data.n_items)
    result = fit(model, tiny_data, MODEL, TRAIN, tmp_path, log=quiet)
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4]
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    assert result.best_valid["NDCG@10"] == max(h["valid"]["NDCG@10"] for h in result.history)
    assert result.stopped == "epochs"
    # best.pt is a plain state dict + config, loadable with weights_only=True
    loaded, cfg, meta = load_model(tmp_path / BEST)
    assert cfg == MODEL and meta["best_epoch"] == result.best_epoch
    for a, b in zip(loaded.state_dict().values(), model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)


def test_same_seed_same_weights(tiny_data, tmp_path):
    a, b = fresh(), fresh()
    cfg = TRAIN.model_copy(update={"epochs": 2})
    fit(a, tiny_data, MODEL, cfg, tmp_path / "a", seed=3, log=quiet)
    fit(b, tiny_data, MODEL, cfg, tmp_path / "b", seed=3, log=quiet)
    for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y)


@pytest.mark.faults
def test_killed_run_resumes_where_it_stopped(tiny_data, tmp_path):
    straight = fresh()
    ref = fit(straight, tiny_data, MODEL, TRAIN, tmp_path / "straight", seed=1, log=quiet, fingerprint="f")

    class Killed(Exception):
        pass

    def kill_at_epoch_3(msg):
        if "epoch   3/" in msg:
            raise Killed

    interrupted = fresh()
    with pytest.raises(Killed):
        fit(
            interrupted,
            tiny_data,
            MODEL,
            TRAIN,
            tmp_path / "run",
            seed=1,
            log=kill_at_epoch_3,
            fingerprint="f",
        )
    assert (tmp_path / "run" / LAST).is_file()
    resumed = fresh()
    lines = []
    result = fit(
        resumed, tiny_data, MODEL, TRAIN, tmp_path / "run", seed=1, log=lines.append, fingerprint="f"
    )
    assert result.resumed_from == 3
    assert "resuming after epoch 2" in lines[0]
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4]
    assert result.best_valid == ref.best_valid
    for x, y in zip(resumed.state_dict().values(), straight.state_dict().values(), strict=True):
        torch.testing.assert_close(x, y)


@pytest.mark.faults
def test_checkpoint_of_another_config_is_not_resumed(tiny_data, tmp_path):
    cfg = TRAIN.model_copy(update={"epochs": 1})
    fit(fresh(), tiny_data, MODEL, cfg, tmp_path, log=quiet, fingerprint="one")
    lines = []
    result = fit(fresh(), tiny_data, MODEL, cfg, tmp_path, log=lines.append, fingerprint="two")
    assert result.resumed_from is None
    assert "ignoring" in lines[0]


@pytest.mark.faults
def test_nan_loss_is_a_clear_error(tiny_data, tmp_path):
    def nan_loss(batch):
        return torch.tensor(float("nan"), requires_grad=True), {}

    with pytest.raises(
        TrainingDivergedError, match=r"loss became nan at epoch 1, step 0 .*lower the learning rate"
    ):
        fit(fresh(), tiny_data, MODEL, TRAIN, tmp_path, step_loss=nan_loss, log=quiet)


def test_wall_clock_budget_stops_inside_the_epoch(tiny_data, tmp_path):
    cfg = TRAIN.model_copy(update={"max_wall_seconds": 1e-3, "epochs": 50})
    seen = []

    def counting_batches(epoch, rng):
        for b in tiny_data.iter_train_batches(8, MODEL.max_len, rng):
            seen.append(epoch)
            yield b

    result = fit(fresh(), tiny_data, MODEL, cfg, tmp_path, batches=counting_batches, log=quiet)
    assert result.stopped == "budget"
    assert len(result.history) == 1 and len(seen) == 1  # stopped after the first batch
    assert (tmp_path / BEST).is_file()


def test_early_stopping(tiny_data, tmp_path):
    cfg = TRAIN.model_copy(update={"epochs": 30, "patience": 1, "lr": 0.5})  # too high: no progress
    result = fit(fresh(), tiny_data, MODEL, cfg, tmp_path, log=quiet)
    assert result.stopped == "patience"
    assert len(result.history) < 30


def test_train_batches_are_shifted_and_right_padded(tiny_data):
    users = tiny_data.train_users()[:5]
    batch = tiny_data.train_batch(users, max_len=3)
    for row, u in enumerate(users):
        start, n = tiny_data.offsets[u], tiny_data.n_train[u]
        train_items = tiny_data.items[start : start + n]
        length = min(n - 1, 3)
        assert batch.inputs[row, :length].tolist() == train_items[n - 1 - length : n - 1].tolist()
        assert batch.targets[row, :length].tolist() == train_items[n - length : n].tolist()
        assert not batch.mask[row, length:].any()
    users = tiny_data.eval_users("test")[:5]
    eval_batch = tiny_data.eval_batch(users, "test", max_len=50)
    for row, u in enumerate(users):
        assert eval_batch.targets[row] == tiny_data.items[tiny_data.test_index[u]]
        assert (
            eval_batch.inputs[row, eval_batch.lengths[row] - 1]
            == tiny_data.items[tiny_data.test_index[u] - 1]
        )
    assert np.all(tiny_data.valid_index[users] == tiny_data.test_index[users] - 1)


@pytest.mark.parametrize("sampling", ["uniform", "mixed"])
def test_sampled_softmax_trains(tiny_data, tmp_path, sampling):
    cfg = TRAIN.model_copy(update={"sampled_negatives": 20, "epochs": 3, "sampling": sampling})
    result = fit(fresh(), tiny_data, MODEL, cfg, tmp_path, log=quiet)
    losses = [h["loss"] for h in result.history]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    # with 20 negatives the loss starts near log(21), not log(80)
    assert losses[0] < np.log(80)


def test_sampled_softmax_masks_accidental_hits():
    from shopdistill.components.sequences import TrainBatch
    from shopdistill.components.training.losses import hard_label_loss

    torch.manual_seed(0)
    model = build_model(MODEL, 3)  # 3 items: every negative draw is often the target itself
    inputs = torch.tensor([[1, 2, 3]])
    batch = TrainBatch(np.array([0]), inputs, torch.tensor([[2, 3, 1]]), inputs != 0, torch.arange(3)[None])
    loss, _ = hard_label_loss(model, sampled_negatives=50)(batch)
    assert torch.isfinite(loss)


def test_mixed_proposal_is_half_uniform_half_popularity():
    from shopdistill.components.training.losses import negative_proposal

    counts = np.array([0, 6, 2, 0, 0])  # item 0 is padding; items 3 and 4 never seen in train
    assert negative_proposal(counts, "uniform") is None
    q = negative_proposal(counts, "mixed").double()
    assert q[0] == 0 and q.sum().item() == pytest.approx(1.0)
    want = 0.5 / 4 + 0.5 * torch.tensor([6, 2, 0, 0], dtype=torch.float64) / 8
    torch.testing.assert_close(q[1:], want, rtol=1e-6, atol=0)
    assert (q[1:] >= 0.5 / 4 - 1e-7).all()  # every item stays drawable
    with pytest.raises(ValueError, match="unknown negative sampling"):
        negative_proposal(counts, "zipf")


def test_sampled_softmax_with_proposal_is_logq_corrected():
    from shopdistill.components.sequences import TrainBatch
    from shopdistill.components.training.losses import hard_label_loss

    torch.manual_seed(0)
    model = build_model(MODEL, 6).eval()  # eval: no dropout, so the loss can be recomputed by hand
    inputs = torch.tensor([[1, 2, 3, 4]])
    targets = torch.tensor([[2, 3, 4, 5]])
    batch = TrainBatch(np.array([0]), inputs, targets, inputs != 0, torch.arange(4)[None])
    proposal = torch.tensor([0.0, 0.4, 0.3, 0.1, 0.1, 0.05, 0.05])
    torch.manual_seed(1)
    loss, _ = hard_label_loss(model, sampled_negatives=8, proposal=proposal)(batch)
    torch.manual_seed(1)
    negatives = torch.multinomial(proposal, 8, replacement=True)
    with torch.no_grad():
        h = model(inputs).hidden[0]  # (4, d)
        w = model.item_emb.weight
        t = targets[0]
        pos = (h * w[t]).sum(1, keepdim=True) - proposal[t].log()[:, None]
        neg = h @ w[negatives].T - proposal[negatives].log()[None, :]
        neg = neg.masked_fill(negatives[None, :] == t[:, None], float("-inf"))
        want = -torch.log_softmax(torch.cat([pos, neg], 1), 1)[:, 0].mean()
    torch.testing.assert_close(loss.detach(), want)


def test_default_sampling_is_left_out_of_stored_keys():
    # runs stored before the option existed are keyed by dumps without it; they must stay valid
    assert "sampling" not in TrainConfig().model_dump()
    with pytest.raises(ValueError, match="sampled_negatives is not set"):
        TrainConfig(sampling="mixed")  # nothing is sampled by the full softmax
    mixed = TrainConfig(sampled_negatives=64, sampling="mixed")
    assert mixed.model_dump()["sampling"] == "mixed"
    assert TrainConfig.model_validate(mixed.model_dump()) == mixed


def test_ensemble_averages_member_log_probabilities_and_round_trips(tiny_data, tmp_path):
    import torch.nn.functional as F

    from shopdistill.components.models.checkpoint import load_teacher, save_model, write_ensemble
    from shopdistill.components.models.ensemble import Ensemble

    members = []
    for seed, d in ((0, 8), (1, 16)):  # members may differ in width
        torch.manual_seed(seed)
        members.append(build_model(MODEL.model_copy(update={"d_model": d}), tiny_data.n_items).eval())
    ens = Ensemble(members).eval()
    items = torch.tensor([[3, 5, 7, 0], [2, 0, 0, 0]])
    with torch.no_grad():
        out = ens(items)
        assert out.hidden.shape == (2, 4, 24)
        got = ens.scores(out.hidden)
        want = sum(F.log_softmax(m.scores(m(items).hidden), dim=-1) for m in members) / 2
    torch.testing.assert_close(got, want)
    paths = []
    for i, m in enumerate(members):
        cfg = MODEL.model_copy(update={"d_model": m.d_model})
        paths.append((tmp_path / f"m{i}.pt", save_model(tmp_path / f"m{i}.pt", m, cfg, tiny_data.n_items)))
    digest = write_ensemble(tmp_path / "ens", paths)
    assert digest == write_ensemble(tmp_path / "again", paths)  # a function of the members only
    loaded = load_teacher(tmp_path / "ens")
    with torch.no_grad():
        torch.testing.assert_close(loaded.scores(loaded(items).hidden), got)
    save_model(
        paths[1][0], members[0], MODEL.model_copy(update={"d_model": 8}), tiny_data.n_items
    )  # member replaced
    with pytest.raises(ValueError, match="changed since"):
        load_teacher(tmp_path / "ens")


def test_ensemble_teacher_trains_members_once_and_caches_soft_labels(tiny_data, tmp_path):
    from shopdistill.components.config import TeacherConfig
    from shopdistill.components.models.ensemble import Ensemble
    from shopdistill.components.training.teacher import train_teacher

    t_cfg = TeacherConfig(model=MODEL, train=TrainConfig(epochs=1, batch_size=64), ensemble=2)
    teacher, run = train_teacher(t_cfg, tiny_data, "d" * 64, tmp_path, "tiny", seed=3, log=lambda _: None)
    assert isinstance(teacher, Ensemble) and len(run.members) == 2 and run.checkpoint.name == "ensemble.json"
    # a single teacher of seed 4 is the ensemble's second member: reused, not retrained
    lines = []
    single_cfg = t_cfg.model_copy(update={"ensemble": 1})
    _, single = train_teacher(single_cfg, tiny_data, "d" * 64, tmp_path, "tiny", seed=4, log=lines.append)
    assert single.checkpoint_sha256 == run.members[1].checkpoint_sha256
    assert not any("loss" in line for line in lines)


def test_concurrent_writers_of_one_checkpoint_do_not_collide(tmp_path):
    # Two runs reusing one stored model (a benchmark and the nightly flow, say) both re-save its
    # best.pt; with a shared temporary name one writer's rename stole the other's file.
    from concurrent.futures import ThreadPoolExecutor

    from shopdistill.components.artifacts import sha256_file
    from shopdistill.components.models.checkpoint import save_model

    cfg = ModelConfig(arch="sasrec", d_model=64, n_layers=2, max_len=20)
    torch.manual_seed(0)
    model = build_model(cfg, 2_000)
    path = tmp_path / BEST

    def write(_):
        return save_model(path, model, cfg, 2_000, {"best_epoch": 3})

    with ThreadPoolExecutor(8) as pool:
        digests = list(pool.map(write, range(64)))  # raised FileNotFoundError before
    assert sha256_file(path) in digests  # torch.save's bytes vary (a serialization id): the last one wins
    assert [p.name for p in tmp_path.iterdir()] == [BEST]
    assert load_model(path)[2]["best_epoch"] == 3


def test_reusing_a_finished_run_leaves_its_best_checkpoint_alone(tiny_data, tmp_path):
    cfg = TRAIN.model_copy(update={"epochs": 2})
    first = fit(fresh(), tiny_data, MODEL, cfg, tmp_path, log=quiet, fingerprint="f")
    before = (tmp_path / BEST).stat().st_mtime_ns
    again = fit(fresh(), tiny_data, MODEL, cfg, tmp_path, log=quiet, fingerprint="f")
    assert again.resumed_from == 3 and again.history == first.history
    assert again.checkpoint_sha256 == first.checkpoint_sha256
    assert (tmp_path / BEST).stat().st_mtime_ns == before  # not rewritten (torch.save's bytes vary)
    # a best.pt of another run (here: damaged) is replaced with the resumed run's best weights
    (tmp_path / BEST).write_bytes(b"not a checkpoint")
    third = fit(fresh(), tiny_data, MODEL, cfg, tmp_path, log=quiet, fingerprint="f")
    assert load_model(tmp_path / BEST)[2]["best_epoch"] == first.best_epoch
    from shopdistill.components.artifacts import sha256_file

    assert third.checkpoint_sha256 == sha256_file(tmp_path / BEST)


def test_progress_goes_to_the_shopdistill_logger_by_default(tiny_data, tmp_path, caplog):
    """Components stay Prefect-free and log; Prefect shows the lines through its extra loggers."""
    import logging

    from shopdistill.components.models import build_model
    from shopdistill.flows.environment import QUIET_DEFAULTS

    model_cfg = ModelConfig(d_model=8, n_layers=1, n_heads=1, max_len=10)
    with caplog.at_level(logging.INFO, logger="shopdistill"):
        fit(build_model(model_cfg, tiny_data.n_items), tiny_data, model_cfg, TrainConfig(epochs=2), tmp_path)
    epochs = [r for r in caplog.records if r.name == "shopdistill.training" and " epoch " in r.getMessage()]
    assert len(epochs) == 2
    assert "shopdistill" in QUIET_DEFAULTS["PREFECT_LOGGING_EXTRA_LOGGERS"].split(",")
