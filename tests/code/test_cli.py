"""The command line's manners: what --quiet, the default and --verbose show, stdout kept for
results (valid JSON under progress bars), and option defaults read from the core."""

from __future__ import annotations

import dataclasses
import gc
import inspect
import json
import logging
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner, Result

from leadscore.config import CHAMPION, SEED, Settings
from leadscore.crm import synth
from pipelines.cli import app

IBIS_FILE = os.path.join(os.sep, "venv", "site-packages", "ibis", "backends", "duckdb", "x.py")
PRODUCT_FILE = os.path.join(os.sep, "work", "leadscore", "crm", "synth.py")


def env_of(settings: Settings) -> dict[str, str]:
    return {
        "LEADSCORE_FEATURE_REPO": str(settings.feature_repo),
        "MLFLOW_TRACKING_URI": settings.tracking_uri,
        "LEADSCORE_ARTIFACT_ROOT": str(settings.artifact_root),
    }


@pytest.fixture
def shown(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Messages of the warnings that reach the display (the CLI's filter sits in front).

    Garbage of earlier tests in this worker is collected first: a BentoML client another
    module left behind warns when its temporary folder is finalised, whenever that is, and
    that is no warning of the command under test."""
    gc.collect()
    seen: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        monkeypatch.setattr(
            warnings, "showwarning", lambda message, *_, **__: seen.append(str(message))
        )
        yield seen


@pytest.fixture
def noisy_generate(monkeypatch: pytest.MonkeyPatch) -> None:
    """`leadscore generate` whose export step talks the way libraries and the product do."""
    real = synth.write_export

    def write_export(crm: synth.SyntheticCRM, out: Path, fmt: Any = "parquet") -> dict[str, Path]:
        print("a library printing to stdout")  # noqa: T201 - the point of the test
        warnings.warn_explicit(
            "fetch_arrow_table() is deprecated, use to_arrow_table() instead.",
            DeprecationWarning,
            IBIS_FILE,
            332,
        )
        warnings.warn_explicit("the product's own warning", UserWarning, PRODUCT_FILE, 1)
        product = logging.getLogger("leadscore.crm.synth")
        product.warning("the product's own warning record")
        product.info("the product's own info record")
        logging.getLogger("mlflow.utils.environment").warning(
            "Failed to resolve installed pip version. ``pip`` will be added without a version."
        )
        return real(crm, out, fmt)

    monkeypatch.setattr(synth, "write_export", write_export)


def generate(tmp_path: Path, *options: str) -> Result:
    args = [*options, "generate", "--deals", "30", "--out", str(tmp_path / "crm")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].startswith("accounts"), "the result comes first"
    assert "a library printing" not in result.stdout
    return result


@pytest.mark.usefixtures("noisy_generate")
def test_default_shows_the_products_warnings_and_hides_known_third_party_notices(
    tmp_path: Path, shown: list[str]
) -> None:
    result = generate(tmp_path)
    assert shown == ["the product's own warning"]
    assert "the product's own warning record" in result.stderr
    assert "info record" not in result.stderr
    assert "pip version" not in result.stderr
    assert "a library printing to stdout" in result.stderr


@pytest.mark.usefixtures("noisy_generate")
def test_quiet_shows_nothing_but_the_result(tmp_path: Path, shown: list[str]) -> None:
    result = generate(tmp_path, "--quiet")
    assert shown == []
    assert result.stderr == ""


@pytest.mark.usefixtures("noisy_generate")
def test_verbose_shows_everything(tmp_path: Path, shown: list[str]) -> None:
    result = generate(tmp_path, "--verbose")
    assert "fetch_arrow_table() is deprecated, use to_arrow_table() instead." in shown
    assert "the product's own warning" in shown
    assert "the product's own info record" in result.stderr
    assert "Failed to resolve installed pip version" in result.stderr


def test_quiet_and_verbose_together_are_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["--quiet", "--verbose", "generate", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "choose one of --verbose and --quiet" in result.output


def test_levels_end_with_the_command(tmp_path: Path) -> None:
    before = (logging.getLogger().level, logging.root.manager.disable, warnings.showwarning)
    generate(tmp_path, "--quiet")
    after = (logging.getLogger().level, logging.root.manager.disable, warnings.showwarning)
    assert after == before


def test_json_stays_valid_under_progress_bars_and_library_output(
    monkeypatch: pytest.MonkeyPatch, isolated_settings: Settings
) -> None:
    summary = {"model_name": "lead_scorer", "model_version": "7", "test": {"roc_auc": 0.8}}

    def train_from_store(settings: Settings, config: Any, truth: Any, progress: Any) -> dict:
        for done in range(0, 301, 50):
            progress("boosting", done, 300, unit="rounds")
        print("a library printing to stdout")  # noqa: T201 - the point of the test
        logging.getLogger("leadscore.training").warning("a warning while the bars are drawn")
        return summary

    monkeypatch.setattr("training.train.train_from_store", train_from_store)
    # A terminal on stderr (as Rich decides it), so the bars are drawn.
    env = {**env_of(isolated_settings), "TTY_COMPATIBLE": "1", "TERM": "xterm", "COLUMNS": "120"}
    result = CliRunner().invoke(app, ["train", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == summary
    assert "boosting" in result.stderr and "300/300 rounds" in result.stderr, "bars were drawn"
    assert "a library printing to stdout" in result.stderr
    assert "a warning while the bars are drawn" in result.stderr


def test_no_bars_when_stderr_is_not_a_terminal(
    monkeypatch: pytest.MonkeyPatch, isolated_settings: Settings
) -> None:
    def train_from_store(settings: Settings, config: Any, truth: Any, progress: Any) -> dict:
        progress("boosting", 300, 300, unit="rounds")
        return {}

    monkeypatch.setattr("training.train.train_from_store", train_from_store)
    # CliRunner's stderr is no TTY; nothing in the environment may claim otherwise.
    no_claims: dict[str, str | None] = {"TTY_COMPATIBLE": None, "FORCE_COLOR": None}
    result = CliRunner().invoke(
        app, ["train", "--json"], env={**env_of(isolated_settings), **no_claims}
    )
    assert result.exit_code == 0, result.output
    assert result.stderr == ""


# ---------------------------------------------------------------- defaults live once
def option_default(command: str, option: str) -> Any:
    """The default of ``option`` of ``leadscore <command>``, as --help shows it."""
    cmd = typer.main.get_command(app)
    for name in command.split():
        cmd = cmd.commands[name]  # type: ignore[attr-defined]
    (param,) = [p for p in cmd.params if p.name == option]
    return param.default


def test_option_defaults_are_the_cores() -> None:
    from leadscore.crm.synth import generate_crm
    from leadscore.insights import MIN_DEALS
    from leadscore.priority.rank import RankConfig, run_rank
    from leadscore.priority.report import write_report
    from training.registry import Tolerance
    from training.result import TrainConfig

    rank, gate = RankConfig(), Tolerance()
    expected = {
        ("rank", "dormant_days"): rank.dormant_days,
        ("rank", "lost_days"): rank.lost_window_days,
        ("rank", "batch_size"): rank.batch_size,
        ("rank", "by"): inspect.signature(run_rank).parameters["by"].default,
        ("rank", "alias"): CHAMPION,
        ("promote", "max_auc_drop"): gate.max_auc_drop,
        ("promote", "max_log_loss_rise"): gate.max_log_loss_rise,
        ("generate", "seed"): inspect.signature(generate_crm).parameters["seed"].default,
        ("demo", "seed"): inspect.signature(generate_crm).parameters["seed"].default,
        ("demo", "deals"): option_default("generate", "deals"),
        ("report", "max_rows"): inspect.signature(write_report).parameters["max_rows"].default,
        ("generate", "revival"): inspect.signature(generate_crm).parameters["revival"].default,
        ("funnel", "min_deals"): MIN_DEALS,
        ("compare", "min_deals"): MIN_DEALS,
    }
    assert {key: option_default(*key) for key in expected} == expected
    # The training seed has one default, whether it comes from settings or the config.
    assert TrainConfig().seed == Settings().seed == SEED
    assert option_default("train", "seed") is None, "train's --seed defers to the settings"


def test_registry_commands_take_one_task_option_defaulting_to_the_win_model() -> None:
    from leadscore.config import TASKS, WIN

    for command in ("promote", "rollback", "models"):
        assert option_default(command, "task") == WIN
    refused = CliRunner().invoke(app, ["rollback", "--task", "dormant"])
    assert refused.exit_code == 2
    assert f"must be one of {', '.join(TASKS)}" in refused.output


def test_settings_defaults_are_the_dataclass_fields() -> None:
    fields = {f.name: f.default for f in dataclasses.fields(Settings)}
    assert (fields["seed"], fields["redis"], fields["health_overrides"]) == (
        SEED,
        "localhost:6379",
        (),
    )


def test_funnel_reads_the_stored_crm_and_prints_each_value_with_its_deals(tmp_path: Path) -> None:
    from tests.conftest import cli, ingested_synthetic

    env = ingested_synthetic(tmp_path)
    out = json.loads(cli(env, "funnel", "--from", "2024-07-01", "--to", "2025-07-01", "--json"))
    assert set(out) == {"definitions", "funnel", "stage_durations", "lost_exits"}
    metrics = {r["metric"] for r in out["funnel"]}
    assert {"lead_to_opportunity", "qualified_win_rate", "sales_cycle_days"} <= metrics
    rate = next(r for r in out["funnel"] if r["metric"] == "qualified_win_rate")
    assert rate["value"] == pytest.approx(rate["numerator"] / rate["denominator"])
    by_owner = json.loads(
        cli(env, "funnel", "--from", "2024-07-01", "--to", "2025-07-01", "--by", "owner", "--json")
    )
    assert len({r["owner_id"] for r in by_owner["funnel"]}) > 2
    reps = json.loads(
        cli(
            env,
            "funnel",
            "--reps",
            "--every",
            "month",
            "--from",
            "2025-01-01",
            "--to",
            "2025-07-01",
            "--json",
        )
    )
    assert {r["number"] for r in reps["reps"]} >= {"leads", "closed"}
    text = cli(env, "funnel", "--from", "2024-07-01", "--to", "2025-07-01")
    assert "# funnel" in text and "qualified_win_rate" in text
    bad = cli(env, "funnel", "--from", "2024-07-01", "--to", "2025-07-01", "--by", "planet", code=2)
    assert bad == ""
