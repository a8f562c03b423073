"""The MLflow registry for real: register, load, promote (refused, forced, passed), roll back.

Runs on SQLite (the default) and on PostgreSQL, the production backend, selected by
the tracking URI alone; each PostgreSQL test gets a throwaway database. The models are
trained once per module without Feast; one test drives the CLI through Feast.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg2
import pytest
from typer.testing import CliRunner

from leadscore.config import CHALLENGER, CHAMPION, Settings
from leadscore.crm.synth import generate_crm, write_export
from leadscore.model.registry import (
    RegistryError,
    alias_version,
    load_scoring_model,
    mlflow_client,
)
from pipelines.cli import app
from tests.conftest import isolated, require_service
from training.data import in_memory_frame
from training.registry import Rollback, ensure_experiment, list_versions, promote, rollback
from training.result import TrainConfig, TrainingResult
from training.train import fit_and_evaluate, log_training_run

pytestmark = pytest.mark.integration

AS_OF = pd.Timestamp("2025-06-30", tz="UTC")
SERVICE = "lead_scoring_v1"
POSTGRES = "postgresql://postgres@localhost:5432"


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return in_memory_frame(generate_crm(1500, seed=21, as_of=AS_OF).tables)


@pytest.fixture(scope="module")
def good(frame) -> TrainingResult:
    return fit_and_evaluate(frame, SERVICE, TrainConfig(seed=1))


@pytest.fixture(scope="module")
def worse(frame) -> TrainingResult:
    """One stump: clearly worse on the same test slice, still monotone."""
    return fit_and_evaluate(frame, SERVICE, TrainConfig(seed=1, num_boost_round=1, num_leaves=2))


@pytest.fixture
def postgres_settings(isolated_settings: Settings) -> Iterator[Settings]:
    require_service("PostgreSQL", 5432)
    name = f"leadscore_test_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(f"{POSTGRES}/test")
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        yield dataclasses.replace(isolated_settings, tracking_uri=f"{POSTGRES}/{name}")
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.close()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def registry_settings(request) -> Settings:
    return request.getfixturevalue(
        "isolated_settings" if request.param == "sqlite" else "postgres_settings"
    )


def test_register_promote_and_roll_back(registry_settings: Settings, good, worse, frame):
    s = registry_settings
    client = mlflow_client(s)
    name = s.model_name
    test_rows = good.frame[good.masks["test"]]

    # The first version passes its behaviour checks and becomes champion.
    first = log_training_run(s, good)
    v1 = first["model_version"]
    assert first["aliases"] == [CHAMPION]
    loaded = load_scoring_model(f"models:/{name}@{CHAMPION}", s)
    X = good.model.encode(test_rows)
    assert np.allclose(loaded.probability(X), good.model.probability(X))
    assert (
        loaded.categories == good.model.categories
        and loaded.reason_stats == good.model.reason_stats
    )
    tags = client.get_model_version(name, v1).tags
    assert tags["feast.feature_service"] == SERVICE
    assert tags["data.fingerprint"] == good.model.info["fingerprint"]
    assert {"data.window_start", "data.window_end", "git.commit"} <= set(tags)
    assert any(Path(s.artifact_root).rglob("MLmodel")), "artifacts belong under the artifact root"

    # A worse challenger is refused; champion stays.
    v2 = log_training_run(s, worse)["model_version"]
    assert alias_version(client, name, CHALLENGER) == v2
    refused = promote(s, frame)
    assert not refused.promoted
    assert any("ROC AUC" in r and "below the champion" in r for r in refused.reasons)
    assert alias_version(client, name, CHAMPION) == v1

    # Forcing promotes and leaves a record.
    forced = promote(s, frame, force=True, note="incident 42")
    assert forced.promoted and forced.forced
    assert alias_version(client, name, CHAMPION) == v2
    tags = client.get_model_version(name, v2).tags
    assert tags["promotion.forced"] == "true" and tags["promotion.note"] == "incident 42"

    # Rollback restores the previous champion, and only once.
    assert rollback(s, "forced one was worse") == Rollback(v2, v1)
    assert alias_version(client, name, CHAMPION) == v1
    with pytest.raises(RegistryError, match="no previous champion"):
        rollback(s)

    # A challenger as good as the champion passes the gate on its own.
    v3 = log_training_run(s, good)["model_version"]
    passed = promote(s, frame)
    assert passed.promoted and not passed.forced and passed.reasons == []
    assert alias_version(client, name, CHAMPION) == v3
    assert rollback(s) == Rollback(v3, v1)

    listed = {v["version"]: v for v in list_versions(s)}
    assert list(listed) == [v3, v2, v1]
    assert listed[v1]["aliases"] == [CHAMPION]
    assert listed[v1]["metrics"]["test.roc_auc"] == pytest.approx(
        good.evaluation["test"]["roc_auc"]
    )


def test_cli_trains_through_feast_and_prints_pure_json(tmp_path: Path, monkeypatch):
    settings = isolated(tmp_path)
    crm = generate_crm(800, seed=3, as_of=AS_OF)
    write_export(crm, tmp_path / "export")
    monkeypatch.setenv("LEADSCORE_FEATURE_REPO", str(settings.feature_repo))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", settings.tracking_uri)
    # The CLI takes the artifact root from the experiment; keep it under tmp_path.
    ensure_experiment(settings, mlflow_client(settings))
    runner = CliRunner()
    for args in (["ingest", str(tmp_path / "export")], ["features", "apply"]):
        out = runner.invoke(app, args)
        assert out.exit_code == 0, out.output

    out = runner.invoke(
        app, ["train", "--json", "--truth", str(tmp_path / "export" / "truth.parquet")]
    )
    assert out.exit_code == 0, out.output
    summary = json.loads(out.stdout)
    keys = {"roc_auc", "pr_auc", "log_loss", "brier", "ece", "lift_at_10"}
    assert keys <= set(summary["test"])
    assert keys <= set(summary["at_creation"]["model"]) and keys <= set(
        summary["at_creation"]["oracle"]
    )
    for baseline in ("logistic_regression", "channel_rate"):
        assert {"roc_auc", "log_loss"} <= set(summary["baselines"][baseline])
    assert summary["model_version"] == "1" and summary["aliases"] == [CHAMPION]
    assert summary["data"]["feature_service"] == SERVICE

    listed = runner.invoke(app, ["models", "--json"])
    assert json.loads(listed.stdout)[0]["aliases"] == [CHAMPION]
    refused = runner.invoke(app, ["promote"])
    assert refused.exit_code == 1 and "no 'challenger' version" in refused.output
