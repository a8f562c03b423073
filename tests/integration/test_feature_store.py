"""Feast for real: apply, historical retrieval, materialization, online retrieval."""

from __future__ import annotations


import pandas as pd
import pytest

from leadscore.featurize import build_feature_sources, features_as_of, model_frame, snapshot_entities
from pipelines.feature_store import (
    FeatureStoreError,
    apply_repo,
    materialize,
    online_features,
    training_frame,
    write_sources,
)
from tests.conftest import require_service
from tests.crm_fixture import day, tiny_crm

pytestmark = pytest.mark.integration


def _prepare(settings, tables):
    write_sources(build_feature_sources(tables), settings.sources_dir)
    apply_repo(settings)


def test_apply_without_sources_says_what_to_do(isolated_settings):
    with pytest.raises(FeatureStoreError, match="leadscore ingest"):
        apply_repo(isolated_settings)


def test_training_frame_matches_in_memory_definition_and_ignores_late_events(isolated_settings):
    crm = tiny_crm()
    _prepare(isolated_settings, crm)
    frame = training_frame(isolated_settings, crm["deals"], every_days=7).frame
    entities = snapshot_entities(crm["deals"], every_days=7)
    expected = model_frame(features_as_of(build_feature_sources(crm), entities))
    pd.testing.assert_frame_equal(model_frame(frame), expected, check_exact=False, rtol=1e-9)
    assert list(frame["won"]) == list(entities["won"])

    # Late events: an activity on D2 after its close, a later stage for D1, a new close.
    late = crm["activities"].iloc[[0]].assign(activity_id="LATE", deal_id="D2", occurred_at=day(41))
    crm["activities"] = pd.concat([crm["activities"], late])
    crm["stage_history"] = pd.concat(
        [crm["stage_history"], pd.DataFrame({"deal_id": ["D1"], "stage": ["committed"], "entered_at": [day(59)]})]
    )
    _prepare(isolated_settings, crm)
    again = training_frame(isolated_settings, crm["deals"], every_days=7).frame
    before = model_frame(frame)[frame["event_timestamp"] < day(59)]
    after = model_frame(again)[again["event_timestamp"] < day(59)]
    pd.testing.assert_frame_equal(before, after)


def _online_equals_offline(settings, crm, when):
    materialize(settings, when.to_pydatetime())
    deal_ids = ["D1", "D3", "D4"]
    online = online_features(settings, deal_ids, when.to_pydatetime())
    deals = crm["deals"].set_index("deal_id").loc[deal_ids].reset_index()
    ent = pd.DataFrame({"deal_id": deal_ids, "account_id": deals["account_id"], "owner_id": deals["owner_id"],
                        "event_timestamp": when})
    offline = model_frame(features_as_of(build_feature_sources(crm), ent))
    pd.testing.assert_frame_equal(model_frame(online), offline, check_exact=False, rtol=1e-9)


def test_online_path_gives_the_training_values_sqlite(isolated_settings):
    crm = tiny_crm()
    _prepare(isolated_settings, crm)
    _online_equals_offline(isolated_settings, crm, day(57))
    assert online_features(isolated_settings, ["NOPE"], day(57).to_pydatetime())["n_activities"].isna().all()


@pytest.mark.services
def test_online_path_gives_the_training_values_redis(isolated_settings, monkeypatch):
    require_service("Redis", 6379)
    # A private Redis database keeps the test away from the demo's keys; flushed after.
    monkeypatch.setenv("LEADSCORE_REDIS", "localhost:6379,db=13")
    settings = type(isolated_settings)(**{**isolated_settings.__dict__,
                                          "feature_store_yaml": "feature_store.redis.yaml"})
    crm = tiny_crm()
    _prepare(settings, crm)
    try:
        _online_equals_offline(settings, crm, day(57))
    finally:
        import redis

        redis.Redis(host="localhost", port=6379, db=13).flushdb()
