"""The ranked list a page at a time: filters, order and rows as the managers' page draws them.

A ranking of 100,000 deals is too much for one page (the HTML of 1,000 rows was 6.8 MB),
so the served page ships one page of rows and its script asks for the others
(``GET /leads/api/leads``, :func:`lead_page`). The static file ``leadscore report``
writes embeds the top rows instead, and the same script pages through them in the
browser; both draw rows from :func:`page_row`, so a row looks the same either way.

Filters (:class:`LeadQuery`, values within one filter are alternatives): owner, team
(the CRM contract has no team column: a team is the reps ``LEADSCORE_TEAMS`` names),
channel, segment (size band or industry, as ``leadscore top --segment``), status
(``open``: active and dormant; ``active``, ``dormant``, ``lost``: recently lost) and
grade. The order is the ranking's, or by one column, missing values last.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from leadscore.config import MAX_PAGE_SIZE, PAGE_SIZE
from leadscore.priority.i18n import (
    EN,
    category_text,
    localised,
    meaning_text,
    model_text,
    money,
    percent,
    stage_text,
    texts,
)
from leadscore.priority.rank import ACTIVE, DORMANT, GROUP, PRIORITY_GROUPS, RECENTLY_LOST, Filters

#: Status filter values and the priority groups each selects.
STATUSES: dict[str, tuple[str, ...]] = {
    "open": (ACTIVE, DORMANT),
    "active": (ACTIVE,),
    "dormant": (DORMANT,),
    "lost": (RECENTLY_LOST,),
}
#: A priority group's status key (its label in :data:`~leadscore.priority.i18n.TEXT`).
GROUP_STATUS = {ACTIVE: "active", DORMANT: "dormant", RECENTLY_LOST: "lost"}
#: Columns the list may be sorted by.
SORTS = ("rank", "probability", "expected_value", "amount", "change", "grade")
_SPARKS = "▁▂▃▄▅▆▇█"


def _values(params: Mapping[str, Any], key: str) -> tuple[str, ...]:
    """A filter's values: repeated parameters or comma-separated, blanks dropped."""
    raw = params.getlist(key) if hasattr(params, "getlist") else [params.get(key) or ""]
    return tuple(v.strip() for r in raw for v in str(r).split(",") if v.strip())


def _int(params: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    v = params.get(key)
    if v in (None, ""):
        return default
    try:
        n = int(str(v))
    except ValueError as exc:
        raise ValueError(f"{key}={v!r}: not a whole number") from exc
    if not low <= n <= high:
        raise ValueError(f"{key}={n}: must be between {low} and {high}")
    return n


@dataclass(frozen=True)
class LeadQuery:
    """One request for the list: a page, its size, filters and order."""

    page: int = 1
    size: int = PAGE_SIZE
    owners: tuple[str, ...] = ()
    teams: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    segments: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    grades: tuple[str, ...] = ()
    sort: str = "rank"
    descending: bool = False

    def __post_init__(self) -> None:
        for s in self.statuses:
            if s not in STATUSES:
                raise ValueError(f"status={s!r}: must be one of {', '.join(STATUSES)}")
        if self.sort not in SORTS:
            raise ValueError(f"sort={self.sort!r}: must be one of {', '.join(SORTS)}")

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> LeadQuery:
        """From query parameters (``page, size, owner, team, channel, segment, status,
        grade, sort, desc``); raises ``ValueError`` naming a bad one."""
        return cls(
            page=_int(params, "page", 1, 1, 10**9),
            size=_int(params, "size", PAGE_SIZE, 1, MAX_PAGE_SIZE),
            owners=_values(params, "owner"),
            teams=_values(params, "team"),
            channels=_values(params, "channel"),
            segments=_values(params, "segment"),
            statuses=tuple(s.lower() for s in _values(params, "status")),
            grades=tuple(g.upper() for g in _values(params, "grade")),
            sort=str(params.get("sort") or "rank"),
            descending=str(params.get("desc") or "").lower() in ("1", "true", "yes"),
        )


def select(
    ranked: pd.DataFrame, query: LeadQuery, teams: Sequence[tuple[str, Sequence[str]]] = ()
) -> pd.DataFrame:
    """The rows ``query`` keeps, in its order. A team no setting names keeps nothing."""
    groups = tuple(g for s in query.statuses for g in STATUSES[s])
    frame = Filters(query.owners, query.channels, query.segments, groups).apply(ranked)
    if query.teams:
        members = {o for name, owners in teams if name in query.teams for o in owners}
        frame = frame[frame["owner_id"].astype(str).isin(members).to_numpy()]
    if query.grades:
        frame = frame[frame["grade"].astype(str).isin(set(query.grades)).to_numpy()]
    if query.sort != "rank" or query.descending:
        key = frame[query.sort]
        order = np.argsort(
            key.to_numpy(dtype=object if query.sort == "grade" else np.float64), kind="stable"
        )
        if query.descending:
            order = order[::-1]
        missing = key.isna().to_numpy()[order]
        frame = frame.iloc[np.r_[order[~missing], order[missing]]]
    return frame


def change(c: Any, lang: str = EN) -> str:
    """Probability change in percentage points; empty when there was no previous score."""
    if c is None or pd.isna(c):
        return ""
    points = round(100 * float(c))
    unit = texts(lang)["pts"]
    return f"±0 {unit}" if points == 0 else f"{points:+d} {unit}"


def sparkline(trend: Sequence[float] | None) -> str:
    """A probability trend as block characters, one per run, 0% lowest, 100% highest."""
    if trend is None or len(trend) == 0:
        return ""
    return "".join(_SPARKS[min(int(p * len(_SPARKS)), len(_SPARKS) - 1)] for p in trend)


def _num(v: Any) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def page_row(r: Mapping[str, Any], lang: str = EN) -> dict[str, Any]:
    """One row as the page's script draws it: raw values to sort by, texts in ``lang``
    (a reason's, flag's or next step's Chinese when it has one, else its English)."""
    trend = list(r["trend"]) if r.get("trend") is not None else []
    group = str(r[GROUP])
    words = texts(lang)

    def reasons(items: Any) -> list[dict[str, str]]:
        return [
            {"text": localised(x, "text", lang), "tooltip": localised(x, "tooltip", lang)}
            for x in items
        ]

    return {
        "rank": int(r["rank"]),
        "deal_id": str(r["deal_id"]),
        "account_id": str(r["account_id"]),
        "owner_id": str(r["owner_id"]),
        "group": group,
        "group_text": words[f"status_{GROUP_STATUS.get(group, 'active')}"]
        if group in PRIORITY_GROUPS
        else group,
        "stage": stage_text(str(r.get("stage") or ""), lang),
        "segment": r.get("segment") or "",
        "industry": (r.get("industry") or "").replace("_", " "),
        "segment_text": category_text(r.get("segment") or "", lang),
        "industry_text": category_text((r.get("industry") or "").replace("_", " "), lang),
        "grade": str(r["grade"]),
        "model": model_text(str(r.get("model") or ""), lang),
        "meaning": meaning_text(str(r.get("meaning") or ""), lang),
        "probability": _num(r["probability"]),
        "win": percent(r["probability"], lang),
        "amount": _num(r["amount"]),
        "amount_text": money(r["amount"], lang),
        "expected_value": _num(r["expected_value"]),
        "ev_text": money(r["expected_value"], lang),
        "change": _num(r["change"]),
        "change_text": change(r["change"], lang),
        "spark": sparkline(trend),
        "trend_text": " → ".join(percent(p, lang) for p in trend),
        "positive": reasons(r["positive_reasons"]),
        "negative": reasons(r["negative_reasons"]),
        "flags": [
            {"code": str(f.get("code") or ""), "text": localised(f, "text", lang)}
            for f in r["risk_flags"]
        ],
        "next_step": localised(r, "next_step", lang),
    }


def lead_page(
    ranked: pd.DataFrame,
    query: LeadQuery,
    lang: str = EN,
    teams: Sequence[tuple[str, Sequence[str]]] = (),
) -> dict[str, Any]:
    """One page of the list: ``total`` (listed), ``matched`` (by the filters), ``page``
    (clamped to the last), ``pages``, ``size`` and its ``rows`` (:func:`page_row`)."""
    chosen = select(ranked, query, teams)
    pages = max(1, -(-len(chosen) // query.size))
    page = min(query.page, pages)
    part = chosen.iloc[(page - 1) * query.size : page * query.size]
    return {
        "total": len(ranked),
        "matched": len(chosen),
        "page": page,
        "pages": pages,
        "size": query.size,
        "rows": [page_row(r, lang) for r in part.to_dict("records")],
    }


def filter_options(
    ranked: pd.DataFrame, teams: Sequence[tuple[str, Sequence[str]]] = ()
) -> dict[str, list[str]]:
    """The values each filter of the page offers, from the whole list."""

    def distinct(column: str) -> list[str]:
        if column not in ranked:
            return []
        return sorted({str(v) for v in ranked[column].dropna().unique() if str(v)})

    industries = distinct("industry")
    return {
        "owner": distinct("owner_id"),
        "team": [name for name, _ in teams],
        "channel": distinct("channel"),
        "segment": distinct("segment") + [i for i in industries if i not in distinct("segment")],
        "status": list(STATUSES),
        "grade": distinct("grade"),
    }
