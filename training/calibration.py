"""Calibration of the booster's raw score, fitted on the validation slice.

A sales manager reads "0.30" as "about 3 in 10 such deals are won". Boosted trees rank
well but their probabilities drift (early stopping, class balance, monotone limits),
so the served probability is mapped through a calibrator fitted on deals the booster
did not train on.

Candidates: Platt scaling (a sigmoid of the raw score, two parameters, cannot overfit
much), isotonic regression (any monotone curve, better with plenty of data, overfits
small data with staircase steps) and the booster's own sigmoid. Isotonic is only
considered when the validation slice has at least ``min_isotonic_deals`` deals of each
class. The winner has the lowest out-of-fold log loss (folds by deal, so snapshots of
one deal never predict each other); a correction that does not beat the identity out
of fold would only fit noise. Both calibrators are increasing, so the ranking, and therefore
the monotone behaviour of the booster, is kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import GroupKFold

from leadscore.model.scoring_model import Calibration

log = logging.getLogger(__name__)

#: Isotonic probabilities are kept inside [P_MIN, 1 - P_MIN]: no deal is ever certain.
P_MIN = 1e-3


@dataclass(frozen=True)
class CalibrationChoice:
    calibration: Calibration
    #: Out-of-fold log loss of each candidate on the validation slice (absent: not tried).
    cv_log_loss: dict[str, float] = field(default_factory=dict)
    reason: str = ""


def fit_platt(raw: np.ndarray, y: np.ndarray) -> Calibration:
    """sigmoid(a * raw + b) by (practically unregularised) logistic regression on the raw score."""
    lr = LogisticRegression(C=1e6, max_iter=1000)
    lr.fit(np.asarray(raw, dtype=np.float64).reshape(-1, 1), y)
    a, b = float(lr.coef_[0, 0]), float(lr.intercept_[0])
    if a <= 0:
        # A decreasing map would reverse the ranking; the raw score is useless here anyway.
        log.warning("Platt slope %.3g <= 0 on validation; keeping the booster's own probability", a)
        return Calibration("none")
    return Calibration("platt", a=a, b=b)


def fit_isotonic(raw: np.ndarray, y: np.ndarray) -> Calibration:
    """Monotone step curve through the validation points, interpolated between knots.

    Scoring interpolates linearly between knots and clamps outside them, exactly as
    scikit-learn's ``IsotonicRegression(out_of_bounds="clip")`` predicts.
    """
    iso = IsotonicRegression(y_min=P_MIN, y_max=1 - P_MIN, out_of_bounds="clip")
    iso.fit(np.asarray(raw, dtype=np.float64), y)
    return Calibration(
        "isotonic",
        x=tuple(float(v) for v in iso.X_thresholds_),
        y=tuple(float(v) for v in iso.y_thresholds_),
    )


def choose_calibration(
    raw: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    min_isotonic_deals: int = 500,
    folds: int = 5,
) -> CalibrationChoice:
    """The map with the lowest out-of-fold log loss on the validation slice, refitted on it.

    Candidates are Platt, isotonic and the booster's own sigmoid ("none"): a booster
    trained with early stopping is often calibrated already, and a correction fitted on
    noise can then make it worse out of sample, so a correction is kept only when it
    beats the identity out of fold. ``groups`` (deal ids) keep one deal's snapshots in
    one fold. Isotonic is skipped when either class has fewer than
    ``min_isotonic_deals`` deals: with a few hundred outcomes its steps follow noise.
    """
    raw = np.asarray(raw, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    groups = np.asarray(groups)
    won_deals = len(np.unique(groups[y == 1]))
    lost_deals = len(np.unique(groups[y == 0]))
    fitters = {"platt": fit_platt, "isotonic": fit_isotonic}
    note = ""
    if min(won_deals, lost_deals) < min_isotonic_deals:
        del fitters["isotonic"]
        note = f" (isotonic skipped: {won_deals} won and {lost_deals} lost deals, needs {min_isotonic_deals} of each)"
    oof = {name: np.empty(len(y)) for name in fitters}
    for fit_idx, pred_idx in GroupKFold(n_splits=folds).split(raw, y, groups):
        for name, fit in fitters.items():
            oof[name][pred_idx] = fit(raw[fit_idx], y[fit_idx])(raw[pred_idx])
    oof["none"] = Calibration("none")(raw)
    losses = {
        name: float(log_loss(y, np.clip(p, P_MIN, 1 - P_MIN), labels=[0, 1]))
        for name, p in oof.items()
    }
    best = min(losses, key=lambda k: (losses[k], k != "none"))
    calibration = fitters[best](raw, y) if best in fitters else Calibration("none")
    reason = (
        f"{best}: out-of-fold log loss "
        + ", ".join(f"{k} {v:.5f}" for k, v in losses.items())
        + note
    )
    log.info("calibration %s", reason)
    return CalibrationChoice(calibration, losses, reason)
