"""A re-ingest rebuilds only what its changes reach, and writes what a full build writes.

Each case ingests a first export, then a second one twice: into a store that updates its
sources incrementally (the default) and into a copy that rebuilds them all
(``rebuild=True``). Every source file must be the same frame, row for row; and the
incremental run must have rebuilt fewer deals than there are, or the test proves nothing.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from leadscore.crm.ingest import TableChange
from leadscore.crm.synth import generate_crm, write_export
from leadscore.features.featurize import VIEW_KEYS
from leadscore.features.incremental import BUILD_FILE, reach
from leadscore.features.source_files import parts
from pipelines.steps import IngestSummary, ingest
from tests.conftest import isolated

AS_OF = pd.Timestamp("2025-06-30", tz="UTC")


@pytest.fixture(scope="module")
def first_crm():
    return generate_crm(300, seed=5, as_of=AS_OF, revival=True, history_days=900)


def _write(tables: dict[str, pd.DataFrame], folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name, frame in tables.items():
        pq.write_table(
            pa.Table.from_pandas(frame, preserve_index=False), folder / f"{name}.parquet"
        )
    return folder


def _row_groups(path: Path) -> list[int]:
    meta = pq.ParquetFile(path).metadata
    return [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]


def _both_ways(
    tmp_path: Path,
    first: Path,
    second: Path,
    chunk_deals: int | None = None,
    first_chunk_deals: int | None = None,
) -> tuple[IngestSummary, IngestSummary]:
    """Ingest ``first`` then ``second`` into an incremental store and a rebuilding one;
    assert their sources are the same frames, cut into the same row groups (the ranges of
    ``chunk_deals`` deals a full build writes; default: the settings'), and return the
    two second summaries. ``first_chunk_deals`` (default: ``chunk_deals``) cuts the
    first ingest's files otherwise, as a changed ``LEADSCORE_SOURCE_CHUNK_DEALS`` would."""
    summaries = []
    sources = []
    for name, rebuild in (("incremental", False), ("full", True)):
        settings = isolated(tmp_path / name)
        chunks = (chunk_deals if first_chunk_deals is None else first_chunk_deals, chunk_deals)
        if chunks[0] is not None:
            settings = replace(settings, source_chunk_deals=chunks[0])
        ingest(first, settings, now=AS_OF + pd.Timedelta(days=400))
        if chunks[1] is not None:
            settings = replace(settings, source_chunk_deals=chunks[1])
        summary = ingest(second, settings, now=AS_OF + pd.Timedelta(days=400), rebuild=rebuild)
        assert summary.rejects == []  # every change was stored, so every one is tested
        summaries.append(summary)
        sources.append(settings.sources_dir)
    incremental, full = sources
    assert summaries[0].source_rows == summaries[1].source_rows
    for view in VIEW_KEYS:
        path = full / f"{view}.parquet"
        if not path.exists():
            assert not (incremental / f"{view}.parquet").exists(), view
            continue
        # The same months, each with the same rows in the same order, every value and type.
        months, full_months = parts(incremental / f"{view}.parquet"), parts(path)
        assert list(months) == list(full_months), view
        for month, part in months.items():
            pd.testing.assert_frame_equal(
                pd.read_parquet(part), pd.read_parquet(full_months[month]), obj=f"{view} {month}"
            )
            # Rewritten, a month is cut as a full build cuts it; kept, it is the committed
            # file itself (a hard link into the new state), cut as the first ingest cut it.
            if not _kept(part):
                assert _row_groups(part) == _row_groups(full_months[month]), (view, month)
        pd.testing.assert_frame_equal(
            pd.read_parquet(incremental / f"{view}.parquet"), pd.read_parquet(path), obj=view
        )
    return summaries[0], summaries[1]


def _kept(part: Path) -> bool:
    """Whether a source's month is the committed file of an earlier generation (linked)."""
    return part.stat().st_nlink > 1


def _small_change(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """A delta export: the late events a CRM sends the day after, and the edits that move
    a deal between accounts and owners or change what a contact or an account is."""
    deals = tables["deals"].copy()
    open_deals = deals[deals["status"] == "open"]
    closing, moved_owner, moved_account = (open_deals.iloc[i] for i in (0, 1, 2))
    lost = deals[deals["status"] == "lost"].iloc[0]
    other_owner = next(o for o in deals["owner_id"].unique() if o != moved_owner["owner_id"])
    other_account = next(
        a for a in deals["account_id"].unique() if a != moved_account["account_id"]
    )
    when = AS_OF + pd.Timedelta(days=3)
    changed = deals[
        deals["deal_id"].isin([closing.deal_id, moved_owner.deal_id, moved_account.deal_id])
    ].copy()
    changed.loc[changed["deal_id"] == closing.deal_id, ["status", "stage", "closed_at"]] = [
        "won",
        "closed",
        when,
    ]
    changed.loc[changed["deal_id"] == moved_owner.deal_id, "owner_id"] = other_owner
    changed.loc[changed["deal_id"] == moved_account.deal_id, "account_id"] = other_account
    follow_up = deals[deals["deal_id"] == lost.deal_id].copy()
    # Its id sorts among the stored deals': every range after it starts a deal later.
    revived = f"{lost.deal_id}-follow-up"
    follow_up["deal_id"] = revived
    follow_up[["created_at", "stage", "status", "closed_at", "lost_reason"]] = [
        when,
        "lead",
        "open",
        pd.NaT,
        None,
    ]
    follow_up["previous_deal_id"] = lost.deal_id
    stage = pd.DataFrame(
        {
            "deal_id": [closing.deal_id, revived],
            "stage": ["closed", "lead"],
            "entered_at": [when, when],
        }
    )
    activities = tables["activities"]
    late = activities[activities["deal_id"] == lost.deal_id].tail(1).copy()
    late["activity_id"] = "X9999999"
    late["occurred_at"] = when
    contacts = tables["contacts"]
    promoted = contacts.iloc[[0]].copy()
    promoted["title"] = "总经理"
    accounts = tables["accounts"]
    grown = accounts.iloc[[1]].copy()
    grown["employee_count"] = grown["employee_count"] * 3
    return {
        "accounts": grown,
        "contacts": promoted,
        "deals": pd.concat([changed, follow_up], ignore_index=True),
        "stage_history": stage,
        "activities": late,
    }


@pytest.mark.parametrize("chunk_deals", [None, 0, 1, 7, 40])
def test_a_small_change_rebuilds_a_few_accounts_and_gives_the_full_build(
    tmp_path, first_crm, chunk_deals
):
    """Also with the deal-keyed sources in many ranges: the re-ingest splices a range at
    a time, and the new deal (its id among the others') moves every later range's cut."""
    first = tmp_path / "first"
    write_export(first_crm, first)
    second = _write(_small_change(first_crm.tables), tmp_path / "second")

    incremental, full = _both_ways(tmp_path, first, second, chunk_deals)

    assert full.deals_rebuilt is None
    assert incremental.deals_rebuilt is not None
    assert 0 < incremental.deals_rebuilt < incremental.deals_stored / 3


def _day_after(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """A day's sync at the end of the timeline: a new activity on a few open deals, one
    of them closed (won, with its stage row) and one lost."""
    deals = tables["deals"]
    open_deals = deals[deals["status"] == "open"].head(6)
    when = AS_OF + pd.Timedelta(days=3)  # the next month: no committed month holds it
    activities = tables["activities"]
    new = activities[activities["deal_id"].isin(open_deals["deal_id"])]
    new = new.groupby("deal_id").tail(1).copy()
    new["activity_id"] = [f"X{i:07d}" for i in range(len(new))]
    new["occurred_at"] = when
    closing = open_deals.head(2).copy()
    closing[["status", "stage", "closed_at"]] = [["won", "closed", when], ["lost", "closed", when]]
    stage = pd.DataFrame({"deal_id": closing["deal_id"], "stage": "closed", "entered_at": when})
    return {"deals": closing, "stage_history": stage, "activities": new}


def test_a_day_after_change_rewrites_only_the_months_it_reaches(tmp_path, first_crm):
    """The months before the change are kept as committed (hard links), not rewritten:
    the rows of a deal, its account and its owner before the moment of a close or an
    activity do not change with it (features as of their moment)."""
    write_export(first_crm, tmp_path / "first")
    second = _write(_day_after(first_crm.tables), tmp_path / "second")

    incremental, _ = _both_ways(tmp_path, tmp_path / "first", second, chunk_deals=40)

    assert incremental.deals_rebuilt is not None
    sources = isolated(tmp_path / "incremental").sources_dir
    rewritten = {
        (view, month)
        for view in VIEW_KEYS
        for month, part in parts(sources / f"{view}.parquet").items()
        if not _kept(part)
    }
    assert {month for _, month in rewritten} == {"2025-07"}, sorted(rewritten)
    kept = sum(_kept(p) for v in VIEW_KEYS for p in parts(sources / f"{v}.parquet").values())
    assert kept > 10 * len(rewritten)


@pytest.mark.parametrize(("before", "after"), [(0, 7), (7, 40), (40, 7)])
def test_ranges_cut_otherwise_than_the_committed_files_give_the_full_build(
    tmp_path, first_crm, before, after
):
    """The committed files were cut into other ranges (another chunk size): a range of
    the re-ingest spans several of their row groups, or a row group several ranges."""
    write_export(first_crm, tmp_path / "first")
    second = _write(_small_change(first_crm.tables), tmp_path / "second")

    incremental, _ = _both_ways(tmp_path, tmp_path / "first", second, after, before)

    assert incremental.deals_rebuilt is not None


def test_a_month_later_export_gives_the_full_build(tmp_path, first_crm):
    """A whole later export: closes, new deals and activities everywhere."""
    first = tmp_path / "first"
    write_export(first_crm, first)
    later = generate_crm(
        300, seed=5, as_of=AS_OF + pd.Timedelta(days=30), revival=True, history_days=930
    )
    write_export(later, tmp_path / "second")

    incremental, _ = _both_ways(tmp_path, first, tmp_path / "second", chunk_deals=40)

    assert incremental.deals_rebuilt is not None


def test_sources_of_another_definition_are_rebuilt_in_full(tmp_path, first_crm):
    write_export(first_crm, tmp_path / "first")
    second = _write(_small_change(first_crm.tables), tmp_path / "second")
    settings = isolated(tmp_path / "store")
    ingest(tmp_path / "first", settings, now=AS_OF + pd.Timedelta(days=400))
    record = settings.sources_dir / BUILD_FILE
    # What a deploy of new feature code looks like to the stored sources.
    record.write_text(json.dumps({**json.loads(record.read_text()), "definition": "older code"}))

    summary = ingest(second, settings, now=AS_OF + pd.Timedelta(days=400))

    assert summary.deals_rebuilt is None


def test_a_missing_source_file_means_a_full_build(tmp_path, first_crm):
    write_export(first_crm, tmp_path / "first")
    second = _write(_small_change(first_crm.tables), tmp_path / "second")
    settings = isolated(tmp_path / "store")
    ingest(tmp_path / "first", settings, now=AS_OF + pd.Timedelta(days=400))
    generation = (settings.sources_dir / "deal_stage.parquet").resolve()
    # A damaged store: the committed generation lost a source (never done by the product).
    shutil.rmtree(generation)

    summary = ingest(second, settings, now=AS_OF + pd.Timedelta(days=400))

    assert summary.deals_rebuilt is None
    assert parts(settings.sources_dir / "deal_stage.parquet")


def test_a_moved_deal_reaches_both_accounts_and_both_owners():
    deals = pd.DataFrame(
        {
            "deal_id": ["D1", "D2", "D3", "D4", "D5"],
            "account_id": ["A2", "A1", "A2", "A3", None],
            "owner_id": ["O2", "O1", "O1", "O3", "O3"],
        }
    )
    old = pd.DataFrame({"deal_id": ["D1"], "account_id": ["A1"], "owner_id": ["O1"]})
    new = deals.iloc[[0]]
    reached = reach({"deals": deals}, {"deals": TableChange(new=new, old=old)})
    assert reached.accounts == {"A1", "A2"}
    assert reached.deals == {"D1", "D2", "D3"}  # every deal of both accounts, not A3's
    assert reached.owners == {"O1", "O2"}
    assert reached.own_deals == {"D1"}  # its account's other deals keep their own rows


def test_a_deal_s_own_views_are_rebuilt_for_deals_whose_own_rows_or_account_row_changed():
    """An activity reaches every deal of its deal's account (the account's record, a lost
    deal's account counts) but the profile, stage, contact and activity rows of its own
    deal only; a changed ``accounts`` row reaches the own views of every deal naming it."""
    deals = pd.DataFrame(
        {
            "deal_id": ["D1", "D2", "D3", "D4", "D5"],
            "account_id": ["A1", "A1", "A2", "A2", None],
            "owner_id": ["O1", "O2", "O1", "O3", "O3"],
        }
    )
    activity = pd.DataFrame({"activity_id": ["X1", "X2"], "deal_id": ["D1", "D5"]})
    account = pd.DataFrame({"account_id": ["A2"], "industry": ["Retail"]})
    reached = reach(
        {"deals": deals},
        {
            "activities": TableChange(new=activity, old=activity.iloc[:0]),
            "accounts": TableChange(new=account, old=account.iloc[:0]),
        },
    )
    assert reached.deals == {"D1", "D2", "D3", "D4", "D5"}
    assert reached.own_deals == {"D1", "D5", "D3", "D4"}  # not D2: only its account moved
    assert reached.owners == set()  # no deal row changed


def test_a_changed_contact_reaches_the_deals_it_is_on():
    deals = pd.DataFrame(
        {"deal_id": ["D1", "D2", "D3"], "account_id": ["A1", "A2", None], "owner_id": ["O1"] * 3}
    )
    deal_contacts = pd.DataFrame({"deal_id": ["D1"], "contact_id": ["C1"]})
    activities = pd.DataFrame({"deal_id": ["D3", "D2"], "contact_id": ["C1", "C2"]})
    contact = pd.DataFrame({"contact_id": ["C1"], "title": ["CEO"]})
    reached = reach(
        {"deals": deals, "deal_contacts": deal_contacts, "activities": activities},
        {"contacts": TableChange(new=contact, old=contact.iloc[:0])},
    )
    assert reached.deals == {"D1", "D3"}  # D3 has no account: its own group
    assert reached.owners == set()  # no deal row changed: no track record moves


def test_a_change_that_rebuilds_no_rows_of_a_source_gives_the_full_build(tmp_path, first_crm):
    """A late activity of an open deal whose account has no lost deal, and no change of
    a deal: the revival and owner sources get no rebuilt rows, and whether the committed
    ones hold rows of the reached keys is read from their files."""
    deals = first_crm.tables["deals"]
    accounts_with_losses = set(deals.loc[deals["status"] == "lost", "account_id"])
    quiet = deals[(deals["status"] == "open") & ~deals["account_id"].isin(accounts_with_losses)]
    deal = quiet.iloc[0]
    activities = first_crm.tables["activities"]
    late = activities[activities["deal_id"] == deal.deal_id].tail(1).copy()
    if late.empty:
        late = activities.head(1).copy()
        late["deal_id"] = deal.deal_id
    late["activity_id"] = "X9999998"
    late["occurred_at"] = AS_OF + pd.Timedelta(days=2)
    write_export(first_crm, tmp_path / "first")
    # The deal's row as stored (an export needs a deals table): unchanged, so no owner
    # is reached.
    unchanged = deals[deals["deal_id"] == deal.deal_id]
    second = _write({"deals": unchanged, "activities": late}, tmp_path / "second")

    incremental, _ = _both_ways(tmp_path, tmp_path / "first", second, chunk_deals=40)

    assert incremental.deals_rebuilt is not None
    assert 0 < incremental.deals_rebuilt < incremental.deals_stored / 3


def _state_files(settings) -> dict[str, bytes]:
    """Every committed file of the state (tables, rejects, sources) by its path."""
    current = settings.feature_data / "current"
    return {
        str(p.relative_to(current.resolve())): p.read_bytes()
        for p in sorted(current.resolve().rglob("*"))
        if p.is_file()
    }


def test_a_re_ingest_writes_its_tables_behind_and_a_failed_write_commits_nothing(
    tmp_path, first_crm, monkeypatch
):
    """A re-ingest's merged tables are Arrow, so they are written on a thread while the
    sources are rebuilt (``write_behind``); when that write fails, the ingest raises its
    error, no thread is left writing, and the committed state is as it was. A first
    ingest's tables are pandas and are written before ``ingest_export`` returns."""
    import threading

    from leadscore.crm import ingest as crm_ingest

    write_export(first_crm, tmp_path / "first")
    second = _write(_small_change(first_crm.tables), tmp_path / "second")
    settings = isolated(tmp_path / "store")
    threads: list[str] = []
    replace_files = crm_ingest._replace_files

    def recorded(writers):
        threads.append(threading.current_thread().name)
        return replace_files(writers)

    monkeypatch.setattr(crm_ingest, "_replace_files", recorded)
    ingest(tmp_path / "first", settings, now=AS_OF + pd.Timedelta(days=400))
    assert threads == [threading.main_thread().name]  # a first ingest: pandas, written at once
    before = _state_files(settings)

    writer = pq.ParquetWriter

    def failing_writer(path, *args, **kwargs):
        if Path(path).name.startswith(".activities.parquet"):
            raise OSError("disk full")
        return writer(path, *args, **kwargs)

    monkeypatch.setattr(crm_ingest.pq, "ParquetWriter", failing_writer)
    with pytest.raises(OSError, match="disk full"):
        ingest(second, settings, now=AS_OF + pd.Timedelta(days=400))
    assert threads[1].startswith("write-tables")  # the re-ingest wrote on its thread
    assert not any(t.name.startswith("write-tables") for t in threading.enumerate())
    assert _state_files(settings) == before

    monkeypatch.setattr(crm_ingest.pq, "ParquetWriter", writer)
    summary = ingest(second, settings, now=AS_OF + pd.Timedelta(days=400))
    assert summary.deals_rebuilt is not None  # the retry updates the sources incrementally
    assert _state_files(settings) != before
