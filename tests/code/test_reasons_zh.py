"""Reasons in Chinese (issue 13): every catalog feature, both ways, with the English numbers.

Each feature of the win model, the revival model and a custom attribute is phrased at
values that reach each branch (missing, exact values, below a bound, small and large
numbers, each category), against training facts that put some bins above the overall
win rate and some below, so tooltips point both ways. The Chinese text and tooltip must
be Chinese and carry every number the English ones carry.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from leadscore.crm.attributes import Attribute
from leadscore.features.catalog import FEATURES, REVIVAL_FEATURES, Feature, attribute_feature
from leadscore.features.catalog_zh import LABEL_ZH, TEXT_ZH
from leadscore.model.reasons import (
    BinCase,
    Phrasebook,
    describe_bin,
    format_value,
    numeric_condition_en,
    numeric_condition_zh,
    reason_fact,
    reason_text,
)

CJK = re.compile(r"[\u4e00-\u9fff]")
NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")
CATEGORIES = ("referral", "paid_ads", "none", "unknown", "other", "no_decision", "Acme CRM 2")

ATTRIBUTES = (
    Attribute("discount_pct", "deals", "numeric", "creation", label="Discount %"),
    Attribute("team", "deals", "categorical", "creation", label="团队"),
)


WAN = re.compile(r"(\d[\d,]*(?:\.\d+)?)万")


def numbers(text: str | None) -> list[str]:
    """The numbers of a text, an amount in 万 (Chinese) as the number it stands for."""
    text = WAN.sub(lambda m: f"{round(float(m[1].replace(',', '')) * 10_000):d}", text or "")
    return sorted(n.replace(",", "") for n in NUMBER.findall(text))


def _edges(f: Feature) -> list[float]:
    if f.kind == "binary":
        return [0, 1, 2]
    if f.levels is not None:
        low, high = min(f.levels.names), max(f.levels.names)
        return [low, low + 1, high - 1, high + 1]
    if f.unit == "%":
        return [0, 0.2, 0.5, 1]
    if f.unit in ("days", "hours"):
        return [0, 0.5, 7, 72, 400]
    return [0, 1, 3, 10, 20_000, 1e6]


def _stats(features: list[Feature]) -> dict[str, Any]:
    """Bins alternately won more and less often than the overall 30%."""
    numeric, categorical = {}, {}
    for f in features:
        if f.kind == "categorical":
            values = {
                c: {"deals": 40, "win_rate": (0.1, 0.6)[i % 2]} for i, c in enumerate(CATEGORIES)
            }
            categorical[f.name] = {"values": values, "missing": {"deals": 9, "win_rate": 0.2}}
        else:
            edges = _edges(f)
            rates = [(0.1, 0.6)[i % 2] for i in range(len(edges) - 1)]
            numeric[f.name] = {
                "edges": edges,
                "deals": [50] * len(rates),
                "win_rate": rates,
                "missing": {"deals": 7, "win_rate": 0.5},
            }
    return {"win_rate": 0.3, "numeric": numeric, "categorical": categorical}


def _values(f: Feature) -> list[Any]:
    words = f.phrasing
    out: list[Any] = [None, *words.exact]
    if f.kind == "categorical":
        return out + list(CATEGORIES)
    if words.below is not None:
        out.append(words.below[0] / 2)
    return out + [e for e in _edges(f)[:-1]] + [0.5, 3, 37, 72, 24_000.0]


CATALOG = [*FEATURES, *REVIVAL_FEATURES, *(attribute_feature(a) for a in ATTRIBUTES)]


def test_every_builtin_feature_has_chinese_words():
    for f in (*FEATURES, *REVIVAL_FEATURES):
        assert f.name in LABEL_ZH, f.name
        if f.phrasing.text:
            assert f.name in TEXT_ZH, f.name


@pytest.mark.parametrize("feature", CATALOG, ids=lambda f: f.name)
def test_each_reason_and_tooltip_reads_in_chinese_with_the_english_numbers(feature):
    stats = _stats([feature])
    book = Phrasebook(stats, features={feature.name: feature})
    directions = set()
    for value in _values(feature):
        phrase = book.reason(feature.name, value)
        assert CJK.search(phrase.text_zh), (value, phrase)
        assert set(numbers(phrase.text)) <= set(numbers(phrase.text_zh)), (value, phrase)
        if phrase.tooltip is None:
            assert phrase.tooltip_zh is None
            continue
        assert CJK.search(phrase.tooltip_zh or ""), (value, phrase)
        assert numbers(phrase.tooltip) == numbers(phrase.tooltip_zh), (value, phrase)
        directions.add(phrase.direction)
    assert {-1, 1} <= directions, feature.name


def test_chinese_words_by_hand():
    by_name = {f.name: f for f in FEATURES}
    book = Phrasebook(_stats(list(FEATURES)))
    quiet = book.reason("days_since_last_activity", 37.0)
    assert (quiet.text, quiet.text_zh) == ("No activity for 37 days", "已 37 天没有活动")
    assert (
        quiet.tooltip_zh == "距上次活动 7 天至 72 天的商机赢单率为 10%，整体为 30%，共 50 个商机。"
    )
    assert book.reason("channel", "paid_ads").text_zh == "付费广告渠道"
    assert book.reason("has_economic_buyer", 0).text_zh == "没有经济决策人参与"
    assert book.reason("stage_index", 1).text_zh == "处于已确认商机阶段"
    assert book.reason("act_call_7d", 3).text_zh == "近 7 天电话数：3"
    assert book.reason("n_contacts", None).text_zh == "商机上还没有联系人"
    # The same value as the English one, an amount of 10,000 or more in 万 (the page's
    # amounts are), in US dollars as the catalog's unit says.
    amount = by_name["amount"]
    assert format_value(amount, 24_000) == "$24,000"
    assert book.reason("amount", 24_000.0).text_zh == "商机金额 2.4万美元"
    # To the dollar, as the English: $32,420 is not 3.24万.
    assert book.reason("amount", 32_420.0).text_zh == "商机金额 3.242万美元"
    assert book.reason("amount", 2_400.0).text_zh == "商机金额 2,400 美元"
    fact = reason_fact(by_name["max_seniority"], 6, _stats([by_name["max_seniority"]]))
    assert fact is not None and fact.who_zh == "最高级别联系人为副总裁或更高"
    assert (
        reason_text(by_name["max_seniority"], 6)
        == "Most senior contact: C-level, owner or general manager"
    )


#: Training bins (low, high, first) that between them reach every case of a numeric bin.
BINS = [
    (low, high, first)
    for low in (0.0, 0.5, 1.0, 3.0, 7.0)
    for high in (None, 1.0, 2.0, 6.0, 72.0)
    for first in (True, False)
    if high is None or high > low
]


def test_both_languages_phrase_every_case_of_a_training_bin_with_the_same_numbers():
    """One bin description, two phrasings: every :class:`BinCase` is reached by some
    catalog feature, and the Chinese words of each carry the English numbers."""
    reached: dict[BinCase, list[tuple[Feature, Any]]] = {}
    for f in CATALOG:
        if f.kind == "categorical":
            continue
        for low, high, first in BINS:
            described = describe_bin(f, low, high, first)
            reached.setdefault(described.case, []).append((f, described))
    assert set(reached) == set(BinCase)
    for case, bins in reached.items():
        for f, described in bins:
            en = numeric_condition_en(f, described)
            zh = numeric_condition_zh(f, described)
            assert en and CJK.search(zh), (case, f.name, en, zh)
            assert numbers(en) == numbers(zh), (case, f.name, en, zh)
