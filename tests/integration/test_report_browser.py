"""The managers' commands for real: `leadscore rank` with the registered champion, `top`, `report`,
and the served page driven in headless Chromium.

The CRM is synthetic with every owner and account renamed in Chinese, so the page and
the terminal table are checked with wide characters. The browser is Debian's Chromium
(never a downloaded one); without it the browser test skips, and fails in CI.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import uvicorn
from typer.testing import CliRunner

from leadscore.config import Settings
from leadscore.priority.rank import load_history, rankings_dir, read_ranked
from pipelines.cli import app as cli
from serving.leads_page import create_app
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


def test_report_command_writes_the_page_the_service_serves(
    ranked: Settings, served: str, tmp_path: Path
):
    import httpx

    out = tmp_path / "report.html"
    result = CliRunner().invoke(cli, ["report", "--out", str(out)], env=env(ranked))
    assert result.exit_code == 0, result.output
    response = httpx.get(served, timeout=60)
    assert (
        response.status_code == 200
        and response.headers["content-type"] == "text/html; charset=utf-8"
    )
    assert response.text == out.read_text(encoding="utf-8")


def test_the_served_page_in_chromium_matches_top_sorts_filters_and_shows_chinese(
    ranked: Settings, served: str, tmp_path: Path
):
    require_chromium()
    from playwright.sync_api import sync_playwright

    top = CliRunner().invoke(cli, ["top", "--n", "8"], env=env(ranked))
    assert top.exit_code == 0, top.output
    expected = parse_top(top.stdout)
    assert len(expected) == 8

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
            assert first.locator("td.owner").is_visible()

            # Filter by the first deal's owner.
            owner = expected[0]["owner"]
            page.select_option("#filter-owner", owner)
            visible = page.locator("#leads tbody tr:visible")
            owners = visible.locator("td.owner").all_inner_texts()
            listed = read_ranked(rankings_dir(ranked))
            assert owners == [owner] * int((listed["owner_id"] == owner).sum())
            assert page.inner_text("#shown-count") == str(len(owners))
            page.select_option("#filter-owner", "")
            page.select_option("#filter-group", "dormant")
            dormant = int((listed["priority_group"] == "dormant").sum())
            assert visible.locator("td.group").all_inner_texts() == ["dormant"] * dormant
            page.select_option("#filter-group", "")

            # Sort by win probability, highest first.
            page.click("#leads thead th:has-text('Win')")
            probabilities = [
                float(v)
                for v in page.locator("#leads tbody tr td.win").evaluate_all(
                    "cells => cells.map(c => c.dataset.v)"
                )
            ]
            assert len(probabilities) == len(listed)
            assert probabilities == sorted(probabilities, reverse=True)
            assert probabilities[0] == pytest.approx(listed["probability"].max())

            # The five charts drew, and nothing was fetched from anywhere but the page's server.
            page.wait_for_selector("#chart-cycle .main-svg")
            assert page.locator(".plotly-graph-div .main-svg").count() >= 5
            assert requested and all(url.startswith(served) for url in requested), requested

            page.click("#leads thead th:has-text('#')")  # back to rank order for the picture
            page.screenshot(path=str(tmp_path / "leads.png"))
            page.locator("#section-funnel").scroll_into_view_if_needed()
            page.locator(".charts").screenshot(path=str(tmp_path / "charts.png"))
        finally:
            browser.close()
    assert (tmp_path / "leads.png").stat().st_size > 10_000
