"""A tiny hand-made CRM whose feature values can be worked out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd

T0 = pd.Timestamp("2024-01-01", tz="UTC")


def day(n: float) -> pd.Timestamp:
    return T0 + pd.Timedelta(days=n)


def activities_table(acts: list[tuple[str, str | None, str, str, float]]) -> pd.DataFrame:
    """The activities table of ``(deal_id, contact_id, type, direction, day)`` rows."""
    return pd.DataFrame(
        {
            "activity_id": [f"X{i}" for i in range(len(acts))],
            "deal_id": [a[0] for a in acts],
            "contact_id": [a[1] for a in acts],
            "type": [a[2] for a in acts],
            "direction": [a[3] for a in acts],
            "occurred_at": pd.Series([day(a[4]) for a in acts], dtype="datetime64[us, UTC]"),
        }
    )


def tiny_crm() -> dict[str, pd.DataFrame]:
    """Four deals of two accounts and two owners.

    D1 won on day 60 (account A1, owner U1); D2 lost on day 40 (A1, U2);
    D3 open (A2, U1), quiet since day 20; D4 open (A1, U1), created day 50.
    """
    ts = lambda xs: pd.Series([day(x) for x in xs], dtype="datetime64[us, UTC]")  # noqa: E731
    accounts = pd.DataFrame(
        {
            "account_id": ["A1", "A2"],
            "industry": ["Retail", "Software"],
            "employee_count": [120, 4000],
            "annual_revenue": [1e7, 5e8],
            "region": ["EMEA", "APAC"],
            "created_at": ts([-100, -50]),
        }
    )
    contacts = pd.DataFrame(
        {
            "contact_id": ["C1", "C2", "C3", "C4"],
            "account_id": ["A1", "A1", "A2", "A1"],
            "title": ["CEO", "Software Engineer", "采购总监", "IT Manager"],
            "created_at": ts([-90, -90, -40, -10]),
        }
    )
    deals = pd.DataFrame(
        {
            "deal_id": ["D1", "D2", "D3", "D4"],
            "account_id": ["A1", "A1", "A2", "A1"],
            "owner_id": ["U1", "U2", "U1", "U1"],
            "created_at": ts([0, 5, 10, 50]),
            "channel": ["Referral", "web", "Paid Ads", "referral"],
            "product": ["core", "core", "plus", "core"],
            "amount": [10000.0, 50000.0, 2000.0, 7000.0],
            "currency": ["USD"] * 4,
            "competitor": ["None", "Globex", None, "unknown"],
            "stage": ["closed", "closed", "solution", "lead"],
            "status": ["won", "lost", "open", "open"],
            "closed_at": pd.Series([day(60), day(40), pd.NaT, pd.NaT], dtype="datetime64[us, UTC]"),
        }
    )
    deal_contacts = pd.DataFrame(
        {
            "deal_id": ["D1", "D1", "D2", "D3", "D4"],
            "contact_id": ["C2", "C1", "C4", "C3", "C2"],
            "role": ["user", "economic_buyer", "champion", "influencer", "user"],
            "added_at": ts([0, 12, 5, 10, 50]),
        }
    )
    # D1: inbound day 1 answered day 2 (24h), inbound day 10 answered day 10.5 (12h),
    # visit to C1 (CEO) day 15, follow-up visit day 30, inbound day 55 unanswered.
    acts = [
        ("D1", "C2", "email", "inbound", 1),
        ("D1", "C2", "email", "outbound", 2),
        ("D1", "C2", "call", "inbound", 10),
        ("D1", "C2", "call", "outbound", 10.5),
        ("D1", "C1", "visit", "outbound", 15),
        ("D1", "C1", "visit", "outbound", 30),
        ("D1", "C1", "email", "inbound", 55),
        ("D2", "C4", "call", "outbound", 6),
        ("D2", "C4", "demo", "outbound", 20),
        ("D3", "C3", "meeting", "outbound", 12),
        ("D3", "C3", "email", "inbound", 20),
        ("D4", "C2", "call", "outbound", 51),
    ]
    activities = activities_table(acts).assign(duration_seconds=600.0)
    stage_history = pd.DataFrame(
        {
            "deal_id": ["D1", "D1", "D1", "D1", "D1", "D2", "D2", "D3", "D3", "D3", "D4"],
            "stage": [
                "lead",
                "qualified",
                "solution",
                "qualified",
                "closed",
                "lead",
                "closed",
                "lead",
                "qualified",
                "solution",
                "lead",
            ],
            "entered_at": ts([0, 3, 45, 50, 60, 5, 40, 10, 11, 13, 50]),
        }
    )
    return {
        "accounts": accounts,
        "contacts": contacts,
        "deals": deals,
        "deal_contacts": deal_contacts,
        "activities": activities,
        "stage_history": stage_history,
    }


def known_at(tables: dict[str, pd.DataFrame], t: pd.Timestamp) -> dict[str, pd.DataFrame]:
    """The CRM as it stood at ``t``: later events removed, later closes undone."""
    out = {k: v.copy() for k, v in tables.items()}
    d = out["deals"]
    out["deals"] = d[d["created_at"] <= t].copy()
    closed_later = out["deals"]["closed_at"] > t
    out["deals"].loc[closed_later, "status"] = "open"
    out["deals"].loc[closed_later, "closed_at"] = pd.NaT
    out["activities"] = out["activities"][out["activities"]["occurred_at"] <= t]
    out["stage_history"] = out["stage_history"][out["stage_history"]["entered_at"] <= t]
    out["deal_contacts"] = out["deal_contacts"][out["deal_contacts"]["added_at"] <= t]
    return out


def with_interaction_signal(frame: pd.DataFrame, seed: int = 0, noise: float = 0.1) -> pd.DataFrame:
    """``frame`` relabelled so that trees beat both baselines by a wide margin.

    A deal is won when exactly one of "amount above the median" and "account above the
    median size" holds (an exclusive or, which no linear model and no channel rate can
    express), with ``noise`` of the outcomes flipped. For tests of what happens to a model
    that passes the baseline gate (promotion, serving) on a CRM small enough to train in
    a second; the synthetic CRM's own signal is nearly linear, so there a small CRM's
    model is rightly refused.
    """
    out = frame.copy()
    deals = out.drop_duplicates("deal_id").set_index("deal_id")
    won = interaction_outcomes(deals["amount"], deals["employee_count"], seed, noise)
    labels = dict(zip(deals.index, won.astype(np.int64), strict=True))
    out["won"] = out["deal_id"].map(labels).astype(np.int64)
    return out


def interaction_outcomes(
    amount: pd.Series, employee_count: pd.Series, seed: int = 0, noise: float = 0.1
) -> np.ndarray:
    """Won (True) when exactly one of "amount above the median" and "account above the
    median size" holds, with ``noise`` of the outcomes flipped: the rule of
    :func:`with_interaction_signal` and :func:`with_interaction_export`."""
    won = ((amount > amount.median()) ^ (employee_count > employee_count.median())).to_numpy()
    return won ^ (np.random.default_rng(seed).random(len(won)) < noise)


def with_interaction_export(
    tables: dict[str, pd.DataFrame], seed: int = 0, noise: float = 0.1
) -> dict[str, pd.DataFrame]:
    """A CRM export's tables whose closed deals are won or lost by the rule of
    :func:`with_interaction_signal`, decided on the export itself (their ``closed_at``
    and stage history unchanged: the closed stage is the same for both outcomes), so
    that ``leadscore train`` on it passes the baseline gate on a small CRM."""
    deals = tables["deals"].copy()
    closed = deals["status"].isin(["won", "lost"])
    sizes = tables["accounts"].set_index("account_id")["employee_count"]
    part = deals[closed]
    won = interaction_outcomes(
        part["amount"], part["account_id"].map(sizes).astype(float), seed, noise
    )
    deals.loc[closed, "status"] = np.where(won, "won", "lost")
    return {**tables, "deals": deals}


def with_shuffled_outcomes(
    tables: dict[str, pd.DataFrame], seed: int = 0
) -> dict[str, pd.DataFrame]:
    """A CRM export's tables with the closed deals' outcomes shuffled among them: a
    model trained on it knows nothing, and the promotion gate refuses it."""
    deals = tables["deals"].copy()
    closed = deals["status"].isin(["won", "lost"])
    deals.loc[closed, "status"] = np.random.default_rng(seed).permutation(
        deals.loc[closed, "status"].to_numpy()
    )
    return {**tables, "deals": deals}


def ranking_crm() -> dict[str, pd.DataFrame]:
    """The tiny CRM, with D4's customer writing on day 52 and answered on day 53."""
    tables = tiny_crm()
    acts = tables["activities"]
    answered = pd.DataFrame(
        {
            "activity_id": ["X90", "X91"],
            "deal_id": "D4",
            "contact_id": "C2",
            "type": "email",
            "direction": ["inbound", "outbound"],
            "occurred_at": pd.Series([day(52), day(53)], dtype=acts["occurred_at"].dtype),
            "duration_seconds": 60.0,
        }
    )
    tables["activities"] = pd.concat([acts, answered], ignore_index=True)
    return tables


def window_crm() -> dict[str, pd.DataFrame]:
    """:func:`tiny_crm` with hand-made activity bursts on D1 and D2 for the count windows:
    several activities in one second (one source row), sub-second times (seen at the
    next whole second), a type outside the contract (in totals only), and activities
    exactly 7, 30 and 90 days apart, so that one enters a window as another leaves it."""
    tables = tiny_crm()
    acts = [
        ("D1", "C1", "call", "outbound", 2.0),
        ("D1", "C1", "email", "inbound", 2.0),  # the same second: one row
        ("D1", "C2", "meeting", "outbound", 2.0 + 0.4 / 86_400),  # seen at 2 d + 1 s
        ("D1", "C1", "webinar", "inbound", 5.5),
        ("D1", "C2", "visit", "outbound", 9.0),  # the call of day 2 leaves the 7-day window
        ("D1", "C1", "call", "outbound", 32.0),  # ... and the 30-day one
        ("D1", "C1", "demo", "outbound", 39.0),
        ("D1", "C1", "call", "inbound", 92.0),  # ... and the 90-day one
        ("D2", "C3", "email", "outbound", 10.25 + 0.3 / 86_400),
        ("D2", "C3", "email", "inbound", 10.25 + 0.8 / 86_400),  # both seen at 06:00:01
        ("D2", "C3", "quote", "outbound", 17.25),
    ]
    tables["activities"] = activities_table(acts).assign(duration_seconds=60.0)
    return tables


def window_moments(activities: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Moments to check window counts at, per deal of ``activities``: each activity's
    second, a window after it and one second less (its last second in the window), and
    random moments with microseconds; entity rows for ``features_as_of`` and Feast."""
    from leadscore.features.catalog import WINDOWS_DAYS

    rng = np.random.default_rng(seed)
    rows = []
    for deal_id, acts in activities.groupby("deal_id"):
        seen = acts["occurred_at"].dt.ceil("s")
        moments = [*seen, *(seen - pd.Timedelta(seconds=1))]
        for w in WINDOWS_DAYS:
            moments += [*(seen + pd.Timedelta(days=w)), *(seen + pd.Timedelta(days=w, seconds=-1))]
        offsets = rng.integers(0, 130 * 86_400 * 1_000_000, size=40)
        moments += [day(0) + pd.Timedelta(microseconds=int(u)) for u in offsets]
        rows += [(deal_id, m) for m in sorted(set(moments))]
    tables = tiny_crm()["deals"].set_index("deal_id")
    ids = [r[0] for r in rows]
    return pd.DataFrame(
        {
            "deal_id": ids,
            "account_id": tables.loc[ids, "account_id"].to_numpy(),
            "owner_id": tables.loc[ids, "owner_id"].to_numpy(),
            "event_timestamp": pd.Series([r[1] for r in rows], dtype="datetime64[us, UTC]"),
        }
    )


def brute_force_window_counts(activities: pd.DataFrame, moments: pd.DataFrame) -> pd.DataFrame:
    """``act_{kind}_{w}d`` by their definition, one moment at a time: the activities of the
    deal seen (at their whole second, rounded up) in (q - w days, q]; missing before the
    deal's first activity."""
    from leadscore.crm.contract import ACTIVITY_TYPES
    from leadscore.features.catalog import WINDOWS_DAYS

    seen = activities["occurred_at"].dt.ceil("s")
    out = []
    for deal_id, q in zip(moments["deal_id"], moments["event_timestamp"], strict=True):
        mine = activities["deal_id"].eq(deal_id)
        row: dict[str, float] = {}
        for w in WINDOWS_DAYS:
            inside = mine & (seen > q - pd.Timedelta(days=w)) & (seen <= q)
            for kind in (*ACTIVITY_TYPES, "total"):
                n = inside if kind == "total" else inside & activities["type"].eq(kind)
                row[f"act_{kind}_{w}d"] = float(n.sum())
        if not (mine & (seen <= q)).any():
            row = dict.fromkeys(row, np.nan)
        out.append(row)
    return pd.DataFrame(out)
