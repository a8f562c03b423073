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

Every text and tooltip has a Chinese twin (``text_zh``, ``tooltip_zh``) rendered from the
same value and the same training bin with the words of :mod:`leadscore.features.catalog_zh`,
so the two languages state the same numbers.

Phrasing is pure Python on small values and is cached per (feature, value), since the
same values recur across deals.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from functools import lru_cache
from typing import Any, NamedTuple, assert_never

import numpy as np
import pandas as pd

from leadscore.features.catalog import FEATURES_BY_NAME, Feature
from leadscore.features.catalog_zh import (
    BELOW_ZH,
    CONDITION_EXACT_ZH,
    EXACT_ZH,
    RELATIVE_ZH,
    TEXT_ZH,
    category_zh,
    label_zh,
    level_zh,
    missing_zh,
)
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
    if type(value) is float:  # the common case, checked first: called per candidate reason
        return value != value
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


#: Units of :func:`format_value_zh`.
UNITS_ZH = {"days": "天", "hours": "小时", "employees": "人"}


def format_value_zh(feature: Feature, value: float) -> str:
    """:func:`format_value` in Chinese, with the same numbers: 37 天, 3.242万美元, 41%, 经理
    (an amount from 10,000 up in 万, as Chinese readers count money and the page shows it,
    to the dollar as the English text is: 3.24万 would read $32,400 beside $32,420)."""
    if feature.levels is not None:
        return level_zh(feature, value)
    if feature.unit == "USD":
        if abs(value) < 10_000:
            return f"{value:,.0f} 美元"
        return f"{value / 10_000:,.4f}".rstrip("0").rstrip(".") + "万美元"
    if feature.unit in ("days", "hours") and 0 < value < 1:
        return "不到一天" if feature.unit == "days" else "不到一小时"
    if feature.unit == "hours" and value >= HOURS_AS_DAYS:
        return f"{value / 24:,.0f} 天"
    if feature.unit in UNITS_ZH:
        return f"{value:,.0f} {UNITS_ZH[feature.unit]}"
    return format_value(feature, value)  # a share, an amount or a plain number: no words


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


def reason_text_zh(feature: Feature, value: Value, stats: Mapping[str, Any] | None = None) -> str:
    """:func:`reason_text` in Chinese: the same value, the same training bin."""
    words, label = feature.phrasing, label_zh(feature)
    if is_missing(value):
        if feature.kind == "categorical":
            return f"未记录{label}"
        return missing_zh(words.missing[0], feature) if words.missing else f"{label}未知"
    exact = _exact(EXACT_ZH.get(feature.name, {}), feature, value)
    if exact is not None:
        return exact
    template = TEXT_ZH.get(feature.name)
    if feature.kind == "categorical":
        shown = category_zh(_shown(str(value)))
        return template.format(value=shown) if template else f"{label}：{shown}"
    v = float(value)  # type: ignore[arg-type]
    if words.below is not None and v < words.below[0]:
        return BELOW_ZH[feature.name]
    if template:
        return template.format(value=format_value_zh(feature, v))
    if feature.is_count and v == 0:
        return f"{label}为零"
    level = relative_level(feature, v, stats) if words.relative and stats else None
    if level is not None:
        return f"{label}{RELATIVE_ZH[level]}（{format_value_zh(feature, v)}）"
    return f"{label}：{format_value_zh(feature, v)}"


# ------------------------------------------------------------------ tooltip
def _category_condition(feature: Feature, value: str | None) -> str:
    if value is None:
        return f"with no {feature.label} recorded"
    words = feature.phrasing
    exact = words.exact_condition.get(value)
    if exact is not None:
        return exact
    return _fill(words.condition or f"with {feature.label} {{value}}", _shown(value))


def _top_of_bin(feature: Feature, high: float | None) -> float | None:
    """The largest value in a bin ``[low, high)``: ``high - 1`` for whole numbers; None
    for the last bin, which holds everything above ``low``."""
    return None if high is None else (high - 1 if feature.discrete else high)


def _bound_text(feature: Feature, bound: float, zh: bool) -> str:
    """A bin's bound as a tooltip writes it: a fraction of a day or an hour as a decimal
    ("0.5 days"), otherwise as the value itself."""
    if feature.unit in ("days", "hours") and 0 < bound < 1:
        return f"{bound:.1f} {UNITS_ZH[feature.unit] if zh else feature.unit}"
    return format_value_zh(feature, bound) if zh else format_value(feature, bound)


class BinCase(Enum):
    """Which way a training bin is put in words (:class:`BinDescription`)."""

    #: An ordinal feature's level and every level above it ("in the proposal stage or later").
    LEVEL_FROM = "level_from"
    #: One level ("in the proposal stage").
    LEVEL_ONE = "level_one"
    #: A range of levels ("in stages lead to proposal").
    LEVEL_SPAN = "level_span"
    #: A count from ``low`` up ("with 3 or more calls").
    COUNT_FROM = "count_from"
    #: Exactly ``low`` ("with no calls", "with 1 call").
    COUNT_ONE = "count_one"
    #: Up to ``high`` (the first bin: "with up to 2 calls").
    COUNT_UP_TO = "count_up_to"
    #: ``low`` to ``high`` ("with 3 to 5 calls").
    COUNT_SPAN = "count_span"
    #: A quantity from ``low`` up ("37 days or more").
    FROM = "from"
    #: Below ``high`` (the first bin: "under 7 days").
    UNDER = "under"
    #: ``low`` to ``high`` ("7 days to 13 days").
    SPAN = "span"


@dataclass(frozen=True)
class BinDescription:
    """A training bin as a tooltip states it, before any words: which :class:`BinCase`,
    and its bounds as shown (``low`` the first value, ``high`` the last; None: unbounded).

    Both languages phrase the same description (:func:`numeric_condition_en`,
    :func:`numeric_condition_zh`), so they cannot differ in which case or which numbers a
    bin gets. ``binary``: for a binary feature, whether the bin holds its true value
    (each language's exact words for it come first).
    """

    case: BinCase
    low: float
    high: float | None = None
    binary: bool | None = None


def describe_bin(feature: Feature, low: float, high: float | None, first: bool) -> BinDescription:
    """The training bin ``[low, high)`` (the first bin also holds anything below ``low``,
    the last anything above) as :class:`BinDescription`."""
    top = _top_of_bin(feature, high)
    binary = low >= 1 if feature.kind == "binary" else None
    levels = feature.levels
    if levels is not None:
        start = min(levels.names) if first else low
        if top is None:
            upward = low < max(levels.names)
            return BinDescription(
                BinCase.LEVEL_FROM if upward else BinCase.LEVEL_ONE, low, None, binary
            )
        if top <= start:
            return BinDescription(BinCase.LEVEL_ONE, start, None, binary)
        return BinDescription(BinCase.LEVEL_SPAN, start, top, binary)
    if feature.discrete and feature.is_count:
        if top is None:
            return BinDescription(BinCase.COUNT_FROM, low, None, binary)
        if top <= low:
            return BinDescription(BinCase.COUNT_ONE, low, None, binary)
        return BinDescription(
            BinCase.COUNT_UP_TO if first else BinCase.COUNT_SPAN, low, top, binary
        )
    if top is None:
        return BinDescription(BinCase.FROM, low, None, binary)
    return BinDescription(BinCase.UNDER if first else BinCase.SPAN, low, top, binary)


def _high(b: BinDescription) -> float:
    assert b.high is not None, b
    return b.high


def numeric_condition_en(feature: Feature, b: BinDescription) -> str:
    """A training bin (:func:`describe_bin`) in English: "with 3 to 5 calls"."""
    words = feature.phrasing
    if b.binary is not None:
        exact = _exact(words.exact_condition, feature, b.binary)
        if exact is not None:
            return exact
    levels = feature.levels

    def fmt(bound: float) -> str:
        return _bound_text(feature, bound, zh=False)

    def span(text: str) -> str:
        return _fill(words.condition or f"with {feature.label} of {{value}}", text)

    noun = words.noun or feature.label
    match b.case:
        case BinCase.LEVEL_FROM | BinCase.LEVEL_ONE | BinCase.LEVEL_SPAN:
            assert levels is not None
            template = {
                BinCase.LEVEL_FROM: levels.upward,
                BinCase.LEVEL_ONE: levels.one,
                BinCase.LEVEL_SPAN: levels.span,
            }[b.case]
            high = levels.name(b.high) if b.high is not None else ""
            return template.format(low=levels.name(b.low), high=high)
        case BinCase.COUNT_FROM:
            return f"with {b.low:,.0f} or more {noun}"
        case BinCase.COUNT_ONE:
            return f"with {_count(b.low, noun)}"
        case BinCase.COUNT_UP_TO:
            return f"with up to {_high(b):,.0f} {noun}"
        case BinCase.COUNT_SPAN:
            return f"with {b.low:,.0f} to {_high(b):,.0f} {noun}"
        case BinCase.FROM:
            return span(f"{fmt(b.low)} or more")
        case BinCase.UNDER:
            return span(f"under {fmt(_high(b))}")
        case BinCase.SPAN:
            return span(f"{fmt(b.low)} to {fmt(_high(b))}")
        case _:
            assert_never(b.case)


def _category_condition_zh(feature: Feature, value: str | None) -> str:
    if value is None:
        return f"未记录{label_zh(feature)}"
    exact = CONDITION_EXACT_ZH.get(feature.name, {}).get(value)
    return exact if exact is not None else f"{label_zh(feature)}为{category_zh(_shown(value))}"


#: Cases whose bounds are whole counts.
_COUNT_CASES = frozenset(
    {BinCase.COUNT_FROM, BinCase.COUNT_ONE, BinCase.COUNT_UP_TO, BinCase.COUNT_SPAN}
)
#: A training bin in Chinese by its case: ``{label}`` the feature's Chinese name, ``{low}``
#: and ``{high}`` its bounds as :func:`numeric_condition_zh` writes them.
BIN_ZH: dict[BinCase, str] = {
    BinCase.LEVEL_FROM: "{label}为{low}或更高",
    BinCase.LEVEL_ONE: "{label}为{low}",
    BinCase.LEVEL_SPAN: "{label}为{low}至{high}",
    BinCase.COUNT_FROM: "{label}为 {low} 或更多",
    BinCase.COUNT_ONE: "{label}为 {low}",
    BinCase.COUNT_UP_TO: "{label}不超过 {high}",
    BinCase.COUNT_SPAN: "{label}为 {low} 至 {high}",
    BinCase.FROM: "{label} {low} 或更多",
    BinCase.UNDER: "{label}低于 {high}",
    BinCase.SPAN: "{label} {low}至 {high}",
}


def numeric_condition_zh(feature: Feature, b: BinDescription) -> str:
    """:func:`numeric_condition_en` in Chinese: the same case, the same bounds."""
    if b.binary is not None:
        exact = _exact(CONDITION_EXACT_ZH.get(feature.name, {}), feature, b.binary)
        if exact is not None:
            return exact
    label = label_zh(feature)
    if b.case is BinCase.COUNT_ONE and b.low == 0:
        return f"{label}为零"

    def bound(v: float | None) -> str:
        if v is None:
            return ""
        if feature.levels is not None:
            return level_zh(feature, v)
        return f"{v:,.0f}" if b.case in _COUNT_CASES else _bound_text(feature, v, zh=True)

    return BIN_ZH[b.case].format(label=label, low=bound(b.low), high=bound(b.high))


@dataclass(frozen=True)
class Fact:
    """What a tooltip states: training deals ``who`` were won ``win_rate`` of the time,
    against ``overall``, over ``deals`` deals (None when the stats hold no count)."""

    who: str
    win_rate: float
    overall: float
    deals: float | None
    #: ``who`` in Chinese.
    who_zh: str = ""

    @property
    def tooltip_zh(self) -> str:
        """:attr:`tooltip` in Chinese, with the same numbers."""
        tail = f"，共 {self.deals:,.0f} 个商机" if self.deals is not None else ""
        space = " " if self.who_zh[-1:].isascii() else ""
        return (
            f"{self.who_zh}{space}的商机赢单率为 {self.win_rate:.0%}，"
            f"整体为 {self.overall:.0%}{tail}。"
        )

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
        known = None if is_missing(value) else value
        who = _category_condition(feature, known)  # type: ignore[arg-type]
        who_zh = _category_condition_zh(feature, known)  # type: ignore[arg-type]
    elif is_missing(value) or "low" not in fact:
        missing = feature.phrasing.missing
        who = missing[1] if missing else f"with {feature.label} unknown"
        who_zh = missing_zh(missing[1], feature) if missing else f"{label_zh(feature)}未知"
    else:
        edges = stats.get("numeric", {}).get(feature.name, {}).get("edges") or []
        if len(edges) <= 2:
            return None  # one bin holds every deal: its win rate is the overall one, no fact
        first = fact["low"] == edges[0]
        described = describe_bin(feature, float(fact["low"]), fact.get("high"), first)
        who = numeric_condition_en(feature, described)
        who_zh = numeric_condition_zh(feature, described)
    deals = fact.get("deals")
    return Fact(
        who,
        float(fact["win_rate"]),
        float(overall),
        float(deals) if isinstance(deals, int | float) else None,
        who_zh,
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
    text_zh: str = ""
    tooltip_zh: str | None = None


#: Up to this many values, :meth:`Phrasebook.directions` reads a column value by value:
#: the array path's fixed cost (about 50 microseconds a column, on each of the 27 reason
#: columns) was a third of explaining a single deal, whose column holds one value.
PER_VALUE_MAX = 8


class Phrasebook:
    """Text and tooltip per (feature, value) for one model's statistics, memoised.

    ``features`` is the model's catalog (:func:`leadscore.features.catalog.features_by_name`
    of its attributes); the built-in catalog by default.

    A tooltip's fact depends on a numeric value only through its training bin, so facts
    are memoised per bin: a batch of deals with a thousand distinct amounts phrases ten
    facts, not a thousand. :meth:`directions` reads the facts' directions for a whole
    column at once, which is what choosing reasons needs before any text is written.
    """

    def __init__(
        self,
        stats: Mapping[str, Any],
        cache_size: int = 65_536,
        features: Mapping[str, Feature] = FEATURES_BY_NAME,
    ) -> None:
        self._stats = stats
        self._features = features
        self._cache_size = cache_size
        self._cached = lru_cache(maxsize=cache_size)(self._phrase)
        self._text = lru_cache(maxsize=cache_size)(self._reason_text)
        self._facts: dict[tuple[str, Any], Fact | None] = {}
        #: A fact's words, per training bin as :attr:`_facts`: (tooltip, direction,
        #: Chinese tooltip), written once per bin, not once per value.
        self._fact_words: dict[tuple[str, Any], tuple[str | None, int, str | None]] = {}
        #: Per numeric feature binned by the stats: the inner bin edges (``lookup``'s).
        self._inner: dict[str, np.ndarray] = {}
        #: The same edges as Python floats: :func:`bisect.bisect_right` finds a value's
        #: bin as ``np.searchsorted(side="right")`` does (NaN after every edge too), in a
        #: tenth of its time for one value.
        self._inner_list: dict[str, list[float]] = {}
        numeric, categorical = stats.get("numeric", {}), stats.get("categorical", {})
        for name, feature in features.items():
            edges = (numeric.get(name) or {}).get("edges")
            if feature.kind != "categorical" and name not in categorical and edges:
                self._inner[name] = np.asarray(edges[1:-1], dtype=np.float64)
                self._inner_list[name] = self._inner[name].tolist()

    def _reason_text(self, name: str, value: Value) -> str:
        return reason_text(self._features[name], value, self._stats)

    def _bin_key(self, name: str, value: Value) -> Any:
        """What the fact of ``name`` at ``value`` depends on: its training bin for a binned
        numeric feature (the index :func:`~leadscore.model.reason_stats.lookup` finds),
        else the value itself."""
        inner = self._inner_list.get(name)
        if inner is None or value is None:
            return value
        try:
            return bisect_right(inner, float(value))
        except (TypeError, ValueError):
            return value

    def fact(self, name: str, value: Value) -> Fact | None:
        """The tooltip's fact of a reason (:func:`reason_fact`), memoised per training bin;
        ``value`` already normalised (missing as None)."""
        key = (name, self._bin_key(name, value))
        try:
            return self._facts[key]
        except KeyError:
            fact = self._facts[key] = reason_fact(self._features[name], value, self._stats)
            return fact

    def _words(self, name: str, value: Value) -> tuple[str | None, int, str | None]:
        """(tooltip, direction, Chinese tooltip) of the fact of ``name`` at ``value``
        (:meth:`fact`), memoised per training bin."""
        key = (name, self._bin_key(name, value))
        words = self._fact_words.get(key)
        if words is None:
            fact = self.fact(name, value)
            words = self._fact_words[key] = (
                (None, 0, None) if fact is None else (fact.tooltip, fact.direction, fact.tooltip_zh)
            )
        return words

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without its memo (Spark ships explainers to its workers): a cache
        around a bound method cannot be pickled, and each worker fills its own."""
        return {k: v for k, v in self.__dict__.items() if k not in ("_cached", "_text")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._cached = lru_cache(maxsize=self._cache_size)(self._phrase)
        self._text = lru_cache(maxsize=self._cache_size)(self._reason_text)

    def _phrase(self, name: str, value: Value) -> Phrase:
        tooltip, direction, tooltip_zh = self._words(name, value)
        return Phrase(
            self._text(name, value),
            tooltip,
            direction,
            reason_text_zh(self._features[name], value, self._stats),
            tooltip_zh,
        )

    def reason(self, name: str, value: Value) -> Phrase:
        """Text, tooltip, the tooltip's direction and the Chinese words of a reason: the
        feature at this deal's value."""
        # NaN never equals itself, so missing values share the key None.
        return self._cached(name, None if is_missing(value) else value)

    def text(self, name: str, value: Value) -> str:
        """The reason's text alone (:attr:`Phrase.text`): what choosing reasons compares."""
        return self._text(name, None if is_missing(value) else value)

    def directions(self, name: str, values: Sequence[Any]) -> np.ndarray:
        """:attr:`Phrase.direction` of ``name`` at each of ``values``, as int8.

        A binned numeric column of more than :data:`PER_VALUE_MAX` values is binned at
        once (the bin edges of :func:`~leadscore.model.reason_stats.lookup`, the same
        search) and each bin's fact read once; any other column, one holding a value that
        is not a number, or a short one (a single deal's) goes value by value through the
        memoised facts.
        """
        out = np.zeros(len(values), dtype=np.int8)
        inner = self._inner.get(name)
        x: np.ndarray | None = None
        if inner is not None and len(values) > PER_VALUE_MAX:
            try:
                x = np.asarray(values, dtype=np.float64)  # None becomes NaN
            except (TypeError, ValueError):
                x = None
        if inner is None or x is None or x.ndim != 1:
            seen: dict[Any, int] = {}
            for i, v in enumerate(values):
                key = None if is_missing(v) else v
                d = seen.get(key)
                if d is None:
                    fact = self.fact(name, key)
                    d = seen[key] = 0 if fact is None else fact.direction
                out[i] = d
            return out
        missing = np.isnan(x)
        bins = np.where(missing, -1, np.searchsorted(inner, x, side="right"))
        for b in np.unique(bins).tolist():
            rows = bins == b
            fact = self.fact(name, None if b == -1 else float(x[np.argmax(rows)]))
            out[rows] = 0 if fact is None else fact.direction
        return out

    def phrase(self, name: str, value: Value) -> tuple[str, str | None]:
        """(text, tooltip) of a reason: the feature at this deal's value."""
        phrase = self.reason(name, value)
        return phrase.text, phrase.tooltip
