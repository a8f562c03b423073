"""Request and response models of the scoring API, documented field by field.

A deal is sent the way the CRM holds it (deal fields, account, contacts with titles and
roles, activities or an activity summary, stage history), so the service can compute the
features itself with the definitions training used. Field descriptions come from the CRM
contract and the feature catalog, so ``/docs.json`` says what each field means without a
second copy of the documentation to keep in step.

Two kinds of problems are kept apart:

* a malformed deal (wrong type, missing required field, negative amount...) does not fail
  its batch: :func:`lenient_deal` turns it into an :class:`InvalidDeal` carrying every
  problem, and the service reports it next to the deals it scored;
* a malformed request (no ``deals`` list, a batch over :data:`MAX_BATCH`, a bad ``as_of``)
  fails validation as a whole, with BentoML's 400 body naming each field.

Inputs are never echoed in error messages (``hide_input_in_errors``): a payload may carry
contact names, e-mails or phones, and errors end up in logs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, NotRequired

import pandas as pd
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    create_model,
    with_config,
)
from typing_extensions import TypedDict

from leadscore.config import MAX_DEAL_LIST_ITEMS
from leadscore.crm.attributes import Attribute
from leadscore.crm.contract import (
    ACTIVITY_TYPES,
    API_CLOCK_SKEW,
    CONTACT_ROLES,
    DEAL_STATUSES,
    DIRECTIONS,
    OPEN,
    STAGES,
    TABLES,
)
from leadscore.features.catalog import activity_features, attribute_feature
from leadscore.features.featurize import attribute_values
from leadscore.model.explain import Reason, ScoreWarning

#: Most deals (or ids) accepted in one request; larger batches get a 400.
MAX_BATCH = 1000

Grade = Literal["A", "B", "C", "D"]


#: Earliest time the API accepts in any field: nothing a CRM records about a deal is older,
#: and an earlier one is a placeholder ("0001-01-01") or a broken export, not a date.
EARLIEST_TIME = datetime(1970, 1, 1, tzinfo=UTC)


def _as_utc(value: datetime) -> datetime:
    """Times without a zone are read as UTC, as in the CRM contract; from 1970 on.

    A time at the ends of the calendar (``0001-01-01T00:00:00+03:02``,
    ``9999-12-31T23:59:59-01:00``) cannot be moved to UTC: that, like any time before
    :data:`EARLIEST_TIME`, is a problem with the field (ValueError), not a server error.
    """
    try:
        utc = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ValueError(
            "is out of range: it cannot be expressed in UTC (years 1970 to 9999)"
        ) from None
    if utc < EARLIEST_TIME:
        raise ValueError(
            f"is before {EARLIEST_TIME:%Y-%m-%d}: not a plausible CRM time (a placeholder date?)"
        )
    return utc


def _enum_text(value: Any) -> Any:
    """Enumerations match case-insensitively after trimming spaces (CRM contract)."""
    return value.strip().lower() if isinstance(value, str) else value


def _not_future(value: datetime | None) -> datetime | None:
    if value is not None and value > datetime.now(UTC) + API_CLOCK_SKEW:
        raise ValueError(f"must not be in the future (tolerance {API_CLOCK_SKEW})")
    return value


def _time_text(value: Any) -> Any:
    """A time is an ISO 8601 string (or a datetime from Python), not a number of seconds."""
    if isinstance(value, str | datetime):
        return value
    raise ValueError("must be an ISO 8601 date-time string")


#: Times are ISO 8601 strings in JSON: parsed although the models are strict, and nothing else.
UtcDatetime = Annotated[
    datetime, Strict(False), BeforeValidator(_time_text), AfterValidator(_as_utc)
]
Stage = Annotated[Literal[STAGES], BeforeValidator(_enum_text)]  # type: ignore[valid-type]
Role = Annotated[Literal[CONTACT_ROLES], BeforeValidator(_enum_text)]  # type: ignore[valid-type]
ActivityType = Annotated[Literal[ACTIVITY_TYPES], BeforeValidator(_enum_text)]  # type: ignore[valid-type]
Direction = Annotated[Literal[DIRECTIONS], BeforeValidator(_enum_text)]  # type: ignore[valid-type]
Status = Annotated[Literal[DEAL_STATUSES], BeforeValidator(_enum_text)]  # type: ignore[valid-type]


def _doc(table: str, column: str) -> str:
    """A field's description, taken from the CRM contract."""
    return TABLES[table].column(column).meaning


class _Input(BaseModel):
    # Extra keys (names, e-mails, phones, custom CRM fields) are accepted and dropped.
    # Strict: a value is of the type the spec says (a number, not "24000"; true, not 0),
    # so what /docs.json promises and what is accepted are the same thing.
    model_config = ConfigDict(
        extra="ignore", hide_input_in_errors=True, strict=True, allow_inf_nan=False
    )


class AccountIn(_Input):
    """The company the deal is with; every field optional."""

    industry: str | None = Field(None, description=_doc("accounts", "industry"))
    region: str | None = Field(None, description=_doc("accounts", "region"))
    employee_count: int | None = Field(None, ge=0, description=_doc("accounts", "employee_count"))
    annual_revenue: float | None = Field(None, ge=0, description=_doc("accounts", "annual_revenue"))


# A deal's contacts, activities and stage entries are TypedDicts, not models: a batch of
# 1,000 deals carries tens of thousands of them, and pydantic validates these three to
# four times faster when it need not build a model instance for each.
_ITEM_CONFIG = ConfigDict(
    extra="ignore", hide_input_in_errors=True, strict=True, allow_inf_nan=False
)


@with_config(_ITEM_CONFIG)
class ContactIn(TypedDict):
    """A person taking part in the deal. Names, e-mails and phones are ignored if sent."""

    contact_id: Annotated[str, Field(min_length=1, description=_doc("contacts", "contact_id"))]
    title: NotRequired[Annotated[str | None, Field(description=_doc("contacts", "title"))]]
    role: NotRequired[Annotated[Role | None, Field(description=_doc("deal_contacts", "role"))]]
    added_at: Annotated[UtcDatetime, Field(description=_doc("deal_contacts", "added_at"))]


@with_config(_ITEM_CONFIG)
class ActivityIn(TypedDict):
    """One call, e-mail, meeting, visit, demo or quote logged on the deal."""

    activity_id: NotRequired[
        Annotated[str | None, Field(description=_doc("activities", "activity_id"))]
    ]
    type: Annotated[ActivityType, Field(description=_doc("activities", "type"))]
    direction: NotRequired[
        Annotated[Direction | None, Field(description=_doc("activities", "direction"))]
    ]
    occurred_at: Annotated[UtcDatetime, Field(description=_doc("activities", "occurred_at"))]
    contact_id: NotRequired[
        Annotated[str | None, Field(description=_doc("activities", "contact_id"))]
    ]
    duration_seconds: NotRequired[
        Annotated[float | None, Field(ge=0, description=_doc("activities", "duration_seconds"))]
    ]


@with_config(_ITEM_CONFIG)
class StageEntryIn(TypedDict):
    """One stage the deal entered; moves backwards are allowed."""

    stage: Annotated[Stage, Field(description=_doc("stage_history", "stage"))]
    entered_at: Annotated[UtcDatetime, Field(description=_doc("stage_history", "entered_at"))]


#: Stored timestamps of the ``deal_activity`` feature view, from which the request-time
#: features (days since last activity, hours awaiting reply) are computed.
SUMMARY_TIMES: dict[str, str] = {
    "last_activity_at": "Time of the last activity of any kind (whole seconds).",
    "last_inbound_at": "Time of the customer's last inbound activity (whole seconds).",
    "awaiting_reply_since": "Oldest inbound activity not yet answered by an outbound one (whole seconds).",
}

ActivitySummaryIn: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "ActivitySummaryIn",
    __base__=_Input,
    __doc__=(
        "Engagement pre-summarised by the CRM, as of the moment of scoring: the values the "
        "deal_activity feature view and the window counts would hold then. Send it instead "
        "of the activity list."
    ),
    **{
        f.name: (
            float | None,
            Field(None, ge=0, le=1 if f.kind == "binary" else None, description=f.description),
        )
        for f in activity_features()
    },
    **{
        name: (UtcDatetime | None, Field(None, description=text))
        for name, text in SUMMARY_TIMES.items()
    },
)


def _attribute_value(value: Any) -> Any:
    """An attribute's value is text, a number or null.

    Checked before the union is tried, so ``true``, a list or an object gets one problem
    located at ``["attributes", name]`` instead of one per type tried (at
    ``["attributes", name, "str"]`` and ``[..., "float"]``). Whether text or a number is
    right depends on the served model (:func:`attribute_problems`).
    """
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be a finite number")
    if value is None or isinstance(value, str | float) or type(value) is int:
        return value
    raise ValueError("must be text (a category), a number or null")


AttributeValue = Annotated[str | float | None, BeforeValidator(_attribute_value)]


class DealIn(_Input):
    """A deal as the CRM holds it. Only ``deal_id``, ``account_id`` and ``created_at`` are required."""

    deal_id: str = Field(min_length=1, description=_doc("deals", "deal_id"))
    account_id: str = Field(min_length=1, description=_doc("deals", "account_id"))
    owner_id: str | None = Field(None, description=_doc("deals", "owner_id"))
    created_at: UtcDatetime = Field(description=_doc("deals", "created_at"))
    channel: str | None = Field(None, description=_doc("deals", "channel"))
    product: str | None = Field(None, description=_doc("deals", "product"))
    competitor: str | None = Field(None, description=_doc("deals", "competitor"))
    amount: float | None = Field(None, ge=0, description=_doc("deals", "amount"))
    currency: str | None = Field(None, description=_doc("deals", "currency"))
    status: Status = Field(
        OPEN,
        description=f"{_doc('deals', 'status')} Default open. Only an open deal gets a win "
        "probability: a deal won by `as_of` (at or after its `closed_at`, or with none) is "
        "answered with its status and no score, a lost one with a problem in `errors` "
        "unless the request sets `revival`. A deal closed after `as_of` was open then and "
        "is scored.",
        examples=[OPEN],
    )
    closed_at: UtcDatetime | None = Field(None, description=_doc("deals", "closed_at"))
    account: AccountIn | None = Field(
        None, description="Account details; missing ones are scored as unknown."
    )
    contacts: list[ContactIn] | None = Field(
        None,
        max_length=MAX_DEAL_LIST_ITEMS,
        description="Contacts attached to the deal ([] when none; omitted: unknown, scored with a warning), "
        f"at most {MAX_DEAL_LIST_ITEMS:,}.",
    )
    activities: list[ActivityIn] | None = Field(
        None,
        max_length=MAX_DEAL_LIST_ITEMS,
        description="Every activity logged on the deal ([] when none), or send activity_summary instead; "
        f"with neither, engagement is scored as unknown with a warning. At most {MAX_DEAL_LIST_ITEMS:,} "
        "(more: send activity_summary).",
    )
    activity_summary: ActivitySummaryIn | None = Field(
        None, description="Pre-summarised engagement, instead of the activity list."
    )
    stage_history: list[StageEntryIn] | None = Field(
        None,
        max_length=MAX_DEAL_LIST_ITEMS,
        description="Every stage the deal entered, with when (omitted: unknown, scored with a warning), "
        f"at most {MAX_DEAL_LIST_ITEMS:,}.",
    )
    attributes: dict[str, AttributeValue] | None = Field(
        None,
        description="Custom attributes of the deal and its account that the model was trained "
        'with, by name: {"team": "enterprise", "discount_pct": 42}. Categories are text, '
        "numbers numbers; one left out is scored as unknown, a name the model does not know "
        "is an error naming it.",
    )


class Problem(BaseModel):
    """One problem with one field, in the shape of BentoML's own 400 errors."""

    loc: list[str | int] = Field(description="Path to the field, from the request body.")
    msg: str = Field(description="What is wrong with it.")
    type: str = Field(
        description="Machine-readable problem kind (pydantic error type or 'invalid_value')."
    )


class InvalidDeal(BaseModel):
    """A deal that failed validation; stands in for it in the request's ``deals`` list."""

    deal_id: str | None = None
    problems: list[Problem]


def lenient_deal(value: Any, handler: ValidatorFunctionWrapHandler) -> DealIn | InvalidDeal:
    """Validate one deal; on failure keep its problems instead of failing the whole batch."""
    try:
        return handler(value)
    except ValidationError as exc:
        deal_id = value.get("deal_id") if isinstance(value, dict) else None
        problems = [
            Problem(loc=list(e["loc"]), msg=e["msg"], type=e["type"])
            for e in exc.errors(include_url=False, include_input=False, include_context=False)
        ]
        return InvalidDeal(deal_id=deal_id if isinstance(deal_id, str) else None, problems=problems)


AsOf = Field(
    None,
    description="Moment to score at (ISO 8601; UTC when no zone is given). Default: now. "
    "Events after it are ignored, as if the CRM were read at that moment.",
)
AllOrNothing = Field(
    False,
    description="When true, one invalid deal fails the whole request (422, nothing scored). "
    "By default invalid deals are reported in `errors` and the others are scored.",
)
Revival = Field(
    False,
    description="When true, a lost deal is answered by the revival model (the chance it "
    "comes back and is won within the horizon if re-engaged now: the result's `meaning` "
    "says it in words), not refused. By default a lost deal is a problem in `errors`: an "
    "open-deal score would mislead. Won deals are answered with their status either way, "
    "and open deals are scored by the win model. When the service serves no revival "
    "model, a lost deal asked for revival is a problem in `errors` that says so. /score "
    "does not compute revival features from a deal sent in full (they include the "
    "account's other deals and past revivals): there a lost deal asked for revival is a "
    "problem naming /score_ids, which reads them from the online store.",
    examples=[True],
)

EXAMPLE_DEAL: dict[str, Any] = {
    "deal_id": "D0001234",
    "account_id": "A000042",
    "owner_id": "U007",
    "created_at": "2025-03-03T09:00:00Z",
    "channel": "referral",
    "product": "core",
    "competitor": "none",
    "amount": 24000,
    "account": {
        "industry": "software",
        "region": "emea",
        "employee_count": 350,
        "annual_revenue": 4.2e7,
    },
    "contacts": [
        {
            "contact_id": "C0000101",
            "title": "VP Sales",
            "role": "economic_buyer",
            "added_at": "2025-03-03T09:00:00Z",
        },
        {
            "contact_id": "C0000102",
            "title": "采购经理",
            "role": "influencer",
            "added_at": "2025-03-10T14:00:00Z",
        },
    ],
    "activities": [
        {
            "type": "email",
            "direction": "inbound",
            "occurred_at": "2025-03-04T08:12:00Z",
            "contact_id": "C0000102",
        },
        {
            "type": "call",
            "direction": "outbound",
            "occurred_at": "2025-03-04T15:30:00Z",
            "contact_id": "C0000102",
        },
        {
            "type": "visit",
            "direction": "outbound",
            "occurred_at": "2025-03-20T10:00:00Z",
            "contact_id": "C0000101",
        },
    ],
    "stage_history": [
        {"stage": "lead", "entered_at": "2025-03-03T09:00:00Z"},
        {"stage": "qualified", "entered_at": "2025-03-12T11:00:00Z"},
    ],
}


class ScoreRequest(BaseModel):
    """Deals sent in full; features are computed from them at ``as_of``."""

    model_config = ConfigDict(
        hide_input_in_errors=True,
        strict=True,
        json_schema_extra={
            "example": {
                "deals": [EXAMPLE_DEAL],
                "as_of": "2025-04-01T00:00:00Z",
                "revival": False,
            }
        },
    )

    deals: list[Annotated[DealIn, WrapValidator(lenient_deal)]] = Field(
        min_length=1, max_length=MAX_BATCH, description=f"The deals to score, 1 to {MAX_BATCH}."
    )
    as_of: Annotated[UtcDatetime, AfterValidator(_not_future)] | None = AsOf
    all_or_nothing: bool = AllOrNothing
    revival: bool = Revival


class ScoreIdsRequest(BaseModel):
    """Deals by id; features come from the online feature store."""

    model_config = ConfigDict(
        hide_input_in_errors=True,
        strict=True,
        json_schema_extra={"example": {"deal_ids": ["D0000001", "D0000002"], "revival": False}},
    )

    deal_ids: list[Annotated[str, Field(min_length=1)]] = Field(
        min_length=1,
        max_length=MAX_BATCH,
        description=f"Ids of deals known to the feature store, 1 to {MAX_BATCH}. Each "
        "deal's status is the store's latest: a won deal is answered with its status and "
        "no score, a lost one with a problem in `errors` unless `revival` is true.",
    )
    as_of: Annotated[UtcDatetime, AfterValidator(_not_future)] | None = AsOf
    all_or_nothing: bool = AllOrNothing
    revival: bool = Revival


#: A deal's status in a result: the CRM contract's.
ResultStatus = Literal[DEAL_STATUSES]  # type: ignore[valid-type]


class ScoreResult(TypedDict):
    """The answer for one deal: the score of an open deal, the status of a won one, or the
    revival probability of a lost one (when the request asks for revival)."""

    deal_id: Annotated[str, Field(description="The deal's id, as sent.")]
    status: Annotated[
        ResultStatus,
        Field(
            description="The deal's status as of `as_of`. 'open': scored by the win model, "
            "with probability, score, grade and reasons. 'won': closed with its outcome, so "
            "no score, and a `note` says so. 'lost' (only with `revival`): scored by the "
            "revival model, with probability and score, and `meaning` says what they are.",
            examples=[OPEN],
        ),
    ]
    probability: NotRequired[
        Annotated[
            float,
            Field(
                description="Calibrated probability, 0 to 1: that the deal is won (open "
                "deals), or what `meaning` says (lost deals, by the revival model)."
            ),
        ]
    ]
    score: NotRequired[
        Annotated[
            int,
            Field(
                description="The probability as a 0-100 score (rounded percentage; open "
                "deals, and lost deals scored for revival)."
            ),
        ]
    ]
    grade: NotRequired[
        Annotated[
            Grade,
            Field(
                description="A-D from the score; the thresholds are in the response's "
                "`grade_thresholds` (open deals)."
            ),
        ]
    ]
    positive_reasons: NotRequired[
        Annotated[
            list[Reason],
            Field(
                description="The up to 5 strongest reasons raising the score (open deals), "
                "what a rep can act on (engagement, stakeholders, timing, stage) listed "
                "first, then the deal's facts, strongest first within each; none its tooltip "
                "contradicts, no text twice or both ways, and never the owner's or the "
                "account's track record. Each reason has its words in English (`text`, "
                "`tooltip`) and in Chinese (`text_zh`, `tooltip_zh`), with the same numbers."
            ),
        ]
    ]
    negative_reasons: NotRequired[
        Annotated[
            list[Reason],
            Field(
                description="Up to 5 reasons lowering the score (open deals), chosen and "
                "ordered as the positive ones."
            ),
        ]
    ]
    meaning: NotRequired[
        Annotated[
            str,
            Field(
                description="What the probability of a lost deal means (revival model); "
                "the horizon is the service's setting.",
                examples=["chance of a win within 12 months if re-engaged now"],
            ),
        ]
    ]
    model_name: NotRequired[
        Annotated[
            str,
            Field(
                description="Registered name of the model that scored it, when it is not "
                "the win model (a lost deal: lead_scorer_revival).",
                examples=["lead_scorer_revival"],
            ),
        ]
    ]
    model: NotRequired[
        Annotated[
            str,
            Field(
                description="Present when no trained model is served yet: the fallback that "
                "scored the deal, a rough prior from the stored CRM's closed deals (a warning "
                "says when a trained model takes over; GET /model has the details).",
                examples=["fallback (stage and channel rates, 63 closed deals)"],
            ),
        ]
    ]
    note: NotRequired[
        Annotated[
            str,
            Field(
                description="Why a deal has no score (a won deal), or no reasons (a lost "
                "deal scored for revival).",
                examples=["deal is won: it has its outcome, so it gets no open-deal score"],
            ),
        ]
    ]
    warnings: Annotated[
        list[ScoreWarning],
        Field(
            description="Unknown categories, missing optional data or unavailable features; scored anyway."
        ),
    ]
    model_version: Annotated[
        str,
        Field(
            description="MLflow version of the model that scored it: lead_scorer, or the "
            "one `model_name` names."
        ),
    ]
    as_of: Annotated[datetime, Field(description="Moment the features were computed at.")]
    scored_at: Annotated[datetime, Field(description="When the score was computed (UTC).")]


class DealError(BaseModel):
    """A deal that was not scored, and every problem found with it."""

    index: int = Field(description="Position of the deal (or id) in the request list.")
    deal_id: str | None = Field(description="The deal's id, when it could be read.")
    problems: list[Problem] = Field(description="Every problem found, each naming its field.")


class ScoreResponse(BaseModel):
    """Scores of the valid deals, and the problems of the others."""

    results: list[ScoreResult] = Field(description="One result per scored deal, in request order.")
    errors: list[DealError] = Field(description="Deals not scored, with their problems.")
    model_version: str = Field(description="MLflow version of the lead_scorer model.")
    grade_thresholds: dict[str, int] = Field(
        description="Lowest score of each grade (D is everything below C). "
        "Configured with LEADSCORE_GRADE_THRESHOLDS, e.g. 'A=60,B=40,C=20'."
    )


# ------------------------------------------------------------------ error responses
#: Why an overloaded worker refused a request (serving.limits.SHED_REASONS says more).
ShedReason = Literal["requests", "deals", "batches", "queue_delay"]


class ErrorItem(BaseModel):
    """One problem of a refused request: where, what, and its kind."""

    model_config = ConfigDict(extra="allow")

    loc: list[str | int] = Field(
        description="Where the problem is: a path into the body (['deals', 0, 'created_at']), "
        "['body'], or ['header', 'Authorization']."
    )
    msg: str = Field(description="What is wrong.")
    type: str = Field(
        description="Machine-readable kind: a pydantic error type, 'unauthorized', "
        "'unsupported_media_type', 'too_large' or 'overloaded'."
    )
    reason: ShedReason | None = Field(
        None,
        description="Why an 'overloaded' request was refused (503): 'requests' (too many "
        "requests in progress), 'deals' (too many deals in progress), 'batches' (another "
        "large batch in progress) or 'queue_delay' (the work queued ahead would make it "
        "wait longer than LEADSCORE_MAX_QUEUE_DELAY_SECONDS, 1 s by default). Absent on other problems.",
    )


class ErrorBody(BaseModel):
    """The body of a refused request (400, 401, 413, 415, 503 when overloaded)."""

    error: str = Field(description="Summary of the refusal.")
    detail: list[ErrorItem] = Field(description="Every problem found, each naming its place.")


# ------------------------------------------------------------------ GET /model
class _Facts(BaseModel):
    # A summary written by a later training may carry more keys: shown, not refused.
    model_config = ConfigDict(extra="allow")


class Estimate(_Facts):
    """A metric and its deal-bootstrap 95% interval (null where undefined)."""

    value: float | None = Field(description="The metric on the test deals.")
    low: float | None = Field(description="Lower end of the 95% interval.")
    high: float | None = Field(description="Upper end of the 95% interval.")


class Difference(_Facts):
    """Model minus baseline on the same deals, with its paired 95% interval."""

    difference: float | None = Field(description="Model minus baseline.")
    low: float | None = Field(description="Lower end of the paired 95% interval.")
    high: float | None = Field(description="Upper end of the paired 95% interval.")


class PerDealBlock(_Facts):
    """The model on one row per closed test deal, scored at one moment of its life."""

    label: str = Field(description="When each deal is scored: 'at creation' or 'at 30 days'.")
    deals: int = Field(description="Test deals scored.")
    won: int
    lost: int
    roc_auc: Estimate
    log_loss: Estimate
    ece: Estimate = Field(description="Expected calibration error over 10 equal-width bins.")
    lift_at_10: float | None = Field(
        description="Win rate of the top 10% of deals by score over the overall win rate."
    )


class PerDeal(_Facts):
    age_days: float = Field(description="The fixed age of the `at_age` block, in days.")
    at_creation: PerDealBlock
    at_age: PerDealBlock


class CalibrationCurve(_Facts):
    """Per non-empty probability bin (10 equal-width bins) of the test deals at the
    per-deal age: mean predicted probability, observed win rate, deals."""

    mean_p: list[float]
    win_rate: list[float]
    n: list[int]


class CalibrationFacts(_Facts):
    method: str = Field(description="'isotonic', 'platt' or 'none'.")
    reason: str = Field(description="Why training chose it.")
    curve: CalibrationCurve


class TopFeature(_Facts):
    feature: str
    gain_share: float = Field(description="Share of the model's total split gain.")
    description: str = Field(description="What the feature measures, from the catalog.")


class BaselineBlock(_Facts):
    roc_auc: Difference
    log_loss: Difference
    verdict: Literal["better", "not better", "worse", "unknown"] = Field(
        description="'better' only when the ROC AUC interval is wholly above zero, "
        "'worse' when wholly below."
    )
    sentence: str = Field(description="The comparison in one plain sentence.")


class BaselineFacts(_Facts):
    label: str = Field(description="The baseline's name in a sentence.")
    at_creation: BaselineBlock | None = None
    at_age: BaselineBlock | None = None


class GateCheck(_Facts):
    """One condition of the baseline gate: model minus a baseline on one block and metric."""

    baseline: str = Field(description="'logistic_regression' or 'channel_rate'.")
    block: str = Field(description="'at_creation' or 'at_age'.")
    metric: str = Field(description="'roc_auc' or 'log_loss'.")
    difference: float | None
    low: float | None
    high: float | None
    bound: str = Field(description="The interval end judged: 'low' (ROC AUC) or 'high' (log loss).")
    required: float = Field(description="What that end must beat (0: a margin over the baseline).")
    passed: bool


class GateFacts(_Facts):
    """The baseline gate training measured: only a model that passed it is promoted
    without ``--force``."""

    passed: bool
    sentence: str = Field(description="The decision in one plain sentence, with the figures.")
    rule: str = Field(description="What the gate asks, in words.")
    checks: list[GateCheck]


class SliceDeals(_Facts):
    won: int
    lost: int


class SplitFacts(_Facts):
    method: str = Field(description="'time' (by close date) or 'random'.")
    note: str
    cross_validation: str | None = Field(
        default=None,
        description="How cross-validation replaced a test slice too small to answer "
        "(the figures then pool its test folds); null for a single split.",
    )


class KeptSegment(_Facts):
    """A segment whose own model scores its deals, with the figures that kept it."""

    segment: str = Field(description="The segment, as `cut=value` (`channel=partner`).")
    rule: dict[str, Any] = Field(
        description="How a deal is routed: the feature read at scoring time and the category "
        "(`category`) or the range `[low, high)` it must be in."
    )
    test_deals: dict[str, int] = Field(description="Won and lost test deals of the segment.")
    roc_auc: dict[str, float | None] = Field(
        description="Per-deal ROC AUC of the segment model and of the global model on them."
    )
    segment_minus_global: dict[str, dict[str, float | None]] = Field(
        description="Segment model minus global model per metric (roc_auc, log_loss, ece): "
        "`difference` and its paired 95% interval `low`, `high`."
    )


class SegmentRouting(_Facts):
    """The segment models training kept: the routing table (training/segments.py)."""

    candidates: int = Field(description="Segments tried (channel, size band, industry, stage).")
    kept: list[KeptSegment] = Field(
        description="Kept segment models in routing order: a deal goes to the first whose "
        "rule it matches, else to the global model."
    )


class Quality(_Facts):
    """The quality summary training stored in the model (training/quality.py)."""

    format: int = Field(description="Version of this summary's shape.")
    trained_at: str | None = Field(description="When the version was registered (UTC, ISO 8601).")
    window: dict[str, str] = Field(
        description="The training data's first snapshot and first and last close."
    )
    split: SplitFacts
    test_deals: SliceDeals
    per_deal: PerDeal
    calibration: CalibrationFacts
    top_features: list[TopFeature] = Field(description="Strongest features by gain, at most 10.")
    baselines: dict[str, BaselineFacts] = Field(
        description="Per baseline (logistic_regression, channel_rate): model minus baseline."
    )
    gate: GateFacts | None = Field(
        default=None, description="The baseline gate; null for a model trained before it existed."
    )
    segment_models: SegmentRouting | None = Field(
        default=None,
        description="The segment models and their routing; null for a model trained before "
        "segment models existed, or with them switched off. The figures above are the "
        "global model's.",
    )


class RevivalModelFacts(BaseModel):
    """The revival model served beside the win model (lost deals asked for revival)."""

    model_config = ConfigDict(protected_namespaces=())

    model_name: str = Field(description="Registered model name in MLflow.")
    model_version: str = Field(description="MLflow version of the served revival model.")
    bento_tag: str = Field(description="The BentoML model tag served.")
    meaning: str = Field(description="What its probability means, in words.")


class FallbackFacts(BaseModel):
    """The fallback served while no trained model exists (``docs/fallback.md``)."""

    model: str = Field(
        description="What scores, on how many closed deals.",
        examples=["fallback (stage and channel rates, 63 closed deals)"],
    )
    meaning: str = Field(
        description="What its probability is, and when a trained model takes over."
    )
    closed_deals: int = Field(description="Closed deals of the stored CRM it was fitted on.")
    won_deals: int = Field(description="Of them, won.")
    lost_deals: int = Field(description="Of them, lost.")
    min_class_deals: int = Field(
        description="Won and lost closed deals each needed before a model can be trained; "
        "it then replaces the fallback once it passes the promotion gate, whose baselines "
        "include this fallback."
    )


class ModelFacts(BaseModel):
    """The served model: where it comes from and how good training measured it to be."""

    model_config = ConfigDict(protected_namespaces=())

    model_name: str = Field(
        description="Registered model name in MLflow (lead_scorer_fallback: the fallback, "
        "not in MLflow)."
    )
    model_version: str = Field(description="MLflow version of the served model ('fallback').")
    alias: str | None = Field(description="The MLflow alias it was packaged from.")
    bento_tag: str = Field(description="The BentoML model tag served.")
    feature_service: str | None = Field(description="The Feast feature service it reads.")
    quality: Quality | None = Field(
        description="The quality summary stored at training; null for a model trained "
        "before training stored one (`quality_note` says so)."
    )
    quality_note: str | None = Field(description="Why `quality` is null.")
    warning: str | None = Field(
        description="'model not better than baseline: ...' when the served model failed the "
        "baseline gate (it was promoted with --force), or was never checked against it; "
        "'scored by the fallback ...' when no trained model exists yet (`fallback`); "
        "null otherwise."
    )
    revival: RevivalModelFacts | None = Field(
        default=None,
        description="The revival model that answers lost deals asked for revival; null "
        "when none is served (they are then an error).",
    )
    fallback: FallbackFacts | None = Field(
        default=None,
        description="The labelled fallback when no trained model is served yet (the service "
        "then scores with it; `warning` says it is a rough prior); null when a trained model is.",
    )


def document_model_route(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec with ``GET /model`` (served beside BentoML's routes, so absent from its spec)."""
    components = spec.setdefault("components", {}).setdefault("schemas", {})
    schema = ModelFacts.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(schema.pop("$defs", {}))
    components[ModelFacts.__name__] = schema
    spec.setdefault("paths", {})["/model"] = {
        "get": {
            "summary": "The served model and its quality",
            "description": "Model name, version and alias, and the quality summary training "
            "stored in it: per-deal ROC AUC, log loss and ECE with 95% intervals at creation "
            "and at a fixed age, lift of the top decile, calibration curve, strongest "
            "features, and the comparison with each baseline. Open, like the health probes.",
            "operationId": "model",
            "responses": {
                "200": {
                    "description": "The served model.",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/ModelFacts"}}
                    },
                }
            },
        }
    }
    return spec


#: The API's description at the top of /docs.json and the documentation page.
API_DESCRIPTION = (
    "Calibrated win probabilities for CRM deals, with reasons in words (English and "
    "Chinese). `POST /score` takes "
    "deals as the CRM holds them; `POST /score_ids` takes ids the online feature store "
    "knows. When the service has LEADSCORE_API_TOKEN, both need `Authorization: Bearer "
    "<token>`. `GET /model` says which model is served and how good it is. The managers' "
    "priority list is at `/leads/`."
)


def _error_schema(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def document_responses(spec: dict[str, Any]) -> dict[str, Any]:
    """BentoML's OpenAPI spec with every status the scoring endpoints answer, and its body.

    BentoML documents 200, 400 (with ``detail`` as a string: it is a list), 404 and 500.
    The service also answers 401 (no or a wrong token), 413 (body too large), 415 (not
    JSON), 422
    (nothing scored: the usual response, with every deal's problems), and 503 (the
    online store is unreachable for /score_ids, with the same body; or the worker is
    overloaded, with ``Retry-After``). ``/readyz`` answers 503 while not ready.
    """
    # BentoML's default description links badges and chat rooms on the internet.
    spec.setdefault("info", {})["description"] = API_DESCRIPTION
    spec["info"].pop("contact", None)
    spec.setdefault("components", {}).setdefault("securitySchemes", {})["bearerAuth"] = {
        "type": "http",
        "scheme": "bearer",
        "description": "LEADSCORE_API_TOKEN, when the service is configured with one.",
    }
    components = spec["components"].setdefault("schemas", {})
    for model in (ErrorItem, ErrorBody):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schema.pop("$defs", None)
        components[model.__name__] = schema
    error = {"application/json": {"schema": _error_schema("ErrorBody")}}
    retry_after = {
        "Retry-After": {
            "description": "Seconds to wait before retrying.",
            "schema": {"type": "integer"},
        }
    }
    for path in ("/score", "/score_ids"):
        operation = spec.get("paths", {}).get(path, {}).get("post")
        if operation is None:
            continue
        # Status codes are ints in BentoML's spec object, strings once it is JSON.
        operation["security"] = [{"bearerAuth": []}]
        responses = operation["responses"] = {str(k): v for k, v in operation["responses"].items()}
        scored = responses["200"]["content"]["application/json"]["schema"]
        responses["400"] = {
            "description": "Malformed request (not JSON, no deals list, a batch over "
            f"{MAX_BATCH:,}, a bad as_of...): every problem, each naming its field.",
            "content": error,
        }
        responses["401"] = {
            "description": "LEADSCORE_API_TOKEN is set and the request has no or a wrong "
            "'Authorization: Bearer <token>'.",
            "headers": {
                "WWW-Authenticate": {
                    "description": "Bearer",
                    "schema": {"type": "string"},
                }
            },
            "content": error,
        }
        responses["415"] = {
            "description": "The body is not application/json.",
            "content": error,
        }
        body = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
        for prop in body.get("schema", {}).get("properties", {}).values():
            # BentoML drops the null of an optional top-level field (as_of); null is accepted.
            if prop.get("default", ...) is None and "anyOf" not in prop:
                prop["nullable"] = True
        responses["413"] = {
            "description": "The request body is larger than the service accepts "
            "(LEADSCORE_MAX_BODY_BYTES); send fewer deals per request.",
            "content": error,
        }
        responses["422"] = {
            "description": "Nothing scored: no deal was valid, or all_or_nothing was set and "
            "one was not. `errors` lists every deal's problems.",
            "content": {"application/json": {"schema": scored}},
        }
        responses["503"] = {
            "description": "Try again later: the worker is overloaded (ErrorBody, with "
            "Retry-After and the `reason` in its problem), or, for /score_ids, the online "
            "feature store is unreachable (the usual response, every id in `errors` with "
            "type 'unavailable'). A batch of more than LEADSCORE_BATCH_DEALS ids is looked "
            "up in chunks: when the store fails part way, the ids it could not look up are "
            "in `errors` (type 'unavailable') beside the results, with 200.",
            "headers": retry_after,
            "content": {
                "application/json": {"schema": {"anyOf": [scored, _error_schema("ErrorBody")]}}
            },
        }
    ready = spec.get("paths", {}).get("/readyz", {}).get("get")
    if ready is not None:
        ready["responses"] = {str(k): v for k, v in ready["responses"].items()}
        ready["responses"]["503"] = {
            "description": "Not ready: the model is not loaded or the online store does not answer.",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    return spec


def document_attributes(spec: dict[str, Any], attributes: Sequence[Attribute]) -> dict[str, Any]:
    """The spec with ``DealIn.attributes`` spelt out for the served model.

    The request models are the same for every model, but each model has its own
    attributes: /docs.json lists this one's by name, each with its kind (text or a
    number), label and meaning from the catalog, and no other name (an unknown one is
    refused, :func:`attribute_problems`).
    """
    field = spec["components"]["schemas"]["DealIn"]["properties"]["attributes"]
    properties = {}
    for a in attributes:
        text = a.kind == "categorical"
        properties[a.name] = {
            "anyOf": [{"type": "string" if text else "number"}, {"type": "null"}],
            "title": a.label,
            "description": f"{a.label}, {'text' if text else 'a number'}. "
            f"{attribute_feature(a).description}",
        }
    mapping = {"type": "object", "properties": properties, "additionalProperties": False}
    field["anyOf"] = [mapping, {"type": "null"}]
    known = (
        f"This model's attributes: {', '.join(a.name for a in attributes)}."
        if attributes
        else "This model has no custom attributes: send none."
    )
    field["description"] = f"{field['description']} {known}"
    return spec


def attribute_problems(deal: DealIn, known: Mapping[str, Attribute]) -> list[Problem]:
    """Attributes the model cannot read: a name it was not trained with, or a value of
    the wrong kind (text for a number, a number for a category). ``known``: the model's
    attributes known before close, by name."""
    problems = []
    for name, value in (deal.attributes or {}).items():
        attribute = known.get(name)
        if attribute is None:
            names = ", ".join(sorted(known)) or "none"
            msg = f"is not an attribute of this model (it knows: {names})"
        elif value is None or isinstance(value, str) == (attribute.kind == "categorical"):
            continue
        else:
            msg = f"must be {'text' if attribute.kind == 'categorical' else 'a number'}"
        problems.append(Problem(loc=["attributes", name], msg=msg, type="invalid_value"))
    return problems


def attribute_columns(
    deals: Sequence[DealIn], attributes: Sequence[Attribute]
) -> dict[str, list[Any]]:
    """The attribute feature columns of deals sent in full, as training computed them
    (:func:`leadscore.features.featurize.attribute_values`): absent values are missing."""
    columns = {}
    for a in attributes:
        values = pd.Series([(d.attributes or {}).get(a.name) for d in deals], dtype=object)
        column = attribute_values(a, values)
        columns[a.feature] = column.astype(object).where(column.notna(), None).tolist()
    return columns
