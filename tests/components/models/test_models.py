import numpy as np
import pytest
import torch

from shopdistill.components.config import ModelConfig, PipelineConfig
from shopdistill.components.models import build_model, count_parameters
from shopdistill.components.models.layers import Dropout


@pytest.mark.parametrize("arch", ["sasrec", "gru"])
def test_shapes_and_layers(arch):
    model = build_model(ModelConfig(arch=arch, d_model=16, n_layers=2, n_heads=2, max_len=10), n_items=30)
    out = model(torch.randint(0, 31, (4, 7)))
    assert out.hidden.shape == (4, 7, 16)
    assert len(out.layers) == (2 if arch == "sasrec" else 1)
    assert model.scores(out.hidden).shape == (4, 7, 30)  # column c = item c + 1


@pytest.mark.parametrize("arch", ["sasrec", "gru"])
def test_causal_and_padding_invariant(arch):
    torch.manual_seed(0)
    model = build_model(
        ModelConfig(arch=arch, d_model=8, n_layers=1, n_heads=1, dropout=0.0), n_items=20
    ).eval()
    seq = torch.tensor([[3, 5, 7, 2, 9]])
    changed = seq.clone()
    changed[0, 4] = 11
    a, b = model(seq).hidden, model(changed).hidden
    # positions before the change must not see the future
    torch.testing.assert_close(a[:, :4], b[:, :4])
    # right padding does not change the real positions
    padded = torch.tensor([[3, 5, 7, 0, 0]])
    torch.testing.assert_close(model(padded).hidden[:, :3], a[:, :3])


def test_default_teacher_is_about_ten_times_the_student_on_beauty_sizes():
    cfg = PipelineConfig()
    teacher = count_parameters(build_model(cfg.teacher.model, 12_101))
    student = count_parameters(build_model(cfg.student.model, 12_101))
    assert 8 <= teacher / student <= 12, (teacher, student)


def test_d_model_must_divide_heads():
    with pytest.raises(ValueError, match=r"d_model \(10\) must be divisible by n_heads \(3\)"):
        ModelConfig(d_model=10, n_heads=3)  # refused with the configuration, before any model is built
    with pytest.raises(ValueError, match="not divisible by n_heads"):
        build_model(
            ModelConfig.model_construct(**{**ModelConfig().model_dump(), "d_model": 10, "n_heads": 3}), 5
        )


def test_fast_dropout_matches_expectation():
    torch.manual_seed(0)
    drop = Dropout(0.25).train()
    x = torch.ones(200_000)
    y = drop(x)
    assert abs(float((y == 0).float().mean()) - 0.25) < 0.01
    assert abs(float(y.mean()) - 1.0) < 0.01
    assert torch.equal(drop.eval()(x), x)


def test_export_traces_with_is_causal():
    model = build_model(ModelConfig(d_model=8, n_layers=1, n_heads=2, dropout=0.0), n_items=12).eval()
    example = torch.tensor(np.array([[1, 2, 3, 4]]))
    ep = torch.export.export(model, (example,))
    got = ep.module()(example).hidden
    torch.testing.assert_close(got, model(example).hidden)
