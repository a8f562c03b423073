"""A feature source is a folder of a file per month of its rows (leadscore.features.source_files)."""

from __future__ import annotations

import os

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from leadscore.features.featurize import build_feature_sources, write_sources
from leadscore.features.source_files import (
    NO_ROWS,
    by_month,
    count_rows,
    is_source,
    parts,
    read_schema,
    source_path,
)
from leadscore.pipeline_state import transaction
from tests.crm_fixture import tiny_crm

UTC = "UTC"


def _table(keys: list[str], times: list[str | None]) -> pa.Table:
    stamps = pd.to_datetime(pd.Series(times, dtype="object"), utc=True)
    return pa.table(
        {
            "deal_id": pa.array(keys, pa.string()),
            "event_timestamp": pa.array(stamps, pa.timestamp("us", tz=UTC), from_pandas=True),
            "n": pa.array(range(len(keys)), pa.float64()),
        }
    )


def test_rows_are_split_by_utc_month_each_month_in_the_given_order():
    table = _table(
        ["D1", "D1", "D2", "D2", "D3"],
        [
            "2024-03-31T23:30:00-02:00",  # 1 April in UTC
            "2024-03-05T00:00:00Z",
            "2024-04-02T00:00:00Z",
            "2024-03-01T00:00:00Z",
            None,
        ],
    )
    split = {label: part["n"].to_pylist() for label, part in by_month(table)}
    assert list(split) == ["2024-03", "2024-04", "undated"]
    assert split == {"2024-03": [1.0, 3.0], "2024-04": [0.0, 2.0], "undated": [4.0]}
    assert list(by_month(table.slice(0, 0))) == []


def test_a_written_source_is_a_folder_every_reader_takes_as_one_table(tmp_path):
    sources = build_feature_sources(tiny_crm())
    rows = write_sources(sources, tmp_path)
    folder = source_path(tmp_path, "deal_activity")
    months = parts(folder)
    assert len(months) > 1 and all(p.name == f"part-{m}.parquet" for m, p in months.items())
    assert count_rows(folder) == rows["deal_activity"] == len(sources["deal_activity"])
    # pyarrow (and DuckDB, Spark) read the folder: the months in order, the full build's rows.
    whole = pq.read_table(folder)
    assert whole.schema == read_schema(folder)
    assert whole["event_timestamp"].to_pandas().dt.strftime("%Y-%m").is_monotonic_increasing
    by_part = [pq.read_table(p)["event_timestamp"].to_pandas() for p in months.values()]
    assert all((t.dt.strftime("%Y-%m") == m).all() for t, m in zip(by_part, months, strict=True))
    assert sum(len(t) for t in by_part) == whole.num_rows


def test_a_source_without_rows_is_a_folder_with_one_file_without_rows(tmp_path):
    sources = build_feature_sources(tiny_crm())
    empty = sources["deal_activity"].iloc[:0]
    write_sources({"deal_activity": empty}, tmp_path)
    folder = source_path(tmp_path, "deal_activity")
    assert list(parts(folder)) == [NO_ROWS] and is_source(folder)
    assert count_rows(folder) == 0
    assert pq.read_table(folder).schema.names == list(empty.columns)


def test_writing_a_source_again_replaces_every_month(tmp_path):
    sources = build_feature_sources(tiny_crm())
    write_sources(sources, tmp_path)
    write_sources({"deal_activity": sources["deal_activity"].iloc[:0]}, tmp_path)
    assert list(parts(source_path(tmp_path, "deal_activity"))) == [NO_ROWS]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_committed_month_given_as_a_path_is_linked_not_rewritten(tmp_path):
    sources = build_feature_sources(tiny_crm())
    write_sources(sources, tmp_path / "a")
    months = parts(source_path(tmp_path / "a", "deal_activity"))
    first = next(iter(months.values()))
    write_sources([("deal_activity", first)], tmp_path / "b")
    linked = parts(source_path(tmp_path / "b", "deal_activity"))
    assert list(linked) == [next(iter(months))]
    assert os.path.samefile(linked[next(iter(months))], first)


def test_an_unchanged_source_folder_is_carried_into_the_next_generation(tmp_path):
    sources = build_feature_sources(tiny_crm())
    with transaction(tmp_path) as generation:
        write_sources(sources, generation.dir("sources"))
        generation.commit()
    with transaction(tmp_path) as generation:
        write_sources({"deal_stage": sources["deal_stage"]}, generation.dir("sources"))
        generation.carry("sources")
        generation.commit()
    committed = tmp_path / "sources"
    for view in sources:
        assert count_rows(committed / f"{view}.parquet") == len(sources[view]), view
    kept = parts(committed / "deal_activity.parquet")
    assert all(p.stat().st_nlink > 1 for p in kept.values())  # linked, not copied
