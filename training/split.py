"""Time split of the training frame: learn from the past, check on the future.

A random split would let the model learn from deals that closed after the ones it is
tested on, and put snapshots of one deal on both sides, so test scores would flatter it.
Deals are ordered by the moment they closed; the earliest go to training, the next
slice to validation (early stopping, calibration), the most recent to test. A deal's
snapshots all follow its ``closed_at``, so they never straddle two slices.

The cut points are timestamps, saved with the model, so the same test slice can be
rebuilt later from a fresh frame (the promotion gate does this).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

SLICES = ("train", "valid", "test")


@dataclass(frozen=True)
class SplitBounds:
    """Deals closed at or before ``train_end`` train; up to ``valid_end`` validate; up to
    ``test_end`` (the last close in the frame) test."""

    train_end: pd.Timestamp
    valid_end: pd.Timestamp
    test_end: pd.Timestamp

    def to_dict(self) -> dict[str, str]:
        return {k: getattr(self, k).isoformat() for k in ("train_end", "valid_end", "test_end")}

    @classmethod
    def from_dict(cls, d: dict[str, str]) -> SplitBounds:
        return cls(*(pd.Timestamp(d[k]) for k in ("train_end", "valid_end", "test_end")))


def split_bounds(
    frame: pd.DataFrame, fractions: tuple[float, float, float] = (0.70, 0.15, 0.15)
) -> SplitBounds:
    """Cut points so that about ``fractions`` of the *deals* (not snapshots) fall in each slice.

    Ties at a cut point all go to the earlier slice, so the split depends only on
    ``closed_at`` values, never on row order.
    """
    if not math.isclose(sum(fractions), 1.0) or min(fractions) <= 0:
        raise ValueError(f"fractions must be positive and sum to 1, got {fractions}")
    closes = np.sort(_closed_at(frame).groupby(frame["deal_id"].to_numpy()).first().to_numpy())
    n = len(closes)
    if n < 3:
        raise ValueError(f"a time split needs at least 3 closed deals, got {n}")
    first = max(1, min(n - 2, math.ceil(fractions[0] * n)))
    second = max(first + 1, min(n - 1, math.ceil((fractions[0] + fractions[1]) * n)))
    return SplitBounds(
        *(pd.Timestamp(closes[i]).tz_localize("UTC") for i in (first - 1, second - 1, n - 1))
    )


def slice_masks(frame: pd.DataFrame, bounds: SplitBounds) -> dict[str, np.ndarray]:
    """Boolean row masks of the three slices. Rows closed after ``test_end`` are in none."""
    closed = _closed_at(frame).to_numpy()
    train_end, valid_end, test_end = (
        _naive(t) for t in (bounds.train_end, bounds.valid_end, bounds.test_end)
    )
    train = closed <= train_end
    valid = ~train & (closed <= valid_end)
    test = (closed > valid_end) & (closed <= test_end)
    return {"train": train, "valid": valid, "test": test}


def _naive(ts: pd.Timestamp) -> np.datetime64:
    """A bound as naive UTC microseconds (bounds are stored tz-aware, in UTC)."""
    ts = pd.Timestamp(ts)
    ts = ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts
    return ts.to_datetime64().astype("datetime64[us]")


def _closed_at(frame: pd.DataFrame) -> pd.Series:
    """``closed_at`` as naive UTC microseconds, one comparable type whatever Feast returned."""
    return (
        pd.to_datetime(frame["closed_at"], utc=True).dt.tz_localize(None).astype("datetime64[us]")
    )
