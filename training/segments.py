"""The model per segment: is it as good for web leads, small companies or late stages?

One global model can be good on average and poor where a team lives: a manager who
works only enterprise accounts, or only partner-sourced deals, needs its figures there
(issue 16: "metrics per segment (channel, size band, industry, stage) in the model
card"). Each test deal counts once, as in the gate's per-deal block: its snapshot at
``config.per_deal_age_days`` (:func:`training.evaluate.per_deal_rows`), since the stage
is only a segment once deals have moved (at creation every deal is a lead).

* **Segments** (:data:`SEGMENTS`): the deal's channel and industry as the model reads them,
  the account's size band (:func:`leadscore.insights.facts.size_bands`, the insights' own
  bands, so the model card and the managers' funnel cut alike), and the stage at the
  scored snapshot.
* **Figures** per segment value: deals, won, win rate; with at least
  :data:`MIN_SEGMENT_CLASS_DEALS` won and as many lost deals, ROC AUC, log loss and ECE of
  the model with deal-bootstrap intervals and its difference with each baseline (paired
  intervals), as the per-deal block has them. A smaller segment gets its counts and the
  reason, not a number that would mostly be noise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from leadscore.features.catalog import STAGE_LEVELS
from leadscore.insights.facts import UNKNOWN, size_bands
from training.evaluate import per_deal_rows, with_intervals
from training.result import TrainConfig

#: The cuts the model card reports, in its order.
SEGMENTS: tuple[str, ...] = ("channel", "size_band", "industry", "stage")
#: Fewer won (or lost) test deals than this in a segment: counts only, no metric.
MIN_SEGMENT_CLASS_DEALS = 20
#: The metrics kept per predictor (the rest of :func:`training.evaluate.binary_metrics`
#: would repeat the per-deal block's detail for every segment).
KEPT = ("roc_auc", "log_loss", "ece")


def segment_labels(rows: pd.DataFrame) -> dict[str, np.ndarray]:
    """Each row's value of every segment in :data:`SEGMENTS` (missing: ``UNKNOWN``)."""

    def text(column: str) -> np.ndarray:
        if column not in rows:
            return np.full(len(rows), UNKNOWN, dtype=object)
        values = rows[column].astype("string").str.strip()
        return values.mask(values == "").fillna(UNKNOWN).to_numpy(dtype=object)

    def numbers(column: str) -> np.ndarray:
        if column not in rows:
            return np.full(len(rows), np.nan)
        return pd.to_numeric(rows[column], errors="coerce").to_numpy(dtype=np.float64)

    stage = numbers("stage_index")
    return {
        "channel": text("channel"),
        "size_band": size_bands(pd.Series(numbers("employee_count"))),
        "industry": text("industry"),
        "stage": np.asarray(
            [UNKNOWN if np.isnan(s) else STAGE_LEVELS.name(s) for s in stage], dtype=object
        ),
    }


def per_segment(
    test: pd.DataFrame,
    preds: Mapping[str, np.ndarray],
    config: TrainConfig,
    baselines: Sequence[str],
    model: str = "model",
    min_class_deals: int = MIN_SEGMENT_CLASS_DEALS,
) -> dict[str, Any]:
    """Per segment of :data:`SEGMENTS`, the model's per-deal figures and margins (module doc).

    ``preds`` are per row of ``test`` (the model's under ``model``, and each baseline's).
    """
    rows = per_deal_rows(test, config.per_deal_age_days)["at_age"]
    scored = test.iloc[rows]
    y = scored["won"].to_numpy(dtype=np.float64)
    deals = scored["deal_id"].to_numpy()
    names = (model, *baselines)
    out: dict[str, Any] = {
        "age_days": config.per_deal_age_days,
        "min_class_deals": min_class_deals,
    }
    for segment, labels in segment_labels(scored).items():
        entries = []
        for value in sorted(set(labels.tolist()), key=str):
            mask = labels == value
            won = int(y[mask].sum())
            entry: dict[str, Any] = {
                "value": value,
                "deals": int(mask.sum()),
                "won": won,
                "win_rate": float(y[mask].mean()),
            }
            lost = entry["deals"] - won
            if min(won, lost) < min_class_deals:
                entry["missing"] = (
                    f"{won} won and {lost} lost deals: fewer than {min_class_deals} of either"
                )
            else:
                metrics = with_intervals(
                    y[mask],
                    {name: np.asarray(preds[name])[rows][mask] for name in names},
                    deals[mask],
                    config.bootstrap_resamples,
                    config.seed,
                    compare=(model, tuple(baselines)),
                )
                entry[model] = {
                    **{k: metrics[model][k] for k in KEPT},
                    "ci95": {k: metrics[model]["ci95"][k] for k in KEPT},
                }
                entry["model_minus_baseline"] = metrics["model_minus_baseline"]
            entries.append(entry)
        out[segment] = entries
    return out
