"""Ordinal seniority derived from free-text job titles in English and Chinese.

CRM contacts carry a title as typed by a rep ('VP Sales', '销售总监', 'Sales Director
销售总监', 'ＣＥＯ助理'). Buying power grows with seniority, so the features need it as a
number. The title is normalised (NFKC folds full-width characters; lower case; dots
dropped, so 'V.P.' reads 'vp' and 'Sr.' 'sr'; other punctuation becomes a space), then
scanned left to right for known title words, the most specific first, so that 'vice
president' is read before 'president', 'managing director' before 'director' and
'总经理' before '经理'. A title word may carry a modifier in front of it, an assistant
word behind it, or words around it that say it is someone else's title:

* deputy / vice / 副 + title: a deputy of a C-level role is a VP ('副总经理', 'Deputy
  CEO' → 5); a deputy of anything else keeps the level ('Deputy Director', '副总监' →
  4: the deputy runs the same unit and signs off when the director is away);
* assistant / associate / 助理 + title: one level lower and at most manager, since
  the title itself says someone else decides ('Assistant Manager' 2, 'Associate
  Director' 3, 'Assistant Vice President' and 'AVP' 3, '助理工程师' 1);
* an assistant who assists a role, either behind it ('CEO助理', '总经理助理',
  'Executive Assistant') or alone ('Assistant to the CEO'), makes the whole title an
  individual contributor's, whatever role it names;
* words around a title word can say it names someone else, and then it does not
  count: whom the person serves ('Chief of Staff to the CEO' → 4, 'Advisor to the
  President' → 1) and a leader's office ('Office of the CEO Coordinator' → 1,
  '总经理办公室主任' → 3, '总裁办秘书' → 1). The office is a unit named after its
  leader, and the person works in it.

Otherwise the level is the highest one found ('CEO & Founder' → 6, 'Sales Director
销售总监' → 4); a title without a known word ('Sales', '采购部') is NaN. Seniority
modifiers such as 'Senior' or '高级' do not change the level ('Senior Engineer' stays
1), and professional grades are individual contributors ('Principal Engineer',
主任医师, 主任科员). Other decisions:

* '部长' heads a department like 'Head of ...', so it is 4 (as are '处长', '司长' (a
  ministry's department), '所长', '厂长', '秘书长' and '负责人'); '科长', '股长',
  '课长' and '主任' (the head of an office, a workshop, a centre) are 3;
* the head of a public body is its C-level, as buyers in the public sector see it:
  '局长', '厅长', '院长', '校长', '书记' (the party secretary who leads the body),
  '市长', '县长', '镇长' and a commission's '主任' ('卫健委主任') are 6, their deputies 5;
* '采购' alone is a buyer (1, like 'Buyer'); an HR business partner ('HR BP') is 1:
  a partner advises a unit's head and owns no team;
* traps: 'Director of First Impressions' is the receptionist (1); 'Head Chef', 'Head
  Nurse', '护士长' lead a crew (2); '班主任' is a homeroom teacher and '书记员' a court
  clerk (1); 'Chief of Staff' is 4 (in the room for decisions, no budget of its own);
* 'Executive Director' is 5; 'Product Owner' is a role, not an owner, so 3; board
  members ('董事', 'Board Member', 'Chairman') are 6, but '董事会秘书' and 'Company
  Secretary' (a listed company's officer) are 5.

The real-world titles the parser is tested on, with the reason for each convention,
are in ``tests/seniority_titles.py``.
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
#: first listed wins, so longer and more specific words come first (a trap before the
#: word it contains: 'director of first impressions' before 'director'). English words
#: are bounded by non-letters (not ``\b``: a CJK character counts as a word character,
#: and 'CEO助理' must still find 'ceo').
_ENGLISH: tuple[tuple[str, int], ...] = (
    (r"director of first impressions", _IC),  # the receptionist
    # A head chef or head nurse leads a crew on the floor; no department is theirs.
    (r"head (?:chef|cook|nurse|waiter|waitress|bartender|gardener|housekeeper)", _SUP),
    (r"chief of staff", _DIR),
    (r"chief(?: [a-z]+){0,3} officer", _C),
    (r"chief executive", _C),
    (r"c(?:eo|fo|to|oo|io|mo|so|ro|po|do|co|xo|iso|hro|dio|aio)", _C),
    (r"c (?:level|suite)", _C),
    (r"managing (?:director|partner)|md", _C),
    (r"(?:general|founding) partner", _C),
    (r"gen(?:eral)? (?:manager|mgr)|gm", _C),
    (r"general counsel", _C),  # the company's top lawyer sits with the C-suite
    (r"(?:co ?)?founder", _C),
    (r"product owner|process owner", _MGR),
    (r"owner|proprietor", _C),
    (r"chair(?:man|woman|person)?", _C),
    (r"board (?:member|director)|non executive director", _C),
    (r"president", _C),
    (r"(?:senior |executive )?vice president|[se]vp|vp", _VP),
    (r"avp", _MGR),
    (r"exec(?:utive)? dir(?:ector)?", _VP),
    (r"(?:company|board|corporate) secretary", _VP),  # like 董事会秘书, an officer
    (r"director|dir|secretary general", _DIR),
    (r"head(?! ?hunter)", _DIR),
    (r"chief", _DIR),
    (r"manager|mgr", _MGR),
    (r"supervisor|foreman|team lead(?:er)?|lead(?:er)?(?! generation)", _SUP),
    (
        r"engineer|analyst|specialist|associate|assistant|asst|representative|rep"
        r"|consultant|coordinator|administrator|developer|designer|accountant|clerk"
        r"|officer|executive|exec|staff|intern|trainee|buyer|purchaser|scientist"
        r"|technician|agent|operator|programmer|secretary|receptionist|recruiter|auditor"
        r"|advis[eo]r|counsel|nurse|teacher|professor|physician"
        # A business partner (HRBP) advises a unit's head and owns no team.
        r"|hr ?bp|(?:hr )?business partner",
        _IC,
    ),
)
_CHINESE: tuple[tuple[str, int], ...] = (
    # Words that contain a title word but are grades or other jobs: 主任医师 and 主任科员
    # are professional and civil-service grades, 班主任 a homeroom teacher, 书记员 a
    # court clerk.
    (r"主任医师|主任科员|班主任|书记员", _IC),
    (r"董事会秘书|董秘", _VP),
    (r"董事长|董事|主席", _C),
    (r"联合创始人|创始人|合伙人", _C),
    (r"总经理|总裁", _C),
    (r"首席.{1,6}?官", _C),
    (r"老板|法人代表", _C),
    # The head of a public body is its C-level: a bureau, a provincial department, a
    # hospital, academy or court, a school; the party secretary who leads it with the
    # head; a city, county or town; a commission (卫健委主任, 发改委副主任).
    (r"局长|厅长|院长|校长|书记|[省市县镇乡]长|(?:(?<=[委会])|(?<=[委会]副))主任", _C),
    (r"副总", _VP),
    (r"总工程师|总工", _DIR),
    # Heads of a unit inside an organisation: a department (部长, and 司长 in a
    # ministry), a division, an institute, a factory.
    (r"总监|部长|处长|司长|所长|厂长|秘书长|负责人|首席", _DIR),
    (r"经理|科长|股长|课长|主任|店长", _MGR),
    (r"主管|组长|班长|领班|护士长|厨师长", _SUP),
    (
        r"工程师|专员|助理|职员|文员|业务员|销售员|采购员|技术员|操作员|代表|分析师|顾问"
        r"|会计|出纳|秘书|设计师|程序员|客服|实习生|前台|科员|研究员|医生|医师|护士"
        r"|教师|老师|教授|业务(?:合作)?伙伴"
        # 采购 on its own is the buyer; 采购部, 采购处, 采购中心 name the department.
        r"|采购(?![部处科办中])",
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
_ASSISTING = r" ?(?:assistant|asst|secretary)(?![a-z])|助理|秘书"
#: Words that, standing alone, make the whole title an assistant's.
_ASSISTANT_WORDS = frozenset({"assistant", "asst", "助理"})

#: Words around a title word that make it name someone other than the person, so it
#: does not count:
#:
#: * whom the person serves, before it ('Chief of Staff to the CEO', 'Advisor to the
#:   President');
#: * a leader's office, 'office of (the)' before it or 'office', '办公室', '办' after it
#:   ('Office of the CEO Coordinator', 'CEO Office Manager', '总经理办公室主任',
#:   '总裁办秘书'; 总经办 and 董办 are the GM's and the board's offices by name). The
#:   office is a unit named after its leader (director or head and above) and the person
#:   works in it: its head (主任) runs an administrative office, a manager (3), and its
#:   secretary is a secretary (1). 'Director, Office of Small Business' keeps its
#:   director: 'office of' after a word names the unit the person heads.
_SERVES = r"(?<![a-z])to (?:the )?"
_OFFICE_OF = r"(?<![a-z])office of (?:the )?"
_OFFICE = r"(?: s)? office(?![a-z])(?! of)|办公室|办"
_OFFICE_NAMES = r"董事会(?:办公室|办)|董办|总经办"

_SCAN = re.compile(
    rf"(?P<office_name>{_OFFICE_NAMES})"
    rf"|(?:(?P<serves>{_SERVES})|(?P<office_of>{_OFFICE_OF}))?"
    rf"(?P<modifier>{_MODIFIER})?"
    rf"(?P<title>{'|'.join(f'(?P<w{i}>{p})' for i, (p, _) in enumerate(_WORDS))})"
    rf"(?P<assisting>{_ASSISTING})?"
    rf"(?P<office>{_OFFICE})?"
)
_LEVELS = {f"w{i}": level for i, (_, level) in enumerate(_WORDS)}
_SEPARATORS = re.compile(r"[\W_]+")


def normalise_title(title: str) -> str:
    """Fold width and case, drop dots ('V.P.' → 'vp'), other punctuation → one space."""
    text = unicodedata.normalize("NFKC", title).lower().replace(".", "")
    return _SEPARATORS.sub(" ", text).strip()


def _level(match: re.Match[str]) -> tuple[int, bool] | None:
    """Level of one title word with its modifier, and whether it makes an assistant.

    None when the words name someone other than the person (a leader's office, whom
    the person serves).
    """
    groups = match.groupdict()
    if groups["office_name"] or groups["serves"]:
        return None
    level = next(_LEVELS[name] for name in _LEVELS if groups[name] is not None)
    if (groups["office_of"] or groups["office"]) and level >= _DIR:
        return None
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
    found = [w for w in map(_level, _SCAN.finditer(normalise_title(title))) if w is not None]
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
