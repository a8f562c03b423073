"""The managers' commands for real: `leadscore rank` with the registered champion, `top`, `report`,
and the served page driven in headless Chromium.

The CRM is synthetic with every owner and account renamed in Chinese, so the page and
the terminal table are checked with wide characters. The browser is Debian's Chromium
(never a downloaded one); without it the browser test skips, and fails in CI.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pandas as pd
import pytest
import uvicorn
from typer.testing import CliRunner

from leadscore.config import Settings
from leadscore.priority.rank import load_history, rankings_dir, read_ranked
from pipelines.cli import app as cli
from serving.leads_page import create_app
from tests.code.test_page_chinese import ALLOWED, ISO_DAY, data_words, english_in
from tests.conftest import IN_CI, free_port, isolated
from tests.serving_fixture import AS_OF, register_champion, synthetic_tables, train_small_model

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SURNAMES, GIVEN = "王李张刘陈杨赵黄周吴", "芳伟敏静磊"
CITIES = ("北京", "上海", "广州", "深圳", "杭州", "成都")


def chinese_crm() -> dict[str, pd.DataFrame]:
    """The synthetic CRM with owners named like 王芳 and accounts like 上海客户007有限公司."""
    tables = {k: v.copy() for k, v in synthetic_tables().items()}
    deals, accounts, contacts = tables["deals"], tables["accounts"], tables["contacts"]
    owners = sorted(deals["owner_id"].dropna().unique())
    owner_names = {o: SURNAMES[i % 10] + GIVEN[i // 10 % 5] for i, o in enumerate(owners)}
    account_names = {
        a: f"{CITIES[i % 6]}客户{i:03d}有限公司" for i, a in enumerate(accounts["account_id"])
    }
    deals["owner_id"] = deals["owner_id"].map(owner_names)
    for frame in (deals, accounts, contacts):
        frame["account_id"] = frame["account_id"].map(account_names)
    return tables


def _estimate(value: float, half: float) -> dict[str, float]:
    return {"value": value, "low": value - half, "high": value + half}


#: A quality summary as training stores it in a model (training.quality.quality_summary's
#: shape), so the page's model panel has every part to show.
QUALITY: dict[str, Any] = {
    "format": 2,
    "trained_at": "2025-05-01T10:00:00+00:00",
    "window": {"first_snapshot": "2023-01-02T00:00:00+00:00", "last_close": "2025-04-30"},
    "split": {"method": "time", "note": "", "cross_validation": None},
    "test_deals": {"won": 80, "lost": 120},
    "per_deal": {
        "age_days": 30.0,
        **{
            block: {
                "label": label,
                "deals": 200,
                "won": 80,
                "lost": 120,
                "roc_auc": _estimate(0.71, 0.05),
                "log_loss": _estimate(0.62, 0.03),
                "ece": _estimate(0.04, 0.02),
                "lift_at_10": 1.9,
            }
            for block, label in (("at_creation", "at creation"), ("at_age", "at 30 days"))
        },
    },
    "calibration": {
        "method": "platt",
        "reason": "platt: out-of-fold log loss none 0.66, platt 0.64",
        "curve": {"mean_p": [0.2, 0.45, 0.7], "win_rate": [0.22, 0.41, 0.74], "n": [70, 80, 50]},
    },
    "top_features": [
        {"feature": "days_since_last_activity", "gain_share": 0.31, "description": "Days quiet."},
        {"feature": "max_seniority", "gain_share": 0.2, "description": "Most senior contact."},
    ],
    "baselines": {
        "logistic_regression": {
            "label": "logistic regression",
            "at_creation": {
                "roc_auc": {"difference": 0.012, "low": -0.02, "high": 0.044},
                "verdict": "not better",
                "sentence": "not better than logistic regression at creation: "
                "ROC AUC +0.012 [\u22120.020, +0.044]",
            },
        }
    },
    "gate": {"passed": True, "sentence": "beats every baseline", "checks": []},
}


def env(settings: Settings) -> dict[str, str]:
    return {
        "LEADSCORE_FEATURE_REPO": str(settings.feature_repo),
        "MLFLOW_TRACKING_URI": settings.tracking_uri,
    }


@pytest.fixture(scope="module")
def ranked(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """A stored Chinese CRM, a registered champion and one `leadscore rank` run on them."""
    settings = isolated(tmp_path_factory.mktemp("browser"))
    tables = chinese_crm()
    settings.crm_dir.mkdir(parents=True)
    for name, table in tables.items():
        table.to_parquet(settings.crm_dir / f"{name}.parquet")
    model, frame = train_small_model(tables)
    model.info["quality"] = QUALITY  # the model panel's figures
    register_champion(model, frame, settings)
    result = CliRunner().invoke(cli, ["rank", "--as-of", AS_OF.isoformat()], env=env(settings))
    assert result.exit_code == 0, result.output
    return settings


def test_rank_command_scores_with_the_champion_and_records_the_run(ranked: Settings):
    listed = read_ranked(rankings_dir(ranked))
    assert set(listed["model_version"]) == {"1"}
    assert listed["expected_value"].is_monotonic_decreasing
    assert set(listed["priority_group"]) == {"active", "dormant", "recently lost"}
    assert "status" not in listed  # the CRM's status is another concept
    assert len(load_history(rankings_dir(ranked) / "score_history")) == len(listed)
    assert listed["owner_id"].str.fullmatch(r"[\u4e00-\u9fff]{2}").all()


def parse_top(output: str) -> list[dict[str, str]]:
    """Deals of `leadscore top` output: id, owner and the +/- reason lines."""
    deals: list[dict[str, str]] = []
    for line in output.splitlines()[1:]:
        if not line.startswith(" "):
            cells = re.split(r"\s{2,}", line.strip())
            deals.append(
                {"deal": cells[1], "account": cells[2], "owner": cells[3], "+": "", "-": ""}
            )
        elif line.strip()[:1] in "+-":
            deals[-1][line.strip()[0]] = line.strip()[2:]
    return deals


@pytest.fixture(scope="module")
def served(ranked: Settings) -> Iterator[str]:
    """The leads page app under uvicorn on a free localhost port, in a thread."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(ranked), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/"
    server.should_exit = True
    thread.join(10)


def require_chromium() -> None:
    if CHROMIUM.exists():
        return
    if IN_CI:
        pytest.fail(f"{CHROMIUM} is missing; CI must install Debian's chromium")
    pytest.skip(f"{CHROMIUM} is missing; install Debian's chromium to run the browser test")


def page_config(page: str) -> dict[str, Any]:
    found = re.search(
        r'<script type="application/json" id="page-config">(.*?)</script>', page, re.S
    )
    assert found is not None
    return json.loads(found.group(1))


def test_report_command_writes_the_top_rows_the_service_pages_through(
    ranked: Settings, served: str, tmp_path: Path
):
    """`leadscore report` writes one file with the sections and the top rows embedded
    (and plotly.js); the service ships only the first page and the same rows by its API."""
    import httpx

    out = tmp_path / "report.html"
    result = CliRunner().invoke(
        cli, ["report", "--out", str(out), "--max-rows", "30"], env=env(ranked)
    )
    assert result.exit_code == 0, result.output
    static = out.read_text(encoding="utf-8")
    listed = read_ranked(rankings_dir(ranked))
    rows = page_config(static)["rows"]
    assert [r["deal_id"] for r in rows] == list(listed["deal_id"].head(30))
    assert 'id="section-funnel-metrics"' in static and "Plotly" in static
    response = httpx.get(served, timeout=60)
    assert (
        response.status_code == 200
        and response.headers["content-type"] == "text/html; charset=utf-8"
    )
    first = page_config(response.text)["first"]
    assert first["total"] == len(listed)
    assert first["size"] > 30
    assert [r["deal_id"] for r in first["rows"]][:30] == [r["deal_id"] for r in rows]
    assert len(response.content) < len(static) / 4  # no plotly.js, no sections, one page


def wait_rows(page: Any, predicate: str) -> None:
    """Until the list's rows satisfy ``predicate`` (JS over ``rows``, the tbody's rows)."""
    page.wait_for_function(
        "() => { const rows = Array.from(document.querySelectorAll('#leads tbody tr'));"
        f" return rows.length > 0 && ({predicate}); }}",
        timeout=60_000,
    )


def drawn(page: Any, chart: Any) -> None:
    """Scroll a chart (a selector or a locator) into view and wait until plotly drew it:
    the page draws a chart only when it is about to be seen."""
    box = page.locator(chart) if isinstance(chart, str) else chart
    box.scroll_into_view_if_needed()
    box.locator(".main-svg").first.wait_for(timeout=60_000)


def test_the_served_page_in_chromium_matches_top_pages_filters_and_shows_chinese(
    ranked: Settings, served: str, tmp_path: Path
):
    require_chromium()
    from playwright.sync_api import sync_playwright

    top = CliRunner().invoke(cli, ["top", "--n", "8"], env=env(ranked))
    assert top.exit_code == 0, top.output
    expected = parse_top(top.stdout)
    assert len(expected) == 8
    listed = read_ranked(rankings_dir(ranked))

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            requested: list[str] = []
            page.on("request", lambda request: requested.append(request.url))
            page.goto(served, wait_until="load")
            rows = page.locator("#leads tbody tr")

            # The top rows and their reasons are the ones `leadscore top` printed.
            for i, deal in enumerate(expected):
                row = rows.nth(i)
                assert row.get_attribute("data-deal") == deal["deal"]
                assert row.locator("td.owner").inner_text() == deal["owner"]
                assert "; ".join(row.locator("li.pos").all_inner_texts()) == deal["+"]
                assert "; ".join(row.locator("li.neg").all_inner_texts()) == deal["-"]
            # Chinese names render as text, not as escapes or mojibake.
            first = rows.first
            assert re.fullmatch(r"[\u4e00-\u9fff]{2}", first.locator("td.owner").inner_text())
            assert (
                first.locator("td.account")
                .inner_text()
                .startswith(expected[0]["account"].rstrip("…"))
            )
            # Each deal id links to its timeline page.
            link = first.locator("td.deal a")
            assert link.get_attribute("href") == f"/deal/{quote(expected[0]['deal'])}?lang=en"

            # Paging: the next page has the next deals of the ranking.
            size = page_config(page.content())["size"]
            assert rows.count() == min(size, len(listed))
            assert len(listed) > size, "the fixture must need more than one page"
            page.click("#page-next")
            wait_rows(page, f"rows[0].dataset.deal === {json.dumps(listed['deal_id'].iloc[size])}")
            assert page.locator("#leads").get_attribute("data-page") == "2"
            page.click("#page-prev")
            wait_rows(page, f"rows[0].dataset.deal === {json.dumps(expected[0]['deal'])}")

            # Filter by the first deal's owner: the server narrows the list.
            owner = expected[0]["owner"]
            page.select_option("#filter-owner", owner)
            wait_rows(page, f"rows.every(r => r.dataset.owner === {json.dumps(owner)})")
            mine = int((listed["owner_id"] == owner).sum())
            assert f"{mine:,} of {len(listed):,}" in page.inner_text("#shown-count")
            assert rows.count() == min(mine, size)
            page.select_option("#filter-owner", "")
            page.select_option("#filter-status", "dormant")
            wait_rows(page, "rows.every(r => r.dataset.group === 'dormant')")
            dormant = int((listed["priority_group"] == "dormant").sum())
            assert rows.locator("td.group").all_inner_texts() == ["dormant"] * min(dormant, size)
            page.select_option("#filter-status", "")
            wait_rows(page, f"rows.length === {min(size, len(listed))}")

            # Sort by win probability, highest first, over the whole list (server side).
            page.click("#leads thead th:has-text('Win')")
            top_p = json.dumps(float(listed["probability"].max()))
            wait_rows(page, f"Math.abs(parseFloat(rows[0].cells[5].dataset.v) - {top_p}) < 1e-9")
            probabilities = [
                float(v)
                for v in page.locator("#leads tbody tr td.win").evaluate_all(
                    "cells => cells.map(c => c.dataset.v)"
                )
            ]
            assert probabilities == sorted(probabilities, reverse=True)
            assert probabilities == sorted(listed["probability"], reverse=True)[:size]

            # The sections above the list: the eight funnel metrics, by owner on demand;
            # the forecast chart; the CRM charts, each drawn once it scrolls into view.
            page.wait_for_selector("#section-forecast", timeout=180_000)
            drawn(page, "#chart-forecast")
            funnel = page.locator("#section-funnel-metrics")
            headers = funnel.locator("div:not([hidden]) table.funnel-metrics th").all_inner_texts()
            assert headers[1:] == [
                "Lead → opportunity",
                "Opportunity → qualified",
                "Lead → qualified",
                "Qualified win rate",
                "Sales cycle (days)",
                "Qualified opportunities per win",
                "Average won deal",
                "Open pipeline",
            ]
            page.select_option("#funnel-cut", "owner_id")
            by_owner = funnel.locator("div[data-choice='owner_id'] tbody tr td:first-child")
            assert by_owner.first.is_visible()
            names = set(by_owner.all_inner_texts()) - {"Overall"}
            assert names and names <= set(listed["owner_id"]) | set(
                chinese_crm()["deals"]["owner_id"]
            )
            assert page.locator("#forecast-backtest").inner_text().startswith("Backtest")
            for chart in page.locator(".plotly-graph-div").all():
                drawn(page, chart)
            assert page.locator(".plotly-graph-div .main-svg").count() >= 5
            # The A/B section says whether the groups' leads were comparable at creation,
            # scored by the champion.
            page.wait_for_selector("#ab-lead-quality", timeout=180_000)
            verdict = page.get_attribute("#ab-lead-quality", "data-verdict")
            assert verdict in ("differs", "comparable", "unknown"), verdict
            assert "lead_scorer version 1" in page.inner_text("#ab-lead-quality")
            panel = page.inner_text("#model-panel")
            assert "Strongest features" in panel and "Per deal, scored" in panel
            assert requested and all(url.startswith(served) for url in requested), requested
            page.screenshot(path=str(tmp_path / "leads.png"), full_page=True)

            # The Chinese page: headings, the list's words and the flags in Chinese.
            page.goto(served + "?lang=zh", wait_until="load")
            assert page.inner_text("h1") == "商机优先级"
            assert page.inner_text("#list-heading") == "待跟进商机"
            flags = page.locator("#leads .flag").all_inner_texts()
            assert flags and all(re.search(r"[\u4e00-\u9fff]", f) for f in flags)
            assert rows.first.locator("td.group").inner_text() in ("活跃", "休眠", "近期丢单")
            page.wait_for_selector("#section-forecast", timeout=180_000)
            # A fresh page at the top: the charts far below are not drawn until seen.
            assert page.locator("#chart-cycle .main-svg").count() == 0
            drawn(page, "#chart-forecast")
            assert page.inner_text("#section-funnel-metrics h2") == "漏斗指标"
            assert page.inner_text("#section-forecast h2") == "按月预测"
            assert "线索 → 商机" in page.inner_text("#section-funnel-metrics")
            # The model panel in Chinese: every label, the same figures.
            assert page.inner_text("#model-panel h2") == "评分所用的模型"
            panel = page.inner_text("#model-panel")
            for words in (
                "版本 1，训练于 2025年5月1日 10:00 UTC",
                "200 个测试商机（80 个赢单，120 个丢单），按时间切分",
                "按商机，评分时点",
                "对数损失",
                "最重要的特征",
                "创建时，模型不优于逻辑回归：ROC AUC +0.012 [−0.020, +0.044]",
                "基于 200 个测试商机（第 30 天评分）的校准",
            ):
                assert words in panel, words
            english = re.findall(r"Per deal|Strongest|Compared with|test deals|Version", panel)
            assert not english, english
            # The A/B section's lead-quality check in Chinese.
            page.wait_for_selector("#ab-lead-quality", timeout=180_000)
            assert page.inner_text("#ab-lead-quality h3") == "创建时的线索质量"
            assert "lead_scorer 版本 1" in page.inner_text("#ab-lead-quality")
            # Every chart drawn, nothing English on the page as the browser renders it,
            # the charts' axes and bars included (tests/code/test_page_chinese.py has why
            # each allowed word is).
            for chart in page.locator("[data-figure]").all():
                if chart.is_visible():
                    drawn(page, chart)
            allowed = set(ALLOWED) | data_words(chinese_crm())
            shown = page.inner_text("body")
            assert not english_in([shown], allowed), english_in([shown], allowed)
            assert not ISO_DAY.search(shown), ISO_DAY.findall(shown)
            page.screenshot(path=str(tmp_path / "leads-zh.png"), full_page=True)

            # The first deal's timeline (issue 13), in Chinese, renders its events.
            page.goto(f"{served}deal/{quote(expected[0]['deal'])}?lang=zh", wait_until="load")
            assert "时间线" in page.inner_text("h1")
            assert page.locator("tbody tr.score").count() >= 1
            assert page.locator("tbody tr.created").count() == 1
        finally:
            browser.close()
    assert (tmp_path / "leads.png").stat().st_size > 10_000
