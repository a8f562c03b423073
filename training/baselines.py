"""Baselines trained on the same split, so the booster has to earn its complexity.

* ``logistic_regression``: the same features through impute + one-hot + scale, a linear
  model. If the booster barely beats it, the simpler model may be the better product.
* ``channel_rate``: the historical win rate of the deal's channel, what a team without
  a model would guess. Smoothed towards the overall rate so a rare channel's guess is
  not a handful of deals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

MISSING = "(missing)"


#: ``ColumnTransformer``'s default: below this share of non-zero cells the pipeline's
#: matrix was sparse (numbers dense, one-hot sparse, stacked as CSR).
SPARSE_THRESHOLD = 0.3


@dataclass(frozen=True)
class LogisticBaseline:
    """The logistic regression baseline: its input transform's fitted constants and the model.

    The transform is what ``make_pipeline(ColumnTransformer([median SimpleImputer with
    missing indicators + StandardScaler on the numbers, OneHotEncoder(handle_unknown=
    "ignore") on the categories]), LogisticRegression(C=1.0, max_iter=2000))`` fitted, with
    the same constants computed by the same scikit-learn code a column at a time. Why not
    the pipeline: at a million deals its copies (the numbers taken out of the frame, the
    imputer's and the scaler's outputs, the scaler's squared deviations, the stacked matrix)
    held about 2.2 KB per training row beside the frame, training's peak; here the only
    matrix is the one :class:`~sklearn.linear_model.LogisticRegression` fits on, written in
    place a column at a time (numbers per row x 8 bytes, about 0.94 KB). The design
    matrix's values, its layout and so the fitted coefficients and probabilities are the
    pipeline's bit for bit (``tests/code/test_training_memory.py``).
    """

    #: The numbers observed in training (one not missing at least once), in order.
    numeric: tuple[str, ...]
    #: Per number: the training median, which stands in for a missing value.
    medians: np.ndarray
    #: The numbers missing at least once in training: each has a missing-indicator column.
    indicated: tuple[str, ...]
    #: Per number, then per indicator: the training mean and scale (StandardScaler's).
    means: np.ndarray
    scales: np.ndarray
    #: Per category column: its training values as strings, sorted (OneHotEncoder's).
    categories: tuple[tuple[str, tuple[str, ...]], ...]
    #: Whether the pipeline's matrix would have been sparse (CSR): then it is built so.
    sparse: bool
    model: LogisticRegression

    def design(self, frame: pd.DataFrame) -> np.ndarray | sp.csr_matrix:
        """The matrix the model reads for ``frame``'s rows: standardized numbers (a missing
        one as the training median), standardized missing indicators, then one-hot
        categories (an unseen value all zeros); C-ordered float64, or CSR when sparse."""
        k = len(self.numeric) + len(self.indicated)
        width = k + sum(len(values) for _, values in self.categories)
        out = np.empty((len(frame), k if self.sparse else width), dtype=np.float64)
        columns = [*self.numeric, *self.indicated]
        for j, (name, mean, scale) in enumerate(zip(columns, self.means, self.scales, strict=True)):
            x = _numbers(frame, name)
            if j < len(self.numeric):
                x = np.where(np.isnan(x), self.medians[j], x)
            else:
                x = np.isnan(x).astype(np.float64)
            np.subtract(x, mean, out=out[:, j])  # StandardScaler.transform: X -= mean_; X /= scale_
            out[:, j] /= scale
        if self.sparse:  # ColumnTransformer's stacking: the numbers' block, then the CSR one-hot
            return sp.hstack([out, _one_hot(frame, self.categories)]).tocsr()
        _one_hot(frame, self.categories, out[:, k:])
        return out

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """P(won) per row. The rows' matrix is made at once, not in chunks: the product with
        the coefficients rounds a chunk's last rows differently (BLAS kernels by row
        blocks), and the pipeline's probabilities are kept to the bit. It is smaller than
        the fit's (the test slice, the training matrix gone)."""
        return self.model.predict_proba(self.design(frame))[:, 1]


def fit_logistic_regression(
    train: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str]
) -> LogisticBaseline:
    """Median-impute (with missing indicators) and scale numbers, one-hot categories, fit L2 LR.

    Unseen categories at prediction time get an all-zero one-hot row. Numbers entirely
    missing in training (a partial export without the table that feeds them) carry no
    information and are left out, rather than handed to the imputer to drop with a warning.
    Each constant is fitted by the scikit-learn estimator the pipeline used, on one column
    (a copy of a column at a time, never of the frame): see :class:`LogisticBaseline`.
    """
    observed = [c for c in numeric if pd.to_numeric(train[c], errors="coerce").notna().any()]
    medians, means, scales, indicated = [], [], [], []
    for c in observed:
        x = _numbers(train, c)
        missing = np.isnan(x)
        median = float(SimpleImputer(strategy="median").fit(x[:, None]).statistics_[0])
        medians.append(median)
        mean, scale = _standardized(np.where(missing, median, x))
        means.append(mean)
        scales.append(scale)
        if missing.any():
            indicated.append(c)
    for c in indicated:
        mean, scale = _standardized(np.isnan(_numbers(train, c)).astype(np.float64))
        means.append(mean)
        scales.append(scale)
    categories = tuple((c, tuple(sorted(set(_category_strings(train[c]))))) for c in categorical)
    dense = len(observed) + len(indicated)
    width = dense + sum(len(values) for _, values in categories)
    # ColumnTransformer's choice: sparse when any output is (the one-hot, a value per row
    # and column in training) and the stacked matrix would be mostly zeros.
    sparse = bool(categories) and (dense + len(categories)) / width < SPARSE_THRESHOLD
    baseline = LogisticBaseline(
        numeric=tuple(observed),
        medians=np.asarray(medians, dtype=np.float64),
        indicated=tuple(indicated),
        means=np.asarray(means, dtype=np.float64),
        scales=np.asarray(scales, dtype=np.float64),
        categories=categories,
        sparse=sparse,
        model=LogisticRegression(C=1.0, max_iter=2000),
    )
    baseline.model.fit(baseline.design(train), train["won"].to_numpy())
    return baseline


def _standardized(x: np.ndarray) -> tuple[float, float]:
    """StandardScaler's mean and scale of one column (its own code: the same sums, in the
    same order, as on the pipeline's column-major matrix, and its near-constant rule)."""
    scaler = StandardScaler().fit(x[:, None])
    return float(scaler.mean_[0]), float(scaler.scale_[0])


def _numbers(frame: pd.DataFrame, column: str) -> np.ndarray:
    """A column as float64, missing as NaN: a canonical frame's own array, not a copy."""
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=np.float64, copy=False)


def _category_strings(column: pd.Series) -> np.ndarray:
    """Values as strings, a missing one as :data:`MISSING` (what the one-hot encodes)."""
    return column.astype(object).where(column.notna(), MISSING).astype(str).to_numpy()


def _one_hot(
    frame: pd.DataFrame,
    categories: Sequence[tuple[str, Sequence[str]]],
    out: np.ndarray | None = None,
) -> sp.csr_matrix | None:
    """OneHotEncoder(handle_unknown="ignore")'s columns for ``frame``: written as 0/1 into
    ``out`` (its columns, as wide as all categories' values), or, without ``out``, returned
    as CSR built as the encoder builds it (a row's known values, in column order)."""
    codes, start = [], 0
    for c, values in categories:
        at = pd.Index(values).get_indexer(_category_strings(frame[c]))
        known = at >= 0
        if out is not None:
            out[:, start : start + len(values)] = 0.0
            out[np.flatnonzero(known), start + at[known]] = 1.0
        else:
            codes.append(np.where(known, at + start, -1))
        start += len(values)
    if out is not None:
        return None
    cols = np.stack(codes, axis=1) if codes else np.empty((len(frame), 0), dtype=np.int64)
    known = cols >= 0
    indptr = np.concatenate([[0], np.cumsum(known.sum(axis=1))])
    return sp.csr_matrix((np.ones(int(indptr[-1])), cols[known], indptr), shape=(len(frame), start))


@dataclass(frozen=True)
class GroupRate:
    """Win rate per value of one column, smoothed: (wins + m * overall) / (n + m)."""

    column: str
    rates: dict[str, float]
    overall: float

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        keys = frame[self.column].astype(object).where(frame[self.column].notna(), MISSING)
        return keys.map(self.rates).fillna(self.overall).to_numpy(dtype=np.float64)


def fit_group_rate(
    train: pd.DataFrame,
    column: str = "channel",
    smoothing: float = 20.0,
    unit: str | None = "deal_id",
) -> GroupRate:
    """Rates from deals, not snapshots: each deal counts once, as in a win-rate report.

    A deal's value is its first recorded one over its snapshots (a snapshot taken before
    the field was filled in leaves it missing). ``unit=None`` counts every row on its own:
    the revival rate by time since the loss, where one loss's snapshots fall in different
    groups (:mod:`training.revival`).
    """
    if unit is None:
        deals = pd.DataFrame({"key": train[column], "won": train["won"].astype(float)})
    else:
        g = train.groupby(unit, sort=False)
        deals = pd.DataFrame({"key": g[column].first(), "won": g["won"].first().astype(float)})
    keys = deals["key"].astype(object).where(deals["key"].notna(), MISSING)
    overall = float(deals["won"].mean())
    by_key = deals["won"].groupby(keys.to_numpy())
    rates = ((by_key.sum() + smoothing * overall) / (by_key.size() + smoothing)).to_dict()
    return GroupRate(column, {str(k): float(v) for k, v in rates.items()}, overall)
