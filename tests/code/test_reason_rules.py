"""Which pushes a rep reads as reasons (issue 13): hand-made contributions and stats.

A stub model hands :class:`Explainer` fixed TreeSHAP pushes, so each rule is seen on a
deal built to break it: a track record, a reason contradicting its tooltip, one text
from two features, one text both ways, and actionable reasons before the deal's facts.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from leadscore.model.explain import Explainer
from leadscore.model.reason_audit import tooltip_direction
from leadscore.model.reasons import Fact, contradicts

FEATURES = [
    "owner_prior_closed",
    "act_call_7d",
    "n_activities",
    "act_total_30d",
    "days_in_stage",
    "stalls",
    "channel",
    "stage_index",
    "act_meeting_30d",
]
BIAS = -0.4


def numeric(edges: list[float], rates: list[float], missing: float | None = None) -> dict:
    return {
        "edges": edges,
        "deals": [100] * len(rates),
        "win_rate": rates,
        "missing": None if missing is None else {"deals": 50, "win_rate": missing},
    }


#: Training facts: 30% of deals won overall.
STATS: dict[str, Any] = {
    "win_rate": 0.30,
    "categorical": {
        "channel": {
            "values": {
                "referral": {"deals": 200, "win_rate": 0.50},
                "web": {"deals": 300, "win_rate": 0.20},
            },
            "missing": None,
        }
    },
    "numeric": {
        "owner_prior_closed": numeric([0, 10, 50], [0.20, 0.35]),
        # No calls in 7 days: won 12% of the time.
        "act_call_7d": numeric([0, 1, 3, 10], [0.12, 0.30, 0.50], missing=0.20),
        "n_activities": numeric([0, 5, 20], [0.20, 0.40], missing=0.20),
        "act_total_30d": numeric([0, 5, 20], [0.20, 0.40], missing=0.20),
        # No stage history: 40% won when read on days in stage, 20% on stalls.
        "days_in_stage": numeric([0, 10, 60], [0.40, 0.20], missing=0.40),
        "stalls": numeric([0, 1, 5], [0.35, 0.15], missing=0.20),
        "stage_index": numeric([0, 1, 2, 4], [0.10, 0.30, 0.60]),
        # act_meeting_30d: no statistic, so no tooltip.
    },
}


class StubModel:
    """What :class:`Explainer` reads of a model, with the pushes given per deal."""

    def __init__(self, pushes: list[dict[str, float]]) -> None:
        self.features = FEATURES
        self.attributes = ()
        self.reason_stats = STATS
        self._pushes = np.array([[row.get(f, 0.0) for f in FEATURES] for row in pushes])

    def encode_columns(self, columns: dict[str, list[Any]]) -> np.ndarray:
        return np.zeros((len(self._pushes), len(FEATURES)))

    def contributions(self, X: np.ndarray) -> np.ndarray:
        return np.column_stack([self._pushes, np.full(len(self._pushes), BIAS)])

    def calibrate(self, raw: np.ndarray, X: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-raw))


#: A sparse deal: no activity, no stage history, an experienced owner, a referral.
SPARSE = {
    "owner_prior_closed": 30,
    "act_call_7d": 0,
    "n_activities": math.nan,
    "act_total_30d": math.nan,
    "days_in_stage": math.nan,
    "stalls": math.nan,
    "channel": "referral",
    "stage_index": 2,
    "act_meeting_30d": 1,
}
SPARSE_PUSHES = {
    "owner_prior_closed": 0.9,  # strongest of all, but a track record
    "act_call_7d": 0.5,  # "+ No calls" over "won 12% ... against 30%": contradicts
    "n_activities": -0.6,  # "No activity logged yet"...
    "act_total_30d": -0.3,  # ... and again, weaker
    "days_in_stage": 0.4,  # "No stage history" up (tooltip: 40%)...
    "stalls": -0.35,  # ... and down (tooltip: 20%)
    "channel": 0.2,  # a deal fact, stronger than the next two
    "stage_index": 0.1,
    "act_meeting_30d": 0.05,
}


def explain(
    deals: list[dict[str, Any]], pushes: list[dict[str, float]], **kw: Any
) -> list[dict[str, Any]]:
    columns = {name: [d.get(name) for d in deals] for name in FEATURES}
    return Explainer(StubModel(pushes), **kw).explain(columns)  # type: ignore[arg-type,return-value]


def shown(reasons: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(r["feature"], r["text"]) for r in reasons]


def test_a_sparse_deal_reads_once_each_way_without_contradiction_or_track_record():
    (e,) = explain([SPARSE], [SPARSE_PUSHES])
    assert shown(e["positive_reasons"]) == [
        ("days_in_stage", "No stage history"),
        ("stage_index", "In the solution stage"),
        ("act_meeting_30d", "Meetings in the last 30 days: 1"),
        ("channel", "Referral channel"),
    ]
    # One "No activity logged yet", the stronger; "No stage history" not also down.
    assert shown(e["negative_reasons"]) == [("n_activities", "No activity logged yet")]
    # The owner's record is no reason, but still in the score.
    assert e["probability"] == pytest.approx(
        1 / (1 + math.exp(-(sum(SPARSE_PUSHES.values()) + BIAS)))
    )
    # What is shown agrees with its tooltip; a reason with no statistic has none.
    for r in e["positive_reasons"] + e["negative_reasons"]:
        assert r["contribution"] * tooltip_direction(r["tooltip"]) >= 0
    assert e["positive_reasons"][2]["tooltip"] is None


def test_each_rule_drops_exactly_its_reason():
    (e,) = explain([SPARSE], [SPARSE_PUSHES])
    features = {r["feature"] for r in e["positive_reasons"] + e["negative_reasons"]}
    assert "owner_prior_closed" not in features  # track record
    assert "act_call_7d" not in features  # contradicts "won 12% ... against 30% overall"
    assert "act_total_30d" not in features  # same text as a stronger reason
    assert "stalls" not in features  # same text the other way
    # Without its contradicting tooltip (a call made: 30% bin, "as often"), the call shows.
    (called,) = explain([{**SPARSE, "act_call_7d": 1}], [SPARSE_PUSHES])
    assert ("act_call_7d", "Calls in the last 7 days: 1") in shown(called["positive_reasons"])


def test_the_strongest_reasons_are_shown_with_what_a_rep_can_act_on_listed_first():
    # Places go by strength: the referral (0.2) beats the stage (0.1) to the second place...
    (two,) = explain([SPARSE], [SPARSE_PUSHES], max_reasons=2)
    assert [r["feature"] for r in two["positive_reasons"]] == ["days_in_stage", "channel"]
    # ... and the strongest push, a fact, is listed after a weaker one a rep can act on.
    (fact,) = explain([SPARSE], [{"channel": 0.9, "stage_index": 0.1}], max_reasons=2)
    assert [r["feature"] for r in fact["positive_reasons"]] == ["stage_index", "channel"]


def test_a_contradicting_reason_does_not_keep_its_text_from_the_side_its_tooltip_supports():
    # "+ No activity logged yet" contradicts its tooltip (20% vs 30%); the weaker "-" one
    # does not, and is the one shown.
    (e,) = explain([SPARSE], [{"n_activities": 0.7, "act_total_30d": -0.2}])
    assert e["positive_reasons"] == []
    assert shown(e["negative_reasons"]) == [("act_total_30d", "No activity logged yet")]


def test_contradiction_is_read_from_the_percentages_the_tooltip_shows():
    facts = [Fact("x", rate, 0.30, 10.0) for rate in (0.12, 0.296, 0.304, 0.32)]
    assert [f.direction for f in facts] == [-1, 0, 0, 1]
    assert [tooltip_direction(f.tooltip) for f in facts] == [-1, 0, 0, 1]
    assert "won 30% of the time, against 30% overall" in facts[2].tooltip
    assert contradicts(0.5, -1) and contradicts(-0.5, 1)
    assert not any(contradicts(push, 0) for push in (0.5, -0.5))
    assert not contradicts(0.5, 1) and not contradicts(-0.5, -1)
