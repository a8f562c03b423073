"""The per-deal facts every insight reads, built once from the stored CRM tables.

Insights answer a manager's questions ("how many leads became opportunities this
quarter, per rep?") from the same tables the model learns from, with the same rules:
what a stage change is comes from :func:`leadscore.features.featurize.stage_source`
(a re-entry of the current stage is no change) and what a first visit is from
:func:`leadscore.features.featurize.activity_source` (the first visit of a contact on
a deal). Nothing is re-implemented here; this module only turns their rows into one
row per deal and per event, with times as float microseconds (NaN: unknown).

The funnel of the contract is ``lead -> qualified -> solution -> committed -> closed``.
In a manager's words a lead becomes an *opportunity* when it is qualified and a
*qualified opportunity* once a solution is on the table, so:

* lead: every deal (a deal is a lead from its creation);
* opportunity: reached ``qualified`` (or a later stage);
* qualified opportunity: reached ``solution`` (or a later stage);
* committed: reached ``committed``.

"Reached X" means the stage history shows an entry into X or a later stage before
``closed``; a won deal has passed every stage, even when its history skips some.

A partial export lacks tables and columns: :attr:`Facts.absent` names them
(``"stage_history"``, ``"deals.created_at"``) and every insight that needs one reports
its value missing with that reason (:meth:`Facts.missing`), never a guess.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from pandas.core.groupby import DataFrameGroupBy

from leadscore.crm.contract import ACCOUNTS, CLOSED_STATUSES, DEALS, LOST, STAGES, WON
from leadscore.features.deal_state import STAGE_CODES, US, Queries, StageEvents, stage_at
from leadscore.features.featurize import TS, activity_source, normalise_category, stage_source
from leadscore.timeutil import as_utc

OPPORTUNITY_STAGE = "qualified"
QUALIFIED_STAGE = "solution"
COMMITTED_STAGE = "committed"
CLOSED_STAGE = STAGES[-1]
#: Stages a deal can be in while open, in funnel order.
OPEN_STAGES: tuple[str, ...] = STAGES[:-1]
_CLOSED_CODE = STAGE_CODES[CLOSED_STAGE]

#: Group label of the whole team (every deal of the period, whatever its cut value).
ALL = "(all)"
#: Label of a cut value or stage the export does not give.
UNKNOWN = "(unknown)"
#: A value resting on fewer deals than this is flagged ``small``: one deal more or less
#: moves a rate on 20 deals by 5 points.
MIN_DEALS = 20
#: Company size bands from ``accounts.employee_count``: (smallest headcount, label).
#: The EU's SME limits (50, 250), then 1,000 for the enterprise accounts B2B teams split out.
SIZE_BANDS: tuple[tuple[int, str], ...] = (
    (0, "<50"),
    (50, "50-249"),
    (250, "250-999"),
    (1000, "1000+"),
)
#: The derived cut of :data:`SIZE_BANDS`.
SIZE_BAND = "size_band"
#: Short names of cuts a manager types (``--by owner``).
CUT_ALIASES: dict[str, str] = {"owner": "owner_id", "size": SIZE_BAND}
#: Columns of deals that are times, amounts, stages or outcomes, never a cut.
_NOT_CUTS = frozenset(
    {"deal_id", "status", "stage", "created_at", "closed_at", "amount", "currency"}
)

DAY_US = 86_400 * US
Every = Literal["period", "week", "month"]


class CutUnavailable(ValueError):
    """A cut asked for is not in the export (its column or table is absent)."""


@dataclass(frozen=True)
class Facts:
    """One row per deal (its position is its code) and its dated events.

    ``deals``: ``deal_id``, ``status``, ``won``, ``lost``, ``created_us``, ``closed_us``
    (closed deals only), ``amount``, ``currency``, ``furthest`` (furthest open stage
    entered, -1 none), ``reached_<stage>_us`` (first entry into the stage or a later
    one; a won deal without one: its close).
    ``changes``: stage changes (``deal``, ``at_us``, ``stage`` code), sorted by deal and time.
    ``visits``: per deal and moment, ``first`` and ``followup`` visits made then.
    """

    deals: pd.DataFrame
    changes: pd.DataFrame | None
    visits: pd.DataFrame | None
    #: What the export lacks: table names and ``deals.<column>``.
    absent: frozenset[str]
    #: The columns of deals and their accounts a deal can be grouped by, one row per deal.
    cut_values: pd.DataFrame

    def missing(self, needs: Iterable[str]) -> str | None:
        """Why a value needing ``needs`` (tables, ``deals.<column>``) cannot be computed."""
        reasons = [_reason(n) for n in needs if n in self.absent]
        return "; ".join(reasons) if reasons else None

    def reached(self, stage: str) -> np.ndarray:
        """Deals that entered ``stage`` or a later one before closing (won deals: all)."""
        return (self.deals["furthest"].to_numpy() >= STAGE_CODES[stage]) | self.deals[
            "won"
        ].to_numpy()

    def cuts(self) -> list[str]:
        """The cuts this export allows: text columns of deals and accounts, and the size band."""
        frame = self.cut_values
        names = [
            c
            for c in frame.columns
            if not pd.api.types.is_numeric_dtype(frame[c])
            and not pd.api.types.is_datetime64_any_dtype(frame[c])
        ]
        return names + ([SIZE_BAND] if "employee_count" in frame else [])


def _reason(need: str) -> str:
    table, _, column = need.partition(".")
    return f"no {column} column in {table}" if column else f"no {table} table"


def micros(values: pd.Series) -> np.ndarray:
    """Times as float64 microseconds since the epoch in UTC (NaN: unknown)."""
    t = as_utc(values).to_numpy(dtype="datetime64[us]")
    out = t.astype(np.int64).astype(np.float64)
    out[np.isnat(t)] = np.nan
    return out


def deal_facts(tables: Mapping[str, pd.DataFrame]) -> Facts:
    """The facts of a CRM (stored tables by name; only ``deals`` is mandatory).

    Raises ``ValueError`` when ``deals`` or its ``deal_id``/``status`` is absent: the
    contract requires them, so such an input is not an export.
    """
    if "deals" not in tables:
        raise ValueError("the CRM has no deals table (the one mandatory table)")
    raw = tables["deals"]
    for col in ("deal_id", "status"):
        if col not in raw:
            raise ValueError(f"deals has no {col} column (required by the contract)")
    absent = {name for name in ("accounts", "stage_history", "activities") if name not in tables}
    absent |= {f"deals.{c}" for c in DEALS.column_names if c not in raw}

    status = raw["status"].astype("string").str.strip().str.lower()
    deals = pd.DataFrame(
        {
            "deal_id": raw["deal_id"].astype(str).to_numpy(),
            "status": status.to_numpy(dtype=object),
            "won": status.eq(WON).fillna(False).to_numpy(dtype=bool),
            "lost": status.eq(LOST).fillna(False).to_numpy(dtype=bool),
        }
    )
    closed = status.isin(CLOSED_STATUSES).fillna(False).to_numpy(dtype=bool)
    deals["created_us"] = micros(raw["created_at"]) if "created_at" in raw else np.nan
    deals["closed_us"] = (
        np.where(closed, micros(raw["closed_at"]), np.nan) if "closed_at" in raw else np.nan
    )
    deals["amount"] = (
        pd.to_numeric(raw["amount"], errors="coerce").to_numpy(dtype=np.float64)
        if "amount" in raw
        else np.nan
    )
    deals["currency"] = (
        raw["currency"].astype("string").str.strip().str.upper().to_numpy(dtype=object)
        if "currency" in raw
        else None
    )

    index = pd.Index(deals["deal_id"])
    changes = _changes(tables["stage_history"], index) if "stage_history" in tables else None
    deals["furthest"] = -1
    for stage in OPEN_STAGES:
        deals[f"reached_{stage}_us"] = np.nan
    if changes is not None:
        _add_reach(deals, changes)
    visits = _visits(tables["activities"], index) if "activities" in tables else None
    cut_values = _cut_values(raw, tables.get("accounts"))
    return Facts(deals, changes, visits, frozenset(absent), cut_values)


def _cut_values(deals: pd.DataFrame, accounts: pd.DataFrame | None) -> pd.DataFrame:
    """Deals' own columns that can cut, then the accounts' (a deal column wins a clash)."""
    own = deals[[c for c in deals.columns if c not in _NOT_CUTS]].reset_index(drop=True)
    if accounts is None or "account_id" not in deals:
        return own
    acc_cols = [c for c in accounts.columns if c not in own.columns and c != "created_at"]
    acc = accounts.drop_duplicates("account_id")
    acc = acc.set_index(acc["account_id"].astype(str))[acc_cols]
    keys = deals["account_id"].astype(str).reset_index(drop=True)
    joined = acc.reindex(keys).reset_index(drop=True)
    return pd.concat([own, joined], axis=1)


def _codes(deal_ids: pd.Series, index: pd.Index) -> np.ndarray:
    return np.asarray(index.get_indexer(deal_ids.astype(str)), dtype=np.int64)


def _changes(stage_history: pd.DataFrame, index: pd.Index) -> pd.DataFrame:
    """Each stage change of a known deal, as :func:`stage_source` defines one."""
    rows = stage_source(stage_history)
    deal = _codes(rows["deal_id"], index)
    known = deal >= 0
    at = micros(rows[TS])[known].astype(np.int64)
    stage = rows["stage_index"].to_numpy(dtype=np.int64)[known]
    deal = deal[known]
    order = np.lexsort((at, deal))
    return pd.DataFrame({"deal": deal[order], "at_us": at[order], "stage": stage[order]})


def _add_reach(deals: pd.DataFrame, changes: pd.DataFrame) -> None:
    """Furthest open stage and the moment each stage (or a later one) was first reached."""
    open_ = changes[changes["stage"] < _CLOSED_CODE]
    furthest = open_.groupby("deal")["stage"].max()
    deals.loc[furthest.index, "furthest"] = furthest.to_numpy()
    won, closed_us = deals["won"].to_numpy(), deals["closed_us"].to_numpy()
    for stage in OPEN_STAGES:
        later = open_[open_["stage"] >= STAGE_CODES[stage]]
        first = later.groupby("deal")["at_us"].min()
        reached = np.full(len(deals), np.nan)
        reached[first.index.to_numpy()] = first.to_numpy(dtype=np.float64)
        deals[f"reached_{stage}_us"] = np.where(np.isnan(reached) & won, closed_us, reached)


def _visits(activities: pd.DataFrame, index: pd.Index) -> pd.DataFrame:
    """First and follow-up visits per deal and moment, by :func:`activity_source`'s rule.

    Only visits decide whether a visit is a first one, so only they are passed; the
    running counts it returns become the visits made at each moment (whole seconds,
    rounded up as the feature rows are).
    """
    kinds = activities["type"]  # text already (Arrow strings when stored): no copy
    kinds = kinds if pd.api.types.is_string_dtype(kinds) else kinds.astype(str)
    is_visit = kinds.str.lower().eq("visit").fillna(False).to_numpy(dtype=bool)
    rows = activity_source(activities[is_visit], None)
    if rows.empty:
        return pd.DataFrame({"deal": [], "at_us": [], "first": [], "followup": []})
    deal = _codes(rows["deal_id"], index)
    running = rows[["first_visits", "followup_visits"]].to_numpy(dtype=np.int64)
    new_deal = np.r_[True, rows["deal_id"].to_numpy()[1:] != rows["deal_id"].to_numpy()[:-1]]
    made = running - np.vstack([np.zeros((1, 2), np.int64), running[:-1]])
    made[new_deal] = running[new_deal]
    keep = (deal >= 0) & (made.sum(axis=1) > 0)
    return pd.DataFrame(
        {
            "deal": deal[keep],
            "at_us": micros(rows[TS])[keep],
            "first": made[keep, 0],
            "followup": made[keep, 1],
        }
    )


# ---------------------------------------------------------------- periods and cuts
def period_edges(start: Any, end: Any, every: Every = "period") -> pd.DatetimeIndex:
    """Bounds of the buckets ``[edges[i], edges[i+1])`` covering ``[start, end)`` in UTC.

    ``period``: the window itself. ``week`` (Monday 00:00 UTC) and ``month``: the whole
    calendar weeks or months the window overlaps, so every bucket is comparable.
    """
    lo, hi = as_utc(start), as_utc(end)
    if hi <= lo:
        raise ValueError(f"the period must end after it starts: {lo} to {hi}")
    if every == "period":
        return pd.DatetimeIndex([lo, hi])
    if every == "week":
        first = lo.normalize() - pd.Timedelta(days=lo.weekday())
        step: pd.DateOffset | pd.Timedelta = pd.Timedelta(days=7)
    elif every == "month":
        first = lo.normalize().replace(day=1)
        step = pd.DateOffset(months=1)
    else:
        raise ValueError(f"every must be period, week or month, not {every!r}")
    edges = [first]
    while edges[-1] < hi:
        edges.append(edges[-1] + step)
    return pd.DatetimeIndex(edges)


def edges_us(edges: pd.DatetimeIndex) -> np.ndarray:
    return np.asarray(edges.as_unit("us").asi8, dtype=np.float64)


def bucket_of(t_us: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bucket of each time (-1: unknown or outside the edges)."""
    t = np.asarray(t_us, dtype=np.float64)
    inside = (t >= edges[0]) & (t < edges[-1])
    return np.where(inside, np.searchsorted(edges, np.where(inside, t, 0.0), side="right") - 1, -1)


def resolve_cuts(facts: Facts, by: Sequence[str]) -> list[str]:
    """Cut names as columns (aliases resolved), or :class:`CutUnavailable` naming the gap."""
    names = [CUT_ALIASES.get(b, b) for b in by]
    available = facts.cuts()
    for name in names:
        if name not in available:
            if name == SIZE_BAND or name in ACCOUNTS.column_names:
                why = (
                    "no accounts table"
                    if "accounts" in facts.absent
                    else "no account_id column in deals"
                    if "deals.account_id" in facts.absent
                    else f"accounts has no {'employee_count' if name == SIZE_BAND else name}"
                )
            else:
                why = f"deals has no {name} column"
            raise CutUnavailable(
                f"cannot cut by {name}: {why} (available: {', '.join(available) or 'none'})"
            )
    return names


def size_bands(employee_count: pd.Series) -> np.ndarray:
    """Each headcount's :data:`SIZE_BANDS` label (``"50-249"``); missing or negative:
    :data:`UNKNOWN`. One rule for the insights' cut and the model card's segments."""
    lows = [lo for lo, _ in SIZE_BANDS]
    counts = pd.to_numeric(pd.Series(employee_count), errors="coerce")
    band = np.searchsorted(lows, counts.to_numpy(dtype=np.float64), side="right") - 1
    labels = np.array([label for _, label in SIZE_BANDS], dtype=object)[band]
    return np.where(counts.notna().to_numpy() & (band >= 0), labels, UNKNOWN)


def cut_labels(facts: Facts, names: Sequence[str]) -> pd.DataFrame:
    """Each deal's label in each cut: identifiers (``*_id``) as given, other text normalised
    as the model reads it (``Web `` is ``web``), size bands from the headcount; absent: UNKNOWN."""
    out = pd.DataFrame(index=facts.deals.index)
    for name in names:
        if name == SIZE_BAND:
            out[name] = size_bands(facts.cut_values["employee_count"])
        elif name.endswith("_id"):  # an identifier: exact, only trimmed
            ids = facts.cut_values[name].astype("string").str.strip()
            out[name] = ids.mask(ids == "").fillna(UNKNOWN).to_numpy(dtype=object)
        else:
            out[name] = normalise_category(facts.cut_values[name]).fillna(UNKNOWN).to_numpy()
    return out


def stage_at_moments(facts: Facts, deal: np.ndarray, t_us: np.ndarray) -> np.ndarray:
    """Stage code of each deal at each moment (NaN before its first entry).

    ``deal`` and ``t_us`` must be sorted by deal, then time (as :class:`Queries`).
    """
    assert facts.changes is not None
    ch = facts.changes
    events = StageEvents(
        ch["deal"].to_numpy(np.int64),
        ch["at_us"].to_numpy(np.int64),
        ch["stage"].to_numpy(np.int64),
    )
    state = stage_at(events, Queries(deal, t_us), len(facts.deals))
    return np.asarray(state["stage_index"])


@dataclass(frozen=True)
class Scope:
    """A request: bucket edges, cut names and each deal's labels in them, and the
    grouping every insight shares (per period and cut, plus the whole team as ALL)."""

    facts: Facts
    edges: pd.DatetimeIndex
    by: list[str]
    labels: pd.DataFrame
    min_deals: int

    @classmethod
    def of(
        cls, facts: Facts, start: Any, end: Any, by: Sequence[str], every: Every, min_deals: int
    ) -> Scope:
        names = resolve_cuts(facts, by)
        return cls(
            facts, period_edges(start, end, every), names, cut_labels(facts, names), min_deals
        )

    def bucket(self, t_us: np.ndarray) -> np.ndarray:
        return bucket_of(t_us, edges_us(self.edges))

    def frame(
        self, period: np.ndarray, deal: np.ndarray | None = None, **columns: Any
    ) -> pd.DataFrame:
        """Rows in a period (``period`` >= 0) with their period, labels and ``columns``.

        A row is a deal (``deal`` None) or an event of deal ``deal[i]``.
        """
        keep = period >= 0
        labels = self.labels if deal is None else self.labels.iloc[np.asarray(deal)]
        out = labels[keep].reset_index(drop=True)
        out.insert(0, "period", period[keep])
        for name, values in columns.items():
            out[name] = np.asarray(values)[keep]
        return out

    def aggregate(
        self, frame: pd.DataFrame, extra: Sequence[str] = (), **agg: tuple[str, str]
    ) -> pd.DataFrame:
        """Named aggregations per period and cut, and per period alone as the ALL group."""
        return self.summarise(frame, lambda g: g.agg(**agg), extra)

    def summarise(
        self,
        frame: pd.DataFrame,
        summary: Callable[[DataFrameGroupBy], pd.DataFrame],
        extra: Sequence[str] = (),
    ) -> pd.DataFrame:
        """``summary`` of each period and cut (and ``extra`` keys), and of each period
        alone as the ALL group; one row per group, keys as columns."""
        keys = ["period", *self.by, *extra]
        parts = [summary(frame.groupby(keys, sort=False)).reset_index()]
        if self.by:
            whole = summary(frame.groupby(["period", *extra], sort=False)).reset_index()
            parts.append(whole.assign(**dict.fromkeys(self.by, ALL)))
        out = pd.concat(parts, ignore_index=True)
        return out[[*keys, *(c for c in out.columns if c not in keys)]]

    def grid(self, *seen: pd.DataFrame) -> pd.DataFrame:
        """Every period x every group seen in any of ``seen``, ALL first, then by label.

        ``_group`` numbers the groups in that order, for :meth:`finish` to sort by.
        """
        periods = pd.DataFrame({"period": np.arange(len(self.edges) - 1)})
        if not self.by:
            return periods.assign(_group=0)
        groups = pd.concat([s[self.by] for s in seen], ignore_index=True).drop_duplicates()
        groups = groups[(groups != ALL).all(axis=1)].sort_values(self.by, key=_label_order)
        groups = pd.concat([pd.DataFrame([dict.fromkeys(self.by, ALL)]), groups])
        groups["_group"] = np.arange(len(groups))
        return periods.merge(groups, how="cross")

    def finish(self, frame: pd.DataFrame, order: Sequence[str] = ()) -> pd.DataFrame:
        """Sorted by period, group and ``order``; the period as start and end times, first."""
        frame = frame.sort_values(["period", "_group", *order], kind="stable")
        frame = frame.drop(columns=["_group", *order]).reset_index(drop=True)
        period = frame.pop("period").to_numpy()
        frame.insert(0, "period_start", self.edges[:-1][period])
        frame.insert(1, "period_end", self.edges[1:][period])
        return frame


def _label_order(labels: pd.Series) -> pd.Series:
    """Sort key of a cut's labels: size bands by size, anything else as text; UNKNOWN last."""
    bands = {label: f"{i:03d}" for i, (_, label) in enumerate(SIZE_BANDS)}
    key = labels.map(lambda v: bands.get(v, v) if labels.name == SIZE_BAND else v)
    return key.where(labels != UNKNOWN, "\uffff")


def stack(parts: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Frames with the same columns, one under the other, column by column.

    ``pd.concat`` scans every value of a column that is all None (``missing`` where
    nothing is missing) to pick its type: seconds for a year of weeks by rep.
    """
    columns = parts[0].columns
    return pd.DataFrame({c: np.concatenate([p[c].to_numpy() for p in parts]) for c in columns})


def to_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts: times as ISO 8601, NaN as None, numpy scalars as Python."""
    out = frame.copy()
    for c in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[c]):
            out[c] = out[c].map(lambda t: None if pd.isna(t) else t.isoformat())
    out = out.astype(object).where(out.notna(), None)
    return [
        {k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}
        for row in out.to_dict(orient="records")
    ]
