"""Scoring without BentoML: explanations, grades, reasons in words, checks and warnings."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from leadscore.config import ServingConfig, parse_grade_thresholds
from leadscore.features.catalog import ACTIONABLE_GROUPS, FEATURES_BY_NAME
from leadscore.model.explain import Explainer, Reason, grade_of
from leadscore.model.reasons import Phrasebook, reason_text, reason_tooltip
from leadscore.model.scoring_model import ScoringModel
from serving.payload import deal_problems, input_warnings, payload_features
from serving.schemas import DealIn, InvalidDeal, ScoreRequest
from tests.serving_fixture import AS_OF, crm_payloads, small_champion, synthetic_tables


@pytest.fixture(scope="module")
def model() -> ScoringModel:
    return small_champion()[0]


@pytest.fixture(scope="module")
def columns() -> dict[str, list[Any]]:
    payloads = crm_payloads(synthetic_tables())[:200]
    return payload_features([DealIn.model_validate(p) for p in payloads], AS_OF.to_pydatetime())


def first(columns: dict[str, list[Any]], n: int = 1) -> dict[str, list[Any]]:
    return {name: values[:n] for name, values in columns.items()}


def actionable(reason: Reason) -> bool:
    return FEATURES_BY_NAME[reason["feature"]].reason_group in ACTIONABLE_GROUPS


def deal(**changes: Any) -> dict[str, Any]:
    base = {
        "deal_id": "D1",
        "account_id": "A1",
        "created_at": "2025-01-10T00:00:00Z",
        "channel": "web",
        "product": "core",
        "amount": 1000,
        "account": {"industry": "retail"},
        "contacts": [],
        "activities": [],
        "stage_history": [],
    }
    return {**base, **changes}


# ---------------------------------------------------------------- explanations
def test_contributions_of_one_deal_add_up_to_its_raw_score(model, columns):
    X = model.encode_columns(first(columns))
    contributions = model.contributions(X)
    assert contributions.shape == (1, len(model.features) + 1)
    assert contributions[0].sum() == pytest.approx(model.raw_score(X)[0], rel=1e-9, abs=1e-9)


def test_explanations_are_the_model_probability_and_its_strongest_pushes(model, columns):
    explainer = Explainer(model, {"A": 50, "B": 30, "C": 10})
    explained = explainer.explain(columns)
    X = model.encode_columns(columns)
    assert len(explained) == len(X) == 200
    # From the contributions' sum, which is the raw score up to float rounding.
    assert [e["probability"] for e in explained] == pytest.approx(
        model.probability(X).tolist(), rel=1e-12, abs=1e-12
    )
    pushes = model.contributions(X)
    amount, log_amount = model.features.index("amount"), model.features.index("log_amount")
    for e, row in zip(explained, pushes, strict=True):
        positive, negative = e["positive_reasons"], e["negative_reasons"]
        assert e["score"] == round(100 * e["probability"])
        assert e["grade"] == grade_of(e["score"], {"A": 50, "B": 30, "C": 10})
        assert len(positive) <= 5 and len(negative) <= 5
        assert all(r["contribution"] > 0.01 for r in positive)
        assert all(r["contribution"] < -0.01 for r in negative)
        # What a rep can act on first, then the deal's facts; strongest first in each.
        for side in (positive, [{**r, "contribution": -r["contribution"]} for r in negative]):
            assert side == sorted(side, key=lambda r: (not actionable(r), -r["contribution"]))
        assert "log_amount" not in {r["feature"] for r in positive + negative}
        for r in positive + negative:
            j = model.features.index(r["feature"])
            expected = row[amount] + row[log_amount] if r["feature"] == "amount" else row[j]
            assert r["contribution"] == pytest.approx(expected, abs=1e-4)
            assert r["label"] == FEATURES_BY_NAME[r["feature"]].label and r["text"]


def test_grades_follow_configurable_thresholds():
    assert parse_grade_thresholds("A=70, B=50, C=30") == {"A": 70, "B": 50, "C": 30}
    for bad in ("A=30,B=50,C=10", "B=50,A=70,C=30", "A=70,B=50", "A=101,B=50,C=30", "A=x,B=1,C=0"):
        with pytest.raises(ValueError):
            parse_grade_thresholds(bad)
    thresholds = ServingConfig.from_env(
        {"LEADSCORE_GRADE_THRESHOLDS": "A=70,B=50,C=30"}
    ).grade_thresholds
    assert [grade_of(s, thresholds) for s in (100, 70, 69, 50, 30, 29, 0)] == [
        "A",
        "A",
        "B",
        "B",
        "C",
        "D",
        "D",
    ]
    default = ServingConfig.from_env({})
    assert default.grade_thresholds == {"A": 60, "B": 40, "C": 20} and default.api_token is None


def test_unseen_categories_are_scored_with_a_warning(model, columns):
    two = {**first(columns, 2), "channel": ["carrier_pigeon", columns["channel"][1]]}
    explainer = Explainer(model)
    assert explainer.explain(two)[0]["probability"] > 0
    (warning,), none = explainer.unseen_category_warnings(two)
    assert warning["field"] == "channel" and "carrier_pigeon" in warning["message"]
    assert none == []


# ---------------------------------------------------------------- reasons in words
def test_reasons_read_like_a_person_with_facts_from_training(model):
    stats = model.reason_stats
    quiet = FEATURES_BY_NAME["days_since_last_activity"]
    assert reason_text(quiet, 37.2) == "No activity for 37 days"
    assert reason_tooltip(quiet, 37.2, stats).startswith("Deals this quiet (")
    channel = FEATURES_BY_NAME["channel"]
    assert reason_text(channel, "paid_ads") == "Paid ads channel"
    tip = reason_tooltip(channel, "referral", stats)
    rate = stats["categorical"]["channel"]["values"]["referral"]["win_rate"]
    assert tip.startswith(
        f"Deals from the referral channel were won {rate:.0%} of the time, against "
    )
    assert (
        reason_text(FEATURES_BY_NAME["has_economic_buyer"], 0.0) == "No economic buyer on the deal"
    )
    assert reason_text(FEATURES_BY_NAME["act_call_7d"], 0.0) == "No calls in the last 7 days"
    assert reason_text(FEATURES_BY_NAME["n_activities"], math.nan) == "No activity logged yet"
    assert reason_text(FEATURES_BY_NAME["amount"], 24000.0) == "Deal size $24,000"


def test_a_missing_statistic_gives_no_tooltip_not_an_invented_one():
    book = Phrasebook({})
    assert book.phrase("channel", "referral") == ("Referral channel", None)
    partial = Phrasebook(
        {"win_rate": 0.3, "categorical": {"channel": {"values": {}, "missing": None}}}
    )
    assert partial.phrase("channel", "referral")[1] is None
    assert partial.phrase("stalls", math.nan) == ("No stage history", None)


# ---------------------------------------------------------------- checks and warnings
def test_impossible_values_are_named_field_by_field():
    now = datetime(2025, 6, 1, tzinfo=UTC)
    future = (now + timedelta(days=2)).isoformat()
    d = DealIn.model_validate(
        deal(
            closed_at="2025-01-01T00:00:00Z",
            contacts=[
                {"contact_id": "C1", "added_at": "2025-01-09T00:00:00Z"},
                {"contact_id": "C1", "added_at": "2025-01-11T00:00:00Z"},
            ],
            activities=[{"type": "call", "occurred_at": future}],
            stage_history=[{"stage": "lead", "entered_at": "2025-01-10T00:00:00Z"}],
            activity_summary={"n_activities": 3},
        )
    )
    problems = {tuple(p.loc): p.msg for p in deal_problems(d, now, now)}
    assert set(problems) == {
        ("closed_at",),
        ("contacts", 0, "added_at"),
        ("contacts", 1, "contact_id"),
        ("activities", 0, "occurred_at"),
        ("activity_summary",),
    }
    assert "before the deal's created_at" in problems[("contacts", 0, "added_at")]
    assert "future" in problems[("activities", 0, "occurred_at")]
    early = deal_problems(DealIn.model_validate(deal()), datetime(2025, 1, 1, tzinfo=UTC), now)
    assert [p.loc for p in early] == [["created_at"]] and "as_of" in early[0].msg


def test_schema_reads_the_crm_leniently_but_keeps_each_deal_apart():
    request = ScoreRequest.model_validate(
        {
            "deals": [
                deal(
                    created_at="2025-01-10T00:00:00",
                    contacts=[
                        {
                            "contact_id": "C1",
                            "role": " Economic_Buyer ",
                            "added_at": "2025-01-10T00:00:00+08:00",
                            "name": "Zelda",
                            "email": "z@example.org",
                            "phone": "555",
                        }
                    ],
                ),
                {
                    "deal_id": "D2",
                    "account_id": "A",
                    "created_at": "2025-01-10",
                    "amount": -1,
                    "activities": [{"type": "fax", "occurred_at": "2025-01-11"}],
                },
            ]
        }
    )
    good, bad = request.deals
    assert isinstance(good, DealIn) and good.created_at.tzinfo is not None
    assert good.contacts[0]["role"] == "economic_buyer"
    assert good.contacts[0]["added_at"] == datetime(2025, 1, 9, 16, tzinfo=UTC)
    assert "Zelda" not in good.model_dump_json() and "z@example.org" not in good.model_dump_json()
    assert isinstance(bad, InvalidDeal) and bad.deal_id == "D2"
    assert {tuple(p.loc) for p in bad.problems} == {("amount",), ("activities", 0, "type")}


def test_missing_optional_data_is_listed_as_warnings():
    bare = DealIn.model_validate(
        {"deal_id": "D", "account_id": "A", "created_at": "2025-01-10T00:00:00Z"}
    )
    assert {w["field"] for w in input_warnings(bare)} == {
        "activities",
        "stage_history",
        "contacts",
        "account",
        "channel",
        "product",
        "amount",
    }
    assert input_warnings(DealIn.model_validate(deal())) == []
