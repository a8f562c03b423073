"""`leadscore import` on small exports: mapping errors, accounting of every row, duplicate
rows, outcome rules, joins, attributes and the report."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from leadscore.crm.attributes import read_attributes
from leadscore.crm.importer.mapping import MappingError, load_mapping
from leadscore.crm.importer.report import build_report, report_lines
from leadscore.crm.importer.run import ImportFailure, run_import, write_export
from pipelines.cli import app
from tests.conftest import isolated

MAPPING = """
name: small
tables:
  deals:
    source: deals
    reject_when: {Deleted: true}
    columns:
      deal_id: Id
      account_id: Account
      created_at: Created
      amount: Amount
      status: Status
      closed_at: {from: Closed, open_deals: expected_close}
    attributes:
      team: {from: Team, kind: categorical, known: creation}
      discount: {from: Discount, kind: numeric, known: anytime, keep: "set at quote time"}
"""

#: Lines 2-13 (11 rows): good rows, and bad rows of several kinds (the comment says which).
DEALS = (
    "Id,Account,Created,Amount,Status,Closed,Team,Discount,Deleted\n"
    'D1,A1,2024-01-05,"1,200.50",赢单,2024-02-01,east,5,0\n'  # 2 good
    "D2,A1,2024-01-06,¥300,Closed Lost,2024-02-02,west,,0\n"  # 3 good
    "D3,A2,2024-01-07,100,open,2024-09-01,east,1,0\n"  # 4 good, expected close ignored
    "D4,A2,not a date,100,open,,east,1,0\n"  # 5 bad date
    "D5,A2,2024-01-08,lots,open,,east,1,0\n"  # 6 bad amount
    "D6,A2,2024-01-08,100,maybe,,east,1,0\n"  # 7 unknown status word
    "D7,A2,2024-01-08,100\n"  # 8 too few fields
    "D8,A2,2024-01-08,100,open,,east,1,1\n"  # 9 deleted
    'D1,A1,2024-01-05,"1,200.50",赢单,2024-02-01,east,5,0\n'  # 10 duplicate of line 2
    "D9,A2,2024-01-09,100,open,,east,ten,0\n"  # 11 bad numeric attribute
    'D10,A3,"2024-01-10",100,won,2024-01-20,"north\neast",2,0\n'  # 12-13 good, two lines
)


@pytest.fixture
def small(tmp_path: Path) -> tuple[Path, Path]:
    source = tmp_path / "export"
    source.mkdir()
    (source / "deals.csv").write_text(DEALS, encoding="utf-8")
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text(MAPPING, encoding="utf-8")
    return source, mapping


def test_every_row_is_stored_rejected_or_a_duplicate(small: tuple[Path, Path]) -> None:
    source, mapping = small
    result = run_import(source, load_mapping(mapping))
    deals = result.tables["deals"]
    assert deals.read == 11
    assert (deals.written, deals.rejected, deals.duplicates) == (4, 6, 1)
    assert deals.read == deals.written + deals.rejected + deals.duplicates
    assert deals.data.column("deal_id").to_pylist() == ["D1", "D2", "D3", "D10"]
    assert deals.row_lines.tolist() == [2, 3, 4, 12]
    assert deals.repeated_lines == [10]
    rejects = {(r.line, r.column): (r.value, r.rule) for r in result.rejects.itertuples()}
    assert rejects[(5, "Created")][0] == "not a date"
    assert "is not a date" in rejects[(5, "Created")][1]
    assert rejects[(6, "Amount")] == ("lots", "amount: is not a number")
    assert rejects[(7, "Status")][0] == "maybe"
    assert "value map of status" in rejects[(7, "Status")][1]
    assert rejects[(8, "(row)")] == ("D7,A2,2024-01-08,100", "has 4 fields where the header has 9")
    assert rejects[(9, "Deleted")][0] == "1" and "reject_when" in rejects[(9, "Deleted")][1]
    assert rejects[(11, "Discount")] == ("ten", "discount: is not a number")
    assert set(result.rejects["file"]) == {"deals.csv"}


def test_the_export_is_typed_with_attributes_and_open_deals_have_no_close(
    small: tuple[Path, Path], tmp_path: Path
) -> None:
    source, mapping = small
    result = run_import(source, load_mapping(mapping))
    paths = write_export(result, tmp_path / "out")
    deals = pd.read_parquet(paths["deals"])
    assert deals["status"].tolist() == ["won", "lost", "open", "won"]
    assert deals["amount"].tolist() == [1200.5, 300.0, 100.0, 100.0]
    assert pd.isna(deals.loc[2, "closed_at"])  # an expected close date is not a close
    assert str(deals["created_at"].dtype) == "datetime64[us, UTC]"
    assert deals["team"].tolist() == ["east", "west", "east", "north\neast"]
    attributes = {a.name: a for a in read_attributes(tmp_path / "out")}
    assert attributes["discount"].kind == "numeric" and attributes["discount"].keep
    assert attributes["team"].source == "Team"


def test_the_report_shows_mapping_value_maps_and_accounting(small: tuple[Path, Path]) -> None:
    source, mapping = small
    result = run_import(source, load_mapping(mapping))
    report = build_report(result, None)
    deals = report["tables"]["deals"]
    assert deals["balanced"] and deals["accounting"] == (
        "read 11 = stored 4 + rejected 6 + duplicates 1"
    )
    assert deals["columns"]["status"]["value_map"]["赢单"] == {"to": "won", "rows": 2}
    assert deals["columns"]["status"]["matched_none"] == {"maybe": 1}
    assert deals["columns"]["amount"]["currency_symbols_stripped"] == {"¥": 1}
    assert report["files"] == [
        {"file": "deals.csv", "encoding": "UTF-8", "delimiter": "comma", "rows": 11}
    ]
    text = "\n".join(report_lines(report))
    assert "deals.csv line 8, (row)=" in text
    assert "duplicates: 1 rows repeat a row with the same key and values" in text


def test_without_a_key_repeated_rows_are_reported_and_kept(tmp_path: Path) -> None:
    (tmp_path / "flat.csv").write_text("Result,Region\nWon,EU\nLost,US\nWon,EU\n", encoding="utf-8")
    mapping = tmp_path / "m.yaml"
    mapping.write_text(
        "tables:\n  deals:\n    source: flat\n    columns:\n      status: Result\n"
        "    attributes:\n      region: {from: Region, kind: categorical, known: creation}\n",
        encoding="utf-8",
    )
    result = run_import(tmp_path / "flat.csv", load_mapping(mapping))
    deals = result.tables["deals"]
    assert deals.written == 3 and deals.duplicates == 0
    assert (deals.repeated_kept, deals.repeated_lines) == (1, [4])
    assert deals.data.column("deal_id").to_pylist() == ["flat.csv:2", "flat.csv:3", "flat.csv:4"]


def test_lost_when_not_won_within_days_as_of_the_export_date(tmp_path: Path) -> None:
    (tmp_path / "leads.csv").write_text(
        "Id,Created,Converted\nL1,2024-01-01,1\nL2,2024-01-01,0\nL3,2024-03-20,0\nL4,,0\n",
        encoding="utf-8",
    )
    mapping = tmp_path / "m.yaml"
    mapping.write_text(
        "export_date: 2024-04-01\ntables:\n  deals:\n    source: leads\n    columns:\n"
        "      deal_id: Id\n      created_at: Created\n"
        "      status: {from: Converted, values: {won: ['1'], open: ['0']}, defaults: false}\n"
        "    outcome: {lost_when_not_won_within_days: 30}\n",
        encoding="utf-8",
    )
    result = run_import(tmp_path / "leads.csv", load_mapping(mapping))
    deals = result.tables["deals"]
    assert deals.data.column("status").to_pylist() == ["won", "lost", "open", "open"]
    assert deals.data.column("closed_at")[1].as_py().isoformat() == "2024-01-31T00:00:00+00:00"
    assert deals.outcome == [
        "lost when not won within 30 days of creation, as of the export date (2024-04-01): "
        "1 of 3 open deals became lost, closed 30 days after creation; 1 stay open "
        "(younger); 1 stay open without a creation date"
    ]
    assert result.export_date_from == "declared in m.yaml"


def test_a_join_sums_line_item_prices_into_the_amount(tmp_path: Path) -> None:
    (tmp_path / "Opportunity.csv").write_text("Id,Stage\nO1,Closed Won\nO2,Prospecting\n")
    (tmp_path / "OpportunityLineItem.csv").write_text(
        "OpportunityId,PricebookEntryId,Quantity\nO1,E1,1\nO1,E2,1\n"
    )
    (tmp_path / "PricebookEntry.csv").write_text('Id,UnitPrice\nE1,"1,000"\nE2,250.5\n')
    mapping = tmp_path / "m.yaml"
    mapping.write_text(
        """
sources:
  opportunity:
    files: Opportunity
    join:
      - source: lines
        on: {Id: OpportunityId}
        take: {price: amount_from_lines}
        aggregate: sum
  lines:
    files: OpportunityLineItem
    join:
      - {source: entries, on: {PricebookEntryId: Id}, take: {UnitPrice: price}}
  entries:
    files: PricebookEntry
tables:
  deals:
    source: opportunity
    columns: {deal_id: Id, status: Stage, amount: amount_from_lines}
""",
        encoding="utf-8",
    )
    result = run_import(tmp_path, load_mapping(mapping))
    assert result.tables["deals"].data.column("amount").to_pylist() == [1250.5, None]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "tables:\n  deals:\n    source: d\n    colums: {}\n",
            r"m.yaml line 4: tables.deals.colums: unknown key 'colums'",
        ),
        (
            "tables:\n  deals:\n    source: d\n    columns: {deal_id: Id}\n",
            r"line 4: tables.deals.columns: status is required",
        ),
        (
            "tables:\n  deal:\n    source: d\n",
            r"line 2: tables.deal: 'deal' is not a contract table",
        ),
        (
            "tables:\n  deals:\n    source: d\n    columns:\n      status: S\n      created_at: {from: C, date_order: dmy}\n",
            r"line 6: tables.deals.columns.created_at.date_order: 'dmy' must be one of: day_first, month_first",
        ),
        (
            "tables:\n  deals:\n    source: d\n    columns:\n      status: {from: S, values: {closed: [x]}}\n",
            r"line 5: tables.deals.columns.status.values.closed: 'closed' must be one of: open, won, lost",
        ),
        ("tables: [\n", r"m.yaml line \d+ column \d+: not valid YAML"),
    ],
)
def test_mapping_errors_name_the_file_line_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(MappingError, match=message):
        load_mapping(path)


def test_a_mapped_column_missing_from_the_file_is_an_error_naming_both(
    small: tuple[Path, Path],
) -> None:
    source, mapping = small
    mapping.write_text(MAPPING.replace("amount: Amount", "amount: Amout"), encoding="utf-8")
    with pytest.raises(
        ImportFailure,
        match=r"deals.csv has no column 'Amout' for amount .*tables.deals.columns.amount",
    ):
        run_import(source, load_mapping(mapping))


def test_ambiguous_slashed_dates_ask_for_the_order(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("Id,S,C\n1,won,04/03/2022\n", encoding="utf-8")
    mapping = tmp_path / "m.yaml"
    mapping.write_text(
        "tables:\n  deals:\n    source: d\n    columns: {deal_id: Id, status: S, created_at: C}\n"
    )
    with pytest.raises(ImportFailure, match="set date_order: day_first or month_first"):
        run_import(tmp_path / "d.csv", load_mapping(mapping))


def test_cli_dry_run_writes_the_report_and_stores_nothing(
    small: tuple[Path, Path], tmp_path: Path
) -> None:
    source, mapping = small
    settings = isolated(tmp_path / "home")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "import",
            str(source),
            "--mapping",
            str(mapping),
            "--out",
            str(out),
            "--dry-run",
            "--json",
        ],
        env={"LEADSCORE_FEATURE_REPO": str(settings.feature_repo)},
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["dry_run"] and report["tables"]["deals"]["balanced"]
    assert json.loads((out / "import_report.json").read_text(encoding="utf-8")) == report
    rejects = pd.read_csv(out / "import_rejects.csv")
    assert sorted(rejects["line"]) == [5, 6, 7, 8, 9, 11]
    assert not (settings.crm_dir / "deals.parquet").exists()
    # Four deals are too few to judge by outcome or presence: the report says so.
    assert report["leakage_audit"]["rows"] == {"deals": 4}
    assert report["leakage_audit"]["not_judged"][:2] == [
        "only 2 won and 1 lost deals (each needs 30): constant-within-outcome and "
        "single-column AUC were not checked",
        "1 open and 3 closed deals (each needs 30): presence only for closed or only for "
        "open deals was not checked",
    ]


def test_cli_names_the_mapping_error_and_exits_2(small: tuple[Path, Path], tmp_path: Path) -> None:
    source, _ = small
    result = CliRunner().invoke(app, ["import", str(source), "--mapping", "nosuchpreset"])
    assert result.exit_code == 2
    assert "neither a mapping file nor a preset (presets: hubspot, salesforce)" in result.output


def test_tiny_batches_give_the_same_export_rejects_and_accounting(
    small: tuple[Path, Path], tmp_path: Path
) -> None:
    """Reading in batches of a few rows (block_size in bytes) changes nothing: the rows
    with bad field counts, the two-line row and the duplicate of line 2 fall in
    different batches from the rows they relate to."""
    source, mapping = small
    whole = run_import(source, load_mapping(mapping))
    tiny = run_import(source, load_mapping(mapping), block_size=64)
    a = pd.read_parquet(write_export(whole, tmp_path / "whole")["deals"])
    b = pd.read_parquet(write_export(tiny, tmp_path / "tiny")["deals"])
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(whole.rejects, tiny.rejects)
    one, many = whole.tables["deals"], tiny.tables["deals"]
    assert (many.read, many.written, many.rejected, many.duplicates) == (11, 4, 6, 1)
    assert many.row_lines.tolist() == one.row_lines.tolist() == [2, 3, 4, 12]
    assert many.repeated_lines == one.repeated_lines == [10]
    assert (
        build_report(tiny, None)["tables"]["deals"] == build_report(whole, None)["tables"]["deals"]
    )


def test_tiny_batches_keep_repeated_rows_without_a_key_and_the_lost_rule(tmp_path: Path) -> None:
    # Rows repeat every 30 lines: lines 32-41 repeat lines 2-11, in other batches.
    rows = "".join(f"L{i % 5},2024-01-0{1 + i % 3},{i % 2}\n" for i in range(40))
    (tmp_path / "leads.csv").write_text("Name,Created,Converted\n" + rows, encoding="utf-8")
    mapping = tmp_path / "m.yaml"
    mapping.write_text(
        "export_date: 2024-04-01\ntables:\n  deals:\n    source: leads\n    columns:\n"
        "      created_at: Created\n"
        "      status: {from: Converted, values: {won: ['1'], open: ['0']}, defaults: false}\n"
        "    attributes:\n      name: {from: Name, kind: categorical, known: creation}\n"
        "    outcome: {lost_when_not_won_within_days: 30}\n",
        encoding="utf-8",
    )
    whole = run_import(tmp_path / "leads.csv", load_mapping(mapping))
    tiny = run_import(tmp_path / "leads.csv", load_mapping(mapping), block_size=40)
    for result in (whole, tiny):
        deals = result.tables["deals"]
        assert deals.written == 40 and deals.duplicates == 0
        assert deals.repeated_kept == 10 and deals.repeated_lines == list(range(32, 42))
    assert tiny.tables["deals"].outcome == whole.tables["deals"].outcome
    pd.testing.assert_frame_equal(
        tiny.tables["deals"].data.to_pandas(), whole.tables["deals"].data.to_pandas()
    )


def _quoted(rows: list[list[str]]) -> str:
    """CSV as Salesforce's Data Export writes it: every field quoted, LF line ends."""
    return "".join(",".join(f'"{v}"' for v in row) + "\n" for row in rows)


def test_salesforce_tasks_and_events_both_become_activities(tmp_path: Path) -> None:
    (tmp_path / "Opportunity.csv").write_text(_quoted([
        ["Id", "IsDeleted", "AccountId", "StageName", "CreatedDate", "CloseDate", "IsWon", "IsClosed"],
        ["006A", "0", "001A", "Closed Won", "2023-09-01 10:00:00", "2023-10-01 00:00:00", "1", "1"],
        ["006B", "0", "001A", "Prospecting", "2023-09-02 10:00:00", "2023-12-01 00:00:00", "0", "0"],
    ]))  # fmt: skip
    (tmp_path / "Task.csv").write_text(_quoted([
        ["Id", "WhoId", "WhatId", "IsDeleted", "ActivityDate", "TaskSubtype", "CallDurationInSeconds"],
        ["00TA", "003A", "006A", "0", "2023-09-05 00:00:00", "Call", "120"],
        ["00TB", "003A", "006A", "1", "2023-09-06 00:00:00", "Call", "60"],
    ]))  # fmt: skip
    (tmp_path / "Event.csv").write_text(_quoted([
        ["Id", "WhoId", "WhatId", "IsDeleted", "StartDateTime", "EventSubtype", "DurationInMinutes"],
        ["00UA", "003A", "006A", "0", "2023-09-07 14:00:00", "Event", "30"],
        ["00UB", "003A", "006B", "0", "next week", "Event", "60"],
        ["00UC", "", "006B", "0", "2023-09-08 09:30:00", "Event", "45"],
    ]))  # fmt: skip
    result = run_import(tmp_path, load_mapping("salesforce"))
    activities = result.tables["activities"]
    assert [f.path.name for f in activities.files] == ["Task.csv", "Event.csv"]
    assert (activities.read, activities.written, activities.rejected) == (5, 3, 2)
    frame = activities.data.to_pandas()
    assert frame["activity_id"].tolist() == ["00TA", "00UA", "00UC"]
    assert frame["type"].tolist() == ["call", "meeting", "meeting"]
    assert frame["duration_seconds"].tolist() == [120.0, 1800.0, 2700.0]
    assert frame["occurred_at"].iloc[1].isoformat() == "2023-09-07T14:00:00+00:00"
    # Provenance: each row keeps its own file and line.
    places = list(zip(activities.row_files, activities.row_lines.tolist(), strict=True))
    assert places == [("Task.csv", 2), ("Event.csv", 2), ("Event.csv", 4)]
    rejects = result.rejects[result.rejects["table"] == "activities"]
    assert rejects[["file", "line", "column"]].values.tolist() == [
        ["Event.csv", 3, "StartDateTime"],
        ["Task.csv", 3, "IsDeleted"],
    ]
    columns = build_report(result, None)["tables"]["activities"]["columns"]
    assert columns["type [Task.csv]"]["source"] == "TaskSubtype"
    assert columns["type [Event.csv]"]["value_map"] == {"Event": {"to": "meeting", "rows": 3}}
    assert columns["duration_seconds [Event.csv]"]["source"] == "DurationInMinutes"
    assert "Event.csv" not in result.unused_files


def test_a_table_from_several_sources_maps_the_key_in_all_or_none(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        "tables:\n  deals:\n    source: d\n    columns: {deal_id: Id, status: S}\n"
        "  activities:\n    sources:\n"
        "      - source: task\n        columns: {activity_id: Id, deal_id: D, type: T, occurred_at: O}\n"
        "      - source: event\n        columns: {deal_id: D, type: T, occurred_at: O}\n",
        encoding="utf-8",
    )
    with pytest.raises(MappingError, match=r"line 6: tables.activities.sources: map activity_id"):
        load_mapping(path)


LEAK_MAPPING = """
tables:
  deals:
    source: deals
    columns: {deal_id: Id, created_at: Created, status: Status, closed_at: Closed, amount: Amount}
    attributes:
      rebate: {from: Rebate, kind: numeric, known: anytime}
      territory: {from: Territory, kind: categorical, known: creation, keep: "set by the territory plan before the deal opens"}
      region: {from: Region, kind: categorical, known: creation}
"""
#: Why the audit flags ``territory``, and the mapping keeps it anyway.
TERRITORY_KEPT = "set by the territory plan before the deal opens"


def leaky_export(folder: Path) -> Path:
    """40 won, 40 lost and 40 open deals. ``rebate`` is 0 for every lost deal (a value set
    at the loss), ``territory`` separates won from lost (kept by the mapping), ``region``
    says nothing. One more lost deal has a rebate but closes before it was created: ingest
    rejects it, and were it audited, 40 of 41 lost deals (98% is needed) would not flag."""
    rows = ["Id,Created,Status,Closed,Amount,Rebate,Territory,Region"]
    start = pd.Timestamp("2024-01-01")
    for i in range(120):
        status = ("won", "lost", "open")[i % 3]
        created = start + pd.Timedelta(days=i)
        closed = "" if status == "open" else f"{created + pd.Timedelta(days=20):%Y-%m-%d}"
        rebate = {"won": i % 7 + 1, "lost": 0, "open": i % 5}[status]
        territory = {"won": ("east", "north"), "lost": ("west", "south"), "open": ("east", "west")}
        rows.append(
            f"D{i},{created:%Y-%m-%d},{status},{closed},{1000 + i * 37 % 100 * 100},{rebate},"
            f"{territory[status][i // 3 % 2]},{('EU', 'US', 'APAC', 'LATAM')[i // 3 % 4]}"
        )
    rows.append("D999,2024-06-01,lost,2024-05-01,1000,5,west,EU")  # line 122: closed < created
    folder.mkdir()
    (folder / "deals.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder


def import_cli(settings_root: Path, source: Path, mapping: Path, *args: str) -> str:
    settings = isolated(settings_root)
    result = CliRunner().invoke(
        app,
        ["import", str(source), "--mapping", str(mapping), *args],
        env={"LEADSCORE_FEATURE_REPO": str(settings.feature_repo)},
    )
    assert result.exit_code == 0, result.output
    return result.stdout


def test_the_dry_run_report_names_the_planted_leak_with_evidence_and_the_kept_column(
    tmp_path: Path,
) -> None:
    mapping = tmp_path / "m.yaml"
    mapping.write_text(LEAK_MAPPING, encoding="utf-8")
    out = tmp_path / "out"
    source = leaky_export(tmp_path / "src")
    printed = import_cli(
        tmp_path / "home", source, mapping, "--out", str(out), "--dry-run", "--json"
    )
    report = json.loads(printed)
    assert json.loads((out / "import_report.json").read_text(encoding="utf-8")) == report
    audit = report["leakage_audit"]
    assert [(r["line"], r["rule"]) for r in report["rejects"]] == [
        (122, "must not be before created_at")
    ]
    assert audit["rows"] == {"deals": 120}
    assert audit["rows_of"] == "the rows this import would store"
    found = {(f["column"], f["rule"]): f for f in audit["findings"]}
    rebate = found[("rebate", "constant_within_outcome")]
    assert rebate["evidence"] == "0 for 100% of 40 lost deals but for only 0% of 40 won deals."
    assert rebate["kept"] is None
    assert found[("territory", "single_column_auc")]["kept"] == TERRITORY_KEPT
    assert audit["excluded_columns"] == ["rebate"]
    assert audit["kept"] == {"territory": TERRITORY_KEPT}
    assert "region" not in {f["column"] for f in audit["findings"]}
    assert set(audit["audited"]["deals"]) == {"amount", "rebate", "territory", "region"}
    assert audit["not_judged"] == []
    assert "--keep-flagged" in audit["training"]


def test_the_printed_import_report_lists_flagged_kept_and_what_training_does(
    tmp_path: Path,
) -> None:
    mapping = tmp_path / "m.yaml"
    mapping.write_text(LEAK_MAPPING, encoding="utf-8")
    text = import_cli(
        tmp_path / "home", leaky_export(tmp_path / "src"), mapping, "--out", str(tmp_path / "out")
    )
    assert "leakage audit: 4 columns checked, 2 flagged, 1 excluded from training" in text
    assert (
        "  deals.rebate (excluded from training):\n"
        "    [constant_within_outcome] 0 for 100% of 40 lost deals but for only 0% of 40 won "
        "deals.\n"
    ) in text
    assert f"  deals.territory (kept: {TERRITORY_KEPT}):\n    [single_column_auc] alone" in text
    assert "  audited: 120 deals (the rows this import stores)" in text
    assert (
        "flagged columns will be left out of training unless the mapping keeps them "
        '(keep: "reason" on the attribute) or `leadscore train --keep-flagged` is used'
    ) in text
    assert text.rstrip().endswith("(ingested)")
