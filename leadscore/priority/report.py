"""What managers see: the ranked list as a terminal table and as one HTML page with charts.

The page reads top to bottom as a manager runs the team: the summary, then the sections
(the eight funnel metrics of the last 12 months by a chosen cut with the days in each
stage and where lost deals leave, the monthly trends with month-on-month and year-on-year
change, the forecast by month with its backtest error,
the reps' five numbers against the team, an A/B comparison by a chosen attribute; all
computed by :mod:`leadscore.insights`, :mod:`leadscore.insights.overview`), the plotly
charts of the stored CRM's closed deals (the funnel, and the win rate by channel, by
competitor, by the most senior contact and by cycle length), then the list: each deal's
reasons (the training fact behind a reason shows on hover), risk flags and next step,
sortable and filterable by owner, team, channel, segment, status and grade
(:mod:`leadscore.priority.listing`), in English or Chinese (:mod:`leadscore.priority.i18n`).

Two ways to have it (:func:`render_page`). Served at ``/leads`` (``serving/leads_page.py``),
the HTML ships the first page of the list only and a small inline script asks the
service for the other pages, the sections and plotly.js, so the page stays small at
100,000 ranked deals. Written to a file (``leadscore report --out FILE``), everything is
in the one file, plotly.js included, and the top ``--max-rows`` deals are embedded and
paged by the same script; the file says the service pages through all of them. Either
way the page requests nothing from the internet, and its script's hash goes into the
served page's Content-Security-Policy.

Under the table, a panel describes the model that ranked the list, from the quality summary
training stored in it (:mod:`training.quality`, read from the registry by version): when it
was trained and on what, per-deal ROC AUC, log loss and ECE with intervals, lift, its
calibration curve as inline SVG, the strongest features, and one sentence per baseline;
when it failed the baseline gate (so was made champion by force), the header says
"model not better than baseline" in English and Chinese, with the gate's figures.

The page says the moment the list was ranked as of; when that is the stored export's last
recorded event (a historical export, :func:`leadscore.priority.rank.default_as_of`), it
says so in English and Chinese: days since the last activity and dormancy then count up
to that moment, not to the day the page is read.

Each row says what its number means in words under the percentage (the ``meaning``
column: "chance to win this deal", or for a lost deal scored by the revival model "chance
of a win within 12 months if re-engaged now"). When lost deals were scored by the win
model as if re-opened (no revival model registered), the header says so in English and
Chinese; so it does for dormant deals, how they were scored (:func:`dormant_note`: through
the win model's dormant calibration, by its own number checked on dormant deals, or
unchecked); and it says how many lost deals the age limit left out (``lost_left_out``,
``lost_window_days``). A list written before these columns shows neither.

The terminal table (``leadscore top``) is plain aligned text: a column's width is its
display width, two cells for a wide (Chinese, Japanese, Korean) character, so names
in any script line up.
"""

from __future__ import annotations

import html
import itertools
import math
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from jinja2 import Environment, FileSystemLoader
from plotly.offline import get_plotlyjs

from leadscore.config import REPORT_MAX_ROWS, Settings
from leadscore.crm.contract import CLOSED_STATUSES, STAGES, WON
from leadscore.crm.ingest import last_recorded_event, load_stored
from leadscore.features.catalog import FEATURES_BY_NAME, SENIORITY_LEVELS
from leadscore.features.catalog_zh import SENIORITY_ZH, label_zh
from leadscore.features.featurize import contacts_source, normalise_category, normalise_competitor
from leadscore.model.drift import read_latest
from leadscore.model.scoring_model import NO_GATE, NO_QUALITY
from leadscore.priority.dormant import DormantChoice, dormant_meaning
from leadscore.priority.i18n import (
    EN,
    HTML_LANG,
    ZH,
    category_text,
    choose_language,
    localised,
    moment,
    money,
    month,
    number,
    p_clause,
    p_value,
    percent,
    reason_text,
    stage_text,
    texts,
)
from leadscore.priority.i18n import date as date_text
from leadscore.priority.listing import (
    GROUP_STATUS,
    LeadQuery,
    change,
    filter_options,
    lead_page,
    page_row,
)
from leadscore.priority.rank import (
    ACTIVE,
    DORMANT,
    DORMANT_MODEL,
    GROUP,
    PRIORITY_GROUPS,
    REOPENED_MODEL,
    read_ranked,
)

TEMPLATES = Path(__file__).resolve().parent / "templates"
#: Rows of the ranked list the page shows; the CSV beside the list has all of them.
DEFAULT_MAX_ROWS = REPORT_MAX_ROWS
#: The stored CRM tables the charts are drawn from (never the activities, the largest).
CHART_TABLES = ("deals", "stage_history", "deal_contacts", "contacts")
#: Competitors shown by name; the rest are grouped.
MAX_COMPETITORS = 12
#: Cycle length bins, in days from creation to close.
CYCLE_DAYS: tuple[float, ...] = (0, 30, 60, 90, 120, 180, 270, 365, math.inf)
_OPEN_FUNNEL = STAGES[:-1]  # every stage but 'closed'


# ------------------------------------------------------------------ formatting
def display_width(text: str) -> int:
    """Terminal cells ``text`` takes: 2 for wide and full-width characters, 0 for combining."""
    return sum(
        0 if unicodedata.combining(ch) else 2 if unicodedata.east_asian_width(ch) in "WF" else 1
        for ch in text
    )


def fit(text: str, width: int, right: bool = False) -> str:
    """``text`` cut (with an ellipsis) or padded to exactly ``width`` terminal cells."""
    if display_width(text) > width:
        out, used = "", 0
        for ch in text:
            w = display_width(ch)
            if used + w > width - 1:
                break
            out, used = out + ch, used + w
        text = out + "…"
    pad = " " * (width - display_width(text))
    return pad + text if right else text + pad


# ------------------------------------------------------------------ terminal table
@dataclass(frozen=True)
class _Column:
    header: str
    cell: Callable[[Mapping[str, Any]], str]
    right: bool = False
    max_width: int = 40


_COLUMNS: tuple[_Column, ...] = (
    _Column("#", lambda r: str(r["rank"]), right=True),
    _Column("deal", lambda r: r["deal_id"], max_width=16),
    _Column("account", lambda r: r["account_id"], max_width=20),
    _Column("owner", lambda r: r["owner_id"], max_width=14),
    _Column("group", lambda r: r[GROUP]),
    _Column("win", lambda r: percent(r["probability"]), right=True),
    _Column("grade", lambda r: r["grade"]),
    _Column("amount", lambda r: money(r["amount"]), right=True),
    _Column("exp. value", lambda r: money(r["expected_value"]), right=True),
    _Column("change", lambda r: change(r["change"]), right=True),
    _Column("next step", lambda r: r["next_step"], max_width=60),
)


def _texts(items: Any) -> str:
    return "; ".join(str(i["text"]) for i in items)


def text_table(ranked: pd.DataFrame) -> str:
    """Every row of ``ranked`` as an aligned table; under each deal its reasons (+ for,
    - against) and risk flags (!), in full."""
    rows = ranked.to_dict("records")
    cells = [[c.cell(r) for c in _COLUMNS] for r in rows]
    widths = [
        min(max([display_width(c.header), *(display_width(row[j]) for row in cells)]), c.max_width)
        for j, c in enumerate(_COLUMNS)
    ]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            fit(v, w, c.right) for v, w, c in zip(values, widths, _COLUMNS, strict=True)
        ).rstrip()

    out = [line([c.header for c in _COLUMNS])]
    indent = " " * (widths[0] + 2)
    for row, values in zip(rows, cells, strict=True):
        out.append(line(values))
        for mark, key in (
            ("+", "positive_reasons"),
            ("-", "negative_reasons"),
            ("!", "risk_flags"),
        ):
            if len(row[key]):
                out.append(f"{indent}{mark} {_texts(row[key])}")
    return "\n".join(out)


# ------------------------------------------------------------------ charts
@dataclass(frozen=True)
class Chart:
    """One chart of the page: ``figure`` is plotly's JSON, drawn by the page's script
    (empty: nothing to draw, ``note`` says why)."""

    key: str
    title: str
    note: str
    figure: str


def closed_deals(deals: pd.DataFrame) -> pd.DataFrame:
    """Won and lost deals with a close time, with ``won`` (bool) and ``cycle_days``."""
    status = deals["status"].astype(str)
    closed = deals[
        status.isin(CLOSED_STATUSES).to_numpy() & deals["closed_at"].notna().to_numpy()
    ].copy()
    closed["deal_id"] = closed["deal_id"].astype(str)
    closed["won"] = (closed["status"].astype(str) == WON).to_numpy()
    span = pd.to_datetime(closed["closed_at"], utc=True) - pd.to_datetime(
        closed["created_at"], utc=True
    )
    closed["cycle_days"] = span.dt.total_seconds() / 86_400
    return closed.reset_index(drop=True)


def win_rates(keys: pd.Series, won: pd.Series) -> pd.DataFrame:
    """Deals, wins and win rate per key, most deals first."""
    g = pd.DataFrame({"key": keys.to_numpy(), "won": won.to_numpy(dtype=float)}).groupby(
        "key", sort=False
    )["won"]
    out = pd.DataFrame({"deals": g.size(), "won": g.sum()})
    out["win_rate"] = out["won"] / out["deals"]
    return out.sort_values("deals", ascending=False, kind="stable")


def _layout(fig: go.Figure, y_title: str) -> go.Figure:
    fig.update_layout(
        template="plotly_white",
        height=340,
        margin={"l": 60, "r": 20, "t": 20, "b": 60},
        yaxis_title=y_title,
        showlegend=False,
        font={"family": "system-ui, sans-serif"},
    )
    # Long category labels (a Chinese month, a seniority) are turned, and the margin grows
    # to hold them rather than cutting them off.
    fig.update_xaxes(automargin=True)
    fig.update_yaxes(automargin=True)
    return fig


def _amounts(values: Sequence[Any], lang: str) -> list[Any]:
    """Amounts as a chart's axis counts them: in 万 on a Chinese page (with
    :func:`_amount_axis`), as the tables write money; as they are in English."""
    return [v / 10_000 if lang == ZH and v is not None else v for v in values]


def _amount_axis(fig: go.Figure, lang: str) -> None:
    """A Chinese chart's amount axis in 万 (``1,200万``), never plotly's SI ``12M``."""
    if lang == ZH:
        fig.update_yaxes(ticksuffix="万", tickformat=",.4~g", exponentformat="none")


def rate_figure(
    rates: pd.DataFrame, overall: float, x_title: str, y_title: str = "win rate", lang: str = EN
) -> go.Figure:
    """Win rate bars with the deal count on each bar and the overall rate as a line."""
    t = texts(lang)
    fig = go.Figure(
        go.Bar(
            x=[str(k) for k in rates.index],
            y=rates["win_rate"],
            marker_color="#3b6fb6",
            text=[
                f"{percent(r)}<br>{t['ch_deals'].format(n=number(n))}"
                for r, n in zip(rates["win_rate"], rates["deals"], strict=True)
            ],
            textposition="outside",
            cliponaxis=False,
            hovertemplate="%{x}: " + t["ch_won"] + " %{y:.1%}<extra></extra>",
        )
    )
    fig.add_hline(y=overall, line_dash="dot", line_color="#888")
    fig.update_yaxes(
        tickformat=".0%", range=[0, 1.3 * max(float(rates["win_rate"].max()), overall)]
    )
    fig.update_xaxes(title_text=x_title)
    return _layout(fig, y_title)


def funnel_figure(
    stage_history: pd.DataFrame, closed: pd.DataFrame, lang: str = EN
) -> go.Figure | None:
    """Closed deals by the furthest stage they reached, then won; conversion step by step."""
    sh = stage_history[stage_history["deal_id"].astype(str).isin(set(closed["deal_id"]))]
    index = sh["stage"].astype(str).str.lower().map({s: i for i, s in enumerate(_OPEN_FUNNEL)})
    furthest = index.groupby(sh["deal_id"].astype(str).to_numpy()).max().dropna()
    if furthest.empty:
        return None
    reached = [int((furthest >= i).sum()) for i in range(len(_OPEN_FUNNEL))]
    won = int(closed.set_index("deal_id").loc[furthest.index, "won"].sum())
    fig = go.Figure(
        go.Funnel(
            y=[*(stage_text(s, lang) for s in _OPEN_FUNNEL), texts(lang)["ch_won"]],
            x=[*reached, won],
            texttemplate="%{value:,}<br>%{percentPrevious:.0%}",
            marker={"color": "#3b6fb6"},
        )
    )
    return _layout(fig, "")


def _seniority(
    tables: Mapping[str, pd.DataFrame], closed: pd.DataFrame, lang: str = EN
) -> pd.Series | None:
    """Label of the most senior contact on each closed deal, by the feature definition."""
    dc = tables.get("deal_contacts")
    if dc is None or tables.get("contacts") is None:
        return None
    dc = dc[dc["deal_id"].astype(str).isin(set(closed["deal_id"]))]
    last = contacts_source(dc, tables["contacts"]).drop_duplicates("deal_id", keep="last")
    level = closed["deal_id"].map(last.set_index("deal_id")["max_seniority"])
    has_contacts = closed["deal_id"].isin(set(last["deal_id"]))
    t = texts(lang)

    def name(v: float) -> str:
        return SENIORITY_ZH[int(v)] if lang == ZH else SENIORITY_LEVELS.name(v)

    label = level.map(lambda v: f"{int(v)} {name(v)}" if pd.notna(v) else None)
    return label.where(
        level.notna(), np.where(has_contacts, t["ch_title_unknown"], t["ch_no_contacts"])
    )


def _competitors(closed: pd.DataFrame, lang: str = EN) -> pd.Series:
    """Main competitor as the features normalise it; beyond the most frequent, '(other)'."""
    competitor = normalise_competitor(closed["competitor"]).map(lambda c: category_text(c, lang))
    named = competitor.value_counts().index[: MAX_COMPETITORS - 1]
    return (
        competitor.where(competitor.isin(named), texts(lang)["ch_other"])
        if competitor.nunique() > MAX_COMPETITORS
        else competitor
    )


def _cycle_rates(closed: pd.DataFrame) -> pd.DataFrame:
    """Win rates by cycle length band, shortest first."""
    labels = [
        f"{lo:g}–{hi:g}" if hi < math.inf else f"{lo:g}+"
        for lo, hi in itertools.pairwise(CYCLE_DAYS)
    ]
    band = pd.cut(closed["cycle_days"], list(CYCLE_DAYS), right=False, labels=labels).astype(str)
    rates = win_rates(band, closed["won"])
    return rates.reindex([b for b in labels if b in rates.index])


def crm_charts(tables: Mapping[str, pd.DataFrame], lang: str = EN) -> list[Chart]:
    """The page's charts, from the stored CRM's closed deals; absent tables give a note."""
    t = texts(lang)
    closed = closed_deals(tables["deals"])
    if closed.empty:
        return [Chart("none", t["ch_none"], t["ch_none_note"], "")]
    won, overall = closed["won"], float(closed["won"].mean())
    all_deals = t["ch_all_deals"].format(n=number(len(closed)), rate=percent(overall))
    sh, seniority = tables.get("stage_history"), _seniority(tables, closed, lang)
    channel = (
        normalise_category(closed["channel"])
        .map(lambda c: category_text(str(c).replace("_", " "), lang), na_action="ignore")
        .fillna(t["ch_not_recorded"])
    )
    y = t["win_rate"]
    figures: list[tuple[str, str, go.Figure | None]] = [
        ("funnel", t["ch_funnel_note"], None if sh is None else funnel_figure(sh, closed, lang)),
        (
            "channel",
            all_deals,
            rate_figure(win_rates(channel, won), overall, t["ax_channel"], y, lang),
        ),
        (
            "competitor",
            f"{t['ch_competitor_note']} {all_deals}",
            rate_figure(
                win_rates(_competitors(closed, lang).str.replace("_", " "), won),
                overall,
                t["ax_competitor"],
                y,
                lang,
            ),
        ),
        (
            "seniority",
            f"{t['ch_seniority_note']} {all_deals}",
            None
            if seniority is None
            else rate_figure(
                win_rates(seniority, won).sort_index(), overall, t["ax_seniority"], y, lang
            ),
        ),
        (
            "cycle",
            f"{t['ch_cycle_note']} {all_deals}",
            rate_figure(_cycle_rates(closed), overall, t["ax_cycle"], y, lang),
        ),
    ]
    return [
        Chart(key, t[f"ch_{key}"], t["ch_absent"], "")
        if fig is None
        else Chart(key, t[f"ch_{key}"], note, fig.to_json())
        for key, note, fig in figures
    ]


# ------------------------------------------------------------------ model panel
@dataclass(frozen=True)
class ModelPanel:
    """The model that ranked the list: its version and the quality summary training stored
    in it (``info["quality"]``, :mod:`training.quality`); ``note`` says why there is none."""

    version: str
    quality: Mapping[str, Any] | None = None
    note: str = ""
    #: The registry's error when the version could not be read (``note`` says it in English).
    error: str = ""


def model_panel(settings: Settings, version: str) -> ModelPanel:
    """The panel of registered ``version``, read from the model itself in the registry.

    A model trained before training stored a summary gets :data:`NO_QUALITY`; a version
    the registry cannot give gets the reason, and the page still shows the list.
    """
    # Imported here: MLflow is heavy, and only the page with a registry needs it.
    from leadscore.model.registry import load_scoring_model

    try:
        model = load_scoring_model(f"models:/{settings.model_name}/{version}", settings)
    except Exception as exc:  # any registry failure: the list must still be shown
        return ModelPanel(version, None, f"not readable from the model registry ({exc})", str(exc))
    quality = model.info.get("quality")
    return ModelPanel(version, quality, "" if quality else NO_QUALITY)


def estimate(e: Mapping[str, Any] | None, digits: int = 3) -> str:
    """``0.633 [0.582, 0.685]``: a metric with its 95% interval; ``n/a`` when undefined."""
    if not e or e.get("value") is None:
        return "n/a"
    text = f"{e['value']:.{digits}f}"
    if e.get("low") is not None and e.get("high") is not None:
        text += f" [{e['low']:.{digits}f}, {e['high']:.{digits}f}]"
    return text


#: Drawing area of the calibration curve, in SVG user units.
_SVG_SIZE, _SVG_PAD = 200, 36


def calibration_svg(curve: Mapping[str, Sequence[float]], lang: str = EN) -> str:
    """The calibration curve as a small inline SVG: predicted (x) against observed (y) win
    rate per probability bin, a dot per bin sized by its deals, the diagonal for reference.

    Inline and with no namespace URL, so the page stays one file that references nothing
    outside. Only numbers and the page's words (escaped) go into the markup.
    """
    t = texts(lang)
    title = t["mp_curve_title"]
    side, pad = _SVG_SIZE, _SVG_PAD
    full = side + 2 * pad

    def x(p: float) -> float:
        return round(pad + p * side, 1)

    def y(p: float) -> float:
        return round(pad + (1.0 - p) * side, 1)

    points = list(zip(curve["mean_p"], curve["win_rate"], curve["n"], strict=True))
    biggest = max((n for _, _, n in points), default=1) or 1
    dots = "".join(
        f'<circle cx="{x(p)}" cy="{y(r)}" r="{round(2.5 + 4.5 * math.sqrt(n / biggest), 1)}">'
        f"<title>{html.escape(t['mp_curve_dot'].format(p=f'{p:.0%}', r=f'{r:.0%}', n=f'{n:,}'))}"
        "</title></circle>"
        for p, r, n in points
    )
    line = " ".join(f"{x(p)},{y(r)}" for p, r, _ in points)
    ticks = "".join(
        f'<text x="{x(t)}" y="{full - 10}" text-anchor="middle">{t:.0%}</text>'
        f'<text x="{pad - 4}" y="{y(t) + 4}" text-anchor="end">{t:.0%}</text>'
        for t in (0.0, 0.5, 1.0)
    )
    return (
        f'<svg class="calibration" viewBox="0 0 {full} {full}" width="{full}" height="{full}" '
        f'role="img" aria-label="{html.escape(title)}"><title>{html.escape(title)}</title>'
        f'<rect x="{pad}" y="{pad}" width="{side}" height="{side}" class="frame"/>'
        f'<line x1="{x(0)}" y1="{y(0)}" x2="{x(1)}" y2="{y(1)}" class="diagonal"/>'
        f'<polyline points="{line}" class="curve"/>{dots}{ticks}'
        f'<text x="{pad + side / 2}" y="{pad - 10}" text-anchor="middle">'
        f"{html.escape(t['mp_curve_axis'])}</text></svg>"
    )


#: The baselines in the page's two languages.
_BASELINE_NAMES = {
    "logistic_regression": {"en": "logistic regression on the same features", "zh": "逻辑回归"},
    "channel_rate": {"en": "the channel win rate", "zh": "渠道赢单率"},
    "stage_fallback": {"en": "the stage and channel fallback", "zh": "阶段与渠道回退估计"},
}


def _zh_list(items: Sequence[str]) -> str:
    """``甲、乙和丙``: a Chinese list, as "A, B and C" is an English one."""
    return "和".join(["、".join(items[:-1]), items[-1]]) if len(items) > 1 else "".join(items)


def gate_warning(quality: Mapping[str, Any]) -> dict[str, str] | None:
    """The header's warning (English and Chinese) when the model failed the baseline gate.

    Only ``promote --force`` makes such a model champion, so this is what a reader of a
    forced model's list sees first: which baselines it does not beat, and the gate's own
    sentence with the figures. ``None`` when the gate passed; a summary without a gate
    (trained before it existed) warns that it was never checked.
    """
    gate = quality.get("gate")
    if gate is None:
        return {"unchecked": "yes", "sentence": NO_GATE["sentence"]}
    if gate["passed"]:
        return None
    failed = list(dict.fromkeys(c["baseline"] for c in gate.get("checks", []) if not c["passed"]))
    names = [_BASELINE_NAMES.get(b, {"en": b, "zh": b}) for b in failed]
    return {
        "en": " and ".join(n["en"] for n in names) or "the baselines",
        "zh": _zh_list([n["zh"] for n in names]) or "基线",
        "sentence": gate["sentence"],
    }


def _signed(x: float) -> str:
    """``+0.273`` / ``−0.022``: as training writes a difference (a true minus sign)."""
    return f"{x:+.3f}".replace("-", "\u2212")


def baseline_sentence(name: str, entry: Mapping[str, Any], when: str, lang: str = EN) -> str:
    """The model against one baseline at one moment (``when``, in words), by ROC AUC, in
    ``lang``: the verdict training stored and the paired interval of the difference
    ("not better than logistic regression at creation: ROC AUC −0.022 [−0.063, +0.015]",
    as :func:`training.quality.baseline_sentence` words it)."""
    t = texts(lang)
    label = (
        entry.get("label", name) if lang == EN else _BASELINE_NAMES.get(name, {}).get(lang, name)
    )
    block = entry["block"]
    auc = block.get("roc_auc", {})
    d, low, high = auc.get("difference"), auc.get("low"), auc.get("high")
    if d is None:
        return t["mp_baseline_undefined"].format(baseline=label, when=when)
    figure = (
        f"ROC AUC {_signed(d)} [{_signed(low)}, {_signed(high)}]"
        if low is not None and high is not None
        else t["mp_no_interval"].format(difference=_signed(d))
    )
    verdict = t.get("mp_verdict_" + str(block.get("verdict", "unknown")).replace(" ", "_"), "")
    return t["mp_baseline"].format(verdict=verdict, baseline=label, when=when, figure=figure)


def _feature_words(name: str, description: str, lang: str) -> dict[str, str]:
    """A strongest feature's words: ``name`` (its column, or in Chinese its Chinese name,
    the column then only on hover) and ``description`` under it (the catalog's, none in
    Chinese: the name says it). A custom attribute keeps its own name and words."""
    feature = FEATURES_BY_NAME.get(name)
    if lang == ZH and feature is not None:
        return {"name": label_zh(feature), "description": "", "column": name}
    return {"name": name, "description": description, "column": ""}


def _day(value: Any, lang: str) -> str:
    """A stored ISO time's day in ``lang``; empty when there is none."""
    return date_text(pd.Timestamp(value), lang) if value else ""


def calibration_sentence(calibration: Mapping[str, Any], lang: str = EN) -> str:
    """How the model's probabilities were calibrated. In English, training's own sentence;
    in Chinese, composed from the figures training stored with it (``cv``: each candidate
    method's out-of-sample log loss and ECE), or the method alone for a model trained
    before it stored them."""
    t = texts(lang)
    if lang == EN:
        return t["mp_calibration"].format(reason=calibration.get("reason", ""))

    def method(m: str) -> str:
        return t.get(f"mp_method_{m}", m)

    chosen = method(str(calibration.get("method", "")))
    cv = calibration.get("cv") or {}
    if not cv.get("log_loss"):
        return t["mp_calibration"].format(reason=chosen)
    sep = "，" if lang == ZH else ", "
    out = t["mp_calibration_chosen"].format(
        method=chosen,
        losses=sep.join(f"{method(k)} {v:.5f}" for k, v in cv["log_loss"].items()),
    )
    if cv.get("ece"):
        eces = sep.join(f"{method(k)} {v:.4f}" for k, v in cv["ece"].items())
        out += t["mp_calibration_ece"].format(eces=eces)
    return out


def panel_context(panel: ModelPanel, lang: str = EN) -> dict[str, Any]:
    """What the template shows of the model, formatted in ``lang``: every label from the
    page's table of words, the figures from the quality summary training stored."""
    t = texts(lang)
    q = panel.quality
    if not q:
        note = t["mp_unreadable"].format(error=panel.error) if panel.error else t["mp_no_quality"]
        return {
            "version": panel.version,
            "note": t["mp_version_note"].format(version=panel.version, note=note),
        }
    window = q.get("window", {})
    deals = q.get("test_deals", {})
    per_deal = q["per_deal"]
    age = float(per_deal.get("age_days", 30.0))
    when = {
        "at_creation": t["mp_at_creation"],
        "at_age": t["mp_at_age"].format(days=f"{age:g}"),
    }
    blocks = [(b, per_deal[b]) for b in ("at_creation", "at_age") if b in per_deal]
    calibration = q.get("calibration", {})
    curve = calibration.get("curve") or {"mean_p": [], "win_rate": [], "n": []}
    trained = q.get("trained_at")
    baselines = q.get("baselines", {})
    split = q.get("split", {})
    method = str(split.get("method", "time"))
    won, lost = deals.get("won", 0), deals.get("lost", 0)
    summary = t["mp_summary"].format(
        version=panel.version,
        trained_at=moment(pd.Timestamp(trained), lang) if trained else t["mp_not_recorded"],
        window=t["mp_window"].format(
            start=_day(window.get("first_snapshot"), lang),
            end=_day(window.get("last_close"), lang),
        ),
        test=t["mp_test"].format(
            deals=f"{won + lost:,}",
            won=f"{won:,}",
            lost=f"{lost:,}",
            split=t["mp_cross_validation"].format(how=split["cross_validation"])
            if split.get("cross_validation")
            else t.get(f"mp_split_{method}", t["mp_split_other"]).format(method=method),
        ),
    )
    return {
        "version": panel.version,
        "note": "",
        "summary": summary,
        "blocks": [
            {
                "label": when[key],
                "deals": f"{b['deals']:,}",
                "roc_auc": estimate(b["roc_auc"]),
                "log_loss": estimate(b["log_loss"]),
                "ece": estimate(b["ece"]),
                "lift": "n/a" if b.get("lift_at_10") is None else f"{b['lift_at_10']:.2f}×",
            }
            for key, b in blocks
        ],
        "calibration": calibration_sentence(calibration, lang),
        "svg": calibration_svg(curve, lang),
        "curve_note": t["mp_curve_note"].format(n=f"{sum(curve['n']):,}", when=when["at_age"]),
        "features": [
            {
                "feature": f["feature"],
                "share": f"{f['gain_share']:.0%}",
                **_feature_words(f["feature"], f["description"], lang),
            }
            for f in q.get("top_features", [])
        ],
        "baselines": [
            {
                "verdict": entry[block]["verdict"],
                "sentence": baseline_sentence(
                    name, {**entry, "block": entry[block]}, when[block], lang
                ),
            }
            for name, entry in baselines.items()
            for block in ("at_creation", "at_age")
            if block in entry
        ],
        "gate_warning": gate_warning(q),
    }


def dormant_note(ranked: pd.DataFrame) -> str | None:
    """How the list's dormant rows were scored, a :class:`DormantChoice` value for the
    header's note; None without dormant rows (or a list written before ``model``)."""
    if "model" not in ranked:
        return None
    rows = ranked[ranked[GROUP] == DORMANT]
    if not len(rows):
        return None
    if (rows["model"] == DORMANT_MODEL).any():
        return DormantChoice.DORMANT_CALIBRATION.value
    unchecked = dormant_meaning(0, DormantChoice.UNCHECKED)
    if (rows["meaning"] == unchecked).any():
        return DormantChoice.UNCHECKED.value
    return DormantChoice.WIN_MODEL.value


# ------------------------------------------------------------------ sections
#: Groups of a cut, and reps, shown at most (the largest by deals created, or leads).
MAX_GROUPS = 50
#: Trend charts: the metrics a manager reads at a glance.
TREND_CHARTS = (
    "lead_to_opportunity",
    "qualified_win_rate",
    "sales_cycle_days",
    "average_won_amount",
)
_PIPELINE = "open_pipeline_value"
#: The cut by rep: its groups are ids, never words to translate.
OWNER_CUT = "owner_id"


def _value(v: Any, unit: str, lang: str) -> str:
    """A metric's value in its unit: a share as a percentage, days and counts with one
    decimal, an amount as money."""
    if v is None or pd.isna(v):
        return "–"
    if unit == "share":
        return percent(v, lang, 1)
    if unit == "amount":
        return money(v, lang)
    return number(v, lang, 1)


def _change_text(v: Any, unit: str, lang: str) -> str:
    """A change: points for a share, a percentage otherwise; ``–`` when there is none."""
    if v is None or pd.isna(v):
        return "–"
    if unit == "share":
        return f"{100 * float(v):+.1f} {texts(lang)['pts']}"
    return f"{100 * float(v):+.0f}%"


def _funnel_block(
    records: Sequence[Mapping[str, Any]], cut: str | None, lang: str
) -> dict[str, Any]:
    """One cut's funnel table: a row per group (the team first), a cell per metric; the
    pipeline is its total over the open stages."""
    t = texts(lang)
    metrics = [m for m in dict.fromkeys(r["metric"] for r in records)]
    name = (lambda r: str(r[cut])) if cut else (lambda r: t["cut_all"])
    shown_name = (lambda g: g) if cut == OWNER_CUT else (lambda g: category_text(g, lang))
    groups: dict[str, dict[str, Any]] = {}
    leads: dict[str, float] = {}
    for r in records:
        g = groups.setdefault(name(r), {})
        if r["metric"] == _PIPELINE:
            prev = g.get(_PIPELINE)
            total = (prev["value"] if prev else 0.0) + (r["value"] or 0.0)
            deals = (prev["denominator"] if prev else 0.0) + (r["denominator"] or 0.0)
            g[_PIPELINE] = {**r, "value": total, "denominator": deals, "small": False}
        else:
            g[r["metric"]] = r
        if r["metric"] == "lead_to_opportunity":
            leads[name(r)] = float(r["denominator"] or 0.0)
    order = sorted(groups, key=lambda k: (k != "(all)", -leads.get(k, 0.0), k))
    shown = order[: MAX_GROUPS + 1]
    rows = []
    for key in shown:
        cells = []
        for m in metrics:
            c = groups[key].get(m)
            cells.append(
                {
                    "metric": m,
                    "text": "–" if c is None else _value(c["value"], c["unit"], lang),
                    "small": bool(c and c["small"]),
                    "title": ""
                    if c is None
                    else (
                        reason_text(c["missing"], lang)
                        or f"{number(c['numerator'])} / {number(c['denominator'])}"
                    ),
                }
            )
        rows.append({"name": t["cut_all"] if key == "(all)" else shown_name(key), "cells": cells})
    note = (
        t["top_groups"].format(shown=MAX_GROUPS, n=len(order) - 1)
        if len(order) > MAX_GROUPS + 1
        else ""
    )
    return {"metrics": [t[f"m_{m}"] for m in metrics], "groups": rows, "note": note}


def _stage_name(stage: Any, lang: str) -> str:
    """A funnel stage's name; a lost deal whose history has no open stage (the insights
    count it under their own word for unknown) in words."""
    return stage_text(str(stage), lang) if stage in STAGES else texts(lang)["stage_unknown"]


def _stage_days(records: Sequence[Mapping[str, Any]], lang: str) -> list[dict[str, Any]]:
    """The team's days in each open stage (:func:`leadscore.insights.funnel.stage_durations`):
    a row per stage, won then lost, each the median with the middle half in brackets and
    the deals behind it; none when no deal closed in the window (or the export lacks the
    stage history), so the page shows no table of dashes."""
    if not any((r["deals"] or 0) > 0 for r in records):
        return []
    cells = {(r["stage"], r["outcome"]): r for r in records}
    rows = []
    for stage in dict.fromkeys(r["stage"] for r in records):
        row: dict[str, Any] = {"stage": _stage_name(stage, lang), "cells": []}
        for outcome in ("won", "lost"):
            c = cells.get((stage, outcome))
            deals = float(c["deals"] or 0) if c else 0.0
            days = "–"
            if c and deals > 0:
                spread = f"{number(c['p25_days'], lang, 1)}–{number(c['p75_days'], lang, 1)}"
                days = f"{number(c['median_days'], lang, 1)} ({spread})"
            small = bool(c and c["small"])
            row["cells"] += [{"text": days, "small": small}, {"text": number(deals, lang)}]
        rows.append(row)
    return rows


def _lost_exits(records: Sequence[Mapping[str, Any]], lang: str) -> list[dict[str, Any]]:
    """Where the team's lost deals left the funnel (:func:`leadscore.insights.funnel.lost_exits`):
    a row per stage with the deals and their share; none when no deal was lost in the window."""
    if not any((r["lost"] or 0) > 0 for r in records):
        return []
    return [
        {
            "stage": _stage_name(r["stage"], lang),
            "lost": number(r["lost"], lang),
            "share": percent(r["share"], lang, 1),
            "small": bool(r["small"]),
        }
        for r in records
    ]


def _trend_figure(rows: Sequence[Mapping[str, Any]], lang: str, title: str) -> str:
    unit = rows[0]["unit"] if rows else "share"
    values = [r["value"] for r in rows]
    fig = go.Figure(
        go.Scatter(
            x=[month(r["period_start"], lang) for r in rows],
            y=_amounts(values, lang) if unit == "amount" else values,
            mode="lines+markers",
            line={"color": "#3b6fb6"},
            customdata=[
                [
                    _change_text(r["mom_change" if unit == "share" else "mom_pct"], unit, lang),
                    _change_text(r["yoy_change" if unit == "share" else "yoy_pct"], unit, lang),
                    _value(r["value"], unit, lang),
                ]
                for r in rows
            ],
            hovertemplate="%{x}: %{customdata[2]}<br>"
            + texts(lang)["mom"]
            + " %{customdata[0]}, "
            + texts(lang)["yoy"]
            + " %{customdata[1]}<extra></extra>",
        )
    )
    if unit == "share":
        fig.update_yaxes(tickformat=".0%")
    if unit == "amount":
        _amount_axis(fig, lang)
    fig.update_xaxes(tickangle=-45)
    return _layout(fig, title).to_json()


def _forecast_context(forecast: Mapping[str, Any], lang: str) -> dict[str, Any]:
    t = texts(lang)
    if forecast.get("missing"):
        return {
            "forecast_figure": "",
            "forecast_note": reason_text(forecast["missing"], lang),
            "backtest": "",
            "forecast_reps": None,
        }
    team = [m for m in forecast["months"] if m.get(OWNER_CUT, "(all)") == "(all)"]
    summary = forecast["summary"][0] if forecast["summary"] else {}
    fig = go.Figure(
        go.Bar(
            x=[month(m["period_start"], lang) for m in team] + [t["later"]],
            y=_amounts([m["expected_revenue"] for m in team] + [summary.get("later", 0.0)], lang),
            marker_color="#3b6fb6",
            text=[money(m["expected_revenue"], lang) for m in team]
            + [money(summary.get("later", 0.0), lang)],
            textposition="outside",
            cliponaxis=False,
            hovertemplate="%{x}: %{text}<extra></extra>",
        )
    )
    _amount_axis(fig, lang)
    errors = forecast["errors"]
    if errors:

        def wapes(method: str) -> str:
            return ("，" if lang == ZH else ", ").join(
                t["backtest_month"].format(h=e["horizon"], wape=percent(e["wape"], lang))
                for e in errors
                if e["method"] == method
            )

        horizon = max(e["horizon"] for e in errors)
        backtest = t["backtest"].format(
            cuts=forecast["backtest_cuts"],
            horizon=horizon,
            wape=wapes("stage_rate"),
            naive=wapes("persistence"),
        )
    else:
        backtest = t["backtest_none"]
    return {
        "forecast_figure": _layout(fig, t["expected_revenue"]).to_json(),
        "forecast_note": t["forecast_note"].format(
            deals=number(summary.get("open_deals", 0)),
            as_of=date_text(forecast["as_of"], lang),
            method=t["forecast_ranked" if forecast["method"] == "ranked" else "forecast_stage"],
        ),
        "backtest": backtest,
        "forecast_reps": _forecast_reps(forecast, team, lang),
    }


def _forecast_reps(
    forecast: Mapping[str, Any], team: Sequence[Mapping[str, Any]], lang: str
) -> dict[str, Any] | None:
    """The forecast per rep beside the team's: a row per rep (the largest expected revenue
    first, at most :data:`MAX_GROUPS`), a cell per month, the later months and the total."""
    t = texts(lang)
    reps = {s[OWNER_CUT]: s for s in forecast["summary"] if OWNER_CUT in s}
    if not reps or not forecast["summary"]:  # a forecast not cut by rep
        return None
    summary = {"(all)": forecast["summary"][0], **reps}
    months = [m["period_start"] for m in team]
    by_rep: dict[str, dict[str, float]] = {}
    for m in forecast["months"]:
        rep = str(m.get(OWNER_CUT, "(all)"))
        by_rep.setdefault(rep, {})[m["period_start"]] = m["expected_revenue"]
    order = sorted(
        summary, key=lambda o: (o != "(all)", -(summary[o]["in_horizon"] + summary[o]["later"]), o)
    )
    rows = [
        {
            "rep": t["team"] if o == "(all)" else str(o),
            "cells": [money(by_rep.get(str(o), {}).get(p, 0.0), lang) for p in months]
            + [
                money(summary[o]["later"], lang),
                money(summary[o]["in_horizon"] + summary[o]["later"], lang),
            ],
        }
        for o in order[: MAX_GROUPS + 1]
    ]
    return {
        "months": [month(p, lang) for p in months] + [t["later"], t["total"]],
        "rows": rows,
        "note": t["forecast_top"].format(shown=MAX_GROUPS, n=len(order) - 1)
        if len(order) > MAX_GROUPS + 1
        else "",
    }


def _reps_block(records: Sequence[Mapping[str, Any]], every: str, lang: str) -> dict[str, Any]:
    """The reps' numbers of the latest ``every`` (``month`` or ``week``) against the team."""
    t = texts(lang)
    label = t[f"every_{every}"]
    numbers = list(dict.fromkeys(r["number"] for r in records))
    reps: dict[str, dict[str, Mapping[str, Any]]] = {}
    for r in records:
        reps.setdefault(str(r["owner_id"]), {})[r["number"]] = r
    order = sorted(reps, key=lambda o: (-(reps[o].get("leads", {}).get("value") or 0.0), o))
    rows = []
    for o in order[:MAX_GROUPS]:
        cells = []
        for n in numbers:
            r = reps[o][n]
            v, team = r["value"], r["team_per_rep"]
            cls = (
                ""
                if v is None or team is None
                else "up"
                if v > team
                else "down"
                if v < team
                else ""
            )
            cells.append(
                {"text": "–" if v is None else f"{number(v)} ({number(team, lang, 1)})", "cls": cls}
            )
        rows.append({"rep": o, "cells": cells})
    first = records[0] if records else {}
    return {
        "label": label,
        "numbers": [t[f"n_{n}"] for n in numbers],
        "rows": rows,
        "note": t["reps_note"].format(
            period=(month if every == "month" else _week)(first.get("period_start"), lang),
            reps=first.get("reps", 0),
        ),
    }


def _strengths(cells: Sequence[Mapping[str, Any]], lang: str) -> list[dict[str, Any]]:
    """Each rep with a flagged cell (:func:`leadscore.insights.strengths.rep_strengths`):
    its strengths and its weaknesses, in ``lang``; at most :data:`MAX_GROUPS` reps."""
    reps: dict[str, dict[str, list[str]]] = {}
    for c in cells:
        rep = str(c["owner_id"])
        side = reps.setdefault(rep, {"better": [], "worse": []})
        # The rep's column names the rep: the sentence without its name.
        text = localised(c, "label", lang)
        side[c["verdict"]].append(text.removeprefix(f"{rep}，").removeprefix(f"{rep}, "))
    return [{"rep": rep, **sides} for rep, sides in list(reps.items())[:MAX_GROUPS]]


def _week(start: Any, lang: str) -> str:
    """The week starting on ``start``, in words."""
    return texts(lang)["week_of"].format(day=date_text(start, lang))


def model_label(model: Mapping[str, str] | None, lang: str = EN) -> str:
    """Which model scored the deals at creation (:func:`leadscore.priority.at_creation.model_facts`)
    in ``lang``: "lead_scorer version 3", and that it is not better than the baselines
    (or was never checked against them) when so."""
    if not model:
        return ""
    t = texts(lang)
    key = {"not_better": "lq_model_not_better", "unchecked": "lq_model_unchecked"}
    return t[key.get(model.get("gate", ""), "lq_model")].format(
        name=model["name"], version=model["version"]
    )


def _group(value: Any, by: str, lang: str) -> str:
    """A group of cut ``by`` as the page shows it: an owner's id as is, a category in
    ``lang`` (:func:`~leadscore.priority.i18n.category_text`)."""
    return str(value) if by == OWNER_CUT else category_text(value, lang)


#: The page's word (a :data:`~leadscore.priority.i18n.TEXT` key) for each cut it knows.
_CUT_WORDS = {
    "owner_id": "owner",
    "channel": "channel",
    "industry": "industry",
    "size_band": "size_band",
    "segment": "segment",
    "team": "team",
    "competitor": "competitor",
    "product": "product",
    "region": "region",
}


def cut_label(by: str, lang: str = EN) -> str:
    """A cut's name as a column header: the page's word for a known one, else the CRM's
    own column name."""
    return texts(lang)[_CUT_WORDS[by]] if by in _CUT_WORDS else by


def lead_quality_context(ab: Mapping[str, Any], lang: str = EN) -> dict[str, Any]:
    """Whether the compared groups were given leads of comparable quality (the champion's
    mean win probability at creation per group, :func:`leadscore.insights.compare.lead_quality`),
    in ``lang``: ``verdict`` is ``differs`` (a warning per group whose leads differ from
    the baseline's significantly and by 5 points or more), ``comparable``, ``unknown``
    (too few scored deals) or ``skipped`` (no model to score with, ``note`` says why)."""
    t = texts(lang)
    by, quality = ab["by"], ab.get("lead_quality")
    if quality is None:
        # In Chinese, what every reason comes to (no registry, no champion, unreadable);
        # the English page has the registry's own words.
        reason = (
            str(ab.get("lead_quality_skipped") or "").removeprefix("skipped: ")
            if lang == EN
            else t["lq_no_champion"]
        )
        return {"verdict": "skipped", "note": t["lq_skipped"].format(reason=reason)}
    base = next((r for r in quality if r["is_baseline"]), None)
    base_mean = percent(base["mean_predicted"], lang) if base else ""
    rows, warnings = [], []
    for r in quality:
        diff = r["difference"]
        rows.append(
            {
                "group": _group(r[by], by, lang),
                "deals": number(r["deals"]),
                "mean": percent(r["mean_predicted"], lang, 1),
                "difference": t["baseline"]
                if r["is_baseline"]
                else ("" if diff is None else f"{100 * diff:+.1f} {t['pts']}"),
                "interval": ""
                if r["ci_low"] is None
                else f"[{100 * r['ci_low']:+.1f}, {100 * r['ci_high']:+.1f}]",
                "p": p_value(r["p_adjusted"]),
                "note": reason_text(r["missing"], lang),
                "differs": bool(r["differs"]),
            }
        )
        if r["differs"]:
            warnings.append(
                t["lq_differs"].format(
                    group=_group(r[by], by, lang),
                    mean=percent(r["mean_predicted"], lang),
                    baseline=_group(ab["baseline"], by, lang),
                    base_mean=base_mean,
                    diff=f"{100 * diff:+.1f}",
                    p=p_clause(r["p_adjusted"]),
                )
            )
    tested = any(r["p_adjusted"] is not None for r in quality)
    verdict = "differs" if warnings else "comparable" if tested else "unknown"
    return {
        "verdict": verdict,
        "note": t["lq_note"].format(model=model_label(ab.get("lead_quality_model"), lang)),
        "rows": rows,
        "warnings": warnings,
        "summary": t["lq_comparable"]
        if verdict == "comparable"
        else t["lq_unknown"]
        if verdict == "unknown"
        else "",
    }


def comparison_html(ab: Mapping[str, Any] | None, lang: str = EN) -> str:
    """One A/B comparison (:meth:`leadscore.insights.compare.Comparison.to_records`) as
    the page's table, and whether the groups' leads were comparable at creation
    (:func:`lead_quality_context`)."""
    t = texts(lang)
    rows = []
    by = ab["by"] if ab else ""
    for r in ab["groups"] if ab else []:
        share = r["unit"] == "share"
        diff = (lambda v: f"{100 * v:+.1f} {t['pts']}") if share else (lambda v: f"{v:+.1f}")
        rows.append(
            {
                "metric": t.get(f"m_{r['metric']}", r["metric"]),
                "group": _group(r[by], by, lang),
                "deals": number(r["denominator"]),
                "value": reason_text(r["missing"], lang)
                if r["value"] is None and r["missing"]
                else _value(r["value"], r["unit"], lang),
                "difference": t["baseline"]
                if r["is_baseline"]
                else ("" if r["difference"] is None else diff(r["difference"])),
                "interval": ""
                if r["ci_low"] is None
                else f"[{diff(r['ci_low'])}, {diff(r['ci_high'])}]",
                "p": p_value(r["p_adjusted"]),
                "significant": bool(r["significant"]),
            }
        )
    return (
        _env()
        .get_template("comparison.html")
        .render(
            t=t,
            ab={
                "by": by,
                "by_label": cut_label(by, lang),
                "rows": rows,
                "empty": t["not_enough"],
                "quality": lead_quality_context(ab, lang) if ab and rows else None,
            },
        )
    )


def sections_context(overview: Any, lang: str) -> dict[str, Any] | None:
    """What the sections template shows of :class:`leadscore.insights.overview.Overview`."""
    if overview is None:
        return None
    t = texts(lang)
    funnel = [("all", _funnel_block(overview.funnel["all"], None, lang))]
    funnel += [
        (cut, _funnel_block(records, cut, lang))
        for cut, records in overview.funnel.items()
        if cut != "all"
    ]
    pipeline = [
        (stage_text(str(r["stage"]), lang), money(r["value"], lang))
        for r in overview.funnel["all"]
        if r["metric"] == _PIPELINE
    ]
    trends = [r for r in overview.trends if r["metric"] != _PIPELINE]
    latest = max((r["period_start"] for r in trends), default=None)
    charts = [
        (
            m,
            t[f"m_{m}"],
            _trend_figure([r for r in trends if r["metric"] == m], lang, t[f"m_{m}"]),
        )
        for m in TREND_CHARTS
    ]
    trend_rows = [
        {
            "metric": t[f"m_{r['metric']}"],
            "value": _value(r["value"], r["unit"], lang),
            "mom": _change_text(
                r["mom_change" if r["unit"] == "share" else "mom_pct"], r["unit"], lang
            ),
            "yoy": _change_text(
                r["yoy_change" if r["unit"] == "share" else "yoy_pct"], r["unit"], lang
            ),
        }
        for r in trends
        if r["period_start"] == latest
    ]
    reps = [(key, _reps_block(records, key, lang)) for key, records in overview.reps.items()]
    return {
        "start": date_text(overview.start, lang),
        "end": date_text(overview.end, lang),
        "min_deals": 20,
        "funnel_cuts": [(key, t.get(f"cut_{key}", key)) for key, _ in funnel],
        "funnel": funnel,
        "pipeline": pipeline,
        "stage_days": _stage_days(overview.stage_durations, lang),
        "lost_exits": _lost_exits(overview.lost_exits, lang),
        "trend_charts": charts,
        "trend_rows": trend_rows,
        "latest_month": month(latest, lang) if latest else "",
        **_forecast_context(overview.forecast, lang),
        "reps": reps,
        "channels": [
            {
                "channel": category_text(str(c["channel"]).replace("_", " "), lang),
                "similarity": percent(c["similarity"], lang),
                "leads": number(c["leads"]),
                "won": number(c["won"]),
                "detail": localised(c, "label", lang),
            }
            for c in overview.channels
        ],
        "strengths": _strengths(overview.strengths, lang),
        "compare_by": [(c, cut_label(c, lang)) for c in overview.compare_by],
        "compare_default": overview.comparison["by"] if overview.comparison else "",
        "comparison": comparison_html(overview.comparison, lang),
    }


def render_sections(
    tables: Mapping[str, pd.DataFrame] | None, overview: Any, lang: str = EN, static: bool = False
) -> str:
    """The summary and charts above the list: the insights of ``overview`` and the charts
    of the CRM's closed deals (``tables``)."""
    return (
        _env()
        .get_template("sections.html")
        .render(
            t=texts(lang),
            overview=sections_context(overview, lang),
            charts=crm_charts(tables, lang) if tables is not None else [],
            static=static,
        )
    )


# ------------------------------------------------------------------ page
@lru_cache(maxsize=1)
def _env() -> Environment:
    return Environment(
        loader=FileSystemLoader(TEMPLATES), autoescape=True, trim_blocks=True, lstrip_blocks=True
    )


@lru_cache(maxsize=1)
def _script() -> str:
    """The page's script, inline (its hash goes into the page's Content-Security-Policy)."""
    return (TEMPLATES / "leads.js").read_text(encoding="utf-8")


def drift_banner(report: Mapping[str, Any] | None, lang: str = EN) -> dict[str, Any] | None:
    """What the page's drift banner says: the alerts of the last ``leadscore monitor`` run,
    its date and the model version it checked; None when it raised none (or never ran)."""
    if not report or not report.get("alerted"):
        return None
    alerts = [str(a) for a in report.get("alerts", [])]
    return {
        "alerts": alerts[:5],
        "more": max(len(alerts) - 5, 0),
        "as_of": _day(report.get("as_of"), lang),
        "model_version": str(report.get("model_version", "")),
    }


#: The list's filters, in the page's order.
FILTERS = ("owner", "team", "channel", "segment", "status", "grade")


def render_page(
    ranked: pd.DataFrame,
    tables: Mapping[str, pd.DataFrame] | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
    last_event: pd.Timestamp | None = None,
    model: ModelPanel | None = None,
    drift: Mapping[str, Any] | None = None,
    *,
    lang: str = EN,
    overview: Any = None,
    api: str | None = None,
    first: Mapping[str, Any] | None = None,
    teams: Sequence[tuple[str, Sequence[str]]] = (),
    page_size: int | None = None,
) -> str:
    """The managers' page: the summary and charts, then the list, in ``lang``.

    Two ways. Served (``api``, the JSON API's base path): the page ships only ``first``
    (the first page of the list, :func:`~leadscore.priority.listing.lead_page`); its
    script asks ``api`` for other pages and for the sections, and plotly.js is a
    separate script at ``<api>/plotly.js``. Static (``api`` None, ``leadscore report``):
    the top ``max_rows`` rows, the sections (the CRM charts of ``tables`` and the
    insights of ``overview``) and plotly.js are all in the one file, and the script
    pages and filters the embedded rows; the page says the service has them all.

    ``drift``: the last ``leadscore monitor`` report
    (:func:`leadscore.model.drift.read_latest`); when it raised alerts, the page says so
    at the top, since every number below rests on the model it questions.

    ``last_event``: the stored export's last recorded event
    (:func:`leadscore.crm.ingest.last_recorded_event`); a list ranked as of exactly that
    moment is said to be, since a reader would otherwise take its ages as of today.
    ``model``: the panel of the model that ranked the list (none without one).
    """
    t = texts(lang)
    first_row = ranked.iloc[0] if len(ranked) else None
    counts = ranked[GROUP].value_counts()
    as_of = pd.Timestamp(first_row["as_of"]) if first_row is not None else None
    left_out = (
        {"n": int(first_row["lost_left_out"]), "days": f"{float(first_row['lost_window_days']):g}"}
        if first_row is not None and "lost_left_out" in ranked
        else None
    )
    size = page_size or LeadQuery().size
    options = filter_options(ranked, teams)
    labelled = {
        **{k: [(v, v) for v in values] for k, values in options.items()},
        **{
            k: [(v, category_text(v.replace("_", " "), lang)) for v in options[k]]
            for k in ("channel", "segment")
        },
        "status": [(s, t[f"status_{s}"]) for s in options["status"]],
    }
    config: dict[str, Any] = {
        "api": api,
        "lang": lang,
        "locale": "zh-CN" if lang == ZH else "en",
        "words": t,
        "size": size,
        "total": len(ranked),
        "deal_base": (api.rsplit("/api", 1)[0] if api else "/leads") + "/deal/",
        "plotly": f"{api}/plotly.js" if api else None,
        "teams": {name: list(owners) for name, owners in teams},
    }
    static_note = None
    if api is None:
        shown = ranked.head(max_rows)
        config["rows"] = [
            {**page_row(r, lang), "channel": str(r.get("channel") or "")}
            for r in shown.to_dict("records")
        ]
        if len(shown) < len(ranked):
            static_note = t["static_rows"].format(
                shown=number(len(shown)), total=number(len(ranked))
            )
    else:
        config["first"] = (
            dict(first)
            if first is not None
            else lead_page(ranked, LeadQuery(size=size), lang, teams)
        )
    return (
        _env()
        .get_template("leads.html")
        .render(
            t=t,
            lang=lang,
            html_lang=HTML_LANG[lang],
            number=number,
            drift=drift_banner(drift, lang),
            lost_left_out=left_out,
            reopened=bool("model" in ranked and (ranked["model"] == REOPENED_MODEL).any()),
            dormant=dormant_note(ranked),
            as_of=moment(as_of, lang) if as_of is not None else "",
            as_of_last_event=as_of is not None and last_event is not None and as_of == last_event,
            model_version=first_row["model_version"] if first_row is not None else "",
            total=len(ranked),
            counts=[
                (t[f"status_{GROUP_STATUS[g]}"], int(counts.get(g, 0))) for g in PRIORITY_GROUPS
            ],
            filters=[(k, t["team" if k == "team" else k]) for k in FILTERS if labelled[k]],
            options=labelled,
            static_note=static_note,
            sections=None if api else render_sections(tables, overview, lang, static=True),
            api=api,
            model=panel_context(model, lang) if model is not None else None,
            plotly_js=None if api else get_plotlyjs(),
            config=config,
            script=_script(),
        )
    )


def ranking_moment(ranked: pd.DataFrame, last_event: pd.Timestamp | None) -> pd.Timestamp:
    """The moment the insights are as of: the ranking's, else the export's last event, else now."""
    if len(ranked):
        return pd.Timestamp(ranked["as_of"].iloc[0])
    return last_event if last_event is not None else pd.Timestamp.now(tz="UTC")


def open_probability(ranked: pd.DataFrame) -> pd.Series:
    """The ranked open deals' win probability by deal id (the forecast's)."""
    open_ = ranked[ranked[GROUP].isin([ACTIVE, DORMANT]).to_numpy()]
    return pd.Series(open_["probability"].to_numpy(dtype=float), index=open_["deal_id"].astype(str))


def page_language(settings: Settings | None, lang: str | None = None) -> str:
    """The static page's language: ``lang``, else the setting (``auto``: English)."""
    return choose_language(settings.language if settings else "auto", None, lang)


def build_page(
    source: Path,
    crm_dir: Path,
    max_rows: int = DEFAULT_MAX_ROWS,
    settings: Settings | None = None,
    lang: str | None = None,
    overview: Any = None,
) -> str:
    """The static page from the ranked list in ``source`` and the CRM tables stored in
    ``crm_dir``, with the insights of ``overview`` (computed by the caller:
    :func:`leadscore.insights.overview.managers_overview`).

    With ``settings``, the model panel of the version that ranked the list is read from
    their registry (:func:`model_panel`); without, the page has no panel.
    """
    ranked = read_ranked(source)
    versions = ranked["model_version"].astype(str).unique() if len(ranked) else []
    return render_page(
        ranked,
        load_stored(crm_dir, CHART_TABLES),
        max_rows,
        last_recorded_event(crm_dir),
        model_panel(settings, versions[0]) if settings is not None and len(versions) else None,
        read_latest(settings.monitor_dir) if settings is not None else None,
        lang=page_language(settings, lang),
        overview=overview,
        teams=settings.teams if settings is not None else (),
    )


def write_report(
    out: Path,
    source: Path,
    crm_dir: Path,
    max_rows: int = DEFAULT_MAX_ROWS,
    settings: Settings | None = None,
    lang: str | None = None,
    overview: Any = None,
) -> Path:
    """Write the page to ``out`` as UTF-8 HTML (with the model panel given ``settings``)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    page = build_page(source, crm_dir, max_rows, settings, lang, overview)
    out.write_text(page, encoding="utf-8")
    return out
