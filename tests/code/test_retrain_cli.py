"""``leadscore retrain``'s exit codes for a scheduler, where no training is needed to see them."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from leadscore.config import load_settings
from pipelines.cli import app
from pipelines.retrain import BAD_INPUT, BUSY, retrain_lock
from tests.conftest import cli, environment


def test_a_retrain_while_another_runs_exits_75_at_once(tmp_path: Path):
    env = environment(tmp_path)
    settings = load_settings(feature_repo=Path(env["LEADSCORE_FEATURE_REPO"]))
    with retrain_lock(settings.retrain_lock):
        out = CliRunner().invoke(app, ["retrain", str(tmp_path / "export")], env=env)
    assert out.exit_code == BUSY, out.output
    assert "another `leadscore retrain` is running" in out.output


def test_a_retrain_without_an_export_or_of_a_missing_one_exits_2(tmp_path: Path):
    env = environment(tmp_path)
    cli(env, "retrain", code=BAD_INPUT)
    cli(env, "retrain", str(tmp_path / "no such export"), code=BAD_INPUT)
