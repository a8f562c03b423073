"""Parquet feature sources written by `leadscore ingest` (one per feature view).

Paths are anchored on this file rather than left relative: Feast's DuckDB offline
store resolves relative Parquet paths against the working directory, not the repo.
"""

from pathlib import Path

from feast import Field, FileSource, RequestSource
from feast.data_format import ParquetFormat
from feast.types import UnixTimestamp

SOURCES_DIR = Path(__file__).resolve().parent / "data" / "sources"


def _source(name: str, description: str) -> FileSource:
    return FileSource(
        name=f"{name}_source",
        path=str(SOURCES_DIR / f"{name}.parquet"),
        file_format=ParquetFormat(),
        timestamp_field="event_timestamp",
        description=description,
    )


deal_profile_source = _source("deal_profile", "Deal and account attributes, at deal creation.")
deal_stage_source = _source("deal_stage", "Funnel position after each stage entry.")
deal_contacts_source = _source("deal_contacts", "Contacts on the deal after each is attached.")
deal_activity_source = _source(
    "deal_activity", "Engagement after each activity and each time one leaves a count window."
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
