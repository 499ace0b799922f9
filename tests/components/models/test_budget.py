"""A student's cost (parameters, stored bytes) and a pq item table's full rows sized to a budget."""

from __future__ import annotations

import pytest

from shopdistill.components.candidates import fill_candidates
from shopdistill.components.config import ModelConfig, load_config
from shopdistill.components.models import build_model, count_parameters
from shopdistill.components.models.budget import fill_budget, model_cost, model_size_bytes, size_budget

D16 = ModelConfig(arch="gru", d_model=16, n_layers=1)
PQ64 = ModelConfig(arch="gru", d_model=64, n_layers=1, item_embedding="pq", pq_groups=16)


def test_a_model_costs_its_parameters_and_its_stored_state():
    model = build_model(D16, 500)
    assert model_cost(D16, 500) == (count_parameters(model), model_size_bytes(model))
    # item rows with padding, one GRU layer, the output LayerNorm
    assert count_parameters(model) == 16 * 501 + 3 * (2 * 16 * 16 + 2 * 16) + 2 * 16
    pq = PQ64.model_copy(update={"pq_full_rows": 10})
    assert size_budget(pq, 500) == model_cost(PQ64.model_copy(update={"item_embedding": "full"}), 500)


def test_fill_budget_gives_a_pq_student_the_most_full_rows_that_fit():
    budget = size_budget(D16, 12101)  # the d=16 student on Beauty's catalogue
    filled = fill_budget(PQ64, 12101, budget)
    assert filled.pq_full_rows == 1549
    params, size = model_cost(filled, 12101)
    assert params <= budget[0] and size <= budget[1]
    bigger = model_cost(filled.model_copy(update={"pq_full_rows": filled.pq_full_rows + 1}), 12101)
    assert bigger[0] > budget[0] or bigger[1] > budget[1]
    # the rows follow the catalogue: a larger one leaves the codes fewer bytes' room for rows
    assert fill_budget(PQ64, 20_000, size_budget(D16, 20_000)).pq_full_rows > 1549
    # codes and codebooks over the budget: no rows (and the caller's bounds decide)
    assert fill_budget(PQ64, 12101, (1000, 10_000)).pq_full_rows == 0


def test_fill_budget_refuses_a_table_without_full_rows():
    with pytest.raises(ValueError, match="only a pq item table has full rows"):
        fill_budget(D16, 100, (10_000, 100_000))


def test_fill_candidates_sizes_the_beauty_candidate_for_each_catalogue():
    beauty = load_config(profile="beauty")
    assert [c.fill_budget for c in beauty.candidates.students] == [False, True]
    for n_items in (12101, 20_000):
        sized = fill_candidates(beauty, n_items)
        (_, s16, _), (_, spq, _) = sized.student_candidates()
        assert s16 == beauty.student and not any(c.fill_budget for c in sized.candidates.students)
        assert spq.model == fill_budget(spq.model, n_items, size_budget(beauty.student.model, n_items))
        assert 0 < spq.model.pq_full_rows < n_items
        sized.check_catalogue(n_items)  # the filled rows always leave a coded tail
    assert fill_candidates(beauty, 12101).student_candidates()[1][1].model.pq_full_rows == 1549
    # on 3,000 items the d=64 codes, codebooks and GRU alone cost more than the d=16 student
    assert fill_candidates(beauty, 3000).student_candidates()[1][1].model.pq_full_rows == 0
    demo = load_config(profile="demo")
    assert fill_candidates(demo, 500) is demo  # nothing to fill
