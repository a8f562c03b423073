"""The time split: slices ordered by close time, no deal on two sides, bounds reusable."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.split import (
    MAX_TIME_FOLDS,
    SLICES,
    SplitBounds,
    choose_folds,
    slice_masks,
    split_bounds,
)


def snapshot_frame(n_deals: int, seed: int = 0) -> pd.DataFrame:
    """Deals with random close times (some shared) and 1-6 snapshots each, shuffled rows."""
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp("2024-01-01", tz="UTC")
    closed = t0 + pd.to_timedelta(rng.integers(0, 400, n_deals), unit="D")  # ties on purpose
    k = rng.integers(1, 7, n_deals)
    deal = np.repeat(np.arange(n_deals), k)
    frame = pd.DataFrame(
        {
            "deal_id": [f"D{i}" for i in deal],
            "closed_at": closed[deal],
            "won": rng.integers(0, 2, n_deals)[deal],
        }
    )
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def test_slices_partition_rows_and_never_share_a_deal():
    frame = snapshot_frame(1000)
    masks = slice_masks(frame, split_bounds(frame))
    stacked = np.vstack([masks[s] for s in SLICES])
    assert (stacked.sum(axis=0) == 1).all()  # every row in exactly one slice
    deals = {s: set(frame.loc[masks[s], "deal_id"]) for s in SLICES}
    assert not deals["train"] & deals["valid"]
    assert not deals["train"] & deals["test"]
    assert not deals["valid"] & deals["test"]


def test_train_closes_before_valid_before_test_and_fractions_are_of_deals():
    frame = snapshot_frame(1000)
    masks = slice_masks(frame, split_bounds(frame, (0.70, 0.15, 0.15)))
    closed = {s: frame.loc[masks[s], "closed_at"] for s in SLICES}
    assert closed["train"].max() < closed["valid"].min()
    assert closed["valid"].max() < closed["test"].min()
    share = {s: frame.loc[masks[s], "deal_id"].nunique() / 1000 for s in SLICES}
    assert share["train"] == pytest.approx(0.70, abs=0.02)
    assert share["valid"] == pytest.approx(0.15, abs=0.02)


def test_split_ignores_row_order_and_bounds_round_trip():
    frame = snapshot_frame(300, seed=1)
    bounds = split_bounds(frame)
    assert split_bounds(frame.iloc[::-1]) == bounds
    again = SplitBounds.from_dict(bounds.to_dict())
    for s, m in slice_masks(frame, again).items():
        assert (m == slice_masks(frame, bounds)[s]).all()


def test_rows_closed_after_test_end_are_in_no_slice():
    frame = snapshot_frame(300, seed=2)
    bounds = split_bounds(frame)
    later = frame.assign(closed_at=frame["closed_at"] + pd.Timedelta(days=1000))
    assert not any(m.any() for m in slice_masks(later, bounds).values())


# ---------------------------------------------------------------- cross-validation
def skewed_frame(n_deals: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Deals whose newest 15% are almost all won: the single split's test slice holds 5
    lost deals, too few to measure anything by."""
    frame = snapshot_frame(n_deals, seed)
    deal_close = frame.groupby("deal_id")["closed_at"].first().sort_values(kind="stable")
    newest = set(deal_close.index[-int(0.15 * n_deals) - 5 :])
    rng = np.random.default_rng(seed)
    lost_new = set(rng.choice(sorted(newest), 5, replace=False))
    won = frame["deal_id"].map(lambda d: 0 if d in lost_new else 1 if d in newest else None)
    frame["won"] = won.fillna(frame["won"]).astype(int)
    return frame


def test_a_test_slice_without_enough_of_an_outcome_is_replaced_by_time_ordered_folds():
    frame = skewed_frame()
    bounds = split_bounds(frame)
    single = slice_masks(frame, bounds)
    test = frame[single["test"]].drop_duplicates("deal_id")
    counts = (int(test["won"].sum()), int((test["won"] == 0).sum()))
    assert counts[1] < 40
    folds = choose_folds(frame, bounds, single, counts, 40)
    assert folds is not None and folds.out_of_time
    assert f"{counts[0]} won and {counts[1]} lost deals, fewer than 40 of each" in folds.reason
    assert "time-ordered cross-validation over" in folds.reason
    # The last fold is the single split itself; earlier ones are expanding windows whose
    # training always closed before their test block, and test blocks never overlap.
    assert all((folds.masks[-1][s] == single[s]).all() for s in SLICES)
    close = pd.to_datetime(frame["closed_at"])
    seen: set[str] = set()
    for masks in folds.masks:
        assert close[masks["train"]].max() <= close[masks["valid"]].min()
        assert close[masks["valid"]].max() <= close[masks["test"]].min()
        tested = set(frame.loc[masks["test"], "deal_id"])
        assert not tested & seen
        seen |= tested
    assert 2 <= len(folds.masks) <= MAX_TIME_FOLDS
    # Enough of each outcome in the pooled blocks: no more folds than needed.
    pooled = frame[np.logical_or.reduce([m["test"] for m in folds.masks])].drop_duplicates(
        "deal_id"
    )
    assert min(int(pooled["won"].sum()), int((pooled["won"] == 0).sum())) >= 40
    fewer = np.logical_or.reduce([m["test"] for m in folds.masks[1:]])
    if len(folds.masks) > 2:
        part = frame[fewer].drop_duplicates("deal_id")
        assert min(int(part["won"].sum()), int((part["won"] == 0).sum())) < 40


def test_a_test_slice_that_can_answer_keeps_the_single_split():
    frame = snapshot_frame(1000)
    bounds = split_bounds(frame)
    single = slice_masks(frame, bounds)
    test = frame[single["test"]].drop_duplicates("deal_id")
    counts = (int(test["won"].sum()), int((test["won"] == 0).sum()))
    assert min(counts) >= 40
    assert choose_folds(frame, bounds, single, counts, 40) is None


def test_without_dates_stratified_folds_partition_the_deals_and_say_not_out_of_time():
    frame = snapshot_frame(300).drop(columns="closed_at").assign(closed_at=pd.NaT)
    bounds = SplitBounds(method="random", seed=3)
    folds = choose_folds(frame, bounds, slice_masks(frame, bounds), (20, 25), 40)
    assert folds is not None and not folds.out_of_time
    assert "NOT out of time" in folds.reason
    tests = np.vstack([m["test"] for m in folds.masks])
    assert (tests.sum(axis=0) == 1).all()  # each row tested exactly once
    deals = frame.drop_duplicates("deal_id")
    for masks in folds.masks:
        assert not (masks["train"] & masks["valid"]).any()
        assert not ((masks["train"] | masks["valid"]) & masks["test"]).any()
        fold_deals = frame[masks["test"]].drop_duplicates("deal_id")
        # Stratified: each fold's win rate is the whole set's, within one deal per fold.
        assert abs(fold_deals["won"].mean() - deals["won"].mean()) < 0.05
