"""Closed deals in a scoring request: the API never gives them an open-deal score (issue 12).

The win model learnt from deals while they were open; its number for a won or lost deal
answers no question anyone asked (a deal lost a week earlier came back at 93%). So
both endpoints sort the deals of a request by their status as of the moment of scoring
before the model sees them:

* open: scored by the win model, as before;
* won: a result with ``status: "won"``, a :data:`WON_NOTE` and no probability, score,
  grade or reasons;
* lost: a per-item error (:data:`LOST_MESSAGE`), unless the request sets ``revival``;
  then the revival model answers (``LeadScorer._revival_results``, :mod:`serving.revival`),
  or an error when none is served (:data:`NO_REVIVAL_MODEL`).

``/score`` takes the status from the deal as sent (:func:`leadscore.features.featurize.status_as_of`);
``/score_ids`` from the online store's ``deal_profile`` view (:func:`stored_status`).
Nothing here needs BentoML; the service wraps it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from leadscore.crm.contract import DEAL_STATUSES, OPEN, WON
from leadscore.features.deal_state import STAGE_CODES
from serving.schemas import DealError, Problem, ScoreResult

#: The note of a won deal's result.
WON_NOTE = "deal is won: it has its outcome, so it gets no open-deal score"
#: The problem of a lost deal when the request did not ask for revival.
LOST_MESSAGE = (
    'deal is lost: an open-deal score would mislead; ask for revival with "revival": true'
)
#: The problem of a closed deal whose outcome the online store does not hold (a store
#: materialized before it recorded statuses).
UNKNOWN_OUTCOME = (
    "deal is closed, but the online feature store does not say whether it was won or lost: "
    "run `leadscore ingest`, `leadscore features apply` and `leadscore features materialize`"
)
#: Not a status: a closed deal whose outcome is unknown (:func:`stored_status`).
CLOSED_UNKNOWN = "closed"
_CLOSED_STAGE = STAGE_CODES["closed"]


@dataclass(frozen=True)
class ClosedDeal:
    """A deal of the request that the win model must not score."""

    #: Position in the request's list (``deals`` or ``deal_ids``).
    index: int
    deal_id: str
    #: Where it is in the request body (``["deals", 3]``, ``["deal_ids", 3]``).
    loc: tuple[str | int, ...]
    #: won, lost, or :data:`CLOSED_UNKNOWN`.
    status: str


def stored_status(status: Any, stage_index: Any) -> str:
    """A deal's status as the online store holds it.

    The ``deal_status`` field when the store has it; a store materialized before that
    field existed has none, and then a deal in the ``closed`` stage is closed with an
    unknown outcome (:data:`CLOSED_UNKNOWN`, never scored), any other open.
    """
    if status in DEAL_STATUSES:
        return str(status)
    closed = isinstance(stage_index, int | float) and not math.isnan(stage_index)
    return CLOSED_UNKNOWN if closed and int(stage_index) == _CLOSED_STAGE else OPEN


def won_result(deal_id: str, model_version: str, as_of: datetime, now: datetime) -> ScoreResult:
    """A won deal's answer: its status and a note, no probability, score, grade or reasons."""
    return {
        "deal_id": deal_id,
        "status": WON,
        "note": WON_NOTE,
        "warnings": [],
        "model_version": model_version,
        "as_of": as_of,
        "scored_at": now,
    }


def closed_error(deal: ClosedDeal, msg: str) -> DealError:
    """A closed deal's per-item error, in the shape of every other one."""
    return DealError(
        index=deal.index,
        deal_id=deal.deal_id,
        problems=[Problem(loc=list(deal.loc), msg=msg, type="invalid_value")],
    )


#: The per-item error of a lost deal asked for revival when the service loaded no revival
#: model (none was champion when it was packaged and started).
NO_REVIVAL_MODEL = (
    "this service serves no revival model: `leadscore train-revival` trains and registers "
    "one; `leadscore package` and `leadscore serve` then serve it beside the win model"
)
