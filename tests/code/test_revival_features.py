"""The revival source (``deal_revival``) on a hand-made CRM whose values are worked out by hand.

Days from T0 (2024-01-01), whole days so that no rounding to the second moves anything.
Account A1: L1 created day 0, lost day 10 (price, furthest stage 2, against Globex), followed
by N1 (created day 40, open): revived day 40. R1 created day 5, lost day 20, re-opened day
30 (revived), lost again day 50 (timing, furthest stage 3). Account A2: Q1 lost day 5, no
activity after. Z1 has no account, lost day 3.

Contacts: C1 CEO (6), C2 Software Engineer (1), C3 IT Manager (3).
L1 after its loss: day 12 inbound e-mail C2 and, the same second, outbound e-mail C2 (no
reply: simultaneous); day 14 outbound call C3 (the reply); day 16 visit C1; day 25 inbound
call with no contact. Before the loss: day 8 outbound call C1 (not counted).
R1: day 22 inbound C3; day 35 outbound C3 (a reply, while re-opened); day 50 outbound visit
C1 at the very moment of the second loss (belongs to the cycle that ended); day 60 inbound C2.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leadscore.features.catalog import (
    MODEL_FEATURES,
    REVIVAL_FEATURES,
    features_of,
    revival_catalog,
)
from leadscore.features.featurize import (
    REVIVAL_SOURCE_COLUMNS,
    TS,
    build_feature_sources,
    features_as_of,
    no_losses,
    revival_request_time_features,
    revival_source,
    write_sources,
)
from tests.crm_fixture import activities_table, day, tiny_crm

NAT = pd.NaT


def ts(xs) -> pd.Series:
    return pd.Series([NAT if x is None else day(x) for x in xs], dtype="datetime64[us, UTC]")


def crm() -> dict[str, pd.DataFrame]:
    deals = pd.DataFrame(
        {
            "deal_id": ["L1", "R1", "N1", "Q1", "Z1"],
            "account_id": ["A1", "A1", "A1", "A2", None],
            "owner_id": ["U1"] * 5,
            "created_at": ts([0, 5, 40, 0, 0]),
            "competitor": ["Globex", None, "none", "None", "Initech"],
            "status": ["lost", "lost", "open", "lost", "lost"],
            "closed_at": ts([10, 50, None, 5, 3]),
            "amount": [1000.0] * 5,
        }
    )
    contacts = pd.DataFrame(
        {
            "contact_id": ["C1", "C2", "C3"],
            "title": ["CEO", "Software Engineer", "IT Manager"],
        }
    )
    acts = [
        ("L1", "C1", "call", "outbound", 8),
        ("L1", "C2", "email", "inbound", 12),
        ("L1", "C2", "email", "outbound", 12),
        ("L1", "C3", "call", "outbound", 14),
        ("L1", "C1", "visit", "outbound", 16),
        ("L1", None, "call", "inbound", 25),
        ("R1", "C3", "email", "inbound", 22),
        ("R1", "C3", "call", "outbound", 35),
        ("R1", "C1", "visit", "outbound", 50),
        ("R1", "C2", "call", "inbound", 60),
    ]
    activities = activities_table(acts)
    return {"deals": deals, "contacts": contacts, "activities": activities}


def losses() -> pd.DataFrame:
    """What ``loss_cycles`` returns for :func:`crm` (R1's first loss has no reason: the
    CRM keeps only the last one)."""
    return pd.DataFrame(
        {
            "deal_id": ["L1", "R1", "R1", "Q1", "Z1"],
            "account_id": ["A1", "A1", "A1", "A2", None],
            "owner_id": ["U1"] * 5,
            "cycle": [0, 0, 1, 0, 0],
            "lost_at": ts([10, 20, 50, 5, 3]),
            "reopened_at": ts([None, 30, None, None, None]),
            "lost_reason": ["price", None, "timing", "budget", None],
            "furthest_stage": [2.0, 1.0, 3.0, 0.0, np.nan],
            "amount": [1000.0] * 5,
        }
    )


def source() -> pd.DataFrame:
    tables = crm()
    return revival_source(losses(), tables["activities"], tables["contacts"], tables["deals"])


def rows_of(deal_id: str) -> pd.DataFrame:
    src = source()
    return src[src["deal_id"] == deal_id].reset_index(drop=True)


COUNTS = ["inbound_since_loss", "outbound_since_loss", "replies_since_loss", "visits_since_loss"]


def test_every_column_of_a_lost_deal_worked_out_by_hand():
    got = rows_of("L1")
    days = [10, 12, 14, 16, 20, 25, 30, 40, 50]
    expected = pd.DataFrame(
        {
            "deal_id": "L1",
            TS: ts(days),
            "lost_at": ts([10] * 9),
            "lost_reason": "price",
            "furthest_stage_at_loss": 2.0,
            # Created on day 0, lost on day 10.
            "days_open_at_loss": 10.0,
            "competitor_at_loss": "globex",
            "inbound_since_loss": [0, 1, 1, 1, 1, 2, 2, 2, 2],
            "outbound_since_loss": [0, 1, 2, 3, 3, 3, 3, 3, 3],
            # The day-12 outbound is simultaneous with the inbound: the day-14 call answers it.
            "replies_since_loss": [0, 0, 1, 1, 1, 1, 1, 1, 1],
            "visits_since_loss": [0, 0, 0, 1, 1, 1, 1, 1, 1],
            "last_engaged_at": ts([None, 12, 14, 16, 16, 25, 25, 25, 25]),
            # Engineer (1), then IT manager (3), then the CEO (6); the day-25 call names nobody.
            "senior_engaged_since_loss": [np.nan, 1.0, 3.0, 6, 6, 6, 6, 6, 6],
            # R1 re-opened on day 30 (N1 on day 40 revives L1 itself: not "other").
            "account_revivals_before": [0.0, 0, 0, 0, 0, 0, 1, 1, 1],
            # Open others: R1 (to day 20, again days 30-50), N1 from day 40.
            "account_open_deals": [1.0, 1, 1, 1, 0, 0, 1, 2, 1],
        }
    )
    for c in COUNTS:
        expected[c] = expected[c].astype(np.int32)
    assert list(got.columns) == list(REVIVAL_SOURCE_COLUMNS)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    assert got["lost_at"].dtype == "datetime64[us, UTC]"


def test_a_second_loss_resets_the_counts_and_an_activity_at_the_loss_belongs_before():
    got = rows_of("R1").set_index(TS)
    # No row on day 30: R1's own re-open changes none of its values.
    assert list(got.index) == list(ts([20, 22, 35, 40, 50, 60]))
    first, reopened, second, after = (got.loc[day(d)] for d in (22, 35, 50, 60))
    assert pd.isna(first["lost_reason"]) and first["competitor_at_loss"] == "unknown"
    assert [first[c] for c in COUNTS] == [1, 0, 0, 0] and first["senior_engaged_since_loss"] == 3
    assert [reopened[c] for c in COUNTS] == [1, 1, 1, 0]  # still counted from the first loss
    assert second["lost_at"] == day(50) and second["lost_reason"] == "timing"
    assert second["furthest_stage_at_loss"] == 3
    assert [second[c] for c in COUNTS] == [0, 0, 0, 0]  # the day-50 visit is the old cycle's
    assert pd.isna(second["last_engaged_at"]) and np.isnan(second["senior_engaged_since_loss"])
    assert [after[c] for c in COUNTS] == [1, 0, 0, 0]
    assert after["last_engaged_at"] == day(60) and after["senior_engaged_since_loss"] == 1
    # L1 (revived by N1 on day 40) is the other deal's comeback; N1 is open from day 40.
    assert list(got["account_revivals_before"]) == [0, 0, 0, 1, 1, 1]
    assert list(got["account_open_deals"]) == [0, 0, 0, 1, 1, 1]


def test_a_deal_without_activity_after_its_loss_has_zero_counts():
    q1 = rows_of("Q1")
    assert len(q1) == 1 and q1.loc[0, TS] == day(5)
    assert [q1.loc[0, c] for c in COUNTS] == [0, 0, 0, 0]
    assert pd.isna(q1.loc[0, "last_engaged_at"]) and np.isnan(
        q1.loc[0, "senior_engaged_since_loss"]
    )
    assert q1.loc[0, "account_revivals_before"] == 0 and q1.loc[0, "account_open_deals"] == 0
    assert q1.loc[0, "competitor_at_loss"] == "none" and q1.loc[0, "lost_reason"] == "budget"


def test_a_deal_without_an_account_has_no_account_counts():
    z1 = rows_of("Z1")
    assert len(z1) == 1 and np.isnan(z1.loc[0, "account_revivals_before"])
    assert np.isnan(z1.loc[0, "account_open_deals"]) and np.isnan(
        z1.loc[0, "furthest_stage_at_loss"]
    )


def test_a_later_deal_outside_the_window_is_no_comeback():
    tables = crm()
    src = revival_source(
        losses(), tables["activities"], tables["contacts"], tables["deals"], window_days=20
    )
    r1 = src[src["deal_id"] == "R1"]
    # N1 (day 40) is 30 days after L1's loss: L1 is not revived within 20 days.
    assert (r1["account_revivals_before"] == 0).all()


def test_no_losses_give_an_empty_source_with_the_columns():
    sources = build_feature_sources(tiny_crm(), losses=no_losses())
    assert sources["deal_revival"].empty
    assert list(sources["deal_revival"].columns) == list(REVIVAL_SOURCE_COLUMNS)
    assert revival_source(no_losses(), None, None, tiny_crm()["deals"]).empty


def test_the_tables_own_losses_feed_the_source_by_default():
    """Without ``losses`` the source holds the CRM's own: D2, lost on day 40."""
    source = build_feature_sources(tiny_crm())["deal_revival"]
    assert set(source["deal_id"]) == {"D2"}
    assert (source["lost_at"] == day(40)).all()


def at(tables: dict[str, pd.DataFrame], deal_id: str, when: pd.Timestamp) -> pd.Series:
    deal = tables["deals"].set_index("deal_id").loc[deal_id]
    ent = pd.DataFrame(
        {
            "deal_id": [deal_id],
            "account_id": [deal["account_id"] or ""],
            "owner_id": [deal["owner_id"]],
            TS: [when],
        }
    )
    sources = build_feature_sources(tables, losses=losses())
    return features_as_of(sources, ent).iloc[0]


REVIVAL_COLUMNS = [c for c in REVIVAL_SOURCE_COLUMNS if c not in ("deal_id", TS)] + [
    "days_since_loss",
    "days_since_engaged",
]


def test_request_time_days_since_the_loss_and_the_last_contact():
    f = at(crm(), "L1", day(26.5))
    assert f["days_since_loss"] == pytest.approx(16.5)
    assert f["days_since_engaged"] == pytest.approx(1.5)
    q = at(crm(), "Q1", day(7))
    assert q["days_since_loss"] == pytest.approx(2.0) and np.isnan(q["days_since_engaged"])
    before = at(crm(), "L1", day(9))  # not lost yet: nothing
    assert before[REVIVAL_COLUMNS].isna().all()
    frame = pd.DataFrame({"as_of": ts([30]), "lost_at": ts([10]), "last_engaged_at": ts([None])})
    assert revival_request_time_features(frame).iloc[0].tolist()[0] == 20.0


def _changed_after(tables: dict[str, pd.DataFrame], t: float, how: str) -> dict:
    out = {k: v.copy() for k, v in tables.items()}
    acts = out["activities"]
    late = acts["occurred_at"] > day(t)
    if how == "add":
        extra = pd.DataFrame(
            {
                "activity_id": ["NEW1", "NEW2", "NEW3"],
                "deal_id": ["L1", "R1", "Q1"],
                "contact_id": ["C1", "C1", "C1"],
                "type": ["visit", "meeting", "call"],
                "direction": ["inbound", "inbound", "inbound"],
                "occurred_at": ts([t + 0.5, t + 1, t + 0.01]),
            }
        )
        out["activities"] = pd.concat([acts, extra], ignore_index=True)
    elif how == "remove":
        out["activities"] = acts[~late]
    else:  # change: every later activity becomes an inbound visit of the CEO
        acts.loc[late, ["type", "direction", "contact_id"]] = ["visit", "inbound", "C1"]
        acts.loc[late, "occurred_at"] = acts.loc[late, "occurred_at"] + pd.Timedelta(hours=3)
    return out


@pytest.mark.parametrize("how", ["add", "remove", "change"])
@pytest.mark.parametrize("snapshot", [11, 15, 24, 45, 55])
def test_leakage_probe_later_activities_change_no_feature_at_a_snapshot(snapshot, how):
    """Snapshots before and after L1's revival (day 40) and R1's re-open (day 30)."""
    tables = crm()
    changed = _changed_after(tables, snapshot, how)
    for deal_id in ("L1", "R1", "Q1"):
        before = at(tables, deal_id, day(snapshot))
        after = at(changed, deal_id, day(snapshot))
        pd.testing.assert_series_equal(before, after, obj=f"{deal_id} at day {snapshot}")
    # The probe can fail: the change is seen later (every probe touches an activity
    # after the snapshot, R1's day-60 one at least).
    later = day(snapshot + 30)
    assert any(
        not at(tables, d, later)[REVIVAL_COLUMNS].equals(at(changed, d, later)[REVIVAL_COLUMNS])
        for d in ("L1", "R1", "Q1")
    )


def test_catalog_entries_for_every_revival_feature_and_the_win_model_unchanged():
    src_features = set(REVIVAL_SOURCE_COLUMNS) - {"deal_id", TS, "lost_at", "last_engaged_at"}
    assert {f.name for f in features_of("deal_revival")} == src_features
    assert [f.name for f in features_of("revival_timing")] == [
        "days_since_loss",
        "days_since_engaged",
    ]
    monotone = {f.name: f.monotone for f in REVIVAL_FEATURES}
    for count in COUNTS:
        assert monotone[count] == 1, count
    assert monotone["days_since_loss"] == 0
    assert not {f.name for f in REVIVAL_FEATURES} & set(MODEL_FEATURES)
    views = {f.view for f in revival_catalog()}
    assert views == {
        "deal_profile",
        "deal_contacts",
        "account_history",
        "deal_revival",
        "revival_timing",
    }
    assert all(f.description.endswith(".") for f in REVIVAL_FEATURES)


@pytest.mark.integration
def test_feast_serves_revival_v1_as_the_in_memory_join(tmp_path):
    """`feast apply` on a copy of the repo with the new view, then a point-in-time join of
    two snapshots (before and after L1's revival) through the feature service."""
    from leadscore.features.store import (
        apply_repo,
        materialize,
        online_features,
        open_store,
    )
    from tests.conftest import isolated

    settings = isolated(tmp_path)
    tables = crm()
    sources = build_feature_sources(tables, losses=losses())
    write_sources(sources, settings.sources_dir)
    apply_repo(settings)
    store = open_store(settings)
    entities = pd.DataFrame(
        {
            "deal_id": ["L1", "R1", "L1", "R1", "Q1"],
            "account_id": ["A1", "A1", "A1", "A1", "A2"],
            "owner_id": ["U1"] * 5,
            TS: ts([26.5, 26.5, 55, 55, 55]),
        }
    )
    service = store.get_feature_service("revival_v1")
    joined = store.get_historical_features(
        entity_df=entities.assign(as_of=entities[TS], _row=np.arange(len(entities))),
        features=service,
    ).to_df()
    joined = joined.sort_values("_row").reset_index(drop=True)
    expected = features_as_of(sources, entities)
    names = [f.name for f in revival_catalog()]
    assert set(names) <= set(joined.columns)
    for name in names:
        got, want = joined[name], expected[name]
        if want.dtype == object:
            assert got.tolist() == want.tolist(), name
        else:
            np.testing.assert_allclose(
                pd.to_numeric(got).to_numpy(float), want.to_numpy(float), rtol=1e-9, err_msg=name
            )
    assert joined["days_since_loss"].tolist() == pytest.approx([16.5, 6.5, 45, 5, 50])
    assert joined["inbound_since_loss"].tolist() == [2, 1, 2, 0, 0]

    # Serving: materialized rows plus the request-time view give the same values.
    materialize(settings, day(55).to_pydatetime())
    online = online_features(
        open_store(settings), "revival_v1", ["L1", "R1", "Q1"], day(55).to_pydatetime()
    )
    later = expected.iloc[[2, 3, 4]].reset_index(drop=True)
    for name in names:
        if later[name].dtype == object:
            assert online[name].tolist() == later[name].tolist(), name
        else:
            np.testing.assert_allclose(
                pd.to_numeric(online[name]).to_numpy(float),
                later[name].to_numpy(float),
                rtol=1e-9,
                err_msg=name,
            )


def test_given_revival_times_replace_the_link_by_account_and_time():
    """A loss table with ``revived_at`` (the outcome's links) decides the comebacks: here
    L1 is never revived and R1's first loss comes back on day 45 instead of 30."""
    tables = crm()
    given = losses().assign(revived_at=ts([None, 45, None, None, None]))
    src = revival_source(given, tables["activities"], tables["contacts"], tables["deals"])
    l1 = src[src["deal_id"] == "L1"].set_index(TS)["account_revivals_before"]
    assert l1.loc[day(40)] == 0 and l1.loc[day(45)] == 1
    r1 = src[src["deal_id"] == "R1"]
    assert (r1["account_revivals_before"] == 0).all()


# ------------------------------------------------------------------ the merge-based formulation
# ``revival_source`` once joined frames (merge, merge_asof, drop_duplicates) to add the
# account's counts and drop unchanged rows, over every activity of the lost deals; it now
# sums over sorted arrays and reads only the activities from each deal's first loss on.
# The joins and the unfiltered activities are kept here, as they were, as the reference
# the arrays must equal value for value and type for type (the rows of the deals' own
# moments, ``_loss_rows``, are shared: they did not change).


def _merge_reference(losses, activities, contacts, deals, window_days):
    from leadscore.features import featurize as f
    from leadscore.features.deal_state import (
        US,
        LossEvents,
        engagement_since_loss,
        sort_events,
    )

    losses = losses[losses["lost_at"].notna()]
    deal_ids = pd.Index(sorted(set(losses["deal_id"].astype(str))))
    loss_cat, lost_us, loss_order = f._events(losses, "lost_at", f._micros, deal_ids)
    ordered = losses.iloc[loss_order].reset_index(drop=True)
    loss_events = LossEvents(loss_cat.codes[loss_order].astype(np.int64), lost_us)
    acts = activities if activities is not None else f._NO_ACTIVITIES
    acts = acts[acts["deal_id"].astype(str).isin(deal_ids)]
    _, act_events = f._activity_events(acts, contacts, deal_ids)
    first_loss = lost_us[np.r_[True, loss_events.deal[1:] != loss_events.deal[:-1]]]
    seen_us = act_events.t_s * US
    after = seen_us >= first_loss[act_events.deal]
    deal = np.concatenate([loss_events.deal, act_events.deal[after]])
    t = np.concatenate([lost_us, seen_us[after]])
    order = sort_events(deal, t)
    moments = f._distinct_moments(deal[order], t[order])
    state = engagement_since_loss(act_events, loss_events, moments, len(deal_ids))
    out = f._loss_rows(loss_cat, moments, state, ordered, deals)
    account = f._keys(deals, "account_id").set_axis(deals["deal_id"].astype(str))
    out["deal_account_id"] = out["deal_id"].map(account).fillna("")

    rows = out
    events = f._account_events(losses, deals, window_days)
    first = rows.groupby("deal_id", sort=False).agg(
        first=(TS, "min"), account=("deal_account_id", "first")
    )
    first = first[first["account"] != ""].reset_index()
    extra = first.merge(events[["account_id", TS]], left_on="account", right_on="account_id")
    extra = extra[extra[TS] >= extra["first"]][["deal_id", TS]]
    moments = (
        pd.concat([rows[["deal_id", TS]], extra])
        .drop_duplicates()
        .sort_values(TS, kind="stable")
        .reset_index(drop=True)
    )
    out = pd.merge_asof(
        moments, rows.sort_values(TS, kind="stable"), on=TS, by="deal_id", direction="backward"
    )

    def running(key: str) -> pd.DataFrame:
        ev = events.sort_values([key, TS], kind="stable")
        totals = ev.groupby(key, sort=False)[["opened", "revived"]].cumsum()
        totals[[key, TS]] = ev[[key, TS]]
        return totals.drop_duplicates([key, TS], keep="last").sort_values(TS, kind="stable")

    by_account = running("account_id").rename(columns={"account_id": "deal_account_id"})
    out = pd.merge_asof(out, by_account, on=TS, by="deal_account_id", direction="backward")
    own = running("deal_id").rename(columns={"opened": "own_open", "revived": "own_revived"})
    out = pd.merge_asof(out, own, on=TS, by="deal_id", direction="backward")
    no_account = (out["deal_account_id"] == "").to_numpy()
    for column, total, mine in (
        ("account_revivals_before", "revived", "own_revived"),
        ("account_open_deals", "opened", "own_open"),
    ):
        other = out[total].fillna(0) - out[mine].fillna(0)
        out[column] = other.mask(no_account).astype("float64")
    out = out.sort_values(["deal_id", TS], kind="stable").reset_index(drop=True)
    out = out[list(REVIVAL_SOURCE_COLUMNS)]
    values = out.drop(columns=TS)
    previous = values.shift()
    both_missing = values.isna() & previous.isna()
    changed = (values.ne(previous) & ~both_missing).any(axis=1)
    return out[changed.to_numpy()].reset_index(drop=True)


def _awkward_crm(seed: int) -> dict[str, pd.DataFrame]:
    """A synthetic CRM with re-opens and follow-ups, made awkward: deals without an
    account or a creation time, activities without a contact or at the very second of a
    loss, and deals of one account created at the instant another one closes."""
    from leadscore.crm.synth import generate_crm

    rng = np.random.default_rng(seed)
    tables = {
        k: v.copy()
        for k, v in generate_crm(
            600, seed=seed, as_of=pd.Timestamp("2025-06-01", tz="UTC"), revival=True
        ).tables.items()
    }
    deals, acts = tables["deals"], tables["activities"]
    deals.loc[rng.random(len(deals)) < 0.1, "account_id"] = None
    deals.loc[rng.random(len(deals)) < 0.05, "created_at"] = pd.NaT
    deals.loc[rng.random(len(deals)) < 0.1, "competitor"] = None
    acts.loc[rng.random(len(acts)) < 0.1, "contact_id"] = None
    closed = deals["closed_at"].dropna().dt.floor("s")
    closed_of = deals.set_index("deal_id")["closed_at"].dt.floor("s")
    at_close = acts["deal_id"].map(closed_of).notna() & (rng.random(len(acts)) < 0.05)
    acts.loc[at_close, "occurred_at"] = acts.loc[at_close, "deal_id"].map(closed_of)
    same = rng.random(len(deals)) < 0.05
    deals.loc[same, "created_at"] = rng.choice(closed.to_numpy(), same.sum())
    return tables


@pytest.mark.parametrize("seed", [3, 11])
@pytest.mark.parametrize("window_days", [10, 365])
@pytest.mark.parametrize("given_revivals", [False, True])
def test_the_source_equals_the_merge_based_formulation(seed, window_days, given_revivals):
    from leadscore.crm.revival import loss_cycles, revivals

    tables = _awkward_crm(seed)
    deals = tables["deals"]
    lost = loss_cycles(deals, tables["stage_history"])
    if given_revivals:
        lost = revivals(lost, deals, window_days)
    args = (lost, tables["activities"], tables["contacts"], deals, window_days)
    expected = _merge_reference(*args)
    assert len(expected) > 500 and expected["account_revivals_before"].gt(0).any()
    assert (
        expected["account_revivals_before"].isna().any()
        and expected["inbound_since_loss"].gt(0).any()
    )
    pd.testing.assert_frame_equal(revival_source(*args), expected, check_exact=True)
