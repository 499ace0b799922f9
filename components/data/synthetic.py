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
  popularity cannot;
* a shop that changes (all off by default): products launch and retire (``launch_share``,
  ``retire_share``), a new product is promoted for ``promotion_days`` after its launch (a share of
  fresh picks goes to it), departments take turns in season over the year (``seasonality``), and
  shopper styles with their own complements that only a shopper's history reveals (``styles``).

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


def _flat_taxonomy() -> tuple[list[str], np.ndarray, list[str], np.ndarray]:
    """Flatten TAXONOMY into per-leaf ``(names, department (C,), title nouns, base prices (C,))``."""
    leaf_names: list[str] = []
    leaf_department: list[int] = []
    nouns: list[str] = []
    base_price: list[float] = []
    for d, dep in enumerate(TAXONOMY.values()):
        for leaf, (noun, price, _) in dep.items():
            leaf_names.append(leaf)
            leaf_department.append(d)
            nouns.append(noun)
            base_price.append(price)
    return leaf_names, np.array(leaf_department), nouns, np.array(base_price)


def _complement_leaves(leaf_names: list[str]) -> list[list[int]]:
    """Per leaf (in TAXONOMY order), the indices of its complementary leaves."""
    leaf_index = {name: i for i, name in enumerate(leaf_names)}
    return [[leaf_index[t] for t in targets] for dep in TAXONOMY.values() for _, _, targets in dep.values()]


def _assign_leaves(rng: np.random.Generator, n_items: int, n_leaves: int) -> np.ndarray:
    """(I,) shuffled leaf of every item.

    With at least one item per leaf available, every leaf gets one and the rest are spread with
    Dirichlet noise; otherwise a random subset of leaves gets one item each.
    """
    shares = rng.dirichlet(np.full(n_leaves, 3.0))
    if n_items >= n_leaves:
        leaf = np.repeat(np.arange(n_leaves), 1 + rng.multinomial(n_items - n_leaves, shares))
    else:
        leaf = rng.choice(n_leaves, size=n_items, replace=False)
    return rng.permutation(leaf)


def _assign_brands(
    cfg: SyntheticSource, rng: np.random.Generator, n_dep: int, item_department: np.ndarray
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Draw brands (one department and price tier each) and the brand of every item.

    Returns ``(brand (I,), brand_tier (B,), brand_names)``.
    """
    n_brands = max(cfg.n_brands, n_dep)
    brand_department = np.concatenate([np.arange(n_dep), rng.integers(0, n_dep, n_brands - n_dep)])
    brand_tier = rng.choice(3, size=n_brands, p=[0.35, 0.45, 0.2])
    brand_names = _brand_names(rng, n_brands)
    brand = np.empty(len(item_department), dtype=np.int64)
    for d in range(n_dep):
        members = np.flatnonzero(brand_department == d)
        mask = item_department == d
        # Brand sizes are skewed too: a few big brands, many small ones.
        w = rng.dirichlet(np.full(len(members), 0.7))
        brand[mask] = rng.choice(members, size=mask.sum(), p=w)
    return brand, brand_tier, brand_names


def _prices(
    rng: np.random.Generator, base_price: np.ndarray, leaf: np.ndarray, tier: np.ndarray
) -> np.ndarray:
    """(I,) float prices: leaf base price x tier factor x log-normal noise, ending in .99."""
    noise = rng.lognormal(0.0, 0.25, len(leaf))
    price = np.round(base_price[leaf] * TIER_PRICE[tier] * noise, 0) - 0.01
    return np.maximum(price, 0.99)


def _zipf_popularity(rng: np.random.Generator, n_items: int, exponent: float) -> np.ndarray:
    """(I,) normalised Zipf weights ``rank^-exponent`` over a random ranking of the items."""
    rank = rng.permutation(n_items) + 1
    popularity = rank.astype(np.float64) ** (-exponent)
    popularity /= popularity.sum()
    return popularity


def _pick_complements(
    rng: np.random.Generator,
    leaf: np.ndarray,
    brand: np.ndarray,
    tier: np.ndarray,
    popularity: np.ndarray,
    target_leaves: list[list[int]],
    structured: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Specific complements per item: ``(complements (I, MAX_COMPLEMENTS) -1 padded, counts (I,))``.

    Each complementary leaf gets an equal share of the slots, filled popularity-weighted without
    replacement from the item's own brand, else its price tier, else the whole leaf.
    """
    n_items = len(leaf)
    complements = np.full((n_items, MAX_COMPLEMENTS), -1, dtype=np.int64)
    n_complements = np.zeros(n_items, dtype=np.int64)
    items_in_leaf = [np.flatnonzero(leaf == c) for c in range(len(target_leaves))]
    for i in range(n_items):
        targets = target_leaves[leaf[i]]
        picks: list[int] = []
        per_target = max(1, MAX_COMPLEMENTS // max(len(targets), 1))
        for t in targets:
            cand = items_in_leaf[t]
            if len(cand) == 0:  # small catalogues leave some categories empty
                continue
            pref = cand[brand[cand] == brand[i]] if structured else cand
            if len(pref) == 0:
                pref = cand[tier[cand] == tier[i]]
            if len(pref) == 0:
                pref = cand
            w = popularity[pref] / popularity[pref].sum() if structured else None
            k = min(per_target, len(pref))
            picks.extend(rng.choice(pref, size=k, replace=False, p=w).tolist())
        picks = picks[:MAX_COMPLEMENTS]
        complements[i, : len(picks)] = picks
        n_complements[i] = len(picks)
    return complements, n_complements


def _titles(
    rng: np.random.Generator,
    leaf: np.ndarray,
    brand: np.ndarray,
    tier: np.ndarray,
    nouns: list[str],
    brand_names: list[str],
) -> list[str]:
    """One title per item: brand, tier, noun, an optional variant and a model code (e.g. ``K42``)."""
    variants = ("", "Mini", "Max", "Lite", "Air", "Classic", "Eco", "Sport")
    titles = []
    for i in range(len(leaf)):
        variant = variants[rng.integers(len(variants))]
        model = f"{chr(65 + rng.integers(26))}{rng.integers(1, 100)}"
        parts = [brand_names[brand[i]], TIER_NAMES[tier[i]], nouns[leaf[i]], variant, model]
        titles.append(" ".join(p for p in parts if p))
    return titles


def build_catalogue(cfg: SyntheticSource, rng: np.random.Generator) -> Catalogue:
    """Draw the catalogue: item leaves, brands and tiers, prices, popularity, complements, titles."""
    leaf_names, leaf_department, nouns, base_price = _flat_taxonomy()
    n_dep = len(TAXONOMY)
    leaf = _assign_leaves(rng, cfg.n_items, len(leaf_names))
    brand, brand_tier, brand_names = _assign_brands(cfg, rng, n_dep, leaf_department[leaf])
    tier = brand_tier[brand]
    price = _prices(rng, base_price, leaf, tier)
    popularity = _zipf_popularity(rng, cfg.n_items, cfg.zipf_exponent)
    complements, n_complements = _pick_complements(
        rng, leaf, brand, tier, popularity, _complement_leaves(leaf_names), cfg.structured_complements
    )
    titles = _titles(rng, leaf, brand, tier, nouns, brand_names)
    departments = list(TAXONOMY)
    return Catalogue(
        leaf=leaf,
        brand=brand,
        tier=tier,
        price=price,
        popularity=popularity,
        complements=complements,
        n_complements=n_complements,
        leaf_names=[
            f"{departments[d]} > {name}" for d, name in zip(leaf_department, leaf_names, strict=True)
        ],
        leaf_department=leaf_department,
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


@dataclass(frozen=True)
class _Users:
    """Latent user traits as arrays indexed by user (0-based)."""

    cum_taste_start: np.ndarray  # (U, C) float32 cumulative category preferences at the span's start
    cum_taste_end: np.ndarray  # (U, C) float32 the same at the span's end
    loyalty: np.ndarray  # (U,) probability of choosing the favourite brand
    price_sensitivity: np.ndarray  # (U,) in 0..1
    tier: np.ndarray  # (U,) preferred price tier 0..2
    fav_brand: np.ndarray  # (U, D) favourite brand index per department
    buyer: np.ndarray  # (U,) cart propensity multiplier, mean 1


@dataclass(frozen=True)
class _Views:
    """Every product view, user-major and in time order within each user."""

    user: np.ndarray  # (V,) user index
    first_row: np.ndarray  # (U,) row of each user's first view
    n_views: np.ndarray  # (U,) views per user, at most MAX_VIEWS_PER_USER
    session: np.ndarray  # (V,) global session index
    opens: np.ndarray  # (V,) bool: the view opens its session
    time: np.ndarray  # (V,) float seconds after cfg.start
    drift: np.ndarray  # (V,) 0..1 position of the session start within the span


def _favourite_brands(rng: np.random.Generator, n_users: int, cat: Catalogue) -> np.ndarray:
    """(U, D) each user's favourite brand per department, uniform over the department's brands."""
    n_dep = int(cat.leaf_department.max()) + 1
    fav_brand = np.empty((n_users, n_dep), dtype=np.int64)
    for d in range(n_dep):
        dep_brands = np.unique(cat.brand[cat.leaf_department[cat.leaf] == d])
        # a department without items is never visited (empty categories have zero taste)
        fav_brand[:, d] = rng.choice(dep_brands, size=n_users) if len(dep_brands) else 0
    return fav_brand


def _draw_users(cfg: SyntheticSource, rng: np.random.Generator, cat: Catalogue) -> _Users:
    """Draw tastes at the start and end of the span, brand loyalty, price tier and buying mood."""
    n_users = cfg.n_users
    taste_a = _user_tastes(rng, n_users, cat)
    taste_b = (1 - cfg.taste_drift) * taste_a + cfg.taste_drift * _user_tastes(rng, n_users, cat)
    loyalty = rng.beta(2.0, 2.0 * (1 - cfg.brand_loyalty) / max(cfg.brand_loyalty, 1e-6), n_users)
    price_sensitivity = rng.beta(2.0, 2.0, n_users)
    tier = rng.choice(3, size=n_users, p=[0.4, 0.4, 0.2])
    fav_brand = _favourite_brands(rng, n_users, cat)
    buyer = rng.beta(2.0, 4.0, n_users) / (2.0 / 6.0)  # mean 1: some users buy far more often
    return _Users(
        cum_taste_start=np.cumsum(taste_a, axis=1).astype(np.float32),
        cum_taste_end=np.cumsum(taste_b, axis=1).astype(np.float32),
        loyalty=loyalty,
        price_sensitivity=price_sensitivity,
        tier=tier,
        fav_brand=fav_brand,
        buyer=buyer,
    )


@dataclass(frozen=True)
class _Life:
    """When each product is on sale, as positions 0..1 of the span: from ``launch`` to ``retire``."""

    launch: np.ndarray  # (I,) 0 for products on sale from the start
    retire: np.ndarray  # (I,) above 1 for products on sale to the end
    fallback: int  # the most popular product on sale all along

    def on_sale(self, items: np.ndarray, when: np.ndarray) -> np.ndarray:
        return (self.launch[items] <= when) & (when < self.retire[items])

    def promoted(self, u: np.ndarray, when: np.ndarray, window: float) -> np.ndarray:
        """A product launched in ``(when - window, when]`` for each ``when``, uniformly by ``u`` in
        0..1 (-1 where none launched then)."""
        order = np.flatnonzero(self.launch > 0)
        order = order[np.argsort(self.launch[order], kind="stable")]
        times = self.launch[order]
        lo = np.searchsorted(times, when - window, side="right")
        n = np.searchsorted(times, when, side="right") - lo
        pick = np.minimum(lo + (u * n).astype(np.int64), len(order) - 1)
        return np.where(n > 0, order[pick] if len(order) else -1, -1)


def _draw_life(cfg: SyntheticSource, cat: Catalogue) -> _Life:
    """``launch_share`` of the products launch at a uniform time after the span's first tenth;
    ``retire_share`` of the others retire at a uniform time in its last nine tenths. Drawn from a
    generator of their own, so a shop without launches or retirements is exactly as before."""
    rng = np.random.default_rng([cfg.seed, 104_729])
    n = cfg.n_items
    launch, retire = np.zeros(n), np.full(n, 2.0)
    launching = rng.random(n) < cfg.launch_share
    launch[launching] = rng.uniform(0.1, 1.0, int(launching.sum()))
    retiring = ~launching & (rng.random(n) < cfg.retire_share)
    retire[retiring] = rng.uniform(0.1, 1.0, int(retiring.sum()))
    always = np.flatnonzero(~launching & ~retiring)
    if len(always) == 0:
        raise ValueError("launch_share and retire_share leave no product on sale for the whole span")
    return _Life(launch, retire, int(always[np.argmax(cat.popularity[always])]))


@dataclass(frozen=True)
class _Styles:
    """Shopper styles: each has its own specific complements per product; each user has one."""

    complements: np.ndarray  # (S, I, MAX_COMPLEMENTS) item indices, -1 padded; style 0 is the catalogue's
    counts: np.ndarray  # (S, I)
    of_user: np.ndarray  # (U,) style index


def _draw_styles(cfg: SyntheticSource, cat: Catalogue) -> _Styles:
    """Styles 1..S-1 draw their complements as style 0 did, but with brand and tier preferences
    shuffled, so a product's next products differ by style. Drawn from a generator of their own,
    so ``styles: 1`` leaves the shop exactly as before."""
    rng = np.random.default_rng([cfg.seed, 7919])
    targets = _complement_leaves(_flat_taxonomy()[0])
    sets, counts = [cat.complements], [cat.n_complements]
    for _ in range(cfg.styles - 1):
        brand, tier = rng.permutation(cat.brand), rng.permutation(cat.tier)
        c, n = _pick_complements(rng, cat.leaf, brand, tier, cat.popularity, targets)
        sets.append(c)
        counts.append(n)
    return _Styles(np.stack(sets), np.stack(counts), rng.integers(cfg.styles, size=cfg.n_users))


def _draw_sessions(
    cfg: SyntheticSource, rng: np.random.Generator, n_users: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw ``(sessions per user (U,), views per session (S,), session start offsets (S,))``.

    Sessions are user-major; start offsets are seconds into the span, sorted within each user.
    """
    n_sessions = 1 + rng.poisson(cfg.sessions_per_user - 1 if cfg.sessions_per_user > 1 else 0, n_users)
    total_sessions = int(n_sessions.sum())
    session_user = np.repeat(np.arange(n_users), n_sessions)
    session_len = 1 + rng.poisson(max(cfg.views_per_session - 1, 0), total_sessions)
    start_offset = rng.uniform(0, cfg.days * 86_400, total_sessions)
    order = np.lexsort((start_offset, session_user))
    return n_sessions, session_len, start_offset[order]


def _session_of_views(
    n_sessions: np.ndarray,
    session_len: np.ndarray,
    views_per_user: np.ndarray,
    view_user: np.ndarray,
    first_row: np.ndarray,
) -> np.ndarray:
    """(V,) global session index of every kept view (views past a user's cap are dropped)."""
    session_user = np.repeat(np.arange(len(n_sessions)), n_sessions)
    session_first_global = np.concatenate([[0], np.cumsum(n_sessions)[:-1]])
    local_session = np.arange(len(session_len)) - session_first_global[session_user]
    session_of_view = np.repeat(local_session, session_len)  # uncapped, user-major
    step = np.arange(len(view_user)) - first_row[view_user]
    full_offset = np.concatenate([[0], np.cumsum(views_per_user)[:-1]])
    session_idx = session_of_view[full_offset[view_user] + step]
    return session_first_global[view_user] + session_idx


def _time_in_session(rng: np.random.Generator, opens: np.ndarray) -> np.ndarray:
    """(V,) seconds since the view's session opened: cumulative gaps of 60 s + Exp(120 s)."""
    gaps = 60.0 + rng.exponential(120.0, len(opens))
    gaps[opens] = 0.0
    cum_gap = np.cumsum(gaps)
    cum_gap -= np.maximum.accumulate(np.where(opens, cum_gap, 0.0))
    return cum_gap


def _lay_out_views(cfg: SyntheticSource, rng: np.random.Generator) -> _Views:
    """Draw sessions and lay them out as one flat list of timed views (ragged per user)."""
    n_users = cfg.n_users
    n_sessions, session_len, start_offset = _draw_sessions(cfg, rng, n_users)
    session_user = np.repeat(np.arange(n_users), n_sessions)
    views_per_user = np.bincount(session_user, weights=session_len, minlength=n_users).astype(np.int64)
    n_views = np.minimum(views_per_user, MAX_VIEWS_PER_USER)
    view_user = np.repeat(np.arange(n_users), n_views)
    first_row = np.concatenate([[0], np.cumsum(n_views)[:-1]])
    session = _session_of_views(n_sessions, session_len, views_per_user, view_user, first_row)
    opens = np.r_[True, session[1:] != session[:-1]]
    session_start = start_offset[session]
    return _Views(
        user=view_user,
        first_row=first_row,
        n_views=n_views,
        session=session,
        opens=opens,
        time=session_start + _time_in_session(rng, opens),
        drift=np.clip(session_start / (cfg.days * 86_400), 0, 1),
    )


def _find(keys: np.ndarray, key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Position of each ``key`` in the sorted ``keys`` (clipped) and whether it is there."""
    pos = np.minimum(np.searchsorted(keys, key), len(keys) - 1)
    return pos, keys[pos] == key


class _ItemPicker:
    """Vectorised item choice for many users at once: in a category, from taste, or a complement."""

    def __init__(
        self,
        cat: Catalogue,
        users: _Users,
        rng: np.random.Generator,
        styles: _Styles | None = None,
        life: _Life | None = None,
    ):
        self.cat, self.users, self.rng = cat, users, rng
        self.styles, self.life = styles, life
        self.n_brands = len(cat.brand_names)
        self.by_leaf = _GroupSampler(cat.leaf, cat.popularity, len(cat.leaf_names))
        self.cb_keys, cb_group = np.unique(cat.leaf * self.n_brands + cat.brand, return_inverse=True)
        self.by_leaf_brand = _GroupSampler(cb_group, cat.popularity, len(self.cb_keys))
        self.ct_keys, ct_group = np.unique(cat.leaf * 3 + cat.tier, return_inverse=True)
        self.by_leaf_tier = _GroupSampler(ct_group, cat.popularity, len(self.ct_keys))
        # (D, L) the non-empty categories of each department, padded; (D,) how many
        stocked = np.unique(cat.leaf)
        per_dep = [
            stocked[cat.leaf_department[stocked] == d] for d in np.unique(cat.leaf_department[stocked])
        ]
        self.season_counts = np.array([len(p) for p in per_dep])
        self.season_leaves = np.zeros((len(per_dep), self.season_counts.max()), dtype=np.int64)
        for d, leaves in enumerate(per_dep):
            self.season_leaves[d, : len(leaves)] = leaves

    def in_category(self, users: np.ndarray, leaves: np.ndarray) -> np.ndarray:
        """An item of each leaf: the favourite brand's, else the user's tier's, else any, by popularity."""
        rng, u_of = self.rng, self.users
        u = rng.random(len(users))
        out = self.by_leaf.sample(leaves, u)
        # favourite brand in this department, when it sells this category
        fb = u_of.fav_brand[users, self.cat.leaf_department[leaves]]
        pos, has = _find(self.cb_keys, leaves * self.n_brands + fb)
        use = has & (rng.random(len(users)) < u_of.loyalty[users])
        out[use] = self.by_leaf_brand.sample(pos[use], u[use])
        pos_t, has_t = _find(self.ct_keys, leaves * 3 + u_of.tier[users])
        use_t = ~use & has_t & (rng.random(len(users)) < 0.5 * u_of.price_sensitivity[users])
        out[use_t] = self.by_leaf_tier.sample(pos_t[use_t], u[use_t])
        return out

    def from_taste(self, users: np.ndarray, drift: np.ndarray) -> np.ndarray:
        """An item from a category drawn from the start or (with probability ``drift``) end taste."""
        rng = self.rng
        late = rng.random(len(users)) < drift
        cum = np.where(late[:, None], self.users.cum_taste_end[users], self.users.cum_taste_start[users])
        r = rng.random(len(users), dtype=np.float32) * cum[:, -1]
        leaves = np.minimum((cum < r[:, None]).sum(axis=1), len(self.cat.leaf_names) - 1)
        return self.in_category(users, leaves)

    def on_sale(self, users: np.ndarray, items: np.ndarray, when: np.ndarray, tries: int = 4) -> np.ndarray:
        """``items`` with every product not on sale at ``when`` (0..1 of the span) drawn again from
        the user's taste (at most ``tries`` times), else replaced by the most popular product that
        is always on sale."""
        items = items.copy()
        for _ in range(tries):
            bad = np.flatnonzero(~self.life.on_sale(items, when))
            if len(bad) == 0:
                return items
            items[bad] = self.from_taste(users[bad], when[bad])
        items[~self.life.on_sale(items, when)] = self.life.fallback
        return items

    def in_season(self, users: np.ndarray, when: np.ndarray, days: int) -> np.ndarray:
        """An item of a category of the department in season at ``when`` (0..1 of a ``days`` span):
        each department has an equal slice of every year; the category is uniform over it."""
        n_dep = len(self.season_leaves)
        dep = ((when * days / 365.0) % 1.0 * n_dep).astype(np.int64) % n_dep
        k = (self.rng.random(len(users)) * self.season_counts[dep]).astype(np.int64)
        return self.in_category(users, self.season_leaves[dep, k])

    def complement(self, items: np.ndarray, users: np.ndarray) -> np.ndarray:
        """A uniformly chosen specific complement of each item, for each user's style (-1: none)."""
        if self.styles is None:
            complements, counts = self.cat.complements[items], self.cat.n_complements[items]
        else:
            style = self.styles.of_user[users]
            complements, counts = self.styles.complements[style, items], self.styles.counts[style, items]
        k = (self.rng.random(len(items)) * np.maximum(counts, 1)).astype(np.int64)
        return complements[np.arange(len(items)), k]


def _next_items(
    cfg: SyntheticSource,
    pick: _ItemPicker,
    users: np.ndarray,
    on_screen: np.ndarray,
    last_bought: np.ndarray,
    new_session: np.ndarray,
    drift: np.ndarray,
) -> np.ndarray:
    """The next viewed item of each user: complement, substitute, follow-up or a fresh pick from taste."""
    r = pick.rng.random(len(users))
    choice = np.full(len(users), -1, dtype=np.int64)
    # within a session: complement of what is on screen, or a substitute
    inside = ~new_session & (on_screen >= 0)
    comp = inside & (r < cfg.p_complement)
    if comp.any():
        choice[comp] = pick.complement(on_screen[comp], users[comp])
    subst = inside & (choice < 0) & (r < cfg.p_complement + cfg.p_same_category)
    if subst.any():
        choice[subst] = pick.in_category(users[subst], pick.cat.leaf[on_screen[subst]])
    # a new session often continues from the last purchase
    follow = new_session & (last_bought >= 0) & (r < cfg.p_complement)
    if follow.any():
        choice[follow] = pick.complement(last_bought[follow], users[follow])
    rest = choice < 0
    if rest.any():
        choice[rest] = pick.from_taste(users[rest], drift[rest])
    if cfg.seasonality:
        season = rest & (pick.rng.random(len(users)) < cfg.seasonality)
        choice[season] = pick.in_season(users[season], drift[season], cfg.days)
    if cfg.promotions and pick.life is not None:
        promo = rest & (pick.rng.random(len(users)) < cfg.promotions)
        u = pick.rng.random(int(promo.sum()))
        offer = pick.life.promoted(u, drift[promo], cfg.promotion_days / cfg.days)
        choice[np.flatnonzero(promo)[offer >= 0]] = offer[offer >= 0]
    return choice


def _choose_view_items(
    cfg: SyntheticSource, pick: _ItemPicker, views: _Views, is_purchase: np.ndarray
) -> np.ndarray:
    """(V,) item of every view, chosen step by step: step t picks every user's t-th view at once."""
    n_users = len(views.n_views)
    view_item = np.empty(len(views.user), dtype=np.int64)
    current = np.full(n_users, -1, dtype=np.int64)
    last_bought = np.full(n_users, -1, dtype=np.int64)
    for t in range(int(views.n_views.max()) if n_users else 0):
        users = np.flatnonzero(views.n_views > t)
        rows = views.first_row[users] + t
        choice = _next_items(
            cfg, pick, users, current[users], last_bought[users], views.opens[rows], views.drift[rows]
        )
        if pick.life is not None:
            choice = pick.on_sale(users, choice, views.drift[rows])
        view_item[rows] = choice
        current[users] = choice
        bought = is_purchase[rows]
        last_bought[users[bought]] = choice[bought]
    return view_item


def _event_rows(
    cfg: SyntheticSource,
    rng: np.random.Generator,
    views: _Views,
    is_cart: np.ndarray,
    is_purchase: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Events sorted by user, time and kind, as ``(view row (E,), unix seconds (E,), kind (E,) int8)``.

    Kind 0 is the view, 1 its cart (+10..40 s), 2 its purchase (+51..56 s, always after the cart).
    """
    start_ts = int(pd.Timestamp(cfg.start, tz="UTC").timestamp())
    base_ts = start_ts + views.time.astype(np.int64)
    cart_rows = np.flatnonzero(is_cart)
    buy_rows = np.flatnonzero(is_purchase)
    cart_ts = base_ts[cart_rows] + rng.integers(10, 41, len(cart_rows))
    buy_ts = base_ts[buy_rows] + 41 + rng.integers(10, 16, len(buy_rows))
    n_views = len(views.user)
    src = np.concatenate([np.arange(n_views), cart_rows, buy_rows])
    ts = np.concatenate([base_ts, cart_ts, buy_ts])
    kind = np.concatenate(
        [
            np.zeros(n_views, np.int8),
            np.ones(len(cart_rows), np.int8),
            np.full(len(buy_rows), 2, np.int8),
        ]
    )
    order = np.lexsort((kind, ts, views.user[src]))
    return src[order], ts[order], kind[order]


def _item_ids(items: np.ndarray) -> np.ndarray:
    """Item ids ``p000001``... for 0-based item indices."""
    return np.char.add("p", np.char.zfill((items + 1).astype(str), 6))


def generate(cfg: SyntheticSource) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Generate ``(interactions, items)`` source frames. Same ``cfg`` -> identical output."""
    rng = np.random.default_rng(cfg.seed)
    cat = build_catalogue(cfg, rng)
    users = _draw_users(cfg, rng, cat)
    views = _lay_out_views(cfg, rng)
    # Funnel per view, independent of the item chosen.
    is_cart = rng.random(len(views.user)) < np.clip(cfg.p_cart * users.buyer[views.user], 0, 1)
    is_purchase = is_cart & (rng.random(len(views.user)) < cfg.p_purchase)
    styles = _draw_styles(cfg, cat) if cfg.styles > 1 else None
    life = _draw_life(cfg, cat) if cfg.launch_share or cfg.retire_share else None
    view_item = _choose_view_items(cfg, _ItemPicker(cat, users, rng, styles, life), views, is_purchase)
    src, ts, kind = _event_rows(cfg, rng, views, is_cart, is_purchase)

    event_user = views.user[src]
    event_item = view_item[src]
    interactions = source_interactions(
        np.char.add("u", np.char.zfill(event_user.astype(str), 7)),
        _item_ids(event_item),
        ts,
        np.array(["view", "cart", "purchase"], dtype=object)[kind],
        price=cat.price[event_item],
        session_id=np.char.add("s", views.session[src].astype(str)),
    )
    items_frame = source_items(
        _item_ids(np.arange(cfg.n_items)),
        title=cat.titles,
        brand=[cat.brand_names[b] for b in cat.brand],
        category=[cat.leaf_names[c] for c in cat.leaf],
        price=cat.price,
    )
    return interactions, items_frame
