"""Manager insights on a synthetic CRM: every metric runs, stays in bounds, and adds up.

The hand-made CRM of ``test_insights_funnel`` pins each value; here the identities that
must hold on any CRM are checked at scale (rates between 0 and 1, a team equal to the
sum of its reps, counts equal to the raw tables), and a partial export reports what it
cannot give instead of failing.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd
import pytest

from leadscore.crm.synth import MAX_CYCLE_DAYS, generate_crm
from leadscore.insights import (
    ALL,
    Facts,
    deal_facts,
    funnel_metrics,
    funnel_trends,
    lost_exits,
    rep_numbers,
    stage_durations,
)

AS_OF = pd.Timestamp("2024-07-01", tz="UTC")
YEAR = ("2023-07-01", "2024-07-01")


@lru_cache(maxsize=1)
def tables() -> dict[str, pd.DataFrame]:
    return generate_crm(2000, seed=13, as_of=AS_OF).tables


@lru_cache(maxsize=1)
def facts() -> Facts:
    return deal_facts(tables())


def in_year(times: pd.Series) -> pd.Series:
    t = pd.to_datetime(times, utc=True)
    return (t >= pd.Timestamp(YEAR[0], tz="UTC")) & (t < pd.Timestamp(YEAR[1], tz="UTC"))


def test_funnel_by_owner_is_in_bounds_and_adds_up():
    m = funnel_metrics(facts(), *YEAR, by=["owner"])
    team = m[m["owner_id"] == ALL]
    team = team.set_index(["metric", team["stage"].fillna("")])
    assert team["missing"].isna().all(), team["missing"]
    value = team["value"]
    shares = m[m["unit"] == "share"].dropna(subset=["value"])
    assert ((shares["value"] >= 0) & (shares["value"] <= 1)).all()
    assert (shares["numerator"] <= shares["denominator"]).all()
    assert 0.2 < value["lead_to_opportunity", ""] < 1 and 0.1 < value["qualified_win_rate", ""] < 1
    assert value["lead_to_qualified", ""] == pytest.approx(
        value["lead_to_opportunity", ""] * value["opportunity_to_qualified", ""]
    )
    assert value["qualified_per_win", ""] == pytest.approx(1 / value["qualified_win_rate", ""])
    assert 0 < value["sales_cycle_days", ""] <= MAX_CYCLE_DAYS
    assert value["average_won_amount", ""] > 0
    pipeline = team.loc["open_pipeline_value"]
    assert (pipeline["value"] > 0).all() and list(pipeline.index) == [
        "lead",
        "qualified",
        "solution",
        "committed",
    ]
    # The team is the sum of its reps, and its leads are the deals created in the year.
    reps = m[m["owner_id"] != ALL]
    for metric in ("lead_to_opportunity", "qualified_win_rate", "average_won_amount"):
        rows = reps[reps["metric"] == metric]
        assert rows["denominator"].sum() == team.loc[(metric, ""), "denominator"]
        assert rows["numerator"].sum() == team.loc[(metric, ""), "numerator"]
    deals = tables()["deals"]
    assert (
        team.loc[("lead_to_opportunity", ""), "denominator"] == in_year(deals["created_at"]).sum()
    )
    won = deals["status"].eq("won") & in_year(deals["closed_at"])
    assert team.loc[("average_won_amount", ""), "denominator"] == won.sum()
    assert team.loc[("average_won_amount", ""), "value"] == pytest.approx(
        deals.loc[won, "amount"].mean()
    )
    assert reps["small"].any() and not team["small"].any()  # 40 reps, ~25 deals a year each


def test_stage_durations_and_exits_are_consistent():
    d = stage_durations(facts(), *YEAR, by=["size_band"])
    known = d.dropna(subset=["median_days"])
    assert len(known) and (known["p25_days"] <= known["median_days"]).all()
    assert (known["median_days"] <= known["p75_days"]).all() and (known["p25_days"] >= 0).all()
    team = d[d["size_band"] == ALL].set_index(["stage", "outcome"])
    # Every won deal passes every stage in this CRM: as many won deals in each stage.
    assert team.xs("won", level="outcome")["deals"].nunique() == 1
    e = lost_exits(facts(), *YEAR, by=["channel"])
    shares = e.groupby(["channel"])["share"].sum()
    assert shares.to_numpy() == pytest.approx(np.ones(len(shares)))
    deals = tables()["deals"]
    lost = deals["status"].eq("lost") & in_year(deals["closed_at"])
    assert e.loc[e["channel"] == ALL, "lost"].sum() == lost.sum()


def test_rep_numbers_match_the_raw_tables():
    r = rep_numbers(facts(), *YEAR, every="month")
    assert r["missing"].isna().all()
    totals = r.groupby("number")["value"].sum()
    deals = tables()["deals"]
    assert totals["leads"] == in_year(deals["created_at"]).sum()
    assert totals["closed"] == (deals["status"].eq("won") & in_year(deals["closed_at"])).sum()
    acts = tables()["activities"]
    visits = acts[acts["type"].eq("visit") & in_year(acts["occurred_at"])]
    assert totals["first_visits"] + totals["followup_visits"] == len(visits)
    # The team total is the sum over reps, and the per-rep figure divides it by the reps.
    one = r[r["number"] == "leads"].groupby("period_start")
    assert (one["value"].sum() == one["team_total"].first()).all()
    reps = r["reps"].iloc[0]
    assert reps == deals["owner_id"].nunique()
    assert (one["team_per_rep"].first() * reps).to_numpy() == pytest.approx(
        one["team_total"].first().to_numpy()
    )


def test_trends_have_changes_for_every_month():
    tr = funnel_trends(facts(), *YEAR)
    assert tr["period_start"].nunique() == 12
    conversion = tr[tr["metric"] == "lead_to_opportunity"]
    # Deals are created from two years before AS_OF: every month has a cohort a month and
    # a year before it.
    assert conversion["mom_change"].notna().all() and conversion["yoy_change"].notna().all()
    assert conversion["yoy_change"].to_numpy() == pytest.approx(
        conversion["value"].to_numpy()
        - funnel_metrics(facts(), "2022-07-01", "2023-07-01", every="month")
        .query("metric == 'lead_to_opportunity'")["value"]
        .to_numpy()
    )


def test_a_deals_only_export_reports_what_it_cannot_give():
    deals_only = deal_facts({"deals": tables()["deals"]})
    m = funnel_metrics(deals_only, *YEAR, by=["owner_id"])
    by_metric = m[m["owner_id"] == ALL].set_index("metric")
    for metric in (
        "lead_to_opportunity",
        "opportunity_to_qualified",
        "lead_to_qualified",
        "qualified_win_rate",
        "qualified_per_win",
    ):
        assert by_metric.loc[metric, "missing"] == "no stage_history table"
        assert np.isnan(by_metric.loc[metric, "value"])
    assert set(by_metric.loc["open_pipeline_value", "missing"]) == {"no stage_history table"}
    assert by_metric.loc[["sales_cycle_days", "average_won_amount"], "missing"].isna().all()
    assert stage_durations(deals_only, *YEAR)["missing"].eq("no stage_history table").all()
    assert lost_exits(deals_only, *YEAR)["missing"].eq("no stage_history table").all()
    r = rep_numbers(deals_only, *YEAR)
    missing = r.groupby("number")["missing"].first().to_dict()
    assert missing == {
        "closed": None,
        "committed": "no stage_history table",
        "first_visits": "no activities table",
        "followup_visits": "no activities table",
        "leads": None,
        "opportunities": "no stage_history table",
    }
