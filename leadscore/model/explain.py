"""Scores, grades and reasons in words for deals given as feature columns.

LightGBM's own TreeSHAP (``pred_contrib=True``) splits each deal's log-odds into one
push per feature; the largest pushes either way become reasons, phrased by
:mod:`leadscore.model.reasons`. A feature the catalog explains as another
(``explained_as``: ``log_amount`` as ``amount``, one idea, "deal size", in two
encodings) is folded into it; SHAP values are additive, so a group's push is the sum.

The service (``serving``) and batch ranking (:mod:`leadscore.priority.rank`) both call
:class:`Explainer`, so a deal reads the same on the API and on the managers' page.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any

import numpy as np
from pydantic import Field
from typing_extensions import TypedDict

from leadscore.config import DEFAULT_GRADE_THRESHOLDS
from leadscore.features.catalog import FEATURES_BY_NAME, Feature, features_by_name
from leadscore.model.reasons import Phrasebook, is_missing
from leadscore.model.scoring_model import Columns, ScoringModel

#: Reasons weaker than this (log-odds) are noise, not reasons.
MIN_CONTRIBUTION = 0.01
MAX_REASONS = 5


def reason_feature(name: str, features: Mapping[str, Feature] = FEATURES_BY_NAME) -> str:
    """The feature a reason about model feature ``name`` speaks of (its catalog ``explained_as``)."""
    feature = features.get(name)
    if feature is None or not feature.explained_as:
        return name
    return feature.explained_as


def grade_of(score: int, thresholds: Mapping[str, int]) -> str:
    for grade, lowest in thresholds.items():
        if score >= lowest:
            return grade
    return "D"


# Results are TypedDicts, not models: a batch of 1,000 deals carries 10,000 reasons, and
# plain dicts cost a tenth of model instances to build while pydantic still documents,
# checks and serialises them from these declarations.
class Reason(TypedDict):
    """One feature's push on the score, as TreeSHAP measures it, in words."""

    feature: Annotated[
        str, Field(description="Catalog name of the feature (see leadscore/features/catalog.py).")
    ]
    label: Annotated[str, Field(description="Short human name of the feature.")]
    value: Annotated[
        float | str | None, Field(description="The deal's value of the feature (null: unknown).")
    ]
    contribution: Annotated[
        float,
        Field(
            description="Push on the log-odds of winning (TreeSHAP); positive raises the probability."
        ),
    ]
    text: Annotated[
        str, Field(description="The reason as a person would say it, with the deal's value.")
    ]
    tooltip: Annotated[
        str | None,
        Field(
            description="A fact from the training data behind it, e.g. how often such deals were won; "
            "null when the model has no statistic for it."
        ),
    ]


class ScoreWarning(TypedDict):
    """Something that made the score less informed, but did not stop it."""

    field: Annotated[str | None, Field(description="Input field or feature concerned, if any.")]
    message: Annotated[str, Field(description="What happened and how it was scored.")]


class Explanation(TypedDict):
    """What the model says about one deal (a :class:`ScoreResult` without the bookkeeping)."""

    probability: float
    score: int
    grade: str
    positive_reasons: list[Reason]
    negative_reasons: list[Reason]


class Explainer:
    """A scoring model with the serving policy: calibrated score, grade, reasons in words."""

    def __init__(
        self,
        model: ScoringModel,
        grade_thresholds: Mapping[str, int] = DEFAULT_GRADE_THRESHOLDS,
        max_reasons: int = MAX_REASONS,
        min_contribution: float = MIN_CONTRIBUTION,
        catalog: Iterable[Feature] | None = None,
    ) -> None:
        self.model = model
        self.grade_thresholds = dict(grade_thresholds)
        self.max_reasons = max_reasons
        self.min_contribution = min_contribution
        #: The model's catalog: the built-in features and its custom attributes, or
        #: ``catalog`` for a model on other features (the revival model's
        #: :func:`leadscore.features.catalog.revival_catalog`), whose reasons are then
        #: phrased from those entries.
        self.features = (
            features_by_name(model.attributes) if catalog is None else {f.name: f for f in catalog}
        )
        self.phrasebook = Phrasebook(model.reason_stats, features=self.features)
        grouped = [reason_feature(name, self.features) for name in model.features]
        self.reason_features = list(dict.fromkeys(grouped))
        position = {name: k for k, name in enumerate(self.reason_features)}
        #: (model features x reason features) 0/1 matrix: contributions @ group sums groups.
        self._group = np.zeros((len(grouped), len(self.reason_features)))
        for j, name in enumerate(grouped):
            self._group[j, position[name]] = 1.0

    def explain(self, columns: Columns) -> list[Explanation]:
        """Score and explain deals given as feature columns (extra columns ignored)."""
        X = self.model.encode_columns(columns)
        if not len(X):
            return []
        contributions = self.model.contributions(X)
        # The contributions add up to the raw score: one pass over the trees, not two.
        probability = self.model.calibration(contributions.sum(axis=1)).tolist()
        pushes = contributions[:, :-1] @ self._group
        order = np.argsort(pushes, axis=1, kind="stable")
        k, floor = self.max_reasons, self.min_contribution
        out: list[Explanation] = []
        values = [columns.get(name) for name in self.reason_features]
        for i, (p, row, ranked) in enumerate(
            zip(probability, pushes.tolist(), order.tolist(), strict=True)
        ):
            score = int(round(100 * p))
            out.append(
                {
                    "probability": p,
                    "score": score,
                    "grade": grade_of(score, self.grade_thresholds),
                    "positive_reasons": [
                        self._reason(j, row[j], values[j], i)
                        for j in ranked[::-1][:k]
                        if row[j] > floor
                    ],
                    "negative_reasons": [
                        self._reason(j, row[j], values[j], i) for j in ranked[:k] if row[j] < -floor
                    ],
                }
            )
        return out

    def _reason(self, j: int, push: float, column: Sequence[Any] | None, i: int) -> Reason:
        name = self.reason_features[j]
        value = None if column is None else column[i]
        text, tooltip = self.phrasebook.phrase(name, value)
        return {
            "feature": name,
            "label": self.features[name].label,
            "value": None if is_missing(value) else value,
            "contribution": round(push, 4),
            "text": text,
            "tooltip": tooltip,
        }

    def unseen_category_warnings(self, columns: Columns) -> list[list[ScoreWarning]]:
        """Per deal, categories the model never saw: scored down LightGBM's missing/other branch."""
        return [
            [
                {
                    "field": name,
                    "message": f"{name} {columns[name][i]!r} was not seen in training; "
                    f"scored as an unknown {name}.",
                }
                for name in names
            ]
            for i, names in enumerate(self.model.unseen_categories(columns))
        ]
