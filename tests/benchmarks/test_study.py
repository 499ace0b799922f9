import json

import pytest

from shopdistill.benchmarks.recipe import sasrec_params, suggest
from shopdistill.benchmarks.study import cache_spec, run_study, study_grid
from shopdistill.components.config import ModelConfig, load_config
from shopdistill.components.evaluation import model_size_bytes
from shopdistill.components.models import build_model, count_parameters
from tests.tiny import TINY_PIPELINE

pytestmark = pytest.mark.slow


def test_quick_study_aggregates_seeds_and_reuses(out_root, tmp_path):
    config = load_config(profile="demo", overrides=TINY_PIPELINE)
    lines = []
    result = run_study(config, tmp_path / "study", seeds=(0, 1), requests=10, log=lines.append)
    names = [v.name for v in study_grid(config)]
    assert list(result["rows"]) == names == ["sasrec-d8-nokd", "sasrec-d8-kd", "gru-d8-nokd", "gru-d8-kd"]
    assert len(result["runs"]) == 2 * len(names)
    row = result["rows"]["sasrec-d8-kd"]
    per_seed = [r["test"]["NDCG@10"] for r in result["runs"] if r["variant"] == "sasrec-d8-kd"]
    assert row["test"]["NDCG@10"]["mean"] == pytest.approx(sum(per_seed) / 2)
    assert row["test"]["NDCG@10"]["n"] == 2 and row["seeds"] == [0, 1]
    assert result["teacher_per_seed"] is False and result["teacher"]["seeds"] == [0]
    # the shipped student: the best KD row at the profile's width on validation, whatever its architecture
    kd_valid = {n: result["rows"][n]["valid"]["NDCG@10"]["mean"] for n in ("sasrec-d8-kd", "gru-d8-kd")}
    assert result["chosen_on_validation"] == max(kd_valid, key=kd_valid.get)
    assert {c["check"] for c in result["checks"]} >= {
        "teacher NDCG@10 >= 0.052",
        "sasrec-d8-kd >= 1.15 x sasrec-d8-nokd",
    }
    out = tmp_path / "study"
    assert json.loads((out / "study.json").read_text())["rows"].keys() == result["rows"].keys()
    md = (out / "study.md").read_text()
    assert "| gru-d8-kd | headline |" in md
    # each student against the teacher: parameters, validation and test NDCG@10, p99
    t, row = result["teacher"], result["rows"]["gru-d8-kd"]
    ratios = (
        t["params"] / row["params"],
        row["valid"]["NDCG@10"]["mean"] / t["valid"]["NDCG@10"]["mean"],
        row["test"]["NDCG@10"]["mean"] / t["test"]["NDCG@10"]["mean"],
        row["latency_p99_ms"] / t["latency_p99_ms"],
    )
    tradeoff = md.split("Against the teacher")[1].split("| target")[0]
    assert (
        f"| gru-d8-kd | {ratios[0]:.1f} | {ratios[1]:.3f} | {ratios[2]:.3f} | {ratios[3]:.3f} |" in tradeoff
    )
    assert tradeoff.count("\n| ") == 1 + len(names)  # the header, then one line per student
    assert (out / "size_curve_params.png").stat().st_size > 0 and (out / "size_curve_latency.png").is_file()
    assert (out / "epoch_budget.png").stat().st_size > 0
    # KD vs no KD on the same epoch budget, from each run's validation curve
    runs = [r for r in result["runs"] if r["variant"] == "gru-d8-kd"]
    assert all(len(r["valid_curve"]) == r["epochs"] for r in runs)
    budget = result["rows"]["gru-d8-kd"]["valid_within_epochs"]["10"]
    assert budget["mean"] == pytest.approx(sum(max(r["valid_curve"][:10]) for r in runs) / 2)
    assert "| gru-d8-kd | " in (out / "study.md").read_text().split("Same epoch budget")[1]
    # rerun: every student and the teacher are reused, nothing trains
    lines.clear()
    again = run_study(config, tmp_path / "again", seeds=(0, 1), requests=10, log=lines.append)
    assert not any("/2 loss" in line for line in lines)
    assert again["rows"]["gru-d8-kd"]["test"] == result["rows"]["gru-d8-kd"]["test"]
    # a study of other student seeds keeps the profile's teacher (runtime.seed), not one of seed 1
    lines.clear()
    later = run_study(config, tmp_path / "later", seeds=(1,), requests=10, log=lines.append)
    assert not any("/2 loss" in line for line in lines)
    assert later["teacher"]["seeds"] == [0] and later["teacher"]["test"] == result["teacher"]["test"]


def test_best_within_an_epoch_budget():
    from shopdistill.benchmarks.study import best_within

    curve = [0.1, 0.3, 0.2, 0.4]
    assert [best_within(curve, e) for e in (1, 2, 3, 4, 40)] == [0.1, 0.3, 0.3, 0.4, 0.4]


def test_full_grid_has_every_group():
    config = load_config(profile="beauty")
    grid = study_grid(config, full=True)
    groups = {v.group for v in grid}
    assert groups == {"headline", "ablation", "temperature", "top_k", "size", "compressed"}
    assert sorted(v.distill["temperature"] for v in grid if v.group == "temperature") == [1, 2, 4, 8]
    assert sorted(v.distill["top_k"] for v in grid if v.group == "top_k") == [20, 50, 100, 200]
    assert sorted({v.d_model for v in grid if v.group == "size"}) == [32, 64]  # d=16 is the headline's
    assert len({v.name for v in grid}) == len(grid)  # a shared variant is trained and reported once
    sizes = study_grid(config, groups=("size",))
    assert [v.name for v in sizes] == [f"sasrec-d{d}-{k}" for d in (16, 32, 64) for k in ("nokd", "kd")]
    both = study_grid(config, groups=("headline", "size"))
    assert [v.name for v in both] == [v.name for v in study_grid(config)] + [v.name for v in sizes[2:]]
    with pytest.raises(ValueError, match="unknown study group.*'sizes'"):
        study_grid(config, groups=("sizes",))
    assert [v.name for v in study_grid(config, archs=("gru",))] == ["gru-d16-nokd", "gru-d16-kd"]
    compressed = [f"gru-d{d}-{s}-{k}" for s in ("pq", "qr") for d in (32, 64) for k in ("nokd", "kd")]
    assert [v.name for v in study_grid(config, groups=("compressed",))] == compressed  # the profile's arch
    assert [v.name for v in study_grid(config, full=True, archs=("gru",))] == [
        "gru-d16-nokd",
        "gru-d16-kd",
        *compressed,
    ]


def test_the_compressed_group_reports_size_on_disk_and_its_targets(out_root, tmp_path):
    # items for d <= 64; the budget: a d=64 full-table student over 80 items
    overrides = [
        *TINY_PIPELINE,
        "student.model.arch=gru",
        "teacher.model.d_model=64",
        "student.model.d_model=64",
    ]
    config = load_config(profile="demo", overrides=overrides)
    result = run_study(
        config, tmp_path / "c", seeds=(0,), groups=("compressed",), requests=5, log=lambda _m: None
    )
    rows = result["rows"]
    assert set(rows) == {f"gru-d{d}-{s}-{k}" for s in ("pq", "qr") for d in (32, 64) for k in ("nokd", "kd")}
    budget = result["size_budget"]
    full = build_model(config.student.model, 80)
    assert (budget["params"], budget["bytes"]) == (count_parameters(full), model_size_bytes(full))
    for name, row in rows.items():
        built = build_model(ModelConfig.model_validate(row["model"]), 80)
        assert row["params"] == count_parameters(built) and row["size_bytes"] == model_size_bytes(built), name
        assert row["size_bytes"] > 4 * row["params"]  # the state: parameters plus codes (pq) and framing
    pq, qr = rows["gru-d64-pq-kd"], rows["gru-d64-qr-kd"]
    assert pq["size_bytes"] - 4 * pq["params"] > qr["size_bytes"] - 4 * qr["params"]  # the codes are stored
    # a pq student fills the budget with full rows (here every item but one: a tiny catalogue) ...
    small = ModelConfig.model_validate(rows["gru-d32-pq-kd"]["model"])
    assert (
        small.pq_groups == 8
        and small.pq_full_rows == 79
        and rows["gru-d32-pq-kd"]["params"] <= budget["params"]
    )
    # ... or has none where its codebooks and encoder alone are over it (256 codes x 64 dims)
    big = ModelConfig.model_validate(rows["gru-d64-pq-kd"]["model"])
    assert big.pq_full_rows == 0 and rows["gru-d64-pq-kd"]["params"] > budget["params"]
    checks = [c["check"] for c in result["checks"]]
    assert any("NDCG@10 >= 0.95 x teacher" in c and "chosen on validation" in c for c in checks)
    assert any("p99 <= 0.1 x teacher" in c for c in checks) and any("no-KD twin" in c for c in checks)
    md = (tmp_path / "c" / "study.md").read_text()
    assert "| gru-d64-pq-kd | compressed |" in md and (tmp_path / "c" / "size_curve_params.png").is_file()


def test_temperature_and_top_k_sweep_logits_kd_whatever_the_profile_adds():
    """The sweeps vary logits KD alone: a profile that adds ranking KD keeps their students (and keys)."""
    for overrides in ([], ["distill.w_ranking=0.5", "distill.w_feature=1", "distill.cache_hidden=true"]):
        grid = study_grid(load_config(profile="beauty", overrides=overrides), groups=("temperature", "top_k"))
        assert all(
            v.distill["w_ranking"] == v.distill["w_feature"] == v.distill["w_relation"] == 0.0 for v in grid
        )


@pytest.mark.parametrize("items,d,layers,max_len", [(12101, 128, 2, 50), (500, 16, 1, 20), (80, 8, 1, 30)])
def test_parameter_formula_matches_the_model(items, d, layers, max_len):
    cfg = load_config(profile="demo").teacher.model.model_copy(
        update={"d_model": d, "n_layers": layers, "n_heads": 1, "max_len": max_len}
    )
    assert sasrec_params(items, d, layers, max_len) == count_parameters(build_model(cfg, items))


def test_recipe_reproduces_beauty_and_shrinks_for_sparse_logs():
    beauty = suggest(
        {
            "users": 22363,
            "items": 12101,
            "interactions": 198502,
            "per_item": 16.4,
            "length_p50": 6,
            "length_p99": 43,
        }
    )
    profile = load_config(profile="beauty")
    assert beauty["teacher.model.d_model"] == profile.teacher.model.d_model == 128
    assert beauty["teacher.model.dropout"] == profile.teacher.model.dropout
    assert beauty["student.model.d_model"] == profile.student.model.d_model == 16
    assert beauty["teacher.model.max_len"] == profile.teacher.model.max_len == 50
    sparse = suggest(
        {
            "users": 1418,
            "items": 6174,
            "interactions": 9444,
            "per_item": 1.53,
            "length_p50": 5,
            "length_p99": 25.7,
        }
    )
    assert sparse["teacher.model.d_model"] == 32 and sparse["teacher.model.max_len"] == 30
    s = sparse["student.model.d_model"]
    assert s < 16 and sasrec_params(6174, s, 1, 30) * 8 <= sasrec_params(6174, 32, 2, 30)


def test_study_with_an_ensemble_teacher_counts_every_member(out_root, tmp_path):
    config = load_config(profile="demo", overrides=[*TINY_PIPELINE, "teacher.ensemble=2"])
    result = run_study(
        config, tmp_path / "study", seeds=(0,), archs=("sasrec",), requests=5, log=lambda _: None
    )
    t = result["teacher"]
    single = count_parameters(build_model(config.teacher.model, result["dataset"]["items"]))
    assert t["ensemble"] == 2 and t["params"] == 2 * single  # the 8x-smaller check counts every member
    assert t["members"]["test"]["NDCG@10"]["n"] == 2  # both members scored alone as well
    assert t["latency_p99_ms"] > 0  # measured on the whole ensemble (both members run per request)


def test_a_variant_is_the_same_model_whichever_groups_run_with_it(out_root, tmp_path):
    # the KD-setting groups share one cache (top-200, hidden states), the headline and size groups use
    # the profile's: so `--groups ablation` and a later `--groups temperature` share their students
    beauty = load_config(profile="beauty")
    assert cache_spec("headline", beauty) == cache_spec("size", beauty) == (100, False)
    assert {cache_spec(g, beauty) for g in ("ablation", "temperature", "top_k")} == {(200, True)}

    config = load_config(profile="demo", overrides=[*TINY_PIPELINE, "data.source.n_items=250"])
    lines = []
    first = run_study(config, tmp_path / "a", seeds=(0,), groups=("ablation",), requests=5, log=lines.append)
    assert any(line.startswith("[sasrec-d8-logits] epoch") for line in lines)
    lines.clear()
    later = run_study(
        config, tmp_path / "t", seeds=(0,), groups=("temperature",), requests=5, log=lines.append
    )
    # T=1 is the demo profile's temperature: the ablation's logits-only student, reused, not retrained
    assert not any(line.startswith("[sasrec-d8-T1] epoch") for line in lines)
    assert any(line.startswith("[sasrec-d8-T4] epoch") for line in lines)
    assert later["rows"]["sasrec-d8-T1"]["test"] == first["rows"]["sasrec-d8-logits"]["test"]


def test_variants_limit_the_grid_to_the_rows_named():
    config = load_config(profile="beauty")
    named = ("gru-d64-pq-nokd", "gru-d64-pq-kd")
    grid = study_grid(config, groups=("compressed",), variants=named)
    assert [v.name for v in grid] == list(named) and all(v.fill for v in grid)
    with pytest.raises(ValueError, match="no variant.*gru-d8-pq-kd"):
        study_grid(config, groups=("compressed",), variants=("gru-d8-pq-kd",))
