"""Partial exports: missing tables and columns, undated deals, line numbers, historical as-of.

Each test fails if its behaviour goes away: the contract's list of missing features is
derived here from the features themselves, empty sources are read back with their Parquet
types, and the random split and not-applicable checks come from a real training run.
"""

from __future__ import annotations

import fnmatch
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from leadscore.crm.contract import MISSING_WITHOUT, OPEN, UNDATED, contract_markdown
from leadscore.crm.ingest import historical_as_of, ingest_export, last_recorded_event
from leadscore.crm.synth import generate_crm
from leadscore.features.catalog import MODEL_FEATURES
from leadscore.features.featurize import (
    build_feature_sources,
    features_as_of,
    model_frame,
    profile_source,
    scoring_entities,
    snapshot_entities,
    write_sources,
)
from leadscore.features.source_files import read_schema
from leadscore.priority.health import HealthThresholds, quiet_days, risk_flags
from leadscore.priority.rank import default_as_of, select_candidates
from training.data import UNDATED_WINDOW, in_memory_frame
from training.report import model_card
from training.result import TrainConfig
from training.split import RANDOM_SPLIT, SplitBounds, choose_split, slice_masks
from training.train import fit_and_evaluate

AS_OF = pd.Timestamp("2019-03-01", tz="UTC")


@lru_cache(maxsize=1)
def crm() -> dict[str, pd.DataFrame]:
    return generate_crm(300, seed=5, as_of=AS_OF).tables


def missing_features(tables: dict[str, pd.DataFrame]) -> set[str]:
    """Model features missing for every deal scored at AS_OF."""
    entities = scoring_entities(tables["deals"], AS_OF)
    frame = model_frame(features_as_of(build_feature_sources(tables), entities))
    return {c for c in frame.columns if frame[c].isna().all()}


def without(what: str) -> dict[str, pd.DataFrame]:
    tables = dict(crm())
    if "." not in what:
        return {k: v for k, v in tables.items() if k != what}
    table, column = what.split(".")
    return {**tables, table: tables[table].assign(**{column: None})}


# ------------------------------------------------------------------ the contract
def test_the_contract_says_exactly_which_features_each_absence_leaves_missing():
    assert missing_features(dict(crm())) == set()
    for what, patterns in MISSING_WITHOUT.items():
        documented = {f for f in MODEL_FEATURES if any(fnmatch.fnmatch(f, p) for p in patterns)}
        assert missing_features(without(what)) == documented, what
    doc = contract_markdown()
    assert "| `deals.created_at` | `deal_age_days` |" in doc
    assert "the 10th data row is line 11" in doc


def test_only_deal_id_and_status_are_required_and_open_leads_need_no_account(tmp_path: Path):
    export = tmp_path / "export"
    export.mkdir()
    (export / "deals.csv").write_text(
        "deal_id,status,account_id,created_at,closed_at\n"
        "D1,open,,,\n"  # an open lead: no account, no creation date
        "D2,won,A1,,\n"  # closed, undated
        "D3,lost,,2019-01-01,\n"  # closed without closed_at: undated too
        "D4,open,A1,2019-01-01,2019-02-01\n"  # closed_at on an open deal is still wrong
    )
    result = ingest_export(export, tmp_path / "crm", tmp_path / "rejects", now=AS_OF)
    assert sorted(result.tables["deals"]["deal_id"]) == ["D1", "D2", "D3"]
    (reject,) = result.rejects
    assert (reject.place, reject.column, reject.reason) == (
        "deals.csv line 5",
        "closed_at",
        "must be empty when status is open",
    )


# ------------------------------------------------------------------ empty sources
def test_empty_sources_are_written_with_the_types_of_full_ones(tmp_path: Path):
    """The IbisTypeError of an export with only deals and accounts: a source with no
    rows had a key of Parquet type null. Every column must be typed as when built."""
    tables = crm()
    full = write_sources(build_feature_sources(tables), tmp_path / "full")
    partial_tables = {"deals": tables["deals"], "accounts": tables["accounts"]}
    rows = write_sources(build_feature_sources(partial_tables), tmp_path / "partial")
    assert rows["deal_activity"] == rows["deal_stage"] == rows["deal_contacts"] == 0
    assert full["deal_activity"] > 0
    for view in rows:
        empty = read_schema(tmp_path / "partial" / f"{view}.parquet")
        built = read_schema(tmp_path / "full" / f"{view}.parquet")
        assert empty.remove_metadata() == built.remove_metadata(), view
        assert not any(pa.types.is_null(f.type) for f in empty), view


# ------------------------------------------------------------------ undated deals
def test_an_undated_deal_is_known_since_undated_and_its_age_is_never_invented():
    deals = crm()["deals"].head(6).copy()
    deals["created_at"] = pd.NaT
    deals["account_id"] = None
    profile = profile_source(deals, crm()["accounts"])
    assert (profile["event_timestamp"] == UNDATED).all()
    assert profile["deal_created_at"].isna().all()
    assert (profile["deal_account_id"] == "").all()
    features = features_as_of(
        build_feature_sources({"deals": deals}), scoring_entities(deals, AS_OF)
    )
    assert features["deal_age_days"].isna().all()
    assert features["channel"].notna().any()  # the profile itself is there


def test_an_undated_closed_deal_gets_one_snapshot_and_a_dated_one_several():
    deals = crm()["deals"]
    closed = deals[deals["status"] != OPEN].head(10).copy()
    closed.loc[closed.index[:4], "created_at"] = pd.NaT  # undated: no creation
    closed.loc[closed.index[4:6], "closed_at"] = pd.NaT  # undated: no close
    snaps = snapshot_entities(closed, 14)
    per_deal = snaps.groupby("deal_id").size()
    undated = closed["deal_id"].iloc[:6]
    assert (per_deal[undated] == 1).all()
    assert (
        snaps.set_index("deal_id").loc[closed["deal_id"].iloc[:4], "event_timestamp"] == UNDATED
    ).all()
    at_creation = snaps.set_index("deal_id").loc[closed["deal_id"].iloc[4:6], "event_timestamp"]
    assert (at_creation.to_numpy() == closed["created_at"].iloc[4:6].to_numpy()).all()
    assert (per_deal[closed["deal_id"].iloc[6:]] >= 1).all() and per_deal.sum() > 10


def test_ranking_selects_undated_open_deals():
    deals = crm()["deals"].copy()
    deals.loc[deals["status"] == OPEN, "created_at"] = pd.NaT
    chosen = select_candidates(deals, AS_OF, 180)
    assert set(deals.loc[deals["status"] == OPEN, "deal_id"]) <= set(chosen["deal_id"])


# ------------------------------------------------------------------ the split
def frame_of(n: int, dated: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    closed = pd.Series(
        pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(rng.integers(0, 300, n), unit="D")
    )
    created = closed - pd.Timedelta(days=20)
    closed[dated:] = pd.NaT
    return pd.DataFrame(
        {
            "deal_id": [f"D{i}" for i in range(n)],
            "created_at": created,
            "closed_at": closed,
            "won": rng.integers(0, 2, n),
        }
    )


def test_without_dates_the_split_is_random_stratified_and_rebuildable():
    frame = frame_of(400, dated=0)
    bounds = choose_split(frame, seed=3)
    assert bounds.method == "random" and bounds.note == RANDOM_SPLIT
    masks = slice_masks(frame, bounds)
    assert (np.sum(list(masks.values()), axis=0) == 1).all()  # every deal in one slice
    rate = frame["won"].mean()
    for name, mask in masks.items():
        assert abs(frame["won"][mask].mean() - rate) < 0.02, name  # stratified
        assert abs(mask.mean() - dict(train=0.70, valid=0.15, test=0.15)[name]) < 0.02
    again = SplitBounds.from_dict(bounds.to_dict())
    shuffled = frame.sample(frac=1.0, random_state=1)
    for name, mask in slice_masks(shuffled, again).items():
        assert set(shuffled["deal_id"][mask]) == set(frame["deal_id"][masks[name]])
    other = slice_masks(frame, choose_split(frame, seed=4))
    assert not (other["test"] == masks["test"]).all()  # the seed decides


def test_with_some_dates_the_undated_deals_are_left_out_and_counted():
    frame = frame_of(300, dated=250)
    bounds = choose_split(frame)
    assert bounds.method == "time" and bounds.undated_left_out == 50
    assert "50 undated closed deals" in bounds.note and "left out" in bounds.note
    masks = slice_masks(frame, bounds)
    in_a_slice = np.logical_or.reduce(list(masks.values()))
    assert in_a_slice.sum() == 250 and not in_a_slice[250:].any()
    assert SplitBounds.from_dict(bounds.to_dict()) == bounds


def test_an_export_without_dates_or_other_tables_trains_says_so_and_checks_are_not_applicable():
    tables = crm()
    deals = tables["deals"].assign(created_at=pd.NaT, closed_at=pd.NaT)
    frame = in_memory_frame({"deals": deals, "accounts": tables["accounts"]})
    assert (frame["snapshot_index"] == 0).all() and frame["deal_id"].is_unique
    result = fit_and_evaluate(
        frame, "svc", TrainConfig(bootstrap_resamples=0, min_class_deals=20, warn_min_class_deals=1)
    )
    split = result.evaluation["data"]["split"]
    assert split["method"] == "random" and split["note"] == RANDOM_SPLIT
    assert result.model.info["split"]["note"] == RANDOM_SPLIT
    assert result.evaluation["data"]["window"]["first_close"] == UNDATED_WINDOW
    behaviour = result.behaviour
    assert behaviour.passed and behaviour.failures() == []
    assert {"has_economic_buyer", "senior_met", "median_reply_hours"} <= set(
        behaviour.not_applicable()
    )
    recorded = result.evaluation["behaviour"]["checks"]["has_economic_buyer"]
    assert recorded["status"] == "not applicable" and recorded["rows"] == 0
    card = model_card(result, pd.DataFrame({"feature": [], "gain_share": []}))
    assert RANDOM_SPLIT in card and "| not applicable |" in card


# ------------------------------------------------------------------ line numbers
def test_a_reject_names_the_physical_line_after_a_quoted_line_break(tmp_path: Path):
    export = tmp_path / "export"
    export.mkdir()
    (export / "deals.csv").write_text(
        "deal_id,status,channel\n"
        'D1,open,"two\nlines"\n'  # lines 2-3
        "\n"  # line 4: blank, skipped by the reader
        "D2,maybe,web\n"  # line 5
    )
    (reject,) = ingest_export(export, tmp_path / "crm", tmp_path / "r", now=AS_OF).rejects
    assert reject.line == 5 and reject.place == "deals.csv line 5"
    rejects = pd.read_csv(tmp_path / "r" / "rejects.csv")
    assert list(rejects["line"]) == [5]


def test_a_parquet_reject_names_its_row(tmp_path: Path):
    export = tmp_path / "export"
    export.mkdir()
    pd.DataFrame({"deal_id": ["D1", "D2"], "status": ["open", "maybe"]}).to_parquet(
        export / "deals.parquet"
    )
    (reject,) = ingest_export(export, tmp_path / "crm", tmp_path / "r", now=AS_OF).rejects
    assert reject.place == "deals.parquet row 2"


# ------------------------------------------------------------------ as-of and health
def test_a_historical_export_is_looked_at_as_of_its_last_event(tmp_path: Path):
    export = tmp_path / "export"
    export.mkdir()
    (export / "deals.csv").write_text(
        "deal_id,status,created_at,closed_at\nD1,open,2019-02-01,\nD2,won,2019-01-01,2019-03-02T10:00:00Z\n"
    )
    ingest_export(export, tmp_path / "crm", tmp_path / "r", now=AS_OF + pd.Timedelta(days=1))
    last = pd.Timestamp("2019-03-02T10:00:00Z")
    assert last_recorded_event(tmp_path / "crm") == last
    assert historical_as_of(tmp_path / "crm", last + pd.Timedelta(hours=23)) is None
    now = pd.Timestamp("2025-01-01", tz="UTC")
    as_of, note = default_as_of(tmp_path / "crm", now)
    assert as_of == last
    assert (
        note == "ranked as of 2019-03-02, the export's last recorded event; pass --as-of to change"
    )
    assert default_as_of(tmp_path / "crm", last + pd.Timedelta(hours=1)) == (
        last + pd.Timedelta(hours=1),
        None,
    )


def test_without_an_activities_table_no_deal_is_quiet_or_flagged_for_follow_up():
    tables = without("activities")
    deals = tables["deals"][tables["deals"]["status"] == OPEN]
    features = features_as_of(build_feature_sources(tables), scoring_entities(deals, AS_OF))
    assert (quiet_days(features) > 14).any()  # read as "no activity since creation"...
    assert quiet_days(features, activities_logged=False).isna().all()  # ...unless none is logged
    flagged = risk_flags(features, HealthThresholds(), {}, activities_logged=False)
    assert not any(f.code == "no_follow_up" for flags in flagged for f in flags)
    assert any(
        f.code == "no_follow_up"
        for flags in risk_flags(features, HealthThresholds(), {})
        for f in flags
    )
