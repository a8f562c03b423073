"""The revival outcome of lost deals, read from a CRM's history (issue 12).

``docs/revival.md`` defines it; this module computes it from the contract tables, so
that a real export gets the same labels the synthetic CRM's ``revival_truth`` holds:

* :func:`loss_cycles`: every loss, one row each. A deal can be lost, re-opened and lost
  again; ``stage_history`` shows each loss (a ``closed`` entry followed by an open
  stage), ``deals`` only the last (``status``, ``closed_at``, ``lost_reason``).
* :func:`revivals`: whether and how each loss came back (re-opened, or followed by a
  new deal of the account within the linking window), and how that revival ended.
* :func:`revival_snapshots`: the training entities of the revival model, moments after
  each loss while it is not yet revived, labelled "revived within the horizon and won",
  or flagged censored when the export cannot tell yet.

Why from history and not from the deal's final row: the CRM overwrites a re-opened
deal's status, close time and lost reason, so each earlier loss exists only in the
stage history, and the label of a loss must not borrow what was written after it.
Everything is vectorised (sorts, group-bys, ``merge_asof``): no loop per deal.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from leadscore.config import (
    REVIVAL_FIRST_SNAPSHOT_DAYS,
    REVIVAL_HORIZON_DAYS,
    REVIVAL_SNAPSHOT_EVERY_DAYS,
    REVIVAL_SNAPSHOT_MAX_DAYS,
)
from leadscore.crm.contract import (
    LOST,
    OPEN,
    PREVIOUS_DEAL,
    STAGES,
    WON,
    canonical_lost_reasons,
)
from leadscore.timeutil import TS, as_utc

log = logging.getLogger(__name__)

#: How a loss came back (``revival_kind``): the same deal re-opened, or a new deal.
REOPEN, FOLLOW_UP = "reopen", "follow_up"
_CLOSED = STAGES.index("closed")
_US_PER_DAY = 86_400 * 1_000_000
_NAT = np.iinfo(np.int64).min

LOSS_COLUMNS: tuple[str, ...] = (
    "deal_id", "account_id", "owner_id", "cycle", "lost_at", "reopened_at", "lost_reason",
    "furthest_stage", "amount",
)  # fmt: skip
REVIVAL_COLUMNS: tuple[str, ...] = (
    "revived_at", "revival_kind", "revival_deal_id", "revival_status", "revival_closed_at",
)  # fmt: skip


def _column(df: pd.DataFrame, name: str) -> pd.Series:
    """A column of ``df``, or all missing when the export lacks it."""
    return df[name] if name in df else pd.Series(None, index=df.index, dtype=object)


def _text(df: pd.DataFrame, name: str) -> pd.Series:
    """A text column as Python strings, None where missing (ids compare and merge as is)."""
    values = _column(df, name)
    return values.astype(object).where(values.notna(), None)


def _times(df: pd.DataFrame, name: str) -> pd.Series:
    """A time column in UTC (``datetime64[us, UTC]``), NaT where missing."""
    values = _column(df, name)
    if not values.notna().any():
        return pd.Series(pd.NaT, index=df.index, dtype="datetime64[us, UTC]")
    return as_utc(values)


def _micros(times: pd.Series) -> np.ndarray:
    """UTC times as int64 microseconds, ``_NAT`` where missing."""
    return times.to_numpy(dtype="datetime64[us]").astype(np.int64)


def _from_micros(us: np.ndarray) -> pd.Series:
    """int64 microseconds (``_NAT``: missing) as ``datetime64[us, UTC]``."""
    return pd.Series(np.asarray(us, dtype=np.int64).view("datetime64[us]")).dt.tz_localize("UTC")


def _status(deals: pd.DataFrame) -> np.ndarray:
    """``deals.status`` as written by ingest (trimmed, lower case), "" where missing."""
    return _trimmed_lower(deals, "status")


def _trimmed_lower(df: pd.DataFrame, name: str) -> np.ndarray:
    """A text column trimmed and in lower case, "" where missing, as Python strings.

    Worked out once per distinct value: a column of statuses or stages holds a handful
    over hundreds of thousands of rows, and string methods cost a call per row.
    """
    codes, distinct = pd.factorize(_column(df, name))  # missing: -1
    text = pd.Series(distinct, dtype=object).astype(str).str.strip().str.lower()
    return np.append(text.to_numpy(dtype=object), "")[codes]  # -1: the "" appended


# ---------------------------------------------------------------------- losses
def loss_cycles(deals: pd.DataFrame, stage_history: pd.DataFrame | None) -> pd.DataFrame:
    """One row per loss of a deal, in time order per deal (``cycle`` 0, 1, ...).

    A loss is a ``closed`` entry of ``stage_history`` followed (next entry of the deal by
    ``entered_at``) by an open stage: the deal was re-opened then (``reopened_at``), so that
    close was a loss whatever the deal's final status (won deals are not re-opened; a
    renewal is a new deal). A deal whose ``status`` is lost has one more, final loss: its
    last entry when that is ``closed``; else (no stage history, or history that stops
    before the close) its ``closed_at`` when known and not before its last entry. A lost
    deal whose final loss time is unknown is left out whole (logged with a count): its
    earlier losses would be revivals whose end cannot be placed.

    ``lost_reason`` is canonical (:func:`canonical_lost_reasons`) on the deal's last loss
    only: the CRM keeps one reason per deal and overwrites it at each loss, so an earlier
    loss gets missing; giving it the later reason would leak what was said after its
    revival. ``furthest_stage`` is the highest open stage (index in ``STAGES``, ``lead``
    0 to ``committed`` 3) entered in the cycle that loss ends, NaN when the history shows
    none. Columns: :data:`LOSS_COLUMNS`.
    """
    n = len(deals)
    deal_id = _text(deals, "deal_id").astype(str).to_numpy()
    status = _status(deals)
    closed_at = _micros(_times(deals, "closed_at"))

    if stage_history is not None and len(stage_history):
        pos = pd.Index(deal_id).get_indexer(_text(stage_history, "deal_id").astype(str))
        stage = pd.Index(STAGES).get_indexer(_trimmed_lower(stage_history, "stage"))
        at = _micros(_times(stage_history, "entered_at"))
        keep = (pos >= 0) & (stage >= 0) & (at != _NAT)
        pos, stage, at = pos[keep], stage[keep], at[keep]
    else:
        pos = stage = at = np.zeros(0, np.int64)
    order = np.lexsort((at, pos))
    pos, stage, at = pos[order], stage[order], at[order]
    closed = stage == _CLOSED
    same_next = _ahead(pos, -1) == pos
    next_open = same_next & ~_ahead(closed, True)
    # Open entries of cycle k follow k re-opens of the deal: their per-deal running count.
    reopen_row = ~closed & (_behind(pos, -1) == pos) & _behind(closed, False)
    cycle_of_row = _per_deal_cumsum(pos, reopen_row)

    # Losses re-opened later: the closed entry and the open entry after it.
    mid = np.flatnonzero(closed & next_open)
    mid_deal, mid_at, mid_reopen = pos[mid], at[mid], at[mid + 1]
    mid_cycle = cycle_of_row[mid]

    # The final loss of a lost deal: its last entry when closed, else its closed_at.
    lost = status == LOST
    last_row = np.full(n, -1, np.int64)
    last_row[pos[~same_next]] = np.flatnonzero(~same_next)
    has_rows = last_row >= 0
    last_closed = np.zeros(n, bool)
    last_closed[has_rows] = closed[last_row[has_rows]]
    last_at = np.full(n, _NAT, np.int64)
    last_at[has_rows] = at[last_row[has_rows]]
    final_at = np.where(
        last_closed,
        last_at,
        np.where((closed_at != _NAT) & (~has_rows | (closed_at >= last_at)), closed_at, _NAT),
    )
    reopens = np.bincount(pos[reopen_row], minlength=n)
    unknown = lost & (final_at == _NAT)
    if unknown.any():
        log.info(
            "%d lost deals left out of the revival outcome: the time of their loss is unknown "
            "(no closed_at, and no closed entry in stage_history)",
            int(unknown.sum()),
        )
    final = np.flatnonzero(lost & ~unknown)
    keep_mid = ~unknown[mid_deal]

    deal = np.r_[mid_deal[keep_mid], final]
    lost_at = np.r_[mid_at[keep_mid], final_at[final]]
    reopened_at = np.r_[mid_reopen[keep_mid], np.full(final.size, _NAT)]
    cycle = np.r_[mid_cycle[keep_mid], reopens[final]]
    order = np.lexsort((lost_at, deal))
    deal, lost_at, reopened_at, cycle = (
        deal[order],
        lost_at[order],
        reopened_at[order],
        cycle[order],
    )

    # Furthest open stage per (deal, cycle), from the open entries of that cycle.
    opened = ~closed
    furthest = (
        pd.DataFrame({"deal": pos[opened], "cycle": cycle_of_row[opened], "stage": stage[opened]})
        .groupby(["deal", "cycle"])["stage"]
        .max()
    )
    furthest_stage = furthest.reindex(pd.MultiIndex.from_arrays([deal, cycle])).to_numpy(
        dtype=np.float64, na_value=np.nan
    )

    last_loss = _ahead(deal, -1) != deal
    reason = canonical_lost_reasons(_text(deals, "lost_reason")).to_numpy()
    frame = deals.iloc[deal]
    return pd.DataFrame(
        {
            "deal_id": deal_id[deal],
            "account_id": _text(frame, "account_id").to_numpy(),
            "owner_id": _text(frame, "owner_id").to_numpy(),
            "cycle": cycle.astype(np.int64),
            "lost_at": _from_micros(lost_at),
            "reopened_at": _from_micros(reopened_at),
            "lost_reason": np.where(last_loss, reason[deal], None),
            "furthest_stage": furthest_stage,
            "amount": pd.to_numeric(_column(frame, "amount"), errors="coerce")
            .astype(np.float64)
            .to_numpy(),
        },
        columns=list(LOSS_COLUMNS),
    )


def _ahead(values: np.ndarray, fill: object) -> np.ndarray:
    """``values`` of the next row, ``fill`` for the last one."""
    out = np.empty_like(values)
    out[:-1], out[-1:] = values[1:], fill
    return out


def _behind(values: np.ndarray, fill: object) -> np.ndarray:
    """``values`` of the previous row, ``fill`` for the first one."""
    out = np.empty_like(values)
    out[1:], out[:1] = values[:-1], fill
    return out


def _per_deal_cumsum(pos: np.ndarray, flag: np.ndarray) -> np.ndarray:
    """Running count of ``flag`` within each deal (rows sorted by deal)."""
    counts = flag.astype(np.int64)
    total = np.cumsum(counts)
    start = _behind(pos, -1) != pos
    return total - np.maximum.accumulate(np.where(start, total - counts, 0))


# ---------------------------------------------------------------------- revivals
def revivals(
    cycles: pd.DataFrame,
    deals: pd.DataFrame,
    window_days: int,
    *,
    link_by_account: bool | None = None,
) -> pd.DataFrame:
    """``cycles`` (from :func:`loss_cycles`) with how each loss came back, if it did.

    A loss at ``lost_at`` is revived at the first of (a tie goes to the re-open):

    * ``reopen``: the deal's next open stage entry (``reopened_at``), at any time;
    * ``follow_up``: the first deal whose ``previous_deal_id`` names the lost deal,
      created in ``(lost_at, lost_at + window_days]`` (the link is trusted as ingest
      checked it: same account, created earlier); when none does and ``link_by_account``,
      the first deal of the same account created in that interval that names no previous
      deal (a deal naming another one follows that one up).

    ``link_by_account`` None (the default) links by account and time only when the CRM
    records no link at all (no deal has a ``previous_deal_id``). Why not for every loss
    without a linked deal: in a CRM that records links, an unlinked later deal of the
    account is mostly an independent one, and accounts with several deals a year would
    see nearly every loss "revived" by it (on the synthetic CRM, where 85% of follow-ups
    are linked, that guess mislabels most losses; the test measures it). Linking by
    account and time is the documented guess for CRMs without links: a deal of the
    account started anyway counts as a revival.

    How the revival ended: the revived deal's first loss at or after the revival (a
    later row of ``cycles``: ``lost``), else the deal's status (``won`` with its
    ``closed_at``, ``open``, or ``lost`` whose time is unknown). So a re-open is won only
    when its close is the deal's final one and the deal is won. Adds
    :data:`REVIVAL_COLUMNS`; all missing when the loss was not revived by the export.
    """
    window = window_days * _US_PER_DAY
    lost_at = _micros(cycles["lost_at"])
    reopened = _micros(cycles["reopened_at"])

    info = pd.DataFrame(
        {
            "deal_id": _text(deals, "deal_id").astype(str).to_numpy(),
            "account_id": _text(deals, "account_id").to_numpy(),
            "previous": _text(deals, PREVIOUS_DEAL).to_numpy(),
            "created": _micros(_times(deals, "created_at")),
            "status": _status(deals),
            "closed": _micros(_times(deals, "closed_at")),
        }
    )
    dated = info[info["created"] != _NAT]
    queries = pd.DataFrame(
        {
            "row": np.arange(len(cycles)),
            "deal_id": cycles["deal_id"].astype(str).to_numpy(),
            "account_id": _text(cycles, "account_id").to_numpy(),
            "at": lost_at,
        }
    )
    linked = _first_after(queries, "deal_id", dated[dated["previous"].notna()], "previous", window)
    if link_by_account is None:
        link_by_account = not info["previous"].notna().any()
    unlinked = dated[dated["previous"].isna()] if link_by_account else dated.iloc[0:0]
    by_account = _first_after(queries, "account_id", unlinked, "account_id", window)
    follow_id = np.where(pd.notna(linked[0]), linked[0], by_account[0])
    follow_at = np.where(pd.notna(linked[0]), linked[1], by_account[1])

    is_reopen = (reopened != _NAT) & ((follow_at == _NAT) | (reopened <= follow_at))
    is_follow = ~is_reopen & (follow_at != _NAT)
    revived_at = np.where(is_reopen, reopened, np.where(is_follow, follow_at, _NAT))
    kind = np.full(len(cycles), None, dtype=object)
    kind[is_reopen], kind[is_follow] = REOPEN, FOLLOW_UP
    revival_deal = np.full(len(cycles), None, dtype=object)
    revival_deal[is_reopen] = queries["deal_id"].to_numpy()[is_reopen]
    revival_deal[is_follow] = follow_id[is_follow]

    # The revival's end: the revived deal's first loss from the revival on, else its status.
    revived = np.flatnonzero(is_reopen | is_follow)
    ends = pd.merge_asof(
        pd.DataFrame(
            {
                "row": revived,
                "deal_id": revival_deal[revived].astype(str),
                "at": revived_at[revived],
            }
        ).sort_values("at", kind="stable"),
        pd.DataFrame({"deal_id": cycles["deal_id"].astype(str).to_numpy(), "end": lost_at})
        .assign(at=lost_at)
        .sort_values("at", kind="stable"),
        on="at",
        by="deal_id",
        direction="forward",
    ).set_index("row")
    end = ends["end"].reindex(revived).to_numpy(dtype=np.float64, na_value=np.nan)
    later_loss = ~np.isnan(end)
    final = info.set_index("deal_id").reindex(revival_deal[revived].astype(str))
    final_status = final["status"].fillna("").to_numpy(dtype=object)
    final_closed = final["closed"].fillna(_NAT).to_numpy(dtype=np.int64)
    final_status = np.where(np.isin(final_status, [WON, OPEN, LOST]), final_status, None)
    status = np.full(len(cycles), None, dtype=object)
    closed_at = np.full(len(cycles), _NAT, dtype=np.int64)
    status[revived] = np.where(later_loss, LOST, final_status)
    closed_at[revived] = np.where(
        later_loss,
        np.nan_to_num(end, nan=0).astype(np.int64),
        np.where(
            (final_status != OPEN) & (final_closed >= revived_at[revived]), final_closed, _NAT
        ),
    )

    out = cycles.reset_index(drop=True).copy()
    out["revived_at"] = _from_micros(revived_at)
    out["revival_kind"] = kind
    out["revival_deal_id"] = revival_deal
    out["revival_status"] = status
    out["revival_closed_at"] = _from_micros(closed_at)
    return out


def _first_after(
    queries: pd.DataFrame, query_key: str, candidates: pd.DataFrame, key: str, window: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per query row: the first candidate with the same key created in (at, at + window].

    Returns (deal_id or None, created microseconds or ``_NAT``), aligned with ``queries``.
    Ties in creation go to the smaller ``deal_id``.
    """
    ids = np.full(len(queries), None, dtype=object)
    at = np.full(len(queries), _NAT, dtype=np.int64)
    q = queries[queries[query_key].notna()]
    c = candidates[candidates[key].notna()]
    if q.empty or c.empty:
        return ids, at
    right = pd.DataFrame(
        {"key": c[key].astype(str).to_numpy(), "at": c["created"].to_numpy(), "found": c["deal_id"]}
    ).sort_values(["at", "found"], kind="stable")
    right["created"] = right["at"]
    left = pd.DataFrame(
        {"row": q["row"].to_numpy(), "key": q[query_key].astype(str).to_numpy(), "at": q["at"]}
    ).sort_values("at", kind="stable")
    hit = pd.merge_asof(
        left, right, on="at", by="key", direction="forward", allow_exact_matches=False
    )
    ok = hit["found"].notna().to_numpy() & (
        hit["created"].fillna(_NAT).to_numpy(dtype=np.int64) <= hit["at"].to_numpy() + window
    )
    rows = hit["row"].to_numpy()[ok]
    ids[rows] = hit["found"].to_numpy()[ok]
    at[rows] = hit["created"].to_numpy()[ok].astype(np.int64)
    return ids, at


# ---------------------------------------------------------------------- snapshots
def revival_snapshots(
    revived: pd.DataFrame,
    as_of: pd.Timestamp,
    *,
    first_days: int = REVIVAL_FIRST_SNAPSHOT_DAYS,
    every_days: int = REVIVAL_SNAPSHOT_EVERY_DAYS,
    max_days: int = REVIVAL_SNAPSHOT_MAX_DAYS,
    horizon_days: int = REVIVAL_HORIZON_DAYS,
) -> pd.DataFrame:
    """The revival model's training entities: moments after each loss, labelled.

    Snapshots of a loss at ``L`` (the synthetic ``revival_truth`` grid): ``s = L + d``
    for ``d = first_days, first_days + every_days, ...`` while ``d <= max_days``,
    ``s <= as_of`` and ``s < revived_at`` (a deal already back is no longer a lost deal
    to score; a snapshot at the revival's instant is not taken).

    The label ``revived_and_won`` (int8), with ``H = horizon_days``, only where the whole
    horizon lies in the export (``s + H <= as_of``):

    * 1 when revived in ``(s, s + H]`` (both ends counted as written) and the revival
      ended won (by ``as_of``);
    * 0 when revived in ``(s, s + H]`` and the revival ended lost, or not revived by
      ``s + H``;
    * else censored (``censored`` True, label -1, so a training that forgets to drop
      them fails instead of reading them as 0): ``s + H > as_of``, or the revival in the
      horizon is still open at ``as_of``.

    Why a won revival inside a horizon that reaches past ``as_of`` is censored too: near
    the export's end only the deals that came back (and closed) are known; keeping them
    and dropping the rest would raise the recent win rate above the truth, and a model
    trained on it would promise revivals that do not come. Censoring by the snapshot's
    time alone leaves every kept snapshot's outcome independent of when it resolved,
    except a revival still open at ``as_of`` (rare: its horizon ended first).

    Columns: deal_id, account_id, owner_id, ``TS`` (the snapshot), lost_at,
    days_since_loss, cycle, revived_and_won, censored. ``revived`` is
    :func:`revivals`' frame.
    """
    day = _US_PER_DAY
    as_of_us = int(as_utc(as_of).value // 1_000)
    lost_at = _micros(revived["lost_at"])
    revived_at = _micros(revived["revived_at"])
    last = np.minimum(as_of_us - lost_at, max_days * day)
    last = np.where(revived_at != _NAT, np.minimum(last, revived_at - lost_at - 1), last)
    first, every = first_days * day, every_days * day
    count = np.where(last >= first, (last - first) // every + 1, 0).astype(np.int64)
    loss = np.repeat(np.arange(len(revived)), count)
    step = np.arange(loss.size) - np.repeat(np.cumsum(count) - count, count)
    offset = first + step * every
    snap = lost_at[loss] + offset
    end = snap + horizon_days * day

    back = (revived_at[loss] != _NAT) & (revived_at[loss] <= end)
    status = revived["revival_status"].to_numpy(dtype=object)[loss]
    seen = end <= as_of_us
    won = seen & back & (status == WON)
    lost = seen & ((back & (status == LOST)) | ~back)
    rows = revived.iloc[loss]
    return pd.DataFrame(
        {
            "deal_id": rows["deal_id"].astype(str).to_numpy(),
            "account_id": _text(rows, "account_id").to_numpy(),
            "owner_id": _text(rows, "owner_id").to_numpy(),
            TS: _from_micros(snap),
            "lost_at": _from_micros(lost_at[loss]),
            "days_since_loss": offset / day,
            "cycle": rows["cycle"].to_numpy(dtype=np.int64),
            "revived_and_won": np.where(won, 1, np.where(lost, 0, -1)).astype(np.int8),
            "censored": ~(won | lost),
        }
    )


#: Days in a month on average, to say a horizon in months.
DAYS_PER_MONTH = 365.25 / 12


def win_within_words(horizon_days: float) -> str:
    """``chance of a win within 12 months`` for 365 days: the words of an outcome "won
    within the horizon" (lost deals' revival, dormant deals'); a horizon that is no whole
    number of months is said in days."""
    months = round(horizon_days / DAYS_PER_MONTH)
    whole = months > 0 and abs(months * DAYS_PER_MONTH - horizon_days) < 2
    within = f"{months} month{'' if months == 1 else 's'}" if whole else f"{horizon_days:g} days"
    return f"chance of a win within {within}"


def revival_meaning(horizon_days: float) -> str:
    """What a revival probability means, in words, wherever one is shown (the list, the
    API): ``chance of a win within 12 months if re-engaged now`` for 365 days."""
    return f"{win_within_words(horizon_days)} if re-engaged now"
