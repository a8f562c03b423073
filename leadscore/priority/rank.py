"""The managers' priority list: which deals to work next, why, and what to do.

:func:`run_rank` (``leadscore rank``) scores, with the champion model:

* every **active** deal: open in the CRM, with activity in the last ``dormant_days``
  (30); an open deal without, counted from its creation when it has none, is
  **dormant**;
* every **recently lost** deal, lost within ``lost_window_days`` (180, the setting
  ``LEADSCORE_LOST_WINDOW_DAYS``) before the moment of ranking. Older losses are left
  out and counted (``lost_left_out``; the page and ``rank`` say how many).

**Without a trained model** (no champion: too few closed deals to train, or none trained
yet) every row is scored by the labelled fallback (:mod:`leadscore.model.fallback`, fitted
on the stored CRM's closed deals by :func:`stored_fallback`): its ``model`` says which and
on how many deals (``fallback (stage and channel rates, 63 closed deals)``), its
``meaning`` that the number is a rough prior and the minimum at which a trained model
takes over. Lost deals are then scored as if re-opened, by the same fallback.

**Which model scores a row** (column ``model``, and ``meaning``: what its number means in
words). Active deals are scored by the win model: "chance to win this deal". Dormant
deals (:mod:`leadscore.priority.dormant`) are scored as the win model's dormant backtest
chose (:mod:`training.dormant`, stored in the model as ``info["dormant"]``): through the
calibration it fitted on dormant deals (model ``win, dormant calibration``) or by the win
model's own number when that was the better calibrated (model ``win``); either way the
number is then "chance of a win within 12 months" (the horizon in months, and which
number, in brackets). A model trained before the backtest, or on too few dormant deals,
keeps the win model's number and says it was not checked against dormant deals. A recently lost deal is scored by the **revival model** (``lead_scorer_revival``,
:mod:`training.revival`) when it has a champion: its features as of the ranking moment
from the feature sources (the loss and the engagement since it, the ``deal_revival``
view; nothing re-opened), its reasons from that model (:class:`RevivalModel`), and its
number is "chance of a win within 12 months if re-engaged now" (the revival horizon in
months). The ``deal_revival`` source is then built once from the whole CRM's deals (the
account's other deals and past revivals count every deal, as in training), with the
activities read for the deals ranked. Without a revival champion the old way stays,
and says so: the lost deal is scored by the win model as if re-opened then (its
``closed`` stage-history row dropped, so its funnel position is the last stage it
reached, and its loss taken out of its own account's and owner's track records; the
losses of other deals kept), a number not checked against what lost deals do.

A lost deal's next step follows its lost reason and the time since the loss
(:func:`leadscore.priority.health.lost_next_step`), whichever model scored it.

Features come from the one point-in-time definition (:mod:`leadscore.features.featurize`) over
the stored CRM tables; scores, grades and reasons from :class:`~leadscore.model.explain.Explainer`;
risk flags and the next step from :mod:`leadscore.priority.health`. Deals go through in batches
of ``batch_size`` (10,000): the feature sources of a batch's deals are built, cut to
each deal's state at the moment of ranking, scored and explained, then dropped, so
memory follows the batch, not the CRM. With several batches and ``threads`` (every core
by default) above one, the batches are ranked on that many forked processes, one batch
each at a time, evened out between them (issue 14; ``benchmarks/rank_interleaved.py``,
docs/scaling.md); one batch is explained on a pool of ``threads``. Only the history of
the deals ranked (and of the recent wins the activity rule compares with) is read from
the stored tables; account and owner track records come from every deal.

The ranked list (``ranked_leads.parquet`` and ``.csv`` under ``feature_data/rankings``
unless told otherwise) has one row per deal: rank, deal, account, owner, channel,
industry, segment, stage, priority group, probability, score, grade, amount, expected value
(probability x amount), change since the previous run, top reasons either way, risk
flags, next step, the score trend, the model and what its number means, the model version
(and the revival model's), the moment of ranking and the count of lost deals left out for
age. It is
ordered by expected value (big deals carry the profit) or by probability; a deal
without an amount has no expected value and goes last.

**Priority group** (column ``priority_group``) is why a deal is on the list: ``active``,
``dormant`` or ``recently lost`` as above. It is not the CRM's ``status`` (open, won,
lost), which the list does not repeat: active and dormant deals are open, recently lost
ones lost.

**Segment** is the account's size band by employees: ``small`` (under 100),
``mid-market`` (100 to 999), ``enterprise`` (1,000 or more), ``unknown``. The segment
filter matches a size band or an industry (as normalised: lower case, spaces as
underscores), so ``--segment enterprise`` and ``--segment retail`` both work.

**As of.** A list is ranked as of now, unless the stored export's last recorded event
(:func:`leadscore.crm.ingest.historical_as_of`) is more than a day before now: a
historical export
is then ranked as of that moment, and the run says so (:func:`default_as_of`), since
against today's clock every open deal would look abandoned. Without an activities
table no deal is dormant and none is flagged for follow-up: nothing logged is no
evidence of silence (:func:`leadscore.priority.health.quiet_days`).

**Score history.** Every run writes its scores of every deal (before any filter) to
``score_history/run_date=YYYY-MM-DD/model_version=V/scores.parquet`` beside the list.
One file per day and model: re-running the same day with the same model replaces it,
so the history never holds duplicates. The change since the previous run compares with
the latest earlier run date (a deal missing from it, or scored then by another model,
e.g. as if re-opened before the revival model, has no change); the trend is the
deal's probability over the last :data:`TREND_RUNS` run dates, one per date. Each
row keeps the moment it was ranked as of and the deal's reasons then, so a deal's
timeline (:mod:`leadscore.priority.timeline`) can say what moved its score.
"""

from __future__ import annotations

import functools
import gc
import logging
import multiprocessing
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from leadscore.config import (
    CHAMPION,
    DEFAULT_GRADE_THRESHOLDS,
    DEFAULT_RANK_BY,
    DORMANT_DAYS,
    LOCAL_ENGINE,
    LOST_WINDOW_DAYS,
    RANK_BATCH_SIZE,
    REVIVAL_HORIZON_DAYS,
    REVIVAL_WINDOW_DAYS,
    SNAPSHOT_EVERY_DAYS,
    SPARK_ENGINE,
    Settings,
)
from leadscore.crm.attributes import Attribute
from leadscore.crm.contract import AFTER_DEAL_CREATION, LOST, OPEN, TABLES, WON
from leadscore.crm.ingest import historical_as_of
from leadscore.crm.revival import revival_meaning
from leadscore.csvsafe import write_csv
from leadscore.features.catalog import STAGE_LEVELS, revival_catalog
from leadscore.features.featurize import (
    VIEW_KEYS,
    build_feature_sources,
    features_as_of,
    model_frame,
    normalise_category,
    own_revival_source,
    scoring_entities,
    stage_source,
)
from leadscore.model.explain import Explainer, Explanation
from leadscore.model.fallback import StageFallback, fit_fallback
from leadscore.model.scoring_model import ScoringModel
from leadscore.pipeline_state import replace_file
from leadscore.priority.dormant import DormantChoice, dormant_meaning, is_dormant
from leadscore.priority.health import (
    Flag,
    HealthThresholds,
    lost_next_step,
    lost_next_step_zh,
    next_step_words,
    risk_flags,
    won_activity_reference,
)
from leadscore.progress import Progress, no_progress

log = logging.getLogger(__name__)

#: Priority groups: why a deal is on the list (see the module doc).
ACTIVE, DORMANT, RECENTLY_LOST = "active", "dormant", "recently lost"
PRIORITY_GROUPS: tuple[str, ...] = (ACTIVE, DORMANT, RECENTLY_LOST)
#: The list's column holding a deal's priority group.
GROUP = "priority_group"
RankBy = Literal["expected_value", "probability"]
RANK_BY: tuple[str, ...] = get_args(RankBy)
#: (band, first employee count of the next band); the last band is open-ended.
SIZE_BANDS: tuple[tuple[str, float], ...] = (
    ("small", 100),
    ("mid-market", 1000),
    ("enterprise", np.inf),
)
UNKNOWN_SEGMENT = "unknown"
#: Column ``model``: which model gave a row its number.
WIN_MODEL, REVIVAL_MODEL = "win", "revival"
DORMANT_MODEL = "win, dormant calibration"
REOPENED_MODEL = "win as if re-opened (no revival model)"
#: Column ``meaning``: what the number means, in words (see :func:`revival_meaning`).
OPEN_MEANING = "chance to win this deal"
REOPENED_MEANING = (
    "chance to win this deal if re-opened now; not checked against what lost deals do"
)
RANKED_FILE = "ranked_leads"
HISTORY_DIR = "score_history"
TREND_RUNS = 8

_REASON = pa.struct(
    [
        ("feature", pa.string()),
        ("text", pa.string()),
        ("tooltip", pa.string()),
        ("contribution", pa.float64()),
        ("text_zh", pa.string()),
        ("tooltip_zh", pa.string()),
    ]
)
_FLAG = pa.struct([("code", pa.string()), ("text", pa.string()), ("text_zh", pa.string())])
#: Arrow types of the list columns; the rest are inferred (strings, numbers, times).
_LIST_TYPES: dict[str, pa.DataType] = {
    "positive_reasons": pa.list_(_REASON),
    "negative_reasons": pa.list_(_REASON),
    "risk_flags": pa.list_(_FLAG),
    "trend": pa.list_(pa.float64()),
}
HISTORY_COLUMNS: tuple[str, ...] = (
    "run_date",
    "model_version",
    "scored_at",
    "deal_id",
    GROUP,
    "model",
    "probability",
    "grade",
    "amount",
    "expected_value",
    # What moved a score between runs (a deal's timeline, leadscore.priority.timeline):
    # the moment it was ranked as of, and its reasons then.
    "as_of",
    "positive_reasons",
    "negative_reasons",
)


@dataclass(frozen=True)
class DormantScoring:
    """How a win model scores dormant deals: the model behind the number (``None``: the
    win model itself), the list's ``model`` name for the row and what the number means."""

    model: ScoringModel | None
    name: str
    meaning: str


def dormant_scoring(model: ScoringModel) -> DormantScoring:
    """What the win ``model``'s dormant backtest chose (``info["dormant"]``, module doc):
    its dormant calibration on the same trees, its own number checked, or unchecked."""
    info = model.info.get("dormant") or {}
    choice = DormantChoice(info.get("choice", DormantChoice.UNCHECKED))
    horizon = float(info.get("horizon_days", REVIVAL_HORIZON_DAYS))
    if choice is DormantChoice.DORMANT_CALIBRATION and model.dormant_calibration is not None:
        return DormantScoring(
            model.recalibrated(model.dormant_calibration),
            DORMANT_MODEL,
            dormant_meaning(horizon, choice),
        )
    if choice is DormantChoice.DORMANT_CALIBRATION:  # chosen, but the map is missing
        choice = DormantChoice.UNCHECKED
    return DormantScoring(None, WIN_MODEL, dormant_meaning(horizon, choice))


class RankingError(RuntimeError):
    """Ranking cannot run as asked; the message says what to do."""


@dataclass(frozen=True)
class RevivalModel:
    """The revival champion that scores recently lost deals, with the settings its
    outcome and features were defined by."""

    model: ScoringModel
    version: str
    horizon_days: int = REVIVAL_HORIZON_DAYS
    window_days: int = REVIVAL_WINDOW_DAYS


def revival_champion(settings: Settings) -> RevivalModel | None:
    """The registered revival champion (``models:/<revival_model_name>@champion``), or
    None when there is none (ranking then keeps the as-if-re-opened score and says so)."""
    from leadscore.model.registry import RegistryError, load_champion

    try:
        model, version = load_champion(settings, name=settings.revival_model_name)
    except RegistryError as exc:
        log.info("lost deals scored as if re-opened: %s", exc)
        return None
    return RevivalModel(model, version, settings.revival_horizon_days, settings.revival_window_days)


def stored_fallback(crm_dir: Path) -> StageFallback:
    """The fallback fitted on every closed deal of the stored CRM (its stage history too)."""
    path = crm_dir / "deals.parquet"
    if not path.is_file():
        raise RankingError(f"no deals stored in {crm_dir}; run `leadscore ingest EXPORT_DIR` first")
    deals = pd.read_parquet(path)
    stages = crm_dir / "stage_history.parquet"
    try:
        return fit_fallback(deals, pd.read_parquet(stages) if stages.is_file() else None)
    except ValueError as exc:
        raise RankingError(f"nothing to score with: {exc}") from exc


#: ``model_version`` of rows the fallback scored (the list and the score history).
FALLBACK_VERSION = "fallback"


def ranking_model(
    settings: Settings, alias: str = CHAMPION
) -> tuple[ScoringModel | StageFallback, str]:
    """The model ``rank`` scores with and its version: the registered ``alias`` version, or,
    when the champion is asked for and there is none, the fallback fitted on the stored CRM
    (:func:`stored_fallback`). Another alias missing stays an error: someone asked for it."""
    from leadscore.model.registry import NoVersionError, load_champion

    try:
        return load_champion(settings, alias)
    except NoVersionError as exc:
        if alias != CHAMPION:
            raise
        fallback = stored_fallback(settings.crm_dir)
        log.warning("%s; scoring with %s", exc, fallback.name)
        return fallback, FALLBACK_VERSION


def rankings_dir(settings: Settings) -> Path:
    """Default folder of the ranked list and its score history."""
    return settings.feature_data / "rankings"


@dataclass(frozen=True)
class RankConfig:
    """How deals are selected, scored and checked."""

    dormant_days: float = DORMANT_DAYS
    lost_window_days: float = LOST_WINDOW_DAYS
    batch_size: int = RANK_BATCH_SIZE
    #: Reasons kept per deal, each way.
    max_reasons: int = 3
    #: The most recently closed won deals the low-activity rule's reference comes from.
    reference_won_deals: int = 5_000
    grade_thresholds: Mapping[str, int] = field(
        default_factory=lambda: dict(DEFAULT_GRADE_THRESHOLDS)
    )
    health: HealthThresholds = field(default_factory=HealthThresholds)
    #: Cores a ranking runs on (every core this process may run on by default): that
    #: many processes for several batches (:func:`rank_processes`), else threads the
    #: scores and reasons are computed on (:meth:`~leadscore.model.explain.Explainer.explain`).
    threads: int = field(default_factory=lambda: len(os.sched_getaffinity(0)))


def _normalise_group(value: str) -> str:
    group = re.sub(r"[-_\s]+", " ", value.strip().lower())
    if group not in PRIORITY_GROUPS:
        raise ValueError(f"priority group {value!r}: must be one of {', '.join(PRIORITY_GROUPS)}")
    return group


@dataclass(frozen=True)
class Filters:
    """Which deals a list shows; empty means all. Values within a field are alternatives."""

    owners: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    #: Size bands (see the module doc) or industries.
    segments: tuple[str, ...] = ()
    #: Priority groups (active, dormant, recently lost).
    groups: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for g in self.groups:
            _normalise_group(g)

    def apply(self, frame: pd.DataFrame) -> pd.DataFrame:
        keep = np.ones(len(frame), dtype=bool)

        def among(column: str, wanted: Iterable[str]) -> np.ndarray:
            return frame[column].astype(object).isin(set(wanted)).to_numpy()

        if self.owners:
            owners = {o.strip().casefold() for o in self.owners}
            keep &= frame["owner_id"].astype(str).str.casefold().isin(owners).to_numpy()
        if self.channels:
            keep &= among("channel", normalise_category(pd.Series(self.channels)))
        if self.segments:
            wanted = list(normalise_category(pd.Series(self.segments)))
            keep &= among("segment", wanted) | among("industry", wanted)
        if self.groups:
            keep &= among(GROUP, [_normalise_group(g) for g in self.groups])
        return frame[keep]


# ------------------------------------------------------------------ selection and features
def select_candidates(
    deals: pd.DataFrame, as_of: pd.Timestamp, lost_window_days: float
) -> pd.DataFrame:
    """Open deals created by ``as_of`` (or undated) and deals lost within the window before it.

    Their ``priority_group`` is ``active`` or ``recently lost``; dormancy needs the
    features, so :func:`listing` decides it.
    """
    status = deals["status"].astype(str)
    created = pd.to_datetime(deals["created_at"], utc=True)
    closed = pd.to_datetime(deals["closed_at"], utc=True)
    is_open = (status == OPEN) & ((created <= as_of) | created.isna())
    lost = (
        (status == LOST)
        & (closed <= as_of)
        & (closed > as_of - pd.Timedelta(days=lost_window_days))
    )
    chosen = (is_open | lost).to_numpy()
    out = deals[chosen].reset_index(drop=True)
    out[GROUP] = np.where(lost.to_numpy()[chosen], RECENTLY_LOST, ACTIVE)
    return out


def lost_left_out(deals: pd.DataFrame, as_of: pd.Timestamp, lost_window_days: float) -> int:
    """Lost deals not listed for age: lost at or before ``lost_window_days`` before ``as_of``."""
    closed = pd.to_datetime(deals["closed_at"], utc=True)
    old = (deals["status"].astype(str) == LOST) & (
        closed <= as_of - pd.Timedelta(days=lost_window_days)
    )
    return int(old.sum())


def recent_wins(deals: pd.DataFrame, as_of: pd.Timestamp, n: int) -> pd.DataFrame:
    """The ``n`` won deals closed most recently by ``as_of``.

    They set the activity level of won deals by stage (:func:`won_activity_reference`):
    a few thousand deals give stable medians, and recent wins reflect how the team
    sells now; every won deal would cost the snapshots of the whole history.
    """
    closed = pd.to_datetime(deals["closed_at"], utc=True)
    won = deals[((deals["status"].astype(str) == WON) & (closed <= as_of)).to_numpy()]
    return (
        won.iloc[np.argsort(closed[won.index].to_numpy(), kind="stable")[-n:]]
        if n > 0
        else won.iloc[:0]
    )


def ranking_deals(
    deals: pd.DataFrame, as_of: pd.Timestamp, config: RankConfig
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The deals a ranking reads the history of: the candidates and the reference wins."""
    return select_candidates(deals, as_of, config.lost_window_days), recent_wins(
        deals, as_of, config.reference_won_deals
    )


def _ids(*frames: pd.DataFrame) -> list[str]:
    return [d for f in frames for d in f["deal_id"].astype(str)]


def load_for_ranking(
    crm_dir: Path, as_of: pd.Timestamp, config: RankConfig
) -> dict[str, pd.DataFrame]:
    """The stored CRM tables, with the per-deal tables read for :func:`ranking_deals` only.

    Most activities belong to deals closed long ago; a Parquet filter skips them at read
    time, so memory follows the deals ranked rather than the CRM's whole history.
    """
    path = crm_dir / "deals.parquet"
    if not path.is_file():
        raise RankingError(f"no deals stored in {crm_dir}; run `leadscore ingest EXPORT_DIR` first")
    deals = pd.read_parquet(path)
    wanted = pa.array(_ids(*ranking_deals(deals, as_of, config)), pa.string())
    of_wanted = pc.field("deal_id").cast(pa.string()).isin(wanted)
    tables = {"deals": deals}
    for name in TABLES:
        path = crm_dir / f"{name}.parquet"
        if name != "deals" and path.is_file():
            tables[name] = pd.read_parquet(
                path, filters=of_wanted if name in AFTER_DEAL_CREATION else None
            )
    return tables


#: One batch of deals with the CRM cut to it: (the batch's deals, the tables).
DealBatch = tuple[pd.DataFrame, dict[str, pd.DataFrame]]


class DealBatches:
    """``deals`` ``size`` at a time, each batch with the CRM cut to it: ``deals`` is the
    batch, the per-deal tables (activities, stages, contacts on deals) its rows only.

    Feature sources of a batch hold every change of its deals (the activity source four
    rows per activity), so building them batch by batch keeps memory flat. A batch is
    cut when asked for (``batches[k]``), so a ranking process given only ``k`` cuts its
    own (:func:`rank_deals`).
    """

    def __init__(self, tables: Mapping[str, pd.DataFrame], deals: pd.DataFrame, size: int):
        self.tables, self.deals, self.size = tables, deals, size
        batch_of = pd.Series(
            np.arange(len(deals)) // size, index=deals["deal_id"].astype(str).to_numpy()
        )
        self._codes = {
            name: t["deal_id"].astype(str).map(batch_of).to_numpy()
            for name, t in tables.items()
            if name in AFTER_DEAL_CREATION
        }

    def __len__(self) -> int:
        return -(-len(self.deals) // self.size)

    def __getitem__(self, k: int) -> DealBatch:
        if not 0 <= k < len(self):
            raise IndexError(k)
        tables, codes = self.tables, self._codes
        part = self.deals.iloc[k * self.size : (k + 1) * self.size]
        return part, {
            **tables,
            **{name: tables[name][codes[name] == k] for name in codes},
            "deals": part,
        }

    def __iter__(self) -> Iterator[DealBatch]:
        return (self[k] for k in range(len(self)))


def batches(tables: Mapping[str, pd.DataFrame], deals: pd.DataFrame, size: int) -> DealBatches:
    """``deals`` ``size`` at a time with the CRM cut to each batch (:class:`DealBatches`)."""
    return DealBatches(tables, deals, size)


def track_records(deals: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Account and owner track-record sources, from every deal of the CRM (only these two:
    the other sources of a CRM without its per-deal tables would be thrown away, and the
    revival source alone took 15 of 16 s at 60,000 deals)."""
    return build_feature_sources({"deals": deals}, views=("account_history", "owner_history"))


def own_views(records: Mapping[str, pd.DataFrame]) -> list[str]:
    """Every feature view but those of ``records`` (sources built from the whole CRM)."""
    return [view for view in VIEW_KEYS if view not in records]


#: The lost deals' view: the revival model's inputs, none the win model's.
REVIVAL_VIEW = "deal_revival"


def own_sources(
    tables: Mapping[str, pd.DataFrame],
    records: Mapping[str, pd.DataFrame],
    lost: pd.DataFrame,
    attributes: Sequence[Attribute] = (),
) -> dict[str, pd.DataFrame]:
    """The feature sources of a batch of deals (``tables`` cut to it), with ``records``.

    Built by :func:`build_feature_sources` from the batch's rows, but for the
    ``deal_revival`` view when ``records`` lack it (no revival model): that view is
    then built from the ``lost`` deals' rows alone. The list reads nothing else of it:
    the win model has no field of it, and a lost deal's next step reads its own loss
    (when and why, :func:`with_lost_scores`), which its own rows decide; the open
    deals' past losses are left unbuilt. ``lost`` empty: no loss is read.
    """
    own = own_views(records)
    sources = build_feature_sources(
        tables, attributes=attributes, views=[v for v in own if v != REVIVAL_VIEW]
    )
    if REVIVAL_VIEW in own:
        of_lost = build_feature_sources({**tables, "deals": lost}, views=(REVIVAL_VIEW,))
        sources[REVIVAL_VIEW] = of_lost[REVIVAL_VIEW]
    return {**sources, **records}


def reopened_sources(
    tables: Mapping[str, pd.DataFrame], sources: Mapping[str, pd.DataFrame], deal_ids: Sequence[str]
) -> dict[str, pd.DataFrame]:
    """Feature sources of ``deal_ids`` as if they had not closed: no ``closed`` stage entry.

    Only the stage view depends on the close; the other deal views are kept as built.
    """
    sh = tables.get("stage_history")
    if sh is None:
        return dict(sources)
    mine = sh["deal_id"].astype(str).isin(set(deal_ids)).to_numpy()
    not_closed = (sh["stage"].astype(str).str.lower() != "closed").to_numpy()
    return {**sources, "deal_stage": stage_source(sh[mine & not_closed])}


def without_own_loss(features: pd.DataFrame) -> pd.DataFrame:
    """Take a re-opened deal's own loss out of its account's and owner's track records.

    The loss happened before the moment of scoring, so the history features count it
    once in ``*_prior_closed`` (never in ``*_prior_won``); with no other closed deal the
    record is missing, as for an account or owner without history.
    """
    out = features.copy()
    for prefix in ("account", "owner"):
        closed = out[f"{prefix}_prior_closed"] - 1
        none = closed <= 0
        won = out[f"{prefix}_prior_won"].mask(none)
        out[f"{prefix}_prior_closed"] = closed.mask(none)
        out[f"{prefix}_prior_won"] = won
        out[f"{prefix}_prior_win_rate"] = (won / closed).mask(none)
    return out


def candidate_features(
    tables: Mapping[str, pd.DataFrame],
    sources: Mapping[str, pd.DataFrame],
    candidates: pd.DataFrame,
    as_of: pd.Timestamp,
) -> pd.DataFrame:
    """Every candidate's features as of ``as_of``, in candidate order; lost ones re-opened.

    ``sources`` must hold the candidates' own views and the track records of the whole CRM.
    """
    lost = (candidates[GROUP] == RECENTLY_LOST).to_numpy()
    parts = [
        features_as_of(sources, scoring_entities(candidates[~lost], as_of)).set_axis(
            np.flatnonzero(~lost)
        )
    ]
    if lost.any():
        revived = candidates[lost]
        reopened = reopened_sources(tables, sources, revived["deal_id"].astype(str).tolist())
        feats = without_own_loss(features_as_of(reopened, scoring_entities(revived, as_of)))
        parts.append(feats.set_axis(np.flatnonzero(lost)))
    return pd.concat(parts).sort_index()


def revival_records(tables: Mapping[str, pd.DataFrame], window_days: int) -> pd.DataFrame:
    """The ``deal_revival`` source from every deal of the CRM (with the activities read).

    A batch's own source sees only the batch's deals, so the account's other deals and
    past revivals would be undercounted; training counts every deal, so ranking does too.
    """
    return own_revival_source(
        tables["deals"],
        tables.get("stage_history"),
        tables.get("activities"),
        tables.get("contacts"),
        window_days,
    )


def loss_features(
    sources: Mapping[str, pd.DataFrame], lost: pd.DataFrame, as_of: pd.Timestamp
) -> pd.DataFrame:
    """Lost deals' features as of ``as_of``, nothing re-opened: the revival model's inputs
    (the loss, the engagement since it, the time since it), in ``lost`` order."""
    return features_as_of(sources, scoring_entities(lost, as_of))


def size_band(employees: pd.Series) -> pd.Series:
    """Segment of each account by employee count (see the module doc)."""
    edges = [-np.inf, *(upper for _, upper in SIZE_BANDS[:-1]), np.inf]
    bands = pd.cut(
        pd.to_numeric(employees, errors="coerce"),
        edges,
        right=False,
        labels=[name for name, _ in SIZE_BANDS],
    )
    return bands.astype(object).where(bands.notna(), UNKNOWN_SEGMENT)


# ------------------------------------------------------------------ scoring
_REASON_KEYS: tuple[str, ...] = tuple(_REASON.names)


def _reasons(reasons: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Serving's reasons with the fields the list keeps (the value is in the text)."""
    return [{k: r[k] for k in _REASON_KEYS} for r in reasons]


def listing(
    candidates: pd.DataFrame,
    features: pd.DataFrame,
    explained: Sequence[Explanation],
    flags: Sequence[Sequence[Flag]],
    dormant_days: float,
    activities_logged: bool = True,
) -> pd.DataFrame:
    """The list's rows for scored candidates: who, where, how likely, why, what to do.

    Without an activities table (``activities_logged`` False) no deal is dormant."""
    dormant = is_dormant(features, dormant_days, activities_logged)
    probability = np.array([e["probability"] for e in explained], dtype=float)
    amount = features["amount"].to_numpy(dtype=float)
    group = candidates[GROUP].to_numpy()
    steps = [
        next_step_words([(r["feature"], r["value"]) for r in e["negative_reasons"]], fs)
        for e, fs in zip(explained, flags, strict=True)
    ]
    return pd.DataFrame(
        {
            "deal_id": candidates["deal_id"].astype(str).to_numpy(),
            "account_id": candidates["account_id"].fillna("").astype(str).to_numpy(),
            "owner_id": candidates["owner_id"].fillna("").astype(str).to_numpy(),
            "channel": features["channel"].to_numpy(),
            "industry": features["industry"].to_numpy(),
            "segment": size_band(features["employee_count"]).to_numpy(),
            "stage": features["stage_index"]
            .map(lambda i: STAGE_LEVELS.name(i) if pd.notna(i) else None)
            .to_numpy(),
            GROUP: np.where((group == ACTIVE) & dormant, DORMANT, group),
            "probability": probability,
            "score": np.array([e["score"] for e in explained], dtype=np.int64),
            "grade": [e["grade"] for e in explained],
            "amount": amount,
            "expected_value": probability * amount,
            "positive_reasons": [_reasons(e["positive_reasons"]) for e in explained],
            "negative_reasons": [_reasons(e["negative_reasons"]) for e in explained],
            "risk_flags": [
                [{"code": f.code, "text": f.text, "text_zh": f.text_zh} for f in fs] for fs in flags
            ],
            "next_step": [s[0] for s in steps],
            "next_step_zh": [s[1] for s in steps],
        }
    )


@dataclass
class Scored:
    """Every candidate deal scored, unordered, and the seconds each phase took in all."""

    frame: pd.DataFrame
    seconds: dict[str, float]


class _Clock:
    """Seconds per phase, summed over batches."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase] = round(self.seconds.get(phase, 0.0) + now - self._last, 2)
        self._last = now


def with_lost_scores(
    frame: pd.DataFrame,
    loss: pd.DataFrame,
    as_of: pd.Timestamp,
    revival: RevivalModel | None,
    dormant: DormantScoring | None = None,
) -> pd.DataFrame:
    """The ``model`` and ``meaning`` of every row (``dormant``: how dormant rows were
    scored, :func:`dormant_scoring`; None: as active ones), and a lost row's next step by
    its lost reason and the time since its loss (``loss``: the lost rows'
    :func:`loss_features`, in the order of the lost rows of ``frame``)."""
    out = frame.copy()
    lost = (out[GROUP] == RECENTLY_LOST).to_numpy()
    quiet = (out[GROUP] == DORMANT).to_numpy() & (dormant is not None)
    lost_model = REVIVAL_MODEL if revival is not None else REOPENED_MODEL
    lost_meaning = (
        revival_meaning(revival.horizon_days) if revival is not None else REOPENED_MEANING
    )
    out["model"] = np.select(
        [lost, quiet], [lost_model, dormant.name if dormant else WIN_MODEL], WIN_MODEL
    )
    out["meaning"] = np.select(
        [lost, quiet], [lost_meaning, dormant.meaning if dormant else OPEN_MEANING], OPEN_MEANING
    )
    if lost.any():
        since = (as_of - pd.to_datetime(loss["lost_at"], utc=True)) / pd.Timedelta(days=1)
        reasons = [None if pd.isna(r) else str(r) for r in loss["lost_reason"]]
        out.loc[lost, "next_step"] = [
            lost_next_step(r, d) for r, d in zip(reasons, since, strict=True)
        ]
        out.loc[lost, "next_step_zh"] = [
            lost_next_step_zh(r, d) for r, d in zip(reasons, since, strict=True)
        ]
    return out


def with_fallback_labels(frame: pd.DataFrame, fallback: StageFallback) -> pd.DataFrame:
    """Every row not scored by the revival model labelled as the ``fallback``'s."""
    out = frame.copy()
    mine = (out["model"] != REVIVAL_MODEL).to_numpy()
    out.loc[mine, "model"] = fallback.name
    out.loc[mine, "meaning"] = fallback.meaning()
    return out


@dataclass(frozen=True)
class Batch:
    """One batch of candidates, featurised and checked, waiting for its scores."""

    part: pd.DataFrame
    features: pd.DataFrame
    loss: pd.DataFrame
    lost: np.ndarray
    flags: list[list[Flag]]


@dataclass
class BatchRanker:
    """What a batch of candidates is scored with, and the scoring of one batch.

    Built once per run from the whole CRM (:func:`batch_ranker`: the track records, the
    won-deal activity reference, the explainers); :meth:`rank` then needs only a batch's
    deals and their rows. The local engine calls it batch after batch
    (:func:`rank_deals`); the Spark engine ships it to every group of deals
    (:mod:`leadscore.priority.spark_rank`), so both rank with this one function.
    """

    config: RankConfig
    as_of: pd.Timestamp
    attributes: tuple[Attribute, ...]
    logged: bool
    records: dict[str, pd.DataFrame]
    reference: dict[int, float]
    explain: Callable[[Mapping[str, Sequence[Any]]], list[Explanation]]
    dormant: DormantScoring | None
    dormant_explainer: Explainer | None
    revival: RevivalModel | None
    revival_explainer: Explainer | None
    clock: _Clock = field(default_factory=lambda: _Clock())
    #: Processes :func:`rank_deals` ranks the batches on (:func:`rank_processes`).
    processes: int = 1

    def rank(self, part: pd.DataFrame, part_tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
        """The list's rows of the candidates ``part``; ``part_tables`` hold their rows."""
        batch = self.prepare(part, part_tables)
        explained = self.score(batch)
        self.clock.lap("score and explain")
        return self.rows(batch, explained)

    def prepare(self, part: pd.DataFrame, part_tables: Mapping[str, pd.DataFrame]) -> Batch:
        """A batch's features, its lost deals' revival features and its risk flags: the
        work before scoring."""
        config, as_of, clock, logged = self.config, self.as_of, self.clock, self.logged
        lost = (part[GROUP] == RECENTLY_LOST).to_numpy()
        sources = own_sources(part_tables, self.records, part[lost], self.attributes)
        features = candidate_features(part_tables, sources, part, as_of)
        loss = loss_features(sources, part[lost], as_of)
        del sources
        clock.lap("features")
        flags = risk_flags(features, config.health, self.reference, logged)
        clock.lap("flags and next steps")
        return Batch(part, features, loss, lost, flags)

    def score(self, batch: Batch) -> list[Explanation]:
        """A batch's scores and reasons, each row from the model that scores it. Reads
        only ``batch`` and the explainers, so it may run on another thread."""
        features, lost = batch.features, batch.lost
        columns = model_frame(features, self.attributes)
        explained = self.explain({name: v.tolist() for name, v in columns.items()})
        quiet = (batch.part[GROUP] == ACTIVE).to_numpy() & is_dormant(
            features, self.config.dormant_days, self.logged
        )
        if self.dormant_explainer is not None and quiet.any():
            by_dormant = self.dormant_explainer.explain(
                {name: v.tolist() for name, v in columns[quiet].items()}
            )
            for i, e in zip(np.flatnonzero(quiet).tolist(), by_dormant, strict=True):
                explained[i] = e
        if self.revival_explainer is not None and lost.any():
            by_revival = self.revival_explainer.explain(
                {
                    name: v.tolist()
                    for name, v in model_frame(batch.loss, catalog=revival_catalog()).items()
                }
            )
            for i, e in zip(np.flatnonzero(lost).tolist(), by_revival, strict=True):
                explained[i] = e
        return explained

    def rows(self, batch: Batch, explained: list[Explanation]) -> pd.DataFrame:
        """The list's rows of a scored batch."""
        rows = with_lost_scores(
            listing(
                batch.part,
                batch.features,
                explained,
                batch.flags,
                self.config.dormant_days,
                self.logged,
            ),
            batch.loss,
            self.as_of,
            self.revival,
            self.dormant,
        )
        self.clock.lap("flags and next steps")
        return rows

    def empty(self, candidates: pd.DataFrame) -> pd.DataFrame:
        """The list with no candidate: no row, every column."""
        return with_lost_scores(
            listing(candidates, model_frame(candidates), [], [], 0),
            candidates,
            self.as_of,
            self.revival,
            self.dormant,
        )


def batch_ranker(
    tables: Mapping[str, pd.DataFrame],
    model: ScoringModel | StageFallback,
    as_of: pd.Timestamp,
    config: RankConfig = RankConfig(),
    snapshot_every_days: int = SNAPSHOT_EVERY_DAYS,
    revival: RevivalModel | None = None,
    progress: Progress = no_progress,
    in_processes: bool = False,
) -> tuple[pd.DataFrame, BatchRanker]:
    """The candidates of ``tables`` at ``as_of``, and the :class:`BatchRanker` to score them.

    The track records and the won-deal activity reference come from the whole CRM here,
    once, so that a batch of candidates needs nothing but its own rows. ``in_processes``:
    the batches will be ranked on :func:`rank_processes` processes, which share the
    ``config.threads`` cores, so each explains on its share of them.
    """
    attributes = model.attributes if isinstance(model, ScoringModel) else ()
    clock = _Clock()
    candidates, wins = ranking_deals(tables["deals"], as_of, config)
    processes = rank_processes(config, len(candidates)) if in_processes else 1
    threads = max(1, config.threads // processes)
    log.info("ranking %s deals as of %s", f"{len(candidates):,}", as_of.isoformat())
    progress("rank", 0, len(candidates), unit="deals", detail="activity reference")
    records = track_records(tables["deals"])
    if revival is not None:
        records[REVIVAL_VIEW] = revival_records(tables, revival.window_days)
    reference: dict[int, float] = {}
    for part, part_tables in batches(tables, wins, max(len(wins), 1)):  # one batch
        sources = own_sources(part_tables, records, part.iloc[:0])  # won: no loss read
        reference = won_activity_reference(sources, part, snapshot_every_days)
    clock.lap("activity reference")
    explain: Callable[[Mapping[str, Sequence[Any]]], list[Explanation]]
    if isinstance(model, ScoringModel):
        explain = Explainer(
            model, config.grade_thresholds, max_reasons=config.max_reasons, threads=threads
        ).explain
        dormant: DormantScoring | None = dormant_scoring(model)
    else:
        explain = functools.partial(model.explain, grade_thresholds=config.grade_thresholds)
        dormant = None
    dormant_explainer = (
        Explainer(
            dormant.model,
            config.grade_thresholds,
            max_reasons=config.max_reasons,
            threads=threads,
        )
        if dormant is not None and dormant.model is not None
        else None
    )
    revival_explainer = (
        Explainer(
            revival.model,
            config.grade_thresholds,
            max_reasons=config.max_reasons,
            catalog=revival_catalog(),
            threads=threads,
        )
        if revival is not None
        else None
    )
    ranker = BatchRanker(
        config,
        as_of,
        tuple(attributes),
        "activities" in tables,
        records,
        reference,
        explain,
        dormant,
        dormant_explainer,
        revival,
        revival_explainer,
        clock,
        processes,
    )
    return candidates, ranker


def finish_ranking(
    frame: pd.DataFrame, model: ScoringModel | StageFallback, seconds: dict[str, float]
) -> Scored:
    """Every candidate's row, labelled as the fallback's when ``model`` is one."""
    if isinstance(model, StageFallback):
        frame = with_fallback_labels(frame, model)
    log.info(
        "ranked %s deals: %s",
        f"{len(frame):,}",
        ", ".join(f"{k} {v:,}" for k, v in frame[GROUP].value_counts().items()),
    )
    return Scored(frame, seconds)


def rank_deals(
    tables: Mapping[str, pd.DataFrame],
    model: ScoringModel | StageFallback,
    as_of: pd.Timestamp,
    config: RankConfig = RankConfig(),
    snapshot_every_days: int = SNAPSHOT_EVERY_DAYS,
    progress: Progress = no_progress,
    revival: RevivalModel | None = None,
) -> Scored:
    """Select, featurise, score, explain and check every candidate deal at ``as_of``.

    Deals go through in batches of ``config.batch_size``: features, scores and reasons
    from :class:`~leadscore.model.explain.Explainer`, risk flags and next steps; each batch is
    logged and counted to ``progress`` (task ``rank``, in deals).
    ``snapshot_every_days`` is the training snapshot interval, used for the won-deal
    activity reference of the low-activity rule. With ``revival``, recently lost deals
    take its probability and reasons (see the module doc); without, the win model's as
    if re-opened. A :class:`~leadscore.model.fallback.StageFallback` as ``model`` scores
    every other row, each labelled as its (:func:`with_fallback_labels`).
    """
    candidates, ranker = batch_ranker(
        tables, model, as_of, config, snapshot_every_days, revival, progress, in_processes=True
    )
    size = even_batch_size(len(candidates), config.batch_size, ranker.processes)
    parts = batches(tables, candidates, size)
    rows, done, started = [], 0, time.perf_counter()
    for ranked in _ranked_batches(ranker, parts):
        rows.append(ranked)
        done += len(ranked)
        log.info(
            "ranked %s/%s deals (%.0f deals/s)",
            f"{done:,}",
            f"{len(candidates):,}",
            done / max(time.perf_counter() - started, 1e-9),
        )
        progress("rank", done, len(candidates), unit="deals")
    # No candidate: an empty list with every column.
    frame = pd.concat(rows, ignore_index=True) if rows else ranker.empty(candidates)
    return finish_ranking(frame, model, ranker.clock.seconds)


def rank_processes(config: RankConfig, candidates: int) -> int:
    """Processes :func:`rank_deals` ranks ``candidates`` deals on: one per core it may use
    (``config.threads``), at most one per batch; one where processes cannot be forked."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return 1
    return max(1, min(config.threads, -(-candidates // config.batch_size)))


def even_batch_size(deals: int, size: int, processes: int) -> int:
    """The batch size, at most ``size``, that splits ``deals`` into batches of nearly one
    size, as many as a multiple of ``processes`` (with more than one): each process then
    ranks as many deals. 34,447 deals in batches of 10,000 on two processes were two
    batches for one and 14,447 deals for the other; batches of 8,612 even them. The rows
    are those of any batch size (``test_batches_rank_exactly_as_one_batch``)."""
    if processes <= 1 or deals <= 0:
        return size
    count = -(-deals // size)
    count = -(-count // processes) * processes
    return -(-deals // count)


#: What a forked ranking process ranks: its parent's ranker and batches (:func:`_adopt`).
_FORKED: tuple[BatchRanker, DealBatches] | None = None


def _adopt(ranker: BatchRanker, parts: DealBatches) -> None:
    """A forked ranking process's start: the parent's ranker and batches, inherited in
    memory, not pickled (the stored tables are the CRM's).

    Its output goes to the process's own stdout and stderr: the parent's may be a
    progress display's proxies (the CLI's Rich bars), whose lock a thread of the parent
    (the display's refresh) may have held at the fork, and would hold forever here.
    """
    global _FORKED
    _FORKED = (ranker, parts)
    sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__


def _rank_forked(k: int) -> tuple[pd.DataFrame, dict[str, float]]:
    """Batch ``k`` ranked in a forked process: its rows and the seconds of its phases."""
    assert _FORKED is not None, "not a ranking process"
    ranker, parts = _FORKED
    ranker.clock = _Clock()
    # No cyclic collection during a batch: its tens of thousands of reasons (dicts, lists)
    # set off collections that scanned them again and again, some 10% of a batch's CPU
    # (issue 14). What cycles a batch leaves are collected after it, as usual.
    gc.disable()
    try:
        return ranker.rank(*parts[k]), ranker.clock.seconds
    finally:
        gc.enable()


def _ranked_batches(ranker: BatchRanker, parts: DealBatches) -> Iterator[pd.DataFrame]:
    """Each batch's rows, in order: ranked here, or on ``ranker.processes`` processes.

    A batch's work holds the GIL most of the time (pandas, the reasons in Python; only
    TreeSHAP releases it), so threads in one process mostly take turns: the features of
    one batch on a thread beside another's scores ran at about one core (issue 14,
    docs/scaling.md). Forked processes each rank whole batches, one explaining thread
    each, and share the stored tables copy-on-write; only a batch's number goes to a
    process and its rows come back. Phases are summed over batches, and so over the
    processes; ``batches`` is the wall time of them all.
    """
    if ranker.processes <= 1 or len(parts) <= 1:
        for part, part_tables in parts:
            yield ranker.rank(part, part_tables)
        return
    for explainer in (ranker.explain, ranker.dormant_explainer, ranker.revival_explainer):
        # Each booster's trees compiled once here, not in every process.
        model = getattr(explainer, "__self__", explainer)
        if isinstance(model, Explainer):
            model.model.prepare_contributions()
    # The parent's objects (the stored tables' text, the track records) are frozen out of
    # the cyclic collector before the fork: no process scans them, nor copies their pages
    # by writing the collector's marks (Python's advice for forking servers).
    gc.freeze()
    try:
        with ProcessPoolExecutor(
            ranker.processes,
            mp_context=multiprocessing.get_context("fork"),
            initializer=_adopt,
            initargs=(ranker, parts),
        ) as pool:
            for ranked, seconds in pool.map(_rank_forked, range(len(parts))):
                for phase, spent in seconds.items():
                    ranker.clock.seconds[phase] = round(
                        ranker.clock.seconds.get(phase, 0.0) + spent, 2
                    )
                yield ranked
    finally:
        gc.unfreeze()
    ranker.clock.lap("batches")


def order_ranked(frame: pd.DataFrame, by: RankBy = DEFAULT_RANK_BY) -> pd.DataFrame:
    """Best first by ``by``, then probability, then deal id; ``rank`` numbers the rows from 1."""
    if by not in RANK_BY:
        raise ValueError(f"rank by {by!r}: must be one of {', '.join(RANK_BY)}")
    out = frame.sort_values(
        [by, "probability", "deal_id"],
        ascending=[False, False, True],
        na_position="last",
        kind="stable",
    ).reset_index(drop=True)
    out.insert(0, "rank", np.arange(1, len(out) + 1))
    return out


# ------------------------------------------------------------------ score history
def _safe(name: str) -> str:
    return re.sub(r"[^\w.-]", "_", name)


#: A temporary history file older than this was left by a killed run: a running rank
#: writes its file in well under a second, so one this old is nobody's.
LEFTOVER_AGE_SECONDS = 3600


def sweep_leftovers(history_dir: Path, now: float | None = None) -> list[Path]:
    """Remove the ``.*.tmp`` files a killed ``rank`` left in the score history.

    A rank killed between writing and renaming leaves its temporary file behind; the
    next run on the same day writes over it, but one from an earlier day would stay
    forever. Only files older than :data:`LEFTOVER_AGE_SECONDS` go, so a rank running
    at the same moment keeps its own. Returns the removed paths.
    """
    if not history_dir.is_dir():
        return []
    cutoff = (time.time() if now is None else now) - LEFTOVER_AGE_SECONDS
    removed = []
    for tmp in history_dir.glob("run_date=*/model_version=*/.*.tmp"):
        try:
            if tmp.stat().st_mtime < cutoff:
                tmp.unlink()
                removed.append(tmp)
        except FileNotFoundError:  # renamed or removed by another run meanwhile
            continue
    if removed:
        log.info("removed %d leftover file(s) of killed rank runs in %s", len(removed), history_dir)
    return removed


def record_scores(
    history_dir: Path,
    scored: pd.DataFrame,
    run_date: date,
    model_version: str,
    scored_at: pd.Timestamp,
) -> Path:
    """Write one run's scores as the history file of (``run_date``, ``model_version``),
    after removing what killed runs left (:func:`sweep_leftovers`)."""
    sweep_leftovers(history_dir)
    rows = scored.assign(run_date=run_date, model_version=model_version, scored_at=scored_at)
    path = (
        history_dir
        / f"run_date={run_date.isoformat()}"
        / f"model_version={_safe(model_version)}"
        / "scores.parquet"
    )
    # A frame without ``model`` (scored before the column) is recorded without it.
    columns = [c for c in HISTORY_COLUMNS if c in rows]
    table = _typed_table(rows[columns])
    replace_file(path, lambda p: pq.write_table(table, p))
    return path


def run_dates(history_dir: Path) -> list[date]:
    """Dates with recorded runs, oldest first."""
    if not history_dir.is_dir():
        return []
    return sorted(
        date.fromisoformat(p.name.removeprefix("run_date="))
        for p in history_dir.glob("run_date=*")
        if p.is_dir()
    )


def load_history(
    history_dir: Path, dates: Iterable[date] | None = None, columns: Sequence[str] | None = None
) -> pd.DataFrame:
    """Recorded scores (every model) of the given run dates, or of all of them.

    ``columns``: only those a file holds of them are read. The change and the trend
    read a few numbers per deal; the reasons are most of a file and cost most to read
    (a list of structures per deal), so they stay on disk.
    """
    wanted = run_dates(history_dir) if dates is None else list(dates)
    files = [
        f
        for d in wanted
        for f in sorted((history_dir / f"run_date={d.isoformat()}").glob("*/scores.parquet"))
    ]
    if not files:
        return pd.DataFrame(
            {c: pd.Series(dtype=object) for c in HISTORY_COLUMNS if columns is None or c in columns}
        )

    def read(f: Path) -> pd.DataFrame:
        if columns is None:
            return pd.read_parquet(f)
        held = set(pq.read_schema(f).names)
        return pd.read_parquet(f, columns=[c for c in columns if c in held])

    return pd.concat([read(f) for f in files], ignore_index=True)


#: The history's columns a deal's change and its trend read (:func:`_latest_per_date` too).
_TREND_COLUMNS = ("run_date", "scored_at", "deal_id", "probability")
_CHANGE_COLUMNS = (*_TREND_COLUMNS, "model")


def _latest_per_date(history: pd.DataFrame) -> pd.DataFrame:
    """One row per deal and run date: the last scored that day (models may differ)."""
    return history.sort_values(["run_date", "scored_at"], kind="stable").drop_duplicates(
        ["deal_id", "run_date"], keep="last"
    )


def previous_probabilities(history_dir: Path, run_date: date) -> pd.Series:
    """Probability per deal at the latest run before ``run_date`` (empty when none)."""
    return previous_scores(history_dir, run_date)["probability"].astype(float)


def previous_scores(history_dir: Path, run_date: date) -> pd.DataFrame:
    """Per deal (index), ``probability`` and ``model`` at the latest run before ``run_date``
    (``model`` missing for runs recorded before the column existed; empty when none)."""
    earlier = [d for d in run_dates(history_dir) if d < run_date]
    if not earlier:
        return pd.DataFrame(
            {"probability": pd.Series(dtype=float), "model": pd.Series(dtype=object)}
        )
    last = _latest_per_date(load_history(history_dir, earlier[-1:], _CHANGE_COLUMNS)).set_index(
        "deal_id"
    )
    if "model" not in last:
        last["model"] = None
    return last[["probability", "model"]]


def score_change(frame: pd.DataFrame, before: pd.DataFrame) -> np.ndarray:
    """Probability change per row of ``frame`` since ``before`` (:func:`previous_scores`).

    Missing when the deal was not scored then, or was scored by another model (a lost deal
    first scored by the revival model after the as-if-re-opened score): two numbers that
    mean different things do not make a change.
    """
    then = before.reindex(frame["deal_id"])
    change = frame["probability"].to_numpy() - then["probability"].to_numpy(dtype=float)
    other = then["model"].notna().to_numpy() & (
        then["model"].to_numpy(dtype=object) != frame["model"].to_numpy(dtype=object)
    )
    return np.where(other, np.nan, change)


def score_trends(history_dir: Path, run_date: date, runs: int = TREND_RUNS) -> pd.Series:
    """Per deal, its probabilities over the last ``runs`` run dates up to ``run_date``."""
    dates = [d for d in run_dates(history_dir) if d <= run_date][-runs:]
    history = _latest_per_date(load_history(history_dir, dates, _TREND_COLUMNS))
    # What ``groupby(sort=False).agg(list)`` gives (deals in order of first appearance,
    # each deal's runs in row order), without a Python call per deal.
    codes, deals = pd.factorize(history["deal_id"], sort=False)
    if not len(deals):
        return pd.Series([], index=pd.Index([], name="deal_id"), name="probability", dtype=object)
    order = np.argsort(codes, kind="stable")
    runs_of = np.split(
        history["probability"].to_numpy(dtype=float)[order],
        np.cumsum(np.bincount(codes, minlength=len(deals)))[:-1],
    )
    return pd.Series(
        [p.tolist() for p in runs_of],
        index=pd.Index(deals, name="deal_id"),
        name="probability",
        dtype=object,
    )


# ------------------------------------------------------------------ files
def _csv_frame(ranked: pd.DataFrame) -> pd.DataFrame:
    """List columns flattened to text for spreadsheets."""

    def texts(items: Any) -> str:
        return "; ".join(str(i["text"]) for i in items)

    out = ranked.copy()
    for col in ("positive_reasons", "negative_reasons", "risk_flags"):
        out[col] = out[col].map(texts)
    out["trend"] = out["trend"].map(lambda ps: " ".join(f"{p:.3f}" for p in ps))
    for col in out.columns:
        column = out[col]
        if pd.api.types.is_datetime64_any_dtype(column) and len(column) > 1:
            first = column.iloc[:1]
            if first.notna().all() and bool((column == first.iloc[0]).all()):
                # One moment on every row (``as_of``): formatted once, as pandas' CSV
                # writer formats it (``astype(str)`` runs the same formatter), where
                # the writer formatted it row by row: 0.2 s of 0.4 for 34,447 rows.
                out[col] = str(first.astype(str).iloc[0])
    return out


def _typed_table(frame: pd.DataFrame) -> pa.Table:
    """``frame`` as Arrow, its list columns (those present) typed by :data:`_LIST_TYPES`,
    so an empty list is still a list of reasons when read back."""
    # The other columns' types inferred, the list columns' given: converted once each,
    # where inferring the lists' types converted every reason twice (2 s of 4 at 35,000).
    lists = [col for col in frame.columns if col in _LIST_TYPES]
    inferred = pa.Schema.from_pandas(frame.drop(columns=lists), preserve_index=False)
    schema = pa.schema(
        [
            pa.field(col, _LIST_TYPES[col]) if col in _LIST_TYPES else inferred.field(col)
            for col in frame.columns
        ]
    )
    return pa.Table.from_pandas(frame, schema=schema, preserve_index=False)


def write_ranked(ranked: pd.DataFrame, out_dir: Path) -> dict[str, Path]:
    """The ranked list as Parquet (typed list columns) and CSV (UTF-8 with BOM, for Excel)."""
    parquet, csv = out_dir / f"{RANKED_FILE}.parquet", out_dir / f"{RANKED_FILE}.csv"
    table = _typed_table(ranked)
    replace_file(parquet, lambda p: pq.write_table(table, p))
    replace_file(csv, lambda p: write_csv(_csv_frame(ranked), p, encoding="utf-8-sig"))
    return {"parquet": parquet, "csv": csv}


def read_ranked(source: Path) -> pd.DataFrame:
    """The ranked list written by the last ``leadscore rank`` into ``source``."""
    path = source / f"{RANKED_FILE}.parquet"
    if not path.is_file():
        raise RankingError(f"no ranked list in {source}; run `leadscore rank` first")
    return pd.read_parquet(path)


# ------------------------------------------------------------------ the run
@dataclass
class RankRun:
    """What one ``leadscore rank`` did."""

    #: The written list: filtered, ordered, cut to ``top``.
    ranked: pd.DataFrame
    #: Deals scored (and recorded in the history) by priority group, before any filter.
    scored: dict[str, int]
    model_version: str
    run_date: date
    paths: dict[str, Path]
    seconds: dict[str, float]
    #: The moment of ranking, and why when it is not now (:func:`default_as_of`).
    as_of: pd.Timestamp | None = None
    as_of_note: str | None = None
    #: The revival model's version when it scored the lost deals, else None.
    revival_version: str | None = None
    #: Lost deals not listed for age, and the age limit in days.
    lost_left_out: int = 0
    lost_window_days: float = LOST_WINDOW_DAYS


def default_as_of(crm_dir: Path, now: pd.Timestamp) -> tuple[pd.Timestamp, str | None]:
    """The moment to rank or score stored deals at when none is given, and why if not ``now``.

    ``now``, unless the export's last recorded event is more than a day before it
    (:func:`leadscore.crm.ingest.historical_as_of`): a historical export is looked at as
    of its own last event, and the sentence says so.
    """
    last = historical_as_of(crm_dir, now)
    if last is None:
        return now, None
    return last, (
        f"ranked as of {last:%Y-%m-%d}, the export's last recorded event; pass --as-of to change"
    )


def run_rank(
    settings: Settings,
    model: ScoringModel | StageFallback,
    model_version: str,
    out_dir: Path,
    config: RankConfig = RankConfig(),
    filters: Filters = Filters(),
    by: RankBy = DEFAULT_RANK_BY,
    top: int | None = None,
    as_of: pd.Timestamp | None = None,
    progress: Progress = no_progress,
    revival: RevivalModel | None | Literal["champion"] = "champion",
    engine: str = LOCAL_ENGINE,
) -> RankRun:
    """Rank the stored CRM's deals with ``model``, record the scores, write the list.

    Every candidate is scored and recorded in the history; filters and ``top`` only
    shape the written list, so a filtered run never loses another owner's history.
    ``as_of`` defaults to :func:`default_as_of`. Recently lost deals are scored by
    ``revival``: by default the registered revival champion (:func:`revival_champion`),
    as if re-opened by ``model`` when there is none (or ``revival`` is None). ``engine``
    ``spark`` scores the candidates on Spark (:mod:`leadscore.priority.spark_rank`), row
    for row as the local engine does.
    """
    note = None
    if as_of is None:
        as_of, note = default_as_of(settings.crm_dir, pd.Timestamp.now(tz="UTC"))
    with ThreadPoolExecutor(1, thread_name_prefix="rank-read") as reader:
        # The stored tables are read while the revival champion loads (the registry, the
        # model's files): Parquet decoding releases the GIL, so the two overlap.
        reading = reader.submit(load_for_ranking, settings.crm_dir, as_of, config)
        if revival == "champion":
            revival = revival_champion(settings)
        tables = reading.result()
    left_out = lost_left_out(tables["deals"], as_of, config.lost_window_days)
    if engine == SPARK_ENGINE:
        from leadscore.features.spark_engine import spark_session
        from leadscore.priority.spark_rank import spark_rank_deals

        scored = spark_rank_deals(
            spark_session(settings),
            tables,
            model,
            as_of,
            config,
            settings.snapshot_every_days,
            progress,
            revival,
        )
    else:
        scored = rank_deals(
            tables, model, as_of, config, settings.snapshot_every_days, progress, revival
        )
    clock = time.perf_counter()
    frame, run_date = scored.frame, as_of.date()
    frame["as_of"] = as_of
    history = out_dir / HISTORY_DIR
    frame["change"] = score_change(frame, previous_scores(history, run_date))
    paths = {
        "history": record_scores(
            history, frame, run_date, model_version, pd.Timestamp.now(tz="UTC")
        )
    }
    frame["trend"] = score_trends(history, run_date).reindex(frame["deal_id"]).to_numpy()
    frame["model_version"] = model_version
    frame["revival_model_version"] = revival.version if revival is not None else None
    frame["lost_window_days"] = float(config.lost_window_days)
    frame["lost_left_out"] = left_out
    listed = order_ranked(filters.apply(frame), by)
    if top is not None:
        listed = listed.head(top)
    paths |= write_ranked(listed, out_dir)
    scored.seconds["history and files"] = round(time.perf_counter() - clock, 2)
    log.info(
        "wrote %s of %s ranked deals to %s", f"{len(listed):,}", f"{len(frame):,}", paths["parquet"]
    )
    return RankRun(
        listed,
        frame[GROUP].value_counts().to_dict(),
        model_version,
        run_date,
        paths,
        scored.seconds,
        as_of,
        note,
        revival.version if revival is not None else None,
        left_out,
        config.lost_window_days,
    )
