"""Flat opportunity tables (one row per closed deal) through the same training code.

Public win/loss data sets and many CRM reports are a single table, not the event
history the product is built on. A small YAML mapping says how to read one: the label
column and its positive value, categorical and numeric columns, columns to ignore,
and which columns are *post-hoc* (only known once the deal closed, so they leak the
outcome into any model of open deals). Training then reuses
:func:`training.train.fit_scoring_model`: same LightGBM settings, category lists,
calibration and metrics as the CRM model.

Mapping keys (see ``training/mappings/ibm_sales_win_loss.yaml``)::

    name: short name
    source: path of the file, relative to the data root given at read time
    read: keyword arguments for pandas.read_csv (e.g. keep_default_na: false)
    id: id column (never a feature)
    label: {column: ..., positive: ...}
    categorical: [...]
    numeric: [...]
    exclude: [...]     # never used as features
    post_hoc: [...]    # known only after closing (subset of categorical + numeric)
    suspect: [...]     # possibly post-hoc, reported with and without
    has_dates: false   # false: no time split is possible, only a random one
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

from training.data import check_enough_data
from training.evaluate import binary_metrics
from training.result import TrainConfig
from training.split import SLICES
from training.train import fit_scoring_model

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TableMapping:
    name: str
    source: str
    label_column: str
    positive: str
    categorical: tuple[str, ...]
    numeric: tuple[str, ...]
    id_column: str | None = None
    exclude: tuple[str, ...] = ()
    post_hoc: tuple[str, ...] = ()
    suspect: tuple[str, ...] = ()
    has_dates: bool = False
    read: dict[str, Any] = field(default_factory=dict)

    def features(self, post_hoc: bool, without: Sequence[str] = ()) -> list[str]:
        """Feature columns in mapping order; ``post_hoc=False`` keeps only open-time columns."""
        skip = set(self.exclude) | set(without) | (set() if post_hoc else set(self.post_hoc))
        return [c for c in (*self.categorical, *self.numeric) if c not in skip]


def load_mapping(path: Path) -> TableMapping:
    """Read and check a mapping file: every listed column is either categorical or numeric."""
    raw = yaml.safe_load(Path(path).read_text())
    label = raw["label"]
    mapping = TableMapping(
        name=raw["name"],
        source=raw["source"],
        label_column=label["column"],
        positive=str(label["positive"]),
        categorical=tuple(raw.get("categorical", [])),
        numeric=tuple(raw.get("numeric", [])),
        id_column=raw.get("id"),
        exclude=tuple(raw.get("exclude", [])),
        post_hoc=tuple(raw.get("post_hoc", [])),
        suspect=tuple(raw.get("suspect", [])),
        has_dates=bool(raw.get("has_dates", False)),
        read=dict(raw.get("read", {})),
    )
    features = set(mapping.categorical) | set(mapping.numeric)
    if overlap := set(mapping.categorical) & set(mapping.numeric):
        raise ValueError(f"{path}: columns both categorical and numeric: {sorted(overlap)}")
    if stray := (set(mapping.post_hoc) | set(mapping.suspect) | set(mapping.exclude)) - features:
        raise ValueError(
            f"{path}: post_hoc/suspect/exclude columns that are not features: {sorted(stray)}"
        )
    return mapping


@dataclass(frozen=True)
class Table:
    """A flat table ready for training: ``deal_id`` (row key), ``won`` and feature columns."""

    frame: pd.DataFrame
    #: Exact duplicate rows dropped on reading.
    duplicates_dropped: int
    #: Ids still occurring more than once after dropping exact duplicates.
    repeated_ids: int


def read_table(mapping: TableMapping, data_root: Path) -> Table:
    """Read the mapped file, drop exact duplicate rows, type the columns.

    Categories are kept as the literal strings in the file (with ``keep_default_na:
    false`` a value such as "None" stays a category instead of becoming missing).
    """
    raw = pd.read_csv(Path(data_root) / mapping.source, **mapping.read)
    deduped = raw.drop_duplicates().reset_index(drop=True)
    frame = pd.DataFrame(
        {
            "deal_id": deduped.index.astype(str),
            "won": (deduped[mapping.label_column].astype(str) == mapping.positive).astype(np.int8),
        }
    )
    for c in mapping.categorical:
        frame[c] = deduped[c].astype(str).where(deduped[c].notna(), None)
    for c in mapping.numeric:
        frame[c] = pd.to_numeric(deduped[c], errors="coerce").astype("float64")
    repeated = int(deduped[mapping.id_column].duplicated().sum()) if mapping.id_column else 0
    log.info(
        "%s: %d rows, %d exact duplicates dropped, %d repeated ids, %.1f%% positive",
        mapping.name,
        len(frame),
        len(raw) - len(deduped),
        repeated,
        100 * frame["won"].mean(),
    )
    return Table(frame, len(raw) - len(deduped), repeated)


def stratified_split(
    won: np.ndarray, fractions: tuple[float, float, float] = (0.70, 0.15, 0.15), seed: int = 42
) -> dict[str, np.ndarray]:
    """Seeded random train/valid/test masks with the same win rate in each.

    Only for tables without dates; with dates, split by time (:mod:`training.split`).
    """
    idx = np.arange(len(won))
    train, rest = train_test_split(idx, train_size=fractions[0], stratify=won, random_state=seed)
    valid, test = train_test_split(
        rest,
        train_size=fractions[1] / (fractions[1] + fractions[2]),
        stratify=won[rest],
        random_state=seed,
    )
    masks = {name: np.zeros(len(won), dtype=bool) for name in SLICES}
    for name, rows in zip(SLICES, (train, valid, test), strict=True):
        masks[name][rows] = True
    return masks


@dataclass(frozen=True)
class TableResult:
    features: list[str]
    calibration: str
    trees: int
    test: dict[str, Any]


def fit_table(
    table: Table,
    mapping: TableMapping,
    features: Sequence[str],
    masks: dict[str, np.ndarray],
    config: TrainConfig | None = None,
) -> TableResult:
    """Train the product's model on ``features`` of a flat table and score the test mask."""
    config = config or TrainConfig(monotone={})
    check_enough_data(table.frame, config.min_class_deals, where="rows")
    safe = {c: _safe_name(c) for c in features}
    frame = table.frame.rename(columns=safe)
    parts = {name: frame[masks[name]] for name in SLICES}
    categorical = [safe[c] for c in features if c in mapping.categorical]
    with threadpool_limits(limits=config.num_threads):
        fitted = fit_scoring_model(
            parts["train"], parts["valid"], list(safe.values()), categorical, config
        )
    model = fitted.model
    p = model.probability(model.encode(parts["test"]))
    return TableResult(
        list(features),
        model.calibration.method,
        fitted.best_iteration,
        binary_metrics(parts["test"]["won"].to_numpy(), p),
    )


def _safe_name(column: str) -> str:
    """snake_case: LightGBM feature names may not hold spaces or JSON punctuation."""
    return re.sub(r"[^0-9a-zA-Z]+", "_", column).strip("_").lower()
