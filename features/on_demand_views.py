"""Request-time features: values that depend on the moment of scoring.

The transformation is :func:`leadscore.features.featurize.request_time_features`, which hands
the stored times to :func:`leadscore.features.deal_state.timing_features`, the function the
scoring service runs for deals sent in full, so training and serving compute deal age,
days in stage and recency identically; and to
:func:`leadscore.features.featurize.window_counts`: activities in the last 7, 30 and 90
days, the cumulative counts of ``deal_activity`` at the moment less those of its lagged
views. ``revival_timing`` does the same for a lost deal
(days since the loss and since the last contact after it), through
:func:`leadscore.features.featurize.revival_request_time_features`.
"""

import pandas as pd
from data_sources import scoring_request
from feast import Field
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64
from feature_views import (
    deal_activity,
    deal_activity_7d_ago,
    deal_activity_30d_ago,
    deal_activity_90d_ago,
    deal_profile,
    deal_revival,
    deal_stage,
)

from leadscore.features.catalog import features_of


@on_demand_feature_view(
    sources=[
        deal_profile,
        deal_stage,
        deal_activity,
        deal_activity_7d_ago,
        deal_activity_30d_ago,
        deal_activity_90d_ago,
        scoring_request,
    ],
    # No field descriptions here: Feast checks this schema against the one it infers
    # by running the function, field by field including the (empty) description.
    schema=[Field(name=f.name, dtype=Float64) for f in features_of("deal_timing")],
    mode="pandas",
    description="Deal age, days in stage, stalls, recency and activity counts in the last "
    "7, 30 and 90 days, as of the moment of scoring.",
)
def deal_timing(inputs: pd.DataFrame) -> pd.DataFrame:
    # Imported here so that Feast, which serialises this function into the registry,
    # stores a reference to the installed package rather than a copy of its code.
    from leadscore.features.featurize import request_time_features

    return request_time_features(inputs)


@on_demand_feature_view(
    sources=[deal_revival, scoring_request],
    schema=[Field(name=f.name, dtype=Float64) for f in features_of("revival_timing")],
    mode="pandas",
    description="Days since the loss and since the last contact after it, as of scoring.",
)
def revival_timing(inputs: pd.DataFrame) -> pd.DataFrame:
    from leadscore.features.featurize import revival_request_time_features

    return revival_request_time_features(inputs)
