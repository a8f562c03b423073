"""Point-in-time deal features from CRM tables: the one definition of every feature.

The CRM history becomes *feature source rows*: one row per entity each time one of
its feature values changes, stamped with that moment (``event_timestamp``). A feature
at any moment is then the latest row at or before it, which is exactly the
point-in-time join Feast performs for training (``get_historical_features``) and what
materialization keeps in the online store for serving. Nothing later than the moment
can reach it.

Values that change merely because time passes are handled in two ways:

* windowed activity counts ("calls in the last 7 days") get an extra row at each
  moment an activity leaves a window, so the latest row is exact at any time;
* durations ("days since last activity") are computed at request time by
  :func:`request_time_features` from timestamps stored in the rows. Feast runs that
  same function in the ``deal_timing`` on-demand feature view, for training and
  serving alike.

:func:`features_as_of` performs the same latest-row join in memory; the scoring
service uses it for deals sent in full by a CRM, and a test proves it agrees with Feast.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import numba
import numpy as np
import pandas as pd

from leadscore.catalog import FEATURES, MODEL_FEATURES, STALL_DAYS, WINDOWS_DAYS
from leadscore.contract import ACTIVITY_TYPES, STAGES
from leadscore.seniority import SENIOR_LEVEL, seniority_of_titles

log = logging.getLogger(__name__)

TS = "event_timestamp"
DAY = 86_400
_WON, _LOST = "won", "lost"

#: Entity join key of each feature view.
VIEW_KEYS: dict[str, str] = {
    "deal_profile": "deal_id",
    "deal_stage": "deal_id",
    "deal_contacts": "deal_id",
    "deal_activity": "deal_id",
    "account_history": "account_id",
    "owner_history": "owner_id",
}

_COMPETITOR_NONE = {"none", "no competitor", "no", "n/a", "na", "nobody", "无", "没有"}
_COMPETITOR_UNKNOWN = {"", "unknown", "nan", "null", "?", "未知"}


# ---------------------------------------------------------------- normalisation
def normalise_category(values: pd.Series) -> pd.Series:
    """Lower-case, trimmed, inner spaces as underscores; empty becomes missing."""
    s = values.astype("string").str.strip().str.lower().str.replace(r"\s+", "_", regex=True)
    return s.mask(s == "").astype(object).where(s.notna(), None)


def normalise_competitor(values: pd.Series) -> pd.Series:
    """Keep 'none' (no competitor) and 'unknown' (not recorded) distinct.

    They predict differently: a deal with no competitor is a real signal, an empty
    field is only a gap in the CRM.
    """
    s = values.astype("string").str.strip().str.lower()
    s = s.fillna("unknown")
    s = s.mask(s.isin(_COMPETITOR_UNKNOWN), "unknown").mask(s.isin(_COMPETITOR_NONE), "none")
    return s.str.replace(r"\s+", "_", regex=True).astype(object)


def _utc(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, utc=True).astype("datetime64[us, UTC]")


def _micros(values: pd.Series) -> np.ndarray:
    """UTC datetimes as int64 microseconds since the epoch."""
    return _utc(values).to_numpy(dtype="datetime64[us]").astype(np.int64)


def _seconds_up(values: pd.Series) -> np.ndarray:
    """UTC datetimes as int64 seconds since the epoch, rounded up.

    Up, never down: an event is then never visible before it happened, so a moment of
    scoring a fraction of a second before an activity cannot see it.
    """
    return -(-_micros(values) // 1_000_000)


def _from_seconds(seconds: np.ndarray) -> pd.Series:
    return pd.Series(seconds.astype("datetime64[s]")).dt.tz_localize("UTC").astype(
        "datetime64[us, UTC]"
    )


def _last_per_timestamp(df: pd.DataFrame, key: str) -> pd.DataFrame:
    """Several changes at one instant leave only the state after all of them."""
    return df.drop_duplicates([key, TS], keep="last").reset_index(drop=True)


# ---------------------------------------------------------------- feature sources
def profile_source(deals: pd.DataFrame, accounts: pd.DataFrame | None) -> pd.DataFrame:
    """What the deal is, stamped at its creation.

    CRM exports carry only the current value of deal fields (amount, competitor),
    so these are taken as known from the start; see the model card's limitations.
    """
    df = pd.DataFrame(
        {
            "deal_id": deals["deal_id"].astype(str),
            TS: _utc(deals["created_at"]),
            "deal_account_id": deals["account_id"].astype(str),
            "deal_owner_id": _col(deals, "owner_id").fillna("").astype(str),
            "deal_created_at": _utc(deals["created_at"]),
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
    return df.sort_values(["deal_id", TS], kind="stable").reset_index(drop=True)


def stage_source(stage_history: pd.DataFrame) -> pd.DataFrame:
    """Funnel position after each stage entry: index, changes, moves back, long stays."""
    sh = pd.DataFrame(
        {
            "deal_id": stage_history["deal_id"].astype(str),
            TS: _utc(stage_history["entered_at"]),
            "stage": stage_history["stage"].astype(str).str.strip().str.lower(),
        }
    ).sort_values(["deal_id", TS], kind="stable")
    sh["stage_index"] = sh["stage"].map({s: i for i, s in enumerate(STAGES)})
    sh = sh.dropna(subset=["stage_index"])
    # Re-entering the stage the deal is already in is not a change.
    same_deal = sh["deal_id"].eq(sh["deal_id"].shift())
    repeat = same_deal & sh["stage_index"].eq(sh["stage_index"].shift())
    sh = sh[~repeat].copy()
    g = sh.groupby("deal_id", sort=False)
    prev_index = g["stage_index"].shift()
    prev_entered = g[TS].shift()
    changed = prev_index.notna()
    sh["stage_changes"] = changed.astype("int32").groupby(sh["deal_id"], sort=False).cumsum()
    backward = changed & (sh["stage_index"] < prev_index)
    sh["backward_moves"] = backward.astype("int32").groupby(sh["deal_id"], sort=False).cumsum()
    long_stay = (sh[TS] - prev_entered).dt.total_seconds() > STALL_DAYS * DAY
    sh["long_stays"] = long_stay.astype("int32").groupby(sh["deal_id"], sort=False).cumsum()
    sh["stage_entered_at"] = sh[TS]
    sh["stage_index"] = sh["stage_index"].astype("int32")
    cols = ["deal_id", TS, "stage_index", "stage_changes", "backward_moves", "long_stays",
            "stage_entered_at"]
    return _last_per_timestamp(sh[cols], "deal_id")


def contacts_source(deal_contacts: pd.DataFrame, contacts: pd.DataFrame | None) -> pd.DataFrame:
    """Who is on the deal after each contact is attached."""
    dc = pd.DataFrame(
        {
            "deal_id": deal_contacts["deal_id"].astype(str),
            TS: _utc(deal_contacts["added_at"]),
            "contact_id": deal_contacts["contact_id"].astype(str),
            "role": _col(deal_contacts, "role").astype("string").str.lower(),
        }
    ).sort_values(["deal_id", TS], kind="stable")
    seniority = _contact_seniority(contacts)
    level = dc["contact_id"].map(seniority) if seniority is not None else pd.Series(np.nan, index=dc.index)
    by_deal = dc["deal_id"]
    dc["n_contacts"] = dc.groupby("deal_id", sort=False).cumcount().astype("int32") + 1
    dc["max_seniority"] = level.fillna(-1).groupby(by_deal, sort=False).cummax().replace(-1, np.nan)
    senior = (level >= SENIOR_LEVEL).astype("int32")
    dc["n_senior_contacts"] = senior.groupby(by_deal, sort=False).cumsum()
    if seniority is None:
        dc["n_senior_contacts"] = np.nan
    eb = dc["role"].eq("economic_buyer").fillna(False).astype("int32")
    dc["has_economic_buyer"] = eb.groupby(by_deal, sort=False).cummax()
    cols = ["deal_id", TS, "n_contacts", "max_seniority", "n_senior_contacts", "has_economic_buyer"]
    return _last_per_timestamp(dc[cols], "deal_id")


def activity_source(activities: pd.DataFrame, contacts: pd.DataFrame | None) -> pd.DataFrame:
    """Engagement after each activity, and again each time one leaves a count window.

    Works on all deals at once: each activity gets a sortable int64 key
    ``deal_code * span + seconds``, and every count is a difference of two binary
    searches over the keys, so millions of activities take seconds.
    """
    if activities.empty:
        return _empty_activity_source()
    deal_cat = pd.Categorical(activities["deal_id"].astype(str))
    code = deal_cat.codes.astype(np.int64)
    t = _seconds_up(activities["occurred_at"])
    t0 = int(t.min())
    max_window = max(WINDOWS_DAYS) * DAY
    span = int(t.max() - t0) + max_window + 2 * DAY
    key = code * span + (t - t0)
    order = np.argsort(key, kind="stable")
    key = key[order]
    a_type = activities["type"].astype(str).str.lower().to_numpy()[order].astype("U8")
    direction = _col(activities, "direction").astype("string").str.lower().to_numpy(na_value="")[order]
    contact = _col(activities, "contact_id").astype("string").to_numpy(na_value="")[order]

    # Rows: every activity, and each moment an activity leaves a window. The four
    # runs are each sorted already, so a sort and a neighbour comparison dedupe them
    # far faster than a hash-based unique.
    rows = np.sort(np.concatenate([key] + [key + w * DAY for w in WINDOWS_DAYS]), kind="stable")
    rows = rows[np.r_[True, rows[1:] != rows[:-1]]]
    row_code = rows // span
    deal_start = row_code * span  # first key of the row's deal

    def counter(keys: np.ndarray):
        """Counts of ``keys`` of the row's deal in (lower, row], for any lower bound."""
        upper = np.searchsorted(keys, rows, "right")

        def count(lower: np.ndarray) -> np.ndarray:
            lo = np.searchsorted(keys, np.maximum(lower, deal_start - 1), "right")
            return (upper - lo).astype(np.int32)

        return count

    def last_at(keys: np.ndarray) -> pd.Series:
        """Time of the last key of the row's deal at or before the row, else NaT."""
        idx = np.searchsorted(keys, rows, "right") - 1
        found = idx >= 0
        k = np.where(found, keys[np.clip(idx, 0, None)] if len(keys) else 0, -1)
        found &= k >= deal_start
        out = _from_seconds(np.where(found, k - row_code * span + t0, 0))
        return out.where(found)

    out = pd.DataFrame({"deal_id": np.asarray(deal_cat.categories)[row_code]})
    out[TS] = _from_seconds(rows - row_code * span + t0)
    counters = {kind: counter(key[a_type == kind]) for kind in ACTIVITY_TYPES}
    count_all = counter(key)
    for w in WINDOWS_DAYS:
        lower = rows - w * DAY
        for kind in ACTIVITY_TYPES:
            out[f"act_{kind}_{w}d"] = counters[kind](lower)
        out[f"act_total_{w}d"] = count_all(lower)
    everything = deal_start - 1
    out["n_activities"] = count_all(everything)
    inbound, outbound = key[direction == "inbound"], key[direction == "outbound"]
    out["share_inbound"] = counter(inbound)(everything) / out["n_activities"]
    out["last_activity_at"] = last_at(key)
    out["last_inbound_at"] = last_at(inbound)
    out["awaiting_reply_since"] = _awaiting_reply_since(rows, row_code, span, t0, inbound, outbound)
    out["median_reply_hours"] = _median_reply_hours(rows, deal_start, span, inbound, outbound)

    is_visit = a_type == "visit"
    visit_keys = key[is_visit]
    visit_deal = visit_keys // span
    first = ~pd.DataFrame({"d": visit_deal, "c": contact[is_visit]}).duplicated().to_numpy()
    out["first_visits"] = counter(visit_keys[first])(everything)
    out["followup_visits"] = counter(visit_keys)(everything) - out["first_visits"]

    seniority = _contact_seniority(contacts)
    if seniority is None:
        out["senior_met"] = np.nan
    else:
        level = pd.Series(contact).map(seniority).to_numpy(dtype=float, na_value=np.nan)
        met = np.isin(a_type, ["meeting", "visit"]) & (level >= SENIOR_LEVEL)
        out["senior_met"] = np.minimum(counter(key[met])(everything), 1).astype(np.int32)
    return out


def _awaiting_reply_since(
    rows: np.ndarray, row_code: np.ndarray, span: int, t0: int, inbound: np.ndarray, outbound: np.ndarray
) -> pd.Series:
    """Oldest inbound activity after our last outbound one: the customer is waiting."""
    deal_start = row_code * span
    idx = np.searchsorted(outbound, rows, "right") - 1
    last_out = np.where(idx >= 0, outbound[np.clip(idx, 0, None)] if len(outbound) else -1, -1)
    last_out = np.where(last_out >= deal_start, last_out, deal_start - 1)
    fi = np.searchsorted(inbound, last_out, "right")
    k = inbound[np.clip(fi, 0, len(inbound) - 1)] if len(inbound) else np.full(len(rows), -1)
    waiting = (fi < len(inbound)) & (k <= rows) & (k >= deal_start)
    out = _from_seconds(np.where(waiting, k - deal_start + t0, 0))
    return out.where(waiting)


def _median_reply_hours(
    rows: np.ndarray, deal_start: np.ndarray, span: int, inbound: np.ndarray, outbound: np.ndarray
) -> np.ndarray:
    """Median reply latency over the replies made up to each row.

    A reply is our first outbound activity after one or more inbound ones; its
    latency runs from the earliest of those inbound activities, and it becomes known
    when we reply.
    """
    if not len(inbound) or not len(outbound):
        return np.full(len(rows), np.nan)
    nxt = np.searchsorted(outbound, inbound, "right")
    valid = nxt < len(outbound)
    nxt_c = np.clip(nxt, 0, len(outbound) - 1)
    valid &= outbound[nxt_c] // span == inbound // span
    if not valid.any():  # customers wrote, nobody has answered yet
        return np.full(len(rows), np.nan)
    nxt, first_in = nxt[valid], inbound[valid]
    # Inbound keys are sorted, so the first occurrence of each reply is the earliest ask.
    reply_idx, pos = np.unique(nxt, return_index=True)
    reply_key = outbound[reply_idx]
    latency = (reply_key - first_in[pos]) / 3600.0
    running = _running_median_by_group(reply_key // span, latency)
    idx = np.searchsorted(reply_key, rows, "right") - 1
    k = reply_key[np.clip(idx, 0, None)]
    found = (idx >= 0) & (k >= deal_start)
    return np.where(found, running[np.clip(idx, 0, None)], np.nan)


@numba.njit(cache=True)
def _running_median_by_group(groups: np.ndarray, values: np.ndarray) -> np.ndarray:  # pragma: no cover - jitted
    out = np.empty(len(values))
    start = 0
    for i in range(len(values)):
        if i > 0 and groups[i] != groups[i - 1]:
            start = i
        out[i] = np.median(values[start : i + 1])
    return out


def _history_source(deals: pd.DataFrame, key: str, prefix: str) -> pd.DataFrame:
    """Track record of an account or owner after each of its deals closes."""
    closed = deals[deals["status"].isin([_WON, _LOST]) & deals["closed_at"].notna()]
    closed = closed[closed[key].notna() & (closed[key].astype(str) != "")]
    df = pd.DataFrame(
        {key: closed[key].astype(str), TS: _utc(closed["closed_at"]), "won": closed["status"].eq(_WON)}
    ).sort_values([key, TS], kind="stable")
    g = df.groupby(key, sort=False)
    df[f"{prefix}_prior_won"] = g["won"].cumsum().astype("int32")
    df[f"{prefix}_prior_closed"] = (g.cumcount() + 1).astype("int32")
    df[f"{prefix}_prior_win_rate"] = df[f"{prefix}_prior_won"] / df[f"{prefix}_prior_closed"]
    cols = [key, TS, f"{prefix}_prior_won", f"{prefix}_prior_closed", f"{prefix}_prior_win_rate"]
    return _last_per_timestamp(df[cols], key)


def build_feature_sources(tables: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Turn validated CRM tables into the feature source frames, one per feature view.

    Tables other than ``deals`` may be absent; the views they feed then have no rows
    and their features are missing (NaN) at retrieval.
    """
    deals = tables["deals"]
    known = set(deals["deal_id"].astype(str))

    def of_known_deals(name: str) -> pd.DataFrame | None:
        t = tables.get(name)
        return None if t is None else t[t["deal_id"].astype(str).isin(known)]

    contacts = tables.get("contacts")
    sh, dc, acts = (of_known_deals(n) for n in ("stage_history", "deal_contacts", "activities"))
    sources = {
        "deal_profile": profile_source(deals, tables.get("accounts")),
        "deal_stage": stage_source(sh) if sh is not None else _empty("deal_stage"),
        "deal_contacts": contacts_source(dc, contacts) if dc is not None else _empty("deal_contacts"),
        "deal_activity": activity_source(acts, contacts) if acts is not None else _empty("deal_activity"),
        "account_history": _history_source(deals, "account_id", "account"),
        "owner_history": _history_source(deals, "owner_id", "owner"),
    }
    for name, df in sources.items():
        log.info("feature source %s: %d rows", name, len(df))
    return sources


# ---------------------------------------------------------------- request time
def request_time_features(df: pd.DataFrame) -> pd.DataFrame:
    """Features that depend on the moment of scoring, from timestamps in the rows.

    ``df`` holds ``as_of`` (the moment of scoring) and the stored columns below; the
    Feast on-demand view ``deal_timing`` calls this for training and serving.
    """
    as_of = _utc(df["as_of"])

    def days_since(col: str) -> pd.Series:
        return (as_of - _utc(df[col])).dt.total_seconds() / DAY

    out = pd.DataFrame(index=df.index)
    out["deal_age_days"] = days_since("deal_created_at")
    out["days_in_stage"] = days_since("stage_entered_at")
    current_long = (out["days_in_stage"] > STALL_DAYS).astype("float64")
    out["stalls"] = (
        pd.to_numeric(df["backward_moves"], errors="coerce")
        + pd.to_numeric(df["long_stays"], errors="coerce")
        + current_long
    ).astype("float64")
    out["days_since_last_activity"] = days_since("last_activity_at")
    out["days_since_last_inbound"] = days_since("last_inbound_at")
    waiting = days_since("awaiting_reply_since") * 24.0
    has_activity = _utc(df["last_activity_at"]).notna()
    out["hours_awaiting_reply"] = waiting.fillna(0.0).where(has_activity)
    return out.astype("float64")


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
    """Point-in-time join in memory: the latest source row at or before each entity's moment.

    ``entities`` has ``deal_id``, ``account_id``, ``owner_id`` and ``event_timestamp``.
    Returns the entities with every model feature, computed as Feast would compute them.
    """
    ent = entities.reset_index(drop=True).copy()
    ent[TS] = _utc(ent[TS])
    ent["_row"] = np.arange(len(ent))
    out = ent.sort_values(TS, kind="stable")
    for view, key in VIEW_KEYS.items():
        src = sources[view]
        cols = [c for c in src.columns if c not in (key, TS)]
        right = src[[key, TS, *cols]].sort_values(TS, kind="stable")
        right = right.rename(columns={TS: "_src_ts"})
        left = out.assign(**{key: out[key].astype(str)})
        out = pd.merge_asof(
            left, right, left_on=TS, right_on="_src_ts", by=key, direction="backward",
            allow_exact_matches=True,
        ).drop(columns="_src_ts")
    out = out.sort_values("_row").drop(columns="_row").reset_index(drop=True)
    out["as_of"] = out[TS]
    timing = request_time_features(out)
    for c in timing.columns:
        out[c] = timing[c]
    return out


def model_frame(features: pd.DataFrame) -> pd.DataFrame:
    """The model's inputs in catalog order: numbers as float64, categories as strings."""
    frame = pd.DataFrame(index=features.index)
    for f in FEATURES:
        col = features[f.name] if f.name in features else pd.Series(np.nan, index=features.index)
        if f.kind == "categorical":
            frame[f.name] = col.astype(object).where(col.notna(), None)
        else:
            frame[f.name] = pd.to_numeric(col, errors="coerce").astype("float64")
    return frame[list(MODEL_FEATURES)]


# ---------------------------------------------------------------- training entities
def snapshot_entities(deals: pd.DataFrame, every_days: int) -> pd.DataFrame:
    """Moments at which closed deals are looked at while they were still open.

    Each closed deal gets a snapshot at creation and every ``every_days`` after it,
    strictly before it closed, labelled with its final outcome. Deals that closed the
    instant they were created have no such moment and are left out.
    """
    closed = deals[deals["status"].isin([_WON, _LOST]) & deals["closed_at"].notna()].copy()
    # Exact microseconds: snapshot 0 must be at creation, not a fraction of a second before.
    created = _micros(closed["created_at"])
    close = _micros(closed["closed_at"])
    step = every_days * DAY * 1_000_000
    n = np.where(close > created, np.ceil((close - created) / step), 0).astype(np.int64)
    idx = np.repeat(np.arange(len(closed)), n)
    k = np.arange(len(idx)) - np.repeat(np.cumsum(n) - n, n)
    snap = created[idx] + k * step
    base = closed.iloc[idx]
    return pd.DataFrame(
        {
            "deal_id": base["deal_id"].astype(str).to_numpy(),
            "account_id": base["account_id"].astype(str).to_numpy(),
            "owner_id": _col(base, "owner_id").fillna("").astype(str).to_numpy(),
            TS: pd.Series(snap.astype("datetime64[us]")).dt.tz_localize("UTC").to_numpy(),
            "snapshot_index": k.astype(np.int32),
            "created_at": _utc(base["created_at"]).to_numpy(),
            "closed_at": _utc(base["closed_at"]).to_numpy(),
            "won": base["status"].eq(_WON).astype(np.int8).to_numpy(),
        }
    )


def scoring_entities(deals: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Entity rows for scoring deals at one moment (join keys plus ``event_timestamp``)."""
    return pd.DataFrame(
        {
            "deal_id": deals["deal_id"].astype(str).to_numpy(),
            "account_id": deals["account_id"].astype(str).to_numpy(),
            "owner_id": _col(deals, "owner_id").fillna("").astype(str).to_numpy(),
            TS: pd.Series([pd.Timestamp(as_of)] * len(deals), dtype="datetime64[us, UTC]"),
        }
    )


# ---------------------------------------------------------------- helpers
def _col(df: pd.DataFrame, name: str) -> pd.Series:
    return df[name] if name in df else pd.Series(np.nan, index=df.index, dtype=object)


def _contact_seniority(contacts: pd.DataFrame | None) -> pd.Series | None:
    if contacts is None or "title" not in contacts:
        return None
    return pd.Series(
        seniority_of_titles(contacts["title"]).to_numpy(), index=contacts["contact_id"].astype(str)
    )


_EMPTY_COLUMNS: dict[str, list[str]] = {
    "deal_stage": ["stage_index", "stage_changes", "backward_moves", "long_stays", "stage_entered_at"],
    "deal_contacts": ["n_contacts", "max_seniority", "n_senior_contacts", "has_economic_buyer"],
}


def _empty(view: str) -> pd.DataFrame:
    if view == "deal_activity":
        return _empty_activity_source()
    df = pd.DataFrame({"deal_id": pd.Series(dtype=str), TS: pd.Series(dtype="datetime64[us, UTC]")})
    for c in _EMPTY_COLUMNS[view]:
        df[c] = pd.Series(dtype="datetime64[us, UTC]" if c.endswith("_at") else "float64")
    return df


def _empty_activity_source() -> pd.DataFrame:
    sample = activity_source(
        pd.DataFrame(
            {
                "deal_id": ["x"],
                "occurred_at": [pd.Timestamp("2000-01-01", tz="UTC")],
                "type": ["call"],
                "direction": ["inbound"],
                "contact_id": ["c"],
            }
        ),
        None,
    )
    return sample.iloc[0:0]
