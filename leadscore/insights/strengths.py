"""Each rep's strengths and weaknesses: where the rep converts better or worse than the team.

A manager coaching a rep asks where the rep loses deals the team wins, and where the rep
wins what others lose. Two kinds of cell answer it, each on **closed** deals (won or
lost, closed inside the window), whose outcome is known, so an open deal never counts
as a failure yet:

* a **stage**: of the closed deals that reached the stage, the share that reached the
  next one (the last open stage's next is the win). "Reached" is the funnel's rule
  (:meth:`leadscore.insights.facts.Facts.reached`); every deal reached ``lead``;
* a **deal type**: one value of a cut (channel, size band, industry, product, as
  :func:`leadscore.insights.facts.cut_labels` normalises them): the share won.

The rep's rate is compared with the **rest of the team** (every other deal of the cell,
owned by someone else or by no one): the two samples are then independent, which
Newcombe's interval of a difference of two proportions assumes
(:func:`leadscore.insights.compare.newcombe_interval`, with Wilson's intervals of each
rate, 95%). A cell is flagged ``better`` or ``worse`` only when the rep has at least
``min_deals`` deals in it, the rest of the team as many, and the interval of the
difference excludes zero; otherwise it says ``no clear difference`` or
``not enough deals``. With many cells per rep, some intervals miss zero by chance (one
in twenty); the number of deals behind each is there to weigh it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np

from leadscore.features.catalog_zh import STAGE_ZH, category_zh
from leadscore.features.deal_state import STAGE_CODES
from leadscore.insights.compare import newcombe_interval, wilson_interval
from leadscore.insights.facts import (
    OPEN_STAGES,
    SIZE_BAND,
    UNKNOWN,
    Facts,
    cut_labels,
)
from leadscore.timeutil import as_utc

OWNER = "owner_id"
#: Deal types compared, when the export has them.
STRENGTH_CUTS: tuple[str, ...] = ("channel", SIZE_BAND, "industry", "product")
#: A rep's cell (and the rest of the team's) needs this many closed deals to be flagged.
MIN_DEALS = 10
Verdict = Literal["better", "worse", "no clear difference", "not enough deals"]
VERDICT_ZH: dict[str, str] = {
    "better": "优于团队",
    "worse": "弱于团队",
    "no clear difference": "无明显差异",
    "not enough deals": "样本不足",
}
CUT_ZH: dict[str, str] = {
    "stage": "阶段",
    "channel": "渠道",
    SIZE_BAND: "公司规模",
    "industry": "行业",
    "product": "产品",
}
WON_ZH = "赢单"


@dataclass(frozen=True)
class Strength:
    """One rep in one cell, against the rest of the team."""

    owner_id: str
    #: ``stage`` or the cut of a deal type (``channel``, ``size_band``, ...).
    cut: str
    #: The stage ("qualified") or the cut's value ("referral").
    value: str
    #: What is converted: "qualified -> solution", or "won" for a deal type.
    conversion: str
    conversion_zh: str
    deals: int
    converted: int
    rate: float
    rate_low: float
    rate_high: float
    team_deals: int
    team_converted: int
    team_rate: float
    #: rate - team_rate, and its 95% interval (Newcombe); NaN when a side has no deals.
    difference: float
    low: float
    high: float
    verdict: Verdict
    verdict_zh: str
    label: str = ""
    label_zh: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            k: (None if isinstance(v, float) and np.isnan(v) else v)
            for k, v in asdict(self).items()
        }


def _cells(
    facts: Facts, cuts: Sequence[str]
) -> list[tuple[str, str, str, str, np.ndarray, np.ndarray]]:
    """(cut, value, conversion, conversion_zh, in-cell mask, converted mask) of every cell."""
    d = facts.deals
    won = d["won"].to_numpy()
    out = []
    for i, stage in enumerate(OPEN_STAGES):
        reached = np.ones(len(d), bool) if i == 0 else facts.reached(stage)
        if i + 1 < len(OPEN_STAGES):
            nxt = OPEN_STAGES[i + 1]
            converted, words = facts.reached(nxt), (nxt, STAGE_ZH[STAGE_CODES[nxt]])
        else:
            converted, words = won, ("won", WON_ZH)
        conversion = f"{stage} -> {words[0]}"
        conversion_zh = f"{STAGE_ZH[STAGE_CODES[stage]]} → {words[1]}"
        out.append(("stage", stage, conversion, conversion_zh, reached, converted))
    labels = cut_labels(facts, cuts)
    for cut in cuts:
        column = labels[cut].to_numpy(dtype=object)
        for value in sorted(set(column) - {UNKNOWN}):
            out.append((cut, str(value), "won", WON_ZH, column == value, won))
    return out


def _verdict(n: int, team_n: int, low: float, high: float, min_deals: int) -> Verdict:
    if n < min_deals or team_n < min_deals:
        return "not enough deals"
    if low > 0:
        return "better"
    if high < 0:
        return "worse"
    return "no clear difference"


def rep_strengths(
    facts: Facts,
    start: Any = None,
    end: Any = None,
    min_deals: int = MIN_DEALS,
    cuts: Sequence[str] = STRENGTH_CUTS,
    reps: Sequence[str] | None = None,
) -> list[Strength]:
    """Every rep's cells against the rest of the team, flagged ones first (see the module doc).

    Deals closed in ``[start, end)`` (UTC; either bound may be None); ``cuts`` the deal
    types, those the export lacks left out. Ordered by rep, then flagged cells first,
    largest difference first; ``reps``: only these (default every rep: each costs a pass
    over the deals). Raises ``ValueError`` when deals have no owner column.
    """
    if OWNER not in facts.cut_values:
        raise ValueError("deals has no owner_id column: without owners there are no reps")
    d = facts.deals
    closed = (d["won"] | d["lost"]).to_numpy()
    t = d["closed_us"].to_numpy()
    if start is not None:
        closed &= t >= as_utc(start).value / 1_000
    if end is not None:
        closed &= t < as_utc(end).value / 1_000
    available = set(facts.cuts())
    cells = _cells(facts, [c for c in cuts if c in available])
    owners = cut_labels(facts, [OWNER])[OWNER].to_numpy(dtype=object)
    out: list[Strength] = []
    chosen = set(owners[closed]) - {UNKNOWN}
    for rep in sorted(chosen if reps is None else chosen & set(reps)):
        mine = owners == rep
        for cut, value, conversion, conversion_zh, inside, converted in cells:
            a, b = closed & inside & mine, closed & inside & ~mine
            n, team_n = int(a.sum()), int(b.sum())
            if n == 0:
                continue
            x, team_x = int((a & converted).sum()), int((b & converted).sum())
            rate = x / n
            team_rate = team_x / team_n if team_n else np.nan
            low, high = newcombe_interval(x, n, team_x, team_n) if team_n else (np.nan, np.nan)
            verdict = _verdict(n, team_n, low, high, min_deals)
            found = Strength(
                rep,
                cut,
                value,
                conversion,
                conversion_zh,
                n,
                x,
                rate,
                *wilson_interval(x, n),
                team_n,
                team_x,
                team_rate,
                rate - team_rate,
                low,
                high,
                verdict,
                VERDICT_ZH[verdict],
            )
            label, label_zh = _labels(found)
            out.append(replace(found, label=label, label_zh=label_zh))
    return sorted(
        out,
        key=lambda s: (
            s.owner_id,
            s.verdict not in ("better", "worse"),
            -abs(s.difference) if not np.isnan(s.difference) else 0.0,
        ),
    )


def _labels(s: Strength) -> tuple[str, str]:
    """The cell in a sentence, English and Chinese."""
    team = f"{s.team_rate:.0%} of {s.team_deals}" if s.team_deals else "no deals"
    team_zh = f"{s.team_rate:.0%}（{s.team_deals} 个商机）" if s.team_deals else "没有商机"
    if s.cut == "stage":
        what, what_zh = s.conversion, s.conversion_zh
    else:
        what = f"{s.cut.replace('_', ' ')} {s.value}: won"
        what_zh = f"{CUT_ZH.get(s.cut, s.cut)} {category_zh(s.value)}：赢单"
    return (
        f"{s.owner_id}, {what}: {s.rate:.0%} of {s.deals} deals against {team} "
        f"for the rest of the team ({s.verdict})",
        f"{s.owner_id}，{what_zh}：{s.rate:.0%}（{s.deals} 个商机），"
        f"团队其他人 {team_zh}（{s.verdict_zh}）",
    )
