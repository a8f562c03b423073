"""What the managers' page shows of the insights, computed once per ranking.

The page's sections (funnel metrics by cut with the team's stage durations and where
its lost deals leave, trends, forecast with its backtest, the reps' five numbers, an
A/B comparison) are the insights of this package over the export's last 12 months
before the moment of the ranking, computed by the functions the commands use (never a
second implementation) and made JSON-ready (:func:`~leadscore.insights.facts.to_records`),
so the page only formats them.

Cost bounds, since the page is rendered again after each rank run: the funnel is cut
by at most :data:`PAGE_CUTS` (those the export has), the forecast's backtest is rebuilt
at :data:`PAGE_BACKTEST_CUTS` month starts with the stage win rate only (the model's
probabilities at past moments need features rebuilt at each: ``leadscore forecast
--backtest`` has them), and the A/B section compares one cut; others are asked for
(:func:`comparison`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from leadscore.config import FORECAST_MONTHS
from leadscore.crm.contract import PREVIOUS_DEAL
from leadscore.insights.channels import channel_quality
from leadscore.insights.compare import Predictions, compare_groups
from leadscore.insights.facts import (
    ALL,
    SIZE_BAND,
    CutUnavailable,
    Facts,
    cut_labels,
    to_records,
)
from leadscore.insights.forecast import (
    backtest,
    backtest_cuts,
    backtest_errors,
    pipeline_forecast,
    stage_rate_probability,
)
from leadscore.insights.funnel import funnel_metrics, lost_exits, stage_durations
from leadscore.insights.reps import OWNER, rep_numbers
from leadscore.insights.strengths import rep_strengths
from leadscore.insights.trends import funnel_trends
from leadscore.timeutil import as_utc

#: Cuts the page's funnel offers beside the whole team, when the export has them.
PAGE_CUTS: tuple[str, ...] = (OWNER, "channel", "industry", SIZE_BAND)
#: Month starts the page's forecast backtest is rebuilt at (``leadscore forecast
#: --backtest`` uses ``BACKTEST_CUTS``).
PAGE_BACKTEST_CUTS = 6
#: Reps the page's strengths and per-rep forecast cover at most (the busiest).
PAGE_REPS = 50
#: The attribute the page compares first.
DEFAULT_COMPARE = "channel"
#: Columns the A/B section never offers: ids (one deal a group), and why a deal was lost
#: (only lost deals have one, so every group's win rate is nought).
NOT_COMPARED = ("deal_id", "account_id", PREVIOUS_DEAL, "lost_reason")
#: Months of the page's window.
WINDOW_MONTHS = 12


@dataclass(frozen=True)
class Overview:
    """The page's insights, JSON-ready. ``cuts``: the cuts the funnel is by (besides
    the whole team); ``compare_by``: attributes the A/B section may compare."""

    start: pd.Timestamp
    end: pd.Timestamp
    funnel: dict[str, list[dict[str, Any]]]
    trends: list[dict[str, Any]]
    forecast: dict[str, Any]
    reps: dict[str, list[dict[str, Any]]]
    comparison: dict[str, Any] | None
    compare_by: list[str] = field(default_factory=list)
    #: Each channel's likeness to the won customers, most alike first (with the CRM's
    #: tables: seniority needs the contacts); empty without them.
    channels: list[dict[str, Any]] = field(default_factory=list)
    #: Where a rep converts better or worse than the rest of the team (flagged cells only).
    strengths: list[dict[str, Any]] = field(default_factory=list)
    #: The whole team's days in each open stage, won apart from lost
    #: (:func:`~leadscore.insights.funnel.stage_durations`), beside the funnel.
    stage_durations: list[dict[str, Any]] = field(default_factory=list)
    #: Where the team's lost deals left the funnel
    #: (:func:`~leadscore.insights.funnel.lost_exits`), beside the funnel.
    lost_exits: list[dict[str, Any]] = field(default_factory=list)


def window(as_of: Any) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The page's window: the 12 months before ``as_of``."""
    end = as_utc(as_of)
    return end - pd.DateOffset(months=WINDOW_MONTHS), end


def busiest_reps(facts: Facts, start: Any, end: Any) -> list[str]:
    """The :data:`PAGE_REPS` reps with the most deals closed in ``[start, end)``: those the
    page shows strengths of (each rep costs a pass over every deal)."""
    d = facts.deals
    t = d["closed_us"].to_numpy()
    closed = (d["won"] | d["lost"]).to_numpy() & (t >= as_utc(start).value / 1_000)
    closed &= t < as_utc(end).value / 1_000
    owners = pd.Series(cut_labels(facts, [OWNER])[OWNER].to_numpy(dtype=object)[closed])
    return [str(o) for o in owners.value_counts(sort=True).index[:PAGE_REPS]]


def month_start(t: pd.Timestamp) -> pd.Timestamp:
    """The start of the calendar month ``t`` falls in (``t`` itself at a month's start)."""
    return pd.Timestamp(year=t.year, month=t.month, day=1, tz="UTC")


def ranked_probability(facts: Facts, probability: pd.Series | None) -> Any:
    """The forecast's probability: the ranked list's by deal id (the win model's as of the
    ranking), the stage win rate for a deal it does not list (``leadscore rank --top``)."""
    stage = stage_rate_probability(facts)
    if probability is None:
        return stage

    def p(pipeline: pd.DataFrame, as_of: pd.Timestamp) -> np.ndarray:
        known = probability.reindex(pipeline["deal_id"].astype(str)).to_numpy(dtype=np.float64)
        if np.isnan(known).any():
            known = np.where(np.isnan(known), stage(pipeline, as_of), known)
        return known

    return p


def managers_overview(
    facts: Facts,
    as_of: Any,
    probability: pd.Series | None = None,
    at_creation: Predictions | None = None,
    tables: Mapping[str, pd.DataFrame] | None = None,
) -> Overview:
    """The page's insights from the stored CRM's facts
    (:func:`~leadscore.insights.facts.deal_facts`) as of the ranking's moment.

    ``probability``: the ranked list's win probability by deal id, for the forecast;
    ``at_creation``: win probabilities at creation, for the A/B section's lead-quality
    check (without: the comparison says it was not made); ``tables``: the stored CRM the
    facts come from, for the channels' quality (without: none).
    """
    start, end = window(as_of)
    cuts = [c for c in PAGE_CUTS if c in facts.cuts()]
    funnel = {"all": to_records(funnel_metrics(facts, start, end))}
    for cut in cuts:
        funnel[cut] = to_records(funnel_metrics(facts, start, end, by=[cut]))
    forecast = page_forecast(facts, end, probability, OWNER in facts.cuts())
    reps: dict[str, list[dict[str, Any]]] = {}
    if OWNER in facts.cuts():
        # The month and the week the moment falls in (the one before, at their very start).
        last = end - pd.Timedelta(microseconds=1)
        month = month_start(last)
        week = (last - pd.Timedelta(days=last.weekday())).normalize()
        reps["month"] = to_records(rep_numbers(facts, month, end, every="month"))
        reps["week"] = to_records(rep_numbers(facts, week, end, every="week"))
    compare_by = [c for c in facts.cuts() if c not in NOT_COMPARED]
    channels: list[dict[str, Any]] = []
    if tables is not None:
        try:
            channels = [asdict(c) for c in channel_quality(tables, start, end)]
        except ValueError:  # no channel column, or no win to compare with
            channels = []
    strengths = (
        [
            asdict(s)
            for s in rep_strengths(facts, start, end, reps=busiest_reps(facts, start, end))
            if s.verdict in ("better", "worse")
        ]
        if OWNER in facts.cuts()
        else []
    )
    return Overview(
        start,
        end,
        funnel,
        # Whole months only: the month in progress would read as a fall (its deals have
        # had days, not a month, to convert), month on month and year on year.
        to_records(funnel_trends(facts, start, month_start(end))),
        forecast,
        reps,
        comparison(facts, DEFAULT_COMPARE, start, end, at_creation)
        if DEFAULT_COMPARE in compare_by
        else None,
        compare_by,
        channels,
        strengths,
        to_records(stage_durations(facts, start, end)),
        to_records(lost_exits(facts, start, end)),
    )


def page_forecast(
    facts: Facts, end: pd.Timestamp, probability: pd.Series | None, by_rep: bool = False
) -> dict[str, Any]:
    """The forecast at ``end`` for the team (and, ``by_rep``, per rep: :func:`rep_forecast`)
    and the team's backtest, as JSON; ``missing`` says why there is none (a young export
    has no past wins to learn the time to close from)."""
    out: dict[str, Any] = {
        "as_of": end.isoformat(),
        "method": "stage" if probability is None else "ranked",
        "months": [],
        "summary": [],
        "backtest_cuts": 0,
        "errors": [],
        "missing": None,
    }
    try:
        fc = pipeline_forecast(facts, end, ranked_probability(facts, probability), FORECAST_MONTHS)
    except ValueError as exc:
        return {**out, "missing": str(exc)}
    out.update(months=to_records(fc.months), summary=to_records(fc.summary))
    if by_rep:
        months, summary = rep_forecast(facts, fc)
        out.update(months=out["months"] + months, summary=out["summary"] + summary)
    past = backtest_cuts(facts, end, PAGE_BACKTEST_CUTS)
    try:
        frame = backtest(facts, past, {"stage_rate": stage_rate_probability(facts)})
    except ValueError:  # a cut without wins before it to learn from: no backtest
        past, frame = [], pd.DataFrame()
    if past:
        out.update(
            backtest_cuts=len(past), errors=to_records(backtest_errors(frame, ["stage_rate"]))
        )
    return out


def rep_forecast(facts: Facts, fc: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The team's forecast ``fc`` split by rep, from its deals' monthly shares: month rows
    of the :data:`PAGE_REPS` reps with the most expected revenue, a summary row of every
    rep (``in_horizon``, ``later``). One grouping over the open deals, where
    ``pipeline_forecast(by=owner)`` masks every deal once per rep (minutes at 6,000 reps)."""
    deals = fc.deals
    owners = cut_labels(facts, [OWNER])[OWNER].to_numpy(dtype=object)[deals["deal"].to_numpy()]
    team = fc.months
    shares = [f"m{k}" for k in range(len(team))] + ["later"]
    revenue = deals[shares].to_numpy(dtype=np.float64) * deals["expected"].to_numpy()[:, None]
    sums = pd.DataFrame(revenue, columns=shares).groupby(owners, sort=True).sum()
    sums["in_horizon"] = sums[shares[:-1]].sum(axis=1)
    total = sums["in_horizon"] + sums["later"]
    summary = [
        {OWNER: rep, "in_horizon": float(r["in_horizon"]), "later": float(r["later"])}
        for rep, r in sums.iterrows()
    ]
    top = total.sort_values(ascending=False, kind="stable").index[:PAGE_REPS]
    months = [
        {
            "period_start": as_utc(team["period_start"].iloc[k]).isoformat(),
            "period_end": as_utc(team["period_end"].iloc[k]).isoformat(),
            OWNER: rep,
            "expected_revenue": float(sums.at[rep, f"m{k}"]),
        }
        for rep in top
        for k in range(len(team))
    ]
    return months, summary


def comparison(
    facts: Facts, by: str, start: Any, end: Any, at_creation: Predictions | None = None
) -> dict[str, Any]:
    """:func:`~leadscore.insights.compare.compare_groups` of cut ``by`` as JSON, with the
    lead-quality check when ``at_creation`` has the champion's probabilities at creation
    (:func:`leadscore.priority.at_creation.champion_at_creation` of
    :func:`~leadscore.insights.compare.compared_deals`); raises :class:`CutUnavailable`
    for a cut the export lacks."""
    return compare_groups(facts, by, start, end, at_creation=at_creation).to_records()


__all__ = ["ALL", "CutUnavailable", "Overview", "comparison", "managers_overview", "window"]
