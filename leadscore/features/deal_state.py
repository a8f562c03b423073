"""What a deal looks like at given moments, from its events: the one implementation of every feature rule.

Each kernel walks a batch of deals' events in time order and reports each deal's state
at query moments: "at moment q, the deal is in stage 2, entered 12 days ago, has met a
director, waits for our reply since Tuesday...". Two callers ask two kinds of questions
of the same kernels:

* the feature pipeline (:mod:`leadscore.features.featurize`) asks for the state at every moment it
  can change (each event), which gives the Feast source rows that training and the
  online store read (window counts are read from cumulative counts there: see
  :func:`activity_at`);
* the scoring service asks for the state of deals a CRM sent in full at one moment,
  ``as_of``.

Between two changes the state does not change, so "state at q" equals "latest source
row at or before q", which is what Feast's point-in-time join returns; the tests check
this value for value through Feast.

Inputs are plain sorted arrays (:class:`StageEvents`, :class:`ContactEvents`,
:class:`ActivityEvents`), grouped by deal (an integer code, ``0 .. n_deals-1``). The
kernels are compiled with numba, so a million deals take seconds and one deal takes
microseconds. :func:`timing_features` (durations at the moment of scoring) is the one
definition of the request-time features; Feast's on-demand view calls it too.

Times: stage and contact events in integer microseconds since the epoch; activities in
whole seconds, rounded *up* so that an activity is never visible before it happened.
Returned times are float64 (NaN when unknown); microseconds since the epoch are exact
in a float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from leadscore.crm.contract import ACTIVITY_TYPES, STAGES
from leadscore.features.catalog import STALL_DAYS, WINDOW_COUNT_COLUMNS, WINDOWS_DAYS
from leadscore.features.seniority import SENIOR_LEVEL

DAY = 86_400
US = 1_000_000
#: Direction codes of :class:`ActivityEvents`; any other direction is UNKNOWN_DIRECTION.
UNKNOWN_DIRECTION, INBOUND, OUTBOUND = 0, 1, 2
DIRECTION_CODES: dict[str | None, int] = {"inbound": INBOUND, "outbound": OUTBOUND}
#: Activity type codes of :class:`ActivityEvents` (position in the contract's list; -1 other).
ACTIVITY_CODES: dict[str, int] = {t: i for i, t in enumerate(ACTIVITY_TYPES)}
#: Stage codes of :class:`StageEvents`: the position in the funnel.
STAGE_CODES: dict[str, int] = {s: i for i, s in enumerate(STAGES)}
_MEETING, _VISIT = ACTIVITY_CODES["meeting"], ACTIVITY_CODES["visit"]
_WINDOWS_S = np.array(WINDOWS_DAYS, dtype=np.int64) * DAY
#: Column names of :func:`activity_at`'s cumulative counts by activity type (activities of
#: the type up to the moment); of any type, that count is ``n_activities``.
CUMULATIVE_COLUMNS: dict[str, str] = {
    **{kind: f"cum_{kind}" for kind in ACTIVITY_TYPES},
    "total": "n_activities",
}


def _offsets(deal: np.ndarray, n_deals: int) -> np.ndarray:
    """Start of each deal's run in arrays sorted by deal code (CSR offsets, n_deals + 1)."""
    return np.searchsorted(deal, np.arange(n_deals + 1, dtype=np.int64)).astype(np.int64)


def seconds_up(us: np.ndarray) -> np.ndarray:
    """Microseconds since the epoch as whole seconds, rounded up (the times of :class:`ActivityEvents`).

    Up, never down: an activity is then never visible before it happened, so a moment of
    scoring a fraction of a second before an activity cannot see it.
    """
    return -(-us // US)


def sort_events(deal: np.ndarray, t: np.ndarray) -> np.ndarray:
    """The order that sorts events by deal, then time; ties keep their given order."""
    return np.lexsort((t, deal))


@dataclass(frozen=True)
class Queries:
    """Moments to report each deal's state at: ``deal`` codes and times, sorted by both."""

    deal: np.ndarray
    t: np.ndarray

    @classmethod
    def one_per_deal(cls, n_deals: int, t: int) -> Queries:
        return cls(np.arange(n_deals, dtype=np.int64), np.full(n_deals, t, dtype=np.int64))


# ---------------------------------------------------------------- stages
@dataclass(frozen=True)
class StageEvents:
    """Stage entries sorted by deal and time: ``stage`` is the index in the funnel."""

    deal: np.ndarray
    t_us: np.ndarray
    stage: np.ndarray


def stage_at(events: StageEvents, queries: Queries, n_deals: int) -> dict[str, np.ndarray]:
    """Funnel position at each query: stage, stage changes, moves back, long stays, entered at.

    Re-entering the stage the deal is in is not a change; a stay longer than
    ``STALL_DAYS`` between two changes is a long stay. NaN before the first entry.
    """
    index, changes, backward, long_stays, entered = _stage_kernel(
        _offsets(events.deal, n_deals),
        events.t_us,
        events.stage,
        _offsets(queries.deal, n_deals),
        queries.t,
        STALL_DAYS * DAY * US,
    )
    return {
        "stage_index": index,
        "stage_changes": changes,
        "backward_moves": backward,
        "long_stays": long_stays,
        "stage_entered_at": entered,
    }


@numba.njit(cache=True)
def _stage_kernel(ev_off, ev_t, ev_stage, q_off, q_t, stall_us):  # pragma: no cover - jitted
    nq = len(q_t)
    index = np.full(nq, np.nan)
    changes = np.full(nq, np.nan)
    backward = np.full(nq, np.nan)
    long_stays = np.full(nq, np.nan)
    entered = np.full(nq, np.nan)
    for d in range(len(ev_off) - 1):
        e, end = ev_off[d], ev_off[d + 1]
        prev, prev_at, n_changes, n_back, n_long = -1, 0, 0, 0, 0
        for k in range(q_off[d], q_off[d + 1]):
            while e < end and ev_t[e] <= q_t[k]:
                stage, at = ev_stage[e], ev_t[e]
                if stage != prev:
                    if prev >= 0:
                        n_changes += 1
                        n_back += stage < prev
                        n_long += at - prev_at > stall_us
                    prev, prev_at = stage, at
                e += 1
            if prev >= 0:
                index[k] = prev
                changes[k] = n_changes
                backward[k] = n_back
                long_stays[k] = n_long
                entered[k] = prev_at
    return index, changes, backward, long_stays, entered


# ---------------------------------------------------------------- contacts
@dataclass(frozen=True)
class ContactEvents:
    """Contacts attached to deals, sorted by deal and time, with the seniority of their title."""

    deal: np.ndarray
    t_us: np.ndarray
    #: Seniority level read from the title (NaN when the title says nothing).
    level: np.ndarray
    economic_buyer: np.ndarray


def contacts_at(events: ContactEvents, queries: Queries, n_deals: int) -> dict[str, np.ndarray]:
    """Buying committee at each query: contacts, most senior level, senior contacts, economic buyer."""
    n, top, senior, buyer = _contacts_kernel(
        _offsets(events.deal, n_deals),
        events.t_us,
        events.level,
        events.economic_buyer,
        _offsets(queries.deal, n_deals),
        queries.t,
        SENIOR_LEVEL,
    )
    return {
        "n_contacts": n,
        "max_seniority": top,
        "n_senior_contacts": senior,
        "has_economic_buyer": buyer,
    }


@numba.njit(cache=True)
def _contacts_kernel(
    ev_off, ev_t, level, buyer, q_off, q_t, senior_level
):  # pragma: no cover - jitted
    nq = len(q_t)
    n_out = np.full(nq, np.nan)
    top_out = np.full(nq, np.nan)
    senior_out = np.full(nq, np.nan)
    buyer_out = np.full(nq, np.nan)
    for d in range(len(ev_off) - 1):
        e, end = ev_off[d], ev_off[d + 1]
        n, top, senior, has_buyer = 0, -1.0, 0, 0
        for k in range(q_off[d], q_off[d + 1]):
            while e < end and ev_t[e] <= q_t[k]:
                n += 1
                if level[e] == level[e]:  # not NaN
                    top = max(top, level[e])
                    senior += level[e] >= senior_level
                has_buyer |= buyer[e]
                e += 1
            if n:
                n_out[k] = n
                top_out[k] = np.nan if top == -1.0 else top
                senior_out[k] = senior
                buyer_out[k] = has_buyer
    return n_out, top_out, senior_out, buyer_out


# ---------------------------------------------------------------- activities
@dataclass(frozen=True)
class ActivityEvents:
    """Activities sorted by deal and time (whole seconds, rounded up)."""

    deal: np.ndarray
    t_s: np.ndarray
    #: :data:`ACTIVITY_CODES` (-1: a type outside the contract; counted in totals only).
    kind: np.ndarray
    #: :data:`INBOUND`, :data:`OUTBOUND` or :data:`UNKNOWN_DIRECTION`.
    direction: np.ndarray
    #: Contact codes 0, 1, 2... (one code, too, for "no contact"), as ``pd.factorize`` gives.
    contact: np.ndarray
    #: Seniority of the contact's title (NaN when unknown).
    level: np.ndarray


def activity_at(
    events: ActivityEvents, queries: Queries, n_deals: int, windows: bool = True
) -> dict[str, np.ndarray]:
    """Engagement at each query moment (whole seconds): counts, recency, replies, visits.

    * window counts (:data:`WINDOW_COUNT_COLUMNS`, unless ``windows`` is false): activities
      of each type in (q - w days, q];
    * cumulative counts (:data:`CUMULATIVE_COLUMNS`): activities of each type up to q. The
      feature source stores these instead of window counts: a window count is the
      cumulative count at q less the one at q - w, so the source needs a row only where an
      activity happened, not one more where each leaves a window;
    * replies: our first outbound activity after one or more inbound ones is a reply;
      its latency runs from the earliest of them, and it is known when we reply. Events
      in the same second are simultaneous: an outbound activity does not answer an
      inbound one of the same second;
    * the customer waits from the first inbound activity after our last outbound one;
    * a visit is a first visit when its contact had not been visited on the deal before;
    * ``senior_met``: a meeting or visit with a director or above took place.

    Everything is NaN before the deal's first activity.
    """
    out = _activity_kernel(
        _offsets(events.deal, n_deals),
        events.t_s,
        events.kind,
        events.direction,
        events.contact,
        events.level,
        _offsets(queries.deal, n_deals),
        queries.t,
        _WINDOWS_S if windows else _WINDOWS_S[:0],
        len(ACTIVITY_TYPES),
        SENIOR_LEVEL,
        _MEETING,
        _VISIT,
    )
    counts, cumulative, n, inbound, last, last_in, waiting, median_reply, first, visits, met = out
    features = {name: counts[:, j] for j, name in enumerate(WINDOW_COUNT_COLUMNS) if windows}
    features.update(
        {CUMULATIVE_COLUMNS[kind]: cumulative[:, j] for j, kind in enumerate(ACTIVITY_TYPES)}
    )
    features.update(
        n_activities=n,
        share_inbound=inbound / n,
        last_activity_at=last,
        last_inbound_at=last_in,
        awaiting_reply_since=waiting,
        median_reply_hours=median_reply,
        first_visits=first,
        followup_visits=visits - first,
        senior_met=met,
    )
    return features


@numba.njit(cache=True)
def _same_second(t, direction, e, end):  # pragma: no cover - jitted
    """End of the run of events in event ``e``'s second, and whether it holds an inbound
    and an outbound one: events of one second are simultaneous, so an outbound activity
    never answers an inbound one of the same second (the reply rule of both kernels)."""
    g, any_in, any_out = e, False, False
    while g < end and t[g] == t[e]:
        any_in |= direction[g] == INBOUND
        any_out |= direction[g] == OUTBOUND
        g += 1
    return g, any_in, any_out


@numba.njit(cache=True)
def _activity_kernel(  # pragma: no cover - jitted
    ev_off,
    t,
    kind,
    direction,
    contact,
    level,
    q_off,
    q_t,
    windows,
    n_kinds,
    senior_level,
    meeting,
    visit,
):
    nq, nw = len(q_t), len(windows)
    width = n_kinds + 1  # the last column of each window is the total
    counts = np.full((nq, nw * width), np.nan)
    cumulative = np.full((nq, n_kinds), np.nan)
    n_out = np.full(nq, np.nan)
    inbound_out = np.full(nq, np.nan)
    last_out_t = np.full(nq, np.nan)
    last_in_out = np.full(nq, np.nan)
    waiting_out = np.full(nq, np.nan)
    median_out = np.full(nq, np.nan)
    first_out = np.full(nq, np.nan)
    visits_out = np.full(nq, np.nan)
    met_out = np.full(nq, np.nan)
    visited_on = np.full(contact.max() + 1 if len(contact) else 1, -1)  # deal that last saw it
    latencies = np.empty(len(t))
    lo = np.empty(nw, np.int64)
    window = np.zeros(nw * width, np.int64)
    seen = np.zeros(n_kinds, np.int64)
    for d in range(len(ev_off) - 1):
        start, end = ev_off[d], ev_off[d + 1]
        e = start
        lo[:] = start
        window[:] = 0
        seen[:] = 0
        n_inbound = 0
        has_in, last_in = False, 0
        is_waiting, waiting = False, 0
        is_pending, pending = False, 0  # earliest inbound not yet answered by a later outbound
        has_out, last_out = False, 0
        n_replies, median = 0, np.nan
        first, visits, met = 0, 0, 0
        for k in range(q_off[d], q_off[d + 1]):
            q = q_t[k]
            # Events up to q, one second at a time: same-second events are simultaneous.
            while e < end and t[e] <= q:
                now = t[e]
                g, any_in, any_out = _same_second(t, direction, e, end)
                if any_out:
                    if is_pending:  # a reply, timed from the earliest unanswered ask
                        latencies[start + n_replies] = (now - pending) / 3600.0
                        n_replies += 1
                        median = np.median(latencies[start : start + n_replies])
                        is_pending = False
                    has_out, last_out, is_waiting = True, now, False
                if any_in:
                    if not is_pending:
                        is_pending, pending = True, now
                    if not is_waiting and (not has_out or now > last_out):
                        is_waiting, waiting = True, now
                    has_in, last_in = True, now
                for i in range(e, g):
                    if kind[i] >= 0:
                        seen[kind[i]] += 1
                        for w in range(nw):
                            window[w * width + kind[i]] += 1
                    for w in range(nw):
                        window[w * width + n_kinds] += 1
                    n_inbound += direction[i] == 1
                    if kind[i] == visit:
                        visits += 1
                        if visited_on[contact[i]] != d:
                            visited_on[contact[i]] = d
                            first += 1
                    if (kind[i] == meeting or kind[i] == visit) and level[i] >= senior_level:
                        met = 1
                e = g
            if e == start:
                continue  # no activity yet
            for w in range(nw):  # drop activities that left the window: at or before q - w
                while lo[w] < e and t[lo[w]] <= q - windows[w]:
                    if kind[lo[w]] >= 0:
                        window[w * width + kind[lo[w]]] -= 1
                    window[w * width + n_kinds] -= 1
                    lo[w] += 1
            for j in range(nw * width):
                counts[k, j] = window[j]
            for j in range(n_kinds):
                cumulative[k, j] = seen[j]
            n_out[k] = e - start
            inbound_out[k] = n_inbound
            last_out_t[k] = t[e - 1]
            if has_in:
                last_in_out[k] = last_in
            if is_waiting:
                waiting_out[k] = waiting
            median_out[k] = median
            first_out[k] = first
            visits_out[k] = visits
            met_out[k] = met
    return (
        counts,
        cumulative,
        n_out,
        inbound_out,
        last_out_t,
        last_in_out,
        waiting_out,
        median_out,
        first_out,
        visits_out,
        met_out,
    )


# ---------------------------------------------------------------- since a loss
@dataclass(frozen=True)
class LossEvents:
    """Losses sorted by deal and time (integer microseconds); their position in these
    arrays is what :func:`engagement_since_loss` reports as the deal's latest loss."""

    deal: np.ndarray
    t_us: np.ndarray


def engagement_since_loss(
    activities: ActivityEvents, losses: LossEvents, queries: Queries, n_deals: int
) -> dict[str, np.ndarray]:
    """Engagement since each deal's latest loss, at query moments (integer microseconds).

    A revived deal is one the customer comes back to, so what counts is what happened
    after the loss, and a second loss starts the count again. At each query:

    * ``loss``: position in ``losses`` of the deal's latest loss at or before the query
      (NaN before its first loss: every other output is NaN then too);
    * ``inbound``, ``outbound``: activities in each direction after that loss;
    * ``replies``: outbound activities answering an inbound one after that loss, the rule
      of :func:`activity_at` (our first outbound after one or more inbound ones; events of
      one second are simultaneous), with nothing pending at the loss;
    * ``visits``: visits after that loss;
    * ``last_engaged_at``: time (microseconds) of the last activity after the loss (NaN: none);
    * ``senior``: highest seniority level among the contacts of those activities
      (NaN: none named, or no title says one).

    An activity is seen at its whole second rounded up (as in :class:`ActivityEvents`) and
    belongs to a loss only when seen strictly after it: one seen at the loss's very
    moment belongs to the cycle that ended.
    """
    out = _since_loss_kernel(
        _offsets(activities.deal, n_deals),
        activities.t_s,
        activities.kind,
        activities.direction,
        activities.level,
        _offsets(losses.deal, n_deals),
        losses.t_us,
        _offsets(queries.deal, n_deals),
        queries.t,
        _VISIT,
    )
    loss, inbound, outbound, replies, visits, last, senior = out
    return {
        "loss": loss,
        "inbound": inbound,
        "outbound": outbound,
        "replies": replies,
        "visits": visits,
        "last_engaged_at": last,
        "senior": senior,
    }


@numba.njit(cache=True)
def _since_loss_kernel(  # pragma: no cover - jitted
    a_off, t, kind, direction, level, l_off, loss_t, q_off, q_t, visit
):
    nq = len(q_t)
    loss_out = np.full(nq, np.nan)
    in_out = np.full(nq, np.nan)
    out_out = np.full(nq, np.nan)
    replies_out = np.full(nq, np.nan)
    visits_out = np.full(nq, np.nan)
    last_out = np.full(nq, np.nan)
    senior_out = np.full(nq, np.nan)
    for d in range(len(a_off) - 1):
        a, a_end = a_off[d], a_off[d + 1]
        lo, l_end = l_off[d], l_off[d + 1]
        latest = -1
        n_in, n_out, n_replies, n_visits = 0, 0, 0, 0
        pending, last, top = False, np.nan, -1.0
        for k in range(q_off[d], q_off[d + 1]):
            q = q_t[k]
            while True:
                next_a = t[a] * US if a < a_end else q + 1
                next_l = loss_t[lo] if lo < l_end else q + 1
                if next_a > q and next_l > q:
                    break
                if next_a <= next_l:  # at one moment, activities belong to the cycle before
                    g, any_in, any_out = _same_second(t, direction, a, a_end)
                    if latest >= 0:
                        if any_out and pending:
                            n_replies += 1
                            pending = False
                        if any_in:
                            pending = True
                        for i in range(a, g):
                            n_in += direction[i] == INBOUND
                            n_out += direction[i] == OUTBOUND
                            n_visits += kind[i] == visit
                            if level[i] == level[i]:  # not NaN
                                top = max(top, level[i])
                        last = next_a
                    a = g
                else:  # a loss: counting starts again
                    latest = lo
                    n_in, n_out, n_replies, n_visits = 0, 0, 0, 0
                    pending, last, top = False, np.nan, -1.0
                    lo += 1
            if latest >= 0:
                loss_out[k] = latest
                in_out[k] = n_in
                out_out[k] = n_out
                replies_out[k] = n_replies
                visits_out[k] = n_visits
                last_out[k] = last
                senior_out[k] = np.nan if top == -1.0 else top
    return loss_out, in_out, out_out, replies_out, visits_out, last_out, senior_out


# ---------------------------------------------------------------- request time
def days_between(start_us: np.ndarray, end_us: np.ndarray) -> np.ndarray:
    """Days from ``start_us`` to ``end_us`` (float64 microseconds, NaN unknown): the one
    arithmetic of every request-time duration, so training and serving agree to the bit."""
    return (end_us - start_us) / US / DAY


def timing_features(
    as_of_us: np.ndarray,
    created_us: np.ndarray,
    stage_entered_us: np.ndarray,
    backward_moves: np.ndarray,
    long_stays: np.ndarray,
    last_activity_us: np.ndarray,
    last_inbound_us: np.ndarray,
    awaiting_reply_us: np.ndarray,
) -> dict[str, np.ndarray]:
    """Durations at the moment of scoring, from stored times (float64 microseconds, NaN unknown).

    Days are (as_of - t) / 1e6 / 86,400, the same arithmetic in every path, so training
    and serving agree to the last bit. The current stay counts as a stall once it is
    longer than ``STALL_DAYS``; the customer has waited 0 hours when nothing is pending.
    """

    def days_since(t: np.ndarray) -> np.ndarray:
        return days_between(t, as_of_us)

    days_in_stage = days_since(stage_entered_us)
    waiting_hours = days_since(awaiting_reply_us) * 24.0
    return {
        "deal_age_days": days_since(created_us),
        "days_in_stage": days_in_stage,
        "stalls": backward_moves + long_stays + (days_in_stage > STALL_DAYS),
        "days_since_last_activity": days_since(last_activity_us),
        "days_since_last_inbound": days_since(last_inbound_us),
        "hours_awaiting_reply": np.where(
            np.isnan(last_activity_us),
            np.nan,
            np.where(np.isnan(waiting_hours), 0.0, waiting_hours),
        ),
    }


def revival_timing_features(
    as_of_us: np.ndarray, lost_us: np.ndarray, last_engaged_us: np.ndarray
) -> dict[str, np.ndarray]:
    """Durations of a lost deal at the moment of scoring: days since its latest loss and
    since the customer's last activity after it (NaN when there was none)."""
    return {
        "days_since_loss": days_between(lost_us, as_of_us),
        "days_since_engaged": days_between(last_engaged_us, as_of_us),
    }
