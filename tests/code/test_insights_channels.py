"""Channel quality (issue 13): each channel's leads against the won customers, by hand."""

from __future__ import annotations

import pandas as pd
import pytest

from leadscore.insights.channels import channel_quality, similarity


def tables() -> dict[str, pd.DataFrame]:
    """Ten deals, one account each; D1, D2, D5 and D6 won."""
    deals = pd.DataFrame(
        {
            "deal_id": [f"D{i}" for i in range(1, 11)],
            "account_id": [f"A{i}" for i in range(1, 11)],
            "channel": ["referral"] * 4 + ["web"] * 6,
            "status": ["won", "won", "lost", "lost", "won", "won", "lost", "lost", "lost", "lost"],
            "campaign": ["spring"] * 4 + ["autumn"] * 6,
            "created_at": pd.Timestamp("2025-01-01", tz="UTC"),
        }
    )
    accounts = pd.DataFrame(
        {
            "account_id": [f"A{i}" for i in range(1, 11)],
            "industry": [
                "retail",
                "retail",
                "finance",
                "tech",
                "finance",
                "finance",
                "tech",
                "tech",
                "tech",
                "retail",
            ],
            "region": [
                "north",
                "north",
                "south",
                None,
                "north",
                "south",
                "south",
                "south",
                "south",
                "east",
            ],
            "employee_count": [10] * 4 + [500] * 6,
        }
    )
    contacts = pd.DataFrame({"contact_id": ["C1", "C2"], "title": ["CEO", "采购"]})
    deal_contacts = pd.DataFrame(
        {
            "deal_id": ["D1", "D5"],
            "contact_id": ["C1", "C2"],
            "added_at": pd.Timestamp("2025-01-01", tz="UTC"),
        }
    )
    return {
        "deals": deals,
        "accounts": accounts,
        "contacts": contacts,
        "deal_contacts": deal_contacts,
    }


def test_similarity_is_one_minus_total_variation():
    assert similarity({"a": 0.5, "b": 0.5}, {"a": 0.5, "b": 0.25, "c": 0.25}) == 0.75
    assert similarity({"a": 1.0}, {"b": 1.0}) == 0.0


def test_each_channel_against_the_won_customers_by_hand():
    referral, web = channel_quality(tables())
    assert (referral.channel, referral.leads, referral.won) == ("referral", 4, 2)
    by = {m.attribute: m for m in referral.attributes}
    # Won: industry retail 1/2, finance 1/2; referral: retail 1/2, finance 1/4, tech 1/4.
    assert by["industry"].similarity == pytest.approx(0.75)
    # Region known for 3 referral leads (north 2/3, south 1/3) against won north 3/4, south 1/4.
    assert by["region"].similarity == pytest.approx(2 / 3 + 1 / 4)
    assert by["region"].deals == 3 and by["region"].won_deals == 4
    assert by["size_band"].similarity == pytest.approx(0.5)
    assert by["campaign"].similarity == pytest.approx(0.5)  # a custom attribute
    assert by["seniority"].similarity == pytest.approx(0.5)  # C-level only, against half and half
    assert referral.similarity == pytest.approx((0.75 + 11 / 12 + 0.5 + 0.5 + 0.5) / 5)
    assert web.similarity == pytest.approx((0.5 + 5 / 12 + 0.5 + 0.5 + 0.5) / 5)
    worst = web.attributes[0]
    assert worst.attribute == "region" and worst.over == ("south", pytest.approx(4 / 6), 0.25)
    assert web.label.startswith("web: 48% like the won customers (6 leads, 2 won)")
    assert web.label_zh.startswith("官网：与赢单客户的相似度 48%") and "区域：南区" in web.label_zh


def test_no_win_no_profile():
    t = tables()
    t["deals"]["status"] = "lost"
    with pytest.raises(ValueError, match="no won deal"):
        channel_quality(t)


def test_the_channels_command(isolated_settings):
    import json

    from typer.testing import CliRunner

    from pipelines.cli import app
    from tests.code.test_cli import env_of

    isolated_settings.crm_dir.mkdir(parents=True)
    for name, table in tables().items():
        table.to_parquet(isolated_settings.crm_dir / f"{name}.parquet")
    env = env_of(isolated_settings)
    text = CliRunner().invoke(app, ["channels"], env=env).stdout.splitlines()
    assert text[0].startswith("referral: 63% like the won customers (4 leads, 2 won)")
    data = json.loads(CliRunner().invoke(app, ["channels", "--json"], env=env).stdout)
    assert [c["channel"] for c in data["channels"]] == ["referral", "web"]
    assert data["channels"][1]["attributes"][0]["attribute"] == "region"
