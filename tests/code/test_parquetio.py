"""The feature sources are written with dictionaries on text columns only (leadscore.parquetio)."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from leadscore.features.featurize import build_feature_sources, write_sources
from leadscore.features.source_files import parts
from leadscore.parquetio import writer_options
from tests.crm_fixture import tiny_crm


def _dictionary_encoded(path) -> dict[str, bool]:
    meta = pq.ParquetFile(path).metadata
    group = meta.row_group(0)
    return {
        group.column(i).path_in_schema: any("DICTIONARY" in e for e in group.column(i).encodings)
        for i in range(group.num_columns)
    }


def test_options_name_the_text_columns_only():
    schema = pa.schema(
        [("deal_id", pa.string()), ("n", pa.float64()), ("at", pa.timestamp("us", tz="UTC"))]
    )
    assert writer_options(schema) == {"use_dictionary": ["deal_id"]}


def test_written_sources_keep_dictionaries_for_text_and_plain_numbers_and_times(tmp_path):
    rows = write_sources(build_feature_sources(tiny_crm()), tmp_path)
    path = next(iter(parts(tmp_path / "deal_activity.parquet").values()))  # its first month
    assert rows["deal_activity"] > 0
    schema = pq.read_schema(path)
    encoded = _dictionary_encoded(path)
    for field in schema:
        assert encoded[field.name] == pa.types.is_string(field.type), field.name
    stats = (
        pq.ParquetFile(path).metadata.row_group(0).column(schema.get_field_index("event_timestamp"))
    )
    assert stats.statistics is not None and stats.statistics.has_min_max  # readers prune by time


def test_stored_crm_tables_keep_dictionaries_for_text_only(tmp_path):
    from leadscore.crm.contract import TABLES
    from leadscore.crm.ingest import _parquet_writer

    activities = tiny_crm()["activities"]
    path = tmp_path / "activities.parquet"
    _parquet_writer(activities, TABLES["activities"])(path)
    schema = pq.read_schema(path)
    encoded = _dictionary_encoded(path)
    assert any(pa.types.is_timestamp(f.type) for f in schema)
    for field in schema:
        assert encoded[field.name] == pa.types.is_string(field.type), field.name
