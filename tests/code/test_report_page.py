"""The managers' page (``leadscore report`` and ``/leads``) says the moment the list is ranked
as of, and, in English and Chinese, when that moment is the export's last recorded event."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pandas as pd
import pytest
from starlette.testclient import TestClient

from leadscore.config import Settings
from leadscore.crm.ingest import last_recorded_event
from leadscore.model.scoring_model import ScoringModel
from leadscore.priority.rank import run_rank
from leadscore.priority.report import build_page
from serving.leads_page import create_app
from tests.crm_fixture import day, tiny_crm
from tests.serving_fixture import synthetic_tables, train_small_model

ENGLISH = (
    "Ranked as of {when}, the export's last recorded event, not today: the CRM export ends "
    "there, so days since the last activity and dormancy are counted up to that moment."
)
CHINESE = (
    "排名时点为 {when}，即导出数据中最后记录的事件时间，而不是今天：CRM 导出数据截止于此，"
    "距上次跟进的天数和休眠状态都计算到这一时刻。"
)


def visible(page: str) -> str:
    """The page's text as a reader sees it: no scripts or styles, tags gone, entities read,
    white space collapsed."""
    page = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.DOTALL | re.IGNORECASE)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


@pytest.fixture(scope="module")
def model() -> ScoringModel:
    return train_small_model(synthetic_tables())[0]


@pytest.fixture
def stored(isolated_settings: Settings) -> Settings:
    """The tiny CRM of 2024 stored: a historical export, long before today."""
    isolated_settings.crm_dir.mkdir(parents=True)
    for name, table in tiny_crm().items():
        table.to_parquet(isolated_settings.crm_dir / f"{name}.parquet")
    return isolated_settings


def test_a_historical_export_is_shown_as_of_its_last_recorded_event_in_both_languages(
    stored: Settings, model: ScoringModel, tmp_path: Path
) -> None:
    run = run_rank(stored, model, "1", tmp_path)  # no --as-of: the export's last event
    last = last_recorded_event(stored.crm_dir)
    assert last is not None and run.as_of == last and run.as_of_note
    when = f"{last:%Y-%m-%d %H:%M} UTC"
    page = visible(build_page(tmp_path, stored.crm_dir))
    assert f"deals as of {when} with model version 1" in page
    assert ENGLISH.format(when=when) in page
    assert CHINESE.format(when=when) in page
    served = TestClient(create_app(stored, source=tmp_path)).get("/")
    assert served.status_code == 200
    assert ENGLISH.format(when=when) in visible(served.text)
    assert CHINESE.format(when=when) in visible(served.text)


def test_a_list_ranked_at_another_moment_shows_that_moment_and_no_such_sentence(
    stored: Settings, model: ScoringModel, tmp_path: Path
) -> None:
    as_of = day(70)
    assert as_of != last_recorded_event(stored.crm_dir)
    run_rank(stored, model, "1", tmp_path, as_of=as_of)
    page = visible(build_page(tmp_path, stored.crm_dir))
    assert f"deals as of {as_of:%Y-%m-%d %H:%M} UTC with model version 1" in page
    assert "last recorded event" not in page and "最后记录" not in page


def test_a_later_ingest_moves_the_last_event_and_the_served_page_drops_the_sentence(
    stored: Settings, model: ScoringModel, tmp_path: Path
) -> None:
    """The list stays ranked as of the old last event; the store now runs later, so the
    sentence would be false and the served page, rendered again, no longer says it."""
    run = run_rank(stored, model, "1", tmp_path)
    client = TestClient(create_app(stored, source=tmp_path))
    assert "last recorded event" in visible(client.get("/").text)
    deals = pd.read_parquet(stored.crm_dir / "deals.parquet")
    assert run.as_of is not None
    deals.loc[deals["deal_id"] == "D3", "created_at"] = run.as_of + pd.Timedelta(days=3)
    deals.to_parquet(stored.crm_dir / "deals.parquet")
    page = visible(client.get("/").text)
    assert f"deals as of {run.as_of:%Y-%m-%d %H:%M} UTC" in page
    assert "last recorded event" not in page and "最后记录" not in page
