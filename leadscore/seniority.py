"""Contact seniority from free-text job titles, in English and Chinese.

CRMs hold titles as people typed them ("VP Sales", "采购总监", "Sr. Engineer",
"Assistant to the CEO"). Win rates depend on how senior the people engaged are, so
titles are mapped to an ordinal level. Rules are checked from the most specific to
the most general, which is what keeps the traps right: "Vice President" is a VP, not
a president; "副总经理" is a VP while "总经理" is C-level; an assistant to a CEO is an
individual contributor.
"""

from __future__ import annotations

import re
import unicodedata
from enum import IntEnum

import numpy as np
import pandas as pd


class Seniority(IntEnum):
    INDIVIDUAL = 1
    SUPERVISOR = 2
    MANAGER = 3
    DIRECTOR = 4
    VP = 5
    C_LEVEL = 6


LABELS: dict[int, str] = {
    Seniority.INDIVIDUAL: "individual contributor",
    Seniority.SUPERVISOR: "supervisor or team lead",
    Seniority.MANAGER: "manager",
    Seniority.DIRECTOR: "director or head",
    Seniority.VP: "vice president",
    Seniority.C_LEVEL: "C-level, owner or general manager",
}

#: Director and above count as senior contacts.
SENIOR_LEVEL = int(Seniority.DIRECTOR)

# (pattern, level), first match wins. English patterns run on lower-cased text with
# punctuation turned into spaces; Chinese ones on the same text (no case there).
_RULES: list[tuple[str, Seniority]] = [
    # Assistants and secretaries of senior people are not senior themselves.
    (r"\b(assistant|secretary|pa|ea)\b|executive assistant|助理|秘书|文员", Seniority.INDIVIDUAL),
    # Vice presidents before presidents; deputy general managers before general managers.
    (r"\b(vice president|vp|svp|evp|avp)\b|副总裁|副总经理|副总|副董事长|副行长|副院长", Seniority.VP),
    (
        r"\b(ceo|cfo|cto|coo|cio|cmo|cro|cso|cpo|cxo|chief\b.*\bofficer|chief|president|founder|"
        r"co founder|cofounder|owner|managing director|general manager|gm|chairman|chairwoman|chair|"
        r"partner|principal)\b|董事长|总经理|总裁|创始人|首席|董事|老板|合伙人|行长|院长|厂长",
        Seniority.C_LEVEL,
    ),
    (r"\b(director|head|deputy director)\b|总监|副总监|部长|主任", Seniority.DIRECTOR),
    (r"\b(manager|mgr)\b|经理", Seniority.MANAGER),
    (r"\b(supervisor|team lead|lead|leader|foreman)\b|主管|组长|领班|班长", Seniority.SUPERVISOR),
    (
        r"\b(engineer|analyst|specialist|associate|representative|rep|consultant|developer|"
        r"officer|coordinator|administrator|admin|clerk|technician|agent|buyer|accountant|staff|"
        r"designer|scientist|intern|executive)\b|工程师|专员|职员|员工|文员|会计|采购员|销售员|业务员|顾问|实习",
        Seniority.INDIVIDUAL,
    ),
]
_COMPILED = [(re.compile(p), level) for p, level in _RULES]
_PUNCT = re.compile(r"[^\w\u4e00-\u9fff]+")


def _normalise(title: str) -> str:
    text = unicodedata.normalize("NFKC", title).lower()
    text = text.replace("co-founder", "co founder").replace("sr.", "senior ")
    return " " + _PUNCT.sub(" ", text).strip() + " "


def title_seniority(title: str | None) -> float:
    """Seniority level (1 to 6) of a job title; NaN when missing or not recognised."""
    if title is None or (isinstance(title, float) and np.isnan(title)):
        return float("nan")
    text = _normalise(str(title))
    if not text.strip():
        return float("nan")
    for pattern, level in _COMPILED:
        if pattern.search(text):
            return float(level)
    return float("nan")


def seniority_of_titles(titles: pd.Series) -> pd.Series:
    """Vectorised :func:`title_seniority`: each distinct title is parsed once."""
    values = titles.astype(object).where(titles.notna(), None)
    unique = pd.unique(values.to_numpy())
    mapping = {t: title_seniority(t) for t in unique if t is not None}
    return values.map(mapping).astype("float64")
