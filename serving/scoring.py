"""Scoring deals: check them, compute their features at a moment, predict, explain.

Nothing here needs BentoML; the service wraps it and batch ranking can reuse it.

**Features of a deal sent in full.** :func:`deal_features` computes, for one deal and
one moment, exactly what :func:`leadscore.featurize.build_feature_sources` followed by
:func:`~leadscore.featurize.features_as_of` computes from the same deal as CRM tables
(the Feast definitions), but in plain Python over the deal's own rows: no pandas, about
a tenth of a millisecond per deal instead of tens of milliseconds per request. The rules are
the same ones, in the same order (activity times truncated to whole seconds, repeats of
the current stage ignored, windows as "latest feature row at or before the moment"...),
and ``tests/code/test_serving_features.py`` proves the two agree value for value on
thousands of synthetic deals at many moments. Change a definition in
:mod:`leadscore.featurize` and that test says what to change here.

Account and owner track records are not in the payload: the service adds them from the
online store (:data:`HISTORY_FEATURES`).

**Explanations.** LightGBM's own TreeSHAP (``pred_contrib=True``) splits each deal's
log-odds into one push per feature; the largest pushes either way become reasons,
phrased by :mod:`serving.reasons`. ``log_amount`` is folded into ``amount`` (one idea,
"deal size", in two encodings); SHAP values are additive, so a group's push is the sum.
"""

from __future__ import annotations

import bisect
import math
import os
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from operator import itemgetter
from typing import Any

import numpy as np
import pandas as pd
from typing_extensions import TypedDict

from leadscore.catalog import (
    FEATURES_BY_NAME,
    STALL_DAYS,
    WINDOWS_DAYS,
    features_of,
)
from leadscore.contract import ACTIVITY_TYPES, AFTER_DEAL_CREATION, STAGES
from leadscore.featurize import DAY, normalise_category, normalise_competitor
from leadscore.model import ScoringModel
from leadscore.seniority import SENIOR_LEVEL, title_seniority
from serving.reasons import Phrasebook, is_missing
from serving.schemas import (
    FUTURE_TOLERANCE,
    SUMMARY_TIMES,
    DealIn,
    Problem,
    Reason,
    ScoreWarning,
)

# ================================================================== configuration
#: Lowest score of grades A, B and C; D is everything below C.
DEFAULT_GRADE_THRESHOLDS: dict[str, int] = {"A": 60, "B": 40, "C": 20}
#: Reasons weaker than this (log-odds) are noise, not reasons.
MIN_CONTRIBUTION = 0.01
MAX_REASONS = 5
#: Features the payload cannot carry; they come from the online store.
HISTORY_FEATURES: dict[str, tuple[str, ...]] = {
    "account_history": tuple(f.name for f in features_of("account_history")),
    "owner_history": tuple(f.name for f in features_of("owner_history")),
}
#: Model features folded into another one when explaining (same idea, other encoding).
REASON_GROUPS: dict[str, str] = {"log_amount": "amount"}


def parse_grade_thresholds(text: str) -> dict[str, int]:
    """``"A=60,B=40,C=20"`` -> {"A": 60, "B": 40, "C": 20}; strictly decreasing, within 0-100."""
    out: dict[str, int] = {}
    for part in text.split(","):
        grade, _, value = part.partition("=")
        out[grade.strip().upper()] = int(value)
    if list(out) != ["A", "B", "C"]:
        raise ValueError(f"grade thresholds must give A, B and C in that order, got {text!r}")
    a, b, c = out.values()
    if not 100 >= a > b > c >= 0:
        raise ValueError(f"grade thresholds must decrease within 0-100, got {text!r}")
    return out


@dataclass(frozen=True)
class ServingConfig:
    """Serving policy, read once from the environment when the service starts."""

    grade_thresholds: Mapping[str, int]
    #: Bearer token required on scoring endpoints; None leaves them open.
    api_token: str | None = None
    #: Seconds an account's or owner's track record is reused before asking the store again.
    history_ttl_seconds: float = 300.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> ServingConfig:
        """``LEADSCORE_GRADE_THRESHOLDS`` ("A=60,B=40,C=20"), ``LEADSCORE_API_TOKEN``,
        ``LEADSCORE_HISTORY_TTL_SECONDS``."""
        thresholds = env.get("LEADSCORE_GRADE_THRESHOLDS")
        return cls(
            grade_thresholds=parse_grade_thresholds(thresholds)
            if thresholds
            else DEFAULT_GRADE_THRESHOLDS,
            api_token=env.get("LEADSCORE_API_TOKEN") or None,
            history_ttl_seconds=float(env.get("LEADSCORE_HISTORY_TTL_SECONDS", 300)),
        )


def grade_of(score: int, thresholds: Mapping[str, int]) -> str:
    for grade, lowest in thresholds.items():
        if score >= lowest:
            return grade
    return "D"


# ================================================================== checks
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def _us(t: datetime) -> int:
    """Exact integer microseconds since the epoch (pandas' datetime64[us] value)."""
    return (t - _EPOCH) // _US


def deal_problems(deal: DealIn, as_of: datetime, now: datetime) -> list[Problem]:
    """Impossible values a type check cannot see; each names its field (loc within the deal).

    The CRM contract's rules: nothing closes before it is created, no event precedes
    the deal's creation, no time lies in the future (beyond :data:`FUTURE_TOLERANCE`),
    a contact is attached once. And a deal cannot be scored before it exists.
    """
    problems: list[Problem] = []
    latest = now + FUTURE_TOLERANCE

    def bad(loc: tuple[str | int, ...], msg: str) -> None:
        problems.append(Problem(loc=list(loc), msg=msg, type="invalid_value"))

    def check_time(loc: tuple[str | int, ...], t: datetime | None, after_creation: bool) -> None:
        if t is None:
            return
        if t > latest:
            bad(loc, f"is in the future ({t.isoformat()}; tolerance {FUTURE_TOLERANCE})")
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
            check_time((name, i, column), getattr(row, column), True)
    if deal.activity_summary is not None:
        if deal.activities is not None:
            bad(("activity_summary",), "send either activities or activity_summary, not both")
        for name in SUMMARY_TIMES:
            check_time(("activity_summary", name), getattr(deal.activity_summary, name), True)
    seen: set[str] = set()
    for i, contact in enumerate(deal.contacts or ()):
        if contact.contact_id in seen:
            bad(("contacts", i, "contact_id"), "appears more than once on the deal")
        seen.add(contact.contact_id)
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
        if getattr(deal, name) is None:
            warn(name, f"No {name} sent: scored as unknown.")
    return out


# ================================================================== features of a sent deal
#: Seniority of a job title, by the feature pipeline's own parser. Cached: titles recur
#: ("VP Sales", "采购经理"), so each distinct one is parsed once.
title_level = lru_cache(maxsize=100_000)(title_seniority)


@lru_cache(maxsize=10_000)
def _cached_category(value: str | None) -> str | None:
    return None if value is None else normalise_category(pd.Series([value])).iloc[0]


@lru_cache(maxsize=10_000)
def _cached_competitor(value: str | None) -> str:
    return normalise_competitor(pd.Series([value], dtype=object)).iloc[0]


def _days(as_of_us: int, t_us: int | None) -> float:
    """Days between two instants, computed as pandas does (int microseconds / 1e6 / DAY)."""
    return math.nan if t_us is None else (as_of_us - t_us) / 1_000_000 / DAY


_STAGE_INDEX = {s: i for i, s in enumerate(STAGES)}
_NAN = math.nan


def _profile(deal: DealIn, f: dict[str, Any]) -> None:
    f["channel"] = _cached_category(deal.channel)
    f["competitor"] = _cached_competitor(deal.competitor)
    f["product"] = _cached_category(deal.product)
    amount = _NAN if deal.amount is None else float(deal.amount)
    f["amount"] = amount
    f["log_amount"] = float(np.log1p(amount))
    acc = deal.account
    f["industry"] = _cached_category(acc.industry) if acc else None
    f["region"] = _cached_category(acc.region) if acc else None
    f["employee_count"] = (
        float(acc.employee_count) if acc and acc.employee_count is not None else _NAN
    )
    f["annual_revenue"] = (
        float(acc.annual_revenue) if acc and acc.annual_revenue is not None else _NAN
    )


def _stage(deal: DealIn, as_of_us: int, f: dict[str, Any]) -> tuple[int | None, float]:
    """Funnel state after the last stage entry at or before the moment.

    Returns (stage_entered_at, long_stays) for the request-time features.
    """
    prev_index: int | None = None
    prev_at = 0
    changes = backward = long_stays = 0
    entered: int | None = None
    for entry in sorted(deal.stage_history or (), key=lambda e: e.entered_at):
        at = _us(entry.entered_at)
        if at > as_of_us:
            break
        index = _STAGE_INDEX[entry.stage]
        if index == prev_index:
            continue  # re-entering the current stage is not a change
        if prev_index is not None:
            changes += 1
            backward += index < prev_index
            long_stays += (at - prev_at) / 1_000_000 > STALL_DAYS * DAY
        prev_index, prev_at, entered = index, at, at
    if entered is None:
        f["stage_index"] = f["stage_changes"] = f["backward_moves"] = _NAN
        return None, _NAN
    f["stage_index"] = float(prev_index)  # type: ignore[arg-type]  # set with `entered`
    f["stage_changes"] = float(changes)
    f["backward_moves"] = float(backward)
    return entered, float(long_stays)


def _contacts(deal: DealIn, as_of_us: int, f: dict[str, Any]) -> None:
    n = senior = economic_buyer = 0
    top = -1.0
    for contact in sorted(deal.contacts or (), key=lambda c: c.added_at):
        if _us(contact.added_at) > as_of_us:
            break
        n += 1
        level = title_level(contact.title)
        if level == level:  # not NaN
            top = max(top, level)
            senior += level >= SENIOR_LEVEL
        economic_buyer |= contact.role == "economic_buyer"
    if n == 0:
        for name in ("n_contacts", "max_seniority", "n_senior_contacts", "has_economic_buyer"):
            f[name] = _NAN
        return
    f["n_contacts"] = float(n)
    f["max_seniority"] = _NAN if top == -1 else top
    f["n_senior_contacts"] = float(senior)
    f["has_economic_buyer"] = float(economic_buyer)


_ACTIVITY_FEATURES = tuple(f.name for f in features_of("deal_activity"))


def _activities(deal: DealIn, as_of_us: int, f: dict[str, Any]) -> tuple[int | None, ...]:
    """Engagement as of the moment, from the activity list.

    Mirrors ``featurize.activity_source``: times in whole seconds (up); the feature row in
    force is the latest activity or window expiry ("activity time + w days") at or before
    the moment, and window counts are taken over (row - w days, row]. Every activity at
    or before the moment is at or before that row, so only those ("known") matter.
    Returns (last_activity_at, last_inbound_at, awaiting_reply_since) in microseconds.
    """
    # Whole seconds rounded up, as the pipeline stores them: nothing is seen before it happened.
    acts = sorted(
        ((-(-_us(a.occurred_at) // 1_000_000), a) for a in deal.activities or ()), key=itemgetter(0)
    )
    times = [t for t, _ in acts]
    now = as_of_us // 1_000_000  # a row at whole second s is in force iff s <= now
    n = bisect.bisect_right(times, now)
    if n == 0:
        for name in _ACTIVITY_FEATURES:
            f[name] = _NAN
        return None, None, None
    row = max(
        times[i] + w * DAY
        for w in (0, *WINDOWS_DAYS)
        if (i := bisect.bisect_right(times, now - w * DAY, 0, n) - 1) >= 0
    )
    by_type: dict[str, list[int]] = {kind: [] for kind in ACTIVITY_TYPES}
    inbound: list[int] = []
    outbound: list[int] = []
    visited: set[str] = set()
    visits = first_visits = senior_met = 0
    levels = {c.contact_id: title_level(c.title) for c in deal.contacts or ()}
    for t, a in acts[:n]:
        by_type[a.type].append(t)
        if a.direction == "inbound":
            inbound.append(t)
        elif a.direction == "outbound":
            outbound.append(t)
        if a.type == "visit":
            visits += 1
            contact = a.contact_id or ""
            first_visits += contact not in visited
            visited.add(contact)
        if a.type in ("meeting", "visit") and levels.get(a.contact_id or "", _NAN) >= SENIOR_LEVEL:
            senior_met = 1
    for w in WINDOWS_DAYS:
        lower = row - w * DAY
        for kind, kind_times in by_type.items():
            f[f"act_{kind}_{w}d"] = float(len(kind_times) - bisect.bisect_right(kind_times, lower))
        f[f"act_total_{w}d"] = float(n - bisect.bisect_right(times, lower, 0, n))
    f["n_activities"] = float(n)
    f["share_inbound"] = len(inbound) / n
    f["first_visits"] = float(first_visits)
    f["followup_visits"] = float(visits - first_visits)
    f["senior_met"] = float(senior_met)

    # Replies: our first outbound after one or more inbound, timed from the earliest of them.
    first_ask: dict[int, int] = {}
    for t in inbound:
        reply = bisect.bisect_right(outbound, t)
        if reply < len(outbound):
            first_ask.setdefault(reply, t)
    latencies = [(outbound[i] - first_ask[i]) / 3600.0 for i in sorted(first_ask)]
    f["median_reply_hours"] = statistics.median(latencies) if latencies else _NAN

    # The customer waits when an inbound activity came after our last outbound one.
    waiting = bisect.bisect_right(inbound, outbound[-1]) if outbound else 0
    return (
        times[n - 1] * 1_000_000,
        inbound[-1] * 1_000_000 if inbound else None,
        inbound[waiting] * 1_000_000 if waiting < len(inbound) else None,
    )


def _summary(deal: DealIn, f: dict[str, Any]) -> tuple[int | None, ...]:
    """Engagement as the CRM pre-summarised it: the deal_activity view's values, as sent."""
    s = deal.activity_summary
    for name in _ACTIVITY_FEATURES:
        value = getattr(s, name)
        f[name] = _NAN if value is None else float(value)
    return tuple(None if (t := getattr(s, name)) is None else _us(t) for name in SUMMARY_TIMES)


def deal_features(deal: DealIn, as_of: datetime) -> dict[str, Any]:
    """Every payload-derived model feature of one deal at ``as_of`` (history features excluded).

    Categorical values are normalised strings (None when missing), the rest floats
    (NaN when missing), as :func:`leadscore.featurize.model_frame` holds them.
    """
    as_of_us = _us(as_of)
    f: dict[str, Any] = {}
    _profile(deal, f)
    entered, long_stays = _stage(deal, as_of_us, f)
    _contacts(deal, as_of_us, f)
    if deal.activity_summary is not None:
        last_activity, last_inbound, awaiting = _summary(deal, f)
    else:
        last_activity, last_inbound, awaiting = _activities(deal, as_of_us, f)
    # Request-time features, as featurize.request_time_features computes them.
    f["deal_age_days"] = _days(as_of_us, _us(deal.created_at))
    days_in_stage = _days(as_of_us, entered)
    f["days_in_stage"] = days_in_stage
    f["stalls"] = f["backward_moves"] + long_stays + float(days_in_stage > STALL_DAYS)
    f["days_since_last_activity"] = _days(as_of_us, last_activity)
    f["days_since_last_inbound"] = _days(as_of_us, last_inbound)
    if last_activity is None:
        f["hours_awaiting_reply"] = _NAN
    else:
        f["hours_awaiting_reply"] = 0.0 if awaiting is None else _days(as_of_us, awaiting) * 24.0
    return f


# ================================================================== explanation
class Explanation(TypedDict):
    """What the model says about one deal (a :class:`ScoreResult` without the bookkeeping)."""

    probability: float
    score: int
    grade: str
    positive_reasons: list[Reason]
    negative_reasons: list[Reason]


class Explainer:
    """A scoring model with the serving policy: calibrated score, grade, reasons in words."""

    def __init__(
        self,
        model: ScoringModel,
        grade_thresholds: Mapping[str, int] = DEFAULT_GRADE_THRESHOLDS,
        max_reasons: int = MAX_REASONS,
        min_contribution: float = MIN_CONTRIBUTION,
    ) -> None:
        self.model = model
        self.grade_thresholds = dict(grade_thresholds)
        self.max_reasons = max_reasons
        self.min_contribution = min_contribution
        self.phrasebook = Phrasebook(model.reason_stats)
        grouped = [REASON_GROUPS.get(name, name) for name in model.features]
        self.reason_features = list(dict.fromkeys(grouped))
        position = {name: k for k, name in enumerate(self.reason_features)}
        #: (model features x reason features) 0/1 matrix: contributions @ group sums groups.
        self._group = np.zeros((len(grouped), len(self.reason_features)))
        for j, name in enumerate(grouped):
            self._group[j, position[name]] = 1.0

    def explain(self, records: Sequence[Mapping[str, Any]]) -> list[Explanation]:
        """Score and explain deals given as feature dicts (extra keys ignored)."""
        if not records:
            return []
        X = self.model.encode_records(records)
        probability = self.model.probability(X).tolist()
        pushes = self.model.contributions(X)[:, :-1] @ self._group
        order = np.argsort(pushes, axis=1, kind="stable")
        k, floor = self.max_reasons, self.min_contribution
        out: list[Explanation] = []
        for record, p, row, ranked in zip(
            records, probability, pushes.tolist(), order.tolist(), strict=True
        ):
            score = int(round(100 * p))
            out.append(
                {
                    "probability": p,
                    "score": score,
                    "grade": grade_of(score, self.grade_thresholds),
                    "positive_reasons": [
                        self._reason(j, row[j], record) for j in ranked[::-1][:k] if row[j] > floor
                    ],
                    "negative_reasons": [
                        self._reason(j, row[j], record) for j in ranked[:k] if row[j] < -floor
                    ],
                }
            )
        return out

    def _reason(self, j: int, push: float, record: Mapping[str, Any]) -> Reason:
        name = self.reason_features[j]
        value = record.get(name)
        text, tooltip = self.phrasebook.phrase(name, value)
        return {
            "feature": name,
            "label": FEATURES_BY_NAME[name].label,
            "value": None if is_missing(value) else value,
            "contribution": round(push, 4),
            "text": text,
            "tooltip": tooltip,
        }

    def unseen_category_warnings(self, record: Mapping[str, Any]) -> list[ScoreWarning]:
        """Categories the model never saw: scored down LightGBM's missing/other branch."""
        return [
            {
                "field": name,
                "message": f"{name} {record[name]!r} was not seen in training; scored as an unknown {name}.",
            }
            for name in self.model.unseen_categories([record])[0]
        ]
