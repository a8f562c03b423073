"""Hostile and unlucky input to the scoring API, the service's pages and `serve`, without a server.

Blank categories, times at the ends of the calendar, values of the wrong JSON type,
the OpenAPI spec's error answers, security headers on the pages the product serves,
and the address `serve` binds. Each test here failed before its fix (issue 15); the
same defects are checked over HTTP on a live service in ``tests/integration/test_fuzz.py``.
"""

from __future__ import annotations

import json
import logging
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from leadscore.config import load_settings
from leadscore.features.catalog import FEATURES_BY_NAME
from leadscore.model.explain import Explainer
from leadscore.model.reasons import Phrasebook, is_missing, reason_text
from serving.payload import input_warnings, payload_features
from serving.schemas import (
    EARLIEST_TIME,
    DealIn,
    InvalidDeal,
    ScoreIdsRequest,
    ScoreRequest,
    ScoreResponse,
    document_responses,
)
from tests.serving_fixture import AS_OF, crm_payloads, small_champion, synthetic_tables


def deal(**changes: Any) -> dict[str, Any]:
    return {
        "deal_id": "D1",
        "account_id": "A1",
        "created_at": "2025-01-10T00:00:00Z",
        "channel": "referral",
        "product": "core",
        **changes,
    }


# ====================================================================== blank categories
@pytest.mark.parametrize("value", [None, math.nan, np.float32("nan"), pd.NA, pd.NaT])
def test_every_missing_kind_is_missing(value: Any):
    assert is_missing(value)


@pytest.mark.parametrize("value", [0.0, "", "referral", 3, np.float64(1.5)])
def test_values_are_not_missing(value: Any):
    assert not is_missing(value)


def test_a_category_pandas_left_as_na_is_phrased_as_not_recorded():
    model = small_champion()[0]
    book = Phrasebook(model.reason_stats)
    for name in ("channel", "product", "industry", "region"):
        text, _ = book.phrase(name, pd.NA)
        assert text == reason_text(FEATURES_BY_NAME[name], None)
        assert "<NA>" not in text


def test_reasons_never_carry_pandas_na_so_the_response_serialises():
    """The featurizer turns "" into pd.NA; a reason about it must say null, not break JSON."""
    model = small_champion()[0]
    payloads = crm_payloads(synthetic_tables())[:50]
    columns = payload_features([DealIn.model_validate(p) for p in payloads], AS_OF.to_pydatetime())
    for name in ("channel", "product", "industry", "region"):
        columns[name] = [pd.NA] * len(payloads)
    explained = Explainer(model).explain(columns)
    reasons = [r for e in explained for r in e["positive_reasons"] + e["negative_reasons"]]
    about = [r for r in reasons if r["feature"] in ("channel", "product", "industry", "region")]
    assert about, "no reason about a blank category: the test would prove nothing"
    assert all(r["value"] is None and "<NA>" not in r["text"] for r in about)
    json.dumps(reasons)  # pd.NA is not JSON: this raised before


@pytest.mark.parametrize("blank", ["", "   ", "\t"])
def test_a_blank_channel_or_product_is_scored_as_unknown_with_a_warning(blank: str):
    deals = [
        DealIn.model_validate(deal(channel=blank)),
        DealIn.model_validate(deal(product=blank, account={"industry": blank})),
    ]
    columns = payload_features(deals, AS_OF.to_pydatetime())
    assert columns["channel"][0] is None and columns["product"][1] is None
    assert columns["industry"][1] is None
    assert {"channel"} <= {w["field"] for w in input_warnings(deals[0])}
    assert {"product"} <= {w["field"] for w in input_warnings(deals[1])}


# ====================================================================== times out of range
OUT_OF_RANGE = ["0001-01-01T00:00:00+03:02", "9999-12-31T23:59:59-01:00"]


@pytest.mark.parametrize("when", [*OUT_OF_RANGE, "0001-01-01T00:00:00Z", "1969-12-31T23:59:59Z"])
@pytest.mark.parametrize(
    "field",
    [
        ("created_at",),
        ("closed_at",),
        ("contacts", 0, "added_at"),
        ("activities", 0, "occurred_at"),
        ("stage_history", 0, "entered_at"),
        ("activity_summary", "last_activity_at"),
    ],
)
def test_a_time_out_of_range_is_a_problem_naming_its_field(when: str, field: tuple[Any, ...]):
    lists = {
        "contacts": {"contact_id": "C1", "added_at": when},
        "activities": {"type": "call", "occurred_at": when},
        "stage_history": {"stage": "lead", "entered_at": when},
    }
    if field[0] in lists:
        body = deal(**{field[0]: [lists[field[0]]]})
    elif field[0] == "activity_summary":
        body = deal(activity_summary={"last_activity_at": when})
    else:
        body = deal(**{field[0]: when})
    request = ScoreRequest.model_validate({"deals": [body]})
    invalid = request.deals[0]
    assert isinstance(invalid, InvalidDeal)
    [problem] = invalid.problems
    assert tuple(problem.loc) == field
    expected = "out of range" if when in OUT_OF_RANGE else f"before {EARLIEST_TIME:%Y-%m-%d}"
    assert expected in problem.msg


@pytest.mark.parametrize("when", [*OUT_OF_RANGE, "0001-01-01T00:00:00Z"])
def test_an_as_of_out_of_range_fails_validation_naming_as_of(when: str):
    for model, body in (
        (ScoreRequest, {"deals": [deal()]}),
        (ScoreIdsRequest, {"deal_ids": ["D"]}),
    ):
        with pytest.raises(ValidationError) as exc:
            model.model_validate({**body, "as_of": when})
        assert [e["loc"] for e in exc.value.errors()] == [("as_of",)]


def test_1970_and_later_are_accepted():
    assert not isinstance(
        ScoreRequest.model_validate({"deals": [deal(created_at="1970-01-01T00:00:00Z")]}).deals[0],
        InvalidDeal,
    )


# ====================================================================== JSON types
@pytest.mark.parametrize(
    "changes, loc",
    [
        ({"amount": "24000"}, ("amount",)),
        ({"created_at": 1700000000}, ("created_at",)),
        ({"channel": 7}, ("channel",)),
        ({"account": {"employee_count": "350"}}, ("account", "employee_count")),
        ({"activities": [{"type": "call", "occurred_at": 0}]}, ("activities", 0, "occurred_at")),
        ({"activity_summary": {"act_call_7d": "2"}}, ("activity_summary", "act_call_7d")),
    ],
)
def test_a_value_of_another_json_type_than_the_spec_says_is_a_problem(
    changes: dict[str, Any], loc: tuple[Any, ...]
):
    invalid = ScoreRequest.model_validate({"deals": [deal(**changes)]}).deals[0]
    assert isinstance(invalid, InvalidDeal)
    assert [tuple(p.loc) for p in invalid.problems] == [loc]


@pytest.mark.parametrize("body", ['"amount": Infinity', '"amount": 1e400', '"amount": NaN'])
def test_a_number_json_cannot_hold_is_a_problem_on_its_field(body: str):
    """Python's JSON reader turns ``Infinity``, ``NaN`` and ``1e400`` into floats no
    JSON document can hold: the deal is refused on that field, never scored or echoed."""
    text = json.dumps({"deals": [deal(amount=24000)]}).replace('"amount": 24000', body)
    assert body in text
    invalid = ScoreRequest.model_validate(json.loads(text)).deals[0]
    assert isinstance(invalid, InvalidDeal)
    assert [tuple(p.loc) for p in invalid.problems] == [("amount",)]


def test_request_fields_take_their_documented_types_only():
    for body in (
        {"deals": [deal()], "all_or_nothing": 0},
        {"deals": [deal()], "as_of": 1700000000},
    ):
        with pytest.raises(ValidationError):
            ScoreRequest.model_validate(body)
    assert ScoreRequest.model_validate({"deals": [deal()], "as_of": None}).as_of is None
    assert ScoreRequest.model_validate({"deals": [deal(amount=24000)]}).deals[0].amount == 24000.0


# ====================================================================== the spec's answers
def minimal_spec() -> dict[str, Any]:
    """The shape of BentoML's spec object (status codes as ints) for the two endpoints."""
    scored = ScoreResponse.model_json_schema()
    operation = {
        "responses": {
            200: {"content": {"application/json": {"schema": scored}}},
            400: {"description": "Bad Request"},
        },
        "requestBody": {
            "content": {
                "application/json": {
                    "schema": {
                        "properties": {"as_of": {"type": "string", "default": None}},
                    }
                }
            }
        },
    }
    return {
        "paths": {
            "/score": {"post": json.loads(json.dumps(operation, default=str))},
            "/score_ids": {"post": json.loads(json.dumps(operation, default=str))},
            "/readyz": {"get": {"responses": {200: {"description": "ok"}}}},
        }
    }


def test_the_spec_documents_every_status_with_its_body():
    spec = document_responses(minimal_spec())
    for path in ("/score", "/score_ids"):
        operation = spec["paths"][path]["post"]
        assert {"200", "400", "401", "413", "415", "422", "503"} <= operation["responses"].keys()
        assert operation["security"] == [{"bearerAuth": []}]
        assert operation["requestBody"]["content"]["application/json"]["schema"]["properties"][
            "as_of"
        ]["nullable"]
    assert "503" in spec["paths"]["/readyz"]["get"]["responses"]
    body = spec["components"]["schemas"]["ErrorBody"]
    assert body["properties"]["detail"]["type"] == "array"  # BentoML documented a string
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    assert not re.findall(r"https?://", json.dumps(spec["info"]))


# ====================================================================== pages
def test_the_leads_page_sends_security_headers_even_before_a_ranking(tmp_path: Path):
    from starlette.testclient import TestClient

    from serving.leads_page import create_app
    from tests.conftest import isolated

    response = TestClient(create_app(isolated(tmp_path))).get("/")
    assert response.status_code == 503
    assert_secure(response.headers)


def assert_secure(headers: Any) -> None:
    policy = headers["content-security-policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert "http:" not in policy and "https:" not in policy and "*" not in policy
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"


def test_the_policy_allows_the_pages_inline_scripts_by_hash_and_nothing_else():
    import base64
    import hashlib

    from serving.leads_page import content_security_policy

    page = '<script>var a = 1;</script><script type="text/javascript">draw()</script><script src="x.js"></script>'
    policy = content_security_policy(page)
    for body in ("var a = 1;", "draw()"):
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in policy
    assert "unsafe-inline' " not in policy.split("script-src")[1].split(";")[0]


def test_the_index_page_replaces_bentomls_and_reaches_nothing_outside():
    from starlette.testclient import TestClient

    from serving.leads_page import create_index_app

    client = TestClient(create_index_app(lambda: {"openapi": "3.0.2"}))
    index = client.get("/")
    assert index.status_code == 200 and "swagger-ui" in index.text
    assert_secure(index.headers)
    assert not re.findall(r"(?:https?:)?//[^\s\"'<>]+", index.text)
    assert "googletagmanager" not in index.text
    script = client.get("/index.js")
    assert "validatorUrl: null" in script.text and not re.findall(r"https?://", script.text)
    assert client.get("/docs.json").json() == {"openapi": "3.0.2"}


# ====================================================================== serve's address
def test_serve_binds_loopback_by_default_and_says_so_in_help():
    import inspect

    from typer.testing import CliRunner

    from pipelines.cli import app
    from serving.package import serve

    assert inspect.signature(serve).parameters["host"].default == "127.0.0.1"
    result = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"})
    assert "127.0.0.1" in result.output and "0.0.0.0" in result.output


@pytest.mark.parametrize(
    "host, token, warned",
    [
        ("127.0.0.1", None, False),
        ("localhost", None, False),
        ("::1", None, False),
        ("0.0.0.0", None, True),
        ("192.0.2.10", None, True),
        ("my-host.example", None, True),
        ("0.0.0.0", "s3cret", False),
    ],
)
def test_serving_a_public_address_without_a_token_warns_loudly(
    host: str, token: str | None, warned: bool, monkeypatch, caplog
):
    import serving.package as package

    started: list[list[str]] = []
    monkeypatch.setattr(package, "packaged_champion", lambda settings, alias: _Packaged())
    monkeypatch.setattr(package, "packaged_revival", lambda settings, alias: None)
    monkeypatch.setattr(package.os, "execvpe", lambda cmd, args, env: started.append(args))
    if token:
        monkeypatch.setenv("LEADSCORE_API_TOKEN", token)
    else:
        monkeypatch.delenv("LEADSCORE_API_TOKEN", raising=False)
    with caplog.at_level(logging.WARNING, logger="serving.package"):
        package.serve(port=3999, host=host, settings=load_settings())
    args = started[0]
    assert args[args.index("--host") + 1] == host
    loud = [r for r in caplog.records if "WITHOUT AUTHENTICATION" in r.getMessage()]
    assert bool(loud) == warned


class _Packaged:
    tag = "lead_scorer:test"
    mlflow_version = "1"


def test_serve_passes_the_revival_tag_only_when_a_revival_model_is_packaged(monkeypatch):
    """A tag left in the shell never makes the service load a model that is not packaged."""
    from leadscore.config import MODEL_TAG_ENV, REVIVAL_MODEL_TAG_ENV
    from serving.package import _server_env

    monkeypatch.setenv(REVIVAL_MODEL_TAG_ENV, "lead_scorer_revival:stale")
    settings = load_settings()
    without = _server_env(settings, "lead_scorer:a")
    assert without[MODEL_TAG_ENV] == "lead_scorer:a" and REVIVAL_MODEL_TAG_ENV not in without
    with_revival = _server_env(settings, "lead_scorer:a", "lead_scorer_revival:b")
    assert with_revival[REVIVAL_MODEL_TAG_ENV] == "lead_scorer_revival:b"
    assert load_settings().revival_bento_model_tag == "lead_scorer_revival:stale"
    monkeypatch.delenv(REVIVAL_MODEL_TAG_ENV)
    assert load_settings().revival_bento_model_tag is None


def test_no_registered_revival_model_is_packaged_as_none(tmp_path: Path):
    from serving.package import package_revival, packaged_revival
    from tests.conftest import isolated

    settings = isolated(tmp_path)
    assert package_revival(settings) is None and packaged_revival(settings) is None
