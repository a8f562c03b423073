"""Memory of the Feast steps: chunks of a training set's point-in-time join
(``leadscore.features.store.deal_chunks``) and the limit of Feast's DuckDB."""

from __future__ import annotations

import numpy as np
import pandas as pd

from leadscore.features.store import deal_chunks


def test_chunks_are_sorted_ranges_of_whole_deals_and_cover_every_row_once():
    rng = np.random.default_rng(0)
    ids = pd.Series(rng.choice([f"D{i:03d}" for i in range(57)], size=400))
    chunks = deal_chunks(ids, 10)
    assert len(chunks) == 6
    assert sorted(np.concatenate(chunks)) == list(range(len(ids)))
    deals = [set(ids.iloc[c]) for c in chunks]
    assert all(len(d) <= 10 for d in deals)
    assert sum(map(len, deals)) == ids.nunique()  # no deal in two chunks
    assert all(max(a) < min(b) for a, b in zip(deals, deals[1:], strict=False))  # ranges
    assert all((np.diff(c) > 0).all() for c in chunks)  # each chunk in the rows' order


def test_no_size_or_few_deals_is_one_chunk_of_every_row():
    ids = pd.Series(["b", "a", "b"])
    for size in (0, 2, 5):
        (only,) = deal_chunks(ids, size)
        assert list(only) == [0, 1, 2]


def test_feasts_duckdb_gets_the_memory_limit_and_spill_folder_of_the_settings(tmp_path):
    """Feast's DuckDB offline store runs in ibis's default backend, whose own limit is 80%
    of the machine: the Feast steps set it from the settings."""
    import dataclasses

    import ibis

    from leadscore.config import load_settings
    from leadscore.features.store import limit_duckdb

    settings = load_settings(feature_repo=tmp_path / "features")
    con = ibis.get_backend()
    setting = "SELECT current_setting('memory_limit'), current_setting('temp_directory')"
    before = con.raw_sql(setting).fetchone()
    try:
        limit_duckdb(dataclasses.replace(settings, duckdb_memory="1GiB"))
        limit, spill = con.raw_sql(setting).fetchone()
        assert limit == "1.0 GiB"
        assert spill == str(settings.duckdb_spill_dir)
        assert settings.duckdb_spill_dir.is_dir()
    finally:
        con.raw_sql(f"SET memory_limit = '{before[0]}'")
        con.raw_sql(f"SET temp_directory = '{before[1]}'")


def test_the_key_ordered_backend_keeps_feasts_rows_in_key_order():
    """The engine's backend keeps the rows Feast's pandas backend keeps (each key's latest,
    the created time breaking ties), only in key order."""
    from feast.infra.compute_engines.backends.pandas_backend import PandasBackend

    from leadscore.features.compute_engine import KeyOrderedPandasBackend

    rng = np.random.default_rng(3)
    n = 500
    df = pd.DataFrame(
        {
            "deal_id": rng.choice([f"D{i:04d}" for i in range(120)], size=n),
            "event_timestamp": pd.to_datetime(rng.integers(0, 50, size=n), unit="D", utc=True),
            "created": pd.to_datetime(rng.integers(0, 5, size=n), unit="h", utc=True),
            "x": rng.normal(size=n),
        }
    )
    args = {"keys": ["deal_id"], "sort_by": ["event_timestamp", "created"]}
    feast = PandasBackend().drop_duplicates(df, **args)
    ours = KeyOrderedPandasBackend().drop_duplicates(df, **args)
    assert ours["deal_id"].is_monotonic_increasing
    pd.testing.assert_frame_equal(ours, feast.sort_values("deal_id"), check_exact=True)
