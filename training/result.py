"""What a training run is: the parameters that decide the model, and what it produced.

Kept apart from :mod:`training.train` (which fits) so the model card
(:mod:`training.report`) can read a result without importing the code that makes one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from leadscore.config import MIN_CLASS_DEALS, SEED
from leadscore.crm.leakage import LeakageAudit
from leadscore.features.catalog import MONOTONE
from leadscore.model.scoring_model import ScoringModel
from training.behaviour import BehaviourReport
from training.calibration import CalibrationChoice
from training.split import SplitBounds


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides the model besides the data; logged as run parameters."""

    seed: int = SEED
    fractions: tuple[float, float, float] = (0.70, 0.15, 0.15)
    num_boost_round: int = 300
    early_stopping_rounds: int = 30
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_data_in_leaf: int = 50
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    lambda_l2: float = 1.0
    #: Fixed so results do not depend on the machine's core count. One thread: on a shared
    #: 2-core machine two OpenMP threads ran 7-13x *slower* than one (busy-waiting under
    #: contention); raise it on a dedicated machine for million-row frames.
    num_threads: int = 1
    min_class_deals: int = MIN_CLASS_DEALS
    #: Most frequent categories kept per categorical feature; the rest score as unseen.
    max_categories: int = 200
    min_isotonic_deals: int = 500
    monotone: Mapping[str, int] = field(default_factory=lambda: dict(MONOTONE))
    behaviour_sample: int = 1000
    #: Per-deal metrics score each test deal at creation and, if it is still open then, at
    #: this age (days; its last snapshot at or before it).
    per_deal_age_days: float = 30.0
    #: Deal-bootstrap resamples behind every 95% interval (0: no intervals).
    bootstrap_resamples: int = 200
    #: A test slice with fewer won or lost deals than this is replaced, for the evaluation,
    #: by cross-validation (time-ordered windows; stratified folds without dates).
    min_test_class_deals: int = 40
    #: A slice with fewer won or lost deals than this is reported (training goes on).
    warn_min_class_deals: int = 30
    #: A validation or test slice whose deal win rate differs from the training slice's by
    #: more than this (absolute), or by an odds ratio beyond ``warn_win_odds_ratio``, is reported.
    warn_win_rate_shift: float = 0.10
    warn_win_odds_ratio: float = 2.0
    #: Train with the columns the leakage audit flags (``train --keep-flagged``), to
    #: measure what a leak is worth; a run parameter, so such a model shows it.
    keep_flagged: bool = False
    #: The baseline gate (:func:`training.quality.baseline_gate`): at creation the model may
    #: be worse than a baseline by at most these (ROC AUC, log loss); at the fixed age it
    #: must beat both beyond the interval.
    gate_creation_margin_auc: float = 0.02
    gate_creation_margin_log_loss: float = 0.02
    #: Segment models (:func:`training.segments.fit_segment_models`): tried per channel,
    #: size band, industry and stage, kept only where they beat the global model.
    segment_models: bool = True
    #: Fewest won and lost training deals a segment needs for a model of its own.
    segment_min_class_deals: int = MIN_CLASS_DEALS
    #: Early stopping of a segment model's added trees: it starts from the global model's,
    #: so a gain shows within a few rounds or not at all (and training stays within budget).
    segment_early_stopping_rounds: int = 10

    def lgb_params(self, features: Sequence[str]) -> dict[str, Any]:
        return {
            "objective": "binary",
            "metric": "binary_logloss",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": 1,
            "lambda_l2": self.lambda_l2,
            "max_bin": 255,
            "min_data_per_group": 50,
            "cat_smooth": 10.0,
            "max_cat_to_onehot": 4,
            "monotone_constraints": [int(self.monotone.get(f, 0)) for f in features],
            "monotone_constraints_method": "intermediate",
            "seed": self.seed,
            "deterministic": True,
            "force_row_wise": True,
            "num_threads": self.num_threads,
            "verbose": -1,
        }

    def to_params(self) -> dict[str, Any]:
        """Flat run parameters for MLflow."""
        d = asdict(self)
        d["fractions"] = ",".join(str(f) for f in self.fractions)
        d["monotone"] = ",".join(f"{k}:{v:+d}" for k, v in sorted(self.monotone.items()))
        return d


@dataclass
class TrainingResult:
    """A trained, evaluated model before it is logged anywhere."""

    model: ScoringModel
    #: Canonical training frame (see :func:`training.data.canonical`).
    frame: pd.DataFrame
    bounds: SplitBounds
    masks: dict[str, np.ndarray]
    #: Probabilities by predictor (model, model_uncalibrated, baselines) on :attr:`test_rows`.
    test_predictions: dict[str, np.ndarray]
    evaluation: dict[str, Any]
    behaviour: BehaviourReport
    calibration: CalibrationChoice
    config: TrainConfig
    #: The leakage audit of the stored tables this model was trained from (``None`` when
    #: the frame did not come from stored tables, e.g. a test frame).
    audit: LeakageAudit | None = None
    #: The rows the evaluation scored when cross-validation replaced the test slice (its
    #: folds' test rows, pooled); ``None``: the test slice itself.
    pooled_test: pd.DataFrame | None = None

    @property
    def test_rows(self) -> pd.DataFrame:
        """The rows :attr:`test_predictions` score, in their order: the test slice, or the
        pooled cross-validation folds."""
        return self.frame[self.masks["test"]] if self.pooled_test is None else self.pooled_test
