import numpy as np
import pandas as pd
import pytest

from shopdistill.benchmarks.baselines import hit_rate, markov_top_k, popularity_top_k, transition_counts
from shopdistill.components.config import PreprocessConfig, SyntheticSource
from shopdistill.components.data.preprocess import prepare_frames
from shopdistill.components.data.synthetic import TAXONOMY, build_catalogue, generate

SMALL = SyntheticSource(seed=3, n_users=800, n_items=300)


@pytest.fixture(scope="module")
def shop():
    return generate(SMALL)


def test_deterministic_from_seed(shop):
    again = generate(SMALL)
    pd.testing.assert_frame_equal(shop[0], again[0])
    pd.testing.assert_frame_equal(shop[1], again[1])
    other = generate(SMALL.model_copy(update={"seed": 4}))
    assert not shop[0]["item_id"].equals(other[0]["item_id"])


def test_catalogue_looks_like_a_shop(shop):
    _, items = shop
    assert len(items) == SMALL.n_items and items["item_id"].is_unique
    # two-level category tree, brands, positive prices, titles that name the brand
    assert items["category"].str.contains(" > ").all()
    assert items["category"].str.split(" > ").str[0].nunique() == len(TAXONOMY)
    assert items["brand"].nunique() > 10
    assert (items["price"] > 0).all()
    assert all(b in t for b, t in zip(items["brand"], items["title"], strict=True))
    # electronics are pricier than beauty products
    dep = items["category"].str.split(" > ").str[0]
    assert (
        items.loc[dep == "Electronics", "price"].median() > 3 * items.loc[dep == "Beauty", "price"].median()
    )


def test_complements_follow_the_category_graph():
    rng = np.random.default_rng(0)
    cat = build_catalogue(SMALL, rng)
    leaf_name = {i: n.split(" > ")[1] for i, n in enumerate(cat.leaf_names)}
    phones = np.flatnonzero(np.array([leaf_name[c] for c in cat.leaf]) == "Smartphones")
    assert len(phones) > 0
    for p in phones:
        comps = cat.complements[p, : cat.n_complements[p]]
        assert len(comps) > 0
        assert {leaf_name[cat.leaf[c]] for c in comps} <= {"Phone Cases", "Screen Protectors", "Chargers"}


def test_popularity_is_long_tailed(shop):
    views = shop[0].query("event == 'view'")["item_id"].value_counts()
    top_decile = views.iloc[: len(views) // 10].sum() / views.sum()
    assert top_decile > 0.3  # uniform would be 0.1
    assert views.iloc[0] > 10 * views.median()


def test_funnel_view_cart_purchase(shop):
    inter = shop[0]
    counts = inter["event"].value_counts()
    assert counts["view"] > counts["cart"] > counts["purchase"] > 0
    # every purchase follows a cart of the same item by the same user, in the same session, earlier
    carts = inter.query("event == 'cart'")[["user_id", "item_id", "session_id", "ts"]]
    buys = inter.query("event == 'purchase'")[["user_id", "item_id", "session_id", "ts"]]
    joined = buys.merge(carts, on=["user_id", "item_id", "session_id"], suffixes=("", "_cart"))
    ok = joined[joined["ts_cart"] < joined["ts"]].drop_duplicates(["user_id", "item_id", "session_id", "ts"])
    assert len(ok) == len(buys)


def test_sessions_and_time_order(shop):
    inter = shop[0]
    per_session = inter.query("event == 'view'").groupby("session_id").size()
    assert 2.5 < per_session.mean() < 6
    # rows come chronologically per user
    assert (inter.groupby("user_id")["ts"].diff().dropna() >= 0).all()


def test_scales_with_users():
    small = generate(SyntheticSource(seed=1, n_users=500, n_items=200))[0]
    large = generate(SyntheticSource(seed=1, n_users=5000, n_items=200))[0]
    assert 8 < len(large) / len(small) < 12


def _leave_one_out_baselines(cfg: SyntheticSource):
    inter, items = generate(cfg)
    prep = prepare_frames(inter, items, PreprocessConfig(dedupe="consecutive")).interactions
    train = prep[prep["split"] == "train"]
    test = prep[prep["split"] == "test"].set_index("user_id")["item_id"]
    prev = prep[prep["split"] == "valid"].set_index("user_id")["item_id"].reindex(test.index)
    pop = popularity_top_k(pd.concat([train, prep[prep["split"] == "valid"]]), 10)
    pop_hr = hit_rate(np.tile(pop, (len(test), 1)), test.to_numpy())
    trans = transition_counts(prep[prep["split"] != "test"])
    markov_hr = hit_rate(markov_top_k(trans, prev.to_numpy(), 10, pop), test.to_numpy())
    return pop_hr, markov_hr


def test_sequence_model_can_beat_popularity_by_a_wide_margin():
    pop_hr, markov_hr = _leave_one_out_baselines(SyntheticSource(seed=0, n_users=2000, n_items=600))
    assert markov_hr > 0.3
    assert markov_hr > 3 * pop_hr, (pop_hr, markov_hr)


def test_no_sequential_signal_means_no_markov_gain():
    # Control: without complements or substitutes the Markov edge mostly disappears.
    cfg = SyntheticSource(seed=0, n_users=2000, n_items=600, p_complement=0.0, p_same_category=0.0)
    pop_hr, markov_hr = _leave_one_out_baselines(cfg)
    assert markov_hr < 2 * pop_hr, (pop_hr, markov_hr)


@pytest.mark.parametrize("n_items", [30, 60])
def test_small_catalogues_leave_no_item_in_an_empty_category(n_items):
    inter, items = generate(SyntheticSource(seed=2, n_users=200, n_items=n_items))
    assert set(inter["item_id"]) <= set(items["item_id"])
    assert len(items) == n_items


def test_launched_products_sell_only_after_launch_and_retired_ones_only_before(shop):
    from shopdistill.components.data.synthetic import _draw_life

    cfg = SMALL.model_copy(update={"launch_share": 0.2, "retire_share": 0.2, "days": 100})
    interactions, _ = generate(cfg)
    life = _draw_life(cfg, build_catalogue(cfg, np.random.default_rng(cfg.seed)))  # as generate draws it
    start = pd.Timestamp(cfg.start, tz="UTC").timestamp()
    where = (interactions["ts"].to_numpy() - start) / (cfg.days * 86_400)  # 0..1 of the span
    item = interactions["item_id"].str[1:].astype(int).to_numpy() - 1  # p000001 is item 0
    launched, retired = life.launch > 0, life.retire <= 1
    assert 0.1 < launched.mean() < 0.3 and 0.1 < retired.mean() < 0.3
    assert (where >= life.launch[item]).all()  # nothing of a product before its launch
    assert (where < life.retire[item] + 1 / cfg.days).all()  # nor after its retirement (sessions end)
    seen = np.bincount(item, minlength=cfg.n_items) > 0
    assert seen[launched].mean() > 0.5  # launched products do sell
    # without launches and retirements the shop is exactly the one generated before
    pd.testing.assert_frame_equal(generate(SMALL)[0], shop[0])


def test_shopper_styles_give_products_different_next_products(shop):
    styled, _ = generate(SMALL.model_copy(update={"styles": 4}))
    assert not styled["item_id"].equals(shop[0]["item_id"])
    pd.testing.assert_frame_equal(generate(SMALL.model_copy(update={"styles": 1}))[0], shop[0])


def _views_by(interactions: pd.DataFrame, cfg: SyntheticSource) -> pd.DataFrame:
    views = interactions[interactions["event"] == "view"]
    day = (views["ts"].to_numpy() - pd.Timestamp(cfg.start, tz="UTC").timestamp()) // 86_400
    return pd.DataFrame({"item": views["item_id"].str[1:].astype(int).to_numpy() - 1, "day": day})


def test_a_launched_product_is_promoted_for_its_first_days(shop):
    from shopdistill.components.data.synthetic import _draw_life

    cfg = SMALL.model_copy(update={"launch_share": 0.2, "days": 100, "promotion_days": 10})
    life = _draw_life(cfg, build_catalogue(cfg, np.random.default_rng(cfg.seed)))
    launch_day = np.floor(life.launch * cfg.days)

    def promoted_share(promotions: float) -> float:
        views = _views_by(generate(cfg.model_copy(update={"promotions": promotions}))[0], cfg)
        age = views["day"].to_numpy() - launch_day[views["item"].to_numpy()]
        launched = life.launch[views["item"].to_numpy()] > 0
        return float((launched & (age < 10)).mean())

    assert promoted_share(0.3) > 2 * promoted_share(0.0)
    # promotions without launches change nothing
    same = SMALL.model_copy(update={"promotions": 0.3})
    pd.testing.assert_frame_equal(generate(same)[0], shop[0])


def test_departments_take_turns_in_season():
    cfg = SMALL.model_copy(update={"days": 365, "seasonality": 0.6})
    interactions, items = generate(cfg)
    views = _views_by(interactions, cfg)
    department = items["category"].str.split(" > ").str[0].to_numpy()[views["item"].to_numpy()]
    share = pd.crosstab(views["day"].to_numpy() * 6 // 365, department, normalize="index")
    # each sixth of the year has a department of its own far above its share of the year
    assert (share.max(axis=1) > 0.4).all()
    assert share.idxmax(axis=1).nunique() == 6
