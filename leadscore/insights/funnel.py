"""The funnel a sales manager runs the team by: conversion, win rate, cycle, size, pipeline.

Every value comes with the deals behind it (``numerator`` and ``denominator``) so a
manager can tell 2 of 3 from 200 of 300, and is flagged ``small`` when it rests on
fewer than ``min_deals`` deals. A value the export cannot give (a table or column is
absent) or that has no deals to rest on is ``NaN`` with the reason in ``missing``;
nothing is guessed. Stage terms (lead, opportunity, qualified opportunity) are those
of :mod:`leadscore.insights.facts`.

Periods are ``[start, end)`` in UTC. Conversion rates follow the *cohort* of deals
created in the period to the end of the data: a recent cohort has had less time to
convert, so its rates are lower until its deals are decided. Win rate, cycle length
and deal size follow the deals *closed* in the period; the open pipeline is the one at
the period's end.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from pandas.core.groupby import DataFrameGroupBy

from leadscore.crm.contract import OPEN
from leadscore.insights.facts import (
    DAY_US,
    MIN_DEALS,
    OPEN_STAGES,
    OPPORTUNITY_STAGE,
    QUALIFIED_STAGE,
    UNKNOWN,
    Every,
    Facts,
    Scope,
    edges_us,
    stack,
    stage_at_moments,
)

#: What each funnel metric is, as the page and ``--json`` show it.
FUNNEL_METRICS: dict[str, str] = {
    "lead_to_opportunity": "Share of the deals created in the period that reached "
    f"'{OPPORTUNITY_STAGE}' or later (won deals count).",
    "opportunity_to_qualified": f"Share of those opportunities that reached '{QUALIFIED_STAGE}' "
    "or later.",
    "lead_to_qualified": f"Share of the deals created in the period that reached "
    f"'{QUALIFIED_STAGE}' or later.",
    "qualified_win_rate": f"Won among the deals closed in the period that reached "
    f"'{QUALIFIED_STAGE}' or later.",
    "sales_cycle_days": "Median days from creation to close of the deals won in the period.",
    "qualified_per_win": f"Deals closed in the period that reached '{QUALIFIED_STAGE}', per "
    "deal won in the period (the inverse of the qualified win rate).",
    "average_won_amount": "Mean amount of the deals won in the period.",
    "open_pipeline_value": "Total amount of the deals open at the period's end, by the stage "
    "they were in then.",
}
#: What each metric needs from the export (tables, ``deals.<column>``).
METRIC_NEEDS: dict[str, tuple[str, ...]] = {
    "lead_to_opportunity": ("deals.created_at", "stage_history"),
    "opportunity_to_qualified": ("deals.created_at", "stage_history"),
    "lead_to_qualified": ("deals.created_at", "stage_history"),
    "qualified_win_rate": ("deals.closed_at", "stage_history"),
    "sales_cycle_days": ("deals.created_at", "deals.closed_at"),
    "qualified_per_win": ("deals.closed_at", "stage_history"),
    "average_won_amount": ("deals.closed_at", "deals.amount"),
    "open_pipeline_value": (
        "deals.created_at",
        "deals.closed_at",
        "stage_history",
        "deals.amount",
    ),
}


def funnel_metrics(
    facts: Facts,
    start: Any,
    end: Any,
    by: Sequence[str] = (),
    every: Every = "period",
    min_deals: int = MIN_DEALS,
) -> pd.DataFrame:
    """The eight funnel metrics of each period and group (see :data:`FUNNEL_METRICS`).

    One row per period, group and metric (``open_pipeline_value``: per stage too), with
    columns ``period_start, period_end, <by...>, metric, stage, value, numerator,
    denominator, unit, small, missing``. With ``by``, the group ALL is the whole team.
    ``numerator``/``denominator`` are deal counts: for a rate, the deals that converted
    and the deals that could; for a median or mean, the deals it is computed from and
    the deals it is about (won deals with an amount, won deals); for the pipeline, the
    open deals with an amount and all open deals in the stage.
    """
    s = Scope.of(facts, start, end, by, every, min_deals)
    d = facts.deals
    won = d["won"].to_numpy()
    created = s.frame(
        s.bucket(d["created_us"].to_numpy()),
        opp=facts.reached(OPPORTUNITY_STAGE),
        qual=facts.reached(QUALIFIED_STAGE),
    )
    amount = d["amount"].to_numpy()
    closed = s.frame(
        s.bucket(d["closed_us"].to_numpy()),
        qual=facts.reached(QUALIFIED_STAGE),
        won=won,
        cycle=np.where(won, (d["closed_us"] - d["created_us"]).to_numpy() / DAY_US, np.nan),
        won_amount=np.where(won, amount, np.nan),
        won_currency=np.where(won & ~np.isnan(amount), d["currency"].to_numpy(), None),
    )
    by_created = s.aggregate(
        created, leads=("opp", "size"), opportunities=("opp", "sum"), qualified=("qual", "sum")
    )
    by_closed = s.aggregate(
        closed,
        closed_qualified=("qual", "sum"),
        won=("won", "sum"),
        won_dated=("cycle", "count"),
        cycle=("cycle", "median"),
        won_amounts=("won_amount", "count"),
        mean_amount=("won_amount", "mean"),
        currencies=("won_currency", "nunique"),
    )
    pipeline = _pipeline(s)
    grid = s.grid(by_created, by_closed, pipeline)
    keys = ["period", *s.by]
    g = grid.merge(by_created, on=keys, how="left").merge(by_closed, on=keys, how="left")
    counts = [c for c in g.columns if c not in keys and c not in ("cycle", "mean_amount")]
    g[counts] = g[counts].fillna(0)

    def rate(name: str, num: str, den: str, why: str) -> pd.DataFrame:
        return _rows(s, g, name, "share", g[num] / g[den], g[num], g[den], why, basis=g[den])

    several = g["currencies"] > 1
    parts = [
        rate("lead_to_opportunity", "opportunities", "leads", "no deals created in the period"),
        rate(
            "opportunity_to_qualified",
            "qualified",
            "opportunities",
            "no opportunities among the deals created in the period",
        ),
        rate("lead_to_qualified", "qualified", "leads", "no deals created in the period"),
        rate(
            "qualified_win_rate",
            "won",
            "closed_qualified",
            "no qualified opportunities closed in the period",
        ),
        _rows(
            s,
            g,
            "sales_cycle_days",
            "days",
            g["cycle"],
            g["won_dated"],
            g["won"],
            _why_no_won(g, "a creation time"),
            basis=g["won_dated"],
        ),
        _rows(
            s,
            g,
            "qualified_per_win",
            "deals",
            g["closed_qualified"] / g["won"],
            g["closed_qualified"],
            g["won"],
            "no deals won in the period",
            basis=g["won"],
        ),
        _rows(
            s,
            g,
            "average_won_amount",
            "amount",
            g["mean_amount"].where(~several),
            g["won_amounts"],
            g["won"],
            np.where(several, _currencies(g["currencies"]), _why_no_won(g, "an amount")),
            basis=g["won_amounts"],
        ),
        _pipeline_rows(s, grid, pipeline),
    ]
    out = stack(parts)
    out["_metric"] = out["metric"].map({m: i for i, m in enumerate(FUNNEL_METRICS)})
    return s.finish(out, order=["_metric"])


def _why_no_won(g: pd.DataFrame, lacking: str) -> np.ndarray:
    """Why a value over the won deals has none to rest on: no wins, or none has ``lacking``."""
    return np.where(g["won"] == 0, "no deals won in the period", f"no won deal has {lacking}")


def _currencies(n: pd.Series) -> np.ndarray:
    return ("amounts in " + n.astype(int).astype(str) + " currencies").to_numpy(dtype=object)


def _where(mask: np.ndarray, why: Any) -> np.ndarray:
    """``why`` (one text, or one per row) where ``mask``, None elsewhere."""
    reasons = np.empty(len(mask), dtype=object)
    reasons[:] = why
    return np.where(mask, reasons, np.full(len(mask), None, dtype=object))


def _rows(
    s: Scope,
    g: pd.DataFrame,
    metric: str,
    unit: str,
    value: pd.Series,
    numerator: pd.Series,
    denominator: pd.Series,
    why: Any,
    basis: pd.Series | None = None,
    stage: str | None = None,
) -> pd.DataFrame:
    """Rows of one metric, one per group of ``g``.

    ``basis`` counts the deals the value rests on: none makes it missing (``why``, one
    text or one per row, says why), fewer than ``min_deals`` small. A total has no
    basis: over no deals it is 0, and it is never small. A metric whose inputs the
    export lacks is missing everywhere, its counts too.
    """
    out = g[["period", *s.by, "_group"]].copy()
    out["metric"], out["stage"], out["unit"] = metric, stage, unit
    unavailable = s.facts.missing(METRIC_NEEDS[metric])
    if unavailable:
        out["value"] = out["numerator"] = out["denominator"] = np.nan
        out["small"], out["missing"] = False, unavailable
        return out
    values = value.to_numpy(dtype=np.float64)
    counts = np.ones(len(g)) if basis is None else basis.to_numpy(dtype=np.float64)
    lacking = (counts == 0) | np.isnan(values)
    out["value"] = np.where(lacking, np.nan, values)
    out["numerator"] = numerator.to_numpy(dtype=np.float64)
    out["denominator"] = denominator.to_numpy(dtype=np.float64)
    out["small"] = (~lacking & (counts < s.min_deals)) if basis is not None else False
    out["missing"] = _where(lacking, why)
    return out


# ---------------------------------------------------------------- open pipeline
def _pipeline(s: Scope) -> pd.DataFrame:
    """Open deals at each period's end by the stage they were in: count, amounts, total."""
    empty = pd.DataFrame(
        columns=["period", *s.by, "stage", "deals", "amounts", "total", "currencies"]
    )
    if s.facts.missing(METRIC_NEEDS["open_pipeline_value"]):
        return empty
    d = s.facts.deals
    ends = edges_us(s.edges)[1:]
    created = d["created_us"].to_numpy()[:, None]
    still_open = (d["status"].to_numpy() == OPEN)[:, None] | (
        d["closed_us"].to_numpy()[:, None] >= ends[None, :]
    )
    deal, period = np.nonzero((created < ends[None, :]) & still_open)  # sorted by deal, then end
    if not len(deal):
        return empty
    code = stage_at_moments(s.facts, deal, ends[period].astype(np.int64) - 1)
    names = np.array([*OPEN_STAGES, UNKNOWN], dtype=object)
    stage = names[
        np.where(
            np.isnan(code) | (code >= len(OPEN_STAGES)), len(OPEN_STAGES), np.nan_to_num(code)
        ).astype(int)
    ]
    amount = d["amount"].to_numpy()[deal]
    currency = np.where(np.isnan(amount), None, d["currency"].to_numpy()[deal])
    frame = s.frame(period, deal, stage=stage, amount=amount, currency=currency)
    return s.aggregate(
        frame,
        extra=["stage"],
        deals=("stage", "size"),
        amounts=("amount", "count"),
        total=("amount", "sum"),
        currencies=("currency", "nunique"),
    )


def _pipeline_rows(s: Scope, grid: pd.DataFrame, pipeline: pd.DataFrame) -> pd.DataFrame:
    """Rows of the open pipeline: every open stage of every group, UNKNOWN where it occurs."""
    stages = [*OPEN_STAGES] + ([UNKNOWN] if (pipeline["stage"] == UNKNOWN).any() else [])
    keys = ["period", *s.by]
    parts = []
    for stage in stages:
        at = pipeline[pipeline["stage"] == stage].drop(columns="stage")
        g = grid.merge(at, on=keys, how="left")
        counts = ["deals", "amounts", "total", "currencies"]
        g[counts] = g[counts].astype(np.float64).fillna(0.0)
        parts.append(
            _rows(
                s,
                g,
                "open_pipeline_value",
                "amount",
                g["total"].where(g["currencies"] <= 1),
                g["amounts"],
                g["deals"],
                _currencies(g["currencies"]),
                stage=stage,
            )
        )
    return stack(parts)


# ---------------------------------------------------------------- stage durations and exits
_OUTCOMES = ("won", "lost")


def stage_durations(
    facts: Facts,
    start: Any,
    end: Any,
    by: Sequence[str] = (),
    every: Every = "period",
    min_deals: int = MIN_DEALS,
) -> pd.DataFrame:
    """Days the deals closed in the period spent in each open stage, won apart from lost.

    A deal's days in a stage add up all its stays there (a deal that moved back and
    returned stayed twice); a stay ends at the next stage change, the last one at the
    close. Columns: ``period_start, period_end, <by...>, stage, outcome, deals,
    median_days, p25_days, p75_days, small, missing``; the spread is p25 to p75.
    """
    s = Scope.of(facts, start, end, by, every, min_deals)
    keys = ["period", *s.by, "stage", "outcome"]
    values = ["deals", "median_days", "p25_days", "p75_days"]
    unavailable = facts.missing(("deals.closed_at", "stage_history"))
    stays = pd.DataFrame(columns=[*keys, *values]) if unavailable else _stays(s)
    cells = pd.DataFrame(
        [(st, o) for st in OPEN_STAGES for o in _OUTCOMES], columns=["stage", "outcome"]
    )
    full = s.grid(stays).merge(cells, how="cross").merge(stays, on=keys, how="left")
    full[values] = full[values].astype(np.float64)
    full["deals"] = full["deals"].fillna(0.0)
    full["small"] = (full["deals"] > 0) & (full["deals"] < min_deals)
    full["missing"] = _where(full["deals"].to_numpy() == 0, "no such deals closed in the period")
    if unavailable:
        full["deals"], full["small"], full["missing"] = np.nan, False, unavailable
    return s.finish(full[[*keys, *values, "small", "missing", "_group"]])


def _stays(s: Scope) -> pd.DataFrame:
    """Days in each open stage of the deals closed in the period: count, median, quartiles."""
    ch = s.facts.changes
    assert ch is not None
    d = s.facts.deals
    deal, at, stage = (ch[c].to_numpy() for c in ("deal", "at_us", "stage"))
    period_of_deal = s.bucket(d["closed_us"].to_numpy())
    last = np.r_[deal[1:] != deal[:-1], True]
    ends = np.where(last, d["closed_us"].to_numpy()[deal], np.r_[at[1:], 0].astype(np.float64))
    days = (ends - at) / DAY_US
    keep = (period_of_deal[deal] >= 0) & (stage < len(OPEN_STAGES)) & (days >= 0)
    stays = pd.DataFrame({"deal": deal[keep], "stage": stage[keep], "days": days[keep]})
    per_deal = stays.groupby(["deal", "stage"], sort=False)["days"].sum().reset_index()
    codes = per_deal["deal"].to_numpy()
    frame = s.frame(
        period_of_deal[codes],
        codes,
        stage=np.asarray(OPEN_STAGES, dtype=object)[per_deal["stage"].to_numpy()],
        outcome=np.where(d["won"].to_numpy()[codes], "won", "lost"),
        days=per_deal["days"].to_numpy(),
    )
    return s.summarise(frame, _spread, extra=["stage", "outcome"])


def _spread(groups: DataFrameGroupBy) -> pd.DataFrame:
    """Deals, median and quartiles of ``days`` per group (one vectorised pass)."""
    columns = ["median_days", "p25_days", "p75_days"]
    if not groups.ngroups:
        return pd.DataFrame(columns=["deals", *columns], index=groups.size().index)
    q = groups["days"].quantile([0.5, 0.25, 0.75]).unstack()
    q.columns = columns
    q.insert(0, "deals", groups.size())
    return q


def lost_exits(
    facts: Facts,
    start: Any,
    end: Any,
    by: Sequence[str] = (),
    every: Every = "period",
    min_deals: int = MIN_DEALS,
) -> pd.DataFrame:
    """Where the deals lost in the period left the funnel: the last open stage they were in.

    Columns: ``period_start, period_end, <by...>, stage, lost, share, small, missing``;
    ``share`` is of the group's deals lost in the period, and a lost deal whose history
    has no open stage counts under UNKNOWN.
    """
    s = Scope.of(facts, start, end, by, every, min_deals)
    unavailable = facts.missing(("deals.closed_at", "stage_history"))
    d = s.facts.deals
    last = np.full(len(d), len(OPEN_STAGES))  # UNKNOWN until the history says otherwise
    if not unavailable:
        ch = s.facts.changes
        assert ch is not None
        open_ = ch[ch["stage"] < len(OPEN_STAGES)]
        final = open_.groupby("deal", sort=False)["stage"].last()
        last[final.index.to_numpy()] = final.to_numpy()
    period = np.where(d["lost"].to_numpy(), s.bucket(d["closed_us"].to_numpy()), -1)
    stage = np.array([*OPEN_STAGES, UNKNOWN], dtype=object)[last]
    exits = s.aggregate(s.frame(period, stage=stage), extra=["stage"], lost=("stage", "size"))
    seen_unknown = not unavailable and bool((exits["stage"] == UNKNOWN).any())
    stages = pd.DataFrame({"stage": [*OPEN_STAGES, *([UNKNOWN] if seen_unknown else [])]})
    keys = ["period", *s.by, "stage"]
    full = s.grid(exits).merge(stages, how="cross").merge(exits, on=keys, how="left")
    full["lost"] = full["lost"].astype(np.float64).fillna(0.0)
    total = full.groupby(["period", *s.by], sort=False)["lost"].transform("sum")
    full["share"] = full["lost"] / total
    full["small"] = (total > 0) & (total < min_deals)
    full["missing"] = _where(total.to_numpy() == 0, "no deals lost in the period")
    if unavailable:
        full["lost"] = full["share"] = np.nan
        full["small"], full["missing"] = False, unavailable
    return s.finish(full[[*keys, "lost", "share", "small", "missing", "_group"]])
