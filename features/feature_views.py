"""Batch feature views: one per feature source, fields taken from the feature catalog.

Each view also stores the timestamps and counters the on-demand view ``deal_timing``
needs (deal creation, stage entry, last activity...). Those are not model inputs and
are left out of the feature service. Numbers are Float64 throughout so that a missing
value stays NaN from the source to the online store.
"""

from datetime import timedelta
from pathlib import Path

from data_sources import (
    account_history_source,
    deal_activity_7d_ago_source,
    deal_activity_30d_ago_source,
    deal_activity_90d_ago_source,
    deal_activity_source,
    deal_attributes_source,
    deal_contacts_source,
    deal_profile_source,
    deal_revival_source,
    deal_stage_source,
    owner_history_source,
)
from entities import account, deal, owner
from feast import FeatureView, Field
from feast.data_source import DataSource
from feast.types import Float64, String, UnixTimestamp

from leadscore.crm.attributes import read_attributes
from leadscore.crm.contract import ACTIVITY_TYPES
from leadscore.features.catalog import Feature, attribute_features, features_of
from leadscore.features.deal_state import CUMULATIVE_COLUMNS
from leadscore.features.featurize import DEAL_STATUS, LAGGED_VIEWS, LaggedView

#: State is valid until the next change, however long ago that was.
FOREVER = timedelta(days=3650)


#: The stored CRM tables of the current generation, beside the sources (see data_sources).
CRM_DIR = Path(__file__).resolve().parent / "data" / "crm"


def _field(f: Feature) -> Field:
    return Field(
        name=f.name, dtype=String if f.kind == "categorical" else Float64, description=f.description
    )


def _fields(view: str) -> list[Field]:
    return [_field(f) for f in features_of(view)]


deal_profile = FeatureView(
    name="deal_profile",
    entities=[deal],
    ttl=FOREVER,
    schema=_fields("deal_profile")
    + [
        Field(
            name="deal_account_id", dtype=String, description="Account of the deal (lookup key)."
        ),
        Field(name="deal_owner_id", dtype=String, description="Owner of the deal (lookup key)."),
        Field(
            name="deal_created_at", dtype=UnixTimestamp, description="When the deal was created."
        ),
        Field(
            name=DEAL_STATUS,
            dtype=String,
            description="The deal's status (open, won, lost) as of the row; not a model input.",
        ),
    ],
    source=deal_profile_source,
    description="What the deal is: channel, competitor, product, amount, account.",
)

deal_stage = FeatureView(
    name="deal_stage",
    entities=[deal],
    ttl=FOREVER,
    schema=_fields("deal_stage")
    + [
        Field(
            name="long_stays",
            dtype=Float64,
            description="Completed stage stays over the stall limit.",
        ),
        Field(
            name="stage_entered_at",
            dtype=UnixTimestamp,
            description="When the current stage began.",
        ),
    ],
    source=deal_stage_source,
    description="Where the deal stands in the funnel.",
)

deal_contacts = FeatureView(
    name="deal_contacts",
    entities=[deal],
    ttl=FOREVER,
    schema=_fields("deal_contacts"),
    source=deal_contacts_source,
    description="Who is involved: contacts, seniority, economic buyer.",
)

deal_activity = FeatureView(
    name="deal_activity",
    entities=[deal],
    ttl=FOREVER,
    schema=_fields("deal_activity")
    + [
        Field(
            name="last_activity_at", dtype=UnixTimestamp, description="Last activity of any kind."
        ),
        Field(name="last_inbound_at", dtype=UnixTimestamp, description="Last inbound activity."),
        Field(
            name="awaiting_reply_since",
            dtype=UnixTimestamp,
            description="Oldest inbound activity not yet answered by an outbound one.",
        ),
    ]
    + [
        Field(
            name=CUMULATIVE_COLUMNS[kind],
            dtype=Float64,
            description=f"Activities of type {kind} up to the row (window counts are read "
            "from these and the lagged views').",
        )
        for kind in ACTIVITY_TYPES
    ],
    source=deal_activity_source,
    description="How engaged the deal is: activity counts, recency, reply latency, visits.",
)


def _lagged(lag: LaggedView, source: DataSource) -> FeatureView:
    """The cumulative counts of ``lag.source`` as of ``lag.days`` before the moment:
    ``deal_timing`` subtracts them from the counts at the moment (window counts)."""
    return FeatureView(
        name=lag.name,
        entities=[deal],
        ttl=FOREVER,
        schema=[
            Field(
                name=lag.field(c),
                dtype=Float64,
                description=f"{c} as of {lag.days} days before the moment.",
            )
            for c in lag.columns
        ],
        source=source,
        description=f"Cumulative activity counts {lag.days} days before the moment of scoring.",
    )


deal_activity_7d_ago, deal_activity_30d_ago, deal_activity_90d_ago = (
    _lagged(lag, source)
    for lag, source in zip(
        LAGGED_VIEWS,
        (deal_activity_7d_ago_source, deal_activity_30d_ago_source, deal_activity_90d_ago_source),
        strict=True,
    )
)

account_history = FeatureView(
    name="account_history",
    entities=[account],
    ttl=FOREVER,
    schema=_fields("account_history"),
    source=account_history_source,
    description="The account's track record from deals closed before the moment of scoring.",
)

owner_history = FeatureView(
    name="owner_history",
    entities=[owner],
    ttl=FOREVER,
    schema=_fields("owner_history"),
    source=owner_history_source,
    description="The owner's track record from deals closed before the moment of scoring.",
)

deal_revival = FeatureView(
    name="deal_revival",
    entities=[deal],
    ttl=FOREVER,
    schema=_fields("deal_revival")
    + [
        Field(name="lost_at", dtype=UnixTimestamp, description="When the deal was last lost."),
        Field(
            name="last_engaged_at",
            dtype=UnixTimestamp,
            description="Last activity with the customer since that loss.",
        ),
    ],
    source=deal_revival_source,
    description="A lost deal since its latest loss: why, how far it got, engagement since, "
    "the account's other deals.",
)

#: Custom attributes known before close, as declared by the stored attributes.json: `feast
#: apply` declares exactly those (none, and no view, when the data declares none).
ATTRIBUTE_FEATURES = attribute_features(read_attributes(CRM_DIR))
if ATTRIBUTE_FEATURES:
    deal_attributes = FeatureView(
        name="deal_attributes",
        entities=[deal],
        ttl=FOREVER,
        schema=[_field(f) for f in ATTRIBUTE_FEATURES],
        source=deal_attributes_source,
        description="Custom attributes of the deal and its account, known before close.",
    )
