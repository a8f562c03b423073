"""One deal's story in time order: what happened in the CRM, and how its score moved.

A manager who opens a deal from the list asks "how did it get here?". The answer is in
the stored CRM tables and in the score history ``leadscore rank`` keeps
(:mod:`leadscore.priority.rank`): the deal's creation, each stage change (forward or
back), each activity (type, who started it, which contact), each contact added (title,
the seniority the model reads from it, buying role), its close, and each recorded score
with what moved it. A score event compares the deal's top reasons with those of its
previous score: reasons that appeared and reasons that went, strongest first, in both
languages. Nothing is recomputed: the timeline shows what was stored and what was said.

:func:`deal_timeline` is pure (tables and history in, :class:`Timeline` out);
:func:`load_deal` reads only the deal's rows from the stored files (Parquet filters), so
opening a deal costs the same with ten or a million deals. Events at the same moment
keep the order a deal lives them: created, contact added, stage change, activity,
closed, score. Events without a time (an undated export) come last, in that order.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyarrow.parquet as pq

from leadscore.crm.contract import LOST, WON, canonical_lost_reasons
from leadscore.features.catalog import STAGE_LEVELS
from leadscore.features.catalog_zh import ACTIVITY_ZH, SENIORITY_ZH, category_zh, stage_zh
from leadscore.features.seniority import LABELS as SENIORITY_LABELS
from leadscore.features.seniority import title_seniority
from leadscore.priority.health import time_since, time_since_zh
from leadscore.priority.i18n import LANGUAGE_NAMES, ZH, date, money, texts

Kind = Literal["created", "contact", "stage", "activity", "closed", "score"]
#: Order of events at one moment (and of undated ones).
KIND_ORDER: tuple[Kind, ...] = ("created", "contact", "stage", "activity", "closed", "score")
#: How many of a score's strongest reasons each way are compared with the previous score's.
TOP_REASONS = 3
DIRECTION_ZH = {"inbound": "客户发起", "outbound": "我方发起"}
ROLE_ZH = {
    "economic_buyer": "经济决策人",
    "champion": "支持者",
    "influencer": "影响者",
    "user": "使用者",
    "other": "其他",
}
STATUS_ZH = {WON: "赢单", LOST: "丢单"}


class UnknownDeal(KeyError):
    """No deal with this id in the stored CRM."""

    def __str__(self) -> str:
        return f"no deal {self.args[0]!r} in the stored CRM"


@dataclass(frozen=True)
class Event:
    """One thing that happened to the deal, in words (English and Chinese) and as data."""

    at: pd.Timestamp | None
    kind: Kind
    text: str
    text_zh: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Timeline:
    """A deal, what it is now, and its events in time order."""

    deal_id: str
    summary: dict[str, Any]
    events: list[Event]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON: times as ISO 8601 text."""
        out = asdict(self)
        for e in out["events"]:
            e["at"] = None if e["at"] is None else e["at"].isoformat()
        return out


# ------------------------------------------------------------------ reading
def load_deal(
    crm_dir: Path, history_dir: Path, deal_id: str
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """The stored rows of one deal (its contacts' rows too) and its score history.

    Only the deal's rows are read (Parquet filters on ``deal_id`` and ``contact_id``).
    """

    def rows(name: str, column: str, values: list[str]) -> pd.DataFrame | None:
        path = crm_dir / f"{name}.parquet"
        if not path.is_file():
            return None
        return pq.read_table(path, filters=[(column, "in", values)]).to_pandas()

    tables: dict[str, pd.DataFrame] = {}
    for name in ("deals", "stage_history", "activities", "deal_contacts"):
        found = rows(name, "deal_id", [deal_id])
        if found is not None:
            tables[name] = found
    ids = set()
    for name in ("deal_contacts", "activities"):
        if name in tables and "contact_id" in tables[name]:
            ids |= set(tables[name]["contact_id"].dropna().astype(str))
    contacts = rows("contacts", "contact_id", sorted(ids)) if ids else None
    if contacts is not None:
        tables["contacts"] = contacts
    files = sorted(history_dir.glob("run_date=*/*/scores.parquet")) if history_dir.is_dir() else []
    parts = [pq.read_table(f, filters=[("deal_id", "==", deal_id)]).to_pandas() for f in files]
    parts = [p for p in parts if len(p)]
    history = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    return tables, history


# ------------------------------------------------------------------ building
def _time(value: Any) -> pd.Timestamp | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or pd.isna(value):
        return None
    t = pd.Timestamp(value)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")


def _text(value: Any) -> str | None:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    text = str(value).strip()
    return text or None


STAGE_INDEX = {name: i for i, name in STAGE_LEVELS.names.items()}


def _contacts(tables: Mapping[str, pd.DataFrame]) -> dict[str, dict[str, Any]]:
    """Per contact id: title and seniority (level, English and Chinese names)."""
    out: dict[str, dict[str, Any]] = {}
    contacts = tables.get("contacts")
    if contacts is None:
        return out
    for row in contacts.to_dict("records"):
        title = _text(row.get("title"))
        level = title_seniority(title)
        known = not math.isnan(level)
        out[str(row["contact_id"])] = {
            "title": title,
            "seniority": int(level) if known else None,
            "seniority_name": SENIORITY_LABELS[int(level)] if known else None,
            "seniority_zh": SENIORITY_ZH[int(level)] if known else None,
        }
    return out


def _who(contact_id: str | None, contacts: Mapping[str, Mapping[str, Any]], zh: bool) -> str:
    """'C-7 (VP Sales, vice president)'; the id alone when its title is unknown."""
    if contact_id is None:
        return ""
    c = contacts.get(contact_id, {})
    parts = [p for p in (c.get("title"), c.get("seniority_zh" if zh else "seniority_name")) if p]
    if not parts:
        return contact_id
    return f"{contact_id}（{'，'.join(parts)}）" if zh else f"{contact_id} ({', '.join(parts)})"


def _created(deal: Mapping[str, Any]) -> Event:
    facts = {k: _text(deal.get(k)) for k in ("channel", "product", "owner_id", "account_id")}
    amount = deal.get("amount")
    amount = None if amount is None or pd.isna(amount) else float(amount)
    en = [f"{facts['channel']} channel"] if facts["channel"] else []
    zh = [f"{category_zh(facts['channel'])}渠道"] if facts["channel"] else []
    if facts["product"]:
        en.append(f"product {facts['product']}")
        zh.append(f"产品 {facts['product']}")
    if amount is not None:
        en.append(f"amount {amount:,.0f}")
        zh.append(f"金额 {money(amount, ZH)}")
    return Event(
        _time(deal.get("created_at")),
        "created",
        "Deal created" + (f": {', '.join(en)}" if en else ""),
        "商机创建" + (f"：{'，'.join(zh)}" if zh else ""),
        {**facts, "amount": amount},
    )


def _stage_events(stage_history: pd.DataFrame | None) -> list[Event]:
    """Each entry into a stage other than the current one (a re-entry is no change)."""
    if stage_history is None or not len(stage_history):
        return []
    rows = stage_history.assign(_at=pd.to_datetime(stage_history["entered_at"], utc=True))
    out: list[Event] = []
    previous: str | None = None
    for row in rows.sort_values("_at", kind="stable").to_dict("records"):
        stage = str(row["stage"])
        if stage == previous:
            continue
        details: dict[str, Any] = {"stage": stage, "from": previous}
        if previous is None:
            en, zh = f"Entered {stage}", f"进入{stage_zh(stage)}阶段"
        else:
            back = STAGE_INDEX.get(stage, 0) < STAGE_INDEX.get(previous, 0)
            details["backward"] = back
            verb, verb_zh = ("Moved back", "退回") if back else ("Moved", "推进到")
            en = f"{verb} from {previous} to {stage}"
            zh = f"从{stage_zh(previous)}{verb_zh}{stage_zh(stage)}阶段"
        out.append(Event(_time(row["_at"]), "stage", en, zh, details))
        previous = stage
    return out


def _activity_events(
    activities: pd.DataFrame | None, contacts: Mapping[str, Mapping[str, Any]]
) -> list[Event]:
    if activities is None:
        return []
    out = []
    for row in activities.to_dict("records"):
        kind = str(row["type"]).lower()
        direction = _text(row.get("direction"))
        contact = _text(row.get("contact_id"))
        en = f"{direction.capitalize() + ' ' if direction else ''}{kind}"
        zh = f"{DIRECTION_ZH.get(direction or '', '')}的{ACTIVITY_ZH.get(kind, kind)}".lstrip("的")
        if contact:
            en += f" with {_who(contact, contacts, False)}"
            zh += f"：{_who(contact, contacts, True)}"
        duration = row.get("duration_seconds")
        duration = None if duration is None or pd.isna(duration) else float(duration)
        out.append(
            Event(
                _time(row["occurred_at"]),
                "activity",
                en,
                zh,
                {
                    "activity_id": str(row["activity_id"]),
                    "type": kind,
                    "direction": direction,
                    "contact_id": contact,
                    "duration_seconds": duration,
                    **contacts.get(contact or "", {}),
                },
            )
        )
    return out


def _contact_events(
    deal_contacts: pd.DataFrame | None, contacts: Mapping[str, Mapping[str, Any]]
) -> list[Event]:
    if deal_contacts is None:
        return []
    out = []
    for row in deal_contacts.to_dict("records"):
        cid = str(row["contact_id"])
        role = _text(row.get("role"))
        en = f"Contact added: {_who(cid, contacts, False)}"
        zh = f"添加联系人：{_who(cid, contacts, True)}"
        if role:
            en += f", {role.replace('_', ' ')}"
            zh += f"，{ROLE_ZH.get(role, role)}"
        out.append(
            Event(
                _time(row.get("added_at")),
                "contact",
                en,
                zh,
                {"contact_id": cid, "role": role, **contacts.get(cid, {})},
            )
        )
    return out


def _closed(deal: Mapping[str, Any]) -> Event | None:
    status = (_text(deal.get("status")) or "").lower()
    if status not in (WON, LOST):
        return None
    reason = _text(deal.get("lost_reason")) if status == LOST else None
    canonical = canonical_lost_reasons(pd.Series([reason])).iloc[0] if reason is not None else None
    en, zh = ("Won", "赢单") if status == WON else ("Lost", "丢单")
    if reason is not None:
        en += f": {reason}"
        zh += f"：{reason}"
    return Event(
        _time(deal.get("closed_at")),
        "closed",
        en,
        zh,
        {"status": status, "lost_reason": reason, "lost_reason_canonical": canonical},
    )


def _top(reasons: Any) -> list[Mapping[str, Any]]:
    return [] if reasons is None else list(reasons)[:TOP_REASONS]


def _score_events(history: pd.DataFrame) -> list[Event]:
    """One event per run date (the last score that day), with what changed since the last."""
    if history is None or not len(history):
        return []
    h = history.sort_values(["run_date", "scored_at"], kind="stable").drop_duplicates(
        "run_date", keep="last"
    )
    out: list[Event] = []
    before: dict[str, Any] | None = None
    for row in h.to_dict("records"):
        p = float(row["probability"])
        score = int(round(100 * p))
        shown = {
            side: {r["text"]: r for r in _top(row.get(f"{side}_reasons"))}
            for side in ("positive", "negative")
        }
        details: dict[str, Any] = {
            "probability": p,
            "score": score,
            "grade": row.get("grade"),
            "model": row.get("model"),
            "model_version": row.get("model_version"),
            "change": None,
            "new_reasons": [],
            "gone_reasons": [],
        }
        en, zh = f"Scored {score} ({row.get('grade')})", f"评分 {score}（{row.get('grade')}）"
        if before is not None:
            change = score - before["score"]
            details["change"] = change
            en += f", {change:+d} since {before['run_date']}"
            zh += f"，较 {date(before['run_date'], ZH)} {change:+d}"
            for side, sign in (("positive", "+"), ("negative", "−")):
                then = before["shown"][side]
                now = shown[side]
                details["new_reasons"] += [
                    {**_reason(r), "sign": sign} for t, r in now.items() if t not in then
                ]
                details["gone_reasons"] += [
                    {**_reason(r), "sign": sign} for t, r in then.items() if t not in now
                ]
            if details["new_reasons"]:
                en += "; new: " + "; ".join(
                    f"{r['sign']} {r['text']}" for r in details["new_reasons"]
                )
                zh += "；新增：" + "；".join(
                    f"{r['sign']} {r['text_zh']}" for r in details["new_reasons"]
                )
            if details["gone_reasons"]:
                en += "; no longer: " + "; ".join(
                    f"{r['sign']} {r['text']}" for r in details["gone_reasons"]
                )
                zh += "；不再：" + "；".join(
                    f"{r['sign']} {r['text_zh']}" for r in details["gone_reasons"]
                )
        at = _time(row.get("as_of")) or _time(pd.Timestamp(str(row["run_date"])))
        out.append(Event(at, "score", en, zh, details))
        before = {"score": score, "shown": shown, "run_date": str(row["run_date"])}
    return out


def _reason(r: Mapping[str, Any]) -> dict[str, Any]:
    text = str(r["text"])
    return {
        "feature": r.get("feature"),
        "text": text,
        "text_zh": r.get("text_zh") or text,  # a history recorded before the Chinese words
        "contribution": r.get("contribution"),
    }


def _ordered(events: list[Event]) -> list[Event]:
    rank = {k: i for i, k in enumerate(KIND_ORDER)}
    dated = sorted((e for e in events if e.at is not None), key=lambda e: (e.at, rank[e.kind]))
    undated = sorted((e for e in events if e.at is None), key=lambda e: rank[e.kind])
    return dated + undated


def deal_timeline(
    tables: Mapping[str, pd.DataFrame], history: pd.DataFrame, deal_id: str
) -> Timeline:
    """The deal's events in time order (see the module doc).

    ``tables``: the stored CRM tables (whole, or only the deal's rows as
    :func:`load_deal` reads them); ``history``: score history rows (any deals).
    Raises :class:`UnknownDeal` when ``deals`` has no such deal.
    """
    deals = tables["deals"]
    mine = deals[deals["deal_id"].astype(str) == deal_id]
    if not len(mine):
        raise UnknownDeal(deal_id)
    deal = mine.iloc[-1].to_dict()

    def own(name: str) -> pd.DataFrame | None:
        t = tables.get(name)
        return None if t is None else t[t["deal_id"].astype(str) == deal_id]

    contacts = _contacts(tables)
    mine_history = history[history["deal_id"].astype(str) == deal_id] if len(history) else history
    events = [
        _created(deal),
        *_contact_events(own("deal_contacts"), contacts),
        *_stage_events(own("stage_history")),
        *_activity_events(own("activities"), contacts),
        *([e] if (e := _closed(deal)) is not None else []),
        *_score_events(mine_history),
    ]
    ordered = _ordered(events)
    now = (
        _time(mine_history["as_of"].max())
        if "as_of" in mine_history and len(mine_history)
        else None
    )
    summary = {
        k: _text(deal.get(k))
        for k in ("account_id", "owner_id", "status", "stage", "channel", "product")
        if k in deal
    }
    last = next((e for e in reversed(ordered) if e.kind == "score"), None)
    summary["score"] = None if last is None else last.details["score"]
    summary["grade"] = None if last is None else last.details["grade"]
    quiet = [e.at for e in ordered if e.kind == "activity" and e.at is not None]
    if now is not None and quiet:
        days = (now - max(quiet)) / pd.Timedelta(days=1)
        summary["last_activity"] = time_since(days) + " ago"
        summary["last_activity_zh"] = time_since_zh(days) + "前"
    return Timeline(deal_id, summary, ordered)


def stored_timeline(crm_dir: Path, history_dir: Path, deal_id: str) -> Timeline:
    """The timeline of a stored deal (:func:`load_deal`, then :func:`deal_timeline`);
    :class:`UnknownDeal` when it is not stored, or nothing is."""
    tables, history = load_deal(crm_dir, history_dir, deal_id)
    if "deals" not in tables:
        raise UnknownDeal(deal_id)
    return deal_timeline(tables, history, deal_id)


# ------------------------------------------------------------------ the page
Lang = Literal["en", "zh"]
#: The summary's facts, each with its word in :data:`leadscore.priority.i18n.TEXT`.
_SUMMARY: dict[str, str] = {
    "account_id": "col_account",
    "owner_id": "owner",
    "status": "status",
    "stage": "stage",
    "channel": "channel",
    "product": "product",
    "score": "latest_score",
    "grade": "grade",
    "last_activity": "last_activity",
}
_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}"
    "table{border-collapse:collapse}td,th{padding:.3em .8em;border-bottom:1px solid #ddd;"
    "text-align:left;vertical-align:top}.kind{color:#666;font-size:.9em}"
    "tr.score td{background:#f4f8ff}dl{display:grid;grid-template-columns:max-content auto;"
    "gap:.2em 1em}dt{color:#666}"
)


def _summary_value(summary: Mapping[str, Any], key: str, lang: Lang) -> str | None:
    value = summary.get(f"{key}_zh" if lang == "zh" else key, summary.get(key))
    if value is None:
        return None
    if lang == "zh" and key == "stage":
        return stage_zh(str(value))
    if lang == "zh" and key == "status":
        return STATUS_ZH.get(str(value), "进行中" if value == "open" else str(value))
    if lang == "zh" and key == "channel":
        return category_zh(str(value))
    return str(value)


def timeline_html(timeline: Timeline, lang: Lang = "en") -> str:
    """The timeline as a self-contained page in one language: no script, no outside URL,
    every CRM text escaped. Its words are the managers' page's (:func:`texts`)."""
    esc = html.escape
    t = texts(lang)
    title = t["tl_title"].format(deal=timeline.deal_id)
    other: Lang = "zh" if lang == "en" else "en"
    facts = "".join(
        f"<dt>{esc(t[word])}</dt><dd>{esc(v)}</dd>"
        for key, word in _SUMMARY.items()
        if (v := _summary_value(timeline.summary, key, lang)) is not None
    )
    rows = "".join(
        f'<tr class="{e.kind}"><td>'
        f"{esc(f'{date(e.at, lang)} {e.at:%H:%M}' if e.at is not None else t['tl_undated'])}"
        f'</td><td class="kind">{esc(t["tl_kind_" + e.kind])}</td>'
        f"<td>{esc(e.text_zh if lang == 'zh' else e.text)}</td></tr>"
        for e in timeline.events
    )
    body = (
        f"<table><thead><tr><th>{esc(t['tl_when'])}</th><th></th>"
        f"<th>{esc(t['tl_what'])}</th></tr></thead><tbody>{rows}</tbody></table>"
        if rows
        else f"<p>{esc(t['tl_none'])}</p>"
    )
    return (
        f'<!DOCTYPE html><html lang="{"zh-CN" if lang == "zh" else "en"}"><head>'
        f'<meta charset="utf-8"><title>{esc(title)}</title><style>{_STYLE}</style></head><body>'
        f'<p><a href="../">{esc(t["tl_back"])}</a> · '
        f'<a href="?lang={other}">{esc(LANGUAGE_NAMES[other])}</a></p>'
        f"<h1>{esc(title)}</h1><dl>{facts}</dl>{body}</body></html>"
    )
