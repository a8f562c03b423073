"""The revival model through the real parts: Feast's ``revival_v1`` and MLflow's registry.

A synthetic CRM with revival simulated over four years is exported, ingested and applied
as a user does; the Feast training frame must equal the in-memory definition value for
value, and ``leadscore train-revival`` must register ``lead_scorer_revival`` beside (not
over) the win model, with the per-loss backtest against the oracle.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from leadscore.config import CHALLENGER, load_settings
from leadscore.crm.ingest import load_stored
from leadscore.crm.synth import REVIVAL_HISTORY_DAYS, generate_crm, write_export
from leadscore.features.store import revival_training_frame
from leadscore.model.registry import mlflow_client
from pipelines.cli import app
from tests.conftest import environment
from training.revival import (
    as_loss_frame,
    in_memory_revival_frame,
    revival_entities,
    stored_as_of,
)

pytestmark = pytest.mark.integration

AS_OF = pd.Timestamp("2025-06-30", tz="UTC")


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("revival")
    crm = generate_crm(2500, seed=5, as_of=AS_OF, revival=True, history_days=REVIVAL_HISTORY_DAYS)
    write_export(crm, root / "export")
    env = environment(root)
    with pytest.MonkeyPatch.context() as patch:
        for k, v in env.items():
            patch.setenv(k, v)
        runner = CliRunner()
        for args in (["ingest", str(root / "export")], ["features", "apply"]):
            out = runner.invoke(app, args)
            assert out.exit_code == 0, out.output
        yield root, crm, load_settings(), runner


def test_the_feast_revival_frame_equals_the_in_memory_definition(applied):
    _, crm, settings, _ = applied
    tables = load_stored(settings.crm_dir)
    as_of = stored_as_of(settings)
    entities, counts = revival_entities(
        tables, as_of, settings.revival_window_days, settings.revival_horizon_days
    )
    assert counts["positive"] > 0 and counts["censored"] > 0
    from_store = as_loss_frame(revival_training_frame(settings, entities).frame)
    in_memory, _ = in_memory_revival_frame(
        tables, as_of, settings.revival_window_days, settings.revival_horizon_days
    )
    pd.testing.assert_frame_equal(from_store, in_memory, check_dtype=False)


def test_train_revival_registers_its_own_model_with_the_backtest(applied):
    root, _, settings, runner = applied
    out = runner.invoke(
        app,
        ["train-revival", "--json", "--truth", str(root / "export" / "revival_truth.parquet")],
    )
    assert out.exit_code == 0, out.output
    summary = json.loads(out.stdout)
    assert summary["model_name"] == "lead_scorer_revival" == settings.revival_model_name
    assert summary["model_version"] == "1" and CHALLENGER in summary["aliases"]
    assert summary["data"]["feature_service"] == "revival_v1"
    predictors = {(r["moment"], r["predictor"]) for r in summary["backtest"]}
    for moment in ("a week after the loss", "at 97 days after the loss"):
        for name in ("model", "logistic_regression", "reason_time_rate", "oracle"):
            assert (moment, name) in predictors
    # The win model's registry is untouched: the revival model has its own name.
    client = mlflow_client(settings)
    names = {m.name for m in client.search_registered_models()}
    assert names == {"lead_scorer_revival"}
    version = client.get_model_version("lead_scorer_revival", "1")
    assert version.tags["feast.feature_service"] == "revival_v1"
