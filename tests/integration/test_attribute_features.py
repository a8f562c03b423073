"""Custom attributes through Feast for real: ingest an export declaring them, `feast apply`
declares exactly the stored ones, training and online retrieval both carry them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leadscore.crm.attributes import Attribute, feature_attributes, write_attributes
from leadscore.crm.contract import WON
from leadscore.crm.ingest import load_stored
from leadscore.crm.synth import generate_crm, write_export
from leadscore.features.featurize import (
    build_feature_sources,
    features_as_of,
    model_frame,
    scoring_entities,
    snapshot_entities,
)
from leadscore.features.store import (
    apply_repo,
    materialize,
    online_features,
    open_store,
    training_frame,
)
from pipelines.steps import ingest
from tests.conftest import isolated

pytestmark = pytest.mark.integration

AS_OF = pd.Timestamp("2025-06-30", tz="UTC")
ATTRIBUTES = (
    Attribute("segment", "deals", "categorical", "creation"),
    Attribute("discount_pct", "deals", "numeric", "anytime", label="Discount %"),
    Attribute("size_band", "accounts", "categorical", "creation"),
    Attribute("loss_reason", "deals", "categorical", "after_close"),
)
FEATURES = ["attr_segment", "attr_discount_pct", "attr_size_band"]


@pytest.fixture(scope="module")
def applied(tmp_path_factory):
    root = tmp_path_factory.mktemp("attributes")
    settings = isolated(root)
    crm = generate_crm(200, seed=4, as_of=AS_OF)
    deals = crm.tables["deals"].copy()
    rng = np.random.default_rng(2)
    deals["segment"] = rng.choice(["Enterprise", "SMB", ""], len(deals))
    deals["discount_pct"] = rng.uniform(0, 40, len(deals)).round(1)
    deals["loss_reason"] = np.where(deals["status"].eq(WON), None, "price")
    accounts = crm.tables["accounts"].copy()
    accounts["size_band"] = rng.choice(["Large", "Small"], len(accounts))
    crm.tables.update(deals=deals, accounts=accounts)
    export = root / "export"
    write_export(crm, export, "csv")
    write_attributes(export, ATTRIBUTES)
    ingest(export, settings, now=AS_OF)
    apply_repo(settings)
    return settings


def test_feast_declares_exactly_the_stored_attributes_known_before_close(applied):
    view = open_store(applied).get_feature_view("deal_attributes")
    assert [f.name for f in view.features] == FEATURES


def test_training_frame_carries_the_attributes_as_defined_in_memory(applied):
    tables = load_stored(applied.crm_dir)
    tf = training_frame(applied, tables["deals"], every_days=14)
    assert [a.name for a in tf.attributes] == ["segment", "discount_pct", "size_band"]
    entities = snapshot_entities(tables["deals"], 14)
    sources = build_feature_sources(tables, attributes=tf.attributes)
    expected = model_frame(features_as_of(sources, entities), tf.attributes)
    got = model_frame(tf.frame, tf.attributes)
    pd.testing.assert_frame_equal(got[FEATURES], expected[FEATURES], check_exact=False, rtol=1e-9)
    assert got["attr_segment"].isin(["enterprise", "smb"]).any()
    assert got["attr_segment"].isna().any()  # an empty cell is missing, not a category


def test_online_store_serves_the_attributes_a_model_was_trained_with(applied):
    materialize(applied, AS_OF.to_pydatetime(), full=True)
    tables = load_stored(applied.crm_dir)
    deals = tables["deals"].head(20)
    ids = deals["deal_id"].astype(str).tolist()
    attributes = feature_attributes(ATTRIBUTES)
    online = online_features(open_store(applied), applied.feature_service, ids, AS_OF, attributes)
    sources = build_feature_sources(tables, attributes=attributes)
    offline = model_frame(features_as_of(sources, scoring_entities(deals, AS_OF)), attributes)
    pd.testing.assert_frame_equal(
        model_frame(online, attributes)[FEATURES], offline[FEATURES], check_exact=False, rtol=1e-9
    )
