"""The leakage audit for real: on IBM's win/loss table, and inside `leadscore train`.

IBM's "Sales Win Loss" table (../shared/datasets/ibm-sales-win-loss, see its SOURCE.md)
holds only closed, undated opportunities; SOURCE.md names seven columns that summarise
the finished sales process. The audit must find them by itself and leave the columns
known while a deal is open alone. The training test ingests a synthetic CRM with a
planted leak and checks that `train` leaves it out of the model, lists it with its
evidence (output, JSON, model card) and keeps a column the mapping keeps.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from leadscore.config import datasets_dir
from leadscore.crm.attributes import Attribute, write_attributes
from leadscore.crm.leakage import audit_tables
from leadscore.crm.synth import generate_crm, write_export
from leadscore.model.registry import load_scoring_model, mlflow_client
from pipelines.cli import app
from tests.conftest import isolated
from training.registry import ensure_experiment

pytestmark = pytest.mark.integration

IBM = datasets_dir() / "ibm-sales-win-loss"
IBM_FILE = IBM / "WA_Fn-UseC_-Sales-Win-Loss.csv"
#: SOURCE.md's "Leakage warning": summaries of the finished sales process.
IBM_POST_HOC = {
    "Elapsed Days In Sales Stage",
    "Sales Stage Change Count",
    "Total Days Identified Through Closing",
    "Total Days Identified Through Qualified",
    "Ratio Days Identified To Total Days",
    "Ratio Days Validated To Total Days",
    "Ratio Days Qualified To Total Days",
}
#: Known while the deal is open (SOURCE.md's "static columns").
IBM_HONEST = {
    "Supplies Subgroup",
    "Supplies Group",
    "Region",
    "Route To Market",
    "Opportunity Amount USD",
    "Client Size By Revenue",
    "Client Size By Employee Count",
    "Competitor Type",
    "Deal Size Category",
}
AS_OF = pd.Timestamp("2025-06-30", tz="UTC")


def _snake(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def ibm_as_deals() -> tuple[pd.DataFrame, list[Attribute]]:
    """The IBM table as stored deals: id, status, no dates, every other column an attribute
    (numeric when the file's column is, categorical otherwise), each known "anytime"."""
    raw = pd.read_csv(IBM_FILE, keep_default_na=False, na_values=[""])
    deals = pd.DataFrame(
        {
            "deal_id": raw["Opportunity Number"].astype(str),
            "status": raw["Opportunity Result"].map({"Won": "won", "Loss": "lost"}),
            "created_at": pd.NaT,
            "closed_at": pd.NaT,
        }
    )
    attributes = []
    for column in raw.columns.drop(["Opportunity Number", "Opportunity Result"]):
        numeric = pd.api.types.is_numeric_dtype(raw[column])
        a = Attribute(
            _snake(column),
            "deals",
            "numeric" if numeric else "categorical",
            "anytime",
            source=column,
        )
        attributes.append(a)
        deals[a.name] = raw[column].astype(float) if numeric else raw[column]
    return deals, attributes


def test_the_audit_finds_ibms_post_hoc_columns_by_itself() -> None:
    deals, attributes = ibm_as_deals()
    audit = audit_tables({"deals": deals}, attributes)
    source = {a.name: a.source for a in attributes}
    flagged = {source[c] for c in audit.flagged()}
    assert IBM_POST_HOC <= flagged, IBM_POST_HOC - flagged
    assert not IBM_HONEST & flagged, IBM_HONEST & flagged
    assert audit.excluded() == {_snake(c) for c in flagged}
    # Closed deals only, no dates: the audit says which rules it could not apply.
    assert any("0 open" in s for s in audit.not_judged)
    assert any("closed_at" in s for s in audit.not_judged)


def _export_with_attributes(root: Path) -> Path:
    """A synthetic export whose deals carry a planted leak and two honest attributes.

    ``final_discount`` is 0 for every lost deal (set at the win); ``team`` is honest;
    ``handover_rating`` is present only for closed deals but the mapping keeps it.
    """
    crm = generate_crm(1200, seed=8, as_of=AS_OF)
    export = root / "export"
    write_export(crm, export)
    deals = pd.read_parquet(export / "deals.parquet")
    rng = np.random.default_rng(0)
    won, closed = deals["status"].eq("won"), deals["status"].ne("open")
    deals["final_discount"] = np.where(won, rng.uniform(0.02, 0.3, len(deals)), 0.0)
    deals.loc[~closed, "final_discount"] = rng.uniform(0, 0.3, int((~closed).sum()))
    deals["team"] = rng.choice(["north", "south", "east"], size=len(deals))
    deals["handover_rating"] = np.where(closed, rng.integers(1, 6, len(deals)).astype(float), None)
    deals.to_parquet(export / "deals.parquet", index=False)
    write_attributes(
        export,
        [
            Attribute("final_discount", "deals", "numeric", "anytime"),
            Attribute("team", "deals", "categorical", "creation"),
            Attribute(
                "handover_rating",
                "deals",
                "numeric",
                "anytime",
                keep="rated by the rep before the proposal; our export fills it late",
            ),
        ],
    )
    return export


def test_train_leaves_flagged_columns_out_and_lists_them(tmp_path: Path, monkeypatch) -> None:
    settings = isolated(tmp_path)
    export = _export_with_attributes(tmp_path)
    monkeypatch.setenv("LEADSCORE_FEATURE_REPO", str(settings.feature_repo))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", settings.tracking_uri)
    ensure_experiment(settings, mlflow_client(settings))
    runner = CliRunner()
    for args in (["ingest", str(export)], ["features", "apply"]):
        out = runner.invoke(app, args)
        assert out.exit_code == 0, out.output

    out = runner.invoke(app, ["train", "--json"])
    assert out.exit_code == 0, out.output
    audit = json.loads(out.stdout)["audit"]
    rules = {(f["column"], f["rule"]) for f in audit["findings"]}
    assert ("final_discount", "constant_within_outcome") in rules
    assert ("handover_rating", "only_closed") in rules
    assert {f["column"] for f in audit["findings"]} == {"final_discount", "handover_rating"}
    assert audit["excluded_columns"] == ["final_discount"]
    assert audit["excluded_features"] == ["attr_final_discount"]
    assert audit["kept"]["handover_rating"].startswith("rated by the rep")

    model = load_scoring_model(f"models:/{settings.model_name}/1", settings)
    assert "attr_final_discount" not in model.features
    assert {"attr_team", "attr_handover_rating"} <= set(model.features)

    card = Path(
        mlflow_client(settings).download_artifacts(
            json.loads(out.stdout)["run_id"], "report/model_card.md", str(tmp_path)
        )
    ).read_text()
    assert "## Leakage audit" in card
    assert "| `deals.final_discount` | constant_within_outcome | 0 for 100% of" in card
    assert "kept: rated by the rep before the proposal" in card

    text = runner.invoke(app, ["train"])
    assert text.exit_code == 0, text.output
    assert "leakage audit: " in text.stdout and "2 flagged, 1 excluded" in text.stdout
    assert "deals.final_discount (excluded from training):" in text.stdout
    assert "features left out of the model: attr_final_discount" in text.stdout

    kept_all = runner.invoke(app, ["train", "--json", "--keep-flagged"])
    assert kept_all.exit_code == 0, kept_all.output
    assert json.loads(kept_all.stdout)["audit"]["excluded_features"] == []
    assert (
        "attr_final_discount"
        in load_scoring_model(f"models:/{settings.model_name}/3", settings).features
    )
