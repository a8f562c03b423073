"""The Spark engine builds what the local engine builds, from one small CRM.

One ``local[2]`` session for the module (it takes about 9 s to start). Ingest writes the
feature sources on both engines and the Parquet files must hold the same rows; batch
ranking on Spark must give the local ranking's rows, reasons and order. The two engines
run the same functions per group of keys, so any difference is in the Spark plumbing:
bucketing (a deal whose rows land in two groups), the packing of tables (a column
dropped or retyped on the way), time zones, or the order rows come back in.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from leadscore.config import LOCAL_ENGINE, SPARK_ENGINE, load_settings
from leadscore.crm.synth import generate_crm, write_export
from leadscore.features.featurize import VIEW_KEYS
from leadscore.features.spark_engine import spark_session
from leadscore.priority.rank import RankConfig, rank_deals
from leadscore.priority.spark_rank import spark_rank_deals
from pipelines.steps import ingest
from tests.conftest import isolated
from tests.serving_fixture import AS_OF, synthetic_tables, train_small_model

pytestmark = pytest.mark.integration

#: Deals of the ingested CRM (every source has rows) and of the ranked one (about a
#: third of them are candidates, every priority group among them).
INGEST_DEALS = 150
RANK_DEALS = 300


@pytest.fixture(scope="module")
def spark() -> Iterator:
    if shutil.which("java") is None:
        pytest.fail("no java on PATH: Spark needs Java 17 (.ci/run installs it)")
    session = spark_session(load_settings(spark_master="local[2]"), app_name="spark-parity")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    return synthetic_tables(RANK_DEALS, seed=11)


def test_the_session_runs_where_configuration_says(spark):
    assert spark.sparkContext.master == "local[2]"
    assert spark.conf.get("spark.ui.enabled") == "false"
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"


def test_ingest_writes_the_same_feature_sources_on_both_engines(spark, tmp_path: Path):
    crm = generate_crm(INGEST_DEALS, seed=11, as_of=AS_OF)
    write_export(crm, tmp_path / "export")
    written = {}
    for engine in (LOCAL_ENGINE, SPARK_ENGINE):
        settings = isolated(tmp_path / engine)
        summary = ingest(tmp_path / "export", settings, engine=engine)
        written[engine] = summary.source_rows
        for view in VIEW_KEYS:
            path = settings.sources_dir / f"{view}.parquet"
            if path.is_file():
                written[(engine, view)] = pd.read_parquet(path)
    assert written[LOCAL_ENGINE] == written[SPARK_ENGINE]
    views = [v for v in VIEW_KEYS if (LOCAL_ENGINE, v) in written]
    assert {"deal_activity", "deal_revival", "owner_history"} <= set(views)
    for view in views:
        local, on_spark = written[(LOCAL_ENGINE, view)], written[(SPARK_ENGINE, view)]
        assert len(local) > 0, view
        # Same rows in the same order, every value and type: the files are interchangeable.
        pd.testing.assert_frame_equal(on_spark, local, obj=view)


def test_ranking_on_spark_gives_the_local_list(spark, tables):
    model = train_small_model(tables)[0]
    as_of = pd.Timestamp("2025-06-01", tz="UTC")
    config = RankConfig(batch_size=50)
    local = rank_deals(tables, model, as_of, config).frame
    on_spark = spark_rank_deals(spark, tables, model, as_of, config, buckets=3).frame
    assert len(local) > 50
    assert local["priority_group"].nunique() >= 2
    pd.testing.assert_frame_equal(on_spark, local)
