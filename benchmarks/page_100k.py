"""Benchmark the managers' page on a ranking of about 100,000 deals: size and first view.

The ranking is :mod:`rank_100k`'s (a 300,000-deal synthetic CRM, about 100,000 deals to
rank, the same quick model and moment), generated once and kept under
``$TMPDIR/leadscore-bench/page_100k/<deals>-<seed>`` (``--cache``), since generating
and ranking it takes many minutes and the page is what is measured. Measured, medians
of ``--runs`` runs each:

* the page's size in bytes (the HTML alone, and with the first JSON page and plotly.js,
  which the service sends as a separate, cacheable script);
* the server's time: the first (cold) rendering of the page (insights computed from the
  stored CRM), then the HTML when cached, and the first JSON page of the list;
* the first view in headless Chromium (Debian's, driven as the browser test drives it):
  from navigation to the first page of rows drawn, the page's own sections included.

Usage:

    uv run python benchmarks/page_100k.py [--deals 300000] [--runs 5] [--prepare-only]
    uv run python benchmarks/page_100k.py --tile 5000   # 100,000 rows from a small ranking
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import uvicorn
from rank_100k import AS_OF, quick_model

from leadscore.config import Settings, load_settings
from leadscore.crm.synth import generate_crm
from leadscore.priority.rank import RANKED_FILE, rankings_dir, read_ranked, run_rank
from serving.leads_page import LeadsPage, create_app


def cached_ranking(cache: Path, deals: int, seed: int, train_deals: int) -> Settings:
    """Settings whose stored CRM and ranked list are the 100k ranking, made once in ``cache``."""
    settings = load_settings(feature_repo=cache / "features")
    if (rankings_dir(settings) / f"{RANKED_FILE}.parquet").is_file():
        return settings
    start = time.perf_counter()
    model = quick_model(train_deals, seed + 1)
    crm = generate_crm(deals, seed=seed, as_of=AS_OF)
    settings.crm_dir.mkdir(parents=True, exist_ok=True)
    for name, table in crm.tables.items():
        table.to_parquet(settings.crm_dir / f"{name}.parquet")
    del crm
    run_rank(settings, model, "bench", rankings_dir(settings), as_of=AS_OF)
    print(f"prepared the ranking in {cache} in {time.perf_counter() - start:.0f}s")
    return settings


def tiled_ranking(cache: Path, rows: int, deals: int, seed: int) -> Settings:
    """A ranked list of ``rows`` made by repeating a real ranking of a ``deals``-deal CRM.

    For a machine where ranking 300,000 deals takes too long: the list's rows are real
    rows of ``run_rank`` (reasons, flags, next steps, trends), repeated with new deal ids
    (``D1#2``), ranks and a jitter on the probability so sorting has work to do; the
    CRM behind the sections is the small one. The list's size and shape is what the
    page's size and first view depend on; the sections' cost follows the CRM instead.
    """
    settings = load_settings(feature_repo=cache / "features")
    path = rankings_dir(settings) / f"{RANKED_FILE}.parquet"
    if path.is_file() and len(pd.read_parquet(path, columns=["rank"])) == rows:
        return settings
    if not path.is_file():
        model = quick_model(deals, seed + 1)
        crm = generate_crm(deals, seed=seed, as_of=AS_OF)
        settings.crm_dir.mkdir(parents=True, exist_ok=True)
        for name, table in crm.tables.items():
            table.to_parquet(settings.crm_dir / f"{name}.parquet")
        run_rank(settings, model, "bench", rankings_dir(settings), as_of=AS_OF)
    small = read_ranked(rankings_dir(settings))
    copies = -(-rows // len(small))
    big = pd.concat([small] * copies, ignore_index=True).head(rows)
    copy = np.repeat(np.arange(copies), len(small))[:rows]
    big["deal_id"] = big["deal_id"].astype(str) + np.where(copy > 0, "#" + copy.astype(str), "")
    rng = np.random.default_rng(seed)
    big["probability"] = np.clip(big["probability"] * rng.uniform(0.9, 1.1, rows), 0, 1)
    big["expected_value"] = big["probability"] * big["amount"]
    big = big.sort_values("expected_value", ascending=False, na_position="last", kind="stable")
    big["rank"] = np.arange(1, rows + 1)
    big.to_parquet(path)
    return settings


def median_of(runs: int, fn: Callable[[], Any]) -> float:
    """Median wall seconds of ``runs`` calls of ``fn``."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def serve(settings: Settings) -> tuple[str, Any]:
    """The page app under uvicorn on a free port, in a thread (as the browser test does)."""
    from tests.conftest import free_port

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}/", server


#: Installed before the page's own scripts: the moments (ms since navigation start, the
#: page's own clock) the first row is in the document, the frame that paints it begins,
#: and the first chart is drawn.
_MARKS = """
new MutationObserver(function (changes, observer) {
  var rows = document.querySelector("#leads tbody tr td.owner");
  var chart = document.querySelector(".main-svg");
  if (rows && !window.__rowsAt) {
    window.__rowsAt = performance.now();
    requestAnimationFrame(function () { window.__paintedAt = performance.now(); });
  }
  if (chart && !window.__chartAt) { window.__chartAt = performance.now(); }
  if (window.__rowsAt && window.__chartAt) { observer.disconnect(); }
}).observe(document, { childList: true, subtree: true });
"""


def first_view(url: str, runs: int) -> dict[str, float]:
    """Medians, in a fresh browser context each run (nothing cached): navigation to the
    first rows drawn (seen by the driver; and by the page's own clock: in the document,
    and the frame that paints them), to the load event, and to the first chart drawn
    (plotly.js in and one figure plotted)."""
    from playwright.sync_api import sync_playwright

    from tests.integration.test_report_browser import CHROMIUM, CHROMIUM_ARGS

    rows, in_page, painted, loaded, chart = [], [], [], [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            for _ in range(runs):
                context = browser.new_context(viewport={"width": 1600, "height": 1000})
                context.add_init_script(_MARKS)
                page = context.new_page()
                start = time.perf_counter()
                page.goto(url, wait_until="commit")
                page.wait_for_selector("#leads tbody tr td.owner", timeout=60_000)
                rows.append(time.perf_counter() - start)
                page.wait_for_load_state("load")
                loaded.append(time.perf_counter() - start)
                page.wait_for_function("() => window.__chartAt", timeout=120_000)
                in_page.append(page.evaluate("window.__rowsAt") / 1000)
                painted.append(page.evaluate("window.__paintedAt") / 1000)
                chart.append(page.evaluate("window.__chartAt") / 1000)
                context.close()
        finally:
            browser.close()
    return {
        "rows_drawn_s": statistics.median(rows),
        "rows_in_page_s": statistics.median(in_page),
        "rows_painted_s": statistics.median(painted),
        "load_event_s": statistics.median(loaded),
        "first_chart_s": statistics.median(chart),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deals", type=int, default=300_000, help="Deals in the synthetic CRM.")
    ap.add_argument("--train-deals", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument(
        "--cache",
        type=Path,
        default=Path(os.environ.get("TMPDIR", tempfile.gettempdir())) / "leadscore-bench",
    )
    ap.add_argument("--prepare-only", action="store_true")
    ap.add_argument(
        "--tile",
        type=int,
        default=0,
        help="Instead: repeat a real ranking of a CRM of this many deals to 100,000 rows "
        "(tiled_ranking; the sections then come from the small CRM).",
    )
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if a.tile:
        cache = a.cache / "page_100k" / f"tiled-{a.tile}-{a.seed}"
        settings = tiled_ranking(cache, 100_000, a.tile, a.seed)
    else:
        cache = a.cache / "page_100k" / f"{a.deals}-{a.seed}"
        settings = cached_ranking(cache, a.deals, a.seed, a.train_deals)
    if a.prepare_only:
        return
    ranked = read_ranked(rankings_dir(settings))
    out: dict[str, Any] = {"ranked_deals": len(ranked), "runs": a.runs}

    # Cold: a new reading of the ranked list and the CRM, then the insights.
    page = LeadsPage(rankings_dir(settings), settings.crm_dir, settings=settings)
    start = time.perf_counter()
    page.html("en", "/api")
    out["cold_html_s"] = time.perf_counter() - start
    start = time.perf_counter()
    page.sections("en")
    out["cold_sections_s"] = time.perf_counter() - start

    url, server = serve(settings)
    try:
        with httpx.Client(timeout=600) as client:
            client.get(url).raise_for_status()  # the app's own first reading
            client.get(url + "api/sections").raise_for_status()
            # The A/B comparison the page asks for next (with its lead-quality check).
            client.get(url + "api/compare?by=channel").raise_for_status()
            html = client.get(url).content
            first = client.get(url + "api/leads?page=1&size=50").content
            out["html_bytes"] = len(html)
            out["first_json_bytes"] = len(first)
            out["plotly_js_bytes"] = len(client.get(url + "api/plotly.js").content)
            out["sections_bytes"] = len(client.get(url + "api/sections").content)
            out["server_html_s"] = median_of(a.runs, lambda: client.get(url).raise_for_status())
            out["server_first_json_s"] = median_of(
                a.runs, lambda: client.get(url + "api/leads?page=1&size=50").raise_for_status()
            )
            out["server_filtered_json_s"] = median_of(
                a.runs,
                lambda: client.get(
                    url + "api/leads?page=3&size=50&status=open&grade=A&sort=probability&desc=1"
                ).raise_for_status(),
            )
        out.update(first_view(url, a.runs))
    finally:
        server.should_exit = True
    if a.json:
        print(json.dumps(out, indent=2))
        return
    print(f"{out['ranked_deals']:,} ranked deals; medians of {a.runs} runs")
    for key, value in out.items():
        if key.endswith("_bytes"):
            print(f"{key:24s} {value:>12,} bytes ({value / 1024**2:.2f} MiB)")
        elif key.endswith("_s"):
            print(f"{key:24s} {value:>12.3f} s")


if __name__ == "__main__":
    main()
