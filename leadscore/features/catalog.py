"""The feature catalog: every model feature, where it comes from and what it means.

One catalog serves the Feast definitions (field names and types), training (which
columns are categorical), serving (the order of the model's inputs) and the words
used to explain a score. A feature's ``description`` is a one-line sentence a sales
manager can read; ``label`` is the short name used inside a reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from leadscore.crm.contract import ACTIVITY_TYPES

Kind = Literal["numeric", "categorical", "binary"]
#: Feature views (see features/feature_views.py); ``deal_timing`` is the on-demand view.
View = Literal[
    "deal_profile",
    "deal_stage",
    "deal_contacts",
    "deal_activity",
    "deal_timing",
    "account_history",
    "owner_history",
]

WINDOWS_DAYS: tuple[int, ...] = (7, 30, 90)
#: A stage stay longer than this many days counts as a stall.
STALL_DAYS = 30


@dataclass(frozen=True)
class Feature:
    name: str
    view: View
    kind: Kind
    label: str
    description: str
    #: Unit shown next to a value in reasons ("days", "hours", ...).
    unit: str = ""
    #: Integer-valued counts are stored as Int32 in Feast; the rest as Float32 or String.
    integer: bool = False


def _activity_features() -> list[Feature]:
    out: list[Feature] = []
    for w in WINDOWS_DAYS:
        for t in ACTIVITY_TYPES:
            out.append(
                Feature(
                    f"act_{t}_{w}d",
                    "deal_activity",
                    "numeric",
                    f"{t}s in the last {w} days",
                    f"Number of {t} activities on the deal in the {w} days before scoring.",
                    integer=True,
                )
            )
        out.append(
            Feature(
                f"act_total_{w}d",
                "deal_activity",
                "numeric",
                f"activities in the last {w} days",
                f"Number of activities of any kind in the {w} days before scoring.",
                integer=True,
            )
        )
    return out


FEATURES: tuple[Feature, ...] = (
    # What the deal is: known when it is created.
    Feature("channel", "deal_profile", "categorical", "channel", "Lead source the deal came from."),
    Feature(
        "competitor",
        "deal_profile",
        "categorical",
        "competitor",
        "Main competitor ('none' when there is none, 'unknown' when not recorded).",
    ),
    Feature("product", "deal_profile", "categorical", "product", "Product the deal is for."),
    Feature("industry", "deal_profile", "categorical", "industry", "Industry of the account."),
    Feature("region", "deal_profile", "categorical", "region", "Sales region of the account."),
    Feature("amount", "deal_profile", "numeric", "deal size", "Deal value.", unit="USD"),
    Feature(
        "log_amount",
        "deal_profile",
        "numeric",
        "deal size (log)",
        "Natural log of 1 + deal value; deal size matters by orders of magnitude.",
    ),
    Feature(
        "employee_count",
        "deal_profile",
        "numeric",
        "company size",
        "Employees at the account.",
        unit="employees",
    ),
    Feature(
        "annual_revenue",
        "deal_profile",
        "numeric",
        "company revenue",
        "Annual revenue of the account.",
        unit="USD",
    ),
    # Where the deal stands in the funnel.
    Feature(
        "stage_index",
        "deal_stage",
        "numeric",
        "funnel stage",
        "Current stage: 0 lead, 1 qualified, 2 solution, 3 committed.",
        integer=True,
    ),
    Feature(
        "stage_changes",
        "deal_stage",
        "numeric",
        "stage changes",
        "Number of stage changes so far.",
        integer=True,
    ),
    Feature(
        "backward_moves",
        "deal_stage",
        "numeric",
        "moves back",
        "Number of times the deal moved back to an earlier stage.",
        integer=True,
    ),
    Feature(
        "days_in_stage",
        "deal_timing",
        "numeric",
        "days in current stage",
        "Days since the deal entered its current stage.",
        unit="days",
    ),
    Feature(
        "stalls",
        "deal_timing",
        "numeric",
        "stalls",
        f"Backward moves plus stage stays longer than {STALL_DAYS} days, the current one included.",
        integer=True,
    ),
    Feature(
        "deal_age_days",
        "deal_timing",
        "numeric",
        "cycle length so far",
        "Days since the deal was created.",
        unit="days",
    ),
    # Who is involved.
    Feature(
        "n_contacts",
        "deal_contacts",
        "numeric",
        "contacts on the deal",
        "Number of contacts attached to the deal.",
        integer=True,
    ),
    Feature(
        "max_seniority",
        "deal_contacts",
        "numeric",
        "most senior contact",
        "Highest contact seniority (1 individual contributor ... 4 director ... 6 C-level), "
        "read from free-text titles in English or Chinese.",
    ),
    Feature(
        "n_senior_contacts",
        "deal_contacts",
        "numeric",
        "senior contacts",
        "Contacts at director level or above on the deal.",
        integer=True,
    ),
    Feature(
        "has_economic_buyer",
        "deal_contacts",
        "binary",
        "economic buyer",
        "1 when a contact with the economic buyer role is attached to the deal.",
        integer=True,
    ),
    Feature(
        "senior_met",
        "deal_activity",
        "binary",
        "senior contact met",
        "1 when a meeting or visit was held with a director or above.",
        integer=True,
    ),
    # How engaged the deal is.
    *_activity_features(),
    Feature(
        "n_activities",
        "deal_activity",
        "numeric",
        "activities so far",
        "Activities logged on the deal since it was created.",
        integer=True,
    ),
    Feature(
        "share_inbound",
        "deal_activity",
        "numeric",
        "share of inbound activity",
        "Share of the deal's activities that the customer started.",
    ),
    Feature(
        "median_reply_hours",
        "deal_activity",
        "numeric",
        "median reply time",
        "Median hours between a customer's inbound activity and our next outbound one.",
        unit="hours",
    ),
    Feature(
        "first_visits",
        "deal_activity",
        "numeric",
        "first visits",
        "Visits that were the first visit to that contact.",
        integer=True,
    ),
    Feature(
        "followup_visits",
        "deal_activity",
        "numeric",
        "follow-up visits",
        "Visits to a contact already visited before.",
        integer=True,
    ),
    Feature(
        "days_since_last_activity",
        "deal_timing",
        "numeric",
        "days since last activity",
        "Days since the last activity of any kind.",
        unit="days",
    ),
    Feature(
        "days_since_last_inbound",
        "deal_timing",
        "numeric",
        "days since the customer last reached out",
        "Days since the customer's last inbound activity.",
        unit="days",
    ),
    Feature(
        "hours_awaiting_reply",
        "deal_timing",
        "numeric",
        "hours awaiting our reply",
        "Hours the customer's oldest unanswered inbound activity has waited (0 when none).",
        unit="hours",
    ),
    # Track record, from deals closed before the moment of scoring.
    Feature(
        "account_prior_won",
        "account_history",
        "numeric",
        "earlier wins with the account",
        "Deals with this account won before the moment of scoring.",
        integer=True,
    ),
    Feature(
        "account_prior_closed",
        "account_history",
        "numeric",
        "earlier closed deals with the account",
        "Deals with this account closed (won or lost) before the moment of scoring.",
        integer=True,
    ),
    Feature(
        "account_prior_win_rate",
        "account_history",
        "numeric",
        "account win rate",
        "Share of this account's earlier closed deals that were won.",
    ),
    Feature(
        "owner_prior_won",
        "owner_history",
        "numeric",
        "owner's earlier wins",
        "Deals the owner won before the moment of scoring.",
        integer=True,
    ),
    Feature(
        "owner_prior_closed",
        "owner_history",
        "numeric",
        "owner's earlier closed deals",
        "Deals the owner closed before the moment of scoring.",
        integer=True,
    ),
    Feature(
        "owner_prior_win_rate",
        "owner_history",
        "numeric",
        "owner win rate",
        "Share of the owner's earlier closed deals that were won.",
    ),
)

FEATURES_BY_NAME: dict[str, Feature] = {f.name: f for f in FEATURES}
#: The model's input columns, in order.
MODEL_FEATURES: tuple[str, ...] = tuple(f.name for f in FEATURES)
CATEGORICAL_FEATURES: tuple[str, ...] = tuple(f.name for f in FEATURES if f.kind == "categorical")


def features_of(view: View) -> list[Feature]:
    return [f for f in FEATURES if f.view == view]
