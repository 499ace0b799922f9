"""The built-in synthetic shop: deterministic, scalable, and shaped like a real store's event log.

What makes it look like a shop rather than noise:

* a catalogue over a two-level category tree (e.g. ``Electronics > Smartphones``), brands with a
  price tier each, log-normal prices around a per-category base, and generated titles;
* Zipf-like item popularity (``weight ~ rank^-zipf_exponent``);
* users with latent tastes: a few favourite departments, a favourite brand per department, a price
  tier; tastes drift from a start vector towards an end vector over the time span;
* sessions of product views; each view may become an add-to-cart and then a purchase (funnel);
* sequential structure: complementary categories (after a phone comes a case or a charger, after a
  coffee machine come coffee beans). Each product has a few specific complements, preferably of the
  same brand and price tier; the next view is one of them with probability ``p_complement`` (and a
  new session often starts from a complement of the last purchase). A sequence model can learn this;
  popularity cannot.

Generation is vectorised over users, step by step, so 10M interactions take well under a minute or two.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from shopdistill.components.config import SyntheticSource
from shopdistill.components.data.schema import source_interactions, source_items

# department -> leaf category -> (noun used in titles, base price, complementary leaf categories)
TAXONOMY: dict[str, dict[str, tuple[str, float, tuple[str, ...]]]] = {
    "Electronics": {
        "Smartphones": ("Smartphone", 450.0, ("Phone Cases", "Screen Protectors", "Chargers")),
        "Phone Cases": ("Phone Case", 20.0, ("Screen Protectors",)),
        "Screen Protectors": ("Screen Protector", 12.0, ()),
        "Chargers": ("Charger", 25.0, ("Cables",)),
        "Cables": ("USB-C Cable", 10.0, ()),
        "Laptops": ("Laptop", 900.0, ("Laptop Bags", "Computer Mice", "Chargers")),
        "Laptop Bags": ("Laptop Bag", 45.0, ()),
        "Computer Mice": ("Wireless Mouse", 30.0, ("Mouse Pads",)),
        "Mouse Pads": ("Mouse Pad", 12.0, ()),
        "Headphones": ("Headphones", 120.0, ("Headphone Cases",)),
        "Headphone Cases": ("Headphone Case", 18.0, ()),
        "Cameras": ("Camera", 600.0, ("Memory Cards", "Tripods", "Camera Bags")),
        "Memory Cards": ("Memory Card", 20.0, ()),
        "Tripods": ("Tripod", 40.0, ()),
        "Camera Bags": ("Camera Bag", 50.0, ()),
    },
    "Home & Kitchen": {
        "Coffee Machines": ("Coffee Machine", 250.0, ("Coffee Beans", "Milk Frothers", "Descalers")),
        "Coffee Beans": ("Coffee Beans 1kg", 18.0, ("Coffee Mugs",)),
        "Milk Frothers": ("Milk Frother", 35.0, ()),
        "Descalers": ("Descaler", 9.0, ()),
        "Coffee Mugs": ("Coffee Mug", 12.0, ()),
        "Cookware Sets": ("Cookware Set", 150.0, ("Kitchen Utensils", "Oven Mitts")),
        "Kitchen Utensils": ("Utensil Set", 25.0, ()),
        "Oven Mitts": ("Oven Mitts", 10.0, ()),
        "Vacuum Cleaners": ("Vacuum Cleaner", 220.0, ("Vacuum Bags",)),
        "Vacuum Bags": ("Vacuum Bags", 12.0, ()),
        "Bed Frames": ("Bed Frame", 350.0, ("Mattresses",)),
        "Mattresses": ("Mattress", 400.0, ("Bed Sheets", "Pillows")),
        "Bed Sheets": ("Bed Sheet Set", 40.0, ()),
        "Pillows": ("Pillow", 25.0, ()),
    },
    "Beauty": {
        "Shampoo": ("Shampoo", 9.0, ("Conditioner",)),
        "Conditioner": ("Conditioner", 9.0, ("Hair Masks",)),
        "Hair Masks": ("Hair Mask", 15.0, ()),
        "Nail Polish": ("Nail Polish", 8.0, ("Top Coats", "Nail Polish Remover")),
        "Top Coats": ("Top Coat", 8.0, ()),
        "Nail Polish Remover": ("Nail Polish Remover", 5.0, ()),
        "Face Creams": ("Face Cream", 30.0, ("Serums", "Sunscreen")),
        "Serums": ("Serum", 35.0, ()),
        "Sunscreen": ("Sunscreen SPF50", 15.0, ()),
        "Mascara": ("Mascara", 14.0, ("Makeup Remover",)),
        "Makeup Remover": ("Makeup Remover", 9.0, ()),
    },
    "Sports & Outdoors": {
        "Running Shoes": ("Running Shoes", 110.0, ("Sports Socks", "Running Belts")),
        "Sports Socks": ("Sports Socks 3-Pack", 12.0, ()),
        "Running Belts": ("Running Belt", 20.0, ()),
        "Yoga Mats": ("Yoga Mat", 35.0, ("Yoga Blocks", "Yoga Straps")),
        "Yoga Blocks": ("Yoga Block", 15.0, ()),
        "Yoga Straps": ("Yoga Strap", 9.0, ()),
        "Bicycles": ("Bicycle", 700.0, ("Bike Helmets", "Bike Lights", "Bike Locks")),
        "Bike Helmets": ("Bike Helmet", 60.0, ()),
        "Bike Lights": ("Bike Light Set", 25.0, ()),
        "Bike Locks": ("Bike Lock", 30.0, ()),
        "Tents": ("Tent", 180.0, ("Sleeping Bags", "Camping Lanterns")),
        "Sleeping Bags": ("Sleeping Bag", 70.0, ()),
        "Camping Lanterns": ("Camping Lantern", 25.0, ()),
    },
    "Toys & Baby": {
        "Strollers": ("Stroller", 300.0, ("Stroller Organizers", "Rain Covers")),
        "Stroller Organizers": ("Stroller Organizer", 20.0, ()),
        "Rain Covers": ("Stroller Rain Cover", 18.0, ()),
        "Diapers": ("Diapers Pack", 25.0, ("Baby Wipes",)),
        "Baby Wipes": ("Baby Wipes", 6.0, ()),
        "Building Sets": ("Building Set", 60.0, ("Toy Storage",)),
        "Toy Storage": ("Toy Storage Box", 25.0, ()),
        "Board Games": ("Board Game", 35.0, ("Game Expansions",)),
        "Game Expansions": ("Game Expansion", 20.0, ()),
    },
    "Fashion": {
        "Jeans": ("Jeans", 70.0, ("Belts",)),
        "Belts": ("Leather Belt", 30.0, ()),
        "Sneakers": ("Sneakers", 90.0, ("Shoe Care",)),
        "Shoe Care": ("Shoe Care Kit", 15.0, ()),
        "Dresses": ("Dress", 80.0, ("Handbags",)),
        "Handbags": ("Handbag", 120.0, ()),
        "Winter Jackets": ("Winter Jacket", 160.0, ("Scarves", "Gloves")),
        "Scarves": ("Scarf", 25.0, ()),
        "Gloves": ("Gloves", 20.0, ()),
    },
}
TIER_NAMES = ("Basic", "Plus", "Pro")
TIER_PRICE = np.array([0.7, 1.0, 1.6])
_SYLLABLES = (
    "lu",
    "mi",
    "ra",
    "ko",
    "ve",
    "zen",
    "tor",
    "na",
    "pix",
    "ar",
    "sol",
    "ly",
    "qu",
    "bel",
    "dor",
    "fi",
    "ga",
    "no",
    "vo",
    "tek",
    "ma",
    "ri",
    "sa",
    "on",
    "el",
    "ix",
    "ta",
    "ro",
)
MAX_COMPLEMENTS = 4
MAX_VIEWS_PER_USER = 400


@dataclass(frozen=True)
class Catalogue:
    """The generated catalogue as arrays indexed by item (0-based)."""

    leaf: np.ndarray  # (I,) leaf category index
    brand: np.ndarray  # (I,) brand index
    tier: np.ndarray  # (I,) price tier 0..2
    price: np.ndarray  # (I,) float
    popularity: np.ndarray  # (I,) normalised Zipf weight
    complements: np.ndarray  # (I, MAX_COMPLEMENTS) item indices, -1 padded
    n_complements: np.ndarray  # (I,)
    leaf_names: list[str]
    leaf_department: np.ndarray  # (C,) department index per leaf
    brand_names: list[str]
    titles: list[str]


class _GroupSampler:
    """Popularity-weighted sampling of an item from a group, vectorised over many requests.

    Items are sorted by group; each group's cumulative weights are normalised to (0, 1] and shifted
    by the group index, so one ``searchsorted`` over ``group + u`` samples every request at once.
    """

    def __init__(self, group_of_item: np.ndarray, weight: np.ndarray, n_groups: int):
        self.items = np.argsort(group_of_item, kind="stable")
        groups = group_of_item[self.items]
        w = weight[self.items]
        size = np.bincount(group_of_item, minlength=n_groups)
        self.start = np.concatenate([[0], np.cumsum(size)[:-1]])
        self.last = self.start + size - 1
        cum = np.cumsum(w)
        before = np.concatenate([[0.0], cum])[self.start][groups]
        totals = np.bincount(group_of_item, weights=weight, minlength=n_groups)[groups]
        self.cdf = groups + (cum - before) / totals

    def sample(self, groups: np.ndarray, u: np.ndarray) -> np.ndarray:
        idx = np.searchsorted(self.cdf, groups + u, side="left")
        return self.items[np.clip(idx, self.start[groups], self.last[groups])]


def _brand_names(rng: np.random.Generator, n: int) -> list[str]:
    names: set[str] = set()
    out: list[str] = []
    while len(out) < n:
        k = rng.integers(2, 4)
        name = "".join(rng.choice(_SYLLABLES, size=k)).capitalize()
        if name not in names:
            names.add(name)
            out.append(name)
    return out


def build_catalogue(cfg: SyntheticSource, rng: np.random.Generator) -> Catalogue:
    departments = list(TAXONOMY)
    leaf_names: list[str] = []
    leaf_department: list[int] = []
    nouns: list[str] = []
    base_price: list[float] = []
    for d, dep in enumerate(departments):
        for leaf, (noun, price, _) in TAXONOMY[dep].items():
            leaf_names.append(leaf)
            leaf_department.append(d)
            nouns.append(noun)
            base_price.append(price)
    leaf_index = {name: i for i, name in enumerate(leaf_names)}
    n_leaves = len(leaf_names)
    dep_arr = np.array(leaf_department)
    n_items = cfg.n_items

    # Every leaf gets at least one item; the rest are spread with Dirichlet noise.
    shares = rng.dirichlet(np.full(n_leaves, 3.0))
    counts = 1 + rng.multinomial(max(n_items - n_leaves, 0), shares) if n_items >= n_leaves else None
    if counts is None:
        leaf = rng.choice(n_leaves, size=n_items, replace=False)
    else:
        leaf = np.repeat(np.arange(n_leaves), counts)
    leaf = rng.permutation(leaf)

    # Brands belong to one department and have a price tier.
    n_brands = max(cfg.n_brands, len(departments))
    brand_department = np.concatenate(
        [np.arange(len(departments)), rng.integers(0, len(departments), n_brands - len(departments))]
    )
    brand_tier = rng.choice(3, size=n_brands, p=[0.35, 0.45, 0.2])
    brand_names = _brand_names(rng, n_brands)
    brand = np.empty(n_items, dtype=np.int64)
    for d in range(len(departments)):
        members = np.flatnonzero(brand_department == d)
        mask = dep_arr[leaf] == d
        # Brand sizes are skewed too: a few big brands, many small ones.
        w = rng.dirichlet(np.full(len(members), 0.7))
        brand[mask] = rng.choice(members, size=mask.sum(), p=w)
    tier = brand_tier[brand]
    price = (
        np.round(np.array(base_price)[leaf] * TIER_PRICE[tier] * rng.lognormal(0.0, 0.25, n_items), 0) - 0.01
    )
    price = np.maximum(price, 0.99)

    rank = rng.permutation(n_items) + 1
    popularity = rank.astype(np.float64) ** (-cfg.zipf_exponent)
    popularity /= popularity.sum()

    # Specific complements per item: same brand first, then same tier, popularity-weighted.
    complements = np.full((n_items, MAX_COMPLEMENTS), -1, dtype=np.int64)
    n_complements = np.zeros(n_items, dtype=np.int64)
    items_in_leaf = [np.flatnonzero(leaf == c) for c in range(n_leaves)]
    for i in range(n_items):
        dep = departments[dep_arr[leaf[i]]]
        targets = TAXONOMY[dep][leaf_names[leaf[i]]][2]
        picks: list[int] = []
        per_target = max(1, MAX_COMPLEMENTS // max(len(targets), 1))
        for t in targets:
            cand = items_in_leaf[leaf_index[t]]
            if len(cand) == 0:  # small catalogues leave some categories empty
                continue
            pref = cand[brand[cand] == brand[i]]
            if len(pref) == 0:
                pref = cand[tier[cand] == tier[i]]
            if len(pref) == 0:
                pref = cand
            w = popularity[pref] / popularity[pref].sum()
            k = min(per_target, len(pref))
            picks.extend(rng.choice(pref, size=k, replace=False, p=w).tolist())
        picks = picks[:MAX_COMPLEMENTS]
        complements[i, : len(picks)] = picks
        n_complements[i] = len(picks)

    variants = ("", "Mini", "Max", "Lite", "Air", "Classic", "Eco", "Sport")
    titles = []
    for i in range(n_items):
        variant = variants[rng.integers(len(variants))]
        model = f"{chr(65 + rng.integers(26))}{rng.integers(1, 100)}"
        parts = [brand_names[brand[i]], TIER_NAMES[tier[i]], nouns[leaf[i]], variant, model]
        titles.append(" ".join(p for p in parts if p))
    return Catalogue(
        leaf=leaf,
        brand=brand,
        tier=tier,
        price=price,
        popularity=popularity,
        complements=complements,
        n_complements=n_complements,
        leaf_names=[f"{departments[dep_arr[c]]} > {leaf_names[c]}" for c in range(n_leaves)],
        leaf_department=dep_arr,
        brand_names=brand_names,
        titles=titles,
    )


def _user_tastes(rng: np.random.Generator, n_users: int, cat: Catalogue) -> np.ndarray:
    """(U, C) category preferences: a few favourite departments, primary products weighted up."""
    n_dep = int(cat.leaf_department.max()) + 1
    dep_pref = rng.dirichlet(np.full(n_dep, 0.3), size=n_users)  # (U, D)
    # Leaves that are nobody's complement are "primary" products people start from.
    is_target = np.zeros(len(cat.leaf_names), dtype=bool)
    short = [n.split(" > ")[1] for n in cat.leaf_names]
    for dep in TAXONOMY.values():
        for _, _, targets in dep.values():
            for t in targets:
                is_target[short.index(t)] = True
    leaf_weight = np.where(is_target, 0.4, 1.0) * rng.gamma(2.0, 0.5, len(short))
    leaf_weight *= np.bincount(cat.leaf, minlength=len(short)) > 0  # never pick an empty category
    taste = dep_pref[:, cat.leaf_department] * leaf_weight[None, :] + 1e-9 * leaf_weight[None, :]  # (U, C)
    return taste / taste.sum(axis=1, keepdims=True)


def generate(cfg: SyntheticSource) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Generate ``(interactions, items)`` source frames. Same ``cfg`` -> identical output."""
    rng = np.random.default_rng(cfg.seed)
    cat = build_catalogue(cfg, rng)
    n_users, n_items, n_leaves = cfg.n_users, cfg.n_items, len(cat.leaf_names)
    n_brands = len(cat.brand_names)

    # --- users: tastes at the start and end of the time span, brand loyalty, price tier, buying mood
    taste_a = _user_tastes(rng, n_users, cat)
    taste_b = (1 - cfg.taste_drift) * taste_a + cfg.taste_drift * _user_tastes(rng, n_users, cat)
    cum_a = np.cumsum(taste_a, axis=1).astype(np.float32)
    cum_b = np.cumsum(taste_b, axis=1).astype(np.float32)
    loyalty = rng.beta(2.0, 2.0 * (1 - cfg.brand_loyalty) / max(cfg.brand_loyalty, 1e-6), n_users)
    price_sensitivity = rng.beta(2.0, 2.0, n_users)
    user_tier = rng.choice(3, size=n_users, p=[0.4, 0.4, 0.2])
    n_dep = int(cat.leaf_department.max()) + 1
    fav_brand = np.empty((n_users, n_dep), dtype=np.int64)
    for d in range(n_dep):
        dep_brands = np.unique(cat.brand[cat.leaf_department[cat.leaf] == d])
        # a department without items is never visited (empty categories have zero taste)
        fav_brand[:, d] = rng.choice(dep_brands, size=n_users) if len(dep_brands) else 0
    buyer = rng.beta(2.0, 4.0, n_users) / (2.0 / 6.0)  # mean 1: some users buy far more often

    # --- sessions and views (ragged, flattened per user)
    n_sessions = 1 + rng.poisson(cfg.sessions_per_user - 1 if cfg.sessions_per_user > 1 else 0, n_users)
    total_sessions = int(n_sessions.sum())
    session_user = np.repeat(np.arange(n_users), n_sessions)
    session_len = 1 + rng.poisson(max(cfg.views_per_session - 1, 0), total_sessions)
    # Session start times: sorted uniform offsets within the span, per user.
    span = cfg.days * 86_400
    start_offset = rng.uniform(0, span, total_sessions)
    order = np.lexsort((start_offset, session_user))
    start_offset = start_offset[order]
    views_per_user = np.bincount(session_user, weights=session_len, minlength=n_users).astype(np.int64)
    cap = np.minimum(views_per_user, MAX_VIEWS_PER_USER)
    view_user = np.repeat(np.arange(n_users), cap)
    user_offset = np.concatenate([[0], np.cumsum(cap)[:-1]])
    # For each view: its session (index into the user's sessions) and whether it opens the session.
    session_first_global = np.concatenate([[0], np.cumsum(n_sessions)[:-1]])
    local_session = np.arange(total_sessions) - session_first_global[session_user]
    session_of_view = np.repeat(local_session, session_len)  # uncapped, user-major
    session_idx = np.empty(len(view_user), dtype=np.int64)
    step = np.arange(len(view_user)) - user_offset[view_user]
    full_offset = np.concatenate([[0], np.cumsum(views_per_user)[:-1]])
    session_idx[:] = session_of_view[full_offset[view_user] + step]
    gsession = session_first_global[view_user] + session_idx
    opens = np.r_[True, gsession[1:] != gsession[:-1]]
    gaps = 60.0 + rng.exponential(120.0, len(view_user))
    gaps[opens] = 0.0
    # Time within session: cumulative gaps since the session opened.
    cum_gap = np.cumsum(gaps)
    cum_gap -= np.maximum.accumulate(np.where(opens, cum_gap, 0.0))
    view_time = start_offset[gsession] + cum_gap
    drift_w = np.clip(start_offset[gsession] / span, 0, 1)

    # Funnel per view, independent of the item chosen.
    is_cart = rng.random(len(view_user)) < np.clip(cfg.p_cart * buyer[view_user], 0, 1)
    is_purchase = is_cart & (rng.random(len(view_user)) < cfg.p_purchase)

    # --- item choice, step by step, vectorised across users
    cat_sampler = _GroupSampler(cat.leaf, cat.popularity, n_leaves)
    cb_key = cat.leaf * n_brands + cat.brand
    cb_keys, cb_group = np.unique(cb_key, return_inverse=True)
    brand_sampler = _GroupSampler(cb_group, cat.popularity, len(cb_keys))
    ct_key = cat.leaf * 3 + cat.tier
    ct_keys, ct_group = np.unique(ct_key, return_inverse=True)
    tier_sampler = _GroupSampler(ct_group, cat.popularity, len(ct_keys))

    def pick_in_category(users: np.ndarray, leaves: np.ndarray) -> np.ndarray:
        u = rng.random(len(users))
        out = cat_sampler.sample(leaves, u)
        # favourite brand in this department, when it sells this category
        fb = fav_brand[users, cat.leaf_department[leaves]]
        key = leaves * n_brands + fb
        pos = np.minimum(np.searchsorted(cb_keys, key), len(cb_keys) - 1)
        has = cb_keys[pos] == key
        use = has & (rng.random(len(users)) < loyalty[users])
        out[use] = brand_sampler.sample(pos[use], u[use])
        key_t = leaves * 3 + user_tier[users]
        pos_t = np.minimum(np.searchsorted(ct_keys, key_t), len(ct_keys) - 1)
        has_t = ct_keys[pos_t] == key_t
        use_t = ~use & has_t & (rng.random(len(users)) < 0.5 * price_sensitivity[users])
        out[use_t] = tier_sampler.sample(pos_t[use_t], u[use_t])
        return out

    def pick_from_taste(users: np.ndarray, w: np.ndarray) -> np.ndarray:
        late = rng.random(len(users)) < w
        cum = np.where(late[:, None], cum_b[users], cum_a[users])
        r = rng.random(len(users), dtype=np.float32) * cum[:, -1]
        leaves = np.minimum((cum < r[:, None]).sum(axis=1), n_leaves - 1)
        return pick_in_category(users, leaves)

    def pick_complement(items: np.ndarray) -> np.ndarray:
        k = (rng.random(len(items)) * np.maximum(cat.n_complements[items], 1)).astype(np.int64)
        return cat.complements[items, k]

    view_item = np.empty(len(view_user), dtype=np.int64)
    current = np.full(n_users, -1, dtype=np.int64)
    last_bought = np.full(n_users, -1, dtype=np.int64)
    for t in range(int(cap.max()) if len(cap) else 0):
        users = np.flatnonzero(cap > t)
        rows = user_offset[users] + t
        r = rng.random(len(users))
        choice = np.full(len(users), -1, dtype=np.int64)
        new_session = opens[rows]
        # within a session: complement of what is on screen, or a substitute
        inside = ~new_session & (current[users] >= 0)
        comp = inside & (r < cfg.p_complement)
        if comp.any():
            choice[comp] = pick_complement(current[users[comp]])
        subst = inside & (choice < 0) & (r < cfg.p_complement + cfg.p_same_category)
        if subst.any():
            choice[subst] = pick_in_category(users[subst], cat.leaf[current[users[subst]]])
        # a new session often continues from the last purchase
        follow = new_session & (last_bought[users] >= 0) & (r < cfg.p_complement)
        if follow.any():
            choice[follow] = pick_complement(last_bought[users[follow]])
        rest = choice < 0
        if rest.any():
            choice[rest] = pick_from_taste(users[rest], drift_w[rows[rest]])
        view_item[rows] = choice
        current[users] = choice
        bought = is_purchase[rows]
        last_bought[users[bought]] = choice[bought]

    # --- event rows: view, then cart (+10..40 s), then purchase (+10..15 s after the cart)
    start_ts = int(pd.Timestamp(cfg.start, tz="UTC").timestamp())
    base_ts = start_ts + view_time.astype(np.int64)
    cart_rows = np.flatnonzero(is_cart)
    buy_rows = np.flatnonzero(is_purchase)
    cart_ts = base_ts[cart_rows] + rng.integers(10, 41, len(cart_rows))
    buy_ts = base_ts[buy_rows] + 41 + rng.integers(10, 16, len(buy_rows))
    src = np.concatenate([np.arange(len(view_user)), cart_rows, buy_rows])
    ts = np.concatenate([base_ts, cart_ts, buy_ts])
    kind = np.concatenate(
        [
            np.zeros(len(view_user), np.int8),
            np.ones(len(cart_rows), np.int8),
            np.full(len(buy_rows), 2, np.int8),
        ]
    )
    order = np.lexsort((kind, ts, view_user[src]))
    src, ts, kind = src[order], ts[order], kind[order]
    users = view_user[src]
    items = view_item[src]
    events = np.array(["view", "cart", "purchase"], dtype=object)[kind]
    user_ids = np.char.add("u", np.char.zfill(users.astype(str), 7))
    item_ids = np.char.add("p", np.char.zfill((items + 1).astype(str), 6))
    session_ids = np.char.add("s", (session_first_global[users] + session_idx[src]).astype(str))
    interactions = source_interactions(
        user_ids, item_ids, ts, events, price=cat.price[items], session_id=session_ids
    )
    all_items = np.char.add("p", np.char.zfill((np.arange(n_items) + 1).astype(str), 6))
    items_frame = source_items(
        all_items,
        title=cat.titles,
        brand=[cat.brand_names[b] for b in cat.brand],
        category=[cat.leaf_names[c] for c in cat.leaf],
        price=cat.price,
    )
    return interactions, items_frame
