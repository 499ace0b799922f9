import pytest

from shopdistill.components.config import GateConfig
from shopdistill.components.gate import decide_gate

TEACHER = {"NDCG@10": 0.050}
BASE = {"NDCG@10": 0.040}
G = GateConfig()  # 0.90 x teacher, beats baseline, no regression, no minimum change, no bounds


def cand(ndcg, **extra):
    return {"NDCG@10": ndcg, **extra}


@pytest.mark.parametrize(
    "case, candidate, champion, thresholds, passed, failing",
    [
        ("first model ever", cand(0.046), None, G, True, []),
        ("below 90% of the teacher", cand(0.044), None, G, False, ["quality vs teacher"]),
        ("exactly 90% of the teacher", cand(0.045), None, G, True, []),
        (
            "worse than no-KD baseline",
            cand(0.039),
            None,
            GateConfig(min_ratio_to_teacher=0.5),
            False,
            ["beats the no-KD baseline"],
        ),
        (
            "slightly below baseline within tolerance",
            cand(0.0398),
            None,
            GateConfig(min_ratio_to_teacher=0.5, baseline_tolerance=0.0005),
            True,
            [],
        ),
        ("regression vs champion", cand(0.046), {"NDCG@10": 0.048}, G, False, ["no regression vs champion"]),
        (
            "regression within tolerance",
            cand(0.046),
            {"NDCG@10": 0.048},
            GateConfig(max_regression=0.003),
            True,
            [],
        ),
        ("tie with champion", cand(0.046), {"NDCG@10": 0.046}, G, True, []),
        (
            "tie fails a minimum change",
            cand(0.046),
            {"NDCG@10": 0.046},
            GateConfig(min_improvement=0.001),
            False,
            ["minimum improvement"],
        ),
        (
            "improvement below minimum change",
            cand(0.0465),
            {"NDCG@10": 0.046},
            GateConfig(min_improvement=0.001),
            False,
            ["minimum improvement"],
        ),
        (
            "improvement above minimum change",
            cand(0.048),
            {"NDCG@10": 0.046},
            GateConfig(min_improvement=0.001),
            True,
            [],
        ),
        (
            "missing candidate metric",
            {"HR@10": 0.1},
            None,
            G,
            False,
            ["quality vs teacher", "beats the no-KD baseline"],
        ),
        ("missing champion metric", cand(0.046), {"HR@10": 0.2}, G, False, ["no regression vs champion"]),
        (
            "too slow",
            cand(0.046, latency_p99_ms=3.0),
            None,
            GateConfig(max_p99_latency_ms=2.0),
            False,
            ["latency"],
        ),
        (
            "latency bound but no measurement",
            cand(0.046),
            None,
            GateConfig(max_p99_latency_ms=2.0),
            False,
            ["latency"],
        ),
        ("too big", cand(0.046, size_bytes=3e6), None, GateConfig(max_model_mb=1.0), False, ["size"]),
        (
            "small and fast",
            cand(0.046, size_bytes=5e5, latency_p99_ms=1.0),
            None,
            GateConfig(max_model_mb=1.0, max_p99_latency_ms=2.0),
            True,
            [],
        ),
    ],
)
def test_gate_table(case, candidate, champion, thresholds, passed, failing):
    decision = decide_gate(candidate, TEACHER, BASE, champion, thresholds)
    assert decision.passed is passed, (case, decision.reasons)
    assert [r.name for r in decision.rules if not r.passed] == failing, case
    assert len(decision.reasons) == len(decision.rules)
    assert all(reason.startswith(("ok: ", "FAILED: ")) for reason in decision.reasons)


def test_deltas_and_reasons_are_explicit():
    d = decide_gate(cand(0.047), TEACHER, BASE, {"NDCG@10": 0.046}, G)
    assert d.deltas == pytest.approx({"vs_teacher": -0.003, "vs_baseline": 0.007, "vs_champion": 0.001})
    assert "ok: quality vs teacher: 0.0470 is 94.0% of the teacher's 0.0500 (needs >= 90%)" in d.reasons
    first = decide_gate(cand(0.047), TEACHER, BASE, None, G)
    assert "ok: no regression vs champion: no champion yet: first model" in first.reasons
    assert "**Gate passed**" in first.to_markdown()


def test_failed_rules_come_first():
    d = decide_gate(cand(0.030), TEACHER, BASE, None, G)
    assert d.reasons[0].startswith("FAILED: ")
    assert d.to_dict()["passed"] is False
