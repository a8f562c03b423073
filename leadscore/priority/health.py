"""Deal health: risk flags from plain rules, and the suggested next step.

The model says how likely a deal is to be won; a manager also wants to know what is
going wrong and what to do about it. Risk flags are rules a sales team already uses,
checked against the deal's own history (its features as of the moment of ranking),
so each one can be verified in the CRM. The thresholds are a :class:`HealthThresholds`
dataclass, overridable from the environment (``LEADSCORE_HEALTH_<FIELD>``, e.g.
``LEADSCORE_HEALTH_MAX_STALLS=4``, read with the rest of the configuration into
:attr:`leadscore.config.Settings.health_overrides`) and from the command line
(``--threshold max_stalls=4``), both through :meth:`HealthThresholds.with_overrides`:

* ``stalled``: ``stalls >= max_stalls`` (3); moves back plus stage stays longer than
  :data:`leadscore.features.catalog.STALL_DAYS` days, the current one included;
* ``slow_replies``: a customer message unanswered for more than ``max_reply_hours`` (24)
  right now, judged per message as the practice states it ("reply within 24 hours"),
  so one ignored message raises it at once instead of waiting ``follow_up_days`` for
  ``no_follow_up``; otherwise ``median_reply_hours > max_reply_hours``, the habit;
* ``no_follow_up``: an unanswered customer message older than ``follow_up_days``
  (14), or no activity for more than ``follow_up_days`` (deal age when there is none).
  Only when activities are logged at all: an export without an activities table says
  nothing about follow-up, so no deal gets the flag (nor becomes dormant);
* ``low_activity``: ``act_total_30d`` below ``activity_ratio`` (0.5) times the median
  of won deals at the same stage. The reference medians are computed as the training
  data is built, from the stored CRM: snapshots of won deals while they were open (at
  creation and every ``snapshot_every_days`` after), grouped by ``stage_index``; a
  missing count (no activity yet) counts as 0. Ranking takes the most recently closed
  won deals (:attr:`leadscore.priority.rank.RankConfig.reference_won_deals`, 5,000). The
  model's ``reason_stats`` hold win rates per feature bin, not activity by stage, so
  they cannot give this reference;
* ``no_economic_buyer``: ``stage_index >= economic_buyer_stage`` (1, qualified) and
  ``has_economic_buyer == 0``. A deal with no contacts at all has no value for it
  (unknown), and is not flagged.

Flags are listed most urgent first (a waiting customer before a missing buyer), each
with its action. The next step walks the model's negative reasons, strongest first: a
reason that one of the deal's flags confirms (the rule reads that feature, see
:data:`FLAG_FEATURES`) gets the flag's action ("Re-engage: last touch 52 days ago"), a
reason whose value shows a gap a rep can close (:data:`REASON_ACTIONS`: no director or
above met, no economic buyer...) gets that action. Failing both, the most urgent flag's
action; a healthy deal gets :data:`DEFAULT_STEP`. Reasons lead because their order
measures what each problem costs this deal's odds; a flag alone only says that a
threshold was crossed, and a negative push alone does not say which way a value should
move (many activities can push down as well as few).

A **lost** deal's next step (:func:`lost_next_step`) follows why it was lost and how long
ago, not the open-deal reasons: the way back to a customer who said "too expensive" is
not the way back to one who signed with a competitor (:data:`LOST_REASON_STEPS`), and
"lost 3 weeks ago" tells the rep how fresh the memory of the loss is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import pandas as pd

from leadscore.crm.contract import (
    BUDGET,
    COMPETITOR,
    NO_DECISION,
    PRICE,
    PRODUCT_FIT,
    TIMING,
    WON,
)
from leadscore.features.catalog import SENIOR, STAGE_LEVELS, STALL_DAYS, activity_features
from leadscore.features.catalog_zh import STAGE_ZH
from leadscore.features.featurize import features_as_of, snapshot_entities
from leadscore.features.seniority import SENIOR_LEVEL


@dataclass(frozen=True)
class HealthThresholds:
    """When a rule flags a deal; every field can be overridden by name."""

    #: Flag at this many stalls or more.
    max_stalls: int = 3
    #: Flag a customer message unanswered for longer than this many hours, or a median
    #: reply time over it.
    max_reply_hours: float = 24.0
    #: Flag when nothing happened, or a customer message went unanswered, for longer.
    follow_up_days: float = 14.0
    #: Flag below this share of the won deals' median activity at the same stage.
    activity_ratio: float = 0.5
    #: Flag a missing economic buyer from this stage index on (1 = qualified).
    economic_buyer_stage: int = 1

    def with_overrides(self, pairs: Iterable[str]) -> HealthThresholds:
        """A copy with ``name=value`` overrides applied; unknown names raise ValueError."""
        types = {f.name: f.type for f in fields(self)}
        changes: dict[str, Any] = {}
        for pair in pairs:
            name, sep, value = pair.partition("=")
            name = name.strip().lower()
            if not sep or name not in types:
                raise ValueError(
                    f"threshold {pair!r}: expected NAME=VALUE with NAME one of {', '.join(types)}"
                )
            changes[name] = int(value) if types[name] == "int" else float(value)
        return replace(self, **changes)


@dataclass(frozen=True)
class Flag:
    """One broken rule on one deal, and what to do about it; in English and Chinese (many
    of the managers who read the list read Chinese first)."""

    code: str
    text: str
    action: str
    text_zh: str = ""
    action_zh: str = ""


# ------------------------------------------------------------------ actions
MEET_SENIOR = f"Book a meeting with a {SENIOR}"
REPLY = "Reply within 24h"
REPLY_NOW = "Reply today: the customer is waiting"
ECONOMIC_BUYER = "Identify and engage the economic buyer"
UNSTALL = "Agree a dated next step to get the deal moving again"
WIDEN = "Bring more people from the account into the deal"
STEP_UP = "Step up contact: schedule a call or meeting this week"
REENGAGE = "Re-engage: last touch {days:,.0f} days ago"
DEFAULT_STEP = "Keep momentum: agree the next step and its date"
REENGAGE_ZH = "重新跟进：上次接触在 {days:,.0f} 天前"
#: Each fixed action and step in Chinese (a test checks every one has its words).
ZH: dict[str, str] = {
    MEET_SENIOR: "约见总监或更高级别的联系人",
    REPLY: "24 小时内回复",
    REPLY_NOW: "今天就回复：客户在等",
    ECONOMIC_BUYER: "找到并接触经济决策人",
    UNSTALL: "约定一个有日期的下一步，让商机重新推进",
    WIDEN: "让客户方更多的人参与进来",
    STEP_UP: "加强联系：本周安排一次电话或会议",
    DEFAULT_STEP: "保持势头：约定下一步及其日期",
}

#: A lost deal's next step by its canonical lost reason (``leadscore.crm.contract``);
#: ``other`` and an unknown reason get :data:`LOST_DEFAULT_STEP`.
LOST_REASON_STEPS: dict[str, str] = {
    PRICE: "Offer a new package after the customer's budget cycle",
    COMPETITOR: "Call before the competitor's contract comes up for renewal",
    TIMING: "Call back in the quarter they named",
    BUDGET: "Re-engage when the new fiscal year's budget opens",
    NO_DECISION: "Find a new sponsor: ask what changed",
    PRODUCT_FIT: "Re-engage when the missing capability ships",
}
LOST_DEFAULT_STEP = "Check in: ask what changed"
ZH |= {
    LOST_REASON_STEPS[PRICE]: "在客户的预算周期之后提供新的方案报价",
    LOST_REASON_STEPS[COMPETITOR]: "在竞争对手的合同续约之前联系客户",
    LOST_REASON_STEPS[TIMING]: "在客户说的那个季度再联系",
    LOST_REASON_STEPS[BUDGET]: "新财年预算开放时重新跟进",
    LOST_REASON_STEPS[NO_DECISION]: "找一位新的支持者：问问情况有什么变化",
    LOST_REASON_STEPS[PRODUCT_FIT]: "所缺的功能上线后重新跟进",
    LOST_DEFAULT_STEP: "回访一下：问问情况有什么变化",
}

_ACTIVITY_COUNTS = frozenset(
    f.name for f in activity_features() if f.name.startswith("act_") or f.name == "n_activities"
)
#: The model features each rule reads: a negative reason on one of them is the model
#: seeing the flagged problem, so the flag's action answers that reason.
FLAG_FEATURES: dict[str, frozenset[str]] = {
    "no_follow_up": frozenset(
        {"days_since_last_activity", "days_since_last_inbound", "hours_awaiting_reply"}
    ),
    "slow_replies": frozenset({"median_reply_hours", "hours_awaiting_reply"}),
    "no_economic_buyer": frozenset({"has_economic_buyer"}),
    "low_activity": _ACTIVITY_COUNTS,
    "stalled": frozenset({"stalls", "days_in_stage", "backward_moves", "stage_changes"}),
}
#: Reasons that call for an action whatever the rules say, when the deal's value shows
#: the gap (a negative push alone does not say which way a value should move).
REASON_ACTIONS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "has_economic_buyer": (ECONOMIC_BUYER, lambda v: v == 0),
    "max_seniority": (MEET_SENIOR, lambda v: v < SENIOR_LEVEL),
    "n_senior_contacts": (MEET_SENIOR, lambda v: v == 0),
    "senior_met": (MEET_SENIOR, lambda v: v == 0),
    "hours_awaiting_reply": (REPLY, lambda v: v > 0),
    "n_contacts": (WIDEN, lambda v: v <= 1),
}


def quiet_days(features: pd.DataFrame, activities_logged: bool = True) -> pd.Series:
    """Days since anything happened on the deal: last activity, else its creation.

    Unknown (NaN) for every deal when no activities are logged (the CRM export has no
    activities table): a deal with no logged activity there is not a quiet deal.
    """
    if not activities_logged:
        return pd.Series(np.nan, index=features.index, dtype="float64")
    return features["days_since_last_activity"].fillna(features["deal_age_days"])


def next_step_words(
    negative_reasons: Sequence[tuple[str, Any]], flags: Sequence[Flag]
) -> tuple[str, str]:
    """:func:`next_step` in English and Chinese."""
    for feature, value in negative_reasons:
        flag = next((f for f in flags if feature in FLAG_FEATURES[f.code]), None)
        if flag is not None:
            return flag.action, flag.action_zh
        rule = REASON_ACTIONS.get(feature)
        if rule is not None and value is not None and rule[1](value):
            return rule[0], ZH[rule[0]]
    if flags:
        return flags[0].action, flags[0].action_zh
    return DEFAULT_STEP, ZH[DEFAULT_STEP]


def next_step(negative_reasons: Sequence[tuple[str, Any]], flags: Sequence[Flag]) -> str:
    """What to do first about a deal.

    ``negative_reasons`` are (feature, value) of the model's negative reasons as shown
    (value None when missing): those a rep can act on, the only ones with an action,
    strongest first, then the deal's facts; ``flags`` the deal's risk flags, most urgent
    first.
    The strongest reason that a flag confirms gets that flag's action, or one that
    :data:`REASON_ACTIONS` covers with a value showing the gap gets its action; failing
    both, the most urgent flag's action, else :data:`DEFAULT_STEP`.
    """
    return next_step_words(negative_reasons, flags)[0]


def time_since(days: float) -> str:
    """``days`` in the unit a person would say: days under two weeks, weeks under two
    months, months after ("3 weeks")."""
    if days < 14:
        return _count(round(max(days, 0.0)), "day", "days")
    if days < 60:
        return _count(round(days / 7), "week", "weeks")
    return _count(round(days / 30), "month", "months")


def time_since_zh(days: float) -> str:
    """:func:`time_since` in Chinese ("3 周")."""
    if days < 14:
        return f"{round(max(days, 0.0))} 天"
    if days < 60:
        return f"{round(days / 7)} 周"
    return f"{round(days / 30)} 个月"


def lost_next_step_zh(lost_reason: str | None, days_since_loss: float | None) -> str:
    """:func:`lost_next_step` in Chinese: "在客户说的那个季度再联系（3 周前丢单）"."""
    step = ZH[LOST_REASON_STEPS.get(lost_reason or "", LOST_DEFAULT_STEP)]
    if days_since_loss is None or pd.isna(days_since_loss):
        return step
    if days_since_loss < 1:
        return f"{step}（今天丢单）"
    return f"{step}（{time_since_zh(days_since_loss)}前丢单）"


def lost_next_step(lost_reason: str | None, days_since_loss: float | None) -> str:
    """What to do about a lost deal: the step for its lost reason (:data:`LOST_REASON_STEPS`,
    :data:`LOST_DEFAULT_STEP` when other or unknown) and how long ago it was lost, e.g.
    "Call back in the quarter they named (lost 3 weeks ago)"."""
    step = LOST_REASON_STEPS.get(lost_reason or "", LOST_DEFAULT_STEP)
    if days_since_loss is None or pd.isna(days_since_loss):
        return step
    if days_since_loss < 1:
        return f"{step} (lost today)"
    return f"{step} (lost {time_since(days_since_loss)} ago)"


# ------------------------------------------------------------------ rules
def won_activity_reference(
    sources: Mapping[str, pd.DataFrame], deals: pd.DataFrame, every_days: int
) -> dict[int, float]:
    """Median ``act_total_30d`` of the snapshots of the won deals among ``deals``, by ``stage_index``.

    Snapshots are taken as the training frame takes them (:func:`snapshot_entities`),
    features as of each snapshot from the same sources, so the reference is the
    activity level the model learnt winning deals have.
    """
    won = deals[deals["status"].astype(str).eq(WON)]
    entities = snapshot_entities(won, every_days)
    if entities.empty:
        return {}
    snap = features_as_of(sources, entities)
    activity = snap["act_total_30d"].fillna(0.0)
    medians = activity.groupby(snap["stage_index"]).median()
    return {int(stage): float(m) for stage, m in medians.items()}


def _count(n: float, one: str, many: str) -> str:
    return f"{n:,.0f} {one if n == 1 else many}"


def _waited(hours: float) -> str:
    """``30 hours`` under three days, ``4 days`` from then on: how long a message waited."""
    return _count(hours, "hour", "hours") if hours < 72 else _count(hours / 24.0, "day", "days")


def _waited_zh(hours: float) -> str:
    return f"{hours:,.0f} 小时" if hours < 72 else f"{hours / 24.0:,.0f} 天"


def risk_flags(
    features: pd.DataFrame,
    thresholds: HealthThresholds,
    reference: Mapping[int, float],
    activities_logged: bool = True,
) -> list[list[Flag]]:
    """Per deal (row of ``features``), the rules it breaks, most urgent first.

    ``activities_logged`` False (no activities table): no ``no_follow_up`` flag."""
    f = features.reset_index(drop=True)
    t = thresholds
    quiet = quiet_days(f, activities_logged).to_numpy(dtype=float)
    waiting_days = f["hours_awaiting_reply"].to_numpy(dtype=float) / 24.0
    stage = f["stage_index"].to_numpy(dtype=float)
    activity = f["act_total_30d"].fillna(0.0).to_numpy(dtype=float)
    won_level = f["stage_index"].map(reference).to_numpy(dtype=float, na_value=np.nan)
    reply = f["median_reply_hours"].to_numpy(dtype=float)
    stalls = f["stalls"].to_numpy(dtype=float)
    eb = f["has_economic_buyer"].to_numpy(dtype=float)

    unanswered = waiting_days > t.follow_up_days
    waiting_hours = waiting_days * 24.0
    # One message over the reply limit, not yet old enough for no_follow_up's own words.
    overdue = ~unanswered & (waiting_hours > t.max_reply_hours)
    Text = Callable[[int], str]
    #: (rows, code, text, action, text in Chinese, action in Chinese)
    Rule = tuple[np.ndarray, str, Text, Text, Text, Text]
    rules: list[Rule] = [
        (
            unanswered,
            "no_follow_up",
            lambda i: f"Customer message unanswered for {waiting_days[i]:,.0f} days",
            lambda i: REPLY,
            lambda i: f"客户消息已 {waiting_days[i]:,.0f} 天未回复",
            lambda i: ZH[REPLY],
        ),
        (
            ~unanswered & (quiet > t.follow_up_days),
            "no_follow_up",
            lambda i: f"No follow-up for {quiet[i]:,.0f} days",
            lambda i: REENGAGE.format(days=quiet[i]),
            lambda i: f"已 {quiet[i]:,.0f} 天没有跟进",
            lambda i: REENGAGE_ZH.format(days=quiet[i]),
        ),
        (
            overdue,
            "slow_replies",
            lambda i: (
                f"Customer message unanswered for {_waited(waiting_hours[i])} "
                f"(over {t.max_reply_hours:g} hours)"
            ),
            lambda i: REPLY_NOW,
            lambda i: (
                f"客户消息已 {_waited_zh(waiting_hours[i])}未回复（超过 {t.max_reply_hours:g} 小时）"
            ),
            lambda i: ZH[REPLY_NOW],
        ),
        (
            ~overdue & (reply > t.max_reply_hours),
            "slow_replies",
            lambda i: f"Median reply time {reply[i]:,.0f} hours (over {t.max_reply_hours:g})",
            lambda i: REPLY,
            lambda i: f"回复时间中位数 {reply[i]:,.0f} 小时（超过 {t.max_reply_hours:g}）",
            lambda i: ZH[REPLY],
        ),
        (
            (stage >= t.economic_buyer_stage) & (eb == 0),
            "no_economic_buyer",
            lambda i: f"No economic buyer in the {STAGE_LEVELS.name(stage[i])} stage",
            lambda i: ECONOMIC_BUYER,
            lambda i: (
                f"已到{STAGE_ZH.get(int(stage[i]), STAGE_LEVELS.name(stage[i]))}阶段，仍未接触经济决策人"
            ),
            lambda i: ZH[ECONOMIC_BUYER],
        ),
        (
            activity < t.activity_ratio * won_level,
            "low_activity",
            lambda i: (
                f"{_count(activity[i], 'activity', 'activities')} in 30 days; won deals in this stage "
                f"had a median of {won_level[i]:,.0f}"
            ),
            lambda i: STEP_UP,
            lambda i: (
                f"30 天内 {activity[i]:,.0f} 次跟进；此阶段赢单商机的中位数为 {won_level[i]:,.0f} 次"
            ),
            lambda i: ZH[STEP_UP],
        ),
        (
            stalls >= t.max_stalls,
            "stalled",
            lambda i: (
                f"Stalled {_count(stalls[i], 'time', 'times')} (moved back or over {STALL_DAYS} days in a stage)"
            ),
            lambda i: UNSTALL,
            lambda i: f"停滞 {stalls[i]:,.0f} 次（阶段倒退或在一个阶段超过 {STALL_DAYS} 天）",
            lambda i: ZH[UNSTALL],
        ),
    ]
    out: list[list[Flag]] = [[] for _ in range(len(f))]
    for mask, code, text, action, text_zh, action_zh in rules:
        for i in np.flatnonzero(mask).tolist():
            out[i].append(Flag(code, text(i), action(i), text_zh(i), action_zh(i)))
    return out
