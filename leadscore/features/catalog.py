"""The feature catalog: every model feature, what it means and the policy it carries.

One entry per feature serves the Feast definitions (field names and types), training
(which columns are categorical, the monotone direction a model is held to), the
promotion gate's behaviour checks (:mod:`training.behaviour` checks every feature with
a direction), serving (the order of the model's inputs), which reasons a rep sees and
in what order (``reason_group``) and the words of a reason
(:mod:`leadscore.model.reasons` phrases any feature from its entry, with no feature
names of its own). Adding or changing a feature touches its rule (a kernel in
:mod:`leadscore.features.deal_state` or a source column in
:mod:`leadscore.features.featurize`), its entry here, and a test.

A feature's ``description`` is a one-line sentence a sales manager can read; ``label``
is the short name used inside a reason.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from leadscore.crm.attributes import Attribute, feature_attributes
from leadscore.crm.contract import ACTIVITY_TYPES, STAGES
from leadscore.features.seniority import LABELS as SENIORITY_LABELS
from leadscore.features.seniority import SENIOR_LEVEL, Seniority

Kind = Literal["numeric", "categorical", "binary"]
#: +1: the win probability may only rise with the feature; -1: only fall; 0: free.
Monotone = Literal[-1, 0, 1]
#: Feature views (see features/feature_views.py); ``deal_timing`` is the on-demand view.
View = Literal[
    "deal_profile",
    "deal_stage",
    "deal_contacts",
    "deal_activity",
    "deal_timing",
    "account_history",
    "owner_history",
    "deal_attributes",
    "deal_revival",
    "revival_timing",
]

#: What kind of reason a feature makes (``Feature.reason_group``), so the reasons a rep
#: reads come in an order they can act on:
#:
#: * ``engagement``: what the customer and we do on the deal (activities, visits, replies);
#: * ``stakeholders``: who is involved (contacts, seniority, the economic buyer);
#: * ``timing``: how long things have taken or waited (quiet days, days in stage, age);
#: * ``stage``: where the deal stands in the funnel and how it moved;
#: * ``deal fact``: what the deal and its account are (channel, size, industry): true,
#:   but nothing a rep changes on this deal;
#: * ``track record``: counts and rates of deals closed before (the owner's, the
#:   account's). They stay in the model, which learns from them, but are never shown as
#:   a reason: "Owner's earlier closed deals: 41" names no action on this deal, and the
#:   account's past is no more the rep's to change than the owner's.
ReasonGroup = Literal["engagement", "stakeholders", "timing", "stage", "deal fact", "track record"]
#: Groups a rep can act on, in the issue's order: their reasons are listed before the
#: rest (see :class:`leadscore.model.explain.Explainer`).
ACTIONABLE_GROUPS: tuple[ReasonGroup, ...] = ("engagement", "stakeholders", "timing", "stage")
#: Groups never shown as a reason; their features still push the score.
HIDDEN_GROUPS: tuple[ReasonGroup, ...] = ("track record",)

WINDOWS_DAYS: tuple[int, ...] = (7, 30, 90)
#: A stage stay longer than this many days counts as a stall.
STALL_DAYS = 30
#: Who counts as senior, in words: "director or above" (from the parser's SENIOR_LEVEL).
SENIOR = f"{Seniority(SENIOR_LEVEL).name.lower().replace('_', '-')} or above"


@dataclass(frozen=True)
class Levels:
    """The named values of an ordinal feature (funnel stage, seniority) and how a
    tooltip names a range of them. Templates take ``{low}`` and ``{high}`` level names."""

    names: Mapping[int, str]
    #: One level: "in the {low} stage".
    one: str
    #: Several levels: "in stages {low} to {high}".
    span: str
    #: A level and everything above it: "in the {low} stage or later".
    upward: str

    def name(self, value: float) -> str:
        return self.names.get(int(value), f"level {value:g}")


@dataclass(frozen=True)
class Phrasing:
    """How a reason puts a feature in words (see :mod:`leadscore.model.reasons`).

    Templates take ``{value}``: the deal's value as a person writes it (with its unit,
    a level's name, a category with spaces), or in a condition the training bin it falls
    in ("7 days to 14 days"); ``{Value}`` is the same, capitalised. An empty field falls
    back to the phrasing of the feature's kind ("Product: software", "With deal size of
    $10,000 or more").
    """

    #: The deal's value in a few words: "No activity for {value}".
    text: str = ""
    #: Texts for particular values, before ``text`` (a binary's 0 and 1, a category).
    exact: Mapping[float | str, str] = field(default_factory=dict)
    #: (bound, text): values below ``bound`` read ``text`` ("Activity in the last day").
    below: tuple[float, str] | None = None
    #: Which training deals a tooltip speaks of: "Deals {condition} were won 30% of the time".
    condition: str = ""
    #: Conditions for particular values (a binary's 0 and 1, a category).
    exact_condition: Mapping[float | str, str] = field(default_factory=dict)
    #: The noun after a number in a count's condition ("3 earlier wins by the owner");
    #: the label when empty.
    noun: str = ""
    #: (text, condition) when the value is missing: what a missing value means here.
    missing: tuple[str, str] | None = None
    #: A number read against the training deals: "Discount % is high (42)", where low,
    #: mid-range or high is the training bin the value falls in.
    relative: bool = False


@dataclass(frozen=True)
class Feature:
    name: str
    view: View
    kind: Kind
    label: str
    description: str
    #: Unit shown next to a value in reasons: "USD", "days", "hours", "employees", or
    #: "%" for a share between 0 and 1.
    unit: str = ""
    #: Integer-valued counts are stored as Int32 in Feast; the rest as Float32 or String.
    integer: bool = False
    #: Direction the model is held to (LightGBM monotone constraint) and the promotion
    #: gate checks: set only where sales experience agrees, since the rest is a finding.
    monotone: Monotone = 0
    #: What the behaviour check adds to the feature to test ``monotone`` (one more stall,
    #: 24 more hours of reply time); a binary or ordinal feature stops at its top value.
    check_step: float = 1.0
    #: Named values of an ordinal feature.
    levels: Levels | None = None
    #: Another feature this one is explained as (the same idea in another encoding);
    #: their TreeSHAP pushes are added up into one reason.
    explained_as: str = ""
    #: What kind of reason the feature makes (:data:`ReasonGroup`): whether it is shown
    #: at all, and whether before or after the others. A feature with no group of its own
    #: is a ``deal fact``: shown, after what a rep can act on.
    reason_group: ReasonGroup = "deal fact"
    phrasing: Phrasing = field(default_factory=Phrasing)

    @property
    def discrete(self) -> bool:
        """Whole-number values: counts, binaries and levels."""
        return self.integer or self.kind == "binary" or self.levels is not None

    @property
    def is_count(self) -> bool:
        """A number of things ("3 calls"), not a level or a measure."""
        return self.integer and self.kind == "numeric" and self.levels is None

    @property
    def top(self) -> float:
        """Highest value the feature can take (a binary's 1, an ordinal's top level)."""
        if self.kind == "binary":
            return 1.0
        if self.levels is not None:
            return float(max(self.levels.names))
        return math.inf


#: Funnel stages by ``stage_index`` (the contract's stages, in order).
STAGE_LEVELS = Levels(
    dict(enumerate(STAGES)),
    one="in the {low} stage",
    span="in stages {low} to {high}",
    upward="in the {low} stage or later",
)
#: Contact seniority by level (the title parser's levels and labels).
SENIORITY_LEVELS = Levels(
    SENIORITY_LABELS,
    one="whose most senior contact ranked {low}",
    span="whose most senior contact ranked {low} to {high}",
    upward="whose most senior contact ranked {low} or higher",
)

#: What a missing value means, by view: a feature row exists only from the first
#: activity, contact, stage entry or earlier closed deal. (reason text, tooltip condition)
NO_ACTIVITY = ("No activity logged yet", "with no activity logged yet")
NO_STAGES = ("No stage history", "with no stage history")
MISSING_BY_VIEW: dict[View, tuple[str, str]] = {
    "deal_activity": NO_ACTIVITY,
    "deal_stage": NO_STAGES,
    "deal_contacts": ("No contacts on the deal yet", "with no contacts on the deal yet"),
    "account_history": (
        "No earlier closed deals with the account",
        "with no earlier closed deals with the account",
    ),
    "owner_history": (
        "No earlier closed deals for the owner",
        "whose owner had no earlier closed deals",
    ),
    "deal_revival": ("No loss recorded", "with no loss recorded"),
}


def _window_count_features() -> list[Feature]:
    """The window counts ``act_{kind}_{w}d``: activities of each type, then of any type, in
    the ``w`` days up to the moment. ``deal_timing`` computes them at the moment of scoring from the
    ``deal_activity`` source's cumulative counts, read at the moment and ``w`` days before
    it (:func:`leadscore.features.featurize.window_counts`); missing before the deal's
    first activity, as the ``deal_activity`` view's features are."""
    out: list[Feature] = []
    for w in WINDOWS_DAYS:
        for t in ACTIVITY_TYPES:
            out.append(
                Feature(
                    f"act_{t}_{w}d",
                    "deal_timing",
                    "numeric",
                    f"{t}s in the last {w} days",
                    f"Number of {t} activities on the deal in the {w} days before scoring.",
                    integer=True,
                    phrasing=Phrasing(missing=NO_ACTIVITY),
                    reason_group="engagement",
                )
            )
        out.append(
            Feature(
                f"act_total_{w}d",
                "deal_timing",
                "numeric",
                f"activities in the last {w} days",
                f"Number of activities of any kind in the {w} days before scoring.",
                integer=True,
                phrasing=Phrasing(missing=NO_ACTIVITY),
                reason_group="engagement",
            )
        )
    return out


_WINDOW_COUNT_FEATURES = _window_count_features()
#: Names of the window counts, in the order of
#: :func:`leadscore.features.deal_state.activity_at`'s count matrix.
WINDOW_COUNT_COLUMNS: tuple[str, ...] = tuple(f.name for f in _WINDOW_COUNT_FEATURES)


def _seniority_scale() -> str:
    return ", ".join(f"{level} {name}" for level, name in SENIORITY_LABELS.items())


_FEATURES: tuple[Feature, ...] = (
    # What the deal is: known when it is created.
    Feature(
        "channel",
        "deal_profile",
        "categorical",
        "channel",
        "Lead source the deal came from.",
        phrasing=Phrasing(text="{Value} channel", condition="from the {value} channel"),
    ),
    Feature(
        "competitor",
        "deal_profile",
        "categorical",
        "competitor",
        "Main competitor ('none' when there is none, 'unknown' when not recorded).",
        phrasing=Phrasing(
            text="Competing against {value}",
            exact={"none": "No competitor", "unknown": "Competitor not recorded"},
            condition="against {value}",
            exact_condition={
                "none": "without a competitor",
                "unknown": "with no competitor recorded",
            },
        ),
    ),
    Feature(
        "product",
        "deal_profile",
        "categorical",
        "product",
        "Product the deal is for.",
        phrasing=Phrasing(condition="for {value}"),
    ),
    Feature(
        "industry",
        "deal_profile",
        "categorical",
        "industry",
        "Industry of the account.",
        phrasing=Phrasing(text="{Value} industry", condition="in the {value} industry"),
    ),
    Feature(
        "region",
        "deal_profile",
        "categorical",
        "region",
        "Sales region of the account.",
        phrasing=Phrasing(condition="in the {value} region"),
    ),
    Feature(
        "amount",
        "deal_profile",
        "numeric",
        "deal size",
        "Deal value.",
        unit="USD",
        phrasing=Phrasing(text="Deal size {value}"),
    ),
    Feature(
        "log_amount",
        "deal_profile",
        "numeric",
        "deal size (log)",
        "Natural log of 1 + deal value; deal size matters by orders of magnitude.",
        explained_as="amount",
    ),
    Feature(
        "employee_count",
        "deal_profile",
        "numeric",
        "company size",
        "Employees at the account.",
        unit="employees",
        phrasing=Phrasing(text="Company of {value}"),
    ),
    Feature(
        "annual_revenue",
        "deal_profile",
        "numeric",
        "company revenue",
        "Annual revenue of the account.",
        unit="USD",
        phrasing=Phrasing(text="Company revenue {value}"),
    ),
    # Where the deal stands in the funnel.
    Feature(
        "stage_index",
        "deal_stage",
        "numeric",
        "funnel stage",
        "Current stage: " + ", ".join(f"{i} {s}" for i, s in enumerate(STAGES[:-1])) + ".",
        integer=True,
        levels=STAGE_LEVELS,
        phrasing=Phrasing(text="In the {value} stage"),
        reason_group="stage",
    ),
    Feature(
        "stage_changes",
        "deal_stage",
        "numeric",
        "stage changes",
        "Number of stage changes so far.",
        integer=True,
        reason_group="stage",
    ),
    Feature(
        "backward_moves",
        "deal_stage",
        "numeric",
        "moves back",
        "Number of times the deal moved back to an earlier stage.",
        integer=True,
        reason_group="stage",
    ),
    Feature(
        "days_in_stage",
        "deal_timing",
        "numeric",
        "days in current stage",
        "Days since the deal entered its current stage.",
        unit="days",
        monotone=-1,
        check_step=STALL_DAYS,
        phrasing=Phrasing(
            text="{Value} in the current stage",
            condition="that had spent {value} in their stage",
            missing=NO_STAGES,
        ),
        reason_group="timing",
    ),
    Feature(
        "stalls",
        "deal_timing",
        "numeric",
        "stalls",
        f"Backward moves plus stage stays longer than {STALL_DAYS} days, the current one included.",
        integer=True,
        monotone=-1,
        phrasing=Phrasing(missing=NO_STAGES),
        reason_group="stage",
    ),
    Feature(
        "deal_age_days",
        "deal_timing",
        "numeric",
        "cycle length so far",
        "Days since the deal was created.",
        unit="days",
        phrasing=Phrasing(text="Open for {value}", condition="open for {value}"),
        reason_group="timing",
    ),
    # Who is involved.
    Feature(
        "n_contacts",
        "deal_contacts",
        "numeric",
        "contacts on the deal",
        "Number of contacts attached to the deal.",
        integer=True,
        reason_group="stakeholders",
    ),
    Feature(
        "max_seniority",
        "deal_contacts",
        "numeric",
        "most senior contact",
        f"Highest contact seniority ({_seniority_scale()}), "
        "read from free-text titles in English or Chinese.",
        monotone=1,
        levels=SENIORITY_LEVELS,
        phrasing=Phrasing(text="Most senior contact: {value}"),
        reason_group="stakeholders",
    ),
    Feature(
        "n_senior_contacts",
        "deal_contacts",
        "numeric",
        "senior contacts",
        f"Contacts ranked {SENIOR} on the deal.",
        integer=True,
        monotone=1,
        reason_group="stakeholders",
    ),
    Feature(
        "has_economic_buyer",
        "deal_contacts",
        "binary",
        "economic buyer",
        "1 when a contact with the economic buyer role is attached to the deal.",
        integer=True,
        monotone=1,
        phrasing=Phrasing(
            exact={1: "Economic buyer on the deal", 0: "No economic buyer on the deal"},
            exact_condition={1: "with an economic buyer", 0: "without an economic buyer"},
        ),
        reason_group="stakeholders",
    ),
    Feature(
        "senior_met",
        "deal_activity",
        "binary",
        "senior contact met",
        f"1 when a meeting or visit was held with a {SENIOR}.",
        integer=True,
        monotone=1,
        phrasing=Phrasing(
            exact={1: f"Met a {SENIOR}", 0: f"No meeting with a {SENIOR} yet"},
            exact_condition={1: f"where a {SENIOR} was met", 0: f"where no {SENIOR} was met"},
        ),
        reason_group="stakeholders",
    ),
    # How engaged the deal is.
    *_WINDOW_COUNT_FEATURES,
    Feature(
        "n_activities",
        "deal_activity",
        "numeric",
        "activities so far",
        "Activities logged on the deal since it was created.",
        integer=True,
        reason_group="engagement",
    ),
    Feature(
        "share_inbound",
        "deal_activity",
        "numeric",
        "share of inbound activity",
        "Share of the deal's activities that the customer started.",
        unit="%",
        phrasing=Phrasing(text="{value} of activities started by the customer"),
        reason_group="engagement",
    ),
    Feature(
        "median_reply_hours",
        "deal_activity",
        "numeric",
        "median reply time",
        "Median hours between a customer's inbound activity and our next outbound one.",
        unit="hours",
        monotone=-1,
        check_step=24.0,
        phrasing=Phrasing(
            text="Median reply time {value}",
            missing=("No reply to the customer yet", "with no reply to the customer yet"),
        ),
        reason_group="engagement",
    ),
    Feature(
        "first_visits",
        "deal_activity",
        "numeric",
        "first visits",
        "Visits that were the first visit to that contact.",
        integer=True,
        reason_group="engagement",
    ),
    Feature(
        "followup_visits",
        "deal_activity",
        "numeric",
        "follow-up visits",
        "Visits to a contact already visited before.",
        integer=True,
        reason_group="engagement",
    ),
    Feature(
        "days_since_last_activity",
        "deal_timing",
        "numeric",
        "days since last activity",
        "Days since the last activity of any kind.",
        unit="days",
        phrasing=Phrasing(
            text="No activity for {value}",
            below=(1.0, "Activity in the last day"),
            condition="this quiet ({value} without activity)",
            missing=NO_ACTIVITY,
        ),
        reason_group="timing",
    ),
    Feature(
        "days_since_last_inbound",
        "deal_timing",
        "numeric",
        "days since the customer last reached out",
        "Days since the customer's last inbound activity.",
        unit="days",
        phrasing=Phrasing(
            text="Customer last reached out {value} ago",
            condition="whose customer last reached out {value} ago",
            missing=(
                "The customer has not reached out yet",
                "where the customer had not reached out yet",
            ),
        ),
        reason_group="timing",
    ),
    Feature(
        "hours_awaiting_reply",
        "deal_timing",
        "numeric",
        "hours awaiting our reply",
        "Hours the customer's oldest unanswered inbound activity has waited (0 when none).",
        unit="hours",
        monotone=-1,
        check_step=24.0,
        phrasing=Phrasing(
            text="Customer waiting {value} for our reply",
            exact={0: "No customer message awaiting our reply"},
            missing=NO_ACTIVITY,
        ),
        reason_group="timing",
    ),
    # Track record, from deals closed before the moment of scoring.
    Feature(
        "account_prior_won",
        "account_history",
        "numeric",
        "earlier wins with the account",
        "Deals with this account won before the moment of scoring.",
        integer=True,
        reason_group="track record",
    ),
    Feature(
        "account_prior_closed",
        "account_history",
        "numeric",
        "earlier closed deals with the account",
        "Deals with this account closed (won or lost) before the moment of scoring.",
        integer=True,
        reason_group="track record",
    ),
    Feature(
        "account_prior_win_rate",
        "account_history",
        "numeric",
        "account win rate",
        "Share of this account's earlier closed deals that were won.",
        unit="%",
        phrasing=Phrasing(text="Account win rate {value}"),
        reason_group="track record",
    ),
    Feature(
        "owner_prior_won",
        "owner_history",
        "numeric",
        "owner's earlier wins",
        "Deals the owner won before the moment of scoring.",
        integer=True,
        phrasing=Phrasing(
            text="Owner's earlier wins: {value}",
            exact={0: "Owner has no earlier wins"},
            noun="earlier wins by the owner",
        ),
        reason_group="track record",
    ),
    Feature(
        "owner_prior_closed",
        "owner_history",
        "numeric",
        "owner's earlier closed deals",
        "Deals the owner closed before the moment of scoring.",
        integer=True,
        phrasing=Phrasing(
            text="Owner's earlier closed deals: {value}",
            exact={0: "Owner has no earlier closed deals"},
            noun="earlier closed deals by the owner",
        ),
        reason_group="track record",
    ),
    Feature(
        "owner_prior_win_rate",
        "owner_history",
        "numeric",
        "owner win rate",
        "Share of the owner's earlier closed deals that were won.",
        unit="%",
        phrasing=Phrasing(text="Owner win rate {value}"),
        reason_group="track record",
    ),
)


#: What a lost deal looks like since its latest loss: the revival model's own features
#: (``deal_revival``, and ``revival_timing`` at the moment of scoring). Kept apart from
#: :data:`FEATURES`, the win model's inputs, which stay as released (``lead_scoring_v1``).
_REVIVAL_FEATURES: tuple[Feature, ...] = (
    Feature(
        "lost_reason",
        "deal_revival",
        "categorical",
        "lost reason",
        "Why the deal was lost: price, competitor, no decision, timing, budget, product fit "
        "or other, read from the CRM's lost reason in English or Chinese.",
        phrasing=Phrasing(
            text="Lost on {value}",
            exact={"other": "Lost for another reason", "no_decision": "Lost: no decision made"},
            condition="lost on {value}",
            exact_condition={"other": "lost for another reason", "no_decision": "lost undecided"},
            missing=("No lost reason recorded", "with no lost reason recorded"),
        ),
    ),
    Feature(
        "furthest_stage_at_loss",
        "deal_revival",
        "numeric",
        "furthest stage before the loss",
        "Furthest funnel stage the deal had reached when it was lost.",
        integer=True,
        levels=STAGE_LEVELS,
        phrasing=Phrasing(
            text="Reached the {value} stage before it was lost",
            missing=("Furthest stage unknown", "whose furthest stage is unknown"),
        ),
    ),
    Feature(
        "days_open_at_loss",
        "deal_revival",
        "numeric",
        "days open before the loss",
        "Days from the deal's creation to its loss: how long the customer engaged before "
        "saying no.",
        unit="days",
        phrasing=Phrasing(
            text="Open {value} before it was lost",
            condition="open {value} before the loss",
            missing=("Creation date unknown", "whose creation date is unknown"),
        ),
    ),
    Feature(
        "competitor_at_loss",
        "deal_revival",
        "categorical",
        "competitor at the loss",
        "Main competitor when the deal was lost ('none' when there was none, 'unknown' "
        "when not recorded).",
        phrasing=Phrasing(
            text="Lost against {value}",
            exact={"none": "Lost without a competitor", "unknown": "Competitor not recorded"},
            condition="lost against {value}",
            exact_condition={
                "none": "lost without a competitor",
                "unknown": "with no competitor recorded",
            },
        ),
    ),
    Feature(
        "inbound_since_loss",
        "deal_revival",
        "numeric",
        "customer contacts since the loss",
        "Calls, e-mails and other activities the customer started since the deal was lost.",
        integer=True,
        monotone=1,
        reason_group="engagement",
    ),
    Feature(
        "outbound_since_loss",
        "deal_revival",
        "numeric",
        "our contacts since the loss",
        "Calls, e-mails and other activities we started since the deal was lost.",
        integer=True,
        monotone=1,
        reason_group="engagement",
    ),
    Feature(
        "replies_since_loss",
        "deal_revival",
        "numeric",
        "replies to the customer since the loss",
        "Times we answered the customer since the deal was lost.",
        integer=True,
        monotone=1,
        reason_group="engagement",
    ),
    Feature(
        "visits_since_loss",
        "deal_revival",
        "numeric",
        "visits since the loss",
        "Visits to the customer since the deal was lost.",
        integer=True,
        monotone=1,
        reason_group="engagement",
    ),
    Feature(
        "senior_engaged_since_loss",
        "deal_revival",
        "numeric",
        "most senior contact since the loss",
        f"Highest seniority ({_seniority_scale()}) of the contacts in activities since the "
        "deal was lost.",
        monotone=1,
        levels=SENIORITY_LEVELS,
        phrasing=Phrasing(
            text="Most senior contact since the loss: {value}",
            missing=("No known contact engaged since the loss", "with no known contact engaged"),
        ),
        reason_group="stakeholders",
    ),
    Feature(
        "account_revivals_before",
        "deal_revival",
        "numeric",
        "earlier comebacks of the account",
        "Other lost deals of the account that came back (re-opened, or followed by a new "
        "deal) before the moment of scoring.",
        integer=True,
        phrasing=Phrasing(missing=("No account on the deal", "with no account on the deal")),
        reason_group="track record",
    ),
    Feature(
        "account_open_deals",
        "deal_revival",
        "numeric",
        "other open deals with the account",
        "Other deals with the account open at the moment of scoring.",
        integer=True,
        phrasing=Phrasing(missing=("No account on the deal", "with no account on the deal")),
    ),
    Feature(
        "days_since_loss",
        "revival_timing",
        "numeric",
        "days since the loss",
        "Days since the deal was lost.",
        unit="days",
        phrasing=Phrasing(text="Lost {value} ago", condition="lost {value} before"),
        reason_group="timing",
    ),
    Feature(
        "days_since_engaged",
        "revival_timing",
        "numeric",
        "days since the last contact after the loss",
        "Days since the last activity with the customer after the deal was lost.",
        unit="days",
        phrasing=Phrasing(
            text="Last contact since the loss {value} ago",
            condition="whose last contact since the loss was {value} before",
            missing=("No contact since the loss", "with no contact since the loss"),
        ),
        reason_group="timing",
    ),
)


def _with_view_missing(f: Feature) -> Feature:
    """The view's meaning of a missing value, unless the entry says its own."""
    if f.phrasing.missing is not None or f.view not in MISSING_BY_VIEW:
        return f
    return replace(f, phrasing=replace(f.phrasing, missing=MISSING_BY_VIEW[f.view]))


FEATURES: tuple[Feature, ...] = tuple(_with_view_missing(f) for f in _FEATURES)
FEATURES_BY_NAME: dict[str, Feature] = {f.name: f for f in FEATURES}
#: The model's input columns, in order.
MODEL_FEATURES: tuple[str, ...] = tuple(f.name for f in FEATURES)
CATEGORICAL_FEATURES: tuple[str, ...] = tuple(f.name for f in FEATURES if f.kind == "categorical")
#: Monotone directions by feature, for the features that have one.
MONOTONE: dict[str, Monotone] = {f.name: f.monotone for f in FEATURES if f.monotone}

REVIVAL_FEATURES: tuple[Feature, ...] = tuple(_with_view_missing(f) for f in _REVIVAL_FEATURES)
#: Views whose features the revival model reads (feature service ``revival_v1``): what
#: the deal and its account are, who was involved, and the loss and what followed it.
REVIVAL_VIEWS: tuple[View, ...] = (
    "deal_profile",
    "deal_contacts",
    "account_history",
    "deal_revival",
    "revival_timing",
)


def features_of(view: View) -> list[Feature]:
    """Catalog entries of one view, the win model's and the revival model's alike."""
    return [f for f in (*FEATURES, *REVIVAL_FEATURES) if f.view == view]


def activity_features() -> list[Feature]:
    """Every feature of the activity rules (:func:`leadscore.features.deal_state.activity_at`):
    the ``deal_activity`` view's and the window counts ``deal_timing`` derives from it. What a
    CRM may send pre-summarised instead of the activity list (serving's ``activity_summary``)."""
    return [f for f in FEATURES if f.view == "deal_activity" or f.name in WINDOW_COUNT_COLUMNS]


def revival_catalog() -> tuple[Feature, ...]:
    """Every feature of the revival model, in the order of :data:`REVIVAL_VIEWS`."""
    return tuple(f for view in REVIVAL_VIEWS for f in features_of(view))


# ---------------------------------------------------------------- custom attributes
#: What an ``anytime`` attribute's value means for training, in its description.
ANYTIME_CAVEAT = (
    "The export holds its last value, which for a closed deal may have been set after the "
    "outcome was known; it is taken as known from the deal's creation."
)


def attribute_feature(attribute: Attribute) -> Feature:
    """The catalog entry of a custom attribute known before close.

    Attributes get no monotone constraint (nobody has a firm belief about a column
    the catalog has never seen) and are phrased from their label: "Team is enterprise",
    "Discount % is high (42)".
    """
    if not attribute.is_feature:
        raise ValueError(f"attribute {attribute.name!r} is known after close: never a feature")
    where = "the account" if attribute.table == "accounts" else "the deal"
    known = (
        "fixed when the deal is created."
        if attribute.known == "creation"
        else f"may change while the deal is open. {ANYTIME_CAVEAT}"
    )
    label = attribute.label
    if attribute.kind == "categorical":
        phrasing = Phrasing(
            text=f"{label} is {{value}}",
            condition=f"where {label} was {{value}}",
            missing=(f"{label} not recorded", f"with no {label} recorded"),
        )
    else:
        phrasing = Phrasing(
            relative=True,
            condition=f"with {label} of {{value}}",
            missing=(f"{label} not recorded", f"with no {label} recorded"),
        )
    return Feature(
        attribute.feature,
        "deal_attributes",
        attribute.kind,
        label,
        f"Custom attribute of {where} ({attribute.source or attribute.name}), {known}",
        phrasing=phrasing,
    )


def attribute_features(attributes: Iterable[Attribute]) -> tuple[Feature, ...]:
    """Catalog entries of the attributes that may be features (never ``after_close``)."""
    return tuple(attribute_feature(a) for a in feature_attributes(attributes))


def model_catalog(attributes: Iterable[Attribute] = ()) -> tuple[Feature, ...]:
    """Every feature a model with these attributes may use: the built-in ones, then its own."""
    return FEATURES + attribute_features(attributes)


def features_by_name(attributes: Iterable[Attribute] = ()) -> dict[str, Feature]:
    """Catalog entries by name for a model trained with ``attributes``."""
    return {f.name: f for f in model_catalog(attributes)}
