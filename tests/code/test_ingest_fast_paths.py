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
from leadscore.crm import ingest
from leadscore.crm.ingest import (
    _as_arrow_text,
    _clean_text,
    _in_key_order,
    _key_order,
    _read_parquet,
    _stored_positions,
    _strictly_increasing,
    ingest_export,
)
from leadscore.crm.synth import generate_crm, write_export
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
def test_rows_ordered_by_a_text_key_are_in_the_order_of_a_stable_sort(seed: int) -> None:
    rng = np.random.default_rng(seed)
    keys = rng.choice([f"A{i:04d}" for i in range(300)], 200).astype(object)
    frame = pd.DataFrame({"activity_id": keys, "n": np.arange(len(keys))})
    order = _key_order(frame, ("activity_id",))
    assert order is not None
    expected = frame.sort_values(["activity_id"], kind="stable", ignore_index=True)
    assert frame.take(order).reset_index(drop=True).equals(expected)
    assert _key_order(frame, ("deal_id", "stage")) is None


@pytest.mark.parametrize("stored_in_order", [True, False])
def test_keys_found_in_arrow_are_the_keys_a_hash_of_the_stored_keys_finds(
    stored_in_order: bool,
) -> None:
    """A re-ingest finds its rows among the stored ones (Arrow) by the export's values,
    in order or not; the positions are those of the hash lookup of every stored key."""
    rng = np.random.default_rng(3)
    keys = np.array(sorted({f"X{n}" for n in rng.integers(0, 10**6, 5_000)}), dtype=object)
    if not stored_in_order:
        keys = keys[rng.permutation(len(keys))]
    stored = pa.table({"activity_id": pa.array(keys, pa.string())})
    asked = np.concatenate([rng.choice(keys, 300), [f"X{n}" for n in range(-5, 0)], ["", "Y"]])
    new = pd.DataFrame({"activity_id": rng.permutation(asked)})
    expected = pd.Index(keys).get_indexer(pd.Index(new["activity_id"]))
    found = _stored_positions(stored, new, ("activity_id",))
    np.testing.assert_array_equal(found, expected)
    assert (found >= 0).sum() >= 300 and (found == -1).sum() >= 7
    assert len(_stored_positions(stored, new.iloc[:0], ("activity_id",))) == 0


@pytest.mark.parametrize(
    "values",
    [
        pd.Series(["D1", None, np.nan, pd.NA, " x ", ""], dtype=object),
        pd.Series(["a", pd.NaT], dtype=object),
        pd.Series(["a", b"x"], dtype=object),
        pd.Series(["a", 1, 2.5], dtype=object),
        pd.Series([12, 13], dtype=object),
        pd.Series([None, None], dtype=object),
        pd.Series([], dtype=object),
        pd.Series(["a", np.str_("b"), "总经理"], dtype=object),
        pd.Series(["a", None, "b"], dtype="string[python]"),
        pd.Series(["a", None, "b"], dtype="string[pyarrow]"),
        pd.Series([1.5, np.nan]),
        pd.Series(pd.to_datetime(["2024-01-01", None], utc=True)),
    ],
)
def test_text_taken_to_arrow_from_its_objects_is_pandas_conversion(values: pd.Series) -> None:
    """Python text goes to Arrow straight from its objects; anything else (numbers, bytes,
    mixed) through pandas as before: the Arrow text is the same either way."""
    expected = pa.array(values.astype("string[pyarrow]"))
    assert _as_arrow_text(values).equals(expected)


@pytest.mark.parametrize(
    ("keys", "increasing"),
    [
        (["A1", "A2", "B"], True),
        (["A1", "A1", "B"], False),  # a repeat: the general duplicate check runs
        (["B", "A1"], False),
        (["A1", None, "B"], False),
        (["A1", np.nan], False),
        ([], False),
        ([1, 2], False),
    ],
)
def test_keys_in_strictly_increasing_order_are_keys_without_repeats(
    keys: list[object], increasing: bool
) -> None:
    column = pd.Series(keys, dtype=object)
    assert _strictly_increasing(column) is increasing
    if increasing:
        assert not column.duplicated(keep=False).any()


def _export_with_problems(folder: Path, fmt: str) -> Path:
    """A generated export (rows in key order, as a CRM writes them) with one of each kind
    of problem the checks with fast paths report, plus an identical repeated row."""
    crm = generate_crm(40, seed=3)
    write_export(crm, folder, fmt="parquet")
    tables = {n: pd.read_parquet(folder / f"{n}.parquet") for n in ("deals", "activities")}
    for path in folder.glob("*"):
        if fmt == "csv" and path.stem in {"accounts", "contacts", "deal_contacts", "stage_history"}:
            pd.read_parquet(path).to_csv(folder / f"{path.stem}.csv", index=False)
            path.unlink()
    deals, acts = tables["deals"], tables["activities"].copy()
    deals.loc[3, "status"] = "maybe"  # rejected: its activities name a rejected deal
    rejected_deal = deals.loc[3, "deal_id"]
    first = acts.index[acts["deal_id"] != rejected_deal]
    acts.loc[first[0], "deal_id"] = "NOPE"  # not found in deals
    acts.loc[first[1], "occurred_at"] = pd.Timestamp("2001-01-01", tz="UTC")  # too early
    acts.loc[first[2], "contact_id"] = "  " + str(acts.loc[first[2], "contact_id"]) + " "
    acts.loc[first[3], "type"] = "CALL"  # stored lower-case
    acts.loc[first[4], "type"] = "fax"
    acts.loc[first[5], "deal_id"] = ""  # required
    acts.loc[first[6], "contact_id"] = ""  # missing
    conflict = acts.loc[[first[7]]].assign(duration_seconds=12345.0)
    acts = pd.concat([acts, acts.loc[[first[8]]], conflict]).sort_values(
        "activity_id", kind="stable"
    )
    for name, frame in (("deals", deals), ("activities", acts)):
        (folder / f"{name}.parquet").unlink()
        if fmt == "csv":
            frame.to_csv(folder / f"{name}.csv", index=False)
        else:
            frame.to_parquet(folder / f"{name}.parquet", index=False)
    return folder


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_the_fast_paths_store_the_bytes_and_rejects_of_the_general_ones(
    tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An export in key order takes every fast path of a first ingest (text to Arrow from
    its objects, no duplicate hashing for a key in order, no take of rows in order); the
    same export with those paths turned off, and the export with its rows reversed, store
    the same bytes and reject the same rows for the same reasons."""
    export = _export_with_problems(tmp_path / "export", fmt)
    now = pd.Timestamp("2030-01-01", tz="UTC")
    fast = ingest_export(export, tmp_path / "fast", tmp_path / "fast", now=now)
    assert {r.reason for r in fast.rejects} >= {"deal_id 'NOPE' not found in deals", "is required"}
    assert any(r.value == "fax" and r.reason.startswith("must be one of") for r in fast.rejects)
    assert any("was rejected" in r.reason for r in fast.rejects)
    assert any("before the deal's created_at" in r.reason for r in fast.rejects)
    assert any("conflicting rows" in r.reason for r in fast.rejects)
    assert fast.counts["activities"]["duplicates"] == 1
    with monkeypatch.context() as off:
        off.setattr(ingest, "_strictly_increasing", lambda values: False)
        off.setattr(ingest, "_python_text", lambda values: False)
        off.setattr(ingest, "_key_order", lambda frame, key: None)
        off.setattr(ingest, "_in_key_order", lambda frame, key: False)
        ingest_export(export, tmp_path / "slow", tmp_path / "slow", now=now)
    for name in [*fast.tables, "rejects.csv"]:
        file = name if name.endswith(".csv") else f"{name}.parquet"
        assert (tmp_path / "fast" / file).read_bytes() == (tmp_path / "slow" / file).read_bytes()

    reversed_export = tmp_path / "reversed"
    reversed_export.mkdir()
    for path in export.glob(f"*.{fmt}"):
        if fmt == "csv":
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
            frame.iloc[::-1].to_csv(reversed_export / path.name, index=False)
        else:
            table = pq.read_table(path)
            pq.write_table(table.take(np.arange(len(table))[::-1]), reversed_export / path.name)
    back = ingest_export(reversed_export, tmp_path / "back", tmp_path / "back", now=now)
    for name in fast.tables:
        file = f"{name}.parquet"
        assert (tmp_path / "fast" / file).read_bytes() == (tmp_path / "back" / file).read_bytes()

    def unplaced(rejects: list[ingest.Reject]) -> list[tuple[str, ...]]:
        return sorted((r.table, r.file, r.column, r.value, r.reason) for r in rejects)

    assert unplaced(back.rejects) == unplaced(fast.rejects)


def test_an_export_read_with_text_of_each_pandas_type_is_the_export_pandas_reads(
    tmp_path: Path,
) -> None:
    """Repeated text is made pandas text once per distinct word, whatever the column's
    text type; the frame is still ``pd.read_parquet``'s."""
    words = [f"D{i % 7}" if i % 11 else None for i in range(300)]
    frame = pd.DataFrame(
        {
            "python": pd.array(words, dtype="string[python]"),
            "arrow": pd.array(words, dtype="string[pyarrow]"),
            "objects": pd.Series(words, dtype=object),
            "n": np.arange(300),
        }
    )
    frame.to_parquet(tmp_path / "t.parquet")
    read = _read_parquet(tmp_path / "t.parquet")
    expected = pd.read_parquet(tmp_path / "t.parquet")
    pd.testing.assert_frame_equal(read, expected, check_exact=True)
    assert read.dtypes.equals(expected.dtypes)
    assert list(read.columns) == list(expected.columns)


@pytest.mark.parametrize("seed", range(6))
def test_rows_found_in_key_order_are_the_rows_a_stable_sort_leaves_in_place(seed: int) -> None:
    """A composite key in order (stage history by deal and time) skips the sort only when
    the sort would not move a row."""
    rng = np.random.default_rng(seed)
    n = 60
    frame = pd.DataFrame(
        {
            "deal_id": pd.Series(rng.choice(["D1", "D2", "D10", "E"], n), dtype=object),
            "entered_at": pd.Series(
                pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 4, n), "D")
            ).astype("datetime64[us, UTC]"),
            "n": np.arange(n),
        }
    )
    key = ("deal_id", "entered_at")
    ordered = frame.sort_values(list(key), kind="stable", ignore_index=True)
    for candidate in (frame, ordered, ordered.iloc[::-1].reset_index(drop=True)):
        unmoved = candidate.sort_values(list(key), kind="stable")["n"].tolist()
        assert _in_key_order(candidate, key) == (unmoved == candidate["n"].tolist())
    assert _in_key_order(ordered, key)
    gap = ordered.copy()
    gap.loc[n - 1, "entered_at"] = pd.NaT
    assert not _in_key_order(gap, key)  # a missing key value: the sort decides
