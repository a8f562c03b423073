"""Expectations on the point-in-time training frame built from the stored CRM.

The deal columns are checked with the contract's own ``deals`` schema; the features with
a pandera schema read off the catalog (kind, integer, levels, unit), so a new feature
is checked by its catalog entry. The rest guards against leakage: every snapshot lies
while its deal was open, and nothing in it comes from later.
"""

from __future__ import annotations

import numpy as np
import pandera.pandas as pa
import pytest

from leadscore.crm.contract import DEALS, STAGES, WON
from leadscore.crm.ingest import table_schema
from leadscore.features.catalog import FEATURES, MODEL_FEATURES, Feature
from leadscore.features.featurize import TS
from training.data import META_COLUMNS

DEAL_COLUMNS = ["deal_id", "account_id", "created_at", "closed_at"]


def _checks(f: Feature) -> list[pa.Check]:
    """What the catalog entry promises about a feature's values."""
    if f.kind == "categorical":
        # Normalised as features store them: lower case, words joined by underscores.
        return [pa.Check.str_matches(r"^[a-z0-9]+(?:_[a-z0-9]+)*$")]
    # Counts, durations, sizes, shares and levels: none is negative.
    checks = [pa.Check.ge(0)]
    if f.integer or f.levels is not None:
        checks.append(pa.Check(lambda s: s % 1 == 0, element_wise=False, error="whole number"))
    if f.kind == "binary":
        checks.append(pa.Check.isin([0, 1]))
    if f.levels is not None:
        checks.append(pa.Check.in_range(min(f.levels.names), max(f.levels.names)))
    if f.unit == "%":
        checks.append(pa.Check.le(1))
    return checks


FEATURE_SCHEMA = pa.DataFrameSchema(
    {
        f.name: pa.Column(
            str if f.kind == "categorical" else float, checks=_checks(f), nullable=True
        )
        for f in FEATURES
    },
    strict=False,
)


def test_the_frame_has_the_meta_columns_then_the_model_features(training_frame):
    assert list(training_frame.columns) == [*META_COLUMNS, *MODEL_FEATURES]
    assert len(training_frame) > 1000


def test_deal_columns_pass_the_contract_schema(training_frame):
    schema = table_schema(DEALS).select_columns(DEAL_COLUMNS)
    schema.validate(training_frame[DEAL_COLUMNS], lazy=True)
    assert training_frame["closed_at"].notna().all()  # only closed deals teach the model


def test_features_hold_what_the_catalog_promises(training_frame):
    FEATURE_SCHEMA.validate(training_frame, lazy=True)


def test_the_feature_schema_has_teeth(training_frame):
    bad = training_frame.head(4).copy()
    bad.loc[bad.index[0], "has_economic_buyer"] = 0.5
    bad.loc[bad.index[1], "share_inbound"] = 1.5
    bad.loc[bad.index[2], "channel"] = "Paid Ads"
    bad.loc[bad.index[3], "stalls"] = -1.0
    with pytest.raises(pa.errors.SchemaErrors) as failed:
        FEATURE_SCHEMA.validate(bad, lazy=True)
    assert set(failed.value.failure_cases["column"]) == {
        "has_economic_buyer",
        "share_inbound",
        "channel",
        "stalls",
    }


def test_snapshots_lie_while_the_deal_was_open(training_frame):
    f = training_frame
    assert (f[TS] >= f["created_at"]).all() and (f[TS] < f["closed_at"]).all()
    assert (f["stage_index"] < STAGES.index("closed")).all()
    age = (f[TS] - f["created_at"]).dt.total_seconds() / 86_400
    np.testing.assert_allclose(f["deal_age_days"], age, atol=1e-6)


def test_labels_are_the_stored_outcomes(training_frame, stored):
    status = training_frame["deal_id"].map(stored["deals"].set_index("deal_id")["status"])
    assert training_frame["won"].isin([0, 1]).all()
    assert (training_frame["won"] == (status == WON)).all()


def test_track_records_count_only_deals_closed_by_the_snapshot(training_frame, stored):
    """An account's record at a snapshot never counts a deal that closed after it."""
    snaps = training_frame[["deal_id", "account_id", TS, "account_prior_closed"]].reset_index()
    deals = stored["deals"][["account_id", "closed_at"]].dropna()
    pairs = snaps.merge(deals, on="account_id")
    closed_by = (pairs["closed_at"] <= pairs[TS]).groupby(pairs["index"]).sum()
    known = snaps.set_index("index")["account_prior_closed"].fillna(0)
    assert (known <= closed_by.reindex(known.index, fill_value=0)).all()
    assert (known > 0).any()  # some records exist: the check is not vacuous
