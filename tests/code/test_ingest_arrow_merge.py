"""A re-ingest merges an export into the stored tables held as Arrow (issue 14): the
result must be the pandas definition of the upsert, byte for byte once written.

The definition: the stored rows whose key the export does not name, then the export's
rows, sorted by key with a stable sort (pandas), every column of either (an absent
one missing), typed as pandas concatenates the two; written with the contract's Parquet
types. And the rows a change reaches are the rows pandas' ``isin`` picks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from leadscore.crm import ingest
from leadscore.crm.contract import TABLES, Table
from leadscore.crm.ingest import (
    StoredTables,
    _file_schema,
    _parquet_writer,
    _read_parquet,
    _take,
    _upsert,
    ingest_export,
    load_stored,
    read_stored,
)
from leadscore.crm.synth import generate_crm, write_export
from leadscore.features.incremental import Reach, _rows_of
from leadscore.parquetio import writer_options

START = pd.Timestamp("2024-01-01", tz="UTC")


def _random_rows(table: Table, keys: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Rows of ``table`` with the ``keys`` given and random values, typed as validation
    types them; about one value in six missing where the contract allows it."""
    n = len(keys)
    columns: dict[str, pd.Series] = {}
    for column in table.columns:
        if column.name in keys:
            columns[column.name] = keys[column.name].reset_index(drop=True)
            continue
        if column.type == "datetime":
            values = pd.Series(
                START + pd.to_timedelta(rng.integers(0, 10**6, n), "s"), dtype="datetime64[us, UTC]"
            )
        elif column.type == "float":
            values = pd.Series(rng.integers(0, 5, n) * 1.5, dtype="float64")
        elif column.type == "int":
            values = pd.Series(rng.integers(0, 5, n), dtype="Int64")
        else:
            choices = list(column.allowed or ()) or ["x", "y", "z", "总经理"]
            values = pd.Series(rng.choice(choices, n), dtype=object)
        if not column.required:
            values = values.mask(rng.random(n) < 1 / 6)
            if values.dtype == object:
                values = values.astype(object).where(values.notna(), None)
        columns[column.name] = values
    return pd.DataFrame(columns)


def _keys(table: Table, n: int, rng: np.random.Generator) -> pd.DataFrame:
    """``n`` distinct keys of ``table``: text ids (a composite key shares its first
    column among rows), times for a time column."""
    key = {}
    for i, name in enumerate(table.key):
        if table.column(name).type == "datetime":
            key[name] = pd.Series(
                START + pd.to_timedelta(rng.integers(0, 40, n * 3), "D"),
                dtype="datetime64[us, UTC]",
            )
        else:
            spread = n * 3 if i == len(table.key) - 1 else max(n // 3, 1)
            key[name] = pd.Series([f"K{v:05d}" for v in rng.integers(0, spread, n * 3)])
    frame = pd.DataFrame(key).drop_duplicates(list(table.key)).head(n)
    return frame.reset_index(drop=True)


def _definition(stored: pd.DataFrame, new: pd.DataFrame, table: Table) -> pd.DataFrame:
    """The merge as pandas defines it (see the module)."""
    key = list(table.key)
    columns = list(dict.fromkeys([*table.column_names, *stored.columns, *new.columns]))

    def conform(frame: pd.DataFrame) -> pd.DataFrame:
        absent = {c: pd.Series(None, index=frame.index, dtype=object) for c in columns}
        return frame.assign(**{c: v for c, v in absent.items() if c not in frame})[columns]

    replaced = pd.MultiIndex.from_frame(stored[key]).isin(pd.MultiIndex.from_frame(new[key]))
    parts = [p for p in (conform(stored[~replaced]), conform(new)) if len(p)]
    joined = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
    return joined.sort_values(key, kind="stable", ignore_index=True)


def _bytes(frame: pd.DataFrame, table: Table, path: Path) -> bytes:
    schema = _file_schema(list(frame.columns), table)
    arrow = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    pq.write_table(arrow, path, **writer_options(arrow.schema))
    return path.read_bytes()


CASES = [
    # table, stored rows, export rows of which stored, stored written in key order
    ("activities", 400, 60, 30, True),
    ("activities", 400, 60, 0, True),  # inserts only
    ("activities", 400, 60, 60, True),  # updates only
    ("activities", 400, 60, 30, False),  # stored out of key order: sorted whole
    ("stage_history", 300, 50, 20, True),  # composite key with a time
    ("deal_contacts", 300, 50, 25, True),  # composite text key
    ("deal_contacts", 300, 50, 25, False),
    ("deals", 0, 40, 0, True),  # a stored file without rows
]


@pytest.mark.parametrize("slices", [True, False], ids=["slices", "take"])
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize(("name", "n_stored", "n_new", "n_known", "in_order"), CASES)
def test_the_arrow_upsert_writes_the_bytes_of_the_pandas_definition(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    n_stored: int,
    n_new: int,
    n_known: int,
    in_order: bool,
    seed: int,
    slices: bool,
) -> None:
    """Updates, inserts and unchanged rows, the export's rows in no order, missing
    values, a custom column only the stored rows have and one only the export has."""
    if not slices:
        monkeypatch.setattr(ingest, "_MOST_SLICES", 1)  # every merge one take
    table = TABLES[name]
    rng = np.random.default_rng(seed)
    keys = _keys(table, n_stored + n_new, rng)
    stored = _random_rows(table, keys.iloc[:n_stored], rng)
    stored["stored_note"] = pd.Series(rng.choice(["a", "b", None], len(stored)), dtype=object)
    stored = stored.sort_values(list(table.key), kind="stable", ignore_index=True)
    if not in_order:
        stored = stored.iloc[rng.permutation(len(stored))].reset_index(drop=True)
    _parquet_writer(stored, table)(tmp_path / "stored.parquet")
    stored = _read_parquet(tmp_path / "stored.parquet")  # as a reader of the file gets it

    known = stored.iloc[rng.choice(len(stored), n_known, replace=False)][list(table.key)]
    added = keys.iloc[n_stored : n_stored + n_new - n_known]
    new = _random_rows(table, pd.concat([known, added], ignore_index=True), rng)
    unchanged = rng.random(len(new)) < 0.3
    same = known.merge(stored, on=list(table.key), how="left")[new.columns]
    new.loc[unchanged[: len(same)].nonzero()[0]] = same.loc[unchanged[: len(same)]].to_numpy()
    new = new.astype({c: stored[c].dtype for c in new.columns if c in stored})
    for column in new.select_dtypes(object).columns:  # missing text is None, as validated
        new[column] = new[column].where(new[column].notna(), None)
    new["export_note"] = pd.Series(rng.choice(["n", None], len(new)), dtype=object)
    new = new.iloc[rng.permutation(len(new))].reset_index(drop=True)

    merged, counts, change = _upsert(pq.read_table(tmp_path / "stored.parquet"), new, table)
    expected = _definition(stored, new, table)
    assert counts["inserted"] == n_new - n_known
    assert counts["inserted"] + counts["updated"] + counts["unchanged"] == len(new)
    if merged is None:
        assert counts["inserted"] == counts["updated"] == 0
        return
    assert isinstance(merged, pa.Table)
    _parquet_writer(merged, table)(tmp_path / "arrow.parquet")
    assert (tmp_path / "arrow.parquet").read_bytes() == _bytes(
        expected, table, tmp_path / "pandas.parquet"
    )
    assert len(change.new) == counts["inserted"] + counts["updated"]
    for column in expected.select_dtypes(object).columns:  # missing text read as None
        expected[column] = expected[column].where(expected[column].notna(), None)
    pd.testing.assert_frame_equal(_read_parquet(tmp_path / "arrow.parquet"), expected)


def test_an_export_that_changes_nothing_rewrites_nothing(tmp_path: Path) -> None:
    table = TABLES["activities"]
    rng = np.random.default_rng(0)
    stored = _random_rows(table, _keys(table, 50, rng), rng)
    stored = stored.sort_values("activity_id", ignore_index=True)
    _parquet_writer(stored, table)(tmp_path / "stored.parquet")
    again = _read_parquet(tmp_path / "stored.parquet").iloc[::-1].reset_index(drop=True)
    merged, counts, _ = _upsert(pq.read_table(tmp_path / "stored.parquet"), again, table)
    assert merged is None and counts == {"inserted": 0, "updated": 0, "unchanged": 50}


def test_rows_taken_chunk_by_chunk_are_arrows_take() -> None:
    rng = np.random.default_rng(1)
    pieces = [
        pa.table({"k": [f"K{i}" for i in range(j, j + 7)], "n": list(range(j, j + 7))})
        for j in range(0, 70, 7)
    ]
    table = pa.concat_tables([*pieces[:3], pieces[3].slice(0, 0), *pieces[3:]])
    for at in (rng.integers(0, 70, 40), np.arange(70)[::-1], np.array([], dtype=np.int64)):
        assert _take(table, at).equals(table.take(pa.array(at, pa.int64())).combine_chunks())


@pytest.fixture(scope="module")
def stored_crm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("crm")
    write_export(generate_crm(120, seed=4), folder / "export", fmt="parquet")
    ingest_export(
        folder / "export", folder / "crm", folder / "rejects", now=pd.Timestamp("2030-01-01")
    )
    return folder / "crm"


def test_stored_tables_read_as_arrow_are_the_tables_pandas_reads(stored_crm: Path) -> None:
    held, read = read_stored(stored_crm), load_stored(stored_crm)
    assert list(held) == list(read)
    for name, frame in read.items():
        assert held.arrow(name) is not None
        pd.testing.assert_frame_equal(held.empty(name), frame.iloc[:0], check_exact=True)
        pd.testing.assert_frame_equal(held[name], frame, check_exact=True)


@pytest.mark.parametrize("seed", range(3))
def test_the_reached_rows_picked_in_arrow_are_the_rows_pandas_picks(
    stored_crm: Path, seed: int
) -> None:
    read = load_stored(stored_crm)
    rng = np.random.default_rng(seed)
    deals = read["deals"]
    picked = frozenset(rng.choice(deals["deal_id"], 15, replace=False)) | {"nowhere"}
    reached = Reach(
        deals=picked,
        accounts=frozenset(rng.choice(deals["account_id"].dropna().unique(), 4, replace=False)),
        owners=frozenset(),
        own_deals=picked,
    )
    by_arrow = _rows_of(read_stored(stored_crm), reached)
    by_pandas = _rows_of(StoredTables(read), reached)
    assert set(by_arrow) == set(by_pandas) == set(read)
    for name, rows in by_pandas.items():
        column = {"accounts": "account_id", "contacts": "contact_id"}.get(name, "deal_id")
        frame = read[name]
        if name == "contacts":
            named = pd.concat([by_pandas["deal_contacts"], by_pandas["activities"]])
            wanted = set(named["contact_id"].dropna())
        else:
            wanted = reached.accounts if name == "accounts" else reached.deals
        expected = frame[frame[column].astype(str).isin(wanted)].reset_index(drop=True)
        assert 0 < len(expected) < len(frame), name
        pd.testing.assert_frame_equal(rows, expected, check_exact=True, obj=name)
        pd.testing.assert_frame_equal(by_arrow[name], expected, check_exact=True, obj=name)
