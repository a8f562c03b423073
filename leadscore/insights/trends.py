"""Each funnel metric by month, with its change on the month before and the year before.

A change compares a month with the same group's value one month and twelve months
earlier: ``*_change`` is the difference (for a share, in points: 0.05 is 5 points) and
``*_pct`` the relative change (0.1 is 10% up), missing when either value is missing or
the earlier one is 0. The year-on-year change of a month needs the same month a year
before, so :func:`funnel_trends` computes thirteen months more than it shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from leadscore.insights.facts import MIN_DEALS, Facts, period_edges, resolve_cuts
from leadscore.insights.funnel import funnel_metrics

#: Change columns :func:`with_changes` adds: (name prefix, months back).
CHANGES: tuple[tuple[str, int], ...] = (("mom", 1), ("yoy", 12))


def with_changes(frame: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """``frame`` (monthly ``period_start``, ``value``) with month-on-month and year-on-year
    changes of ``value`` within each group of ``keys`` (``mom_change``, ``mom_pct``,
    ``yoy_change``, ``yoy_pct``). Works on any monthly insight frame, rep numbers too."""
    out = frame.copy()
    keys = list(keys)
    # Missing keys (a metric without a stage) must still match themselves.
    key_frame = out[keys].astype(object).where(out[keys].notna(), "")
    for prefix, months in CHANGES:
        earlier = key_frame.assign(
            period_start=out["period_start"] + pd.DateOffset(months=months),
            _earlier=out["value"].to_numpy(dtype=np.float64),
        )
        matched = key_frame.assign(period_start=out["period_start"]).merge(
            earlier, on=[*keys, "period_start"], how="left"
        )
        before = matched["_earlier"].to_numpy(dtype=np.float64)
        now = out["value"].to_numpy(dtype=np.float64)
        out[f"{prefix}_change"] = now - before
        with np.errstate(divide="ignore", invalid="ignore"):
            out[f"{prefix}_pct"] = np.where(before != 0, now / before - 1.0, np.nan)
    return out


def funnel_trends(
    facts: Facts, start: Any, end: Any, by: Sequence[str] = (), min_deals: int = MIN_DEALS
) -> pd.DataFrame:
    """:func:`~leadscore.insights.funnel.funnel_metrics` of each calendar month the window
    overlaps, with :func:`with_changes`' columns."""
    first = period_edges(start, end, "month")[0]
    names = resolve_cuts(facts, by)
    monthly = funnel_metrics(
        facts, first - pd.DateOffset(months=12), end, names, "month", min_deals
    )
    out = with_changes(monthly, [*names, "metric", "stage"])
    return out[out["period_start"] >= first].reset_index(drop=True)
