"""Feature store steps: apply the Feast repo, materialize, build training frames.

The sources they read are written by :func:`leadscore.features.featurize.write_sources`,
which needs no Feast (an ingest does not pay for importing it).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import string
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

# isort: off
from leadscore.parquetio import writer_options
from leadscore.features import feast_runtime  # noqa: F401  (before Feast: see there)
from feast import FeatureService, FeatureStore, RepoConfig

# isort: on
from pydantic import ValidationError

from leadscore.config import REVIVAL_FEATURE_SERVICE, Settings, feast_environment
from leadscore.crm.attributes import Attribute, feature_attributes, read_attributes
from leadscore.crm.contract import UNDATED
from leadscore.crm.ingest import load_stored
from leadscore.features.catalog import attribute_features
from leadscore.features.featurize import (
    DEAL_STATUS,
    OPTIONAL_VIEWS,
    TS,
    VIEW_KEYS,
    WINDOW_COUNT_INPUTS,
    snapshot_entities,
)
from leadscore.noise import hidden
from leadscore.progress import Progress, no_progress

log = logging.getLogger(__name__)

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class FeatureStoreError(RuntimeError):
    """A feature store step cannot run; the message says what to do."""


def repo_config(settings: Settings) -> RepoConfig:
    """The repo's ``feature_store*.yaml`` as Feast reads it, variables filled in by leadscore.

    Feast expands ``${VAR}`` from the environment and keeps an unset one as written; here
    the values come from :func:`leadscore.config.feast_environment`, so the Redis config
    works in a shell where ``LEADSCORE_REDIS`` is not set (its default is in settings),
    and no step has to set process environment variables for Feast to see.
    """
    path = settings.feature_repo / settings.feature_store_yaml
    raw = _raw_config(settings)
    try:
        config = RepoConfig(**raw)
    except ValidationError as exc:
        raise FeatureStoreError(f"{path} is not a valid Feast configuration: {exc}") from exc
    config.repo_path = settings.feature_repo
    # Built now rather than on first use, without Feast's notice that the registry's
    # `serve_features_while_materializing` does nothing for a file registry: it does here
    # (the service re-reads the file at every change; features/feature_store.yaml).
    with hidden():
        _ = config.registry
    return config


def _raw_config(settings: Settings) -> dict:
    path = settings.feature_repo / settings.feature_store_yaml
    text = string.Template(path.read_text(encoding="utf-8"))
    return yaml.safe_load(text.safe_substitute(feast_environment(settings)))


def on_spark(settings: Settings) -> bool:
    """Whether the configured ``feature_store*.yaml`` has Feast's Spark offline store.

    The repo's ``data_sources.py`` asks, to declare its sources for that store (a
    ``SparkSource`` over the same Parquet file where the DuckDB store reads a
    ``FileSource``), and the steps ask, to start the Spark session Feast then uses.
    """
    return _raw_config(settings).get("offline_store", {}).get("type") == "spark"


def _start_engine(settings: Settings) -> bool:
    """Ready the engine Feast's offline store runs on, and say whether it is Spark.

    With the Spark configuration, start the session of ``--engine spark`` before Feast
    asks for one: Feast takes the session already running, so its point-in-time joins
    and materialization run where :func:`~leadscore.features.spark_engine.spark_session`
    says (``LEADSCORE_SPARK_MASTER``, times in UTC, workers on this interpreter).
    Otherwise cap the local DuckDB's memory (:func:`limit_duckdb`)."""
    if not on_spark(settings):
        limit_duckdb(settings)
        return False
    from leadscore.features.spark_engine import spark_session

    spark_session(settings)
    return True


def open_store(settings: Settings) -> FeatureStore:
    """Open the Feast repo with the configured ``feature_store*.yaml``."""
    return FeatureStore(repo_path=str(settings.feature_repo), config=repo_config(settings))


def limit_duckdb(settings: Settings) -> None:
    """Cap the memory of the DuckDB that Feast's local offline store runs its SQL in, and
    have it spill the rest to :attr:`Settings.duckdb_spill_dir`.

    Feast reads the sources through ibis's default backend, one in-memory DuckDB per
    process, whose own limit is 80% of the machine and whose spill folder is ``.tmp`` in
    the working directory. Its joins, sorts and windows spill past the limit, so the
    materialization's window over every row of a view (each key's latest) and a chunk's
    join stay within :attr:`Settings.duckdb_memory`.
    """
    import ibis

    settings.duckdb_spill_dir.mkdir(parents=True, exist_ok=True)
    con = ibis.get_backend()
    con.raw_sql(f"SET memory_limit = '{settings.duckdb_memory}'")
    con.raw_sql(f"SET temp_directory = '{settings.duckdb_spill_dir}'")


def is_applied(settings: Settings) -> bool:
    """Whether the registry holds the configured feature service: the repo was applied.

    A read of the registry, seconds cheaper than ``feast apply`` (a process that imports
    Feast and the repo): ``leadscore retrain`` applies only a repo never applied, and a
    change of ``features/`` is applied by ``leadscore features apply`` when it is deployed.
    """
    try:
        open_store(settings).get_feature_service(settings.feature_service)
    except Exception:  # no registry yet, or a registry without the service
        return False
    return True


def apply_repo(settings: Settings, progress: Progress = no_progress) -> str:
    """Run ``feast apply`` on the repo and return its output.

    A subprocess rather than Feast's Python entry point: that one changes the working
    directory and caches the repo's modules by bare name, which breaks a second repo
    in the same process. ``progress`` hears its start and end (task ``feast apply``):
    nothing in between can be counted.
    """
    missing = [
        v
        for v in VIEW_KEYS
        if v not in OPTIONAL_VIEWS and not (settings.sources_dir / f"{v}.parquet").exists()
    ]
    if missing:
        raise FeatureStoreError(
            f"feature sources missing in {settings.sources_dir}: {', '.join(missing)}; "
            "run `leadscore ingest EXPORT_DIR` first"
        )
    feast = Path(sys.executable).with_name("feast")
    cmd = [
        str(feast),
        "-c",
        str(settings.feature_repo),
        "-f",
        str(settings.feature_repo / settings.feature_store_yaml),
        "apply",
    ]
    if on_spark(settings):
        # Feast would validate each SparkSource by reading it in a Spark session of the
        # `feast` process: a JVM started (on a cluster, an application submitted) at every
        # apply, 40 s more on two loaded cores, to check files checked above, which every
        # training set and materialization then reads with the session of its own step.
        cmd.append("--skip-source-validation")
    progress("feast apply", 0, None, detail=settings.feature_store_yaml)
    proc = subprocess.run(
        cmd, capture_output=True, text=True, check=False, env=feast_environment(settings)
    )
    progress("feast apply", 1, 1)
    if proc.returncode != 0:
        raise FeatureStoreError(f"feast apply failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def materialize(
    settings: Settings,
    end: datetime | None = None,
    full: bool = False,
    progress: Progress = no_progress,
) -> datetime:
    """Load the latest feature values up to ``end`` (default now) into the online store.

    Incremental by default: each run only reads source rows newer than the previous
    run's end, as recorded in the registry. ``full`` reloads the whole history, which
    is what a new or switched online store needs (the registry's record belongs to
    the repo, not to one store); a view's first run loads its whole history too. Every deal is loaded, closed ones too: recently lost
    deals are scored for revival.

    One view at a time, as Feast's local engine does anyway, so ``progress`` can count
    views (task ``materialize``). Feast prints its own account to stdout; it is logged
    at debug level instead, so a command's stdout carries only its result. With the Spark
    configuration (``--engine spark``) Feast's Spark compute engine loads each view: a
    Spark job reads the source, keeps each key's latest row and writes it from the
    executors to the online store.
    """
    end = end or datetime.now(UTC)
    store = open_store(settings)
    _start_engine(settings)
    online = [view for view in store.list_feature_views() if view.online and view.enabled]
    views = [view.name for view in online]
    # A view never loaded starts at UNDATED, not at Feast's default (its ttl before now),
    # which would leave out undated deals and the older part of a historical export.
    first = {view.name for view in online if view.most_recent_end_time is None}
    for done, view in enumerate(views):
        progress("materialize", done, len(views), unit="views", detail=view)
        with contextlib.redirect_stdout(io.StringIO()) as said:
            if full or view in first:
                store.materialize(
                    start_date=UNDATED.to_pydatetime(), end_date=end, feature_views=[view]
                )
            else:
                store.materialize_incremental(end_date=end, feature_views=[view])
        log.debug("feast materialize %s:\n%s", view, _ANSI.sub("", said.getvalue()).strip())
    progress("materialize", len(views), len(views), unit="views")
    return end


@dataclass(frozen=True)
class TrainingFrame:
    frame: pd.DataFrame
    feature_service: str
    #: The stored custom attributes known before close, whose features the frame holds.
    attributes: tuple[Attribute, ...] = ()


def feature_refs(
    store: FeatureStore, feature_service: str, attributes: Sequence[Attribute]
) -> FeatureService | list[str]:
    """What to retrieve: the feature service, plus the ``deal_attributes`` features of
    ``attributes`` known before close.

    The service is a released, fixed set; custom attributes differ from one export to
    the next, so their view (declared by the Feast repo from the stored
    ``attributes.json``) is asked for by feature reference beside it.
    """
    service = store.get_feature_service(feature_service)
    extra = [f"deal_attributes:{f.name}" for f in attribute_features(attributes)]
    if not extra:
        return service
    refs = [
        f"{p.name_to_use()}:{f.name}" for p in service.feature_view_projections for f in p.features
    ]
    return [*refs, *extra]


@dataclass(frozen=True)
class TrainingParts:
    """A training frame not yet put together: its snapshots and their joined rows a chunk
    of deals at a time.

    ``parts`` yields each chunk's rows with their positions in ``entities`` (keys, moment
    and labels of every snapshot, a row each), in the order of :func:`_historical_parts`;
    it is iterated once. A consumer that puts each chunk's rows in place as it comes
    (:func:`training.data.canonical_from_parts`) never holds the chunks and the whole frame
    at once, as :func:`training_frame`'s concatenation does for a moment.
    """

    entities: pd.DataFrame
    parts: Iterator[tuple[np.ndarray, pd.DataFrame]]
    feature_service: str
    #: The stored custom attributes known before close, whose features the rows hold.
    attributes: tuple[Attribute, ...] = ()


def training_parts(
    settings: Settings,
    deals: pd.DataFrame,
    every_days: int | None = None,
    progress: Progress = no_progress,
) -> TrainingParts:
    """:func:`training_frame`'s rows, a chunk of deals at a time (``leadscore train``)."""
    entities, attributes = _training_entities(settings, deals, every_days)
    parts = _historical_parts(settings, entities, settings.feature_service, attributes, progress)
    return TrainingParts(entities, parts, settings.feature_service, attributes)


def training_frame(
    settings: Settings,
    deals: pd.DataFrame,
    every_days: int | None = None,
    progress: Progress = no_progress,
) -> TrainingFrame:
    """Snapshots of closed deals while open, joined point-in-time through Feast.

    Rows keep the entity keys, the snapshot moment (``event_timestamp``), when the
    deal was created and closed, and the label ``won``; the rest are model features.
    ``progress`` (task ``training set``) counts the snapshots joined, a chunk of deals at
    a time (:func:`_historical_parts`). Custom attributes known before close (the stored
    ``attributes.json``) are features too.
    """
    tp = training_parts(settings, deals, every_days, progress)
    frame = _historical(tp.parts)
    log.info("training frame: %d snapshots of %d deals", len(frame), frame["deal_id"].nunique())
    return TrainingFrame(frame=frame, feature_service=tp.feature_service, attributes=tp.attributes)


@dataclass(frozen=True)
class TrainingSetFile:
    """What :func:`write_training_set` wrote: snapshots, closed deals, the share won and
    the first and last snapshot moments."""

    path: Path
    snapshots: int
    deals: int
    win_rate: float
    first: pd.Timestamp
    last: pd.Timestamp


def write_training_set(
    settings: Settings,
    deals: pd.DataFrame,
    out: Path,
    every_days: int | None = None,
    progress: Progress = no_progress,
) -> TrainingSetFile:
    """:func:`training_frame`'s rows written to the Parquet file ``out`` a chunk of deals at
    a time, so memory holds one chunk and never the whole frame (``leadscore
    training-set``). The same rows as the frame's; in its order when the deals are sorted by
    id (as stored), else in ranges of deal ids. A text column with no value in the first
    chunk is declared text, so later chunks with values fit the file's schema.
    """
    entities, attributes = _training_entities(settings, deals, every_days)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    writer: pq.ParquetWriter | None = None
    snapshots = won = n_deals = 0
    first = last = None
    try:
        for _, part in _historical_parts(
            settings, entities, settings.feature_service, attributes, progress
        ):
            table = pa.Table.from_pandas(part, preserve_index=False)
            if writer is None:
                schema = pa.schema(
                    [
                        f.with_type(pa.string()) if pa.types.is_null(f.type) else f
                        for f in table.schema
                    ],
                    metadata=table.schema.metadata,
                )
                writer = pq.ParquetWriter(tmp, schema, **writer_options(schema))
            writer.write_table(table.select(writer.schema.names).cast(writer.schema))
            snapshots += len(part)
            won += int(part["won"].sum())
            n_deals += part["deal_id"].nunique()  # a deal is in one chunk only
            lo, hi = part[TS].min(), part[TS].max()
            first = lo if first is None else min(first, lo)
            last = hi if last is None else max(last, hi)
    finally:
        if writer is not None:
            writer.close()
    os.replace(tmp, out)
    log.info("training set: %d snapshots of %d deals -> %s", snapshots, n_deals, out)
    return TrainingSetFile(out, snapshots, n_deals, won / snapshots, first, last)


def _training_entities(
    settings: Settings, deals: pd.DataFrame, every_days: int | None
) -> tuple[pd.DataFrame, tuple[Attribute, ...]]:
    """The training snapshots of ``deals`` and the stored attributes known before close."""
    # The stored stage history, so a deal's snapshots skip the time it was lost (if any).
    history = load_stored(settings.crm_dir, ["stage_history"]).get("stage_history")
    entities = snapshot_entities(deals, every_days or settings.snapshot_every_days, history)
    if entities.empty:
        raise FeatureStoreError("no closed deals to build training snapshots from")
    return entities, feature_attributes(read_attributes(settings.crm_dir))


def revival_training_parts(
    settings: Settings, entities: pd.DataFrame, progress: Progress = no_progress
) -> TrainingParts:
    """:func:`revival_training_frame`'s rows, a chunk of deals at a time
    (``leadscore train-revival``)."""
    if entities.empty:
        raise FeatureStoreError("no lost deal has a snapshot with a known revival outcome")
    parts = _historical_parts(settings, entities, REVIVAL_FEATURE_SERVICE, (), progress)
    return TrainingParts(entities, parts, REVIVAL_FEATURE_SERVICE)


def revival_training_frame(
    settings: Settings, entities: pd.DataFrame, progress: Progress = no_progress
) -> TrainingFrame:
    """The revival model's snapshots (:func:`leadscore.crm.revival.revival_snapshots`,
    censored ones dropped) joined point-in-time through Feast's ``revival_v1`` service.

    Custom attributes are not asked for: the revival model reads the released service only.
    """
    frame = _historical(revival_training_parts(settings, entities, progress).parts)
    log.info("revival frame: %d snapshots of %d deals", len(frame), frame["deal_id"].nunique())
    return TrainingFrame(frame=frame, feature_service=REVIVAL_FEATURE_SERVICE)


def _historical(parts: Iterator[tuple[np.ndarray, pd.DataFrame]]) -> pd.DataFrame:
    """The entities (keys, ``event_timestamp`` and any label columns) with the service's
    features as of each row's moment, in the entities' order: the ``parts`` of
    :func:`_historical_parts` put together."""
    rows: list[np.ndarray] = []  # the entities' position of each part's rows
    frames: list[pd.DataFrame] = []
    for at, part in parts:
        rows.append(at)
        frames.append(part)
    if len(frames) == 1:
        return frames[0]
    # The parts are ranges of deals; in the entities' order already when the entities are
    # sorted by deal, as the stored deals are, else put back in it (one copy more).
    frame = pd.concat(frames, ignore_index=True, copy=False)
    del frames
    order = np.concatenate(rows)
    if (np.diff(order) < 0).any():
        frame = frame.take(np.argsort(order, kind="stable")).reset_index(drop=True)
    return frame


def _historical_parts(
    settings: Settings,
    entities: pd.DataFrame,
    feature_service: str,
    attributes: Sequence[Attribute],
    progress: Progress,
) -> Iterator[tuple[np.ndarray, pd.DataFrame]]:
    """``entities`` (keys, ``event_timestamp`` and any label columns) with the service's
    features as of each row's moment, a chunk of deals at a time, each chunk with the
    positions in ``entities`` of its rows (in their order within the chunk).

    The local engine joins the snapshots of :attr:`Settings.feast_chunk_deals` deals per
    call (:func:`deal_chunks`), so DuckDB's join holds one chunk's rows and not every
    snapshot's at once: at 100,000 deals one call peaked at 10 GiB, almost all of it inside
    DuckDB; the frame it returns is a twentieth of that (``docs/scaling.md``). The rows a
    snapshot gets do not depend on the other snapshots of its call, so the parts hold the
    one call's rows. Spark's offline store joins in its executors and pays a job per
    call, so it gets every snapshot at once. ``progress`` (task ``training set``) counts
    the snapshots of the chunks joined.
    """
    progress("training set", 0, len(entities), unit="snapshots", detail="point-in-time join")
    store = open_store(settings)
    spark = _start_engine(settings)
    service = feature_refs(store, feature_service, attributes)
    entity_df = entities[["deal_id", "account_id", "owner_id", TS]].copy()
    entity_df["as_of"] = entity_df[TS]
    entity_df["_row"] = np.arange(len(entity_df), dtype=np.int64)
    chunks = deal_chunks(entity_df["deal_id"], 0 if spark else settings.feast_chunk_deals)
    meta = entities.drop(columns=["deal_id", "account_id", "owner_id", TS]).reset_index(drop=True)
    done = 0
    for chunk in chunks:
        asked = entity_df.iloc[chunk] if len(chunks) > 1 else entity_df
        joined = store.get_historical_features(entity_df=asked, features=service).to_df()
        joined = joined.sort_values("_row").reset_index(drop=True)
        # Feast adds the on-demand views' inputs in no fixed order (a set): the window
        # counts' cumulative inputs are left out (nothing reads them after deal_timing),
        # the rest put in one order, so both engines, every chunk and every run give the
        # same columns.
        extra = [c for c in joined.columns if c not in entity_df.columns]
        kept = sorted(c for c in extra if c not in WINDOW_COUNT_INPUTS)
        joined = joined[[*entity_df.columns, *kept]]
        if spark:  # times come back without their zone, in the session's UTC
            from leadscore.features.spark_engine import utc_times

            joined = utc_times(joined)
        at = joined["_row"].to_numpy()
        labels = meta.iloc[at].reset_index(drop=True)
        part = pd.concat([joined.drop(columns=["_row", "as_of"]), labels], axis=1)
        del asked, joined, labels
        done += len(part)
        progress("training set", done, len(entity_df), unit="snapshots")
        yield at, part
        del at, part  # let go before the next chunk's join: only a consumer may keep it


def deal_chunks(deal_ids: pd.Series, size: int) -> list[np.ndarray]:
    """Positions of ``deal_ids`` in chunks of at most ``size`` deals (all when ``size`` is
    0), each a range of ids in sorted order, every row of a deal in one chunk.

    Ranges rather than hashes: the deal-keyed sources are written sorted by deal
    (:mod:`leadscore.features.featurize`), and DuckDB filters the scan of a source by the
    keys of the entities it is joined to (a dynamic filter), so it skips the Parquet row
    groups of other ranges (at 20,000 deals, a range of 2,000 read one of three groups of
    ``deal_activity``) instead of reading the whole source per chunk.
    """
    codes, uniques = pd.factorize(deal_ids, sort=True)
    if size <= 0 or len(uniques) <= size:
        return [np.arange(len(deal_ids))]
    bucket = codes // size
    order = np.argsort(bucket, kind="stable")
    bounds = np.searchsorted(bucket[order], np.arange(1, bucket.max() + 1))
    return np.split(order, bounds)


def online_features(
    store: FeatureStore,
    feature_service: str,
    deal_ids: list[str],
    as_of: datetime,
    attributes: Sequence[Attribute] = (),
) -> pd.DataFrame:
    """Features of deals from the online store, with request-time features as of ``as_of``.

    Two lookups: the deal's own row gives its account and owner, whose track-record
    views are keyed by them. Deals the store does not know come back with missing
    features rather than an error; callers decide what that means. The store is
    passed in open: opening one parses the registry, which costs more than a lookup.
    ``attributes`` (the model's) add their ``deal_attributes`` features. The frame
    also holds each deal's latest status (:data:`DEAL_STATUS`, None when the store
    does not know it), read with the keys: the service never gives an open-deal
    score to a closed deal.
    """
    keys = store.get_online_features(
        features=[
            "deal_profile:deal_account_id",
            "deal_profile:deal_owner_id",
            f"deal_profile:{DEAL_STATUS}",
        ],
        entity_rows=[{"deal_id": d} for d in deal_ids],
    ).to_dict()
    rows = [
        {"deal_id": d, "account_id": a or "", "owner_id": o or "", "as_of": as_of}
        for d, a, o in zip(deal_ids, keys["deal_account_id"], keys["deal_owner_id"], strict=True)
    ]
    service = feature_refs(store, feature_service, attributes)
    frame = store.get_online_features(features=service, entity_rows=rows).to_df()
    frame[DEAL_STATUS] = keys[DEAL_STATUS]
    return frame
