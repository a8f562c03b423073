"""Configuration read in one place; the Feast YAML filled in from it; times read as UTC;
progress reported by the pipeline steps."""

from __future__ import annotations

import ast
import dataclasses
import os
from collections import defaultdict
from pathlib import Path

import pandas as pd
import pytest

from leadscore.config import (
    LOCAL_ENGINE,
    PROJECT_ROOT,
    REDIS,
    REVIVAL,
    SPARK_ENGINE,
    TASKS,
    WIN,
    Settings,
    engine_settings,
    load_settings,
    task_model_name,
)
from leadscore.features.store import on_spark, repo_config
from leadscore.timeutil import as_utc
from pipelines.steps import ingest
from tests.crm_fixture import tiny_crm

PACKAGES = ("leadscore", "training", "serving", "pipelines", "features")
CONFIG = PROJECT_ROOT / "leadscore" / "config.py"
#: Attributes of ``os`` that read or change the process environment.
ENV_ACCESS = {"environ", "environb", "getenv", "getenvb", "putenv", "unsetenv"}


def environment_access(path: Path) -> list[str]:
    """``file:line`` of every use of the process environment in one module."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = []
    for node in ast.walk(tree):
        used = (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "os"
            and node.attr in ENV_ACCESS
        ) or (
            isinstance(node, ast.ImportFrom)
            and node.module == "os"
            and any(alias.name in ENV_ACCESS for alias in node.names)
        )
        # os.path.expandvars reads the environment too.
        used = used or (isinstance(node, ast.Attribute) and node.attr == "expandvars")
        if used:
            found.append(f"{path.relative_to(PROJECT_ROOT)}:{getattr(node, 'lineno', 0)}")
    return found


def test_only_the_config_module_touches_the_environment() -> None:
    modules = [p for pkg in PACKAGES for p in sorted((PROJECT_ROOT / pkg).rglob("*.py"))]
    assert len(modules) > 40, "the scan found the packages"
    assert environment_access(CONFIG), "the scan recognises the config module's reads"
    offenders = [hit for p in modules if p != CONFIG for hit in environment_access(p)]
    assert offenders == [], "read the environment in leadscore/config.py only"


def test_environment_is_read_into_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEADSCORE_REDIS", "redis.internal:6380,db=2")
    monkeypatch.setenv("LEADSCORE_HEALTH_MAX_STALLS", "4")
    monkeypatch.setenv("LEADSCORE_SEED", "7")
    settings = load_settings()
    assert (settings.redis, settings.health_overrides, settings.seed) == (
        "redis.internal:6380,db=2",
        ("max_stalls=4",),
        7,
    )


def test_redis_yaml_gets_the_address_from_settings_and_sets_no_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LEADSCORE_REDIS", raising=False)
    settings = Settings(feature_store_yaml="feature_store.redis.yaml")
    timeouts = "socket_connect_timeout=0.5,socket_timeout=0.5,"  # before, so the address's win
    assert repo_config(settings).online_store.connection_string == timeouts + REDIS
    assert "LEADSCORE_REDIS" not in os.environ, "no step sets process variables for Feast"
    elsewhere = dataclasses.replace(settings, redis="redis.internal:6380,db=2")
    assert repo_config(elsewhere).online_store.connection_string == (
        timeouts + "redis.internal:6380,db=2"
    )
    assert repo_config(Settings()).online_store.type == "sqlite"


def test_the_spark_engine_has_feasts_spark_stores_at_the_master_from_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LEADSCORE_SPARK_MASTER", raising=False)
    settings = Settings(spark_master="spark://cluster:7077", redis="redis.internal:6380")
    assert engine_settings(settings, LOCAL_ENGINE) == settings
    assert not on_spark(settings)
    spark = engine_settings(settings, SPARK_ENGINE)
    assert on_spark(spark)
    config = repo_config(spark)
    assert config.offline_store.type == "spark"
    assert config.offline_store.spark_conf["spark.master"] == "spark://cluster:7077"
    assert config.batch_engine_config["type"] == "spark.engine"
    assert config.online_store.connection_string.endswith("redis.internal:6380")
    # A registry of its own: it records SparkSources, which the DuckDB store cannot read.
    assert config.registry.path != repo_config(settings).registry.path
    with pytest.raises(ValueError, match="unknown engine"):
        engine_settings(settings, "dask")


def test_other_yaml_variables_expand_from_the_environment_as_feast_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    yaml = (PROJECT_ROOT / "features" / "feature_store.yaml").read_text(encoding="utf-8")
    (tmp_path / "store.yaml").write_text(
        yaml.replace("project: lead_scoring", "project: ${TEAM}_scoring"), encoding="utf-8"
    )
    monkeypatch.setenv("TEAM", "emea")
    settings = Settings(feature_repo=tmp_path, feature_store_yaml="store.yaml")
    assert repo_config(settings).project == "emea_scoring"


# ---------------------------------------------------------------- time
def test_naive_times_are_utc_and_aware_ones_are_converted() -> None:
    assert as_utc("2025-04-01 12:00") == pd.Timestamp("2025-04-01 12:00", tz="UTC")
    assert as_utc("2025-04-01T14:00+02:00") == pd.Timestamp("2025-04-01 12:00", tz="UTC")
    noon = pd.Timestamp("2025-04-01 12:00", tz="UTC")
    naive = as_utc(pd.Series([pd.Timestamp("2025-04-01 12:00")]))
    paris = as_utc(pd.Series([pd.Timestamp("2025-04-01 14:00", tz="Europe/Paris")]))
    for series in (naive, paris):
        assert str(series.dtype) == "datetime64[us, UTC]"
        assert series.iloc[0] == noon


def test_every_kind_of_time_column_reads_as_the_same_utc_microseconds() -> None:
    """Datetime columns take a shortcut past ``pd.to_datetime``; they must read as text does."""
    text = pd.Series(
        ["2025-04-01T12:00:00.123456789+00:00", None, "2025-04-01T14:00:00.000000+02:00"]
    )
    aware_ns = pd.to_datetime(text, utc=True, format="ISO8601")
    expected = aware_ns.astype("datetime64[us, UTC]")
    columns = {
        "text": text,
        "naive ns": aware_ns.dt.tz_localize(None),
        "naive us": aware_ns.dt.tz_localize(None).astype("datetime64[us]"),
        "Paris ns": aware_ns.dt.tz_convert("Europe/Paris"),
        "objects": pd.Series([None if pd.isna(v) else v for v in expected], dtype=object),
    }
    for name, column in columns.items():
        got = as_utc(column)
        assert str(got.dtype) == "datetime64[us, UTC]", name
        pd.testing.assert_series_equal(got, expected, check_names=False, obj=name)


# ---------------------------------------------------------------- progress
def test_ingest_reports_files_rows_and_sources_to_their_end(
    tmp_path: Path, isolated_settings: Settings
) -> None:
    tables = tiny_crm()
    export = tmp_path / "export"
    export.mkdir()
    for name, frame in tables.items():
        frame.to_parquet(export / f"{name}.parquet", index=False)
    reports: dict[str, list[tuple[int, int | None]]] = defaultdict(list)

    def progress(task: str, done: int, total: int | None = None, **_: str) -> None:
        reports[task].append((done, total))

    summary = ingest(
        export, isolated_settings, now=pd.Timestamp("2024-06-01", tz="UTC"), progress=progress
    )
    rows = sum(len(frame) for frame in tables.values())
    written = sum(summary.source_rows.values())
    ends = {task: seen[-1] for task, seen in reports.items()}
    assert ends == {
        "read export": (len(tables), len(tables)),
        "validate export": (rows, rows),
        "feature sources": (7, 7),  # six views and deal_revival
        "write sources": (written, written),
    }
    for task, seen in reports.items():
        done = [d for d, _ in seen]
        assert done == sorted(done) and done[0] == 0, task


def test_each_task_names_its_registered_model_by_one_rule() -> None:
    """The win task's model is the base name; another task's adds ``_task``; no other."""
    assert TASKS == (WIN, REVIVAL)
    assert task_model_name("lead_scorer", WIN) == "lead_scorer"
    assert task_model_name("lead_scorer", REVIVAL) == "lead_scorer_revival"
    assert Settings(model_name="m").revival_model_name == task_model_name("m", REVIVAL)
    with pytest.raises(ValueError, match="unknown task 'dormant': one of win, revival"):
        task_model_name("lead_scorer", "dormant")
