"""Feast for real: apply, historical retrieval, materialization, online retrieval."""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import pandas as pd
import pytest
import yaml

from leadscore.crm.synth import generate_crm
from leadscore.features.catalog import WINDOW_COUNT_COLUMNS
from leadscore.features.compute_engine import ENGINE_TYPE
from leadscore.features.featurize import (
    build_feature_sources,
    features_as_of,
    model_frame,
    snapshot_entities,
    write_sources,
)
from leadscore.features.store import (
    FeatureStoreError,
    apply_repo,
    deal_chunks,
    materialize,
    online_features,
    open_store,
    training_frame,
    training_parts,
    write_training_set,
)
from serving.online import RETRY_SECONDS, OnlineStore, StoreUnavailable
from tests.conftest import isolated, require_service
from tests.crm_fixture import (
    brute_force_window_counts,
    day,
    tiny_crm,
    window_crm,
    window_moments,
)
from training.data import canonical, canonical_from_parts

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def applied(tmp_path_factory):
    """One applied repo for the module: `feast apply` is slow, and changing what the
    sources hold needs no new apply, only new Parquet files."""
    settings = isolated(tmp_path_factory.mktemp("feast"))
    write_sources(build_feature_sources(tiny_crm()), settings.sources_dir)
    apply_repo(settings)
    return settings


def test_apply_without_sources_says_what_to_do(isolated_settings):
    with pytest.raises(FeatureStoreError, match="leadscore ingest"):
        apply_repo(isolated_settings)


def test_training_frame_matches_in_memory_definition_and_ignores_late_events(applied):
    crm = tiny_crm()
    frame = training_frame(applied, crm["deals"], every_days=7).frame
    entities = snapshot_entities(crm["deals"], every_days=7)
    expected = model_frame(features_as_of(build_feature_sources(crm), entities))
    pd.testing.assert_frame_equal(model_frame(frame), expected, check_exact=False, rtol=1e-9)
    assert list(frame["won"]) == list(entities["won"])

    # Late events: an activity on D2 after its close, a later stage for D1.
    late = crm["activities"].iloc[[0]].assign(activity_id="LATE", deal_id="D2", occurred_at=day(41))
    crm["activities"] = pd.concat([crm["activities"], late])
    crm["stage_history"] = pd.concat(
        [
            crm["stage_history"],
            pd.DataFrame({"deal_id": ["D1"], "stage": ["committed"], "entered_at": [day(59)]}),
        ]
    )
    write_sources(build_feature_sources(crm), applied.sources_dir)
    try:
        again = training_frame(applied, crm["deals"], every_days=7).frame
    finally:
        write_sources(build_feature_sources(tiny_crm()), applied.sources_dir)
    before = model_frame(frame)[frame["event_timestamp"] < day(59)]
    after = model_frame(again)[again["event_timestamp"] < day(59)]
    pd.testing.assert_frame_equal(before, after)
    assert (model_frame(again)[again["event_timestamp"] >= day(59)]["stage_index"] == 3).all()


def test_feast_window_counts_equal_their_definition_at_and_around_every_expiry(applied):
    """Feast's point-in-time join of the cumulative counts and their lagged views gives
    the activities in (q - w, q], as counted one by one, at each activity's second, at
    its window's end and one second before it, and at random moments."""
    crm = window_crm()
    moments = window_moments(crm["activities"])
    write_sources(build_feature_sources(crm), applied.sources_dir)
    try:
        store = open_store(applied)
        joined = store.get_historical_features(
            entity_df=moments.assign(as_of=moments["event_timestamp"], _row=range(len(moments))),
            features=store.get_feature_service(applied.feature_service),
        ).to_df()
    finally:
        write_sources(build_feature_sources(tiny_crm()), applied.sources_dir)
    joined = joined.sort_values("_row").reset_index(drop=True)
    expected = brute_force_window_counts(crm["activities"], moments)
    got = joined[list(WINDOW_COUNT_COLUMNS)].astype("float64")
    pd.testing.assert_frame_equal(got, expected)


def _online_equals_offline(settings, when, full=False):
    crm = tiny_crm()
    materialize(settings, when.to_pydatetime(), full=full)
    deal_ids = ["D1", "D3", "D4"]
    store = open_store(settings)
    online = online_features(store, settings.feature_service, deal_ids, when.to_pydatetime())
    deals = crm["deals"].set_index("deal_id").loc[deal_ids].reset_index()
    ent = pd.DataFrame(
        {
            "deal_id": deal_ids,
            "account_id": deals["account_id"],
            "owner_id": deals["owner_id"],
            "event_timestamp": when,
        }
    )
    offline = model_frame(features_as_of(build_feature_sources(crm), ent))
    pd.testing.assert_frame_equal(model_frame(online), offline, check_exact=False, rtol=1e-9)


def test_online_path_gives_the_training_values_sqlite(applied):
    """Same deal, same moment: materialized values plus request-time features equal
    the training definition."""
    _online_equals_offline(applied, day(57))
    unknown = online_features(
        open_store(applied), applied.feature_service, ["NOPE"], day(57).to_pydatetime()
    )
    assert unknown["n_activities"].isna().all()


@contextmanager
def private_redis(applied, db: int) -> Iterator[tuple[Any, Any]]:
    """``applied`` with its online store on Redis database ``db`` (a private database
    keeps the test away from the demo's keys), flushed before and after; and a client."""
    require_service("Redis", 6379)
    import redis

    settings = dataclasses.replace(
        applied, feature_store_yaml="feature_store.redis.yaml", redis=f"localhost:6379,db={db}"
    )
    client = redis.Redis(host="localhost", port=6379, db=db)
    client.flushdb()
    try:
        yield settings, client
    finally:
        client.flushdb()


@pytest.mark.services
def test_online_path_gives_the_training_values_redis(applied):
    with private_redis(applied, db=13) as (settings, client):
        # Full: the shared registry already records a materialization into SQLite.
        _online_equals_offline(settings, day(57), full=True)
        assert client.dbsize() > 0, "nothing was written to Redis"


def _lookups_while_materializing(settings) -> tuple[int, list[str]]:
    """Lookups as the service makes them (its :class:`~serving.online.OnlineStore`, a
    store of its own) in a loop while ``materialize`` reloads every view: how many
    answered, and the failures."""
    online = OnlineStore(settings, deadline=30)
    when = day(57).to_pydatetime()

    def lookup(store):
        return online_features(store, settings.feature_service, ["D1", "D3"], when)

    online.run(lookup)  # opened, registry read, before materialize starts
    done, answered, failures = threading.Event(), [0], []

    def loop():
        while not done.is_set():
            try:
                online.run(lookup)
                answered[0] += 1
            except StoreUnavailable as exc:
                failures.append(str(exc))
                time.sleep(RETRY_SECONDS)  # the store counts as down until a retry
            time.sleep(0.005)

    reader = threading.Thread(target=loop, daemon=True)
    reader.start()
    try:
        materialize(settings, when, full=True)
    finally:
        done.set()
        reader.join(timeout=60)
    return answered[0], failures


@pytest.mark.parametrize(
    "online_store", ["sqlite", pytest.param("redis", marks=pytest.mark.services)]
)
def test_lookups_answer_while_materialize_runs(applied, online_store):
    """`leadscore retrain` materializes beside a serving service (issue 16): Feast marks
    each view MATERIALIZING in the registry, which the service re-reads at every change,
    and by default refuses lookups of a view in that state; the registry file is emptied
    before each rewrite by Feast's own store. Neither may fail a lookup."""
    with (
        private_redis(applied, db=12) if online_store == "redis" else nullcontext((applied, None))
    ) as (settings, _):
        materialize(settings, day(57).to_pydatetime(), full=True)  # values to serve
        answered, failures = _lookups_while_materializing(settings)
    assert not failures, failures[:3]
    assert answered >= 3  # the lookups did run beside the materialization


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """A repo applied on a 300-deal synthetic CRM: enough deals for several chunks, every
    view with rows."""
    settings = isolated(tmp_path_factory.mktemp("feast_synthetic"))
    crm = generate_crm(300, seed=5, as_of=pd.Timestamp("2026-06-01", tz="UTC"))
    write_sources(build_feature_sources(crm.tables), settings.sources_dir)
    apply_repo(settings)
    return settings, crm.tables["deals"]


@pytest.mark.parametrize("shuffled", [False, True], ids=["deals by id", "deals shuffled"])
def test_a_training_frame_joined_in_chunks_of_deals_is_the_one_joined_at_once(synthetic, shuffled):
    """Chunks are ranges of deal ids: with the deals in another order, the rows are put
    back in the entities' order."""
    settings, deals = synthetic
    if shuffled:
        deals = deals.sample(frac=1.0, random_state=1)
    at_once = training_frame(dataclasses.replace(settings, feast_chunk_deals=0), deals).frame
    chunks = deal_chunks(at_once["deal_id"], 40)
    assert len(chunks) > 3
    chunked = training_frame(dataclasses.replace(settings, feast_chunk_deals=40), deals).frame
    # Same rows in the same order, every value and type.
    pd.testing.assert_frame_equal(chunked, at_once, check_exact=True)


def test_trains_canonical_frame_built_from_the_chunks_is_the_joined_frames(synthetic):
    """``leadscore train`` builds its canonical frame from the join's chunks as they come
    (:func:`training.data.canonical_from_parts`): the canonical frame of the frame joined
    at once, every value and type (deals shuffled, so the chunks are not in the entities'
    order)."""
    settings, deals = synthetic
    deals = deals.sample(frac=1.0, random_state=3)
    at_once = canonical(
        training_frame(dataclasses.replace(settings, feast_chunk_deals=0), deals).frame
    )
    tp = training_parts(dataclasses.replace(settings, feast_chunk_deals=40), deals)
    assert len(deal_chunks(tp.entities["deal_id"], 40)) > 3
    from_parts = canonical_from_parts(tp.entities, tp.parts, tp.attributes)
    pd.testing.assert_frame_equal(from_parts, at_once, check_exact=True)


def test_a_training_set_written_a_chunk_at_a_time_holds_the_frames_rows(synthetic, tmp_path):
    """``leadscore training-set`` writes each chunk to the file as it comes: the rows and
    types of the frame written at once (deals shuffled: the file is then in ranges of ids)."""
    settings, deals = synthetic
    deals = deals.sample(frac=1.0, random_state=2)
    frame = training_frame(dataclasses.replace(settings, feast_chunk_deals=0), deals).frame
    frame.to_parquet(tmp_path / "at_once.parquet", index=False)
    chunked = dataclasses.replace(settings, feast_chunk_deals=40)
    written = write_training_set(chunked, deals, tmp_path / "chunks.parquet")
    keys = ["deal_id", "event_timestamp"]
    at_once = pd.read_parquet(tmp_path / "at_once.parquet").sort_values(keys)
    back = pd.read_parquet(written.path).sort_values(keys)
    pd.testing.assert_frame_equal(
        back.reset_index(drop=True), at_once.reset_index(drop=True), check_exact=True
    )
    assert (written.snapshots, written.deals) == (len(frame), frame["deal_id"].nunique())
    assert written.win_rate == pytest.approx(frame["won"].mean())
    assert (written.first, written.last) == (frame[keys[1]].min(), frame[keys[1]].max())


def _online_rows(path, empty: bool = False) -> list[tuple]:
    """Every row of every table of a SQLite online store, but when it was written; with
    ``empty``, the tables are emptied after the reading."""
    with sqlite3.connect(path) as db:
        tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        rows = sorted(
            (t, *row)
            for t in tables
            for row in db.execute(f"SELECT entity_key, feature_name, value, event_ts FROM {t}")
        )
        for t in tables if empty else ():
            db.execute(f"DELETE FROM {t}")
    return rows


def _feast_default_config(settings) -> Any:
    """``settings`` with a copy of its ``feature_store*.yaml`` that leaves materialization to
    Feast's defaults: every row pulled and the latest kept in pandas, written at once, by
    Feast's own local engine (rows in the order it keeps them)."""
    repo = settings.feature_repo
    config = yaml.safe_load((repo / settings.feature_store_yaml).read_text())
    assert config["materialization"]["pull_latest_features"] is True
    assert config["batch_engine"]["type"] == ENGINE_TYPE
    del config["materialization"], config["batch_engine"]
    name = f"default.{settings.feature_store_yaml}"
    (repo / name).write_text(yaml.safe_dump(config))
    return dataclasses.replace(settings, feature_store_yaml=name)


#: Before the source's last rows: some rows come later.
MATERIALIZED_TO = pd.Timestamp("2026-03-01", tz="UTC").to_pydatetime()


def test_materializing_the_latest_rows_loads_what_all_rows_load(synthetic):
    """The configured materialization (DuckDB keeps each key's latest row, written in
    batches, in key order) leaves the online store Feast's default (every row, latest kept
    in pandas, written at once in its order) leaves, byte for byte; and the registry
    records every view's load, as Feast does."""
    settings, _ = synthetic
    materialize(_feast_default_config(settings), MATERIALIZED_TO, full=True)
    online = settings.feature_repo / "data" / "online_store.db"
    expected = _online_rows(online, empty=True)
    assert len(expected) > 10_000
    materialize(settings, MATERIALIZED_TO, full=True)
    assert _online_rows(online) == expected
    views = [v for v in open_store(settings).list_feature_views() if v.online]
    assert len(views) > 2
    for view in views:
        assert view.most_recent_end_time == MATERIALIZED_TO, view.name
        assert view.state.name == "AVAILABLE_ONLINE", view.name


def _redis_contents(client) -> dict[bytes, dict[bytes, bytes]]:
    """Every hash of a Redis database: Feast's key of an entity, its fields (each feature's
    value, each view's event time) and their bytes."""
    return {key: client.hgetall(key) for key in client.scan_iter(count=1000)}


@pytest.mark.services
def test_materializing_into_redis_loads_what_feasts_default_loads(synthetic):
    """The same on Redis, the production store: every key, field and byte, and the values
    `get_online_features` answers for a sample of deals."""
    settings, deals = synthetic
    with (
        private_redis(settings, db=10) as (default, default_client),
        private_redis(settings, db=11) as (configured, configured_client),
    ):
        default = _feast_default_config(default)
        materialize(default, MATERIALIZED_TO, full=True)
        materialize(configured, MATERIALIZED_TO, full=True)
        expected = _redis_contents(default_client)
        assert len(expected) > 300
        assert _redis_contents(configured_client) == expected
        sample = sorted(deals["deal_id"])[::7]
        when = MATERIALIZED_TO
        pd.testing.assert_frame_equal(
            online_features(open_store(configured), settings.feature_service, sample, when),
            online_features(open_store(default), settings.feature_service, sample, when),
            check_exact=True,
        )
