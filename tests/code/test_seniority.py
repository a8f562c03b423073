"""Seniority from job titles: English, Chinese, mixed, and the traps between them."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from leadscore.crm.synth import TITLES
from leadscore.features.catalog import FEATURES_BY_NAME
from leadscore.features.seniority import (
    LABELS,
    SENIOR_LEVEL,
    Seniority,
    normalise_title,
    seniority_of_titles,
    title_seniority,
)
from leadscore.model.reasons import reason_text
from tests.seniority_titles import TITLES as REAL_WORLD_TITLES
from training.behaviour import CHECKS

ENGLISH: list[tuple[str, int]] = [
    # individual contributors, whatever the "senior" in front
    ("Engineer", 1),
    ("Senior Engineer", 1),
    ("Sr. Engineer", 1),
    ("Business Analyst", 1),
    ("Procurement Specialist", 1),
    ("Associate", 1),
    ("Account Executive", 1),
    ("Lead Generation Specialist", 1),
    # assistants stay individual contributors, whoever they assist
    ("Assistant to the CEO", 1),
    ("Executive Assistant", 1),
    ("Executive Assistant to the VP of Sales", 1),
    ("Personal Assistant to the Managing Director", 1),
    ("CEO Assistant", 1),
    # supervisors and leads
    ("Team Lead", 2),
    ("Shift Supervisor", 2),
    ("Lead Engineer", 2),
    ("Assistant Manager", 2),
    ("Assistant Project Manager", 2),
    # managers
    ("Project Manager", 3),
    ("Account Manager", 3),
    ("IT Mgr", 3),
    ("Product Owner", 3),
    ("Associate Director", 3),
    ("Assistant Vice President", 3),
    ("AVP, Operations", 3),
    # directors and heads
    ("Director", 4),
    ("Sales Director", 4),
    ("Director of Procurement", 4),
    ("Senior Director, Engineering", 4),
    ("Head of IT", 4),
    ("Deputy Director", 4),
    ("Deputy Head of Purchasing", 4),
    ("Chief of Staff", 4),
    # vice presidents
    ("Vice President", 5),
    ("Vice-President, Procurement", 5),
    ("VP Sales", 5),
    ("V.P. of Sales", 5),
    ("SVP Operations", 5),
    ("EVP, Strategy", 5),
    ("Senior Vice President", 5),
    ("Executive Director", 5),
    ("Deputy General Manager", 5),
    ("Deputy CEO", 5),
    # C-level and owners
    ("CEO", 6),
    ("CFO", 6),
    ("CTO", 6),
    ("COO", 6),
    ("CIO", 6),
    ("CxO", 6),
    ("Chief Executive Officer", 6),
    ("Chief Information Security Officer", 6),
    ("President", 6),
    ("President & CEO", 6),
    ("Founder", 6),
    ("Co-Founder", 6),
    ("Founder and CEO", 6),
    ("Owner", 6),
    ("Managing Director", 6),
    ("General Manager", 6),
    ("GM", 6),
    ("Chairman of the Board", 6),
]

CHINESE: list[tuple[str, int]] = [
    ("工程师", 1),
    ("高级工程师", 1),
    ("专员", 1),
    ("采购专员", 1),
    ("助理", 1),
    ("销售助理", 1),
    ("职员", 1),
    ("助理工程师", 1),
    ("CEO助理", 1),
    ("总经理助理", 1),
    ("董事长秘书", 1),
    ("主管", 2),
    ("技术主管", 2),
    ("组长", 2),
    ("经理", 3),
    ("项目经理", 3),
    ("采购经理", 3),
    ("助理经理", 2),
    ("科长", 3),
    ("总监", 4),
    ("销售总监", 4),
    ("副总监", 4),
    ("部长", 4),
    ("采购部长", 4),
    ("部门负责人", 4),
    ("首席科学家", 4),
    ("副总裁", 5),
    ("高级副总裁", 5),
    ("副总经理", 5),
    ("副总", 5),
    ("董事会秘书", 5),
    ("总经理", 6),
    ("总裁", 6),
    ("董事长", 6),
    ("董事", 6),
    ("创始人", 6),
    ("联合创始人", 6),
    ("首席执行官", 6),
    ("首席财务官", 6),
]

MIXED: list[tuple[str, int]] = [
    ("Sales Director 销售总监", 4),
    ("销售总监 Sales Director", 4),
    ("VP Sales 销售副总裁", 5),
    ("IT经理", 3),
    ("CEO 总经理", 6),
    ("ＣＥＯ助理", 1),
    ("Ｓａｌｅｓ　Ｄｉｒｅｃｔｏｒ", 4),
]


@pytest.mark.parametrize(("title", "level"), ENGLISH)
def test_english_titles(title: str, level: int) -> None:
    assert title_seniority(title) == level


@pytest.mark.parametrize(("title", "level"), CHINESE)
def test_chinese_titles(title: str, level: int) -> None:
    assert title_seniority(title) == level


@pytest.mark.parametrize(("title", "level"), MIXED)
def test_mixed_and_full_width_titles(title: str, level: int) -> None:
    assert title_seniority(title) == level


def _reads(title: str) -> int | None:
    """The level a title reads as, None for NaN (the fixture's way of saying so)."""
    level = title_seniority(title)
    return None if math.isnan(level) else int(level)


@pytest.mark.parametrize(("title", "level"), REAL_WORLD_TITLES)
def test_real_world_titles(title: str, level: int | None) -> None:
    assert _reads(title) == level


def test_real_world_list_is_large_and_bilingual() -> None:
    """Issue 13 asks for at least 200 real-world titles in English and Chinese: the list
    keeps that size, has no repeats, and covers every level in both languages."""
    titles = [title for title, _ in REAL_WORLD_TITLES]
    chinese = {t for t in titles if any("\u4e00" <= c <= "\u9fff" for c in t)}
    assert len(titles) >= 200
    assert len(set(titles)) == len(titles)
    assert 0.4 <= len(chinese) / len(titles) <= 0.6
    for subset in (chinese, set(titles) - chinese):
        levels = {level for title, level in REAL_WORLD_TITLES if title in subset}
        assert set(range(1, 7)) <= levels


# Issue 13's examples, by name.
@pytest.mark.parametrize(("title", "level"), [("总经理办公室主任", 3), ("总裁办秘书", 1)])
def test_a_leaders_office_is_not_the_leader(title: str, level: int) -> None:
    # Both read as C-level before: the office is named after the GM or the president,
    # and the person heads it (主任, a manager) or is its secretary.
    assert title_seniority(title) == level < SENIOR_LEVEL


@pytest.mark.parametrize("title", ["局长", "院长", "校长"])
def test_the_head_of_a_public_body_is_its_c_level(title: str) -> None:
    assert title_seniority(title) == Seniority.C_LEVEL
    assert title_seniority(f"副{title}") == Seniority.VP


@pytest.mark.parametrize("title", ["采购", "HR BP", "HRBP"])
def test_buyers_and_hr_business_partners_are_individual_contributors(title: str) -> None:
    assert title_seniority(title) == Seniority.INDIVIDUAL


@pytest.mark.parametrize(
    "title",
    [None, "", "   ", "Sales", "Marketing", "销售", "采购部", "N/A", "Headhunter"],
)
def test_missing_or_unrecognised_titles_are_nan(title: str | None) -> None:
    assert math.isnan(title_seniority(title))


def test_non_string_values_are_nan() -> None:
    assert math.isnan(title_seniority(float("nan")))  # type: ignore[arg-type]
    assert math.isnan(title_seniority(pd.NA))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "variant",
    [
        "vp sales",
        "VP SALES",
        "  VP   Sales  ",
        "VP, Sales",
        "V.P. Sales",
        "VP-Sales",
        "ＶＰ　Ｓａｌｅｓ",
        "VP/Sales",
    ],
)
def test_case_whitespace_punctuation_and_width_do_not_matter(variant: str) -> None:
    assert title_seniority(variant) == title_seniority("VP Sales") == 5


def test_words_inside_other_words_do_not_count() -> None:
    # 'engineering' is not 'engineer', 'leadership' not 'lead', 'cargo' not a C-title.
    assert math.isnan(title_seniority("Engineering"))
    assert math.isnan(title_seniority("Leadership Programme"))
    assert math.isnan(title_seniority("Cargo"))
    assert title_seniority("Engineering Manager") == 3


def test_normalise_title() -> None:
    assert normalise_title("  Sr. V.P.,  Sales／Marketing ") == "sr vp sales marketing"
    assert normalise_title("ＣＥＯ（中国区）") == "ceo 中国区"


def test_synthetic_title_pools_map_to_their_level() -> None:
    # The generator's titles carry the true level; the parser must recover all of them.
    wrong = {
        title: (level, title_seniority(title))
        for level, (english, chinese) in TITLES.items()
        for title in (*english, *chinese)
        if title_seniority(title) != level
    }
    assert wrong == {}


def test_six_levels_each_with_a_label() -> None:
    assert [int(s) for s in Seniority] == [1, 2, 3, 4, 5, 6]
    assert set(LABELS) == set(range(1, 7))


#: Who counts as senior (n_senior_contacts, senior_met, the "meet a director" next step).
SENIOR_TITLES = ["Director", "Deputy Director", "Head of IT", "VP Sales", "CEO", "总监", "副总裁"]
NOT_SENIOR_TITLES = ["Associate Director", "Project Manager", "Team Lead", "经理", "CEO助理"]


@pytest.mark.parametrize("title", SENIOR_TITLES)
def test_directors_and_above_are_senior(title: str) -> None:
    assert title_seniority(title) >= SENIOR_LEVEL


@pytest.mark.parametrize("title", NOT_SENIOR_TITLES)
def test_below_director_is_not_senior(title: str) -> None:
    assert title_seniority(title) < SENIOR_LEVEL


def test_levels_read_the_same_in_reasons_descriptions_and_checks() -> None:
    """One scale, one set of words: the feature's description, its reasons and the
    behaviour check's ceiling all follow the parser's levels."""
    top = FEATURES_BY_NAME["max_seniority"]
    assert reason_text(top, 5.0) == "Most senior contact: vice president"
    assert reason_text(top, 6.0) == "Most senior contact: C-level, owner or general manager"
    assert "4 director or head" in top.description and "6 C-level" in top.description
    assert reason_text(FEATURES_BY_NAME["senior_met"], 1.0) == "Met a director or above"
    assert FEATURES_BY_NAME["n_senior_contacts"].description == (
        "Contacts ranked director or above on the deal."
    )
    check = next(c for c in CHECKS if c.feature == "max_seniority")
    levels = np.array([3.0, 5.0, 6.0, np.nan])
    assert check.eligible(levels).tolist() == [True, True, False, False]
    assert check.change(levels[:2]).tolist() == [4.0, 6.0]


def test_seniority_of_titles_matches_the_scalar_function() -> None:
    titles = pd.Series(
        ["CEO", None, "Sales", "总经理助理", "CEO", np.nan, "Head of IT", "副总经理"],
        index=[10, 11, 12, 13, 14, 15, 16, 17],
        name="title",
    )
    out = seniority_of_titles(titles)
    expected = [6, np.nan, np.nan, 1, 6, np.nan, 4, 5]
    assert out.dtype == np.float64
    assert out.name == "title"
    assert out.index.equals(titles.index)
    np.testing.assert_array_equal(out.to_numpy(), np.array(expected, dtype=float))
    np.testing.assert_array_equal(out.to_numpy(), [title_seniority(t) for t in titles])


def test_seniority_of_titles_handles_empty_and_all_missing() -> None:
    assert seniority_of_titles(pd.Series([], dtype=object)).empty
    out = seniority_of_titles(pd.Series([None, None], dtype=object))
    assert out.isna().all() and out.dtype == np.float64


def test_seniority_of_titles_scores_each_distinct_title_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import leadscore.features.seniority as seniority

    calls: list[str] = []
    original = seniority.title_seniority

    def counting(title: str | None) -> float:
        calls.append(title)
        return original(title)

    monkeypatch.setattr(seniority, "title_seniority", counting)
    titles = pd.Series(["VP Sales", "经理", "VP Sales", None] * 50_000)
    out = seniority.seniority_of_titles(titles)
    assert sorted(calls) == sorted(["VP Sales", "经理"])
    assert out.value_counts().to_dict() == {5.0: 100_000, 3.0: 50_000}
    assert out.isna().sum() == 50_000
