"""Window counts from cumulative counts: one source row per activity moment, and the
counts in (q - w, q] exactly as their definition, at and around every window's end."""

from __future__ import annotations

import numpy as np
import pandas as pd

from leadscore.features.catalog import WINDOW_COUNT_COLUMNS
from leadscore.features.deal_state import Queries, activity_at
from leadscore.features.featurize import (
    LAGGED_VIEWS,
    TS,
    _activity_events,
    activity_source,
    build_feature_sources,
    features_as_of,
)
from tests.crm_fixture import brute_force_window_counts, window_crm, window_moments


def test_the_activity_source_has_one_row_per_deal_and_activity_second():
    crm = window_crm()
    source = activity_source(crm["activities"], crm["contacts"])
    seconds = crm["activities"].assign(at=crm["activities"]["occurred_at"].dt.ceil("s"))
    expected = seconds[["deal_id", "at"]].drop_duplicates().sort_values(["deal_id", "at"])
    assert len(source) == len(expected) == len(crm["activities"]) - 2  # two shared seconds
    assert list(zip(source["deal_id"], source[TS], strict=True)) == list(
        zip(expected["deal_id"], expected["at"], strict=True)
    )
    for lag in LAGGED_VIEWS:  # each lagged view's stamp: the row's moment plus its window
        assert (source[lag.timestamp] - source[TS] == pd.Timedelta(days=lag.days)).all()


def test_window_counts_equal_their_definition_at_and_around_every_expiry():
    crm = window_crm()
    moments = window_moments(crm["activities"])
    assert len(moments) > 120
    expected = brute_force_window_counts(crm["activities"], moments)
    joined = features_as_of(build_feature_sources(crm), moments)
    pd.testing.assert_frame_equal(joined[list(WINDOW_COUNT_COLUMNS)], expected)
    # ... and as the scoring service counts them, with the kernel at each moment.
    deal_cat, events = _activity_events(crm["activities"], crm["contacts"])
    code = pd.Index(deal_cat.categories).get_indexer(moments["deal_id"])
    seconds = moments[TS].to_numpy(dtype="datetime64[us]").astype(np.int64) // 1_000_000
    order = np.lexsort((seconds, code))
    state = activity_at(events, Queries(code[order], seconds[order]), len(deal_cat.categories))
    served = pd.DataFrame({c: state[c] for c in WINDOW_COUNT_COLUMNS}, index=order).sort_index()
    pd.testing.assert_frame_equal(served, expected)
