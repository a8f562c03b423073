"""The five numbers per rep a B2B sales manager reviews every week, against the team.

Closed, committed, opportunities, leads and visits (first and follow-up apart): what
each rep turned into a win, pushed to commitment, qualified, brought in and went out
to see, week by week or month by month. Each number is an event count dated when it
happened, so a week's numbers add up to the month's:

* ``leads``: deals created;
* ``opportunities``: deals that first reached the opportunity stage (``qualified``);
* ``committed``: deals that first reached ``committed``;
* ``closed``: deals won (closed as won; a lost deal closes nothing);
* ``first_visits`` / ``followup_visits``: visits logged on the rep's deals, a first
  visit being the first one of its contact on the deal (the model's rule).

The contract has no team column, so the team is every deal of the export: the team
total counts all of them (deals without an owner included), and the team's number per
rep divides the total of owned deals by the reps with any number in the window.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import pandas as pd

from leadscore.insights.facts import (
    ALL,
    COMMITTED_STAGE,
    MIN_DEALS,
    OPPORTUNITY_STAGE,
    UNKNOWN,
    Facts,
    Scope,
)

OWNER = "owner_id"
#: The five numbers (visits in two), in the order a manager reads them.
REP_NUMBERS: dict[str, str] = {
    "closed": "Deals won.",
    "committed": f"Deals that first reached '{COMMITTED_STAGE}'.",
    "opportunities": f"Deals that first reached '{OPPORTUNITY_STAGE}' (became opportunities).",
    "leads": "Deals created.",
    "first_visits": "Visits to a contact not visited on the deal before.",
    "followup_visits": "Visits to a contact visited on the deal before.",
}
_NEEDS: dict[str, tuple[str, ...]] = {
    "closed": ("deals.closed_at",),
    "committed": ("stage_history",),
    "opportunities": ("stage_history",),
    "leads": ("deals.created_at",),
    "first_visits": ("activities",),
    "followup_visits": ("activities",),
}


def rep_numbers(
    facts: Facts, start: Any, end: Any, every: Literal["week", "month"] = "week"
) -> pd.DataFrame:
    """Each rep's five numbers per week (Monday 00:00 UTC) or calendar month.

    Columns: ``period_start, period_end, owner_id, number, value, team_total,
    team_per_rep, reps, missing``. One row per bucket, rep seen in the window (deals
    without an owner as UNKNOWN) and number; a number the export cannot give is NaN
    with the reason. Raises :class:`~leadscore.insights.facts.CutUnavailable` when deals
    have no ``owner_id``: without owners there are no reps to compare.
    """
    s = Scope.of(facts, start, end, [OWNER], every, MIN_DEALS)
    events = _events(facts)
    counted = s.aggregate(
        s.frame(
            s.bucket(events["at_us"].to_numpy()),
            events["deal"].to_numpy(),
            number=events["number"],
            n=events["n"],
        ),
        extra=["number"],
        value=("n", "sum"),
    )
    numbers = pd.DataFrame({"number": list(REP_NUMBERS)})
    full = s.grid(counted).merge(numbers, how="cross")
    full = full.merge(counted, on=["period", OWNER, "number"], how="left")
    full["value"] = full["value"].astype(np.float64).fillna(0.0)
    team = full[full[OWNER] == ALL].set_index(["period", "number"])["value"]
    reps = full.loc[(full[OWNER] != ALL) & (full[OWNER] != UNKNOWN), OWNER].nunique()
    owned = (
        full[(full[OWNER] != ALL) & (full[OWNER] != UNKNOWN)]
        .groupby(["period", "number"])["value"]
        .sum()
    )
    key = pd.MultiIndex.from_frame(full[["period", "number"]])
    full["team_total"] = team.reindex(key).to_numpy()
    full["team_per_rep"] = owned.reindex(key).fillna(0.0).to_numpy() / reps if reps else np.nan
    full["reps"] = reps
    full["missing"] = full["number"].map({n: facts.missing(_NEEDS[n]) for n in REP_NUMBERS})
    unavailable = full["missing"].notna()
    full.loc[unavailable, ["value", "team_total", "team_per_rep"]] = np.nan
    full = full[full[OWNER] != ALL].assign(
        _number=full["number"].map({n: i for i, n in enumerate(REP_NUMBERS)})
    )
    columns = ["period", OWNER, "number", "value", "team_total", "team_per_rep", "reps", "missing"]
    return s.finish(full[[*columns, "_group", "_number"]], order=["_number"])


def _events(facts: Facts) -> pd.DataFrame:
    """Every dated event behind a number: deal code, moment, number, count."""
    d = facts.deals
    code = np.arange(len(d))
    parts = [
        ("leads", code, d["created_us"].to_numpy(), np.ones(len(d))),
        ("opportunities", code, d[f"reached_{OPPORTUNITY_STAGE}_us"].to_numpy(), np.ones(len(d))),
        ("committed", code, d[f"reached_{COMMITTED_STAGE}_us"].to_numpy(), np.ones(len(d))),
        ("closed", code, np.where(d["won"], d["closed_us"], np.nan), np.ones(len(d))),
    ]
    if facts.visits is not None:
        v = facts.visits
        for number, column in (("first_visits", "first"), ("followup_visits", "followup")):
            parts.append(
                (number, v["deal"].to_numpy(), v["at_us"].to_numpy(), v[column].to_numpy())
            )
    frames = [
        pd.DataFrame({"deal": deal, "at_us": at, "number": number, "n": n})
        for number, deal, at, n in parts
    ]
    out = pd.concat(frames, ignore_index=True)
    return out[out["at_us"].notna() & (out["n"] > 0)].reset_index(drop=True)
