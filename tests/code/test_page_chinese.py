"""The Chinese managers' page has no English on it (issue 13).

The page is rendered whole, static and served, on the tiny CRM of the page tests with a
model that carries a quality summary, and so is a deal's timeline. What a reader sees is
taken from it: the text of the HTML (no attributes, scripts or styles), the words of its
charts (labels, bar texts, hover texts), and the rows its script draws (the visible
fields :func:`leadscore.priority.listing.page_row` gives). Every run of Latin letters in
it must be on :data:`ALLOWED` or be a value of the CRM shown as the CRM holds it (ids,
names of companies and products, contacts' job titles). Dates must be in the Chinese
format, and amounts from 10,000 up in 万.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from starlette.testclient import TestClient

from leadscore.config import Settings
from leadscore.insights import compared_deals, deal_facts
from leadscore.insights.overview import managers_overview, window
from leadscore.priority.at_creation import AtCreation, model_facts, probabilities_at_creation
from leadscore.priority.i18n import TEXT, ZH, reason_text
from leadscore.priority.rank import read_ranked, run_rank
from leadscore.priority.report import build_page, open_probability
from serving.leads_page import create_app
from tests.crm_fixture import tiny_crm
from training.data import in_memory_frame
from training.result import TrainConfig, TrainingResult
from training.train import fit_and_evaluate, log_training_run

#: Latin words a Chinese page may show, each for a reason:
ALLOWED = frozenset(
    {
        # grades
        *"ABCD",
        # the metrics, tests and methods by their own names, as Chinese analysts write them
        "ROC",
        "AUC",
        "ECE",
        "WAPE",
        "Holm",
        "Welch",
        "t",
        "p",
        "Platt",
        "A/B",
        # the time zone of every moment, and the system the data comes from
        "UTC",
        "CRM",
        # the registered model's name, and the link that switches to English, in English
        "lead_scorer",
        "English",
        # the static file's pointer to the served page (/leads)
        "leads",
    }
)
LATIN = re.compile(r"[A-Za-z][A-Za-z0-9_]*(?:/[A-Za-z][A-Za-z0-9_]*)?")
ISO_DAY = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")


class _Visible(HTMLParser):
    """Text nodes outside scripts and styles; the charts' JSON and the page's config."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = 0
        self.in_config = False
        self.text: list[str] = []
        self.figures: list[str] = []
        self.config: dict[str, Any] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag in ("script", "style"):
            self.hidden += 1
            self.in_config = a.get("id") == "page-config"
        if a.get("data-figure"):
            self.figures.append(str(a["data-figure"]))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self.hidden -= 1
            self.in_config = False

    def handle_data(self, data: str) -> None:
        if self.in_config:
            self.config = json.loads(data)
        elif not self.hidden:
            self.text.append(data)


def figure_words(figure: str) -> Iterator[str]:
    """What a plotly figure writes on screen: categories, bar texts, names, hover texts
    (their placeholders and markup left out) and titles."""
    fig = json.loads(figure)
    for trace in fig.get("data", []):
        for key in ("x", "y", "text", "name"):
            v = trace.get(key)
            values = v if isinstance(v, list) else [v]
            yield from (str(x) for x in values if isinstance(x, str))
        if trace.get("hovertemplate"):
            yield re.sub(r"%\{[^}]*\}", " ", trace["hovertemplate"])
    for key, axis in fig.get("layout", {}).items():
        if key.startswith(("xaxis", "yaxis", "title")) and isinstance(axis, dict):
            title = axis.get("title", axis) if not key.startswith("title") else axis
            if isinstance(title, dict) and title.get("text"):
                yield str(title["text"])


#: The fields of a row the page's script writes into the table.
ROW_TEXT = (
    "deal_id",
    "stage",
    "account_id",
    "segment_text",
    "industry_text",
    "owner_id",
    "group_text",
    "win",
    "meaning",
    "grade",
    "amount_text",
    "ev_text",
    "change_text",
    "next_step",
)


def row_words(rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    for r in rows:
        yield from (str(r[k]) for k in ROW_TEXT)
        yield from (x["text"] for x in (*r["positive"], *r["negative"], *r["flags"]))


def visible(page: str, rows: Iterable[dict[str, Any]] = ()) -> list[str]:
    """Everything a reader of ``page`` sees: its text, its charts' words, its rows (the
    static file's, the served page's first page, and ``rows`` asked for)."""
    p = _Visible()
    p.feed(page)
    out = list(p.text)
    for figure in p.figures:
        out += figure_words(html.unescape(figure))
    config = p.config or {}
    out += row_words(config.get("rows") or (config.get("first") or {}).get("rows", []))
    out += row_words(rows)
    return [re.sub(r"<[^>]*>", " ", html.unescape(t)) for t in out]


def data_words(tables: dict[str, pd.DataFrame]) -> set[str]:
    """Words the CRM itself holds that a page shows as written: ids, names of competitors
    and products, contacts' job titles (a CRM's own text, not the page's words)."""
    values: set[str] = set()
    for table, columns in {
        "deals": ("deal_id", "account_id", "owner_id", "competitor", "product"),
        "accounts": ("account_id",),
        "contacts": ("contact_id", "title"),
    }.items():
        for c in columns:
            values |= {str(v) for v in tables[table][c].dropna()}
    return {w for v in values for w in LATIN.findall(v)}


def english_in(texts: Iterable[str], allowed: set[str]) -> list[tuple[str, str]]:
    """Each Latin word not allowed (case aside: the features normalise the CRM's
    categories to lower case), once, with a text it is in."""
    known = {w.lower() for w in allowed}
    found: dict[str, str] = {}
    for text in texts:
        for word in LATIN.findall(text):
            if word.lower() not in known:
                found.setdefault(word, " ".join(text.split())[:160])
    return sorted(found.items())


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def trained() -> TrainingResult:
    """A model trained by production's fit_and_evaluate, so it carries a quality summary
    (the model panel) and a failed baseline gate (the header's warning, the A/B label)."""
    from leadscore.crm.synth import generate_crm

    crm = generate_crm(1500, seed=5, as_of=pd.Timestamp("2025-06-30", tz="UTC"))
    return fit_and_evaluate(in_memory_frame(crm.tables), "lead_scoring_v1", TrainConfig(seed=3))


@pytest.fixture
def ranked(isolated_settings: Settings, trained: TrainingResult, tmp_path: Path) -> Settings:
    """The tiny CRM stored and ranked by the registered model (a score in each history)."""
    isolated_settings.crm_dir.mkdir(parents=True)
    for name, table in tiny_crm().items():
        table.to_parquet(isolated_settings.crm_dir / f"{name}.parquet")
    version = log_training_run(isolated_settings, trained)["model_version"]
    run_rank(isolated_settings, trained.model, version, tmp_path)
    return isolated_settings


def test_the_chinese_page_and_a_deal_s_timeline_show_no_english(
    ranked: Settings, trained: TrainingResult, tmp_path: Path
) -> None:
    tables = tiny_crm()
    allowed = set(ALLOWED) | data_words(tables)
    listed = read_ranked(tmp_path)
    moment = pd.Timestamp(listed["as_of"].iloc[0])
    facts = deal_facts(tables)
    ids = compared_deals(facts, *window(moment))
    scored = AtCreation(
        probabilities_at_creation(tables, trained.model, ids),
        model_facts("lead_scorer", "1", trained.model),
    )
    overview = managers_overview(facts, moment, open_probability(listed), scored, tables)
    static = build_page(tmp_path, ranked.crm_dir, settings=ranked, lang=ZH, overview=overview)
    seen = visible(static)
    text = " ".join(seen)
    # The page is the whole page: every section, the model panel, the lead-quality check.
    for heading in (
        "漏斗指标",
        "各阶段停留天数",
        "输单流失阶段",
        "月度趋势",
        "按月预测",
        "A/B 对比",
        "评分所用的模型",
        "创建时的线索质量",
        "渠道质量",
        "销售的强项与弱项",
    ):
        assert heading in text, heading
    assert "lead_scorer 版本 1，该模型并不优于基线" in text

    client = TestClient(create_app(ranked, source=tmp_path))
    served = client.get("/", params={"lang": "zh"}).text
    sections = client.get("/api/sections", params={"lang": "zh"}).text
    compare_by = re.findall(
        r'<option value="([^"]+)"', sections.split('id="ab-by"')[1].split("</select>")[0]
    )
    assert "channel" in compare_by and "lost_reason" not in compare_by
    compared = [
        client.get("/api/compare", params={"by": by, "lang": "zh"}).text for by in compare_by
    ]
    pages = [
        client.get("/api/leads", params={"lang": "zh", "status": s}).json()
        for s in ("active", "dormant", "lost")
    ]
    timelines = [
        client.get(f"/deal/{deal}", params={"lang": "zh"}).text
        for deal in tables["deals"]["deal_id"]
    ]
    assert all("时间线" in t for t in timelines)
    unknown = client.get("/deal/D99", params={"lang": "zh"})
    assert unknown.status_code == 404
    timelines.append(unknown.text)
    allowed.add("D99")  # the id asked for, said back
    seen += visible(served, (r for p in pages for r in p["rows"]))
    for fragment in (sections, *compared, *timelines):
        seen += visible(fragment)

    assert not english_in(seen, allowed), english_in(seen, allowed)
    # Dates as Chinese readers write them, never ISO; amounts from 10,000 up in 万.
    assert not [t for t in seen if ISO_DAY.search(t)], [t for t in seen if ISO_DAY.search(t)]
    assert re.search(r"\d{4}年\d{1,2}月\d{1,2}日", text)
    assert "1.00万" in text  # the average won deal: D1, 10,000
    assert "10,000" not in text


def test_the_test_finds_english_where_there_is_some() -> None:
    """The extraction sees a chart's categories, a row's reasons and the page's text, and
    not an attribute, a script or a style."""
    figure = html.escape(
        json.dumps({"data": [{"x": ["lead", "赢单"], "hovertemplate": "%{x}: won"}]})
    )
    page = (
        f'<p title="English title">中文 <b>stage</b></p><div data-figure="{figure}"></div>'
        "<style>p { color: red }</style><script>var english = 1;</script>"
        '<script type="application/json" id="page-config">{"rows": []}</script>'
    )
    row = {k: "中" for k in ROW_TEXT} | {
        "positive": [{"text": "Reply"}],
        "negative": [],
        "flags": [],
    }
    words = [w for w, _ in english_in(visible(page, [row]), set(ALLOWED))]
    assert sorted(words) == ["Reply", "lead", "stage", "won"]


def test_every_reason_an_insight_gives_reads_in_chinese() -> None:
    """Each ``why_`` word's English reads back in Chinese with its figures; a reason no
    word knows is not shown in English on a Chinese page."""
    from leadscore.insights.compare import _short
    from leadscore.insights.facts import _reason

    given = {
        "why_short": _short(3, 20),
        "why_short_baseline": _short(3, 20, "web"),
        "why_column": _reason("deals.created_at"),
        "why_table": _reason("stage_history"),
        "why_time_to_close": "no deal won before 2024-03-01 was open 3 to 15 months earlier: "
        "no time to close to learn from",
    }
    assert reason_text(given["why_short"], ZH) == "商机数量尚不足：3 个，需要 20 个"
    assert (
        reason_text(given["why_short_baseline"], ZH)
        == "基准组 官网 的商机数量尚不足：3 个，需要 20 个"
    )
    assert reason_text(given["why_time_to_close"], ZH).startswith("2024年3月1日之前赢单的商机中")
    assert reason_text(f"{given['why_column']}; {given['why_table']}", ZH) == (
        "deals 表中没有 created_at 列；导出数据中没有 stage_history 表"
    )
    assert reason_text("a reason nobody wrote down", ZH) == TEXT["why_other"][1]
    for key, (english, chinese) in TEXT.items():
        if key.startswith("why_") and "{" not in english and key != "why_other":
            assert reason_text(english, ZH) == chinese
            assert reason_text(english) == english
