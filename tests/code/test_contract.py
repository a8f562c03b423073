"""The CRM contract's document is the contract: generated, never edited apart."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from leadscore.crm.contract import (
    BUDGET,
    COMPETITOR,
    LOST_REASON_WORDS,
    LOST_REASONS,
    NO_DECISION,
    OTHER,
    PRICE,
    PRODUCT_FIT,
    TIMING,
    canonical_lost_reasons,
    contract_markdown,
)
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


def test_the_document_lists_the_lost_reason_words_and_the_previous_deal_rule():
    doc = DOC.read_text(encoding="utf-8")
    assert "## Lost reasons" in doc
    assert "| `price` | price, pricing, expensive" in doc
    assert "`previous_deal_id` must name another deal" in doc


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Price too high", PRICE),
        ("价格", PRICE),
        ("太贵", PRICE),
        ("Went with competitor", COMPETITOR),
        ("竞争对手", COMPETITOR),
        ("选了别家", COMPETITOR),
        ("Lost to a competitor on price", COMPETITOR),
        ("No decision", NO_DECISION),
        ("没有决定", NO_DECISION),
        ("搁置", NO_DECISION),
        ("Bad timing", TIMING),
        ("时机", TIMING),
        ("明年再说", TIMING),
        ("No budget", BUDGET),
        ("预算", BUDGET),
        ("  NO   BUDGET this year ", BUDGET),
        ("Missing feature", PRODUCT_FIT),
        ("功能不符", PRODUCT_FIT),
        ("产品不匹配", PRODUCT_FIT),
        ("product_fit", PRODUCT_FIT),
        ("No-Decision", NO_DECISION),
        ("Champion left", OTHER),
        ("贵公司重组", OTHER),  # 贵 is also the polite "your": not price
        ("other", OTHER),
    ],
)
def test_lost_reason_text_in_english_and_chinese_maps_to_its_reason(text, reason):
    assert canonical_lost_reasons(pd.Series([text])).tolist() == [reason]


def test_lost_reasons_keep_the_index_and_empty_stays_missing():
    values = pd.Series(["太贵", None, "", "  ", "whatever", "太贵"], index=[5, 4, 3, 2, 1, 0])
    out = canonical_lost_reasons(values)
    assert list(out.index) == [5, 4, 3, 2, 1, 0]
    assert out.tolist() == [PRICE, None, None, None, OTHER, PRICE]
    assert set(LOST_REASON_WORDS) == set(LOST_REASONS)
