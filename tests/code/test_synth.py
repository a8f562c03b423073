"""Tests of the synthetic CRM generator: contract shape, time order, and its ground truth.

The statistical tests use a few thousand deals and thresholds set well inside the
simulated effects (see the numbers in the module report), so they fail when a
direction flips or an effect vanishes, not by chance.
"""

from __future__ import annotations

import math
from datetime import datetime

import numpy as np
import pandas as pd
import pytest
from scipy import integrate

from leadscore.crm.contract import AFTER_DEAL_CREATION, TABLES
from leadscore.crm.synth import (
    LATENT_SIGMA,
    TITLE_LEVEL,
    SyntheticCRM,
    expected_sigmoid,
    generate_crm,
    write_export,
)

AS_OF = pd.Timestamp("2025-06-30 12:00:00", tz="UTC")
CHINESE = "[一-鿿]"


@pytest.fixture(scope="module")
def small() -> SyntheticCRM:
    return generate_crm(800, seed=7, as_of=AS_OF)


@pytest.fixture(scope="module")
def big() -> SyntheticCRM:
    return generate_crm(6000, seed=11, as_of=AS_OF)


@pytest.fixture(scope="module")
def closed(big: SyntheticCRM) -> pd.DataFrame:
    """Closed deals of the big sample with their outcome as 0/1."""
    d = big.tables["deals"]
    d = d[d["status"] != "open"].copy()
    d["won"] = (d["status"] == "won").astype(float)
    return d.set_index("deal_id")


def _rate_gap(won: pd.Series, a: pd.Series, b: pd.Series) -> tuple[float, float]:
    """Win rate of group a minus group b, and the standard error of that difference."""
    pa_, pb = won[a].mean(), won[b].mean()
    se = math.sqrt(pa_ * (1 - pa_) / a.sum() + pb * (1 - pb) / b.sum())
    return pa_ - pb, se


def _median_reply_latency_hours(activities: pd.DataFrame) -> pd.Series:
    """Per deal: median hours from an inbound activity to the next outbound one."""
    acts = activities.sort_values("occurred_at")
    inbound = acts.loc[acts["direction"] == "inbound", ["deal_id", "occurred_at"]]
    outbound = acts.loc[acts["direction"] == "outbound", ["deal_id", "occurred_at"]].rename(
        columns={"occurred_at": "reply_at"}
    )
    pairs = pd.merge_asof(
        inbound,
        outbound,
        left_on="occurred_at",
        right_on="reply_at",
        by="deal_id",
        direction="forward",
        allow_exact_matches=False,
    )
    hours = (pairs["reply_at"] - pairs["occurred_at"]).dt.total_seconds() / 3600
    return hours.groupby(pairs["deal_id"]).median().dropna()


# --------------------------------------------------------------------------------------
# Determinism and API
# --------------------------------------------------------------------------------------


def test_same_inputs_give_identical_frames() -> None:
    a = generate_crm(400, seed=3, as_of=AS_OF)
    b = generate_crm(400, seed=3, as_of=AS_OF)
    assert a.as_of == b.as_of == AS_OF
    assert a.tables.keys() == b.tables.keys()
    for name in a.tables:
        pd.testing.assert_frame_equal(a.tables[name], b.tables[name])
    pd.testing.assert_frame_equal(a.truth, b.truth)


#: Digests of ``generate_crm(300, seed=3, as_of=AS_OF)`` from the generator before the
#: revival simulation (git HEAD 2026-11-27, before issue 12), one per table and for the
#: truth: ``int(pd.util.hash_pandas_object(frame).sum()) % 2**64`` over the columns listed,
#: computed by running HEAD's ``leadscore/crm/synth.py`` (``git show HEAD:...``) against
#: HEAD's ``contract.py``. The default generator must keep reproducing them.
_BEFORE_REVIVAL: dict[str, tuple[int, int, tuple[str, ...]]] = {
    "accounts": (75, 2935514889954546075, (
        "account_id", "industry", "employee_count", "annual_revenue", "region", "created_at",
    )),
    "contacts": (367, 7397689378991314459, ("contact_id", "account_id", "title", "created_at")),
    "deals": (300, 4310375076119301159, (
        "deal_id", "account_id", "owner_id", "created_at", "channel", "product", "amount",
        "currency", "competitor", "stage", "status", "closed_at",
    )),
    "deal_contacts": (721, 6924218283053985380, ("deal_id", "contact_id", "role", "added_at")),
    "activities": (7922, 15437338033169988615, (
        "activity_id", "deal_id", "contact_id", "type", "direction", "occurred_at",
        "duration_seconds",
    )),
    "stage_history": (1075, 843982764518031776, ("deal_id", "stage", "entered_at")),
    "truth": (300, 2290434331905101919, (
        "deal_id", "p_latent", "p_at_creation", "p_without_rep",
    )),
}  # fmt: skip


def _digest(frame: pd.DataFrame) -> int:
    return int(pd.util.hash_pandas_object(frame).sum()) % 2**64


def test_without_revival_the_crm_is_the_one_before_revival_existed() -> None:
    """Revival is opt-in: by default nothing the open-deal model trains on changes."""
    crm = generate_crm(300, seed=3, as_of=AS_OF)
    frames = {**crm.tables, "truth": crm.truth}
    for name, (rows, digest, columns) in _BEFORE_REVIVAL.items():
        frame = frames[name]
        assert len(frame) == rows, name
        assert _digest(frame[list(columns)]) == digest, name
        # Columns the revival added to the contract are there, and empty.
        assert frame.drop(columns=list(columns)).isna().all().all(), name
    assert crm.revival_truth is None
    # The revival changes the export (re-opens, follow-ups, post-loss activities).
    revived = generate_crm(300, seed=3, as_of=AS_OF, revival=True)
    assert len(revived.tables["activities"]) > len(crm.tables["activities"])
    assert revived.tables["deals"]["lost_reason"].notna().any()


def test_other_seed_gives_other_data() -> None:
    a = generate_crm(400, seed=3, as_of=AS_OF)
    b = generate_crm(400, seed=4, as_of=AS_OF)
    assert not a.tables["deals"]["amount"].equals(b.tables["deals"]["amount"])
    assert not a.truth["p_latent"].equals(b.truth["p_latent"])


def test_as_of_default_is_now_floored_and_naive_is_utc() -> None:
    before = pd.Timestamp.now(tz="UTC").floor("s")
    crm = generate_crm(20, seed=1)
    after = pd.Timestamp.now(tz="UTC")
    assert before <= crm.as_of <= after
    assert crm.as_of == crm.as_of.floor("s")
    assert str(crm.as_of.tz) == "UTC"

    naive = generate_crm(20, seed=1, as_of=datetime(2024, 1, 1, 8, 0))
    assert naive.as_of == pd.Timestamp("2024-01-01 08:00", tz="UTC")
    assert naive.tables["deals"]["created_at"].max() <= naive.as_of


def test_tiny_and_invalid_sizes() -> None:
    one = generate_crm(1, seed=0, as_of=AS_OF)
    assert len(one.tables["deals"]) == 1
    assert len(one.tables["accounts"]) == 5
    with pytest.raises(ValueError):
        generate_crm(0)


def test_truth_matches_deals(small: SyntheticCRM) -> None:
    truth = small.truth
    assert list(truth.columns) == ["deal_id", "p_latent", "p_at_creation", "p_without_rep"]
    assert truth["deal_id"].tolist() == small.tables["deals"]["deal_id"].tolist()
    for col in ("p_latent", "p_at_creation", "p_without_rep"):
        assert truth[col].between(0, 1, inclusive="neither").all()


# --------------------------------------------------------------------------------------
# Contract conformance
# --------------------------------------------------------------------------------------


def _kind_ok(series: pd.Series, kind: str) -> bool:
    if kind == "string":
        return pd.api.types.is_string_dtype(series) and all(
            isinstance(v, str) for v in series.dropna()
        )
    if kind == "int":
        return pd.api.types.is_integer_dtype(series)
    if kind == "float":
        return pd.api.types.is_float_dtype(series)
    return series.dtype == pd.DatetimeTZDtype(unit="us", tz="UTC")


def test_tables_follow_the_contract(small: SyntheticCRM) -> None:
    assert set(small.tables) == set(TABLES)
    for name, spec in TABLES.items():
        df = small.tables[name]
        assert list(df.columns) == spec.column_names, name
        assert len(df) > 0, name
        for col in spec.columns:
            s = df[col.name]
            assert _kind_ok(s, col.type), (name, col.name, s.dtype)
            if col.required:
                assert s.notna().all(), (name, col.name)
            if col.allowed is not None:
                assert set(s.dropna().unique()) <= set(col.allowed), (name, col.name)
            if col.min_value is not None:
                assert (s.dropna() >= col.min_value).all(), (name, col.name)
        assert not df.duplicated(list(spec.key)).any(), name
        for col, parent, pcol in spec.references:
            values = df[col].dropna()
            assert values.isin(small.tables[parent][pcol]).all(), (name, col, parent)


def test_enumerations_are_all_used(big: SyntheticCRM) -> None:
    for name, spec in TABLES.items():
        for col in spec.columns:
            if col.allowed is not None:
                used = set(big.tables[name][col.name].dropna().unique())
                assert used == set(col.allowed), (name, col.name, set(col.allowed) - used)


def test_id_formats(small: SyntheticCRM) -> None:
    t = small.tables
    assert t["accounts"]["account_id"].str.fullmatch(r"A\d{6}").all()
    assert t["contacts"]["contact_id"].str.fullmatch(r"C\d{7}").all()
    assert t["deals"]["deal_id"].str.fullmatch(r"D\d{7}").all()
    assert t["activities"]["activity_id"].str.fullmatch(r"ACT\d{8}").all()
    owners = t["deals"]["owner_id"]
    assert owners.str.fullmatch(r"U\d{3}").all()
    assert owners.nunique() >= 5
    assert t["deals"]["deal_id"].iloc[0] == "D0000001"


def test_deal_fields(big: SyntheticCRM) -> None:
    d = big.tables["deals"]
    assert (d["currency"] == "USD").all()
    assert set(d["channel"]) == {"referral", "web", "event", "partner", "outbound", "paid_ads"}
    assert 3 <= d["product"].nunique() <= 4
    assert 12_000 < d["amount"].median() < 30_000
    assert d["amount"].quantile(0.99) > 8 * d["amount"].median()  # heavy tail
    comp = d["competitor"]
    unknown = comp.isna() | (comp == "")
    assert 0.2 < comp.fillna("").eq("none").mean() < 0.3
    assert 0.24 < unknown.mean() < 0.36
    assert comp[~unknown & (comp != "none")].nunique() >= 3
    accounts = big.tables["accounts"]
    assert accounts["employee_count"].between(10, 50_000).all()
    known = accounts["annual_revenue"].notna()
    corr = np.corrcoef(
        np.log(accounts.loc[known, "employee_count"]), np.log(accounts.loc[known, "annual_revenue"])
    )[0, 1]
    assert corr > 0.8
    assert accounts["industry"].nunique() >= 6 and accounts["region"].nunique() >= 5
    per_account = big.tables["contacts"].groupby("account_id").size()
    assert per_account.between(2, 8).all()


def test_status_stage_and_close_are_consistent(big: SyntheticCRM) -> None:
    d = big.tables["deals"]
    is_open = d["status"] == "open"
    assert d.loc[is_open, "closed_at"].isna().all()
    assert d.loc[~is_open, "closed_at"].notna().all()
    assert ((d["stage"] == "closed") == ~is_open).all()
    assert (d.loc[~is_open, "closed_at"] >= d.loc[~is_open, "created_at"]).all()

    sh = big.tables["stage_history"].sort_values(["deal_id", "entered_at"])
    first = sh.groupby("deal_id").first()
    last = sh.groupby("deal_id").last()
    dd = d.set_index("deal_id")
    assert (first["stage"] == "lead").all()
    assert (first["entered_at"] == dd.loc[first.index, "created_at"]).all()
    assert (last["stage"] == dd.loc[last.index, "stage"]).all()
    closed_rows = sh[sh["stage"] == "closed"].set_index("deal_id")
    assert len(closed_rows) == (~is_open).sum()
    assert (closed_rows["entered_at"] == dd.loc[closed_rows.index, "closed_at"]).all()
    # Won deals went through committed before closing.
    won = set(d.loc[d["status"] == "won", "deal_id"])
    committed = set(sh.loc[sh["stage"] == "committed", "deal_id"])
    assert won <= committed


# --------------------------------------------------------------------------------------
# Time order
# --------------------------------------------------------------------------------------


def test_events_lie_within_the_deal_life(big: SyntheticCRM) -> None:
    d = big.tables["deals"].set_index("deal_id")
    end = d["closed_at"].fillna(big.as_of)
    for name, col in AFTER_DEAL_CREATION.items():
        df = big.tables[name]
        t = df[col]
        assert (t >= d.loc[df["deal_id"], "created_at"].to_numpy()).all(), name
        assert (t <= end.loc[df["deal_id"]].to_numpy()).all(), name
    for name, df in big.tables.items():
        for col in df.columns:
            if isinstance(df[col].dtype, pd.DatetimeTZDtype):
                assert (df[col].dropna() <= big.as_of).all(), (name, col)


def test_accounts_and_contacts_exist_before_their_deals(big: SyntheticCRM) -> None:
    t = big.tables
    first_deal = t["deals"].groupby("account_id")["created_at"].min()
    acc = t["accounts"].set_index("account_id").loc[first_deal.index]
    assert (acc["created_at"] <= first_deal).all()
    dc = t["deal_contacts"].merge(
        t["contacts"][["contact_id", "account_id", "created_at"]], on="contact_id"
    )
    dc = dc.merge(t["deals"][["deal_id", "account_id"]], on="deal_id", suffixes=("", "_deal"))
    assert (dc["account_id"] == dc["account_id_deal"]).all()  # contacts of the deal's account
    assert (dc["created_at"] <= dc["added_at"]).all()


def test_activity_contacts_are_on_the_deal_when_it_happens(big: SyntheticCRM) -> None:
    a = big.tables["activities"]
    j = a.merge(big.tables["deal_contacts"], on=["deal_id", "contact_id"], how="left")
    with_contact = j["contact_id"].notna()
    assert with_contact.mean() > 0.97
    assert j.loc[with_contact, "added_at"].notna().all()
    assert (j.loc[with_contact, "occurred_at"] >= j.loc[with_contact, "added_at"]).all()
    timed = a["type"].isin(["call", "meeting", "visit", "demo"])
    assert a.loc[timed, "duration_seconds"].notna().all()
    assert a.loc[~timed, "duration_seconds"].isna().all()


def test_every_deal_has_one_contact_at_creation(big: SyntheticCRM) -> None:
    dc = big.tables["deal_contacts"].merge(
        big.tables["deals"][["deal_id", "created_at"]], on="deal_id"
    )
    at_creation = dc[dc["added_at"] == dc["created_at"]].groupby("deal_id").size()
    assert len(at_creation) == len(big.tables["deals"])
    assert (at_creation == 1).all()
    assert (dc.groupby("deal_id").size() > 1).mean() > 0.4  # more join later


# --------------------------------------------------------------------------------------
# Funnel shape
# --------------------------------------------------------------------------------------


def test_open_dormant_won_and_lost_deals_exist(big: SyntheticCRM, small: SyntheticCRM) -> None:
    for crm in (small, big):
        d = crm.tables["deals"]
        counts = d["status"].value_counts()
        assert {"open", "won", "lost"} <= set(counts.index)
        last = crm.tables["activities"].groupby("deal_id")["occurred_at"].max()
        op = d[d["status"] == "open"]
        quiet = crm.as_of - op["deal_id"].map(last).fillna(op["created_at"])
        dormant = (quiet >= pd.Timedelta(days=30)).mean()
        assert 0.05 < dormant < 0.25, dormant
    d = big.tables["deals"]
    closed = d[d["status"] != "open"]
    assert 0.25 <= (closed["status"] == "won").mean() <= 0.35
    assert 0.08 < (d["status"] == "open").mean() < 0.3
    assert set(d.loc[d["status"] == "open", "stage"]) == {
        "lead",
        "qualified",
        "solution",
        "committed",
    }


def test_cycle_lengths(closed: pd.DataFrame) -> None:
    days = (closed["closed_at"] - closed["created_at"]).dt.total_seconds() / 86_400
    assert days.min() >= 14 and days.max() <= 280
    won = closed["won"] == 1
    assert 30 < days[won].median() < 120
    assert days[~won].mean() > days[won].mean()  # losers linger


def test_deals_created_over_two_years_more_recent_denser(big: SyntheticCRM) -> None:
    age = (big.as_of - big.tables["deals"]["created_at"]).dt.days
    assert 700 <= age.max() <= 731
    assert (age < 365).mean() > 0.55


def test_activity_volume_and_mix(big: SyntheticCRM, closed: pd.DataFrame) -> None:
    a = big.tables["activities"]
    per_deal = a.groupby("deal_id").size().reindex(closed.index, fill_value=0)
    assert 20 <= per_deal.mean() <= 40
    assert per_deal[closed["won"] == 1].mean() > per_deal[closed["won"] == 0].mean()
    stage_at = pd.merge_asof(
        a.sort_values("occurred_at"),
        big.tables["stage_history"].sort_values("entered_at"),
        left_on="occurred_at",
        right_on="entered_at",
        by="deal_id",
    )
    share = pd.crosstab(stage_at["type"], stage_at["stage"], normalize="index")
    assert share.loc["demo", "solution"] > 0.5
    assert share.loc["quote", "committed"] > 0.5
    assert stage_at["stage"].ne("closed").all()


def test_visits_include_follow_ups(big: SyntheticCRM) -> None:
    visits = big.tables["activities"].query("type == 'visit'")
    per_pair = visits.groupby(["deal_id", "contact_id"]).size()
    assert (per_pair > 1).sum() > 100
    assert (per_pair == 1).sum() > 100


def test_backward_moves_exist(big: SyntheticCRM) -> None:
    order = {s: i for i, s in enumerate(["lead", "qualified", "solution", "committed", "closed"])}
    sh = big.tables["stage_history"].sort_values(["deal_id", "entered_at"])
    code = sh["stage"].map(order).astype(int)
    back = (code.diff() < 0) & (sh["deal_id"] == sh["deal_id"].shift())
    assert 0.03 < sh.loc[back, "deal_id"].nunique() / sh["deal_id"].nunique() < 0.3


def test_titles_in_english_and_chinese(big: SyntheticCRM) -> None:
    titles = big.tables["contacts"]["title"]
    chinese = titles.str.contains(CHINESE, regex=True, na=False)
    assert 0.2 < chinese.mean() < 0.4
    assert 0.02 < titles.isna().mean() < 0.12
    assert titles.dropna().nunique() > 60
    for t in ("CEO", "VP Sales", "Head of IT", "总经理", "工程师", "副总裁"):
        assert (titles == t).any(), t
    # Every seniority level appears in both languages.
    levels = titles.map(TITLE_LEVEL)
    for lang in (chinese, ~chinese & titles.notna()):
        assert set(levels[lang]) == {1, 2, 3, 4, 5, 6}


# --------------------------------------------------------------------------------------
# Ground truth directions (closed deals of the big sample)
# --------------------------------------------------------------------------------------


def test_channel_effects(closed: pd.DataFrame) -> None:
    won, ch = closed["won"], closed["channel"]
    gap, se = _rate_gap(won, ch == "referral", ch == "paid_ads")
    assert gap > max(0.1, 2 * se)
    gap, se = _rate_gap(won, ch.isin(["referral", "partner"]), ch.isin(["outbound", "paid_ads"]))
    assert gap > max(0.1, 3 * se)


def test_competitor_and_amount_effects(closed: pd.DataFrame) -> None:
    won, comp = closed["won"], closed["competitor"]
    named = comp.notna() & ~comp.isin(["", "none"])
    gap, se = _rate_gap(won, comp == "none", named)
    assert gap > max(0.07, 2 * se)
    q = closed["amount"].quantile([0.25, 0.75])
    gap, se = _rate_gap(won, closed["amount"] <= q[0.25], closed["amount"] >= q[0.75])
    assert gap > max(0.07, 2 * se)


def test_economic_buyer_deals_win_more(big: SyntheticCRM, closed: pd.DataFrame) -> None:
    dc = big.tables["deal_contacts"]
    eb = closed.index.isin(dc.loc[dc["role"] == "economic_buyer", "deal_id"])
    eb = pd.Series(eb, index=closed.index)
    assert 0.2 < eb.mean() < 0.7
    gap, se = _rate_gap(closed["won"], eb, ~eb)
    assert gap > max(0.1, 3 * se)


def test_slow_replies_win_less(big: SyntheticCRM, closed: pd.DataFrame) -> None:
    latency = _median_reply_latency_hours(big.tables["activities"]).reindex(closed.index)
    assert latency.notna().mean() > 0.8
    assert latency.median() < 24  # healthy deals answer within hours
    slow, fast = latency > 24, latency <= 24
    assert slow.mean() > 0.05
    gap, se = _rate_gap(closed["won"], fast, slow)
    assert gap > max(0.1, 3 * se)
    won = closed["won"] == 1
    assert latency[won].median() < latency[~won].median()


def test_meeting_senior_contacts_wins_more(big: SyntheticCRM, closed: pd.DataFrame) -> None:
    level = big.tables["contacts"].set_index("contact_id")["title"].map(TITLE_LEVEL)
    f2f = big.tables["activities"].query("type in ['meeting', 'visit']")
    senior = f2f["contact_id"].map(level) >= 4
    met = pd.Series(closed.index.isin(f2f.loc[senior, "deal_id"]), index=closed.index)
    gap, se = _rate_gap(closed["won"], met, ~met)
    assert gap > max(0.1, 3 * se)


def test_stalls_and_backward_moves_win_less(big: SyntheticCRM, closed: pd.DataFrame) -> None:
    order = {s: i for i, s in enumerate(["lead", "qualified", "solution", "committed", "closed"])}
    sh = big.tables["stage_history"].sort_values(["deal_id", "entered_at"]).copy()
    same = sh["deal_id"] == sh["deal_id"].shift()
    sh["back"] = (sh["stage"].map(order).astype(int).diff() < 0) & same
    sh["stay"] = sh.groupby("deal_id")["entered_at"].shift(-1) - sh["entered_at"]
    per_deal = sh.groupby("deal_id").agg(back=("back", "any"), stay=("stay", "max"))
    per_deal = per_deal.reindex(closed.index)
    stalled = per_deal["stay"] > pd.Timedelta(days=30)
    gap, se = _rate_gap(closed["won"], ~stalled, stalled)
    assert gap > max(0.1, 3 * se)
    gap, se = _rate_gap(closed["won"], ~per_deal["back"], per_deal["back"])
    assert gap > max(0.05, 2 * se)


# --------------------------------------------------------------------------------------
# The oracle
# --------------------------------------------------------------------------------------


def test_expected_sigmoid_is_the_gaussian_expectation() -> None:
    bases = np.array([-4.0, -1.3, 0.0, 0.7, 3.5])
    got = expected_sigmoid(bases, LATENT_SIGMA)
    for b, g in zip(bases, got, strict=True):
        want, _ = integrate.quad(
            lambda z, b=b: (
                np.exp(-0.5 * (z / LATENT_SIGMA) ** 2)
                / (LATENT_SIGMA * math.sqrt(2 * math.pi))
                / (1 + math.exp(-(b + z)))
            ),
            -12 * LATENT_SIGMA,
            12 * LATENT_SIGMA,
        )
        assert abs(g - want) < 1e-9
    # Not the plug-in sigmoid(base): the expectation is pulled towards 1/2.
    assert got[0] > 1 / (1 + math.exp(4.0)) + 0.01


def test_p_latent_is_base_plus_gaussian_noise(big: SyntheticCRM) -> None:
    """Invert p_at_creation to the base logit; logit(p_latent) - base must be N(0, sigma).

    This ties the two truth columns together: if p_at_creation were not the expectation
    of p_latent over the latent quality, the implied z would be biased or mis-scaled.
    """
    pc = big.truth["p_at_creation"].to_numpy()
    lo, hi = np.full_like(pc, -20.0), np.full_like(pc, 20.0)
    for _ in range(60):  # bisection: expected_sigmoid is increasing in base
        mid = (lo + hi) / 2
        below = expected_sigmoid(mid) < pc
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    base = (lo + hi) / 2
    pl = big.truth["p_latent"].to_numpy()
    z = np.log(pl / (1 - pl)) - base
    n = len(z)
    assert abs(z.mean()) < 3 * LATENT_SIGMA / math.sqrt(n)
    assert abs(z.std() - LATENT_SIGMA) < 0.05
    assert abs(np.corrcoef(z, base)[0, 1]) < 0.05
    assert base.std() > 0.4  # creation-time attributes matter


def test_p_at_creation_is_calibrated_and_p_latent_is_sharper(big: SyntheticCRM) -> None:
    """Deals older than the longest cycle are all closed: an unbiased outcome sample."""
    d = big.tables["deals"].merge(big.truth, on="deal_id")
    old = d[d["created_at"] < big.as_of - pd.Timedelta(days=281)]
    assert len(old) > 1000
    assert (old["status"] != "open").all()
    y = (old["status"] == "won").astype(float)
    se = math.sqrt(y.mean() * (1 - y.mean()) / len(y))
    assert abs(old["p_at_creation"].mean() - y.mean()) < 3 * se
    bins = pd.qcut(old["p_at_creation"], 4, labels=False)
    for _, grp in old.groupby(bins):
        yy = (grp["status"] == "won").astype(float)
        se_b = math.sqrt(max(yy.mean() * (1 - yy.mean()), 0.01) / len(yy))
        assert abs(grp["p_at_creation"].mean() - yy.mean()) < 3.5 * se_b
    brier_latent = ((old["p_latent"] - y) ** 2).mean()
    brier_creation = ((old["p_at_creation"] - y) ** 2).mean()
    assert brier_latent < brier_creation - 0.01
    # Without the rep's skill the score is still calibrated, and only a little less sharp.
    assert abs(old["p_without_rep"].mean() - y.mean()) < 3 * se
    brier_without_rep = ((old["p_without_rep"] - y) ** 2).mean()
    assert brier_creation < brier_without_rep < brier_creation + 0.01
    # The expectation holds for every deal, open ones included.
    assert abs(d["p_latent"].mean() - d["p_at_creation"].mean()) < 0.01


# --------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------


def test_write_export_parquet_round_trips(small: SyntheticCRM, tmp_path) -> None:
    paths = write_export(small, tmp_path / "export")
    assert set(paths) == set(TABLES) | {"truth"}
    assert paths["truth"].name == "truth.parquet"
    for name, df in small.tables.items():
        assert paths[name] == tmp_path / "export" / f"{name}.parquet"
        back = pd.read_parquet(paths[name])
        assert list(back.columns) == list(df.columns)
        pd.testing.assert_frame_equal(back, df, check_dtype=False)
    pd.testing.assert_frame_equal(pd.read_parquet(paths["truth"]), small.truth, check_dtype=False)


def test_write_export_csv_is_readable(small: SyntheticCRM, tmp_path) -> None:
    paths = write_export(small, tmp_path, fmt="csv")
    assert paths["deals"].suffix == ".csv" and paths["truth"].suffix == ".parquet"
    for name, df in small.tables.items():
        back = pd.read_csv(paths[name])
        assert list(back.columns) == list(df.columns) and len(back) == len(df)
    deals = pd.read_csv(paths["deals"])
    created = pd.to_datetime(deals["created_at"], utc=True, format="ISO8601")
    assert (created == small.tables["deals"]["created_at"]).all()
    titles = pd.read_csv(paths["contacts"])["title"]
    assert titles.str.contains(CHINESE, regex=True, na=False).any()
    with pytest.raises(ValueError):
        write_export(small, tmp_path, fmt="xlsx")  # type: ignore[arg-type]
