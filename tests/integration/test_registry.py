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
from tests.crm_fixture import with_interaction_signal
from training.data import in_memory_frame
from training.registry import (
    Rollback,
    Tolerance,
    ensure_experiment,
    list_versions,
    promote,
    rollback,
)
from training.result import TrainConfig, TrainingResult
from training.train import fit_and_evaluate, log_training_run

pytestmark = pytest.mark.integration

AS_OF = pd.Timestamp("2025-06-30", tz="UTC")
SERVICE = "lead_scoring_v1"
POSTGRES = "postgresql://postgres@localhost:5432"


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """A small CRM with a signal trees see and the baselines cannot: its model passes the
    baseline gate, as a real champion must."""
    return with_interaction_signal(in_memory_frame(generate_crm(1500, seed=21, as_of=AS_OF).tables))


@pytest.fixture(scope="module")
def good(frame) -> TrainingResult:
    return fit_and_evaluate(frame, SERVICE, TrainConfig(seed=1))


@pytest.fixture(scope="module")
def worse(frame) -> TrainingResult:
    """One stump: clearly worse on the same test slice, still monotone."""
    return fit_and_evaluate(frame, SERVICE, TrainConfig(seed=1, num_boost_round=1, num_leaves=2))


@pytest.fixture(scope="module")
def useless(frame) -> TrainingResult:
    """Trained on shuffled outcomes: it behaves (monotone) and knows nothing."""
    deals = frame.drop_duplicates("deal_id")
    shuffled = np.random.default_rng(0).permutation(deals["won"].to_numpy())
    labels = dict(zip(deals["deal_id"], shuffled, strict=True))
    return fit_and_evaluate(
        frame.assign(won=frame["deal_id"].map(labels)), SERVICE, TrainConfig(seed=1)
    )


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


def test_register_promote_and_roll_back(registry_settings: Settings, good, worse, useless, frame):
    s = registry_settings
    client = mlflow_client(s)
    name = s.model_name
    test_rows = good.frame[good.masks["test"]]

    # The first version passes its behaviour checks and the baseline gate: champion.
    assert good.evaluation["gate"]["passed"], good.evaluation["gate"]["sentence"]
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

    # A challenger trained on shuffled outcomes is refused by the baseline gate, with the
    # figures, even with tolerances that would let anything past the champion check.
    v_useless = log_training_run(s, useless)["model_version"]
    gated = promote(s, frame, tolerance=Tolerance(max_auc_drop=1.0, max_log_loss_rise=10.0))
    assert not gated.promoted and not gated.baseline_gate["passed"]
    assert [
        r for r in gated.reasons if r.startswith("not better than baseline: ROC AUC at 30 days")
    ]
    assert alias_version(client, name, CHAMPION) == v1
    assert "promotion.refused_at" in client.get_model_version(name, v_useless).tags

    # Forcing promotes and leaves a record.
    forced = promote(s, frame, version=v2, force=True, note="incident 42")
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

    # A test slice of one outcome ranks nothing: no comparison with the champion is made
    # up, and promotion waits for --force with the reason.
    v_again = log_training_run(s, good)["model_version"]
    test_deals = set(good.frame.loc[good.masks["test"], "deal_id"])
    one_sided = frame.assign(won=np.where(frame["deal_id"].isin(test_deals), 1, frame["won"]))
    blind = promote(s, one_sided)
    assert not blind.promoted and blind.challenger == v_again
    assert any(
        r.startswith("no comparison with the champion: the challenger's test slice holds")
        for r in blind.reasons
    )
    assert alias_version(client, name, CHAMPION) == v1

    listed = {v["version"]: v for v in list_versions(s)}
    assert list(listed) == [v_again, v3, v_useless, v2, v1]
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
    for baseline in ("logistic_regression", "channel_rate", "stage_fallback"):
        assert {"roc_auc", "log_loss"} <= set(summary["baselines"][baseline])
    assert summary["data"]["feature_service"] == SERVICE
    # 800 synthetic deals cannot show a margin over logistic regression: the first version
    # fails the baseline gate, so it is registered but nothing becomes champion.
    gate = summary["gate"]
    assert not gate["passed"] and gate["sentence"].startswith("not better than baseline: ")
    assert summary["model_version"] == "1" and summary["aliases"] == [CHALLENGER]

    listed = runner.invoke(app, ["models", "--json"])
    assert json.loads(listed.stdout)[0]["aliases"] == [CHALLENGER]
    refused = runner.invoke(app, ["promote"])
    assert refused.exit_code == 1, refused.output
    assert (
        f"gate: {gate['sentence']}" in refused.output and "version 1 NOT promoted" in refused.output
    )
    forced = runner.invoke(app, ["promote", "--force", "--note", "pilot, labelled"])
    assert forced.exit_code == 0, forced.output
    assert "version 1 promoted (forced)" in forced.output
    assert "warning: model not better than baseline" in forced.output
    again = runner.invoke(app, ["promote"])
    assert again.exit_code == 1 and "no 'challenger' version" in again.output
