"""Lost deals asked for revival: the revival model's answer (issue 12, ``docs/revival.md``).

A lost deal gets no open-deal score (:mod:`serving.closed_deals`); when the request sets
``revival`` and the service loads a revival model (``lead_scorer_revival``, packaged by
``leadscore package`` beside the win model), it gets that model's calibrated
probability: the chance that the deal comes back (re-opened, or followed by a new deal
of its account) and is won within the horizon, if re-engaged now. The result says so in
words (:func:`revival_meaning`), with the model's name and version, so nobody reads it
as a win probability.

**Features.** ``/score_ids`` reads them from the online store through Feast's
``revival_v1`` service (materialized with the other views; the on-demand
``revival_timing`` computes days since the loss at ``as_of``), which is the definition
training read (``training.revival``). ``/score`` does not compute them from a deal sent
in full: the revival features include the account's other deals open and the account's
earlier revivals, which a payload does not carry, and the loss history comes from the
whole stage history as ingest reads it. Rather than a second implementation of those
features, a lost deal sent to ``/score`` with ``revival`` is an error naming
``/score_ids`` (:data:`SENT_IN_FULL`).

**Reasons.** The win model's :class:`leadscore.model.explain.Explainer`, given the revival
catalog (:func:`leadscore.features.catalog.revival_catalog`): the same TreeSHAP
contributions in words, of the revival features (lost reason, engagement since the loss,
time since it...). No grade: the grade thresholds are the win model's.

Nothing here needs BentoML; the service wraps it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from leadscore.crm.contract import LOST
from leadscore.crm.revival import revival_meaning
from leadscore.features.catalog import revival_catalog
from leadscore.features.featurize import model_frame
from leadscore.model.explain import Explainer
from leadscore.model.scoring_model import Columns, ScoringModel
from serving.closed_deals import ClosedDeal, closed_error
from serving.schemas import DealError, ScoreResult

#: The problem of a lost deal sent in full to /score with ``revival``.
SENT_IN_FULL = (
    "a lost deal sent in full is not scored for revival: its revival features include the "
    "account's other deals and past revivals, which a payload does not carry; send its id "
    'to /score_ids with "revival": true'
)
#: The problem of a lost deal whose loss the online store does not date.
NO_LOSS_TIME = (
    "deal is lost, but the online feature store holds no time of its loss (a lost deal "
    "without `closed_at`, or a store materialized before the revival features existed): "
    "the revival model needs the time since the loss"
)
#: The revival feature that is missing exactly when the store holds no dated loss.
_LOSS_CLOCK = "days_since_loss"


@dataclass(frozen=True)
class ServedRevival:
    """The revival model the service loaded, and what its number means."""

    model: ScoringModel
    #: Registered MLflow name (``lead_scorer_revival``) and version.
    name: str
    version: str
    #: The BentoML model tag it was loaded from.
    bento_tag: str
    #: The outcome's horizon (``Settings.revival_horizon_days``).
    horizon_days: int
    #: Its reasons in words, on the revival catalog.
    explainer: Explainer

    @property
    def meaning(self) -> str:
        return revival_meaning(self.horizon_days)


def sent_in_full(deal: ClosedDeal) -> bool:
    """Whether the deal was sent in full (``deals[i]`` of /score), not by id."""
    return deal.loc[:1] == ("deals",)


def revival_columns(features: pd.DataFrame) -> Columns:
    """The revival model's inputs from a frame of ``revival_v1`` features (the online
    store's, or :func:`leadscore.features.featurize.features_as_of`'s), as training reads
    them (:func:`leadscore.features.featurize.model_frame` on the revival catalog)."""
    frame = model_frame(features, catalog=revival_catalog())
    return {name: values.tolist() for name, values in frame.items()}


def revival_results(
    revival: ServedRevival,
    lost: Sequence[ClosedDeal],
    columns: Columns,
    as_of: datetime,
    now: datetime,
) -> tuple[list[tuple[int, ScoreResult]], list[DealError]]:
    """Lost deals scored by the revival model (row ``i`` of ``columns`` is ``lost[i]``),
    by request position; a deal whose loss the store does not date is an error
    (:data:`NO_LOSS_TIME`) rather than a number computed without the time since it."""
    if not lost:
        return [], []
    explained = revival.explainer.explain(columns)
    clock = columns.get(_LOSS_CLOCK) or [None] * len(lost)
    results: list[tuple[int, ScoreResult]] = []
    errors: list[DealError] = []
    for deal, e, days in zip(lost, explained, clock, strict=True):
        if days is None or (isinstance(days, float) and math.isnan(days)):
            errors.append(closed_error(deal, NO_LOSS_TIME))
            continue
        result: ScoreResult = {
            "deal_id": deal.deal_id,
            "status": LOST,
            "probability": e["probability"],
            "score": e["score"],
            "meaning": revival.meaning,
            "positive_reasons": e["positive_reasons"],
            "negative_reasons": e["negative_reasons"],
            "warnings": [],
            "model_name": revival.name,
            "model_version": revival.version,
            "as_of": as_of,
            "scored_at": now,
        }
        results.append((deal.index, result))
    return results, errors
