"""The catalog in Chinese: labels, templates, stage and seniority names beside the English words.

The catalog (:mod:`leadscore.features.catalog`) phrases every feature in English; most
managers who read the list read Chinese first (issue 13). The Chinese words live here,
keyed by feature name (or by the English text a view shares, such as a missing value's
meaning), so the catalog's entries keep one language and
:mod:`leadscore.model.reasons` renders both from the same value and the same training
bin: the numbers of a Chinese reason are those of its English one, by construction.

A feature with no Chinese template here falls back to its Chinese label and value
("近 7 天电话：3"); a custom attribute keeps the label its CRM gave it (often Chinese
already). Category values the CRM writes are shown as written, except the few the
contract and the synthetic CRM name (channels, lost reasons, industries, regions, the
ranking's size bands), which read in Chinese.
"""

from __future__ import annotations

from collections.abc import Mapping

from leadscore.crm.contract import (
    ACTIVITY_TYPES,
    BUDGET,
    COMPETITOR,
    NO_DECISION,
    OTHER,
    PRICE,
    PRODUCT_FIT,
    TIMING,
)
from leadscore.features.catalog import SENIORITY_LEVELS, STAGE_LEVELS, WINDOWS_DAYS, Feature
from leadscore.features.seniority import Seniority

#: Funnel stages by ``stage_index`` (:data:`~leadscore.features.catalog.STAGE_LEVELS`).
STAGE_ZH: dict[int, str] = {0: "线索", 1: "已确认商机", 2: "方案", 3: "承诺", 4: "已关闭"}
#: Contact seniority by level (the title parser's levels).
SENIORITY_ZH: dict[int, str] = {
    Seniority.INDIVIDUAL: "普通员工",
    Seniority.SUPERVISOR: "主管或组长",
    Seniority.MANAGER: "经理",
    Seniority.DIRECTOR: "总监或部门负责人",
    Seniority.VP: "副总裁",
    Seniority.C_LEVEL: "高管、老板或总经理",
}
#: "Director or above" (:data:`~leadscore.features.catalog.SENIOR`).
SENIOR_ZH = "总监或更高级别的联系人"
#: Where a value falls among the training deals (``Phrasing.relative``).
RELATIVE_ZH = {"low": "偏低", "mid-range": "居中", "high": "偏高"}
ACTIVITY_ZH = {
    "call": "电话",
    "email": "邮件",
    "meeting": "会议",
    "visit": "拜访",
    "demo": "演示",
    "quote": "报价",
}
#: Category values the contract or the synthetic CRM name; others are shown as written.
CATEGORY_ZH: dict[str, str] = {
    "referral": "转介绍",
    "web": "官网",
    "event": "活动会展",
    "partner": "合作伙伴",
    "outbound": "主动外呼",
    "paid ads": "付费广告",
    PRICE: "价格",
    COMPETITOR: "竞争对手",
    TIMING: "时机",
    BUDGET: "预算",
    PRODUCT_FIT.replace("_", " "): "产品匹配度",
    NO_DECISION.replace("_", " "): "客户未做决定",
    OTHER: "其他原因",
    # Industries, regions and size bands (segments) of the synthetic CRM and ranking.
    "manufacturing": "制造业",
    "retail": "零售",
    "finance": "金融",
    "healthcare": "医疗健康",
    "software": "软件",
    "logistics": "物流",
    "education": "教育",
    "energy": "能源",
    "north": "北区",
    "south": "南区",
    "east": "东区",
    "west": "西区",
    "apac": "亚太区",
    "emea": "欧洲、中东和非洲区",
    "small": "小型企业",
    "mid-market": "中型企业",
    "enterprise": "大型企业",
    # What the features write for a competitor not named, or not recorded.
    "none": "无",
    "unknown": "未知",
}

LABEL_ZH: dict[str, str] = {
    "channel": "渠道",
    "competitor": "竞争对手",
    "product": "产品",
    "industry": "行业",
    "region": "区域",
    "amount": "商机金额",
    "log_amount": "商机金额（对数）",
    "employee_count": "公司规模",
    "annual_revenue": "公司年收入",
    "stage_index": "销售阶段",
    "stage_changes": "阶段变化次数",
    "backward_moves": "阶段回退次数",
    "days_in_stage": "在当前阶段的时间",
    "stalls": "停滞次数",
    "deal_age_days": "已开启时间",
    "n_contacts": "商机联系人数",
    "max_seniority": "最高级别联系人",
    "n_senior_contacts": "高级别联系人数",
    "has_economic_buyer": "经济决策人",
    "senior_met": "与高级别联系人会面",
    "n_activities": "累计活动数",
    "share_inbound": "客户发起的活动占比",
    "median_reply_hours": "回复时间中位数",
    "first_visits": "首次拜访次数",
    "followup_visits": "回访次数",
    "days_since_last_activity": "距上次活动",
    "days_since_last_inbound": "距客户上次主动联系",
    "hours_awaiting_reply": "客户等待我们回复的时间",
    "account_prior_won": "该客户此前赢单数",
    "account_prior_closed": "该客户此前关闭的商机数",
    "account_prior_win_rate": "客户赢单率",
    "owner_prior_won": "负责人此前赢单数",
    "owner_prior_closed": "负责人此前关闭的商机数",
    "owner_prior_win_rate": "负责人赢单率",
    "lost_reason": "丢单原因",
    "furthest_stage_at_loss": "丢单前到达的最远阶段",
    "days_open_at_loss": "丢单前开启的时间",
    "competitor_at_loss": "丢单时的竞争对手",
    "inbound_since_loss": "丢单后客户主动联系次数",
    "outbound_since_loss": "丢单后我们主动联系次数",
    "replies_since_loss": "丢单后回复客户次数",
    "visits_since_loss": "丢单后拜访次数",
    "senior_engaged_since_loss": "丢单后接触的最高级别联系人",
    "account_revivals_before": "该客户此前回流次数",
    "account_open_deals": "该客户其他进行中的商机",
    "days_since_loss": "距丢单",
    "days_since_engaged": "丢单后距上次联系",
}
for _w in WINDOWS_DAYS:
    LABEL_ZH[f"act_total_{_w}d"] = f"近 {_w} 天活动数"
    for _t in ACTIVITY_TYPES:
        LABEL_ZH[f"act_{_t}_{_w}d"] = f"近 {_w} 天{ACTIVITY_ZH[_t]}数"

#: The deal's value in words (``Phrasing.text``); ``{value}`` as :func:`format_value_zh`.
TEXT_ZH: dict[str, str] = {
    "channel": "{value}渠道",
    "competitor": "竞争对手：{value}",
    "industry": "{value}行业",
    "amount": "商机金额 {value}",
    "employee_count": "公司规模 {value}",
    "annual_revenue": "公司年收入 {value}",
    "stage_index": "处于{value}阶段",
    "days_in_stage": "在当前阶段已 {value}",
    "deal_age_days": "已开启 {value}",
    "max_seniority": "最高级别联系人：{value}",
    "share_inbound": "{value} 的活动由客户发起",
    "median_reply_hours": "回复时间中位数 {value}",
    "days_since_last_activity": "已 {value}没有活动",
    "days_since_last_inbound": "客户上次主动联系在 {value}前",
    "hours_awaiting_reply": "客户已等待我们回复 {value}",
    "account_prior_win_rate": "客户赢单率 {value}",
    "owner_prior_won": "负责人此前赢单：{value}",
    "owner_prior_closed": "负责人此前关闭的商机：{value}",
    "owner_prior_win_rate": "负责人赢单率 {value}",
    "lost_reason": "因{value}丢单",
    "furthest_stage_at_loss": "丢单前到达{value}阶段",
    "days_open_at_loss": "丢单前已开启 {value}",
    "competitor_at_loss": "输给{value}",
    "senior_engaged_since_loss": "丢单后接触的最高级别联系人：{value}",
    "days_since_loss": "{value}前丢单",
    "days_since_engaged": "丢单后上次联系在 {value}前",
}
#: Texts for particular values (``Phrasing.exact``), by feature.
EXACT_ZH: dict[str, Mapping[float | str, str]] = {
    "competitor": {"none": "无竞争对手", "unknown": "未记录竞争对手"},
    "has_economic_buyer": {1: "经济决策人已参与", 0: "没有经济决策人参与"},
    "senior_met": {1: f"已见过{SENIOR_ZH}", 0: f"尚未与{SENIOR_ZH}会面"},
    "hours_awaiting_reply": {0: "没有等待我们回复的客户消息"},
    "owner_prior_won": {0: "负责人此前没有赢单"},
    "owner_prior_closed": {0: "负责人此前没有关闭的商机"},
    "lost_reason": {OTHER: "因其他原因丢单", NO_DECISION: "丢单：客户未做决定"},
    "competitor_at_loss": {"none": "丢单时没有竞争对手", "unknown": "未记录竞争对手"},
}
#: Text below a bound (``Phrasing.below``), by feature.
BELOW_ZH: dict[str, str] = {"days_since_last_activity": "最近一天内有活动"}
#: Which deals a tooltip speaks of, for particular values (``Phrasing.exact_condition``).
CONDITION_EXACT_ZH: dict[str, Mapping[float | str, str]] = {
    "competitor": {"none": "没有竞争对手", "unknown": "未记录竞争对手"},
    "has_economic_buyer": {1: "有经济决策人", 0: "没有经济决策人"},
    "senior_met": {1: f"见过{SENIOR_ZH}", 0: f"未见过{SENIOR_ZH}"},
    "lost_reason": {OTHER: "因其他原因丢单", NO_DECISION: "客户未做决定而丢单"},
    "competitor_at_loss": {"none": "丢单时没有竞争对手", "unknown": "未记录竞争对手"},
}
#: What a missing value means (``Phrasing.missing``, text and condition), keyed by the
#: English words, which views share.
MISSING_ZH: dict[str, str] = {
    "No activity logged yet": "尚未记录任何活动",
    "with no activity logged yet": "尚未记录任何活动",
    "No stage history": "没有阶段记录",
    "with no stage history": "没有阶段记录",
    "No contacts on the deal yet": "商机上还没有联系人",
    "with no contacts on the deal yet": "商机上还没有联系人",
    "No earlier closed deals with the account": "该客户此前没有已关闭的商机",
    "with no earlier closed deals with the account": "该客户此前没有已关闭的商机",
    "No earlier closed deals for the owner": "负责人此前没有已关闭的商机",
    "whose owner had no earlier closed deals": "负责人此前没有已关闭的商机",
    "No loss recorded": "没有丢单记录",
    "with no loss recorded": "没有丢单记录",
    "No reply to the customer yet": "尚未回复客户",
    "with no reply to the customer yet": "尚未回复客户",
    "The customer has not reached out yet": "客户尚未主动联系",
    "where the customer had not reached out yet": "客户尚未主动联系",
    "No lost reason recorded": "未记录丢单原因",
    "with no lost reason recorded": "未记录丢单原因",
    "Furthest stage unknown": "最远阶段未知",
    "whose furthest stage is unknown": "最远阶段未知",
    "Creation date unknown": "创建日期未知",
    "whose creation date is unknown": "创建日期未知",
    "No known contact engaged since the loss": "丢单后没有已知联系人参与",
    "with no known contact engaged": "丢单后没有已知联系人参与",
    "No account on the deal": "商机没有关联客户",
    "with no account on the deal": "商机没有关联客户",
    "No contact since the loss": "丢单后没有联系",
    "with no contact since the loss": "丢单后没有联系",
}


def label_zh(feature: Feature) -> str:
    """The feature's short name in Chinese; a custom attribute's own label."""
    return LABEL_ZH.get(feature.name, feature.label)


def level_zh(feature: Feature, value: float) -> str:
    """An ordinal value's name in Chinese (the English name on a scale without one)."""
    assert feature.levels is not None
    for levels, names in ((STAGE_LEVELS, STAGE_ZH), (SENIORITY_LEVELS, SENIORITY_ZH)):
        # Equal, not identical: a catalog unpickled in a Spark worker holds copies.
        if feature.levels.names == levels.names:
            return names.get(int(value), feature.levels.name(value))
    return feature.levels.name(value)


def stage_zh(stage: str) -> str:
    """A funnel stage's name ("qualified") in Chinese; an unknown stage as written."""
    index = {name: i for i, name in STAGE_LEVELS.names.items()}.get(stage)
    return STAGE_ZH.get(index, stage) if index is not None else stage


def category_zh(shown: str) -> str:
    """A category as shown ("paid ads") in Chinese when known, else as written."""
    return CATEGORY_ZH.get(shown.lower().replace("_", " "), shown)


def missing_zh(english: str, feature: Feature) -> str:
    """A missing value's meaning in Chinese, from its English words."""
    return MISSING_ZH.get(english, f"未记录{label_zh(feature)}")
