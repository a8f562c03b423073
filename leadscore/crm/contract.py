"""The CRM export contract: which tables and columns we accept, and what they mean.

This module is the single source of truth for the contract. ``docs/crm_contract.md``
is generated from it (``leadscore contract > docs/crm_contract.md``; a test keeps the
two equal), the validation schemas in
:mod:`leadscore.crm.ingest` are built from it, and the synthetic generator writes exactly
these columns. An export is a folder with one CSV or Parquet file per table, named
after the table (``deals.csv`` or ``deals.parquet``). Only ``deals`` is mandatory,
and of its columns only ``deal_id`` and ``status``; a missing table or column makes
the features it feeds missing (NaN, :data:`MISSING_WITHOUT`), never an error and never
a guess. Extra columns are kept in the stored tables; they become features only when
``attributes.json`` declares them (:mod:`leadscore.crm.attributes`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

ColumnType = Literal["string", "int", "float", "datetime"]

STAGES: tuple[str, ...] = ("lead", "qualified", "solution", "committed", "closed")
#: A deal's status in the CRM (``deals.status``); write these names, never the literals.
OPEN, WON, LOST = "open", "won", "lost"
DEAL_STATUSES: tuple[str, ...] = (OPEN, WON, LOST)
#: Statuses of a closed deal: it has an outcome and a ``closed_at``.
CLOSED_STATUSES: tuple[str, ...] = (WON, LOST)
CONTACT_ROLES: tuple[str, ...] = ("economic_buyer", "champion", "influencer", "user", "other")
ACTIVITY_TYPES: tuple[str, ...] = ("call", "email", "meeting", "visit", "demo", "quote")
DIRECTIONS: tuple[str, ...] = ("inbound", "outbound")

#: Why a deal was lost, canonical: what :func:`canonical_lost_reasons` maps ``lost_reason``
#: text to. Write these names, never the literals.
PRICE, COMPETITOR, NO_DECISION, TIMING, BUDGET, PRODUCT_FIT, OTHER = (
    "price",
    "competitor",
    "no_decision",
    "timing",
    "budget",
    "product_fit",
    "other",
)
LOST_REASONS: tuple[str, ...] = (
    PRICE, COMPETITOR, NO_DECISION, TIMING, BUDGET, PRODUCT_FIT, OTHER
)  # fmt: skip
#: The one vocabulary of lost reasons: words (English and Chinese, compared after
#: :func:`_normalise_reason`) whose presence anywhere in the text names the reason. A
#: reason's own name matches too. Order is precedence: "lost to a competitor on price"
#: is ``competitor`` (who won says more than what was said about price), "no budget this
#: year" is ``budget``, not ``timing``. Text no word matches is ``other``. Substrings, not
#: whole words, because Chinese has no spaces; so no single character that also appears
#: in unrelated words (``贵`` is also the polite "your", as in ``贵公司``).
LOST_REASON_WORDS: dict[str, tuple[str, ...]] = {
    COMPETITOR: (
        "competitor", "competition", "went with", "chose another", "chose a different",
        "lost to", "switched to", "another vendor", "other vendor", "incumbent",
        "竞争对手", "竞品", "对手", "别家", "其他厂商", "其他供应商", "友商",
    ),
    BUDGET: (
        "budget", "no funds", "no funding", "funding", "cannot afford", "can't afford",
        "预算", "资金", "没钱", "经费",
    ),
    PRODUCT_FIT: (
        "product fit", "missing feature", "feature", "functionality", "not a fit",
        "does not fit", "doesn't fit", "requirement", "integration", "not suitable",
        "功能", "产品不匹配", "不匹配", "不符合", "不满足", "需求不符", "集成",
    ),
    PRICE: (
        "price", "pricing", "expensive", "too costly", "cost", "discount", "cheaper",
        "价格", "太贵", "偏贵", "价高", "报价高", "报价太高", "便宜", "折扣", "成本",
    ),
    TIMING: (
        "timing", "next year", "next quarter", "not now", "later", "postpone", "delayed",
        "revisit", "re-visit", "not the right time", "wrong time",
        "时机", "明年", "下季度", "以后再说", "再说", "推迟", "延期", "暂缓",
    ),
    NO_DECISION: (
        "no decision", "no_decision", "undecided", "status quo", "do nothing", "went dark",
        "no response", "unresponsive", "ghosted", "shelved", "on hold", "cancelled",
        "没有决定", "未决定", "搁置", "无回应", "失联", "没有回复", "项目取消", "不了了之",
    ),
    OTHER: ("other", "其他"),
}  # fmt: skip

#: The moment of a deal without ``created_at``: "known since always". Its profile rows
#: are stamped here, and a closed one gets its single training snapshot here, so no
#: feature that needs the creation time (deal age, time in stage) is ever invented.
UNDATED = pd.Timestamp("1970-01-01", tz="UTC")

#: How far past the moment of ingest a time in an export may lie. An export is cut in
#: whatever zone its CRM runs in, and times without a zone are read as UTC, so local
#: times east of UTC arrive up to 14 hours ahead: a day covers every zone.
EXPORT_FUTURE_TOLERANCE = timedelta(days=1)
#: How far past the service's clock a time sent to the scoring API may lie: clock skew
#: only. A request is scored as of now, so an event hours ahead is a time-zone error for
#: the CRM to fix (send times with their zone), not a deal to score; an ``as_of`` this
#: close to now counts as now.
API_CLOCK_SKEW = timedelta(minutes=15)


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    required: bool
    meaning: str
    #: Allowed values for enumerations (compared after lower-casing and trimming).
    allowed: tuple[str, ...] | None = None
    #: Smallest allowed value for numbers.
    min_value: float | None = None


@dataclass(frozen=True)
class Table:
    name: str
    key: tuple[str, ...]
    columns: tuple[Column, ...]
    meaning: str
    mandatory: bool = False
    #: (column, parent table, parent column): each value must exist in the parent.
    references: tuple[tuple[str, str, str], ...] = ()

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]


ACCOUNTS = Table(
    name="accounts",
    key=("account_id",),
    meaning="Companies we sell to.",
    columns=(
        Column("account_id", "string", True, "Unique account identifier."),
        Column("industry", "string", False, "Industry as the CRM names it (free text)."),
        Column("employee_count", "int", False, "Number of employees.", min_value=0),
        Column(
            "annual_revenue", "float", False, "Annual revenue in the deal currency.", min_value=0
        ),
        Column("region", "string", False, "Sales region."),
        Column("created_at", "datetime", False, "When the account was created in the CRM."),
    ),
)

CONTACTS = Table(
    name="contacts",
    key=("contact_id",),
    meaning="People at accounts. Names, e-mails and phones are not needed and never used.",
    references=(("account_id", "accounts", "account_id"),),
    columns=(
        Column("contact_id", "string", True, "Unique contact identifier."),
        Column("account_id", "string", False, "Account the contact works for."),
        Column(
            "title",
            "string",
            False,
            "Job title as free text in any language (e.g. 'VP Sales', '总经理'); "
            "seniority is derived from it.",
        ),
        Column("created_at", "datetime", False, "When the contact was created in the CRM."),
    ),
)

DEALS = Table(
    name="deals",
    key=("deal_id",),
    meaning="Opportunities, open or closed. The only mandatory table; only `deal_id` and "
    "`status` are required. A deal without `created_at` is *undated*: its deal age and time in "
    "stage are missing, and it is left out of a time split (see `closed_at`).",
    mandatory=True,
    references=(("account_id", "accounts", "account_id"),),
    columns=(
        Column("deal_id", "string", True, "Unique deal identifier."),
        Column(
            "account_id",
            "string",
            False,
            "Account the deal is with; empty for a lead without one (its account features and "
            "account track record are missing).",
        ),
        Column("owner_id", "string", False, "Sales rep who owns the deal."),
        Column(
            "created_at",
            "datetime",
            False,
            "When the deal was created; empty when unknown (the deal is undated).",
        ),
        Column("channel", "string", False, "Lead source (e.g. referral, web, event, partner)."),
        Column("product", "string", False, "Product or product line."),
        Column("amount", "float", False, "Deal value.", min_value=0),
        Column("currency", "string", False, "ISO currency code of amount."),
        Column(
            "competitor",
            "string",
            False,
            "Main competitor; 'none' when there is none, empty when unknown.",
        ),
        Column("stage", "string", False, "Current funnel stage.", allowed=STAGES),
        Column("status", "string", True, "open, won or lost.", allowed=DEAL_STATUSES),
        Column(
            "closed_at",
            "datetime",
            False,
            "When the deal was won or lost; empty when open; not before created_at. A won or "
            "lost deal without it (or without created_at) is undated: it feeds no account or "
            "owner track record, and trains only when no closed deal is dated (then the split "
            "is random, not out of time); when some are dated, undated closed deals are left "
            "out of training and counted. A re-opened deal has the time of its last close "
            "(empty while it is open again); its earlier closes are in `stage_history`.",
        ),
        Column(
            "lost_reason",
            "string",
            False,
            "Why the deal was lost, as the CRM writes it: a picklist value or free text in "
            "English or Chinese (e.g. 'Price too high', '选了别家'). It is read as one of "
            + ", ".join(f"`{r}`" for r in LOST_REASONS)
            + " by the words listed under *Lost reasons* below; text no word matches is "
            "`other`. "
            "Known only after the loss; a re-opened deal keeps the reason of its last loss.",
        ),
        Column(
            "previous_deal_id",
            "string",
            False,
            "The earlier deal of the same account this deal follows up (a lost deal coming "
            "back as a new deal); empty when none or unknown. It must be a deal of the "
            "export or already stored, with the same `account_id`, created before this one.",
        ),
    ),
)
#: The column of deals that names an earlier deal of the same account (see ``DEALS``).
PREVIOUS_DEAL = "previous_deal_id"

DEAL_CONTACTS = Table(
    name="deal_contacts",
    key=("deal_id", "contact_id"),
    meaning="Which contacts take part in which deal, and in what role.",
    references=(("deal_id", "deals", "deal_id"), ("contact_id", "contacts", "contact_id")),
    columns=(
        Column("deal_id", "string", True, "Deal."),
        Column("contact_id", "string", True, "Contact."),
        Column("role", "string", False, "Buying role.", allowed=CONTACT_ROLES),
        Column("added_at", "datetime", True, "When the contact was attached to the deal."),
    ),
)

ACTIVITIES = Table(
    name="activities",
    key=("activity_id",),
    meaning="Calls, e-mails, meetings, visits, demos and quotes logged on deals.",
    references=(("deal_id", "deals", "deal_id"), ("contact_id", "contacts", "contact_id")),
    columns=(
        Column("activity_id", "string", True, "Unique activity identifier."),
        Column("deal_id", "string", True, "Deal the activity belongs to."),
        Column("contact_id", "string", False, "Contact involved, if any."),
        Column("type", "string", True, "Kind of activity.", allowed=ACTIVITY_TYPES),
        Column(
            "direction",
            "string",
            False,
            "inbound (the customer reached us) or outbound (we reached them).",
            allowed=DIRECTIONS,
        ),
        Column(
            "occurred_at", "datetime", True, "When it happened; not before the deal's creation."
        ),
        Column("duration_seconds", "float", False, "Length of calls and meetings.", min_value=0),
    ),
)

STAGE_HISTORY = Table(
    name="stage_history",
    key=("deal_id", "entered_at"),
    meaning="Every stage a deal entered and when; moves backwards are allowed.",
    references=(("deal_id", "deals", "deal_id"),),
    columns=(
        Column("deal_id", "string", True, "Deal."),
        Column("stage", "string", True, "Stage entered.", allowed=STAGES),
        Column("entered_at", "datetime", True, "When the deal entered the stage."),
    ),
)

TABLES: dict[str, Table] = {
    t.name: t for t in (ACCOUNTS, CONTACTS, DEALS, DEAL_CONTACTS, ACTIVITIES, STAGE_HISTORY)
}

#: Columns (per table) whose time must not be earlier than the deal's creation.
AFTER_DEAL_CREATION: dict[str, str] = {
    "activities": "occurred_at",
    "stage_history": "entered_at",
    "deal_contacts": "added_at",
}


#: What cannot be computed without a table, or a column of deals: these model features
#: (names as in the feature catalog, ``*`` any text) are missing (NaN) for every deal
#: scored, never guessed, and the rest are computed as usual. A test derives the same
#: sets from the features themselves, so this list cannot drift from them.
MISSING_WITHOUT: dict[str, tuple[str, ...]] = {
    "accounts": ("industry", "region", "employee_count", "annual_revenue"),
    "contacts": ("max_seniority", "n_senior_contacts", "senior_met"),
    "deal_contacts": ("n_contacts", "max_seniority", "n_senior_contacts", "has_economic_buyer"),
    "activities": (
        "act_*",
        "n_activities",
        "share_inbound",
        "median_reply_hours",
        "first_visits",
        "followup_visits",
        "senior_met",
        "days_since_last_activity",
        "days_since_last_inbound",
        "hours_awaiting_reply",
    ),
    "stage_history": ("stage_index", "stage_changes", "backward_moves", "days_in_stage", "stalls"),
    "deals.account_id": (
        "industry",
        "region",
        "employee_count",
        "annual_revenue",
        "account_prior_*",
    ),
    "deals.owner_id": ("owner_prior_*",),
    "deals.created_at": ("deal_age_days",),
    "deals.closed_at": ("account_prior_*", "owner_prior_*"),
    "deals.channel": ("channel",),
    "deals.product": ("product",),
    "deals.amount": ("amount", "log_amount"),
}


def _duration(span: timedelta) -> str:
    """'1 day', '2 days', '15 minutes': a tolerance in words."""
    if span.total_seconds() % 86_400 == 0:
        n, unit = span.days, "day"
    else:
        n, unit = int(span.total_seconds() // 60), "minute"
    return f"{n} {unit}{'' if n == 1 else 's'}"


def contract_markdown() -> str:
    """Render the contract as Markdown for the README's companion document."""
    lines = [
        "# CRM export contract",
        "",
        "Generated from `leadscore/crm/contract.py` by `leadscore contract`; do not edit by hand.",
        "",
        "An export is a folder with one file per table, `<table>.csv` or `<table>.parquet`.",
        "Only `deals` is mandatory, and of its columns only `deal_id` and `status`: a missing",
        "table or column makes the features it feeds missing (NaN, see the last section).",
        "Extra columns of `deals` and `accounts` are kept; they become model features only when",
        "`attributes.json` in the export declares them (kind, and when the value is known:",
        "`creation`, `anytime` or `after_close`; `leadscore import` writes it from a mapping).",
        "Times are ISO 8601; without a zone they are read as UTC.",
        f"A time more than {_duration(EXPORT_FUTURE_TOLERANCE)} after the moment of ingest is "
        "rejected as in the future.",
        "Enumerations are matched case-insensitively after trimming spaces. CSV files are UTF-8.",
        "",
        "`leadscore ingest` checks every row against this contract. A row that breaks it is",
        "rejected with the file, line, column, value and reason, and listed in",
        "`features/data/rejects/rejects.csv`. The line is numbered as in the file: the header",
        "is line 1, so the 10th data row is line 11, and a quoted value with a line break",
        "moves the rows after it down; a Parquet file has no lines, so there it is the row",
        "(the first row is row 1). All other rows are merged into the",
        "stored tables by key. Identical repeated rows count once; rows sharing a key but",
        "differing are all rejected. Re-running ingest on the same export changes nothing.",
        "",
    ]
    for t in TABLES.values():
        lines += [f"## {t.name}{' (mandatory)' if t.mandatory else ''}", "", t.meaning, ""]
        lines.append(f"Key: `{', '.join(t.key)}`.")
        for col, parent, pcol in t.references:
            lines.append(f"`{col}` must exist in `{parent}.{pcol}` when that table is given.")
        if t.name == DEALS.name:
            lines.append(
                f"`{PREVIOUS_DEAL}` must name another deal (in the export or stored) of the "
                "same `account_id`, created before this one; both must have an `account_id`."
            )
        if t.name in AFTER_DEAL_CREATION:
            lines.append(
                f"`{AFTER_DEAL_CREATION[t.name]}` must not be before the deal's `created_at`."
            )
        lines += ["", "| column | type | required | meaning |", "| --- | --- | --- | --- |"]
        for c in t.columns:
            extra = ""
            if c.allowed:
                extra = " One of: " + ", ".join(f"`{a}`" for a in c.allowed) + "."
            if c.min_value is not None:
                extra += f" At least {c.min_value:g}."
            lines.append(
                f"| `{c.name}` | {c.type} | {'yes' if c.required else 'no'} | {c.meaning}{extra} |"
            )
        lines.append("")
    lines += [
        "## Lost reasons",
        "",
        "`deals.lost_reason` is read as the first reason below with one of its words anywhere",
        "in the text (case, `_`, `-` and spaces ignored); a reason's own name counts as one of",
        "its words, and text with none of them is `other`. See `docs/revival.md`.",
        "",
        "| reason | words |",
        "| --- | --- |",
    ]
    for reason, words in LOST_REASON_WORDS.items():
        lines.append(f"| `{reason}` | {', '.join(words)} |")
    lines += [
        "",
        "## What is missing without a table or column",
        "",
        "Nothing is invented for what an export lacks: these model features are missing (NaN)",
        "for every deal, the model reads them as unknown, and everything else is computed as",
        "usual (`*` stands for any text). A deal without `created_at` is undated: its profile",
        f"counts as known since {UNDATED:%Y-%m-%d} (`UNDATED`), and a closed undated deal",
        "trains on one snapshot there, where nothing with a time (stages, contacts, activities,",
        "track records) is known yet. With no `activities` table, ranking has no dormant deals",
        "and no follow-up flag: no activity logged is no evidence of silence.",
        "",
        "| without | missing features |",
        "| --- | --- |",
    ]
    for what, features in MISSING_WITHOUT.items():
        lines.append(f"| `{what}` | {', '.join(f'`{f}`' for f in features)} |")
    lines.append("")
    return "\n".join(lines)


def _normalise_reason(text: pa.Array) -> pa.Array:
    """Lower case, ``_``/``-`` as spaces, runs of white space as one: how words compare."""
    text = pc.utf8_lower(pc.utf8_trim_whitespace(text))
    text = pc.replace_substring_regex(text, r"[_\-]+", " ")
    return pc.replace_substring_regex(text, r"\s+", " ")


def canonical_lost_reasons(values: pd.Series) -> pd.Series:
    """Each ``lost_reason`` as one of :data:`LOST_REASONS`; missing (None) when empty.

    Why a function of the whole column: a CRM export has a handful of distinct reasons
    (a picklist) or many free-text ones, and each distinct text is matched once, in
    Arrow, against :data:`LOST_REASON_WORDS` (the first reason with a word in the text
    wins; none is ``other``). The result is indexed like ``values`` (object dtype).
    """
    text = pa.array(values.astype("string[pyarrow]"), type=pa.string())
    encoded = pc.dictionary_encode(text)
    distinct = _normalise_reason(encoded.dictionary)
    present = np.asarray(
        pc.fill_null(pc.not_equal(distinct, ""), False).to_numpy(zero_copy_only=False), dtype=bool
    )
    reason = np.full(len(distinct), None, dtype=object)
    reason[present] = OTHER
    settled = ~present
    for name, words in LOST_REASON_WORDS.items():
        if settled.all():
            break
        hit = np.zeros(len(distinct), dtype=bool)
        for word in dict.fromkeys([name, *words]):
            key = " ".join(word.lower().replace("_", " ").replace("-", " ").split())
            found = pc.fill_null(pc.match_substring(distinct, key), False)
            hit |= np.asarray(found.to_numpy(zero_copy_only=False), dtype=bool)
        reason[hit & ~settled] = name
        settled |= hit
    indices = encoded.indices.to_numpy(zero_copy_only=False)
    valid = ~pd.isna(indices)
    out = np.full(len(values), None, dtype=object)
    out[valid] = reason[indices[valid].astype(np.int64)]
    return pd.Series(out, index=values.index, name=values.name, dtype=object)
