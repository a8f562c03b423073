"""The quality summary training stores in the model: the verdict against each baseline is
decided by the paired interval, in one plain sentence, and the figures are the evaluation's."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from leadscore.crm.synth import generate_crm
from leadscore.features.catalog import model_catalog
from training.data import in_memory_frame
from training.evaluate import per_deal_rows
from training.quality import (
    BASELINE_LABELS,
    baseline_gate,
    baseline_sentence,
    compare_with_baselines,
    verdict,
)
from training.result import TrainConfig, TrainingResult
from training.train import fit_and_evaluate


def diff(d: float | None, low: float | None, high: float | None) -> dict[str, float | None]:
    return {"difference": d, "low": low, "high": high}


@pytest.mark.parametrize(
    ("baseline", "block", "difference", "expected"),
    [
        (
            "logistic regression",
            "at creation",
            diff(-0.022, -0.063, 0.015),
            "not better than logistic regression at creation: ROC AUC −0.022 [−0.063, +0.015]",
        ),
        (
            "the channel win rate",
            "at 30 days",
            diff(0.273, 0.209, 0.338),
            "better than the channel win rate at 30 days: ROC AUC +0.273 [+0.209, +0.338]",
        ),
        (
            "logistic regression",
            "at 30 days",
            diff(-0.05, -0.08, -0.01),
            "worse than logistic regression at 30 days: ROC AUC −0.050 [−0.080, −0.010]",
        ),
        (
            # An interval that only touches zero supports no margin.
            "logistic regression",
            "at creation",
            diff(0.03, 0.0, 0.06),
            "not better than logistic regression at creation: ROC AUC +0.030 [+0.000, +0.060]",
        ),
        (
            # A positive difference without an interval is not claimed as better.
            "logistic regression",
            "at creation",
            diff(0.04, None, None),
            "not better than logistic regression at creation: ROC AUC +0.040 "
            "(no interval: too few deals to resample)",
        ),
        (
            "the channel win rate",
            "at creation",
            diff(None, None, None),
            "no comparison with the channel win rate at creation: ROC AUC is undefined "
            "(the test deals have one outcome only)",
        ),
    ],
)
def test_the_sentence_says_better_only_when_the_interval_is_above_zero(
    baseline: str, block: str, difference: dict[str, float | None], expected: str
) -> None:
    assert baseline_sentence(baseline, block, difference) == expected


def test_verdicts_follow_the_side_of_zero_the_interval_is_on() -> None:
    assert verdict(diff(0.1, 0.01, 0.2)) == "better"
    assert verdict(diff(-0.1, -0.2, -0.01)) == "worse"
    assert verdict(diff(0.1, -0.01, 0.2)) == "not better"
    assert verdict(diff(-0.1, None, None)) == "not better"
    assert verdict(diff(None, None, None)) == "unknown"


def test_each_baseline_gets_a_sentence_per_block_from_the_evaluation() -> None:
    per_deal = {
        "age_days": 45.0,
        "at_creation": {
            "model_minus_baseline": {
                "logistic_regression": {
                    "roc_auc": diff(-0.022, -0.063, 0.015),
                    "log_loss": diff(0.01, -0.01, 0.03),
                },
                "channel_rate": {
                    "roc_auc": diff(0.1, 0.05, 0.15),
                    "log_loss": diff(-0.05, -0.08, -0.02),
                },
            }
        },
        "at_age": {"model_minus_baseline": {}},  # e.g. no deal old enough: left out
    }
    out = compare_with_baselines(per_deal)
    assert set(out) == set(BASELINE_LABELS)
    lr = out["logistic_regression"]
    assert "at_age" not in lr
    assert lr["at_creation"]["verdict"] == "not better"
    assert lr["at_creation"]["log_loss"] == diff(0.01, -0.01, 0.03)
    assert out["channel_rate"]["at_creation"]["sentence"] == (
        "better than the channel win rate at creation: ROC AUC +0.100 [+0.050, +0.150]"
    )


# ---------------------------------------------------------------- the baseline gate
def per_deal_of(age: dict, creation: dict) -> dict:
    """``per_deal`` with the same differences for every baseline, per block and metric."""
    return {
        "age_days": 30.0,
        **{
            block: {
                "deals": 100,
                "model_minus_baseline": {name: dict(diffs) for name in BASELINE_LABELS},
            }
            for block, diffs in (("at_age", age), ("at_creation", creation))
        },
    }


#: A model better than every baseline at 30 days and no worse at creation.
GOOD_AGE = {"roc_auc": diff(0.015, 0.008, 0.021), "log_loss": diff(-0.018, -0.025, -0.010)}
GOOD_CREATION = {"roc_auc": diff(-0.004, -0.014, 0.007), "log_loss": diff(0.0005, -0.004, 0.005)}


def test_the_gate_passes_a_margin_the_intervals_support_and_says_so() -> None:
    gate = baseline_gate(per_deal_of(GOOD_AGE, GOOD_CREATION), 0.02, 0.02)
    assert gate["passed"] and all(c["passed"] for c in gate["checks"])
    assert len(gate["checks"]) == 12  # 3 baselines x 2 blocks x 2 metrics
    assert gate["sentence"].startswith(
        "better than every baseline: per deal at 30 days, ROC AUC +0.015 [+0.008, +0.021] "
        "over logistic regression, +0.015 [+0.008, +0.021] over the channel win rate and "
        "+0.015 [+0.008, +0.021] over the stage and channel fallback"
    )
    assert "at creation, not worse than any baseline by more than 0.02" in gate["rule"]


@pytest.mark.parametrize(
    ("age", "creation", "expected"),
    [
        (
            # A positive AUC difference whose interval reaches below zero is no margin.
            {**GOOD_AGE, "roc_auc": diff(0.001, -0.016, 0.014)},
            GOOD_CREATION,
            "not better than baseline: ROC AUC at 30 days minus logistic regression "
            "+0.001 [−0.016, +0.014], needs its interval wholly above zero; ROC AUC at 30 "
            "days minus the channel win rate +0.001 [−0.016, +0.014], needs its interval "
            "wholly above zero",
        ),
        (
            # Log loss, lower is better: the whole interval must be below zero.
            {**GOOD_AGE, "log_loss": diff(-0.004, -0.014, 0.0)},
            GOOD_CREATION,
            "not better than baseline: log loss at 30 days minus logistic regression "
            "−0.004 [−0.014, +0.000], needs its interval wholly below zero",
        ),
        (
            # At creation: worse beyond the margin fails, within it does not.
            GOOD_AGE,
            {**GOOD_CREATION, "roc_auc": diff(-0.03, -0.045, -0.012)},
            "not better than baseline: ROC AUC at creation minus logistic regression "
            "−0.030 [−0.045, −0.012], needs its interval above −0.020",
        ),
        (
            # No interval (too few deals, or no resamples) cannot show a margin.
            {**GOOD_AGE, "roc_auc": diff(0.05, None, None)},
            GOOD_CREATION,
            "not better than baseline: ROC AUC at 30 days minus logistic regression "
            "+0.050 with no interval (too few deals to resample), needs its interval wholly "
            "above zero",
        ),
    ],
)
def test_the_gate_fails_without_a_supported_margin_and_names_the_figures(
    age: dict, creation: dict, expected: str
) -> None:
    gate = baseline_gate(per_deal_of(age, creation), 0.02, 0.02)
    assert not gate["passed"]
    assert gate["sentence"].startswith(expected)


def test_deals_without_an_age_are_judged_strictly_at_their_one_snapshot() -> None:
    per_deal = per_deal_of(GOOD_AGE, GOOD_AGE)
    per_deal["at_age"] = {"deals": 0, "model_minus_baseline": {}}  # no dates: no ages
    gate = baseline_gate(per_deal, 0.02, 0.02)
    assert gate["passed"] and {c["block"] for c in gate["checks"]} == {"at_creation"}
    assert gate["sentence"].startswith("better than every baseline: per deal at creation")
    assert "one snapshot each" in gate["rule"]
    # At that one moment the margin must be shown: non-inferiority is not enough.
    per_deal["at_creation"] = per_deal_of(GOOD_AGE, GOOD_CREATION)["at_creation"]
    refused = baseline_gate(per_deal, 0.02, 0.02)
    assert not refused["passed"]
    assert refused["sentence"].startswith(
        "not better than baseline: ROC AUC at creation minus logistic regression"
    )


def test_a_missing_block_fails_the_gate() -> None:
    per_deal = per_deal_of(GOOD_AGE, GOOD_CREATION)
    per_deal["at_age"] = {"deals": 5, "model_minus_baseline": {}}  # e.g. one outcome only
    gate = baseline_gate(per_deal, 0.02, 0.02)
    assert not gate["passed"]
    assert "ROC AUC at 30 days minus logistic regression undefined" in gate["sentence"]


# ---------------------------------------------------------------- on a trained model
@pytest.fixture(scope="module")
def result() -> TrainingResult:
    crm = generate_crm(1500, seed=5, as_of=pd.Timestamp("2025-06-30", tz="UTC"))
    return fit_and_evaluate(in_memory_frame(crm.tables), "lead_scoring_v1", TrainConfig(seed=3))


def test_the_model_carries_the_evaluations_figures_as_plain_json(result: TrainingResult) -> None:
    q = result.model.info["quality"]
    ev = result.evaluation
    json.dumps(q, allow_nan=False)  # stored in the MLmodel file as JSON
    assert q["trained_at"] is None  # stamped at registration: fit_and_evaluate stays pure
    assert q["window"] == ev["data"]["window"]
    assert q["split"]["method"] == ev["data"]["split"]["method"] == "time"
    assert q["test_deals"] == ev["data"]["deals"]["test"]
    for block in ("at_creation", "at_age"):
        model = ev["per_deal"][block]["model"]
        mine = q["per_deal"][block]
        assert mine["deals"] == ev["per_deal"][block]["deals"]
        for key in ("roc_auc", "log_loss", "ece"):
            assert mine[key] == {"value": model[key], **model["ci95"][key]}
        assert mine["lift_at_10"] == model["lift_at_10"]
        for name in BASELINE_LABELS:
            expected = ev["per_deal"][block]["model_minus_baseline"][name]
            assert q["baselines"][name][block]["roc_auc"] == expected["roc_auc"]
            assert q["baselines"][name][block]["log_loss"] == expected["log_loss"]
    assert q["per_deal"]["at_age"]["label"] == "at 30 days"
    assert q["calibration"]["method"] == result.model.calibration.method


def test_the_calibration_curve_counts_each_test_deal_once_at_its_age(
    result: TrainingResult,
) -> None:
    test = result.test_rows
    curve = result.model.info["quality"]["calibration"]["curve"]
    rows = per_deal_rows(test, 30.0)["at_age"]
    assert sum(curve["n"]) == len(rows) == result.evaluation["per_deal"]["at_age"]["deals"]
    assert len(curve["n"]) <= 10
    p = result.test_predictions["model"][rows]
    y = test["won"].to_numpy()[rows]
    # The first bin's figures are the deals scored below 10%.
    low = p < 0.1
    assert curve["mean_p"][0] == pytest.approx(p[low].mean())
    assert curve["win_rate"][0] == pytest.approx(y[low].mean())


def test_top_features_are_the_strongest_by_gain_with_their_descriptions(
    result: TrainingResult,
) -> None:
    top = result.model.info["quality"]["top_features"]
    gain = result.model.booster.feature_importance(importance_type="gain")
    strongest = [result.model.features[i] for i in np.argsort(-gain, kind="stable")[:10]]
    assert [f["feature"] for f in top] == strongest
    described = {f.name: f.description for f in model_catalog()}
    assert all(f["description"] == described[f["feature"]] for f in top)
    shares = [f["gain_share"] for f in top]
    assert shares == sorted(shares, reverse=True) and 0 < sum(shares) <= 1
