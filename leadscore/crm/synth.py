"""Synthetic CRM exports with a known ground truth.

Why this exists: a lead-scoring model can only be judged properly against an oracle.
Real CRM data never tells us how good a score *could* have been, so this module
simulates a B2B funnel from an explicit latent model and exports it in exactly the
shape of :mod:`leadscore.crm.contract`. Alongside the export it returns the truth:

* ``p_latent``: the probability the outcome was actually drawn from,
  ``sigmoid(base + z)``, where ``base`` is built from what is known when the deal is
  created and ``z`` is a hidden deal quality;
* ``p_at_creation``: ``E_z[sigmoid(base + z)]``, the best calibrated score any model
  can give at creation time (64-node Gauss-Hermite quadrature, error < 1e-9);
* ``p_without_rep``: the same without the owner's skill, which no single feature
  reveals (a rep's track record estimates it from a few dozen deals): what the deal's
  own fields allow at creation, the ceiling a model of the features can reach there.

The hidden quality ``z`` drives the observable process (buying-committee seniority,
economic buyer, reply latency, stalls, backward moves, activity volume, cycle length),
so a model that reads the history can move from ``p_at_creation`` towards
``p_latent``. Nothing observable at the instant of creation depends on ``z``: the
deal fields, the account, the owner, the primary contact (and its role) and the
first touch are all independent of it, which is what makes ``p_at_creation`` the
creation-time optimum. The stage path and close date also depend on the outcome
itself (won deals pass through ``committed``, lost ones drop out and often go quiet
first), as in real funnels.

On request (``generate_crm(..., revival=True)``) lost deals also get a reason, post-loss
engagement and a chance to come back (re-opened or followed by a new deal), with their
own oracle ``revival_truth`` (``docs/revival.md``); that simulation draws from its own
random stream, and without it the export is the open-deal simulation alone.

Everything is vectorised with numpy (one array per column, no Python loop per deal
or activity) so that a million deals fit in minutes and a few GB. Output frames use
``string[pyarrow]`` for text, ``int64``/``float64`` for numbers and
``datetime64[us, UTC]`` for times.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, fields, replace
from datetime import datetime
from pathlib import Path
from typing import Literal, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pa_pq

from leadscore.config import SEED, SYNTHETIC_HISTORY_DAYS
from leadscore.crm.contract import (
    ACTIVITY_TYPES,
    CONTACT_ROLES,
    DIRECTIONS,
    LOST,
    LOST_REASONS,
    OPEN,
    STAGES,
    TABLES,
    WON,
)

log = logging.getLogger(__name__)

US_PER_SECOND = 1_000_000
US_PER_HOUR = 3_600 * US_PER_SECOND
US_PER_DAY = 24 * US_PER_HOUR
_T = TypeVar("_T")

# --------------------------------------------------------------------------------------
# The generator's latent model. Module constants so that evaluations can cite them.
# --------------------------------------------------------------------------------------

#: Standard deviation of the hidden deal quality z (logit scale).
LATENT_SIGMA = 1.2
#: Intercept of the creation-time logit; tuned for a ~30% overall win rate.
INTERCEPT = -1.05
#: Gauss-Hermite nodes for E_z[sigmoid(base + z)]; 64 give an error below 1e-9 here.
_GH_NODES = 64

INDUSTRIES = (
    "manufacturing",
    "retail",
    "finance",
    "healthcare",
    "software",
    "logistics",
    "education",
    "energy",
)
_INDUSTRY_P = (0.18, 0.14, 0.12, 0.12, 0.16, 0.10, 0.08, 0.10)
INDUSTRY_EFFECT = (0.0, -0.10, 0.10, -0.05, 0.15, -0.05, -0.15, 0.05)

REGIONS = ("north", "south", "east", "west", "apac", "emea")
_REGION_P = (0.18, 0.16, 0.18, 0.16, 0.16, 0.16)
#: Share of Chinese titles by region (apac is mostly Chinese-speaking here); ~30% overall.
_CHINESE_SHARE = (0.22, 0.22, 0.22, 0.22, 0.78, 0.14)

CHANNELS = ("referral", "web", "event", "partner", "outbound", "paid_ads")
_CHANNEL_P = (0.12, 0.25, 0.12, 0.10, 0.23, 0.18)
CHANNEL_EFFECT = (0.80, 0.0, 0.15, 0.50, -0.50, -0.70)
#: Probability that the first touch is inbound (the customer reached us first).
_CHANNEL_INBOUND = (0.80, 0.95, 0.60, 0.50, 0.0, 0.95)

COMPETITORS = ("Acme CRM", "Globex", "Initech", "Umbrella Systems")
#: Probabilities of: none, unknown, then each named competitor.
_COMPETITOR_P = (0.25, 0.30, 0.15, 0.12, 0.10, 0.08)
COMPETITOR_NONE_EFFECT = 0.40
COMPETITOR_EFFECT = (-0.50, -0.35, -0.60, -0.25)

PRODUCTS = ("Core", "Analytics", "Enterprise Suite", "Connect")
_PRODUCT_P = (0.40, 0.25, 0.15, 0.20)
_PRODUCT_AMOUNT = (1.0, 0.7, 2.6, 0.45)
PRODUCT_EFFECT = (0.10, 0.0, -0.15, 0.20)

#: Median deal amount (USD) and the logit change per unit of log(amount / median).
AMOUNT_MEDIAN = 20_000.0
AMOUNT_EFFECT = -0.35
#: Logit change per unit of log(employees / 300).
SIZE_EFFECT = 0.06
#: Spread of the reps' skill (logit scale).
SKILL_SD = 0.35

#: Title pools by seniority level: 1 IC, 2 supervisor/lead, 3 manager, 4 director/head,
#: 5 VP, 6 C-level/owner/GM. (English, Chinese.)
TITLES: dict[int, tuple[tuple[str, ...], tuple[str, ...]]] = {
    1: (
        (
            "Engineer",
            "Senior Engineer",
            "Analyst",
            "Business Analyst",
            "Specialist",
            "Coordinator",
            "Accountant",
            "Buyer",
            "Software Developer",
            "Sales Representative",
            "Data Scientist",
            "Consultant",
        ),
        ("工程师", "高级工程师", "专员", "分析师", "助理", "采购员", "会计", "销售代表"),
    ),
    2: (
        (
            "Team Lead",
            "Supervisor",
            "Lead Engineer",
            "Shift Supervisor",
            "Tech Lead",
            "Sales Team Lead",
        ),
        ("主管", "组长", "技术主管", "班长"),
    ),
    3: (
        (
            "IT Manager",
            "Project Manager",
            "Procurement Manager",
            "Operations Manager",
            "Finance Manager",
            "Product Manager",
            "Sales Manager",
            "Office Manager",
        ),
        ("经理", "销售经理", "项目经理", "采购经理", "部门经理", "IT经理"),
    ),
    4: (
        (
            "Head of IT",
            "Director of Procurement",
            "IT Director",
            "Sales Director",
            "Head of Operations",
            "Director, Finance",
            "Senior Director of Engineering",
            "Head of Purchasing",
        ),
        ("总监", "采购总监", "技术总监", "销售总监", "部门负责人", "财务总监"),
    ),
    5: (
        (
            "VP Sales",
            "SVP Operations",
            "Vice President of Engineering",
            "VP Finance",
            "EVP, Strategy",
            "VP of IT",
            "Vice President, Procurement",
        ),
        ("副总裁", "副总经理", "高级副总裁", "销售副总裁"),
    ),
    6: (
        (
            "CEO",
            "Chief Financial Officer",
            "Chief Technology Officer",
            "Founder",
            "Co-Founder",
            "President",
            "Owner",
            "General Manager",
            "Managing Director",
            "CIO",
            "COO",
        ),
        ("董事长", "总经理", "首席执行官", "创始人", "总裁", "首席财务官", "首席信息官"),
    ),
}
#: Seniority mix of contacts (levels 1..6): a pyramid with a fat top (small firms).
_LEVEL_P = (0.26, 0.14, 0.22, 0.16, 0.10, 0.12)
#: Share of contacts without a title, and of English titles written in lower case.
_TITLE_MISSING = 0.06
_TITLE_LOWER = 0.08

_STAGE_IDX = {s: i for i, s in enumerate(STAGES)}  # lead 0 .. committed 3, closed 4
#: Median active days spent in lead, qualified, solution, committed.
_STAGE_DWELL_DAYS = np.array([6.0, 12.0, 20.0, 14.0])
#: Activity rate multiplier by stage, and the rate of a deal with z = 0 (per day).
_STAGE_RATE = np.array([0.8, 1.0, 1.2, 1.3])
_ACTIVITY_RATE = 0.42
_STALL_RATE_FACTOR = 0.10
MIN_CYCLE_DAYS = 14.0
MAX_CYCLE_DAYS = 270.0
#: Deals are created over this many days before as_of.
CREATION_WINDOW_DAYS = SYNTHETIC_HISTORY_DAYS
#: A history long enough to train and test the revival model on (``history_days``): a
#: revival is known only once the year-long horizon after the loss has passed, so two
#: years of history leave the losses of one year, and a test slice of a few dozen revivals.
REVIVAL_HISTORY_DAYS = 1460.0

_TYPE = {t: i for i, t in enumerate(ACTIVITY_TYPES)}  # call email meeting visit demo quote
_DIR = {d: i for i, d in enumerate(DIRECTIONS)}
_ROLE = {r: i for i, r in enumerate(CONTACT_ROLES)}
#: Remote activity mix (call, email, demo, quote) by stage.
_REMOTE_MIX = np.array(
    [
        [0.40, 0.58, 0.02, 0.00],
        [0.36, 0.56, 0.07, 0.01],
        [0.28, 0.46, 0.23, 0.03],
        [0.27, 0.50, 0.04, 0.19],
    ]
)
_REMOTE_TYPES = np.array([_TYPE["call"], _TYPE["email"], _TYPE["demo"], _TYPE["quote"]])
#: Probability that an activity is face to face (meeting or visit) by stage, at z = 0.
_F2F_P = np.array([0.06, 0.12, 0.16, 0.14])
#: Median duration (seconds) and log-sd for call, meeting, visit, demo.
_DURATION = {
    _TYPE["call"]: (300.0, 0.9),
    _TYPE["meeting"]: (2_700.0, 0.4),
    _TYPE["visit"]: (5_400.0, 0.4),
    _TYPE["demo"]: (3_600.0, 0.3),
}
#: Reply latency median (hours) at z = 0 and its per-reply log-sd.
_REPLY_MEDIAN_HOURS = 8.0
_REPLY_SD = 0.8

#: ID prefixes and minimum digit widths (sized for a million deals).
_ID_WIDTH = {"A": 6, "C": 7, "D": 7, "ACT": 8, "U": 3}


@dataclass(frozen=True)
class SyntheticCRM:
    """A simulated CRM export plus the oracle it was drawn from.

    ``tables`` holds the six contract tables (exactly the contract's columns). ``truth``
    is for evaluation only and is never part of an export the pipeline reads.
    """

    tables: dict[str, pd.DataFrame]
    truth: pd.DataFrame
    as_of: pd.Timestamp
    #: The revival oracle: one row per lost deal and snapshot (see ``docs/revival.md``):
    #: deal_id, lost_at, lost_reason (canonical), as_of, days_since_loss, p_revival (exact
    #: probability, given the latent state, that the deal is revived within
    #: ``REVIVAL_HORIZON_DAYS`` of as_of and the revived deal is won), revived_and_won
    #: (the realised outcome, drawn even when it falls after the export's as_of),
    #: revived_at, revival_kind (reopen, follow_up; empty when never), revival_deal_id.
    #: None when generated without ``revival``: not simulated, which an empty frame (no
    #: lost deal had a snapshot yet) would misstate; so no file is written for it either.
    revival_truth: pd.DataFrame | None = None


# --------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def expected_sigmoid(base: np.ndarray, sigma: float = LATENT_SIGMA) -> np.ndarray:
    """E[sigmoid(base + z)] for z ~ N(0, sigma^2), by Gauss-Hermite quadrature.

    This is ``p_at_creation``: the probability given everything known at creation.
    A loop over the nodes (not an n x nodes matrix) keeps memory flat for 1M deals.
    """
    base = np.asarray(base, dtype=np.float64)
    nodes, weights = np.polynomial.hermite.hermgauss(_GH_NODES)
    out = np.zeros_like(base)
    for x, w in zip(nodes, weights, strict=True):
        out += w * _sigmoid(base + np.sqrt(2.0) * sigma * x)
    return out / np.sqrt(np.pi)


def _id_width(prefix: str, count: int) -> int:
    return max(_ID_WIDTH[prefix], len(str(max(count, 1))))


def _ids(
    prefix: str, width: int, numbers: np.ndarray, valid: np.ndarray | None = None
) -> pd.Series:
    """Zero-padded IDs (``prefix`` + ``numbers`` + 1) as string[pyarrow], built from bytes.

    Formatting 30M IDs through Python strings would take minutes and GBs; writing the
    digits into a byte matrix and handing it to Arrow is zero-copy.
    """
    numbers = np.asarray(numbers, dtype=np.int64) + 1
    m = len(numbers)
    p = prefix.encode()
    length = len(p) + width
    buf = np.empty((m, length), dtype=np.uint8)
    buf[:, : len(p)] = np.frombuffer(p, dtype=np.uint8)
    x = numbers.copy()
    for k in range(length - 1, len(p) - 1, -1):
        buf[:, k] = (x % 10).astype(np.uint8) + 48
        x //= 10
    large = (m + 1) * length >= 2**31
    offsets = np.arange(0, (m + 1) * length, length, dtype=np.int64 if large else np.int32)
    validity = None if valid is None else pa.py_buffer(np.packbits(valid, bitorder="little"))
    arr = pa.Array.from_buffers(
        pa.large_string() if large else pa.string(),
        m,
        [validity, pa.py_buffer(offsets), pa.py_buffer(buf)],
    )
    return pd.Series(pd.arrays.ArrowStringArray(arr))


def _labels(
    categories: list[str] | tuple[str, ...], codes: np.ndarray, valid: np.ndarray | None = None
) -> pd.Series:
    """Map integer codes to strings (string[pyarrow]); invalid rows become missing."""
    idx = pa.array(np.asarray(codes, dtype=np.int32), mask=None if valid is None else ~valid)
    return pd.Series(pd.arrays.ArrowStringArray(pa.array(list(categories), pa.string()).take(idx)))


def _times(us: np.ndarray) -> pd.Series:
    """int64 microseconds since the epoch (int64 min = NaT) as datetime64[us, UTC]."""
    return pd.Series(np.asarray(us, dtype=np.int64).view("datetime64[us]")).dt.tz_localize("UTC")


def _choice(rng: np.random.Generator, p: tuple[float, ...] | np.ndarray, size: int) -> np.ndarray:
    """Categorical draws by inverse CDF (faster than Generator.choice for big sizes)."""
    cdf = np.cumsum(np.asarray(p, dtype=np.float64))
    cdf /= cdf[-1]
    return np.minimum(np.searchsorted(cdf, rng.random(size), side="right"), len(cdf) - 1)


def _resolve_as_of(as_of: datetime | pd.Timestamp | None) -> pd.Timestamp:
    if as_of is None:
        ts = pd.Timestamp.now(tz="UTC").floor("s")
    else:
        ts = pd.Timestamp(as_of)
        ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return ts.as_unit("us")


# --------------------------------------------------------------------------------------
# Simulation steps (all arrays indexed by the internal entity number)
# --------------------------------------------------------------------------------------


@dataclass
class _Accounts:
    industry: np.ndarray
    employees: np.ndarray
    revenue: np.ndarray
    revenue_known: np.ndarray
    region: np.ndarray
    owner: np.ndarray
    weight: np.ndarray


def _simulate_accounts(rng: np.random.Generator, n_acc: int, n_reps: int) -> _Accounts:
    industry = _choice(rng, _INDUSTRY_P, n_acc)
    employees = (
        np.clip(np.exp(rng.normal(np.log(300.0), 1.6, n_acc)), 10, 50_000).round().astype(np.int64)
    )
    # Revenue per employee varies by firm but is correlated with headcount overall.
    revenue = np.round(employees * np.exp(rng.normal(np.log(150_000.0), 0.5, n_acc)), -3)
    revenue_known = rng.random(n_acc) > 0.08
    region = _choice(rng, _REGION_P, n_acc)
    owner = rng.integers(0, n_reps, n_acc)
    weight = employees.astype(np.float64) ** 0.35 * np.exp(rng.normal(0.0, 0.5, n_acc))
    return _Accounts(industry, employees, revenue, revenue_known, region, owner, weight)


@dataclass
class _Contacts:
    account: np.ndarray  # account of each contact (contacts are account-major)
    level: np.ndarray  # true seniority 1..6 (internal, never exported)
    title: np.ndarray  # index into _title_vocabulary(), -1 = missing
    first: np.ndarray  # per account: index of its first contact
    count: np.ndarray  # per account: number of contacts


def _title_vocabulary() -> tuple[list[str], np.ndarray]:
    """All titles (English, lower-cased English, Chinese) and each one's level."""
    words: list[str] = []
    levels: list[int] = []
    for lang in (0, 1):
        for level, pools in TITLES.items():
            words += pools[lang]
            levels += [level] * len(pools[lang])
    for level, pools in TITLES.items():
        words += [t.lower() for t in pools[0]]
        levels += [level] * len(pools[0])
    return words, np.array(levels, dtype=np.int8)


#: Title text -> seniority level, for tests and evaluation (never used by the pipeline).
TITLE_LEVEL: dict[str, int] = dict(
    zip(_title_vocabulary()[0], _title_vocabulary()[1].tolist(), strict=True)
)


def _simulate_contacts(rng: np.random.Generator, acc: _Accounts) -> _Contacts:
    n_acc = len(acc.industry)
    count = rng.integers(2, 9, n_acc)
    first = np.concatenate([[0], np.cumsum(count)[:-1]])
    account = np.repeat(np.arange(n_acc), count)
    n = len(account)
    level = (_choice(rng, _LEVEL_P, n) + 1).astype(np.int8)

    # Title index: pick a title of the contact's level in its language.
    n_en = sum(len(p[0]) for p in TITLES.values())
    en_start = np.cumsum([0] + [len(TITLES[lv][0]) for lv in range(1, 6)])
    zh_start = n_en + np.cumsum([0] + [len(TITLES[lv][1]) for lv in range(1, 6)])
    lower_start = n_en + sum(len(p[1]) for p in TITLES.values())
    en_len = np.array([len(TITLES[lv][0]) for lv in range(1, 7)])
    zh_len = np.array([len(TITLES[lv][1]) for lv in range(1, 7)])
    li = level - 1
    chinese = rng.random(n) < np.asarray(_CHINESE_SHARE)[acc.region[account]]
    u = rng.random(n)
    en_idx = en_start[li] + (u * en_len[li]).astype(np.int64)
    zh_idx = zh_start[li] + (u * zh_len[li]).astype(np.int64)
    en_idx = np.where(rng.random(n) < _TITLE_LOWER, lower_start + en_idx, en_idx)
    title = np.where(chinese, zh_idx, en_idx)
    title = np.where(rng.random(n) < _TITLE_MISSING, -1, title)
    return _Contacts(account, level, title, first, count)


@dataclass
class _Deals:
    account: np.ndarray
    owner: np.ndarray
    created: np.ndarray  # int64 us
    channel: np.ndarray
    competitor: np.ndarray  # -2 unknown (missing), -3 unknown (empty), -1 none, 0.. named
    product: np.ndarray
    amount: np.ndarray
    base: np.ndarray
    z: np.ndarray
    p_latent: np.ndarray
    p_creation: np.ndarray
    p_without_rep: np.ndarray
    won: np.ndarray


def _simulate_deals(
    rng: np.random.Generator,
    n: int,
    acc: _Accounts,
    skill: np.ndarray,
    as_of_us: int,
    window_days: float = CREATION_WINDOW_DAYS,
) -> _Deals:
    n_reps = len(skill)
    # Creation times: density grows ~2x over the window (the business is growing).
    g = np.log(2.0) / window_days
    u = rng.random(n)
    t_fwd = np.log1p(u * np.expm1(g * window_days)) / g  # days after window start
    ago_days = window_days - t_fwd
    created = as_of_us - US_PER_HOUR - (ago_days * US_PER_DAY).astype(np.int64)
    created = np.sort(created)  # deal numbers follow creation order

    account = _choice(rng, acc.weight, n)
    own_acc = rng.random(n) < 0.8
    owner = np.where(own_acc, acc.owner[account], rng.integers(0, n_reps, n))
    channel = _choice(rng, _CHANNEL_P, n)
    comp_draw = _choice(rng, _COMPETITOR_P, n)
    # 0 -> none (-1); 1 -> unknown (-2 missing / -3 empty string); 2.. -> named 0..
    competitor = np.where(comp_draw == 0, -1, np.where(comp_draw == 1, -2, comp_draw - 2))
    competitor = np.where((competitor == -2) & (rng.random(n) < 1 / 3), -3, competitor)
    product = _choice(rng, _PRODUCT_P, n)

    log_factor = np.log(np.asarray(_PRODUCT_AMOUNT))
    log_factor -= np.dot(_PRODUCT_P, log_factor)  # keep the overall median at AMOUNT_MEDIAN
    log_emp = np.log(acc.employees[account] / 300.0)
    log_amount = (
        np.log(AMOUNT_MEDIAN) + log_factor[product] + 0.12 * log_emp + rng.normal(0, 1.0, n)
    )
    amount = np.maximum(np.round(np.exp(log_amount), -1), 500.0)

    comp_eff = np.where(
        competitor >= 0,
        np.asarray(COMPETITOR_EFFECT)[np.maximum(competitor, 0)],
        np.where(competitor == -1, COMPETITOR_NONE_EFFECT, 0.0),
    )
    base = (
        INTERCEPT
        + np.asarray(CHANNEL_EFFECT)[channel]
        + comp_eff
        + np.asarray(PRODUCT_EFFECT)[product]
        + np.asarray(INDUSTRY_EFFECT)[acc.industry[account]]
        + SIZE_EFFECT * log_emp
        + AMOUNT_EFFECT * np.log(amount / AMOUNT_MEDIAN)
        + skill[owner]
    )
    z = rng.normal(0.0, LATENT_SIGMA, n)
    p_latent = _sigmoid(base + z)
    won = rng.random(n) < p_latent
    return _Deals(
        account,
        owner,
        created,
        channel,
        competitor,
        product,
        amount,
        base,
        z,
        p_latent,
        expected_sigmoid(base),
        # Skill unknown: one more independent normal term inside the sigmoid.
        expected_sigmoid(base - skill[owner], float(np.hypot(LATENT_SIGMA, SKILL_SD))),
        won,
    )


@dataclass
class _Paths:
    stage: np.ndarray  # (n, K) stage of each entry
    valid: np.ndarray  # (n, K) entry exists
    entry: np.ndarray  # (n, K) int64 us when the entry happened
    active: np.ndarray  # (n, K) active days in the entry
    stall: np.ndarray  # (n, K) quiet (stalled) days following the active part
    close: np.ndarray  # (n,) int64 us when the deal closes (may be after as_of)
    active_end: np.ndarray  # (n,) int64 us after which nothing happens until close


def _simulate_paths(rng: np.random.Generator, d: _Deals) -> _Paths:
    """Stage paths: entries (with backward moves), dwell, stalls, quiet tails, close."""
    n = len(d.z)
    z = d.z
    # Lost deals drop out after reaching stage m; better deals get further first.
    advance = _sigmoid(0.4 + 0.7 * z)
    m = np.zeros(n, dtype=np.int8)
    for j in (1, 2, 3):
        m = np.where((m == j - 1) & (rng.random(n) < advance), j, m)
    m = np.where(d.won, 3, m)

    # Backward moves: rare on good deals; a lost deal often slips back a stage and dies
    # there (no re-entry), which is what makes a regression a warning sign.
    p_back = _sigmoid(-3.0 - 1.2 * z)
    p_slip = _sigmoid(-0.8 - 0.8 * z)
    stages: list[np.ndarray] = [np.zeros(n, np.int8)]
    valid: list[np.ndarray] = [np.ones(n, bool)]
    medians: list[np.ndarray] = [np.full(n, _STAGE_DWELL_DAYS[0])]
    for j in (1, 2, 3):
        v = m >= j
        dies = ~d.won & (m == j)
        b = v & (rng.random(n) < np.where(dies, p_slip, p_back))
        stages += [np.full(n, j, np.int8), np.full(n, j - 1, np.int8), np.full(n, j, np.int8)]
        valid += [v, b, b & ~dies]
        medians += [
            np.full(n, _STAGE_DWELL_DAYS[j]),
            np.full(n, 8.0),
            np.full(n, 0.6 * _STAGE_DWELL_DAYS[j]),
        ]
    stage = np.stack(stages, axis=1)
    ok = np.stack(valid, axis=1)
    k = stage.shape[1]
    speed = np.exp(-0.3 * z) * (d.amount / AMOUNT_MEDIAN) ** 0.12
    active = np.stack(medians, axis=1) * speed[:, None] * np.exp(rng.normal(0, 0.5, (n, k)))
    stalled = ok & (rng.random((n, k)) < _sigmoid(-2.2 - 0.9 * z)[:, None])
    stall = np.where(stalled, rng.uniform(30.0, 100.0, (n, k)), 0.0)
    last = k - 1 - np.argmax(ok[:, ::-1], axis=1)
    rows = np.arange(n)
    # Losers linger in their last stage before giving up.
    active[rows, last] *= np.where(d.won, 1.0, 2.5)
    active = np.where(ok, active, 0.0)

    # A share of lost deals go quiet (no activity at all) for 30-120 days, then get closed.
    tail = np.where(
        ~d.won & (rng.random(n) < _sigmoid(-1.9 - 0.7 * z)), rng.uniform(30.0, 120.0, n), 0.0
    )
    busy = (active + stall).sum(axis=1)
    total = busy + tail
    lo = np.maximum(MIN_CYCLE_DAYS + rng.exponential(4.0, n) - tail, 0.0)
    hi = MAX_CYCLE_DAYS - rng.uniform(0.0, 15.0, n) - tail
    scale = np.clip(busy, lo, hi) / busy
    active *= scale[:, None]
    stall *= scale[:, None]
    busy = busy * scale
    total = busy + tail

    span = active + stall
    offset_days = np.cumsum(span, axis=1) - span
    entry = d.created[:, None] + np.round(offset_days * US_PER_DAY).astype(np.int64)
    active_end = d.created + np.round(busy * US_PER_DAY).astype(np.int64)
    close = d.created + np.round(total * US_PER_DAY).astype(np.int64)
    close = np.maximum(close, entry[rows, last] + US_PER_SECOND)
    return _Paths(stage, ok, entry, active, stall, close, np.minimum(active_end, close))


@dataclass
class _DealContacts:
    contact: np.ndarray  # (n, 8) contact index (valid where attached)
    attached: np.ndarray  # (n, 8) contact is on the deal by as_of
    added: np.ndarray  # (n, 8) int64 us
    level: np.ndarray  # (n, 8) seniority
    role: np.ndarray  # (n, 8) role code, -1 = missing
    eb: np.ndarray  # (n, 8) economic buyer
    primary: np.ndarray  # (n,) column of the contact attached at creation


def _simulate_deal_contacts(
    rng: np.random.Generator, d: _Deals, c: _Contacts, paths: _Paths, as_of_us: int
) -> _DealContacts:
    n = len(d.z)
    width = 8
    cols = np.arange(width)
    acc_n = c.count[d.account]
    avail = cols[None, :] < acc_n[:, None]
    contact = np.where(avail, c.first[d.account][:, None] + cols[None, :], 0)
    level = np.where(avail, c.level[contact], 0).astype(np.int8)
    rows = np.arange(n)

    # The primary contact is attached at creation and is independent of z.
    primary = (rng.random(n) * acc_n).astype(np.int64)
    # Further contacts: better deals reach more, and more senior, people.
    w = np.exp(0.25 * d.z[:, None] * (level - 3.5))
    keys = -np.log(rng.random((n, width))) / w
    keys = np.where(avail, keys, np.inf)
    keys[rows, primary] = -np.inf
    rank = np.argsort(np.argsort(keys, axis=1), axis=1)
    k_total = np.minimum(1 + rng.poisson(np.exp(0.15 + 0.35 * d.z)), acc_n)
    sel = rank < k_total[:, None]

    # Economic buyer: the most senior non-primary manager+ at the account, more likely
    # (and earlier) the better the deal.
    cand = np.where(
        avail & (cols[None, :] != primary[:, None]), level + rng.random((n, width)) * 0.5, -1.0
    )
    eb_col = np.argmax(cand, axis=1)
    eb_ok = (rng.random(n) < _sigmoid(-0.3 + 1.3 * d.z)) & (cand[rows, eb_col] >= 3)
    eb = np.zeros((n, width), bool)
    eb[rows[eb_ok], eb_col[eb_ok]] = True
    sel |= eb

    # Roles: z-independent by level, except the EB and a champion for good deals.
    is_primary = cols[None, :] == primary[:, None]
    u = rng.random((n, width))
    junior = level <= 2
    role = np.where(
        junior,
        np.where(u < 0.75, _ROLE["user"], np.where(u < 0.95, _ROLE["influencer"], _ROLE["other"])),
        np.where(u < 0.70, _ROLE["influencer"], np.where(u < 0.85, _ROLE["user"], _ROLE["other"])),
    )
    champ_cand = sel & ~eb & ~is_primary & (level >= 2) & (level <= 4)
    champ_col = np.argmin(np.where(champ_cand, rank, width + 1), axis=1)
    champ_ok = champ_cand[rows, champ_col] & (rng.random(n) < _sigmoid(0.2 + 0.9 * d.z))
    role[rows[champ_ok], champ_col[champ_ok]] = _ROLE["champion"]
    role = np.where(eb, _ROLE["economic_buyer"], role)
    role = np.where(rng.random((n, width)) < 0.02, -1, role)

    # When each was attached: a fraction of the active life; the EB early on good deals.
    life = (paths.active_end - d.created).astype(np.float64)
    frac = rng.uniform(0.03, 0.7, (n, width))
    frac_eb = np.clip(rng.random(n) * 0.6 * np.exp(-0.5 * d.z), 0.02, 0.9)
    frac = np.where(eb, frac_eb[:, None], frac)
    frac = np.where(is_primary, 0.0, frac)
    added = d.created[:, None] + (frac * life[:, None]).astype(np.int64)
    horizon = np.minimum(paths.active_end, as_of_us)
    attached = sel & (added <= horizon[:, None])
    attached[rows, primary] = True
    return _DealContacts(contact, attached, added, level, role.astype(np.int8), eb, primary)


@dataclass
class _Activities:
    deal: np.ndarray
    at: np.ndarray  # int64 us
    type: np.ndarray  # int8
    direction: np.ndarray  # int8
    contact: np.ndarray  # int64, -1 = missing
    duration: np.ndarray  # float64, NaN where not applicable


def _pick_contacts(
    rng: np.random.Generator,
    deal: np.ndarray,
    at: np.ndarray,
    kind: np.ndarray,
    d: _Deals,
    dc: _DealContacts,
    chunk: int = 1_000_000,
) -> np.ndarray:
    """Choose, per activity, one contact already on the deal (weighted by seniority)."""
    out = np.empty(len(deal), dtype=np.int64)
    f2f = np.isin(kind, [_TYPE["meeting"], _TYPE["visit"], _TYPE["demo"]])
    for s in range(0, len(deal), chunk):
        sl = slice(s, s + chunk)
        dd = deal[sl]
        ok = dc.attached[dd] & (dc.added[dd] <= at[sl][:, None])
        lv = dc.level[dd].astype(np.float64)
        # Face to face: good deals meet seniors, poor deals meet juniors.
        tilt = np.where(f2f[sl], 0.35 * d.z[dd], 0.05)
        w = np.exp(tilt[:, None] * (lv - 3.5))
        w *= np.where(dc.eb[dd], np.where(kind[sl] == _TYPE["quote"], 3.0, 1.5)[:, None], 1.0)
        w = np.where(ok, w, 0.0)
        cum = np.cumsum(w, axis=1)
        u = rng.random(len(dd)) * cum[:, -1]
        col = np.minimum((cum <= u[:, None]).sum(axis=1), w.shape[1] - 1)
        out[sl] = dc.contact[dd, col]
    return out


def _durations(rng: np.random.Generator, kind: np.ndarray) -> np.ndarray:
    """Seconds of calls, meetings, visits and demos (NaN for other types), log-normal."""
    duration = np.full(kind.size, np.nan)
    for t, (med, sd) in _DURATION.items():
        idx = np.flatnonzero(kind == t)
        duration[idx] = np.maximum(np.round(med * np.exp(rng.normal(0.0, sd, idx.size))), 20.0)
    return duration


def _simulate_activities(
    rng: np.random.Generator,
    d: _Deals,
    skill: np.ndarray,
    paths: _Paths,
    dc: _DealContacts,
    as_of_us: int,
) -> _Activities:
    n, k = paths.stage.shape
    horizon = np.minimum(paths.active_end, as_of_us)

    # Segments: the active part and the stalled part of every stage entry.
    act_start = paths.entry
    act_end = paths.entry + np.round(paths.active * US_PER_DAY).astype(np.int64)
    seg_start = np.concatenate([act_start, act_end], axis=1)
    seg_end = np.concatenate(
        [act_end, act_end + np.round(paths.stall * US_PER_DAY).astype(np.int64)], axis=1
    )
    seg_stage = np.concatenate([paths.stage, paths.stage], axis=1)
    seg_ok = np.concatenate([paths.valid, paths.valid], axis=1)
    seg_end = np.minimum(seg_end, horizon[:, None])
    length_days = np.where(seg_ok, np.maximum(seg_end - seg_start, 0) / US_PER_DAY, 0.0)
    rate = _ACTIVITY_RATE * np.exp(0.35 * d.z)[:, None] * _STAGE_RATE[seg_stage]
    rate[:, k:] *= _STALL_RATE_FACTOR
    counts = rng.poisson(rate * length_days).ravel()
    seg = np.repeat(np.arange(counts.size), counts)
    deal = seg // (2 * k)
    start = seg_start.ravel()[seg]
    at = start + (rng.random(seg.size) * (seg_end.ravel()[seg] - start)).astype(np.int64)
    stage = seg_stage.ravel()[seg]
    m = seg.size
    del seg, start

    # Type: face to face (meeting/visit) more often on good deals, else a remote mix.
    zz = d.z[deal]
    f2f = rng.random(m) < np.clip(_F2F_P[stage] * np.exp(0.25 * zz), 0.0, 0.6)
    u = rng.random(m)
    remote = np.empty(m, dtype=np.int64)
    for s, mix in enumerate(_REMOTE_MIX):  # per stage, not an (m x 4) matrix
        idx = np.flatnonzero(stage == s)
        pick = np.searchsorted(np.cumsum(mix), u[idx], side="right")
        remote[idx] = _REMOTE_TYPES[np.minimum(pick, len(mix) - 1)]
    del u
    kind = np.where(
        f2f, np.where(rng.random(m) < 0.6, _TYPE["meeting"], _TYPE["visit"]), remote
    ).astype(np.int8)
    p_in = np.select(
        [
            np.isin(kind, [_TYPE["call"], _TYPE["email"]]),
            kind == _TYPE["meeting"],
            kind == _TYPE["visit"],
        ],
        [_sigmoid(-1.0 + 0.5 * zz), 0.15, 0.05],
        0.0,
    )
    direction = (rng.random(m) >= p_in).astype(np.int8)  # 0 inbound, 1 outbound
    del zz, f2f, remote, p_in, stage

    # First touch, minutes to hours after creation: depends on the channel only.
    inbound_first = rng.random(n) < np.asarray(_CHANNEL_INBOUND)[d.channel]
    first_at = d.created + (rng.exponential(2.0, (n,)) * US_PER_HOUR).astype(np.int64)
    has_first = first_at <= horizon
    f_deal = np.flatnonzero(has_first)
    deal = np.concatenate([deal, f_deal])
    at = np.concatenate([at, first_at[has_first]])
    kind = np.concatenate(
        [
            kind,
            np.where(rng.random(f_deal.size) < 0.7, _TYPE["email"], _TYPE["call"]).astype(np.int8),
        ]
    )
    direction = np.concatenate(
        [
            direction,
            np.where(inbound_first[has_first], _DIR["inbound"], _DIR["outbound"]).astype(np.int8),
        ]
    )

    is_first = np.zeros(deal.size, bool)
    is_first[m:] = True
    order = np.lexsort((at, deal))
    deal, at, kind, direction, is_first = (
        deal[order],
        at[order],
        kind[order],
        direction[order],
        is_first[order],
    )
    del order

    contact = _pick_contacts(rng, deal, at, kind, d, dc)
    # First touches go to the primary contact (attached at creation, z-independent).
    contact = np.where(is_first, dc.contact[deal, dc.primary[deal]], contact)
    del is_first
    # Visits: after the first visit of a deal, 60% are follow-ups to a visited contact.
    vis = np.flatnonzero(kind == _TYPE["visit"])
    if vis.size:
        vd = deal[vis]
        new = np.ones(vis.size, bool)
        new[1:] = (vd[1:] != vd[:-1]) | (rng.random(vis.size - 1) >= 0.6)
        src = np.maximum.accumulate(np.where(new, np.arange(vis.size), 0))
        contact[vis] = contact[vis[src]]

    # Replies: an inbound call or e-mail is answered (outbound) after a latency that
    # is short on healthy deals and days on poor ones.
    inbound = np.flatnonzero(
        (direction == _DIR["inbound"]) & np.isin(kind, [_TYPE["call"], _TYPE["email"]])
    )
    answered = inbound[rng.random(inbound.size) < 0.9]
    rd = deal[answered]
    med_h = _REPLY_MEDIAN_HOURS * np.exp(-1.0 * d.z[rd] - 0.4 * skill[d.owner[rd]])
    lat = med_h * np.exp(rng.normal(0.0, _REPLY_SD, rd.size)) * US_PER_HOUR
    r_at = at[answered] + np.maximum(lat, 60 * US_PER_SECOND).astype(np.int64)
    keep = r_at <= horizon[rd]
    r_kind = np.where(rng.random(rd.size) < 0.7, kind[answered], _TYPE["email"]).astype(np.int8)
    deal = np.concatenate([deal, rd[keep]])
    at = np.concatenate([at, r_at[keep]])
    kind = np.concatenate([kind, r_kind[keep]])
    direction = np.concatenate([direction, np.full(int(keep.sum()), _DIR["outbound"], np.int8)])
    contact = np.concatenate([contact, contact[answered][keep]])

    # A few e-mails are logged without a contact (shared inboxes).
    contact = np.where((kind == _TYPE["email"]) & (rng.random(deal.size) < 0.01), -1, contact)

    duration = _durations(rng, kind)

    order = np.lexsort((deal, at))  # activity IDs follow time, as a CRM would number them
    return _Activities(
        deal[order], at[order], kind[order], direction[order], contact[order], duration[order]
    )


# --------------------------------------------------------------------------------------
# Revival of lost deals (separate random stream: the open-deal simulation is untouched)
# --------------------------------------------------------------------------------------

#: The revival truth's horizon: as of a snapshot, a lost deal's outcome is "revived within
#: this many days, and the revived deal won". Revived cycles last at most
#: ``MAX_CYCLE_DAYS`` (< this), so a revived deal that is won is won within the horizon
#: of its revival.
REVIVAL_HORIZON_DAYS = 365.0
#: A lost deal comes back within this many days of its loss or never (the hazard is zero
#: after); a labeller's linking window of at least this finds every synthetic revival.
REVIVAL_MAX_DAYS = 730.0
#: Revival truth snapshots: this many days after the loss, then every
#: ``REVIVAL_SNAPSHOT_EVERY_DAYS`` while the deal is not revived, up to ``as_of``.
REVIVAL_FIRST_SNAPSHOT_DAYS = 7.0
REVIVAL_SNAPSHOT_EVERY_DAYS = 30.0
#: Second word of the revival stream's seed, ``default_rng([seed, REVIVAL_STREAM])``
#: (issue 12): revival draws never shift the open-deal draws.
REVIVAL_STREAM = 12
#: Log revival hazard (per day, at the peak of the time shape) of an average lost deal.
REVIVAL_INTERCEPT = -7.1
#: Hazard effects: per lost reason (order of ``LOST_REASONS``), per named competitor
#: (order of ``COMPETITORS``) and when there was none, per seniority level above 3.5 of
#: the most senior contact engaged, per log(1 + won deals of the account before the loss),
#: per unit of the lost deal's hidden quality z, per sd of the latent post-loss interest v.
REASON_HAZARD_EFFECT = (0.0, -0.5, -0.1, 0.7, 0.4, -1.0, -0.3)
COMPETITOR_HAZARD_EFFECT = (-0.3, 0.0, -0.5, 0.4)
COMPETITOR_NONE_HAZARD_EFFECT = 0.2
SENIORITY_HAZARD_EFFECT = 0.25
HISTORY_HAZARD_EFFECT = 0.5
QUALITY_HAZARD_EFFECT = 0.3
INTEREST_HAZARD_EFFECT = 0.8
#: Time shape per reason: ``exp(-t/tau) - delay * exp(-t/REVIVAL_FAST_DAYS)`` days after
#: the loss; a delay near 1 makes the deal come back months later (timing), near 0 soon.
REASON_TAU_DAYS = (180.0, 300.0, 150.0, 240.0, 300.0, 200.0, 180.0)
REASON_DELAY = (0.3, 0.9, 0.2, 0.95, 0.6, 0.5, 0.3)
REVIVAL_FAST_DAYS = 45.0
#: Budget cycle: the hazard is multiplied by ``1 + amplitude * cos(2 pi (day - start) /
#: year)``, highest at the start of the account's fiscal year; amplitude per reason.
REASON_BUDGET_CYCLE = (0.3, 0.2, 0.2, 0.3, 0.8, 0.2, 0.2)
#: Fiscal years start on 1 January, April, July or October with these shares.
_FISCAL_START_DAY = (0.0, 90.0, 181.0, 273.0)
_FISCAL_START_P = (0.6, 0.2, 0.15, 0.05)
_YEAR_DAYS = 365.25
#: Win logit of a revived deal: the lost deal's creation logit ``base`` + this shift +
#: the reason's effect + ``INTEREST_WIN_EFFECT * v`` + a fresh hidden quality z2.
REVIVAL_WIN_SHIFT = 0.3
REASON_WIN_EFFECT = (0.1, -0.3, -0.2, 0.4, 0.2, -0.6, 0.0)
INTEREST_WIN_EFFECT = 0.5
#: Share of revivals that re-open the lost deal (else a new deal follows it), per reason.
REASON_REOPEN_SHARE = (0.25, 0.1, 0.35, 0.35, 0.25, 0.15, 0.2)
#: Share of follow-up deals whose CRM records ``previous_deal_id`` (the rest must be
#: linked by account and time).
PREVIOUS_DEAL_RECORDED = 0.85
#: Post-loss engagement: inbound and outbound (nurture) activities per day right after
#: the loss, decaying with these time constants; inbound scales with exp(effect * v).
_POST_LOSS_INBOUND_RATE, _POST_LOSS_INBOUND_DAYS, _POST_LOSS_INBOUND_EFFECT = 0.015, 120.0, 0.9
_POST_LOSS_OUTBOUND_RATE, _POST_LOSS_OUTBOUND_DAYS = 0.02, 90.0
#: Lost-reason logits: intercept per reason, and effects of log(amount / median), a named
#: competitor, no competitor, z, log(employees / 300) and the Enterprise Suite product.
_REASON_LOGIT = np.array(
    # intercept, log_amount, named, none, z, log_emp, enterprise
    [
        [0.2, 0.6, 0.0, 0.0, 0.0, 0.0, 0.0],  # price
        [-0.6, 0.0, 1.8, -2.0, 0.0, 0.0, 0.0],  # competitor
        [-0.1, 0.0, 0.0, 0.0, -0.5, 0.0, 0.0],  # no_decision
        [-0.2, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # timing
        [-0.5, 0.4, 0.0, 0.0, 0.0, -0.15, 0.0],  # budget
        [-0.6, 0.0, 0.0, 0.0, -0.4, 0.0, 0.5],  # product_fit
        [-1.4, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # other
    ]
)
#: How the synthetic CRM writes each reason (order of ``LOST_REASONS``): the picklist
#: value or free text in English and Chinese; ``canonical_lost_reasons`` reads every one
#: back as its reason (a test checks it). A share is left empty.
LOST_REASON_TEXTS: tuple[tuple[str, ...], ...] = (
    ("price", "Price too high", "Too expensive", "pricing", "价格太高", "太贵", "价格"),
    ("competitor", "Went with competitor", "Lost to Globex", "竞争对手", "选了别家", "选择了竞品"),
    ("no_decision", "No decision", "Project shelved", "没有决定", "搁置", "客户失联"),
    ("timing", "Bad timing", "Not now, maybe next year", "时机不对", "明年再说"),
    ("budget", "No budget", "Budget cut", "预算不足", "没有预算"),
    ("product_fit", "Missing feature", "Not a fit for requirements", "功能不符", "产品不匹配"),
    ("other", "Reorganisation", "Champion left the company", "公司重组", "其他"),
)
_LOST_REASON_MISSING = 0.1
REOPEN, FOLLOW_UP = "reopen", "follow_up"


def _take(obj: _T, idx: np.ndarray) -> _T:
    """A per-deal dataclass of arrays restricted to the deals ``idx`` (rows of each array)."""
    return type(obj)(**{f.name: getattr(obj, f.name)[idx] for f in fields(obj)})  # type: ignore[arg-type]


def _term_integral(
    x: np.ndarray, tau: np.ndarray | float, psi: np.ndarray, cycle: np.ndarray
) -> np.ndarray:
    """``integral_0^x exp(-t/tau) (1 + cycle cos(w t + psi)) dt``, in closed form."""
    w = 2.0 * np.pi / _YEAR_DAYS
    decay = np.exp(-x / tau)
    wave = (w * np.sin(w * x + psi) - np.cos(w * x + psi) / tau) * decay - (
        w * np.sin(psi) - np.cos(psi) / tau
    )
    return tau * (1.0 - decay) + cycle * wave / (1.0 / tau**2 + w**2)


@dataclass
class _Hazard:
    """The revival hazard of lost deals: ``exp(eta) * shape(t) * budget cycle(t)``."""

    eta: np.ndarray
    tau: np.ndarray
    delay: np.ndarray
    cycle: np.ndarray
    psi: np.ndarray  # phase of the budget cycle at the loss (radians)

    def cumulative(self, days: np.ndarray) -> np.ndarray:
        """Expected revivals from the loss to ``days`` after it (exact, closed form)."""
        x = np.clip(days, 0.0, REVIVAL_MAX_DAYS)
        slow = _term_integral(x, self.tau, self.psi, self.cycle)
        fast = _term_integral(x, REVIVAL_FAST_DAYS, self.psi, self.cycle)
        return np.exp(self.eta) * (slow - self.delay * fast)

    def first_event(self, rng: np.random.Generator) -> np.ndarray:
        """Days from the loss to the revival (inf: never), by inverting the cumulative."""
        target = rng.exponential(1.0, self.eta.size)
        lo = np.zeros(self.eta.size)
        hi = np.full(self.eta.size, REVIVAL_MAX_DAYS)
        for _ in range(32):  # bisection to ~2e-7 days (15 ms); the cumulative increases
            mid = 0.5 * (lo + hi)
            below = self.cumulative(mid) < target
            lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
        return np.where(self.cumulative(np.full_like(lo, REVIVAL_MAX_DAYS)) < target, np.inf, hi)


@dataclass
class _Losses:
    """One row per loss (a deal can be lost, re-opened and lost again)."""

    deal: np.ndarray  # global deal number
    lost_at: np.ndarray  # int64 us
    reason: np.ndarray  # index into LOST_REASONS
    text: np.ndarray  # index into the flattened LOST_REASON_TEXTS, -1 = empty
    hazard: _Hazard
    p_win: np.ndarray  # probability the revived deal is won (latent)
    revival_days: np.ndarray  # days from the loss to the revival, inf = never
    revival_won: np.ndarray
    kind: np.ndarray  # 0 re-open, 1 follow-up (drawn for every loss)
    revival_deal: np.ndarray  # global number of the revived deal, -1 = none by as_of
    interest: np.ndarray  # latent post-loss interest v ~ N(0, 1)
    win_base: np.ndarray  # win logit of the revived deal before its fresh quality z2


@dataclass
class _Engagement:
    """The post-loss events that depend on the latent interest, as the oracle of what an
    export shows reads them: inbound contacts, and outbound nurture (visit or not);
    ``loss`` indexes the concatenated losses. The rep's replies are not here: they follow
    the inbound ones and say nothing more about the interest."""

    loss: np.ndarray
    at: np.ndarray  # int64 us
    inbound: np.ndarray  # bool
    visit: np.ndarray  # bool (outbound nurture that was a visit)


@dataclass
class _Cycle:
    """Deals (re-opened or new) that a revival started, simulated like new deals."""

    deal: np.ndarray  # global deal number (the lost deal's when re-opened)
    previous: np.ndarray  # global number of the lost deal it revives
    reopen: np.ndarray
    linked: np.ndarray  # follow-up with previous_deal_id recorded
    d: _Deals
    paths: _Paths
    dc: _DealContacts
    acts: _Activities


@dataclass
class _Revival:
    losses: _Losses
    cycles: list[_Cycle]
    post_loss: _Activities  # deal = global deal number
    n_deals: int  # original plus follow-up deals
    engagement: _Engagement | None = None

    @classmethod
    def none(cls, n_deals: int, acts: _Activities) -> _Revival:
        """No lost deal has a reason or comes back: the CRM as simulated before issue 12.

        Empty arrays of the simulated dtypes (``acts`` lends its own), so that the tables
        are built by the one code path and come out as the open-deal simulation alone.
        """
        ints, floats = np.zeros(0, np.int64), np.zeros(0, np.float64)
        losses = _Losses(
            deal=ints,
            lost_at=ints,
            reason=ints,
            text=ints,
            hazard=_Hazard(floats, floats, floats, floats, floats),
            p_win=floats,
            revival_days=floats,
            revival_won=np.zeros(0, bool),
            kind=np.zeros(0, np.int8),
            revival_deal=ints,
            interest=floats,
            win_base=floats,
        )
        return cls(losses, [], _take(acts, ints), n_deals)


def _lost_reasons(rng: np.random.Generator, d: _Deals, acc: _Accounts) -> np.ndarray:
    """Draw each lost deal's reason from its latent state (Gumbel-max over the logits)."""
    covariates = np.stack(
        [
            np.ones_like(d.z),
            np.log(d.amount / AMOUNT_MEDIAN),
            (d.competitor >= 0).astype(np.float64),
            (d.competitor == -1).astype(np.float64),
            d.z,
            np.log(acc.employees[d.account] / 300.0),
            (d.product == PRODUCTS.index("Enterprise Suite")).astype(np.float64),
        ],
        axis=1,
    )
    logits = covariates @ _REASON_LOGIT.T
    return np.argmax(logits + rng.gumbel(size=logits.shape), axis=1)


def _prior_wins(
    account: np.ndarray, at: np.ndarray, win_account: np.ndarray, win_at: np.ndarray
) -> np.ndarray:
    """Per (account, time): won deals of that account closed before that time."""
    origin = min(int(at.min()), int(win_at.min())) if win_at.size else int(at.min())
    keys = (win_account.astype(np.int64) << 32) | ((win_at - origin) // US_PER_SECOND)
    keys.sort()
    query = account.astype(np.int64) << 32
    return np.searchsorted(keys, query | ((at - origin) // US_PER_SECOND)) - np.searchsorted(
        keys, query
    )


def _simulate_losses(
    rng: np.random.Generator,
    deal: np.ndarray,
    d: _Deals,
    dc: _DealContacts,
    lost_at: np.ndarray,
    acc: _Accounts,
    fiscal_start: np.ndarray,
    wins: tuple[np.ndarray, np.ndarray],
) -> tuple[_Losses, np.ndarray]:
    """Reason, latent interest, hazard, revival time and outcome of each lost deal."""
    n = deal.size
    reason = _lost_reasons(rng, d, acc)
    texts = np.cumsum([0, *(len(t) for t in LOST_REASON_TEXTS)])
    pick = (rng.random(n) * np.diff(texts)[reason]).astype(np.int64)
    text = np.where(rng.random(n) < _LOST_REASON_MISSING, -1, texts[reason] + pick)
    interest = rng.normal(0.0, 1.0, n)
    engaged = np.max(np.where(dc.attached, dc.level, 0), axis=1).astype(np.float64)
    comp = np.where(
        d.competitor >= 0,
        np.asarray(COMPETITOR_HAZARD_EFFECT)[np.maximum(d.competitor, 0)],
        np.where(d.competitor == -1, COMPETITOR_NONE_HAZARD_EFFECT, 0.0),
    )
    eta = (
        REVIVAL_INTERCEPT
        + np.asarray(REASON_HAZARD_EFFECT)[reason]
        + comp
        + SENIORITY_HAZARD_EFFECT * (engaged - 3.5)
        + HISTORY_HAZARD_EFFECT * np.log1p(_prior_wins(d.account, lost_at, *wins))
        + QUALITY_HAZARD_EFFECT * d.z
        + INTEREST_HAZARD_EFFECT * interest
    )
    loss_day = lost_at / US_PER_DAY
    psi = 2.0 * np.pi * ((loss_day - fiscal_start[d.account]) % _YEAR_DAYS) / _YEAR_DAYS
    hazard = _Hazard(
        eta,
        np.asarray(REASON_TAU_DAYS)[reason],
        np.asarray(REASON_DELAY)[reason],
        np.asarray(REASON_BUDGET_CYCLE)[reason],
        psi,
    )
    win_base = (
        d.base
        + REVIVAL_WIN_SHIFT
        + np.asarray(REASON_WIN_EFFECT)[reason]
        + INTEREST_WIN_EFFECT * interest
    )
    z2 = rng.normal(0.0, LATENT_SIGMA, n)
    p_win = _sigmoid(win_base + z2)
    revival_days = hazard.first_event(rng)
    won = rng.random(n) < p_win
    kind = (rng.random(n) >= np.asarray(REASON_REOPEN_SHARE)[reason]).astype(np.int8)
    losses = _Losses(
        deal,
        lost_at,
        reason,
        text,
        hazard,
        p_win,
        revival_days,
        won,
        kind,
        np.full(n, -1),
        interest,
        win_base,
    )
    return losses, np.stack([win_base, z2, interest], axis=1)


def _post_loss_activities(
    rng: np.random.Generator,
    losses: _Losses,
    interest: np.ndarray,
    d: _Deals,
    dc: _DealContacts,
    as_of_us: int,
) -> tuple[_Activities, _Engagement]:
    """Engagement after a loss, until the revival, ``REVIVAL_MAX_DAYS`` or ``as_of``; and
    the events of it that depend on the interest (:class:`_Engagement`, loss-local).

    Inbound calls and e-mails come more often from accounts with a high latent interest
    (which also drives the revival), and most are answered; outbound nurture does not
    depend on it, except that reps visit interested accounts more.
    """
    until = np.minimum(
        np.minimum(losses.revival_days, REVIVAL_MAX_DAYS),
        (as_of_us - losses.lost_at) / US_PER_DAY,
    )
    until = np.maximum(until, 0.0)
    parts = []
    for inbound, rate, tau in (
        (
            True,
            _POST_LOSS_INBOUND_RATE * np.exp(_POST_LOSS_INBOUND_EFFECT * interest),
            _POST_LOSS_INBOUND_DAYS,
        ),
        (False, np.full(interest.size, _POST_LOSS_OUTBOUND_RATE), _POST_LOSS_OUTBOUND_DAYS),
    ):
        mass = 1.0 - np.exp(-until / tau)
        counts = rng.poisson(rate * tau * mass)
        local = np.repeat(np.arange(counts.size), counts)
        days = -tau * np.log1p(-rng.random(local.size) * mass[local])
        at = losses.lost_at[local] + np.maximum((days * US_PER_DAY).astype(np.int64), US_PER_SECOND)
        if inbound:
            kind = np.where(rng.random(local.size) < 0.7, _TYPE["email"], _TYPE["call"])
        else:
            visit = rng.random(local.size) < _sigmoid(-2.5 + 0.8 * interest[local])
            remote = np.where(rng.random(local.size) < 0.65, _TYPE["email"], _TYPE["call"])
            kind = np.where(visit, _TYPE["visit"], remote)
        direction = np.full(local.size, _DIR["inbound" if inbound else "outbound"], np.int8)
        parts.append((local, at, kind.astype(np.int8), direction))
    local = np.concatenate([p[0] for p in parts])
    at = np.concatenate([p[1] for p in parts])
    kind = np.concatenate([p[2] for p in parts])
    direction = np.concatenate([p[3] for p in parts])
    seen = at <= as_of_us
    engagement = _Engagement(
        local[seen],
        at[seen],
        (direction == _DIR["inbound"])[seen],
        (kind == _TYPE["visit"])[seen],
    )
    # The rep answers most inbound calls and e-mails, as during the deal.
    asked = np.flatnonzero(direction == _DIR["inbound"])
    asked = asked[rng.random(asked.size) < 0.9]
    latency = _REPLY_MEDIAN_HOURS * np.exp(rng.normal(0.0, _REPLY_SD, asked.size))
    local = np.concatenate([local, local[asked]])
    at = np.concatenate([at, at[asked] + (latency * US_PER_HOUR).astype(np.int64)])
    kind = np.concatenate([kind, np.full(asked.size, _TYPE["email"], np.int8)])
    direction = np.concatenate([direction, np.full(asked.size, _DIR["outbound"], np.int8)])
    keep = at <= as_of_us
    local, at, kind, direction = local[keep], at[keep], kind[keep], direction[keep]
    contact = _pick_contacts(rng, local, at, kind, d, dc)
    acts = _Activities(losses.deal[local], at, kind, direction, contact, _durations(rng, kind))
    return acts, engagement


def _revived_deals(
    rng: np.random.Generator,
    losses: _Losses,
    latent: np.ndarray,
    d: _Deals,
    skill: np.ndarray,
    as_of_us: int,
) -> _Deals:
    """The deals that revivals by ``as_of`` start: the lost deal's fields, a new cycle."""
    revived = np.flatnonzero(losses.revival_days * US_PER_DAY <= as_of_us - losses.lost_at)
    r = _take(d, revived)
    base, z2 = latent[revived, 0], latent[revived, 1]
    follow_up = losses.kind[revived] == 1
    scale = np.where(follow_up, np.exp(rng.normal(0.0, 0.3, revived.size)), 1.0)
    return _Deals(
        account=r.account,
        owner=r.owner,
        created=losses.lost_at[revived]
        + np.round(losses.revival_days[revived] * US_PER_DAY).astype(np.int64),
        channel=r.channel,
        competitor=r.competitor,
        product=r.product,
        amount=np.maximum(np.round(r.amount * scale, -1), 500.0),
        base=base,
        z=z2,
        p_latent=losses.p_win[revived],
        p_creation=expected_sigmoid(base),
        p_without_rep=expected_sigmoid(
            base - skill[r.owner], float(np.hypot(LATENT_SIGMA, SKILL_SD))
        ),
        won=losses.revival_won[revived],
    )


def _simulate_revival(
    rng: np.random.Generator,
    d: _Deals,
    acc: _Accounts,
    con: _Contacts,
    paths: _Paths,
    dc: _DealContacts,
    skill: np.ndarray,
    as_of_us: int,
) -> _Revival:
    """Lost deals come back (re-opened or followed by a new deal), generation by generation.

    A deal lost by ``as_of`` gets a reason, post-loss engagement and a revival time from
    its hazard; a revival by ``as_of`` starts a new cycle simulated like a new deal (its
    path, contacts, activities); a cycle lost by ``as_of`` is a loss of the next
    generation. Loops run over generations (a handful), never over deals.
    """
    n = d.z.size
    fiscal_start = np.asarray(_FISCAL_START_DAY)[_choice(rng, _FISCAL_START_P, acc.industry.size)]
    won0 = d.won
    wins = (d.account[won0], paths.close[won0])
    lost = np.flatnonzero(~d.won & (paths.close <= as_of_us))
    cur_deal, cur_d, cur_dc, cur_lost_at = lost, _take(d, lost), _take(dc, lost), paths.close[lost]
    all_losses: list[_Losses] = []
    cycles: list[_Cycle] = []
    post: list[_Activities] = []
    engaged: list[_Engagement] = []
    next_deal = n
    seen_losses = 0
    while cur_deal.size:
        losses, latent = _simulate_losses(
            rng, cur_deal, cur_d, cur_dc, cur_lost_at, acc, fiscal_start, wins
        )
        acts, engagement = _post_loss_activities(rng, losses, latent[:, 2], cur_d, cur_dc, as_of_us)
        post.append(acts)
        engagement.loss = engagement.loss + seen_losses
        engaged.append(engagement)
        seen_losses += losses.deal.size
        revived = np.flatnonzero(losses.revival_days * US_PER_DAY <= as_of_us - losses.lost_at)
        new_d = _revived_deals(rng, losses, latent, cur_d, skill, as_of_us)
        new_paths = _simulate_paths(rng, new_d)
        new_dc = _simulate_deal_contacts(rng, new_d, con, new_paths, as_of_us)
        new_acts = _simulate_activities(rng, new_d, skill, new_paths, new_dc, as_of_us)
        reopen = losses.kind[revived] == 0
        number = np.where(reopen, cur_deal[revived], next_deal + np.cumsum(~reopen) - 1)
        next_deal += int((~reopen).sum())
        losses.revival_deal[revived] = number
        linked = ~reopen & (rng.random(revived.size) < PREVIOUS_DEAL_RECORDED)
        cycles.append(
            _Cycle(number, cur_deal[revived], reopen, linked, new_d, new_paths, new_dc, new_acts)
        )
        all_losses.append(losses)
        closed = new_paths.close <= as_of_us
        wins = (
            np.concatenate([wins[0], new_d.account[new_d.won]]),
            np.concatenate([wins[1], new_paths.close[new_d.won]]),
        )
        again = np.flatnonzero(~new_d.won & closed)
        cur_deal, cur_d, cur_dc = number[again], _take(new_d, again), _take(new_dc, again)
        cur_lost_at = new_paths.close[again]
    losses = _Losses(
        **{
            f.name: np.concatenate([getattr(x, f.name) for x in all_losses])
            for f in fields(_Losses)
            if f.name != "hazard"
        },
        hazard=_Hazard(
            **{
                f.name: np.concatenate([getattr(x.hazard, f.name) for x in all_losses])
                for f in fields(_Hazard)
            }
        ),
    )
    post_loss = _Activities(
        **{f.name: np.concatenate([getattr(a, f.name) for a in post]) for f in fields(_Activities)}
    )
    engagement = _Engagement(
        **{
            f.name: np.concatenate([getattr(e, f.name) for e in engaged])
            for f in fields(_Engagement)
        }
    )
    return _Revival(losses, cycles, post_loss, next_deal, engagement)


#: Nodes of the quadrature over the latent interest in :func:`_observable_revival`.
_INTEREST_NODES = 40


def _observable_revival(
    losses: _Losses,
    engagement: _Engagement | None,
    loss: np.ndarray,
    days: np.ndarray,
    snap_us: np.ndarray,
    horizon_days: float,
) -> np.ndarray:
    """The revival oracle of what the export shows at each snapshot: ``p_revival`` with the
    latent interest v and the account's fiscal year start integrated over their posterior,
    and the revived deal's fresh quality z2 over its prior.

    Given the snapshot, v's posterior is its N(0, 1) prior times the chance of not being
    revived yet (the hazard scales with exp(0.8 v)), times the likelihood of the post-loss
    engagement seen so far: the count of inbound contacts (a Poisson process whose rate
    scales with exp(0.9 v)) and, of the outbound nurture, which were visits (each with
    probability sigmoid(-2.5 + 0.8 v)). Exact by quadrature over v; it still knows the lost
    deal's hidden quality z (its history shows it only in part), so no model should pass
    it: it is the ceiling a model of the export's fields can approach.
    """
    n = loss.size
    inbound = visits = nurture = np.zeros(n)
    if engagement is not None and engagement.loss.size:
        order = np.lexsort((engagement.at, engagement.loss))
        e_loss, e_at = engagement.loss[order], engagement.at[order]

        origin = int(min(e_at.min(), snap_us.min()))
        event_key = (e_loss.astype(np.int64) << 32) | ((e_at - origin) // US_PER_SECOND)
        snap_key = (loss.astype(np.int64) << 32) | ((snap_us - origin) // US_PER_SECOND)
        start = loss.astype(np.int64) << 32

        def count(mask: np.ndarray) -> np.ndarray:
            """Events of ``mask`` of each row's loss up to its snapshot (to the second)."""
            keys = event_key[mask]  # sorted: by loss, then time
            return (
                np.searchsorted(keys, snap_key, side="right") - np.searchsorted(keys, start)
            ).astype(np.float64)

        inbound = count(engagement.inbound[order])
        nurture_mask = ~engagement.inbound[order]
        nurture = count(nurture_mask)
        visits = count(nurture_mask & engagement.visit[order])
    v = losses.interest[loss]
    nodes, weights = np.polynomial.hermite_e.hermegauss(_INTEREST_NODES)
    inbound_mass = (
        _POST_LOSS_INBOUND_RATE
        * _POST_LOSS_INBOUND_DAYS
        * (1.0 - np.exp(-days / _POST_LOSS_INBOUND_DAYS))
    )
    # The account's fiscal year start (the budget cycle's phase) is not in the export
    # either: integrated over its prior, as v is.
    h = _take(losses.hazard, loss)
    loss_day = losses.lost_at[loss] / US_PER_DAY
    phases = []
    for fiscal, prior in zip(_FISCAL_START_DAY, _FISCAL_START_P, strict=True):
        psi = 2.0 * np.pi * ((loss_day - fiscal) % _YEAR_DAYS) / _YEAR_DAYS
        other = replace(h, psi=psi)
        cum = other.cumulative(days)
        phases.append((np.log(prior), cum, other.cumulative(days + horizon_days) - cum))
    wins = [
        expected_sigmoid(losses.win_base[loss] + INTEREST_WIN_EFFECT * (x - v), LATENT_SIGMA)
        for x in nodes
    ]

    def log_posterior(k: int, log_prior: float, cum: np.ndarray) -> np.ndarray:
        x = nodes[k]
        rate = inbound_mass * np.exp(_POST_LOSS_INBOUND_EFFECT * x)
        p_visit = float(_sigmoid(np.asarray(-2.5 + 0.8 * x)))
        return (
            log_prior
            + np.log(weights[k])
            - np.exp(INTEREST_HAZARD_EFFECT * (x - v)) * cum
            + inbound * np.log(rate)
            - rate
            + visits * np.log(p_visit)
            + (nurture - visits) * np.log1p(-p_visit)
        )

    top = np.full(n, -np.inf)
    for log_prior, cum, _ in phases:
        for k in range(nodes.size):
            top = np.maximum(top, log_posterior(k, log_prior, cum))
    total, weighted = np.zeros(n), np.zeros(n)
    for log_prior, cum, reach_f in phases:
        for k, x in enumerate(nodes):
            post = np.exp(log_posterior(k, log_prior, cum) - top)
            chance = -np.expm1(-np.exp(INTEREST_HAZARD_EFFECT * (x - v)) * reach_f)
            total += post
            weighted += post * chance * wins[k]
    return weighted / total


def _revival_truth(
    losses: _Losses,
    engagement: _Engagement | None,
    deal_ids: pd.Series,
    as_of_us: int,
    horizon_days: float,
) -> pd.DataFrame:
    """The oracle of every lost deal at each snapshot after its loss (see ``SyntheticCRM``).

    ``p_revival`` is exact: given the latent state the revival time is the first event of
    a Poisson process with a closed-form cumulative hazard, so P(revived in (s, s + h] |
    not revived by s) = 1 - exp(-(H(s + h) - H(s))), times the revived deal's (latent)
    win probability, which is independent of when it comes back.
    """
    age = (as_of_us - losses.lost_at) / US_PER_DAY
    last = np.minimum(np.minimum(age, REVIVAL_MAX_DAYS), np.nextafter(losses.revival_days, 0))
    count = np.where(
        last >= REVIVAL_FIRST_SNAPSHOT_DAYS,
        np.floor((last - REVIVAL_FIRST_SNAPSHOT_DAYS) / REVIVAL_SNAPSHOT_EVERY_DAYS) + 1,
        0,
    ).astype(np.int64)
    loss = np.repeat(np.arange(count.size), count)
    step = np.arange(loss.size) - np.repeat(np.cumsum(count) - count, count)
    days = REVIVAL_FIRST_SNAPSHOT_DAYS + step * REVIVAL_SNAPSHOT_EVERY_DAYS
    h = _take(losses.hazard, loss)
    reach = h.cumulative(days + horizon_days) - h.cumulative(days)
    p = -np.expm1(-reach) * losses.p_win[loss]
    snap_us = losses.lost_at[loss] + np.round(days * US_PER_DAY).astype(np.int64)
    observable = _observable_revival(losses, engagement, loss, days, snap_us, horizon_days)
    revival_days = losses.revival_days[loss]
    revived = (revival_days <= days + horizon_days) & losses.revival_won[loss]
    revival_deal = losses.revival_deal[loss]
    kinds = np.where(
        np.isfinite(revival_days), losses.kind[loss], 2
    )  # 2: not revived within REVIVAL_MAX_DAYS
    lost_at = losses.lost_at[loss]
    return pd.DataFrame(
        {
            "deal_id": deal_ids.take(losses.deal[loss]).reset_index(drop=True),
            "lost_at": _times(lost_at),
            "lost_reason": _labels(LOST_REASONS, losses.reason[loss]),
            "as_of": _times(lost_at + np.round(days * US_PER_DAY).astype(np.int64)),
            "days_since_loss": days,
            "p_revival": p,
            "p_revival_observable": observable,
            "revived_and_won": revived,
            "revived_at": _times(
                np.where(
                    np.isfinite(revival_days),
                    lost_at
                    + np.round(np.nan_to_num(revival_days, posinf=0.0) * US_PER_DAY).astype(
                        np.int64
                    ),
                    np.iinfo(np.int64).min,
                )
            ),
            "revival_kind": _labels([REOPEN, FOLLOW_UP, ""], kinds, kinds < 2),
            "revival_deal_id": deal_ids.take(np.maximum(revival_deal, 0))
            .reset_index(drop=True)
            .where(pd.Series(revival_deal >= 0)),
        }
    )


# --------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------


def generate_crm(
    n_deals: int,
    seed: int = SEED,
    as_of: datetime | pd.Timestamp | None = None,
    revival: bool = False,
    history_days: float = CREATION_WINDOW_DAYS,
) -> SyntheticCRM:
    """Simulate a CRM with ``n_deals`` deals whose history ends at ``as_of``.

    Same ``(n_deals, seed, as_of, revival, history_days)`` gives identical frames. ``as_of`` defaults
    to now (UTC, floored to the second); naive datetimes are read as UTC. Accounts number
    ``n_deals / 4`` (at least 5), reps ``n_deals / 50`` (at least 5).

    ``revival`` adds the revival of lost deals (``docs/revival.md``): lost reasons,
    post-loss engagement, re-opened and follow-up deals, and ``revival_truth``.
    ``history_days`` is the span the deals are created over (:data:`CREATION_WINDOW_DAYS`;
    :data:`REVIVAL_HISTORY_DAYS` gives the revival model enough known outcomes). Off by
    default until a revival model uses it, because re-opens and follow-ups change the
    open-deal data the win model trains on; off, the tables and truth are those of the
    open-deal simulation alone (``lost_reason`` and ``previous_deal_id`` empty,
    ``revival_truth`` None). Its random stream is separate, so switching it on draws
    nothing else differently.
    """
    if n_deals < 1:
        raise ValueError("n_deals must be at least 1")
    t0 = time.perf_counter()
    as_of_ts = _resolve_as_of(as_of)
    as_of_us = int(as_of_ts.value // 1_000)
    rng = np.random.default_rng(seed)

    n_reps = max(5, round(n_deals / 50))
    n_acc = max(5, round(n_deals / 4))
    skill = rng.normal(0.0, SKILL_SD, n_reps)
    acc = _simulate_accounts(rng, n_acc, n_reps)
    con = _simulate_contacts(rng, acc)
    deals = _simulate_deals(rng, n_deals, acc, skill, as_of_us, history_days)
    paths = _simulate_paths(rng, deals)
    dc = _simulate_deal_contacts(rng, deals, con, paths, as_of_us)
    acts = _simulate_activities(rng, deals, skill, paths, dc, as_of_us)
    log.debug("simulated in %.1fs; building tables", time.perf_counter() - t0)

    rev = (
        _simulate_revival(
            np.random.default_rng([seed, REVIVAL_STREAM]),
            deals, acc, con, paths, dc, skill, as_of_us,
        )
        if revival
        else _Revival.none(n_deals, acts)
    )  # fmt: skip
    tables, truth, revival_truth = _build_tables(
        rng, deals, acc, con, paths, dc, acts, n_reps, as_of_us, rev
    )
    log.info(
        "generated synthetic CRM: %s%s in %.1fs",
        ", ".join(f"{k}={len(v):,}" for k, v in tables.items()),
        f", revival truth={len(revival_truth):,}" if revival else "",
        time.perf_counter() - t0,
    )
    return SyntheticCRM(
        tables=tables,
        truth=truth,
        as_of=as_of_ts,
        revival_truth=revival_truth if revival else None,
    )


def _build_tables(
    rng: np.random.Generator,
    d: _Deals,
    acc: _Accounts,
    con: _Contacts,
    paths: _Paths,
    dc: _DealContacts,
    acts: _Activities,
    n_reps: int,
    as_of_us: int,
    rev: _Revival,
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame, pd.DataFrame]:
    """The contract tables, the truth and the revival truth.

    Deals that revivals add (follow-ups) are numbered after the simulated ones, and their
    activities after the others: the rows of the open-deal simulation keep their IDs.
    """
    n = len(d.z)
    n_acc = len(acc.industry)
    n_con = len(con.account)
    n_all = rev.n_deals
    later_acts = [rev.post_loss, *(c.acts for c in rev.cycles)]
    n_acts = len(acts.deal) + sum(len(a.deal) for a in later_acts)
    w_a, w_c, w_d = _id_width("A", n_acc), _id_width("C", n_con), _id_width("D", n_all)
    w_act, w_u = _id_width("ACT", n_acts), _id_width("U", n_reps)

    # Accounts exist before their first deal; contacts between the two.
    first_deal = np.full(n_acc, as_of_us, dtype=np.int64)
    np.minimum.at(first_deal, d.account, d.created)
    has_deal = np.zeros(n_acc, bool)
    has_deal[d.account] = True
    lead_days = np.where(
        has_deal, 30.0 + rng.exponential(200.0, n_acc), rng.uniform(30.0, 1_100.0, n_acc)
    )
    acc_created = first_deal - (lead_days * US_PER_DAY).astype(np.int64)
    acc_created -= acc_created % US_PER_SECOND  # CRM record times: whole seconds
    gap = first_deal - acc_created
    con_created = acc_created[con.account] + (rng.random(n_con) * gap[con.account]).astype(np.int64)

    # IDs follow creation order.
    acc_order = np.argsort(acc_created, kind="stable")
    acc_num = np.empty(n_acc, np.int64)
    acc_num[acc_order] = np.arange(n_acc)
    con_order = np.argsort(con_created, kind="stable")
    con_num = np.empty(n_con, np.int64)
    con_num[con_order] = np.arange(n_con)

    accounts = pd.DataFrame(
        {
            "account_id": _ids("A", w_a, np.arange(n_acc)),
            "industry": _labels(INDUSTRIES, acc.industry[acc_order]),
            "employee_count": acc.employees[acc_order],
            "annual_revenue": np.where(acc.revenue_known, acc.revenue, np.nan)[acc_order],
            "region": _labels(REGIONS, acc.region[acc_order]),
            "created_at": _times(acc_created[acc_order]),
        }
    )

    words, _ = _title_vocabulary()
    title = con.title[con_order]
    contacts = pd.DataFrame(
        {
            "contact_id": _ids("C", w_c, np.arange(n_con)),
            "account_id": _ids("A", w_a, acc_num[con.account[con_order]]),
            "title": _labels(words, np.maximum(title, 0), title >= 0),
            "created_at": _times(con_created[con_order]),
        }
    )

    state = _DealState.of(paths, d.won, as_of_us)
    # Every deal, follow-ups included; a re-opened deal takes the state of its last cycle.
    account, owner, created = d.account.copy(), d.owner.copy(), d.created.copy()
    channel, product, amount, comp = (
        d.channel.copy(),
        d.product.copy(),
        d.amount.copy(),
        d.competitor.copy(),
    )
    stage, status, close = state.stage, state.status, state.close
    grow = n_all - n
    account, owner, created, channel, product, comp = (
        np.concatenate([a, np.zeros(grow, a.dtype)])
        for a in (account, owner, created, channel, product, comp)
    )
    amount, stage, status, close = (
        np.concatenate([a, np.zeros(grow, a.dtype)]) for a in (amount, stage, status, close)
    )
    previous = np.full(n_all, -1, dtype=np.int64)
    sh_parts = [state.stage_history(np.arange(n), paths)]
    dc_parts = [_deal_contact_rows(np.arange(n), dc)]
    truth_parts = [(np.arange(n), d)]
    for c in rev.cycles:
        cs = _DealState.of(c.paths, c.d.won, as_of_us)
        new = ~c.reopen
        nd = c.deal[new]
        for target, values in (
            (account, c.d.account), (owner, c.d.owner), (created, c.d.created),
            (channel, c.d.channel), (product, c.d.product), (amount, c.d.amount),
            (comp, c.d.competitor),
        ):  # fmt: skip
            target[nd] = values[new]
        stage[c.deal], status[c.deal], close[c.deal] = cs.stage, cs.status, cs.close
        previous[c.deal[c.linked]] = c.previous[c.linked]
        sh_parts.append(cs.stage_history(c.deal, c.paths))
        dc_parts.append(_deal_contact_rows(c.deal, c.dc))
        truth_parts.append((nd, _take(c.d, np.flatnonzero(new))))
    closed = status != 0
    comp_labels = [*COMPETITORS, "none", ""]
    comp_code = np.where(
        comp >= 0, comp, np.where(comp == -1, len(COMPETITORS), len(COMPETITORS) + 1)
    )
    texts = [t for group in LOST_REASON_TEXTS for t in group]
    reason_text = _last_per_deal(rev.losses.deal, rev.losses.lost_at, rev.losses.text, n_all)
    deal_ids = _ids("D", w_d, np.arange(n_all))
    deals = pd.DataFrame(
        {
            "deal_id": deal_ids,
            "account_id": _ids("A", w_a, acc_num[account]),
            "owner_id": _ids("U", w_u, owner),
            "created_at": _times(created),
            "channel": _labels(CHANNELS, channel),
            "product": _labels(PRODUCTS, product),
            "amount": amount,
            "currency": _labels(["USD"], np.zeros(n_all, np.int8)),
            "competitor": _labels(comp_labels, comp_code, comp != -2),
            "stage": _labels(STAGES, stage),
            "status": _labels([OPEN, LOST, WON], status),
            "closed_at": _times(np.where(closed, close, np.iinfo(np.int64).min)),
            "lost_reason": _labels(texts, np.maximum(reason_text, 0), reason_text >= 0),
            "previous_deal_id": _ids("D", w_d, np.maximum(previous, 0), previous >= 0),
        }
    )

    dc_deal, dc_contact, dc_role, dc_added = (
        np.concatenate(x) for x in zip(*dc_parts, strict=True)
    )
    # A re-opened deal's new contacts only: (deal, contact) is the table's key.
    _, first = np.unique(dc_deal * np.int64(n_con) + dc_contact, return_index=True)
    keep = np.sort(first)
    deal_contacts = pd.DataFrame(
        {
            "deal_id": _ids("D", w_d, dc_deal[keep]),
            "contact_id": _ids("C", w_c, con_num[dc_contact[keep]]),
            "role": _labels(CONTACT_ROLES, np.maximum(dc_role[keep], 0), dc_role[keep] >= 0),
            "added_at": _times(dc_added[keep]),
        }
    )

    sh_deal, sh_stage, sh_at = (np.concatenate(x) for x in zip(*sh_parts, strict=True))
    order = np.lexsort((sh_at, sh_deal))
    stage_history = pd.DataFrame(
        {
            "deal_id": _ids("D", w_d, sh_deal[order]),
            "stage": _labels(STAGES, sh_stage[order]),
            "entered_at": _times(sh_at[order]),
        }
    )

    # Activities of the revival (post-loss engagement, revived cycles) follow the others.
    cycle_acts = [
        _Activities(**{**{f.name: getattr(c.acts, f.name) for f in fields(_Activities)},
                       "deal": c.deal[c.acts.deal]})
        for c in rev.cycles
    ]  # fmt: skip
    later = [rev.post_loss, *cycle_acts]
    extra = _Activities(
        **{f.name: np.concatenate([getattr(a, f.name) for a in later]) for f in fields(_Activities)}
    )
    order = np.lexsort((extra.deal, extra.at))
    extra = _take(extra, order)
    all_acts = _Activities(
        **{
            f.name: np.concatenate([getattr(acts, f.name), getattr(extra, f.name)])
            for f in fields(_Activities)
        }
    )
    m = len(all_acts.deal)
    activities = pd.DataFrame(
        {
            "activity_id": _ids("ACT", w_act, np.arange(m)),
            "deal_id": _ids("D", w_d, all_acts.deal),
            "contact_id": _ids(
                "C", w_c, con_num[np.maximum(all_acts.contact, 0)], all_acts.contact >= 0
            ),
            "type": _labels(ACTIVITY_TYPES, all_acts.type),
            "direction": _labels(DIRECTIONS, all_acts.direction),
            "occurred_at": _times(all_acts.at),
            "duration_seconds": all_acts.duration,
        }
    )

    tables = {
        "accounts": accounts,
        "contacts": contacts,
        "deals": deals,
        "deal_contacts": deal_contacts,
        "activities": activities,
        "stage_history": stage_history,
    }
    for name, df in tables.items():
        assert list(df.columns) == TABLES[name].column_names, name
    truth_deal = np.concatenate([t[0] for t in truth_parts])
    truth = pd.DataFrame(
        {
            "deal_id": deal_ids.take(truth_deal).reset_index(drop=True),
            "p_latent": np.concatenate([t[1].p_latent for t in truth_parts]),
            "p_at_creation": np.concatenate([t[1].p_creation for t in truth_parts]),
            "p_without_rep": np.concatenate([t[1].p_without_rep for t in truth_parts]),
        }
    )
    return (
        tables,
        truth,
        _revival_truth(rev.losses, rev.engagement, deal_ids, as_of_us, REVIVAL_HORIZON_DAYS),
    )


@dataclass
class _DealState:
    """Where deals (or revived cycles) stand at as_of: stage, status code, close time."""

    stage: np.ndarray
    status: np.ndarray  # 0 open, 1 lost, 2 won
    close: np.ndarray
    seen: np.ndarray  # (n, K) stage entries recorded by as_of
    closed: np.ndarray

    @classmethod
    def of(cls, paths: _Paths, won: np.ndarray, as_of_us: int) -> _DealState:
        closed = paths.close <= as_of_us
        seen = paths.valid & (paths.entry <= as_of_us)
        cur_col = paths.stage.shape[1] - 1 - np.argmax(seen[:, ::-1], axis=1)
        n = len(won)
        stage = np.where(closed, _STAGE_IDX["closed"], paths.stage[np.arange(n), cur_col])
        status = np.where(closed, np.where(won, 2, 1), 0)
        return cls(stage, status, paths.close, seen, closed)

    def stage_history(
        self, deal: np.ndarray, paths: _Paths
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(deal, stage, entered_at) of every entry by as_of, and of the close."""
        rows, cols = np.nonzero(self.seen)
        return (
            np.concatenate([deal[rows], deal[self.closed]]),
            np.concatenate(
                [paths.stage[rows, cols], np.full(int(self.closed.sum()), _STAGE_IDX["closed"])]
            ),
            np.concatenate([paths.entry[rows, cols], paths.close[self.closed]]),
        )


def _deal_contact_rows(
    deal: np.ndarray, dc: _DealContacts
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(deal, contact, role, added) of every attached contact, deal-major."""
    rows, cols = np.nonzero(dc.attached)
    return deal[rows], dc.contact[rows, cols], dc.role[rows, cols], dc.added[rows, cols]


def _last_per_deal(
    deal: np.ndarray, at: np.ndarray, value: np.ndarray, n: int, missing: int = -1
) -> np.ndarray:
    """Per deal number (0..n-1): ``value`` of its latest row by ``at``, else ``missing``."""
    out = np.full(n, missing, dtype=np.int64)
    if deal.size:
        order = np.lexsort((at, deal))
        last = np.r_[deal[order][1:] != deal[order][:-1], True]
        out[deal[order][last]] = value[order][last]
    return out


def write_export(
    crm: SyntheticCRM, out_dir: Path, fmt: Literal["parquet", "csv"] = "parquet"
) -> dict[str, Path]:
    """Write ``<table>.<fmt>`` per table, ``truth.parquet`` and ``revival_truth.parquet``.

    The truths go to their own files so that an export folder can be handed to the
    pipeline as is (it never reads them) while evaluations still find the oracle next
    to the data it describes; ``revival_truth.parquet`` only when the revival was
    simulated. CSV times are ISO 8601 in UTC (``Z``). Returns the written paths by
    table name (``truth``, and ``revival_truth`` when written, included).
    """
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"unknown format {fmt!r}; use 'parquet' or 'csv'")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, df in crm.tables.items():
        path = out_dir / f"{name}.{fmt}"
        table = pa.Table.from_pandas(df, preserve_index=False)
        if fmt == "parquet":
            pa_pq.write_table(table, path)
        else:
            pa_csv.write_csv(table, path)
        paths[name] = path
    for name, frame in (("truth", crm.truth), ("revival_truth", crm.revival_truth)):
        if frame is None:
            continue
        path = out_dir / f"{name}.parquet"
        frame.to_parquet(path, index=False)
        paths[name] = path
    log.info("wrote %d files to %s", len(paths), out_dir)
    return paths
