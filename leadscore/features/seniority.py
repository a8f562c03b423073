"""Ordinal seniority derived from free-text job titles in English and Chinese.

CRM contacts carry a title as typed by a rep ('VP Sales', '销售总监', 'Sales Director
销售总监', 'ＣＥＯ助理'). Buying power grows with seniority, so the features need it as a
number. The title is normalised (NFKC folds full-width characters; lower case; dots
dropped, so 'V.P.' reads 'vp' and 'Sr.' 'sr'; other punctuation becomes a space), then
scanned left to right for known title words, the most specific first, so that 'vice
president' is read before 'president', 'managing director' before 'director' and
'总经理' before '经理'. A title word may carry a modifier in front of it or an
assistant word behind it:

* deputy / vice / 副 + title: a deputy of a C-level role is a VP ('副总经理', 'Deputy
  CEO' → 5); a deputy of anything else keeps the level ('Deputy Director', '副总监' →
  4: the deputy runs the same unit and signs off when the director is away);
* assistant / associate / 助理 + title: one level lower and at most manager, since
  the title itself says someone else decides ('Assistant Manager' 2, 'Associate
  Director' 3, 'Assistant Vice President' and 'AVP' 3, '助理工程师' 1);
* an assistant who assists a role, either behind it ('CEO助理', '总经理助理',
  'Executive Assistant') or alone ('Assistant to the CEO'), makes the whole title an
  individual contributor's, whatever role it names.

Otherwise the level is the highest one found ('CEO & Founder' → 6, 'Sales Director
销售总监' → 4); a title without a known word ('Sales') is NaN. Seniority modifiers such
as 'Senior' or '高级' do not change the level ('Senior Engineer' stays 1). Other
decisions: '部长' heads a department like 'Head of ...', so it is 4 (as are '处长',
'厂长' and '负责人'); '科长', '课长' and '主任' are 3; 'Executive Director' is 5;
'Product Owner' is a role, not an owner, so 3; board members ('董事', 'Board Member',
'Chairman') are 6, but '董事会秘书' (the board secretary, a listed company's officer)
is 5.
"""

from __future__ import annotations

import logging
import math
import re
import unicodedata
from enum import IntEnum

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)


class Seniority(IntEnum):
    """Ordinal seniority levels; higher means more say in the purchase."""

    INDIVIDUAL = 1
    SUPERVISOR = 2
    MANAGER = 3
    DIRECTOR = 4
    VP = 5
    C_LEVEL = 6


#: Human labels by level (keys are ints too: ``LABELS[4]`` works).
LABELS: dict[int, str] = {
    Seniority.INDIVIDUAL: "individual contributor",
    Seniority.SUPERVISOR: "supervisor or team lead",
    Seniority.MANAGER: "manager",
    Seniority.DIRECTOR: "director or head",
    Seniority.VP: "vice president",
    Seniority.C_LEVEL: "C-level, owner or general manager",
}

#: Director and above count as senior.
SENIOR_LEVEL: int = int(Seniority.DIRECTOR)

_IC, _SUP, _MGR, _DIR, _VP, _C = (int(s) for s in Seniority)

#: (regex, level) in priority order: where two words start at the same place, the
#: first listed wins, so longer and more specific words come first. English words are
#: bounded by non-letters (not ``\b``: a CJK character counts as a word character, and
#: 'CEO助理' must still find 'ceo').
_ENGLISH: tuple[tuple[str, int], ...] = (
    (r"chief(?: [a-z]+){0,3} officer", _C),
    (r"chief executive", _C),
    (r"c(?:eo|fo|to|oo|io|mo|so|ro|po|do|co|xo|iso|hro|dio|aio)", _C),
    (r"c (?:level|suite)", _C),
    (r"managing (?:director|partner)", _C),
    (r"(?:general|founding) partner", _C),
    (r"general manager|gm", _C),
    (r"(?:co ?)?founder", _C),
    (r"product owner|process owner", _MGR),
    (r"owner|proprietor", _C),
    (r"chair(?:man|woman|person)?", _C),
    (r"board (?:member|director)|non executive director", _C),
    (r"president", _C),
    (r"(?:senior |executive )?vice president|[se]vp|vp", _VP),
    (r"avp", _MGR),
    (r"executive director", _VP),
    (r"director|dir", _DIR),
    (r"head(?! ?hunter)", _DIR),
    (r"chief", _DIR),
    (r"manager|mgr", _MGR),
    (r"supervisor|foreman|team lead(?:er)?|lead(?:er)?(?! generation)", _SUP),
    (
        r"engineer|analyst|specialist|associate|assistant|representative|rep|consultant"
        r"|coordinator|administrator|developer|designer|accountant|clerk|officer"
        r"|executive|staff|intern|trainee|buyer|purchaser|scientist|technician|agent"
        r"|operator|programmer|secretary",
        _IC,
    ),
)
_CHINESE: tuple[tuple[str, int], ...] = (
    (r"董事会秘书|董秘", _VP),
    (r"董事长|董事|主席", _C),
    (r"联合创始人|创始人|合伙人", _C),
    (r"总经理|总裁", _C),
    (r"首席.{1,6}?官", _C),
    (r"老板|法人代表", _C),
    (r"副总", _VP),
    (r"总工程师|总工", _DIR),
    (r"总监|部长|处长|厂长|负责人|首席", _DIR),
    (r"经理|科长|课长|主任|店长", _MGR),
    (r"主管|组长|班长|领班", _SUP),
    (
        r"工程师|专员|助理|职员|文员|业务员|销售员|采购员|技术员|操作员|代表|分析师|顾问"
        r"|会计|出纳|秘书|设计师|程序员|客服|实习生",
        _IC,
    ),
)
_WORDS: tuple[tuple[str, int], ...] = (
    *((rf"(?<![a-z])(?:{pattern})(?![a-z])", level) for pattern, level in _ENGLISH),
    *_CHINESE,
)
_DEPUTIES = frozenset({"deputy", "vice", "副"})
#: A modifier may stand up to two words before its title ('Assistant Sales Manager'),
#: but never across 'to' ('Assistant to the CEO' assists the CEO).
_MODIFIER = r"(?:deputy|vice|assistant|asst|associate|assoc)(?: (?!to )[a-z]+){0,2}? |副|助理"
#: An assistant word right after a title: the person assists that role ('CEO助理').
_ASSISTING = r" ?(?:assistant|secretary)(?![a-z])|助理|秘书"
#: Words that, standing alone, make the whole title an assistant's.
_ASSISTANT_WORDS = frozenset({"assistant", "助理"})

_SCAN = re.compile(
    rf"(?P<modifier>{_MODIFIER})?"
    rf"(?P<title>{'|'.join(f'(?P<w{i}>{p})' for i, (p, _) in enumerate(_WORDS))})"
    rf"(?P<assisting>{_ASSISTING})?"
)
_LEVELS = {f"w{i}": level for i, (_, level) in enumerate(_WORDS)}
_SEPARATORS = re.compile(r"[\W_]+")


def normalise_title(title: str) -> str:
    """Fold width and case, drop dots ('V.P.' → 'vp'), other punctuation → one space."""
    text = unicodedata.normalize("NFKC", title).lower().replace(".", "")
    return _SEPARATORS.sub(" ", text).strip()


def _level(match: re.Match[str]) -> tuple[int, bool]:
    """Level of one title word with its modifier, and whether it makes an assistant."""
    groups = match.groupdict()
    level = next(_LEVELS[name] for name in _LEVELS if groups[name] is not None)
    if groups["assisting"] or groups["title"] in _ASSISTANT_WORDS:
        return _IC, True
    modifier = groups["modifier"]
    if modifier is None:
        return level, False
    if modifier.split(" ")[0] in _DEPUTIES:
        return (_VP if level == _C else level), False
    return max(_IC, min(level - 1, _MGR)), False


def title_seniority(title: str | None) -> float:
    """Seniority level (1-6) of a job title, NaN when missing or not recognised."""
    if not isinstance(title, str):
        return math.nan
    found = [_level(m) for m in _SCAN.finditer(normalise_title(title))]
    if not found:
        return math.nan
    if any(assistant for _, assistant in found):
        return float(_IC)
    return float(max(level for level, _ in found))


def seniority_of_titles(titles: pd.Series) -> pd.Series:
    """:func:`title_seniority` of every title, computed once per distinct title.

    Titles repeat heavily (millions of contacts, thousands of distinct titles), so the
    distinct values are scored and mapped back by their codes.
    """
    codes, distinct = pd.factorize(titles, use_na_sentinel=True)
    levels = np.array([title_seniority(t) for t in distinct], dtype=float)
    out = np.full(len(codes), np.nan)
    known = codes >= 0
    out[known] = levels[codes[known]]
    log.debug(
        "seniority: %d of %d distinct titles not recognised",
        int(np.isnan(levels).sum()),
        len(levels),
    )
    return pd.Series(out, index=titles.index, name=titles.name, dtype=float)
