"""Versioned feature sets. Models record the service they were trained on
(MLflow tag ``feast.feature_service``); change a set by adding ``lead_scoring_v2``,
never by editing a released one.
"""

from feast import FeatureService
from feature_views import (
    account_history,
    deal_activity,
    deal_contacts,
    deal_profile,
    deal_revival,
    deal_stage,
    owner_history,
)
from on_demand_views import deal_timing, revival_timing

from leadscore.features.catalog import features_of


def _model_inputs(view):
    return view[[f.name for f in features_of(view.name)]]


lead_scoring_v1 = FeatureService(
    name="lead_scoring_v1",
    features=[
        _model_inputs(deal_profile),
        _model_inputs(deal_stage),
        _model_inputs(deal_contacts),
        _model_inputs(deal_activity),
        deal_timing,
        _model_inputs(account_history),
        _model_inputs(owner_history),
    ],
    description="Deal win-probability features: profile, funnel, people, engagement, timing, history.",
    tags={"model": "lead_scorer"},
)

revival_v1 = FeatureService(
    name="revival_v1",
    features=[
        _model_inputs(deal_profile),
        _model_inputs(deal_contacts),
        _model_inputs(account_history),
        _model_inputs(deal_revival),
        revival_timing,
    ],
    description="Lost-deal revival features: profile, people, account history, the loss and "
    "the engagement since it, time since the loss.",
    tags={"model": "revival"},
)
