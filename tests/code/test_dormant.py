"""Dormant deals: the definition, its outcome and censoring, no leakage, the backtest's
choice, and the list's dormant rows scored and worded by that choice."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from leadscore.config import DORMANT_DAYS
from leadscore.features.featurize import (
    build_feature_sources,
    features_as_of,
    model_frame,
    scoring_entities,
)
from leadscore.model.scoring_model import Calibration, ScoringModel
from leadscore.priority.dormant import (
    CENSORED,
    DormantChoice,
    dormant_meaning,
    dormant_outcome,
    is_dormant,
)
from leadscore.priority.rank import (
    ACTIVE,
    DORMANT,
    DORMANT_MODEL,
    OPEN_MEANING,
    WIN_MODEL,
    rank_deals,
    read_ranked,
    run_rank,
    select_candidates,
)
from leadscore.priority.report import render_page
from tests.code.test_rank import AS_OF
from tests.crm_fixture import activities_table, day, ranking_crm, tiny_crm
from tests.serving_fixture import synthetic_tables, train_small_model
from training.data import in_memory_frame
from training.dormant import backtest_dormant, choose_dormant, dormant_snapshots
from training.result import TrainConfig
from training.split import SLICES, choose_split, slice_masks


# ---------------------------------------------------------------- the definition
def test_dormant_from_thirty_quiet_days_and_a_deal_never_touched_counts_from_creation():
    features = pd.DataFrame(
        {
            "days_since_last_activity": [29.9, 30.0, np.nan, np.nan, 45.0],
            "deal_age_days": [100.0, 100.0, 30.0, 29.0, 50.0],
        }
    )
    assert DORMANT_DAYS == 30
    # Quiet 29.9 days: active; 30: dormant; never touched and 30 days old: dormant (quiet
    # since creation); never touched and 29 days old: new, not dormant.
    assert is_dormant(features, DORMANT_DAYS).tolist() == [False, True, True, False, True]
    # An export without activities: nothing logged is no evidence of silence.
    assert not is_dormant(features, DORMANT_DAYS, activities_logged=False).any()


def test_the_outcome_is_a_win_within_the_horizon_and_unknown_ones_are_censored():
    as_of = day(500)
    cases = {  # name: (snapshot day, close day or None, won) -> label
        "won inside": ((100, 400, True), 1),
        "won on the horizon's last day": ((100, 465, True), 1),
        "won after the horizon": ((100, 466, True), 0),
        "lost inside": ((100, 200, False), 0),
        "lost, horizon past the export": ((300, 450, False), 0),
        "open, horizon seen whole": ((100, None, False), 0),
        "open, horizon past the export": ((200, None, False), CENSORED),
        # Won after the export's end: not known at it, so censored, never a win.
        "won after the export": ((200, 520, True), CENSORED),
    }
    snap = pd.Series([day(c[0][0]) for c in cases.values()])
    closed = pd.Series([day(c[0][1]) if c[0][1] else pd.NaT for c in cases.values()])
    won = pd.Series([c[0][2] for c in cases.values()])
    got = dormant_outcome(snap, closed, won, as_of, 365)
    assert dict(zip(cases, got.tolist(), strict=True)) == {k: v[1] for k, v in cases.items()}


def _with_untouched_deal(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The tiny CRM plus D5: lost on day 100, no activity ever."""
    deals = tables["deals"]
    d5 = deals[deals["deal_id"] == "D2"].assign(
        deal_id="D5", created_at=day(0), closed_at=day(100), status="lost"
    )
    sh = tables["stage_history"]
    stages = pd.DataFrame(
        {"deal_id": ["D5", "D5"], "stage": ["lead", "closed"], "entered_at": [day(0), day(100)]}
    ).astype({"entered_at": sh["entered_at"].dtype})
    return {
        **tables,
        "deals": pd.concat([deals, d5], ignore_index=True),
        "stage_history": pd.concat([sh, stages], ignore_index=True),
    }


def _dormancy(tables: dict[str, pd.DataFrame], as_of: pd.Timestamp) -> dict[tuple[str, int], int]:
    rows, _ = dormant_snapshots(in_memory_frame(tables), as_of)
    return {
        (d, int((t - day(0)) / pd.Timedelta(days=1))): int(w)
        for d, t, w in zip(rows["deal_id"], rows["event_timestamp"], rows["won"], strict=True)
    }


def test_a_deal_without_activity_is_dormant_from_thirty_days_and_censoring_is_counted():
    tables = _with_untouched_deal(tiny_crm())
    got = _dormancy(tables, day(500))
    # D5 is looked at every 14 days while open: dormant from day 42 (quiet since creation),
    # and lost, so not won within the horizon. D1 and D2 were never quiet for 30 days.
    assert got == {("D5", 42): 0, ("D5", 56): 0, ("D5", 70): 0, ("D5", 84): 0, ("D5", 98): 0}
    # The same CRM seen at day 101: D5 is already lost then, so nothing is censored...
    _, counts = dormant_snapshots(in_memory_frame(tables), day(101))
    assert (counts["snapshots"], counts["censored"], counts["kept"]) == (5, 0, 5)
    # ...but a win at day 100 is not known at day 99 with the horizon past it: censored.
    won = {
        **tables,
        "deals": tables["deals"].assign(
            status=np.where(tables["deals"]["deal_id"] == "D5", "won", tables["deals"]["status"])
        ),
    }
    rows, counts = dormant_snapshots(in_memory_frame(won), day(99))
    assert (counts["snapshots"], counts["censored"], len(rows)) == (5, 5, 0)
    assert _dormancy(won, day(500)) == {k: 1 for k in got}


def test_activities_after_a_snapshot_do_not_change_its_dormancy():
    tables = _with_untouched_deal(tiny_crm())
    before = _dormancy(tables, day(500))
    acts = tables["activities"]
    later = activities_table([("D5", None, "call", "outbound", 50)]).assign(
        activity_id="X99", duration_seconds=60.0
    )
    touched = {**tables, "activities": pd.concat([acts, later], ignore_index=True)}
    after = _dormancy(touched, day(500))
    # Day 42 is before the call: still dormant. Day 56 is 6 days after it: active now, and
    # dormant again from day 84 (34 quiet days): the rule reads each snapshot's own past.
    assert after == {("D5", 42): 0, ("D5", 84): 0, ("D5", 98): 0}
    assert before.keys() - after.keys() == {("D5", 56), ("D5", 70)}


# ---------------------------------------------------------------- the choice
def _block(ece_a: float, ece_b: float, low: float, high: float) -> dict:
    def m(ece: float) -> dict:
        return {"ece": ece, "ci95": {"ece": {"low": ece / 2, "high": ece * 2}}}

    return {
        "win_model": m(ece_a),
        "dormant_calibration": m(ece_b),
        "dormant_calibration_minus": {
            "win_model": {"log_loss": {"difference": (low + high) / 2, "low": low, "high": high}}
        },
    }


def test_the_dormant_calibration_is_kept_only_when_better_beyond_the_interval():
    choice, sentence = choose_dormant(_block(0.08, 0.02, -0.03, -0.01))
    assert choice is DormantChoice.DORMANT_CALIBRATION
    assert "ECE 0.0200" in sentence and "0.0800" in sentence and "log loss" in sentence
    # The interval reaches zero: not shown to be better, the win model's number stays.
    assert choose_dormant(_block(0.08, 0.02, -0.03, 0.001))[0] is DormantChoice.WIN_MODEL
    # Better log loss but a worse ECE: not better calibrated.
    assert choose_dormant(_block(0.02, 0.03, -0.03, -0.01))[0] is DormantChoice.WIN_MODEL


@pytest.fixture(scope="module")
def split_model() -> tuple[ScoringModel, dict[str, pd.DataFrame]]:
    tables = synthetic_tables()
    model, frame = train_small_model(tables)
    # Wider validation and test slices than training's: dormant wins are few here.
    masks = slice_masks(frame, choose_split(frame, (0.4, 0.3, 0.3)))
    return model, {name: frame[masks[name]] for name in SLICES}


def test_the_backtest_fits_a_dormant_calibration_for_a_miscalibrated_win_model(split_model):
    model, parts = split_model
    config = TrainConfig(bootstrap_resamples=50)
    # A win model that overstates every deal's chance fivefold in odds.
    skewed = replace(model, calibration=Calibration("platt", a=1.0, b=np.log(5.0)))
    result, calibration = backtest_dormant(skewed, parts, config, min_deals=5)
    assert result["choice"] == DormantChoice.DORMANT_CALIBRATION and calibration is not None
    per = result["per_deal"]
    assert per["dormant_calibration"]["ece"] < per["win_model"]["ece"]
    # Each dormant test deal once, at its first dormant snapshot; every snapshot besides.
    assert per["deals"] == per["snapshots"] == result["per_snapshot"]["deals"]
    assert result["per_snapshot"]["snapshots"] > per["snapshots"]
    assert {"win_model", "dormant_calibration", "stage_quiet_rate"} <= per.keys()


def test_too_few_dormant_deals_leave_the_number_unchecked(split_model):
    model, parts = split_model
    few = {**parts, "test": parts["test"].head(30)}
    result, calibration = backtest_dormant(
        model, few, TrainConfig(bootstrap_resamples=10), min_deals=5
    )
    assert result["choice"] == DormantChoice.UNCHECKED and calibration is None
    assert "test slice" in result["sentence"]


# ---------------------------------------------------------------- the list
@pytest.fixture(scope="module")
def win_model() -> ScoringModel:
    return train_small_model(synthetic_tables())[0]


def _chose(model: ScoringModel, choice: DormantChoice, cal: Calibration | None) -> ScoringModel:
    info = {**model.info, "dormant": {"choice": choice.value, "horizon_days": 365}}
    return replace(model, info=info, dormant_calibration=cal)


def test_dormant_rows_carry_the_chosen_models_number_and_meaning(win_model):
    tables = ranking_crm()
    plain = rank_deals(tables, win_model, AS_OF).frame.set_index("deal_id")
    assert plain.loc["D3", "priority_group"] == DORMANT
    assert plain.loc["D4", "priority_group"] == ACTIVE
    calibration = Calibration("platt", a=0.5, b=-1.0)
    calibrated = _chose(win_model, DormantChoice.DORMANT_CALIBRATION, calibration)
    scored = rank_deals(tables, calibrated, AS_OF).frame.set_index("deal_id")
    d3 = scored.loc["D3"]
    assert d3["model"] == DORMANT_MODEL
    assert (
        d3["meaning"] == "chance of a win within 12 months (win model calibrated on dormant deals)"
    )
    # Its number: the same trees through the dormant calibration, at the ranking moment.
    deal = select_candidates(tables["deals"], AS_OF, 180).query("deal_id == 'D3'")
    feats = features_as_of(build_feature_sources(tables), scoring_entities(deal, AS_OF))
    raw = win_model.raw_score(win_model.encode(model_frame(feats)))
    assert d3["probability"] == pytest.approx(float(calibration(raw)[0]))
    assert d3["probability"] != pytest.approx(plain.loc["D3", "probability"])
    assert d3["negative_reasons"] == plain.loc["D3", "negative_reasons"]  # same trees
    # The active deal keeps the win model's own number and words.
    assert (scored.loc["D4", "model"], scored.loc["D4", "meaning"]) == (WIN_MODEL, OPEN_MEANING)
    assert scored.loc["D4", "probability"] == plain.loc["D4", "probability"]

    checked = _chose(win_model, DormantChoice.WIN_MODEL, None)
    kept = rank_deals(tables, checked, AS_OF).frame.set_index("deal_id").loc["D3"]
    assert kept["model"] == WIN_MODEL
    assert (
        kept["meaning"] == "chance of a win within 12 months (win model, checked on dormant deals)"
    )
    assert kept["probability"] == plain.loc["D3", "probability"]
    assert plain.loc["D3", "meaning"] == dormant_meaning(365, DormantChoice.UNCHECKED)


def test_the_page_says_how_dormant_deals_were_scored_in_english_and_chinese(
    stored, win_model, tmp_path
):
    calibrated = _chose(
        win_model, DormantChoice.DORMANT_CALIBRATION, Calibration("platt", a=0.5, b=-1.0)
    )
    run_rank(stored, calibrated, "1", tmp_path / "a", as_of=AS_OF, revival=None)
    page = render_page(read_ranked(tmp_path / "a"), ranking_crm())
    assert "calibrated on dormant deals" in page
    assert "重新校准的赢单模型" in render_page(
        read_ranked(tmp_path / "a"), ranking_crm(), lang="zh"
    )
    run_rank(stored, win_model, "1", tmp_path / "b", as_of=AS_OF, revival=None)
    page = render_page(read_ranked(tmp_path / "b"), ranking_crm())
    assert "not checked against what dormant deals do" in page
    assert "未经休眠商机" in render_page(read_ranked(tmp_path / "b"), ranking_crm(), lang="zh")


def test_the_dormant_calibration_travels_with_the_model(win_model):
    model = _chose(win_model, DormantChoice.DORMANT_CALIBRATION, Calibration("platt", a=2, b=-1))
    again = ScoringModel.from_metadata(model.booster, model.metadata())
    assert again.dormant_calibration == model.dormant_calibration
    assert (
        ScoringModel.from_metadata(win_model.booster, win_model.metadata()).dormant_calibration
        is None
    )
