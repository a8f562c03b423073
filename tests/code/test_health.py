"""Risk rules and next steps on hand-made deal histories, whose features can be worked out by hand."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import pytest

from leadscore.config import load_settings
from leadscore.features.featurize import build_feature_sources, features_as_of, scoring_entities
from leadscore.priority.health import (
    DEFAULT_STEP,
    ECONOMIC_BUYER,
    MEET_SENIOR,
    REPLY,
    REPLY_NOW,
    STEP_UP,
    Flag,
    HealthThresholds,
    next_step,
    risk_flags,
    won_activity_reference,
)
from tests.crm_fixture import day

AS_OF = day(40)
#: One won deal for the activity reference: a call every 2 days from day -59 to day -3.
WON_CALLS = [-59 + 2 * k for k in range(29)]
#: (deal, [(stage, day)], [(type, direction, day)], [(title, role)]); all open, created day 0.
DEALS: list[
    tuple[str, list[tuple[str, float]], list[tuple[str, str, float]], list[tuple[str, str]]]
] = [
    # Back 2 times, then 36 days in lead: 2 + 1 = 3 stalls.
    (
        "stalled",
        [("lead", 0), ("qualified", 1), ("lead", 2), ("qualified", 3), ("lead", 4)],
        [("call", "outbound", 39)],
        [],
    ),
    # Back once, one 33-day stay, 5 days in the current stage: 2 stalls.
    (
        "two_stalls",
        [("lead", 0), ("qualified", 1), ("lead", 2), ("qualified", 35)],
        [("call", "outbound", 39)],
        [],
    ),
    # Replies after 48 h and 24 h: median 36 h.
    (
        "slow",
        [("lead", 0)],
        [
            ("email", "inbound", 1),
            ("email", "outbound", 3),
            ("email", "inbound", 30),
            ("email", "outbound", 31),
        ],
        [],
    ),
    # Exactly 24 h: not over the threshold.
    ("on_time", [("lead", 0)], [("email", "inbound", 30), ("email", "outbound", 31)], []),
    ("quiet", [("lead", 0)], [("call", "outbound", 20)], []),
    # The customer wrote on day 20 and again on day 38; nobody answered.
    (
        "waiting",
        [("lead", 0)],
        [("call", "outbound", 10), ("email", "inbound", 20), ("email", "inbound", 38)],
        [],
    ),
    ("recent", [("lead", 0)], [("call", "outbound", 30)], []),
    # Answered in 12 h on day 30, then a message of day 38.5 left for 36 h.
    (
        "ignored",
        [("lead", 0)],
        [("email", "inbound", 30), ("email", "outbound", 30.5), ("email", "inbound", 38.5)],
        [],
    ),
    # A message of 12 h ago: within the day a reply is due.
    ("just_in", [("lead", 0)], [("call", "outbound", 30), ("email", "inbound", 39.5)], []),
    ("no_eb", [("lead", 0), ("qualified", 1)], [("call", "outbound", 39)], [("Buyer", "user")]),
    ("lead_no_eb", [("lead", 0)], [("call", "outbound", 39)], [("Buyer", "user")]),
    (
        "eb",
        [("lead", 0), ("qualified", 1)],
        [("call", "outbound", 39)],
        [("CFO", "economic_buyer")],
    ),
    ("no_contacts", [("lead", 0), ("qualified", 1)], [("call", "outbound", 39)], []),
    # 3 activities in 30 days in qualified; won deals there had a median of 14.5.
    (
        "sparse",
        [("lead", 0), ("qualified", 1)],
        [("call", "outbound", d) for d in (20, 30, 39)],
        [],
    ),
    ("busy", [("lead", 0), ("qualified", 1)], [("call", "outbound", d) for d in range(32, 40)], []),
]


def health_crm() -> dict[str, pd.DataFrame]:
    """The deals above plus the won reference deal W (created day -60, won day -1)."""
    ids = [d[0] for d in DEALS]
    ts = lambda xs: pd.Series([day(x) for x in xs], dtype="datetime64[us, UTC]")  # noqa: E731
    deals = pd.DataFrame(
        {
            "deal_id": [*ids, "W"],
            "account_id": "A1",
            "owner_id": "U1",
            "created_at": ts([0] * len(ids) + [-60]),
            "channel": "web",
            "product": "core",
            "amount": 1000.0,
            "currency": "USD",
            "competitor": "none",
            "stage": "lead",
            "status": ["open"] * len(ids) + ["won"],
            "closed_at": pd.Series([pd.NaT] * len(ids) + [day(-1)], dtype="datetime64[us, UTC]"),
        }
    )
    stages = [(d, s, t) for d, path, _, _ in DEALS for s, t in path]
    stages += [("W", "lead", -60), ("W", "qualified", -59), ("W", "closed", -1)]
    acts = [(d, *a) for d, _, acts, _ in DEALS for a in acts] + [
        ("W", "call", "outbound", t) for t in WON_CALLS
    ]
    people = [
        (d, f"C-{d}-{i}", title, role)
        for d, _, _, cs in DEALS
        for i, (title, role) in enumerate(cs)
    ]
    return {
        "deals": deals,
        "stage_history": pd.DataFrame(
            {
                "deal_id": [s[0] for s in stages],
                "stage": [s[1] for s in stages],
                "entered_at": ts([s[2] for s in stages]),
            }
        ),
        "activities": pd.DataFrame(
            {
                "activity_id": [f"X{i}" for i in range(len(acts))],
                "deal_id": [a[0] for a in acts],
                "contact_id": None,
                "type": [a[1] for a in acts],
                "direction": [a[2] for a in acts],
                "occurred_at": ts([a[3] for a in acts]),
                "duration_seconds": 60.0,
            }
        ),
        "contacts": pd.DataFrame(
            {
                "contact_id": [p[1] for p in people],
                "account_id": "A1",
                "title": [p[2] for p in people],
                "created_at": ts([0] * len(people)),
            }
        ),
        "deal_contacts": pd.DataFrame(
            {
                "deal_id": [p[0] for p in people],
                "contact_id": [p[1] for p in people],
                "role": [p[3] for p in people],
                "added_at": ts([0] * len(people)),
            }
        ),
    }


@pytest.fixture(scope="module")
def crm() -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    tables = health_crm()
    return tables, build_feature_sources(tables)


def flags_at(crm, thresholds: HealthThresholds | None = None) -> dict[str, list[Flag]]:
    tables, sources = crm
    open_deals = tables["deals"][tables["deals"]["status"] == "open"]
    features = features_as_of(sources, scoring_entities(open_deals, AS_OF))
    reference = won_activity_reference(sources, tables["deals"], every_days=14)
    flags = risk_flags(features, thresholds or HealthThresholds(), reference)
    return dict(zip(features["deal_id"], flags, strict=True))


def codes(flags: Sequence[Flag]) -> set[str]:
    return {f.code for f in flags}


def test_the_won_deals_activity_reference_is_the_median_of_their_snapshots_by_stage(crm):
    # Snapshots on days -60 (lead, no activity yet), -46, -32, -18 and -4 (qualified):
    # 7, 14, 15 and 15 calls in the 30 days before.
    tables, sources = crm
    assert won_activity_reference(sources, tables["deals"], every_days=14) == {0: 0.0, 1: 14.5}


def test_three_stalls_are_flagged_two_are_not(crm):
    flags = flags_at(crm)
    assert "stalled" in codes(flags["stalled"])
    assert "stalled" not in codes(flags["two_stalls"])
    assert "Stalled 3 times" in next(f.text for f in flags["stalled"] if f.code == "stalled")
    assert "stalled" in codes(flags_at(crm, HealthThresholds(max_stalls=2))["two_stalls"])


def test_median_reply_time_over_24_hours_is_flagged(crm):
    flags = flags_at(crm)
    slow = next(f for f in flags["slow"] if f.code == "slow_replies")
    assert slow.text == "Median reply time 36 hours (over 24)" and slow.action == REPLY
    assert "slow_replies" not in codes(flags["on_time"])


def test_one_message_unanswered_over_24_hours_is_flagged_at_once_whatever_the_median(crm):
    """The practice's rule is per message: a good median does not excuse the one waiting."""
    flags = flags_at(crm)
    slow = [f for f in flags["ignored"] if f.code == "slow_replies"]
    assert [(f.text, f.action) for f in slow] == [
        ("Customer message unanswered for 36 hours (over 24 hours)", REPLY_NOW)
    ]
    assert "no_follow_up" not in codes(flags["ignored"])
    assert "slow_replies" not in codes(flags["just_in"])
    # Twenty days unanswered is no_follow_up's, said once, not also a slow reply.
    assert "slow_replies" not in codes(flags["waiting"])
    assert "slow_replies" in codes(flags_at(crm, HealthThresholds(max_reply_hours=8))["just_in"])


def test_no_follow_up_for_14_days_or_an_unanswered_message_is_flagged(crm):
    flags = flags_at(crm)
    quiet = [f for f in flags["quiet"] if f.code == "no_follow_up"]
    assert [(f.text, f.action) for f in quiet] == [
        ("No follow-up for 20 days", "Re-engage: last touch 20 days ago")
    ]
    # Active two days ago, but the customer's message of day 20 is still unanswered.
    waiting = [f for f in flags["waiting"] if f.code == "no_follow_up"]
    assert [(f.text, f.action) for f in waiting] == [
        ("Customer message unanswered for 20 days", REPLY)
    ]
    assert "no_follow_up" not in codes(flags["recent"])
    assert "no_follow_up" in codes(flags_at(crm, HealthThresholds(follow_up_days=9))["recent"])


def test_activity_well_below_won_deals_at_the_same_stage_is_flagged(crm):
    flags = flags_at(crm)
    low = next(f for f in flags["sparse"] if f.code == "low_activity")
    assert low.text == "3 activities in 30 days; won deals in this stage had a median of 14"
    assert low.action == STEP_UP
    assert "low_activity" not in codes(flags["busy"])  # 8 >= 0.5 x 14.5
    # In lead, won deals had no activity: nothing to fall below.
    assert "low_activity" not in codes(flags["quiet"])


def test_no_economic_buyer_from_the_qualified_stage_on_is_flagged(crm):
    flags = flags_at(crm)
    no_eb = next(f for f in flags["no_eb"] if f.code == "no_economic_buyer")
    assert (
        no_eb.text == "No economic buyer in the qualified stage" and no_eb.action == ECONOMIC_BUYER
    )
    for deal in ("lead_no_eb", "eb", "no_contacts"):
        assert "no_economic_buyer" not in codes(flags[deal]), deal
    assert "no_economic_buyer" in codes(
        flags_at(crm, HealthThresholds(economic_buyer_stage=0))["lead_no_eb"]
    )


def test_flags_come_most_urgent_first(crm):
    # With every deal stalled, most carry two flags or more.
    order = ["no_follow_up", "slow_replies", "no_economic_buyer", "low_activity", "stalled"]
    for deal, flags in flags_at(crm, HealthThresholds(max_stalls=0)).items():
        found = [f.code for f in flags]
        assert found == sorted(found, key=order.index), deal


def test_thresholds_are_overridden_by_name_from_the_environment_and_the_command_line(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("LEADSCORE_HEALTH_MAX_STALLS", "5")
    monkeypatch.setenv("LEADSCORE_HEALTH_ACTIVITY_RATIO", "0.25")
    t = HealthThresholds().with_overrides(load_settings().health_overrides)
    assert (t.max_stalls, t.activity_ratio, t.max_reply_hours) == (5, 0.25, 24.0)
    assert t.with_overrides(["max_reply_hours=48", " FOLLOW_UP_DAYS = 7"]).follow_up_days == 7.0
    with pytest.raises(ValueError, match="max_stalls"):
        t.with_overrides(["stalls=2"])
    with pytest.raises(ValueError, match="NAME=VALUE"):
        t.with_overrides(["max_stalls"])


QUIET = Flag("no_follow_up", "No follow-up for 52 days", "Re-engage: last touch 52 days ago")
NO_EB = Flag("no_economic_buyer", "No economic buyer in the solution stage", ECONOMIC_BUYER)


def test_the_next_step_answers_the_strongest_reason_a_flag_confirms_or_a_value_shows():
    # The strongest reason (deal size) is not actionable; the next one is the flagged silence.
    assert (
        next_step([("amount", 9e4), ("days_since_last_activity", 52.0)], [NO_EB, QUIET])
        == "Re-engage: last touch 52 days ago"
    )
    # A seniority gap needs no flag...
    assert next_step([("max_seniority", 3.0), ("has_economic_buyer", 0.0)], [NO_EB]) == MEET_SENIOR
    # ...but a value without the gap is no task: a director already there.
    assert next_step([("max_seniority", 4.0), ("has_economic_buyer", 0.0)], []) == ECONOMIC_BUYER
    # Many activities can push down too; without a low-activity flag there is nothing to step up.
    assert next_step([("n_activities", 51.0)], []) == DEFAULT_STEP
    # No actionable reason: the most urgent flag.
    assert next_step([("competitor", "globex")], [QUIET, NO_EB]) == QUIET.action
    assert next_step([], []) == DEFAULT_STEP


def test_every_flag_and_step_has_its_chinese_words(crm):
    """Managers who read Chinese first get the same flags and steps, numbers included."""
    import re

    from leadscore.priority.health import (
        LOST_DEFAULT_STEP,
        LOST_REASON_STEPS,
        UNSTALL,
        ZH,
        lost_next_step_zh,
        next_step_words,
    )

    cjk = re.compile(r"[\u4e00-\u9fff]")
    fixed = [MEET_SENIOR, REPLY, REPLY_NOW, ECONOMIC_BUYER, UNSTALL, STEP_UP, DEFAULT_STEP]
    for step in [*fixed, *LOST_REASON_STEPS.values(), LOST_DEFAULT_STEP]:
        assert cjk.search(ZH[step]), step
    flags = flags_at(crm)
    for deal in flags.values():
        for f in deal:
            assert cjk.search(f.text_zh) and f.action_zh, f
    waiting = next(f for f in flags["waiting"] if f.code == "no_follow_up")
    assert (waiting.text_zh, waiting.action_zh) == ("客户消息已 20 天未回复", ZH[REPLY])
    ignored = next(f for f in flags["ignored"] if f.code == "slow_replies")
    assert ignored.text_zh == "客户消息已 36 小时未回复（超过 24 小时）"
    quiet = next(f for f in flags["quiet"] if f.code == "no_follow_up")
    assert quiet.action_zh == "重新跟进：上次接触在 20 天前"
    assert next_step_words([], flags["quiet"]) == (quiet.action, quiet.action_zh)
    assert next_step_words([], []) == (DEFAULT_STEP, ZH[DEFAULT_STEP])
    assert lost_next_step_zh("timing", 21) == "在客户说的那个季度再联系（3 周前丢单）"
    assert lost_next_step_zh(None, 0.5) == "回访一下：问问情况有什么变化（今天丢单）"
