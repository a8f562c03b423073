"""The training frame as training sees it: checked, put in a canonical order, fingerprinted.

The frame normally comes from Feast (:func:`leadscore.features.store.training_frame`);
:func:`in_memory_frame` builds the same shape without Feast from CRM tables, for tests
and quick experiments. Columns: deal_id, account_id, owner_id, event_timestamp,
snapshot_index, created_at, closed_at, won, and every model feature.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from leadscore.config import MIN_CLASS_DEALS  # fewer won (or lost): a model learns noise
from leadscore.crm.attributes import Attribute
from leadscore.features.featurize import (
    TS,
    build_feature_sources,
    features_as_of,
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


def canonical(frame: pd.DataFrame, attributes: Sequence[Attribute] = ()) -> pd.DataFrame:
    """Rows ordered by (closed_at, deal_id, snapshot_index), model columns typed as the model
    expects: the same data in any row order or dtype trains the same model. The model
    columns are the built-in features, then those of the custom ``attributes``."""
    meta = frame[list(META_COLUMNS)].copy()
    for c in (TS, "created_at", "closed_at"):
        meta[c] = as_utc(meta[c])
    for c in ("deal_id", "account_id", "owner_id"):
        meta[c] = meta[c].astype(str)
    meta["snapshot_index"] = meta["snapshot_index"].astype(np.int32)
    meta["won"] = meta["won"].astype(np.int8)
    out = pd.concat([meta, model_frame(frame, attributes)], axis=1)
    return out.sort_values(["closed_at", "deal_id", "snapshot_index"], kind="stable").reset_index(
        drop=True
    )


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
