"""Expectations on the stored CRM tables, with the contract's own pandera schemas.

Ingest validates an export row by row; these check what it kept, as every later step
reads it: typed as the contract says (the schema changes nothing when it validates
them again), one row per key, every reference resolving, times in order, and a close
time exactly on won and lost deals.
"""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
import pytest

from leadscore.crm.contract import (
    AFTER_DEAL_CREATION,
    CLOSED_STATUSES,
    DEAL_STATUSES,
    TABLES,
)
from leadscore.crm.ingest import table_schema


def test_every_table_of_the_export_is_stored(stored):
    assert set(stored) == set(TABLES)
    assert all(len(t) for t in stored.values())


@pytest.mark.parametrize("name", list(TABLES))
def test_stored_tables_already_have_the_contract_types(stored, name):
    table = stored[name]
    extra = [c for c in table.columns if c not in TABLES[name].column_names]
    checked = table_schema(TABLES[name], extra).validate(table, lazy=True)
    pd.testing.assert_frame_equal(checked, table)


@pytest.mark.parametrize("name", list(TABLES))
def test_one_row_per_key(stored, name):
    key = list(TABLES[name].key)
    assert not stored[name].duplicated(key).any()


@pytest.mark.parametrize(
    ("name", "column", "parent", "parent_column"),
    [(t.name, *ref) for t in TABLES.values() for ref in t.references],
)
def test_references_resolve(stored, name, column, parent, parent_column):
    values = stored[name][column].dropna()
    assert values.isin(set(stored[parent][parent_column])).all()


@pytest.mark.parametrize(("name", "column"), list(AFTER_DEAL_CREATION.items()))
def test_nothing_happens_to_a_deal_before_it_is_created(stored, name, column):
    created = stored[name]["deal_id"].map(stored["deals"].set_index("deal_id")["created_at"])
    assert (stored[name][column] >= created).all()


def test_a_deal_has_a_close_time_exactly_when_it_is_won_or_lost(stored):
    deals = stored["deals"]
    closed = deals["status"].isin(CLOSED_STATUSES)
    assert (deals["closed_at"].notna() == closed).all()
    assert (deals.loc[closed, "closed_at"] >= deals.loc[closed, "created_at"]).all()
    # Every status occurs: the expectations above are not vacuous.
    assert set(deals["status"]) == set(DEAL_STATUSES)


def test_the_schemas_reject_what_the_expectations_guard_against(stored):
    """The checks have teeth: a status outside the contract and a negative amount fail."""
    deals = stored["deals"].head(3).copy()
    deals.loc[0, "status"] = "pending"
    deals.loc[1, "amount"] = -5.0
    with pytest.raises(pa.errors.SchemaErrors) as failed:
        table_schema(TABLES["deals"]).validate(deals, lazy=True)
    assert set(failed.value.failure_cases["column"]) == {"status", "amount"}
