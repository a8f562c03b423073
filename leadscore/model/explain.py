"""Scores, grades and reasons in words for deals given as feature columns.

LightGBM's own TreeSHAP (``pred_contrib=True``) splits each deal's log-odds into one
push per feature; the largest pushes either way become reasons, phrased by
:mod:`leadscore.model.reasons`. A feature the catalog explains as another
(``explained_as``: ``log_amount`` as ``amount``, one idea, "deal size", in two
encodings) is folded into it; SHAP values are additive, so a group's push is the sum.

Which pushes a rep reads, and in what order, follows what a rep can do with them
(issue 13):

* a feature whose catalog ``reason_group`` is hidden (the owner's and the account's
  track record) is never a reason; its push stays in the score;
* a reason whose tooltip says the other way (:func:`leadscore.model.reasons.contradicts`:
  a "+" over "won less often than overall") is not shown: the push comes from the value
  together with the deal's others, which the words cannot say;
* a text is shown once, on the side of its strongest push: several features share one
  (a sparse deal's activity counts all read "No activity logged yet"), and one text
  both as + and - would say nothing;
* the strongest ``max_reasons`` each way are shown, those a rep can act on
  (``ACTIONABLE_GROUPS``: engagement, stakeholders, timing, stage) listed first, then
  the deal's facts, each strongest first. Places go by strength, not by group: a fact
  that moves the odds most (a planted attribute, a referral) is not hidden behind a
  lever that barely moves them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any, NamedTuple

import numpy as np
from pydantic import Field
from typing_extensions import TypedDict

from leadscore.config import DEFAULT_GRADE_THRESHOLDS
from leadscore.features.catalog import (
    ACTIONABLE_GROUPS,
    FEATURES_BY_NAME,
    HIDDEN_GROUPS,
    Feature,
    features_by_name,
)
from leadscore.model.reasons import Phrase, Phrasebook, contradicts, is_missing
from leadscore.model.scoring_model import Columns, ScoringModel

#: Rows per chunk when a batch is explained on several threads (:meth:`Explainer.explain`):
#: large enough that LightGBM's per-call cost vanishes, small enough to share the work.
CHUNK_ROWS = 2_000
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
    text_zh: Annotated[
        str, Field(description="`text` in Chinese, with the same numbers (e.g. 已 37 天没有活动).")
    ]
    tooltip_zh: Annotated[
        str | None,
        Field(description="`tooltip` in Chinese, with the same numbers; null when `tooltip` is."),
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


class Candidate(NamedTuple):
    """A push on one deal's score that may become a reason."""

    #: TreeSHAP push on the log-odds (summed over ``explained_as`` features).
    push: float
    #: Whether the feature's ``reason_group`` is one a rep can act on.
    actionable: bool
    phrase: Phrase
    feature: str
    value: Any


def choose_reasons(
    candidates: Iterable[Candidate], k: int
) -> tuple[list[Candidate], list[Candidate]]:
    """The reasons shown each way, at most ``k``: (raising the score, lowering it).

    ``candidates`` come strongest first (by absolute push), hidden groups and pushes
    under the floor already left out, and are read only as far as needed. A candidate
    that contradicts its tooltip is dropped; of several with one text, the strongest
    claims it (shown, or crowded out of its side), so the text is never shown twice nor
    both ways; a contradicting one claims nothing. Each side keeps its ``k`` strongest
    and lists the actionable ones first, strongest first, then the deal's facts: the
    places go by strength, so a fact that moves the odds most is not hidden behind a
    lever that barely moves them.
    """
    sides: tuple[list[Candidate], list[Candidate]] = ([], [])  # (down, up), strongest first
    texts: set[str] = set()
    for c in candidates:
        if contradicts(c.push, c.phrase.direction) or c.phrase.text in texts:
            continue
        texts.add(c.phrase.text)
        side = sides[c.push > 0]
        if len(side) < k:
            side.append(c)
        elif len(sides[c.push < 0]) >= k:
            break  # both sides full: the rest are weaker
    down, up = (sorted(side, key=lambda c: not c.actionable) for side in sides)
    return up, down


class Explainer:
    """A scoring model with the serving policy: calibrated score, grade, reasons in words."""

    def __init__(
        self,
        model: ScoringModel,
        grade_thresholds: Mapping[str, int] = DEFAULT_GRADE_THRESHOLDS,
        max_reasons: int = MAX_REASONS,
        min_contribution: float = MIN_CONTRIBUTION,
        catalog: Iterable[Feature] | None = None,
        threads: int = 1,
    ) -> None:
        self.model = model
        #: Threads a large batch is explained on (:meth:`explain`); 1 for serving's
        #: requests, whose workers already share the cores.
        self.threads = threads
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
        groups = [self.features[name].reason_group for name in self.reason_features]
        #: Reason features that may be shown, and those a rep can act on.
        self._shown = np.array([g not in HIDDEN_GROUPS for g in groups], dtype=bool)
        self._actionable = [g in ACTIONABLE_GROUPS for g in groups]

    def explain(self, columns: Columns) -> list[Explanation]:
        """Score and explain deals given as feature columns (extra columns ignored).

        With ``threads`` above 1, a batch of more than :data:`CHUNK_ROWS` deals goes
        through in chunks on a pool of that many threads, each chunk's TreeSHAP on one
        LightGBM thread: LightGBM releases the GIL, so one chunk's trees run while
        another's reasons are chosen, and the cores are never oversubscribed by OpenMP.
        """
        X = self.model.encode_columns(columns)
        n = len(X)
        if not n:
            return []
        values = [columns.get(name) for name in self.reason_features]
        if self.threads <= 1 or n <= CHUNK_ROWS:
            return self._explain_rows(X, values, 0)
        starts = range(0, n, CHUNK_ROWS)
        with ThreadPoolExecutor(self.threads, thread_name_prefix="explain") as pool:
            parts = pool.map(
                lambda start: self._explain_rows(X[start : start + CHUNK_ROWS], values, start),
                starts,
            )
            return [e for part in parts for e in part]

    def _explain_rows(
        self, X: np.ndarray, values: list[Sequence[Any] | None], start: int
    ) -> list[Explanation]:
        """Explain the rows of ``X``, deals ``start`` on of ``values`` (by reason feature).

        The per-deal work is what is left once the arrays have spoken: TreeSHAP, the
        grouping, the floor, the order and each candidate's tooltip direction are
        computed for the whole chunk (:meth:`Phrasebook.directions`, per column); a
        deal's loop then reads only its candidates above the floor, strongest first, by
        text and direction, until :func:`choose_reasons` has both sides full, and only
        the reasons shown are phrased in full.
        """
        contributions = self.model.contributions(X)
        # The contributions add up to the raw score: one pass over the trees, not two.
        probability = self.model.calibrate(contributions.sum(axis=1), X).tolist()
        pushes = contributions[:, :-1] @ self._group
        candidates = np.where(self._shown, pushes, 0.0)
        strength = np.abs(candidates)
        usable = self._above_floor(strength)
        directions = np.zeros(usable.shape, dtype=np.int8)
        rows = np.arange(len(X))
        for j in np.flatnonzero(usable.any(axis=0)).tolist():
            hit = np.flatnonzero(usable[:, j])
            column = values[j]
            directions[hit, j] = self.phrasebook.directions(
                self.reason_features[j],
                [None] * len(hit)
                if column is None
                else [column[k] for k in (hit + start).tolist()],
            )
        order = np.argsort(-strength, axis=1, kind="stable")
        ranked = np.take_along_axis(usable, order, axis=1)
        row_of, position = np.nonzero(ranked)
        cells = order[row_of, position].tolist()
        bounds = np.searchsorted(row_of, rows, side="left").tolist() + [len(cells)]
        out: list[Explanation] = []
        for i, p in enumerate(probability):
            score = int(round(100 * p))
            positive, negative = choose_reasons(
                self._candidates(
                    candidates[i].tolist(),
                    directions[i].tolist(),
                    cells[bounds[i] : bounds[i + 1]],
                    values,
                    start + i,
                ),
                self.max_reasons,
            )
            out.append(
                {
                    "probability": p,
                    "score": score,
                    "grade": grade_of(score, self.grade_thresholds),
                    "positive_reasons": [self._reason(c) for c in positive],
                    "negative_reasons": [self._reason(c) for c in negative],
                }
            )
        return out

    def _above_floor(self, strength: np.ndarray) -> np.ndarray:
        """Where a push is a reason: above ``min_contribution`` as shown, to four decimals
        (a push of 0.01004 would read as the floor itself).

        Python's ``round`` decides, as it does for the shown contribution; numpy's
        rounding, which may differ at an exact half, is used only away from one.
        """
        above = np.round(strength, 4) > self.min_contribution
        scaled = strength * 1e4
        for i, j in np.argwhere(np.abs(scaled - np.floor(scaled) - 0.5) < 1e-6).tolist():
            above[i, j] = round(float(strength[i, j]), 4) > self.min_contribution
        return above

    def _candidates(
        self,
        row: list[float],
        directions: list[int],
        cells: list[int],
        values: list[Sequence[Any] | None],
        i: int,
    ) -> Iterator[Candidate]:
        """Deal ``i``'s candidate reasons, strongest first: ``row`` its pushes and
        ``directions`` its tooltips' directions by reason feature, ``cells`` the reason
        features above the floor, strongest first. A candidate carries its text and
        direction alone, what :func:`choose_reasons` reads; :meth:`_reason` phrases the
        shown ones in full."""
        for j in cells:
            name = self.reason_features[j]
            column = values[j]
            value = None if column is None else column[i]
            push = row[j]
            yield Candidate(
                push,
                self._actionable[j],
                Phrase(self.phrasebook.text(name, value), None, directions[j]),
                name,
                value,
            )

    def _reason(self, c: Candidate) -> Reason:
        phrase = self.phrasebook.reason(c.feature, c.value)
        return {
            "feature": c.feature,
            "label": self.features[c.feature].label,
            "value": None if is_missing(c.value) else c.value,
            "contribution": round(c.push, 4),
            "text": phrase.text,
            "tooltip": phrase.tooltip,
            "text_zh": phrase.text_zh,
            "tooltip_zh": phrase.tooltip_zh,
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
