"""Deals sent in full by a CRM: check them and compute their features at a moment.

Nothing here needs BentoML; the service wraps it.

**Features of deals sent in full.** :func:`payload_features` turns the deals' contacts,
activities and stage history into the event arrays of :mod:`leadscore.features.deal_state` and
runs the kernels that build the Feast source rows, asked for the one moment ``as_of``;
the request-time features come from the function Feast's ``deal_timing`` view calls.
There is no second implementation to keep in step: only the reading of the payload
(times rounded up to whole seconds, stages and types as codes) is done here, and
``tests/code/test_serving_features.py`` checks it against the same deals read as CRM
tables by the pipeline, value for value, at many moments.

Account and owner track records are not in the payload: the service adds them from the
online store (:data:`HISTORY_FEATURES`).

Scores and reasons come from :class:`leadscore.model.explain.Explainer`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from leadscore.crm.contract import AFTER_DEAL_CREATION, API_CLOCK_SKEW
from leadscore.features.catalog import FEATURES, activity_features, features_of
from leadscore.features.deal_state import (
    ACTIVITY_CODES,
    DIRECTION_CODES,
    STAGE_CODES,
    UNKNOWN_DIRECTION,
    US,
    ActivityEvents,
    ContactEvents,
    Queries,
    StageEvents,
    activity_at,
    contacts_at,
    seconds_up,
    sort_events,
    stage_at,
    timing_features,
)
from leadscore.features.featurize import normalise_category, normalise_competitor
from leadscore.features.seniority import title_seniority
from serving.schemas import (
    EXAMPLE_DEAL,
    SUMMARY_TIMES,
    AccountIn,
    DealIn,
    Problem,
    ScoreWarning,
)

# ================================================================== configuration
#: Features the payload cannot carry; they come from the online store.
HISTORY_FEATURES: dict[str, tuple[str, ...]] = {
    "account_history": tuple(f.name for f in features_of("account_history")),
    "owner_history": tuple(f.name for f in features_of("owner_history")),
}


# ================================================================== checks
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def _us(t: datetime) -> int:
    """Exact integer microseconds since the epoch (pandas' datetime64[us] value)."""
    return (t - _EPOCH) // _US


def deal_problems(deal: DealIn, as_of: datetime, now: datetime) -> list[Problem]:
    """Impossible values a type check cannot see; each names its field (loc within the deal).

    The CRM contract's rules: nothing closes before it is created, no event precedes
    the deal's creation, no time lies in the future (beyond the clock skew
    :data:`~leadscore.crm.contract.API_CLOCK_SKEW`), a contact is attached once. And a
    deal cannot be scored before it exists.
    """
    problems: list[Problem] = []
    latest = now + API_CLOCK_SKEW

    def bad(loc: tuple[str | int, ...], msg: str) -> None:
        problems.append(Problem(loc=list(loc), msg=msg, type="invalid_value"))

    def check_time(loc: tuple[str | int, ...], t: datetime | None, after_creation: bool) -> None:
        if t is None:
            return
        if t > latest:
            bad(loc, f"is in the future ({t.isoformat()}; tolerance {API_CLOCK_SKEW})")
        elif after_creation and t < deal.created_at:
            bad(loc, "is before the deal's created_at")

    check_time(("created_at",), deal.created_at, False)
    if deal.created_at > as_of and deal.created_at <= latest:
        bad(("created_at",), f"is after the moment of scoring (as_of {as_of.isoformat()})")
    if deal.closed_at is not None and deal.closed_at < deal.created_at:
        bad(("closed_at",), "is before created_at: a deal cannot close before it is created")
    else:
        check_time(("closed_at",), deal.closed_at, False)
    # Payload lists and the contract tables they stand for; fields are named as the columns.
    rows = {
        "contacts": AFTER_DEAL_CREATION["deal_contacts"],
        "activities": AFTER_DEAL_CREATION["activities"],
        "stage_history": AFTER_DEAL_CREATION["stage_history"],
    }
    for name, column in rows.items():
        for i, row in enumerate(getattr(deal, name) or ()):
            check_time((name, i, column), row[column], True)
    if deal.activity_summary is not None:
        if deal.activities is not None:
            bad(("activity_summary",), "send either activities or activity_summary, not both")
        for name in SUMMARY_TIMES:
            check_time(("activity_summary", name), getattr(deal.activity_summary, name), True)
    seen: set[str] = set()
    for i, contact in enumerate(deal.contacts or ()):
        if contact["contact_id"] in seen:
            bad(("contacts", i, "contact_id"), "appears more than once on the deal")
        seen.add(contact["contact_id"])
    return problems


def input_warnings(deal: DealIn) -> list[ScoreWarning]:
    """Optional data the deal came without; it is scored with those features unknown."""
    out: list[ScoreWarning] = []

    def warn(field: str, message: str) -> None:
        out.append({"field": field, "message": message})

    if deal.activities is None and deal.activity_summary is None:
        warn(
            "activities", "No activities or activity_summary sent: engagement is scored as unknown."
        )
    if deal.stage_history is None:
        warn("stage_history", "No stage_history sent: funnel position is scored as unknown.")
    if deal.contacts is None:
        warn("contacts", "No contacts sent: the buying committee is scored as unknown.")
    if deal.account is None:
        warn(
            "account",
            "No account details sent: industry, region and company size are scored as unknown.",
        )
    for name in ("channel", "product", "amount"):
        value = getattr(deal, name)
        if value is None:
            warn(name, f"No {name} sent: scored as unknown.")
        elif isinstance(value, str) and not value.strip():
            warn(name, f"{name} is blank: scored as unknown.")
    return out


# ================================================================== features of sent deals
#: Seniority of a job title, by the feature pipeline's own parser. Cached: titles recur
#: ("VP Sales", "采购经理"), so each distinct one is parsed once.
title_level = lru_cache(maxsize=100_000)(title_seniority)


@lru_cache(maxsize=10_000)
def _cached_category(value: str | None) -> str | None:
    """The category as the pipeline normalises it; None when missing or blank."""
    if value is None:
        return None
    normalised = normalise_category(pd.Series([value])).iloc[0]
    return None if pd.isna(normalised) else normalised


@lru_cache(maxsize=10_000)
def _cached_competitor(value: str | None) -> str:
    return normalise_competitor(pd.Series([value], dtype=object)).iloc[0]


_NO_ACCOUNT = AccountIn()
#: Features computed from the deal's events; profile and track records come separately.
_EVENT_FEATURES = tuple(
    f.name
    for f in FEATURES
    if f.view in ("deal_stage", "deal_contacts", "deal_activity", "deal_timing")
)
_ACTIVITY_FEATURES = tuple(f.name for f in activity_features())


def _profiles(deals: Sequence[DealIn]) -> dict[str, list[Any]]:
    """What the deals are, normalised as the ``deal_profile`` source normalises it."""
    accounts = [d.account or _NO_ACCOUNT for d in deals]
    amount = np.array([d.amount for d in deals], dtype=np.float64)  # None becomes NaN
    return {
        "channel": [_cached_category(d.channel) for d in deals],
        "competitor": [_cached_competitor(d.competitor) for d in deals],
        "product": [_cached_category(d.product) for d in deals],
        "amount": amount.tolist(),
        "log_amount": np.log1p(amount).tolist(),
        "industry": [_cached_category(a.industry) for a in accounts],
        "region": [_cached_category(a.region) for a in accounts],
        "employee_count": np.array([a.employee_count for a in accounts], dtype=np.float64).tolist(),
        "annual_revenue": np.array([a.annual_revenue for a in accounts], dtype=np.float64).tolist(),
    }


def _sorted(
    deal: list[int], t: list[int] | np.ndarray, *columns: list[Any] | np.ndarray
) -> tuple[np.ndarray, ...]:
    """Event columns as arrays, in the order the feature pipeline sorts them (deal, time)."""
    d, times = np.array(deal, dtype=np.int64), np.array(t, dtype=np.int64)
    order = sort_events(d, times)
    return (d[order], times[order], *(np.asarray(c)[order] for c in columns))


def _stage_events(deals: Sequence[DealIn]) -> StageEvents:
    deal, t, stage = [], [], []
    for i, d in enumerate(deals):
        for entry in d.stage_history or ():
            deal.append(i)
            t.append(_us(entry["entered_at"]))
            stage.append(STAGE_CODES[entry["stage"]])
    return StageEvents(*_sorted(deal, t, np.array(stage, dtype=np.int64)))


def _contact_events(deals: Sequence[DealIn]) -> ContactEvents:
    deal, t, level, buyer = [], [], [], []
    for i, d in enumerate(deals):
        for c in d.contacts or ():
            deal.append(i)
            t.append(_us(c["added_at"]))
            level.append(title_level(c.get("title")))
            buyer.append(c.get("role") == "economic_buyer")
    return ContactEvents(
        *_sorted(deal, t, np.array(level, dtype=np.float64), np.array(buyer, dtype=bool))
    )


def _activity_events(deals: Sequence[DealIn]) -> ActivityEvents:
    """Activity lists as the pipeline stores them: whole seconds, rounded up.

    Column by column rather than activity by activity: a batch carries tens of
    thousands of activities, and this is the only per-activity Python work.
    """
    deal: list[int] = []
    t: list[int] = []
    kind: list[int] = []
    direction: list[int] = []
    contact: list[int] = []
    level: list[float] = []
    codes: dict[str, int] = {}
    for i, d in enumerate(deals):
        acts = d.activities
        if not acts:
            continue
        levels = {c["contact_id"]: title_level(c.get("title")) for c in d.contacts or ()}
        who = [a.get("contact_id") or "" for a in acts]
        deal += [i] * len(acts)
        t += [(a["occurred_at"] - _EPOCH) // _US for a in acts]
        kind += [ACTIVITY_CODES[a["type"]] for a in acts]
        direction += [DIRECTION_CODES.get(a.get("direction"), UNKNOWN_DIRECTION) for a in acts]
        contact += [codes.setdefault(w, len(codes)) for w in who]
        level += [levels.get(w, math.nan) for w in who]
    return ActivityEvents(
        *_sorted(
            deal,
            seconds_up(np.array(t, dtype=np.int64)),
            np.array(kind, dtype=np.int64),
            np.array(direction, dtype=np.int64),
            np.array(contact, dtype=np.int64),
            np.array(level, dtype=np.float64),
        )
    )


def compile_feature_kernels() -> None:
    """Run the feature kernels once on the API's example deal.

    numba compiles them on first use (about ten seconds on a new machine, then cached
    on disk); the service does it while starting, not in its first CRM request.
    """
    deal = DealIn.model_validate(EXAMPLE_DEAL)
    payload_features([deal], deal.created_at + timedelta(days=30))


def payload_features(deals: Sequence[DealIn], as_of: datetime) -> dict[str, list[Any]]:
    """Every payload-derived model feature of the deals at ``as_of`` (track records excluded), as columns.

    The deals become the event arrays of :mod:`leadscore.features.deal_state` and go through the
    kernels that build the Feast source rows, asked for one moment instead of every
    moment of change; :func:`~leadscore.features.deal_state.timing_features` then gives the
    request-time features, as Feast's ``deal_timing`` view does. A deal sent with an
    ``activity_summary`` takes its engagement features as sent.

    Categorical values are normalised strings (None when missing), the rest floats
    (NaN when missing), as :func:`leadscore.features.featurize.model_frame` holds them; each
    column has one value per deal, in the order given.
    """
    n, as_of_us = len(deals), _us(as_of)
    moment = Queries.one_per_deal(n, as_of_us)
    state = {
        **stage_at(_stage_events(deals), moment, n),
        **contacts_at(_contact_events(deals), moment, n),
        **activity_at(_activity_events(deals), Queries.one_per_deal(n, as_of_us // US), n),
    }
    for name in SUMMARY_TIMES:  # seconds, as stored; the timing features want microseconds
        state[name] = state[name] * US
    for i, deal in enumerate(deals):
        if deal.activity_summary is not None:
            for name in (*_ACTIVITY_FEATURES, *SUMMARY_TIMES):
                value = getattr(deal.activity_summary, name)
                state[name][i] = (
                    math.nan if value is None else _us(value) if name in SUMMARY_TIMES else value
                )
    state.update(
        timing_features(
            np.full(n, float(as_of_us)),
            np.array([float(_us(d.created_at)) for d in deals]),
            state["stage_entered_at"],
            state["backward_moves"],
            state["long_stays"],
            state["last_activity_at"],
            state["last_inbound_at"],
            state["awaiting_reply_since"],
        )
    )
    return {**_profiles(deals), **{name: state[name].tolist() for name in _EVENT_FEATURES}}
