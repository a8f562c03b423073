"""The managers' page in English and Chinese: which language, its words, its numbers and dates.

Its users read Chinese first, so every fixed word of the page has both languages here
(:data:`TEXT`), one table the template and the page's script both read, so a word
missing in one language is a test failure, not an English word on a Chinese page.

The language is chosen in this order: ``?lang=`` on the request, the setting
(``LEADSCORE_LANGUAGE``: ``en`` or ``zh``), and, when the setting is ``auto``, the
browser's ``Accept-Language`` (its first English or Chinese entry by weight); English
when nothing decides. Numbers have thousands separators in both; a Chinese amount of
10,000 or more is in 万 (ten thousands), as Chinese readers count money. Dates are ISO
(2025-06-01) in English and 2025年6月1日 in Chinese.

Texts that come with the data (a flag's ``text_zh``, a next step's ``next_step_zh``, a
reason's ``text_zh``) are chosen by :func:`localised`: the Chinese when there is one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import pandas as pd

from leadscore.config import AUTO_LANGUAGE, LANGUAGES
from leadscore.features.catalog_zh import category_zh, stage_zh

EN, ZH = LANGUAGES
#: ``<html lang>`` of each language.
HTML_LANG = {EN: "en", ZH: "zh-Hans"}
#: Each language's own name, for the link that switches to it.
LANGUAGE_NAMES = {EN: "English", ZH: "中文"}


def accepted_language(header: str | None) -> str | None:
    """The first of our languages in an ``Accept-Language`` header, by weight; None: none."""
    best: tuple[float, int, str] | None = None
    for i, part in enumerate((header or "").split(",")):
        tag, _, params = part.strip().partition(";")
        code = tag.strip().lower().split("-")[0]
        if code not in LANGUAGES:
            continue
        q = 1.0
        for p in params.split(";"):
            k, _, v = p.strip().partition("=")
            if k == "q":
                try:
                    q = float(v)
                except ValueError:
                    q = 0.0
        if q > 0 and (best is None or (q, -i) > (best[0], -best[1])):
            best = (q, i, code)
    return best[2] if best else None


def choose_language(
    setting: str = AUTO_LANGUAGE, accept: str | None = None, asked: str | None = None
) -> str:
    """The page's language: ``asked`` (``?lang=``) when it is one of ours, else the setting,
    else (``auto``) the browser's ``Accept-Language``, else English."""
    for v in (asked, setting):
        code = (v or "").strip().lower().split("-")[0]
        if code in LANGUAGES:
            return code
    return accepted_language(accept) or EN


# ---------------------------------------------------------------- numbers and dates
def number(v: Any, lang: str = EN, digits: int = 0) -> str:
    """``12,345`` in both languages; empty for a missing value."""
    if v is None or (isinstance(v, float) and math.isnan(v)) or pd.isna(v):
        return ""
    return f"{float(v):,.{digits}f}"


def money(v: Any, lang: str = EN) -> str:
    """An amount: ``123,456`` in English; ``12.35万`` in Chinese from 10,000 up."""
    if v is None or pd.isna(v):
        return ""
    x = float(v)
    if lang == ZH and abs(x) >= 10_000:
        return f"{x / 10_000:,.2f}万"
    return f"{x:,.0f}"


def p_value(p: Any) -> str:
    """A p-value as papers write it, the same in both languages: ``0.0123``, ``<0.001``
    (never ``8.91e-05``, which no manager reads)."""
    if p is None or pd.isna(p):
        return ""
    return "<0.001" if float(p) < 0.001 else f"{float(p):.3g}"


def p_clause(p: Any) -> str:
    """A p-value in a sentence: ``p = 0.0123``, ``p < 0.001``."""
    text = p_value(p)
    return f"p {text[0]} {text[1:]}" if text.startswith("<") else f"p = {text}"


def percent(p: Any, lang: str = EN, digits: int = 0) -> str:
    if p is None or pd.isna(p):
        return ""
    return f"{float(p):.{digits}%}"


def date(t: Any, lang: str = EN) -> str:
    """``2025-06-01`` in English, ``2025年6月1日`` in Chinese."""
    if t is None or pd.isna(t):
        return ""
    ts = pd.Timestamp(t)
    return f"{ts.year}年{ts.month}月{ts.day}日" if lang == ZH else f"{ts:%Y-%m-%d}"


def month(t: Any, lang: str = EN) -> str:
    """``2025-06`` in English, ``2025年6月`` in Chinese."""
    ts = pd.Timestamp(t)
    return f"{ts.year}年{ts.month}月" if lang == ZH else f"{ts:%Y-%m}"


def moment(t: Any, lang: str = EN) -> str:
    """A moment in UTC: ``2025-06-01 09:30 UTC`` / ``2025年6月1日 09:30 UTC``."""
    if t is None or pd.isna(t):
        return ""
    ts = pd.Timestamp(t)
    return f"{date(ts, lang)} {ts:%H:%M} UTC"


def localised(item: Mapping[str, Any], key: str, lang: str) -> str:
    """``item[key]``, or its Chinese ``item[key + "_zh"]`` on a Chinese page when present."""
    if lang == ZH and item.get(f"{key}_zh"):
        return str(item[f"{key}_zh"])
    return str(item.get(key) or "")


#: What a row's number means (the ranked list's ``meaning``, written in English by
#: ``leadscore rank``), in Chinese: each English phrase and its Chinese, applied in
#: order. The list stores the English only, so a list ranked before any change of
#: these words still reads; :func:`meaning_text` keeps the English when a phrase is
#: not known here rather than showing half a translation.
MEANING_ZH: tuple[tuple[str, str], ...] = (
    (r"^chance to win this deal", "赢得该商机的概率"),
    (r"^chance of a win within (\d+) months?", r"\1 个月内赢单的概率"),
    (r"^chance of a win within ([\d.]+) days", r"\1 天内赢单的概率"),
    (r" if re-opened now", "（如现在重新打开）"),
    (r" if re-engaged now", "（如现在重新跟进）"),
    (r"; not checked against what lost deals do", "；未经丢单实际走向的检验"),
    (r"; not checked against what dormant deals do", "；未经休眠商机实际走向的检验"),
    (r" \(win model calibrated on dormant deals\)", "（按休眠商机校准的赢单模型）"),
    (r" \(win model, checked on dormant deals\)", "（赢单模型，已在休眠商机上检验）"),
    (
        r"^rough prior: the win rate of past deals from this stage( and channel)?; ",
        "粗略先验：同一阶段{channel}过往商机的赢单率；",
    ),
    (
        r"a trained model takes over once it can be trained, from (\d+) won and (\d+) lost "
        r"closed deals \(now (\d+) won, (\d+) lost\), and passes the promotion gate",
        r"当已关闭商机达到 \1 个赢单和 \2 个丢单（目前 \3 个赢单、\4 个丢单）、可以训练模型"
        r"且通过晋级门槛后，由训练好的模型接替",
    ),
)


def meaning_text(meaning: str, lang: str = EN) -> str:
    """A row's ``meaning`` in ``lang``: in Chinese by :data:`MEANING_ZH`, else (or when
    some words are not known there) as written."""
    if lang != ZH or not meaning:
        return meaning
    out = meaning
    for pattern, zh in MEANING_ZH:

        def words(m: re.Match[str], zh: str = zh) -> str:
            # A fallback's "and channel" is a group; every other phrase a plain template.
            return (
                zh.format(channel="和渠道" if m[1] else "") if "{channel}" in zh else m.expand(zh)
            )

        out = re.sub(pattern, words, out)
    return meaning if re.search(r"[A-Za-z]{2,}", out) else out


def stage_text(stage: str, lang: str = EN) -> str:
    """A funnel stage's name in ``lang``."""
    return stage_zh(stage) if lang == ZH else stage


def category_text(value: Any, lang: str = EN) -> str:
    """A category the CRM writes (channel, industry, region, size band, competitor) in
    ``lang``: in Chinese when :data:`~leadscore.features.catalog_zh.CATEGORY_ZH` knows it,
    else as written (a CRM's own values are its data)."""
    text = str(value)
    return category_zh(text) if lang == ZH else text


@lru_cache(maxsize=4)
def _patterns(prefix: str) -> tuple[tuple[re.Pattern[str], str], ...]:
    """Each ``prefix`` entry of :data:`TEXT` as a pattern over its English, a named group
    per placeholder."""

    def pattern(english: str) -> re.Pattern[str]:
        parts = re.split(r"\{(\w+)\}", english)
        return re.compile(
            "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>.+?)" for i, p in enumerate(parts))
            + r"\Z"
        )

    return tuple((pattern(en), key) for key, (en, _) in TEXT.items() if key.startswith(prefix))


def _in_chinese(english: str, prefix: str) -> str | None:
    """``english`` through the first ``prefix`` entry of :data:`TEXT` it matches, in
    Chinese (a date placeholder as a Chinese date, others as categories); None: none."""
    for pattern, key in _patterns(prefix):
        found = pattern.match(english)
        if found is not None:
            return TEXT[key][1].format(
                **{
                    k: date(v, ZH) if k == "date" else category_text(v, ZH)
                    for k, v in found.groupdict().items()
                }
            )
    return None


def model_text(model: str, lang: str = EN) -> str:
    """Which model scored a row (the ranked list's ``model``, written in English by
    ``leadscore rank``) in ``lang``: a ``model_`` entry of :data:`TEXT`, else as written."""
    if lang != ZH or not model:
        return model
    return _in_chinese(model, "model_") or model


def reason_text(reason: str | None, lang: str = EN) -> str:
    """Why an insight has no number (its ``missing``, written in English by
    :mod:`leadscore.insights`, several reasons joined by "; "), in ``lang``.

    Insights never import the page's words (they sit beside this package), so each
    reason they can give is a ``why_`` entry of :data:`TEXT` whose English is the very
    text they write, placeholders for the figures; a Chinese page reads each reason
    through it, dates in its own format. A reason no entry knows is not shown in English
    on a Chinese page: it says the value could not be computed (the English page has why).
    """
    if not reason:
        return ""
    if lang != ZH:
        return reason
    return "；".join(
        _in_chinese(part, "why_") or TEXT["why_other"][1] for part in reason.split("; ")
    )


# ---------------------------------------------------------------- the page's words
#: Every fixed word of the page: key -> (English, Chinese).
TEXT: dict[str, tuple[str, str]] = {
    "title": ("Lead priorities", "商机优先级"),
    "ranked": (
        "Ranked {total} deals as of {as_of} with model version {version}:",
        "排名时点 {as_of}，共 {total} 个商机，模型版本 {version}：",
    ),
    "ranked_by": (
        "Ranked by expected value (win probability × amount) unless re-sorted below.",
        "默认按预期价值（赢单概率 × 金额）排序，可在下方重新排序。",
    ),
    "language": ("Language:", "语言："),
    "summary": ("Summary", "概览"),
    "funnel": ("Funnel metrics", "漏斗指标"),
    "funnel_note": (
        "The eight funnel metrics of the export's last 12 months ({start} to {end}); conversion follows the deals created in the period, win rate, cycle and size the deals closed in it, the pipeline is the one open at the end. Grey: fewer than {min} deals behind the value.",
        "导出数据最近 12 个月（{start} 至 {end}）的八项漏斗指标：转化率按期内新建商机计算，赢单率、周期和金额按期内关闭的商机计算，管道为期末仍未关闭的商机。灰色：该数值所依据的商机少于 {min} 个。",
    ),
    "cut": ("Cut", "维度"),
    "cut_all": ("Overall", "整体"),
    "cut_owner_id": ("By owner", "按负责人"),
    "cut_channel": ("By channel", "按渠道"),
    "cut_industry": ("By industry", "按行业"),
    "cut_size_band": ("By size band", "按规模"),
    "metric": ("Metric", "指标"),
    "value": ("Value", "数值"),
    "deals_behind": ("Deals behind it", "依据商机数"),
    "group": ("Group", "分组"),
    "m_lead_to_opportunity": ("Lead → opportunity", "线索 → 商机"),
    "m_opportunity_to_qualified": ("Opportunity → qualified", "商机 → 合格商机"),
    "m_lead_to_qualified": ("Lead → qualified", "线索 → 合格商机"),
    "m_qualified_win_rate": ("Qualified win rate", "合格商机赢单率"),
    "m_sales_cycle_days": ("Sales cycle (days)", "销售周期（天）"),
    "m_qualified_per_win": ("Qualified opportunities per win", "每次赢单所需合格商机"),
    "m_average_won_amount": ("Average won deal", "平均赢单金额"),
    "m_open_pipeline_value": ("Open pipeline", "在途管道金额"),
    "stage_days": ("Days in each stage", "各阶段停留天数"),
    "stage_days_note": (
        "Days the deals closed in the period spent in each open stage, won apart from lost: the median, and in brackets the middle half of the deals (25th to 75th percentile). Grey: fewer than {min} deals behind the value.",
        "期内关闭的商机在各未关闭阶段停留的天数，赢单与输单分开：中位数，括号内为中间一半商机的范围（第 25 至第 75 百分位）。灰色：该数值所依据的商机少于 {min} 个。",
    ),
    "won_days": ("Won: median days", "赢单：中位天数"),
    "lost_days": ("Lost: median days", "输单：中位天数"),
    "won_deals": ("Won deals", "赢单数"),
    "lost_deals": ("Lost deals", "输单数"),
    "lost_exits": ("Where lost deals leave the funnel", "输单流失阶段"),
    "lost_exits_note": (
        "The last open stage of each deal lost in the period, and its share of them.",
        "期内输单的商机最后所处的未关闭阶段，及其占全部输单的比例。",
    ),
    "share_of_lost": ("Share of lost", "占输单比例"),
    "stage_unknown": ("No open stage recorded", "未记录阶段"),
    "m_win_rate": ("Win rate", "赢单率"),
    "m_qualified_to_win": ("Qualified → won", "合格商机 → 赢单"),
    "ax_channel": ("channel", "渠道"),
    "ax_competitor": ("main competitor", "主要竞争对手"),
    "ax_seniority": ("most senior contact", "最高级别联系人"),
    "ax_cycle": ("cycle length (days)", "周期长度（天）"),
    "top_groups": (
        "The {shown} largest of {n} groups by deals created.",
        "按新建商机数显示最大的 {shown} 组（共 {n} 组）。",
    ),
    "trends": ("Trends by month", "月度趋势"),
    "trends_note": (
        "Each metric by whole month (the month in progress is left out); MoM: change on the month before, YoY: on the same month a year before (points for a rate).",
        "各指标按完整月份变化（不含进行中的当月）；环比：与上月相比，同比：与去年同月相比（比率以百分点计）。",
    ),
    "month": ("Month", "月份"),
    "latest": ("Latest month ({month})", "最近一月（{month}）"),
    "mom": ("MoM", "环比"),
    "yoy": ("YoY", "同比"),
    "forecast": ("Forecast by month", "按月预测"),
    "forecast_note": (
        "Expected revenue of the {deals} deals open at {as_of}: probability × amount, spread over the months each may close in (a model of time to close learned from past wins). Probabilities: {method}.",
        "截至 {as_of} 的 {deals} 个在途商机的预期收入：概率 × 金额，按各商机可能关闭的月份分摊（由历史赢单学得的成交时间模型）。概率来源：{method}。",
    ),
    "forecast_ranked": (
        "the ranked list's (the win model), the stage win rate where a deal is not listed",
        "排名列表中的赢单概率（赢单模型），未列出的商机用阶段赢单率",
    ),
    "forecast_stage": ("the stage win rate", "阶段赢单率"),
    "expected_revenue": ("Expected revenue", "预期收入"),
    "later": ("Later", "更晚"),
    "total": ("Total", "合计"),
    "forecast_by_rep": ("Expected revenue by rep", "各销售的预期收入"),
    "forecast_top": (
        "The {shown} reps of {n} with the most expected revenue.",
        "显示预期收入最高的 {shown} 位销售（共 {n} 位）。",
    ),
    "backtest": (
        "Backtest: rebuilt at {cuts} past month starts from what was known then, the forecast of the next {horizon} months missed what was won by {wape} (WAPE, stage win rates; the naive reference: {naive}).",
        "回测：在过去 {cuts} 个月初按当时已知信息重建预测，未来 {horizon} 个月的预测与实际赢单的误差为 {wape}（WAPE，阶段赢单率；朴素基准：{naive}）。",
    ),
    "backtest_month": ("month {h}: {wape}", "第 {h} 个月 {wape}"),
    "backtest_none": (
        "Backtest: not enough history before the last months.",
        "回测：历史数据不足。",
    ),
    "reps": ("Reps' five numbers against the team", "销售的五项数字与团队对比"),
    "reps_note": (
        "Each rep's numbers in {period}; in brackets the team's per rep ({reps} reps).",
        "每位销售在 {period} 的数字；括号内为团队人均（{reps} 人）。",
    ),
    "rep": ("Rep", "销售"),
    "every_month": ("Latest month", "最近一月"),
    "every_week": ("Latest week", "最近一周"),
    "week_of": ("the week of {day}", "{day}起的一周"),
    "n_closed": ("Won", "赢单"),
    "n_committed": ("Committed", "承诺"),
    "n_opportunities": ("Opportunities", "商机"),
    "n_leads": ("Leads", "线索"),
    "n_first_visits": ("First visits", "首次拜访"),
    "n_followup_visits": ("Follow-up visits", "跟进拜访"),
    "team": ("Team", "团队"),
    "channels": ("Channel quality", "渠道质量"),
    "channels_note": (
        "How closely each lead source's leads of the last 12 months look like the customers won (industry, size, region, the most senior contact reached, custom attributes; 100%: the same profile), most alike first, with the attribute that differs most.",
        "各线索来源最近 12 个月的线索与赢单客户的相似程度（行业、规模、区域、接触到的最高级别联系人及自定义属性；100% 表示完全相同），按相似度从高到低排列，并给出差异最大的属性。",
    ),
    "similarity": ("Like the won customers", "与赢单客户的相似度"),
    "detail": ("Detail", "详情"),
    "strengths": ("Reps' strengths and weaknesses", "销售的强项与弱项"),
    "strengths_note": (
        "Where a rep converts better or worse than the rest of the team beyond the 95% interval, by stage and deal type, with the deals behind each (deals closed in the last 12 months; the reps who closed the most).",
        "销售在哪些阶段和商机类型上的转化明显优于或弱于团队其他人（超出 95% 区间），并给出所依据的商机数（最近 12 个月关闭的商机；关闭商机最多的销售）。",
    ),
    "strengths_none": (
        "No rep converts clearly better or worse than the rest of the team anywhere yet.",
        "目前没有销售在任何方面明显优于或弱于团队其他人。",
    ),
    "better": ("Better", "强项"),
    "worse": ("Worse", "弱项"),
    "ab": ("A/B comparison", "A/B 对比"),
    "ab_note": (
        "Groups of one attribute against the largest on win rate, cycle length and stage conversion, in the export's last 12 months, with the 95% interval and a Holm-corrected p-value.",
        "按某一属性分组，与最大的一组比较赢单率、周期和阶段转化（导出数据最近 12 个月），给出 95% 区间和 Holm 校正后的 p 值。",
    ),
    "ab_by": ("Compare by", "比较维度"),
    "ab_needs_service": (
        "Other attributes are compared by the service (open the page at /leads).",
        "其他属性的比较需要服务（请在 /leads 打开本页）。",
    ),
    "baseline": ("baseline", "基准"),
    "difference": ("Difference", "差异"),
    "interval": ("95% interval", "95% 区间"),
    "p_adjusted": ("p (Holm)", "p 值（Holm）"),
    "not_enough": ("not enough deals yet", "商机数量尚不足"),
    # Why an insight has no number: the English is the very text leadscore.insights
    # writes (placeholders for its figures), read by reason_text on a Chinese page.
    "why_created": ("no deals created in the period", "期内没有新建商机"),
    "why_opportunities": (
        "no opportunities among the deals created in the period",
        "期内新建的商机中没有进入商机阶段的",
    ),
    "why_qualified_closed": (
        "no qualified opportunities closed in the period",
        "期内没有关闭的合格商机",
    ),
    "why_won": ("no deals won in the period", "期内没有赢单"),
    "why_won_created": ("no won deal has a creation time", "赢单均无创建时间"),
    "why_won_amount": ("no won deal has an amount", "赢单均无金额"),
    "why_currencies": ("amounts in {n} currencies", "金额涉及 {n} 种货币，无法相加"),
    "why_such_closed": ("no such deals closed in the period", "期内没有此类商机关闭"),
    "why_lost": ("no deals lost in the period", "期内没有丢单"),
    "why_column": ("no {column} column in {table}", "{table} 表中没有 {column} 列"),
    "why_table": ("no {table} table", "导出数据中没有 {table} 表"),
    "why_time_to_close": (
        "no deal won before {date} was open {months} to {later} months earlier: no time to close to learn from",
        "{date}之前赢单的商机中，没有在那之前 {months} 至 {later} 个月时仍在进行的：没有可供学习的成交时间",
    ),
    "why_short": (
        "not enough deals yet: {n} of the {min} needed",
        "商机数量尚不足：{n} 个，需要 {min} 个",
    ),
    "why_short_baseline": (
        "not enough deals yet in the baseline {baseline}: {n} of the {min} needed",
        "基准组 {baseline} 的商机数量尚不足：{n} 个，需要 {min} 个",
    ),
    "why_short_groups": (
        "not enough deals yet: fewer than two groups with {min} deals",
        "商机数量尚不足：达到 {min} 个商机的组少于两个",
    ),
    "why_short_scored": (
        "not enough deals yet: fewer than two groups with {min} scored deals",
        "商机数量尚不足：达到 {min} 个已评分商机的组少于两个",
    ),
    "why_other": ("cannot be computed", "无法计算（原因见英文页面）"),
    # Which model scored a row: the English is the ranked list's ``model`` column.
    "model_win": ("win", "赢单模型"),
    "model_revival": ("revival", "复活模型"),
    "model_dormant": ("win, dormant calibration", "赢单模型（休眠商机校准）"),
    "model_reopened": (
        "win as if re-opened (no revival model)",
        "赢单模型，按重新打开评分（未注册复活模型）",
    ),
    "model_fallback": (
        "fallback (stage rates, {n} closed deals)",
        "回退估计（阶段赢单率，{n} 个已关闭商机）",
    ),
    "model_fallback_channel": (
        "fallback (stage and channel rates, {n} closed deals)",
        "回退估计（阶段与渠道赢单率，{n} 个已关闭商机）",
    ),
    "industry": ("Industry", "行业"),
    "size_band": ("Size band", "规模"),
    "competitor": ("Competitor", "竞争对手"),
    "region": ("Region", "区域"),
    "lq_heading": ("Lead quality at creation", "创建时的线索质量"),
    "lq_note": (
        "A strategy handed better leads wins more whatever it does: each group's mean win probability at creation, by {model}, against the baseline's (Welch's t-test, Holm-corrected).",
        "分到更好线索的策略无论怎么做都会赢得更多：各组商机在创建时的平均赢单概率（{model}），与基准组比较（Welch t 检验，Holm 校正）。",
    ),
    "lq_model": ("{name} version {version}", "{name} 版本 {version}"),
    "lq_model_not_better": (
        "{name} version {version}, not better than baseline",
        "{name} 版本 {version}，该模型并不优于基线",
    ),
    "lq_model_unchecked": (
        "{name} version {version}, not checked against the baselines",
        "{name} 版本 {version}，该模型未与基线比较",
    ),
    "lq_no_champion": ("no champion model to score with", "没有可用于评分的冠军模型"),
    "lq_deals": ("Scored deals", "已评分商机"),
    "lq_mean": ("Mean win probability at creation", "创建时平均赢单概率"),
    "lq_differs": (
        "Lead quality differs: the deals of {group} had a mean win probability at creation of {mean} against {base_mean} for {baseline} ({diff} points, {p}); a difference in outcomes may come from the leads, not the strategy.",
        "线索质量不同：{group} 的商机创建时平均赢单概率为 {mean}，基准组 {baseline} 为 {base_mean}（相差 {diff} 个百分点，{p}）；结果的差异可能来自线索，而非策略。",
    ),
    "lq_comparable": (
        "The groups' leads were comparable at creation: no group's mean win probability differs from the baseline's significantly by 5 points or more.",
        "各组线索在创建时质量相当：没有任何一组的平均赢单概率与基准组存在显著且达 5 个百分点以上的差异。",
    ),
    "lq_unknown": (
        "Lead quality not judged: too few scored deals in the groups.",
        "无法判断线索质量：各组已评分的商机太少。",
    ),
    "lq_skipped": (
        "Lead quality at creation not checked: {reason}.",
        "未检查创建时的线索质量：{reason}。",
    ),
    "list": ("Deals to work", "待跟进商机"),
    "owner": ("Owner", "负责人"),
    "channel": ("Channel", "渠道"),
    "segment": ("Segment", "细分"),
    "status": ("Status", "状态"),
    "grade": ("Grade", "等级"),
    "all": ("all", "全部"),
    "status_open": ("open (active and dormant)", "进行中（活跃和休眠）"),
    "status_active": ("active", "活跃"),
    "status_dormant": ("dormant", "休眠"),
    "status_lost": ("recently lost", "近期丢单"),
    "status_title": (
        "Why a deal is listed: active (open, recent activity), dormant (open, quiet), recently lost (scored by the revival model, or as if re-opened when none is registered)",
        "商机列出的原因：活跃（进行中，近期有跟进）、休眠（进行中，长期无跟进）、近期丢单（由复活模型评分；未注册时按重新打开评分）",
    ),
    "shown": (
        "{matched} of {total} listed deals; page {page} of {pages}.",
        "共 {total} 个商机，筛选出 {matched} 个；第 {page} / {pages} 页。",
    ),
    "static_rows": (
        "This file holds the top {shown} of {total} deals; the service pages through all of them.",
        "此文件包含前 {shown} 个商机（共 {total} 个）；服务可分页浏览全部商机。",
    ),
    "sort_hint": (
        "Click a column to sort; hover a reason for the data behind it.",
        "点击列标题排序；将鼠标悬停在原因上可查看其依据。",
    ),
    "previous": ("Previous", "上一页"),
    "next": ("Next", "下一页"),
    "loading": ("Loading…", "加载中…"),
    "no_rows": ("No deal matches these filters.", "没有符合筛选条件的商机。"),
    "col_deal": ("Deal", "商机"),
    "col_account": ("Account", "客户"),
    "col_owner": ("Owner", "负责人"),
    "col_group": ("Group", "分组"),
    "col_win": ("Win", "赢单率"),
    "col_grade": ("Grade", "等级"),
    "col_amount": ("Amount", "金额"),
    "col_ev": ("Exp. value", "预期价值"),
    "col_change": ("Change", "变化"),
    "col_trend": ("Trend", "趋势"),
    "col_why": ("Why", "原因"),
    "col_risks": ("Risks", "风险"),
    "col_next": ("Next step", "下一步"),
    "pts": ("pts", "个百分点"),
    "charts": ("What wins, from the CRM's closed deals", "赢单因素（来自 CRM 已关闭商机）"),
    "ch_none": ("No closed deals yet", "尚无已关闭的商机"),
    "ch_none_note": (
        "The charts need won and lost deals in the CRM.",
        "图表需要 CRM 中的赢单和丢单。",
    ),
    "ch_absent": ("Not in the CRM export.", "CRM 导出数据中没有此项。"),
    "ch_funnel": ("Funnel of closed deals", "已关闭商机的漏斗"),
    "ch_funnel_note": (
        "Deals by the furthest stage they reached; the percentage is the conversion from the stage before.",
        "按商机到达的最远阶段统计；百分比为相对上一阶段的转化率。",
    ),
    "ch_channel": ("Win rate by channel", "各渠道赢单率"),
    "ch_competitor": ("Win rate by competitor", "各竞争对手下的赢单率"),
    "ch_competitor_note": (
        "'none': no competitor; 'unknown': not recorded.",
        "“无”：无竞争对手；“未知”：未记录。",
    ),
    "ch_seniority": ("Win rate by the most senior contact", "按最高级别联系人的赢单率"),
    "ch_seniority_note": (
        "Seniority read from job titles in English or Chinese.",
        "级别由中英文职位名称识别。",
    ),
    "ch_cycle": ("Win rate by cycle length", "按周期长度的赢单率"),
    "ch_cycle_note": ("Days from creation to close.", "从创建到关闭的天数。"),
    "ch_all_deals": (
        "Dotted line: all {n} closed deals, {rate} won.",
        "虚线：全部 {n} 个已关闭商机，赢单率 {rate}。",
    ),
    "win_rate": ("win rate", "赢单率"),
    "ch_deals": ("n={n}", "{n} 个"),
    "ch_won": ("won", "赢单"),
    "ch_other": ("(other)", "（其他）"),
    "ch_not_recorded": ("(not recorded)", "（未记录）"),
    "ch_no_contacts": ("no contacts", "无联系人"),
    "ch_title_unknown": ("title not recognised", "职位无法识别"),
    "model_panel": ("The model behind these scores", "评分所用的模型"),
    "scored_by": ("model: {model}", "评分模型：{model}"),
    # The model panel (leadscore.priority.report.panel_context): labels, and sentences
    # whose figures come from the quality summary training stored in the model.
    "mp_version_note": ("Model version {version}: {note}.", "模型版本 {version}：{note}。"),
    "mp_no_quality": (
        "no quality summary: trained before this version",
        "没有质量摘要：该模型训练于质量摘要功能加入之前",
    ),
    "mp_unreadable": (
        "not readable from the model registry ({error})",
        "无法从模型注册表读取（{error}）",
    ),
    "mp_summary": (
        "Version {version}, trained {trained_at} on deals from {window}; tested on {test}.",
        "版本 {version}，训练于 {trained_at}，训练数据为 {window} 的商机；测试集：{test}。",
    ),
    "mp_not_recorded": ("not recorded", "未记录"),
    "mp_window": ("{start} to {end}", "{start} 至 {end}"),
    "mp_test": (
        "{deals} test deals ({won} won, {lost} lost), {split}",
        "{deals} 个测试商机（{won} 个赢单，{lost} 个丢单），{split}",
    ),
    "mp_split_time": ("time split", "按时间切分"),
    "mp_split_random": ("random split", "随机切分"),
    "mp_split_other": ("{method} split", "按 {method} 切分"),
    "mp_cross_validation": ("{how}", "交叉验证：{how}"),
    "mp_per_deal": ("Per deal, scored", "按商机，评分时点"),
    "mp_deals": ("Deals", "商机数"),
    "mp_roc_auc": ("ROC AUC [95% interval]", "ROC AUC [95% 区间]"),
    "mp_log_loss": ("Log loss", "对数损失"),
    "mp_ece": ("ECE", "ECE（期望校准误差）"),
    "mp_lift": ("Lift, top 10%", "前 10% 提升度"),
    "mp_at_creation": ("at creation", "创建时"),
    "mp_at_age": ("at {days} days", "第 {days} 天"),
    "mp_curve_title": (
        "Calibration: observed win rate against predicted",
        "校准：实际赢单率与预测赢单率对比",
    ),
    "mp_curve_axis": ("observed win rate against predicted", "实际赢单率与预测对比"),
    "mp_curve_dot": (
        "predicted {p}, won {r} of {n} deals",
        "预测 {p}，{n} 个商机中赢单 {r}",
    ),
    "mp_curve_note": (
        "Calibration on {n} test deals scored {when}: a dot per probability band, sized by its deals; on the dashed line, predicted and observed agree.",
        "基于 {n} 个测试商机（{when}评分）的校准：每个概率区间一个点，点的大小表示商机数；落在虚线上表示预测与实际一致。",
    ),
    "mp_baselines_note": (
        "Compared with the baselines, per deal (model minus baseline, 95% interval):",
        "与基线比较，按商机计算（模型减基线，95% 区间）：",
    ),
    "mp_baseline": (
        "{verdict} than {baseline} {when}: {figure}",
        "{when}，模型{verdict}{baseline}：{figure}",
    ),
    "mp_baseline_undefined": (
        "no comparison with {baseline} {when}: ROC AUC is undefined (the test deals have one outcome only)",
        "{when}无法与{baseline}比较：ROC AUC 无定义（测试商机只有一种结果）",
    ),
    "mp_no_interval": (
        "ROC AUC {difference} (no interval: too few deals to resample)",
        "ROC AUC {difference}（无区间：商机太少，无法重抽样）",
    ),
    "mp_verdict_better": ("better", "优于"),
    "mp_verdict_not_better": ("not better", "不优于"),
    "mp_verdict_worse": ("worse", "差于"),
    "mp_verdict_unknown": ("unknown", "无法判断是否优于"),
    "mp_calibration": ("Calibration {reason}.", "校准方法：{reason}。"),
    "mp_calibration_chosen": (
        "Calibration: {method}; out-of-sample log loss {losses}.",
        "校准方法：{method}；样本外对数损失 {losses}。",
    ),
    "mp_calibration_ece": ("ECE {eces}.", "期望校准误差 {eces}。"),
    "mp_method_none": ("none", "不校准"),
    "mp_method_platt": ("Platt", "Platt 缩放"),
    "mp_method_isotonic": ("isotonic", "保序回归"),
    "mp_features": ("Strongest features", "最重要的特征"),
    "mp_gain": ("Gain", "增益占比"),
    "no_data": ("No CRM tables to compute this from.", "没有可用于计算的 CRM 数据。"),
    # One deal's timeline (leadscore.priority.timeline); its facts reuse the list's words.
    "tl_title": ("Deal {deal} — timeline", "商机 {deal} — 时间线"),
    "tl_back": ("Back to the list", "返回列表"),
    "tl_when": ("When (UTC)", "时间（UTC）"),
    "tl_what": ("What happened", "事件"),
    "tl_undated": ("undated", "无日期"),
    "tl_unknown_title": ("Unknown deal", "未知商机"),
    "tl_unknown": (
        "No deal {deal} in the stored CRM. Check the id in the list at /leads/.",
        "已存储的 CRM 中没有商机 {deal}。请在 /leads/ 的列表中核对商机编号。",
    ),
    "tl_none": ("Nothing recorded for this deal yet.", "该商机还没有任何记录。"),
    "stage": ("Stage", "阶段"),
    "product": ("Product", "产品"),
    "latest_score": ("Latest score", "最新评分"),
    "last_activity": ("Last activity", "上次活动"),
    "tl_kind_created": ("created", "创建"),
    "tl_kind_contact": ("contact", "联系人"),
    "tl_kind_stage": ("stage", "阶段"),
    "tl_kind_activity": ("activity", "活动"),
    "tl_kind_closed": ("closed", "关闭"),
    "tl_kind_score": ("score", "评分"),
}


def texts(lang: str) -> dict[str, str]:
    """The page's words in ``lang``."""
    i = LANGUAGES.index(lang)
    return {key: pair[i] for key, pair in TEXT.items()}
