"""Choosing one KD student among candidates: the bounds, the validation rule, ties, the report."""

import pytest
import torch

from shopdistill.components.candidates import (
    CandidateRow,
    NoCandidateFitsError,
    candidates_markdown,
    choose_candidate,
    measure_candidate,
)
from shopdistill.components.config import CandidatesConfig, ModelConfig
from shopdistill.components.models import build_model
from shopdistill.components.models.checkpoint import save_model


def row(name: str, valid: float, params: int = 1000, mb: float = 0.1, p99: float = 1.0) -> CandidateRow:
    return CandidateRow(name, "gru", 16, valid, valid * 0.9, params, mb, p99, "torch", f"{name}.pt")


def test_the_best_validation_score_within_the_bounds_is_chosen_and_test_is_never_used():
    rows = [row("big", 0.30, params=500_000), row("slow", 0.25, p99=9.0), row("a", 0.20), row("b", 0.22)]
    rows[3].test_ndcg = 0.01  # a poor test score does not matter: the choice is on validation
    chosen = choose_candidate(rows, CandidatesConfig(max_params=200_000, max_p99_ms=5.0))
    assert chosen.name == "b" and chosen.chosen and not rows[2].chosen
    assert rows[0].over == ["500,000 parameters > 200,000"] and rows[1].over == ["p99 9.00 ms > 5.0 ms"]
    table = candidates_markdown(rows, chosen)
    assert "| b | gru | 16 | 0.2200 | 0.0100 |" in table and "| chosen |" in table
    assert "over: 500,000 parameters > 200,000" in table and "validation NDCG@10 0.2000 < 0.2200" in table


def test_without_bounds_the_best_on_validation_wins_and_a_tie_goes_to_fewer_parameters():
    rows = [row("wide", 0.3, params=5000), row("narrow", 0.3, params=2000), row("low", 0.1)]
    assert choose_candidate(rows, CandidatesConfig()).name == "narrow"
    same = [row("z", 0.3), row("m", 0.3)]
    assert choose_candidate(same, CandidatesConfig()).name == "m"  # then the name, so the run is repeatable


def test_when_no_candidate_fits_nothing_is_chosen_and_each_reason_is_named():
    rows = [row("a", 0.3, mb=2.0), row("b", 0.2, params=10**6)]
    with pytest.raises(NoCandidateFitsError, match=r"a: 2.00 MB > 1.0 MB; b: 1,000,000 parameters > 1,000"):
        choose_candidate(rows, CandidatesConfig(max_model_mb=1.0, max_params=1000))
    assert not any(r.chosen for r in rows)


def test_a_candidate_is_measured_on_its_checkpoint(tiny_data, tmp_path):
    cfg = ModelConfig(arch="gru", d_model=8, n_layers=1, n_heads=1, dropout=0.0, max_len=10)
    torch.manual_seed(0)
    model = build_model(cfg, tiny_data.n_items)
    save_model(tmp_path / "best.pt", model, cfg, tiny_data.n_items)
    measured = measure_candidate("c", tmp_path / "best.pt", 0.123, tiny_data, requests=30)
    assert measured.params == sum(p.numel() for p in model.parameters())
    assert measured.model_mb == pytest.approx((tmp_path / "best.pt").stat().st_size / 1e6)
    assert measured.valid_ndcg == 0.123 and 0 <= measured.test_ndcg <= 1 and measured.p99_ms > 0
    assert (measured.arch, measured.d_model, measured.latency_engine) == ("gru", 8, "torch")
