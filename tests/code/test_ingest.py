"""Ingest: validation of CRM exports into rejects, and the upsert into the stored tables."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from leadscore.crm import ingest
from leadscore.crm.ingest import (
    REJECT_COLUMNS,
    ExportError,
    Reject,
    ingest_export,
    load_stored,
    read_export,
    validate_tables,
)

NOW = pd.Timestamp("2024-06-01", tz="UTC")

GOOD: dict[str, list[dict[str, str]]] = {
    "accounts": [
        {"account_id": "A1", "industry": "Retail", "employee_count": "120", "region": "NA"},
        {"account_id": "A2", "industry": "Software", "employee_count": "", "region": "APAC"},
    ],
    "contacts": [
        {"contact_id": "C1", "account_id": "A1", "title": "VP Sales"},
        {"contact_id": "C2", "account_id": "A2", "title": "总经理"},
    ],
    "deals": [
        {
            "deal_id": "D0001",
            "account_id": "A1",
            "created_at": "2024-01-01",
            "amount": "1000",
            "stage": "Lead",
            "status": "open",
            "closed_at": "",
        },
        {
            "deal_id": "D0002",
            "account_id": "A2",
            "created_at": "2024-01-02T09:00:00Z",
            "amount": "",
            "stage": "closed",
            "status": " WON ",
            "closed_at": "2024-02-01T12:00:00+02:00",
        },
    ],
    "deal_contacts": [
        {"deal_id": "D0001", "contact_id": "C1", "role": "Champion", "added_at": "2024-01-02"},
    ],
    "activities": [
        {
            "activity_id": "X1",
            "deal_id": "D0001",
            "contact_id": "C1",
            "type": "call",
            "direction": "inbound",
            "occurred_at": "2024-01-03T10:00:00",
            "duration_seconds": "60",
        },
        {
            "activity_id": "X2",
            "deal_id": "D0002",
            "contact_id": "",
            "type": "Email",
            "direction": "",
            "occurred_at": "2024-01-05",
            "duration_seconds": "",
        },
    ],
    "stage_history": [
        {"deal_id": "D0001", "stage": "lead", "entered_at": "2024-01-01"},
        {"deal_id": "D0002", "stage": "closed", "entered_at": "2024-02-01T10:00:00Z"},
    ],
}

#: (table, row appended after the good rows, column, value, reason) for every kind of
#: bad row. Rows are numbered in the order they are appended.
BAD: list[tuple[str, dict[str, str], str, str, str]] = [
    (
        "accounts",
        {"account_id": "A3", "employee_count": "12.5"},
        "employee_count",
        "12.5",
        "is not a whole number",
    ),
    (
        "accounts",
        {"account_id": "A4", "employee_count": "-1"},
        "employee_count",
        "-1",
        "must be >= 0",
    ),
    (
        "deals",
        {"deal_id": "", "account_id": "A1", "created_at": "2024-01-01", "status": "open"},
        "deal_id",
        "",
        "is required",
    ),
    (
        "deals",
        {"deal_id": "D0010", "account_id": "A1", "created_at": "2024-01-01", "status": "pending"},
        "status",
        "pending",
        "must be one of: open, won, lost",
    ),
    (
        "deals",
        {
            "deal_id": "D0011",
            "account_id": "A1",
            "created_at": "2024-01-01",
            "status": "open",
            "amount": "1,000",
        },
        "amount",
        "1,000",
        "is not a number",
    ),
    (
        "deals",
        {
            "deal_id": "D0012",
            "account_id": "A1",
            "created_at": "2024-01-01",
            "status": "open",
            "amount": "-5",
        },
        "amount",
        "-5",
        "must be >= 0",
    ),
    (
        "deals",
        {"deal_id": "D0013", "account_id": "A1", "created_at": "01/02/2024", "status": "open"},
        "created_at",
        "01/02/2024",
        "is not a date",
    ),
    (
        "deals",
        {
            "deal_id": "D0015",
            "account_id": "A1",
            "created_at": "2024-01-01",
            "status": "open",
            "closed_at": "2024-02-01",
        },
        "closed_at",
        "2024-02-01",
        "must be empty when status is open",
    ),
    (
        "deals",
        {
            "deal_id": "D0016",
            "account_id": "A1",
            "created_at": "2024-03-01",
            "status": "lost",
            "closed_at": "2024-02-01",
        },
        "closed_at",
        "2024-02-01",
        "must not be before created_at",
    ),
    (
        "deals",
        {"deal_id": "D0017", "account_id": "A1", "created_at": "2024-06-03", "status": "open"},
        "created_at",
        "2024-06-03",
        "is in the future",
    ),
    (
        "deals",
        {"deal_id": "D0018", "account_id": "A404", "created_at": "2024-01-01", "status": "open"},
        "account_id",
        "A404",
        "account_id 'A404' not found in accounts",
    ),
    (
        "deals",
        {
            "deal_id": "D0019",
            "account_id": "A1",
            "created_at": "2024-01-01",
            "status": "open",
            "amount": "1",
        },
        "deal_id",
        "D0019",
        "conflicting rows share the key deal_id 'D0019'",
    ),
    (
        "deals",
        {
            "deal_id": "D0019",
            "account_id": "A1",
            "created_at": "2024-01-01",
            "status": "open",
            "amount": "2",
        },
        "deal_id",
        "D0019",
        "conflicting rows share the key deal_id 'D0019'",
    ),
    (
        "contacts",
        {"contact_id": "C3", "account_id": "A404"},
        "account_id",
        "A404",
        "account_id 'A404' not found in accounts",
    ),
    (
        "deal_contacts",
        {"deal_id": "D0001", "contact_id": "C2", "role": "boss", "added_at": "2024-01-02"},
        "role",
        "boss",
        "must be one of: economic_buyer, champion, influencer, user, other",
    ),
    (
        "deal_contacts",
        {"deal_id": "D0002", "contact_id": "C2", "role": "user", "added_at": "2024-01-03"},
        "deal_id, contact_id",
        "D0002, C2",
        "conflicting rows share the key deal_id 'D0002', contact_id 'C2'",
    ),
    (
        "deal_contacts",
        {"deal_id": "D0002", "contact_id": "C2", "role": "other", "added_at": "2024-01-03"},
        "deal_id, contact_id",
        "D0002, C2",
        "conflicting rows share the key deal_id 'D0002', contact_id 'C2'",
    ),
    (
        "activities",
        {"activity_id": "X10", "deal_id": "D0001", "type": "fax", "occurred_at": "2024-01-03"},
        "type",
        "fax",
        "must be one of: call, email, meeting, visit, demo, quote",
    ),
    (
        "activities",
        {"activity_id": "X11", "deal_id": "D0001", "type": "call", "occurred_at": "2023-12-31"},
        "occurred_at",
        "2023-12-31",
        "is before the deal's created_at 2024-01-01T00:00:00Z",
    ),
    (
        "activities",
        {"activity_id": "X12", "deal_id": "D0404", "type": "call", "occurred_at": "2024-01-03"},
        "deal_id",
        "D0404",
        "deal_id 'D0404' not found in deals",
    ),
    (
        "activities",
        {"activity_id": "X13", "deal_id": "D0010", "type": "call", "occurred_at": "2024-01-03"},
        "deal_id",
        "D0010",
        "deal_id 'D0010' not found in deals (its row in deals.{fmt} was rejected)",
    ),
    (
        "activities",
        {
            "activity_id": "X14",
            "deal_id": "D0001",
            "contact_id": "C404",
            "type": "call",
            "occurred_at": "2024-01-03",
        },
        "contact_id",
        "C404",
        "contact_id 'C404' not found in contacts",
    ),
    (
        "activities",
        {
            "activity_id": "X15",
            "deal_id": "D0001",
            "type": "call",
            "occurred_at": "2024-01-03",
            "duration_seconds": "long",
        },
        "duration_seconds",
        "long",
        "is not a number",
    ),
    (
        "stage_history",
        {"deal_id": "D0001", "stage": "won", "entered_at": "2024-01-04"},
        "stage",
        "won",
        "must be one of: lead, qualified, solution, committed, closed",
    ),
]


def write_export(folder: Path, tables: dict[str, list[dict[str, str]]], fmt: str = "csv") -> Path:
    """Write text tables as ``<table>.csv`` or (all-text) ``<table>.parquet``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in tables.items():
        frame = pd.DataFrame(rows, dtype=object).fillna("")
        if fmt == "csv":
            frame.to_csv(folder / f"{name}.csv", index=False)
        else:
            frame.to_parquet(folder / f"{name}.parquet", index=False)
    return folder


def with_bad_rows() -> dict[str, list[dict[str, str]]]:
    tables = {name: list(rows) for name, rows in GOOD.items()}
    for name, row, *_ in BAD:
        tables[name].append(row)
    tables["deals"].append(dict(GOOD["deals"][0]))  # an identical repeat is not a problem
    return tables


def expected_rejects(fmt: str) -> set[Reject]:
    rows = {name: len(rows) for name, rows in GOOD.items()}
    out = set()
    for name, _, column, value, reason in BAD:
        rows[name] += 1
        line = rows[name] + (1 if fmt == "csv" else 0)  # a CSV's header is line 1
        out.add(Reject(name, f"{name}.{fmt}", line, column, value, reason.format(fmt=fmt)))
    return out


def file_hashes(*folders: Path) -> dict[str, str]:
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest()
        for folder in folders
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def run(export: Path, tmp_path: Path) -> ingest.IngestResult:
    return ingest_export(export, tmp_path / "crm", tmp_path / "rejects", now=NOW)


# ------------------------------------------------------------------ rejects


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_every_kind_of_bad_row_is_rejected_and_every_good_row_arrives(
    tmp_path: Path, fmt: str
) -> None:
    export = write_export(tmp_path / "export", with_bad_rows(), fmt)
    result = run(export, tmp_path)

    assert set(result.rejects) == expected_rejects(fmt)
    assert len(result.rejects) == len(BAD)  # one reject per problem, none twice
    # Exactly the good rows arrive, with the same values as from an export of them alone.
    clean = ingest_export(
        write_export(tmp_path / "clean", GOOD, fmt), tmp_path / "clean_crm", tmp_path / "r", now=NOW
    )
    assert set(result.tables) == set(clean.tables) == set(GOOD)
    for name, table in clean.tables.items():
        pd.testing.assert_frame_equal(result.tables[name], table, obj=name)
        assert len(table) == len(GOOD[name])
    deals = result.counts["deals"]
    assert deals["duplicates"] == 1
    assert deals["read"] == deals["valid"] + deals["rejected"] + deals["duplicates"]
    assert deals["valid"] == deals["inserted"] == 2


def test_rejects_file_lists_every_reject(tmp_path: Path) -> None:
    result = run(write_export(tmp_path / "export", with_bad_rows()), tmp_path)
    written = pd.read_csv(tmp_path / "rejects" / "rejects.csv", dtype=str, keep_default_na=False)
    assert tuple(written.columns) == REJECT_COLUMNS
    as_rejects = {
        Reject(r.table, r.file, int(r.line), r.column, r.value, r.reason)
        for r in written.itertuples()
    }
    assert as_rejects == set(result.rejects)


def test_clean_run_writes_a_header_only_rejects_file(tmp_path: Path) -> None:
    result = run(write_export(tmp_path / "export", GOOD), tmp_path)
    assert result.rejects == []
    assert (tmp_path / "rejects" / "rejects.csv").read_text().strip() == ",".join(REJECT_COLUMNS)


def test_line_is_the_line_of_the_file_header_included(tmp_path: Path) -> None:
    deals = [dict(GOOD["deals"][0], deal_id=f"D{i}") for i in range(1, 4)]
    deals[1]["status"] = "bogus"
    export = write_export(tmp_path / "export", {"deals": deals})
    (reject,) = run(export, tmp_path).rejects
    assert reject.line == 3 and reject.place == "deals.csv line 3"
    line = (export / "deals.csv").read_text().splitlines()[reject.line - 1]
    assert "bogus" in line


def test_a_row_reports_all_of_its_column_problems(tmp_path: Path) -> None:
    # A value that cannot be coerced must not hide the other problems of the table.
    deals = [
        dict(GOOD["deals"][0], deal_id="D1", amount="abc", status="maybe"),
        dict(GOOD["deals"][0], deal_id="D2", amount="-3"),
        dict(GOOD["deals"][0], deal_id="", created_at="not a date"),
    ]
    rejects = run(write_export(tmp_path / "export", {"deals": deals}), tmp_path).rejects
    assert {(r.line, r.column, r.reason) for r in rejects} == {
        (2, "amount", "is not a number"),
        (2, "status", "must be one of: open, won, lost"),
        (3, "amount", "must be >= 0"),
        (4, "deal_id", "is required"),
        (4, "created_at", "is not a date"),
    }


# ------------------------------------------------------------------ types


def test_text_enums_and_times_are_normalised(tmp_path: Path) -> None:
    result = run(write_export(tmp_path / "export", GOOD), tmp_path)
    deals = result.tables["deals"].set_index("deal_id")
    assert deals.loc["D0002", "status"] == "won"
    assert deals.loc["D0001", "stage"] == "lead"
    assert deals.loc["D0002", "closed_at"] == pd.Timestamp("2024-02-01T10:00:00Z")  # +02:00 → UTC
    assert deals.loc["D0001", "created_at"] == pd.Timestamp("2024-01-01T00:00:00Z")  # naive = UTC
    assert pd.isna(deals.loc["D0001", "closed_at"]) and pd.isna(deals.loc["D0002", "amount"])
    accounts = result.tables["accounts"].set_index("account_id")
    assert accounts.loc["A1", "region"] == "NA"  # a region, not a missing value
    assert pd.isna(accounts.loc["A2", "employee_count"])
    assert result.tables["activities"].set_index("activity_id").loc["X2", "contact_id"] is None
    assert str(deals["created_at"].dtype) == "datetime64[us, UTC]"
    assert str(accounts["employee_count"].dtype) == "Int64"
    assert deals["amount"].dtype == np.float64


def test_ids_with_leading_zeros_survive_csv(tmp_path: Path) -> None:
    accounts = [{"account_id": "007"}, {"account_id": "0042"}]
    deals = [
        dict(GOOD["deals"][0], deal_id="0001", account_id="007"),
        dict(GOOD["deals"][0], deal_id="1", account_id="0042"),
    ]
    result = run(
        write_export(tmp_path / "export", {"accounts": accounts, "deals": deals}), tmp_path
    )
    assert result.rejects == []
    assert sorted(result.tables["deals"]["deal_id"]) == ["0001", "1"]
    assert sorted(load_stored(tmp_path / "crm")["accounts"]["account_id"]) == ["0042", "007"]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_extra_columns_survive_as_text(tmp_path: Path, fmt: str) -> None:
    deals = [dict(row, crm_score=str(i), note=" hello ") for i, row in enumerate(GOOD["deals"])]
    run(write_export(tmp_path / "export", {"deals": deals}, fmt), tmp_path)
    stored = load_stored(tmp_path / "crm")["deals"]
    contract = ingest.TABLES["deals"].column_names
    assert list(stored.columns) == [*contract, "crm_score", "note"]
    assert stored["crm_score"].tolist() == ["0", "1"]
    assert stored["note"].tolist() == ["hello", "hello"]


def test_typed_parquet_is_coerced(tmp_path: Path) -> None:
    export = tmp_path / "export"
    export.mkdir()
    pd.DataFrame(
        {
            "deal_id": [1, 2],  # ids as numbers become text
            "account_id": ["A1", "A1"],
            "created_at": pd.to_datetime(["2024-01-01T10:00", "2024-01-02T00:00"]),  # naive = UTC
            "amount": [5.0, np.nan],
            "status": ["Won", "open"],
            "closed_at": pd.to_datetime(["2024-03-01 12:00", None]).tz_localize("Asia/Shanghai"),
        }
    ).to_parquet(export / "deals.parquet")
    pd.DataFrame({"account_id": ["A1"], "employee_count": [12.0]}).to_parquet(
        export / "accounts.parquet"
    )
    result = run(export, tmp_path)
    assert result.rejects == []
    deals = result.tables["deals"]
    assert deals["deal_id"].tolist() == ["1", "2"]
    assert deals["created_at"].tolist() == [
        pd.Timestamp("2024-01-01 10:00Z"),
        pd.Timestamp("2024-01-02T00:00Z"),
    ]
    assert deals.loc[0, "closed_at"] == pd.Timestamp("2024-03-01 04:00Z")
    assert result.tables["accounts"]["employee_count"].tolist() == [12]


def test_mixed_time_formats_in_one_column(tmp_path: Path) -> None:
    times = [
        "2024-01-01",
        "2024-01-01T10:00:00+02:00",
        "2024-01-01 10:00:00.5Z",
        "2024-01-01T10:00",
    ]
    deals = [dict(GOOD["deals"][0], deal_id=f"D{i}", created_at=t) for i, t in enumerate(times)]
    result = run(write_export(tmp_path / "export", {"deals": deals}), tmp_path)
    assert result.rejects == []
    assert result.tables["deals"]["created_at"].tolist() == [
        pd.Timestamp("2024-01-01T00:00:00Z"),
        pd.Timestamp("2024-01-01T08:00:00Z"),
        pd.Timestamp("2024-01-01T10:00:00.5Z"),
        pd.Timestamp("2024-01-01T10:00:00Z"),
    ]


# ------------------------------------------------------------------ the export as a whole


def test_only_deals_is_enough(tmp_path: Path) -> None:
    deals = [dict(GOOD["deals"][0], account_id="A404")]  # no accounts table: not checked
    result = run(write_export(tmp_path / "export", {"deals": deals}), tmp_path)
    assert result.rejects == []
    assert set(result.tables) == {"deals"}
    assert set(result.counts) == {"deals"}
    assert sorted(p.name for p in (tmp_path / "crm").iterdir()) == ["deals.parquet"]


def test_missing_deals_raises_and_writes_nothing(tmp_path: Path) -> None:
    export = write_export(tmp_path / "export", {"accounts": GOOD["accounts"]})
    with pytest.raises(
        ExportError, match=r"has no deals table: expected deals\.csv or deals\.parquet"
    ) as err:
        run(export, tmp_path)
    assert str(export) in str(err.value)
    assert not (tmp_path / "crm").exists() and not (tmp_path / "rejects").exists()


def test_unknown_files_are_ignored(tmp_path: Path) -> None:
    export = write_export(tmp_path / "export", {"deals": GOOD["deals"]})
    pd.DataFrame({"deal_id": ["D0001"], "p_win": [0.3]}).to_parquet(export / "truth.parquet")
    (export / "notes.txt").write_text("hello")
    assert set(read_export(export)) == {"deals"}


def test_both_formats_of_one_table_is_an_error(tmp_path: Path) -> None:
    export = write_export(tmp_path / "export", {"deals": GOOD["deals"]})
    write_export(export, {"deals": GOOD["deals"]}, "parquet")
    with pytest.raises(ExportError, match="both deals.csv and deals.parquet"):
        read_export(export)


def test_csv_that_is_not_utf8_is_an_error(tmp_path: Path) -> None:
    export = tmp_path / "export"
    export.mkdir()
    (export / "deals.csv").write_bytes("deal_id,title\nD1,总经理\n".encode("gb18030"))
    with pytest.raises(ExportError, match="deals.csv: it is not UTF-8 text"):
        read_export(export)


def test_missing_required_column_is_an_error(tmp_path: Path) -> None:
    deals = [{k: v for k, v in row.items() if k != "status"} for row in GOOD["deals"]]
    with pytest.raises(ExportError, match="deals.csv lacks required column"):
        run(write_export(tmp_path / "export", {"deals": deals}), tmp_path)


# ------------------------------------------------------------------ merging


def test_rerun_of_the_same_export_changes_nothing(tmp_path: Path) -> None:
    export = write_export(tmp_path / "export", with_bad_rows())
    first = run(export, tmp_path)
    before = file_hashes(tmp_path / "crm", tmp_path / "rejects")
    second = run(export, tmp_path)
    assert file_hashes(tmp_path / "crm", tmp_path / "rejects") == before
    for name, counts in second.counts.items():
        assert counts["inserted"] == counts["updated"] == 0, name
        assert counts["unchanged"] == first.counts[name]["inserted"], name
    for name, table in second.tables.items():
        pd.testing.assert_frame_equal(table, first.tables[name])


def test_upsert_updates_changed_rows_and_keeps_the_others(tmp_path: Path) -> None:
    run(write_export(tmp_path / "first", GOOD), tmp_path)
    changed = dict(GOOD["deals"][0], amount="2500", status="lost", closed_at="2024-03-01")
    new = dict(GOOD["deals"][0], deal_id="D0003")
    result = run(write_export(tmp_path / "second", {"deals": [changed, new]}), tmp_path)

    assert result.counts["deals"] == {
        "read": 2,
        "valid": 2,
        "rejected": 0,
        "duplicates": 0,
        "inserted": 1,
        "updated": 1,
        "unchanged": 0,
    }
    deals = load_stored(tmp_path / "crm")["deals"].set_index("deal_id")
    assert list(deals.index) == ["D0001", "D0002", "D0003"]  # sorted by key, D0002 kept
    assert deals.loc["D0001", "amount"] == 2500 and deals.loc["D0001", "status"] == "lost"
    assert deals.loc["D0002", "status"] == "won"
    stored_activities = load_stored(tmp_path / "crm")["activities"]
    assert sorted(stored_activities["activity_id"]) == ["X1", "X2"]  # other tables untouched
    # What changed, for the incremental rebuild: the new versions and the replaced one.
    change = result.changes["deals"]
    assert sorted(change.new["deal_id"]) == ["D0001", "D0003"]
    assert list(change.old["deal_id"]) == ["D0001"] and change.old["status"].iloc[0] == "open"


def test_rejected_new_version_keeps_the_stored_row_and_its_children(tmp_path: Path) -> None:
    run(write_export(tmp_path / "first", GOOD), tmp_path)
    stored_deals = (tmp_path / "crm" / "deals.parquet").read_bytes()
    broken = dict(GOOD["deals"][0], status="bogus")
    activity = dict(GOOD["activities"][0], activity_id="X9")
    result = run(
        write_export(tmp_path / "second", {"deals": [broken], "activities": [activity]}), tmp_path
    )

    assert [(r.table, r.column) for r in result.rejects] == [("deals", "status")]
    assert (tmp_path / "crm" / "deals.parquet").read_bytes() == stored_deals
    assert "X9" in set(load_stored(tmp_path / "crm")["activities"]["activity_id"])


def test_references_are_checked_against_stored_parents(tmp_path: Path) -> None:
    run(
        write_export(tmp_path / "first", {"accounts": GOOD["accounts"], "deals": GOOD["deals"]}),
        tmp_path,
    )
    raw = read_export(
        write_export(
            tmp_path / "second",
            {"deals": [dict(GOOD["deals"][0], deal_id="D5")], "activities": GOOD["activities"]},
        )
    )
    valid, rejects = validate_tables(raw, load_stored(tmp_path / "crm"), now=NOW)
    assert rejects == []  # D0002 and the accounts are only in the store
    assert len(valid["activities"]) == 2
    _, rejects = validate_tables(
        {"deals": raw["deals"], "activities": raw["activities"]}, {}, now=NOW
    )
    assert [r.value for r in rejects] == ["D0001", "D0002"]  # no parent anywhere


def test_failed_write_leaves_the_store_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run(write_export(tmp_path / "first", GOOD), tmp_path)
    before = file_hashes(tmp_path / "crm", tmp_path / "rejects")
    changed = {name: [dict(r) for r in rows] for name, rows in GOOD.items()}
    changed["deals"][0]["amount"] = "9999"
    changed["activities"][0]["duration_seconds"] = "99"
    export = write_export(tmp_path / "second", changed)

    written: list[Path] = []
    writer = pq.ParquetWriter

    def failing_writer(path: Path, *args: object, **kwargs: object) -> pq.ParquetWriter:
        written.append(Path(path))
        if len(written) == 2:
            raise OSError("disk full")
        return writer(path, *args, **kwargs)

    monkeypatch.setattr(ingest.pq, "ParquetWriter", failing_writer)
    with pytest.raises(OSError, match="disk full"):
        run(export, tmp_path)
    assert len(written) == 2
    assert file_hashes(tmp_path / "crm", tmp_path / "rejects") == before  # no temp files either


# ------------------------------------------------------------------ previous_deal_id


def _follow_up(deal_id: str, previous: str, account: str = "A1", created: str = "2024-03-01"):
    return dict(
        GOOD["deals"][0],
        deal_id=deal_id,
        account_id=account,
        created_at=created,
        previous_deal_id=previous,
        lost_reason="Price too high",
    )


def test_previous_deal_must_be_an_earlier_deal_of_the_same_account(tmp_path: Path) -> None:
    lost = dict(GOOD["deals"][0], deal_id="D0009", status="lost", closed_at="2024-02-01")
    deals = [
        lost,
        GOOD["deals"][1],
        _follow_up("F1", "D0009"),  # fine: same account, later
        _follow_up("F2", "NOPE"),  # unknown deal
        _follow_up("F3", "D0002"),  # D0002 is with A2
        _follow_up("F4", "D0009", created="2023-12-01"),  # before the deal it follows
        _follow_up("F5", "F5"),  # itself
        _follow_up("F6", "D0009", account=""),  # no account to compare
        _follow_up("F7", "F2", created="2024-04-01"),  # follows a rejected deal
    ]
    raw = read_export(write_export(tmp_path / "x", {"accounts": GOOD["accounts"], "deals": deals}))
    valid, rejects = validate_tables(raw, now=NOW)
    assert set(valid["deals"]["deal_id"]) == {"D0009", "D0002", "F1"}
    by_value = {(r.line, r.column): r.reason for r in rejects}
    assert all(r.column == "previous_deal_id" and r.file == "deals.csv" for r in rejects)
    assert by_value[(5, "previous_deal_id")] == "previous deal 'NOPE' not found in deals"
    assert (
        by_value[(6, "previous_deal_id")] == "previous deal 'D0002' is with account 'A2', not 'A1'"
    )
    assert by_value[(7, "previous_deal_id")].startswith(
        "previous deal 'D0009' was created at 2024-01-01T00:00:00Z, not before this deal"
    )
    assert by_value[(8, "previous_deal_id")] == "must not be the deal itself"
    assert by_value[(9, "previous_deal_id")].startswith("needs the deal's account_id")
    assert by_value[(10, "previous_deal_id")] == (
        "previous deal 'F2' not found in deals (its row was rejected)"
    )
    stored = valid["deals"].set_index("deal_id")
    assert stored.loc["F1", "previous_deal_id"] == "D0009"
    assert stored.loc["F1", "lost_reason"] == "Price too high"  # free text, as written


def test_previous_deal_may_be_stored(tmp_path: Path) -> None:
    run(write_export(tmp_path / "first", {"deals": GOOD["deals"]}), tmp_path)
    raw = read_export(write_export(tmp_path / "second", {"deals": [_follow_up("F1", "D0001")]}))
    valid, rejects = validate_tables(raw, load_stored(tmp_path / "crm"), now=NOW)
    assert rejects == [] and list(valid["deals"]["deal_id"]) == ["F1"]
    _, rejects = validate_tables(raw, {}, now=NOW)
    assert [r.reason for r in rejects] == ["previous deal 'D0001' not found in deals"]
