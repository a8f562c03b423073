"""Training on a small synthetic CRM, without Feast or MLflow: guards, reproducibility, contract."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from leadscore.crm.synth import generate_crm
from leadscore.model.fallback import fit_fallback_on_snapshots
from leadscore.model.reason_stats import lookup
from pipelines.cli import app
from training.data import InsufficientDataError, in_memory_frame, slice_warnings
from training.evaluate import INTERVAL_METRICS, flatten_metrics, per_deal_rows
from training.report import model_card, write_report
from training.result import TrainConfig, TrainingResult
from training.train import fit_and_evaluate, train

AS_OF = pd.Timestamp("2025-06-30", tz="UTC")


@pytest.fixture(scope="module")
def crm():
    return generate_crm(1500, seed=5, as_of=AS_OF)


@pytest.fixture(scope="module")
def frame(crm) -> pd.DataFrame:
    return in_memory_frame(crm.tables)


@pytest.fixture(scope="module")
def result(frame, crm) -> TrainingResult:
    return fit_and_evaluate(frame, "lead_scoring_v1", TrainConfig(seed=3), crm.truth)


def few_deals(frame: pd.DataFrame, won: int, lost: int) -> pd.DataFrame:
    deals = frame.drop_duplicates("deal_id")
    keep = pd.concat([deals[deals["won"] == 1].head(won), deals[deals["won"] == 0].head(lost)])[
        "deal_id"
    ]
    return frame[frame["deal_id"].isin(keep)]


def test_too_few_deals_stop_with_counts_and_what_is_needed(frame):
    with pytest.raises(
        InsufficientDataError, match=r"12 won and 300 lost, at least 40 of each"
    ) as err:
        fit_and_evaluate(few_deals(frame, 12, 300), "lead_scoring_v1")
    assert (err.value.won, err.value.lost, err.value.needed) == (12, 300, 40)


def test_cli_train_exits_non_zero_with_the_message(frame, monkeypatch):
    small = few_deals(frame, 50, 39)
    # The real training entry point on a small frame instead of the Feast one.
    monkeypatch.setattr(
        "training.train.train_from_store",
        lambda settings, config, truth, progress: train(
            settings, small, "lead_scoring_v1", config, progress=progress
        ),
    )
    out = CliRunner().invoke(app, ["train", "--json"])
    assert out.exit_code == 1
    assert "50 won and 39 lost, at least 40 of each are needed" in out.output
    assert "Traceback" not in out.output


def test_same_data_and_seed_give_the_same_model_and_metrics(frame, result):
    again = fit_and_evaluate(
        frame.sample(frac=1.0, random_state=1), "lead_scoring_v1", TrainConfig(seed=3)
    )
    assert again.model.booster.model_to_string() == result.model.booster.model_to_string()
    assert again.model.metadata() == result.model.metadata()
    assert again.evaluation["test"] == result.evaluation["test"]
    assert again.evaluation["baselines"] == result.evaluation["baselines"]


def test_modest_model_with_time_split_recorded(result):
    info = result.model.info
    assert 1 <= info["trees"] <= 300 == result.config.num_boost_round
    assert {"train_end", "valid_end", "test_end", "method", "note"} <= set(info["split"])
    assert info["split"]["method"] == "time" and info["split"]["undated_left_out"] == 0
    deals = {s: set(result.frame.loc[m, "deal_id"]) for s, m in result.masks.items()}
    assert not (deals["train"] & deals["test"]) and not (deals["valid"] & deals["test"])


def test_calibration_improves_or_keeps_ece_on_validation(result):
    """Keeps, on a booster that is nearly calibrated already: log loss cannot get worse (the
    identity is among Platt's maps) and ECE stays within its own sampling noise (about a
    point on this ~1,000-row slice). A badly calibrated score is fixed: test_training_calibration."""
    valid = result.evaluation["valid"]
    assert valid["calibrated"]["ece"] <= valid["uncalibrated"]["ece"] + 0.005
    assert valid["calibrated"]["log_loss"] <= valid["uncalibrated"]["log_loss"] + 1e-9


def test_evaluation_has_test_baselines_and_oracle_at_creation(result):
    ev = result.evaluation
    keys = {"roc_auc", "pr_auc", "log_loss", "brier", "ece", "lift_at_10"}
    assert keys <= set(ev["test"]) and ev["test"]["roc_auc"] > 0.7
    assert {"logistic_regression", "channel_rate", "stage_fallback"} == set(ev["baselines"])
    assert keys <= set(ev["at_creation"]["model"]) and keys <= set(ev["at_creation"]["oracle"])
    # What the features can show (no rep skill) is a less sharp ceiling than the oracle.
    seen = ev["at_creation"]["oracle_without_rep"]
    assert ev["at_creation"]["oracle"]["log_loss"] < seen["log_loss"]
    assert (
        ev["at_creation"]["deals"]
        == ev["data"]["deals"]["test"]["won"] + ev["data"]["deals"]["test"]["lost"]
    )
    assert set(ev["test"]["by_channel"]) >= {"web", "referral"}
    json.dumps(ev, allow_nan=False)


def test_unseen_categories_are_scored_not_errors(result, frame):
    model = result.model
    record = frame.iloc[-1][model.features].to_dict()
    record = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in record.items()}
    record["channel"] = "carrier_pigeon"
    columns = {name: [value] for name, value in record.items()}
    p = model.probability(model.encode_columns(columns))
    assert 0 < p[0] < 1
    assert model.unseen_categories(columns) == [["channel"]]
    # Column by column, the same matrix training encodes from a frame.
    assert np.array_equal(
        model.encode_columns(columns), model.encode(pd.DataFrame(columns)), equal_nan=True
    )
    assert "carrier_pigeon" not in model.categories["channel"]


def test_contributions_add_up_to_the_raw_score(result, frame):
    X = result.model.encode(frame.head(200))
    assert np.allclose(result.model.contributions(X).sum(axis=1), result.model.raw_score(X))


def test_reason_stats_are_small_json_and_lookup_follows_the_bins(result):
    stats = result.model.reason_stats
    assert len(json.dumps(stats)) < 16_000
    assert 0 < stats["win_rate"] < 1 and stats["deals"] == sum(
        result.evaluation["data"]["deals"]["train"].values()
    )
    referral = lookup(stats, "channel", "referral")
    assert referral["deals"] > 0 and 0 <= referral["win_rate"] <= 1
    assert lookup(stats, "channel", "carrier_pigeon") is None
    amount = stats["numeric"]["amount"]
    edges = amount["edges"]
    assert lookup(stats, "amount", edges[0])["win_rate"] == amount["win_rate"][0]
    assert lookup(stats, "amount", edges[1])["low"] == edges[1]
    assert lookup(stats, "amount", edges[-1] * 10)["high"] is None
    buyer = stats["numeric"]["has_economic_buyer"]
    assert buyer["edges"][:2] == [0.0, 1.0]  # one bin per value of a binary feature


# ---------------------------------------------------------------- per deal, intervals, warnings
def _open_at_age(result) -> int:
    """Test deals still open at the per-deal age: the ones scored "at age"."""
    deals = result.frame[result.masks["test"]].drop_duplicates("deal_id")
    lived = (deals["closed_at"] - deals["created_at"]) / pd.Timedelta(days=1)
    return int((lived > result.config.per_deal_age_days).sum())


def test_per_deal_blocks_for_any_data_with_intervals(result):
    ev = result.evaluation
    test = result.frame[result.masks["test"]]
    n_deals = {"at_creation": test["deal_id"].nunique(), "at_age": _open_at_age(result)}
    assert 0 < n_deals["at_age"] < n_deals["at_creation"]
    for block in ("at_creation", "at_age"):
        b = ev["per_deal"][block]
        assert b["deals"] == b["won"] + b["lost"] == n_deals[block]
        for name in ("model", "logistic_regression", "channel_rate"):
            m = b[name]
            assert {"roc_auc", "pr_auc", "log_loss", "brier", "ece", "lift_at_10"} <= set(m)
            for key in INTERVAL_METRICS:
                assert m["ci95"][key]["low"] <= m[key] <= m["ci95"][key]["high"]
        diff = b["model_minus_baseline"]["logistic_regression"]["roc_auc"]
        assert diff["low"] <= diff["difference"] <= diff["high"]
    for m in (ev["test"], *ev["baselines"].values()):
        for key in INTERVAL_METRICS:
            assert m["ci95"][key]["low"] <= m[key] <= m["ci95"][key]["high"]
    # The oracle block (with truth) scores the same deals at creation as the per-deal block.
    assert ev["at_creation"]["model"] == {
        k: v
        for k, v in ev["per_deal"]["at_creation"]["model"].items()
        if k in ev["at_creation"]["model"]
    }
    assert ev["warnings"] == [] and ev["intervals"]["resamples"] == 200
    flat = flatten_metrics(ev)
    assert "per_deal.at_creation.model.ci95.roc_auc.low" in flat
    assert "per_deal.at_age.model_minus_baseline.logistic_regression.log_loss.difference" in flat
    json.dumps(ev, allow_nan=False)


def test_the_evaluation_and_the_card_have_the_model_per_segment(result):
    segments = result.evaluation["segments"]
    n_deals = _open_at_age(result)  # the segments are read on the deals scored at age
    for segment in ("channel", "size_band", "industry", "stage"):
        assert sum(e["deals"] for e in segments[segment]) == n_deals
        assert all("model" in e or "missing" in e for e in segments[segment])
    sized = [e for s in ("channel", "size_band", "industry", "stage") for e in segments[s]]
    assert any("model" in e for e in sized), "no segment big enough for figures"
    card = model_card(result, pd.DataFrame({"feature": [], "gain_share": []}))
    assert "## Per segment" in card and "### By size band" in card


def test_the_fallback_baseline_learns_from_the_training_slice_only(result):
    """The gate's fallback baseline is the fallback fitted on the training deals' snapshots:
    nothing of the test deals (their outcomes) reaches it."""
    frame, masks, served = result.frame, result.masks, result.test_predictions
    assert result.pooled_test is None  # the single split: its test slice is scored
    test = result.test_rows

    def predicted(fitted_on: pd.DataFrame) -> np.ndarray:
        fallback = fit_fallback_on_snapshots(fitted_on)
        return fallback.predict(test["stage_index"].to_numpy(), test["channel"].to_numpy())

    np.testing.assert_allclose(served["stage_fallback"], predicted(frame[masks["train"]]))
    leaky = predicted(frame[masks["train"] | masks["test"]])
    assert not np.allclose(served["stage_fallback"], leaky)


def test_the_gate_and_the_card_compare_the_model_with_the_fallback(result):
    checks = result.evaluation["gate"]["checks"]
    assert {c["baseline"] for c in checks} == {
        "logistic_regression",
        "channel_rate",
        "stage_fallback",
    }
    per_deal = result.evaluation["per_deal"]["at_age"]
    assert "roc_auc" in per_deal["model_minus_baseline"]["stage_fallback"]
    card = model_card(result, pd.DataFrame({"feature": [], "gain_share": []}))
    assert card.count("| fallback (stage and channel rates) |") >= 4  # tables and margins


def test_at_creation_uses_exactly_one_row_per_deal(result):
    test = result.frame[result.masks["test"]]
    rows = per_deal_rows(test, 30)["at_creation"]
    chosen = test.iloc[rows]
    assert chosen["deal_id"].is_unique and set(chosen["deal_id"]) == set(test["deal_id"])
    assert (chosen["snapshot_index"] == 0).all()
    assert result.evaluation["per_deal"]["at_creation"]["model"]["n"] == len(rows)


def test_a_tiny_or_skewed_slice_is_reported_not_fatal():
    def part(won: int, lost: int) -> pd.DataFrame:
        return pd.DataFrame(
            {"deal_id": [f"D{i}" for i in range(won + lost)], "won": [1] * won + [0] * lost}
        )

    # The slice: 17 won against 1,082 lost, after a training slice winning 35%.
    warnings = slice_warnings(
        {"train": part(700, 1300), "valid": part(120, 230), "test": part(17, 1082)}, 30, 0.10, 2.0
    )
    assert len(warnings) == 2 and all("test slice" in w for w in warnings)
    assert "17 won and 1082 lost" in warnings[0] and "1.5%" in warnings[1]
    assert slice_warnings({"train": part(300, 600), "test": part(95, 205)}, 30, 0.10, 2.0) == []
    # A low win rate shifts little in points but much in odds.
    assert (
        len(slice_warnings({"train": part(100, 1900), "test": part(200, 1800)}, 30, 0.10, 2.0)) == 1
    )


def test_slice_warnings_reach_the_log_the_evaluation_and_the_cli(
    frame, result, caplog, monkeypatch
):
    strict = TrainConfig(seed=3, warn_min_class_deals=10_000, bootstrap_resamples=20)
    with caplog.at_level("WARNING", logger="training.train"):
        warned = fit_and_evaluate(frame, "lead_scoring_v1", strict)
    assert len(warned.evaluation["warnings"]) == 3  # every slice has fewer than 10,000
    assert [r.getMessage() for r in caplog.records] == warned.evaluation["warnings"]
    # Same model: warnings change what is reported, never what is trained.
    assert warned.model.booster.model_to_string() == result.model.booster.model_to_string()
    summary = {"run_id": "r", "model_name": "lead_scorer", "model_version": "1", "aliases": []}
    monkeypatch.setattr(
        "training.train.train_from_store",
        lambda settings, config, truth, progress: summary | warned.evaluation,
    )
    out = CliRunner().invoke(app, ["train"])
    assert out.exit_code == 0, out.output
    assert out.output.count("warning: the ") == 3
    assert "per deal at creation" in out.output
    assert "model - logistic regression, per-deal ROC AUC at creation: " in out.output
    assert "  model - fallback (stage and channel rates): ROC AUC " in out.output
    assert f"dormant deals: {warned.evaluation['dormant']['sentence']}" in out.output


def test_age_leak_is_exposed_by_the_per_deal_block(crm):
    """A label rule that makes deal age leak: lost deals close exactly 90 days after creation,
    won ones within 45, outcomes otherwise random. Old snapshots are all lost, so the model
    ranks snapshots well by reading age; at creation every deal is the same age and it
    knows nothing, which only the per-deal block shows."""
    tables = dict(crm.tables)
    deals = tables["deals"].copy()
    rng = np.random.default_rng(11)
    closed = deals["status"].isin(["won", "lost"]).to_numpy()
    won = rng.uniform(size=len(deals)) < 0.35
    close = pd.to_datetime(deals["created_at"], utc=True) + pd.to_timedelta(
        np.where(won, rng.uniform(5, 45, len(deals)), 90.0), unit="D"
    )
    done = closed & (close <= AS_OF).to_numpy()  # closing after the export: still open
    deals["status"] = np.where(
        done, np.where(won, "won", "lost"), np.where(closed, "open", deals["status"].astype(str))
    )
    deals["closed_at"] = close.where(done)
    tables["deals"] = deals
    ev = fit_and_evaluate(
        in_memory_frame(tables), "lead_scoring_v1", TrainConfig(seed=3)
    ).evaluation
    assert ev["test"]["roc_auc"] > 0.75
    creation = ev["per_deal"]["at_creation"]["model"]
    assert abs(creation["roc_auc"] - 0.5) < 0.1
    assert creation["ci95"]["roc_auc"]["low"] < 0.5 < creation["ci95"]["roc_auc"]["high"]


def test_a_skewed_test_slice_is_replaced_by_time_ordered_cross_validation(frame, tmp_path):
    """The newest deals nearly all won (5 lost): the single split's test slice cannot
    measure anything, so the evaluation pools time-ordered folds and says why."""
    deals = frame.drop_duplicates("deal_id").sort_values("closed_at", kind="stable")
    newest = deals["deal_id"].iloc[-int(0.2 * len(deals)) :]
    lost = set(newest.iloc[::50][:5])
    skewed = frame.assign(
        won=np.where(
            frame["deal_id"].isin(lost), 0, np.where(frame["deal_id"].isin(newest), 1, frame["won"])
        )
    )
    r = fit_and_evaluate(skewed, "lead_scoring_v1", TrainConfig(seed=3, bootstrap_resamples=50))
    single = r.evaluation["data"]["deals"]["test"]
    assert single["lost"] < 40
    cv = r.evaluation["cross_validation"]
    assert cv["out_of_time"] and cv["folds"] >= 2
    reason = next(w for w in r.evaluation["warnings"] if "cross-validation" in w)
    assert f"{single['won']} won and {single['lost']} lost deals, fewer than 40 of each" in reason
    # Every figure pools the folds: more deals than the single slice, enough of each.
    per_deal = r.evaluation["per_deal"]["at_creation"]
    assert per_deal["lost"] >= 40 and per_deal["deals"] > single["won"] + single["lost"]
    q = r.model.info["quality"]
    assert q["test_deals"] == {"won": per_deal["won"], "lost": per_deal["lost"]}
    assert q["split"]["cross_validation"].startswith("time-ordered cross-validation")
    # The registered model is still the one trained on the single split.
    assert r.evaluation["data"]["split"]["method"] == "time"
    # The model card draws the pooled rows its figures come from.
    assert len(r.test_rows) == len(r.test_predictions["model"]) > r.masks["test"].sum()
    written = write_report(r, tmp_path)
    assert all(p.exists() for p in written)


def test_enough_test_deals_keep_the_single_split(result):
    assert result.evaluation["cross_validation"] is None
    assert not [w for w in result.evaluation["warnings"] if "cross-validation" in w]
