"""The CRM contract's document is the contract: generated, never edited apart."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from leadscore.crm.contract import contract_markdown
from pipelines.cli import app

DOC = Path(__file__).resolve().parents[2] / "docs" / "crm_contract.md"


def test_the_document_is_what_leadscore_contract_prints():
    """docs/crm_contract.md says it is generated; regenerate it with
    `uv run leadscore contract > docs/crm_contract.md` when this fails."""
    printed = CliRunner().invoke(app, ["contract"])
    assert printed.exit_code == 0, printed.output
    assert DOC.read_text(encoding="utf-8") == printed.output
    assert printed.output == contract_markdown() + "\n"


def test_the_document_states_the_rules_ingest_applies():
    doc = DOC.read_text(encoding="utf-8")
    assert "| `status` | string | yes | open, won or lost. One of: `open`, `won`, `lost`. |" in doc
    assert "A time more than 1 day after the moment of ingest is rejected" in doc
