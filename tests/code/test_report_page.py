"""The managers' page (``leadscore report`` and ``/leads``) says the moment the list is ranked
as of, and, in English and Chinese, when that moment is the export's last recorded event; and
shows the panel of the model that ranked the list, from the quality summary stored in it."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pandas as pd
import pytest
from starlette.testclient import TestClient

from leadscore.config import Settings
from leadscore.crm.ingest import last_recorded_event
from leadscore.crm.synth import generate_crm
from leadscore.model.scoring_model import NO_QUALITY, ScoringModel
from leadscore.priority.rank import run_rank
from leadscore.priority.report import build_page
from serving.leads_page import create_app
from tests.crm_fixture import day, tiny_crm
from tests.serving_fixture import register_champion, synthetic_tables, train_small_model
from training.data import in_memory_frame
from training.result import TrainConfig, TrainingResult
from training.train import fit_and_evaluate, log_training_run

ENGLISH = (
    "Ranked as of {when}, the export's last recorded event, not today: the CRM export ends "
    "there, so days since the last activity and dormancy are counted up to that moment."
)
CHINESE = (
    "排名时点为 {when}，即导出数据中最后记录的事件时间，而不是今天：CRM 导出数据截止于此，"
    "距上次跟进的天数和休眠状态都计算到这一时刻。"
)


def page_config(page: str) -> dict:
    """The JSON the page's script reads: its words, its rows (static) or first page (served)."""
    found = re.search(
        r'<script type="application/json" id="page-config">(.*?)</script>', page, re.S
    )
    assert found is not None
    return json.loads(found.group(1))


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
    when_zh = f"{last.year}年{last.month}月{last.day}日 {last:%H:%M} UTC"
    raw = build_page(tmp_path, stored.crm_dir)
    page = visible(raw)
    assert f"deals as of {when} with model version 1" in page
    assert ENGLISH.format(when=when) in page and CHINESE.format(when=when_zh) not in page
    raw_zh = build_page(tmp_path, stored.crm_dir, lang="zh")
    assert CHINESE.format(when=when_zh) in visible(raw_zh)
    assert ENGLISH.format(when=when) not in visible(raw_zh)
    # Each row's next step in the page's language.
    from leadscore.priority.report import read_ranked

    first = read_ranked(tmp_path).iloc[0]
    assert page_config(raw)["rows"][0]["next_step"] == first["next_step"]
    assert page_config(raw_zh)["rows"][0]["next_step"] == first["next_step_zh"]
    client = TestClient(create_app(stored, source=tmp_path))
    served = client.get("/")
    assert served.status_code == 200
    assert ENGLISH.format(when=when) in visible(served.text)
    # Chinese by the browser's language, or by ?lang= over it.
    chinese = client.get("/", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"})
    assert CHINESE.format(when=when_zh) in visible(chinese.text)
    assert '<html lang="zh-Hans">' in chinese.text
    asked = client.get("/?lang=en", headers={"Accept-Language": "zh-CN"})
    assert ENGLISH.format(when=when) in visible(asked.text)


def test_a_list_ranked_at_another_moment_shows_that_moment_and_no_such_sentence(
    stored: Settings, model: ScoringModel, tmp_path: Path
) -> None:
    as_of = day(70)
    assert as_of != last_recorded_event(stored.crm_dir)
    run_rank(stored, model, "1", tmp_path, as_of=as_of)
    page = visible(build_page(tmp_path, stored.crm_dir))
    assert f"deals as of {as_of:%Y-%m-%d %H:%M} UTC with model version 1" in page
    assert "last recorded event" not in page
    assert "最后记录" not in visible(build_page(tmp_path, stored.crm_dir, lang="zh"))


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
    assert "last recorded event" not in page
    assert "最后记录" not in visible(client.get("/?lang=zh").text)


# ---------------------------------------------------------------- the model panel
@pytest.fixture(scope="module")
def trained() -> TrainingResult:
    """A model trained by production's fit_and_evaluate, so it carries a quality summary."""
    crm = generate_crm(1500, seed=5, as_of=pd.Timestamp("2025-06-30", tz="UTC"))
    return fit_and_evaluate(in_memory_frame(crm.tables), "lead_scoring_v1", TrainConfig(seed=3))


def interval(e: dict[str, float]) -> str:
    return f"{e['value']:.3f} [{e['low']:.3f}, {e['high']:.3f}]"


def test_the_panel_shows_the_quality_stored_in_the_model_that_ranked_the_list(
    stored: Settings, trained: TrainingResult, tmp_path: Path
) -> None:
    version = log_training_run(stored, trained)["model_version"]
    q = trained.model.info["quality"]  # as registered: trained_at stamped then
    assert q["trained_at"]
    run_rank(stored, trained.model, version, tmp_path)
    raw = build_page(tmp_path, stored.crm_dir, settings=stored)
    page = visible(raw)
    assert "The model behind these scores" in page
    zh = visible(build_page(tmp_path, stored.crm_dir, settings=stored, lang="zh"))
    assert "评分所用的模型" in zh
    window = f"{q['window']['first_snapshot'][:10]} to {q['window']['last_close'][:10]}"
    trained_at = f"{pd.Timestamp(q['trained_at']):%Y-%m-%d %H:%M} UTC"
    assert f"Version {version}, trained {trained_at} on deals from {window}" in page
    won, lost = q["test_deals"]["won"], q["test_deals"]["lost"]
    assert f"{won + lost:,} test deals ({won:,} won, {lost:,} lost), time split" in page
    for block in ("at_creation", "at_age"):
        b = q["per_deal"][block]
        row = (
            f"{b['label']} {b['deals']:,} {interval(b['roc_auc'])} {interval(b['log_loss'])} "
            f"{interval(b['ece'])} {b['lift_at_10']:.2f}×"
        )
        assert row in page
        for name in ("logistic_regression", "channel_rate"):
            assert q["baselines"][name][block]["sentence"] in page
    assert f"Calibration {q['calibration']['reason']}." in page
    curve = q["calibration"]["curve"]
    assert f"Calibration on {sum(curve['n']):,} test deals scored at 30 days" in page
    for f in q["top_features"]:
        assert f"{f['feature']} {f['description']} {f['gain_share']:.0%}" in page
    # The calibration curve: one dot per bin, drawn inline, nothing fetched from outside.
    svg = re.search(r"<svg class=\"calibration\".*?</svg>", raw, re.DOTALL)
    assert svg is not None
    assert svg.group(0).count("<circle") == len(q["calibration"]["curve"]["n"])
    # plotly.js, inline, names namespaces in its code; the markup itself references nothing.
    markup = re.sub(r"<script\b.*?</script>", " ", raw, flags=re.DOTALL)
    assert not re.findall(r"(?:https?:)?//[\w.-]+", markup)
    # On this CRM the model does not beat logistic regression: it fails the baseline gate,
    # and a list ranked with it says so first, in English and Chinese, with the figures.
    gate = q["gate"]
    assert not gate["passed"]
    failed = {c["baseline"] for c in gate["checks"] if not c["passed"]}
    assert "logistic_regression" in failed
    header = page.split("The model behind")[0]
    assert (
        "Model not better than baseline: it does not beat logistic regression on the same "
        in header
    )
    assert gate["sentence"] in header
    assert "模型并不优于基线：未能在置信区间之外胜过逻辑回归" in zh.split("评分所用的模型")[0]
    # The Chinese panel: every label in Chinese, the same figures.
    panel_zh = zh.split("评分所用的模型")[-1]
    day = pd.Timestamp  # the Chinese panel writes its dates as Chinese readers do
    at = day(q["trained_at"])
    window_zh = " 至 ".join(
        f"{d.year}年{d.month}月{d.day}日"
        for d in (day(q["window"]["first_snapshot"]), day(q["window"]["last_close"]))
    )
    trained_zh = f"{at.year}年{at.month}月{at.day}日 {at:%H:%M} UTC"
    assert f"版本 {version}，训练于 {trained_zh}，训练数据为 {window_zh}" in panel_zh
    # The calibration from the figures training stored with it, in Chinese.
    assert "校准方法：" in panel_zh and "样本外对数损失" in panel_zh
    assert f"{won + lost:,} 个测试商机（{won:,} 个赢单，{lost:,} 个丢单），按时间切分" in panel_zh
    for label in ("按商机，评分时点", "对数损失", "前 10% 提升度", "与基线比较", "最重要的特征"):
        assert label in panel_zh, label
    assert f"创建时 {q['per_deal']['at_creation']['deals']:,} " in panel_zh
    verdicts = {"better": "优于", "not better": "不优于", "worse": "差于"}
    for block, when in (("at_creation", "创建时"), ("at_age", "第 30 天")):
        entry = q["baselines"]["logistic_regression"][block]
        figure = entry["sentence"].split(": ", 1)[1]
        assert f"{when}，模型{verdicts[entry['verdict']]}逻辑回归：{figure}" in panel_zh
    assert f"基于 {sum(curve['n']):,} 个测试商机（第 30 天评分）的校准" in panel_zh
    english = re.findall(
        r"Per deal|Strongest|Compared with|test deals|trained |Calibration ", panel_zh
    )
    assert not english, english
    # The served page has the same panel.
    served = visible(TestClient(create_app(stored, source=tmp_path)).get("/").text)
    assert interval(q["per_deal"]["at_creation"]["roc_auc"]) in served


def test_a_model_trained_before_the_summary_still_ranks_and_says_so(
    stored: Settings, model: ScoringModel, tmp_path: Path
) -> None:
    assert "quality" not in model.info
    version = register_champion(model, in_memory_frame(synthetic_tables()), stored)
    run_rank(stored, model, version, tmp_path)
    page = visible(build_page(tmp_path, stored.crm_dir, settings=stored))
    assert f"Model version {version}: {NO_QUALITY}." in page
    assert "not better than logistic regression" not in page.lower()
    # A version the registry does not hold: the list is shown, with the reason.
    run_rank(stored, model, "99", tmp_path)
    page = visible(build_page(tmp_path, stored.crm_dir, settings=stored))
    assert "Model version 99: not readable from the model registry" in page
    zh = visible(build_page(tmp_path, stored.crm_dir, settings=stored, lang="zh"))
    assert "模型版本 99：无法从模型注册表读取（" in zh


# ---------------------------------------------------------------- drift
def test_a_drift_alert_is_at_the_top_of_the_page_in_both_languages(
    stored: Settings, model: ScoringModel, tmp_path: Path
) -> None:
    """Issue 16: an alert of the last `leadscore monitor` run is a banner on the page (its
    text from the CRM escaped); a clean run, or none, shows nothing."""
    from leadscore.model.drift import write_latest

    run_rank(stored, model, "1", tmp_path)
    assert 'id="drift-warning"' not in build_page(tmp_path, stored.crm_dir, settings=stored)
    report = {
        "alerted": True,
        "alerts": ["channel: new value '<b>tiktok</b>' on 33% of deals"],
        "as_of": "2025-06-30T00:00:00+00:00",
        "model_version": "1",
    }
    write_latest(report, stored.monitor_dir)
    page = build_page(tmp_path, stored.crm_dir, settings=stored)
    assert 'id="drift-warning"' in page and "&lt;b&gt;tiktok&lt;/b&gt;" in page
    text = visible(page)
    assert (
        "The newest deals no longer look like the ones model version 1 learnt from "
        "(leadscore monitor, 2025-06-30)" in text
    )
    zh = visible(build_page(tmp_path, stored.crm_dir, settings=stored, lang="zh"))
    assert "最新商机已不同于模型版本 1 训练时的商机" in zh
    served = TestClient(create_app(stored, source=tmp_path)).get("/")
    assert 'id="drift-warning"' in served.text
    write_latest({**report, "alerted": False, "alerts": []}, stored.monitor_dir)
    assert 'id="drift-warning"' not in build_page(tmp_path, stored.crm_dir, settings=stored)


# ---------------------------------------------------------------- the served list and sections
def test_the_served_page_ships_one_page_and_the_api_pages_filters_and_explains(
    stored: Settings, model: ScoringModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 13: the HTML carries the first page of the list only; the rest, the sections
    and the A/B table come from the service's API, in the page's language."""
    from leadscore.priority.report import read_ranked

    run_rank(stored, model, "1", tmp_path)
    listed = read_ranked(tmp_path)
    client = TestClient(create_app(stored, source=tmp_path))
    page = client.get("/")
    config = page_config(page.text)
    assert config["api"] == "/api" and "rows" not in config
    assert [r["deal_id"] for r in config["first"]["rows"]] == list(listed["deal_id"])
    # plotly.js is its own, cacheable script, not inline (it alone is megabytes), which the
    # page's script fetches only when a chart comes into view.
    assert config["plotly"] == "/api/plotly.js" and "plotly.js" not in page.text.split("<body")[0]
    assert len(page.content) < 100_000
    script = client.get("/api/plotly.js")
    assert script.status_code == 200 and "Plotly" in script.text[:2000]
    assert "max-age" in script.headers["cache-control"]

    one = client.get("/api/leads", params={"size": 1, "page": 2}).json()
    assert (one["total"], one["pages"], one["page"]) == (len(listed), len(listed), 2)
    assert [r["deal_id"] for r in one["rows"]] == [listed["deal_id"].iloc[1]]
    owner = listed["owner_id"].iloc[0]
    mine = client.get("/api/leads", params={"owner": owner}).json()
    assert mine["matched"] == int((listed["owner_id"] == owner).sum())
    assert {r["owner_id"] for r in mine["rows"]} == {owner}
    zh = client.get("/api/leads", params={"lang": "zh"}).json()
    assert zh["rows"][0]["next_step"] == listed["next_step_zh"].iloc[0]
    bad = client.get("/api/leads", params={"status": "won"})
    assert bad.status_code == 400 and "status='won'" in bad.json()["error"]

    sections = client.get("/api/sections", params={"lang": "zh"})
    assert sections.status_code == 200
    text = visible(sections.text)
    for heading in ("漏斗指标", "月度趋势", "按月预测", "A/B 对比"):
        assert heading in text
    # The tiny CRM has no past wins to learn a time to close from: the section says so.
    assert 'id="section-forecast"' in sections.text and 'id="chart-forecast"' not in sections.text
    assert "没有可供学习的成交时间" in text and "no time to close" not in text
    assert 'id="chart-cycle"' in sections.text and "data-figure" in sections.text
    english = visible(client.get("/api/sections").text)
    assert "Funnel metrics" in english and "Lead → opportunity" in english
    assert "Days in each stage" in english and "Where lost deals leave the funnel" in english
    assert "各阶段停留天数" in text and "输单流失阶段" in text
    ab = client.get("/api/compare", params={"by": "channel"})
    assert ab.status_code == 200 and 'data-by="channel"' in ab.text
    # No champion in this registry: the lead-quality check says why it was not made.
    assert 'data-verdict="skipped"' in ab.text and "not checked" in ab.text
    # The sections leave the comparison to the script (it scores deals at creation).
    assert 'id="ab-result" aria-busy="true"' in sections.text
    # With a champion, the page scores the compared deals at creation once and checks them.
    import serving.leads_page
    from leadscore.priority.at_creation import AtCreation

    asked: list[int] = []

    def scored(settings: Settings, tables: dict, ids: list[str]) -> AtCreation:
        asked.append(len(ids))
        model = {"name": "lead_scorer", "version": "3", "gate": "not_better"}
        return AtCreation(pd.Series(0.3, index=list(ids)), model)

    monkeypatch.setattr(serving.leads_page, "champion_at_creation", scored)
    client = TestClient(create_app(stored, source=tmp_path))
    for lang, label in (
        ("en", "lead_scorer version 3, not better than baseline"),
        ("zh", "lead_scorer 版本 3，该模型并不优于基线"),
    ):
        checked = client.get("/api/compare", params={"by": "channel", "lang": lang}).text
        assert label in checked and 'data-verdict="skipped"' not in checked
    assert len(asked) == 1 and asked[0] > 0
    missing = client.get("/api/compare", params={"by": "no_such_column"})
    assert missing.status_code == 400 and "cannot cut by no_such_column" in missing.text


# ---------------------------------------------------------------- stage durations and exits
def body_rows(page: str, table: str) -> list[list[str]]:
    """The body rows of the page's table of class ``table``: each cell's text as shown."""
    body = page.split(f'<table class="{table}">')[1].split("</table>")[0].split("<tbody>")[1]
    return [
        [visible(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)
    ]


def test_the_funnel_section_shows_stage_durations_and_where_lost_deals_leave() -> None:
    """Issue 13: below the eight metrics, each open stage's median days (and middle half)
    of the won and of the lost deals, and where the lost ones left the funnel, with the
    numbers ``leadscore funnel`` gives over the page's window."""
    from leadscore.insights import deal_facts, lost_exits, stage_durations
    from leadscore.insights.overview import managers_overview, window
    from leadscore.priority.report import render_sections

    as_of = pd.Timestamp("2025-06-30", tz="UTC")
    tables = generate_crm(800, seed=11, as_of=as_of).tables
    facts = deal_facts(tables)
    page = render_sections(None, managers_overview(facts, as_of), "en", static=True)
    assert page.index('class="funnel-metrics"') < page.index('class="stage-days"')
    assert page.index('class="stage-days"') < page.index('class="lost-exits"')
    assert page.index('class="lost-exits"') < page.index('id="section-trends"')
    text = visible(page)
    assert "Days in each stage" in text and "Where lost deals leave the funnel" in text

    durations = stage_durations(facts, *window(as_of)).set_index(["stage", "outcome"])
    days = body_rows(page, "stage-days")
    stages = list(dict.fromkeys(durations.index.get_level_values("stage")))
    assert [r[0] for r in days] == stages
    for row in days:
        for k, outcome in enumerate(("won", "lost")):
            d = durations.loc[(row[0], outcome)]
            deals, shown = int(d["deals"]), row[1 + 2 * k : 3 + 2 * k]
            median = f"{d['median_days']:,.1f} ({d['p25_days']:,.1f}–{d['p75_days']:,.1f})"
            assert shown == [median if deals else "–", f"{deals:,}"], (row[0], outcome)
    assert durations["deals"].sum() > 0 and (durations["deals"] == 0).sum() < len(durations)

    exits = lost_exits(facts, *window(as_of))
    assert body_rows(page, "lost-exits") == [
        [s, f"{n:,.0f}", f"{share:.1%}"]
        for s, n, share in zip(exits["stage"], exits["lost"], exits["share"], strict=True)
    ]
    assert exits["lost"].sum() > 0
