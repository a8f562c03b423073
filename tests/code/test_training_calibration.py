"""Calibration: fitted on validation, it improves (or keeps) ECE; isotonic only with enough data."""

from __future__ import annotations

import numpy as np

from training.calibration import (
    choose_calibration,
    choose_calibration_over_time,
    fit_isotonic,
    fit_platt,
)
from training.evaluate import expected_calibration_error


def overconfident(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw scores twice as extreme (and shifted) as the log-odds outcomes are drawn from."""
    rng = np.random.default_rng(seed)
    true_logit = rng.normal(-0.8, 1.2, n)
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-true_logit))).astype(int)
    raw = 2.0 * true_logit + 0.7
    return raw, y, np.arange(n).astype(str)


def test_calibration_improves_ece_of_a_miscalibrated_score():
    raw, y, groups = overconfident(3000)
    before = expected_calibration_error(y, 1 / (1 + np.exp(-raw)))
    choice = choose_calibration(raw, y, groups)
    after = expected_calibration_error(y, choice.calibration(raw))
    assert after < before / 3


def test_small_validation_slices_get_platt_not_isotonic():
    raw, y, groups = overconfident(600)
    choice = choose_calibration(raw, y, groups, min_isotonic_deals=500)
    assert choice.calibration.method == "platt"
    assert "isotonic skipped" in choice.reason and "needs 500" in choice.reason


def test_large_slices_compare_both_by_out_of_fold_log_loss():
    raw, y, groups = overconfident(20000, seed=1)
    choice = choose_calibration(raw, y, groups, min_isotonic_deals=500)
    assert set(choice.cv_log_loss) == {"platt", "isotonic", "none"}
    assert choice.calibration.method == min(choice.cv_log_loss, key=choice.cv_log_loss.get)


def test_an_already_calibrated_score_is_not_made_worse():
    rng = np.random.default_rng(5)
    raw = rng.normal(-1.0, 1.2, 4000)
    y = (rng.random(4000) < 1 / (1 + np.exp(-raw))).astype(int)
    groups = np.arange(4000)
    choice = choose_calibration(raw, y, groups, min_isotonic_deals=500)
    before = expected_calibration_error(y, 1 / (1 + np.exp(-raw)))
    assert expected_calibration_error(y, choice.calibration(raw)) <= before + 0.005
    assert choice.cv_log_loss[choice.calibration.method] == min(choice.cv_log_loss.values())


def test_calibrators_are_increasing_and_isotonic_never_certain():
    raw, y, _ = overconfident(2000)
    grid = np.linspace(raw.min() - 5, raw.max() + 5, 500)
    for cal in (fit_platt(raw, y), fit_isotonic(raw, y)):
        assert (np.diff(cal(grid)) >= 0).all()
    iso = fit_isotonic(raw, y)(grid)
    assert iso.min() >= 1e-3 and iso.max() <= 1 - 1e-3


# ---------------------------------------------------------------- chosen over time
def periods(shifts: list[float], scale: float, n: int = 4000, seed: int = 0):
    """Consecutive periods of scores whose true log-odds are ``raw / scale + shift``."""
    rng = np.random.default_rng(seed)
    out = []
    for shift in shifts:
        raw = rng.normal(0.0, 1.5, n)
        y = (rng.random(n) < 1 / (1 + np.exp(-(raw / scale + shift)))).astype(np.int64)
        out.append((raw, y))
    return out


def test_a_correction_that_holds_in_every_period_is_chosen_and_its_ece_reported():
    blocks = periods([0.0, 0.0, 0.0], scale=2.0)  # overconfident booster, stable over time
    raw, y = blocks[-1]
    choice = choose_calibration_over_time(
        blocks, raw, y, np.arange(len(y)), min_isotonic_deals=10**6
    )
    assert choice.calibration.method == "platt"
    assert choice.cv_ece["platt"] < choice.cv_ece["none"]
    assert "chosen over time (2 later periods" in choice.reason and "ECE" in choice.reason


def test_a_correction_fitted_on_one_period_that_does_not_carry_over_is_not_chosen():
    # Well calibrated overall, but each period's win rate swings: a map fitted on the
    # periods before does worse on the next than the booster's own probability.
    blocks = periods([0.0, 1.2, -1.2, 1.2], scale=1.0)
    raw, y = blocks[-1]
    over_time = choose_calibration_over_time(blocks, raw, y, np.arange(len(y)), 10**6)
    assert over_time.calibration.method == "none", over_time.reason
    # Chosen on the last slice alone, Platt would have been kept (it fits that slice).
    one_slice = choose_calibration(raw, y, np.arange(len(y)), min_isotonic_deals=10**6)
    assert one_slice.calibration.method == "platt"
