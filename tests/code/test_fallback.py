"""The small-organisation fallback: its fit by hand, its shrinkage, and the list it scores."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from leadscore.config import MIN_CLASS_DEALS, Settings, load_settings
from leadscore.model.fallback import StageFallback, fit_fallback, fit_fallback_on_snapshots
from leadscore.model.registry import NoVersionError
from leadscore.priority.rank import (
    FALLBACK_VERSION,
    RECENTLY_LOST,
    rank_deals,
    ranking_model,
    read_ranked,
    run_rank,
)
from tests.conftest import cli, environment
from tests.crm_fixture import day, ranking_crm

AS_OF = day(70)


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def ten_deals() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Ten closed deals, all seen in lead, six in qualified, three in solution; four won
    (W1-W4: all reached qualified, W1-W3 solution). Referral: W1-W3, L1, L2; web: the rest."""
    ids = ["W1", "W2", "W3", "W4", "L1", "L2", "L3", "L4", "L5", "L6"]
    deals = pd.DataFrame(
        {
            "deal_id": ids + ["O1"],
            "channel": ["Referral"] * 3 + ["web"] + ["Referral"] * 2 + ["web"] * 4 + ["web"],
            "status": ["won"] * 4 + ["lost"] * 6 + ["open"],
            "stage": ["closed"] * 10 + ["solution"],
        }
    )
    rows = [(d, "lead") for d in ids] + [(d, "closed") for d in ids]
    rows += [(d, "qualified") for d in ("W1", "W2", "W3", "W4", "L1", "L2")]
    rows += [(d, "solution") for d in ("W1", "W2", "W3")]
    rows += [("O1", "lead"), ("O1", "qualified"), ("O1", "solution")]  # open: not learnt from
    history = pd.DataFrame(rows, columns=["deal_id", "stage"])
    return deals, history


def test_the_fit_counts_stage_and_channel_rates_by_hand():
    deals, history = ten_deals()
    fitted = fit_fallback(deals, history, prior_deals=10)
    overall = (4 + 1) / (10 + 2)  # Laplace: one deal each way
    prior = 10 * overall
    assert fitted.overall == pytest.approx(overall)
    assert dict(fitted.stage_deals) == {0: 10, 1: 6, 2: 3}
    assert fitted.stage_rates[0] == pytest.approx((4 + prior) / (10 + 10))
    assert fitted.stage_rates[1] == pytest.approx((4 + prior) / (6 + 10))
    assert fitted.stage_rates[2] == pytest.approx((3 + prior) / (3 + 10))
    referral = (3 + prior) / (5 + 10)
    web = (1 + prior) / (5 + 10)
    assert fitted.channel_offsets["referral"] == pytest.approx(logit(referral) - logit(overall))
    assert fitted.channel_offsets["web"] == pytest.approx(logit(web) - logit(overall))
    p = fitted.predict(np.array([1, 3, np.nan]), np.array(["Referral", "web", "fax"]))
    assert p[0] == pytest.approx(
        sigmoid(logit(fitted.stage_rates[1]) + logit(referral) - logit(overall))
    )
    # A stage no closed deal was in, and an unseen channel: the overall rate, no offset.
    assert p[1] == pytest.approx(sigmoid(logit(overall) + logit(web) - logit(overall)))
    assert p[2] == pytest.approx(overall)
    assert (fitted.closed_deals, fitted.won_deals, fitted.lost_deals) == (10, 4, 6)
    assert fitted.name == "fallback (stage and channel rates, 10 closed deals)"


def test_few_deals_are_shrunk_toward_the_overall_rate_and_many_are_not():
    def export(n_solution: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        # n deals reached solution and won; as many others stayed in lead and lost.
        won = [f"W{i}" for i in range(n_solution)]
        lost = [f"L{i}" for i in range(n_solution)]
        deals = pd.DataFrame(
            {"deal_id": won + lost, "status": ["won"] * len(won) + ["lost"] * len(lost)}
        )
        rows = [(d, "lead") for d in won + lost] + [(d, "solution") for d in won]
        return deals, pd.DataFrame(rows, columns=["deal_id", "stage"])

    few = fit_fallback(*export(2), use_channel=False).stage_rates[2]
    many = fit_fallback(*export(200), use_channel=False).stage_rates[2]
    unshrunk = fit_fallback(*export(2), prior_deals=0, use_channel=False).stage_rates[2]
    assert unshrunk == pytest.approx(1.0)  # every solution deal won: no prior, certainty
    assert few == pytest.approx((2 + 10 * 0.5) / 12)  # two deals move it only part way
    assert few < 0.6 < 0.95 < many


def test_without_a_champion_rank_scores_with_the_labelled_fallback(stored: Settings, tmp_path):
    model, version = ranking_model(stored)
    assert isinstance(model, StageFallback) and version == FALLBACK_VERSION
    # ranking_crm: D1 won, D2 lost; each reached lead, D1 also qualified and solution.
    assert (model.closed_deals, model.won_deals) == (2, 1)
    run = run_rank(stored, model, version, tmp_path, as_of=AS_OF)
    listed = read_ranked(tmp_path)
    assert set(listed["model"]) == {"fallback (stage and channel rates, 2 closed deals)"}
    meaning = listed["meaning"].iloc[0]
    assert meaning.startswith("rough prior")
    assert f"from {MIN_CLASS_DEALS} won and {MIN_CLASS_DEALS} lost closed deals" in meaning
    assert "(now 1 won, 1 lost)" in meaning and meaning.endswith("passes the promotion gate")
    assert set(listed["model_version"]) == {FALLBACK_VERSION}
    assert run.scored  # every candidate scored
    # The number is the fallback's: D3 open in solution, D4 open in lead.
    by_deal = listed.set_index("deal_id")
    for deal, stage, channel in (("D3", 2, "paid_ads"), ("D4", 0, "referral")):
        expected = model.predict(np.array([stage]), np.array([channel]))[0]
        assert by_deal.loc[deal, "probability"] == pytest.approx(expected)
    reasons = by_deal.loc["D3", "positive_reasons"]
    assert [r["feature"] for r in reasons] == ["stage_index"]
    # The managers' page says it too: each row's number with what it means, the model named.
    from leadscore.priority.report import build_page

    page = build_page(tmp_path, stored.crm_dir, settings=stored)
    config = re.search(r'<script type="application/json" id="page-config">(.*?)</script>', page)
    assert config is not None
    rows = json.loads(config.group(1))["rows"]
    assert {r["model"] for r in rows} == {"fallback (stage and channel rates, 2 closed deals)"}
    assert rows[0]["meaning"] == meaning
    # The page's script shows the model on hover and the meaning under the number.
    assert 't.scored_by.replace("{model}", r.model)' in page and "r.meaning" in page
    # In Chinese, the model on hover is named in Chinese too.
    zh = build_page(tmp_path, stored.crm_dir, settings=stored, lang="zh")
    found = re.search(r'<script type="application/json" id="page-config">(.*?)</script>', zh)
    assert found is not None
    assert {r["model"] for r in json.loads(found.group(1))["rows"]} == {
        "回退估计（阶段与渠道赢单率，2 个已关闭商机）"
    }


def test_the_fallback_scores_recently_lost_deals_as_if_reopened():
    tables = ranking_crm()
    fitted = fit_fallback(tables["deals"], tables["stage_history"])
    frame = rank_deals(tables, fitted, AS_OF).frame.set_index("deal_id")
    assert frame.loc["D2", "priority_group"] == RECENTLY_LOST
    assert frame.loc["D2", "model"] == fitted.name
    # D2 reached only lead before its loss: scored from lead, as if re-opened.
    assert frame.loc["D2", "probability"] == pytest.approx(
        fitted.predict(np.array([0]), np.array(["web"]))[0]
    )


def test_another_alias_missing_is_still_an_error(stored: Settings):
    with pytest.raises(NoVersionError):
        ranking_model(stored, "challenger")


def test_the_rank_command_says_it_scored_with_the_fallback(tmp_path):
    env = environment(tmp_path)
    crm = load_settings(feature_repo=tmp_path / "features").crm_dir
    crm.mkdir(parents=True)
    for name, table in ranking_crm().items():
        table.to_parquet(crm / f"{name}.parquet")
    out = cli(env, "rank", "--as-of", AS_OF.isoformat(), "--out", str(tmp_path / "list"))
    assert "warning: no champion of lead_scorer: scored by fallback" in out
    assert "with fallback (stage and channel rates, 2 closed deals)" in out
    assert set(read_ranked(tmp_path / "list")["model"]) == {
        "fallback (stage and channel rates, 2 closed deals)"
    }


def test_a_dated_deal_counts_in_a_stage_by_the_time_it_spent_there():
    # W won after 10 days in lead and 10 in qualified; L lost after 30 days in lead.
    deals = pd.DataFrame(
        {
            "deal_id": ["W", "L"],
            "status": ["won", "lost"],
            "created_at": [day(0), day(0)],
            "closed_at": [day(20), day(30)],
        }
    )
    history = pd.DataFrame(
        {
            "deal_id": ["W", "W", "W", "L", "L"],
            "stage": ["lead", "qualified", "closed", "lead", "closed"],
            "entered_at": [day(0), day(10), day(20), day(0), day(30)],
        }
    )
    fitted = fit_fallback(deals, history, prior_deals=0, use_channel=False)
    # Mean open time 25 days: W weighs 0.4 in lead and 0.4 in qualified, L 1.2 in lead.
    assert fitted.stage_rates[0] == pytest.approx(0.4 / (0.4 + 1.2))
    assert fitted.stage_rates[1] == pytest.approx(1.0)
    shrunk = fit_fallback(deals, history, prior_deals=10, use_channel=False)
    assert shrunk.stage_rates[0] == pytest.approx((0.4 + 10 * 0.5) / (1.6 + 10))


def test_on_snapshots_a_deal_counts_in_a_stage_by_its_snapshots_there():
    """Snapshots come at a fixed interval while a deal is open: counting them is counting
    time. W spends 3 snapshots in lead then 1 in qualified; L 1 in lead then 3 in qualified."""
    frame = pd.DataFrame(
        {
            "deal_id": ["W"] * 4 + ["L"] * 4,
            "won": [1] * 4 + [0] * 4,
            "stage_index": [0, 0, 0, 1, 0, 1, 1, 1],
            "channel": ["web"] * 8,
        }
    )
    fitted = fit_fallback_on_snapshots(frame, prior_deals=1e-9, use_channel=False)
    # Mean snapshots per deal: 4; lead: W weighs 3/4, L 1/4 -> 75% won; qualified: 25%.
    assert fitted.stage_rates[0] == pytest.approx(0.75)
    assert fitted.stage_rates[1] == pytest.approx(0.25)
    assert (fitted.closed_deals, fitted.won_deals) == (2, 1)
