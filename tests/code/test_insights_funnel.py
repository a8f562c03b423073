"""Manager insights on a small CRM written out literally, every number worked out by hand.

Thirteen deals of two reps (U1, U2) in Q1 2024, with their stage histories and visits.
The comments next to each assertion show the count: which deals, and why.

Deal  owner channel  account  created     closed           amount  stages (entered)
D01   U1    web      A1 <50   2024-01-05  won  2024-02-04  1000    lead 01-05, qualified 01-10, solution 01-20, committed 01-30
D02   U1    web      A2 250+  2024-01-10  lost 2024-02-09  2000    lead 01-10, qualified 01-15
D03   U1    referral A2       2024-02-01  won  2024-03-12  3000    lead 02-01, qualified 02-05, solution 02-15, qualified 02-20
                                                                   (back), solution 02-25, committed 03-05
D04   U1    referral A3 1000+ 2024-02-10  open             4000    lead 02-10, qualified 02-20, solution 03-10,
                                                                   committed 04-01 00:00 (the moment Q1 ends)
D05   U2    web      A3       2024-01-15  lost 2024-03-15  5000    lead 01-15, qualified 01-25, solution 02-10, committed 03-01
D06   U2    web      A1       2024-03-01  open             600     lead 03-01
D07   U2    referral A1       2024-03-20  lost 2024-03-25  -       lead 03-20
D08   U2    web      A2       2023-12-01  won  2024-01-31  8000    lead 12-01, qualified 12-10, solution 12-20, committed 01-10
D09   U1    web      -        2023-11-01  open             9000    lead 11-01, qualified 11-15, committed 2024-03-25 (skips solution)
D10   U2    referral A3       2024-03-10  won  2024-03-30  1000    lead 03-10 (won without the middle stages)
D11   U1    web      A1       2024-04-01  open             700     lead 04-01 00:00 (the moment Q1 ends)
D12   U2    " Web"   A2       2024-01-20  lost 2024-04-10  1200    lead 01-20, qualified 02-01
D13   U2    web      A1       2023-03-15  lost 2023-04-01  500     lead 03-15, qualified 03-20 (a year before)

Every closed deal but D02 also enters ``closed`` at its close (D02's history stops at
``qualified``, as CRMs that log no closing stage do). Visits: D01 C1 01-08 (first),
C1 01-12 (follow-up), C2 01-12 (first), a call 01-09; D03 C3 02-06 (first), C3 03-01
(follow-up); D05 C4 01-20 (first), no contact 02-12 (first), no contact 02-13 (follow-up).
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from leadscore.insights import (
    ALL,
    UNKNOWN,
    CutUnavailable,
    deal_facts,
    funnel_metrics,
    funnel_trends,
    lost_exits,
    period_edges,
    rep_numbers,
    stage_durations,
    to_records,
)

Q1 = ("2024-01-01", "2024-04-01")


def t(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def hand_crm() -> dict[str, pd.DataFrame]:
    deal_rows = [
        # deal, owner, channel, account, created, status, closed, amount
        ("D01", "U1", "web", "A1", "2024-01-05", "won", "2024-02-04", 1000.0),
        ("D02", "U1", "web", "A2", "2024-01-10", "lost", "2024-02-09", 2000.0),
        ("D03", "U1", "referral", "A2", "2024-02-01", "won", "2024-03-12", 3000.0),
        ("D04", "U1", "referral", "A3", "2024-02-10", "open", None, 4000.0),
        ("D05", "U2", "web", "A3", "2024-01-15", "lost", "2024-03-15", 5000.0),
        ("D06", "U2", "web", "A1", "2024-03-01", "open", None, 600.0),
        ("D07", "U2", "referral", "A1", "2024-03-20", "lost", "2024-03-25", np.nan),
        ("D08", "U2", "web", "A2", "2023-12-01", "won", "2024-01-31", 8000.0),
        ("D09", "U1", "web", None, "2023-11-01", "open", None, 9000.0),
        ("D10", "U2", "referral", "A3", "2024-03-10", "won", "2024-03-30", 1000.0),
        ("D11", "U1", "web", "A1", "2024-04-01", "open", None, 700.0),
        ("D12", "U2", " Web", "A2", "2024-01-20", "lost", "2024-04-10", 1200.0),
        ("D13", "U2", "web", "A1", "2023-03-15", "lost", "2023-04-01", 500.0),
    ]
    deals = pd.DataFrame(
        deal_rows,
        columns=["deal_id", "owner_id", "channel", "account_id", "created_at", "status"]
        + ["closed_at", "amount"],
    )
    deals["currency"] = "USD"
    for c in ("created_at", "closed_at"):
        deals[c] = pd.to_datetime(deals[c], utc=True)
    accounts = pd.DataFrame(
        {
            "account_id": ["A1", "A2", "A3"],
            "industry": ["Retail", "Manufacturing", "Finance"],
            "employee_count": [30, 500, 5000],
        }
    )
    paths = {
        "D01": [("lead", "2024-01-05"), ("qualified", "2024-01-10"), ("solution", "2024-01-20")]
        + [("committed", "2024-01-30"), ("closed", "2024-02-04")],
        "D02": [("lead", "2024-01-10"), ("qualified", "2024-01-15")],  # no closed entry
        "D03": [("lead", "2024-02-01"), ("qualified", "2024-02-05"), ("solution", "2024-02-15")]
        + [("qualified", "2024-02-20"), ("solution", "2024-02-25"), ("committed", "2024-03-05")]
        + [("closed", "2024-03-12")],
        "D04": [("lead", "2024-02-10"), ("qualified", "2024-02-20"), ("solution", "2024-03-10")]
        + [("committed", "2024-04-01")],
        "D05": [("lead", "2024-01-15"), ("qualified", "2024-01-25"), ("solution", "2024-02-10")]
        + [("committed", "2024-03-01"), ("closed", "2024-03-15")],
        "D06": [("lead", "2024-03-01")],
        "D07": [("lead", "2024-03-20"), ("closed", "2024-03-25")],
        "D08": [("lead", "2023-12-01"), ("qualified", "2023-12-10"), ("solution", "2023-12-20")]
        + [("committed", "2024-01-10"), ("closed", "2024-01-31")],
        "D09": [("lead", "2023-11-01"), ("qualified", "2023-11-15"), ("committed", "2024-03-25")],
        "D10": [("lead", "2024-03-10"), ("closed", "2024-03-30")],
        "D11": [("lead", "2024-04-01")],
        "D12": [("lead", "2024-01-20"), ("qualified", "2024-02-01"), ("closed", "2024-04-10")],
        "D13": [("lead", "2023-03-15"), ("qualified", "2023-03-20"), ("closed", "2023-04-01")],
    }
    stage_history = pd.DataFrame(
        [(d, s, t(at)) for d, path in paths.items() for s, at in path],
        columns=["deal_id", "stage", "entered_at"],
    )
    activity_rows = [
        ("D01", "C1", "visit", "2024-01-08"),
        ("D01", "C1", "call", "2024-01-09"),
        ("D01", "C1", "visit", "2024-01-12"),
        ("D01", "C2", "visit", "2024-01-12"),
        ("D03", "C3", "visit", "2024-02-06"),
        ("D03", "C3", "visit", "2024-03-01"),
        ("D05", "C4", "visit", "2024-01-20"),
        ("D05", None, "visit", "2024-02-12"),
        ("D05", None, "visit", "2024-02-13"),
    ]
    activities = pd.DataFrame(
        [
            (f"ACT{i}", d, c, kind, "outbound", t(at))
            for i, (d, c, kind, at) in enumerate(activity_rows)
        ],
        columns=["activity_id", "deal_id", "contact_id", "type", "direction", "occurred_at"],
    )
    return {
        "deals": deals,
        "accounts": accounts,
        "stage_history": stage_history,
        "activities": activities,
    }


def metrics(frame: pd.DataFrame, **where: str) -> pd.DataFrame:
    """Rows of ``frame`` matching ``where``, indexed by metric and stage."""
    for k, v in where.items():
        frame = frame[frame[k] == v]
    return frame.set_index(["metric", frame["stage"].fillna("")])


def check(row: pd.Series, value: float, numerator: float, denominator: float) -> None:
    assert row["value"] == pytest.approx(value)
    assert (row["numerator"], row["denominator"]) == (numerator, denominator)
    assert row["missing"] is None


def test_q1_funnel_of_the_whole_team():
    m = metrics(funnel_metrics(deal_facts(hand_crm()), *Q1))
    # Created in Q1: D01 D02 D03 D04 D05 D06 D07 D10 D12 (9); not D08, D09 (2023), nor D11
    # (created the moment Q1 ends: periods are [start, end)).
    # Reached qualified or later: all but D06, D07 (D10 counts: won) = 7.
    check(m.loc[("lead_to_opportunity", "")], 7 / 9, 7, 9)
    # Of those 7, reached solution or later: D01 D03 D04 D05 D10 = 5 (not D02, D12).
    check(m.loc[("opportunity_to_qualified", "")], 5 / 7, 5, 7)
    check(m.loc[("lead_to_qualified", "")], 5 / 9, 5, 9)
    # Closed in Q1: D01 D03 D08 D10 won, D02 D05 D07 lost (D12 closes in April).
    # Of them past solution: D01 D03 D05 D08 D10 = 5, of which 4 won.
    check(m.loc[("qualified_win_rate", "")], 4 / 5, 4, 5)
    check(m.loc[("qualified_per_win", "")], 5 / 4, 5, 4)
    # Cycles of the wins: D10 20, D01 30, D03 40 (leap February), D08 61 days: median 35.
    check(m.loc[("sales_cycle_days", "")], 35.0, 4, 4)
    # Won amounts 1000 + 3000 + 8000 + 1000 = 13000 over 4.
    check(m.loc[("average_won_amount", "")], 3250.0, 4, 4)
    # Open on April 1st: D06 (lead), D12 (qualified; lost only on April 10), D04
    # (solution: it enters committed the moment Q1 ends), D09 (committed since March 25).
    # Not D11 (created at the end).
    check(m.loc[("open_pipeline_value", "lead")], 600.0, 1, 1)
    check(m.loc[("open_pipeline_value", "qualified")], 1200.0, 1, 1)
    check(m.loc[("open_pipeline_value", "solution")], 4000.0, 1, 1)
    check(m.loc[("open_pipeline_value", "committed")], 9000.0, 1, 1)
    # 9 deals at most: every value rests on fewer than 20; a pipeline total is never small.
    assert m["small"].to_dict() == {k: k[0] != "open_pipeline_value" for k in m.index}


def test_q1_funnel_by_owner_against_the_team():
    frame = funnel_metrics(deal_facts(hand_crm()), *Q1, by=["owner"])
    assert list(frame["owner_id"].unique()) == [ALL, "U1", "U2"]
    assert (
        frame[frame["owner_id"] == ALL]["value"].fillna(-1).to_numpy()
        == metrics(funnel_metrics(deal_facts(hand_crm()), *Q1))["value"].fillna(-1).to_numpy()
    ).all()
    u1 = metrics(frame, owner_id="U1")
    # U1 created D01 D02 D03 D04, all reached qualified; D01 D03 D04 reached solution.
    check(u1.loc[("lead_to_opportunity", "")], 1.0, 4, 4)
    check(u1.loc[("opportunity_to_qualified", "")], 3 / 4, 3, 4)
    # U1 closed D01 (won), D02 (lost at qualified), D03 (won): 2 qualified, 2 won.
    check(u1.loc[("qualified_win_rate", "")], 1.0, 2, 2)
    check(u1.loc[("sales_cycle_days", "")], 35.0, 2, 2)  # 30 and 40
    check(u1.loc[("average_won_amount", "")], 2000.0, 2, 2)
    check(u1.loc[("open_pipeline_value", "committed")], 9000.0, 1, 1)  # D09
    check(u1.loc[("open_pipeline_value", "lead")], 0.0, 0, 0)  # a total of nothing is 0
    u2 = metrics(frame, owner_id="U2")
    # U2 created D05 D06 D07 D10 D12: reached qualified D05 D10 D12, solution D05 D10.
    check(u2.loc[("lead_to_opportunity", "")], 3 / 5, 3, 5)
    check(u2.loc[("opportunity_to_qualified", "")], 2 / 3, 2, 3)
    check(u2.loc[("lead_to_qualified", "")], 2 / 5, 2, 5)
    # U2 closed D05 (lost past solution), D07 (lost as a lead), D08 and D10 (won).
    check(u2.loc[("qualified_win_rate", "")], 2 / 3, 2, 3)
    check(u2.loc[("qualified_per_win", "")], 3 / 2, 3, 2)
    check(u2.loc[("sales_cycle_days", "")], 40.5, 2, 2)  # 61 and 20
    check(u2.loc[("average_won_amount", "")], 4500.0, 2, 2)  # 8000 and 1000
    check(u2.loc[("open_pipeline_value", "qualified")], 1200.0, 1, 1)  # D12


def test_cuts_by_size_band_and_normalised_channel():
    f = deal_facts(hand_crm())
    bands = metrics(funnel_metrics(f, *Q1, by=["size_band"]), metric="lead_to_opportunity")
    by_band = bands.set_index("size_band")
    # <50 (A1): D01 D06 D07 created, only D01 qualified. 250-999 (A2): D02 D03 D12, all.
    assert by_band.loc["<50", ["numerator", "denominator"]].tolist() == [1, 3]
    assert by_band.loc["250-999", ["numerator", "denominator"]].tolist() == [3, 3]
    assert by_band.loc["1000+", ["numerator", "denominator"]].tolist() == [3, 3]
    # D09 has no account: its band is unknown, it is open at the end but created in 2023.
    assert by_band.loc[UNKNOWN, "missing"] == "no deals created in the period"
    assert list(by_band.index) == [ALL, "<50", "250-999", "1000+", UNKNOWN]
    channel = metrics(funnel_metrics(f, *Q1, by=["channel"]), metric="lead_to_opportunity")
    # " Web" (D12) is web: D01 D02 D05 D06 D12 created, D06 not qualified.
    web = channel.set_index("channel").loc["web"]
    assert (web["numerator"], web["denominator"]) == (4, 5)
    industry = funnel_metrics(f, *Q1, by=["industry"])
    assert set(industry["industry"]) == {ALL, "retail", "manufacturing", "finance", UNKNOWN}
    with pytest.raises(CutUnavailable, match="cannot cut by region: accounts has no region"):
        funnel_metrics(f, *Q1, by=["region"])
    with pytest.raises(CutUnavailable, match="cannot cut by size_band: no accounts table"):
        funnel_metrics(deal_facts({"deals": hand_crm()["deals"]}), *Q1, by=["size_band"])


def test_small_groups_are_flagged_below_the_threshold():
    f = deal_facts(hand_crm())
    m = metrics(funnel_metrics(f, *Q1, min_deals=9))
    assert not m.loc[("lead_to_opportunity", ""), "small"]  # 9 leads
    assert m.loc[("opportunity_to_qualified", ""), "small"]  # 7 opportunities
    assert not m.loc[("open_pipeline_value", "lead"), "small"]  # a total is never small


def test_several_currencies_make_the_average_missing():
    crm = hand_crm()
    crm["deals"].loc[crm["deals"]["deal_id"] == "D08", "currency"] = "EUR"
    m = metrics(funnel_metrics(deal_facts(crm), *Q1))
    row = m.loc[("average_won_amount", "")]
    assert np.isnan(row["value"]) and row["missing"] == "amounts in 2 currencies"
    assert row["numerator"] == 4  # the deals behind it are still shown


def test_stage_durations_won_and_lost():
    d = stage_durations(deal_facts(hand_crm()), *Q1).set_index(["stage", "outcome"])
    # Won in Q1: D01, D03, D08, D10. Days in lead: D03 4, D01 5, D08 9, D10 20 (to its
    # close): median 7, quartiles (linear) 4.75 and 11.75.
    assert d.loc[("lead", "won"), ["deals", "median_days", "p25_days", "p75_days"]].tolist() == [
        4,
        7.0,
        4.75,
        11.75,
    ]
    # Qualified: D01 10, D03 10 + 5 (two stays, it moved back), D08 10: median 10.
    assert d.loc[("qualified", "won"), ["deals", "median_days"]].tolist() == [3, 10.0]
    # Solution: D01 10, D03 5 + 9, D08 21 (Dec 20 to Jan 10): median 14.
    assert d.loc[("solution", "won"), ["deals", "median_days", "p75_days"]].tolist() == [
        3,
        14,
        17.5,
    ]
    assert d.loc[("committed", "won"), "median_days"] == 7.0  # D01 5, D03 7, D08 21
    # Lost in Q1: D02, D05, D07. Lead: 5, 10, 5; qualified: D02 25 (to its closed_at: its
    # history has no closed entry), D05 16.
    assert d.loc[("lead", "lost"), ["deals", "median_days"]].tolist() == [3, 5.0]
    assert d.loc[("qualified", "lost"), "median_days"] == 20.5
    assert d.loc[("solution", "lost"), ["deals", "median_days"]].tolist() == [1, 20.0]  # leap Feb
    assert d.loc[("committed", "lost"), ["deals", "median_days"]].tolist() == [1, 14.0]
    assert d["small"].all() and d["missing"].isna().all()


def test_where_lost_deals_leave():
    e = lost_exits(deal_facts(hand_crm()), *Q1).set_index("stage")
    # D07 left as a lead, D02 at qualified (never past it), D05 at committed.
    assert e["lost"].to_dict() == {"lead": 1, "qualified": 1, "solution": 0, "committed": 1}
    assert e.loc["solution", "share"] == 0 and e.loc["lead", "share"] == pytest.approx(1 / 3)
    by_owner = lost_exits(deal_facts(hand_crm()), *Q1, by=["owner_id"])
    u1 = by_owner[by_owner["owner_id"] == "U1"].set_index("stage")
    assert u1["lost"].to_dict() == {"lead": 0, "qualified": 1, "solution": 0, "committed": 0}


def test_rep_numbers_by_month_against_the_team():
    r = rep_numbers(deal_facts(hand_crm()), *Q1, every="month")
    r = r.assign(month=r["period_start"].dt.month).set_index(["owner_id", "number", "month"])
    expected = {
        # U1: leads D01 D02 (Jan), D03 D04 (Feb); opportunities when first qualified:
        # D01 D02 (Jan), D03 D04 (Feb); committed D01 (Jan), D03 D09 (Mar); won D01 (Feb),
        # D03 (Mar); visits: Jan C1 and C2 first, C1 again; Feb C3 first; Mar C3 again.
        ("U1", "leads"): [2, 2, 0],
        ("U1", "opportunities"): [2, 2, 0],
        ("U1", "committed"): [1, 0, 2],
        ("U1", "closed"): [0, 1, 1],
        ("U1", "first_visits"): [2, 1, 0],
        ("U1", "followup_visits"): [1, 0, 1],
        # U2: leads D05 D12 (Jan), D06 D07 D10 (Mar); opportunities D05 (Jan), D12 (Feb),
        # D10 (Mar, won without stages: at its close); committed D08 (Jan), D05 D10 (Mar);
        # won D08 (Jan), D10 (Mar); visits C4 (Jan), no contact twice (Feb): first, again.
        ("U2", "leads"): [2, 0, 3],
        ("U2", "opportunities"): [1, 1, 1],
        ("U2", "committed"): [1, 0, 2],
        ("U2", "closed"): [1, 0, 1],
        ("U2", "first_visits"): [1, 1, 0],
        ("U2", "followup_visits"): [0, 1, 0],
    }
    for (owner, number), values in expected.items():
        assert [r.loc[(owner, number, m), "value"] for m in (1, 2, 3)] == values, (owner, number)
    assert (r["reps"] == 2).all()
    for number in ("leads", "closed"):
        team = [r.loc[("U1", number, m), "team_total"] for m in (1, 2, 3)]
        per_rep = [r.loc[("U2", number, m), "team_per_rep"] for m in (1, 2, 3)]
        mine = [sum(expected[(o, number)][i] for o in ("U1", "U2")) for i in range(3)]
        assert team == mine and per_rep == [x / 2 for x in mine]


def test_weeks_start_on_monday_and_sum_to_the_month():
    f = deal_facts(hand_crm())
    edges = period_edges("2024-01-01", "2024-02-01", "week")
    assert edges[0] == t("2024-01-01") and all(e.weekday() == 0 for e in edges)
    weekly = rep_numbers(f, "2024-01-01", "2024-01-29", every="week")
    # Weeks of Jan 1..28: U1's leads D01 (Jan 5, week 1) and D02 (Jan 10, week 2).
    u1 = weekly[(weekly["owner_id"] == "U1") & (weekly["number"] == "leads")]
    assert u1["value"].tolist() == [1, 1, 0, 0]


def test_monthly_trends_month_on_month_and_year_on_year():
    tr = funnel_trends(deal_facts(hand_crm()), *Q1)
    assert tr["period_start"].min() == t("2024-01-01")  # the year before is only for changes
    lto = tr[tr["metric"] == "lead_to_opportunity"]
    lto = lto.set_index(lto["period_start"].dt.month)
    # Cohorts: Dec 2023 D08 1/1; Jan D01 D02 D05 D12 4/4; Feb D03 D04 2/2; Mar D06 D07 D10
    # 1/3; Mar 2023 D13 1/1.
    assert lto["value"].tolist() == pytest.approx([1.0, 1.0, 1 / 3])
    assert lto.loc[1, "mom_change"] == 0.0
    assert lto.loc[3, "mom_change"] == pytest.approx(-2 / 3)
    assert lto.loc[3, "mom_pct"] == pytest.approx(-2 / 3)
    assert lto.loc[3, "yoy_change"] == pytest.approx(-2 / 3)  # against D13's March 2023
    assert np.isnan(lto.loc[1, "yoy_change"])  # no cohort in January 2023


def test_the_page_s_trends_end_with_the_last_whole_month():
    """Mid-March, March has had half a month to convert its leads: the page's trends stop
    at February, so the month in progress never reads as a fall."""
    from leadscore.insights.overview import managers_overview

    page = managers_overview(deal_facts(hand_crm()), t("2024-03-16"))
    months = {r["period_start"] for r in page.trends}
    assert max(months) == t("2024-02-01").isoformat()
    assert min(months) == t("2023-03-01").isoformat()  # twelve whole months
    whole = managers_overview(deal_facts(hand_crm()), t("2024-04-01"))
    assert max(r["period_start"] for r in whole.trends) == t("2024-03-01").isoformat()


def test_partial_exports_report_missing_with_reasons():
    full = hand_crm()
    only_deals = deal_facts({"deals": full["deals"]})
    m = metrics(funnel_metrics(only_deals, *Q1))
    assert m.loc[("lead_to_opportunity", ""), "missing"] == "no stage_history table"
    assert np.isnan(m.loc[("lead_to_opportunity", ""), "value"])
    check(m.loc[("sales_cycle_days", "")], 35.0, 4, 4)  # needs only the deals' dates
    r = rep_numbers(only_deals, *Q1, every="month")
    assert set(r.loc[r["number"] == "first_visits", "missing"]) == {"no activities table"}
    assert r.loc[r["number"] == "leads", "missing"].isna().all()
    bare = deal_facts({"deals": full["deals"][["deal_id", "status"]]})
    m = metrics(funnel_metrics(bare, *Q1))
    assert m.loc[("average_won_amount", ""), "missing"] == (
        "no closed_at column in deals; no amount column in deals"
    )
    assert m["value"].isna().all()
    assert stage_durations(bare, *Q1)["missing"].str.startswith("no closed_at").all()
    assert lost_exits(bare, *Q1)["lost"].isna().all()
    with pytest.raises(CutUnavailable, match="deals has no owner_id"):
        rep_numbers(bare, *Q1)


def test_empty_tables_give_zero_counts_not_errors():
    crm = hand_crm()
    crm["stage_history"] = crm["stage_history"].iloc[0:0]
    crm["activities"] = crm["activities"][crm["activities"]["type"] != "visit"]
    f = deal_facts(crm)
    m = metrics(funnel_metrics(f, *Q1))
    # No stage entered: only the wins (D01 D03 D10 created in Q1) count as having passed.
    check(m.loc[("lead_to_opportunity", "")], 3 / 9, 3, 9)
    check(m.loc[("open_pipeline_value", "lead")], 0.0, 0, 0)
    assert (m.loc[("open_pipeline_value", UNKNOWN), ["value", "denominator"]] == [14800, 4]).all()
    r = rep_numbers(f, *Q1, every="month")
    assert r.loc[r["number"].str.endswith("visits"), "value"].eq(0).all()
    assert stage_durations(f, *Q1)["deals"].eq(0).all()
    assert lost_exits(f, *Q1).set_index("stage").loc[UNKNOWN, "lost"] == 3


def test_results_serialise_to_json():
    f = deal_facts(hand_crm())
    for frame in (
        funnel_metrics(f, *Q1, by=["owner_id"]),
        stage_durations(f, *Q1),
        lost_exits(f, *Q1),
        rep_numbers(f, *Q1),
        funnel_trends(f, *Q1),
    ):
        records = to_records(frame)
        text = json.dumps(records)
        assert "NaN" not in text and len(records) == len(frame)
    first = to_records(funnel_metrics(f, *Q1))[0]
    assert first["period_start"] == "2024-01-01T00:00:00+00:00" and first["stage"] is None
