"""The shortcuts that make ingest fast (issue 14) keep its results: each is checked
against the long way, and for what makes it fast where that can be seen."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from leadscore.config import PROJECT_ROOT
from leadscore.crm.ingest import _clean_text, _merge_order, _stored_positions
from leadscore.features.featurize import build_feature_sources, iter_feature_sources, write_sources
from leadscore.timeutil import as_utc
from tests.crm_fixture import tiny_crm


def test_importing_the_ingest_step_leaves_the_model_and_serving_libraries_out() -> None:
    """`leadscore ingest` imports pipelines.steps; LightGBM, MLflow, BentoML and Feast
    took a third of a 20,000-deal ingest to import and ingest uses none of them."""
    code = (
        "import sys, pipelines.steps; "
        "print(sorted(m for m in ('lightgbm', 'mlflow', 'bentoml', 'feast') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_tidy_text_keeps_its_objects_and_untidy_text_is_cleaned() -> None:
    tidy = pd.Series(["D1", None, "D2", np.nan], dtype=object)
    kept = _clean_text(tidy)
    assert kept.tolist() == ["D1", None, "D2", None]
    assert kept.iloc[0] is tidy.iloc[0]  # the same str object: nothing was made anew
    assert _clean_text(tidy, lower=True).iloc[0] == "d1"
    untidy = pd.Series([" D1 ", "", "  ", 12, None], dtype=object)
    assert _clean_text(untidy).tolist() == ["D1", None, None, "12", None]
    assert _clean_text(pd.Series([12, 13], dtype=object)).tolist() == ["12", "13"]


def test_as_utc_of_datetimes_with_gaps_is_the_cached_conversion() -> None:
    times = pd.Series(pd.date_range("2024-01-01", periods=200, freq="h", tz="Europe/Paris"))
    times[::7] = pd.NaT
    expected = pd.to_datetime(times, utc=True).astype("datetime64[us, UTC]")
    assert as_utc(times).equals(expected)
    naive = times.dt.tz_localize(None)
    assert as_utc(naive).equals(pd.to_datetime(naive, utc=True).astype("datetime64[us, UTC]"))


def test_sources_written_as_built_are_the_sources_written_at_once(tmp_path: Path) -> None:
    tables = tiny_crm()
    at_once = write_sources(build_feature_sources(tables), tmp_path / "at_once")
    as_built = write_sources(iter_feature_sources(tables), tmp_path / "as_built")
    assert as_built == at_once
    for view in at_once:
        left = pq.read_table(tmp_path / "at_once" / f"{view}.parquet")
        right = pq.read_table(tmp_path / "as_built" / f"{view}.parquet")
        assert left.equals(right), view


def test_a_failed_source_write_stops_the_run(tmp_path: Path) -> None:
    """The write runs on a thread: its error must reach the caller, not be lost there."""
    bad = pd.DataFrame({"deal_id": ["D1"], "event_timestamp": [pd.Timestamp("2024-01-01")]})
    bad["channel"] = [object()]  # a categorical feature that is no text: cannot be written
    with pytest.raises(pa.ArrowTypeError):
        write_sources(iter([("deal_profile", bad)]), tmp_path)


@pytest.mark.parametrize("seed", range(5))
def test_a_delta_merged_into_sorted_stored_rows_is_in_the_order_of_a_full_sort(seed: int) -> None:
    rng = np.random.default_rng(seed)
    stored = np.sort(rng.choice([f"A{i:04d}" for i in range(3000)], 500, replace=False))
    new = rng.choice([f"A{i:04d}" for i in range(-50, 3100)], 40, replace=False)
    new = new[~np.isin(new, stored)]
    keys = np.concatenate([stored, new]).astype(object)
    merged = pd.DataFrame({"activity_id": keys, "n": np.arange(len(keys))})
    order = _merge_order(merged, ("activity_id",), len(stored))
    assert order is not None
    expected = merged.sort_values(["activity_id"], kind="stable", ignore_index=True)
    assert merged.take(order).reset_index(drop=True).equals(expected)
    unsorted = merged.iloc[::-1].reset_index(drop=True)
    assert _merge_order(unsorted, ("activity_id",), len(stored)) is None
    assert _merge_order(merged, ("deal_id", "stage"), len(stored)) is None


@pytest.mark.parametrize("stored_in_order", [True, False])
def test_keys_found_by_binary_search_are_the_keys_a_hash_finds(stored_in_order: bool) -> None:
    """A re-ingest finds its rows among the stored ones by binary search when the stored
    keys are in order (as written); elsewhere the hash lookup stays."""
    rng = np.random.default_rng(3)
    keys = np.array(sorted({f"X{n}" for n in rng.integers(0, 10**6, 5_000)}), dtype=object)
    if not stored_in_order:
        keys = keys[rng.permutation(len(keys))]
    stored = pd.DataFrame({"activity_id": pd.array(keys, dtype="string")})
    asked = np.concatenate([rng.choice(keys, 300), [f"X{n}" for n in range(-5, 0)], ["", "Y"]])
    new = pd.DataFrame({"activity_id": rng.permutation(asked)})
    expected = pd.Index(stored["activity_id"]).get_indexer(pd.Index(new["activity_id"]))
    found = _stored_positions(stored, new, ("activity_id",))
    np.testing.assert_array_equal(found, expected)
    assert (found >= 0).sum() >= 300 and (found == -1).sum() >= 7
    assert len(_stored_positions(stored, new.iloc[:0], ("activity_id",))) == 0
