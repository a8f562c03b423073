"""The training frame as training sees it: checked, put in a canonical order, fingerprinted.

The frame normally comes from Feast (:func:`leadscore.features.store.training_frame`);
:func:`in_memory_frame` builds the same shape without Feast from CRM tables, for tests
and quick experiments. Columns: deal_id, account_id, owner_id, event_timestamp,
snapshot_index, created_at, closed_at, won, and every model feature.
"""

from __future__ import annotations

import functools
import hashlib
import weakref
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leadscore.config import MIN_CLASS_DEALS  # fewer won (or lost): a model learns noise
from leadscore.crm.attributes import Attribute
from leadscore.features.catalog import model_catalog
from leadscore.features.featurize import (
    TS,
    build_feature_sources,
    features_as_of,
    model_column,
    model_frame,
    snapshot_entities,
)
from leadscore.timeutil import as_utc
from training.split import dated

META_COLUMNS = (
    "deal_id",
    "account_id",
    "owner_id",
    TS,
    "snapshot_index",
    "created_at",
    "closed_at",
    "won",
)


class InsufficientDataError(ValueError):
    """Too few closed deals of a class; the message says how many there are and what is needed."""

    def __init__(
        self, won: int, lost: int, needed: int, where: str = "closed deals to train on"
    ) -> None:
        self.won, self.lost, self.needed = won, lost, needed
        super().__init__(
            f"not enough {where}: {won} won and {lost} lost, at least {needed} of each are needed. "
            "Ingest a longer CRM history (more closed deals) and try again."
        )


def class_counts(frame: pd.DataFrame) -> tuple[int, int]:
    """Won and lost *deals* in the frame (a deal has one outcome, however many snapshots)."""
    deals = frame.drop_duplicates("deal_id")
    won = int(deals["won"].astype(int).sum())
    return won, len(deals) - won


def check_enough_data(
    frame: pd.DataFrame, minimum: int = MIN_CLASS_DEALS, where: str = "closed deals to train on"
) -> None:
    """Raise :class:`InsufficientDataError` unless both outcomes have ``minimum`` deals."""
    won, lost = class_counts(frame) if len(frame) else (0, 0)
    if won < minimum or lost < minimum:
        raise InsufficientDataError(won, lost, minimum, where)


def slice_warnings(
    parts: Mapping[str, pd.DataFrame],
    min_class_deals: int,
    max_rate_shift: float,
    max_odds_ratio: float,
    reference: str = "train",
) -> list[str]:
    """Plain sentences about slices too small or too unlike ``reference`` to trust.

    A slice with fewer than ``min_class_deals`` won or lost deals gives wide intervals; a
    slice whose deal win rate is more than ``max_rate_shift`` away from the reference
    slice's, or whose win odds differ by a factor above ``max_odds_ratio``, is evaluated
    (or calibrated) on another population than the model learnt from. Nothing is raised:
    the caller logs the sentences and keeps them with the evaluation.
    """
    out = []
    counts = {name: class_counts(p) if len(p) else (0, 0) for name, p in parts.items()}
    for name, (won, lost) in counts.items():
        if won < min_class_deals or lost < min_class_deals:
            out.append(
                f"the {name} slice has {won} won and {lost} lost deals, fewer than "
                f"{min_class_deals} of one outcome: its metrics are noisy, read the intervals"
            )
    ref_won, ref_lost = counts.get(reference, (0, 0))
    if not ref_won or not ref_lost:
        return out
    ref_rate = ref_won / (ref_won + ref_lost)
    for name, (won, lost) in counts.items():
        if name == reference or not won + lost:
            continue
        rate = won / (won + lost)
        odds = (won + 0.5) / (lost + 0.5) / ((ref_won + 0.5) / (ref_lost + 0.5))
        if abs(rate - ref_rate) > max_rate_shift or max(odds, 1 / odds) > max_odds_ratio:
            out.append(
                f"the {name} slice won {rate:.1%} of its deals against {ref_rate:.1%} in the "
                f"{reference} slice: outcomes shifted over time, so its metrics (and a "
                "calibration fitted on it) may not carry over"
            )
    return out


#: The keys :func:`canonical` orders rows by.
CANONICAL_ORDER = ("closed_at", "deal_id", "snapshot_index")

#: Canonical frames :func:`canonical` made and that are still alive, by ``id``: handed one
#: back, it returns it as it is instead of a copy. A weak map, so it keeps no frame alive.
_CANONICAL: weakref.WeakValueDictionary[int, pd.DataFrame] = weakref.WeakValueDictionary()


def canonical(frame: pd.DataFrame, attributes: Sequence[Attribute] = ()) -> pd.DataFrame:
    """Rows ordered by (closed_at, deal_id, snapshot_index), model columns typed as the model
    expects: the same data in any row order or dtype trains the same model. The model
    columns are the built-in features, then those of the custom ``attributes``.

    :func:`canonical_from_parts` with the frame as its one part: besides ``frame`` and the
    result it holds one column, not the several whole copies a typed copy, a concatenation
    and a sort would (at a million deals each copy is gigabytes).

    A frame this function returned is handed back as it is (no copy), so a caller can make
    the canonical frame, let go of the raw one, and pass it on to code that calls this
    again (:func:`training.train.train_from_store`). Such a frame must not be changed in
    place: only its columns are checked again, not its dtypes or values.
    """
    known = _CANONICAL.get(id(frame))
    if (
        known is not None
        and known is frame
        and list(frame.columns) == _canonical_columns(attributes)
    ):
        return frame
    return canonical_from_parts(frame, [(np.arange(len(frame)), frame)], attributes)


def canonical_from_parts(
    rows: pd.DataFrame,
    parts: Iterable[tuple[np.ndarray, pd.DataFrame]],
    attributes: Sequence[Attribute] = (),
) -> pd.DataFrame:
    """:func:`canonical` of the frame whose rows ``parts`` hold, built as the parts come.

    ``rows`` has the sort keys (closed_at, deal_id, snapshot_index) of every row of the
    frame (the snapshots a join was asked for: :attr:`leadscore.features.store.
    TrainingParts.entities`); each part is some of the frame's rows with their positions in
    ``rows``. The order comes from the keys before any part, so each part's columns are
    typed and written straight into their rows of the result, and the part let go: the
    chunks of a join and their concatenation are never held at once (``leadscore train``
    held both for a moment, twice the raw frame). The result is ``canonical()`` of the
    concatenated parts value for value and dtype for dtype: the parts' keys are checked
    against ``rows``'.
    """
    typed = {c: _meta_column(rows[c], c) for c in CANONICAL_ORDER}
    order = (
        pd.DataFrame({k: typed[k].to_numpy() for k in CANONICAL_ORDER}, copy=False)
        .sort_values(list(CANONICAL_ORDER), kind="stable")
        .index.to_numpy()
    )
    catalog = {f.name: f for f in model_catalog(attributes)}
    columns = [
        Column(c, functools.partial(_meta_of_part, name=c))
        if c in META_COLUMNS
        else Column(
            c,
            functools.partial(model_column, feature=catalog[c]),
            number=catalog[c].kind != "categorical",
        )
        for c in _canonical_columns(attributes)
    ]
    out = assemble(parts, order, columns, keys=typed)
    _CANONICAL[id(out)] = out
    return out


def _meta_of_part(part: pd.DataFrame, name: str) -> pd.Series:
    return _meta_column(part[name], name)


@dataclass(frozen=True)
class Column:
    """One column of a frame :func:`assemble` builds: its name, how a part's rows give it
    (typed as the frame has it), and whether it is a number (then written into the
    frame's one float64 block)."""

    name: str
    of_part: Callable[[pd.DataFrame], pd.Series]
    number: bool = False


def assemble(
    parts: Iterable[tuple[np.ndarray, pd.DataFrame]],
    order: np.ndarray,
    columns: Sequence[Column],
    keys: Mapping[str, pd.Series] | None = None,
) -> pd.DataFrame:
    """The frame of ``columns`` whose row ``k`` is row ``order[k]`` of the rows ``parts``
    hold, each part with the positions of its rows (``order`` is a permutation of them).

    Each part's columns are typed and written into their rows of the result as the part
    comes, then the part is let go: memory holds the result, one part and one typed column.
    The numbers go into one float64 block, each in its row of it: pandas then never
    consolidates them, which would copy the whole block (the first row selection of a
    frame of one block per column does). ``keys``, the typed columns ``order`` was sorted
    from, by position: the result's must be them in that order (else ``ValueError``), so
    the parts cannot hold other rows than the ones the order was made for. Every row must
    come in exactly one part.
    """
    n = len(order)
    to = np.empty(n, dtype=np.int64)
    to[order] = np.arange(n)
    numbers = {c.name: i for i, c in enumerate(c for c in columns if c.number)}
    block: np.ndarray | None = None  # made once the first part is there, not during its join
    others: dict[str, Any] = {}
    filled = np.zeros(n, dtype=bool)
    for at, part in parts:
        if block is None:
            block = np.empty((len(numbers), n), dtype=np.float64)
        dest = to[at]
        if filled[dest].any():
            raise ValueError("a row came in two parts")
        filled[dest] = True
        for c in columns:
            col = c.of_part(part)
            if c.number:
                block[numbers[c.name], dest] = col.to_numpy()
                continue
            values = _values(col)
            if c.name not in others:
                others[c.name] = (
                    values.take(np.full(n, -1), allow_fill=True)
                    if isinstance(col.dtype, pd.api.extensions.ExtensionDtype)
                    else np.empty(n, dtype=values.dtype)
                )
            if others[c.name].dtype != values.dtype:
                raise ValueError(
                    f"{c.name}: {values.dtype} in a part, {others[c.name].dtype} before"
                )
            others[c.name][dest] = values
            del col, values
        del part
    if not filled.all():
        raise ValueError(f"{int((~filled).sum())} of {n} rows came in no part")
    if block is None:  # no rows
        block = np.empty((len(numbers), n), dtype=np.float64)
    out = pd.DataFrame(block.T, columns=list(numbers), copy=False)
    del block
    for i, c in enumerate(columns):
        if not c.number:
            out.insert(i, c.name, others.pop(c.name))
    for name, key in (keys or {}).items():
        if not pd.Series(_in_order(key, order), copy=False).equals(out[name]):
            raise ValueError(f"the parts' {name} are not the keys the rows were ordered by")
    return out


def _canonical_columns(attributes: Sequence[Attribute]) -> list[str]:
    """A canonical frame's columns, in order: the meta columns, then the model's."""
    return [*META_COLUMNS, *(f.name for f in model_catalog(attributes))]


def _meta_column(col: pd.Series, name: str) -> pd.Series:
    """A meta column typed as a canonical frame has it: times in UTC, keys as strings,
    the snapshot index as int32, the label as int8."""
    if name in (TS, "created_at", "closed_at"):
        return as_utc(col)
    if name in ("deal_id", "account_id", "owner_id"):
        return col.astype(str)
    if name == "snapshot_index":
        return col.astype(np.int32)
    if name == "won":
        return col.astype(np.int8)
    raise KeyError(name)


def _values(col: pd.Series) -> Any:
    """``col``'s values: numpy's array, or pandas' own where the dtype is pandas'."""
    return col.array if isinstance(col.dtype, pd.api.extensions.ExtensionDtype) else col.to_numpy()


def _in_order(col: pd.Series, order: np.ndarray) -> Any:
    """``col``'s values (numpy or pandas' own array, as its dtype keeps them) at ``order``."""
    return _values(col).take(order)


def slice_rows(frame: pd.DataFrame, mask: np.ndarray) -> pd.DataFrame:
    """``frame[mask]``, without a copy when the mask is one run of rows: a slice of a time
    split is one (a canonical frame is ordered by close), so the slices share the frame's
    memory instead of copying it once more. The rows, index and dtypes are those of
    ``frame[mask]``; like a canonical frame, a slice must not be changed in place.
    """
    at = np.flatnonzero(mask)
    if len(at) and at[-1] - at[0] + 1 == len(at):
        return frame.iloc[at[0] : at[-1] + 1]
    return frame[mask]


def fingerprint(frame: pd.DataFrame) -> str:
    """SHA-256 of a canonical frame's content: same data, same fingerprint, on any machine."""
    digest = hashlib.sha256()
    digest.update(",".join(frame.columns).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


#: The window's word for a time no deal of the frame records (an export without dates).
UNDATED_WINDOW = "undated"


def data_window(frame: pd.DataFrame) -> dict[str, str]:
    """First snapshot and first/last close of the frame's dated deals, ISO 8601 in UTC.

    Undated deals (:func:`training.split.dated`) have no place in time, so they do not
    stretch the window back to :data:`leadscore.crm.contract.UNDATED`; a frame with no
    dated deal has the window :data:`UNDATED_WINDOW`.
    """
    known = frame[dated(frame)]

    def iso(value: pd.Timestamp) -> str:
        return UNDATED_WINDOW if pd.isna(value) else value.isoformat()

    return {
        "first_snapshot": iso(known[TS].min()),
        "first_close": iso(known["closed_at"].min()),
        "last_close": iso(known["closed_at"].max()),
    }


def in_memory_frame(
    tables: Mapping[str, pd.DataFrame],
    every_days: int = 14,
    attributes: Sequence[Attribute] = (),
    deal_ids: Collection[str] | None = None,
) -> pd.DataFrame:
    """The Feast training frame's shape, computed in memory (``features_as_of``), no store;
    with the features of the custom ``attributes`` known before close. ``deal_ids``: only
    these deals' snapshots. The feature sources are still built from every table, so each
    snapshot's account and owner track records count every other deal, as in the full frame.
    """
    entities = snapshot_entities(tables["deals"], every_days, tables.get("stage_history"))
    if deal_ids is not None:
        keep = entities["deal_id"].astype(str).isin(set(deal_ids)).to_numpy()
        entities = entities[keep].reset_index(drop=True)
    sources = build_feature_sources(dict(tables), attributes=attributes)
    features = features_as_of(sources, entities)
    return pd.concat([entities.reset_index(drop=True), model_frame(features, attributes)], axis=1)


def load_truth(path: Path) -> pd.DataFrame:
    """The synthetic generator's ``truth.parquet``: deal_id, p_latent, p_at_creation."""
    truth = pd.read_parquet(path)
    missing = {"deal_id", "p_at_creation"} - set(truth.columns)
    if missing:
        raise ValueError(f"{path} is not a generator truth file: missing {sorted(missing)}")
    truth["deal_id"] = truth["deal_id"].astype(str)
    return truth
