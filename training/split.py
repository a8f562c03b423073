"""Time split of the training frame: learn from the past, check on the future.

A random split would let the model learn from deals that closed after the ones it is
tested on, and put snapshots of one deal on both sides, so test scores would flatter it.
Deals are ordered by the moment they closed; the earliest go to training, the next
slice to validation (early stopping, calibration), the most recent to test. A deal's
snapshots all follow its ``closed_at``, so they never straddle two slices.

The cut points are timestamps, saved with the model, so the same test slice can be
rebuilt later from a fresh frame (the promotion gate does this).

Undated closed deals (no ``created_at`` or no ``closed_at``, see
:data:`leadscore.crm.contract.UNDATED`) have no place in time. :func:`choose_split`
leaves them out of a time split and counts them; when no closed deal is dated at all,
there is no future to test on, and it falls back to a seeded random split, stratified by
outcome, that says so (:data:`RANDOM_SPLIT`): its metrics are not out of time. A deal's
slice then follows from its id, outcome and the seed, so it too can be rebuilt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import pandas as pd

SLICES = ("train", "valid", "test")
SplitMethod = Literal["time", "random"]
#: How training output and the model card name a split made without dates.
RANDOM_SPLIT = "no dates: random split, not out of time"
_BOUNDS = ("train_end", "valid_end", "test_end")


@dataclass(frozen=True)
class SplitBounds:
    """How the training frame was split, enough to rebuild the slices from a fresh frame.

    ``time``: dated deals closed at or before ``train_end`` train; up to ``valid_end``
    validate; up to ``test_end`` (the last close in the frame) test; undated closed deals
    are in no slice (``undated_left_out`` of them). ``random``: each outcome's deals are
    ordered by a ``seed``-keyed hash of their id and cut at ``fractions``.
    """

    train_end: pd.Timestamp | None = None
    valid_end: pd.Timestamp | None = None
    test_end: pd.Timestamp | None = None
    method: SplitMethod = "time"
    seed: int = 0
    fractions: tuple[float, float, float] = (0.70, 0.15, 0.15)
    undated_left_out: int = 0

    @property
    def note(self) -> str:
        """The split in one sentence, for training output and the model card."""
        if self.method == "random":
            return RANDOM_SPLIT
        note = "split by close time"
        if self.undated_left_out:
            note += (
                f"; {self.undated_left_out:,} undated closed deals (no created_at or closed_at) "
                "left out of training"
            )
        return note

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method, "note": self.note}
        if self.method == "random":
            return out | {"seed": self.seed, "fractions": list(self.fractions)}
        bounds = {k: getattr(self, k).isoformat() for k in _BOUNDS}
        return out | bounds | {"undated_left_out": self.undated_left_out}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SplitBounds:
        """The split recorded by :meth:`to_dict` (a record without ``method`` is a time split)."""
        if d.get("method", "time") == "random":
            fractions = tuple(float(f) for f in d["fractions"])
            return cls(method="random", seed=int(d["seed"]), fractions=fractions)  # type: ignore[arg-type]
        return cls(
            train_end=pd.Timestamp(d["train_end"]),
            valid_end=pd.Timestamp(d["valid_end"]),
            test_end=pd.Timestamp(d["test_end"]),
            undated_left_out=int(d.get("undated_left_out", 0)),
        )


def dated(frame: pd.DataFrame) -> np.ndarray:
    """Rows of deals with both ``created_at`` and ``closed_at``: the ones a time split places
    (a frame without ``created_at`` is judged by ``closed_at`` alone)."""
    known = frame["closed_at"].notna()
    if "created_at" in frame:
        known &= frame["created_at"].notna()
    return known.to_numpy()


def choose_split(
    frame: pd.DataFrame, fractions: tuple[float, float, float] = (0.70, 0.15, 0.15), seed: int = 0
) -> SplitBounds:
    """A time split of the dated deals, the undated ones counted and left out; a random
    split (seeded, stratified by outcome) when no closed deal is dated."""
    has_dates = dated(frame)
    if not has_dates.any():
        _check_fractions(fractions)
        return SplitBounds(method="random", seed=seed, fractions=fractions)
    undated = frame["deal_id"][~has_dates].nunique()
    return replace(split_bounds(frame[has_dates], fractions), undated_left_out=int(undated))


def _check_fractions(fractions: tuple[float, float, float]) -> None:
    if not math.isclose(sum(fractions), 1.0) or min(fractions) <= 0:
        raise ValueError(f"fractions must be positive and sum to 1, got {fractions}")


def _cuts(n: int, fractions: tuple[float, float, float]) -> tuple[int, int]:
    """How many of ``n`` ordered deals end the train and the validation slice (each >= 1)."""
    first = max(1, min(n - 2, math.ceil(fractions[0] * n)))
    second = max(first + 1, min(n - 1, math.ceil((fractions[0] + fractions[1]) * n)))
    return first, second


def split_bounds(
    frame: pd.DataFrame, fractions: tuple[float, float, float] = (0.70, 0.15, 0.15)
) -> SplitBounds:
    """Cut points so that about ``fractions`` of the *deals* (not snapshots) fall in each slice.

    Ties at a cut point all go to the earlier slice, so the split depends only on
    ``closed_at`` values, never on row order.
    """
    _check_fractions(fractions)
    closes = np.sort(_closed_at(frame).groupby(frame["deal_id"].to_numpy()).first().to_numpy())
    n = len(closes)
    if n < 3:
        raise ValueError(f"a time split needs at least 3 closed deals, got {n}")
    first, second = _cuts(n, fractions)
    return SplitBounds(
        *(pd.Timestamp(closes[i]).tz_localize("UTC") for i in (first - 1, second - 1, n - 1))
    )


def slice_masks(frame: pd.DataFrame, bounds: SplitBounds) -> dict[str, np.ndarray]:
    """Boolean row masks of the three slices. In a time split, rows closed after
    ``test_end`` and undated rows are in none."""
    if bounds.method == "random":
        slice_of = _random_slices(frame, bounds.seed, bounds.fractions)
        return {name: slice_of == i for i, name in enumerate(SLICES)}
    closed = _closed_at(frame).to_numpy()
    train_end, valid_end, test_end = (
        _naive(t) for t in (bounds.train_end, bounds.valid_end, bounds.test_end)
    )
    has_dates = dated(frame)
    train = has_dates & (closed <= train_end)
    valid = has_dates & ~train & (closed <= valid_end)
    test = has_dates & (closed > valid_end) & (closed <= test_end)
    return {"train": train, "valid": valid, "test": test}


def _random_slices(
    frame: pd.DataFrame, seed: int, fractions: tuple[float, float, float]
) -> np.ndarray:
    """Slice number (0 train, 1 valid, 2 test) of each row, by deal, stratified by outcome.

    A deal's place in its outcome's order is a seed-keyed hash of its id: it depends on
    neither row order nor the machine, and a deal added later moves few others.
    """
    ids = frame["deal_id"].astype(str).to_numpy(dtype=object)
    deals = pd.DataFrame({"deal_id": ids, "won": frame["won"].to_numpy()}).drop_duplicates(
        "deal_id"
    )
    key = pd.util.hash_array(deals["deal_id"].to_numpy(dtype=object), hash_key=f"{seed:016d}"[-16:])
    slice_of = pd.Series(0, index=deals["deal_id"].to_numpy(), dtype=np.int8)
    for outcome in np.unique(deals["won"].to_numpy()):
        mine = np.flatnonzero(deals["won"].to_numpy() == outcome)
        order = mine[np.lexsort((deals["deal_id"].to_numpy()[mine], key[mine]))]
        n = len(order)
        first, second = _cuts(n, fractions) if n >= 3 else (n, n)
        slice_of.iloc[order[first:second]] = 1
        slice_of.iloc[order[second:]] = 2
    return slice_of.reindex(ids).to_numpy()


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
