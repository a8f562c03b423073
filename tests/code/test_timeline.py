"""A deal's timeline (issue 13) on a hand-made CRM: exact events, order and words."""

from __future__ import annotations

import html
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from leadscore.priority.rank import record_scores
from leadscore.priority.timeline import UnknownDeal, deal_timeline, load_deal


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def tiny_tables() -> dict[str, pd.DataFrame]:
    deals = pd.DataFrame(
        {
            "deal_id": ["D1", "D2"],
            "account_id": ["A1", "A2"],
            "owner_id": ["rep-1", "rep-2"],
            "created_at": [ts("2025-01-01 09:00"), ts("2025-01-02")],
            "channel": ["referral", "web"],
            "product": ["Core", "Core"],
            "amount": [12_000.0, 5.0],
            "stage": ["qualified", "lead"],
            "status": ["lost", "open"],
            "closed_at": [ts("2025-02-01"), pd.NaT],
            "lost_reason": ["Price too high <b>", None],
        }
    )
    stage_history = pd.DataFrame(
        {
            "deal_id": ["D1", "D1", "D1", "D1", "D1", "D2"],
            "stage": ["lead", "qualified", "qualified", "solution", "qualified", "lead"],
            "entered_at": [
                ts("2025-01-01 09:00"),
                ts("2025-01-05"),
                ts("2025-01-06"),
                ts("2025-01-10"),
                ts("2025-01-20"),
                ts("2025-01-02"),
            ],
        }
    )
    contacts = pd.DataFrame(
        {"contact_id": ["C1", "C2", "C9"], "title": ["VP Sales", "采购", "CEO"]}
    )
    deal_contacts = pd.DataFrame(
        {
            "deal_id": ["D1", "D1", "D2"],
            "contact_id": ["C1", "C2", "C9"],
            "role": ["economic_buyer", None, "user"],
            "added_at": [ts("2025-01-05"), ts("2025-01-12"), ts("2025-01-02")],
        }
    )
    activities = pd.DataFrame(
        {
            "activity_id": ["X1", "X2", "X3"],
            "deal_id": ["D1", "D1", "D2"],
            "contact_id": ["C1", None, "C9"],
            "type": ["visit", "email", "call"],
            "direction": ["outbound", "inbound", "outbound"],
            "occurred_at": [ts("2025-01-05"), ts("2025-01-15"), ts("2025-01-03")],
            "duration_seconds": [3600.0, None, 60.0],
        }
    )
    return {
        "deals": deals,
        "stage_history": stage_history,
        "contacts": contacts,
        "deal_contacts": deal_contacts,
        "activities": activities,
    }


def reason(text: str, text_zh: str, push: float) -> dict:
    return {
        "feature": "f",
        "text": text,
        "tooltip": None,
        "contribution": push,
        "text_zh": text_zh,
        "tooltip_zh": None,
    }


def write_history(history_dir: Path) -> None:
    """Two runs: the second drops a reason and adds another."""
    runs = [
        (date(2025, 1, 8), 0.40, [reason("Met a director", "已见过总监", 0.3)], []),
        (
            date(2025, 1, 16),
            0.25,
            [],
            [reason("Moves back: 1", "阶段回退次数：1", -0.4)],
        ),
    ]
    for run_date, p, up, down in runs:
        frame = pd.DataFrame(
            {
                "deal_id": ["D1", "D2"],
                "priority_group": ["active", "active"],
                "model": ["win", "win"],
                "probability": [p, 0.5],
                "grade": ["B", "B"],
                "amount": [12_000.0, 5.0],
                "expected_value": [p * 12_000, 2.5],
                "as_of": [ts(f"{run_date} 12:00")] * 2,
                "positive_reasons": [up, []],
                "negative_reasons": [down, []],
            }
        )
        record_scores(history_dir, frame, run_date, "3", ts(f"{run_date} 13:00"))


def test_one_deal_s_events_in_time_order_with_what_moved_its_score(tmp_path):
    tables = tiny_tables()
    crm = tmp_path / "crm"
    crm.mkdir()
    for name, table in tables.items():
        table.to_parquet(crm / f"{name}.parquet")
    write_history(tmp_path / "history")
    own, history = load_deal(crm, tmp_path / "history", "D1")
    assert set(own["contacts"]["contact_id"]) == {"C1", "C2"}  # only the deal's contacts
    assert set(history["deal_id"]) == {"D1"}

    timeline = deal_timeline(own, history, "D1")
    got = [(e.at, e.kind, e.text) for e in timeline.events]
    assert got == [
        (
            ts("2025-01-01 09:00"),
            "created",
            "Deal created: referral channel, product Core, amount 12,000",
        ),
        (ts("2025-01-01 09:00"), "stage", "Entered lead"),
        (
            ts("2025-01-05"),
            "contact",
            "Contact added: C1 (VP Sales, vice president), economic buyer",
        ),
        (ts("2025-01-05"), "stage", "Moved from lead to qualified"),
        (ts("2025-01-05"), "activity", "Outbound visit with C1 (VP Sales, vice president)"),
        (ts("2025-01-08 12:00"), "score", "Scored 40 (B)"),
        (ts("2025-01-10"), "stage", "Moved from qualified to solution"),
        (ts("2025-01-12"), "contact", "Contact added: C2 (采购, individual contributor)"),
        (ts("2025-01-15"), "activity", "Inbound email"),
        (
            ts("2025-01-16 12:00"),
            "score",
            "Scored 25 (B), -15 since 2025-01-08; new: − Moves back: 1; no longer: + Met a director",
        ),
        (ts("2025-01-20"), "stage", "Moved back from solution to qualified"),
        (ts("2025-02-01"), "closed", "Lost: Price too high <b>"),
    ]
    zh = [e.text_zh for e in timeline.events]
    assert zh[3] == "从线索推进到已确认商机阶段"
    assert zh[4] == "我方发起的拜访：C1（VP Sales，副总裁）"
    assert zh[9] == "评分 25（B），较 2025年1月8日 -15；新增：− 阶段回退次数：1；不再：+ 已见过总监"
    assert zh[10] == "从方案退回已确认商机阶段"
    assert timeline.events[9].details["change"] == -15
    assert timeline.events[11].details["lost_reason_canonical"] == "price"
    assert timeline.events[4].details["seniority"] == 5
    assert timeline.summary["score"] == 25 and timeline.summary["owner_id"] == "rep-1"
    # The whole tables give the same timeline as the deal's own rows.
    assert deal_timeline(tables, history, "D1") == timeline
    data = timeline.to_dict()
    assert data["events"][0]["at"] == "2025-01-01T09:00:00+00:00"


def test_an_unknown_deal_says_so():
    with pytest.raises(UnknownDeal, match="no deal 'nope'"):
        deal_timeline(tiny_tables(), pd.DataFrame(), "nope")


# ------------------------------------------------------------------ the page over HTTP
HOSTILE = '<script>alert("x")</script>'


@pytest.fixture
def served(isolated_settings, tmp_path):
    from starlette.testclient import TestClient

    from serving.leads_page import create_app

    tables = tiny_tables()
    tables["contacts"].loc[0, "title"] = HOSTILE  # CRM text is whatever a rep typed
    isolated_settings.crm_dir.mkdir(parents=True)
    for name, table in tables.items():
        table.to_parquet(isolated_settings.crm_dir / f"{name}.parquet")
    write_history(tmp_path / "rankings" / "score_history")
    return TestClient(create_app(isolated_settings, source=tmp_path / "rankings"))


def test_the_timeline_page_escapes_crm_text_and_speaks_the_reader_s_language(served):
    from serving.leads_page import SECURITY_HEADERS

    page = served.get("/deal/D1")
    assert page.status_code == 200
    assert HOSTILE not in page.text and html.escape(HOSTILE) in page.text
    assert "Moved back from solution to qualified" in page.text
    assert "<script" not in page.text and "http" not in page.text.replace("http-equiv", "")
    assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert all(page.headers[k] == v for k, v in SECURITY_HEADERS.items())
    zh = served.get("/deal/D1", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"})
    assert "从方案退回已确认商机阶段" in zh.text and 'lang="zh-CN"' in zh.text
    asked = served.get("/deal/D1?lang=en", headers={"Accept-Language": "zh-CN"})
    assert "Moved back from solution to qualified" in asked.text
    chosen = served.get("/deal/D1?lang=zh", headers={"Accept-Language": "en-GB"})
    assert "从方案退回已确认商机阶段" in chosen.text
    preferred = served.get("/deal/D1", headers={"Accept-Language": "en;q=0.5, zh;q=0.9"})
    assert 'lang="zh-CN"' in preferred.text
    # The page's own words (the managers' page's table): headings, facts and event kinds.
    for text, words in (
        (page.text, ("What happened", "Owner", ">stage<", "中文")),
        (zh.text, ("事件", "负责人", ">阶段<", "English")),
    ):
        assert all(w in text for w in words), words


def test_an_unknown_deal_is_a_404_that_says_which(served):
    page = served.get("/deal/%3Cb%3Enope")
    assert page.status_code == 404
    assert "No deal &lt;b&gt;nope in the stored CRM" in page.text
    zh = served.get("/deal/%3Cb%3Enope", params={"lang": "zh"})
    assert zh.status_code == 404 and "没有商机 &lt;b&gt;nope。" in zh.text


def test_the_timeline_command_prints_the_events_or_json(served, isolated_settings, tmp_path):
    import json

    from typer.testing import CliRunner

    from pipelines.cli import app
    from tests.code.test_cli import env_of

    args = ["timeline", "D1", "--from", str(tmp_path / "rankings")]
    env = env_of(isolated_settings)
    lines = CliRunner().invoke(app, args, env=env).stdout.splitlines()
    assert (
        lines[0]
        == "2025-01-01 09:00  created   Deal created: referral channel, product Core, amount 12,000"
    )
    assert lines[-1] == "2025-02-01 00:00  closed    Lost: Price too high <b>"
    data = json.loads(CliRunner().invoke(app, [*args, "--json"], env=env).stdout)
    assert data["deal_id"] == "D1" and len(data["events"]) == len(lines) == 12
    unknown = CliRunner().invoke(app, ["timeline", "nope"], env=env)
    assert unknown.exit_code == 1 and "no deal 'nope'" in unknown.stderr
