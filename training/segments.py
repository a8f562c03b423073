"""The model per segment: is it as good for web leads, small companies or late stages?

One global model can be good on average and poor where a team lives: a manager who
works only enterprise accounts, or only partner-sourced deals, needs its figures there
(issue 16: "metrics per segment (channel, size band, industry, stage) in the model
card"). Each test deal counts once, as in the gate's per-deal block: its snapshot at
``config.per_deal_age_days`` (:func:`training.evaluate.per_deal_rows`), since the stage
is only a segment once deals have moved (at creation every deal is a lead).

* **Segments** (:data:`SEGMENTS`): the deal's channel and industry as the model reads them,
  the account's size band (:func:`leadscore.insights.facts.size_bands`, the insights' own
  bands, so the model card and the managers' funnel cut alike), and the stage at the
  scored snapshot.
* **Figures** per segment value: deals, won, win rate; with at least
  :data:`MIN_SEGMENT_CLASS_DEALS` won and as many lost deals, ROC AUC, log loss and ECE of
  the model with deal-bootstrap intervals and its difference with each baseline (paired
  intervals), as the per-deal block has them. A smaller segment gets its counts and the
  reason, not a number that would mostly be noise.
* **Segment models** (:func:`fit_segment_models`): per segment with enough deals, a model
  grown from the global one on the segment's training rows, kept only where it beats the
  global model on the segment's test deals beyond the interval, ranking and calibration
  both. The kept ones ride inside the global :class:`ScoringModel`, which routes each deal
  by its :class:`SegmentRule`; the routing table goes to the registry
  (:func:`segment_tags`), the quality summary (:func:`routing_table`) and the model card.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from leadscore.crm.contract import STAGES
from leadscore.features.catalog import STAGE_LEVELS
from leadscore.insights.facts import SIZE_BANDS, UNKNOWN, size_bands
from leadscore.model.scoring_model import ScoringModel, SegmentModel, SegmentRule
from training.data import class_counts
from training.evaluate import INTERVAL_METRICS, per_deal_rows, with_intervals
from training.result import TrainConfig

log = logging.getLogger(__name__)

#: The cuts the model card reports, in its order.
SEGMENTS: tuple[str, ...] = ("channel", "size_band", "industry", "stage")
#: Fewer won (or lost) test deals than this in a segment: counts only, no metric.
MIN_SEGMENT_CLASS_DEALS = 20
#: The metrics kept per predictor (the rest of :func:`training.evaluate.binary_metrics`
#: would repeat the per-deal block's detail for every segment).
KEPT = ("roc_auc", "log_loss", "ece")


def segment_labels(rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """Each row's value of every segment in :data:`SEGMENTS` (missing: ``UNKNOWN``)."""

    def text(column: str) -> np.ndarray:
        if column not in rows:
            return np.full(len(rows), UNKNOWN, dtype=object)
        values = rows[column].astype("string").str.strip()
        return values.mask(values == "").fillna(UNKNOWN).to_numpy(dtype=object)

    def numbers(column: str) -> np.ndarray:
        if column not in rows:
            return np.full(len(rows), np.nan)
        return pd.to_numeric(rows[column], errors="coerce").to_numpy(dtype=np.float64)

    stage = numbers("stage_index")
    return {
        "channel": text("channel"),
        "size_band": size_bands(pd.Series(numbers("employee_count"))),
        "industry": text("industry"),
        "stage": np.asarray(
            [UNKNOWN if np.isnan(s) else STAGE_LEVELS.name(s) for s in stage], dtype=object
        ),
    }


def per_segment(
    test: pd.DataFrame,
    preds: Mapping[str, np.ndarray],
    config: TrainConfig,
    baselines: Sequence[str],
    model: str = "model",
    min_class_deals: int = MIN_SEGMENT_CLASS_DEALS,
) -> dict[str, Any]:
    """Per segment of :data:`SEGMENTS`, the model's per-deal figures and margins (module doc).

    ``preds`` are per row of ``test`` (the model's under ``model``, and each baseline's).
    """
    rows = per_deal_rows(test, config.per_deal_age_days)["at_age"]
    scored = test.iloc[rows]
    y = scored["won"].to_numpy(dtype=np.float64)
    deals = scored["deal_id"].to_numpy()
    names = (model, *baselines)
    out: dict[str, Any] = {
        "age_days": config.per_deal_age_days,
        "min_class_deals": min_class_deals,
    }
    for segment, labels in segment_labels(scored).items():
        entries = []
        for value in sorted(set(labels.tolist()), key=str):
            mask = labels == value
            won = int(y[mask].sum())
            entry: dict[str, Any] = {
                "value": value,
                "deals": int(mask.sum()),
                "won": won,
                "win_rate": float(y[mask].mean()),
            }
            lost = entry["deals"] - won
            if min(won, lost) < min_class_deals:
                entry["missing"] = (
                    f"{won} won and {lost} lost deals: fewer than {min_class_deals} of either"
                )
            else:
                metrics = with_intervals(
                    y[mask],
                    {name: np.asarray(preds[name])[rows][mask] for name in names},
                    deals[mask],
                    config.bootstrap_resamples,
                    config.seed,
                    compare=(model, tuple(baselines)),
                )
                entry[model] = {
                    **{k: metrics[model][k] for k in KEPT},
                    "ci95": {k: metrics[model]["ci95"][k] for k in KEPT},
                }
                entry["model_minus_baseline"] = metrics["model_minus_baseline"]
            entries.append(entry)
        out[segment] = entries
    return out


# ---------------------------------------------------------------- segment models
class FittedSegment(Protocol):
    """What :data:`SegmentFit` returns (``training.train.FittedModel``)."""

    @property
    def model(self) -> ScoringModel: ...

    @property
    def best_iteration(self) -> int: ...


#: Fits a model on a segment's training and validation rows: :mod:`training.train`
#: passes its own fit (booster, early stopping, calibration) with the global model's
#: category lists, so a segment model encodes as the global one and is fitted the same way.
SegmentFit = Callable[[pd.DataFrame, pd.DataFrame], FittedSegment]


def segment_rules(model: ScoringModel) -> list[SegmentRule]:
    """Every candidate rule of :data:`SEGMENTS` the global ``model`` can route by: each
    channel and industry it has a category for, each size band, each open stage. A rule
    reads only the features the model reads at scoring, as encoded, so training's
    membership and serving's route are one function (:meth:`ScoringModel.matches`)."""
    rules = []
    for segment, feature in (("channel", "channel"), ("industry", "industry")):
        rules += [
            SegmentRule(segment, value, feature, category=value)
            for value in model.categories.get(feature, [])
        ]
    if "employee_count" in model.features:
        bounds = [*(lo for lo, _ in SIZE_BANDS[1:]), None]
        rules += [
            SegmentRule("size_band", label, "employee_count", low=float(lo), high=hi)
            for (lo, label), hi in zip(SIZE_BANDS, bounds, strict=True)
        ]
    if "stage_index" in model.features:
        rules += [
            SegmentRule("stage", name, "stage_index", low=float(i), high=float(i) + 1)
            for i, name in STAGE_LEVELS.names.items()
            if name != STAGES[-1]  # closed: no open deal is scored there
        ]
    return rules


def fit_segment_models(
    parts: Mapping[str, pd.DataFrame],
    model: ScoringModel,
    fit: SegmentFit,
    config: TrainConfig,
    min_test_class_deals: int = MIN_SEGMENT_CLASS_DEALS,
) -> tuple[tuple[SegmentModel, ...], dict[str, Any]]:
    """Segment models kept where they beat the global ``model`` on their own test deals.

    For each rule of :func:`segment_rules` with at least ``config.segment_min_class_deals``
    won and lost training deals (a tenth of that in validation) and
    ``min_test_class_deals`` of each among its test deals: ``fit`` on the segment's
    training and validation rows (the same time split; ``training.train`` grows it from
    the global model's trees and calibrates it as it calibrates any model), then both
    models on the
    segment's test deals, each once at ``config.per_deal_age_days`` as the per-deal block
    counts them, with paired deal-bootstrap intervals (:func:`with_intervals`). Kept only
    when the ROC AUC gain's interval is above 0 and neither log loss nor ECE is worse
    beyond its interval: a segment model that ranks better but says wrong numbers would
    mislead the rep reading them.

    Returns the kept models in routing order (largest AUC gain first, so a deal in two
    kept segments goes to the one that gained most) and the report: every candidate
    with its decision, figures and reason. The test deals choose the models, so the
    routed model's own figures on them (``routed``) lean optimistic; the headline
    figures stay the global model's.
    """
    out: dict[str, Any] = {
        "age_days": config.per_deal_age_days,
        "min_class_deals": {"train": config.segment_min_class_deals, "test": min_test_class_deals},
        "candidates": [],
        "kept": [],
    }
    test = parts["test"]
    rows = per_deal_rows(test, config.per_deal_age_days)["at_age"]
    scored = test.iloc[rows]
    X_test = model.encode(scored)
    y = scored["won"].to_numpy(dtype=np.float64)
    deals = scored["deal_id"].to_numpy()
    p_global = model.probability(X_test)
    X = {name: model.encode(parts[name]) for name in ("train", "valid")}
    kept: list[tuple[float, SegmentModel]] = []
    for rule in segment_rules(model):
        masks = {name: model.matches(rule, X[name]) for name in X}
        in_test = model.matches(rule, X_test)
        entry: dict[str, Any] = {"segment": rule.name, "rule": rule.to_dict()}
        counts = {name: class_counts(parts[name][m]) for name, m in masks.items()}
        counts["test"] = class_counts(scored[in_test])
        entry["deals"] = {k: dict(zip(("won", "lost"), c, strict=True)) for k, c in counts.items()}
        short = _too_few(counts, config.segment_min_class_deals, min_test_class_deals)
        if short:
            entry.update(decision="skipped", reason=short)
            out["candidates"].append(entry)
            continue
        fitted = fit(parts["train"][masks["train"]], parts["valid"][masks["valid"]])
        segment = fitted.model
        p_segment = segment.probability(X_test[in_test])
        # A gain not above 0 cannot have its interval above 0: no resamples needed.
        gain = roc_auc_score(y[in_test], p_segment) - roc_auc_score(y[in_test], p_global[in_test])
        m = with_intervals(
            y[in_test],
            {"segment_model": p_segment, "global_model": p_global[in_test]},
            deals[in_test],
            config.bootstrap_resamples if gain > 0 else 0,
            config.seed,
            compare=("segment_model", ["global_model"]),
            compared=INTERVAL_METRICS,
        )
        diff = m["model_minus_baseline"]["global_model"]
        entry.update(
            added_trees=fitted.best_iteration - model.booster.current_iteration(),
            calibration=segment.calibration.method,
            **{
                name: {
                    **{k: m[name][k] for k in KEPT},
                    "ci95": {k: m[name]["ci95"][k] for k in KEPT},
                }
                for name in ("segment_model", "global_model")
            },
            segment_minus_global=diff,
        )
        entry["decision"], entry["reason"] = _decision(diff)
        out["candidates"].append(entry)
        if entry["decision"] == "kept":
            figures = {k: v for k, v in entry.items() if k not in ("rule", "decision")}
            kept.append(
                (
                    float(diff["roc_auc"]["difference"]),
                    SegmentModel(rule, segment.booster, segment.calibration, figures),
                )
            )
    routed = tuple(s for _, s in sorted(kept, key=lambda t: -t[0]))
    out["kept"] = [s.rule.name for s in routed]
    if routed:  # every test deal, each scored by the model its route picks
        m = with_intervals(
            y,
            {
                "routed": replace(model, segment_models=routed).probability(X_test),
                "global_model": p_global,
            },
            deals,
            config.bootstrap_resamples,
            config.seed,
            compare=("routed", ["global_model"]),
            compared=INTERVAL_METRICS,
        )
        out["routed"] = {
            "deals": int(len(y)),
            **{
                name: {
                    **{k: m[name][k] for k in KEPT},
                    "ci95": {k: m[name]["ci95"][k] for k in KEPT},
                }
                for name in ("routed", "global_model")
            },
            "routed_minus_global": m["model_minus_baseline"]["global_model"],
        }
    log.info(
        "segment models: %d of %d candidates kept%s",
        len(routed),
        len(out["candidates"]),
        f" ({', '.join(out['kept'])})" if routed else "",
    )
    return routed, out


def _too_few(counts: Mapping[str, tuple[int, int]], train_min: int, test_min: int) -> str | None:
    """Why a segment has too few deals to fit or judge a model on, or None."""
    needs = {"train": train_min, "valid": max(1, train_min // 10), "test": test_min}
    short = [
        f"{won} won and {lost} lost {name} deals (needs {needs[name]} of each)"
        for name, (won, lost) in counts.items()
        if min(won, lost) < needs[name]
    ]
    return "; ".join(short) or None


def _decision(diff: Mapping[str, Mapping[str, float | None]]) -> tuple[str, str]:
    """``kept`` or ``not kept``, and why in one sentence, from the paired differences
    segment model minus global model (ROC AUC, log loss, ECE with their intervals)."""

    def text(k: str, spec: str) -> str:
        d = diff[k]
        if d["difference"] is None:
            return f"{k} undefined"
        if d["low"] is None or d["high"] is None:
            return f"{k} {d['difference']:+{spec}}"
        return f"{k} {d['difference']:+{spec}} [{d['low']:+{spec}}, {d['high']:+{spec}}]"

    figures = ", ".join([text("roc_auc", ".3f"), text("log_loss", ".4f"), text("ece", ".4f")])
    auc_low = diff["roc_auc"]["low"]
    if (diff["roc_auc"]["difference"] or 0.0) <= 0:
        return "not kept", f"ROC AUC gain not above 0 (no interval needed): {figures}"
    if auc_low is None or auc_low <= 0:
        return "not kept", f"ROC AUC gain not above 0 beyond the interval: {figures}"
    worse = [k for k in ("log_loss", "ece") if (diff[k]["low"] or 0.0) > 0]
    if worse:
        return "not kept", f"{' and '.join(worse)} worse beyond the interval: {figures}"
    return "kept", f"better ROC AUC beyond the interval, calibration no worse: {figures}"


def routing_table(models: Sequence[SegmentModel], candidates: int) -> dict[str, Any]:
    """The routing as the registry, the quality summary and ``GET /model`` show it:
    each kept rule in routing order with the figures that kept it."""
    return {
        "candidates": candidates,
        "kept": [
            {
                "segment": m.rule.name,
                "rule": m.rule.to_dict(),
                "test_deals": m.figures["deals"]["test"],
                "roc_auc": {
                    "segment_model": m.figures["segment_model"]["roc_auc"],
                    "global_model": m.figures["global_model"]["roc_auc"],
                },
                "segment_minus_global": m.figures["segment_minus_global"],
            }
            for m in models
        ],
    }


#: Longest registry tag value MLflow stores (model version tags).
TAG_LIMIT = 5000


def segment_tags(table: Mapping[str, Any]) -> dict[str, str]:
    """The routing in the registry's version tags: ``segments.kept`` (the kept segments in
    routing order) and ``segments.routing`` (each rule with its ROC AUC gain and interval,
    JSON; the rules alone when that is longer than a tag may be)."""
    kept = table["kept"]
    routing = [{**k["rule"], "roc_auc_gain": k["segment_minus_global"]["roc_auc"]} for k in kept]
    text = json.dumps(routing, separators=(",", ":"))
    if len(text) > TAG_LIMIT:
        text = json.dumps([k["rule"] for k in kept], separators=(",", ":"))[:TAG_LIMIT]
    return {
        "segments.kept": ",".join(k["segment"] for k in kept) or "none",
        "segments.candidates": str(table["candidates"]),
        "segments.routing": text,
    }
