"""Entities: what features are about. Join keys match the CRM export's id columns."""

from feast import Entity, ValueType

deal = Entity(
    name="deal",
    join_keys=["deal_id"],
    value_type=ValueType.STRING,
    description="An opportunity in the CRM, open or closed.",
)
account = Entity(
    name="account",
    join_keys=["account_id"],
    value_type=ValueType.STRING,
    description="The company a deal is with.",
)
owner = Entity(
    name="owner",
    join_keys=["owner_id"],
    value_type=ValueType.STRING,
    description="The sales rep who owns a deal.",
)
