"""What bounds an ingest's memory (issue 14) changes none of its results: the deal-keyed
sources built a range of deals at a time are the sources built at once, file for file;
an export read with its repeated texts shared is the export ``pd.read_parquet`` reads."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from leadscore.config import Settings
from leadscore.crm.ingest import _read_parquet, load_stored
from leadscore.crm.synth import generate_crm, write_export
from leadscore.features.featurize import (
    DEAL_VIEWS,
    build_feature_sources,
    iter_feature_sources,
    write_sources,
)
from leadscore.features.source_files import parts
from pipelines.steps import ingest


@pytest.fixture(scope="module")
def crm_tables() -> dict[str, pd.DataFrame]:
    """A CRM with accounts of several deals, lost and revived deals, deals without
    activities: every way a range boundary could cut what a source reads."""
    return generate_crm(150, seed=11, revival=True).tables


def _same_files(left: Path, right: Path) -> None:
    """Every Parquet file of ``left`` is in ``right`` with the same schema, values and order."""
    names = sorted(p.relative_to(left) for p in left.rglob("*.parquet"))
    assert names == sorted(p.relative_to(right) for p in right.rglob("*.parquet"))
    assert names
    for name in names:
        a, b = pq.read_table(left / name), pq.read_table(right / name)
        assert a.schema.equals(b.schema), name
        assert a.equals(b), name


def _deal_ids(tables: dict[str, pd.DataFrame]) -> list[str]:
    return sorted(tables["deals"]["deal_id"].astype(str).unique())


@pytest.mark.parametrize("chunk_deals", [1, 7, 40, 10_000])
def test_sources_built_in_ranges_of_deals_are_the_sources_built_at_once(
    crm_tables: dict[str, pd.DataFrame], chunk_deals: int, tmp_path: Path
) -> None:
    at_once = write_sources(build_feature_sources(crm_tables), tmp_path / "at_once")
    in_ranges = write_sources(
        iter_feature_sources(crm_tables, chunk_deals=chunk_deals), tmp_path / "in_ranges"
    )
    assert in_ranges == at_once
    _same_files(tmp_path / "at_once", tmp_path / "in_ranges")
    # One row group per range and month with activity rows: the ranges were written one
    # by one, each split by month (a file per month).
    position = {deal: i for i, deal in enumerate(_deal_ids(crm_tables))}
    source = pq.read_table(tmp_path / "at_once" / "deal_activity.parquet").to_pandas()
    ranges = set(
        zip(
            source["deal_id"].map(position) // chunk_deals,
            source["event_timestamp"].dt.strftime("%Y-%m"),
            strict=True,
        )
    )
    months = parts(tmp_path / "in_ranges" / "deal_activity.parquet").values()
    assert sum(pq.ParquetFile(p).num_row_groups for p in months) == len(ranges)


def test_ranges_pass_the_views_only_the_rows_of_their_deals(
    crm_tables: dict[str, pd.DataFrame],
) -> None:
    """The pieces of a view are in deal order, each with the deals of one range only, so
    a view that needs another deal's rows (an account's) cannot be among DEAL_VIEWS."""
    pieces = [p for v, p in iter_feature_sources(crm_tables, chunk_deals=40) if v == "deal_stage"]
    ids = _deal_ids(crm_tables)
    assert len(pieces) == -(-len(ids) // 40) > 3
    for i, piece in enumerate(pieces):
        assert set(piece["deal_id"]) <= set(ids[40 * i : 40 * (i + 1)])
    assert "deal_revival" not in DEAL_VIEWS and "account_history" not in DEAL_VIEWS


def test_a_view_without_rows_in_any_range_is_written_as_the_source_without_rows(
    crm_tables: dict[str, pd.DataFrame], tmp_path: Path
) -> None:
    tables = {name: t for name, t in crm_tables.items() if name != "activities"}
    at_once = write_sources(build_feature_sources(tables), tmp_path / "at_once")
    in_ranges = write_sources(iter_feature_sources(tables, chunk_deals=9), tmp_path / "in_ranges")
    assert in_ranges == at_once and in_ranges["deal_activity"] == 0
    _same_files(tmp_path / "at_once", tmp_path / "in_ranges")


def test_an_ingest_in_ranges_stores_what_an_ingest_at_once_stores(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    """The whole step: tables and sources of a first ingest, then of a re-ingest (which
    splices into the ranged files), equal file for file."""
    crm = generate_crm(120, seed=5)
    first = tmp_path / "first"
    write_export(crm, first)
    later = generate_crm(120, seed=5, as_of=crm.as_of + pd.Timedelta(days=20))
    second = tmp_path / "second"
    write_export(later, second)
    roots = {}
    for chunk in (0, 13):
        settings = replace(
            isolated_settings,
            feature_repo=isolated_settings.feature_repo.parent / f"repo{chunk}",
            source_chunk_deals=chunk,
        )
        for export in (first, second):
            ingest(export, settings, now=later.as_of + pd.Timedelta(days=1))
            (tmp_path / f"{export.name}{chunk}").symlink_to(settings.feature_data.resolve())
        roots[chunk] = settings.feature_data
    for export in ("first", "second"):
        for part in ("crm", "sources"):
            left, right = tmp_path / f"{export}0", tmp_path / f"{export}13"
            _same_files((left / part).resolve(), (right / part).resolve())


def test_an_export_read_with_shared_texts_is_the_export_pandas_reads(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "activity_id": [f"X{i}" for i in range(300)],
            "deal_id": pd.array([f"D{i % 7}" if i % 11 else None for i in range(300)], "string"),
            "type": ["call", "email", "meeting"] * 100,
            "amount": np.arange(300, dtype=float),
            "count": pd.array([1, None] * 150, dtype="Int64"),
        }
    )
    path = tmp_path / "activities.parquet"
    frame.to_parquet(path)
    read = _read_parquet(path)
    pd.testing.assert_frame_equal(read, pd.read_parquet(path), check_exact=True)
    assert read.dtypes.equals(pd.read_parquet(path).dtypes)
    deals = read["deal_id"].array._ndarray  # the StringArray's objects
    assert len({id(v) for v in deals if isinstance(v, str)}) == 7  # one object per deal
    assert len({id(v) for v in read["type"]}) == 3
    assert len({id(v) for v in read["activity_id"]}) == 300


def test_stored_tables_read_with_shared_texts_are_the_tables_pandas_reads(
    isolated_settings: Settings, tmp_path: Path
) -> None:
    """A re-ingest reads every stored table (:func:`load_stored`) the way it reads an
    export: the frames are ``pd.read_parquet``'s, column types included."""
    write_export(generate_crm(60, seed=2), tmp_path / "export")
    ingest(tmp_path / "export", isolated_settings)
    stored = load_stored(isolated_settings.crm_dir)
    assert {"deals", "activities", "stage_history"} <= set(stored)
    for name, frame in stored.items():
        expected = pd.read_parquet(isolated_settings.crm_dir / f"{name}.parquet")
        pd.testing.assert_frame_equal(frame, expected, check_exact=True, obj=name)
        assert frame.dtypes.equals(expected.dtypes), name
