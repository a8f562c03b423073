"""Reasons in words: a feature, the deal's value of it, and a fact from the training data.

A reason has two parts. ``text`` says what the deal looks like ("No activity for 37
days", "Referral channel"); ``tooltip`` says why that matters, with the training slice's
numbers ("Deals this quiet (22 days or more without activity) were won 10% of the time,
against 26% overall, 118 deals."). Both come from the feature's catalog entry (label,
unit, kind, levels and its :class:`~leadscore.features.catalog.Phrasing`) and the
model's ``reason_stats`` (see :mod:`leadscore.model.reason_stats`); this module names no
feature, so a new feature is phrased by its catalog entry alone. A feature without
statistics gets no tooltip rather than an invented one.

The tooltip's fact (:class:`Fact`) also says which way it points: won more often than
overall, or less. A reason pushing the other way contradicts it (:func:`contradicts`)
and :class:`~leadscore.model.explain.Explainer` does not show it.

Phrasing is pure Python on small values and is cached per (feature, value), since the
same values recur across deals.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from leadscore.features.catalog import FEATURES_BY_NAME, Feature
from leadscore.model.reason_stats import lookup

#: Hours from which a duration in hours is written in days ("3 days", not "72 hours").
HOURS_AS_DAYS = 48.0

Value = float | str | None


def is_missing(value: Any) -> bool:
    """None, NaN (any float kind), pandas' NA and NaT: the feature is unknown for this deal.

    pandas gives ``pd.NA`` for an empty category (``normalise_category`` of ``""``); it is
    neither None nor a float, and must not reach a reason as a value.
    """
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float | np.floating) and math.isnan(value)


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
    """A number as a person writes it, with its unit: $24,000, 37 days, 41%, manager."""
    if feature.levels is not None:
        return feature.levels.name(value)
    if feature.unit == "%":
        return f"{value:.0%}"
    if feature.unit == "USD":
        return f"${value:,.0f}"
    if feature.unit in ("days", "hours") and 0 < value < 1:
        return f"under {'a day' if feature.unit == 'days' else 'an hour'}"
    if feature.unit == "hours" and value >= HOURS_AS_DAYS:
        return _count(value / 24, "days")
    if feature.unit in ("days", "hours", "employees"):
        return _count(value, feature.unit) if value else f"0 {feature.unit}"
    if feature.integer or feature.kind == "binary":
        return f"{value:,.0f}"
    return f"{value:,.3g}"


def _fill(template: str, value: str) -> str:
    return template.format(value=value, Value=_capital(value))


def _exact(table: Mapping[float | str, str], feature: Feature, value: Any) -> str | None:
    """The entry for this value; a binary's key is 1 for any true value, else 0."""
    if feature.kind == "binary":
        value = 1 if value else 0
    return table.get(value)


# ------------------------------------------------------------------ reason text
def relative_level(feature: Feature, value: float, stats: Mapping[str, Any]) -> str | None:
    """'low', 'mid-range' or 'high': where ``value`` falls among the training deals.

    The first of the training bins (quantiles, see :mod:`leadscore.model.reason_stats`)
    is low, the last high, any between mid-range; None without at least two bins.
    """
    edges = stats.get("numeric", {}).get(feature.name, {}).get("edges") or []
    bins = len(edges) - 1
    if bins < 2:
        return None
    i = int(np.searchsorted(np.asarray(edges[1:-1], dtype=float), value, side="right"))
    return "low" if i == 0 else "high" if i == bins - 1 else "mid-range"


def reason_text(feature: Feature, value: Value, stats: Mapping[str, Any] | None = None) -> str:
    """What the deal looks like on this feature, in a few words.

    ``stats`` (the model's ``reason_stats``) places a ``relative`` feature's value among
    the training deals: "Discount % is high (42)".
    """
    words = feature.phrasing
    if is_missing(value):
        if feature.kind == "categorical":
            return f"{_capital(feature.label)} not recorded"
        return words.missing[0] if words.missing else f"{_capital(feature.label)} unknown"
    exact = _exact(words.exact, feature, value)
    if exact is not None:
        return exact
    if feature.kind == "categorical":
        shown = _shown(str(value))
        return _fill(words.text, shown) if words.text else f"{_capital(feature.label)}: {shown}"
    v = float(value)  # type: ignore[arg-type]
    if words.below is not None and v < words.below[0]:
        return words.below[1]
    if words.text:
        return _fill(words.text, format_value(feature, v))
    level = relative_level(feature, v, stats) if words.relative and stats else None
    if level is not None:
        return f"{_capital(feature.label)} is {level} ({format_value(feature, v)})"
    if feature.is_count:
        return (
            _capital(_count(v, feature.label)) if v == 0 else f"{_capital(feature.label)}: {v:,.0f}"
        )
    return f"{_capital(feature.label)}: {format_value(feature, v)}"


# ------------------------------------------------------------------ tooltip
def _category_condition(feature: Feature, value: str | None) -> str:
    if value is None:
        return f"with no {feature.label} recorded"
    words = feature.phrasing
    exact = words.exact_condition.get(value)
    if exact is not None:
        return exact
    return _fill(words.condition or f"with {feature.label} {{value}}", _shown(value))


def _numeric_condition(feature: Feature, low: float, high: float | None, first: bool) -> str:
    """The training bin holding the value ([low, high); the first bin also holds anything
    below ``low``, the last anything above), in words."""
    words = feature.phrasing
    top = None if high is None else (high - 1 if feature.discrete else high)
    exact = _exact(words.exact_condition, feature, low >= 1) if feature.kind == "binary" else None
    if exact is not None:
        return exact
    levels = feature.levels
    if levels is not None:
        start = min(levels.names) if first else low
        if top is None:
            upward = low < max(levels.names)
            return (levels.upward if upward else levels.one).format(low=levels.name(low))
        if top <= start:
            return levels.one.format(low=levels.name(start))
        return levels.span.format(low=levels.name(start), high=levels.name(top))
    if feature.discrete and feature.is_count:
        noun = words.noun or feature.label
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
    return _fill(words.condition or f"with {feature.label} of {{value}}", span)


@dataclass(frozen=True)
class Fact:
    """What a tooltip states: training deals ``who`` were won ``win_rate`` of the time,
    against ``overall``, over ``deals`` deals (None when the stats hold no count)."""

    who: str
    win_rate: float
    overall: float
    deals: float | None

    @property
    def tooltip(self) -> str:
        tail = f", {self.deals:,.0f} deals" if self.deals is not None else ""
        return (
            f"Deals {self.who} were won {self.win_rate:.0%} of the time, "
            f"against {self.overall:.0%} overall{tail}."
        )

    @property
    def direction(self) -> int:
        """+1 when the tooltip says such deals were won more often than overall, -1 less
        often, 0 as often: read from the whole percentages it shows ("won 12% of the time,
        against 32% overall" is -1), so a rate a rounding away from the overall one, which
        the reader sees as the same, says neither."""
        shown, overall = round(100 * self.win_rate), round(100 * self.overall)
        return (shown > overall) - (shown < overall)


def reason_fact(feature: Feature, value: Value, stats: Mapping[str, Any]) -> Fact | None:
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
        missing = feature.phrasing.missing
        who = missing[1] if missing else f"with {feature.label} unknown"
    else:
        edges = stats.get("numeric", {}).get(feature.name, {}).get("edges") or []
        if len(edges) <= 2:
            return None  # one bin holds every deal: its win rate is the overall one, no fact
        first = fact["low"] == edges[0]
        who = _numeric_condition(feature, float(fact["low"]), fact.get("high"), first)
    deals = fact.get("deals")
    return Fact(
        who,
        float(fact["win_rate"]),
        float(overall),
        float(deals) if isinstance(deals, int | float) else None,
    )


def reason_tooltip(feature: Feature, value: Value, stats: Mapping[str, Any]) -> str | None:
    """The tooltip of a reason: its :func:`reason_fact` in a sentence, or None."""
    fact = reason_fact(feature, value, stats)
    return None if fact is None else fact.tooltip


def contradicts(push: float, direction: int) -> bool:
    """Whether a reason pushing by ``push`` would contradict its tooltip's fact
    (:attr:`Fact.direction`, 0 when there is no fact).

    A "+" reason contradicts a tooltip saying deals like this were won less often than
    overall, a "-" one a tooltip saying more often. Such a push is the model's reading of
    this value together with the deal's other values (an interaction); the words speak of
    the value alone and cannot explain it, so the reason is not shown. A tooltip that
    shows the overall rate, or no tooltip, contradicts nothing.
    """
    return push * direction < 0


# ------------------------------------------------------------------ cached entry point
class Phrase(NamedTuple):
    """A reason's words and the direction of its tooltip's fact (:attr:`Fact.direction`)."""

    text: str
    tooltip: str | None
    direction: int


class Phrasebook:
    """Text and tooltip per (feature, value) for one model's statistics, memoised.

    ``features`` is the model's catalog (:func:`leadscore.features.catalog.features_by_name`
    of its attributes); the built-in catalog by default.
    """

    def __init__(
        self,
        stats: Mapping[str, Any],
        cache_size: int = 65_536,
        features: Mapping[str, Feature] = FEATURES_BY_NAME,
    ) -> None:
        self._stats = stats
        self._features = features
        self._cached = lru_cache(maxsize=cache_size)(self._phrase)

    def _phrase(self, name: str, value: Value) -> Phrase:
        feature = self._features[name]
        fact = reason_fact(feature, value, self._stats)
        return Phrase(
            reason_text(feature, value, self._stats),
            None if fact is None else fact.tooltip,
            0 if fact is None else fact.direction,
        )

    def reason(self, name: str, value: Value) -> Phrase:
        """Text, tooltip and the tooltip's direction of a reason: the feature at this deal's value."""
        # NaN never equals itself, so missing values share the key None.
        return self._cached(name, None if is_missing(value) else value)

    def phrase(self, name: str, value: Value) -> tuple[str, str | None]:
        """(text, tooltip) of a reason: the feature at this deal's value."""
        text, tooltip, _ = self.reason(name, value)
        return text, tooltip
