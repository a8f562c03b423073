"""The managers' list a page at a time, its filters, and the page's two languages
(:mod:`leadscore.priority.listing`, :mod:`leadscore.priority.i18n`)."""

from __future__ import annotations

import re
import string

import numpy as np
import pandas as pd
import pytest
from starlette.datastructures import QueryParams

from leadscore.config import load_settings, parse_language, parse_teams
from leadscore.priority.i18n import TEXT, choose_language, date, money, number, texts
from leadscore.priority.listing import LeadQuery, lead_page, page_row, select

OWNERS = ("王芳", "李伟", "张敏")
GROUPS = ("active", "dormant", "recently lost")


def ranked_list(n: int = 23) -> pd.DataFrame:
    """A ranked list of ``n`` deals cycling through owners, groups, grades and channels."""
    i = np.arange(n)
    p = np.linspace(0.9, 0.1, n)
    amount = np.where(i % 5 == 4, np.nan, 1000.0 * (i + 1))
    return pd.DataFrame(
        {
            "rank": i + 1,
            "deal_id": [f"D{k:03d}" for k in i],
            "account_id": [f"A{k}" for k in i],
            "owner_id": [OWNERS[k % 3] for k in i],
            "channel": [("web", "referral")[k % 2] for k in i],
            "industry": [("retail", "public_sector")[k % 2] for k in i],
            "segment": [("small", "enterprise")[(k // 2) % 2] for k in i],
            "stage": "qualified",
            "priority_group": [GROUPS[k % 3] for k in i],
            "probability": p,
            "grade": [("A", "B", "C", "D")[k % 4] for k in i],
            "amount": amount,
            "expected_value": p * amount,
            "change": np.where(i % 2 == 0, 0.05, np.nan),
            "positive_reasons": [
                [{"text": "Met a decision maker", "text_zh": "已接触决策人", "tooltip": "won 40%"}]
                if k % 2 == 0
                else [{"text": "Replied quickly", "tooltip": "won 30%"}]
                for k in i
            ],
            "negative_reasons": [[] for _ in i],
            "risk_flags": [
                [{"code": "no_follow_up", "text": "No follow-up", "text_zh": "未跟进"}] for _ in i
            ],
            "next_step": "Call the buyer",
            "next_step_zh": "致电采购人",
            "trend": [[0.2, 0.5, 0.9] for _ in i],
            "model": "win",
            "meaning": "chance to win this deal",
        }
    )


def test_the_language_is_asked_then_set_then_the_browsers_then_english():
    assert choose_language("auto", "zh-CN,zh;q=0.9,en;q=0.8") == "zh"
    assert choose_language("auto", "en-GB,en;q=0.9,zh;q=0.8") == "en"
    assert choose_language("auto", "fr-FR, zh-TW;q=0.5") == "zh"  # the first of ours
    assert choose_language("auto", "en;q=0.3, zh;q=0.7") == "zh"  # by weight
    assert choose_language("auto", None) == "en"
    assert choose_language("zh", "en-US") == "zh"  # the setting over the browser
    assert choose_language("zh", "en-US", asked="en") == "en"  # ?lang= over both
    assert choose_language("en", None, asked="xx") == "en"  # an unknown ask is ignored


def test_the_language_and_teams_are_settings(monkeypatch):
    monkeypatch.setenv("LEADSCORE_LANGUAGE", "zh-CN")
    monkeypatch.setenv("LEADSCORE_TEAMS", "north=王芳,李伟; south=张敏")
    settings = load_settings()
    assert settings.language == "zh"
    assert settings.teams == (("north", ("王芳", "李伟")), ("south", ("张敏",)))
    with pytest.raises(ValueError, match="must be auto, en or zh"):
        parse_language("fr")
    with pytest.raises(ValueError, match="is in 'a' and 'b'"):
        parse_teams("a=x;b=x")


def test_every_word_of_the_page_is_in_both_languages_with_the_same_blanks():
    fields = string.Formatter()
    for key, (en, zh) in TEXT.items():
        assert en and zh and en != zh, key
        assert re.search(r"[\u4e00-\u9fff]", zh), key
        names = [sorted(f for _, f, _, _ in fields.parse(x) if f) for x in (en, zh)]
        assert names[0] == names[1], key


def test_numbers_and_dates_follow_the_language():
    assert number(1234567) == "1,234,567" and number(1234567, "zh") == "1,234,567"
    assert money(123456.0) == "123,456"
    assert money(123456.0, "zh") == "12.35万" and money(9999.0, "zh") == "9,999"
    assert date(pd.Timestamp("2025-06-01", tz="UTC")) == "2025-06-01"
    assert date(pd.Timestamp("2025-06-01", tz="UTC"), "zh") == "2025年6月1日"
    assert money(float("nan")) == "" and number(None) == ""


def test_a_row_shows_the_chinese_of_a_reason_flag_and_next_step_when_there_is_one():
    rows = ranked_list(2).to_dict("records")
    en, zh = page_row(rows[0], "en"), page_row(rows[0], "zh")
    assert en["positive"][0]["text"] == "Met a decision maker"
    assert zh["positive"][0]["text"] == "已接触决策人"
    assert zh["flags"][0]["text"] == "未跟进" and zh["next_step"] == "致电采购人"
    assert zh["group_text"] == "活跃" and en["group_text"] == "active"
    # A reason without Chinese (the deal helper adds them) stays English on a Chinese page.
    assert page_row(rows[1], "zh")["positive"][0]["text"] == "Replied quickly"
    assert en["spark"] == "▂▅█" and en["change_text"] == "+5 pts"


def test_pages_cover_the_list_once_in_rank_order():
    ranked = ranked_list(23)
    seen = []
    for page in (1, 2, 3):
        body = lead_page(ranked, LeadQuery(page=page, size=10))
        assert (body["total"], body["matched"], body["pages"]) == (23, 23, 3)
        seen += [r["deal_id"] for r in body["rows"]]
    assert seen == list(ranked["deal_id"])
    # A page past the end is the last one.
    assert lead_page(ranked, LeadQuery(page=9, size=10))["page"] == 3


def test_each_filter_narrows_the_list():
    ranked = ranked_list(24)
    teams = (("north", ("王芳", "李伟")), ("south", ("张敏",)))

    def ids(**params: str) -> list[str]:
        query = LeadQuery.from_params(QueryParams(params))
        return list(select(ranked, query, teams)["deal_id"])

    by = ranked.set_index("deal_id")
    assert set(by.loc[ids(owner="王芳"), "owner_id"]) == {"王芳"}
    assert set(by.loc[ids(team="north"), "owner_id"]) == {"王芳", "李伟"}
    assert ids(team="nobody") == []
    assert set(by.loc[ids(channel="Web"), "channel"]) == {"web"}
    assert set(by.loc[ids(segment="enterprise"), "segment"]) == {"enterprise"}
    assert set(by.loc[ids(segment="public sector"), "industry"]) == {"public_sector"}
    assert set(by.loc[ids(status="open"), "priority_group"]) == {"active", "dormant"}
    assert set(by.loc[ids(status="lost"), "priority_group"]) == {"recently lost"}
    assert set(by.loc[ids(grade="a,b"), "grade"]) == {"A", "B"}
    both = ids(owner="王芳", grade="A")
    assert both and set(both) == set(ids(owner="王芳")) & set(ids(grade="A"))
    for everything in ({}, {"owner": ""}):
        assert len(ids(**everything)) == 24


def test_sorting_puts_missing_values_last_either_way():
    ranked = ranked_list(10)
    for desc in ("1", "0"):
        rows = select(ranked, LeadQuery.from_params(QueryParams({"sort": "amount", "desc": desc})))
        amounts = rows["amount"].to_numpy()
        known = amounts[~np.isnan(amounts)]
        assert np.isnan(amounts[-2:]).all() and not np.isnan(amounts[:-2]).any()
        assert list(known) == sorted(known, reverse=desc == "1")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"page": "0"}, "page=0"),
        ({"size": "100000"}, "size=100000"),
        ({"size": "ten"}, "not a whole number"),
        ({"status": "won"}, "status='won'"),
        ({"sort": "owner_id"}, "sort='owner_id'"),
    ],
)
def test_a_bad_parameter_is_refused_by_name(params: dict[str, str], message: str):
    with pytest.raises(ValueError, match=re.escape(message)):
        LeadQuery.from_params(QueryParams(params))


def test_words_of_a_language():
    assert texts("zh")["funnel"] == "漏斗指标" and texts("en")["funnel"] == "Funnel metrics"


def test_every_meaning_rank_writes_reads_in_chinese_with_its_numbers():
    """A row's ``meaning`` (what its number means) as each producer words it: in Chinese
    on a Chinese page, whole, with the same numbers; an unknown one stays as written."""
    from leadscore.crm.revival import revival_meaning
    from leadscore.model.fallback import StageFallback
    from leadscore.priority.dormant import DormantChoice, dormant_meaning
    from leadscore.priority.i18n import meaning_text
    from leadscore.priority.rank import OPEN_MEANING, REOPENED_MEANING

    fallbacks = [
        StageFallback(0.3, {0: 0.2}, {0: 40}, closed_deals=70, won_deals=12, use_channel=c)
        for c in (True, False)
    ]
    meanings = [
        OPEN_MEANING,
        REOPENED_MEANING,
        revival_meaning(365),
        revival_meaning(45),
        *(dormant_meaning(182, c) for c in DormantChoice),
        *(f.meaning() for f in fallbacks),
    ]
    for meaning in meanings:
        zh = meaning_text(meaning, "zh")
        assert re.search(r"[\u4e00-\u9fff]", zh) and not re.search(r"[A-Za-z]{2,}", zh), zh
        assert re.findall(r"\d+", zh) == re.findall(r"\d+", meaning), (meaning, zh)
        assert meaning_text(meaning, "en") == meaning
    assert "和渠道" in meaning_text(fallbacks[0].meaning(), "zh")
    assert "和渠道" not in meaning_text(fallbacks[1].meaning(), "zh")
    assert meaning_text("chance to win this deal by Friday", "zh") == (
        "chance to win this deal by Friday"
    )
