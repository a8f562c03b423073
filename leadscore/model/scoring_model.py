"""The scoring model: a LightGBM booster plus everything needed to use it the same way everywhere.

Training builds a :class:`ScoringModel`; MLflow stores the native booster with the rest
as model metadata (``MLmodel`` -> ``metadata.lead_scorer``); the BentoML service and
batch ranking load it back. Encoding, calibration and contributions live here once, so
a deal is scored identically by every path.

Categorical features are encoded as the position of the value in a fixed category
list saved with the model. A value the model never saw becomes NaN, which LightGBM
sends down the "missing/other" branch: scored, not an error.

Segment models (issue 16) ride inside the same object: training keeps a
:class:`SegmentModel` (own booster and calibration, the global model's features and
category lists) only where it beat the global model on that segment's test deals, and
:meth:`ScoringModel.route` sends each encoded row to the first kept segment whose
:class:`SegmentRule` it matches, else to the global booster. Every score, probability and
contribution goes through that routing, so the service, the list and the gate need no
segment code: the model that scored a deal is the model whose reasons it shows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, cast

import lightgbm as lgb
import numpy as np
import pandas as pd

from leadscore.crm.attributes import Attribute, attributes_document, parse_attributes
from leadscore.model import treeshap
from leadscore.model.treeshap import ShapEngine

CalibrationMethod = Literal["isotonic", "platt", "none"]
#: Feature values by feature name, one entry per deal: the serving path's batch format.
Columns = Mapping[str, Sequence[Any]]
#: What the page and ``GET /model`` say of a model without ``info["quality"]`` (the summary
#: training stores, :mod:`training.quality`): one trained before training stored it.
NO_QUALITY = "no quality summary: trained before this version"
#: The baseline gate of a model trained before training measured one.
NO_GATE: Mapping[str, Any] = {
    "passed": False,
    "sentence": "not checked against the baselines: trained before the baseline gate "
    "existed; train it again",
    "checks": [],
}
#: What everything that serves a model failing the gate says first (``promote --force``
#: is the only way such a model becomes champion).
NOT_BETTER = "model not better than baseline"


@dataclass(frozen=True)
class Calibration:
    """Maps the booster's raw score (log-odds) to a calibrated probability.

    ``isotonic``: piecewise-linear interpolation through (x, y) knots;
    ``platt``: sigmoid(a * raw + b); ``none``: sigmoid(raw).
    """

    method: CalibrationMethod = "none"
    x: tuple[float, ...] = ()
    y: tuple[float, ...] = ()
    a: float = 1.0
    b: float = 0.0

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype=np.float64)
        if self.method == "isotonic":
            return np.interp(raw, np.asarray(self.x), np.asarray(self.y))
        if self.method == "platt":
            return 1.0 / (1.0 + np.exp(-(self.a * raw + self.b)))
        return 1.0 / (1.0 + np.exp(-raw))

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "x": list(self.x),
            "y": list(self.y),
            "a": self.a,
            "b": self.b,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Calibration:
        return cls(
            d["method"],
            tuple(d.get("x", ())),
            tuple(d.get("y", ())),
            d.get("a", 1.0),
            d.get("b", 0.0),
        )


@dataclass(frozen=True)
class SegmentRule:
    """Which deals a segment model scores: one feature as the model encodes it.

    A category of a categorical ``feature`` (``category``: the channel ``web``), or the
    half-open range ``[low, high)`` of a numeric one (a size band of ``employee_count``,
    a stage of ``stage_index``). Only features known when the deal is scored, so the
    route is a pure function of the row; a missing value matches no rule.
    """

    #: The cut (``channel``, ``size_band``, ``industry``, ``stage``) and its value's label.
    segment: str
    value: str
    feature: str
    category: str | None = None
    low: float | None = None
    high: float | None = None

    @property
    def name(self) -> str:
        """``channel=web``: how the model card, ``GET /model`` and a result name it."""
        return f"{self.segment}={self.value}"

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SegmentRule:
        return cls(**{k: d[k] for k in d if k in cls.__dataclass_fields__})


@dataclass
class SegmentModel:
    """A booster kept for one segment, with its own calibration and the figures that kept it."""

    rule: SegmentRule
    booster: lgb.Booster
    calibration: Calibration = field(default_factory=Calibration)
    #: Training's decision with its figures (:mod:`training.segments`), for the model card.
    figures: dict[str, Any] = field(default_factory=dict)


#: The route of a row the global booster scores.
GLOBAL = -1


def _raw_score(booster: lgb.Booster, X: np.ndarray) -> np.ndarray:
    return cast(np.ndarray, booster.predict(X, raw_score=True, num_threads=1))


@dataclass
class ScoringModel:
    booster: lgb.Booster
    features: list[str]
    #: Fixed category list per categorical feature, in code order.
    categories: dict[str, list[str]]
    calibration: Calibration = field(default_factory=Calibration)
    #: Training-data facts used to phrase reasons (see serving), keyed by feature.
    reason_stats: dict[str, Any] = field(default_factory=dict)
    #: Free-form facts: feature service, data window, training fingerprint, versions.
    info: dict[str, Any] = field(default_factory=dict)
    #: The custom attributes whose features (``Attribute.feature``) the model was trained
    #: with: reasons phrase them from these, and serving knows which a deal may carry.
    attributes: tuple[Attribute, ...] = ()
    #: The calibration the dormant-deal backtest fitted and kept for dormant deals
    #: (``training.dormant``): the same trees, their number then "a win within the
    #: horizon"; None when the backtest kept the win model's own number, or never ran.
    dormant_calibration: Calibration | None = None
    #: Segment models in routing order: a row goes to the first whose rule it matches.
    segment_models: tuple[SegmentModel, ...] = ()
    #: Who computes :meth:`contributions`: ``auto``, the exact numba TreeSHAP of
    #: :mod:`leadscore.model.treeshap` (LightGBM's ``pred_contrib`` for a booster it does
    #: not support); ``lightgbm``, always ``pred_contrib``. A way of running, not part of
    #: the model: not stored in its metadata.
    shap_engine: ShapEngine = "auto"

    def __post_init__(self) -> None:
        self._index = {f: i for i, f in enumerate(self.features)}
        self._codes = {
            f: {v: float(i) for i, v in enumerate(vals)} for f, vals in self.categories.items()
        }

    # ------------------------------------------------------------ encoding
    @property
    def gate(self) -> dict[str, Any]:
        """The baseline gate training measured (:func:`training.quality.baseline_gate`):
        ``passed`` and one ``sentence``; :data:`NO_GATE` for a model trained before it.

        The win model keeps it in its quality summary (``info["quality"]["gate"]``); the
        revival model, which has no quality summary, in ``info["gate"]``.
        """
        gate = (self.info.get("quality") or {}).get("gate") or self.info.get("gate")
        return dict(gate) if gate else dict(NO_GATE)

    @property
    def gate_warning(self) -> str | None:
        """What serving this model must say: ``model not better than baseline: <why>`` when
        it failed the gate, the :data:`NO_GATE` sentence when it was never checked, else
        ``None``."""
        gate = self.gate
        if gate["passed"]:
            return None
        if not gate.get("checks"):
            return str(gate["sentence"])
        return f"{NOT_BETTER}: {gate['sentence']}"

    @property
    def categorical_indices(self) -> list[int]:
        return [self._index[f] for f in self.categories]

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        """Model matrix from a frame with the feature columns (extra columns ignored)."""
        X = np.full((len(frame), len(self.features)), np.nan)
        for j, name in enumerate(self.features):
            if name not in frame:
                continue
            col = frame[name]
            if name in self._codes:
                X[:, j] = col.map(self._codes[name]).to_numpy(dtype=np.float64, na_value=np.nan)
            else:
                X[:, j] = pd.to_numeric(col, errors="coerce").to_numpy(
                    dtype=np.float64, na_value=np.nan
                )
        return X

    def encode_columns(self, columns: Columns) -> np.ndarray:
        """Model matrix from feature columns (lists or arrays), without pandas: the serving path.

        Extra columns are ignored and absent ones missing; None is missing too. A
        column at a time, so a batch costs one conversion per feature, not per value.
        """
        n = len(next(iter(columns.values()), ()))
        X = np.full((n, len(self.features)), np.nan)
        for j, name in enumerate(self.features):
            values = columns.get(name)
            if values is None:
                continue
            codes = self._codes.get(name)
            if codes is not None:
                X[:, j] = [codes.get(v, math.nan) for v in values]
            else:
                X[:, j] = np.asarray(values, dtype=np.float64)  # None becomes NaN
        return X

    def unseen_categories(self, columns: Columns) -> list[list[str]]:
        """Per row, the categorical features whose value the model never saw."""
        n = len(next(iter(columns.values()), ()))
        out: list[list[str]] = [[] for _ in range(n)]
        for name, codes in self._codes.items():
            for i, value in enumerate(columns.get(name, ())):
                if value is not None and value not in codes:
                    out[i].append(name)
        return out

    # ------------------------------------------------------------ routing
    def matches(self, rule: SegmentRule, X: np.ndarray) -> np.ndarray:
        """Which rows of the model matrix ``X`` fall in ``rule``'s segment."""
        column = X[:, self._index[rule.feature]]
        if rule.category is not None:
            code = self._codes.get(rule.feature, {}).get(rule.category)
            return np.zeros(len(X), dtype=bool) if code is None else column == code
        low = -np.inf if rule.low is None else rule.low
        high = np.inf if rule.high is None else rule.high
        return (column >= low) & (column < high)  # NaN matches neither bound

    def route(self, X: np.ndarray) -> np.ndarray:
        """Per row, the index of the segment model that scores it, :data:`GLOBAL` for none."""
        routes = np.full(len(X), GLOBAL, dtype=np.int64)
        for k in range(len(self.segment_models) - 1, -1, -1):  # the first match wins
            routes[self.matches(self.segment_models[k].rule, X)] = k
        return routes

    def segment_names(self, X: np.ndarray) -> list[str | None]:
        """Per row, the segment whose model scores it (``channel=web``), None: the global model."""
        names = [m.rule.name for m in self.segment_models]
        return [None if k == GLOBAL else names[k] for k in self.route(X).tolist()]

    def _routed(
        self, X: np.ndarray, predict: Callable[[lgb.Booster, np.ndarray], np.ndarray]
    ) -> np.ndarray:
        """``predict(booster, X)`` with each row predicted by its route's booster."""
        if not self.segment_models:
            return predict(self.booster, X)
        routes = self.route(X)
        out: np.ndarray | None = None
        for k in np.unique(routes).tolist():
            rows = routes == k
            booster = self.booster if k == GLOBAL else self.segment_models[k].booster
            part = predict(booster, X[rows])
            if out is None:
                out = np.empty((len(X), *part.shape[1:]))
            out[rows] = part
        if out is None:  # no rows
            return predict(self.booster, X)
        return out

    def recalibrated(self, calibration: Calibration) -> ScoringModel:
        """The global trees read through another ``calibration`` (the dormant one), without
        segment models: that map was fitted on the global booster's scores alone."""
        return replace(self, calibration=calibration, segment_models=())

    # ------------------------------------------------------------ scoring
    def raw_score(self, X: np.ndarray) -> np.ndarray:
        """Log-odds of each row from the booster that scores it (:meth:`route`)."""
        return self._routed(X, _raw_score)

    def calibrate(self, raw: np.ndarray, X: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of the raw scores ``raw`` of the rows of ``X``, each
        through the calibration of the model that scored it."""
        if not self.segment_models:
            return self.calibration(raw)
        raw = np.asarray(raw, dtype=np.float64)
        routes = self.route(X)
        out = self.calibration(raw)
        for k, model in enumerate(self.segment_models):
            rows = routes == k
            if rows.any():
                out[rows] = model.calibration(raw[rows])
        return out

    def probability(self, X: np.ndarray) -> np.ndarray:
        """Calibrated win probability, from the model that scores each row."""
        return self.calibrate(self.raw_score(X), X)

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """TreeSHAP contributions in log-odds: one column per feature, the expected value last.

        Each row's come from the booster that scores it, and sum to its raw score
        (:meth:`raw_score`). Computed by :attr:`shap_engine`, on the calling thread.
        """
        return self._routed(
            X, lambda booster, rows: treeshap.contributions(booster, rows, self.shap_engine)
        )

    def prepare_contributions(self) -> None:
        """Compile every booster's trees for :meth:`contributions` now (a fraction of a
        second per booster, once), so a service's first request does not pay for it."""
        if self.shap_engine == "auto":
            for m in self.segment_models:
                treeshap.compiled(m.booster)
        self.contributions(np.full((1, len(self.features)), np.nan))  # and the kernel

    # ------------------------------------------------------------ persistence
    def metadata(self) -> dict[str, Any]:
        """JSON-able description stored in MLflow's MLmodel file beside the booster."""
        return {
            "features": list(self.features),
            "categories": {k: list(v) for k, v in self.categories.items()},
            "calibration": self.calibration.to_dict(),
            "reason_stats": self.reason_stats,
            "info": self.info,
            **(attributes_document(self.attributes) if self.attributes else {}),
            **(
                {"dormant_calibration": self.dormant_calibration.to_dict()}
                if self.dormant_calibration is not None
                else {}
            ),
            **(
                {
                    "segment_models": [
                        {
                            "rule": m.rule.to_dict(),
                            "calibration": m.calibration.to_dict(),
                            "figures": m.figures,
                        }
                        for m in self.segment_models
                    ]
                }
                if self.segment_models
                else {}
            ),
        }

    @classmethod
    def from_metadata(
        cls,
        booster: lgb.Booster,
        meta: Mapping[str, Any],
        segment_boosters: Sequence[lgb.Booster] = (),
    ) -> ScoringModel:
        """The model :meth:`metadata` describes; ``segment_boosters`` are its segment
        models' boosters, in the order of ``meta["segment_models"]``."""
        segments = meta.get("segment_models") or []
        if len(segments) != len(segment_boosters):
            raise ValueError(
                f"the metadata names {len(segments)} segment models, "
                f"{len(segment_boosters)} boosters were given"
            )
        return cls(
            booster=booster,
            features=list(meta["features"]),
            categories={k: list(v) for k, v in meta["categories"].items()},
            calibration=Calibration.from_dict(meta["calibration"]),
            reason_stats=dict(meta.get("reason_stats", {})),
            info=dict(meta.get("info", {})),
            attributes=parse_attributes("model metadata", meta) if "attributes" in meta else (),
            dormant_calibration=Calibration.from_dict(meta["dormant_calibration"])
            if meta.get("dormant_calibration")
            else None,
            segment_models=tuple(
                SegmentModel(
                    SegmentRule.from_dict(m["rule"]),
                    b,
                    Calibration.from_dict(m["calibration"]),
                    dict(m.get("figures", {})),
                )
                for m, b in zip(segments, segment_boosters, strict=True)
            ),
        )
