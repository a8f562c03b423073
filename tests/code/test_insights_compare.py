"""A/B comparison of sales strategies on a small CRM written out by hand.

Three playbooks in Q1 2024 (each deal created on the day of its number, from Jan 2):

playbook  deals                                                   counts
old       3 won (cycles 10, 20, 30 days), 9 lost: 1 at solution, win rate 3/12; lead->opportunity
          2 at qualified, 6 as leads; 1 open at solution          7/13; opportunity->qualified 5/7;
                                                                  qualified->win 3/4 (the open one
                                                                  is not decided)
new       7 won (cycles 5..11 days), 3 lost: 2 at qualified,      win rate 7/10; lead->opp 9/10;
          1 as a lead; 1 more won in 2023 (outside the window)    opp->qual 7/9; qual->win 7/7
pilot     1 won (15 days), 1 lost as a lead                       2 deals: not enough
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from leadscore.insights import ALL, NOT_ENOUGH, UNKNOWN, compare_groups, compared_deals, deal_facts
from leadscore.insights.compare import (
    PREDICTED,
    cohens_h,
    hodges_lehmann,
    holm,
    newcombe_interval,
    odds_ratio,
    rate_test,
    wilson_interval,
)

Q1 = ("2024-01-01", "2024-04-01")
JAN_1 = pd.Timestamp("2024-01-01", tz="UTC")


def _deal(n: int, playbook: str, status: str, furthest: str, cycle: float | None, start=JAN_1):
    created = start + pd.Timedelta(days=n + 1)
    closed = None if cycle is None else created + pd.Timedelta(days=cycle)
    return (f"D{n:02d}", playbook, created, status, closed, furthest)


def playbook_crm() -> dict[str, pd.DataFrame]:
    rows = [
        *(_deal(i, "old", "won", "committed", c) for i, c in enumerate((10, 20, 30))),
        _deal(3, "old", "lost", "solution", 12),
        *(_deal(i, "old", "lost", "qualified", 12) for i in (4, 5)),
        *(_deal(i, "old", "lost", "lead", 12) for i in range(6, 12)),
        _deal(12, "old", "open", "solution", None),
        *(_deal(13 + i, " New", "won", "committed", c) for i, c in enumerate(range(5, 12))),
        *(_deal(i, "new", "lost", "qualified", 12) for i in (20, 21)),
        _deal(22, "new", "lost", "lead", 12),
        _deal(23, "new", "won", "committed", 10, start=pd.Timestamp("2023-06-01", tz="UTC")),
        _deal(24, "pilot", "won", "committed", 15),
        _deal(25, "pilot", "lost", "lead", 12),
    ]
    deals = pd.DataFrame(
        rows, columns=["deal_id", "playbook", "created_at", "status", "closed_at", "furthest"]
    )
    stages = ["lead", "qualified", "solution", "committed"]
    history = []
    for d in deals.itertuples():
        for k, stage in enumerate(stages[: stages.index(d.furthest) + 1]):
            history.append((d.deal_id, stage, d.created_at + pd.Timedelta(hours=k + 1)))
        if d.status != "open":
            history.append((d.deal_id, "closed", d.closed_at))
    stage_history = pd.DataFrame(history, columns=["deal_id", "stage", "entered_at"])
    deals = deals.drop(columns="furthest").assign(owner_id="U1", amount=1000.0, currency="USD")
    deals["closed_at"] = pd.to_datetime(deals["closed_at"], utc=True)
    return {"deals": deals, "stage_history": stage_history}


def rows(comparison, metric: str) -> pd.DataFrame:
    g = comparison.groups
    return g[g["metric"] == metric].set_index("playbook")


def test_rates_differences_and_p_values_against_the_largest_group():
    c = compare_groups(deal_facts(playbook_crm()), "playbook", *Q1, min_deals=3)
    assert c.baseline == "old"  # 13 deals created or closed in Q1, against new's 10
    win = rows(c, "win_rate")
    assert list(win.index) == ["old", "new", "pilot"]  # the baseline first
    assert win.loc["old", ["value", "numerator", "denominator"]].tolist() == [0.25, 3, 12]
    assert win.loc["old", "is_baseline"] and np.isnan(win.loc["old", "p_value"])
    new = win.loc["new"]  # " New" is new; D23 (2023) is outside the window
    assert (new["value"], new["numerator"], new["denominator"]) == (0.7, 7, 10)
    assert new["difference"] == pytest.approx(0.45)
    assert (new["ci_low"], new["ci_high"]) == pytest.approx(newcombe_interval(7, 10, 3, 12))
    assert new["ci_low"] < 0.45 < new["ci_high"]
    assert new["effect"] == pytest.approx(2 * math.asin(math.sqrt(0.7)) - 2 * math.asin(0.5))
    assert new["odds_ratio"] == pytest.approx(7 * 9 / (3 * 3))
    # 10 of 22 won: the won cells expect 10 * 10 / 22 = 4.5 < 5 deals, so Fisher's test.
    assert new["test"] == "fisher_exact"
    assert new["p_value"] == pytest.approx(stats.fisher_exact([[7, 3], [3, 9]]).pvalue)
    assert new["p_adjusted"] == new["p_value"]  # one group tested: Holm changes nothing
    assert new["significant"] == (new["p_value"] < 0.05)
    # Cohort conversions: old 7/13 to opportunity (the open D12 counts), new 9/10.
    lto = rows(c, "lead_to_opportunity")
    assert lto.loc[["old", "new"], ["numerator", "denominator"]].to_numpy().tolist() == [
        [7, 13],
        [9, 10],
    ]
    assert lto.loc["new", "p_value"] == pytest.approx(stats.fisher_exact([[9, 1], [7, 6]]).pvalue)
    otq = rows(c, "opportunity_to_qualified")
    assert otq.loc[["old", "new"], ["numerator", "denominator"]].to_numpy().tolist() == [
        [5, 7],
        [7, 9],
    ]
    qtw = rows(c, "qualified_to_win")  # D12 (open at solution) is not decided: left out
    assert qtw.loc[["old", "new"], ["numerator", "denominator"]].to_numpy().tolist() == [
        [3, 4],
        [7, 7],
    ]
    # Across the groups with enough deals (old, new): Pearson's chi-square of the 2x2.
    overall = c.overall.set_index("metric")
    chi = stats.chi2_contingency([[3, 9], [7, 3]], correction=False)
    assert overall.loc["win_rate", "p_value"] == pytest.approx(chi.pvalue)
    assert overall.loc["win_rate", ["test", "groups", "dof"]].tolist() == ["chi_square", 2, 1]


def test_cycle_length_median_shift_and_mann_whitney():
    c = compare_groups(deal_facts(playbook_crm()), "playbook", *Q1, min_deals=3)
    cycle = rows(c, "sales_cycle_days")
    assert cycle.loc["old", "value"] == 20.0 and cycle.loc["new", "value"] == 8.0
    new = cycle.loc["new"]
    old_days, new_days = np.array([10.0, 20, 30]), np.arange(5.0, 12)
    # The 21 differences new - old: -25..-19, -15..-9, -5..1; their median is -12.
    assert new["difference"] == pytest.approx(-12.0)
    # 7 x 3 deals: k = floor(10.5 - 1.96 * sqrt(21 * 11 / 12)) = 1, the extreme differences.
    assert (new["ci_low"], new["ci_high"]) == pytest.approx((-25.0, 1.0))
    # New is longer in no pair, tied in one (10 = 10): U = 1.5, rank-biserial 3/21 - 1.
    assert new["effect"] == pytest.approx(3 / 21 - 1)
    assert new["effect_measure"] == "rank_biserial" and new["test"] == "mann_whitney"
    mw = stats.mannwhitneyu(new_days, old_days, alternative="two-sided")
    assert new["p_value"] == pytest.approx(mw.pvalue)
    overall = c.overall.set_index("metric").loc["sales_cycle_days"]
    assert overall["p_value"] == pytest.approx(stats.kruskal(new_days, old_days).pvalue)


def test_below_the_minimum_sample_it_says_not_enough_deals_yet():
    c = compare_groups(deal_facts(playbook_crm()), "playbook", *Q1, min_deals=3)
    pilot = rows(c, "win_rate").loc["pilot"]
    assert pilot["value"] == 0.5 and pilot["denominator"] == 2  # shown, not concluded on
    assert pilot["missing"] == f"{NOT_ENOUGH}: 2 of the 3 needed"
    assert np.isnan(pilot["p_value"]) and np.isnan(pilot["difference"])
    assert pilot["significant"] is None
    # With 4, old's 3 wins are too few to compare cycles with: every group says so.
    c4 = compare_groups(deal_facts(playbook_crm()), "playbook", *Q1, min_deals=4)
    cycle = rows(c4, "sales_cycle_days")
    assert cycle.loc["new", "missing"] == f"{NOT_ENOUGH} in the baseline old: 3 of the 4 needed"
    assert cycle["p_value"].isna().all()
    assert c4.overall.set_index("metric").loc["sales_cycle_days", "missing"].startswith(NOT_ENOUGH)
    assert rows(c4, "win_rate").loc["new", "missing"] is None  # 10 and 12 closed: enough


def test_the_baseline_is_chosen_as_typed_and_must_exist():
    crm = playbook_crm()
    c = compare_groups(deal_facts(crm), "playbook", *Q1, baseline="NEW ", min_deals=3)
    win = rows(c, "win_rate")
    assert c.baseline == "new" and list(win.index)[0] == "new"
    assert win.loc["old", "difference"] == pytest.approx(-0.45)
    with pytest.raises(ValueError, match="no deal of the period has playbook 'gold'"):
        compare_groups(deal_facts(crm), "playbook", *Q1, baseline="gold")
    # Deals without the attribute form UNKNOWN, never the default baseline.
    crm["deals"].loc[crm["deals"]["playbook"] == "old", "playbook"] = None
    c = compare_groups(deal_facts(crm), "playbook", *Q1, min_deals=3)
    assert c.baseline == "new" and UNKNOWN in set(c.groups["playbook"])
    assert ALL not in set(c.groups["playbook"])


def test_a_partial_export_reports_what_it_cannot_compare():
    deals_only = deal_facts({"deals": playbook_crm()["deals"]})
    c = compare_groups(deals_only, "playbook", *Q1, min_deals=3)
    assert rows(c, "lead_to_opportunity")["missing"].eq("no stage_history table").all()
    assert rows(c, "lead_to_opportunity")["value"].isna().all()
    assert rows(c, "win_rate").loc["new", "value"] == 0.7  # needs only the deals


def test_an_empty_period_has_no_baseline():
    c = compare_groups(deal_facts(playbook_crm()), "playbook", "2020-01-01", "2020-02-01")
    assert c.baseline is None and c.groups.empty
    assert json.dumps(c.to_records())


def predictions(old: float, new: float, spread: float = 0.01) -> pd.Series:
    """Each deal's win probability at creation: ``old`` or ``new`` per playbook, +- spread."""
    crm = playbook_crm()["deals"]
    base = np.where(crm["playbook"].str.strip().str.lower() == "new", new, old)
    wobble = spread * (np.arange(len(crm)) % 3 - 1)
    return pd.Series(base + wobble, index=crm["deal_id"].to_numpy())


def test_lead_quality_warns_when_one_group_got_better_leads():
    facts = deal_facts(playbook_crm())
    p = predictions(old=0.30, new=0.60)
    c = compare_groups(facts, "playbook", *Q1, min_deals=3, predicted=p)
    q = c.lead_quality.set_index("playbook")
    new = q.loc["new"]
    in_window = p[compared_deals(facts, *Q1)]  # D23 (2023) left out
    old_p = in_window[[f"D{i:02d}" for i in range(13)]].to_numpy()
    new_p = in_window[[f"D{i:02d}" for i in range(13, 23)]].to_numpy()
    assert new["deals"] == 10 and new["mean_predicted"] == pytest.approx(new_p.mean())
    assert new["difference"] == pytest.approx(new_p.mean() - old_p.mean())
    welch = stats.ttest_ind(new_p, old_p, equal_var=False)
    assert new["p_value"] == pytest.approx(welch.pvalue)
    assert new["differs"] is True and q.loc["pilot", "missing"].startswith(NOT_ENOUGH)
    (warning,) = c.warnings
    assert "new" in warning and "may come from the leads, not the strategy" in warning
    assert c.overall.set_index("metric").loc[PREDICTED, "test"] == "welch_anova"
    assert c.lead_quality_skipped is None


def test_lead_quality_is_quiet_when_the_leads_are_alike_or_differ_by_little():
    facts = deal_facts(playbook_crm())
    alike = compare_groups(facts, "playbook", *Q1, min_deals=3, predicted=predictions(0.3, 0.3))
    assert (
        alike.warnings == ()
        and alike.lead_quality.set_index("playbook").loc["new", "differs"] is False
    )
    # Two points apart with almost no spread: significant, but below the 5-point threshold.
    close = predictions(0.30, 0.32, spread=0.001)
    c = compare_groups(facts, "playbook", *Q1, min_deals=3, predicted=close)
    new = c.lead_quality.set_index("playbook").loc["new"]
    assert new["significant"] is True and new["differs"] is False and c.warnings == ()
    strict = compare_groups(
        facts, "playbook", *Q1, min_deals=3, predicted=close, quality_threshold=0.01
    )
    assert len(strict.warnings) == 1
    without = compare_groups(facts, "playbook", *Q1, min_deals=3)
    assert without.lead_quality is None and without.lead_quality_skipped


def test_the_comparison_is_json_ready_for_a_page_section():
    c = compare_groups(
        deal_facts(playbook_crm()), "playbook", *Q1, min_deals=3, predicted=predictions(0.3, 0.6)
    )
    out = json.loads(json.dumps(c.to_records()))
    assert out["baseline"] == "old" and out["from"] == "2024-01-01T00:00:00+00:00"
    assert "Holm" in out["correction"] and len(out["warnings"]) == 1
    assert {r["metric"] for r in out["groups"]} == set(out["definitions"])
    assert "NaN" not in json.dumps(out)


@dataclass(frozen=True)
class Scored:
    """Probabilities at creation as the page gets them (an ``AtCreation``)."""

    probabilities: pd.Series | None
    model: dict[str, str] | None = field(
        default_factory=lambda: {"name": "lead_scorer", "version": "7", "gate": "passed"}
    )
    skipped: str | None = None


def test_the_page_says_whether_the_groups_leads_were_comparable_at_creation():
    """Issue 13: the A/B section warns, in both languages, when a group was handed better
    leads (mean win probability at creation), says so when they were comparable, and says
    why when no model scored them."""
    from leadscore.priority.i18n import texts
    from leadscore.priority.report import comparison_html

    facts = deal_facts(playbook_crm())

    def page(scored: Scored, lang: str = "en") -> str:
        c = compare_groups(facts, "playbook", *Q1, min_deals=3, at_creation=scored)
        return comparison_html(c.to_records(), lang)

    better = page(Scored(predictions(old=0.30, new=0.60)))
    assert 'data-verdict="differs"' in better and "lead-quality-warning" in better
    assert "Lead quality differs: the deals of new had a mean win probability at creation of" in (
        better
    )
    assert "lead_scorer version 7" in better
    zh = page(Scored(predictions(old=0.30, new=0.60)), "zh")
    assert "lead_scorer 版本 7" in zh and "version" not in zh
    assert "线索质量不同：new 的商机创建时平均赢单概率为" in zh and "创建时的线索质量" in zh
    alike = page(Scored(predictions(0.3, 0.3)))
    assert 'data-verdict="comparable"' in alike and "lead-quality-warning" not in alike
    assert "were comparable at creation" in alike
    assert "各组线索在创建时质量相当" in page(Scored(predictions(0.3, 0.3)), "zh")
    none = page(Scored(None, None, "skipped: no 'champion' version of lead_scorer"), "zh")
    assert (
        'data-verdict="skipped"' in none
        and "未检查创建时的线索质量：没有可用于评分的冠军模型" in none
    )
    # The group too small to judge says so in the page's language.
    assert "商机数量尚不足：2 个，需要 3 个" in zh
    assert texts("en")["not_enough"] == NOT_ENOUGH  # the page reads the insights' words


# ---------------------------------------------------------------- the statistics themselves
def test_intervals_match_newcombes_published_examples():
    # Newcombe (1998), Statistics in Medicine 17: Wilson's interval of 15/148 is
    # 0.0624-0.1605; method 10 for 56/70 - 48/80 is 0.0524-0.3339.
    assert wilson_interval(15, 148) == pytest.approx((0.0624, 0.1605), abs=5e-5)
    assert newcombe_interval(56, 70, 48, 80) == pytest.approx((0.0524, 0.3339), abs=5e-5)


def test_two_proportion_test_on_large_counts_is_the_pooled_z_test():
    p, test = rate_test(40, 100, 25, 100)
    pooled = 65 / 200
    z = (0.40 - 0.25) / math.sqrt(pooled * (1 - pooled) * (2 / 100))
    assert test == "two_proportion_z"
    assert p == pytest.approx(2 * stats.norm.sf(abs(z)))
    assert rate_test(3, 5, 1, 5) == (
        pytest.approx(stats.fisher_exact([[3, 2], [1, 4]]).pvalue),
        "fisher_exact",
    )
    assert odds_ratio(5, 5, 1, 5) == pytest.approx((5.5 * 4.5) / (0.5 * 1.5))  # Haldane
    assert cohens_h(0.5, 0.5) == 0.0


def test_holm_steps_down_and_skips_untested():
    adjusted = holm(np.array([0.01, 0.04, 0.03, np.nan]))
    # Sorted 0.01, 0.03, 0.04 times 3, 2, 1: 0.03, 0.06, then max(0.06, 0.04).
    assert adjusted[:3] == pytest.approx([0.03, 0.06, 0.06]) and np.isnan(adjusted[3])


def test_hodges_lehmann_of_a_pure_shift_is_the_shift():
    a = np.arange(30.0)
    shift, low, high = hodges_lehmann(a + 5, a)
    assert shift == 5.0 and low < 5 < high


# ---------------------------------------------------------------- probabilities at creation
def test_probabilities_at_creation_are_trainings_first_snapshot():
    from leadscore.priority.at_creation import probabilities_at_creation
    from tests.serving_fixture import small_champion, synthetic_tables

    model, frame = small_champion()
    first = frame[frame["snapshot_index"] == 0]
    got = probabilities_at_creation(synthetic_tables(), model, batch_size=400)
    expected = model.probability(model.encode(first))
    assert got.reindex(first["deal_id"].to_numpy()).to_numpy() == pytest.approx(expected)
    some = first["deal_id"].head(3).tolist()
    assert list(probabilities_at_creation(synthetic_tables(), model, some).index) == some


# ---------------------------------------------------------------- the command
def test_compare_command_with_and_without_a_champion(tmp_path: Path) -> None:
    from tests.conftest import cli, ingested_synthetic, isolated
    from tests.serving_fixture import register_champion, small_champion

    env = ingested_synthetic(tmp_path)
    window = ("--from", "2024-07-01", "--to", "2025-07-01")
    out = json.loads(cli(env, "compare", "--by", "channel", *window, "--json"))
    assert out["lead_quality"] is None and "no 'champion' version" in out["lead_quality_skipped"]
    assert {r["metric"] for r in out["groups"]} == set(out["definitions"])
    text = cli(env, "compare", "--by", "channel", *window, "--min-deals", "1000")
    assert "## win_rate" in text and f"{NOT_ENOUGH}:" in text
    assert "## lead quality: skipped" in text
    assert cli(env, "compare", "--by", "planet", *window, code=2) == ""
    cli(env, "compare", "--by", "channel", *window, "--baseline", "carrier pigeon", code=1)

    register_champion(*small_champion(), isolated(tmp_path))
    out = json.loads(cli(env, "compare", "--by", "channel", *window, "--baseline", "web", "--json"))
    assert out["baseline"] == "web"
    assert {k: out["lead_quality_model"][k] for k in ("name", "version")} == {
        "name": "lead_scorer",
        "version": "1",
    }
    quality = {r["channel"]: r for r in out["lead_quality"]}
    assert quality["web"]["is_baseline"] and 0 < quality["web"]["mean_predicted"] < 1
    text = cli(env, "compare", "--by", "channel", *window)
    assert "## lead quality: mean win probability at creation" in text
