"""The open pipeline's expected revenue by month, per rep and team, and its backtest.

**Forecast.** Each deal open at ``as_of`` brings ``probability x amount`` if won, spread
over the months it may close in: ``expected revenue in month k = sum over open deals of
probability x amount x P(close in month k | won)``. Month 0 is the rest of ``as_of``'s
calendar month, then whole calendar months in UTC; what would close after the horizon is
``later``. Summed over months and ``later``, a deal gives exactly ``probability x amount``.

**When it closes.** The CRM contract has no expected close date, so the month comes from a
model of time to close (:class:`TimeToClose`) learned from deals won before ``as_of``: the
plain empirical distribution of the months from a moment to the win, conditional on the
stage and age the deal had then. It is learned on *snapshots*: at ``as_of`` minus ``j``
months (``j`` from the horizon to the horizon plus :data:`LOOKBACK_MONTHS`, the same day
of the month as ``as_of``, so month 0 is as long as the forecast's), each deal open then
and later won before ``as_of`` counts once in the bucket of the calendar months between
the snapshot and its win. Snapshots at least a horizon old see every win inside the
horizon, so the shares of the forecast months are not cut short by wins not yet made
(right censoring); only ``later`` misses the wins still to come. Why not Kaplan-Meier:
the distribution is conditional on the win, and a deal still open is not known to be a
win, so there is nothing to censor it as; the window does the job. A (stage, age band)
with fewer than :data:`~leadscore.insights.facts.MIN_DEALS` snapshots falls back to its
stage, then to all. A CRM's own expected close date (``expected_close``, when one is
mapped in) replaces the distribution of its deal when it lies in the future.

**Probabilities** are a parameter (:data:`Probability`): the win model's, as of ``as_of``
(:func:`model_probability`, features point in time), or the leakage-free stage rate
(:func:`stage_rate_probability`: the share of the amount won, among deals closed before
``as_of``, by those in the deal's stage and age band at past monthly snapshots).

**Backtest.** At past month starts ``t`` (:func:`backtest_cuts`), the forecast is rebuilt
from what was known at ``t`` (the open deals, their stage and age at ``t``, the timing
model of wins before ``t``, the probability at ``t``) and compared, for months ``t+1``
to ``t+horizon``, with what the deals open at ``t`` actually brought in when won in that
month (:func:`backtest`). The naive reference (``persistence``) is what the pipeline of
earlier cuts brought in at the same horizon: the mean over the three latest cuts whose
month at that horizon had ended by ``t``. :func:`backtest_errors` gives per horizon the
WAPE (sum of absolute errors over the sum won), the bias (signed, same scale) and the
MAPE of the months.

Amounts are summed as given: a CRM in several currencies must be converted first
(:attr:`Forecast.summary` counts the currencies).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from leadscore.config import BACKTEST_CUTS, BACKTEST_HORIZON, FORECAST_MONTHS
from leadscore.features.featurize import (
    build_feature_sources,
    features_as_of,
    model_frame,
    scoring_entities,
)
from leadscore.insights.facts import (
    ALL,
    DAY_US,
    MIN_DEALS,
    Facts,
    cut_labels,
    micros,
    resolve_cuts,
    stage_at_moments,
)
from leadscore.timeutil import as_utc

if TYPE_CHECKING:
    from leadscore.model.scoring_model import ScoringModel

#: Months of snapshots the time-to-close model learns from, beyond the horizon.
LOOKBACK_MONTHS = 24
#: Deal age bands of the time-to-close model, lower bounds in days.
AGE_BANDS_DAYS: tuple[float, ...] = (0.0, 30.0, 90.0, 180.0)
#: History a cut needs before it (months from the first deal created).
MIN_HISTORY_MONTHS = 12
#: Earlier cuts the persistence baseline averages.
PERSISTENCE_CUTS = 3
#: The stage rate's snapshots start this many months before the moment (most deals open
#: then have closed since, so their outcome is known).
RATE_SKIP_MONTHS = 6
#: Stage code of a deal whose stage is unknown at the moment.
NO_STAGE = -1

#: ``probability(pipeline, as_of)``: each open deal's win probability, in the order of
#: ``pipeline`` (:func:`open_pipeline`'s frame: only what was known at ``as_of``).
Probability = Callable[[pd.DataFrame, pd.Timestamp], np.ndarray]


# ---------------------------------------------------------------- months
def month_start(t: Any) -> pd.Timestamp:
    """The first moment of ``t``'s calendar month in UTC."""
    return as_utc(t).normalize().replace(day=1)


def forecast_edges(as_of: pd.Timestamp, months: int) -> pd.DatetimeIndex:
    """Bounds of the forecast months: ``as_of``, then each next month start."""
    first = month_start(as_of)
    return pd.DatetimeIndex(
        [as_utc(as_of), *(first + pd.DateOffset(months=k + 1) for k in range(months))]
    )


def _month_number(t_us: np.ndarray) -> np.ndarray:
    """Calendar months since 1970-01 of times in microseconds (finite values only)."""
    months = t_us.astype(np.int64).astype("datetime64[us]").astype("datetime64[M]")
    return months.astype(np.int64)


def months_between(later_us: np.ndarray, earlier_us: np.ndarray) -> np.ndarray:
    """Calendar months from ``earlier`` to ``later``: 0 in the same month."""
    return _month_number(later_us) - _month_number(earlier_us)


def age_band(age_days: np.ndarray) -> np.ndarray:
    """Index of each age in :data:`AGE_BANDS_DAYS` (0 when unknown)."""
    band = np.searchsorted(AGE_BANDS_DAYS, np.nan_to_num(age_days, nan=0.0), side="right") - 1
    return np.asarray(np.clip(band, 0, None), dtype=np.int64)


def _stages_at(facts: Facts, deal: np.ndarray, t_us: np.ndarray) -> np.ndarray:
    """Stage code of each (deal, moment), :data:`NO_STAGE` when unknown, any order."""
    if facts.changes is None or not len(deal):
        return np.full(len(deal), NO_STAGE, dtype=np.int64)
    order = np.lexsort((t_us, deal))
    codes = stage_at_moments(facts, deal[order], t_us[order])
    out = np.empty(len(deal), dtype=np.float64)
    out[order] = codes
    return np.where(np.isnan(out), NO_STAGE, out).astype(np.int64)


# ---------------------------------------------------------------- the open pipeline
def open_pipeline(facts: Facts, as_of: Any, by: Sequence[str] = ()) -> pd.DataFrame:
    """The deals open at ``as_of``, with only what was known then.

    Open at ``as_of``: created at or before it, and open today or closed after it. An
    undated deal (no ``created_at``, or closed without ``closed_at``) is left out: when it
    was open is not known. Columns: ``deal`` (its row in ``facts.deals``), ``deal_id``,
    the cuts ``by``, ``amount``, ``stage`` (code at ``as_of``, :data:`NO_STAGE` unknown)
    and ``age_days``.
    """
    t = float(micros(pd.Series([as_utc(as_of)]))[0])
    d = facts.deals
    created, closed = d["created_us"].to_numpy(), d["closed_us"].to_numpy()
    still_open = (d["status"].to_numpy() == "open") & np.isnan(closed)
    is_open = (created <= t) & (still_open | (closed > t))
    deal = np.flatnonzero(is_open)
    labels = cut_labels(facts, resolve_cuts(facts, by)).iloc[deal].reset_index(drop=True)
    out = pd.DataFrame({"deal": deal, "deal_id": d["deal_id"].to_numpy()[deal]})
    out = pd.concat([out, labels], axis=1)
    out["amount"] = d["amount"].to_numpy()[deal]
    out["stage"] = _stages_at(facts, deal, np.full(len(deal), t))
    out["age_days"] = (t - created[deal]) / DAY_US
    return out


# ---------------------------------------------------------------- time to close
@dataclass(frozen=True)
class TimeToClose:
    """P(close in month k | won) for k in 0..months-1, and ``later`` last, per group.

    ``groups`` maps ``(stage code, age band)`` and ``(stage code, None)`` to shares, each
    learned from at least ``min_deals`` snapshots; ``overall`` is the fallback.
    """

    months: int
    overall: np.ndarray
    groups: Mapping[tuple[int, int | None], np.ndarray]
    #: Snapshots (a won deal at a moment) behind ``overall``.
    snapshots: int

    @classmethod
    def fixed(cls, shares: Sequence[float]) -> TimeToClose:
        """The same distribution for every deal (shares of months 0.. and ``later`` last)."""
        values = np.asarray(shares, dtype=np.float64)
        if values.ndim != 1 or len(values) < 2 or not np.isclose(values.sum(), 1.0):
            raise ValueError("shares must be months then later, summing to 1")
        return cls(len(values) - 1, values, {}, 0)

    def shares(self, stage: np.ndarray, band: np.ndarray) -> np.ndarray:
        """One row of shares per deal, by its group, its stage, or all."""
        return _lookup(self.overall, self.groups, stage, band)


Groups = Mapping[tuple[int, int | None], np.ndarray]


def _lookup(overall: np.ndarray, groups: Groups, stage: np.ndarray, band: np.ndarray) -> np.ndarray:
    """The value of each deal's (stage, age band), else of its stage, else ``overall``."""
    out = np.empty((len(stage), len(overall)))
    for i, (s, b) in enumerate(zip(stage.tolist(), band.tolist(), strict=True)):
        found = groups.get((s, b))
        out[i] = found if found is not None else groups.get((s, None), overall)
    return out


def _learn(
    stage: np.ndarray,
    band: np.ndarray,
    summary: Callable[[np.ndarray], np.ndarray],
    min_deals: int,
) -> tuple[np.ndarray, dict[tuple[int, int | None], np.ndarray]]:
    """``summary`` of all snapshots, and of each stage and (stage, age band) with at
    least ``min_deals`` of them (the rest fall back, :func:`_lookup`)."""
    groups: dict[tuple[int, int | None], np.ndarray] = {}
    for s in np.unique(stage).tolist():
        in_stage = stage == s
        if in_stage.sum() >= min_deals:
            groups[(s, None)] = summary(in_stage)
        for b in np.unique(band[in_stage]).tolist():
            in_group = in_stage & (band == b)
            if in_group.sum() >= min_deals:
                groups[(s, b)] = summary(in_group)
    return summary(np.ones(len(stage), dtype=bool)), groups


def _snapshots(
    facts: Facts, end: pd.Timestamp, first: int, count: int, won_only: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(deal, moment) of each dated deal closed before ``end`` (won only: ``won_only``)
    that was open at ``end`` minus ``first`` .. ``first + count - 1`` months."""
    t_end = float(micros(pd.Series([end]))[0])
    d = facts.deals
    created, closed = d["created_us"].to_numpy(), d["closed_us"].to_numpy()
    keep = (closed < t_end) & ~np.isnan(created)
    if won_only:
        keep &= d["won"].to_numpy()
    known = np.flatnonzero(keep)
    moments = micros(
        pd.Series([end - pd.DateOffset(months=j) for j in range(first, first + count)])
    )
    deal_parts, at_parts = [np.zeros(0, np.int64)], [np.zeros(0)]
    for s in moments:
        open_then = known[(created[known] <= s) & (closed[known] > s)]
        deal_parts.append(open_then)
        at_parts.append(np.full(len(open_then), s))
    return np.concatenate(deal_parts), np.concatenate(at_parts)


def time_to_close(
    facts: Facts,
    as_of: Any,
    months: int,
    lookback: int = LOOKBACK_MONTHS,
    min_deals: int = MIN_DEALS,
) -> TimeToClose:
    """The empirical time-to-close distribution of wins before ``as_of`` (module doc).

    Raises ``ValueError`` when no deal was won before ``as_of`` with a known creation
    and close.
    """
    end = as_utc(as_of)
    deal, at = _snapshots(facts, end, months, lookback, won_only=True)
    if not len(deal):
        raise ValueError(
            f"no deal won before {end:%Y-%m-%d} was open {months} to {months + lookback} "
            "months earlier: no time to close to learn from"
        )
    created, closed = facts.deals["created_us"].to_numpy(), facts.deals["closed_us"].to_numpy()
    bucket = np.minimum(months_between(closed[deal], at), months)

    def dist(mask: np.ndarray) -> np.ndarray:
        counts = np.bincount(bucket[mask], minlength=months + 1).astype(np.float64)
        return counts / counts.sum()

    stage = _stages_at(facts, deal, at)
    overall, groups = _learn(stage, age_band((at - created[deal]) / DAY_US), dist, min_deals)
    return TimeToClose(months, overall, groups, len(deal))


# ---------------------------------------------------------------- the forecast
@dataclass(frozen=True)
class Forecast:
    """A forecast at ``as_of``.

    ``months``: per month and group (the whole team as ALL first), ``period_start``,
    ``period_end``, the cuts, ``expected_revenue`` and ``deals`` (open deals that may
    close then). ``summary``: per group, ``open_deals``, ``pipeline`` (sum of amounts),
    ``expected`` (sum of probability x amount), ``in_horizon``, ``later``,
    ``no_amount`` (open deals without an amount, counted as 0) and ``currencies``.
    ``deals``: the open deals with ``probability``, ``expected`` and the share of each
    month (``m0``, ``m1``, ..., ``later``).
    """

    as_of: pd.Timestamp
    months: pd.DataFrame
    summary: pd.DataFrame
    deals: pd.DataFrame


def close_shares(
    pipeline: pd.DataFrame,
    timing: TimeToClose,
    as_of: pd.Timestamp,
    expected_close: pd.Series | None = None,
) -> np.ndarray:
    """Each open deal's P(close in month k | won), ``later`` last.

    ``expected_close`` (times by ``deal_id``, a CRM's own date) puts all of a deal's
    weight on its month when the date is after ``as_of``; otherwise ``timing`` decides.
    """
    shares = timing.shares(
        pipeline["stage"].to_numpy(np.int64), age_band(pipeline["age_days"].to_numpy())
    )
    if expected_close is None:
        return shares
    dated = micros(pd.Series(expected_close.reindex(pipeline["deal_id"]).to_numpy()))
    t = float(micros(pd.Series([as_of]))[0])
    use = np.isfinite(dated) & (dated > t)
    k = np.minimum(months_between(np.where(use, dated, t), np.full(len(dated), t)), timing.months)
    shares[use] = 0.0
    shares[np.flatnonzero(use), k[use]] = 1.0
    return shares


def pipeline_forecast(
    facts: Facts,
    as_of: Any,
    probability: Probability,
    months: int = FORECAST_MONTHS,
    by: Sequence[str] = (),
    timing: TimeToClose | None = None,
    expected_close: pd.Series | None = None,
) -> Forecast:
    """Expected revenue of the deals open at ``as_of`` by month, per cut and team.

    ``timing`` defaults to :func:`time_to_close` learned before ``as_of``; ``by`` takes
    the cuts of the other insights (``owner`` for reps).
    """
    when = as_utc(as_of)
    names = resolve_cuts(facts, by)
    pipeline = open_pipeline(facts, when, names)
    timing = timing if timing is not None else time_to_close(facts, when, months)
    if timing.months != months:
        raise ValueError(f"the time-to-close model has {timing.months} months, not {months}")
    p = np.asarray(probability(pipeline, when), dtype=np.float64)
    amount = np.nan_to_num(pipeline["amount"].to_numpy(dtype=np.float64))
    shares = close_shares(pipeline, timing, when, expected_close)
    expected = p * amount
    revenue = expected[:, None] * shares
    edges = forecast_edges(when, months)
    columns = [f"m{k}" for k in range(months)] + ["later"]
    deals = pipeline.assign(probability=p, expected=expected)
    deals = pd.concat([deals, pd.DataFrame(shares, columns=columns)], axis=1)
    groups = [(ALL, np.ones(len(pipeline), dtype=bool))]
    if names:
        keys = pipeline[names].astype(str).agg(" / ".join, axis=1).to_numpy()
        groups += [(key, keys == key) for key in sorted(set(keys.tolist()))]
    month_rows, summary_rows = [], []
    currency = facts.deals["currency"].to_numpy()[pipeline["deal"].to_numpy()]
    for key, mask in groups:
        label = _group_label(pipeline, names, mask, key)
        for k in range(months):
            month_rows.append(
                {
                    "period_start": edges[k],
                    "period_end": edges[k + 1],
                    **label,
                    "expected_revenue": float(revenue[mask, k].sum()),
                    "deals": int((shares[mask, k] > 0).sum()),
                }
            )
        summary_rows.append(
            {
                **label,
                "open_deals": int(mask.sum()),
                "pipeline": float(amount[mask].sum()),
                "expected": float(expected[mask].sum()),
                "in_horizon": float(revenue[mask, :months].sum()),
                "later": float(revenue[mask, months].sum()),
                "no_amount": int(pipeline["amount"][mask].isna().sum()),
                "currencies": int(pd.Series(currency[mask]).dropna().nunique()),
            }
        )
    return Forecast(when, pd.DataFrame(month_rows), pd.DataFrame(summary_rows), deals)


def _group_label(
    pipeline: pd.DataFrame, names: Sequence[str], mask: np.ndarray, key: str
) -> dict[str, Any]:
    if key == ALL:
        return dict.fromkeys(names, ALL)
    first = pipeline.loc[mask, list(names)].iloc[0]
    return {n: first[n] for n in names}


# ---------------------------------------------------------------- probabilities
def stage_rate_probability(
    facts: Facts,
    skip_months: int = RATE_SKIP_MONTHS,
    lookback: int = LOOKBACK_MONTHS,
    min_deals: int = MIN_DEALS,
) -> Probability:
    """The leakage-free reference: a deal's probability at ``as_of`` is the share of the
    amount won by the deals in the same stage and age band at monthly snapshots before
    ``as_of`` (``skip_months`` to ``skip_months + lookback`` months before, the same day
    of the month), among those closed by ``as_of``; a group of fewer than ``min_deals``
    snapshots falls back to the stage, then to all.

    Why snapshots and not the win rate of the deals that ever reached the stage: a deal
    still a lead after two months wins far less often than leads do on average, and the
    open pipeline is full of such deals. Why the amount's share and not the deals': the
    forecast is of revenue, and large deals win less often; on the synthetic CRM the
    deals' rate forecast a third too much at every horizon, the amount's 0-4% (WAPE 0.33
    against 0.11 at one month, ``benchmarks/forecast_backtest.py``). Skipping the latest
    months leaves out snapshots whose deals are mostly still open (the outcomes known
    there would be the quick ones). Groups without amounts take the deals' rate.
    """
    created = facts.deals["created_us"].to_numpy()
    won = facts.deals["won"].to_numpy()
    amount = np.nan_to_num(facts.deals["amount"].to_numpy(dtype=np.float64))

    def probability(pipeline: pd.DataFrame, as_of: pd.Timestamp) -> np.ndarray:
        deal, at = _snapshots(facts, as_of, skip_months, lookback, won_only=False)
        stage = pipeline["stage"].to_numpy(np.int64)
        if not len(deal):
            return np.full(len(stage), np.nan)
        outcome, value = won[deal], amount[deal]

        def share_won(mask: np.ndarray) -> np.ndarray:
            total = value[mask].sum()
            rate = value[mask & outcome].sum() / total if total > 0 else outcome[mask].mean()
            return np.array([rate])

        overall, groups = _learn(
            _stages_at(facts, deal, at),
            age_band((at - created[deal]) / DAY_US),
            share_won,
            min_deals,
        )
        band = age_band(pipeline["age_days"].to_numpy())
        return _lookup(overall, groups, stage, band)[:, 0]

    return probability


def model_probability(model: ScoringModel, tables: Mapping[str, pd.DataFrame]) -> Probability:
    """The win model's probability of each open deal with its features as of the moment
    (the point-in-time join of :func:`~leadscore.features.featurize.features_as_of` over
    source rows stamped when each fact became known), as ``leadscore rank`` scores.

    The feature sources are built once, on first use, for every moment asked.
    """
    sources: dict[str, pd.DataFrame] = {}
    deals = tables["deals"].assign(deal_id=lambda f: f["deal_id"].astype(str))
    deals = deals.drop_duplicates("deal_id").set_index("deal_id", drop=False)

    def probability(pipeline: pd.DataFrame, as_of: pd.Timestamp) -> np.ndarray:
        if not len(pipeline):
            return np.zeros(0)
        if not sources:
            sources.update(build_feature_sources(tables, attributes=model.attributes))
        entities = scoring_entities(deals.loc[pipeline["deal_id"].to_numpy()], as_of)
        feats = features_as_of(sources, entities)
        return np.asarray(
            model.probability(model.encode(model_frame(feats, model.attributes))),
            dtype=np.float64,
        )

    return probability


# ---------------------------------------------------------------- backtest
def backtest_cuts(
    facts: Facts,
    last: Any,
    n: int = BACKTEST_CUTS,
    horizon: int = BACKTEST_HORIZON,
    history_months: int = MIN_HISTORY_MONTHS,
) -> list[pd.Timestamp]:
    """The latest ``n`` month starts whose ``horizon`` months ended by ``last`` and that
    have ``history_months`` of deals before them."""
    created = facts.deals["created_us"].dropna()
    if created.empty:
        return []
    first = month_start(pd.Timestamp(int(created.min()), unit="us", tz="UTC"))
    earliest = first + pd.DateOffset(months=history_months)
    latest = month_start(last) - pd.DateOffset(months=horizon)
    cuts: list[pd.Timestamp] = []
    t = latest
    while t >= earliest and len(cuts) < n:
        cuts.append(t)
        t = t - pd.DateOffset(months=1)
    return cuts[::-1]


def won_from_pipeline(facts: Facts, cut: pd.Timestamp, horizon: int) -> np.ndarray:
    """What the deals open at ``cut`` brought in, by the month they were won in
    (``cut``'s month is 0, the last one ``horizon - 1``)."""
    pipeline = open_pipeline(facts, cut)
    d = facts.deals
    deal = pipeline["deal"].to_numpy()
    won = d["won"].to_numpy()[deal]
    closed = d["closed_us"].to_numpy()[deal]
    t = float(micros(pd.Series([cut]))[0])
    amount = np.nan_to_num(d["amount"].to_numpy(dtype=np.float64)[deal])
    k = np.full(len(deal), -1)
    k[won] = months_between(closed[won], np.full(int(won.sum()), t))
    return np.array([amount[k == m].sum() for m in range(horizon)], dtype=np.float64)


def backtest(
    facts: Facts,
    cuts: Sequence[pd.Timestamp],
    probabilities: Mapping[str, Probability],
    horizon: int = BACKTEST_HORIZON,
) -> pd.DataFrame:
    """The forecast rebuilt at each cut (a month start) with each named probability,
    against what was won.

    One row per cut and horizon ``h`` (1..``horizon``: the month starting ``h - 1``
    months after the cut): ``cut``, ``horizon``, ``month``, one forecast column per name
    of ``probabilities``, ``actual`` (the amount won that month by the deals open at the
    cut), ``persistence`` (the naive reference, module doc) and ``open_deals``. Everything
    at a cut is computed from what was known then (the time-to-close model too); only
    ``actual`` looks after it.
    """
    rows = []
    for cut in (month_start(c) for c in cuts):
        timing = time_to_close(facts, cut, horizon)
        forecasts = {
            name: pipeline_forecast(facts, cut, probability, horizon, timing=timing)
            for name, probability in probabilities.items()
        }  # the team only: no cut
        actual = won_from_pipeline(facts, cut, horizon)
        earlier = {
            m: won_from_pipeline(facts, cut - pd.DateOffset(months=m), horizon)
            for m in range(1, horizon + PERSISTENCE_CUTS)
        }
        open_deals = len(open_pipeline(facts, cut))
        for h in range(1, horizon + 1):
            naive = [earlier[m][h - 1] for m in range(h, h + PERSISTENCE_CUTS)]
            rows.append(
                {
                    "cut": cut,
                    "horizon": h,
                    "month": cut + pd.DateOffset(months=h - 1),
                    **{
                        name: float(fc.months["expected_revenue"].iloc[h - 1])
                        for name, fc in forecasts.items()
                    },
                    "actual": float(actual[h - 1]),
                    "persistence": float(np.mean(naive)),
                    "open_deals": open_deals,
                }
            )
    return pd.DataFrame(rows)


def backtest_errors(frame: pd.DataFrame, methods: Sequence[str]) -> pd.DataFrame:
    """Per horizon and method (forecast columns of a :func:`backtest` frame, and the
    ``persistence`` reference): ``wape`` = sum |f - a| / sum a, ``bias`` = sum (f - a) /
    sum a (positive: forecast too high), ``mape`` (mean of |f - a| / a over months with
    something won), and the months, forecast and actual behind them."""
    rows = []
    for h, part in frame.groupby("horizon", sort=True):
        actual = part["actual"].to_numpy(dtype=np.float64)
        for method in [*methods, "persistence"]:
            f = part[method].to_numpy(dtype=np.float64)
            total = actual.sum()
            some = actual > 0
            rows.append(
                {
                    "horizon": int(h),
                    "method": method,
                    "months": len(part),
                    "forecast": float(f.sum()),
                    "actual": float(total),
                    "wape": float(np.abs(f - actual).sum() / total) if total else np.nan,
                    "bias": float((f - actual).sum() / total) if total else np.nan,
                    "mape": float(np.mean(np.abs(f - actual)[some] / actual[some]))
                    if some.any()
                    else np.nan,
                }
            )
    return pd.DataFrame(rows)
