"""The catalog carries each feature's policy; the code that applies it names no feature."""

from __future__ import annotations

import inspect
import re

import pytest

import leadscore.model.explain as explain
import leadscore.model.reason_audit as reason_audit
import leadscore.model.reasons as reasons
import training.behaviour as behaviour
from leadscore.crm.attributes import Attribute
from leadscore.features.catalog import (
    ACTIONABLE_GROUPS,
    FEATURES,
    FEATURES_BY_NAME,
    HIDDEN_GROUPS,
    REVIVAL_FEATURES,
    Feature,
    Levels,
    Phrasing,
    attribute_feature,
)
from leadscore.model.explain import reason_feature
from leadscore.model.reasons import reason_text, reason_tooltip
from tests.model.test_behaviour import EXPECTED_DIRECTIONS
from training.result import TrainConfig


@pytest.mark.parametrize("module", [reasons, explain, reason_audit, behaviour])
def test_policy_code_names_no_feature(module):
    """Phrasing and checks come from catalog entries: a feature name in this code would
    be a second place to change when the feature changes."""
    source = inspect.getsource(module)
    named = {f.name for f in FEATURES if re.search(rf"[\"']{f.name}[\"']", source)}
    assert named == set()


def test_track_records_are_the_hidden_reasons_and_activity_is_engagement():
    """The owner's and the account's earlier deals (and the account's earlier comebacks)
    are hidden; everything else is shown, what a rep does on the deal as engagement."""
    for f in (*FEATURES, *REVIVAL_FEATURES):
        record = (
            f.view in ("account_history", "owner_history") or f.name == "account_revivals_before"
        )
        assert (f.reason_group in HIDDEN_GROUPS) == record, f.name
    assert HIDDEN_GROUPS == ("track record",)
    assert {f.reason_group for f in FEATURES if f.name.startswith("act_")} == {"engagement"}
    assert {f.reason_group for f in FEATURES if f.view == "deal_profile"} == {"deal fact"}
    assert "deal fact" not in ACTIONABLE_GROUPS and "track record" not in ACTIONABLE_GROUPS
    # A custom attribute says nothing a rep does: a fact, shown after the actionable ones.
    tier = attribute_feature(Attribute("tier", "deals", "categorical", known="creation"))
    assert tier.reason_group == "deal fact"


def test_training_constrains_exactly_the_directed_features():
    names = [f.name for f in FEATURES]
    constraints = TrainConfig().lgb_params(names)["monotone_constraints"]
    assert dict(zip(names, constraints, strict=True)) == {f.name: f.monotone for f in FEATURES}
    assert {n: c for n, c in zip(names, constraints, strict=True) if c} == EXPECTED_DIRECTIONS


def test_a_new_feature_is_phrased_by_its_entry_alone():
    demo = Feature(
        "days_since_demo",
        "deal_timing",
        "numeric",
        "days since the last demo",
        "Days since the last demo.",
        unit="days",
        phrasing=Phrasing(
            text="Last demo {value} ago",
            below=(1.0, "Demo in the last day"),
            condition="whose last demo was {value} ago",
            missing=("No demo yet", "with no demo yet"),
        ),
    )
    assert reason_text(demo, 12.4) == "Last demo 12 days ago"
    assert reason_text(demo, 0.2) == "Demo in the last day"
    assert reason_text(demo, None) == "No demo yet"
    stats = {
        "win_rate": 0.3,
        "numeric": {
            "days_since_demo": {
                "edges": [0.0, 7.0, 30.0, 90.0],
                "deals": [10.0, 20.0, 30.0],
                "win_rate": [0.5, 0.3, 0.1],
                "missing": {"deals": 5.0, "win_rate": 0.2},
            }
        },
    }
    assert reason_tooltip(demo, 12.4, stats) == (
        "Deals whose last demo was 7 days to 30 days ago were won 30% of the time, "
        "against 30% overall, 20 deals."
    )
    assert reason_tooltip(demo, None, stats) == (
        "Deals with no demo yet were won 20% of the time, against 30% overall, 5 deals."
    )


def test_an_ordinal_feature_names_its_levels():
    tier = Feature(
        "support_tier",
        "deal_profile",
        "numeric",
        "support tier",
        "Support tier bought.",
        levels=Levels(
            {1: "basic", 2: "plus", 3: "premium"},
            "on {low}",
            "on {low} to {high}",
            "on {low} or up",
        ),
    )
    assert reason_text(tier, 2.0) == "Support tier: plus"
    stats = {
        "win_rate": 0.3,
        "numeric": {
            "support_tier": {
                "edges": [1.0, 2.0, 3.0, 3.0],
                "deals": [10.0, 20.0, 30.0],
                "win_rate": [0.2, 0.3, 0.4],
            }
        },
    }
    assert reason_tooltip(tier, 1.0, stats).startswith("Deals on basic were won 20%")
    assert reason_tooltip(tier, 3.0, stats).startswith("Deals on premium were won 40%")


@pytest.mark.parametrize(
    ("name", "value", "text"),
    [
        ("stage_index", 2.0, "In the solution stage"),
        ("max_seniority", 4.0, "Most senior contact: director or head"),
        ("hours_awaiting_reply", 0.0, "No customer message awaiting our reply"),
        ("hours_awaiting_reply", 30.0, "Customer waiting 30 hours for our reply"),
        ("hours_awaiting_reply", 80.0, "Customer waiting 3 days for our reply"),
        ("competitor", "none", "No competitor"),
        ("competitor", "acme_crm", "Competing against acme crm"),
        ("share_inbound", 0.41, "41% of activities started by the customer"),
        ("owner_prior_won", 0.0, "Owner has no earlier wins"),
        ("days_since_last_activity", 0.4, "Activity in the last day"),
        ("stalls", None, "No stage history"),
        ("n_contacts", None, "No contacts on the deal yet"),
        ("product", "core", "Product: core"),
    ],
)
def test_catalog_phrasing(name, value, text):
    assert reason_text(FEATURES_BY_NAME[name], value) == text


def test_log_amount_is_explained_as_deal_size():
    assert reason_feature("log_amount") == "amount"
    assert reason_feature("amount") == "amount"
