"""Calibration of the booster's raw score: the method chosen over time, fitted on validation.

A sales manager reads "0.30" as "about 3 in 10 such deals are won". Boosted trees rank
well but their probabilities drift (early stopping, class balance, monotone limits),
so the served probability is mapped through a calibrator fitted on deals the booster
did not train on.

Candidates: Platt scaling (a sigmoid of the raw score, two parameters, cannot overfit
much), isotonic regression (any monotone curve, better with plenty of data, overfits
small data with staircase steps) and the booster's own sigmoid. Isotonic is only
considered when the validation slice has at least ``min_isotonic_deals`` deals of each
class. Both calibrators are increasing, so the ranking, and therefore the monotone
behaviour of the booster, is kept.

Which method is chosen over time (:func:`choose_calibration_over_time`): the training
and validation deals are cut into consecutive blocks by close date, each block is scored
out of sample by a booster trained on the blocks before it, and each method is fitted on
the earlier blocks and judged on the next (forward chaining). A method picked on one
slice follows that slice's win rate: on one real export, Platt fitted on a validation
slice that won 53.8% turned a test ECE of 0.0095 into 0.158 on a test slice that won
69.7%. Judged across several periods, a correction that does not carry over to the next
period loses to the identity, and "none" is kept. The chosen method is then fitted on the
validation slice, which the final booster did not train on. :func:`choose_calibration`
(folds by deal within one slice) remains for a frame with too few deals to chain.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.model_selection import GroupKFold

from leadscore.model.scoring_model import Calibration
from training.evaluate import expected_calibration_error

log = logging.getLogger(__name__)

#: Isotonic probabilities are kept inside [P_MIN, 1 - P_MIN]: no deal is ever certain.
P_MIN = 1e-3


@dataclass(frozen=True)
class CalibrationChoice:
    calibration: Calibration
    #: Out-of-sample log loss of each candidate (absent: not tried).
    cv_log_loss: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    #: Out-of-sample ECE of each candidate, when chosen over time.
    cv_ece: dict[str, float] = field(default_factory=dict)


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


Fitter = Callable[[np.ndarray, np.ndarray], Calibration]


def _candidates(
    y: np.ndarray, groups: np.ndarray, min_isotonic_deals: int
) -> tuple[dict[str, Fitter], str]:
    """The maps to try besides "none", and a note when isotonic is left out: it needs
    ``min_isotonic_deals`` deals (``groups``: deal ids) of each outcome in ``y``."""
    groups = np.asarray(groups)
    won_deals = len(np.unique(groups[y == 1]))
    lost_deals = len(np.unique(groups[y == 0]))
    fitters: dict[str, Fitter] = {"platt": fit_platt, "isotonic": fit_isotonic}
    if min(won_deals, lost_deals) >= min_isotonic_deals:
        return fitters, ""
    del fitters["isotonic"]
    return fitters, (
        f" (isotonic skipped: {won_deals} won and {lost_deals} lost deals, "
        f"needs {min_isotonic_deals} of each)"
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
    fitters, note = _candidates(y, groups, min_isotonic_deals)
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


def choose_calibration_over_time(
    blocks: list[tuple[np.ndarray, np.ndarray]],
    final_raw: np.ndarray,
    final_y: np.ndarray,
    final_groups: np.ndarray,
    min_isotonic_deals: int = 500,
) -> CalibrationChoice:
    """The method with the lowest log loss by forward chaining over time, fitted on the
    validation slice.

    ``blocks`` are ``(raw, y)`` of consecutive periods, oldest first, each scored out of
    sample (the last is the validation slice under the final booster). For each method
    and each block after the first, the map is fitted on all earlier blocks and applied
    to that block; the pooled predictions give each method's log loss and ECE. "none"
    wins ties: a correction must earn its place on periods it was not fitted on. Isotonic
    is tried only when the validation slice (``final_groups`` deal ids) has
    ``min_isotonic_deals`` deals of each outcome, as in :func:`choose_calibration`.
    """
    final_raw = np.asarray(final_raw, dtype=np.float64)
    final_y = np.asarray(final_y, dtype=np.int64)
    fitters, note = _candidates(final_y, final_groups, min_isotonic_deals)
    ys: list[np.ndarray] = []
    preds: dict[str, list[np.ndarray]] = {name: [] for name in ("none", *fitters)}
    for j in range(1, len(blocks)):
        fit_raw = np.concatenate([b[0] for b in blocks[:j]])
        fit_y = np.concatenate([b[1] for b in blocks[:j]])
        raw, y = blocks[j]
        ys.append(y)
        preds["none"].append(Calibration("none")(raw))
        for name, fit in fitters.items():
            preds[name].append(fit(fit_raw, fit_y)(raw))
    y_all = np.concatenate(ys)
    pooled = {name: np.clip(np.concatenate(p), P_MIN, 1 - P_MIN) for name, p in preds.items()}
    losses = {name: float(log_loss(y_all, p, labels=[0, 1])) for name, p in pooled.items()}
    eces = {name: float(expected_calibration_error(y_all, p)) for name, p in pooled.items()}
    best = min(losses, key=lambda k: (losses[k], k != "none"))
    calibration = fitters[best](final_raw, final_y) if best in fitters else Calibration("none")
    reason = (
        f"{best}: chosen over time ({len(blocks) - 1} later periods, each judged by a map "
        "fitted on the periods before it): log loss "
        + ", ".join(f"{k} {v:.5f}" for k, v in losses.items())
        + "; ECE "
        + ", ".join(f"{k} {v:.4f}" for k, v in eces.items())
        + note
    )
    log.info("calibration %s", reason)
    return CalibrationChoice(calibration, losses, reason, eces)


def fit_method(
    method: str, raw: np.ndarray, y: np.ndarray, groups: np.ndarray, min_isotonic_deals: int = 500
) -> CalibrationChoice:
    """A method already chosen (the global model's, for a segment model grown from it),
    fitted on ``raw`` and ``y``: the same kind of map, its own parameters. Isotonic falls
    back to Platt without ``min_isotonic_deals`` deals (``groups``) of each outcome, as
    :func:`choose_calibration` would not have tried it."""
    y = np.asarray(y, dtype=np.int64)
    fitters, note = _candidates(y, groups, min_isotonic_deals)
    if method == "isotonic" and "isotonic" not in fitters:
        method = "platt"
    calibration = fitters[method](raw, y) if method in fitters else Calibration("none")
    return CalibrationChoice(
        calibration, reason=f"{calibration.method}: the global model's method{note}"
    )
