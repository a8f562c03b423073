"""Channel quality: how closely each lead source's leads look like the customers we win.

A channel that brings many leads unlike the won customers costs reps time; one whose
leads look like them deserves the spend. For each channel (``deals.channel``) this
compares the profile of its leads (every deal it brought) with the profile of the won
deals (of every channel), attribute by attribute:

* ``industry``, ``size_band`` (from ``accounts.employee_count``), ``region`` when the
  export has them;
* ``seniority``: the most senior contact on the deal (the model's title parser over the
  deal's contacts), "none" when the deal has contacts but no recognised title;
* every custom text attribute of deals or accounts (columns outside the contract).

Per attribute the similarity is ``1 - TVD``, one minus the total variation distance
between the two distributions of known values: ``sum over values of min(p, q)``, the
share of leads that would not have to change value to match the won customers. It is 1
for identical profiles, 0 for disjoint ones, and reads as a share. Unknown values are
left out of both sides; an attribute a channel has no known value for is left out of
its mean. The channel's number is the mean over its attributes, each weighing the same.

Each attribute's detail says which value the channel over-brings most (``p - q``
largest) and which it under-brings most, and the attributes are listed least similar
first. The deals behind each number are given: a channel with 8 leads can look unlike
anything by chance.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from leadscore.crm.contract import ACCOUNTS, DEALS
from leadscore.features.catalog_zh import SENIORITY_ZH, category_zh
from leadscore.features.seniority import LABELS as SENIORITY_LABELS
from leadscore.features.seniority import seniority_of_titles
from leadscore.insights.facts import SIZE_BAND, UNKNOWN, cut_labels, deal_facts, micros
from leadscore.timeutil import as_utc

SENIORITY = "seniority"
#: Profile attributes from the contract, when the export has them.
PROFILE: tuple[str, ...] = ("industry", SIZE_BAND, "region")
#: Columns of deals and accounts that are not a profile (ids, outcomes, the channel itself).
NOT_PROFILE = frozenset(DEALS.column_names) | frozenset(ACCOUNTS.column_names)
NO_TITLE = "none"
ATTRIBUTE_ZH: dict[str, str] = {
    "industry": "行业",
    SIZE_BAND: "公司规模",
    "region": "区域",
    SENIORITY: "接触到的最高级别",
}


@dataclass(frozen=True)
class AttributeMatch:
    """One attribute of one channel's leads against the won customers."""

    attribute: str
    attribute_zh: str
    similarity: float
    #: Leads of the channel with a known value, and won deals with one.
    deals: int
    won_deals: int
    #: The value the channel brings most above the won share, and most below: (value, p, q).
    over: tuple[str, float, float] | None
    under: tuple[str, float, float] | None


@dataclass(frozen=True)
class ChannelQuality:
    """One channel: its leads, how many were won, and how like the won customers they are."""

    channel: str
    channel_zh: str
    leads: int
    won: int
    similarity: float
    #: Least similar first.
    attributes: list[AttributeMatch] = field(default_factory=list)
    label: str = ""
    label_zh: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def similarity(p: Mapping[str, float], q: Mapping[str, float]) -> float:
    """``1 - TVD`` of two distributions over values: ``sum min(p, q)``."""
    return float(sum(min(p.get(k, 0.0), q.get(k, 0.0)) for k in set(p) | set(q)))


def _shares(values: pd.Series) -> dict[str, float]:
    known = values[values != UNKNOWN]
    return {str(k): float(v) for k, v in known.value_counts(normalize=True).items()}


def deal_seniority(tables: Mapping[str, pd.DataFrame], deal_ids: pd.Series) -> np.ndarray:
    """Per deal, its most senior contact's level name; "none" with contacts but no known
    title; UNKNOWN without contacts (or the tables)."""
    out = np.full(len(deal_ids), UNKNOWN, dtype=object)
    links, contacts = tables.get("deal_contacts"), tables.get("contacts")
    if links is None or contacts is None or "title" not in contacts:
        return out
    level = seniority_of_titles(contacts["title"])
    by_contact = pd.Series(level.to_numpy(), index=contacts["contact_id"].astype(str))
    linked = links.assign(
        _level=by_contact.reindex(links["contact_id"].astype(str)).to_numpy(dtype=float)
    )
    best = linked.groupby(linked["deal_id"].astype(str))["_level"].max()
    found = best.reindex(deal_ids.astype(str))
    has = found.index.isin(best.index)
    names = found.map(lambda v: SENIORITY_LABELS[int(v)] if pd.notna(v) else NO_TITLE)
    out[has] = names.to_numpy(dtype=object)[has]
    return out


def channel_quality(
    tables: Mapping[str, pd.DataFrame], start: Any = None, end: Any = None
) -> list[ChannelQuality]:
    """Every channel's similarity to the won customers, most similar first (module doc).

    Deals created in ``[start, end)`` (UTC; None: unbounded) are the leads; the won ones
    among them (any channel) the won profile. Raises ``ValueError`` without a channel
    column or without a won deal.
    """
    facts = deal_facts(tables)
    if "channel" not in facts.cut_values:
        raise ValueError("deals has no channel column: there are no lead sources to compare")
    available = facts.cuts()
    custom = [c for c in available if c not in NOT_PROFILE and c not in (SIZE_BAND,)]
    attributes = [a for a in PROFILE if a in available] + custom
    profile = cut_labels(facts, ["channel", *attributes])
    profile[SENIORITY] = deal_seniority(tables, facts.deals["deal_id"])
    if (profile[SENIORITY] != UNKNOWN).any():
        attributes.append(SENIORITY)
    keep = np.ones(len(profile), bool)
    created = micros(tables["deals"]["created_at"]) if "created_at" in tables["deals"] else None
    for bound, after in ((start, True), (end, False)):
        if bound is not None and created is not None:
            t = as_utc(bound).value / 1_000
            keep &= (created >= t) if after else (created < t)
    profile = profile[keep]
    won = facts.deals["won"].to_numpy()[keep]
    if not won.any():
        raise ValueError("no won deal in the period: there is no customer profile to compare with")
    won_shares = {a: _shares(profile.loc[won, a]) for a in attributes}
    won_counts = {a: int((profile.loc[won, a] != UNKNOWN).sum()) for a in attributes}
    out = []
    for channel in sorted(set(profile["channel"]) - {UNKNOWN}):
        mine = (profile["channel"] == channel).to_numpy()
        found = [_match(a, profile.loc[mine, a], won_shares[a], won_counts[a]) for a in attributes]
        matches = sorted((m for m in found if m is not None), key=lambda m: m.similarity)
        score = float(np.mean([m.similarity for m in matches])) if matches else float("nan")
        out.append(_channel(channel, int(mine.sum()), int((mine & won).sum()), score, matches))
    return sorted(out, key=lambda c: (np.isnan(c.similarity), -c.similarity, c.channel))


def _match(
    attribute: str, values: pd.Series, won: Mapping[str, float], won_deals: int
) -> AttributeMatch | None:
    mine = _shares(values)
    if not mine or not won:
        return None
    gaps = {k: mine.get(k, 0.0) - won.get(k, 0.0) for k in set(mine) | set(won)}
    hi = max(sorted(gaps), key=lambda k: gaps[k])
    lo = min(sorted(gaps), key=lambda k: gaps[k])
    return AttributeMatch(
        attribute,
        ATTRIBUTE_ZH.get(attribute, attribute),
        similarity(mine, won),
        int((values != UNKNOWN).sum()),
        won_deals,
        (hi, mine.get(hi, 0.0), won.get(hi, 0.0)) if gaps[hi] > 0 else None,
        (lo, mine.get(lo, 0.0), won.get(lo, 0.0)) if gaps[lo] < 0 else None,
    )


def _value_zh(attribute: str, value: str) -> str:
    if attribute == SENIORITY:
        level = {name: k for k, name in SENIORITY_LABELS.items()}.get(value)
        return SENIORITY_ZH[level] if level is not None else "无可识别职位"
    return category_zh(value)


def _channel(
    channel: str, leads: int, won: int, score: float, matches: list[AttributeMatch]
) -> ChannelQuality:
    worst = matches[0] if matches else None
    en = f"{channel}: {score:.0%} like the won customers ({leads} leads, {won} won)"
    zh = f"{category_zh(channel)}：与赢单客户的相似度 {score:.0%}（{leads} 个线索，{won} 个赢单）"
    if worst is not None and worst.over is not None:
        value, p, q = worst.over
        en += (
            f"; differs most in {worst.attribute}: {value} {p:.0%} of leads against {q:.0%} of wins"
        )
        zh += (
            f"；差异最大的是{worst.attribute_zh}：{_value_zh(worst.attribute, value)}"
            f"占线索 {p:.0%}，占赢单 {q:.0%}"
        )
    return ChannelQuality(channel, category_zh(channel), leads, won, score, matches, en, zh)
