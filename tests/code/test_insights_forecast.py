"""The pipeline forecast and its backtest on a small CRM written out literally.

Two reps (U1, U2); the forecast is made at T = 2024-04-01 00:00 UTC.

Deal  owner created     status closed      amount  stages (entered)
W1    U1    2023-10-01  won    2024-01-15  3000    lead 10-01, qualified 11-01, closed 01-15
L1    U2    2023-12-01  lost   2024-02-10  800     lead 12-01, qualified 12-15, closed 02-10
L2    U2    2023-11-01  lost   2023-12-20  600     lead 11-01, closed 12-20
A     U1    2024-03-01  open               1000    lead 03-01, qualified 03-15
B     U1    2024-02-01  open               2000    lead 02-01
C     U2    2024-01-15  open               4000    lead 01-15
E     U2    2024-03-10  won    2024-04-20  500     lead 03-10, closed 04-20 (after T)
N     U1    2024-04-10  open               9000    lead 04-10 (created after T)

Open at T: A, B, C, E (E closes after T; N does not exist yet).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from leadscore.insights import ALL, deal_facts
from leadscore.insights.forecast import (
    TimeToClose,
    backtest,
    backtest_cuts,
    backtest_errors,
    open_pipeline,
    pipeline_forecast,
    stage_rate_probability,
    time_to_close,
)

T = pd.Timestamp("2024-04-01", tz="UTC")
#: Hand-picked win probabilities of the deals open at T.
PROBABILITY = {"A": 0.5, "B": 0.25, "C": 0.1, "E": 0.2}


def t(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def hand_crm() -> dict[str, pd.DataFrame]:
    rows = [
        ("W1", "U1", "2023-10-01", "won", "2024-01-15", 3000.0),
        ("L1", "U2", "2023-12-01", "lost", "2024-02-10", 800.0),
        ("L2", "U2", "2023-11-01", "lost", "2023-12-20", 600.0),
        ("A", "U1", "2024-03-01", "open", None, 1000.0),
        ("B", "U1", "2024-02-01", "open", None, 2000.0),
        ("C", "U2", "2024-01-15", "open", None, 4000.0),
        ("E", "U2", "2024-03-10", "won", "2024-04-20", 500.0),
        ("N", "U1", "2024-04-10", "open", None, 9000.0),
    ]
    deals = pd.DataFrame(
        rows, columns=["deal_id", "owner_id", "created_at", "status", "closed_at", "amount"]
    )
    deals["currency"] = "USD"
    for c in ("created_at", "closed_at"):
        deals[c] = pd.to_datetime(deals[c], utc=True)
    paths = {
        "W1": [("lead", "2023-10-01"), ("qualified", "2023-11-01"), ("closed", "2024-01-15")],
        "L1": [("lead", "2023-12-01"), ("qualified", "2023-12-15"), ("closed", "2024-02-10")],
        "L2": [("lead", "2023-11-01"), ("closed", "2023-12-20")],
        "A": [("lead", "2024-03-01"), ("qualified", "2024-03-15")],
        "B": [("lead", "2024-02-01")],
        "C": [("lead", "2024-01-15")],
        "E": [("lead", "2024-03-10"), ("closed", "2024-04-20")],
        "N": [("lead", "2024-04-10")],
    }
    history = pd.DataFrame(
        [(d, s, t(at)) for d, path in paths.items() for s, at in path],
        columns=["deal_id", "stage", "entered_at"],
    )
    return {"deals": deals, "stage_history": history}


def known_at_t() -> dict[str, pd.DataFrame]:
    """The same CRM as exported at T: E still open, N not created, no later stage entry."""
    tables = hand_crm()
    deals = tables["deals"]
    deals = deals[deals["deal_id"] != "N"].copy()
    deals.loc[deals["deal_id"] == "E", ["status", "closed_at"]] = ["open", pd.NaT]
    history = tables["stage_history"]
    return {"deals": deals, "stage_history": history[history["entered_at"] <= T]}


def hand_probability(pipeline: pd.DataFrame, as_of: pd.Timestamp) -> np.ndarray:
    return pipeline["deal_id"].map(PROBABILITY).to_numpy(dtype=np.float64)


def by_month(frame: pd.DataFrame, owner: str) -> list[float]:
    return frame[frame["owner_id"] == owner]["expected_revenue"].tolist()


def test_open_pipeline_at_a_moment_has_the_deals_open_then_with_stage_and_age() -> None:
    pipe = open_pipeline(deal_facts(hand_crm()), T, ["owner"])
    assert pipe["deal_id"].tolist() == ["A", "B", "C", "E"]
    # A entered qualified (code 1) on 03-15; the others are leads (0).
    assert pipe["stage"].tolist() == [1, 0, 0, 0]
    assert pipe["age_days"].tolist() == [31.0, 60.0, 77.0, 22.0]
    assert pipe["owner_id"].tolist() == ["U1", "U1", "U2", "U2"]


def test_forecast_by_hand_per_rep_and_team_with_a_fixed_time_to_close() -> None:
    # Half of a win closes in April, 30% in May, 20% later.
    fc = pipeline_forecast(
        deal_facts(hand_crm()),
        T,
        hand_probability,
        months=2,
        by=["owner"],
        timing=TimeToClose.fixed([0.5, 0.3, 0.2]),
    )
    # U1: A 0.5 x 1000 = 500, B 0.25 x 2000 = 500 -> 1000 expected: April 500, May 300.
    assert by_month(fc.months, "U1") == pytest.approx([500.0, 300.0])
    # U2: C 0.1 x 4000 = 400, E 0.2 x 500 = 100 -> 500 expected: April 250, May 150.
    assert by_month(fc.months, "U2") == pytest.approx([250.0, 150.0])
    assert by_month(fc.months, ALL) == pytest.approx([750.0, 450.0])
    assert fc.months["period_start"].tolist()[:2] == [T, t("2024-05-01")]
    assert fc.months["owner_id"].tolist()[:2] == [ALL, ALL]  # the team first
    team = fc.summary.set_index("owner_id").loc[ALL]
    assert (team["open_deals"], team["pipeline"], team["expected"]) == (4, 7500.0, 1500.0)
    assert (team["in_horizon"], team["later"]) == pytest.approx((1200.0, 300.0))


def test_spreading_over_months_sums_to_probability_times_amount() -> None:
    facts = deal_facts(hand_crm())
    fc = pipeline_forecast(facts, T, hand_probability, months=3, by=["owner"])
    shares = fc.deals[["m0", "m1", "m2", "later"]].to_numpy()
    assert shares.sum(axis=1) == pytest.approx(np.ones(4))
    summary = fc.summary.set_index("owner_id")
    assert (summary["in_horizon"] + summary["later"]).to_numpy() == pytest.approx(
        summary["expected"].to_numpy()
    )
    assert summary.loc[ALL, "expected"] == pytest.approx(500 + 500 + 400 + 100)
    per_rep = fc.months[fc.months["owner_id"] != ALL].groupby("period_start")["expected_revenue"]
    team = fc.months[fc.months["owner_id"] == ALL].set_index("period_start")["expected_revenue"]
    assert per_rep.sum().to_numpy() == pytest.approx(team.to_numpy())


def test_time_to_close_is_the_distribution_of_wins_at_snapshots_before_the_moment() -> None:
    # W1 (the only win before T) is open at the snapshots T - 3, 4, 5, 6 months
    # (01-01, 12-01, 11-01, 10-01; T - 2 months is after its win): it closes in
    # month 0, 1, 2 and 3 after them; with 2 months the last two are "later".
    timing = time_to_close(deal_facts(hand_crm()), T, months=2)
    assert timing.snapshots == 4
    assert timing.overall == pytest.approx([0.25, 0.25, 0.5])
    # With a one-deal minimum the stages split: lead at 10-01, qualified after.
    by_stage = time_to_close(deal_facts(hand_crm()), T, months=2, min_deals=1)
    assert by_stage.groups[(0, None)] == pytest.approx([0.0, 0.0, 1.0])
    assert by_stage.groups[(1, None)] == pytest.approx([1 / 3, 1 / 3, 1 / 3])


def test_a_crm_expected_close_date_in_the_future_puts_the_deal_in_its_month() -> None:
    expected_close = pd.Series({"B": t("2024-05-20"), "C": t("2024-03-01")})  # C's is past
    fc = pipeline_forecast(
        deal_facts(hand_crm()),
        T,
        hand_probability,
        months=2,
        timing=TimeToClose.fixed([0.5, 0.3, 0.2]),
        expected_close=expected_close,
    )
    shares = fc.deals.set_index("deal_id")[["m0", "m1", "later"]]
    assert shares.loc["B"].tolist() == [0.0, 1.0, 0.0]
    assert shares.loc["C"].tolist() == [0.5, 0.3, 0.2]


def test_stage_rate_probability_is_the_amount_won_at_past_snapshots_by_stage_and_age() -> None:
    facts = deal_facts(hand_crm())
    pipe = open_pipeline(facts, T)
    # Snapshots 1 to 24 months before T of the deals closed before T (E's win is after):
    # W1 (3000, won) lead at 10-01 (age 0), qualified at 11-01, 12-01 (30-90 days),
    # 01-01 (90+); L1 (800) lead at 12-01 (0), qualified at 01-01, 02-01 (30-90);
    # L2 (600) lead at 11-01 (0), 12-01 (30).
    # A, qualified at 31 days: W1 twice, L1 twice -> 6000 won of 7600.
    # B and C, leads of 60 and 77 days: only L2 at 12-01, fewer than 2 snapshots, so all
    # leads: W1, L1, L2 twice -> 3000 of 5000. E, a lead of 22 days: W1, L1, L2 -> 3000
    # of 4400.
    rate = stage_rate_probability(facts, skip_months=1, min_deals=2)
    assert rate(pipe, T) == pytest.approx([6000 / 7600, 0.6, 0.6, 3000 / 4400])
    # With the default minimum of 20 every group falls back to all 9 snapshots:
    # W1 four times (12000) won of 12000 + 3 x 800 + 2 x 600.
    assert stage_rate_probability(facts, skip_months=1)(pipe, T) == pytest.approx(
        [12000 / 15600] * 4
    )


def test_what_happens_after_the_moment_does_not_change_the_forecast_at_it() -> None:
    full, then = deal_facts(hand_crm()), deal_facts(known_at_t())
    for facts_ in (full, then):  # E, won after T, was open at T in both
        assert open_pipeline(facts_, T)["deal_id"].tolist() == ["A", "B", "C", "E"]
    fc_full = pipeline_forecast(
        full, T, stage_rate_probability(full, skip_months=1, min_deals=1), 2, ["owner"]
    )
    fc_then = pipeline_forecast(
        then, T, stage_rate_probability(then, skip_months=1, min_deals=1), 2, ["owner"]
    )
    pd.testing.assert_frame_equal(fc_full.months, fc_then.months)
    pd.testing.assert_frame_equal(fc_full.summary, fc_then.summary)
    # Not vacuous: seen later, at 05-01, E's win and N do change it.
    later = pipeline_forecast(
        full,
        t("2024-05-01"),
        stage_rate_probability(full, skip_months=1, min_deals=1),
        2,
        ["owner"],
    )
    assert later.summary["expected"].tolist() != fc_full.summary["expected"].tolist()


def test_backtest_error_by_hand() -> None:
    facts = deal_facts(hand_crm())
    assert backtest_cuts(facts, t("2024-05-15"), n=12, horizon=1, history_months=6) == [T]

    def half(pipeline: pd.DataFrame, as_of: pd.Timestamp) -> np.ndarray:
        return np.full(len(pipeline), 0.5)

    frame = backtest(facts, [T], {"half": half}, horizon=1)
    row = frame.iloc[0]
    # Timing at T with one month: W1 at snapshots 01-01 (closes that month), 12-01,
    # 11-01, 10-01 (later) -> 1/4 in month 0. Open at T: A, B, C, E (7500):
    # forecast 0.5 x 7500 x 1/4 = 937.5. Won in April by them: E, 500.
    assert (row["half"], row["actual"]) == (937.5, 500.0)
    # Persistence: what the deals open at 03-01, 02-01 and 01-01 brought in that same
    # month: 0, 0 and W1's 3000 -> 1000.
    assert row["persistence"] == 1000.0
    errors = backtest_errors(frame, ["half"]).set_index("method")
    assert errors.loc["half", "wape"] == pytest.approx(437.5 / 500)
    assert errors.loc["half", "bias"] == pytest.approx(437.5 / 500)
    assert errors.loc["persistence", "wape"] == pytest.approx(1.0)
    assert errors.loc["persistence", "mape"] == pytest.approx(1.0)


def test_forecast_command_per_rep_and_backtest(tmp_path: Path) -> None:
    from tests.conftest import cli, ingested_synthetic

    env = ingested_synthetic(tmp_path)
    out = json.loads(cli(env, "forecast", "--months", "3", "--by", "owner", "--json"))
    assert out["probability"] == "stage_rate"  # no champion registered
    # A historical export: as of its last recorded event, as `rank` does.
    assert t("2025-06-29") <= pd.Timestamp(out["as_of"]) <= t("2025-06-30")
    months = pd.DataFrame(out["months"])
    team = months[months["owner_id"] == ALL]["expected_revenue"].to_numpy()
    reps = months[months["owner_id"] != ALL].groupby("period_start")["expected_revenue"].sum()
    assert len(team) == 3 and team.sum() > 0
    assert reps.to_numpy() == pytest.approx(team)
    tested = json.loads(cli(env, "forecast", "--backtest", "--json"))
    errors = pd.DataFrame(tested["backtest"]["errors"])
    assert set(errors["method"]) == {"stage_rate", "persistence"}
    assert sorted(set(errors["horizon"])) == [1, 2, 3]
    text = cli(env, "forecast", "--months", "2")
    assert "expected_revenue" in text
