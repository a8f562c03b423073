"""The Salesforce preset on the three Salesforce layouts in ../shared/datasets, through the
real ingest, and end to end through the real CLI as a new user runs it. Each folder's
SOURCE.md describes the quirks checked here."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from leadscore.config import datasets_dir
from leadscore.crm.importer import check_export
from leadscore.crm.importer.mapping import load_mapping
from leadscore.crm.importer.report import build_report, contract_rejects
from leadscore.crm.importer.run import run_import, write_export
from pipelines.cli import app
from pipelines.steps import ingest
from tests.conftest import cli, environment, isolated

pytestmark = pytest.mark.integration

DATA = datasets_dir()
DEVORG = DATA / "salesforce-weekly-export-devorg"
API_EXTRACT = DEVORG / "same-org-api-extract"
PREPPIN = DATA / "salesforce-preppin-2022w23"
DATACLOUD = DATA / "salesforce-datacloud-workshop"


def imported(folder: Path, out: Path) -> dict[str, pd.DataFrame]:
    result = run_import(folder, load_mapping("salesforce"))
    paths = write_export(result, out)
    return {name: pd.read_parquet(path) for name, path in paths.items()}


def test_two_dialects_of_the_same_org_import_to_identical_records(tmp_path: Path) -> None:
    export = imported(DEVORG, tmp_path / "export")
    api = imported(API_EXTRACT, tmp_path / "api")
    # The API extract has no OpportunityHistory; every table both hold must be equal.
    assert set(api) == {"deals", "accounts", "contacts"} and "stage_history" in export
    for name in api:
        key = list(api[name].columns[:1])
        left = export[name].sort_values(key, ignore_index=True)
        right = api[name].sort_values(key, ignore_index=True)
        pd.testing.assert_frame_equal(left, right, check_like=False)
    assert len(export["deals"]) == 31
    # "000000000000000AAA" is an empty lookup, upper-case headers map alike.
    assert (export["deals"]["status"] == "won").sum() == 18


def test_spreadsheet_round_trip_day_first_dates_and_contradicting_flags(tmp_path: Path) -> None:
    result = run_import(PREPPIN, load_mapping("salesforce"))
    deals = result.tables["deals"]
    notes = " | ".join(deals.notes)
    assert "CreatedDate: day-first detected" in notes
    assert "IsWon contradicts StageName on 86 of 219 rows" in notes
    statuses = deals.data.column("status").to_pylist()
    assert (statuses.count("won"), statuses.count("lost")) == (89, 57)
    created = deals.data.column("created_at")[0].as_py()
    assert created.isoformat() == "2022-03-14T00:00:00+00:00"  # 14/03/2022, line 2
    history = result.tables["stage_history"]
    assert history.files[0].encoding == "UTF-8 with BOM" and history.read == 584


def test_preppin_through_ingest_accounts_for_every_row_with_source_lines(tmp_path: Path) -> None:
    settings = isolated(tmp_path)
    result = run_import(PREPPIN, load_mapping("salesforce"))
    out = tmp_path / "export"
    write_export(result, out)
    summary = ingest(out, settings)
    checked = contract_rejects(result, summary.rejects)
    report = build_report(result, out, checked, summary.counts)
    for name, table in report["tables"].items():
        assert table["balanced"], (name, table["accounting"])
    # SOURCE.md: 43 history rows are dated before their opportunity's CreatedDate.
    history = checked[checked["table"] == "stage_history"]
    assert len(history) == 43 and set(history["file"]) == {"Opportunity History.csv"}
    first = history.iloc[0]
    assert (first["line"], first["column"]) == (2, "CreatedDate (entered_at)")
    assert first["value"] == "06/04/2022"  # as written in the source, not as parsed
    assert summary.counts["deals"]["valid"] == 219
    # Counted by rule, not by each deal's creation time that ends the message.
    assert report["rejects_by_rule"] == [
        {"table": "stage_history", "rule": "is before the deal's created_at", "rows": 43}
    ]


def test_datacloud_bom_files_and_tasks_without_a_deal(tmp_path: Path) -> None:
    settings = isolated(tmp_path)
    result = run_import(DATACLOUD, load_mapping("salesforce"))
    out = tmp_path / "export"
    write_export(result, out)
    checked, counts = check_export(result, out, settings.crm_dir)
    assert {f.encoding for f in result.files} == {"UTF-8 with BOM"}
    assert "Lead.csv" in result.unused_files and "LICENSE.txt" in result.unused_files
    # No task is logged on an opportunity; their type words are reported, not guessed.
    tasks = result.tables["activities"]
    assert tasks.written + tasks.rejected == 75
    # Won deals "closed before created" (one load time for all CreatedDates): rejected
    # by the contract, named by their line in Opportunity.csv.
    deals = checked[checked["table"] == "deals"]
    assert len(deals) == counts["deals"]["rejected"] > 0
    assert set(deals["file"]) == {"Opportunity.csv"} and deals["line"].min() >= 2
    assert not pa.types.is_null(pa.array(deals["line"]).type)


#: Per layout: whether the sample has enough closed deals to train (40 of each outcome).
#: The dev org's and the workshop's closed deals all close before their CreatedDate (one
#: load time for all records, SOURCE.md), so the contract keeps none of them closed.
END_TO_END = {
    "weekly-export-devorg": (DEVORG, False),
    "preppin-2022w23": (PREPPIN, True),
    "datacloud-workshop": (DATACLOUD, False),
}


@pytest.mark.parametrize("layout", list(END_TO_END))
def test_a_new_user_imports_a_salesforce_export_and_trains_and_ranks(
    tmp_path: Path, layout: str
) -> None:
    folder, trains = END_TO_END[layout]
    env = environment(tmp_path)
    imported = cli(env, "import", str(folder), "--mapping", "salesforce")
    assert "(ingested)" in imported and "deals <- " in imported
    cli(env, "features", "apply")
    if not trains:
        out = CliRunner().invoke(app, ["train"], env=env)
        assert out.exit_code == 1, out.output
        assert re.search(
            r"not enough closed deals to train on: \d+ won and \d+ lost, at least 40 of each",
            out.output,
        ), (out.output, out.exception)
        return
    trained = cli(env, "train")
    # 146 closed deals: the test slice is too small, so cross-validation answers instead,
    # and the model (worse than logistic regression there) fails the baseline gate.
    assert "test: ROC AUC" in trained and "time-ordered cross-validation over" in trained
    assert "baseline gate: FAILED: not better than baseline" in trained, trained
    assert "(challenger)" in trained
    refused = cli(env, "promote", code=1)
    assert "gate: not better than baseline" in refused
    cli(env, "promote", "--force", "--note", "a first look at a small export")
    ranked_out = cli(env, "rank", "--out", str(tmp_path / "rankings"))
    assert "warning: model not better than baseline" in ranked_out
    ranked = pd.read_parquet(tmp_path / "rankings" / "ranked_leads.parquet")
    assert len(ranked) > 0 and ranked["probability"].between(0, 1).all()
