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


def deal_hash(deal_ids: np.ndarray, seed: int) -> np.ndarray:
    """A ``seed``-keyed hash of each deal id: an order of deals that depends on neither row
    order nor the machine, in which a deal added later moves few others."""
    return pd.util.hash_array(np.asarray(deal_ids, dtype=object), hash_key=f"{seed:016d}"[-16:])


def _orders_by_outcome(
    frame: pd.DataFrame, seed: int
) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Each row's deal id, the distinct deal ids, and per outcome the positions (in those
    distinct ids) of its deals in :func:`deal_hash` order (ties by id): what the random
    split and the stratified folds cut."""
    ids = frame["deal_id"].astype(str).to_numpy(dtype=object)
    deals = pd.DataFrame({"deal_id": ids, "won": frame["won"].to_numpy()}).drop_duplicates(
        "deal_id"
    )
    deal_ids, won = deals["deal_id"].to_numpy(), deals["won"].to_numpy()
    key = deal_hash(deal_ids, seed)
    orders = []
    for outcome in np.unique(won):
        mine = np.flatnonzero(won == outcome)
        orders.append(mine[np.lexsort((deal_ids[mine], key[mine]))])
    return ids, deal_ids, orders


def _random_slices(
    frame: pd.DataFrame, seed: int, fractions: tuple[float, float, float]
) -> np.ndarray:
    """Slice number (0 train, 1 valid, 2 test) of each row, by deal, stratified by outcome.

    A deal's place in its outcome's order is a seed-keyed hash of its id: it depends on
    neither row order nor the machine, and a deal added later moves few others.
    """
    ids, deals, orders = _orders_by_outcome(frame, seed)
    slice_of = pd.Series(0, index=deals, dtype=np.int8)
    for order in orders:
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


# ---------------------------------------------------------------- cross-validation
#: Most test blocks time-ordered cross-validation uses; folds the stratified one uses.
MAX_TIME_FOLDS = 4
STRATIFIED_FOLDS = 5
#: The earliest fold must still train on at least this share of the dated deals.
MIN_TRAIN_SHARE = 0.3


@dataclass(frozen=True)
class Folds:
    """Cross-validation replacing a test slice too small to answer.

    ``masks`` has, per fold, boolean row masks ``train``, ``valid`` and ``test``; ``how``
    names the scheme and ``reason`` says why it replaced the single split, both for the
    training output. Time-ordered folds are expanding windows over close date whose last
    fold is the single split itself (so the registered model is one of them); stratified
    folds (no dates) partition the deals, and their figures are not out of time.
    """

    masks: tuple[dict[str, np.ndarray], ...]
    how: str
    reason: str
    out_of_time: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "folds": len(self.masks),
            "how": self.how,
            "reason": self.reason,
            "out_of_time": self.out_of_time,
        }


def _deal_order(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Each row's deal position in close-time order (ties by deal id), and the deals' outcomes
    in that order: the ordering time-ordered folds cut."""
    deals = pd.DataFrame(
        {
            "deal_id": frame["deal_id"].astype(str).to_numpy(),
            "closed": _closed_at(frame).to_numpy(),
            "won": frame["won"].to_numpy(),
        }
    ).drop_duplicates("deal_id")
    deals = deals.sort_values(["closed", "deal_id"], kind="stable").reset_index(drop=True)
    position = pd.Series(np.arange(len(deals)), index=deals["deal_id"].to_numpy())
    rows = position.reindex(frame["deal_id"].astype(str).to_numpy()).to_numpy()
    return rows, deals["won"].to_numpy()


def time_folds(
    frame: pd.DataFrame,
    single: dict[str, np.ndarray],
    fractions: tuple[float, float, float],
    min_test_class_deals: int,
) -> tuple[list[dict[str, np.ndarray]], tuple[int, int]]:
    """Expanding-window folds over close date, the last of them the ``single`` split.

    Earlier test blocks are consecutive runs of as many deals as the single split's test
    slice, counted back from its start; each fold trains on everything closed before its
    block, the last ``fractions[1] / (fractions[0] + fractions[1])`` of it validating, as
    the single split does. As few blocks are used as give ``min_test_class_deals`` of each
    outcome together, at most :data:`MAX_TIME_FOLDS`, and never so many that the first fold
    trains on less than :data:`MIN_TRAIN_SHARE` of the deals. Returns the folds, oldest
    first, and the won and lost deals their test blocks hold together.
    """
    has_dates = dated(frame)
    rows, won = _deal_order(frame[has_dates])
    position = np.full(len(frame), -1, dtype=np.int64)
    position[has_dates] = rows
    n = len(won)
    start = int(position[single["test"]].min())  # the single split's first test deal
    block = n - start
    valid_share = fractions[1] / (fractions[0] + fractions[1])
    most = max(1, min(MAX_TIME_FOLDS, 1 + int((start - MIN_TRAIN_SHARE * n) // block)))
    k = 1
    while k < most:
        tested = won[n - k * block :]
        if min(int(tested.sum()), len(tested) - int(tested.sum())) >= min_test_class_deals:
            break
        k += 1
    folds = []
    for j in range(k, 1, -1):
        first, end = n - j * block, n - (j - 1) * block
        cut = first - max(1, math.ceil(valid_share * first))
        folds.append(
            {
                "train": (position >= 0) & (position < cut),
                "valid": (position >= cut) & (position < first),
                "test": (position >= first) & (position < end),
            }
        )
    folds.append({name: single[name] for name in SLICES})
    tested = won[n - k * block :]
    return folds, (int(tested.sum()), len(tested) - int(tested.sum()))


def stratified_folds(
    frame: pd.DataFrame, seed: int, fractions: tuple[float, float, float], k: int = STRATIFIED_FOLDS
) -> list[dict[str, np.ndarray]]:
    """``k`` folds partitioning the deals, each outcome spread evenly (seeded by deal id hash,
    as the random split is); within a fold's training deals, the share ``fractions[1] /
    (fractions[0] + fractions[1])`` validates, stratified the same way."""
    ids, deals, orders = _orders_by_outcome(frame, seed)
    fold = np.empty(len(deals), dtype=np.int64)
    rank = np.empty(len(deals), dtype=np.int64)
    for order in orders:
        fold[order] = np.arange(len(order)) % k
        rank[order] = np.arange(len(order)) // k
    fold_of = pd.Series(fold, index=deals).reindex(ids).to_numpy()
    rank_of = pd.Series(rank, index=deals).reindex(ids).to_numpy()
    valid_every = max(2, round((fractions[0] + fractions[1]) / fractions[1]))
    out = []
    for j in range(k):
        rest = fold_of != j
        valid = rest & (rank_of % valid_every == j % valid_every)
        out.append({"train": rest & ~valid, "valid": valid, "test": fold_of == j})
    return out


def choose_folds(
    frame: pd.DataFrame,
    bounds: SplitBounds,
    single: dict[str, np.ndarray],
    test_counts: tuple[int, int],
    min_test_class_deals: int,
) -> Folds | None:
    """Cross-validation when the single split's test slice has fewer than
    ``min_test_class_deals`` won or lost deals (``test_counts``); ``None`` when it has enough.

    Dated deals get time-ordered folds (:func:`time_folds`); a random split (no dates)
    gets stratified folds (:func:`stratified_folds`), said plainly not to be out of time.
    """
    won, lost = test_counts
    if min(won, lost) >= min_test_class_deals:
        return None
    short = (
        f"the test slice holds {won} won and {lost} lost deals, fewer than "
        f"{min_test_class_deals} of each"
    )
    if bounds.method == "random":
        masks = stratified_folds(frame, bounds.seed, bounds.fractions)
        return Folds(
            tuple(masks),
            f"stratified {len(masks)}-fold cross-validation",
            f"{short}: stratified {len(masks)}-fold cross-validation replaces the single "
            "split; without dates its figures are NOT out of time (each fold tests on deals "
            "from the same period it trained on)",
            out_of_time=False,
        )
    masks, (t_won, t_lost) = time_folds(frame, single, bounds.fractions, min_test_class_deals)
    if len(masks) < 2:  # too few deals before the test slice for a second window
        return None
    reason = (
        f"{short}: time-ordered cross-validation over {len(masks)} expanding windows by "
        f"close date replaces the single split; the figures pool its {len(masks)} test "
        f"blocks ({t_won} won, {t_lost} lost deals)"
    )
    if min(t_won, t_lost) < min_test_class_deals:
        reason += (
            f", still fewer than {min_test_class_deals} of each: read the intervals, they are wide"
        )
    return Folds(
        tuple(masks),
        f"time-ordered cross-validation, {len(masks)} expanding windows",
        reason,
        out_of_time=True,
    )
