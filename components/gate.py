"""The evaluation gate: a pure decision whether a candidate student may become the champion.

``decide_gate`` compares metric dictionaries (all scored on the same split in the same run) and returns a
:class:`GateDecision` with every rule's outcome, so the caller only branches and publishes. Semantics
follow MLflow's ``MetricThreshold`` / TFX Evaluator "blessing": the candidate passes only when every
enabled rule holds; a metric a rule needs but that is missing fails that rule (never silently passes).

Rules (``GateConfig``):
    quality vs teacher   NDCG@10(candidate) >= min_ratio_to_teacher * NDCG@10(teacher)
    KD pays              NDCG@10(candidate) >= NDCG@10(no-KD baseline) - baseline_tolerance
                                                                      (require_beats_baseline)
    no regression        NDCG@10(candidate) >= NDCG@10(champion) - max_regression  (skipped: no champion)
    minimum change       NDCG@10(candidate) - NDCG@10(champion) >= min_improvement (skipped: no champion)
    latency              p99 latency (ms) <= max_p99_latency_ms                     (skipped when unset)
    size                 model size (MB) <= max_model_mb                            (skipped when unset)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from shopdistill.components.config import GateConfig

METRIC = "NDCG@10"
EPS = 1e-12  # float slack, so that e.g. exactly 90% of the teacher passes a 0.90 rule


@dataclass(frozen=True)
class Rule:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    reasons: list[str]  # one sentence per rule, failed rules first
    deltas: dict[str, float]  # candidate minus reference, per comparison
    rules: list[Rule] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "reasons": self.reasons,
            "deltas": self.deltas,
            "rules": [asdict(r) for r in self.rules],
        }

    def to_markdown(self) -> str:
        head = f"**Gate {'passed' if self.passed else 'FAILED'}**"
        rows = ["| rule | result | detail |", "|---|---|---|"]
        rows += [f"| {r.name} | {'pass' if r.passed else 'FAIL'} | {r.detail} |" for r in self.rules]
        return head + "\n\n" + "\n".join(rows)


def _metric(metrics: Mapping[str, float] | None, key: str) -> float | None:
    if metrics is None:
        return None
    value = metrics.get(key)
    return float(value) if value is not None else None


def decide_gate(
    candidate: Mapping[str, float],
    teacher: Mapping[str, float] | None,
    baseline: Mapping[str, float] | None,
    champion: Mapping[str, float] | None,
    thresholds: GateConfig,
) -> GateDecision:
    """Apply every enabled rule; see the module docstring for the rules."""
    deltas: dict[str, float] = {}
    cand = _metric(candidate, METRIC)
    rules = [_vs_teacher(cand, _metric(teacher, METRIC), thresholds, deltas)]
    if thresholds.require_beats_baseline:
        rules.append(_vs_baseline(cand, _metric(baseline, METRIC), thresholds, deltas))
    rules += _vs_champion(cand, champion, thresholds, deltas)
    rules += _bounds(candidate, thresholds)
    rules.sort(key=lambda r: r.passed)  # failed rules first
    passed = all(r.passed for r in rules)
    reasons = [f"{'ok' if r.passed else 'FAILED'}: {r.name}: {r.detail}" for r in rules]
    return GateDecision(passed=passed, reasons=reasons, deltas=deltas, rules=rules)


def _missing(name: str, who: str) -> Rule:
    return Rule(name, False, f"{METRIC} of the {who} is missing")


def _vs_teacher(cand: float | None, teach: float | None, t: GateConfig, deltas: dict[str, float]) -> Rule:
    name = "quality vs teacher"
    if cand is None or teach is None:
        return _missing(name, "candidate" if cand is None else "teacher")
    deltas["vs_teacher"] = cand - teach
    ratio = cand / teach if teach else float("inf")
    detail = f"{cand:.4f} is {ratio:.1%} of the teacher's {teach:.4f} (needs >= {t.min_ratio_to_teacher:.0%})"
    return Rule(name, cand >= t.min_ratio_to_teacher * teach - EPS, detail)


def _vs_baseline(cand: float | None, base: float | None, t: GateConfig, deltas: dict[str, float]) -> Rule:
    name = "beats the no-KD baseline"
    if cand is None or base is None:
        return _missing(name, "candidate" if cand is None else "no-KD baseline")
    deltas["vs_baseline"] = cand - base
    detail = f"{cand:.4f} vs baseline {base:.4f} ({cand - base:+.4f}; tolerance {t.baseline_tolerance:.4f})"
    return Rule(name, cand >= base - t.baseline_tolerance - EPS, detail)


def _vs_champion(
    cand: float | None, champion: Mapping[str, float] | None, t: GateConfig, deltas: dict[str, float]
) -> list[Rule]:
    name = "no regression vs champion"
    if champion is None:
        return [Rule(name, True, "no champion yet: first model")]
    champ = _metric(champion, METRIC)
    if cand is None or champ is None:
        return [_missing(name, "candidate" if cand is None else "champion")]
    delta = deltas["vs_champion"] = cand - champ
    detail = f"{cand:.4f} vs champion {champ:.4f} ({delta:+.4f}; tolerance {t.max_regression:.4f})"
    rules = [Rule(name, delta >= -t.max_regression - EPS, detail)]
    if t.min_improvement > 0:
        need = f"{delta:+.4f} vs champion (needs >= +{t.min_improvement:.4f})"
        rules.append(Rule("minimum improvement", delta >= t.min_improvement - EPS, need))
    return rules


def _bounds(candidate: Mapping[str, float], t: GateConfig) -> list[Rule]:
    """The latency and size bounds that are set."""
    rules = []
    for name, key, bound, scale, unit in (
        ("latency", "latency_p99_ms", t.max_p99_latency_ms, 1.0, "ms (p99)"),
        ("size", "size_bytes", t.max_model_mb, 1e-6, "MB"),
    ):
        if bound is None:
            continue
        value = _metric(candidate, key)
        if value is None:
            rules.append(Rule(name, False, f"{key} of the candidate is missing"))
        else:
            rules.append(Rule(name, value * scale <= bound, f"{value * scale:.2f} {unit} (bound {bound:g})"))
    return rules
