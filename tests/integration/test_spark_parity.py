"""The Spark engine builds what the local engine builds, from one small CRM.

One ``local[2]`` session for the module (it takes about 9 s to start). Ingest writes the
feature sources on both engines and the Parquet files must hold the same rows; batch
ranking on Spark must give the local ranking's rows, reasons and order. The two engines
run the same functions per group of keys, so any difference is in the Spark plumbing:
bucketing (a deal whose rows land in two groups), the packing of tables (a column
dropped or retyped on the way), time zones, or the order rows come back in.

Feast on Spark (``features/feature_store.spark.yaml``): the point-in-time training frame
from Feast's Spark offline store must be the DuckDB one value for value, and Feast's
Spark compute engine must leave a Redis online store holding exactly what Feast's local
engine writes there. Feast runs its own SQL and jobs here, so a difference would be in
how it reads our sources (types, time zones), joins them point-in-time or keeps each
key's latest row.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from leadscore.config import (
    ENGINES,
    FEATURE_SERVICE,
    LOCAL_ENGINE,
    REVIVAL_FEATURE_SERVICE,
    SPARK_ENGINE,
    Settings,
    engine_settings,
    load_settings,
)
from leadscore.crm.ingest import stored_deals
from leadscore.crm.synth import generate_crm, write_export
from leadscore.features.featurize import TS, VIEW_KEYS, build_feature_sources
from leadscore.features.spark_engine import (
    bucket_count,
    spark_feature_sources,
    spark_session,
    spark_tables,
)
from leadscore.features.store import (
    apply_repo,
    materialize,
    online_features,
    open_store,
    training_frame,
)
from leadscore.priority.rank import RankConfig, rank_deals
from leadscore.priority.spark_rank import spark_rank_deals
from pipelines.steps import ingest
from tests.conftest import IN_CI, free_port, isolated
from tests.redis_fixture import RedisServer
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
    shuffles = load_settings().spark_shuffle_partitions
    assert spark.conf.get("spark.sql.shuffle.partitions") == str(shuffles)


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
            if path.exists():
                written[(engine, view)] = pd.read_parquet(path)
    assert written[LOCAL_ENGINE] == written[SPARK_ENGINE]
    views = [v for v in VIEW_KEYS if (LOCAL_ENGINE, v) in written]
    assert {"deal_activity", "deal_revival", "owner_history"} <= set(views)
    for view in views:
        local, on_spark = written[(LOCAL_ENGINE, view)], written[(SPARK_ENGINE, view)]
        assert len(local) > 0, view
        # Same rows in the same order, every value and type: the files are interchangeable.
        pd.testing.assert_frame_equal(on_spark, local, obj=view)


def test_buckets_grow_with_the_deals_so_no_group_outgrows_the_heap(spark):
    cores_twice = 2 * spark.sparkContext.defaultParallelism
    assert bucket_count(spark, 150) == cores_twice
    assert bucket_count(spark, 100_000) == 20
    assert bucket_count(spark, 100_001) == 21


def test_many_small_buckets_build_the_local_sources(spark):
    """Twelve groups over four partitions' worth of rows, collected one at a time."""
    tables = generate_crm(INGEST_DEALS, seed=11, as_of=AS_OF).tables
    n = bucket_count(spark, len(tables["deals"]), per_bucket=13)
    assert n == 12
    on_spark = spark_feature_sources(spark, spark_tables(spark, tables), buckets=n)
    local = build_feature_sources(tables)
    assert set(on_spark) == set(local)
    for view, key in VIEW_KEYS.items():
        if view not in local:
            continue
        mine, theirs = (
            f.sort_values([key, TS], kind="stable").reset_index(drop=True)
            for f in (on_spark[view], local[view])
        )
        assert len(mine) > 0, view
        pd.testing.assert_frame_equal(mine, theirs[mine.columns], check_dtype=False, obj=view)


def test_ranking_on_spark_gives_the_local_list(spark, tables):
    model = train_small_model(tables)[0]
    as_of = pd.Timestamp("2025-06-01", tz="UTC")
    config = RankConfig(batch_size=50)
    local = rank_deals(tables, model, as_of, config).frame
    on_spark = spark_rank_deals(spark, tables, model, as_of, config, buckets=3).frame
    assert len(local) > 50
    assert local["priority_group"].nunique() >= 2
    pd.testing.assert_frame_equal(on_spark, local)


@pytest.fixture(scope="module")
def feast_repo(spark, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """One small CRM ingested and its Feast repo applied for both engines (each engine's
    configuration keeps a registry of its own), Spark at ``local[2]``."""
    root = tmp_path_factory.mktemp("feast-on-spark")
    write_export(generate_crm(INGEST_DEALS, seed=11, as_of=AS_OF), root / "export")
    settings = dataclasses.replace(isolated(root), spark_master="local[2]")
    ingest(root / "export", settings)
    for engine in ENGINES:
        apply_repo(engine_settings(settings, engine))
    return settings


def test_the_spark_configuration_declares_spark_sources_over_the_same_files(feast_repo):
    sources = {
        engine: {
            view.name: view.batch_source
            for view in open_store(engine_settings(feast_repo, engine)).list_feature_views()
        }
        for engine in ENGINES
    }
    assert set(sources[SPARK_ENGINE]) == set(sources[LOCAL_ENGINE]) >= {"deal_activity"}
    for view, local in sources[LOCAL_ENGINE].items():
        on_spark = sources[SPARK_ENGINE][view]
        assert type(local).__name__ == "FileSource", view
        assert type(on_spark).__name__ == "SparkSource", view
        assert (on_spark.name, on_spark.path) == (local.name, local.path)


def test_training_frame_from_feasts_spark_offline_store_is_the_local_one(feast_repo):
    deals = stored_deals(feast_repo.crm_dir)
    frames = {
        engine: training_frame(engine_settings(feast_repo, engine), deals).frame
        for engine in ENGINES
    }
    local = frames[LOCAL_ENGINE]
    assert len(local) > 200 and set(local["won"]) == {0, 1}
    # Features of every view, and the request-time ones, are filled in.
    assert local[["act_total_30d", "account_prior_closed", "deal_age_days"]].notna().any().all()
    pd.testing.assert_frame_equal(frames[SPARK_ENGINE], local, check_exact=True)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A private redis-server: the two engines' online stores are its databases 1 and 2."""
    if not RedisServer.available():
        if IN_CI:
            pytest.fail("redis-server is not installed; CI must have it")
        pytest.skip("redis-server is not installed")
    server = RedisServer(free_port(), tmp_path / "redis")
    server.start()
    yield server
    server.stop()


def test_spark_materialization_writes_what_the_local_engine_writes(feast_repo, redis_server):
    import redis

    end = AS_OF.to_pydatetime()
    local = dataclasses.replace(
        feast_repo,
        feature_store_yaml="feature_store.redis.yaml",
        redis=f"{redis_server.address},db=1",
    )
    on_spark = dataclasses.replace(
        engine_settings(feast_repo, SPARK_ENGINE), redis=f"{redis_server.address},db=2"
    )
    stores = {}
    for engine, settings in ((LOCAL_ENGINE, local), (SPARK_ENGINE, on_spark)):
        materialize(settings, end, full=True)
        stores[engine] = open_store(settings)
    # Every key and every hash field, byte for byte: values, their types and timestamps.
    dumps = []
    for db in (1, 2):
        client = redis.Redis(host="127.0.0.1", port=redis_server.port, db=db)
        dumps.append({key: client.hgetall(key) for key in client.keys()})
    assert len(dumps[0]) > INGEST_DEALS
    assert dumps[1] == dumps[0]
    # And as the service reads them: both feature services, every stored deal.
    deal_ids = stored_deals(feast_repo.crm_dir)["deal_id"].tolist()
    for service in (FEATURE_SERVICE, REVIVAL_FEATURE_SERVICE):
        read = {
            engine: online_features(store, service, deal_ids, end)
            for engine, store in stores.items()
        }
        assert read[LOCAL_ENGINE]["deal_status"].notna().all()
        pd.testing.assert_frame_equal(read[SPARK_ENGINE], read[LOCAL_ENGINE], check_exact=True)
