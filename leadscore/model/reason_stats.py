"""Training-data facts behind serving's "data tooltips" (``ScoringModel.reason_stats``).

A reason such as "no economic buyer yet" is easier to trust with a fact next to it:
"deals without one were won 21% of the time (3,100 deals)". These facts come from the
*training slice* only, so they describe what the model learnt from.

Every deal counts once: a deal seen in k snapshots gives each snapshot weight 1/k.
For a feature fixed for the life of a deal (channel, amount) the numbers are then plain
deal counts and deal win rates; for one that changes (days in stage) a deal is shared
between the bins it passed through, so ``deals`` can be fractional.

Structure (JSON, a few KB)::

    {
      "version": 1,
      "deals": 9800, "snapshots": 54000,   # training slice
      "win_rate": 0.301,                   # share of training deals won
      "closed_from": "2023-...", "closed_to": "2025-...",
      "categorical": {
        "channel": {
          "values": {"referral": {"deals": 1180.0, "win_rate": 0.47}, ...},
          "missing": {"deals": 12.0, "win_rate": 0.25} | null
        }, ...
      },
      "numeric": {
        "amount": {
          "edges": [e0, e1, ..., eK],      # K bins
          "deals": [d0, ..., dK-1],
          "win_rate": [r0, ..., rK-1],
          "missing": {"deals": ..., "win_rate": ...} | null
        }, ...
      }
    }

Numeric bin i holds ``edges[i] <= v < edges[i+1]``; the last bin also holds
``v >= edges[-2]`` (so ``edges[-1]``, the training maximum, and anything above) and the
first bin anything below ``edges[0]``. Edges are observed values (quantiles), so a
count feature gets whole-number edges, and a feature with few distinct values gets one
bin per value. :func:`lookup` applies exactly this rule.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

VERSION = 1
#: Bins per numeric feature; quintiles keep the whole structure to a few KB.
NUMERIC_BINS = 5


def compute_reason_stats(
    frame: pd.DataFrame,
    features: Sequence[str],
    categories: Mapping[str, Sequence[str]],
    bins: int = NUMERIC_BINS,
) -> dict[str, Any]:
    """Reason stats of the training slice ``frame`` (deal_id, won, closed_at and features)."""
    deal = frame["deal_id"].to_numpy()
    weight = 1.0 / frame.groupby("deal_id")["deal_id"].transform("size").to_numpy(dtype=np.float64)
    won = frame["won"].to_numpy(dtype=np.float64)
    closed = pd.to_datetime(frame["closed_at"], utc=True)
    stats: dict[str, Any] = {
        "version": VERSION,
        "deals": int(len(np.unique(deal))),
        "snapshots": int(len(frame)),
        "win_rate": _rate(weight, won),
        "closed_from": closed.min().isoformat(),
        "closed_to": closed.max().isoformat(),
        "categorical": {},
        "numeric": {},
    }
    for name in features:
        col = frame[name]
        if name in categories:
            stats["categorical"][name] = _categorical(col, categories[name], weight, won)
        else:
            stats["numeric"][name] = _numeric(
                pd.to_numeric(col, errors="coerce").to_numpy(np.float64), weight, won, bins
            )
    return stats


def lookup(stats: Mapping[str, Any], feature: str, value: Any) -> dict[str, Any] | None:
    """The training fact for one feature value: ``{"deals", "win_rate"}`` plus, for a
    numeric feature, ``"low"``/``"high"`` (bin edges; ``high`` is None for the last bin).

    None when the feature has no stats or the category was never seen in training.
    Pure Python on the stats dict, cheap enough for the serving path.
    """
    if feature in stats.get("categorical", {}):
        entry = stats["categorical"][feature]
        if value is None:
            return entry.get("missing")
        return entry["values"].get(value)
    num = stats.get("numeric", {}).get(feature)
    if num is None:
        return None
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return num.get("missing")
    edges = num["edges"]
    i = int(np.searchsorted(edges[1:-1], float(value), side="right")) if len(edges) > 2 else 0
    high = edges[i + 1] if i + 1 < len(edges) - 1 else None
    return {"deals": num["deals"][i], "win_rate": num["win_rate"][i], "low": edges[i], "high": high}


def _categorical(
    col: pd.Series, values: Sequence[str], weight: np.ndarray, won: np.ndarray
) -> dict[str, Any]:
    present = col.notna().to_numpy()
    keys = col.astype(object).to_numpy()
    out = {}
    for v in values:
        mask = present & (keys == v)
        if mask.any():
            out[v] = _cell(weight[mask], won[mask])
    return {
        "values": out,
        "missing": _cell(weight[~present], won[~present]) if (~present).any() else None,
    }


def _numeric(x: np.ndarray, weight: np.ndarray, won: np.ndarray, bins: int) -> dict[str, Any]:
    present = ~np.isnan(x)
    missing = _cell(weight[~present], won[~present]) if (~present).any() else None
    if not present.any():
        return {"edges": [], "deals": [], "win_rate": [], "missing": missing}
    v, w, y = x[present], weight[present], won[present]
    lower = np.unique(np.quantile(v, np.arange(bins) / bins, method="inverted_cdf"))
    edges = np.append(lower, v.max())
    idx = np.searchsorted(lower[1:], v, side="right")
    cells = [_cell(w[idx == i], y[idx == i]) for i in range(len(lower))]
    return {
        "edges": [_round(e) for e in edges],
        "deals": [c["deals"] for c in cells],
        "win_rate": [c["win_rate"] for c in cells],
        "missing": missing,
    }


def _cell(weight: np.ndarray, won: np.ndarray) -> dict[str, float | None]:
    return {"deals": round(float(weight.sum())), "win_rate": _rate(weight, won)}


def _rate(weight: np.ndarray, won: np.ndarray) -> float | None:
    total = weight.sum()
    return round(float((weight * won).sum() / total), 4) if total > 0 else None


def _round(x: float) -> float:
    """Six significant digits: tooltips need no more, and it keeps the JSON small."""
    return float(f"{float(x):.6g}")
