"""Feature store steps: write sources, apply the Feast repo, materialize, build training frames."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import string
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

# isort: off
from leadscore.features import feast_runtime  # noqa: F401  (before Feast: see there)
from feast import FeatureService, FeatureStore, RepoConfig

# isort: on
from pydantic import ValidationError

from leadscore.config import REVIVAL_FEATURE_SERVICE, Settings, crash_point, feast_environment
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
    source_table,
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


def _start_spark(settings: Settings) -> bool:
    """With the Spark configuration, start the session of ``--engine spark`` before Feast
    asks for one, and say so: Feast takes the session already running, so its
    point-in-time joins and materialization run where
    :func:`~leadscore.features.spark_engine.spark_session` says (``LEADSCORE_SPARK_MASTER``,
    times in UTC, workers on this interpreter)."""
    if not on_spark(settings):
        return False
    from leadscore.features.spark_engine import spark_session

    spark_session(settings)
    return True


def open_store(settings: Settings) -> FeatureStore:
    """Open the Feast repo with the configured ``feature_store*.yaml``."""
    return FeatureStore(repo_path=str(settings.feature_repo), config=repo_config(settings))


def write_sources(
    sources: Mapping[str, pd.DataFrame | pa.Table],
    sources_dir: Path,
    progress: Progress = no_progress,
) -> dict[str, int]:
    """Write feature source frames as Parquet, typed by
    :func:`leadscore.features.featurize.source_table` (as the Feast views declare them);
    a source given as an Arrow table is typed already (an incremental rebuild splices
    into the committed files: :mod:`leadscore.features.incremental`).

    Each file is replaced atomically so a reader never sees half a source; ``leadscore
    ingest`` writes them into a new generation of the state, with the CRM tables, and
    commits all at once (:mod:`leadscore.pipeline_state`). ``progress`` counts rows
    written (task ``write sources``).
    """
    sources_dir.mkdir(parents=True, exist_ok=True)
    rows: dict[str, int] = {}
    total = sum(len(df) for df in sources.values())
    for view, df in sources.items():
        progress("write sources", sum(rows.values()), total, unit="rows", detail=view)
        table = df if isinstance(df, pa.Table) else source_table(view, df)
        tmp = sources_dir / f".{view}.parquet.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, sources_dir / f"{view}.parquet")
        rows[view] = table.num_rows
        crash_point("ingest.source_written")
    progress("write sources", sum(rows.values()), total, unit="rows")
    return rows


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
    _start_spark(settings)
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


def training_frame(
    settings: Settings,
    deals: pd.DataFrame,
    every_days: int | None = None,
    progress: Progress = no_progress,
) -> TrainingFrame:
    """Snapshots of closed deals while open, joined point-in-time through Feast.

    Rows keep the entity keys, the snapshot moment (``event_timestamp``), when the
    deal was created and closed, and the label ``won``; the rest are model features.
    Feast joins every snapshot in one query, so ``progress`` (task ``training set``)
    hears the count before it and the end after it, not the rows in between. Custom
    attributes known before close (the stored ``attributes.json``) are features too.
    """
    # The stored stage history, so a deal's snapshots skip the time it was lost (if any).
    history = load_stored(settings.crm_dir, ["stage_history"]).get("stage_history")
    entities = snapshot_entities(deals, every_days or settings.snapshot_every_days, history)
    if entities.empty:
        raise FeatureStoreError("no closed deals to build training snapshots from")
    attributes = feature_attributes(read_attributes(settings.crm_dir))
    frame = _historical(settings, entities, settings.feature_service, attributes, progress)
    log.info("training frame: %d snapshots of %d deals", len(frame), frame["deal_id"].nunique())
    return TrainingFrame(
        frame=frame, feature_service=settings.feature_service, attributes=attributes
    )


def revival_training_frame(
    settings: Settings, entities: pd.DataFrame, progress: Progress = no_progress
) -> TrainingFrame:
    """The revival model's snapshots (:func:`leadscore.crm.revival.revival_snapshots`,
    censored ones dropped) joined point-in-time through Feast's ``revival_v1`` service.

    Custom attributes are not asked for: the revival model reads the released service only.
    """
    if entities.empty:
        raise FeatureStoreError("no lost deal has a snapshot with a known revival outcome")
    frame = _historical(settings, entities, REVIVAL_FEATURE_SERVICE, (), progress)
    log.info("revival frame: %d snapshots of %d deals", len(frame), frame["deal_id"].nunique())
    return TrainingFrame(frame=frame, feature_service=REVIVAL_FEATURE_SERVICE)


def _historical(
    settings: Settings,
    entities: pd.DataFrame,
    feature_service: str,
    attributes: Sequence[Attribute],
    progress: Progress,
) -> pd.DataFrame:
    """``entities`` (keys, ``event_timestamp`` and any label columns) with the service's
    features as of each row's moment, in the entities' order. Feast joins every row in
    one query, so ``progress`` (task ``training set``) hears the count before it and the
    end after it, not the rows in between."""
    progress("training set", 0, len(entities), unit="snapshots", detail="point-in-time join")
    store = open_store(settings)
    spark = _start_spark(settings)
    service = feature_refs(store, feature_service, attributes)
    entity_df = entities[["deal_id", "account_id", "owner_id", TS]].copy()
    entity_df["as_of"] = entity_df[TS]
    entity_df["_row"] = np.arange(len(entity_df), dtype=np.int64)
    joined = store.get_historical_features(entity_df=entity_df, features=service).to_df()
    joined = joined.sort_values("_row").reset_index(drop=True)
    # Feast adds the on-demand views' inputs in no fixed order (a set): the window counts'
    # cumulative inputs are left out (nothing reads them after deal_timing), the rest put
    # in one order, so both engines and every run give the same frame.
    extra = [c for c in joined.columns if c not in entity_df.columns]
    joined = joined[[*entity_df.columns, *sorted(c for c in extra if c not in WINDOW_COUNT_INPUTS)]]
    if spark:  # times come back without their zone, in the session's UTC
        from leadscore.features.spark_engine import utc_times

        joined = utc_times(joined)
    meta = entities.drop(columns=["deal_id", "account_id", "owner_id", TS]).reset_index(drop=True)
    frame = pd.concat([joined.drop(columns=["_row", "as_of"]), meta], axis=1)
    progress("training set", len(frame), len(frame), unit="snapshots")
    return frame


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
