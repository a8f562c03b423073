"""Metrics for win probabilities: ranking, probability quality, and what a sales team gets.

Every function takes plain arrays (label 0/1, probability) and returns plain Python
numbers so results go straight into MLflow and JSON. A metric that is undefined on the
given rows (ROC AUC with a single class) is ``None``, never NaN, so JSON stays valid.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

#: The headline keys every metrics dict carries (``leadscore train --json`` contract).
HEADLINE = ("roc_auc", "pr_auc", "log_loss", "brier", "ece", "lift_at_10")
ECE_BINS = 10
#: Probabilities are clipped here before log loss so one overconfident row cannot make it infinite.
_EPS = 1e-6
_METRIC_NAME_BAD = re.compile(r"[^\w.\- /]")


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error over ``bins`` equal-width probability bins on [0, 1].

    ECE = sum over non-empty bins b of (n_b / n) * |mean(y in b) - mean(p in b)|: the
    average gap, weighted by rows, between what the score says and what happened.
    Bin b holds b/bins <= p < (b+1)/bins; p == 1 falls in the last bin. Equal-width
    bins (not quantiles) keep the number comparable across models and slices.
    """
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if not len(y):
        return math.nan
    idx = np.minimum((p * bins).astype(np.int64), bins - 1)
    sum_y = np.bincount(idx, weights=y, minlength=bins)
    sum_p = np.bincount(idx, weights=p, minlength=bins)
    return float(np.abs(sum_y - sum_p).sum() / len(y))


def top_share(y: np.ndarray, p: np.ndarray, share: float) -> tuple[float, float]:
    """Lift and win capture when the team works the top ``share`` of rows by score.

    Lift is the win rate of the top rows over the overall win rate (2.0 means twice
    as many wins per deal worked); capture is the share of all wins found there. The
    top is ``ceil(share * n)`` rows, ties broken by row order so results are stable.
    """
    y = np.asarray(y, dtype=np.float64)
    total = y.sum()
    if not len(y) or total == 0:
        return math.nan, math.nan
    k = max(1, math.ceil(share * len(y)))
    top = np.argsort(-np.asarray(p, dtype=np.float64), kind="stable")[:k]
    wins = y[top].sum()
    return float((wins / k) / (total / len(y))), float(wins / total)


def binary_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float | int | None]:
    """All metrics of one set of predictions: the :data:`HEADLINE` keys and a few more.

    ``lift_at_10``/``capture_at_10`` refer to the top 10% of rows by score, ``_20`` to
    the top 20%; ``n`` and ``win_rate`` say what they were computed on.
    """
    y = np.asarray(y, dtype=np.float64)
    p = np.clip(np.asarray(p, dtype=np.float64), _EPS, 1 - _EPS)
    both = 0 < y.sum() < len(y)
    lift10, capture10 = top_share(y, p, 0.10)
    lift20, capture20 = top_share(y, p, 0.20)
    out: dict[str, float | int | None] = {
        "n": int(len(y)),
        "win_rate": float(y.mean()) if len(y) else None,
        "mean_p": float(p.mean()) if len(y) else None,
        "roc_auc": float(roc_auc_score(y, p)) if both else None,
        "pr_auc": float(average_precision_score(y, p)) if both else None,
        "log_loss": float(log_loss(y, p, labels=[0, 1])) if len(y) else None,
        "brier": float(brier_score_loss(y, p)) if len(y) else None,
        "ece": expected_calibration_error(y, p),
        "lift_at_10": lift10,
        "capture_at_10": capture10,
        "lift_at_20": lift20,
        "capture_at_20": capture20,
    }
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in out.items()}


def metrics_by_group(
    y: np.ndarray, p: np.ndarray, groups: np.ndarray, min_rows: int = 1
) -> dict[str, dict[str, float | int | None]]:
    """:func:`binary_metrics` per group (e.g. per channel), groups in sorted order.

    Missing group values are reported under ``"(missing)"``.
    """
    keys = pd.Series(groups, dtype=object).fillna("(missing)").astype(str).to_numpy()
    out = {}
    for g in sorted(set(keys)):
        mask = keys == g
        if mask.sum() >= min_rows:
            out[g] = binary_metrics(np.asarray(y)[mask], np.asarray(p)[mask])
    return out


def reliability_curve(y: np.ndarray, p: np.ndarray, bins: int = ECE_BINS) -> dict[str, list[float]]:
    """Per non-empty equal-width bin: mean predicted probability, observed win rate, rows.

    The same bins as :func:`expected_calibration_error`, for the calibration plot.
    """
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    idx = np.minimum((p * bins).astype(np.int64), bins - 1)
    n = np.bincount(idx, minlength=bins)
    keep = n > 0
    mean_p = np.bincount(idx, weights=p, minlength=bins)[keep] / n[keep]
    rate = np.bincount(idx, weights=y, minlength=bins)[keep] / n[keep]
    return {"mean_p": mean_p.tolist(), "win_rate": rate.tolist(), "n": n[keep].tolist()}


def gain_curve(y: np.ndarray, p: np.ndarray, points: int = 100) -> dict[str, list[float]]:
    """Cumulative gain: share of wins found after working the top x of rows by score.

    Lift at x is gain(x) / x. Sampled at ``points`` evenly spaced shares for plotting.
    """
    y = np.asarray(y, dtype=np.float64)
    order = np.argsort(-np.asarray(p, dtype=np.float64), kind="stable")
    cum = np.concatenate([[0.0], np.cumsum(y[order])]) / max(y.sum(), 1.0)
    share = np.linspace(0.0, 1.0, points + 1)
    idx = np.round(share * len(y)).astype(np.int64)
    return {"share": share.tolist(), "gain": cum[idx].tolist()}


def flatten_metrics(tree: Mapping[str, object], prefix: str = "") -> dict[str, float]:
    """Nested metric dicts as flat ``a.b.c`` names for MLflow; ``None`` values are skipped.

    Characters MLflow refuses in a metric name (e.g. the brackets of ``(missing)``)
    become underscores.
    """
    out: dict[str, float] = {}
    for key, value in tree.items():
        name = prefix + _METRIC_NAME_BAD.sub("_", str(key))
        if isinstance(value, Mapping):
            out.update(flatten_metrics(value, f"{name}."))
        elif isinstance(value, bool):
            out[name] = float(value)
        elif isinstance(value, int | float) and not (
            isinstance(value, float) and math.isnan(value)
        ):
            out[name] = float(value)
    return out
