"""Parquet feature sources written by `leadscore ingest` (one per feature view).

Paths are anchored on this file rather than left relative: Feast's DuckDB offline
store resolves relative Parquet paths against the working directory, not the repo.

One declaration per source for both engines: a ``FileSource`` for the DuckDB offline
store of ``feature_store.yaml`` and ``feature_store.redis.yaml``, a ``SparkSource`` over
the same file for the Spark offline store of ``feature_store.spark.yaml`` (``--engine
spark``), which reads nothing else. Which one is decided by the file being applied
(``LEADSCORE_FEATURE_STORE_YAML``, set by ``leadscore features apply``); the names,
fields and views are the same, so each file's registry holds the same repo.
"""

from pathlib import Path

from feast import Field, FileSource, RequestSource
from feast.data_format import ParquetFormat
from feast.data_source import DataSource
from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource
from feast.types import UnixTimestamp

from leadscore.config import load_settings
from leadscore.features.featurize import LAGGED_VIEWS, LaggedView
from leadscore.features.store import on_spark

REPO = Path(__file__).resolve().parent
SOURCES_DIR = REPO / "data" / "sources"
#: Whether the configuration being applied reads the sources with Spark.
ON_SPARK = on_spark(load_settings(feature_repo=REPO))


def _source(
    name: str,
    description: str,
    file: str | None = None,
    timestamp_field: str = "event_timestamp",
    field_mapping: dict[str, str] | None = None,
) -> DataSource:
    """The source ``name`` over ``file`` (by default its own), dated by ``timestamp_field``."""
    path = str(SOURCES_DIR / f"{file or name}.parquet")
    if ON_SPARK:
        return SparkSource(
            name=f"{name}_source",
            path=path,
            file_format="parquet",
            timestamp_field=timestamp_field,
            field_mapping=field_mapping,
            description=description,
        )
    return FileSource(
        name=f"{name}_source",
        path=path,
        file_format=ParquetFormat(),
        timestamp_field=timestamp_field,
        field_mapping=field_mapping,
        description=description,
    )


def _lagged_source(lag: LaggedView) -> DataSource:
    """The rows of ``lag.source``'s file, each dated ``lag.days`` after its moment."""
    return _source(
        lag.name,
        f"{lag.source} rows as of {lag.days} days before the moment of lookup.",
        file=lag.source,
        timestamp_field=lag.timestamp,
        field_mapping={c: lag.field(c) for c in lag.columns},
    )


deal_profile_source = _source("deal_profile", "Deal and account attributes, at deal creation.")
deal_stage_source = _source("deal_stage", "Funnel position after each stage entry.")
deal_contacts_source = _source("deal_contacts", "Contacts on the deal after each is attached.")
deal_activity_source = _source(
    "deal_activity", "Engagement after each activity, with cumulative activity counts."
)
# One per count window (catalog WINDOWS_DAYS): the unpacking fails if they change.
deal_activity_7d_ago_source, deal_activity_30d_ago_source, deal_activity_90d_ago_source = (
    _lagged_source(lag) for lag in LAGGED_VIEWS
)
account_history_source = _source("account_history", "Account track record after each close.")
owner_history_source = _source("owner_history", "Owner track record after each close.")
deal_attributes_source = _source(
    "deal_attributes", "Custom attributes known before close, at deal creation."
)
deal_revival_source = _source(
    "deal_revival", "Lost deals since their latest loss, after each loss and each later change."
)

scoring_request = RequestSource(
    name="scoring_request",
    schema=[Field(name="as_of", dtype=UnixTimestamp, description="The moment of scoring.")],
    description="Supplied with every retrieval: the moment the deal is scored at.",
)
