"""Reasons in words: a feature, the deal's value of it, and a fact from the training data.

A reason has two parts. ``text`` says what the deal looks like ("No activity for 37
days", "Referral channel"); ``tooltip`` says why that matters, with the training slice's
numbers ("Deals this quiet (22 days or more without activity) were won 10% of the time,
against 26% overall, 118 deals."). Both come from the feature catalog (labels, units,
kinds) and the model's ``reason_stats`` (see :mod:`leadscore.model.reason_stats`); a feature
without statistics gets no tooltip rather than an invented one.

Phrasing is pure Python on small values and is cached per (feature, value), since the
same values recur across deals.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from leadscore.crm.contract import STAGES
from leadscore.features.catalog import FEATURES_BY_NAME, Feature
from leadscore.features.seniority import LABELS as SENIORITY_NAMES
from leadscore.model.reason_stats import lookup

#: Features shown as percentages.
PERCENT_FEATURES = frozenset({"share_inbound", "account_prior_win_rate", "owner_prior_win_rate"})

Value = float | str | None


def is_missing(value: Value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _singular(label: str) -> str:
    """'calls in the last 7 days' -> 'call in the last 7 days', 'activities so far' -> 'activity so far'."""
    return re.sub(
        r"\b(\w+?)(ies|s)\b(?!')", lambda m: m[1] + ("y" if m[2] == "ies" else ""), label, count=1
    )


def _count(n: float, label: str) -> str:
    """'no calls', '1 call', '3 calls' for a plural label."""
    if n == 0:
        return f"no {label}"
    return f"{n:,.0f} {_singular(label) if round(n) == 1 else label}"


def _shown(category: str) -> str:
    """A normalised category as a person writes it: 'paid_ads' -> 'paid ads'."""
    return category.replace("_", " ")


def format_value(feature: Feature, value: float) -> str:
    """A number as a person writes it, with its unit: $24,000, 37 days, 41%."""
    if feature.name in PERCENT_FEATURES:
        return f"{value:.0%}"
    if feature.unit == "USD":
        return f"${value:,.0f}"
    if feature.unit in ("days", "hours") and 0 < value < 1:
        return f"under {'a day' if feature.unit == 'days' else 'an hour'}"
    if feature.unit in ("days", "hours", "employees"):
        return _count(value, feature.unit) if value else f"0 {feature.unit}"
    if feature.integer or feature.kind == "binary":
        return f"{value:,.0f}"
    return f"{value:,.3g}"


def _is_count(feature: Feature) -> bool:
    return feature.integer and feature.kind == "numeric" and feature.name != "stage_index"


# ------------------------------------------------------------------ reason text
def _stage_name(v: float) -> str:
    return STAGES[int(v)] if 0 <= v < len(STAGES) else f"stage {v:g}"


def _seniority_name(v: float) -> str:
    return SENIORITY_NAMES.get(int(v), f"level {v:g}")


def _awaiting(v: float) -> str:
    if v == 0:
        return "No customer message awaiting our reply"
    waited = _count(v, "hours") if v < 48 else _count(v / 24, "days")
    return f"Customer waiting {waited} for our reply"


_TEXT: dict[str, Callable[[Feature, Any], str]] = {
    "channel": lambda f, v: f"{_capital(_shown(v))} channel",
    "competitor": lambda f, v: {"none": "No competitor", "unknown": "Competitor not recorded"}.get(
        v, f"Competing against {_shown(v)}"
    ),
    "product": lambda f, v: f"Product: {_shown(v)}",
    "industry": lambda f, v: f"{_capital(_shown(v))} industry",
    "region": lambda f, v: f"Region: {_shown(v)}",
    "amount": lambda f, v: f"Deal size {format_value(f, v)}",
    "employee_count": lambda f, v: f"Company of {format_value(f, v)}",
    "annual_revenue": lambda f, v: f"Company revenue {format_value(f, v)}",
    "stage_index": lambda f, v: f"In the {_stage_name(v)} stage",
    "days_in_stage": lambda f, v: f"{_capital(format_value(f, v))} in the current stage",
    "deal_age_days": lambda f, v: f"Open for {format_value(f, v)}",
    "days_since_last_activity": lambda f, v: (
        "Activity in the last day" if v < 1 else (f"No activity for {format_value(f, v)}")
    ),
    "days_since_last_inbound": lambda f, v: f"Customer last reached out {format_value(f, v)} ago",
    "hours_awaiting_reply": lambda f, v: _awaiting(v),
    "median_reply_hours": lambda f, v: f"Median reply time {format_value(f, v)}",
    "max_seniority": lambda f, v: f"Most senior contact: {_seniority_name(v)}",
    "has_economic_buyer": lambda f, v: (
        "Economic buyer on the deal" if v else "No economic buyer on the deal"
    ),
    "senior_met": lambda f, v: (
        "Met a director or above" if v else "No meeting with a director or above yet"
    ),
    "share_inbound": lambda f, v: f"{format_value(f, v)} of activities started by the customer",
    "account_prior_win_rate": lambda f, v: f"Account win rate {format_value(f, v)}",
    "owner_prior_won": lambda f, v: (
        f"Owner's earlier wins: {v:,.0f}" if v else "Owner has no earlier wins"
    ),
    "owner_prior_closed": lambda f, v: (
        f"Owner's earlier closed deals: {v:,.0f}" if v else ("Owner has no earlier closed deals")
    ),
    "owner_prior_win_rate": lambda f, v: f"Owner win rate {format_value(f, v)}",
}


def _names(view: str) -> list[str]:
    return [f.name for f in FEATURES_BY_NAME.values() if f.view == view]


#: A missing value often means "nothing yet": a feature row exists only from the first
#: activity, contact, stage entry or earlier closed deal. (reason text, tooltip subject)
_MISSING: dict[str, tuple[str, str]] = {
    **dict.fromkeys(
        _names("deal_activity") + ["days_since_last_activity", "hours_awaiting_reply"],
        ("No activity logged yet", "with no activity logged yet"),
    ),
    "days_since_last_inbound": (
        "The customer has not reached out yet",
        "where the customer had not reached out yet",
    ),
    "median_reply_hours": ("No reply to the customer yet", "with no reply to the customer yet"),
    **dict.fromkeys(
        _names("deal_contacts"), ("No contacts on the deal yet", "with no contacts on the deal yet")
    ),
    **dict.fromkeys(
        _names("deal_stage") + ["days_in_stage", "stalls"],
        ("No stage history", "with no stage history"),
    ),
    **dict.fromkeys(
        _names("account_history"),
        (
            "No earlier closed deals with the account",
            "with no earlier closed deals with the account",
        ),
    ),
    **dict.fromkeys(
        _names("owner_history"),
        ("No earlier closed deals for the owner", "whose owner had no earlier closed deals"),
    ),
}
#: Count nouns that read badly after a number ("3 owner's earlier wins").
_COUNT_NOUN: dict[str, str] = {
    "owner_prior_won": "earlier wins by the owner",
    "owner_prior_closed": "earlier closed deals by the owner",
}


def reason_text(feature: Feature, value: Value) -> str:
    """What the deal looks like on this feature, in a few words."""
    if is_missing(value):
        if feature.kind == "categorical":
            return f"{_capital(feature.label)} not recorded"
        return (
            _MISSING[feature.name][0]
            if feature.name in _MISSING
            else f"{_capital(feature.label)} unknown"
        )
    custom = _TEXT.get(feature.name)
    if custom is not None:
        return custom(feature, value)
    if feature.kind == "categorical":
        return f"{_capital(feature.label)}: {_shown(value)}"  # type: ignore[arg-type]
    v = float(value)  # type: ignore[arg-type]
    if _is_count(feature):
        return (
            _capital(_count(v, feature.label)) if v == 0 else f"{_capital(feature.label)}: {v:,.0f}"
        )
    return f"{_capital(feature.label)}: {format_value(feature, v)}"


# ------------------------------------------------------------------ tooltip
def _category_condition(feature: Feature, value: str | None) -> str:
    if value is None:
        return f"with no {feature.label} recorded"
    v = _shown(value)
    if feature.name == "competitor":
        return {"none": "without a competitor", "unknown": "with no competitor recorded"}.get(
            value, f"against {v}"
        )
    templates = {
        "channel": "from the {} channel",
        "industry": "in the {} industry",
        "region": "in the {} region",
        "product": "for {}",
    }
    return templates.get(feature.name, f"with {feature.label} {{}}").format(v)


def _numeric_condition(feature: Feature, low: float, high: float | None, first: bool) -> str:
    """The training bin holding the value ([low, high); the first bin also holds anything
    below ``low``, the last anything above), in words."""
    name = feature.name
    discrete = feature.integer or feature.kind == "binary" or name == "max_seniority"
    top = None if high is None else (high - 1 if discrete else high)
    if name in ("has_economic_buyer", "senior_met"):
        yes = low >= 1
        return {
            "has_economic_buyer": "with an economic buyer" if yes else "without an economic buyer",
            "senior_met": "where a director or above was met"
            if yes
            else "where no director or above was met",
        }[name]
    if name == "stage_index":
        start = 0 if first else low
        if top is None:
            return f"in the {_stage_name(low)} stage or later"
        if top <= start:
            return f"in the {_stage_name(start)} stage"
        return f"in stages {_stage_name(start)} to {_stage_name(top)}"
    if name == "max_seniority":
        start = 1 if first else low
        if top is None:
            span = _seniority_name(low) + (" or higher" if low < max(SENIORITY_NAMES) else "")
        else:
            span = (
                _seniority_name(start)
                if top <= start
                else f"{_seniority_name(start)} to {_seniority_name(top)}"
            )
        return f"whose most senior contact ranked {span}"
    if discrete and _is_count(feature):
        noun = _COUNT_NOUN.get(name, feature.label)
        if top is None:
            return f"with {low:,.0f} or more {noun}"
        if top <= low:
            return f"with {_count(low, noun)}"
        return f"with up to {top:,.0f} {noun}" if first else f"with {low:,.0f} to {top:,.0f} {noun}"

    def fmt(bound: float) -> str:
        if feature.unit in ("days", "hours") and 0 < bound < 1:
            return f"{bound:.1f} {feature.unit}"
        return format_value(feature, bound)

    if top is None:
        span = f"{fmt(low)} or more"
    elif first:
        span = f"under {fmt(top)}"
    else:
        span = f"{fmt(low)} to {fmt(top)}"
    if name == "days_since_last_activity":
        return f"this quiet ({span} without activity)"
    if name == "days_in_stage":
        return f"that had spent {span} in their stage"
    if name == "deal_age_days":
        return f"open for {span}"
    if name == "days_since_last_inbound":
        return f"whose customer last reached out {span} ago"
    return f"with {feature.label} of {span}"


def reason_tooltip(feature: Feature, value: Value, stats: Mapping[str, Any]) -> str | None:
    """How often training deals like this one were won, against the overall rate.

    None when the statistic is absent (feature without stats, category never seen in
    training, an empty bin): a tooltip is a fact or nothing.
    """
    overall = stats.get("win_rate")
    try:
        fact = lookup(stats, feature.name, None if is_missing(value) else value)
    except (KeyError, TypeError, ValueError, IndexError):
        return None
    if overall is None or fact is None or fact.get("win_rate") is None:
        return None
    if feature.kind == "categorical":
        who = _category_condition(feature, None if is_missing(value) else value)  # type: ignore[arg-type]
    elif is_missing(value) or "low" not in fact:
        who = (
            _MISSING[feature.name][1]
            if feature.name in _MISSING
            else f"with {feature.label} unknown"
        )
    else:
        edges = stats.get("numeric", {}).get(feature.name, {}).get("edges") or []
        if len(edges) <= 2:
            return None  # one bin holds every deal: its win rate is the overall one, no fact
        first = fact["low"] == edges[0]
        who = _numeric_condition(feature, float(fact["low"]), fact.get("high"), first)
    deals = fact.get("deals")
    tail = f", {deals:,.0f} deals" if isinstance(deals, int | float) else ""
    return f"Deals {who} were won {fact['win_rate']:.0%} of the time, against {overall:.0%} overall{tail}."


# ------------------------------------------------------------------ cached entry point
class Phrasebook:
    """Text and tooltip per (feature, value) for one model's statistics, memoised."""

    def __init__(self, stats: Mapping[str, Any], cache_size: int = 65_536) -> None:
        self._stats = stats
        self._cached = lru_cache(maxsize=cache_size)(self._phrase)

    def _phrase(self, name: str, value: Value) -> tuple[str, str | None]:
        feature = FEATURES_BY_NAME[name]
        return reason_text(feature, value), reason_tooltip(feature, value, self._stats)

    def phrase(self, name: str, value: Value) -> tuple[str, str | None]:
        """(text, tooltip) of a reason: the feature at this deal's value."""
        # NaN never equals itself, so missing values share the key None.
        return self._cached(name, None if is_missing(value) else value)
