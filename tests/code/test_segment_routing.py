"""Segment models inside the scoring model (issue 16): routing, scores, reasons, storage.

Two tiny boosters on made-up rows: the global one reads ``x`` one way, the partner
channel's the other way, so a row scored by the wrong booster shows at once.
"""

from __future__ import annotations

from pathlib import Path

import lightgbm as lgb
import mlflow.lightgbm
import numpy as np
import pandas as pd
import pytest

from leadscore.config import METADATA_KEY
from leadscore.model.explain import Explainer
from leadscore.model.registry import load_model_folder, segment_booster_files
from leadscore.model.scoring_model import (
    GLOBAL,
    Calibration,
    ScoringModel,
    SegmentModel,
    SegmentRule,
)
from training.segments import _decision, segment_rules, segment_tags

FEATURES = ["channel", "employee_count", "stage_index", "deal_age_days"]
CATEGORIES = {"channel": ["partner", "web"]}
PARTNER = SegmentRule("channel", "partner", "channel", category="partner")
MID_SIZE = SegmentRule("size_band", "50-249", "employee_count", low=50.0, high=250.0)


def booster(sign: float, seed: int) -> lgb.Booster:
    """Trees on ``deal_age_days``: wins rise with it (``sign`` +1) or fall (-1)."""
    rng = np.random.default_rng(seed)
    X = np.column_stack(
        [
            rng.integers(0, 2, 600),
            rng.uniform(1, 2000, 600),
            rng.integers(0, 4, 600),
            rng.uniform(0, 100, 600),
        ]
    ).astype(np.float64)
    y = (sign * (X[:, 3] - 50) + rng.normal(0, 10, 600) > 0).astype(int)
    params = {"objective": "binary", "num_leaves": 4, "verbose": -1, "seed": seed, "num_threads": 1}
    return lgb.train(params, lgb.Dataset(X, y, feature_name=FEATURES), num_boost_round=20)


@pytest.fixture(scope="module")
def routed() -> ScoringModel:
    return ScoringModel(
        booster=booster(+1, 0),
        features=FEATURES,
        categories=CATEGORIES,
        calibration=Calibration("platt", a=0.5, b=0.1),
        segment_models=(
            SegmentModel(PARTNER, booster(-1, 1), Calibration("platt", a=2.0, b=-0.3), {"n": 1}),
            SegmentModel(MID_SIZE, booster(+1, 2), Calibration("none")),
        ),
    )


def deals() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "channel": ["partner", "web", None, "web", "partner", "web", "web"],
            "employee_count": [100.0, 10.0, 100.0, 249.0, 5000.0, 250.0, np.nan],
            "stage_index": [1.0, 2.0, 0.0, 1.0, 3.0, 1.0, 1.0],
            "deal_age_days": [10.0, 10.0, 90.0, 40.0, 80.0, 60.0, 20.0],
        }
    )


def test_a_deal_goes_to_the_first_kept_segment_it_falls_in_else_to_the_global_model(routed):
    X = routed.encode(deals())
    # partner (and mid-size: the first rule wins), global, mid-size (unknown channel),
    # mid-size (249 employees), partner, global (250: the range is half open), global (no size)
    assert routed.route(X).tolist() == [0, GLOBAL, 1, 1, 0, GLOBAL, GLOBAL]
    assert routed.segment_names(X) == [
        "channel=partner",
        None,
        "size_band=50-249",
        "size_band=50-249",
        "channel=partner",
        None,
        None,
    ]


def test_probabilities_and_contributions_are_those_of_the_model_that_scored_the_deal(routed):
    X = routed.encode(deals())
    routes = routed.route(X)
    global_only = ScoringModel(routed.booster, FEATURES, CATEGORIES, routed.calibration)
    expected = global_only.probability(X)
    contributions = global_only.contributions(X)
    for k, segment in enumerate(routed.segment_models):
        rows = routes == k
        alone = ScoringModel(segment.booster, FEATURES, CATEGORIES, segment.calibration)
        expected[rows] = alone.probability(X[rows])
        contributions[rows] = alone.contributions(X[rows])
    np.testing.assert_allclose(routed.probability(X), expected)
    np.testing.assert_allclose(routed.contributions(X), contributions)
    np.testing.assert_allclose(routed.contributions(X).sum(axis=1), routed.raw_score(X))
    # The partner booster reads age the other way: routing is what changes the number.
    assert not np.allclose(
        routed.probability(X)[routes == 0], global_only.probability(X)[routes == 0]
    )


def test_the_explainer_scores_and_explains_with_the_routed_model(routed):
    frame = deals()
    columns = {c: frame[c].tolist() for c in FEATURES}
    explained = Explainer(routed).explain(columns)
    np.testing.assert_allclose(
        [e["probability"] for e in explained], routed.probability(routed.encode(frame))
    )


def test_a_rule_matches_only_its_category_or_range(routed):
    X = routed.encode(deals())
    assert routed.matches(PARTNER, X).tolist() == [True, False, False, False, True, False, False]
    unknown = SegmentRule("channel", "event", "channel", category="event")  # no such category
    assert not routed.matches(unknown, X).any()
    stage = SegmentRule("stage", "qualified", "stage_index", low=1.0, high=2.0)
    assert routed.matches(stage, X).tolist() == [True, False, False, True, False, True, True]


def test_the_dormant_calibration_reads_the_global_trees_alone(routed):
    dormant = routed.recalibrated(Calibration("none"))
    assert dormant.segment_models == () and routed.segment_models


def test_segment_models_round_trip_through_an_mlflow_model_folder(routed, tmp_path: Path):
    folder = tmp_path / "model"
    mlflow.lightgbm.save_model(
        routed.booster,
        str(folder),
        metadata={METADATA_KEY: routed.metadata()},
        extra_files=segment_booster_files(routed, tmp_path),
        pip_requirements=["lightgbm"],  # no requirement inference: seconds saved
    )
    loaded = load_model_folder(folder, "test")
    X = routed.encode(deals())
    assert [m.rule for m in loaded.segment_models] == [PARTNER, MID_SIZE]
    assert loaded.segment_models[0].figures == {"n": 1}
    assert loaded.segment_models[0].calibration == routed.segment_models[0].calibration
    np.testing.assert_allclose(loaded.probability(X), routed.probability(X))
    np.testing.assert_allclose(loaded.contributions(X), routed.contributions(X))


def test_candidate_rules_cover_every_channel_industry_size_band_and_open_stage(routed):
    names = [r.name for r in segment_rules(routed)]
    assert names == [
        "channel=partner",
        "channel=web",
        "size_band=<50",
        "size_band=50-249",
        "size_band=250-999",
        "size_band=1000+",
        "stage=lead",
        "stage=qualified",
        "stage=solution",
        "stage=committed",
    ]


def diff(auc: tuple[float, float], log_loss: tuple[float, float], ece: tuple[float, float]):
    return {
        k: {"difference": (lo + hi) / 2, "low": lo, "high": hi}
        for k, (lo, hi) in {"roc_auc": auc, "log_loss": log_loss, "ece": ece}.items()
    }


@pytest.mark.parametrize(
    ("auc", "log_loss", "ece", "decision"),
    [
        ((0.01, 0.05), (-0.02, 0.01), (-0.01, 0.01), "kept"),
        ((-0.01, 0.05), (-0.02, -0.01), (-0.01, 0.01), "not kept"),  # gain within noise
        ((0.01, 0.05), (0.001, 0.02), (-0.01, 0.01), "not kept"),  # log loss worse
        ((0.01, 0.05), (-0.02, 0.01), (0.001, 0.02), "not kept"),  # ECE worse
    ],
)
def test_a_segment_model_is_kept_only_when_it_ranks_better_and_calibrates_no_worse(
    auc, log_loss, ece, decision
):
    assert _decision(diff(auc, log_loss, ece))[0] == decision


def test_the_registry_tags_name_the_routing_in_order():
    table = {
        "candidates": 3,
        "kept": [
            {
                "segment": "channel=partner",
                "rule": PARTNER.to_dict(),
                "segment_minus_global": diff((0.01, 0.05), (-0.1, 0.0), (-0.1, 0.0)),
            }
        ],
    }
    tags = segment_tags(table)
    assert tags["segments.kept"] == "channel=partner"
    assert tags["segments.candidates"] == "3"
    assert '"category":"partner"' in tags["segments.routing"]
    assert segment_tags({"candidates": 3, "kept": []})["segments.kept"] == "none"
