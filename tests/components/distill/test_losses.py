import math

import pytest
import torch
import torch.nn.functional as F

from shopdistill.components.distill.losses import (
    FeatureKD,
    LogitsKD,
    RankingKD,
    RKDLoss,
    _angles,
    _angles_by_distances,
)


def test_logits_kd_golden_topk():
    # one row, K = 2, T = 2: p = softmax([2, 0]/2) = softmax([1, 0]); q = softmax([0, 0]/2) = [.5, .5]
    student = torch.tensor([[0.0, 0.0, 9.0]])  # column 2 is outside the teacher's top-K
    cols = torch.tensor([[0, 1]])
    teacher = torch.tensor([[2.0, 0.0]])
    p = torch.softmax(torch.tensor([1.0, 0.0]), 0)
    expected = 4 * float((p * (p.log() - math.log(0.5))).sum())
    assert LogitsKD(2.0, "topk")(student, cols, teacher).item() == pytest.approx(expected, rel=1e-6)


def test_logits_kd_golden_full():
    student = torch.tensor([[0.0, 0.0, 0.0, 0.0]])
    cols = torch.tensor([[0, 1]])
    teacher = torch.tensor([[0.0, 0.0]])
    # p = [.5, .5]; q over the catalogue = [.25] * 4 -> KL = log 2, times T^2 = 1
    assert LogitsKD(1.0, "full")(student, cols, teacher).item() == pytest.approx(math.log(2), rel=1e-6)


def test_logits_kd_zero_when_student_equals_teacher_and_batchmean():
    torch.manual_seed(0)
    teacher = torch.randn(5, 8)
    cols = torch.arange(8).repeat(5, 1)
    student = torch.zeros(5, 20)
    student[:, :8] = teacher + 3.0  # a constant shift does not change a softmax
    assert LogitsKD(4.0, "topk")(student, cols, teacher).item() == pytest.approx(0.0, abs=1e-6)
    # batchmean: the loss of a batch is the mean of the per-row losses, not the per-element mean
    s = torch.randn(4, 8)
    rows = [LogitsKD(2.0)(s[i : i + 1], cols[:1], teacher[:1]).item() for i in range(4)]
    assert LogitsKD(2.0)(s, cols[:4], teacher[:1].expand(4, 8)).item() == pytest.approx(
        sum(rows) / 4, rel=1e-5
    )


def test_logits_kd_full_is_minimal_when_student_puts_all_mass_on_teacher_topk():
    teacher = torch.tensor([[1.0, 0.0]])
    cols = torch.tensor([[0, 1]])
    agree = torch.tensor([[1.0, 0.0, -50.0, -50.0]])
    disagree = torch.tensor([[0.0, 1.0, 0.0, 0.0]])
    kd = LogitsKD(1.0, "full")
    assert kd(agree, cols, teacher).item() == pytest.approx(0.0, abs=1e-6)
    assert kd(disagree, cols, teacher).item() > 0.1


def test_feature_kd_golden_and_projector():
    same = FeatureKD(3, 3)
    h = torch.tensor([[1.0, 2.0, 3.0]])
    assert same(h, h).item() == 0.0
    assert same(h, torch.zeros(1, 3)).item() == pytest.approx((1 + 4 + 9) / 3)
    proj = FeatureKD(2, 4)
    assert isinstance(proj.projector, torch.nn.Linear) and proj.projector.weight.shape == (4, 2)


def test_rkd_golden_distance():
    # students at 0, 1, 3 and teacher at 0, 2, 6: identical up to scale -> zero loss
    s = torch.tensor([[0.0], [1.0], [3.0]])
    t = torch.tensor([[0.0, 0.0], [2.0, 0.0], [6.0, 0.0]])
    assert RKDLoss(1.0, 2.0)(s, t).item() == pytest.approx(0.0, abs=1e-6)
    # hand computed: student pairs (0,1)=1; teacher (0,1)=1, mean 1 -> student dist 1/1; teacher 1/1
    s2 = torch.tensor([[0.0], [1.0]])
    t2 = torch.tensor([[0.0], [4.0]])
    assert RKDLoss(1.0, 0.0)(s2, t2).item() == pytest.approx(0.0, abs=1e-6)
    s3 = torch.tensor([[0.0], [1.0], [2.0]])  # distances 1,2,1 -> mean 4/3
    t3 = torch.tensor([[0.0], [1.0], [3.0]])  # distances 1,3,2 -> mean 2
    sd = torch.tensor([[0, 1, 2], [1, 0, 1], [2, 1, 0]]) / (4 / 3)
    td = torch.tensor([[0, 1, 3], [1, 0, 2], [3, 2, 0]]) / 2.0
    assert RKDLoss(1.0, 0.0)(s3, t3).item() == pytest.approx(F.smooth_l1_loss(sd, td).item(), rel=1e-6)


def test_teacher_angles_by_law_of_cosines_equal_the_direct_ones():
    # the teacher's RKD angles come from pairwise distances (no (B, B, d) differences): they must
    # equal the direct unit-vector cosines, including rows that repeat (cos 0, as F.normalize gives)
    # and rows 1e-3 apart
    torch.manual_seed(0)
    x = torch.randn(40, 384) * 3
    x[5] = x[7]
    x[9] = x[10] + 1e-3 * torch.randn(384)
    direct, by_distances = _angles(x), _angles_by_distances(x)
    assert direct[7, 5].abs().max().item() == 0.0 and by_distances[7, 5].abs().max().item() == 0.0
    torch.testing.assert_close(by_distances, direct, rtol=0, atol=1e-5)
    half = torch.randn(40, 384).half().float()  # the cache stores hidden states as float16
    torch.testing.assert_close(_angles_by_distances(half), _angles(half), rtol=0, atol=1e-5)


def test_ranking_kd_golden():
    rk = RankingKD(k=2, lam=1.0)
    w = torch.softmax(torch.tensor([0.0, -1.0]), 0)
    scores = torch.tensor([[0.0, 0.0, 0.0, 0.0]])
    cols = torch.tensor([[3, 1, 0]])
    assert rk(scores, cols).item() == pytest.approx(float(-(w * math.log(0.25)).sum()), rel=1e-6)


def test_gradients_reach_only_the_student_and_projector():
    torch.manual_seed(0)
    student_scores = torch.randn(6, 10, requires_grad=True)
    student_hidden = torch.randn(6, 4, requires_grad=True)
    teacher_logits = torch.randn(6, 5, requires_grad=True)  # would be a cache constant; check no grad flows
    teacher_hidden = torch.randn(6, 8, requires_grad=True)
    cols = torch.randint(0, 10, (6, 5))
    feat = FeatureKD(4, 8)
    loss = (
        LogitsKD(2.0)(student_scores, cols, teacher_logits.detach())
        + feat(student_hidden, teacher_hidden.detach())
        + RKDLoss()(student_hidden, teacher_hidden.detach())
        + RankingKD(3)(student_scores, cols)
    )
    loss.backward()
    assert student_scores.grad is not None and student_hidden.grad is not None
    assert feat.projector.weight.grad is not None
    assert teacher_logits.grad is None and teacher_hidden.grad is None
    # RKD computes teacher relations without autograd even if given a tensor that requires grad
    t = torch.randn(5, 3, requires_grad=True)
    RKDLoss()(torch.randn(5, 2, requires_grad=True), t).backward()
    assert t.grad is None


def test_bad_mode_is_rejected():
    with pytest.raises(ValueError, match="mode must be 'topk' or 'full'"):
        LogitsKD(2.0, "half")
