"""Rep strengths and weaknesses (issue 13) against counts made by hand."""

from __future__ import annotations

import pandas as pd
import pytest

from leadscore.insights.compare import newcombe_interval
from leadscore.insights.facts import deal_facts
from leadscore.insights.strengths import rep_strengths


def tables() -> dict[str, pd.DataFrame]:
    """Two reps, 25 closed deals each, and one open deal:

    * rep A: 20 referral deals (16 won), 5 web deals (2 won); 2 of A's lost referral
      deals reached ``qualified``;
    * rep B: 20 referral deals (4 won), 5 web deals (3 won); 10 of B's lost referral
      deals reached ``qualified``.
    """
    rows = []
    for rep, channel, won, lost in (
        ("A", "referral", 16, 4),
        ("A", "web", 2, 3),
        ("B", "referral", 4, 16),
        ("B", "Web", 3, 2),
    ):
        rows += [(rep, channel, "won")] * won + [(rep, channel, "lost")] * lost
    rows.append(("A", "referral", "open"))
    deals = pd.DataFrame(rows, columns=["owner_id", "channel", "status"])
    deals.insert(0, "deal_id", [f"D{i}" for i in range(len(deals))])
    deals["created_at"] = pd.Timestamp("2025-01-01", tz="UTC")
    deals["closed_at"] = pd.Series(pd.Timestamp("2025-03-01", tz="UTC"), deals.index).where(
        deals["status"] != "open"
    )
    lost_a = deals[
        (deals.owner_id == "A") & (deals.status == "lost") & (deals.channel == "referral")
    ]
    lost_b = deals[
        (deals.owner_id == "B") & (deals.status == "lost") & (deals.channel == "referral")
    ]
    reached = [*lost_a.deal_id[:2], *lost_b.deal_id[:10]]
    stage_history = pd.DataFrame(
        {
            "deal_id": [*deals.deal_id, *reached],
            "stage": ["lead"] * len(deals) + ["qualified"] * len(reached),
            "entered_at": [pd.Timestamp("2025-01-01", tz="UTC")] * len(deals)
            + [pd.Timestamp("2025-01-15", tz="UTC")] * len(reached),
        }
    )
    return {"deals": deals, "stage_history": stage_history}


def cell(rows, owner, cut, value):
    return next(r for r in rows if (r.owner_id, r.cut, r.value) == (owner, cut, value))


def test_each_rep_against_the_rest_of_the_team_by_hand():
    rows = rep_strengths(deal_facts(tables()), min_deals=10)
    referral = cell(rows, "A", "channel", "referral")
    assert (referral.deals, referral.converted, referral.team_deals, referral.team_converted) == (
        20,
        16,
        20,
        4,
    )
    assert referral.rate == 0.8 and referral.team_rate == 0.2
    assert (referral.low, referral.high) == pytest.approx(newcombe_interval(16, 20, 4, 20))
    assert referral.verdict == "better" and referral.verdict_zh == "优于团队"
    assert cell(rows, "B", "channel", "referral").verdict == "worse"
    web = cell(rows, "A", "channel", "web")  # "Web" and "web" are one channel
    assert (web.deals, web.converted, web.team_deals, web.team_converted) == (5, 2, 5, 3)
    assert web.verdict == "not enough deals"
    # Stages: A's lead -> qualified is 18 wins + 2 lost that reached it, of 25; B's 7 + 10.
    lead = cell(rows, "A", "stage", "lead")
    assert (lead.converted, lead.deals, lead.team_converted, lead.team_deals) == (20, 25, 17, 25)
    assert lead.verdict == "no clear difference"
    qualified = cell(rows, "A", "stage", "qualified")
    assert (
        qualified.converted,
        qualified.deals,
        qualified.team_converted,
        qualified.team_deals,
    ) == (18, 20, 7, 17)
    assert (
        qualified.conversion == "qualified -> solution"
        and qualified.conversion_zh == "已确认商机 → 方案"
    )
    assert qualified.verdict == "better"
    # Flagged cells first, per rep; the open deal counts nowhere.
    a_rows = [r for r in rows if r.owner_id == "A"]
    assert [r.verdict in ("better", "worse") for r in a_rows] == sorted(
        (r.verdict in ("better", "worse") for r in a_rows), reverse=True
    )
    assert all(r.deals <= 25 for r in rows)
    assert "渠道 转介绍：赢单" in referral.label_zh and "16" not in referral.label


def test_a_higher_minimum_sample_flags_nothing_and_a_window_counts_only_its_closes():
    facts = deal_facts(tables())
    assert {r.verdict for r in rep_strengths(facts, min_deals=26)} == {"not enough deals"}
    assert rep_strengths(facts, start="2025-04-01") == []
    assert rep_strengths(facts, end="2025-03-02")


def test_the_strengths_command(isolated_settings):
    import json

    from typer.testing import CliRunner

    from pipelines.cli import app
    from tests.code.test_cli import env_of

    isolated_settings.crm_dir.mkdir(parents=True)
    for name, table in tables().items():
        table.to_parquet(isolated_settings.crm_dir / f"{name}.parquet")
    env = env_of(isolated_settings)
    lines = CliRunner().invoke(app, ["strengths", "--flagged"], env=env).stdout.splitlines()
    assert lines[0].startswith("A, channel referral: won: 80% of 20 deals against 20% of 20")
    assert all("(better)" in line or "(worse)" in line for line in lines)
    data = json.loads(CliRunner().invoke(app, ["strengths", "--json"], env=env).stdout)
    assert {r["verdict"] for r in data["strengths"]} >= {"better", "worse", "not enough deals"}
