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
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

MISSING = "(missing)"


def fit_logistic_regression(
    train: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str]
) -> Pipeline:
    """Median-impute (with missing indicators) and scale numbers, one-hot categories, fit L2 LR.

    Unseen categories at prediction time get an all-zero one-hot row. Numbers entirely
    missing in training (a partial export without the table that feeds them) carry no
    information and are left out, rather than handed to the imputer to drop with a warning.
    """
    observed = [c for c in numeric if pd.to_numeric(train[c], errors="coerce").notna().any()]
    prep = ColumnTransformer(
        [
            (
                "num",
                make_pipeline(
                    SimpleImputer(strategy="median", add_indicator=True), StandardScaler()
                ),
                observed,
            ),
            ("cat", OneHotEncoder(handle_unknown="ignore"), list(categorical)),
        ]
    )
    model = make_pipeline(prep, LogisticRegression(C=1.0, max_iter=2000))
    model.fit(_lr_input(train, numeric, categorical), train["won"].to_numpy())
    return model


def predict_logistic_regression(
    model: Pipeline, frame: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str]
) -> np.ndarray:
    return model.predict_proba(_lr_input(frame, numeric, categorical))[:, 1]


def _lr_input(
    frame: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str]
) -> pd.DataFrame:
    """Numbers as float, categories as strings with an explicit missing marker.

    Numbers already float64 (a canonical frame's) are the frame's own arrays, not copies:
    the pipeline copies them anyway, and this frame lives as long as the fit (at a
    million deals each copy of the training slice's numbers is gigabytes)."""
    columns = {
        c: pd.to_numeric(frame[c], errors="coerce").astype("float64", copy=False) for c in numeric
    }
    for c in categorical:
        columns[c] = frame[c].astype(object).where(frame[c].notna(), MISSING).astype(str)
    return pd.DataFrame(columns, index=frame.index, copy=False)


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
