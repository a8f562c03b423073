"""Feature definitions on a hand-made CRM: exact values, no leakage, missing tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leadscore.crm.synth import generate_crm
from leadscore.features import featurize
from leadscore.features.catalog import MODEL_FEATURES
from leadscore.features.featurize import (
    build_feature_sources,
    features_as_of,
    latest_positions,
    model_frame,
    normalise_category,
    normalise_competitor,
    per_distinct,
    scoring_entities,
    snapshot_entities,
)
from tests.crm_fixture import day, known_at, tiny_crm


def at(tables, deal_id: str, when: pd.Timestamp) -> pd.Series:
    deals = tables["deals"].set_index("deal_id")
    ent = pd.DataFrame(
        {
            "deal_id": [deal_id],
            "account_id": [deals.loc[deal_id, "account_id"]],
            "owner_id": [deals.loc[deal_id, "owner_id"]],
            "event_timestamp": [when],
        }
    )
    return features_as_of(build_feature_sources(tables), ent).iloc[0]


def test_d1_mid_deal_values_worked_out_by_hand():
    f = at(tiny_crm(), "D1", day(31))
    assert f["deal_age_days"] == 31
    assert (f["stage_index"], f["stage_changes"], f["backward_moves"], f["stalls"]) == (1, 1, 0, 0)
    assert f["days_in_stage"] == 28
    assert (
        f["n_contacts"],
        f["max_seniority"],
        f["n_senior_contacts"],
        f["has_economic_buyer"],
    ) == (2, 6, 1, 1)
    assert f["n_activities"] == 6
    assert (f["act_visit_7d"], f["act_total_7d"]) == (1, 1)
    assert (f["act_email_30d"], f["act_call_30d"], f["act_visit_30d"], f["act_total_30d"]) == (
        1,
        2,
        2,
        5,
    )
    assert f["act_total_90d"] == 6
    assert f["share_inbound"] == pytest.approx(2 / 6)
    assert f["days_since_last_activity"] == 1
    assert f["days_since_last_inbound"] == 21
    assert f["median_reply_hours"] == pytest.approx(18.0)
    assert f["hours_awaiting_reply"] == 0
    assert (f["first_visits"], f["followup_visits"], f["senior_met"]) == (1, 1, 1)
    assert (f["channel"], f["competitor"], f["industry"], f["region"]) == (
        "referral",
        "none",
        "retail",
        "emea",
    )
    assert f["log_amount"] == pytest.approx(np.log1p(10000))


def test_windows_expire_without_new_activity():
    """Seven days after the last visit the 7-day count is back to zero, not stale."""
    f = at(tiny_crm(), "D1", day(38))
    assert f["act_total_7d"] == 0 and f["act_visit_30d"] == 2 and f["days_since_last_activity"] == 8


def test_stalls_backward_moves_and_unanswered_inbound():
    f = at(tiny_crm(), "D1", day(57))
    # lead 3d, qualified 42d (long), solution 5d, back to qualified on day 50.
    assert (f["stage_changes"], f["backward_moves"], f["stalls"], f["days_in_stage"]) == (
        3,
        1,
        2,
        7,
    )
    assert f["hours_awaiting_reply"] == pytest.approx(48.0)


def test_current_long_stay_counts_as_a_stall():
    f = at(tiny_crm(), "D3", day(80))  # in solution since day 13
    assert f["stalls"] == 1 and f["days_in_stage"] == 67
    assert f["competitor"] == "unknown" and f["channel"] == "paid_ads"


def test_account_and_owner_history_only_from_earlier_closes():
    crm = tiny_crm()
    f = at(crm, "D4", day(50))  # D2 (A1, lost) closed day 40; D1 (A1, U1) closes day 60
    assert (f["account_prior_closed"], f["account_prior_won"], f["account_prior_win_rate"]) == (
        1,
        0,
        0,
    )
    assert np.isnan(f["owner_prior_closed"])
    g = at(crm, "D4", day(61))
    assert (g["account_prior_closed"], g["account_prior_won"]) == (2, 1)
    assert (g["owner_prior_closed"], g["owner_prior_win_rate"]) == (1, 1.0)


@pytest.mark.parametrize("when", [0, 1, 2.5, 11, 12, 31, 37, 44, 50, 55, 59.9, 61, 90, 200])
def test_no_leakage_features_equal_those_from_history_known_then(when):
    """Every deal's features at t are identical whether later history exists or not."""
    full = tiny_crm()
    t = day(when)
    past = known_at(full, t)
    deals = past["deals"]
    ent = pd.DataFrame(
        {
            "deal_id": deals["deal_id"],
            "account_id": deals["account_id"],
            "owner_id": deals["owner_id"],
            "event_timestamp": t,
        }
    )
    a = model_frame(features_as_of(build_feature_sources(full), ent))
    b = model_frame(features_as_of(build_feature_sources(past), ent))
    pd.testing.assert_frame_equal(a, b)


def test_a_late_event_does_not_change_an_earlier_snapshot():
    crm = tiny_crm()
    before = at(crm, "D3", day(25))
    late = (
        crm["activities"].iloc[[0]].assign(activity_id="LATE", deal_id="D3", occurred_at=day(25.5))
    )
    crm["activities"] = pd.concat([crm["activities"], late])
    crm["stage_history"] = pd.concat(
        [
            crm["stage_history"],
            pd.DataFrame({"deal_id": ["D3"], "stage": ["committed"], "entered_at": [day(26)]}),
        ]
    )
    crm["deals"].loc[crm["deals"]["deal_id"] == "D3", ["status", "closed_at"]] = ["won", day(27)]
    after = at(crm, "D3", day(25))
    pd.testing.assert_series_equal(before, after)
    assert at(crm, "D3", day(26))["stage_index"] == 3  # and the later snapshot does see it


def test_missing_tables_give_missing_features_not_errors():
    crm = tiny_crm()
    only_deals = {"deals": crm["deals"]}
    f = at(only_deals, "D1", day(31))
    assert f["deal_age_days"] == 31 and f["channel"] == "referral"
    for name in (
        "n_activities",
        "stage_index",
        "max_seniority",
        "days_since_last_activity",
        "stalls",
        "industry",
        "hours_awaiting_reply",
    ):
        assert pd.isna(f[name]), name
    frame = model_frame(features_as_of(build_feature_sources(only_deals), at_entities(crm)))
    assert list(frame.columns) == list(MODEL_FEATURES)


def at_entities(crm):
    d = crm["deals"]
    return pd.DataFrame(
        {
            "deal_id": d["deal_id"],
            "account_id": d["account_id"],
            "owner_id": d["owner_id"],
            "event_timestamp": day(30),
        }
    )


def test_snapshots_are_strictly_before_close_and_labelled():
    snaps = snapshot_entities(tiny_crm()["deals"], every_days=14)
    assert set(snaps["deal_id"]) == {"D1", "D2"}
    d1 = snaps[snaps["deal_id"] == "D1"]
    assert list(d1["event_timestamp"]) == [day(0), day(14), day(28), day(42), day(56)]
    assert (snaps["event_timestamp"] < snaps["closed_at"]).all()
    assert dict(zip(snaps["deal_id"], snaps["won"], strict=False)) == {"D1": 1, "D2": 0}


def test_no_snapshot_while_a_deal_was_lost_before_it_was_reopened():
    """D1 lost on day 20, re-opened on day 50, won on day 70: its days 28 and 42 were not
    open time (only re-opened deals have such moments, which would teach "in the closed
    stage" as a sign of winning). Without the history nothing is known of the loss."""
    crm = tiny_crm()
    deals = crm["deals"].copy()
    deals.loc[deals["deal_id"] == "D1", "closed_at"] = day(70)
    history = pd.DataFrame(
        {
            "deal_id": ["D1"] * 5,
            "stage": ["lead", "closed", "qualified", "closed", "lead"],
            "entered_at": [day(0), day(20), day(50), day(70), day(0)],
        }
    ).iloc[:4]
    snaps = snapshot_entities(deals, 14, history)
    d1 = snaps[snaps["deal_id"] == "D1"]
    assert list(d1["event_timestamp"]) == [day(0), day(14), day(56)]
    assert list(d1["snapshot_index"]) == [0, 1, 4]
    blind = snapshot_entities(deals, 14)
    assert len(blind[blind["deal_id"] == "D1"]) == 5
    # The other deal, never re-opened, keeps every snapshot.
    pd.testing.assert_frame_equal(
        snaps[snaps["deal_id"] == "D2"].reset_index(drop=True),
        blind[blind["deal_id"] == "D2"].reset_index(drop=True),
    )


def test_competitor_keeps_none_and_unknown_apart():
    out = normalise_competitor(
        pd.Series(["None", " no competitor ", "", None, "Unknown", "Acme CRM", "无"])
    )
    assert list(out) == ["none", "none", "unknown", "unknown", "unknown", "acme_crm", "none"]


def test_sub_second_times_snapshot_at_creation_sees_the_deal_and_no_later_activity():
    """CRM times carry microseconds: the creation snapshot must see the deal itself,
    and an activity half a second after a moment must not be visible at it."""
    crm = tiny_crm()
    shift = pd.Timedelta(microseconds=400_123)
    crm["deals"]["created_at"] = crm["deals"]["created_at"] + shift
    snaps = snapshot_entities(crm["deals"], every_days=14)
    assert (
        snaps.groupby("deal_id")["event_timestamp"].min().sort_index()
        == crm["deals"].set_index("deal_id").loc[["D1", "D2"], "created_at"].sort_index()
    ).all()
    first = model_frame(
        features_as_of(build_feature_sources(crm), snaps[snaps["snapshot_index"] == 0])
    )
    assert first["channel"].notna().all() and first["amount"].notna().all()

    when = day(31) + pd.Timedelta(milliseconds=200)
    late = (
        crm["activities"]
        .iloc[[0]]
        .assign(activity_id="SOON", occurred_at=when + pd.Timedelta(milliseconds=500))
    )
    crm["activities"] = pd.concat([crm["activities"], late])
    assert at(crm, "D1", when)["n_activities"] == 6
    assert at(crm, "D1", when + pd.Timedelta(seconds=1))["n_activities"] == 7


def test_inbound_never_answered_gives_no_reply_latency_but_a_waiting_time():
    crm = tiny_crm()
    crm["activities"] = crm["activities"][
        crm["activities"]["deal_id"] == "D3"
    ]  # D3: one unanswered inbound
    f = at(crm, "D3", day(22))
    assert np.isnan(f["median_reply_hours"]) and f["hours_awaiting_reply"] == pytest.approx(48.0)


@pytest.mark.parametrize("moment", ["2025-01-20", "2025-02-15 10:30", "2025-06-01", "a row's"])
def test_one_moment_join_picks_the_rows_the_point_in_time_join_picks(moment):
    """Entities all at one moment join each key's latest row directly (ranking's path);
    one entity at another moment sends the same entities through ``merge_asof``."""
    tables = generate_crm(300, seed=5, as_of=pd.Timestamp("2025-06-01", tz="UTC")).tables
    sources = build_feature_sources(tables)
    if moment == "a row's":  # exactly when an activity happened: that row is seen
        rows = sources["deal_activity"]["event_timestamp"]
        at = rows.iloc[len(rows) // 2]
    else:
        at = pd.Timestamp(moment, tz="UTC")
    entities = scoring_entities(tables["deals"], at)
    other = entities.iloc[:1].assign(event_timestamp=at - pd.Timedelta(days=3))
    one_moment = features_as_of(sources, entities)
    asof = features_as_of(sources, pd.concat([entities, other], ignore_index=True))
    assert one_moment["act_total_30d"].notna().sum() > 0
    pd.testing.assert_frame_equal(one_moment, asof.iloc[: len(entities)])


def latest_by_sorting(keys: np.ndarray, times: pd.Series, moment: pd.Timestamp) -> np.ndarray:
    """The definition :func:`latest_positions` must keep: the rows seen by ``moment``,
    sorted by time (stably), the last of each key."""
    rows = pd.DataFrame({"key": keys, "t": times})
    seen = rows[(rows["t"] <= moment).to_numpy()]
    return seen.sort_values("t", kind="stable").drop_duplicates("key", keep="last").index.to_numpy()


@pytest.mark.parametrize("seed", range(40))
def test_latest_positions_pick_the_rows_a_sort_by_time_picks(seed):
    """Random rows with many equal times, missing times and keys seen in any order:
    grouped and sorted (the builders' order, one pass), grouped but unsorted in time, and
    shuffled (both sorted first) pick the same rows as the stable sort by time."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(0, 400))
    keys = rng.choice([f"d{i}" for i in range(int(rng.integers(1, 30)))], n)
    times = pd.Series(
        pd.Timestamp("2025-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 15, n), unit="D")
    ).astype("datetime64[us, UTC]")
    times[rng.random(n) < 0.1] = pd.NaT
    rows = pd.DataFrame({"key": keys, "t": times})
    order = ("grouped and sorted", "grouped", "shuffled")[seed % 3]
    if order == "grouped and sorted":
        rows = rows.sort_values(["key", "t"], kind="stable", na_position="first")
    elif order == "grouped":
        rows = rows.sort_values("key", kind="stable")
    rows = rows.reset_index(drop=True)
    moment = pd.Timestamp("2025-01-08", tz="UTC")
    got = latest_positions(pd.factorize(rows["key"])[0], rows["t"], moment)
    expected = latest_by_sorting(rows["key"].to_numpy(), rows["t"], moment)
    np.testing.assert_array_equal(np.sort(got), np.sort(expected))


def test_one_moment_join_of_shuffled_sources_picks_the_rows_the_point_in_time_join_picks():
    """Sources in no order, with some rows repeated (equal key and time: the later row
    wins): the one-moment join still reads what ``merge_asof`` reads."""
    tables = generate_crm(200, seed=9, as_of=pd.Timestamp("2025-06-01", tz="UTC")).tables
    rng = np.random.default_rng(3)
    sources = {}
    for view, src in build_feature_sources(tables).items():
        again = src.sample(frac=0.2, random_state=1).assign(
            **{c: np.nan for c in src.columns if src[c].dtype.kind == "f"}
        )
        both = pd.concat([src, again], ignore_index=True)
        sources[view] = both.iloc[rng.permutation(len(both))].reset_index(drop=True)
    at = pd.Timestamp("2025-03-01", tz="UTC")
    entities = scoring_entities(tables["deals"], at)
    other = entities.iloc[:1].assign(event_timestamp=at - pd.Timedelta(days=3))
    one_moment = features_as_of(sources, entities)
    asof = features_as_of(sources, pd.concat([entities, other], ignore_index=True))
    assert one_moment["amount"].isna().any() and one_moment["amount"].notna().any()
    pd.testing.assert_frame_equal(one_moment, asof.iloc[: len(entities)])


TEXTS = ["Web", " web ", "Paid  Ads", "", "none", "N/A", "Unknown", "电话", "call", "CALL"]


@pytest.mark.parametrize("dtype", [object, "string"])
@pytest.mark.parametrize("seed", range(6))
def test_per_distinct_gives_what_the_function_gives_row_by_row(seed, dtype):
    """Texts repeated in any order, with None, NaN and pd.NA among them (and a number,
    which sends an object column through the function whole): the same values, dtype,
    index and name as the function applied to the whole column."""
    rng = np.random.default_rng(seed)
    pool: list[object] = [*TEXTS, None, np.nan] + ([pd.NA] if dtype == "string" else [])
    if seed == 5 and dtype is object:
        pool.append(7)
    values = pd.Series(
        [pool[i] for i in rng.integers(0, len(pool), 500)],
        index=rng.permutation(1000)[:500],
        dtype=dtype,
        name="channel",
    )
    kinds = {"call": 0, "web": 1}
    for fn in (
        lambda s: s.astype(str).str.lower().map(kinds),
        lambda s: s.astype("string").str.lower().map(kinds),
        lambda s: s.astype(str),
    ):
        pd.testing.assert_series_equal(per_distinct(values, fn), fn(values))
    # The normalisations the profile source runs per distinct text, against row by row.
    pd.testing.assert_series_equal(
        normalise_category(values), featurize._normalise_category(values)
    )
    pd.testing.assert_series_equal(
        normalise_competitor(values), featurize._normalise_competitor(values)
    )


def test_contacts_named_alike_are_one_contact_and_naming_none_is_one_code():
    """A contact's code comes from its id as text (7 and "7" are one contact), and every
    activity naming none (missing or "") shares one code: a visit of each is a first
    visit once, then a follow-up."""
    from tests.crm_fixture import activities_table

    acts = activities_table(
        [
            ("D1", None, "visit", "outbound", 1),
            ("D1", "", "visit", "outbound", 2),
            ("D1", 7, "visit", "outbound", 3),
            ("D1", "7", "visit", "outbound", 4),
            ("D1", "C9", "visit", "outbound", 5),
        ]
    )
    contacts = pd.DataFrame({"contact_id": ["7", "C9"], "title": ["CEO", "Software Engineer"]})
    got = featurize.activity_source(acts, contacts)
    assert got["first_visits"].tolist() == [1, 1, 2, 2, 3]
    assert got["followup_visits"].tolist() == [0, 1, 1, 2, 2]
    assert got["senior_met"].tolist() == [0, 0, 1, 1, 1]


def test_sources_built_in_ranges_of_deals_equal_the_sources_built_at_once():
    """Ranges read each table's deal positions once (rows of unknown deals dropped):
    their pieces, concatenated, are the sources built at once, row for row."""
    tables = dict(generate_crm(120, seed=4, as_of=pd.Timestamp("2025-06-01", tz="UTC")).tables)
    stray = tables["activities"].head(3).assign(deal_id="NOT-A-DEAL")
    tables["activities"] = pd.concat([stray, tables["activities"]], ignore_index=True)
    whole = build_feature_sources(tables)
    pieces: dict[str, list[pd.DataFrame]] = {}
    for name, piece in featurize.iter_feature_sources(tables, chunk_deals=7):
        pieces.setdefault(name, []).append(piece)
    assert len(pieces["deal_activity"]) > 10
    assert set(pieces) == set(whole)
    for name, parts in pieces.items():
        got = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
        pd.testing.assert_frame_equal(got, whole[name], check_exact=True, obj=name)
