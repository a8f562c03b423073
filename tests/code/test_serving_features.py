"""Deals sent to the service get the features the pipeline gives them, value for value.

Both paths run the kernels of :mod:`leadscore.features.deal_state`; they differ in how they read
a deal (the payload's lists vs CRM tables) and in how they ask (the state at one moment
vs source rows joined point-in-time, as Feast does). These tests send synthetic deals
through both: the payload converted back to CRM tables and run through
``build_feature_sources`` + ``features_as_of`` (the reference), and ``payload_features``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from leadscore.features.catalog import FEATURES, MODEL_FEATURES
from leadscore.features.featurize import (
    TS,
    build_feature_sources,
    features_as_of,
    model_frame,
)
from serving.payload import HISTORY_FEATURES, payload_features
from serving.schemas import DealIn
from tests.crm_fixture import day, tiny_crm
from tests.serving_fixture import AS_OF, crm_payloads, synthetic_tables, with_activity_summaries

PAYLOAD_FEATURES = [f for f in MODEL_FEATURES if not any(f in v for v in HISTORY_FEATURES.values())]


def payload_tables(payloads: list[dict[str, Any]]) -> dict[str, pd.DataFrame]:
    """The reference reading of a payload: back to contract tables, one row per item."""

    def ts(values: list[Any]) -> pd.Series:
        return pd.to_datetime(pd.Series(values, dtype=object), utc=True, format="ISO8601").astype(
            "datetime64[us, UTC]"
        )

    deals = pd.DataFrame(
        [
            {
                k: p.get(k)
                for k in (
                    "deal_id",
                    "account_id",
                    "owner_id",
                    "channel",
                    "product",
                    "competitor",
                    "amount",
                    "status",
                )
            }
            for p in payloads
        ]
    )
    deals["created_at"] = ts([p["created_at"] for p in payloads])
    deals["closed_at"] = ts([p.get("closed_at") for p in payloads])
    accounts = pd.DataFrame(
        [{"account_id": p["account_id"], **(p.get("account") or {})} for p in payloads]
    )
    accounts = accounts.drop_duplicates("account_id", keep="last")
    contacts = [dict(c, deal_id=p["deal_id"]) for p in payloads for c in p.get("contacts") or []]
    acts = [dict(a, deal_id=p["deal_id"]) for p in payloads for a in p.get("activities") or []]
    stages = [dict(s, deal_id=p["deal_id"]) for p in payloads for s in p.get("stage_history") or []]
    tables = {"deals": deals, "accounts": accounts}
    people = pd.DataFrame(contacts, columns=["deal_id", "contact_id", "title", "role", "added_at"])
    tables["contacts"] = people[["contact_id", "title"]].drop_duplicates("contact_id", keep="last")
    if contacts:
        tables["deal_contacts"] = people.assign(added_at=ts(list(people["added_at"])))
    if acts:
        a = pd.DataFrame(acts)
        tables["activities"] = a.assign(occurred_at=ts(list(a["occurred_at"])))
    if stages:
        s = pd.DataFrame(stages)
        tables["stage_history"] = s.assign(entered_at=ts(list(s["entered_at"])))
    return tables


def reference(payloads: list[dict[str, Any]], as_of: pd.Timestamp) -> pd.DataFrame:
    tables = payload_tables(payloads)
    d = tables["deals"]
    entities = pd.DataFrame(
        {
            "deal_id": d["deal_id"],
            "account_id": d["account_id"],
            "owner_id": d["owner_id"].fillna(""),
            TS: as_of,
        }
    )
    return model_frame(features_as_of(build_feature_sources(tables), entities))[PAYLOAD_FEATURES]


def served(payloads: list[dict[str, Any]], as_of: pd.Timestamp) -> pd.DataFrame:
    columns = payload_features([DealIn.model_validate(p) for p in payloads], as_of.to_pydatetime())
    return model_frame(pd.DataFrame(columns))[PAYLOAD_FEATURES]


def assert_identical(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Equal values, NaN where NaN; floats compared exactly (same arithmetic, same order)."""
    for name in PAYLOAD_FEATURES:
        x, y = a[name].to_numpy(), b[name].to_numpy()
        if a[name].dtype == object:
            assert list(x) == list(y), name
        else:
            same = (x == y) | (np.isnan(x) & np.isnan(y))
            assert same.all(), (
                f"{name}: {x[~same][:5]} vs {y[~same][:5]} (rows {np.flatnonzero(~same)[:5]})"
            )


@pytest.fixture(scope="module")
def synthetic_payloads() -> list[dict[str, Any]]:
    return crm_payloads(synthetic_tables())


@pytest.mark.parametrize("days_before", [0, 3.5, 200])
def test_synthetic_deals_match_the_pipeline_at_many_moments(synthetic_payloads, days_before):
    as_of = AS_OF - pd.Timedelta(days=days_before) + pd.Timedelta(microseconds=days_before * 1234)
    alive = [p for p in synthetic_payloads if pd.Timestamp(p["created_at"]) <= as_of]
    assert len(alive) > 100
    assert_identical(served(alive, as_of), reference(alive, as_of))


@pytest.mark.parametrize("when", [0, 1, 2.5, 12, 31, 37, 44, 50, 55, 59.9, 61, 90])
def test_hand_made_deals_match_the_pipeline(when):
    crm = tiny_crm()
    payloads = crm_payloads(crm)
    as_of = day(when)
    alive = [p for p in payloads if pd.Timestamp(p["created_at"]) <= as_of]
    assert_identical(served(alive, as_of), reference(alive, as_of))


def test_edge_cases_same_second_activities_repeats_and_missing_parts():
    base = {
        "deal_id": "E1",
        "account_id": "A",
        "created_at": "2024-01-01T00:00:00Z",
        "amount": 10.0,
        "channel": "  Paid  Ads ",
        "competitor": "No Competitor",
    }
    t = "2024-01-05T10:00:00.700000Z"
    payloads = [
        dict(
            base,
            activities=[
                {"type": "email", "direction": "inbound", "occurred_at": t, "contact_id": "C1"},
                {
                    "type": "call",
                    "direction": "outbound",
                    "occurred_at": "2024-01-05T10:00:00.100000Z",
                },
                {"type": "visit", "direction": "outbound", "occurred_at": t},
                {"type": "visit", "occurred_at": "2024-01-06T10:00:00Z"},
                {
                    "type": "email",
                    "direction": "inbound",
                    "occurred_at": "2024-01-07T00:00:00Z",
                    "contact_id": "C1",
                },
                {"type": "call", "direction": "outbound", "occurred_at": "2024-01-08T00:00:00Z"},
            ],
            contacts=[
                {
                    "contact_id": "C1",
                    "title": "CEO",
                    "role": "economic_buyer",
                    "added_at": "2024-01-01T00:00:00Z",
                }
            ],
            stage_history=[
                {"stage": "lead", "entered_at": "2024-01-01T00:00:00Z"},
                {"stage": "lead", "entered_at": "2024-01-02T00:00:00Z"},
                {"stage": "qualified", "entered_at": "2024-02-15T00:00:00Z"},
                {"stage": "lead", "entered_at": "2024-02-15T00:00:00Z"},
            ],
        ),
        dict(base, deal_id="E2", competitor=None, amount=None),
        dict(
            base,
            deal_id="E3",
            contacts=[{"contact_id": "C9", "title": None, "added_at": "2024-01-03T00:00:00Z"}],
            activities=[],
        ),
    ]
    for when in [
        "2024-01-05T10:00:00.5Z",
        "2024-01-05T10:00:01Z",
        "2024-01-12T10:00:00.700001Z",
        "2024-02-15T00:00:00Z",
        "2024-04-30T00:00:00Z",
    ]:
        as_of = pd.Timestamp(when)
        assert_identical(served(payloads, as_of), reference(payloads, as_of))


def test_a_deal_gets_the_same_features_alone_as_in_any_batch(synthetic_payloads):
    """Batching only shares the work: contact codes, sort order and offsets are
    request-wide, and must never let one deal's events reach another's features."""
    as_of = AS_OF - pd.Timedelta(days=10)
    alive = [p for p in synthetic_payloads if pd.Timestamp(p["created_at"]) <= as_of][:60]
    together = served(alive, as_of)
    alone = pd.concat([served([p], as_of) for p in alive], ignore_index=True)
    backwards = served(alive[::-1], as_of).iloc[::-1].reset_index(drop=True)
    assert_identical(together, alone)
    assert_identical(together, backwards)


def test_activity_summary_gives_the_same_features_as_the_activity_list(synthetic_payloads):
    """A CRM may send the deal_activity view's values instead of the list: same features."""
    as_of = AS_OF - pd.Timedelta(days=30)
    sample = [p for p in synthetic_payloads if pd.Timestamp(p["created_at"]) <= as_of][:300]
    summarised = with_activity_summaries(sample, synthetic_tables(), as_of)
    assert sum("activity_summary" in p for p in summarised) > 200
    assert_identical(served(summarised, as_of), served(sample, as_of))


def test_every_payload_feature_is_computed():
    columns = payload_features(
        [DealIn.model_validate(crm_payloads(tiny_crm())[0])], day(31).to_pydatetime()
    )
    f = {name: values[0] for name, values in columns.items()}
    assert set(PAYLOAD_FEATURES) <= set(f)
    assert {x.name for x in FEATURES} - set(f) == {n for v in HISTORY_FEATURES.values() for n in v}
    assert not any(
        isinstance(v, float) and math.isnan(v)
        for k, v in f.items()
        if k in ("n_activities", "stalls")
    )
