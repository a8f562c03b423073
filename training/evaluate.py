"""Metrics for win probabilities: ranking, probability quality, and what a sales team gets.

Every function takes plain arrays (label 0/1, probability) and returns plain Python
numbers so results go straight into MLflow and JSON. A metric that is undefined on the
given rows (ROC AUC with a single class) is ``None``, never NaN, so JSON stays valid.

Two more things a data scientist needs before trusting a number:

* **Per deal, not per snapshot.** A deal contributes one snapshot every 14 days while
  open, so long deals weigh more, and where the label depends on deal age (losses dated
  by a rule) per-snapshot metrics reward reading the age. :func:`per_deal_rows` picks one
  row per deal (at creation, or at a fixed age) for the per-deal blocks.
* **Intervals.** :func:`bootstrap_metrics` resamples *deals* (a deal's snapshots stay
  together) and recomputes ROC AUC, log loss and ECE of several predictors on the same
  resamples, vectorised with numpy; :func:`with_intervals` turns that into 95% intervals
  and paired intervals of differences (model minus a baseline).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

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


# ---------------------------------------------------------------- per deal
def per_deal_rows(frame: pd.DataFrame, age_days: float) -> dict[str, np.ndarray]:
    """Positions (``iloc``) of one row per deal: its creation snapshot, and the snapshot
    that scores it at ``age_days`` after creation.

    ``at_creation`` is the deal's ``snapshot_index`` 0 row (a deal without one is left
    out). ``at_age`` is its last snapshot taken at or before ``created_at + age_days``,
    for the deals still open at that age only: a deal that closed younger has no row.
    Scoring it at its last snapshot before the close instead (as this did until issue 12
    found the same defect in the revival rows) picks an earlier row exactly for the deals
    whose outcome came early, so which rows are scored depends on the outcome: on a
    6,000-deal synthetic CRM a fifth of the rows were such, won at 0.16 against 0.35.
    Whether a deal is open at an age is known at that age: the selection is one a manager
    looking at the deals 30 days old makes. The frame needs deal_id, snapshot_index,
    event_timestamp, created_at and closed_at (without it, every deal counts as open);
    positions come in row order, one per deal, the first row when a deal's snapshot
    repeats.
    """
    deal = frame["deal_id"].astype(str).to_numpy()
    age = _days_after_creation(frame, "event_timestamp")
    first = _first_per_deal(deal, np.flatnonzero(frame["snapshot_index"].to_numpy() == 0))
    in_time = age <= age_days
    if "closed_at" in frame:  # open at that age (an undated close counts as open)
        in_time &= ~(_days_after_creation(frame, "closed_at") <= age_days)
    young = np.flatnonzero(in_time)
    # Among a deal's snapshots young enough, the oldest (ties: the first row).
    order = young[np.lexsort((np.arange(len(young)), -age[young], deal[young]))]
    return {"at_creation": first, "at_age": np.sort(_first_per_deal(deal, order))}


def _days_after_creation(frame: pd.DataFrame, column: str) -> np.ndarray:
    """Days from each row's ``created_at`` to its ``column`` (NaN where either is missing)."""
    created = pd.to_datetime(frame["created_at"], utc=True)
    moment = pd.to_datetime(frame[column], utc=True)
    return ((moment - created) / pd.Timedelta(days=1)).to_numpy(np.float64)


def _first_per_deal(deal: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """``positions`` without those of a deal already seen earlier in them."""
    return positions[~pd.Series(deal[positions]).duplicated().to_numpy()]


def rows_at_age(frame: pd.DataFrame, age_days: float, tolerance_days: float = 0.5) -> np.ndarray:
    """Positions (``iloc``, sorted) of each deal's snapshot taken ``age_days`` after its
    ``created_at`` (within ``tolerance_days``); a deal with no snapshot then has no row.

    Why not a deal's last snapshot before the age, as :func:`per_deal_rows` takes for the
    deals open at that age: where a deal's snapshots stop at its outcome (a lost deal has
    none once it is revived) or at the export's censoring, "the last one before" picks an
    earlier row exactly for the deals whose outcome came early, so which row is scored
    depends on the outcome. Here the row set is the deals still undecided and uncensored
    at that age, and nothing else. The frame needs deal_id, event_timestamp and
    created_at; the first row when a deal's snapshot repeats.
    """
    deal = frame["deal_id"].astype(str).to_numpy()
    age = _days_after_creation(frame, "event_timestamp")
    return np.sort(_first_per_deal(deal, np.flatnonzero(np.abs(age - age_days) <= tolerance_days)))


# ---------------------------------------------------------------- bootstrap over deals
#: Metrics that get a bootstrap interval.
INTERVAL_METRICS = ("roc_auc", "log_loss", "ece")
BOOTSTRAP_RESAMPLES = 200
INTERVAL_LEVEL = 0.95
#: Largest resamples x rows matrix built at once (floats); bigger jobs go in chunks.
_BOOTSTRAP_CELLS = 4_000_000


def deal_resample_counts(n_deals: int, resamples: int, seed: int) -> np.ndarray:
    """How often each deal is drawn in each resample: ``(resamples, n_deals)`` counts.

    Each resample draws ``n_deals`` deals with replacement, so a deal with many
    snapshots is in or out with all of them.
    """
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_deals, size=(resamples, n_deals))
    offsets = (np.arange(resamples) * n_deals)[:, None]
    return np.bincount((draws + offsets).ravel(), minlength=resamples * n_deals).reshape(
        resamples, n_deals
    )


def _weighted_auc(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """ROC AUC per row of weights ``w`` (resamples x rows), ties counted half, as sklearn."""
    order = np.argsort(p, kind="stable")
    ps, ys = p[order], y[order]
    starts = np.flatnonzero(np.r_[True, ps[1:] != ps[:-1]])
    ws = w[:, order]
    pos = np.add.reduceat(ws * ys, starts, axis=1)
    neg = np.add.reduceat(ws * (1.0 - ys), starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    num = (pos * (below + 0.5 * neg)).sum(axis=1)
    den = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def bootstrap_metrics(
    y: np.ndarray,
    preds: Mapping[str, np.ndarray],
    deals: np.ndarray,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> dict[str, dict[str, np.ndarray]]:
    """ROC AUC, log loss and ECE of every predictor on ``resamples`` resamples of *deals*.

    Rows are snapshots; ``deals`` names each row's deal. A resample draws deals with
    replacement and keeps all their rows (weighted by how often the deal was drawn), the
    same resamples for every predictor, so differences between predictors are paired.
    Returns ``{predictor: {metric: array of resamples}}``, NaN where a resample has one
    class only (no AUC). With all weights one each metric equals :func:`binary_metrics`'.
    """
    y = np.asarray(y, dtype=np.float64)
    _, deal_idx = np.unique(np.asarray(deals).astype(str), return_inverse=True)
    n_deals = int(deal_idx.max()) + 1 if len(deal_idx) else 0
    if not n_deals or resamples <= 0:
        empty = np.full(max(resamples, 0), np.nan)
        return {name: {m: empty.copy() for m in INTERVAL_METRICS} for name in preds}
    counts = deal_resample_counts(n_deals, resamples, seed).astype(np.float64)
    rows_per_deal = np.bincount(deal_idx, minlength=n_deals).astype(np.float64)
    total = counts @ rows_per_deal
    out: dict[str, dict[str, np.ndarray]] = {}
    for name, p_raw in preds.items():
        p = np.clip(np.asarray(p_raw, dtype=np.float64), _EPS, 1 - _EPS)
        # Log loss and ECE only need per-deal sums: (resamples x deals) @ (deals x k).
        loss = -(y * np.log(p) + (1.0 - y) * np.log1p(-p))
        log_loss_b = counts @ np.bincount(deal_idx, weights=loss, minlength=n_deals) / total
        bins = np.minimum((p * ECE_BINS).astype(np.int64), ECE_BINS - 1)
        cell = deal_idx * ECE_BINS + bins
        gap = np.bincount(cell, weights=y - p, minlength=n_deals * ECE_BINS).reshape(
            n_deals, ECE_BINS
        )
        ece_b = np.abs(counts @ gap).sum(axis=1) / total
        # AUC needs row weights; in chunks of resamples so memory stays bounded.
        step = max(1, _BOOTSTRAP_CELLS // max(len(y), 1))
        auc_b = np.concatenate(
            [
                _weighted_auc(y, p, counts[i : i + step][:, deal_idx])
                for i in range(0, resamples, step)
            ]
        )
        out[name] = {"roc_auc": auc_b, "log_loss": log_loss_b, "ece": ece_b}
    return out


def interval(
    values: np.ndarray, level: float = INTERVAL_LEVEL, point: float | None = None
) -> dict[str, float | None]:
    """Percentile interval of bootstrap ``values`` (NaN resamples left out); ``None`` if none.

    Given the ``point`` estimate, the interval is widened to include it when the bootstrap
    distribution sits beside it: ECE is biased upwards under resampling (noise only adds
    gaps), so a well calibrated model's ECE can fall below every resample's. Widening
    never makes an interval narrower than the percentile one.
    """
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    if not len(v):
        return {"low": None, "high": None}
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = (float(x) for x in np.percentile(v, [tail, 100.0 - tail]))
    if point is not None:
        low, high = min(low, point), max(high, point)
    return {"low": low, "high": high}


def with_intervals(
    y: np.ndarray,
    preds: Mapping[str, np.ndarray],
    deals: np.ndarray,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
    level: float = INTERVAL_LEVEL,
    compare: tuple[str, Sequence[str]] | None = None,
    compared: Sequence[str] = ("roc_auc", "log_loss"),
) -> dict[str, dict[str, Any]]:
    """:func:`binary_metrics` of each predictor with a ``ci95`` block of deal-bootstrap
    intervals (:data:`INTERVAL_METRICS`), keyed by predictor.

    ``compare=("model", ["logistic_regression", ...])`` adds the key
    ``model_minus_baseline``: per baseline, the ROC AUC and log loss differences model
    minus baseline with their paired intervals (same resamples for both); ``compared``
    names other metrics of :data:`INTERVAL_METRICS` to difference too (``ece``). An AUC
    difference whose interval is above 0 is a margin the data supports.
    """
    y = np.asarray(y, dtype=np.float64)
    boot = bootstrap_metrics(y, preds, deals, resamples, seed)
    out: dict[str, dict[str, Any]] = {}
    for name, p in preds.items():
        m: dict[str, Any] = dict(binary_metrics(y, p))
        m["ci95"] = {k: interval(boot[name][k], level, m[k]) for k in INTERVAL_METRICS}
        out[name] = m
    if compare is not None:
        base, others = compare
        diffs: dict[str, Any] = {}
        for other in others:
            diffs[other] = {}
            for k in compared:
                a, b = out[base][k], out[other][k]
                d = None if a is None or b is None else float(a - b)
                diffs[other][k] = {
                    "difference": d,
                    **interval(boot[base][k] - boot[other][k], level, d),
                }
        out["model_minus_baseline"] = diffs
    return out
