"""Train the win-probability model: time split, LightGBM, calibration, evaluation, registry.

The pieces are pure functions on frames (:func:`fit_scoring_model`,
:func:`fit_and_evaluate`) so tests and the flat-table benchmark use exactly what
production uses; :func:`train` adds MLflow logging and registration, and
:func:`train_from_store` builds the frame from the Feast FeatureService first.

Model choices, and why:

* LightGBM on a numpy matrix from :meth:`ScoringModel.encode`, categorical features as
  codes of fixed category lists from the training slice, so serving encodes identically.
* At most 300 trees of 31 leaves with early stopping on validation log loss: serving
  cost grows with trees; gains beyond that are within noise for CRM data of 10k-1M rows.
* ``min_data_in_leaf=50`` and bagging: snapshots of one deal are near copies, so small
  leaves would memorise deals.
* Monotone constraints on the features sales teams have firm beliefs about, and on
  their close relatives so the model cannot route the same signal around a constraint
  (senior contacts, senior met; waiting for our reply): each catalog entry's
  ``monotone`` (:data:`leadscore.features.catalog.MONOTONE`), which the behaviour checks
  then verify. Other features stay free: their direction is a finding, not a belief.
* ``deterministic=True``, ``force_row_wise=True``, a fixed ``num_threads`` and one seed
  for every random choice: the same data and seed give the same trees, bit for bit.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from leadscore.config import CHALLENGER, CHAMPION, Settings, crash_point
from leadscore.crm.attributes import Attribute, feature_attributes
from leadscore.crm.contract import CLOSED_STATUSES, WON
from leadscore.crm.ingest import load_stored, stored_deals
from leadscore.crm.leakage import LeakageAudit, audit_tables, excluded_features
from leadscore.features.catalog import model_catalog
from leadscore.features.store import training_parts
from leadscore.model.fallback import fit_fallback_on_snapshots
from leadscore.model.reason_stats import compute_reason_stats
from leadscore.model.registry import alias_version, mlflow_client
from leadscore.model.scoring_model import ScoringModel
from leadscore.progress import Progress, no_progress
from training.baselines import fit_group_rate, fit_logistic_regression
from training.behaviour import run_behaviour_checks
from training.calibration import (
    CalibrationChoice,
    choose_calibration,
    choose_calibration_over_time,
    fit_method,
)
from training.data import (
    canonical,
    canonical_from_parts,
    check_enough_data,
    class_counts,
    data_window,
    fingerprint,
    load_truth,
    slice_rows,
    slice_warnings,
)
from training.dormant import backtest_dormant, dormant_summary
from training.evaluate import (
    INTERVAL_LEVEL,
    binary_metrics,
    flatten_metrics,
    metrics_by_group,
    per_deal_rows,
    with_intervals,
)
from training.quality import baseline_gate, quality_summary
from training.registry import (
    ensure_experiment,
    fail_dead_runs,
    git_commit,
    make_champion,
    now_iso,
    process_tags,
    register_model,
)
from training.report import write_report
from training.result import TrainConfig, TrainingResult
from training.segments import fit_segment_models, per_segment, routing_table, segment_tags
from training.split import (
    SLICES,
    Folds,
    SplitBounds,
    choose_folds,
    choose_split,
    deal_hash,
    slice_masks,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FittedModel:
    model: ScoringModel
    calibration: CalibrationChoice
    best_iteration: int


def category_lists(
    frame: pd.DataFrame, columns: Sequence[str], max_categories: int
) -> dict[str, list[str]]:
    """Fixed category list per column from the training slice: every value seen, up to the
    ``max_categories`` most frequent, in sorted order (codes must not depend on row order)."""
    out = {}
    for c in columns:
        counts = frame[c].dropna().astype(str).value_counts()
        counts = counts.sort_index(kind="stable").sort_values(ascending=False, kind="stable")
        out[c] = sorted(counts.index[:max_categories])
    return out


def train_booster(
    model: ScoringModel,
    train: pd.DataFrame,
    valid: pd.DataFrame,
    config: TrainConfig,
    progress: Progress = no_progress,
    init_model: lgb.Booster | None = None,
) -> lgb.Booster:
    """LightGBM with early stopping on validation log loss, cut to its best iteration.

    Cutting (rather than relying on ``best_iteration`` at predict time) makes every
    consumer of the saved booster, contributions included, use the same trees.
    ``progress`` counts boosting rounds (task ``boosting``); early stopping ends it short
    of ``num_boost_round``. With ``init_model`` the booster starts from its trees and adds
    up to ``num_boost_round`` more (a segment model, :func:`training.segments.fit_segment_models`).
    """
    params = config.lgb_params(model.features)
    cats = model.categorical_indices
    dtrain = lgb.Dataset(
        model.encode(train),
        label=train["won"].to_numpy(),
        feature_name=model.features,
        categorical_feature=cats,
        free_raw_data=True,
    )
    dvalid = lgb.Dataset(
        model.encode(valid),
        label=valid["won"].to_numpy(),
        reference=dtrain,
        categorical_feature=cats,
        free_raw_data=True,
    )
    booster = lgb.train(
        params,
        dtrain,
        num_boost_round=config.num_boost_round,
        init_model=init_model,
        valid_sets=[dvalid],
        valid_names=["valid"],
        callbacks=[
            lgb.early_stopping(config.early_stopping_rounds, first_metric_only=True, verbose=False),
            _count_rounds(progress),
        ],
    )
    rounds = booster.current_iteration()
    progress("boosting", rounds, rounds, unit="rounds")
    best = booster.best_iteration or rounds
    log.info(
        "LightGBM: %d trees, valid log loss %.5f",
        best,
        booster.best_score["valid"]["binary_logloss"],
    )
    return lgb.Booster(model_str=booster.model_to_string(num_iteration=best))


def _count_rounds(progress: Progress) -> Callable[[lgb.callback.CallbackEnv], None]:
    """A LightGBM callback telling ``progress`` each finished round."""

    def count(env: lgb.callback.CallbackEnv) -> None:
        progress("boosting", env.iteration + 1, env.end_iteration, unit="rounds")

    return count


def fit_scoring_model(
    train: pd.DataFrame,
    valid: pd.DataFrame,
    features: Sequence[str],
    categorical: Sequence[str],
    config: TrainConfig,
    progress: Progress = no_progress,
    start: ScoringModel | None = None,
) -> FittedModel:
    """Booster plus calibrator: trained on ``train``, early-stopped and calibrated on ``valid``.

    Frames need ``won`` (0/1), ``deal_id`` (calibration folds group by it) and ``features``.

    ``start`` is the model a segment model grows from: its category lists (so both encode
    a deal alike) and its trees, which the new booster continues on the segment's rows
    (``init_model``): a segment of a few hundred deals then learns only where it differs,
    instead of learning again from little data everything the global model knows, and
    boosting stops within a few dozen rounds where it does not differ. Its calibration is
    the global model's method fitted on the segment's validation rows
    (:func:`training.calibration.fit_method`): a segment's periods are too short to choose
    one over time.
    """
    categories = start.categories if start is not None else None
    if categories is None:
        categories = category_lists(
            train, [c for c in features if c in categorical], config.max_categories
        )
    model = ScoringModel(booster=None, features=list(features), categories=dict(categories))  # type: ignore[arg-type]
    model.booster = train_booster(
        model, train, valid, config, progress, start.booster if start is not None else None
    )
    raw_valid = model.raw_score(model.encode(valid))
    blocks = _calibration_blocks(model, train, config) if start is None else None
    if start is not None:
        choice = fit_method(
            start.calibration.method,
            raw_valid,
            valid["won"].to_numpy(),
            valid["deal_id"].to_numpy(),
            config.min_isotonic_deals,
        )
    elif blocks is None:  # too few deals to chain periods: folds within the validation slice
        choice = choose_calibration(
            raw_valid,
            valid["won"].to_numpy(),
            valid["deal_id"].to_numpy(),
            min_isotonic_deals=config.min_isotonic_deals,
        )
    else:
        choice = choose_calibration_over_time(
            [*blocks, (raw_valid, valid["won"].to_numpy())],
            raw_valid,
            valid["won"].to_numpy(),
            valid["deal_id"].to_numpy(),
            min_isotonic_deals=config.min_isotonic_deals,
        )
    model.calibration = choice.calibration
    return FittedModel(model, choice, model.booster.current_iteration())


#: Consecutive periods the training slice is cut into to choose the calibration over time,
#: and the fewest deals of each outcome each period needs (else: folds within validation).
CALIBRATION_PERIODS = 3
MIN_PERIOD_CLASS_DEALS = 10


def _calibration_blocks(
    model: ScoringModel, train: pd.DataFrame, config: TrainConfig
) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """Raw scores and outcomes of the training slice's later periods, each scored out of
    sample by a booster with the final model's trees and parameters trained on the
    periods before it (:func:`training.calibration.choose_calibration_over_time`).

    Periods are consecutive runs of deals by close date (by the seeded deal hash when
    undated, as the random split orders them). ``None`` when a period lacks
    :data:`MIN_PERIOD_CLASS_DEALS` deals of an outcome.
    """
    deals = train.drop_duplicates("deal_id")[["deal_id", "closed_at", "won"]]
    if deals["closed_at"].notna().all():
        order = deals.sort_values(["closed_at", "deal_id"], kind="stable")["deal_id"]
    else:
        key = deal_hash(deals["deal_id"].astype(str).to_numpy(dtype=object), config.seed)
        order = deals["deal_id"].iloc[np.argsort(key, kind="stable")]
    period = pd.Series(
        np.arange(len(order)) * CALIBRATION_PERIODS // max(1, len(order)), index=order.to_numpy()
    )
    of_row = train["deal_id"].map(period).to_numpy()
    by_deal = deals.set_index("deal_id")["won"].groupby(period).agg(["sum", "count"])
    if (
        len(by_deal) < CALIBRATION_PERIODS
        or (
            np.minimum(by_deal["sum"], by_deal["count"] - by_deal["sum"]) < MIN_PERIOD_CLASS_DEALS
        ).any()
    ):
        return None
    params = config.lgb_params(model.features)
    rounds = model.booster.current_iteration()
    blocks: list[tuple[np.ndarray, np.ndarray]] = []
    for j in range(1, CALIBRATION_PERIODS):
        before, this = train[of_row < j], train[of_row == j]
        booster = lgb.train(
            params,
            lgb.Dataset(
                model.encode(before),
                label=before["won"].to_numpy(),
                feature_name=model.features,
                categorical_feature=model.categorical_indices,
            ),
            num_boost_round=rounds,
        )
        raw = np.asarray(booster.predict(model.encode(this), raw_score=True), dtype=np.float64)
        blocks.append((raw, this["won"].to_numpy()))
    return blocks


# ---------------------------------------------------------------- the CRM model
#: The steps of :func:`fit_and_evaluate`, as ``progress`` hears them (task ``train``).
TRAIN_STEPS = (
    "split",
    "boosting and calibration",
    "reason statistics",
    "baselines and evaluation",
    "segment models",
    "behaviour checks",
)


def _step(progress: Progress, name: str) -> None:
    progress("train", TRAIN_STEPS.index(name), len(TRAIN_STEPS), unit="steps", detail=name)


def fit_and_evaluate(
    frame: pd.DataFrame,
    feature_service: str,
    config: TrainConfig | None = None,
    truth: pd.DataFrame | None = None,
    progress: Progress = no_progress,
    attributes: Sequence[Attribute] = (),
    audit: LeakageAudit | None = None,
) -> TrainingResult:
    """Split by close time, train, calibrate, evaluate against baselines (and the oracle).

    Features fed by a column the leakage ``audit`` excludes are left out of the model
    (:func:`leadscore.crm.leakage.excluded_features`), so serving never asks for them;
    the audit and the features it removed are in the evaluation under ``audit``.

    Undated closed deals are left out of the time split and counted; with no dated closed
    deal the split is random and says so (:func:`training.split.choose_split`).

    The model's features are the catalog's, then those of the custom ``attributes``
    known before close (``after_close`` ones never are); the model keeps those attributes.

    Raises :class:`training.data.InsufficientDataError` with fewer than
    ``config.min_class_deals`` won or lost deals overall, or in any slice fewer than
    a tenth of that (a slice without both outcomes cannot stop, calibrate or test).
    BLAS (the logistic regression baseline) runs on ``config.num_threads`` threads too:
    results then do not depend on the machine, and a busy machine is not oversubscribed.
    ``progress`` hears each of :data:`TRAIN_STEPS` and the boosting rounds.
    """
    config = config or TrainConfig()
    with threadpool_limits(limits=config.num_threads):
        result = _fit_and_evaluate(
            frame, feature_service, config, truth, progress, attributes, audit
        )
    progress("train", len(TRAIN_STEPS), len(TRAIN_STEPS), unit="steps")
    return result


def _fit_and_evaluate(
    frame: pd.DataFrame,
    feature_service: str,
    config: TrainConfig,
    truth: pd.DataFrame | None,
    progress: Progress,
    attributes: Sequence[Attribute] = (),
    audit: LeakageAudit | None = None,
) -> TrainingResult:
    _step(progress, "split")
    attributes = feature_attributes(attributes)
    frame = canonical(frame, attributes)
    bounds = choose_split(frame, config.fractions, config.seed)
    masks = slice_masks(frame, bounds)
    check_enough_data(
        slice_rows(frame, np.logical_or.reduce(list(masks.values()))), config.min_class_deals
    )
    log.info("%s", bounds.note)
    parts = {name: slice_rows(frame, masks[name]) for name in SLICES}
    # The test slice may be too small to answer: cross-validation then replaces it for
    # the evaluation (the registered model stays the one trained on this split).
    folds = choose_folds(
        frame, bounds, masks, class_counts(parts["test"]), config.min_test_class_deals
    )
    for name, part in parts.items():
        if name == "test" and folds is not None:
            continue
        check_enough_data(
            part, max(1, config.min_class_deals // 10), where=f"closed deals in the {name} slice"
        )
    warnings = slice_warnings(
        parts, config.warn_min_class_deals, config.warn_win_rate_shift, config.warn_win_odds_ratio
    )
    if folds is not None:
        warnings.append(folds.reason)
    for warning in warnings:
        log.warning("%s", warning)
    catalog = model_catalog(attributes)
    features = [f.name for f in catalog]
    categorical = [f.name for f in catalog if f.kind == "categorical"]
    leaked = excluded_features(audit, features, attributes) if audit else []
    if leaked:
        log.warning("leakage audit: left out of the model: %s", ", ".join(leaked))
    features = [f for f in features if f not in leaked]
    categorical = [f for f in categorical if f not in leaked]
    _step(progress, "boosting and calibration")
    fitted, preds = _fit_and_predict(parts, features, categorical, config, progress)
    model = fitted.model
    model.attributes = tuple(a for a in attributes if a.feature not in leaked)
    _step(progress, "reason statistics")
    model.reason_stats = compute_reason_stats(parts["train"], features, model.categories)
    model.info = version_info(
        feature_service, frame, bounds, parts, config, fitted, data_window(frame)
    )

    _step(progress, "baselines and evaluation")
    valid = parts["valid"]
    test = parts["test"]
    if folds is not None:
        # Every fold's test block scored by the models of its own window, pooled: the
        # figures below are the cross-validated ones; the last time fold is this split.
        test, preds = _cross_validated(
            frame, folds, features, categorical, config, (masks["test"], preds)
        )
    y_test = test["won"].to_numpy()
    raw_valid = model.raw_score(model.encode(valid))
    # Per snapshot, with deal-bootstrap intervals; the per-deal blocks below.
    snap = with_intervals(
        y_test,
        {name: preds[name] for name in PREDICTORS},
        test["deal_id"].to_numpy(),
        config.bootstrap_resamples,
        config.seed,
        compare=("model", BASELINES),
    )
    evaluation: dict[str, Any] = {
        "data": {
            "feature_service": feature_service,
            "window": model.info["window"],
            "split": bounds.to_dict(),
            "deals": model.info["deals"],
            "snapshots": {name: int(len(p)) for name, p in parts.items()},
        },
        "warnings": warnings,
        "cross_validation": folds.to_dict() if folds is not None else None,
        "intervals": {
            "level": INTERVAL_LEVEL,
            "resamples": config.bootstrap_resamples,
            "seed": config.seed,
            "unit": "deal (a resample keeps all of a drawn deal's snapshots)",
        },
        "model": {
            "trees": fitted.best_iteration,
            "calibration": model.calibration.method,
            "calibration_reason": fitted.calibration.reason,
            "calibration_cv": {
                "log_loss": fitted.calibration.cv_log_loss,
                "ece": fitted.calibration.cv_ece,
            },
        },
        "valid": {
            "uncalibrated": binary_metrics(
                valid["won"].to_numpy(), 1.0 / (1.0 + np.exp(-raw_valid))
            ),
            "calibrated": binary_metrics(valid["won"].to_numpy(), model.calibration(raw_valid)),
        },
        "test": {
            **snap["model"],
            "model_minus_baseline": snap["model_minus_baseline"],
            "by_channel": metrics_by_group(y_test, preds["model"], test["channel"].to_numpy()),
        },
        "test_uncalibrated": binary_metrics(y_test, preds["model_uncalibrated"]),
        "baselines": {
            name: {
                **snap[name],
                "by_channel": metrics_by_group(y_test, preds[name], test["channel"].to_numpy()),
            }
            for name in BASELINES
        },
        "per_deal": _per_deal(test, preds, config),
        "segments": per_segment(test, preds, config, BASELINES),
    }
    evaluation["gate"] = baseline_gate(
        evaluation["per_deal"],
        config.gate_creation_margin_auc,
        config.gate_creation_margin_log_loss,
    )
    log.info("baseline gate: %s", evaluation["gate"]["sentence"])
    # Dormant deals' own outcome, on this split: the list scores them by what it chooses.
    evaluation["dormant"], model.dormant_calibration = backtest_dormant(model, parts, config, truth)
    model.info["dormant"] = dormant_summary(evaluation["dormant"])
    # What serving shows of the model's quality (the page's panel, GET /model) travels
    # inside the model, so it is always the registered version's own.
    model.info["quality"] = quality_summary(model, evaluation, test, preds["model"], catalog)
    _step(progress, "segment models")
    evaluation["segment_models"] = _segment_models(
        model, parts, folds, features, categorical, config
    )
    if truth is not None:
        evaluation["at_creation"] = _at_creation(test, preds, truth)
    if audit is not None:
        evaluation["audit"] = {**audit.to_dict(), "excluded_features": leaked}
    _step(progress, "behaviour checks")
    behaviour = run_behaviour_checks(model, test, sample=config.behaviour_sample, seed=config.seed)
    evaluation["behaviour"] = behaviour.to_dict()
    log.info(
        "test: ROC AUC %.3f, log loss %.4f, ECE %.4f (logistic regression %.3f, channel rate %.3f)",
        evaluation["test"]["roc_auc"] or float("nan"),
        evaluation["test"]["log_loss"],
        evaluation["test"]["ece"],
        evaluation["baselines"]["logistic_regression"]["roc_auc"] or float("nan"),
        evaluation["baselines"]["channel_rate"]["roc_auc"] or float("nan"),
    )
    creation = evaluation["per_deal"]["at_creation"]
    log.info(
        "per deal at creation (%d deals): ROC AUC %.3f (logistic regression %.3f, channel rate %.3f)",
        creation["deals"],
        creation["model"]["roc_auc"] or float("nan"),
        creation["logistic_regression"]["roc_auc"] or float("nan"),
        creation["channel_rate"]["roc_auc"] or float("nan"),
    )
    return TrainingResult(
        model,
        frame,
        bounds,
        masks,
        preds,
        evaluation,
        behaviour,
        fitted.calibration,
        config,
        audit=audit,
        pooled_test=test if folds is not None else None,
    )


def _segment_models(
    model: ScoringModel,
    parts: Mapping[str, pd.DataFrame],
    folds: Folds | None,
    features: Sequence[str],
    categorical: Sequence[str],
    config: TrainConfig,
) -> dict[str, Any]:
    """Fit the segment models (:func:`training.segments.fit_segment_models`) with this
    module's own fit, each grown from the global ``model`` (:func:`fit_scoring_model`'s
    ``start``), route ``model`` through the kept ones and put the routing table in its quality summary (``GET /model``, the page).

    Called once the global model's own figures, dormant calibration and quality summary
    are in: those describe the global booster, which every unrouted deal still gets.
    Returns the evaluation's ``segment_models`` block.
    """
    # Stated either way, so a reader of the summary (GET /model, the page) never has to
    # tell "none kept" from "never tried" by a missing key: None is "not tried".
    model.info["quality"]["segment_models"] = None
    if not config.segment_models:
        return {"skipped": "segment models switched off (TrainConfig.segment_models)"}
    if folds is not None:
        return {"skipped": "the test slice is too small: cross-validation replaced it"}

    growing = replace(config, early_stopping_rounds=config.segment_early_stopping_rounds)

    def fit(train: pd.DataFrame, valid: pd.DataFrame) -> FittedModel:
        return fit_scoring_model(train, valid, features, categorical, growing, start=model)

    model.segment_models, report = fit_segment_models(parts, model, fit, config)
    model.info["quality"]["segment_models"] = routing_table(
        model.segment_models, len(report["candidates"])
    )
    return report


def version_info(
    feature_service: str,
    frame: pd.DataFrame,
    bounds: SplitBounds,
    parts: Mapping[str, pd.DataFrame],
    config: TrainConfig,
    fitted: FittedModel,
    window: Mapping[str, str],
) -> dict[str, Any]:
    """What a registered version carries about its training (``ScoringModel.info``): the
    feature service, split, data window and fingerprint, won and lost units per slice,
    seed, trees, the calibration's reason and the LightGBM version. The registry tags and
    the model card read it; the revival model (:mod:`training.revival`) adds its own keys."""
    return {
        "feature_service": feature_service,
        "split": bounds.to_dict(),
        "window": dict(window),
        "fingerprint": fingerprint(frame),
        "deals": {
            name: dict(zip(("won", "lost"), class_counts(p), strict=True))
            for name, p in parts.items()
        },
        "seed": config.seed,
        "trees": fitted.best_iteration,
        "calibration": fitted.calibration.reason,
        "lightgbm": lgb.__version__,
    }


def _fit_and_predict(
    parts: Mapping[str, pd.DataFrame],
    features: Sequence[str],
    categorical: Sequence[str],
    config: TrainConfig,
    progress: Progress = no_progress,
) -> tuple[FittedModel, dict[str, np.ndarray]]:
    """The model and the baselines fitted on one split's ``train`` (the model stopped and
    calibrated on ``valid``), and their probabilities on its ``test`` rows: what a fold of
    cross-validation and the single split both do, so they cannot drift apart.

    The fallback a small organisation is scored with (:mod:`leadscore.model.fallback`) is
    one of the baselines, fitted on ``train`` alone like the others: a trained model
    replaces it only by beating it."""
    fitted = fit_scoring_model(
        parts["train"], parts["valid"], features, categorical, config, progress
    )
    model, test = fitted.model, parts["test"]
    numeric = [f for f in features if f not in categorical]
    lr = fit_logistic_regression(parts["train"], numeric, categorical)
    channel = fit_group_rate(parts["train"], "channel")
    fallback = fit_fallback_on_snapshots(parts["train"])
    X_test = model.encode(test)
    preds = {
        "model": model.probability(X_test),
        "model_uncalibrated": 1.0 / (1.0 + np.exp(-model.raw_score(X_test))),
        "logistic_regression": lr.predict(test),
        "channel_rate": channel.predict(test),
        "stage_fallback": fallback.predict(
            test["stage_index"].to_numpy(), test["channel"].to_numpy()
        ),
    }
    return fitted, preds


def _cross_validated(
    frame: pd.DataFrame,
    folds: Folds,
    features: Sequence[str],
    categorical: Sequence[str],
    config: TrainConfig,
    single: tuple[np.ndarray, dict[str, np.ndarray]],
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """The test rows of every fold, each scored by the model and baselines of its own
    fold (:func:`_fit_and_predict`), pooled: one frame and one array per predictor.
    ``single`` is the single split's test mask and predictions, reused for the fold that
    is that split (the last time-ordered one) rather than trained twice.

    A fold whose training or validation rows lack an outcome cannot train; it is left out
    and the log says so (its test deals then count in no figure).
    """
    tests, preds = [], []
    for i, masks in enumerate(folds.masks):
        parts = {name: frame[m] for name, m in masks.items()}
        short = [n for n in ("train", "valid") if min(class_counts(parts[n])) == 0]
        if short or not len(parts["test"]):
            log.warning(
                "fold %d of %d left out: no deal of one outcome in %s",
                i + 1,
                len(folds.masks),
                ", ".join(short) or "test",
            )
            continue
        tests.append(parts["test"])
        if masks["test"] is single[0]:
            preds.append(single[1])
        else:
            preds.append(_fit_and_predict(parts, features, categorical, config)[1])
    pooled = {name: np.concatenate([p[name] for p in preds]) for name in preds[0]}
    return pd.concat(tests), pooled


#: Predictors evaluated with intervals: the model and the baselines it must beat.
BASELINES = ("logistic_regression", "channel_rate", "stage_fallback")
PREDICTORS = ("model", *BASELINES)


def _per_deal(
    test: pd.DataFrame, preds: Mapping[str, np.ndarray], config: TrainConfig
) -> dict[str, Any]:
    """Model and baselines on one row per test deal, for any data (no truth needed).

    ``at_creation``: each deal's creation snapshot; ``at_age``: its snapshot at
    ``config.per_deal_age_days`` (:func:`training.evaluate.per_deal_rows`). Every deal counts
    once, so neither long deals nor a label that follows deal age can flatter the figures
    the way per-snapshot metrics can. Each block has deal counts, metrics with deal-bootstrap
    intervals per predictor, and ``model_minus_baseline`` (paired intervals).
    """
    out: dict[str, Any] = {"age_days": config.per_deal_age_days}
    y_all, deal_all = test["won"].to_numpy(), test["deal_id"].to_numpy()
    for block, rows in per_deal_rows(test, config.per_deal_age_days).items():
        y = y_all[rows]
        won = int(y.sum())
        out[block] = {
            "deals": int(len(rows)),
            "won": won,
            "lost": int(len(rows)) - won,
            **with_intervals(
                y,
                {name: preds[name][rows] for name in PREDICTORS},
                deal_all[rows],
                config.bootstrap_resamples,
                config.seed,
                compare=("model", BASELINES),
            ),
        }
    return out


def _at_creation(
    test: pd.DataFrame, preds: Mapping[str, np.ndarray], truth: pd.DataFrame
) -> dict[str, Any]:
    """Model, baselines and the generator's oracle on the test deals' creation snapshots.

    ``p_at_creation`` is the best calibrated score anything could give at creation, so
    the gap between model and oracle here is what better features or more data can win.
    ``p_without_rep`` (when the truth has it) leaves out the owner's skill, which no
    feature shows at creation: the ceiling for a model of the features, reported as
    ``oracle_without_rep`` so the model is judged against what it could see.
    """
    first = (test["snapshot_index"] == 0).to_numpy()
    indexed = truth.set_index("deal_id")
    oracle = test.loc[first, "deal_id"].map(indexed["p_at_creation"]).to_numpy(np.float64)
    known = ~np.isnan(oracle)
    if not known.all():
        log.warning(
            "truth lacks %d of %d test deals; they are left out of at_creation",
            (~known).sum(),
            len(known),
        )
    y = test["won"].to_numpy()[first][known]
    out = {"deals": int(known.sum()), "oracle": binary_metrics(y, oracle[known])}
    if "p_without_rep" in indexed:
        ceiling = test.loc[first, "deal_id"].map(indexed["p_without_rep"]).to_numpy(np.float64)
        out["oracle_without_rep"] = binary_metrics(y, ceiling[known])
    for name in PREDICTORS:
        out[name] = binary_metrics(y, preds[name][first][known])
    return out


# ---------------------------------------------------------------- with MLflow
def log_training_run(
    settings: Settings,
    result: TrainingResult,
    report: Callable[[TrainingResult, Path, str], object] = write_report,
) -> dict[str, Any]:
    """Log a trained result to MLflow, register it as ``challenger``, maybe make it champion.

    The registered name is ``settings.model_name``: the revival model
    (:mod:`training.revival`) passes its own name and ``report`` writer and is logged,
    registered and aliased exactly as the win model is.

    The run gets the config as parameters, every evaluation number as a metric (``test.roc_auc``,
    ``baselines.channel_rate.log_loss``, ...), the report files under ``report/`` and the model
    under ``model/``. The version gets tags for the feature service, data window, training
    data fingerprint and git commit. The first version becomes champion if its behaviour
    checks and the baseline gate pass (otherwise nothing is champion until a version
    passes, or someone forces one with ``promote --force``); later ones wait for
    ``leadscore promote``. Aliases are set only after the
    run has ended FINISHED, and the run records its process, so a run killed midway is
    marked FAILED by the next command and its version never gets an alias
    (:func:`training.registry.fail_dead_runs`).
    """
    client = mlflow_client(settings)
    experiment_id = ensure_experiment(settings, client)
    fail_dead_runs(settings, client)
    info = result.model.info
    if "quality" in info:  # trained when: the moment this version is registered
        info["quality"]["trained_at"] = now_iso()
    tags = {
        "feast.feature_service": info["feature_service"],
        "data.window_start": info["window"]["first_snapshot"],
        "data.window_end": info["window"]["last_close"],
        "data.fingerprint": info["fingerprint"],
        "git.commit": git_commit(settings.root) or "unknown",
    }
    if info.get("quality", {}).get("segment_models") is not None:
        tags |= segment_tags(info["quality"]["segment_models"])
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=f"{settings.model_name}-{info['fingerprint'][:8]}"
    ) as run:
        mlflow.set_tags(tags | process_tags())
        crash_point("train.run_started")
        mlflow.log_params(
            {
                **result.config.to_params(),
                "feature_service": info["feature_service"],
                "trees": info["trees"],
                "calibration": result.model.calibration.method,
            }
        )
        mlflow.log_metrics(
            flatten_metrics(
                {k: v for k, v in result.evaluation.items() if k not in ("data", "intervals")}
            )
        )
        with tempfile.TemporaryDirectory() as tmp:
            report(result, Path(tmp), run.info.run_id)
            mlflow.log_artifacts(tmp, "report")
        crash_point("train.logged")
        example = result.frame[result.masks["test"]].head(5)
        version = str(register_model(result.model, example, settings).version)
        crash_point("train.version_created")
        name = settings.model_name
        for key, value in tags.items():
            client.set_model_version_tag(name, version, key, value)
        crash_point("train.version_tagged")
    # Aliases only once the run has FINISHED: a run that dies before never gets one.
    crash_point("train.run_finished")
    client.set_registered_model_alias(name, CHALLENGER, version)
    if alias_version(client, name, CHAMPION) is None:
        gate = result.evaluation["gate"]
        if result.behaviour.passed and gate["passed"]:
            make_champion(
                client,
                name,
                version,
                {
                    "promotion.at": now_iso(),
                    "promotion.gate": "first version: behaviour checks and baseline gate passed",
                },
            )
        else:
            log.warning(
                "first version %s stays %s: %s",
                version,
                CHALLENGER,
                "; ".join(
                    [f"behaviour checks failed ({f})" for f in result.behaviour.failures()]
                    + ([] if gate["passed"] else [gate["sentence"]])
                ),
            )
    aliases = sorted(client.get_model_version(name, version).aliases)
    log.info(
        "registered %s version %s (%s), run %s", name, version, ", ".join(aliases), run.info.run_id
    )
    return {
        "run_id": run.info.run_id,
        "model_name": name,
        "model_version": str(version),
        "aliases": aliases,
        **result.evaluation,
    }


def train(
    settings: Settings,
    frame: pd.DataFrame,
    feature_service: str,
    config: TrainConfig | None = None,
    truth: pd.DataFrame | None = None,
    progress: Progress = no_progress,
    attributes: Sequence[Attribute] = (),
    audit: LeakageAudit | None = None,
) -> dict[str, Any]:
    """Fit, evaluate, log the run to MLflow and register the model as ``challenger``.

    Returns the JSON summary ``leadscore train --json`` prints: run_id, model_version,
    aliases, and the evaluation (data, warnings, intervals, model, valid, test,
    test_uncalibrated, baselines, per_deal, gate, at_creation when ``truth`` is given,
    behaviour). ``progress`` hears the training steps
    and then the MLflow run (task ``MLflow run``: report, model, registration).
    """
    result = fit_and_evaluate(frame, feature_service, config, truth, progress, attributes, audit)
    progress("MLflow run", 0, None, detail="report, model and registration")
    summary = log_training_run(settings, result)
    progress("MLflow run", 1, 1)
    return summary


def train_from_store(
    settings: Settings,
    config: TrainConfig | None = None,
    truth_path: Path | None = None,
    progress: Progress = no_progress,
) -> dict[str, Any]:
    """:func:`train` on the frame built from the Feast FeatureService over the stored deals.

    The leakage audit runs first on the stored deals and accounts; the columns it flags
    are left out of the model unless the attribute keeps them, or ``config.keep_flagged``
    keeps them all (to measure what the leak is worth; the audit is still reported).
    """
    truth = load_truth(truth_path) if truth_path else None
    deals = stored_deals(settings.crm_dir)
    # Too few closed deals is the user's data, not a store failure: say how many there
    # are before asking Feast for snapshots that could not train a model anyway.
    closed = deals[deals["status"].isin(CLOSED_STATUSES)]
    check_enough_data(pd.DataFrame({"deal_id": closed["deal_id"], "won": closed["status"] == WON}))
    tp = training_parts(settings, deals, progress=progress)
    audit = audit_tables(
        {**load_stored(settings.crm_dir, ["accounts"]), "deals": deals}, tp.attributes
    )
    if config is not None and config.keep_flagged:
        audit = audit.keeping_all(KEEP_FLAGGED_REASON)
    # The canonical frame straight from the join's chunks, each let go once in place: no
    # raw frame is ever whole, and none is held while training runs. canonical() hands
    # its own frame back, so train does not copy it again.
    feature_service, attributes = tp.feature_service, tp.attributes
    frame = canonical_from_parts(tp.entities, tp.parts, attributes)
    del tp
    log.info("training frame: %d snapshots of %d deals", len(frame), frame["deal_id"].nunique())
    return train(settings, frame, feature_service, config, truth, progress, attributes, audit)


#: Why flagged columns fed the model, when ``train --keep-flagged`` asked for it.
KEEP_FLAGGED_REASON = "train --keep-flagged: every flagged column kept, for comparison only"
