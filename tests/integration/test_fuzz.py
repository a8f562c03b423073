"""The live service under hostile input: regressions of issue 15 over HTTP, then schemathesis.

A real ``leadscore serve`` (one worker, a bearer token, a small champion and a private
Feast store, as in ``test_service_http.py``) is fuzzed from its own ``/docs.json`` by
schemathesis' engine (the one its command line runs) with every check enabled: the
examples, coverage, fuzzing and stateful phases, positive and negative data, a fixed
seed and a bounded number of examples per operation. Every failure is listed with the
request that caused it; the number of cases run is printed.

Before the fuzzing, the defects issue 15 reproduced are checked on the same server: a
blank category in a 1,000-deal batch, times at the ends of the calendar, bodies that are
not JSON, the counter on /metrics, the spec's error answers, and the pages' headers.

Valid-by-schema requests may still be refused for what a JSON schema cannot say (a
time in the future, a deal created after ``as_of``, the same deal twice, a time before
1970): such a request is answered 400 (request-level) or 422 (every deal invalid), and
the positive-data check accepts those two statuses besides 2xx.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port
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

TOKEN = "fuzz-token"
#: Examples per operation and phase; with the fixed seed the run takes about a minute here.
MAX_EXAMPLES = 80
SEED = 15


@dataclass
class Live:
    url: str
    payloads: list[dict[str, Any]]  # deals as a CRM sends them

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {TOKEN}", **kwargs.pop("headers", {})}
        return httpx.post(f"{self.url}{path}", headers=headers, timeout=120, **kwargs)


@pytest.fixture(scope="module")
def live(server: str) -> Live:
    return Live(server, crm_payloads(synthetic_tables())[:200])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings, env = serving_environment(tmp_path_factory.mktemp("fuzz"))
    with pytest.MonkeyPatch.context() as patch:
        for k, v in env.items():
            patch.setenv(k, v)
        tables = synthetic_tables()
        model, frame = small_champion()
        prepare_champion(settings, tables, model, frame, sorted(tables["deals"]["deal_id"])[:50])
    leadscore = str(Path(sys.executable).with_name("leadscore"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    environment = {
        **os.environ,
        **env,
        "LEADSCORE_API_TOKEN": TOKEN,
        "BENTOML_CONFIG_OPTIONS": "services.lead_scorer.workers=1",
    }
    cmd = [leadscore, "serve", "--port", str(port)]
    with running_server(cmd, environment, f"{url}/readyz", timeout=180):
        yield url


# ====================================================================== issue 15, over HTTP
def test_the_deals_counter_is_on_metrics_from_the_start_and_counts(live: Live):
    """prometheus_client's labelled counter showed nothing until its first deal."""
    before = _deals_metric(live.url)
    assert before.keys() == {
        ("score", "scored"),
        ("score", "rejected"),
        ("score_ids", "scored"),
        ("score_ids", "rejected"),
    }
    body = {"deals": live.payloads[:3], "as_of": AS_OF.isoformat()}
    assert live.post("/score", json=body).status_code == 200
    after = _deals_metric(live.url)
    assert after[("score", "scored")] == before[("score", "scored")] + 3


def _deals_metric(url: str) -> dict[tuple[str, str], float]:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    found = re.findall(
        r'^leadscore_deals_total\{endpoint="(\w+)",outcome="(\w+)"\} ([0-9.e+]+)$', text, re.M
    )
    return {(e, o): float(v) for e, o, v in found}


def test_blank_categories_in_a_1000_deal_batch_are_scored_as_unknown(live: Live):
    deals = [{**p, "deal_id": f"{k}-{p['deal_id']}"} for k in range(5) for p in live.payloads][
        :1000
    ]
    for i, d in enumerate(deals):
        if i % 10 == 0:
            d["channel"] = ""
        elif i % 10 == 1:
            d["product"] = "   "
        elif i % 10 == 2:
            d["account"] = {**(d["account"] or {}), "industry": " ", "region": ""}
    response = live.post("/score", json={"deals": deals, "as_of": AS_OF.isoformat()})
    assert response.status_code == 200, response.text[:300]
    results = response.json()["results"]
    assert len(results) == 1000 and not response.json()["errors"]
    blank = [
        r
        for res in results
        for r in res["positive_reasons"] + res["negative_reasons"]
        if r["feature"] in ("channel", "product", "industry", "region") and r["value"] is None
    ]
    assert blank, "no reason about a blank category: the batch would not have failed before"
    assert all("not recorded" in r["text"] or "unknown" in r["text"].lower() for r in blank)


@pytest.mark.parametrize("when", ["0001-01-01T00:00:00+03:02", "9999-12-31T23:59:59-01:00"])
def test_times_at_the_ends_of_the_calendar_are_problems_not_server_errors(live: Live, when: str):
    good = live.payloads[0]
    bad = [
        {**good, "deal_id": "BAD-CREATED", "created_at": when},
        {**good, "deal_id": "BAD-ACTIVITY", "activities": [{"type": "call", "occurred_at": when}]},
        {**good, "deal_id": "BAD-STAGE", "stage_history": [{"stage": "lead", "entered_at": when}]},
    ]
    response = live.post("/score", json={"deals": [good, *bad], "as_of": AS_OF.isoformat()})
    assert response.status_code == 200
    body = response.json()
    assert [r["deal_id"] for r in body["results"]] == [good["deal_id"]]
    located = {e["deal_id"]: [p["loc"] for p in e["problems"]] for e in body["errors"]}
    assert located == {
        "BAD-CREATED": [["deals", 1, "created_at"]],
        "BAD-ACTIVITY": [["deals", 2, "activities", 0, "occurred_at"]],
        "BAD-STAGE": [["deals", 3, "stage_history", 0, "entered_at"]],
    }
    only_bad = live.post("/score", json={"deals": bad[:1]})
    assert only_bad.status_code == 422
    for path, body in (("/score", {"deals": [good]}), ("/score_ids", {"deal_ids": ["D1"]})):
        response = live.post(path, json={**body, "as_of": when})
        assert response.status_code == 400
        assert [d["loc"] for d in response.json()["detail"]] == [["as_of"]]


def test_a_year_one_creation_time_is_rejected_not_scored(live: Live):
    deal = {**live.payloads[0], "created_at": "0001-01-01T00:00:00Z"}
    response = live.post("/score", json={"deals": [deal]})
    assert response.status_code == 422
    assert "before 1970-01-01" in response.json()["errors"][0]["problems"][0]["msg"]


@pytest.mark.parametrize(
    "content_type",
    [
        "multipart/form-data",
        "multipart/form-data; boundary=xyz",
        "application/x-www-form-urlencoded",
        "text/plain",
        "application/xml",
    ],
)
def test_a_body_that_is_not_json_gets_415(live: Live, content_type: str):
    for path in ("/score", "/score_ids"):
        response = live.post(path, content=b"deals=1", headers={"Content-Type": content_type})
        assert response.status_code == 415, (path, response.text)
        assert response.json()["detail"][0]["loc"] == ["header", "Content-Type"]


def test_the_spec_documents_the_error_answers(live: Live):
    spec = httpx.get(f"{live.url}/docs.json", timeout=30).json()
    for path in ("/score", "/score_ids"):
        responses = spec["paths"][path]["post"]["responses"]
        assert {"200", "400", "401", "413", "415", "422", "503"} <= responses.keys()
        assert responses["400"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorBody"
        }
    assert not re.findall(r"https?://", json.dumps(spec["info"]))  # shown on the page at /
    detail = spec["components"]["schemas"]["ErrorBody"]["properties"]["detail"]
    assert detail["type"] == "array"
    # What the spec says is what a refusal looks like.
    refused = live.post("/score", json={"deals": "not a list"}).json()
    assert isinstance(refused["detail"], list) and refused["detail"][0]["loc"] == ["deals"]


@pytest.mark.parametrize("path", ["/", "/leads/"])
def test_pages_send_security_headers_and_reference_nothing_outside(live: Live, path: str):
    response = httpx.get(
        f"{live.url}{path}", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60
    )
    assert response.status_code in (200, 503)
    headers = response.headers
    policy = headers["content-security-policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert not re.search(r"https?:|\*", policy)
    assert headers["x-frame-options"] == "DENY"
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "no-referrer"
    assert not re.findall(r"(?:https?:)?//[\w.-]+", response.text), path
    assert "googletagmanager" not in response.text


# ====================================================================== schemathesis
def _config(url: str) -> Any:
    import schemathesis

    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            # No state kept between runs (.schemathesis/): each run is the same run.
            "cache": {"enabled": False},
            "base-url": url,
            "headers": {"Authorization": f"Bearer {TOKEN}"},
            "request-timeout": 30,
            # Every failure, not only each operation's first.
            "continue-on-failure": True,
            "generation": {
                "mode": "all",
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
            },
            "phases": {"enabled": True},
            "checks": {
                "enabled": True,
                # Schema-valid but semantically refused (see the module's docstring).
                "positive_data_acceptance": {"expected-statuses": ["2xx", "400", "401", "422"]},
            },
        }
    )


def _describe(recorder: Any, case_id: str, check: Any) -> str:
    interaction = recorder.interactions.get(case_id)
    request = response = ""
    if interaction is not None:
        request = f"{interaction.request.method} {interaction.request.uri}"
        body = interaction.request.body or b""
        request += f" body={body[:300]!r}"
        if interaction.response is not None:
            response = (
                f" -> {interaction.response.status_code} "
                f"{(interaction.response.content or b'')[:300]!r}"
            )
    info = check.failure_info
    failure = info.failure if info is not None else None
    title = getattr(failure, "title", "") if failure is not None else ""
    message = getattr(failure, "message", "") if failure is not None else ""
    return f"[{check.name}] {title}: {message.strip()[:400]}\n    {request}{response}"


def test_schemathesis_finds_no_server_error_and_no_undocumented_answer(
    server: str, capsys: pytest.CaptureFixture[str]
):
    import schemathesis
    from schemathesis.engine import Status, events, from_schema

    schema = schemathesis.openapi.from_url(f"{server}/docs.json", config=_config(server))
    cases = 0
    statuses: dict[int, int] = {}
    failures: list[str] = []
    errors: list[str] = []
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished | events.FuzzScenarioFinished):
            recorder = event.recorder
            cases += len(recorder.cases)
            for interaction in recorder.interactions.values():
                if interaction.response is not None:
                    code = interaction.response.status_code
                    statuses[code] = statuses.get(code, 0) + 1
            for case_id, checks in recorder.checks.items():
                failures += [
                    _describe(recorder, case_id, c) for c in checks if c.status == Status.FAILURE
                ]
        elif isinstance(event, events.NonFatalError):
            errors.append(f"{event.label}: {event.info.message}")
        elif isinstance(event, events.FatalError):
            errors.append(f"fatal: {event.exception!r}")

    summary = (
        f"schemathesis {schemathesis.__version__}: {cases} cases, seed {SEED}, "
        f"{MAX_EXAMPLES} examples per operation and phase; statuses {dict(sorted(statuses.items()))}; "
        f"{len(failures)} failed checks"
    )
    with capsys.disabled():  # shown in CI's log, passed or not
        print(f"\n{summary}")
    server_errors = {code: n for code, n in statuses.items() if code >= 500 and code != 503}
    unique = sorted(set(failures))
    assert not unique, f"{summary}\n" + "\n".join(unique[:40])
    assert not errors, "\n".join(errors)
    assert not server_errors, summary
    assert cases > 500, summary
