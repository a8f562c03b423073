"""The revival model's training and evaluation (training/revival.py), in memory.

A small synthetic CRM with revival simulated: the frame's unit is the loss, slices are cut
by the time of loss, the baselines are what a manager's report gives, the per-loss blocks
score each loss once, the engagement directions hold, and labels that carry no signal are
never called better than a baseline.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd
import pytest

from leadscore.config import REVIVAL_HORIZON_DAYS, REVIVAL_WINDOW_DAYS
from leadscore.crm.synth import generate_crm
from leadscore.timeutil import TS
from training.result import TrainConfig
from training.revival import (
    BASELINES,
    _rate_baseline,
    backtest_rows,
    backtest_table,
    fit_and_evaluate_revival,
    in_memory_revival_frame,
    loss_rows,
    reason_time_key,
    sample_words,
)

AS_OF = pd.Timestamp("2025-06-01", tz="UTC")


@lru_cache(maxsize=1)
def revival_crm():
    crm = generate_crm(6000, seed=11, as_of=AS_OF, revival=True)
    frame, counts = in_memory_revival_frame(
        crm.tables, crm.as_of, REVIVAL_WINDOW_DAYS, REVIVAL_HORIZON_DAYS
    )
    return crm, frame, counts


@pytest.fixture(scope="module")
def trained():
    crm, frame, counts = revival_crm()
    return fit_and_evaluate_revival(
        frame, TrainConfig(bootstrap_resamples=100), crm.revival_truth, counts=counts
    )


def test_reason_time_key_bands_days_since_loss_per_lost_reason():
    frame = pd.DataFrame(
        {
            "lost_reason": ["price", None, "timing", "budget", "price"],
            "days_since_loss": [7.0, 30.0, 31.0, 365.0, 400.0],
        }
    )
    assert reason_time_key(frame).tolist() == [
        "price|30",
        "unknown|30",
        "timing|90",
        "budget|365",
        "price|inf",
    ]


def test_rate_baseline_is_the_smoothed_rate_of_each_snapshots_band():
    """Each snapshot counts in its own band (a loss's snapshots fall in several)."""
    train = pd.DataFrame(
        {
            "lost_reason": ["price"] * 4 + ["timing"] * 2,
            "days_since_loss": [7.0, 7.0, 37.0, 37.0, 7.0, 7.0],
            "won": [1, 0, 0, 0, 1, 1],
        }
    )
    test = pd.DataFrame(
        {"lost_reason": ["price", "price", "timing", "budget"], "days_since_loss": [7, 37, 7, 7]}
    )
    overall = 3 / 6
    m = 20.0  # training.baselines.fit_group_rate's smoothing
    expected = [
        (1 + m * overall) / (2 + m),
        (0 + m * overall) / (2 + m),
        (2 + m * overall) / (2 + m),
        overall,  # a band never seen: the overall rate
    ]
    assert _rate_baseline(train, test) == pytest.approx(expected)


def test_the_frame_is_one_unit_per_loss_and_only_known_outcomes():
    crm, frame, counts = revival_crm()
    assert frame["deal_id"].str.contains("#").all()
    assert (frame["deal_id"].str.split("#").str[0] == frame["crm_deal_id"]).all()
    assert set(frame["won"].unique()) <= {0, 1}
    # Every snapshot's horizon is wholly in the export.
    horizon = pd.Timedelta(days=REVIVAL_HORIZON_DAYS)
    assert (frame[TS] + horizon <= crm.as_of).all()
    assert counts["kept"] == len(frame) and counts["censored"] > 0
    # The first snapshot of a loss is a week after it.
    first = frame[frame["snapshot_index"] == 0]
    assert np.allclose((first[TS] - first["created_at"]) / pd.Timedelta(days=1), 7.0)


def test_slices_are_cut_by_the_time_of_loss_and_keep_a_loss_whole(trained):
    frame, masks = trained.frame, trained.masks
    losses = {name: set(frame.loc[m, "deal_id"]) for name, m in masks.items()}
    assert not (losses["train"] & losses["valid"]) and not (losses["valid"] & losses["test"])
    lost_at = {name: frame.loc[m, "closed_at"] for name, m in masks.items()}
    assert lost_at["train"].max() <= lost_at["valid"].min()
    assert lost_at["valid"].max() <= lost_at["test"].min()


def loss_snapshots(days: dict[str, tuple[int, ...]]) -> pd.DataFrame:
    """Each loss's snapshots at the given days after it (lost 2024-01-01), label 1 for a
    loss whose snapshots stop before 97 days (it came back and was won)."""
    lost = pd.Timestamp("2024-01-01", tz="UTC")
    rows = [
        {
            "deal_id": loss,
            "snapshot_index": i,
            "created_at": lost,
            TS: lost + pd.Timedelta(days=d),
            "won": int(max(ds) < 97),
        }
        for loss, ds in days.items()
        for i, d in enumerate(ds)
    ]
    return pd.DataFrame(rows)


def test_a_loss_revived_or_censored_before_97_days_has_no_row_at_97_days():
    """A loss revived at day 40 has snapshots at 7 and 37 days only; scoring it "at 97
    days" on its day-37 row would pick rows by their outcome. Only the loss still lost and
    uncensored at 97 days has a row there; every loss has its week-after row."""
    frame = loss_snapshots(
        {
            "revived_day_40#0": (7, 37),
            "still_lost#0": (7, 37, 67, 97, 127),
            "censored_after_67#0": (7, 37, 67),
            "revived_day_5#0": (),  # no snapshot at all
        }
    )
    frame = pd.concat([frame, frame[frame["deal_id"] == "still_lost#0"]], ignore_index=True)
    rows = loss_rows(frame)
    week = frame.iloc[rows["at_creation"]]
    assert sorted(week["deal_id"]) == ["censored_after_67#0", "revived_day_40#0", "still_lost#0"]
    assert ((week[TS] - week["created_at"]) == pd.Timedelta(days=7)).all()
    at_age = frame.iloc[rows["at_age"]]
    assert at_age["deal_id"].tolist() == ["still_lost#0"]
    assert (at_age[TS] - at_age["created_at"]).tolist() == [pd.Timedelta(days=97)]


def test_per_loss_blocks_score_each_loss_once_against_baselines_and_the_oracle(trained):
    per = trained.evaluation["per_deal"]
    test = trained.frame[trained.masks["test"]]
    assert per["losses"] == test["deal_id"].nunique()
    assert per["at_creation"]["deals"] == per["losses"]  # every kept loss has its week row
    assert per["at_age"]["deals"] < per["losses"]  # some came back or are censored by then
    assert str(per["at_age"]["deals"]) in sample_words(trained.evaluation).replace(",", "")
    for block, days in (("at_creation", 7.0), ("at_age", 97.0)):
        rows = test.iloc[loss_rows(test)[block]]
        assert np.allclose((rows[TS] - rows["created_at"]) / pd.Timedelta(days=1), days)
        b = per[block]
        assert b["deals"] == len(rows) == rows["deal_id"].nunique() == b["won"] + b["lost"]
        assert set(b["model_minus_baseline"]) == set(BASELINES)
        if b["deals"]:
            assert b["oracle"]["deals"] == b["deals"]  # the truth knows every test snapshot
            assert "roc_auc" in b["model_minus_oracle"]
    # Two years of history: the test slice's latest losses are censored at 97 days, so the
    # gate holds the week-after moment strictly and says why.
    assert per["at_age"]["deals"] == 0
    assert "no test loss is still lost" in trained.evaluation["gate"]["rule"]
    assert "at 97 days" not in backtest_table(trained.evaluation)
    assert per["moments"] == {
        "at_creation": "a week after the loss",
        "at_age": "at 97 days after the loss",
    }
    predictors = {r["predictor"] for r in backtest_rows(trained.evaluation)}
    assert predictors == {"model", *BASELINES, "oracle", "oracle_observable"}


def test_the_model_reads_the_loss_and_beats_chance(trained):
    week = trained.evaluation["per_deal"]["at_creation"]
    assert week["model"]["roc_auc"] > 0.6
    assert week["oracle"]["roc_auc"] > week["model"]["roc_auc"]  # the oracle knows more
    assert week["oracle"]["roc_auc"] > week["oracle_observable"]["roc_auc"]
    assert "lost_reason" in trained.model.features
    assert trained.model.info["feature_service"] == "revival_v1"


def test_more_engagement_since_the_loss_never_lowers_the_probability(trained):
    checks = trained.evaluation["behaviour"]["checks"]
    for feature in (
        "inbound_since_loss",
        "outbound_since_loss",
        "replies_since_loss",
        "visits_since_loss",
    ):
        assert checks[feature]["status"] == "passed", checks[feature]
        assert checks[feature]["rows"] > 0
    assert trained.behaviour.passed


def test_the_gate_speaks_of_the_loss_and_shuffled_labels_never_pass():
    """Each loss takes the outcome of another loss drawn at random: no feature says
    anything about it, so no margin over a baseline may be claimed."""
    _, frame, _ = revival_crm()
    rng = np.random.default_rng(0)
    outcome = frame.groupby("deal_id")["won"].max()
    drawn = pd.Series(rng.permutation(outcome.to_numpy()), index=outcome.index)
    noise = frame.assign(won=frame["deal_id"].map(drawn).astype(np.int8))
    result = fit_and_evaluate_revival(noise, TrainConfig(bootstrap_resamples=100))
    gate = result.evaluation["gate"]
    assert not gate["passed"]
    assert gate["sentence"].startswith("not better than baseline: ")
    assert "after the loss" in gate["rule"] and "after the loss" in gate["sentence"]


def test_the_stored_model_carries_its_own_baseline_gate(trained):
    """What ``promote --task revival`` and serving read as the gate is the one this
    training measured (not the "trained before the gate existed" placeholder)."""
    from leadscore.model.scoring_model import NO_GATE, NOT_BETTER, ScoringModel

    stored = ScoringModel.from_metadata(trained.model.booster, trained.model.metadata())
    gate = trained.evaluation["gate"]
    assert stored.gate == gate != NO_GATE
    assert stored.gate_warning == (None if gate["passed"] else f"{NOT_BETTER}: {gate['sentence']}")
