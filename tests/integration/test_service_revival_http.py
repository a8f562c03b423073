"""The revival model served over HTTP (issue 12), through the real parts.

A win champion and a revival champion are registered in a private MLflow store,
``leadscore package`` imports both into BentoML, a private Feast repo is filled with the
deals of a few accounts of a synthetic CRM with revival, and ``leadscore serve`` starts the
service, which must load the revival model because a revival champion is packaged. A lost
deal asked for revival by id then gets the revival model's probability on the online
store's ``revival_v1`` features (``deal_revival`` materialized, ``revival_timing``
computed online), equal to the model on the in-memory features at the same moment.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from leadscore.config import REVIVAL_FEATURE_SERVICE
from leadscore.features.catalog import revival_catalog
from leadscore.features.featurize import (
    build_feature_sources,
    features_as_of,
    model_frame,
    scoring_entities,
)
from pipelines.cli import app
from serving.revival import SENT_IN_FULL
from tests.conftest import free_port
from tests.serving_fixture import (
    REVIVAL_AS_OF,
    crm_payloads,
    register_champion,
    revival_tables,
    running_server,
    serving_environment,
    small_champion,
    small_revival,
)

pytestmark = pytest.mark.integration

TOKEN = "s3cret"
#: Lost deals scored; the store holds every deal of their accounts.
LOST_DEALS = 12


@dataclass
class RevivalServer:
    url: str
    lost: list[str]
    won: str
    expected: np.ndarray  # the revival model on the in-memory features of ``lost``
    package_output: str
    payload: dict[str, object]  # the first lost deal as a CRM exports it


def features_at(tables: dict[str, pd.DataFrame], as_of: pd.Timestamp) -> pd.DataFrame:
    return features_as_of(build_feature_sources(tables), scoring_entities(tables["deals"], as_of))


@pytest.fixture(scope="module")
def revival_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RevivalServer]:
    from leadscore.features.featurize import write_sources
    from leadscore.features.store import apply_repo, materialize

    settings, env = serving_environment(tmp_path_factory.mktemp("revival_serving"))
    patch = pytest.MonkeyPatch()
    for k, v in env.items():
        patch.setenv(k, v)
    full = revival_tables()
    deals = full["deals"]  # the export's statuses are those at its end, REVIVAL_AS_OF
    lost = deals.loc[(deals["status"] == "lost") & deals["closed_at"].notna(), "deal_id"].head(
        LOST_DEALS
    )
    lost = lost.tolist()
    won = deals.loc[deals["status"] == "won", "deal_id"].iloc[0]
    accounts = set(full["deals"].set_index("deal_id").loc[[*lost, won], "account_id"])
    kept = set(full["deals"].loc[full["deals"]["account_id"].isin(accounts), "deal_id"])
    tables = {k: (v[v["deal_id"].isin(kept)] if "deal_id" in v else v) for k, v in full.items()}

    win, frame = small_champion()
    register_champion(win, frame, settings)
    revival, revival_frame = small_revival()
    named = replace(settings, model_name=settings.revival_model_name)
    register_champion(revival, revival_frame, named, REVIVAL_FEATURE_SERVICE)
    packaged = CliRunner().invoke(app, ["package"])
    assert packaged.exit_code == 0, packaged.output

    write_sources(build_feature_sources(tables), settings.sources_dir)
    apply_repo(settings)
    materialize(settings, REVIVAL_AS_OF.to_pydatetime())
    mine = features_at(tables, REVIVAL_AS_OF).set_index("deal_id").loc[lost].reset_index()
    expected = revival.probability(revival.encode(model_frame(mine, catalog=revival_catalog())))

    leadscore = str(Path(sys.executable).with_name("leadscore"))
    server_env = {
        **os.environ,
        **env,
        "LEADSCORE_API_TOKEN": TOKEN,
        "BENTOML_CONFIG_OPTIONS": "services.lead_scorer.workers=1",
    }
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [leadscore, "serve", "--port", str(port), "--host", "127.0.0.1"]
    payload = crm_payloads(tables, [lost[0]], as_exported=True)[0]
    with running_server(cmd, server_env, f"{url}/readyz", timeout=120):
        yield RevivalServer(url, lost, won, expected, packaged.output, payload)
    patch.undo()


def test_package_imports_the_revival_champion_beside_the_win_model(revival_server):
    out = revival_server.package_output
    assert "models:/lead_scorer@champion" in out
    assert "models:/lead_scorer_revival@champion" in out and "feature service revival_v1" in out


def test_a_lost_deal_asked_for_revival_gets_the_revival_models_probability(revival_server):
    auth = {"Authorization": f"Bearer {TOKEN}"}
    s = revival_server
    body = {
        "deal_ids": [s.won, *s.lost],
        "as_of": REVIVAL_AS_OF.isoformat(),
        "revival": True,
    }
    answer = httpx.post(f"{s.url}/score_ids", json=body, headers=auth, timeout=30)
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert not answer.json()["errors"]
    assert results[0]["status"] == "won" and "probability" not in results[0]
    lost = results[1:]
    assert [r["deal_id"] for r in lost] == s.lost
    assert all(r["status"] == "lost" for r in lost)
    assert np.allclose([r["probability"] for r in lost], s.expected, atol=1e-9)
    assert lost[0]["meaning"] == "chance of a win within 12 months if re-engaged now"
    assert lost[0]["model_name"] == "lead_scorer_revival" and lost[0]["model_version"] == "1"
    # Without revival the same deals are refused, as before.
    plain = httpx.post(f"{s.url}/score_ids", json={**body, "revival": False}, headers=auth)
    assert len(plain.json()["errors"]) == len(s.lost)
    # Sent in full: an error naming /score_ids.
    full = httpx.post(
        f"{s.url}/score",
        json={"deals": [s.payload], "as_of": REVIVAL_AS_OF.isoformat(), "revival": True},
        headers=auth,
        timeout=30,
    )
    assert full.status_code == 422
    assert full.json()["errors"][0]["problems"][0]["msg"] == SENT_IN_FULL
    facts = httpx.get(f"{s.url}/model", timeout=30).json()
    assert facts["revival"]["model_name"] == "lead_scorer_revival"
    assert facts["revival"]["model_version"] == "1"
