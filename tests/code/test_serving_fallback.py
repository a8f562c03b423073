"""The fallback as the served model: stored and read back, and scored as the service scores.

Over HTTP, through `leadscore package` and `leadscore serve`, in
tests/integration/test_service_fallback_http.py.
"""

from __future__ import annotations

import numpy as np

from leadscore.config import DEFAULT_GRADE_THRESHOLDS, MIN_CLASS_DEALS
from leadscore.model.fallback import StageFallback, fit_fallback
from serving.fallback import FallbackScorer
from tests.code.test_fallback import ten_deals


def fitted() -> StageFallback:
    deals, history = ten_deals()
    return fit_fallback(deals, history)


def test_a_fallback_read_back_from_its_dict_predicts_exactly_as_fitted():
    fallback = fitted()
    again = StageFallback.from_dict(fallback.to_dict())
    stages, channels = (
        np.array([0, 1, 2, None], dtype=object),
        np.array(["web", "Referral", None, "x"]),
    )
    assert again == fallback
    np.testing.assert_array_equal(
        again.predict(stages, channels), fallback.predict(stages, channels)
    )
    assert again.fingerprint == fallback.fingerprint


def test_the_fingerprint_changes_with_the_fit():
    deals, history = ten_deals()
    deals.loc[deals["deal_id"] == "L6", "status"] = "won"
    assert fit_fallback(deals, history).fingerprint != fitted().fingerprint


def test_every_deal_the_scorer_answers_is_labelled_and_warned():
    fallback = fitted()
    scorer = FallbackScorer(fallback, DEFAULT_GRADE_THRESHOLDS)
    columns: dict[str, list[object]] = {
        "stage_index": [0, 2],
        "channel": ["web", "Referral"],
        "amount": [1.0, 2.0],
    }
    explained = scorer.explain(columns)
    expected = fallback.predict(np.array([0, 2]), np.array(["web", "Referral"]))
    assert [e["probability"] for e in explained] == list(expected)
    assert all(e["model"] == fallback.name for e in explained)  # type: ignore[typeddict-item]
    assert explained[1]["positive_reasons"][0]["feature"] == "stage_index"
    warnings = scorer.unseen_category_warnings(columns)
    assert [len(w) for w in warnings] == [1, 1]
    message = warnings[0][0]["message"]
    assert "rough prior" in message and fallback.name in message
    assert f"{MIN_CLASS_DEALS} won and {MIN_CLASS_DEALS} lost" in message
    assert "(now 4 won, 6 lost)" in message
    assert scorer.gate_warning == message


def test_a_channel_never_seen_closed_is_warned_about():
    scorer = FallbackScorer(fitted(), DEFAULT_GRADE_THRESHOLDS)
    warnings = scorer.unseen_category_warnings(
        {"stage_index": [0, 0], "channel": ["Partner", None]}
    )
    assert [w["field"] for w in warnings[0]] == [None, "channel"]
    assert [w["field"] for w in warnings[1]] == [None]


def test_model_facts_say_what_scores_and_when_a_model_takes_over():
    scorer = FallbackScorer(fitted(), DEFAULT_GRADE_THRESHOLDS, "lead_scoring_v1")
    facts = scorer.facts()
    assert facts["model"].startswith("fallback (stage and channel rates, 10 closed deals")
    assert (facts["won_deals"], facts["lost_deals"], facts["min_class_deals"]) == (4, 6, 40)
    assert scorer.info == {"feature_service": "lead_scoring_v1"}
    assert scorer.attributes == ()
