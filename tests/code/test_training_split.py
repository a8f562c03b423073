"""The time split: slices ordered by close time, no deal on two sides, bounds reusable."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.split import SLICES, SplitBounds, slice_masks, split_bounds


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
