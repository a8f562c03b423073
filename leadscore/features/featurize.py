"""Point-in-time deal features from CRM tables: the one definition of every feature.

The CRM history becomes *feature source rows*: one row per entity each time one of
its feature values changes, stamped with that moment (``event_timestamp``). A feature
at any moment is then the latest row at or before it, which is exactly the
point-in-time join Feast performs for training (``get_historical_features``) and what
materialization keeps in the online store for serving. Nothing later than the moment
can reach it.

Values that change merely because time passes are computed at request time by
:func:`request_time_features`, which Feast runs in the ``deal_timing`` on-demand feature
view, for training and serving alike:

* durations ("days since last activity") from timestamps stored in the rows;
* windowed activity counts ("calls in the last 7 days", :func:`window_counts`) as the
  difference of two cumulative counts: the ``deal_activity`` row at the moment, and the
  same source's row as of ``w`` days before, which the :data:`LAGGED_VIEWS` read by
  stamping each row ``w`` days later. The source then needs one row per activity moment,
  not one more each time an activity leaves a window (four times fewer rows).

The rules themselves (what a stage change, a stall, a reply or a first visit is) live
in :mod:`leadscore.features.deal_state`, whose kernels this module runs at every moment of change
to build the source rows; the scoring service runs the same kernels at one moment for
deals a CRM sends in full. :func:`features_as_of` performs Feast's latest-row join in
memory, for batch ranking and tests; a test proves it agrees with Feast.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from leadscore.config import REVIVAL_WINDOW_DAYS, crash_point
from leadscore.crm.attributes import Attribute, feature_attributes
from leadscore.crm.contract import CLOSED_STATUSES, LOST, OPEN, UNDATED, WON
from leadscore.crm.revival import loss_cycles, revivals
from leadscore.features.catalog import (
    FEATURES_BY_NAME,
    WINDOWS_DAYS,
    Feature,
    model_catalog,
)
from leadscore.features.deal_state import (
    ACTIVITY_CODES,
    CUMULATIVE_COLUMNS,
    DAY,
    DIRECTION_CODES,
    STAGE_CODES,
    UNKNOWN_DIRECTION,
    US,
    ActivityEvents,
    ContactEvents,
    LossEvents,
    Queries,
    StageEvents,
    activity_at,
    contacts_at,
    engagement_since_loss,
    revival_timing_features,
    seconds_up,
    sort_events,
    stage_at,
    timing_features,
)
from leadscore.features.seniority import seniority_of_titles
from leadscore.features.source_files import NO_ROWS, by_month, part_name, source_path
from leadscore.parquetio import writer_options
from leadscore.pipeline_state import link_file
from leadscore.progress import Progress, no_progress
from leadscore.timeutil import TS, as_utc

log = logging.getLogger(__name__)

#: Entity join key of each feature view.
VIEW_KEYS: dict[str, str] = {
    "deal_profile": "deal_id",
    "deal_stage": "deal_id",
    "deal_contacts": "deal_id",
    "deal_activity": "deal_id",
    "account_history": "account_id",
    "owner_history": "owner_id",
    #: Only when the data declares custom attributes known before close (attribute_source).
    "deal_attributes": "deal_id",
    #: Lost deals since their latest loss (revival_source): no rows without losses.
    "deal_revival": "deal_id",
}
#: Views whose source exists only for some data: the others are always built.
OPTIONAL_VIEWS: tuple[str, ...] = ("deal_attributes",)
#: Views built from the rows of one owner (its deals); every other view is built from the
#: rows of one account: its deals, their stage history, contacts and activities, and the
#: account. That independence is what the Spark engine's groups and an incremental
#: rebuild (:mod:`leadscore.features.incremental`) rest on.
OWNER_VIEWS: tuple[str, ...] = ("owner_history",)
#: Tables whose rows belong to one deal (a ``deal_id`` column).
DEAL_TABLES: tuple[str, ...] = ("stage_history", "deal_contacts", "activities")
#: Views whose rows of a deal are built from that deal's own rows alone (and the contacts
#: and account it names): ingest builds them a range of deals at a time
#: (:func:`iter_feature_sources`' ``chunk_deals``). The others need an account's or an
#: owner's other deals (:data:`OWNER_VIEWS`, the account's track record, a lost deal's
#: account counts).
DEAL_VIEWS: tuple[str, ...] = (
    "deal_profile",
    "deal_stage",
    "deal_contacts",
    "deal_activity",
    "deal_attributes",
)
#: The ``deal_profile`` field holding the deal's status (open, won, lost) as of the row:
#: read by the scoring service, never a model input (:func:`profile_source`).
DEAL_STATUS = "deal_status"


def views_of(sources: Mapping[str, pd.DataFrame]) -> dict[str, str]:
    """The join key of each view ``sources`` must hold: every view but an absent optional one."""
    return {v: k for v, k in VIEW_KEYS.items() if v in sources or v not in OPTIONAL_VIEWS}


@dataclass(frozen=True)
class LaggedView:
    """A feature view over another view's source whose rows are stamped ``days`` later.

    Its timestamp is a column of that source, :attr:`timestamp` (the row's moment plus
    ``days``), so a point-in-time lookup at q finds the latest row at or before q - days:
    the state ``days`` before the moment, never a row the moment could not see. Its
    fields are the source's :attr:`columns` under names of their own (:meth:`field`), as
    Feast wants every feature name of a retrieval distinct. Not a source: the rows are
    those of :attr:`source`, in its one file.
    """

    source: str
    days: int
    columns: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"{self.source}_{self.days}d_ago"

    @property
    def timestamp(self) -> str:
        return f"{TS}_plus_{self.days}d"

    def field(self, column: str) -> str:
        return f"{column}_{self.days}d_ago"


#: The cumulative activity counts as of each count window's length before the moment:
#: ``deal_timing`` subtracts them from the counts at the moment (:func:`window_counts`).
LAGGED_VIEWS: tuple[LaggedView, ...] = tuple(
    LaggedView("deal_activity", w, tuple(CUMULATIVE_COLUMNS.values())) for w in WINDOWS_DAYS
)
#: Stored columns read only to compute the window counts (not ``n_activities``, a feature).
WINDOW_COUNT_INPUTS: frozenset[str] = frozenset(
    {lag.field(c) for lag in LAGGED_VIEWS for c in lag.columns}
    | {c for c in CUMULATIVE_COLUMNS.values() if c not in FEATURES_BY_NAME}
)


_COMPETITOR_NONE = {"none", "no competitor", "no", "n/a", "na", "nobody", "无", "没有"}
_COMPETITOR_UNKNOWN = {"", "unknown", "nan", "null", "?", "未知"}


# ---------------------------------------------------------------- normalisation
def per_distinct(values: pd.Series, fn: Callable[[pd.Series], pd.Series]) -> pd.Series:
    """``fn(values)``, for a ``fn`` that maps each value on its own, computed once per
    distinct text and spread back to the rows.

    Text columns hold a few distinct values over many rows (an activity's type, a deal's
    channel), and pandas' string methods cost a Python call per row. Missing values go
    through ``fn`` as they are (None and NaN may map differently); a column holding
    anything but text (or missing) goes through ``fn`` whole.
    """
    text = isinstance(values.dtype, pd.StringDtype) or (
        values.dtype == object and pd.api.types.infer_dtype(values, skipna=True) == "string"
    )
    if not text:
        return fn(values)
    codes, distinct = pd.factorize(values)  # missing: -1
    done = fn(pd.Series(distinct, dtype=values.dtype, name=values.name))
    missing = codes < 0
    if missing.any():
        done = pd.concat([done, fn(values[missing])], ignore_index=True)
        codes = np.where(missing, len(distinct) + np.cumsum(missing) - 1, codes)
    return done.iloc[codes].set_axis(values.index)


def normalise_category(values: pd.Series) -> pd.Series:
    """Lower-case, trimmed, inner spaces as underscores; empty becomes missing."""
    return per_distinct(values, _normalise_category)


def _normalise_category(values: pd.Series) -> pd.Series:
    s = values.astype("string").str.strip().str.lower().str.replace(r"\s+", "_", regex=True)
    return s.mask(s == "").astype(object).where(s.notna(), None)


def normalise_competitor(values: pd.Series) -> pd.Series:
    """Keep 'none' (no competitor) and 'unknown' (not recorded) distinct.

    They predict differently: a deal with no competitor is a real signal, an empty
    field is only a gap in the CRM.
    """
    return per_distinct(values, _normalise_competitor)


def _normalise_competitor(values: pd.Series) -> pd.Series:
    s = values.astype("string").str.strip().str.lower()
    s = s.fillna("unknown")
    s = s.mask(s.isin(_COMPETITOR_UNKNOWN), "unknown").mask(s.isin(_COMPETITOR_NONE), "none")
    return s.str.replace(r"\s+", "_", regex=True).astype(object)


def _as_us(values: pd.Series) -> pd.Series:
    """UTC datetimes at microsecond resolution, the unit of every source's times."""
    return as_utc(values).astype("datetime64[us, UTC]")


def _micros(values: pd.Series) -> np.ndarray:
    """UTC datetimes as int64 microseconds since the epoch."""
    return as_utc(values).to_numpy(dtype="datetime64[us]").astype(np.int64)


def _from_micros(us: np.ndarray) -> pd.Series:
    """Microseconds since the epoch (NaN: unknown) as UTC datetimes (NaT)."""
    us = np.asarray(us, dtype=np.float64)
    values = np.where(np.isnan(us), float(np.iinfo(np.int64).min), us).astype(np.int64)
    return pd.Series(values.view("datetime64[us]"), dtype="datetime64[us, UTC]")


def _from_seconds(seconds: np.ndarray) -> pd.Series:
    return _from_micros(np.asarray(seconds, dtype=np.float64) * US)


def _last_per_timestamp(df: pd.DataFrame, key: str) -> pd.DataFrame:
    """Several changes at one instant leave only the state after all of them."""
    return df.drop_duplicates([key, TS], keep="last").reset_index(drop=True)


# ---------------------------------------------------------------- feature sources
def profile_source(deals: pd.DataFrame, accounts: pd.DataFrame | None) -> pd.DataFrame:
    """What the deal is, stamped at its creation (at :data:`UNDATED` when it has none).

    CRM exports carry only the current value of deal fields (amount, competitor),
    so these are taken as known from the start; see the model card's limitations.
    An undated deal keeps ``deal_created_at`` missing, so its age is never invented;
    a deal without an account has ``deal_account_id`` "" (no account, no track record).

    :data:`DEAL_STATUS` is the deal's status as of the row (not a model input: the
    scoring service reads it so that it never gives an open-deal score to a closed
    deal). A dated closed deal gets a second row at its ``closed_at``, the same profile
    with its outcome, so a point-in-time lookup sees it open before and closed after;
    an undated one (created or closed time unknown, as :func:`snapshot_entities` calls
    it) has no open period to date, so its outcome is on its one row.
    """
    created = as_utc(_col(deals, "created_at"))
    closed_at = as_utc(_col(deals, "closed_at"))
    status = _col(deals, "status").astype(object).where(_col(deals, "status").notna(), OPEN)
    closed = status.isin(CLOSED_STATUSES)
    dated_close = closed & created.notna() & closed_at.notna() & (closed_at > created)
    df = pd.DataFrame(
        {
            "deal_id": deals["deal_id"].astype(str),
            TS: created.fillna(UNDATED),
            "deal_account_id": _keys(deals, "account_id"),
            "deal_owner_id": _keys(deals, "owner_id"),
            "deal_created_at": created,
            DEAL_STATUS: status.where(closed & ~dated_close, OPEN).astype(str),
            "channel": normalise_category(_col(deals, "channel")),
            "competitor": normalise_competitor(_col(deals, "competitor")),
            "product": normalise_category(_col(deals, "product")),
            "amount": pd.to_numeric(_col(deals, "amount"), errors="coerce").astype("float64"),
        }
    )
    df["log_amount"] = np.log1p(df["amount"])
    acc_cols = ["industry", "region", "employee_count", "annual_revenue"]
    if accounts is not None and len(accounts):
        acc = accounts.set_index(accounts["account_id"].astype(str))
        for c in acc_cols:
            df[c] = df["deal_account_id"].map(_col(acc, c))
    else:
        for c in acc_cols:
            df[c] = np.nan
    df["industry"] = normalise_category(df["industry"])
    df["region"] = normalise_category(df["region"])
    for c in ("employee_count", "annual_revenue"):
        df[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
    close = df[dated_close.to_numpy()].copy()
    close[TS] = closed_at[dated_close]
    close[DEAL_STATUS] = status[dated_close].astype(str)
    df = pd.concat([df, close], ignore_index=True)
    return df.sort_values(["deal_id", TS], kind="stable").reset_index(drop=True)


def status_as_of(status: str, closed_at: datetime | None, as_of: datetime) -> str:
    """A deal's status at ``as_of``, by the rule of :func:`profile_source`'s rows.

    A closed deal is open until its ``closed_at`` and closed from then on; with no
    ``closed_at`` its outcome is all that is known, so it counts as closed at any moment.
    """
    if status in CLOSED_STATUSES and (closed_at is None or closed_at <= as_of):
        return status
    return OPEN


def stage_source(stage_history: pd.DataFrame) -> pd.DataFrame:
    """Funnel position after each stage entry: index, changes, moves back, long stays."""
    deal_cat, t, order = _events(stage_history, "entered_at", _micros)
    stage = per_distinct(
        stage_history["stage"], lambda s: s.astype(str).str.strip().str.lower().map(STAGE_CODES)
    )
    stage = stage.to_numpy(dtype=float, na_value=np.nan)[order]
    known = ~np.isnan(stage)  # stages outside the funnel are not positions in it
    events = StageEvents(
        deal_cat.codes[order][known].astype(np.int64), t[known], stage[known].astype(np.int64)
    )
    queries = _distinct_moments(events.deal, events.t_us)
    state = stage_at(events, queries, len(deal_cat.categories))
    out = _frame(deal_cat, queries, _from_micros(queries.t))
    for name in ("stage_index", "stage_changes", "backward_moves", "long_stays"):
        out[name] = state[name].astype(np.int32)
    out["stage_entered_at"] = _from_micros(state["stage_entered_at"])
    # A repeat of the current stage changes nothing, so it gets no row.
    values = out.drop(columns=TS)
    return out[values.ne(values.shift()).any(axis=1).to_numpy()].reset_index(drop=True)


def contacts_source(deal_contacts: pd.DataFrame, contacts: pd.DataFrame | None) -> pd.DataFrame:
    """Who is on the deal after each contact is attached."""
    deal_cat, t, order = _events(deal_contacts, "added_at", _micros)
    seniority = _contact_seniority(contacts)
    ids = deal_contacts["contact_id"].astype(str)
    level = ids.map(seniority) if seniority is not None else pd.Series(np.nan, index=ids.index)
    role = _col(deal_contacts, "role").astype("string").str.lower()
    events = ContactEvents(
        deal_cat.codes[order].astype(np.int64),
        t,
        level.to_numpy(dtype=float, na_value=np.nan)[order],
        role.eq("economic_buyer").fillna(False).to_numpy(dtype=bool)[order],
    )
    queries = _distinct_moments(events.deal, events.t_us)
    state = contacts_at(events, queries, len(deal_cat.categories))
    out = _frame(deal_cat, queries, _from_micros(queries.t))
    for name in ("n_contacts", "n_senior_contacts", "has_economic_buyer"):
        out[name] = state[name].astype(np.int32)
    out["max_seniority"] = state["max_seniority"]
    if seniority is None:  # no titles at all: unknown, not zero
        out["n_senior_contacts"] = np.nan
    return out[
        ["deal_id", TS, "n_contacts", "max_seniority", "n_senior_contacts", "has_economic_buyer"]
    ]


def activity_source(activities: pd.DataFrame, contacts: pd.DataFrame | None) -> pd.DataFrame:
    """Engagement after each activity (one row per deal and second with activities).

    Counts are cumulative (:data:`~leadscore.features.deal_state.CUMULATIVE_COLUMNS`);
    each :data:`LAGGED_VIEWS` reads the same rows at their moment plus its window, stored
    as its :attr:`~LaggedView.timestamp` column, and ``deal_timing`` turns the two into
    window counts (:func:`window_counts`).
    """
    if activities.empty:
        return _empty("deal_activity")
    deal_cat, events = _activity_events(activities, contacts)
    seniority = _contact_seniority(contacts)
    queries = _distinct_moments(events.deal, events.t_s)
    state = activity_at(events, queries, len(deal_cat.categories), windows=False)
    out = _frame(deal_cat, queries, _from_seconds(queries.t))
    for lag in LAGGED_VIEWS:
        out[lag.timestamp] = out[TS] + timedelta(days=lag.days)
    for name in CUMULATIVE_COLUMNS.values():
        out[name] = state[name].astype(np.int32)
    out["share_inbound"] = state["share_inbound"]
    for name in ("last_activity_at", "last_inbound_at", "awaiting_reply_since"):
        out[name] = _from_seconds(state[name])
    out["median_reply_hours"] = state["median_reply_hours"]
    for name in ("first_visits", "followup_visits"):
        out[name] = state[name].astype(np.int32)
    out["senior_met"] = np.nan if seniority is None else state["senior_met"].astype(np.int32)
    return out


def _activity_events(
    activities: pd.DataFrame, contacts: pd.DataFrame | None, deal_ids: pd.Index | None = None
) -> tuple[pd.Categorical, ActivityEvents]:
    """Activities as the kernels read them, with the seniority of the contact they name.

    ``deal_ids`` fixes the deal codes (activities must all be of those deals); by default
    they are the activities' own deals.
    """
    deal_cat, t, order = _events(
        activities, "occurred_at", lambda v: seconds_up(_micros(v)), deal_ids
    )
    kind = per_distinct(activities["type"], lambda s: s.astype(str).str.lower().map(ACTIVITY_CODES))
    direction = per_distinct(
        _col(activities, "direction"),
        lambda s: s.astype("string").str.lower().map(DIRECTION_CODES),
    )
    contact_code, contact_ids = _contact_codes(_col(activities, "contact_id"))
    seniority = _contact_seniority(contacts)
    level = (
        pd.Series(contact_ids, dtype="string")
        .map(seniority)
        .to_numpy(dtype=float, na_value=np.nan)[contact_code]
        if seniority is not None
        else np.full(len(contact_code), np.nan)
    )
    events = ActivityEvents(
        deal=deal_cat.codes[order].astype(np.int64),
        t_s=t,
        kind=kind.to_numpy(dtype=float, na_value=-1)[order].astype(np.int64),
        direction=direction.to_numpy(dtype=float, na_value=UNKNOWN_DIRECTION)[order].astype(
            np.int64
        ),
        contact=contact_code[order].astype(np.int64),
        level=level[order],
    )
    return deal_cat, events


def _contact_codes(contact_id: pd.Series) -> tuple[np.ndarray, pd.api.extensions.ExtensionArray]:
    """A code per row for the contact it names as text, and the texts: one code for all
    rows naming none (missing or ""), since the kernels tell "no contact" apart from a
    contact only by its code.

    Factorised as the column is, then its distinct values as text: converting millions
    of cells to text first cost as much again as the factorising.
    """
    codes, distinct = pd.factorize(contact_id)  # missing: -1
    text = pd.concat(
        [pd.Series(distinct, dtype=object).astype("string"), pd.Series([""], dtype="string")]
    )
    text_codes, texts = pd.factorize(text.reset_index(drop=True))
    return text_codes[np.where(codes < 0, len(distinct), codes)].astype(np.int64), texts


def _events(
    table: pd.DataFrame, time_column: str, to_int, deal_ids: pd.Index | None = None
) -> tuple[pd.Categorical, np.ndarray, np.ndarray]:
    """Deal codes, integer times (sorted by deal and time) and the order that sorts the table.

    ``deal_ids`` fixes the codes (every deal of ``table`` must be among them)."""
    deal_cat = pd.Categorical(table["deal_id"].astype(str), categories=deal_ids)
    t = to_int(table[time_column])
    order = sort_events(deal_cat.codes, t)
    return deal_cat, t[order], order


def _distinct_moments(deal: np.ndarray, t: np.ndarray) -> Queries:
    """Each deal's distinct event times: several changes at one instant give one row."""
    keep = np.r_[True, (deal[1:] != deal[:-1]) | (t[1:] != t[:-1])] if len(t) else np.zeros(0, bool)
    return Queries(deal[keep], t[keep])


def _frame(deal_cat: pd.Categorical, queries: Queries, ts: pd.Series) -> pd.DataFrame:
    return pd.DataFrame(
        {"deal_id": np.asarray(deal_cat.categories, dtype=object)[queries.deal], TS: ts}
    )


def _history_source(deals: pd.DataFrame, key: str, prefix: str) -> pd.DataFrame:
    """Track record of an account or owner after each of its deals closes."""
    closed = deals[deals["status"].isin(CLOSED_STATUSES) & deals["closed_at"].notna()]
    closed = closed[closed[key].notna() & (closed[key].astype(str) != "")]
    df = pd.DataFrame(
        {
            key: closed[key].astype(str),
            TS: as_utc(closed["closed_at"]),
            "won": closed["status"].eq(WON),
        }
    ).sort_values([key, TS], kind="stable")
    g = df.groupby(key, sort=False)
    df[f"{prefix}_prior_won"] = g["won"].cumsum().astype("int32")
    df[f"{prefix}_prior_closed"] = (g.cumcount() + 1).astype("int32")
    df[f"{prefix}_prior_win_rate"] = df[f"{prefix}_prior_won"] / df[f"{prefix}_prior_closed"]
    cols = [key, TS, f"{prefix}_prior_won", f"{prefix}_prior_closed", f"{prefix}_prior_win_rate"]
    return _last_per_timestamp(df[cols], key)


def attribute_values(attribute: Attribute, values: pd.Series) -> pd.Series:
    """An attribute's values as the model reads them: categories normalised like the
    built-in ones (``normalise_category``), numbers as float64 (not a number: missing).

    Numbers arrive checked (ingest rejects a stored value that is not a number, the
    scoring API one sent as text), so the coercion only maps empty to missing.
    """
    if attribute.kind == "categorical":
        return normalise_category(values)
    return pd.to_numeric(values, errors="coerce").astype("float64")


def attribute_source(
    deals: pd.DataFrame, accounts: pd.DataFrame | None, attributes: Iterable[Attribute]
) -> pd.DataFrame:
    """Custom attributes known before close, one row per deal, stamped at its creation.

    An export holds no history of these values, so each is taken as known from the
    deal's ``created_at`` (:data:`UNDATED` when the deal has none), like the profile.
    That is exact for ``creation`` attributes; an ``anytime`` one holds its last value,
    which may postdate the snapshot (see ``ANYTIME_CAVEAT`` in the catalog and the
    leakage audit). Account attributes are joined through the deal's account.
    ``after_close`` attributes are never features and are left out.
    """
    created = as_utc(_col(deals, "created_at")).fillna(UNDATED).astype("datetime64[us, UTC]")
    df = pd.DataFrame({"deal_id": deals["deal_id"].astype(str), TS: created}).reset_index(drop=True)
    account_ids = _col(deals, "account_id").astype("string")
    acc = None
    if accounts is not None and len(accounts):
        acc = accounts.set_index(accounts["account_id"].astype(str))
    for a in feature_attributes(attributes):
        if a.table == "deals":
            values = _col(deals, a.name)
        elif acc is not None:
            values = account_ids.map(_col(acc, a.name))
        else:
            values = pd.Series(np.nan, index=deals.index, dtype=object)
        df[a.feature] = attribute_values(a, values.reset_index(drop=True))
    return df.sort_values(["deal_id", TS], kind="stable").reset_index(drop=True)


#: Columns of a loss table (one row per loss, as ``leadscore.crm.revival.loss_cycles``
#: returns it) that the revival source reads; an optional ``revived_at`` (the revival
#: outcome's) replaces the source's own link by account and time.
LOSS_COLUMNS: tuple[str, ...] = (
    "deal_id",
    "lost_at",
    "reopened_at",
    "lost_reason",
    "furthest_stage",
)


def no_losses() -> pd.DataFrame:
    """A loss table with no rows: an export whose lost deals are not read for revival."""
    return pd.DataFrame(
        {
            "deal_id": pd.Series(dtype=object),
            "lost_at": pd.Series(dtype="datetime64[us, UTC]"),
            "reopened_at": pd.Series(dtype="datetime64[us, UTC]"),
            "lost_reason": pd.Series(dtype=object),
            "furthest_stage": pd.Series(dtype="float64"),
        }
    )


def revival_source(
    losses: pd.DataFrame,
    activities: pd.DataFrame | None,
    contacts: pd.DataFrame | None,
    deals: pd.DataFrame,
    window_days: int = REVIVAL_WINDOW_DAYS,
) -> pd.DataFrame:
    """A lost deal as it stands since its latest loss, after each change (``deal_revival``).

    One row at each loss and at each later moment something changes, stamped with it:
    a post-loss activity of the deal, or a deal of its account that opens, closes or
    comes back. Each holds, for the deal's latest loss at that moment: when it was lost,
    why (``lost_reason``: canonical, missing when unknown), the furthest stage it had
    reached, the competitor (``deals.competitor`` normalised as in the profile, the
    export's current value), the engagement since the loss
    (:func:`leadscore.features.deal_state.engagement_since_loss`: inbound, outbound,
    replies, visits, last activity, most senior contact engaged), and the account:

    * ``account_revivals_before``: losses of the account's *other* deals revived by then,
      at their ``revived_at`` when ``losses`` carries one (as the revival outcome does);
      else a loss is revived when its deal is re-opened (``reopened_at``) or when a later
      deal of the account is created within ``window_days`` after it (linking by account
      and time, the guess docs/revival.md documents);
    * ``account_open_deals``: the account's other deals open then (created, not closed:
      a loss closes a deal until it is re-opened, a win for good).

    Both are missing for a deal without an account. Only facts dated at or before a row
    enter it, so the latest row at a moment is the deal's state then; a loss without a
    time is left out. ``losses`` has :data:`LOSS_COLUMNS`.
    """
    losses = losses[losses["lost_at"].notna()]
    if losses.empty:
        return _empty("deal_revival")
    deal_ids = pd.Index(sorted(set(losses["deal_id"].astype(str))))
    loss_cat, lost_us, loss_order = _events(losses, "lost_at", _micros, deal_ids)
    ordered = losses.iloc[loss_order].reset_index(drop=True)
    loss_events = LossEvents(loss_cat.codes[loss_order].astype(np.int64), lost_us)
    first_loss = lost_us[np.r_[True, loss_events.deal[1:] != loss_events.deal[:-1]]]
    acts = _since_first_loss(activities, deal_ids, first_loss)
    _, act_events = _activity_events(acts, contacts, deal_ids)
    seen_us = act_events.t_s * US
    after = seen_us >= first_loss[act_events.deal]  # at the first loss or later
    deal = np.concatenate([loss_events.deal, act_events.deal[after]])
    t = np.concatenate([lost_us, seen_us[after]])
    order = sort_events(deal, t)
    moments = _distinct_moments(deal[order], t[order])
    state = engagement_since_loss(act_events, loss_events, moments, len(deal_ids))
    out = _loss_rows(loss_cat, moments, state, ordered, deals)
    account = _keys(deals, "account_id").set_axis(deals["deal_id"].astype(str))
    account_of_deal = deal_ids.to_series().map(account).fillna("").to_numpy(dtype=object)
    counted = _with_account_counts(
        moments, deal_ids, account_of_deal, _account_events(losses, deals, window_days)
    )
    # A moment whose state equals the one before (the deal's row, or its account's
    # counts, unchanged) adds nothing, so it gets no row.
    changed = counted.new_deal | counted.changed
    row_changed = np.r_[False, counted.row[1:] != counted.row[:-1]]
    changed |= row_changed & _differs_from_previous(out.drop(columns=["deal_id", TS]))[counted.row]
    kept = out.take(counted.row[changed]).reset_index(drop=True)
    kept[TS] = _from_micros(counted.t[changed])
    kept["account_revivals_before"] = counted.revived[changed]
    kept["account_open_deals"] = counted.opened[changed]
    return kept[list(REVIVAL_SOURCE_COLUMNS)]


def _loss_rows(
    loss_cat: pd.Categorical,
    moments: Queries,
    state: Mapping[str, np.ndarray],
    ordered: pd.DataFrame,
    deals: pd.DataFrame,
) -> pd.DataFrame:
    """The ``deal_revival`` row of each lost deal's own moments (``moments``, codes of
    ``loss_cat``): its latest loss (``state["loss"]``, a position in the losses
    ``ordered`` by deal and time), the deal's competitor and age then, and its
    engagement since (``state``, :func:`engagement_since_loss`); the account's counts
    are added by :func:`_with_account_counts`."""
    latest = ordered.iloc[state["loss"].astype(np.int64)].reset_index(drop=True)
    competitor = normalise_competitor(_col(deals, "competitor")).set_axis(
        deals["deal_id"].astype(str)
    )
    out = _frame(loss_cat, moments, _from_micros(moments.t))
    out["lost_at"] = _as_us(latest["lost_at"]).set_axis(out.index)
    reason = latest["lost_reason"]
    out["lost_reason"] = reason.astype(object).where(reason.notna(), None).to_numpy()
    out["furthest_stage_at_loss"] = pd.to_numeric(latest["furthest_stage"]).to_numpy(float)
    created = as_utc(_col(deals, "created_at")).set_axis(deals["deal_id"].astype(str))
    open_for = pd.to_datetime(out["lost_at"], utc=True) - out["deal_id"].map(created)
    out["days_open_at_loss"] = (open_for / pd.Timedelta(days=1)).to_numpy(dtype=float)
    out["competitor_at_loss"] = out["deal_id"].map(competitor).fillna("unknown")
    for name, column in (
        ("inbound", "inbound_since_loss"),
        ("outbound", "outbound_since_loss"),
        ("replies", "replies_since_loss"),
        ("visits", "visits_since_loss"),
    ):
        out[column] = state[name].astype(np.int32)
    out["last_engaged_at"] = _from_micros(state["last_engaged_at"])
    out["senior_engaged_since_loss"] = state["senior"]
    return out


_NO_ACTIVITIES = pd.DataFrame(
    {
        "deal_id": pd.Series(dtype=object),
        "occurred_at": pd.Series(dtype="datetime64[us, UTC]"),
        "type": pd.Series(dtype=object),
    }
)
#: Columns of the ``deal_revival`` source, in order.
REVIVAL_SOURCE_COLUMNS: tuple[str, ...] = (
    "deal_id",
    TS,
    "lost_at",
    "lost_reason",
    "furthest_stage_at_loss",
    "days_open_at_loss",
    "competitor_at_loss",
    "inbound_since_loss",
    "outbound_since_loss",
    "replies_since_loss",
    "visits_since_loss",
    "last_engaged_at",
    "senior_engaged_since_loss",
    "account_revivals_before",
    "account_open_deals",
)


def _since_first_loss(
    activities: pd.DataFrame | None, deal_ids: pd.Index, first_loss_us: np.ndarray
) -> pd.DataFrame:
    """The activities of the lost deals ``deal_ids`` seen at or after the deal's first
    loss (``first_loss_us``, by position in ``deal_ids``), or whose time is missing.

    The others cannot change :func:`engagement_since_loss` (before its first loss a deal
    counts nothing and nothing is pending), so they are left out before their types,
    directions and contacts are read: most activities of a lost deal precede its loss.
    An activity is seen at its whole second rounded up, as the kernels see it.
    """
    if activities is None:
        return _NO_ACTIVITIES
    deal = _positions(deal_ids, activities["deal_id"])
    at = as_utc(activities["occurred_at"])
    seen_us = seconds_up(_micros(at)) * US
    ours = deal >= 0
    keep = ours & at.isna().to_numpy()
    keep[ours] |= seen_us[ours] >= first_loss_us[deal[ours]]
    return activities if keep.all() else activities[keep]


@dataclass(frozen=True)
class _AccountCounts:
    """Each moment of lost deals' rows, plus each later change of their account, with
    the account's other deals revived and open then (NaN: the deal has no account).

    Sorted by deal and time, one per (deal, time): ``row`` is the deal's latest row at or
    before it, ``new_deal`` marks a deal's first moment and ``changed`` a moment whose
    counts differ from the moment before.
    """

    row: np.ndarray
    deal: np.ndarray
    t: np.ndarray
    revived: np.ndarray
    opened: np.ndarray
    new_deal: np.ndarray
    changed: np.ndarray


def _with_account_counts(
    rows: Queries, deal_ids: pd.Index, account_of_deal: np.ndarray, events: pd.DataFrame
) -> _AccountCounts:
    """``rows`` (each lost deal's moments, sorted by deal code and time) with the
    account's other deals, revived and open, and a moment added at each change of the
    account's counts from the deal's first row on (:func:`_account_events`' ``events``).

    ``deal_ids`` names the deal codes, ``account_of_deal`` their accounts ("" none). The counts at a moment are
    the account's events up to it (inclusive) less the deal's own: sums over sorted
    arrays, not joins of frames.
    """
    n_rows = len(rows.t)
    codes, _ = pd.factorize(
        np.concatenate([account_of_deal, events["account_id"].to_numpy(dtype=object)])
    )
    deal_account = np.where(account_of_deal == "", -1, codes[: len(account_of_deal)])
    ev_account = codes[len(account_of_deal) :].astype(np.int64)
    ev_t = events[TS].to_numpy(dtype="datetime64[us]").astype(np.int64)
    ev_deal = deal_ids.get_indexer(events["deal_id"]).astype(np.int64)  # -1: not lost
    ev_revived = events["revived"].to_numpy(dtype=np.int64)
    ev_opened = events["opened"].to_numpy(dtype=np.int64)

    # Moments added: each event of the deal's account from its first row on.
    by_account = np.lexsort((ev_t, ev_account))
    account_t = ev_t[by_account]
    bounds = np.searchsorted(ev_account[by_account], np.arange(codes.max(initial=-1) + 2))
    first_row = np.r_[True, rows.deal[1:] != rows.deal[:-1]]
    first_t = np.full(len(account_of_deal), np.iinfo(np.int64).max)
    first_t[rows.deal[first_row]] = rows.t[first_row]
    with_account = np.flatnonzero(deal_account >= 0)
    lo = bounds[deal_account[with_account]]
    count = bounds[deal_account[with_account] + 1] - lo
    extra_deal = np.repeat(with_account, count)
    extra_t = account_t[np.repeat(lo - np.cumsum(count) + count, count) + np.arange(count.sum())]
    later = extra_t >= first_t[extra_deal]
    deal = np.concatenate([rows.deal, extra_deal[later]])
    t = np.concatenate([rows.t, extra_t[later]])
    order = np.lexsort((np.arange(len(t)) >= n_rows, t, deal))  # a row before an addition
    deal, t = deal[order], t[order]
    first = np.r_[True, (deal[1:] != deal[:-1]) | (t[1:] != t[:-1])]
    order, deal, t = order[first], deal[first], t[first]
    row = np.maximum.accumulate(np.where(order < n_rows, order, -1))

    ev_rank, rank = _ranks(ev_t, t)
    changes = (ev_revived, ev_opened)
    account_totals = _totals_at(ev_account, ev_rank, changes, deal_account[deal], rank)
    own_totals = _totals_at(ev_deal, ev_rank, changes, deal, rank)
    no_account = deal_account[deal] < 0
    revived, opened = (
        np.where(no_account, np.nan, (total - own).astype(np.float64))
        for total, own in zip(account_totals, own_totals, strict=True)
    )
    new_deal = np.r_[True, deal[1:] != deal[:-1]]
    changed = _differs_from_previous(pd.DataFrame({"r": revived, "o": opened}))
    return _AccountCounts(row, deal, t, revived, opened, new_deal, changed)


def _totals_at(
    key: np.ndarray,
    rank: np.ndarray,
    values: Sequence[np.ndarray],
    at_key: np.ndarray,
    at_rank: np.ndarray,
) -> list[np.ndarray]:
    """For each query (``at_key``, ``at_rank``), the sum of each of ``values`` over the
    events (``key``, ``rank``) of that key at or before that time (0 when none).

    Keys are codes from 0 (an event or query with a negative key matches nothing), times
    ranks from 0 (:func:`_ranks`). A pair is one integer, so each sum is a cumulative
    total read at a binary search.
    """
    span = max(int(rank.max(initial=0)), int(at_rank.max(initial=0))) + 1
    event = np.where(key >= 0, key * span + rank, -1)
    order = np.argsort(event, kind="stable")
    event = event[order]
    upto = np.searchsorted(event, at_key * span + at_rank, side="right")
    before = np.searchsorted(event, np.maximum(at_key, 0) * span, side="left")
    totals = []
    for v in values:
        running = np.r_[0, np.cumsum(v[order])]
        totals.append(np.where(at_key >= 0, running[upto] - running[before], 0))
    return totals


def _ranks(*times: np.ndarray) -> list[np.ndarray]:
    """Each time's rank among all of ``times`` (equal times, equal ranks): small integers
    that pair with a key in one int64 where microseconds would not."""
    every = np.sort(np.concatenate(times))
    distinct = every[np.r_[True, every[1:] != every[:-1]]] if len(every) else every
    return [np.searchsorted(distinct, t) for t in times]


def _differs_from_previous(frame: pd.DataFrame) -> np.ndarray:
    """Per row, whether any value differs from the row before (the first row differs);
    two missing values are equal."""
    differs = np.zeros(len(frame), bool)
    if len(frame):
        differs[0] = True
    for _, values in frame.items():
        if isinstance(values.dtype, pd.DatetimeTZDtype):
            values = values.dt.tz_localize(None)
        missing = values.isna().to_numpy()
        v = values.to_numpy()
        same = (missing[1:] & missing[:-1]) | (~missing[1:] & ~missing[:-1] & (v[1:] == v[:-1]))
        differs[1:] |= ~same
    return differs


def _account_events(losses: pd.DataFrame, deals: pd.DataFrame, window_days: int) -> pd.DataFrame:
    """Changes of each deal's open state and of its revived losses, by account.

    ``opened``: +1 when a dated deal is created or re-opened, -1 when it is lost or won
    (a closed deal whose close time is unknown never counts as open). ``revived``: +1
    when a loss is revived: at its ``revived_at`` when ``losses`` has that column (the
    outcome's own definition, ``previous_deal_id`` links included), else at the earlier of
    its re-open and the creation of a later deal of the account within ``window_days``.
    """
    d = pd.DataFrame(
        {
            "deal_id": deals["deal_id"].astype(str),
            "account_id": _keys(deals, "account_id"),
            "created": _as_us(_col(deals, "created_at")),
            "closed": _as_us(_col(deals, "closed_at")),
            "status": _col(deals, "status").astype("string").str.lower(),
        }
    )
    d = d[d["account_id"] != ""]
    lost = pd.DataFrame(
        {
            "deal_id": losses["deal_id"].astype(str),
            "lost_at": _as_us(losses["lost_at"]),
            "reopened_at": _as_us(losses["reopened_at"]),
            **({"revived_at": _as_us(losses["revived_at"])} if "revived_at" in losses else {}),
        }
    ).merge(d[["deal_id", "account_id"]], on="deal_id")
    read = lost["deal_id"].unique()  # isin of an array: a set was copied to a list first
    closed = d["status"].isin(CLOSED_STATUSES).to_numpy()
    # Open spells need a creation time, and a close time unless the losses give them.
    dated = d[d["created"].notna() & (~closed | d["closed"].notna() | d["deal_id"].isin(read))]
    final = dated[
        dated["status"].eq(WON) | (dated["status"].eq(LOST) & ~dated["deal_id"].isin(read))
    ]
    spells = lost[lost["deal_id"].isin(dated["deal_id"].to_numpy())]

    def change(frame: pd.DataFrame, at: str, column: str, step: int) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "deal_id": frame["deal_id"],
                "account_id": frame["account_id"],
                TS: frame[at],
                column: step,
            }
        )

    created = d[d["created"].notna()].sort_values("created", kind="stable")
    follow = pd.merge_asof(
        lost.sort_values("lost_at", kind="stable"),
        created[["account_id", "created"]],
        left_on="lost_at",
        right_on="created",
        by="account_id",
        direction="forward",
        allow_exact_matches=False,
        tolerance=pd.Timedelta(days=window_days),
    )
    if "revived_at" not in follow:  # else the outcome's own links (previous_deal_id) win
        follow["revived_at"] = follow[["created", "reopened_at"]].min(axis=1)
    events = pd.concat(
        [
            change(dated, "created", "opened", 1),
            change(spells, "lost_at", "opened", -1),
            change(spells, "reopened_at", "opened", 1),
            change(final, "closed", "opened", -1),
            change(follow, "revived_at", "revived", 1),
        ],
        ignore_index=True,
    )
    events = events[events[TS].notna()].fillna({"opened": 0, "revived": 0})
    return events.astype({"opened": np.int64, "revived": np.int64})


def own_revival_source(
    deals: pd.DataFrame,
    stage_history: pd.DataFrame | None,
    activities: pd.DataFrame | None,
    contacts: pd.DataFrame | None,
    window_days: int = REVIVAL_WINDOW_DAYS,
) -> pd.DataFrame:
    """The ``deal_revival`` source of the tables' own losses
    (:func:`leadscore.crm.revival.loss_cycles`) and the revivals that follow them within
    ``window_days``: what ingest stores and ranking reads, one definition."""
    losses = revivals(loss_cycles(deals, stage_history), deals, window_days)
    return revival_source(losses, activities, contacts, deals, window_days)


def build_feature_sources(
    tables: Mapping[str, pd.DataFrame],
    progress: Progress = no_progress,
    attributes: Sequence[Attribute] = (),
    losses: pd.DataFrame | None = None,
    revival_window_days: int = REVIVAL_WINDOW_DAYS,
    views: Collection[str] | None = None,
) -> dict[str, pd.DataFrame]:
    """Turn validated CRM tables into the feature source frames, one per feature view.

    Tables other than ``deals`` may be absent; the views they feed then have no rows
    and their features are missing (NaN) at retrieval. ``progress`` hears of each source
    as it is built (task ``feature sources``). The ``deal_attributes`` source is built
    only when ``attributes`` (the stored ``attributes.json``) has one known before close.
    ``losses`` (one row per loss, :data:`LOSS_COLUMNS`) feed the ``deal_revival`` source;
    by default they are the tables' own (:func:`leadscore.crm.revival.loss_cycles`, with
    the revivals that follow them within ``revival_window_days``), so training, ingest
    and serving read one definition of a loss.

    ``views`` (default: all) builds only those sources. This is the per-group function of
    the Spark engine (:mod:`leadscore.features.spark_engine`): each of its groups holds
    every row of some accounts (or of some owners) and builds their rows of the sources
    keyed by deal or account (or by owner) with this very function, so the two engines
    cannot differ; the local engine is the one group of all rows.
    """
    return dict(
        iter_feature_sources(tables, progress, attributes, losses, revival_window_days, views)
    )


def iter_feature_sources(
    tables: Mapping[str, pd.DataFrame],
    progress: Progress = no_progress,
    attributes: Sequence[Attribute] = (),
    losses: pd.DataFrame | None = None,
    revival_window_days: int = REVIVAL_WINDOW_DAYS,
    views: Collection[str] | None = None,
    chunk_deals: int = 0,
) -> Iterator[tuple[str, pd.DataFrame]]:
    """:func:`build_feature_sources` one source at a time, as each is built: ingest
    writes one (:func:`write_sources`, in the background) while it builds the next, and
    holds no more than the sources not yet written.

    ``chunk_deals`` (0: off) builds each of the :data:`DEAL_VIEWS` a range of
    ``chunk_deals`` deals at a time, in the order of their ids, and yields it as several
    consecutive pieces whose concatenation is the source built at once, row for row: a
    deal's rows of these views depend on its own rows only, and the views are sorted by
    deal first. :func:`write_sources` appends the pieces to one file. The activity source
    alone had a row per activity second of every deal in memory, twice (its frame and
    its Arrow table) while it was written.
    """
    if "deals" not in tables:
        raise ValueError("no deals table: feature sources are built from the stored deals")
    deals = tables["deals"]
    ids = _deal_order(deals)
    positions: dict[str, np.ndarray] = {"deals": _positions(ids, deals["deal_id"])}

    def of_known_deals(name: str) -> pd.DataFrame | None:
        t = tables.get(name)
        if t is None:
            return None
        at = _positions(ids, t["deal_id"])
        known_deal = at >= 0
        # Usually all of them: a copy of every activity lived through the whole build.
        if known_deal.all():
            positions[name] = at
            return t
        positions[name] = at[known_deal]
        return t[known_deal]

    accounts, contacts = tables.get("accounts"), tables.get("contacts")
    sh, dc, acts = (of_known_deals(n) for n in ("stage_history", "deal_contacts", "activities"))
    builders: dict[str, Callable[[Mapping[str, pd.DataFrame | None]], pd.DataFrame]] = {
        "deal_profile": lambda t: profile_source(t["deals"], accounts),
        "deal_stage": lambda t: (
            stage_source(t["stage_history"]) if sh is not None else _empty("deal_stage")
        ),
        "deal_contacts": lambda t: (
            contacts_source(t["deal_contacts"], contacts)
            if dc is not None
            else _empty("deal_contacts")
        ),
        "deal_activity": lambda t: (
            activity_source(t["activities"], contacts)
            if acts is not None
            else _empty("deal_activity")
        ),
        "account_history": lambda t: _history_source(deals, "account_id", "account"),
        "owner_history": lambda t: _history_source(deals, "owner_id", "owner"),
        "deal_revival": lambda t: (
            own_revival_source(deals, sh, acts, contacts, revival_window_days)
            if losses is None
            else revival_source(losses, acts, contacts, deals, revival_window_days)
        ),
    }
    if feature_attributes(attributes):
        builders["deal_attributes"] = lambda t: attribute_source(t["deals"], accounts, attributes)
    if views is not None:
        builders = {name: build for name, build in builders.items() if name in views}
    whole = {"deals": deals, "stage_history": sh, "deal_contacts": dc, "activities": acts}
    ranges = _DealRanges(whole, chunk_deals, ids, positions) if chunk_deals > 0 else None
    for done, (name, build) in enumerate(builders.items()):
        progress("feature sources", done, len(builders), unit="sources", detail=name)
        if ranges is None or name not in DEAL_VIEWS or ranges.count == 1:
            source = build(whole)
            log.info("feature source %s: %d rows", name, len(source))
            yield name, source
            continue
        rows = 0
        for i in range(ranges.count):
            piece = build(ranges.part(i))
            rows += len(piece)
            yield name, piece
        log.info("feature source %s: %d rows in %d ranges of deals", name, rows, ranges.count)
    progress("feature sources", len(builders), len(builders), unit="sources")


def _deal_order(deals: pd.DataFrame) -> pd.Index:
    """The deal ids in the order the deal-keyed sources are written, once each."""
    return pd.Index(deals["deal_id"].astype(str)).unique().sort_values()


def _positions(ids: pd.Index, deal_id: pd.Series) -> np.ndarray:
    """Each row's position in ``ids`` (distinct deal ids as text; -1: not among them).

    Looked up once per distinct id (as ``str()`` writes it), not once per row: a table's
    rows name few deals each, and hashing millions of activity ids twice (which deals
    are known, then which range each is in) cost a second of the first ingest.
    """
    codes, distinct = pd.factorize(deal_id)  # missing: -1
    found = ids.get_indexer(pd.Series(distinct, dtype=object).astype(str))
    at = found[codes].astype(np.int64)
    missing = codes < 0
    if missing.any():  # never in stored tables (a required column): as str() writes it
        at[missing] = ids.get_indexer(deal_id[missing].astype(str))
    return at


def deal_range_starts(deals: pd.DataFrame, chunk_deals: int) -> list[str]:
    """The first deal of every range but the first that :func:`iter_feature_sources`
    cuts ``deals`` into with ``chunk_deals`` (none when 0 or one range): a range holds
    the keys from its start up to the next one's. An incremental rebuild
    (:mod:`leadscore.features.incremental`) writes its ranges with the same cuts, so its
    files are the ones a first ingest of the same tables writes, row group for row group."""
    if chunk_deals <= 0:
        return []
    return [str(first) for first in _deal_order(deals)[chunk_deals::chunk_deals]]


class _DealRanges:
    """The deal tables cut into ranges of ``size`` deals in the order of their ids (the
    order the deal-keyed sources are written in); each range's rows in their table's order.

    Each table's rows are ordered by range once (one stable sort of small integers), so a
    range is a ``take`` of its rows, and no second copy of a table is held.
    """

    def __init__(
        self,
        tables: Mapping[str, pd.DataFrame | None],
        size: int,
        ids: pd.Index,
        positions: Mapping[str, np.ndarray],
    ) -> None:
        """``ids``: the deal ids in order (:func:`_deal_order`); ``positions``: each
        table's rows' positions in them (:func:`_positions`)."""
        self.count = max(1, -(-len(ids) // size))
        self._tables = tables
        self._rows: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for name, table in tables.items():
            if table is None:
                continue
            # -1 (a deal not among the deals) stays -1: such rows are in no range.
            codes = positions[name]
            which = np.where(codes < 0, -1, codes // size)
            order = np.argsort(which, kind="stable")
            bounds = np.searchsorted(which[order], np.arange(self.count + 1))
            self._rows[name] = (order, bounds)

    def part(self, i: int) -> dict[str, pd.DataFrame | None]:
        """The tables' rows of the ``i``-th range of deals."""
        out: dict[str, pd.DataFrame | None] = {}
        for name, table in self._tables.items():
            if table is None:
                out[name] = None
                continue
            order, bounds = self._rows[name]
            out[name] = table.take(order[bounds[i] : bounds[i + 1]])
        return out


def source_table(view: str, df: pd.DataFrame) -> pa.Table:
    """A feature source frame as Arrow, typed the way the Feast views declare them.

    Numbers become float64 (a missing value stays NaN all the way to the online
    store), timestamps microsecond UTC (DuckDB cannot cast nanosecond zoned times),
    keys and categories text. The schema is given, not inferred: a source with no rows
    (an export without activities) would otherwise get columns of type null, which Feast
    cannot join to the entities' string keys. What is written to Parquet
    (:func:`write_sources`) and what a Spark group returns are
    typed by this one function.
    """
    key = VIEW_KEYS[view]
    columns, fields = [_key_array(df[key])], [pa.field(key, pa.string())]
    # Each column straight to Arrow: a pandas frame in between copied every column once
    # more and cost as much as the Parquet write of the millions of activity rows.
    for col in df.columns:
        if col == key:
            continue
        s = df[col]
        if isinstance(s.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_any_dtype(s):
            field = pa.field(col, pa.timestamp("us", tz="UTC"))
            columns.append(pa.array(_as_us(s), type=field.type))
        elif _is_text(col, s):
            field = pa.field(col, pa.string())
            columns.append(pa.array(s.astype(object), type=field.type, from_pandas=True))
        else:
            field = pa.field(col, pa.float64())
            numbers = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            columns.append(pa.array(numbers, type=field.type, from_pandas=True))  # NaN: null
        fields.append(field)
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def write_sources(
    sources: Mapping[str, pd.DataFrame | pa.Table]
    | Iterable[tuple[str, pd.DataFrame | pa.Table | Path]],
    sources_dir: Path,
    progress: Progress = no_progress,
) -> dict[str, int]:
    """Write feature sources as ``<view>.parquet`` folders of a file per month
    (:mod:`leadscore.features.source_files`), typed by :func:`source_table` (as the
    Feast views declare them); a source given as an Arrow table is typed already, and a
    :class:`~pathlib.Path` is a committed month kept as it is (an incremental rebuild
    splices into the committed months its change reaches:
    :mod:`leadscore.features.incremental`). Returns the rows of each.

    ``sources`` is a mapping or pairs made as they are consumed
    (:func:`iter_feature_sources`): each source is typed and written on a thread of its
    own while the next one is built (Parquet encoding releases the GIL, so on two cores
    the build and the write overlap), and its frame is let go once written.

    Each folder is moved into place whole so a reader never sees half a source; ``leadscore
    ingest`` writes them into a new generation of the state, with the CRM tables, and
    commits all at once (:mod:`leadscore.pipeline_state`). ``progress`` counts rows
    written (task ``write sources``; the total is known at the end).
    """
    sources_dir.mkdir(parents=True, exist_ok=True)
    pairs = sources.items() if isinstance(sources, Mapping) else sources
    rows: dict[str, int] = {}
    current: list[_SourceFolder] = []  # the view being written

    def write(view: str, df: pd.DataFrame | pa.Table | Path) -> None:
        table = df if isinstance(df, pa.Table | Path) else source_table(view, df)
        if not current or current[0].view != view:
            finish()
            current.append(_SourceFolder(view, sources_dir))
        current[0].add(table)
        rows[view] = current[0].rows

    def finish() -> None:
        if current:
            current.pop().close()
            crash_point("ingest.source_written")

    pending: Future[None] | None = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="write-sources") as writer:
        try:
            for view, df in pairs:  # building the next source here, writing the last there
                if pending is not None:
                    pending.result()  # a failed write stops the run before the next build
                progress("write sources", sum(rows.values()), None, unit="rows", detail=view)
                pending = writer.submit(write, view, df)
            if pending is not None:
                pending.result()
            writer.submit(finish).result()
        finally:
            for folder in current:  # a failed run: nothing is moved into place
                folder.abandon()
    written = sum(rows.values())
    progress("write sources", written, written, unit="rows")
    return rows


class _SourceFolder:
    """One source written a piece at a time (:func:`write_sources`), as a folder of a
    file per month of its rows (:mod:`leadscore.features.source_files`).

    Consecutive pieces of one view (:func:`iter_feature_sources`' ranges of deals) are
    split by month and appended in the order given, each month's rows of a piece a row
    group of that month's file, into a temporary folder moved into place once the last
    is in. A piece may be a committed part instead (a :class:`~pathlib.Path`: a month an
    incremental rebuild leaves as it is), which is hard-linked in. A piece without rows
    adds nothing; when the source has no rows at all, the folder holds one file without
    rows, typed as a built one.
    """

    def __init__(self, view: str, folder: Path) -> None:
        self.view, self.rows = view, 0
        self._path = source_path(folder, view)
        self._tmp = folder / f".{self._path.name}.tmp"
        shutil.rmtree(self._tmp, ignore_errors=True)
        self._tmp.mkdir(parents=True)
        self._writers: dict[str, pq.ParquetWriter] = {}
        self._schema: pa.Schema | None = None

    def add(self, piece: pa.Table | Path) -> None:
        if isinstance(piece, Path):
            link_file(piece, self._tmp / piece.name)
            self.rows += pq.ParquetFile(piece).metadata.num_rows
            return
        schema = self._schema = self._schema or piece.schema
        for label, rows in by_month(piece):
            writer = self._writers.get(label)
            if writer is None:
                writer = self._writers[label] = pq.ParquetWriter(
                    self._tmp / part_name(label), schema, **writer_options(schema)
                )
            writer.write_table(rows.cast(writer.schema))
            self.rows += rows.num_rows

    def close(self) -> None:
        self._close_writers()
        if not any(self._tmp.iterdir()) and self._schema is not None:
            empty = self._schema.empty_table()
            pq.write_table(empty, self._tmp / part_name(NO_ROWS), **writer_options(empty.schema))
        if self._path.exists():  # written twice into one folder: the last one is the source
            shutil.rmtree(self._path)
        os.replace(self._tmp, self._path)

    def abandon(self) -> None:
        self._close_writers()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def _close_writers(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()


def _key_array(keys: pd.Series) -> pa.Array:
    """A key column as Arrow text, each value as ``str()`` writes it (keys are never
    missing; a number key becomes its digits). Text keys, the rule, convert directly."""
    if keys.dtype == object:
        try:
            array = pa.array(keys, type=pa.string(), from_pandas=True)
        except (pa.ArrowTypeError, pa.ArrowInvalid):
            array = None
        if array is not None and array.null_count == 0:
            return array
    return pa.array(keys.astype(str), type=pa.string())


def _is_text(col: str, s: pd.Series) -> bool:
    feature = FEATURES_BY_NAME.get(col)
    if feature is not None:
        return feature.kind == "categorical"
    return s.dtype == object or isinstance(s.dtype, pd.StringDtype)


# ---------------------------------------------------------------- request time
def request_time_features(df: pd.DataFrame) -> pd.DataFrame:
    """Features that depend on the moment of scoring, from values stored in the rows.

    ``df`` holds ``as_of`` (the moment of scoring) and the stored columns below; the
    Feast on-demand view ``deal_timing`` calls this for training and serving, and it
    hands them to :func:`leadscore.features.deal_state.timing_features`, as the scoring
    service does, and to :func:`window_counts`.
    """

    def times(col: str) -> np.ndarray:
        return _stored_times(df, col)

    def numbers(col: str) -> np.ndarray:
        return _stored_numbers(df, col)

    timing = timing_features(
        times("as_of"),
        times("deal_created_at"),
        times("stage_entered_at"),
        numbers("backward_moves"),
        numbers("long_stays"),
        times("last_activity_at"),
        times("last_inbound_at"),
        times("awaiting_reply_since"),
    )
    return pd.DataFrame({**timing, **window_counts(df)}, index=df.index).astype("float64")


def window_counts(df: pd.DataFrame) -> dict[str, np.ndarray]:
    """Activities of each type in the ``w`` days up to the moment: ``act_{kind}_{w}d``.

    The count in (q - w, q] is the cumulative count at q (the ``deal_activity`` row)
    less the one at q - w (the :data:`LAGGED_VIEWS` row): the activities in the window,
    as :func:`leadscore.features.deal_state.activity_at` counts them. No lagged row means
    no activity by q - w (0); no row at q means no activity yet, and the count stays
    missing as every engagement feature does then.
    """
    out: dict[str, np.ndarray] = {}
    for lag in LAGGED_VIEWS:
        for kind, col in CUMULATIVE_COLUMNS.items():
            before = np.nan_to_num(_stored_numbers(df, lag.field(col)), nan=0.0)
            out[f"act_{kind}_{lag.days}d"] = _stored_numbers(df, col) - before
    return out


def revival_request_time_features(df: pd.DataFrame) -> pd.DataFrame:
    """A lost deal's durations at the moment of scoring: days since its latest loss and
    since the last activity after it.

    ``df`` holds ``as_of`` and the ``deal_revival`` columns ``lost_at`` and
    ``last_engaged_at``; the Feast on-demand view ``revival_timing`` calls this for
    training and serving, and :func:`features_as_of` for the in-memory join.
    """
    timing = revival_timing_features(
        _stored_times(df, "as_of"),
        _stored_times(df, "lost_at"),
        _stored_times(df, "last_engaged_at"),
    )
    return pd.DataFrame(timing, index=df.index).astype("float64")


def _stored_numbers(df: pd.DataFrame, col: str) -> np.ndarray:
    """A number column as float64, NaN where missing."""
    return pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def _stored_times(df: pd.DataFrame, col: str) -> np.ndarray:
    """A time column as float64 microseconds since the epoch, NaN where missing."""
    us = _micros(df[col]).astype(np.float64)
    us[df[col].isna().to_numpy()] = np.nan  # NaT
    return us


REQUEST_TIME_INPUTS: tuple[str, ...] = (
    "deal_created_at",
    "stage_entered_at",
    "backward_moves",
    "long_stays",
    "last_activity_at",
    "last_inbound_at",
    "awaiting_reply_since",
)


# ---------------------------------------------------------------- in-memory join
def features_as_of(sources: Mapping[str, pd.DataFrame], entities: pd.DataFrame) -> pd.DataFrame:
    """Point-in-time join in memory: each view's latest row at or before each entity's moment.

    ``entities`` has ``deal_id``, ``account_id``, ``owner_id`` and ``event_timestamp``.
    Returns the entities with every model feature, computed as Feast would compute them:
    each view by its own timestamp column (:func:`view_reads`).

    Entities all at one moment (ranking, scoring stored deals) take each key's latest
    row at or before it (:func:`latest_positions`) and look the entities' keys up in
    those rows: the same rows ``merge_asof`` would pick (the last of equal times, in
    source order), with no as-of search per entity, and only the rows picked copied.
    """
    ent = entities.reset_index(drop=True).copy()
    ent[TS] = as_utc(ent[TS])
    ent["_row"] = np.arange(len(ent))
    moments = ent[TS].unique()
    if len(moments) == 1:
        return _with_request_time(_join_at(ent, view_reads(sources), moments[0]))
    out = ent.sort_values(TS, kind="stable")
    for key, rows in view_rows(sources).values():
        right = rows.rename(columns={TS: "_src_ts"}).sort_values("_src_ts", kind="stable")
        left = out.assign(**{key: out[key].astype(str)})
        out = pd.merge_asof(
            left,
            right,
            left_on=TS,
            right_on="_src_ts",
            by=key,
            direction="backward",
            allow_exact_matches=True,
        ).drop(columns="_src_ts")
    return _with_request_time(out)


def latest_positions(codes: np.ndarray, times: pd.Series, moment: pd.Timestamp) -> np.ndarray:
    """Positions of each key's latest row at or before ``moment`` (of equal times, the
    last in row order), in no particular order: the rows a point-in-time join at
    ``moment`` reads, as a stable sort by time and ``drop_duplicates(keep="last")`` picks.

    ``codes`` are the rows' keys as integers (``pd.factorize``), ``times`` their moments.
    Sources come grouped by key and sorted by time within each key (every builder sorts
    them so), and then each key's last row seen is its latest, found in one pass; any
    other order is sorted first (stably, so ties keep their order).
    """
    seen = np.flatnonzero((times <= moment).to_numpy())  # NaT is never seen
    if not len(seen):
        return seen
    at = times.iloc[seen]
    t = (at if pd.api.types.is_datetime64_any_dtype(at.dtype) else as_utc(at)).array.asi8
    key = codes[seen]
    step = np.diff(key)
    if not ((step >= 0).all() and (np.diff(t)[step == 0] >= 0).all()):
        order = np.lexsort((t, key))
        seen, key = seen[order], key[order]
    return seen[np.r_[key[1:] != key[:-1], True]]


def _join_at(
    ent: pd.DataFrame, reads: Mapping[str, ViewRead], moment: pd.Timestamp
) -> pd.DataFrame:
    """``ent`` (all at ``moment``) with each view's fields from its latest row then, as a
    left join on the key gives them (missing where the key has no row; each key column
    as text). A source's keys are coded once for all the views reading it; only the
    picked rows are copied, and the columns are put together once."""
    out = ent.copy()
    for key in {read.key for read in reads.values()}:
        out[key] = out[key].astype(str)
    parts: list[pd.DataFrame] = []
    names = set(out.columns)
    coded: dict[tuple[int, str], tuple[np.ndarray, int, np.ndarray]] = {}
    for read in reads.values():
        src, key = read.source, read.key
        if (id(src), key) not in coded:
            codes, keys = pd.factorize(src[key].to_numpy(), use_na_sentinel=False)
            wanted = pd.Index(keys).get_indexer(out[key].to_numpy())
            coded[id(src), key] = (codes, len(keys), wanted)
        codes, n_keys, wanted = coded[id(src), key]
        picked = latest_positions(codes, src[read.time], moment)
        row_of_key = np.full(n_keys + 1, -1, dtype=np.int64)  # the last: no such key
        row_of_key[codes[picked]] = np.arange(len(picked))
        part = (
            src.iloc[picked][list(read.fields)]
            .reset_index(drop=True)
            .reindex(row_of_key[wanted])  # -1: no row, missing as in a left join
            .rename(columns=read.fields)
            .set_axis(out.index)
        )
        if names & set(part.columns):  # the join would have renamed them
            raise ValueError(f"view fields {sorted(names & set(part.columns))} repeat a column")
        names |= set(part.columns)
        parts.append(part)
    return pd.concat([out, *parts], axis=1)


def _with_request_time(out: pd.DataFrame) -> pd.DataFrame:
    """Joined rows back in entity order, with the request-time features added."""
    out = out.sort_values("_row").drop(columns="_row").reset_index(drop=True)
    out["as_of"] = out[TS]
    timing = pd.concat([request_time_features(out), revival_request_time_features(out)], axis=1)
    if timing.columns.isin(out.columns).any() or timing.columns.duplicated().any():
        for c in timing.columns:  # replaced in place, as the join's columns came
            out[c] = timing[c]
        return out
    return pd.concat([out, timing], axis=1)  # one copy, not one per column


@dataclass(frozen=True)
class ViewRead:
    """What a feature view reads of a source: its join key, the column stamping its rows
    (``event_timestamp``, or a :class:`LaggedView`'s own) and its fields (source column:
    field name)."""

    key: str
    source: pd.DataFrame
    time: str
    fields: dict[str, str]


def view_reads(sources: Mapping[str, pd.DataFrame]) -> dict[str, ViewRead]:
    """Each feature view's reading of its source, as Feast reads it (a :class:`LaggedView`
    reads its source by its own timestamp column, its fields renamed)."""
    lag_times = {lag.timestamp for lag in LAGGED_VIEWS}
    out: dict[str, ViewRead] = {}
    for view, key in views_of(sources).items():
        src = sources[view]
        fields = {c: c for c in src.columns if c not in lag_times and c not in (key, TS)}
        out[view] = ViewRead(key, src, TS, fields)
    for lag in LAGGED_VIEWS:
        if lag.source in out:
            fields = {c: lag.field(c) for c in lag.columns}
            out[lag.name] = ViewRead(
                VIEW_KEYS[lag.source], sources[lag.source], lag.timestamp, fields
            )
    return out


def view_rows(sources: Mapping[str, pd.DataFrame]) -> dict[str, tuple[str, pd.DataFrame]]:
    """Each feature view's join key and rows as Feast reads them (:func:`view_reads`):
    the key, its timestamp as ``event_timestamp`` and its fields under their names."""
    return {
        view: (
            r.key,
            r.source[[r.key, r.time, *r.fields]].rename(columns={r.time: TS, **r.fields}),
        )
        for view, r in view_reads(sources).items()
    }


def model_frame(
    features: pd.DataFrame,
    attributes: Iterable[Attribute] = (),
    catalog: Iterable[Feature] | None = None,
) -> pd.DataFrame:
    """The model's inputs in catalog order: numbers as float64, categories as strings.

    The win model's built-in features first, then those of ``attributes`` known before
    close; or the entries of ``catalog`` (the revival model's,
    :func:`leadscore.features.catalog.revival_catalog`).
    """
    frame = pd.DataFrame(index=features.index)
    for f in model_catalog(attributes) if catalog is None else catalog:
        frame[f.name] = model_column(features, f)
    return frame


def model_column(features: pd.DataFrame, feature: Feature) -> pd.Series:
    """One column of :func:`model_frame`: a category as strings (missing: ``None``), a number
    as float64, a feature ``features`` lacks as missing. A column at a time, so a caller
    building a frame of millions of rows holds one typed column beside its input, not all."""
    col = (
        features[feature.name]
        if feature.name in features
        else pd.Series(np.nan, index=features.index)
    )
    if feature.kind == "categorical":
        return col.astype(object).where(col.notna(), None)
    return pd.to_numeric(col, errors="coerce").astype("float64")


# ---------------------------------------------------------------- training entities
def snapshot_entities(
    deals: pd.DataFrame, every_days: int, stage_history: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Moments at which closed deals are looked at while they were still open.

    Each dated closed deal (``created_at`` and ``closed_at`` known) gets a snapshot at
    creation and every ``every_days`` after it, strictly before it closed, labelled with
    its final outcome. Deals that closed the instant they were created have no such
    moment and are left out. An undated closed deal has no open period to look at: it
    gets the one snapshot 0, at its creation when known, else at :data:`UNDATED` (where
    its profile rows are), with ``closed_at`` and ``created_at`` missing as in the CRM;
    the split decides whether it trains (:func:`training.split.choose_split`).

    With the ``stage_history``, a deal lost and later re-opened has no snapshot while it
    was lost (from the loss to the re-open, :func:`leadscore.crm.revival.loss_cycles`): the
    deal was not open then, and only deals that came back have such moments, so "in the
    closed stage" would read as a sign of winning (the revival model answers for them).
    """
    closed = deals[deals["status"].isin(CLOSED_STATUSES)]
    # Exact microseconds: snapshot 0 must be at creation, not a fraction of a second before.
    created_at, closed_at = as_utc(_col(closed, "created_at")), as_utc(_col(closed, "closed_at"))
    dated = (created_at.notna() & closed_at.notna()).to_numpy()
    created = _micros(created_at.fillna(UNDATED))
    close = _micros(closed_at.fillna(UNDATED))
    step = every_days * DAY * 1_000_000
    n = np.where(close > created, np.ceil((close - created) / step), 0).astype(np.int64)
    n = np.where(dated, n, 1)
    idx = np.repeat(np.arange(len(closed)), n)
    k = np.arange(len(idx)) - np.repeat(np.cumsum(n) - n, n)
    snap = created[idx] + k * step
    keep = ~_while_lost(closed, stage_history, idx, snap)
    idx, k, snap = idx[keep], k[keep], snap[keep]
    base = closed.iloc[idx]
    return pd.DataFrame(
        {
            "deal_id": base["deal_id"].astype(str).to_numpy(),
            "account_id": _keys(base, "account_id").to_numpy(),
            "owner_id": _keys(base, "owner_id").to_numpy(),
            TS: pd.Series(snap.astype("datetime64[us]")).dt.tz_localize("UTC").to_numpy(),
            "snapshot_index": k.astype(np.int32),
            "created_at": created_at.iloc[idx].to_numpy(),
            "closed_at": closed_at.iloc[idx].to_numpy(),
            "won": base["status"].eq(WON).astype(np.int8).to_numpy(),
        }
    )


def _while_lost(
    deals: pd.DataFrame, stage_history: pd.DataFrame | None, idx: np.ndarray, snap: np.ndarray
) -> np.ndarray:
    """Per snapshot (deal position ``idx`` in ``deals``, time ``snap`` in µs): taken while
    its deal was lost and not yet re-opened (only losses that a re-open ended)."""
    if stage_history is None or not len(stage_history) or not len(idx):
        return np.zeros(len(idx), dtype=bool)
    cycles = loss_cycles(deals, stage_history)
    cycles = cycles[cycles["reopened_at"].notna()]
    if cycles.empty:
        return np.zeros(len(idx), dtype=bool)
    losses = pd.DataFrame(
        {
            "deal": pd.Index(deals["deal_id"].astype(str)).get_indexer(
                cycles["deal_id"].astype(str)
            ),
            "at": _micros(cycles["lost_at"]),
            "until": _micros(cycles["reopened_at"]),
        }
    ).sort_values("at")
    snaps = pd.DataFrame({"deal": idx, "at": snap, "row": np.arange(len(idx))}).sort_values("at")
    # The last loss of the same deal at or before each snapshot; lost if before its re-open.
    last = pd.merge_asof(snaps, losses, on="at", by="deal", direction="backward")
    lost = (last["at"] < last["until"]).to_numpy()  # NaN (no earlier loss) compares False
    out = np.zeros(len(idx), dtype=bool)
    out[last["row"].to_numpy()] = lost
    return out


def scoring_entities(deals: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Entity rows for scoring deals at one moment (join keys plus ``event_timestamp``)."""
    return pd.DataFrame(
        {
            "deal_id": deals["deal_id"].astype(str).to_numpy(),
            "account_id": _keys(deals, "account_id").to_numpy(),
            "owner_id": _keys(deals, "owner_id").to_numpy(),
            TS: pd.Series([pd.Timestamp(as_of)] * len(deals), dtype="datetime64[us, UTC]"),
        }
    )


# ---------------------------------------------------------------- helpers
def _col(df: pd.DataFrame, name: str) -> pd.Series:
    return df[name] if name in df else pd.Series(np.nan, index=df.index, dtype=object)


def _keys(df: pd.DataFrame, name: str) -> pd.Series:
    """A join key column as text, "" where missing: a deal without an account or owner
    matches no track record (never one keyed "None" or "nan")."""
    values = _col(df, name)
    return values.astype(object).where(values.notna(), "").astype(str)


def _contact_seniority(contacts: pd.DataFrame | None) -> pd.Series | None:
    if contacts is None or "title" not in contacts:
        return None
    return pd.Series(
        seniority_of_titles(contacts["title"]).to_numpy(), index=contacts["contact_id"].astype(str)
    )


def _empty(view: str) -> pd.DataFrame:
    """The source of ``view`` with no rows, every column typed as a built one is.

    Built from a one-event sample through the view's own builder, so its columns and
    types cannot drift from the real source; Parquet then records a string key and
    typed features, which Feast can join like any other source.
    """
    return _EMPTY_SAMPLES[view]().iloc[0:0].reset_index(drop=True)


_SAMPLE_TIME = pd.Timestamp("2000-01-01", tz="UTC")
_EMPTY_SAMPLES: dict[str, Callable[[], pd.DataFrame]] = {
    "deal_stage": lambda: stage_source(
        pd.DataFrame({"deal_id": ["x"], "stage": ["lead"], "entered_at": [_SAMPLE_TIME]})
    ),
    "deal_contacts": lambda: contacts_source(
        pd.DataFrame(
            {"deal_id": ["x"], "contact_id": ["c"], "role": ["user"], "added_at": [_SAMPLE_TIME]}
        ),
        pd.DataFrame({"contact_id": ["c"], "title": ["CEO"]}),
    ),
    "deal_activity": lambda: activity_source(
        pd.DataFrame(
            {
                "deal_id": ["x"],
                "occurred_at": [_SAMPLE_TIME],
                "type": ["call"],
                "direction": ["inbound"],
                "contact_id": ["c"],
            }
        ),
        pd.DataFrame({"contact_id": ["c"], "title": ["CEO"]}),
    ),
    "deal_revival": lambda: revival_source(
        pd.DataFrame(
            {
                "deal_id": ["x"],
                "lost_at": [_SAMPLE_TIME],
                "reopened_at": pd.Series([pd.NaT], dtype="datetime64[us, UTC]"),
                "lost_reason": ["price"],
                "furthest_stage": [1.0],
            }
        ),
        None,
        None,
        pd.DataFrame({"deal_id": ["x"], "account_id": ["a"], "competitor": ["none"]}),
    ),
}
