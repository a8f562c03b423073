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

from collections.abc import Iterable, Mapping, Sequence
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


class Cells(NamedTuple):
    """A batch's candidate reasons, flat: deal by deal, each deal's strongest first, those
    under the floor and of hidden groups left out (what :func:`choose_reasons_batch` reads)."""

    #: The deal (row of the batch) of each candidate, ascending.
    row: np.ndarray
    #: TreeSHAP push on the log-odds (:attr:`Candidate.push`).
    push: np.ndarray
    #: The direction of its tooltip's fact (:attr:`leadscore.model.reasons.Phrase.direction`).
    direction: np.ndarray
    #: Its text as an id: equal ids, equal texts.
    text: np.ndarray
    #: Whether its feature's ``reason_group`` is one a rep can act on.
    actionable: np.ndarray


def choose_reasons_batch(
    cells: Cells, k: int, complete: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`choose_reasons` for every deal of a batch at once, over arrays.

    The same rules: a candidate that contradicts its tooltip is dropped; of several with
    one text in a deal, the first (strongest) claims it; each side shows its ``k``
    first, actionable ones first, then by strength. (The per-deal loop stopped once both
    sides were full; what followed could not be shown, so the rules read as "the first
    ``k`` each way of the deal's first candidates by text".) ``complete``: per deal,
    whether ``cells`` hold all its candidates, or only its strongest.

    Returns the positions in ``cells`` shown, deal by deal, each deal's reasons lowering
    the score and then those raising it, each side in the order shown; and per deal,
    whether it is undecided: not ``complete``, and a side not full, so that a candidate
    not given might still be shown.
    """
    deals = len(complete)
    keep = np.flatnonzero(~(cells.push * cells.direction < 0))  # not contradicting
    key = cells.row[keep] * (int(cells.text.max(initial=0)) + 1) + cells.text[keep]
    own = keep[np.sort(np.unique(key, return_index=True)[1])]  # each text's first
    side = 2 * cells.row[own] + (cells.push[own] > 0)  # (deal, down 0 or up 1)
    by_side = np.argsort(side, kind="stable")  # each side's candidates, strongest first
    ordered = side[by_side]
    place = np.arange(len(ordered)) - np.searchsorted(ordered, ordered, side="left")
    taken = place < k
    shown, shown_side = own[by_side[taken]], ordered[taken]
    shown = shown[np.lexsort((~cells.actionable[shown], shown_side))]
    full = np.bincount(side, minlength=2 * deals).reshape(deals, 2).min(axis=1) >= k
    return shown, ~complete & ~full


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

        The chunk is explained over arrays (issue 14): TreeSHAP, the grouping, the floor,
        the order, each candidate's tooltip direction (:meth:`Phrasebook.directions`, per
        column) and the choice (:func:`choose_reasons_batch`: the rules of
        :func:`choose_reasons` for every deal at once, on text ids). Only a deal's
        strongest candidates get a text (:meth:`_texts`): ``2 k + 2`` of them, twice as
        many again for a deal whose sides are not both full by then (texts shared, or
        pushes mostly one way), as the per-deal loop read them until both sides were
        full. Per deal, what is left is building its reasons' dicts (:meth:`_reasons`).
        """
        n = len(X)
        contributions = self.model.contributions(X)
        # The contributions add up to the raw score: one pass over the trees, not two.
        probability = self.model.calibrate(contributions.sum(axis=1), X).tolist()
        pushes = contributions[:, :-1] @ self._group
        candidates = np.where(self._shown, pushes, 0.0)
        strength = np.abs(candidates)
        usable = self._above_floor(strength)
        directions = np.zeros(usable.shape, dtype=np.int8)
        for j in np.flatnonzero(usable.any(axis=0)).tolist():
            hit = np.flatnonzero(usable[:, j])
            column = values[j]
            directions[hit, j] = self.phrasebook.directions(
                self.reason_features[j],
                [None] * len(hit)
                if column is None
                else [column[k] for k in (hit + start).tolist()],
            )
        # Every deal's usable cells, strongest first (ties in feature order).
        order = np.argsort(-strength, axis=1, kind="stable")
        row_of, position = np.nonzero(np.take_along_axis(usable, order, axis=1))
        cells = order[row_of, position]
        first = np.searchsorted(row_of, np.arange(n + 1), side="left")
        rank = np.arange(len(cells)) - first[row_of]
        count = np.diff(first)
        push = candidates[row_of, cells]
        direction = directions[row_of, cells]
        actionable = np.asarray(self._actionable, dtype=bool)[cells]
        text = np.full(len(cells), -1, dtype=np.int64)
        ids: dict[str, int] = {}
        limit = np.full(n, 2 * self.max_reasons + 2, dtype=np.int64)
        while True:
            read = np.flatnonzero(rank < limit[row_of])
            missing = read[text[read] < 0]
            text[missing] = self._texts(cells[missing], row_of[missing], values, start, ids)
            chosen, undecided = choose_reasons_batch(
                Cells(row_of[read], push[read], direction[read], text[read], actionable[read]),
                self.max_reasons,
                count <= limit,
            )
            if not undecided.any():
                break
            limit[undecided] *= 2
        shown = read[chosen]
        reasons = self._reasons(cells[shown], row_of[shown], push[shown], values, start)
        up = push[shown] > 0
        bounds = np.searchsorted(2 * row_of[shown] + up, np.arange(2 * n + 1), side="left").tolist()
        grades: dict[int, str] = {}
        out: list[Explanation] = []
        for i, p in enumerate(probability):
            score = int(round(100 * p))
            grade = grades.get(score)
            if grade is None:
                grade = grades[score] = grade_of(score, self.grade_thresholds)
            out.append(
                {
                    "probability": p,
                    "score": score,
                    "grade": grade,
                    "positive_reasons": reasons[bounds[2 * i + 1] : bounds[2 * i + 2]],
                    "negative_reasons": reasons[bounds[2 * i] : bounds[2 * i + 1]],
                }
            )
        return out

    def _texts(
        self,
        cells: np.ndarray,
        rows: np.ndarray,
        values: list[Sequence[Any] | None],
        start: int,
        ids: dict[str, int],
    ) -> np.ndarray:
        """The text id of each (deal ``start`` + row, reason feature) cell: equal ids,
        equal texts (:meth:`Phrasebook.text`, memoised per feature and value), so choosing
        reasons compares ints. ``ids`` numbers the texts met so far: the chunk's own, as
        chunks run on several threads at once."""
        names, text = self.reason_features, self.phrasebook.text
        return np.array(
            [
                ids.setdefault(
                    text(names[j], None if (column := values[j]) is None else column[start + i]),
                    len(ids),
                )
                for j, i in zip(cells.tolist(), rows.tolist(), strict=True)
            ],
            dtype=np.int64,
        )

    def _reasons(
        self,
        cells: np.ndarray,
        rows: np.ndarray,
        push: np.ndarray,
        values: list[Sequence[Any] | None],
        start: int,
    ) -> list[Reason]:
        """The shown cells as reasons, in their order: the words of the feature at the
        deal's value (:meth:`Phrasebook.reason`, memoised per feature and value), its push."""
        names, reason, features = self.reason_features, self.phrasebook.reason, self.features
        out: list[Reason] = []
        for j, i, p in zip(cells.tolist(), rows.tolist(), push.tolist(), strict=True):
            name = names[j]
            value = None if (column := values[j]) is None else column[start + i]
            phrase = reason(name, value)
            out.append(
                {
                    "feature": name,
                    "label": features[name].label,
                    "value": None if is_missing(value) else value,
                    "contribution": round(p, 4),
                    "text": phrase.text,
                    "tooltip": phrase.tooltip,
                    "text_zh": phrase.text_zh,
                    "tooltip_zh": phrase.tooltip_zh,
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
