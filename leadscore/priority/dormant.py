"""Dormant deals: which open deal is dormant, what its outcome is, and what its number means.

Issue 12: "a dormant deal (open, no activity for 30 days) has its own outcome: won
within the horizon (default 365 days)". The three definitions live here once, for the
list (:mod:`leadscore.priority.rank`) and the backtest that checks its numbers
(:mod:`training.dormant`):

* **Dormant** (:func:`is_dormant`): an open deal whose quiet time
  (:func:`leadscore.priority.health.quiet_days`: days since its last activity as of the
  moment it is looked at) is at least :data:`leadscore.config.DORMANT_DAYS`. A deal with
  **no activity at all** since creation is quiet since its creation: nobody has touched it,
  so once it is ``DORMANT_DAYS`` old it is dormant (the most dormant there is), and a
  younger one is simply new. An export **without an activities table** has no dormant
  deal: nothing logged is no evidence of silence. Dormancy is read from the features as
  of the snapshot (point in time), so nothing that happens after it can change it.
* **Outcome** (:func:`dormant_outcome`): won within ``horizon_days`` of the snapshot
  (:data:`leadscore.config.REVIVAL_HORIZON_DAYS`, 365). Known as of the export's end
  ``as_of``: a deal won by ``min(snapshot + horizon, as_of)`` is 1; a deal lost by then,
  or still not won when the horizon ends before ``as_of``, is 0; a deal still open at
  ``as_of`` whose horizon reaches past it is **censored** (-1): its outcome is not known
  yet, and it must be dropped and counted, never read as "not won". A close after
  ``as_of`` is not known at ``as_of`` and does not count. A lost deal counts as lost
  even when its horizon reaches past the export: a revival after the export is the
  revival model's question, not this one.
* **Meaning** (:func:`dormant_meaning`): what a dormant row's number says, in words.
"""

from __future__ import annotations

from enum import StrEnum

import numpy as np
import pandas as pd

from leadscore.crm.revival import win_within_words
from leadscore.priority.health import quiet_days

#: :func:`dormant_outcome`'s label of a snapshot whose outcome the export does not know yet.
CENSORED = -1


class DormantChoice(StrEnum):
    """How dormant deals are scored: what the win model's backtest chose."""

    #: The win model's own probability ("win this deal") was the better calibrated one.
    WIN_MODEL = "win_model"
    #: The same trees through a calibration fitted on dormant deals.
    DORMANT_CALIBRATION = "dormant_calibration"
    #: No backtest (a model trained before it, or too few dormant deals to run one).
    UNCHECKED = "unchecked"


def is_dormant(
    features: pd.DataFrame, dormant_days: float, activities_logged: bool = True
) -> np.ndarray:
    """Rows whose quiet time (last activity, else creation) is at least ``dormant_days``.

    ``features`` needs ``days_since_last_activity`` and ``deal_age_days``; whether the
    deal is open is the caller's to say (the list's candidates, the training snapshots
    of deals while they were open). False everywhere when no activities are logged.
    """
    quiet = quiet_days(features, activities_logged).to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.asarray(quiet >= dormant_days, dtype=bool)


def dormant_outcome(
    snapshot_at: pd.Series,
    closed_at: pd.Series,
    won: pd.Series,
    as_of: pd.Timestamp,
    horizon_days: float,
) -> np.ndarray:
    """Per snapshot: 1 won within ``horizon_days`` of it, 0 not, :data:`CENSORED` unknown.

    ``closed_at`` is the deal's close (missing while open), ``won`` whether that close was
    a win; both as the export says at ``as_of`` (see the module doc for the rule).
    """
    snap = _naive_utc(snapshot_at)
    closed = _naive_utc(closed_at)
    end = snap + np.timedelta64(int(round(horizon_days * 86_400)), "s")
    as_of64 = _naive_utc(pd.Series([as_of]))[0]
    is_won = pd.Series(won).fillna(False).astype(bool).to_numpy()
    # Closed by the end of the horizon, as known at the export's end (NaT compares False).
    closed_in = (closed <= end) & (closed <= as_of64)
    horizon_seen = end <= as_of64
    return np.where(closed_in, is_won.astype(np.int8), np.where(horizon_seen, 0, CENSORED)).astype(
        np.int8
    )


def _naive_utc(times: pd.Series) -> np.ndarray:
    """Times as naive UTC ``datetime64`` (NaT for missing), for numpy comparisons."""
    return pd.to_datetime(pd.Series(times), utc=True).dt.tz_localize(None).to_numpy()


def dormant_meaning(horizon_days: float, choice: DormantChoice | str) -> str:
    """What a dormant row's number means, in words.

    Checked against dormant deals (either choice), it is the chance of a win within the
    horizon; which number stands behind it is said in brackets. Unchecked, the win
    model's number means what it does for any open deal, and the words say it was not
    checked. The horizon is said by :func:`leadscore.crm.revival.win_within_words`.
    """
    choice = DormantChoice(choice)
    if choice is DormantChoice.UNCHECKED:
        return "chance to win this deal; not checked against what dormant deals do"
    within = win_within_words(horizon_days)
    if choice is DormantChoice.DORMANT_CALIBRATION:
        return f"{within} (win model calibrated on dormant deals)"
    return f"{within} (win model, checked on dormant deals)"
