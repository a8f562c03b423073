"""Spreadsheet formula injection: every CSV the product writes neutralises formula cells.

OWASP's rule (https://owasp.org/www-community/attacks/CSV_Injection): a text cell that
starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading single
quote. One helper, :func:`leadscore.csvsafe.write_csv`, and a test per writer.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from leadscore.config import PROJECT_ROOT
from leadscore.crm.ingest import ingest_export
from leadscore.csvsafe import neutralise, write_csv
from leadscore.priority.rank import write_ranked

HOSTILE = [
    '=HYPERLINK("http://x","click")',
    "+1+cmd|' /C calc'!A0",
    "-2+3",
    "@SUM(A1:A2)",
    "\t=1+1",
    "\r=1+1",
]


def read_back(path: Path, encoding: str = "utf-8") -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False, encoding=encoding)


def is_safe(cell: str) -> bool:
    """What a spreadsheet would not run: not formula-led, or a plain number."""
    return not cell.startswith(("=", "+", "-", "@", "\t", "\r")) or bool(
        re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", cell)
    )


def test_text_cells_get_a_quote_and_numbers_stay_numbers(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "text": HOSTILE,
            "amount": [-1.5, -2.0, 3.0, -4.0, 5.0, -6.0],  # a negative number is not text
            "count": np.array([-1, 2, -3, 4, -5, 6], dtype="int64"),
            "as_written": ["-5", "+3.2", "-1e3", "ok", "", "a=b"],  # plain numbers stay
        }
    )
    out = neutralise(frame)
    assert list(out["text"]) == ["'" + cell for cell in HOSTILE]
    assert list(out["as_written"]) == ["-5", "+3.2", "-1e3", "ok", "", "a=b"]
    pd.testing.assert_series_equal(out["amount"], frame["amount"])
    pd.testing.assert_series_equal(out["count"], frame["count"])

    write_csv(frame, tmp_path / "f.csv")
    back = pd.read_csv(tmp_path / "f.csv", keep_default_na=False)
    assert back["amount"].tolist() == [-1.5, -2.0, 3.0, -4.0, 5.0, -6.0]
    assert back["text"].tolist() == ["'" + cell for cell in HOSTILE]


def test_missing_values_and_header_cells() -> None:
    frame = pd.DataFrame({"=cmd": ["=x", None, np.nan], "n": [1.0, np.nan, -2.0]})
    out = neutralise(frame)
    assert list(out.columns) == ["'=cmd", "n"]
    assert out["'=cmd"].iloc[0] == "'=x" and out["'=cmd"].iloc[1:].isna().all()


def test_rejects_csv_neutralises_the_values_the_crm_sent(tmp_path: Path) -> None:
    export = tmp_path / "export"
    export.mkdir()
    deals = pd.DataFrame(
        {
            "deal_id": ["D1", "D2", "D3", "D4"],
            "account_id": ["A1", "A1", "A1", "A1"],
            "created_at": ["2024-01-01"] * 4,
            "amount": ["=1+1", "-5", "100", "100"],
            "stage": ["lead", "lead", "@SUM(A1)", "lead"],
            "status": ["open"] * 4,
            "closed_at": [""] * 4,
        }
    )
    deals.to_csv(export / "deals.csv", index=False)
    ingest_export(
        export, tmp_path / "crm", tmp_path / "rejects", now=pd.Timestamp("2024-06-01", tz="UTC")
    )
    rejects = read_back(tmp_path / "rejects" / "rejects.csv")
    values = dict(zip(rejects["line"], rejects["value"], strict=True))
    assert values == {"2": "'=1+1", "3": "-5", "4": "'@SUM(A1)"}  # -5: a number, as written
    assert all(is_safe(cell) for cell in rejects.to_numpy().ravel())


def _reason(text: str) -> dict[str, object]:
    return {"feature": "amount", "text": text, "tooltip": "=tip", "contribution": -0.1}


def test_ranked_leads_csv_neutralises_crm_text(tmp_path: Path) -> None:
    ranked = pd.DataFrame(
        {
            "rank": [1, 2],
            "deal_id": ['=HYPERLINK("http://x","click")', "D2"],
            "account_id": ["@A1", "A2"],
            "owner_id": ["+U1", "-U2"],
            "probability": [0.4, 0.2],
            "change": [-0.05, np.nan],  # a negative number column is not text
            "amount": [1000.0, -1.0],
            "positive_reasons": [[_reason("=bad")], []],
            "negative_reasons": [[_reason("fine")], [_reason("-x")]],
            "risk_flags": [[{"code": "stalls", "text": "@flag"}], []],
            "trend": [[0.3, 0.4], [0.2]],
            "next_step": ["=call", "email"],
        }
    )
    paths = write_ranked(ranked, tmp_path)
    csv = read_back(paths["csv"], encoding="utf-8-sig")
    assert csv.loc[0, "deal_id"] == "'" + ranked.loc[0, "deal_id"]
    assert csv.loc[0, "account_id"] == "'@A1" and csv.loc[1, "owner_id"] == "'-U2"
    assert csv.loc[0, "positive_reasons"] == "'=bad" and csv.loc[1, "negative_reasons"] == "'-x"
    assert csv.loc[0, "risk_flags"] == "'@flag" and csv.loc[0, "next_step"] == "'=call"
    assert csv.loc[0, "change"] == "-0.05" and csv.loc[1, "amount"] == "-1.0"
    assert all(is_safe(cell) for cell in csv.to_numpy().ravel())
    # The Parquet list keeps the values as they are: only the spreadsheet file is escaped.
    assert pd.read_parquet(paths["parquet"])["deal_id"].iloc[0] == ranked.loc[0, "deal_id"]


def test_feature_importance_csv_goes_through_the_helper(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from training import report

    for plot in ("_calibration_plot", "_gain_plot"):
        monkeypatch.setattr(report, plot, lambda y, preds, path: path)
    monkeypatch.setattr(report, "_shap_plot", lambda result, test, path, sample: path)
    monkeypatch.setattr(
        report,
        "feature_importance",
        lambda result: pd.DataFrame({"feature": ["=evil", "amount"], "gain": [-1.0, 2.0]}),
    )
    monkeypatch.setattr(report, "model_card", lambda result, importance, run_id: "")
    result = SimpleNamespace(
        test_rows=pd.DataFrame({"won": [1, 0]}),
        test_predictions={},
        evaluation={},
    )
    report.write_report(result, tmp_path)  # type: ignore[arg-type]
    back = read_back(tmp_path / "feature_importance.csv")
    assert back["feature"].tolist() == ["'=evil", "amount"] and back["gain"].iloc[0] == "-1.0"


def test_no_csv_is_written_around_the_helper() -> None:
    """Any new writer must use write_csv: no other ``to_csv`` or csv module writer in code."""
    offenders = []
    for package in ("leadscore", "training", "serving", "pipelines"):
        for path in sorted((PROJECT_ROOT / package).rglob("*.py")):
            if path.name == "csvsafe.py":
                continue
            text = path.read_text(encoding="utf-8")
            if ".to_csv(" in text or "csv.writer(" in text or "csv.DictWriter(" in text:
                offenders.append(str(path.relative_to(PROJECT_ROOT)))
    assert offenders == []
