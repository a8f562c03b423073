"""Metrics on hand-checked examples."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from training.evaluate import (
    HEADLINE,
    INTERVAL_METRICS,
    _weighted_auc,
    binary_metrics,
    bootstrap_metrics,
    deal_resample_counts,
    expected_calibration_error,
    flatten_metrics,
    metrics_by_group,
    per_deal_rows,
    top_share,
    with_intervals,
)


def test_ece_is_the_row_weighted_gap_per_equal_width_bin():
    # Bin [0.1, 0.2): p 0.1 twice, one win -> |0.5 - 0.1| = 0.4 on 2 of 4 rows.
    # Bin [0.9, 1.0]: p 0.9 and 1.0, both won -> |1 - 0.95| = 0.05 on 2 of 4 rows.
    y = np.array([1, 0, 1, 1])
    p = np.array([0.1, 0.1, 0.9, 1.0])
    assert expected_calibration_error(y, p) == pytest.approx(0.5 * 0.4 + 0.5 * 0.05)
    assert expected_calibration_error(np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(0.0)


def test_lift_and_capture_of_the_top_share():
    y = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 1])
    p = np.linspace(1, 0, 10)  # rows already in score order
    lift, capture = top_share(y, p, 0.2)  # top 2 rows: both won
    assert lift == pytest.approx(1.0 / 0.3)
    assert capture == pytest.approx(2 / 3)


def test_binary_metrics_have_the_headline_keys_and_no_nan():
    rng = np.random.default_rng(0)
    p = rng.uniform(size=500)
    y = (rng.uniform(size=500) < p).astype(int)
    m = binary_metrics(y, p)
    assert set(HEADLINE) <= set(m)
    assert 0.6 < m["roc_auc"] < 0.9
    single = binary_metrics(np.zeros(5), np.full(5, 0.2))
    assert single["roc_auc"] is None and single["log_loss"] is not None


def test_metrics_by_group_and_flat_names_for_mlflow():
    y = np.array([1, 0, 1, 0])
    p = np.array([0.8, 0.2, 0.6, 0.4])
    groups = np.array(["web", "web", None, None], dtype=object)
    by = metrics_by_group(y, p, groups)
    assert list(by) == ["(missing)", "web"]
    flat = flatten_metrics({"test": {"by_channel": by}, "passed": True, "name": "text"})
    assert flat["test.by_channel._missing_.roc_auc"] == 1.0
    assert flat["passed"] == 1.0 and "name" not in flat


# ---------------------------------------------------------------- per deal and intervals
def scored_deals(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.05, 0.95, size=n)
    return (rng.uniform(size=n) < p).astype(int), p


def snapshots(deals: dict[str, tuple[int, bool]]) -> pd.DataFrame:
    """Snapshots every 14 days of deals given as ``id: (days open, won)``, in shuffled order."""
    created = pd.Timestamp("2025-01-01", tz="UTC")
    rows = [
        {
            "deal_id": deal,
            "snapshot_index": k,
            "event_timestamp": created + pd.Timedelta(days=14 * k),
            "created_at": created,
            "closed_at": created + pd.Timedelta(days=days),
            "won": int(won),
            "age_days": 14 * k,
        }
        for deal, (days, won) in deals.items()
        for k in range(int(np.ceil(days / 14)))
    ]
    return pd.DataFrame(rows).sample(frac=1.0, random_state=0).reset_index(drop=True)


def test_weighted_auc_is_sklearn_auc_with_ties_and_weights():
    rng = np.random.default_rng(1)
    p = np.round(rng.uniform(size=400), 1)  # many ties
    y = (rng.uniform(size=400) < p).astype(float)
    w = rng.integers(0, 4, size=(3, 400)).astype(float)
    got = _weighted_auc(y, p, np.vstack([np.ones(400), w]))
    assert got[0] == pytest.approx(roc_auc_score(y, p))
    for row, weights in zip(got[1:], w, strict=True):
        assert row == pytest.approx(roc_auc_score(y, p, sample_weight=weights))


def test_each_resample_draws_as_many_deals_as_there_are():
    counts = deal_resample_counts(50, 30, seed=4)
    assert counts.shape == (30, 50) and (counts.sum(axis=1) == 50).all()
    assert np.array_equal(counts, deal_resample_counts(50, 30, seed=4))


def test_intervals_contain_the_point_estimate_and_differences_are_paired():
    y, p = scored_deals(300)
    noisy = np.clip(p + np.random.default_rng(2).normal(0, 0.2, len(p)), 0.01, 0.99)
    out = with_intervals(
        y,
        {"model": p, "baseline": noisy},
        np.arange(300),
        200,
        seed=7,
        compare=("model", ["baseline"]),
    )
    for name in ("model", "baseline"):
        for key in INTERVAL_METRICS:
            ci = out[name]["ci95"][key]
            assert ci["low"] <= out[name][key] <= ci["high"] and ci["low"] < ci["high"]
    diff = out["model_minus_baseline"]["baseline"]["roc_auc"]
    assert diff["difference"] == pytest.approx(out["model"]["roc_auc"] - out["baseline"]["roc_auc"])
    assert 0 < diff["low"] <= diff["difference"] <= diff["high"]
    # Paired: the difference's interval is narrower than either AUC's own.
    own = out["model"]["ci95"]["roc_auc"]
    assert diff["high"] - diff["low"] < own["high"] - own["low"]


def test_bootstrap_resamples_deals_so_a_duplicated_deal_does_not_shrink_the_interval():
    """One deal seen 400 times (say, a long deal snapshotted every day) among 100 deals.

    Resampling snapshots treats the 400 copies as 400 independent pieces of evidence and
    gives a narrow interval; resampling deals keeps them together, so the interval stays
    as wide as 101 deals allow.
    """
    y, p = scored_deals(100, seed=3)
    y = np.r_[y, np.ones(400, dtype=int)]
    p = np.r_[p, np.full(400, 0.2)]  # the repeated deal: won, scored low
    deals = np.r_[np.arange(100), np.full(400, 100)]
    width = {}
    for unit, ids in (("deal", deals), ("snapshot", np.arange(len(y)))):
        boot = bootstrap_metrics(y, {"model": p}, ids, resamples=300, seed=0)["model"]
        width[unit] = {k: np.percentile(v, 97.5) - np.percentile(v, 2.5) for k, v in boot.items()}
    for key in INTERVAL_METRICS:
        assert width["deal"][key] > 2 * width["snapshot"][key], key


def test_bootstrap_over_deals_ignores_how_many_snapshots_each_deal_has():
    """Every deal repeated 10 times: per-deal resampling gives the same interval width."""
    y, p = scored_deals(200, seed=5)
    once = bootstrap_metrics(y, {"m": p}, np.arange(200), resamples=300, seed=1)["m"]
    tenfold = bootstrap_metrics(
        np.repeat(y, 10), {"m": np.repeat(p, 10)}, np.repeat(np.arange(200), 10), 300, seed=1
    )["m"]
    for key in INTERVAL_METRICS:
        assert np.allclose(once[key], tenfold[key]), key


def test_per_deal_rows_take_one_row_per_deal_at_creation_and_at_age():
    frame = snapshots({"A": (100, True), "B": (20, False), "C": (1, True)})
    frame = pd.concat([frame, frame[frame["deal_id"] == "A"]], ignore_index=True)  # A repeated
    rows = per_deal_rows(frame, age_days=30)
    creation = frame.iloc[rows["at_creation"]]
    assert sorted(creation["deal_id"]) == ["A", "B", "C"]
    assert (creation["snapshot_index"] == 0).all()
    at_age = frame.iloc[rows["at_age"]].set_index("deal_id")["age_days"]
    # A: its snapshot at 28 days. B closed at 20 days and C at 1: not open at 30 days, so
    # no row (their last snapshots before the close would be picked by their outcome).
    assert at_age.sort_index().to_dict() == {"A": 28}


def test_per_deal_rows_at_age_do_not_depend_on_when_the_outcome_came():
    """Won deals close early, lost ones late. Scoring a deal closed before 30 days at its
    last snapshot before the close would fill the rows with early winners, a mix no
    manager looking at the deals 30 days old ever sees: only the deals open at 30 days
    count, whatever their outcome."""
    rng = np.random.default_rng(3)
    won = rng.uniform(size=400) < 0.4
    days = np.where(won, rng.uniform(5, 60, 400), rng.uniform(40, 120, 400))
    frame = snapshots({f"D{i}": (d, w) for i, (d, w) in enumerate(zip(days, won, strict=True))})
    rows = frame.iloc[per_deal_rows(frame, 30)["at_age"]]
    lived = (rows["closed_at"] - rows["created_at"]) / pd.Timedelta(days=1)
    assert (lived > 30).all()
    assert len(rows) == int((days > 30).sum())


def test_age_leak_shows_per_snapshot_and_vanishes_per_deal():
    """Lost deals all close 90 days after creation; won ones within 45. The label is
    otherwise random. A score that reads deal age ranks snapshots well; at creation every
    deal is the same age and the score knows nothing."""
    rng = np.random.default_rng(0)
    won = rng.uniform(size=400) < 0.4
    days = np.where(won, rng.uniform(5, 45, 400), 90.0)
    frame = snapshots({f"D{i}": (d, w) for i, (d, w) in enumerate(zip(days, won, strict=True))})
    p = 0.6 - frame["age_days"].to_numpy() / 200 + rng.uniform(0, 0.01, len(frame))
    y = frame["won"].to_numpy()
    assert binary_metrics(y, p)["roc_auc"] > 0.7
    first = per_deal_rows(frame, 30)["at_creation"]
    at_creation = with_intervals(y[first], {"m": p[first]}, frame["deal_id"].to_numpy()[first])
    assert abs(at_creation["m"]["roc_auc"] - 0.5) < 0.08
    ci = at_creation["m"]["ci95"]["roc_auc"]
    assert ci["low"] < 0.5 < ci["high"]
