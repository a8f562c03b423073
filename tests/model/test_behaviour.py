"""Behavioural tests of a trained model (directional, invariance, minimum functionality).

The directional checks are the promotion gate's (training.behaviour); here they run on
a freshly trained model, and on a deliberately reversed one to prove they can fail.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from leadscore.model.scoring_model import Calibration
from training.behaviour import CHECKS, run_behaviour_checks


def test_directional_checks_pass_on_the_trained_model(trained, test_rows):
    report = run_behaviour_checks(trained.model, test_rows, sample=800, seed=0)
    assert report.passed, report.failures()
    for r in report.results:
        assert r.rows >= 50, f"{r.name}: too few eligible rows to mean anything"
        assert r.violation_rate == 0.0


def test_training_records_the_same_checks(trained):
    checks = trained.evaluation["behaviour"]["checks"]
    assert set(checks) == {c.name for c in CHECKS}
    assert trained.evaluation["behaviour"]["passed"]


def test_checks_catch_a_model_that_moves_the_wrong_way(trained, test_rows):
    """A decreasing calibration reverses every direction; each check must report it."""
    model = replace(trained.model, calibration=Calibration("platt", a=-1.0, b=0.0))
    report = run_behaviour_checks(model, test_rows, sample=800, seed=0)
    assert not report.passed
    assert all(r.violations > 0 for r in report.results), report.failures()


def test_probability_is_invariant_to_columns_the_model_does_not_use(trained, test_rows):
    rows = test_rows.head(200)
    noisy = rows.assign(deal_id="X", account_id="Y", owner_id="Z", won=1 - rows["won"])
    m = trained.model
    assert np.array_equal(m.probability(m.encode(rows)), m.probability(m.encode(noisy)))


def test_minimum_functionality_later_stages_and_ranking(trained, test_rows):
    """Deals in 'committed' win more often than leads, and the model beats the channel rate."""
    p = trained.test_predictions["model"]
    stage = test_rows["stage_index"].to_numpy()
    assert p[stage == 3].mean() > p[stage == 0].mean()
    ev = trained.evaluation
    assert ev["test"]["roc_auc"] > ev["baselines"]["channel_rate"]["roc_auc"] + 0.05
    assert ev["test"]["log_loss"] < ev["baselines"]["channel_rate"]["log_loss"]
