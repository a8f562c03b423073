"""The LeadScorer service at three levels: the class, in-process HTTP, a real server.

One small champion is trained on a synthetic CRM, logged and registered in a private
MLflow store, packaged by ``serving.package`` into a private BentoML home, and served
against a private Feast repo holding a subset of the deals. Nothing touches the
project's own stores.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from leadscore.config import Settings
from leadscore.features.catalog import ACTIONABLE_GROUPS, FEATURES_BY_NAME
from leadscore.model.scoring_model import ScoringModel
from serving.closed_deals import NO_REVIVAL_MODEL
from tests.conftest import copy_feature_repo, free_port
from tests.serving_fixture import (
    AS_OF,
    crm_payloads,
    prepare_champion,
    running_server,
    serving_environment,
    small_champion,
    synthetic_tables,
)

pytestmark = pytest.mark.integration

#: Deals whose history the private feature store holds (the first N of the synthetic CRM,
#: seen open), and one won and one lost deal after them, with their status.
STORE_DEALS = 150


def with_quality(model: ScoringModel, frame: pd.DataFrame) -> ScoringModel:
    """The small champion with the quality summary training would store in it, measured
    on another synthetic CRM's closed deals, against baselines fitted on its own frame."""
    from leadscore.features.catalog import CATEGORICAL_FEATURES, model_catalog
    from leadscore.model.fallback import fit_fallback_on_snapshots
    from training.baselines import fit_group_rate, fit_logistic_regression
    from training.data import class_counts, data_window, in_memory_frame
    from training.quality import baseline_gate, quality_summary
    from training.result import TrainConfig
    from training.train import _per_deal

    test = in_memory_frame(synthetic_tables(600, seed=8))
    numeric = [f for f in model.features if f not in CATEGORICAL_FEATURES]
    categorical = [f for f in model.features if f in CATEGORICAL_FEATURES]
    preds = {
        "model": model.probability(model.encode(test)),
        "logistic_regression": fit_logistic_regression(frame, numeric, categorical).predict(test),
        "channel_rate": fit_group_rate(frame, "channel").predict(test),
        "stage_fallback": fit_fallback_on_snapshots(frame).predict(
            test["stage_index"].to_numpy(), test["channel"].to_numpy()
        ),
    }
    won, lost = class_counts(test)
    evaluation = {
        "data": {
            "window": data_window(frame),
            "split": {"method": "random", "note": "another synthetic CRM as the test slice"},
            "deals": {"test": {"won": won, "lost": lost}},
        },
        "model": {"calibration": model.calibration.method, "calibration_reason": "Platt"},
        "per_deal": _per_deal(test, preds, TrainConfig(bootstrap_resamples=50)),
    }
    evaluation["gate"] = baseline_gate(evaluation["per_deal"], 0.02, 0.02)
    quality = quality_summary(model, evaluation, test, preds["model"], model_catalog())
    quality["trained_at"] = "2025-06-30T12:00:00+00:00"
    return replace(model, info={**model.info, "quality": quality})


@dataclass
class Served:
    settings: Settings
    env: dict[str, str]
    model: ScoringModel
    payloads: list[dict[str, Any]]  # deals in the feature store, as a CRM sends them
    closed: dict[str, dict[str, Any]]  # a won and a lost deal, by status, as exported


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    settings, env = serving_environment(tmp_path_factory.mktemp("serving"))
    patch = pytest.MonkeyPatch()
    for k, v in env.items():
        patch.setenv(k, v)
    tables = synthetic_tables()
    model, frame = small_champion()
    model = with_quality(model, frame)
    ids = sorted(tables["deals"]["deal_id"].iloc[:STORE_DEALS])
    later = tables["deals"].iloc[STORE_DEALS:]
    closed = [later.loc[later["status"] == s, "deal_id"].iloc[0] for s in ("won", "lost")]
    packaged = prepare_champion(settings, tables, model, frame, ids + closed, closed)
    assert packaged.created and packaged.mlflow_version == "1"
    assert packaged.feature_service == "lead_scoring_v1"
    exported = crm_payloads(tables, closed, as_exported=True)
    yield Served(
        settings, env, model, crm_payloads(tables, ids), {p["status"]: p for p in exported}
    )
    patch.undo()


#: The in-process app runs with a bearer token, as production should.
TOKEN = "s3cret"


@pytest.fixture(scope="module")
def asgi_app(served: Served) -> Iterator[Any]:
    """``LeadScorer.to_asgi()``, built once: BentoML registers its Prometheus metrics per app."""
    from serving.service import LeadScorer

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEADSCORE_API_TOKEN", TOKEN)
        # The served-deal log writes often here, so a test reads it back at once.
        patch.setenv("LEADSCORE_SERVED_LOG_FLUSH_SECONDS", "0.2")
        patch.setenv("LEADSCORE_DRIFT_REFRESH_SECONDS", "0.2")
        yield LeadScorer.to_asgi()


@pytest.fixture(scope="module")
def client(asgi_app: Any) -> Iterator[Any]:
    from starlette.testclient import TestClient

    with TestClient(asgi_app, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        yield c


def score_body(payloads: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"deals": payloads, "as_of": AS_OF.isoformat(), **extra}


# ====================================================================== level 1: the class
def test_the_class_scores_explains_and_agrees_with_the_model(served: Served):
    from serving.payload import payload_features
    from serving.schemas import ScoreRequest
    from serving.service import LeadScorer

    svc = LeadScorer()
    request = ScoreRequest.model_validate(score_body(served.payloads[:20]))
    response = svc.score(request)
    assert not response.errors and len(response.results) == 20
    first = response.results[0]
    assert first["model_version"] == "1" and first["grade"] in "ABCD" and 0 <= first["score"] <= 100
    assert first["score"] == round(100 * first["probability"])
    assert 0 < len(first["positive_reasons"]) <= 5 and 0 < len(first["negative_reasons"]) <= 5
    assert all(r["contribution"] > 0 for r in first["positive_reasons"])
    assert all(r["contribution"] < 0 for r in first["negative_reasons"])
    # What a rep can act on first, then the deal's facts, strongest first in each.
    order = [
        (FEATURES_BY_NAME[r["feature"]].reason_group not in ACTIONABLE_GROUPS, -r["contribution"])
        for r in first["positive_reasons"]
    ]
    assert order == sorted(order)

    # The probability is the model's own, on the features plus the store's track record.
    deal = request.deals[0]
    columns = payload_features([deal], AS_OF.to_pydatetime())
    history = svc.track_records.lookup([(deal.account_id, deal.owner_id or "")])[0]
    columns.update({name: [value] for name, value in history.items()})
    assert first["probability"] == pytest.approx(
        float(served.model.probability(served.model.encode_columns(columns))[0])
    )


def test_the_online_store_is_opened_once_and_shared_by_both_endpoints(served: Served, monkeypatch):
    """Opening a Feast store parses its registry: once per service, not once per request."""
    import serving.online as online
    import serving.service as service
    from serving.schemas import ScoreIdsRequest, ScoreRequest

    opened = []
    real = online.open_store
    monkeypatch.setattr(online, "open_store", lambda settings: opened.append(1) or real(settings))
    svc = service.LeadScorer()
    deal_id = served.payloads[0]["deal_id"]
    for _ in range(3):
        by_id = svc.score_ids(ScoreIdsRequest(deal_ids=[deal_id], as_of=AS_OF.to_pydatetime()))
        assert [r["deal_id"] for r in by_id.results] == [deal_id]
    svc.track_records._cache.clear()  # force a track-record lookup too
    assert svc.score(ScoreRequest.model_validate(score_body(served.payloads[:1]))).results
    assert len(opened) == 1


def test_the_class_without_its_store_is_not_ready_but_scores_with_a_warning(
    served: Served, tmp_path: Path, monkeypatch
):
    from serving.schemas import ScoreIdsRequest, ScoreRequest
    from serving.service import LeadScorer

    monkeypatch.setenv("LEADSCORE_FEATURE_REPO", str(copy_feature_repo(tmp_path / "empty")))
    svc = LeadScorer()
    assert svc.__is_ready__() is False
    result = svc.score(ScoreRequest.model_validate(score_body(served.payloads[:1]))).results[0]
    assert any(
        w["field"] == "account_history" and "unreachable" in w["message"]
        for w in result["warnings"]
    )
    by_id = svc.score_ids(ScoreIdsRequest(deal_ids=["D1", "D2"]))
    assert not by_id.results and [e.problems[0].type for e in by_id.errors] == ["unavailable"] * 2


def as_answered(quality: dict[str, Any]) -> dict[str, Any]:
    """The stored quality summary as ``GET /model`` answers it: a model stored without
    segment models (this fixture's, trained outside ``fit_and_evaluate``) says null."""
    return {"segment_models": None, **quality}


def test_a_model_trained_before_the_quality_summary_still_serves_and_says_so(served: Served):
    from serving.schemas import ScoreIdsRequest
    from serving.service import LeadScorer

    svc = LeadScorer()
    assert svc.model_facts()["quality"] == as_answered(served.model.info["quality"])
    del svc.models.model.info["quality"]  # as in a model trained before training stored one
    facts = svc.model_facts()
    assert facts["quality"] is None
    assert facts["quality_note"] == "no quality summary: trained before this version"
    assert facts["model_version"] == "1"
    assert svc.score_ids(ScoreIdsRequest(deal_ids=[served.payloads[0]["deal_id"]])).results


# ====================================================================== level 2: in-process HTTP
def test_get_model_answers_the_figures_stored_in_the_served_model(client, served: Served):
    answer = client.get("/model", headers={})  # open, like the health probes
    assert answer.status_code == 200
    facts = answer.json()
    assert facts["model_name"] == served.settings.model_name
    assert (facts["model_version"], facts["alias"]) == ("1", "champion")
    assert facts["feature_service"] == "lead_scoring_v1"
    assert facts["quality"] == as_answered(served.model.info["quality"])
    assert facts["quality_note"] is None
    q = facts["quality"]
    auc = q["per_deal"]["at_creation"]["roc_auc"]
    assert auc["low"] < auc["value"] < auc["high"]
    assert q["baselines"]["logistic_regression"]["at_age"]["sentence"].endswith("]")
    # /docs.json documents the route with the answer's schema.
    spec = client.get("/docs.json").json()
    ok = spec["paths"]["/model"]["get"]["responses"]["200"]
    assert ok["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ModelFacts"
    }
    schemas = spec["components"]["schemas"]
    assert set(schemas["ModelFacts"]["properties"]) == set(facts)
    assert set(schemas["Quality"]["properties"]) == set(q)
    assert set(schemas["PerDealBlock"]["properties"]) == set(q["per_deal"]["at_creation"])


def test_score_and_score_ids_agree_on_every_deal(client, served: Served):
    ids = [p["deal_id"] for p in served.payloads]
    full = client.post("/score", json=score_body(served.payloads)).json()
    by_id = client.post("/score_ids", json={"deal_ids": ids, "as_of": AS_OF.isoformat()}).json()
    assert not full["errors"] and not by_id["errors"]
    a = {r["deal_id"]: r for r in full["results"]}
    b = {r["deal_id"]: r for r in by_id["results"]}
    assert a.keys() == b.keys() == set(ids)
    for deal_id in ids:
        assert a[deal_id]["probability"] == pytest.approx(b[deal_id]["probability"], rel=1e-9), (
            deal_id
        )
        assert [r["feature"] for r in a[deal_id]["positive_reasons"]] == [
            r["feature"] for r in b[deal_id]["positive_reasons"]
        ]


def test_reasons_are_phrased_with_values_and_training_facts(client, served: Served):
    result = client.post("/score", json=score_body(served.payloads[:30])).json()["results"]
    reasons = [r for res in result for r in res["positive_reasons"] + res["negative_reasons"]]
    assert all(r["text"] and r["label"] for r in reasons)
    with_facts = [r for r in reasons if r["tooltip"]]
    assert len(with_facts) > len(reasons) / 2
    assert all(" of the time, against " in r["tooltip"] for r in with_facts)


def test_a_bad_deal_does_not_sink_the_batch_and_every_problem_is_named(client, served: Served):
    good = served.payloads[0]
    future = (datetime.now(UTC) + timedelta(days=3)).isoformat()
    bad = [
        {**good, "deal_id": "BAD-TYPES", "amount": "lots", "created_at": "yesterday-ish"},
        {"deal_id": "BAD-MISSING"},
        {**good, "deal_id": "BAD-AMOUNT", "amount": -5},
        # Consistency is checked once the types are right.
        {
            **good,
            "deal_id": "BAD-TIMES",
            "closed_at": "2000-01-01T00:00:00Z",
            "activities": [{**good["activities"][0], "occurred_at": future}],
        },
        good,  # the same deal twice
    ]
    response = client.post("/score", json=score_body([good, *bad]))
    assert response.status_code == 200
    body = response.json()
    assert [r["deal_id"] for r in body["results"]] == [good["deal_id"]]
    problems = {
        e["deal_id"]: {tuple(p["loc"]): p["msg"] for p in e["problems"]} for e in body["errors"]
    }
    assert [e["index"] for e in body["errors"]] == [1, 2, 3, 4, 5]
    assert {("deals", 1, "amount"), ("deals", 1, "created_at")} <= problems["BAD-TYPES"].keys()
    assert problems["BAD-MISSING"].keys() == {
        ("deals", 2, "account_id"),
        ("deals", 2, "created_at"),
    }
    assert "greater than or equal to 0" in problems["BAD-AMOUNT"][("deals", 3, "amount")]
    times = problems["BAD-TIMES"]
    assert "cannot close before" in times[("deals", 4, "closed_at")]
    assert "future" in times[("deals", 4, "activities", 0, "occurred_at")]
    assert "more than once" in problems[good["deal_id"]][("deals", 5, "deal_id")]

    strict = client.post("/score", json=score_body([good, *bad], all_or_nothing=True))
    assert strict.status_code == 422
    assert strict.json()["results"] == [] and len(strict.json()["errors"]) == 5
    assert client.post("/score", json=score_body(bad[:2])).status_code == 422


def test_malformed_requests_get_400_naming_the_field(client, served: Served):
    cases = [
        ({"deals": "not a list"}, ["deals"]),
        ({"deals": []}, ["deals"]),
        ({"deals": [served.payloads[0]] * 1001}, ["deals"]),
        ({"deals": [served.payloads[0]], "as_of": "2999-01-01T00:00:00Z"}, ["as_of"]),
        ({"deals": [served.payloads[0]], "all_or_nothing": "maybe"}, ["all_or_nothing"]),
    ]
    for body, loc in cases:
        response = client.post("/score", json=body)
        assert response.status_code == 400, body.keys()
        assert [d["loc"] for d in response.json()["detail"]] == [loc]


def test_unknown_categories_and_missing_optional_data_are_scored_with_warnings(
    client, served: Served
):
    deal = {
        k: v for k, v in served.payloads[0].items() if k not in ("activities", "account", "amount")
    }
    deal["channel"] = "carrier pigeon"
    response = client.post("/score", json=score_body([deal]))
    assert response.status_code == 200
    result = response.json()["results"][0]
    fields = {w["field"] for w in result["warnings"]}
    assert {"channel", "activities", "account", "amount", "account_history"} <= fields
    assert "latest" in next(
        w["message"] for w in result["warnings"] if w["field"] == "account_history"
    )
    # Scored now, the track records are current: no such warning.
    now = client.post("/score", json={"deals": [deal]}).json()["results"][0]
    assert "account_history" not in {w["field"] for w in now["warnings"]}
    assert "carrier_pigeon" in next(
        w["message"] for w in result["warnings"] if w["field"] == "channel"
    )


def test_score_ids_reports_unknown_ids_and_scores_the_rest(client, served: Served):
    ids = [served.payloads[0]["deal_id"], "NO-SUCH-DEAL"]
    body = client.post("/score_ids", json={"deal_ids": ids, "as_of": AS_OF.isoformat()}).json()
    assert [r["deal_id"] for r in body["results"]] == ids[:1]
    assert body["errors"][0]["deal_id"] == "NO-SUCH-DEAL" and body["errors"][0]["index"] == 1
    assert client.post("/score_ids", json={"deal_ids": ["NO-SUCH-DEAL"]}).status_code == 422


def test_a_closed_deal_never_gets_an_open_deal_score(client, served: Served):
    """Issue 12: won and lost deals came back with open-deal scores from both endpoints."""
    lost_msg = (
        'deal is lost: an open-deal score would mislead; ask for revival with "revival": true'
    )
    open_deal, won, lost = served.payloads[0], served.closed["won"], served.closed["lost"]
    ids = [won["deal_id"], open_deal["deal_id"], lost["deal_id"]]
    by_id = client.post("/score_ids", json={"deal_ids": ids, "as_of": AS_OF.isoformat()})
    full = client.post("/score", json=score_body([won, open_deal, lost]))
    for response, where in ((by_id, "deal_ids"), (full, "deals")):
        assert response.status_code == 200, where
        body = response.json()
        first, second = body["results"]
        assert first["deal_id"] == won["deal_id"] and first["status"] == "won"
        assert first["note"] and "probability" not in first and "grade" not in first
        assert second["status"] == "open" and 0 < second["probability"] < 1
        [error] = body["errors"]
        assert error["index"] == 2 and error["deal_id"] == lost["deal_id"]
        assert error["problems"] == [{"loc": [where, 2], "msg": lost_msg, "type": "invalid_value"}]
    revived = client.post(
        "/score_ids", json={"deal_ids": ids, "as_of": AS_OF.isoformat(), "revival": True}
    ).json()
    assert [r["deal_id"] for r in revived["results"]] == ids[:2]
    assert revived["errors"][0]["problems"][0]["msg"] == NO_REVIVAL_MODEL
    strict = client.post("/score", json=score_body([open_deal, lost], all_or_nothing=True))
    assert strict.status_code == 422 and strict.json()["results"] == []
    spec = client.get("/docs.json").json()["components"]["schemas"]
    result = spec["ScoreResult"]
    assert "status" in result["required"] and result["properties"]["status"]["description"]
    for request in ("ScoreRequest", "ScoreIdsRequest"):
        revival = next(s for n, s in spec.items() if n.removesuffix("IODescriptor") == request)
        assert revival["properties"]["revival"]["examples"] == [True]


def test_openapi_documents_every_field_with_a_working_example(client):
    spec = client.get("/docs.json").json()
    for route in ("/score", "/score_ids"):
        schema = spec["paths"][route]["post"]["requestBody"]["content"]["application/json"][
            "schema"
        ]
        example = schema["example"]
        assert client.post(route, json=example).status_code == 200, route
    ours = {
        "ScoreRequest",
        "ScoreIdsRequest",
        "DealIn",
        "AccountIn",
        "ContactIn",
        "ActivityIn",
        "StageEntryIn",
        "ActivitySummaryIn",
        "ScoreResponse",
        "ScoreResult",
        "Reason",
        "ScoreWarning",
        "DealError",
        "Problem",
    }
    schemas = spec["components"]["schemas"]
    found = set()
    for name, schema in schemas.items():
        base = name.removesuffix("IODescriptor")
        if base not in ours:
            continue
        found.add(base)
        for field, prop in schema.get("properties", {}).items():
            assert prop.get("description"), f"{name}.{field} has no description"
    assert found == ours


def test_health_is_open_and_scoring_needs_the_bearer_token(client, served: Served):
    body = score_body(served.payloads[:1])
    assert client.get("/healthz", headers={}).status_code == 200
    assert client.get("/readyz", headers={}).status_code == 200
    anonymous = {"Authorization": ""}
    assert client.post("/score", json=body, headers=anonymous).status_code == 401
    wrong = client.post("/score", json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["detail"][0]["loc"] == [
        "header",
        "Authorization",
    ]
    assert client.post("/score_ids", json={"deal_ids": ["x"]}, headers=anonymous).status_code == 401
    assert client.post("/score", json=body).status_code == 200


def test_contact_details_and_payloads_are_never_logged(client, served: Served, caplog):
    secret = {"name": "Zelda Quackenbush", "email": "zelda@example.org", "phone": "+1-555-0199"}
    deal = json.loads(json.dumps(served.payloads[0]))
    deal["contacts"][0].update(secret)
    broken = {
        **deal,
        "deal_id": "BROKEN",
        "contacts": [{**deal["contacts"][0], "added_at": "zelda@example.org"}],
    }
    with caplog.at_level(logging.DEBUG):
        client.post("/score", json=score_body([deal, broken]))
        client.post("/score", json={"deals": "Zelda Quackenbush zelda@example.org"})
    for value in secret.values():
        assert value not in caplog.text


def test_every_scored_deal_is_logged_with_its_features_and_no_contact_details(
    client, served: Served
):
    """Issue 16: what was served, joinable later with the outcome; nothing personal."""
    from leadscore.model.served import META, read_served

    secret = {"name": "Ada Pennywhistle", "email": "ada@example.org", "phone": "+1-555-0142"}
    deals = json.loads(json.dumps(served.payloads[:3]))
    for deal in deals:
        deal["deal_id"] = f"LOGGED-{deal['deal_id']}"
        deal["contacts"][0].update(secret)
    start = pd.Timestamp.now(tz="UTC")
    answer = client.post("/score", json=score_body(deals)).json()
    ids = client.post("/score_ids", json={"deal_ids": [served.payloads[3]["deal_id"]]}).json()
    wanted = {r["deal_id"]: r["probability"] for r in answer["results"] + ids["results"]}
    deadline = time.monotonic() + 10
    while True:
        rows = read_served(served.settings.served_dir, since=start)
        rows = rows[rows["deal_id"].isin(wanted)]
        if len(rows) >= len(wanted) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert sorted(rows["deal_id"]) == sorted(wanted)
    by_id = rows.set_index("deal_id")
    for deal_id, p in wanted.items():
        assert by_id.loc[deal_id, "probability"] == pytest.approx(p)
    assert set(by_id["endpoint"]) == {"score", "score_ids"}
    assert set(by_id["model_version"]) == {"1"}
    assert set(rows.columns) <= set(META) | set(served.model.features)
    assert {"days_since_last_activity", "max_seniority", "channel"} <= set(rows.columns)
    text = rows.astype(str).to_csv()
    for value in secret.values():
        assert value not in text


def test_the_last_drift_report_is_a_prometheus_gauge(client, served: Served):
    """Issue 16: -1 before `leadscore monitor` ever ran, then its alert count."""
    from leadscore.model.drift import LATEST, write_latest

    def gauge() -> float | None:
        for line in client.get("/metrics").text.splitlines():
            if line.startswith("leadscore_drift_alerts"):
                return float(line.split()[-1])
        return None

    (served.settings.monitor_dir / LATEST).unlink(missing_ok=True)
    deadline = time.monotonic() + 10
    while gauge() != -1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert gauge() == -1
    write_latest({"alerted": True, "alerts": ["a", "b"]}, served.settings.monitor_dir)
    while gauge() != 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert gauge() == 2


def test_bentoml_build_makes_a_deployable_bento(served: Served):
    import bentoml

    from leadscore.config import PROJECT_ROOT

    bento = bentoml.bentos.build_bentofile(
        str(PROJECT_ROOT / "bentofile.yaml"), build_ctx=str(PROJECT_ROOT)
    )
    assert bento.tag.name == "lead_scorer"
    assert [m.tag.name for m in bento.info.services[0].models] == ["lead_scorer"]
    files = {
        p.relative_to(bento.path_of("src")).as_posix()
        for p in Path(bento.path_of("src")).rglob("*.py")
    }
    assert {
        "serving/service.py",
        "leadscore/features/featurize.py",
        "leadscore/model/reason_stats.py",
        "features/feature_views.py",
    } <= files
    assert not any(f.startswith("tests/") for f in files)


# ====================================================================== level 3: a real server
@pytest.fixture(scope="module")
def server(served: Served) -> Iterator[str]:
    """``leadscore serve`` in a subprocess (one worker, to start fast), with a bearer token."""
    leadscore = str(Path(sys.executable).with_name("leadscore"))
    env = {
        **os.environ,
        **served.env,
        "LEADSCORE_API_TOKEN": TOKEN,
        "BENTOML_CONFIG_OPTIONS": "services.lead_scorer.workers=1",
    }
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [leadscore, "serve", "--port", str(port), "--host", "127.0.0.1"]
    with running_server(cmd, env, f"{url}/readyz", timeout=120):
        yield url


def test_package_command_is_idempotent(served: Served):
    from typer.testing import CliRunner

    from pipelines.cli import app

    result = CliRunner().invoke(app, ["package"])
    assert result.exit_code == 0, result.output
    assert "already packaged" in result.output and "version 1" in result.output


def test_real_server_with_bentoml_client_and_plain_http(server: str, served: Served):
    import bentoml

    body = score_body(served.payloads[:5])
    with bentoml.SyncHTTPClient(server, token=TOKEN) as bento:
        assert bento.is_ready()
        answer = bento.score(body)
    assert [r["deal_id"] for r in answer["results"]] == [p["deal_id"] for p in served.payloads[:5]]

    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.post(f"{server}/score", json=body, timeout=30).status_code == 401
    plain = httpx.post(f"{server}/score", json=body, headers=auth, timeout=30)
    assert plain.status_code == 200
    probabilities = [r["probability"] for r in plain.json()["results"]]
    assert np.allclose(probabilities, [r["probability"] for r in answer["results"]])
    by_id = httpx.post(
        f"{server}/score_ids",
        json={"deal_ids": [p["deal_id"] for p in served.payloads[:5]], "as_of": AS_OF.isoformat()},
        headers=auth,
        timeout=30,
    )
    assert np.allclose([r["probability"] for r in by_id.json()["results"]], probabilities)

    assert httpx.get(f"{server}/healthz").status_code == 200
    metrics = httpx.get(f"{server}/metrics").text
    assert (
        "leadscore_deals_total" in metrics and "bentoml_service_request_duration_seconds" in metrics
    )
    docs = httpx.get(f"{server}/docs.json").json()
    assert {"/score", "/score_ids", "/model"} <= docs["paths"].keys()
    # GET /model from a real worker: the service instance it reads is that worker's.
    facts = httpx.get(f"{server}/model", timeout=30).json()
    assert facts["model_version"] == "1"
    assert facts["quality"] == json.loads(json.dumps(as_answered(served.model.info["quality"])))
    assert pd.Timestamp(plain.json()["results"][0]["as_of"]) == AS_OF


def test_the_priority_page_is_mounted_beside_the_api_behind_the_token(client):
    """The service serves the managers' page at /leads/; with a token configured it asks
    a browser for it (Basic authentication, token as password) and accepts the bearer
    header too. Before any `leadscore rank` it says what to run instead of failing."""
    anonymous = client.get("/leads/", headers={"Authorization": ""})
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Basic")
    wrong = client.get("/leads/", auth=("manager", "not-the-token"))
    assert wrong.status_code == 401
    assert client.get("/leads/", headers={"Authorization": "Basic %%%"}).status_code == 401
    # The page's Basic login does not open the API.
    api = client.post("/score_ids", json={"deal_ids": ["x"]}, auth=("manager", TOKEN))
    assert api.status_code == 401
    for r in (client.get("/leads/", auth=("manager", TOKEN)), client.get("/leads/")):
        assert r.status_code in (200, 503)
        assert "Lead priorities" in r.text
        if r.status_code == 503:
            assert "leadscore rank" in r.text
