"""The fallback served over HTTP when no model is trained yet (issue 16), through the real parts.

A small synthetic CRM is ingested (stored tables, Feast online store) into private stores
with nothing registered in MLflow; ``leadscore package`` then packages the fallback fitted
on the stored CRM as ``lead_scorer_fallback`` and ``leadscore serve`` starts the service
on it. Every open deal is answered with the fallback's own probability (the same as
:class:`~leadscore.model.fallback.StageFallback` on the deal's stage and channel), its
reasons, a ``model`` label and a warning; ``GET /model`` says the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from leadscore.config import MIN_CLASS_DEALS
from leadscore.crm.synth import generate_crm
from leadscore.features.featurize import (
    build_feature_sources,
    features_as_of,
    model_frame,
    scoring_entities,
)
from leadscore.model.fallback import StageFallback
from leadscore.priority.rank import stored_fallback
from pipelines.cli import app
from tests.conftest import ingested_synthetic
from tests.serving_fixture import crm_payloads, leadscore_serve, serving_environment

pytestmark = pytest.mark.integration

AS_OF = pd.Timestamp("2025-06-30", tz="UTC")
#: Open deals asked for by id.
OPEN_DEALS = 8


@dataclass
class FallbackServer:
    url: str
    fallback: StageFallback
    open_ids: list[str]
    expected: np.ndarray  # the fallback on the stored features of ``open_ids`` at AS_OF
    package_output: str
    payload: dict[str, object]  # the first open deal, sent in full


@pytest.fixture(scope="module")
def fallback_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FallbackServer]:
    from leadscore.features.store import apply_repo, materialize

    root = tmp_path_factory.mktemp("fallback_serving")
    settings, env = serving_environment(root)
    patch = pytest.MonkeyPatch()
    for k, v in env.items():
        patch.setenv(k, v)
    crm = generate_crm(300, seed=3, as_of=AS_OF)
    ingested_synthetic(root, crm)
    apply_repo(settings)
    materialize(settings, AS_OF.to_pydatetime())
    packaged = CliRunner().invoke(app, ["package"])
    assert packaged.exit_code == 0, packaged.output

    tables = crm.tables
    fallback = stored_fallback(settings.crm_dir)
    deals = tables["deals"]
    open_ids = deals.loc[deals["status"] == "open", "deal_id"].head(OPEN_DEALS).tolist()
    features = features_as_of(build_feature_sources(tables), scoring_entities(deals, AS_OF))
    mine = model_frame(features.set_index("deal_id").loc[open_ids].reset_index())
    expected = fallback.predict(mine["stage_index"].to_numpy(), mine["channel"].to_numpy())

    payload = crm_payloads(tables, [open_ids[0]], as_exported=True)[0]
    # A busy CI machine can be slower than the online store's production deadline, 0.3 s.
    with leadscore_serve(env, LEADSCORE_STORE_TIMEOUT_SECONDS="30") as url:
        yield FallbackServer(url, fallback, open_ids, expected, packaged.output, payload)
    patch.undo()


def test_package_without_a_champion_packages_the_fallback(fallback_server):
    out = fallback_server.package_output
    assert "No champion: packaged the fallback" in out
    assert "lead_scorer_fallback:" in out
    assert fallback_server.fallback.name in out


def _assert_labelled(result: dict, fallback: StageFallback) -> None:
    assert result["model"] == fallback.name
    assert result["model_version"] == "fallback"
    messages = [w["message"] for w in result["warnings"]]
    assert any(
        "rough prior" in m and f"from {MIN_CLASS_DEALS} won and {MIN_CLASS_DEALS} lost" in m
        for m in messages
    ), messages
    reasons = result["positive_reasons"] + result["negative_reasons"]
    assert "stage_index" in {r["feature"] for r in reasons}


def test_score_ids_answers_each_open_deal_with_the_labelled_fallback(fallback_server):
    s = fallback_server
    r = httpx.post(
        f"{s.url}/score_ids",
        json={"deal_ids": s.open_ids, "as_of": AS_OF.isoformat()},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["errors"] == [] and body["model_version"] == "fallback"
    got = np.array([res["probability"] for res in body["results"]])
    np.testing.assert_allclose(got, s.expected, rtol=1e-9)
    for res in body["results"]:
        _assert_labelled(res, s.fallback)
        assert res["score"] == round(100 * res["probability"])


def test_score_answers_a_deal_sent_in_full_with_the_labelled_fallback(fallback_server):
    s = fallback_server
    r = httpx.post(
        f"{s.url}/score", json={"deals": [s.payload], "as_of": AS_OF.isoformat()}, timeout=60
    )
    assert r.status_code == 200, r.text
    (res,) = r.json()["results"]
    _assert_labelled(res, s.fallback)
    assert res["probability"] == pytest.approx(s.expected[0], rel=1e-9)


def test_get_model_says_the_fallback_is_served_and_when_a_model_takes_over(fallback_server):
    s = fallback_server
    facts = httpx.get(f"{s.url}/model", timeout=30).json()
    assert facts["model_name"] == "lead_scorer_fallback"
    assert facts["model_version"] == "fallback"
    assert facts["quality"] is None
    assert facts["fallback"]["model"] == s.fallback.name
    assert facts["fallback"]["min_class_deals"] == MIN_CLASS_DEALS
    assert facts["fallback"]["closed_deals"] == s.fallback.closed_deals
    assert "rough prior" in facts["warning"]
