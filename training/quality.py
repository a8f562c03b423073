"""The model's quality summary: the few facts people need to judge a model, kept inside it.

Metrics live in MLflow and ``train --json``, where a sales manager or an API client never
looks. Training therefore stores a compact summary in the model's own metadata
(``ScoringModel.info["quality"]``, :func:`quality_summary`), so whatever serves the model
(the managers' page, ``GET /model``) shows the same figures training measured, without
MLflow: when it was trained and on what window, how many test deals, per-deal ROC AUC,
log loss and ECE with their deal-bootstrap intervals at creation and at a fixed age,
lift of the top decile, calibration and its curve, the strongest features, and how the
model compares with each baseline.

The comparison is one plain sentence per baseline and block (:func:`baseline_sentence`),
decided by the paired interval of the ROC AUC difference model minus baseline: "better"
only when the whole interval is above zero, "worse" when it is wholly below, else "not
better": a margin the data does not support is not claimed.

The same intervals decide the baseline gate (:func:`baseline_gate`), which promotion
obeys: a model that does not beat logistic regression on its own features, the
channel win rate and the stage and channel fallback a small organisation is scored with
(``leadscore.model.fallback``), per deal and beyond the interval, is not worth its
reasons' complexity and is never made champion unless someone forces it (and then
everything that serves it says so).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from leadscore.features.catalog import Feature
from leadscore.model.scoring_model import ScoringModel
from training.data import class_counts
from training.evaluate import per_deal_rows, reliability_curve

#: Bump when the summary's shape changes, so readers can tell versions apart
#: (2: the baseline gate, ``gate``).
QUALITY_FORMAT = 2
#: Features listed in the summary, strongest first by total gain.
TOP_FEATURES = 10
#: How each baseline is named in a sentence.
BASELINE_LABELS = {
    "logistic_regression": "logistic regression",
    "channel_rate": "the channel win rate",
    "stage_fallback": "the stage and channel fallback",
}
#: The per-deal blocks of the evaluation (:func:`training.train._per_deal`).
BLOCKS = ("at_creation", "at_age")

Verdict = Literal["better", "not better", "worse", "unknown"]


def signed(x: float) -> str:
    """``+0.273`` / ``−0.022``: three decimals, always signed, with a true minus sign."""
    return f"{x:+.3f}".replace("-", "\u2212")


def block_label(block: str, age_days: float) -> str:
    """``at creation`` or ``at 30 days``: the moment a per-deal block scores each deal."""
    return "at creation" if block == "at_creation" else f"at {age_days:g} days"


def verdict(difference: Mapping[str, Any]) -> Verdict:
    """Model against a baseline from the paired interval of the ROC AUC difference.

    ``better`` needs the whole interval above zero, ``worse`` the whole interval below;
    an interval touching or straddling zero, or a missing interval, is ``not better``
    (no margin is claimed that the data does not support); no difference is ``unknown``.
    """
    d, low, high = difference.get("difference"), difference.get("low"), difference.get("high")
    if d is None:
        return "unknown"
    if low is not None and low > 0:
        return "better"
    if high is not None and high < 0:
        return "worse"
    return "not better"


def baseline_sentence(baseline: str, block: str, difference: Mapping[str, Any]) -> str:
    """One plain sentence comparing the model with a baseline on one block, by ROC AUC.

    ``difference`` is the ``roc_auc`` entry of ``model_minus_baseline``
    (:func:`training.evaluate.with_intervals`): ``difference``, ``low``, ``high``.
    E.g. "not better than logistic regression at creation: ROC AUC −0.022 [−0.063, +0.015]".
    """
    d, low, high = difference.get("difference"), difference.get("low"), difference.get("high")
    v = verdict(difference)
    if d is None:
        return (
            f"no comparison with {baseline} {block}: ROC AUC is undefined "
            "(the test deals have one outcome only)"
        )
    figure = (
        f"ROC AUC {signed(d)} [{signed(low)}, {signed(high)}]"
        if low is not None and high is not None
        else f"ROC AUC {signed(d)} (no interval: too few deals to resample)"
    )
    return f"{v} than {baseline} {block}: {figure}"


def _estimate(metrics: Mapping[str, Any], key: str) -> dict[str, float | None]:
    """A metric and its 95% interval from a :func:`with_intervals` block."""
    ci = metrics.get("ci95", {}).get(key, {})
    return {"value": metrics.get(key), "low": ci.get("low"), "high": ci.get("high")}


def compare_with_baselines(per_deal: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Per baseline and block: model minus baseline for ROC AUC and log loss with their
    paired intervals, the verdict and the sentence (:func:`baseline_sentence`)."""
    age = float(per_deal.get("age_days", 30.0))
    out: dict[str, dict[str, Any]] = {}
    for name, label in BASELINE_LABELS.items():
        entry: dict[str, Any] = {"label": label}
        for block in BLOCKS:
            diffs = per_deal.get(block, {}).get("model_minus_baseline", {}).get(name)
            if diffs is None:
                continue
            auc = dict(diffs["roc_auc"])
            entry[block] = {
                "roc_auc": auc,
                "log_loss": dict(diffs["log_loss"]),
                "verdict": verdict(auc),
                "sentence": baseline_sentence(label, block_label(block, age), auc),
            }
        out[name] = entry
    return out


# ---------------------------------------------------------------- the baseline gate
#: What a model must show to be promotable, in words (the gate's ``rule``).
GATE_RULE = (
    "per deal at {age} days, ROC AUC and log loss better than each baseline beyond the 95% "
    "interval; at creation, not worse than any baseline by more than "
    "{auc:g} ROC AUC or {log_loss:g} log loss"
)


#: The rule when deals have one snapshot each (no dates to age them by).
GATE_RULE_ONE_SNAPSHOT = (
    "per deal (one snapshot each, no dates to age deals by), ROC AUC and log loss better "
    "than each baseline beyond the 95% interval"
)


def _gate_check(
    baseline: str, block: str, metric: str, diff: Mapping[str, Any], margin: float
) -> dict[str, Any]:
    """One condition of the gate on the paired interval of model minus baseline.

    ``margin`` 0 asks for a margin the interval supports (AUC: low above 0; log loss,
    lower is better: high below 0); a positive ``margin`` asks only that the model is not
    worse by more than it (AUC: low above -margin; log loss: high below +margin).
    """
    d, low, high = diff.get("difference"), diff.get("low"), diff.get("high")
    if metric == "roc_auc":
        passed = low is not None and low > -margin
        bound = "low"
    else:
        passed = high is not None and high < margin
        bound = "high"
    return {
        "baseline": baseline,
        "block": block,
        "metric": metric,
        "difference": d,
        "low": low,
        "high": high,
        "bound": bound,
        "required": -margin if metric == "roc_auc" else margin,
        "passed": bool(passed),
    }


def _check_words(
    check: Mapping[str, Any],
    age: float,
    labels: Mapping[str, str] = BASELINE_LABELS,
    moment: Callable[[str, float], str] = block_label,
) -> str:
    """A failed (or passed) gate check as words: what was compared, the figure, the need."""
    metric = "ROC AUC" if check["metric"] == "roc_auc" else "log loss"
    label = labels.get(check["baseline"], check["baseline"])
    d, low, high = check["difference"], check["low"], check["high"]
    if d is None:
        figure = "undefined (the test deals have one outcome only)"
    elif low is None or high is None:
        figure = f"{signed(d)} with no interval (too few deals to resample)"
    else:
        figure = f"{signed(d)} [{signed(low)}, {signed(high)}]"
    need = (
        ("above" if check["metric"] == "roc_auc" else "below") + f" {signed(check['required'])}"
        if check["required"]
        else ("wholly above zero" if check["metric"] == "roc_auc" else "wholly below zero")
    )
    return (
        f"{metric} {moment(check['block'], age)} minus {label} {figure}, needs its interval {need}"
    )


def baseline_gate(
    per_deal: Mapping[str, Any],
    creation_margin_auc: float,
    creation_margin_log_loss: float,
    labels: Mapping[str, str] = BASELINE_LABELS,
    moment: Callable[[str, float], str] = block_label,
    rule_text: str = GATE_RULE,
    one_moment_rule: str = GATE_RULE_ONE_SNAPSHOT,
) -> dict[str, Any]:
    """Is the model better than every baseline, per deal, beyond the interval?

    At the fixed age (``at_age``, 30 days by default, where the deal's history is what a
    model reads) ROC AUC and log loss must each beat logistic regression on the same
    features, the channel win rate and the fallback with the whole paired interval on the
    right side of zero. At creation the model may not be worse than any by more than the
    margins: before any history exists the features are the deal's own fields, which a linear
    model uses nearly as well (on the synthetic CRM the oracle that knows everything but
    the rep's skill is within 0.002 ROC AUC of logistic regression at creation, so
    "better beyond the interval" there would refuse even the oracle).

    Returns ``passed``, ``sentence`` (one plain sentence: why not, or that it passed),
    ``rule`` and every ``checks`` entry with its figures. No interval (too few deals,
    or no resamples) cannot show a margin, so it does not pass.

    Another model (the revival model, :mod:`training.revival`) passes its own baselines'
    ``labels``, the words of its two moments (``moment``) and its ``rule_text``; the
    blocks keep their keys (``at_age`` strict, ``at_creation`` within the margins). With
    no deal at ``at_age`` the first moment is held strictly instead, in the words of
    ``one_moment_rule`` (why there is no later row differs between models).
    """
    age = float(per_deal.get("age_days", 30.0))
    blocks: tuple[tuple[str, tuple[float, float]], ...] = (
        ("at_age", (0.0, 0.0)),
        ("at_creation", (creation_margin_auc, creation_margin_log_loss)),
    )
    rule = rule_text.format(
        age=f"{age:g}", auc=creation_margin_auc, log_loss=creation_margin_log_loss
    )
    if not per_deal.get("at_age", {}).get("deals"):
        # No deal has an age (no creation dates: one snapshot each): the one moment
        # there is must show the margin.
        blocks = (("at_creation", (0.0, 0.0)),)
        rule = one_moment_rule
    checks = []
    for name in labels:
        for block, margins in blocks:
            diffs = per_deal.get(block, {}).get("model_minus_baseline", {}).get(name)
            for metric, margin in zip(("roc_auc", "log_loss"), margins, strict=True):
                diff = diffs[metric] if diffs else {}
                checks.append(_gate_check(name, block, metric, diff, margin))
    failed = [c for c in checks if not c["passed"]]
    if failed:
        sentence = "not better than baseline: " + "; ".join(
            _check_words(c, age, labels, moment) for c in failed[:2]
        )
        if len(failed) > 2:
            sentence += f" (and {len(failed) - 2} more)"
    else:
        strict_block = blocks[0][0]
        strict = [c for c in checks if c["block"] == strict_block and c["metric"] == "roc_auc"]
        over = [
            f"{signed(c['difference'])} [{signed(c['low'])}, {signed(c['high'])}] over "
            f"{labels[c['baseline']]}"
            for c in strict
        ]
        sentence = (
            f"better than every baseline: per deal {moment(strict_block, age)}, ROC AUC "
            + " and ".join([", ".join(over[:-1]), over[-1]] if len(over) > 1 else over)
            + ", log loss lower beyond the interval"
            + (f", and no worse {moment('at_creation', age)}" if len(blocks) > 1 else "")
        )
    return {
        "passed": not failed,
        "sentence": sentence,
        "rule": rule,
        "checks": checks,
    }


def top_features(
    model: ScoringModel, catalog: Sequence[Feature], n: int = TOP_FEATURES
) -> list[dict[str, Any]]:
    """The ``n`` features with the most total gain, with their share of all gain and the
    catalog's one-line description (what a manager reads next to the name)."""
    gain = np.asarray(model.booster.feature_importance(importance_type="gain"), dtype=np.float64)
    total = float(gain.sum())
    described = {f.name: f.description for f in catalog}
    order = np.argsort(-gain, kind="stable")[:n]
    return [
        {
            "feature": model.features[i],
            "gain_share": float(gain[i] / total) if total > 0 else 0.0,
            "description": described.get(model.features[i], ""),
        }
        for i in order
        if gain[i] > 0
    ]


def quality_summary(
    model: ScoringModel,
    evaluation: Mapping[str, Any],
    test: pd.DataFrame,
    p_model: np.ndarray,
    catalog: Sequence[Feature],
) -> dict[str, Any]:
    """The compact summary stored as ``model.info["quality"]`` (plain JSON types).

    ``evaluation`` is :func:`training.train.fit_and_evaluate`'s (``data``, ``model``,
    ``per_deal``, ``gate`` and ``cross_validation`` are read); ``test`` the test snapshots
    (pooled over the folds when cross-validation replaced the test slice) and ``p_model``
    the model's calibrated probabilities on them, for the calibration curve on the test deals at
    the per-deal age (one row per deal, as the per-deal metrics count them).

    ``trained_at`` is left ``None``: the same data and seed must give the same model, so
    the moment is stamped when the version is registered
    (:func:`training.train.log_training_run`).
    """
    per_deal = evaluation["per_deal"]
    age = float(per_deal["age_days"])
    at_age = per_deal_rows(test, age)["at_age"]
    blocks = {}
    for block in BLOCKS:
        b = per_deal[block]
        m = b["model"]
        blocks[block] = {
            "label": block_label(block, age),
            "deals": b["deals"],
            "won": b["won"],
            "lost": b["lost"],
            "roc_auc": _estimate(m, "roc_auc"),
            "log_loss": _estimate(m, "log_loss"),
            "ece": _estimate(m, "ece"),
            "lift_at_10": m.get("lift_at_10"),
        }
    split = evaluation["data"]["split"]
    cv = evaluation.get("cross_validation")
    won, lost = class_counts(test)
    return {
        "format": QUALITY_FORMAT,
        "trained_at": None,
        "window": dict(evaluation["data"]["window"]),
        "split": {
            "method": split.get("method", "time"),
            "note": split.get("note", ""),
            "cross_validation": cv["how"] if cv else None,
        },
        "test_deals": {"won": won, "lost": lost},
        "per_deal": {"age_days": age, **blocks},
        "calibration": {
            "method": evaluation["model"]["calibration"],
            "reason": evaluation["model"]["calibration_reason"],
            # The figures behind the reason, so the page can say it in Chinese too.
            "cv": evaluation["model"].get("calibration_cv") or {},
            "curve": reliability_curve(test["won"].to_numpy()[at_age], np.asarray(p_model)[at_age]),
        },
        "top_features": top_features(model, catalog),
        "baselines": compare_with_baselines(per_deal),
        "gate": dict(evaluation["gate"]),
    }
