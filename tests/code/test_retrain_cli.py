"""``leadscore retrain``'s exit codes for a scheduler, and its steps for each model, where no
training is needed to see them."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from typer.testing import CliRunner

from leadscore.config import (
    CHALLENGER,
    CHAMPION,
    REVIVAL,
    SPARK_FEATURE_STORE_YAML,
    load_settings,
)
from leadscore.model.registry import mlflow_client
from pipelines.cli import app
from pipelines.retrain import (
    BAD_INPUT,
    BUSY,
    PROMOTED,
    REFUSED,
    TRAINERS,
    retrain_lock,
)
from serving.package import PackagedChampions, PackagedModel
from tests.conftest import cli, environment
from training.registry import PromotionDecision, ensure_experiment


def test_a_retrain_while_another_runs_exits_75_at_once(tmp_path: Path):
    env = environment(tmp_path)
    settings = load_settings(feature_repo=Path(env["LEADSCORE_FEATURE_REPO"]))
    with retrain_lock(settings.retrain_lock):
        out = CliRunner().invoke(app, ["retrain", str(tmp_path / "export")], env=env)
        revival = CliRunner().invoke(app, ["retrain", "--task", "revival", "x"], env=env)
    assert out.exit_code == BUSY, out.output
    assert "another `leadscore retrain` is running" in out.output
    assert revival.exit_code == BUSY, revival.output


def test_a_retrain_without_an_export_or_of_a_missing_one_exits_2(tmp_path: Path):
    env = environment(tmp_path)
    cli(env, "retrain", code=BAD_INPUT)
    cli(env, "retrain", str(tmp_path / "no such export"), code=BAD_INPUT)
    cli(env, "retrain", "--task", "revival", str(tmp_path / "no such export"), code=BAD_INPUT)
    cli(env, "retrain", "--task", "nonsense", str(tmp_path), code=2)  # typer's usage error


def _revival_loop(
    tmp_path: Path, monkeypatch, passes: bool, *options: str, where: dict[str, str] | None = None
) -> tuple[int, str, list[str], Any]:
    """``leadscore retrain --task revival [options]`` with its steps stood in for (the real
    steps are the commands' own, tested apart; tests/integration/test_revival_training.py
    runs this loop for real): the exit code, stdout, the steps called in order, and the
    loop's MLflow run. ``where`` receives, per step, the engine or Feast configuration file
    it was called with."""
    env = environment(tmp_path)
    settings = load_settings(
        feature_repo=Path(env["LEADSCORE_FEATURE_REPO"]),
        tracking_uri=env["MLFLOW_TRACKING_URI"],
        artifact_root=Path(env["LEADSCORE_ARTIFACT_ROOT"]),
    )
    client = mlflow_client(settings)
    name = settings.revival_model_name
    client.create_registered_model(name)
    for _ in range(2):
        client.create_model_version(name, source=tmp_path.as_uri())
    client.set_registered_model_alias(name, CHAMPION, "1")
    called: list[str] = []

    def step(label: str, out: Any = None) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            called.append(label if "task" not in kwargs else f"{label} {kwargs['task']}")
            if where is not None:
                given = kwargs.get("engine") or args[0].feature_store_yaml
                where[label] = str(given)
            return out() if callable(out) else out

        return run

    def trained() -> dict[str, Any]:
        run = client.create_run(ensure_experiment(settings, client))
        client.set_registered_model_alias(name, CHALLENGER, "2")
        return {"run_id": run.info.run_id, "model_version": "2", "aliases": [CHALLENGER]}

    def decided() -> PromotionDecision:
        if passes:
            client.set_registered_model_alias(name, CHAMPION, "2")
        metrics = {"roc_auc": 0.7, "log_loss": 0.4}
        return PromotionDecision(
            "2",
            "1",
            passes,
            False,
            [] if passes else ["not better than baseline"],
            {"deals": 40},
            metrics,
            metrics,
            {},
        )

    def packaged(tag: str) -> PackagedModel:
        return PackagedModel(tag, "models:/x", "2", "r", None, True)

    mod = "pipelines.retrain"
    monkeypatch.setattr(f"{mod}.ingest", step("ingest", SimpleNamespace(counts={})))
    monkeypatch.setattr(f"{mod}.is_applied", lambda settings: True)
    monkeypatch.setattr(f"{mod}.materialize", step("materialize"))
    monkeypatch.setattr(f"{mod}.train_from_store", step("train win"))
    monkeypatch.setitem(TRAINERS, REVIVAL, step("train revival", trained))
    monkeypatch.setattr(f"{mod}.promote_from_store", step("promote", decided))
    monkeypatch.setattr(
        f"{mod}.package_served",
        step(
            "package",
            lambda: PackagedChampions(
                packaged("lead_scorer:w"), packaged("lead_scorer_revival:r2")
            ),
        ),
    )
    # The command lowers its priority as configured (stood in for: it cannot be undone).
    monkeypatch.setattr(f"{mod}.os.nice", lambda n: called.append(f"nice {n}"))
    env["LEADSCORE_RETRAIN_NICE"] = "7"
    out = CliRunner().invoke(
        app, ["retrain", "--task", "revival", *options, str(tmp_path)], env=env
    )
    loop = client.search_runs(
        [client.get_experiment_by_name(settings.experiment).experiment_id],
        filter_string="tags.`leadscore.loop` = 'retrain'",
    )[0]
    return out.exit_code, out.stdout, called, loop


def test_retrain_task_revival_trains_gates_and_serves_the_revival_model(tmp_path, monkeypatch):
    code, said, called, loop = _revival_loop(tmp_path, monkeypatch, passes=True)
    assert code == PROMOTED, said
    assert called == [
        "nice 7",
        "ingest",
        "materialize",
        "train revival",
        "promote revival",
        "package",
    ]
    assert "lead_scorer_revival retrain run" in said
    assert "version 2 promoted (champion was 1); serving lead_scorer_revival:r2" in said
    tags = loop.data.tags
    assert tags["retrain.task"] == "revival"
    assert (tags["retrain.champion_before"], tags["retrain.champion_after"]) == ("1", "2")
    assert tags["retrain.served_tag"] == "lead_scorer_revival:r2"


def test_retrain_task_revival_refused_changes_nothing_served(tmp_path, monkeypatch):
    code, said, called, loop = _revival_loop(tmp_path, monkeypatch, passes=False)
    assert code == REFUSED, said
    assert called == ["nice 7", "ingest", "materialize", "train revival", "promote revival"]
    assert "gate: not better than baseline" in said
    assert "version 2 NOT promoted; champion stays 1" in said
    assert loop.data.tags["retrain.decision"] == "refused by the gate"


def test_retrain_engine_spark_runs_the_data_steps_on_spark(tmp_path, monkeypatch):
    """``--engine spark`` reaches every data step as its own command's ``--engine spark``
    would: ingest builds the sources on Spark, and materialization, training and the gate's
    test slice read Feast through the Spark configuration; the default stays local."""
    where: dict[str, str] = {}
    code, said, _, loop = _revival_loop(
        tmp_path, monkeypatch, True, "--engine", "spark", where=where
    )
    assert code == PROMOTED, said
    spark = SPARK_FEATURE_STORE_YAML
    assert where == {
        "ingest": "spark",
        "materialize": spark,
        "train revival": spark,
        "promote": spark,
        "package": spark,
    }, where
    assert loop.data.tags["retrain.engine"] == "spark"

    local: dict[str, str] = {}
    _revival_loop(tmp_path / "local", monkeypatch, True, where=local)
    assert local["ingest"] == "local"
    assert SPARK_FEATURE_STORE_YAML not in local.values()


def test_retrain_rejects_an_unknown_engine(tmp_path: Path):
    out = CliRunner().invoke(
        app, ["retrain", "--engine", "flink", str(tmp_path)], env=environment(tmp_path)
    )
    assert out.exit_code == 2, out.output
    assert "--engine" in out.output and "local, spark" in out.output
