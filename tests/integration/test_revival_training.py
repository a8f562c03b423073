"""The revival model through the real parts: Feast's ``revival_v1`` and MLflow's registry.

A synthetic CRM with revival simulated over four years is exported, ingested and applied
as a user does; the Feast training frame must equal the in-memory definition value for
value, and ``leadscore train-revival`` must register ``lead_scorer_revival`` beside (not
over) the win model, with the per-loss backtest against the oracle; ``promote``,
``rollback`` and ``models`` take ``--task revival`` and move only the revival model.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from leadscore.config import CHALLENGER, CHAMPION, Settings, load_settings
from leadscore.crm.ingest import load_stored
from leadscore.crm.synth import REVIVAL_HISTORY_DAYS, generate_crm, write_export
from leadscore.features.store import revival_training_frame
from leadscore.model.registry import alias_version, mlflow_client
from pipelines.cli import app
from tests.conftest import cli, environment
from training.registry import HISTORY_TAG, ensure_experiment
from training.revival import (
    as_loss_frame,
    in_memory_revival_frame,
    revival_entities,
    stored_as_of,
    stored_losses,
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


def test_the_stored_loss_frame_built_from_the_chunks_is_the_joined_frames(applied):
    """``train-revival`` builds its loss frame from the join's chunks as they come
    (:func:`training.revival.loss_frame_from_parts`): the loss frame of the frame joined
    at once, every value and type."""
    _, _, settings, _ = applied
    chunked = dataclasses.replace(settings, feast_chunk_deals=100)
    losses = stored_losses(chunked)
    tables = load_stored(settings.crm_dir)
    entities, _ = revival_entities(
        tables, losses.as_of, settings.revival_window_days, settings.revival_horizon_days
    )
    assert entities["deal_id"].nunique() > 3 * 100  # several chunks
    at_once = dataclasses.replace(settings, feast_chunk_deals=0)
    joined = revival_training_frame(at_once, entities).frame
    pd.testing.assert_frame_equal(losses.frame, as_loss_frame(joined), check_exact=True)


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


def own_registry(settings: Settings, tmp_path: Path) -> tuple[Settings, Any, dict[str, str]]:
    """An MLflow registry of the test's own under ``tmp_path``, beside the module's
    feature store: its settings, client and the environment the CLI reads it from."""
    own = dataclasses.replace(
        settings,
        tracking_uri=f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}",
        artifact_root=tmp_path / "mlruns" / "artifacts",
    )
    client = mlflow_client(own)
    ensure_experiment(own, client)
    env = {
        "MLFLOW_TRACKING_URI": own.tracking_uri,
        "LEADSCORE_ARTIFACT_ROOT": str(own.artifact_root),
    }
    return own, client, env


def test_promote_and_roll_back_the_revival_model_leaving_the_win_model_alone(
    applied, tmp_path: Path
):
    """``promote``/``rollback``/``models --task revival`` on the stored CRM through Feast:
    the gate refuses a version that ties its baselines, ``--force --note`` promotes it and
    records why, a rollback restores the previous revival champion, and the win model's
    aliases and history (a registered model of its own) never move."""
    _, _, settings, _ = applied
    own, client, env = own_registry(settings, tmp_path)
    revival = own.revival_model_name
    # Two versions, both trained before the win model below exists (`train-revival` would
    # load its champion to measure today's approach): the newer waits as challenger.
    first = json.loads(cli(env, "train-revival", "--json"))
    assert first["model_version"] == "1" and first["aliases"] == [CHALLENGER]
    assert not first["gate"]["passed"], "2,500 synthetic deals: it ties its baselines"
    second = json.loads(cli(env, "train-revival", "--json", "--seed", "2"))
    assert second["model_version"] == "2" and not second["gate"]["passed"]

    # The win model's registry state, to compare at the end: champion 1 (the history says
    # 2 was champion before a rollback), challenger 2. Promote, rollback and models of the
    # revival model read nothing else of it, so its versions need no model behind them.
    win = own.model_name
    client.create_registered_model(win)
    for _ in range(2):
        client.create_model_version(win, source=tmp_path.as_uri())
    client.set_registered_model_alias(win, CHAMPION, "1")
    client.set_registered_model_alias(win, CHALLENGER, "2")
    client.set_registered_model_tag(win, HISTORY_TAG, json.dumps(["1", "2"]))

    def win_state() -> tuple[dict[str, str], dict[str, str], list[dict[str, str]]]:
        model = client.get_registered_model(win)
        versions = [client.get_model_version(win, v).tags for v in ("1", "2")]
        return dict(model.aliases), dict(model.tags), versions

    win_before = win_state()

    # The first: refused by its baseline gate, then forced with the note recorded.
    refused = cli(env, "promote", "--task", "revival", "--version", "1", code=1)
    assert f"gate: {first['gate']['sentence']}" in refused
    assert f"{revival} test slice: " in refused and " losses after " in refused
    assert f"{revival} version 1 NOT promoted" in refused
    assert alias_version(client, revival, CHAMPION) is None
    assert "promotion.refused_at" in client.get_model_version(revival, "1").tags
    forced = cli(
        env, "promote", "--task", "revival", "--version", "1", "--force", "--note", "pilot"
    )
    assert f"{revival} version 1 promoted (forced)" in forced
    tags = client.get_model_version(revival, "1").tags
    assert (tags["promotion.forced"], tags["promotion.note"]) == ("true", "pilot")
    assert alias_version(client, revival, CHAMPION) == "1"

    # The challenger: compared with that champion on its own test slice, refused by its
    # gate, forced; then rolled back to the first, which has no earlier one.
    decision = json.loads(cli(env, "promote", "--task", "revival", "--json", code=1))
    assert decision["challenger"] == "2" and decision["champion_before"] == "1"
    assert decision["champion_metrics"] is not None and decision["test_slice"]["deals"] > 0
    assert second["gate"]["sentence"] in decision["reasons"]
    assert set(decision["behaviour"]["checks"]) >= {"inbound_since_loss", "replies_since_loss"}
    cli(env, "promote", "--task", "revival", "--force", "--note", "second pilot")
    assert alias_version(client, revival, CHAMPION) == "2"
    # The win versions here have no model behind them, so the re-packaging that follows
    # a rollback fails: the move stands, and the command says so and exits 1.
    rolled = CliRunner().invoke(
        app, ["rollback", "--task", "revival", "--note", "second was worse"], env=env
    )
    assert rolled.exit_code == 1, rolled.output
    assert f"{revival} champion rolled back from version 2 to 1" in rolled.output
    assert "the rollback is recorded in MLflow, but packaging failed" in rolled.output
    assert alias_version(client, revival, CHAMPION) == "1"
    assert client.get_model_version(revival, "2").tags["rollback.note"] == "second was worse"
    again = CliRunner().invoke(app, ["rollback", "--task", "revival"], env=env)
    assert again.exit_code == 1 and f"no previous champion of {revival}" in again.output

    listed = json.loads(cli(env, "models", "--task", "revival", "--json"))
    assert [(v["version"], v["aliases"]) for v in listed] == [("2", []), ("1", [CHAMPION])]
    assert listed[1]["tags"]["promotion.note"] == "pilot"
    assert [v["version"] for v in json.loads(cli(env, "models", "--json"))] == ["2", "1"]
    assert win_state() == win_before


def test_retrain_task_revival_runs_the_loop_and_the_gate_refuses_it(applied, tmp_path: Path):
    """``leadscore retrain --task revival`` for real: ingest (the module's export again),
    materialize, train-revival, the revival gate. On 2,500 synthetic deals the model ties
    its baselines: exit 1, no champion, nothing packaged or pointed at, and the loop's
    MLflow run says so (the steps with stand-ins and the promoted path:
    tests/code/test_retrain_cli.py)."""
    root, _, settings, _ = applied
    own, client, env = own_registry(settings, tmp_path)
    said = cli(env, "retrain", "--task", "revival", str(root / "export"), code=1)
    assert "lead_scorer_revival retrain run" in said
    assert "version 1 NOT promoted; champion stays none" in said, said
    assert "gate: " in said
    (loop,) = client.search_runs(
        [client.get_experiment_by_name(own.experiment).experiment_id],
        filter_string="tags.`leadscore.loop` = 'retrain'",
    )
    tags = loop.data.tags
    assert tags["retrain.task"] == "revival"
    assert tags["retrain.decision"] == "refused by the gate"
    assert tags["retrain.step.features materialize"] == "done"
    assert tags["retrain.step.train"] == tags["retrain.step.promote"] == "done"
    assert "retrain.step.package" not in tags
    assert {m.name for m in client.search_registered_models()} == {own.revival_model_name}
    assert alias_version(client, own.revival_model_name, CHAMPION) is None
