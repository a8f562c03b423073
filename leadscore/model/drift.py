"""Drift: has what the model is asked about moved away from what it learnt from? (issue 16)

A model is only as good as the resemblance between the deals it scores and the deals it
was trained on. This module compares a *current* set of feature rows (recently created
deals, or what the service scored) with the *reference* (the training window) feature
by feature, and the model's scores the same way:

* **Population stability index** (PSI) per feature and for the score: the reference's
  deciles (its distinct values for a discrete feature with few of them; its categories
  for a categorical one), a bin for missing values, and for a categorical feature a bin
  for values the reference never saw. ``PSI = sum((c - r) * ln(c / r))`` over the bins'
  shares, each share floored at :data:`SHARE_FLOOR` so an empty bin counts instead of
  dividing by zero. The usual reading: under 0.1 stable, 0.1 to 0.25 moving, above 0.25
  shifted (the defaults of :class:`DriftThresholds`).
* **Missing values**: the share of rows without the feature, reference and current.
* **New categories**: values of a categorical feature the reference never had, with
  their share of the current rows (a new lead source the model scores as unknown).

Track records (:data:`HISTORY_VIEWS`) are compared and reported but raise no alert: they
move with the export's age whatever the leads are like.

Each check compares with a threshold (:class:`DriftThresholds`, environment variables
``LEADSCORE_DRIFT_<FIELD>``) and a crossing is an *alert* with one plain sentence.

The statistics are a few lines of numpy rather than the Evidently library, measured on
2026-11-27 (docs/architecture.md, "Drift"): Evidently 0.7.23 adds about 600 MB and 70
packages (plotly 5 among them, where this project uses plotly 7; nltk, statsmodels, a
web server), does not import with pandas 3, and took 3.6 s against this module's 0.04 s
for the same 30 features of 10,000 and 2,000 rows (7 s more to import it).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leadscore.config import DriftThresholds
from leadscore.features.catalog import Feature

#: Smallest share a bin counts with (an empty bin would make PSI infinite).
SHARE_FLOOR = 1e-4
#: Bins of a numeric feature (the reference's quantiles).
NUMERIC_BINS = 10
#: A discrete feature with at most this many distinct reference values is binned by value.
MAX_DISTINCT_BINS = 20
MISSING, NEW = "(missing)", "(new value)"
#: Views of track records (an account's and an owner's earlier deals): they change with
#: the export's age by construction (the first deals of an export have no history, later
#: ones more and more), so a young export would raise them on every run. Their index is
#: reported, not alerted; if their change matters to the model, the score's index shows it.
HISTORY_VIEWS = frozenset({"account_history", "owner_history"})


def psi(reference: np.ndarray, current: np.ndarray) -> float:
    """PSI of two share vectors over the same bins (each floored at :data:`SHARE_FLOOR`)."""
    r = np.maximum(np.asarray(reference, dtype=np.float64), SHARE_FLOOR)
    c = np.maximum(np.asarray(current, dtype=np.float64), SHARE_FLOOR)
    return float(np.sum((c - r) * np.log(c / r)))


def _shares(labels: np.ndarray, bins: Sequence[Any]) -> np.ndarray:
    # By label, never by position: on an index of strings only (every value missing),
    # ``Series.get(0)`` read the absent bin 0 as the first row and gave it the missing share.
    counts = pd.Series(labels, dtype=object).value_counts()
    total = max(len(labels), 1)
    by_bin = counts.reindex(pd.Index(bins, dtype=object), fill_value=0)
    return by_bin.to_numpy(dtype=np.float64) / total


def _numeric_bins(reference: pd.Series, current: pd.Series, discrete: bool) -> dict[str, Any]:
    ref = pd.to_numeric(reference, errors="coerce").to_numpy(dtype=np.float64)
    cur = pd.to_numeric(current, errors="coerce").to_numpy(dtype=np.float64)
    known = ref[~np.isnan(ref)]
    distinct = np.unique(known)
    if discrete and len(distinct) <= MAX_DISTINCT_BINS:
        # By value; a value the reference never had falls in the bin above its neighbours.
        edges = (distinct[:-1] + distinct[1:]) / 2.0 if len(distinct) > 1 else np.zeros(0)
    else:
        qs = np.quantile(known, np.linspace(0, 1, NUMERIC_BINS + 1)[1:-1]) if len(known) else []
        edges = np.unique(np.asarray(qs, dtype=np.float64))

    def label(values: np.ndarray) -> np.ndarray:
        out = np.searchsorted(edges, values, side="right").astype(object)
        out[np.isnan(values)] = MISSING
        return out

    bins: list[Any] = [*range(len(edges) + 1), MISSING]
    return {"bins": bins, "reference": label(ref), "current": label(cur), "new": {}}


def _category_bins(reference: pd.Series, current: pd.Series) -> dict[str, Any]:
    def label(values: pd.Series) -> np.ndarray:
        text = values.astype("string").str.strip()
        return text.mask(text == "").fillna(MISSING).to_numpy(dtype=object)

    ref, cur = label(reference), label(current)
    seen = sorted(set(ref.tolist()) - {MISSING})
    unseen = pd.Series(cur[~np.isin(cur, [*seen, MISSING])], dtype=object).value_counts()
    cur_binned = np.where(np.isin(cur, [*seen, MISSING]), cur, NEW)
    new = {str(k): float(v / max(len(cur), 1)) for k, v in unseen.items()}
    return {"bins": [*seen, NEW, MISSING], "reference": ref, "current": cur_binned, "new": new}


def feature_drift(
    name: str, kind: str, discrete: bool, reference: pd.Series, current: pd.Series
) -> dict[str, Any]:
    """PSI, missing shares and new categories of one feature (module doc)."""
    binned = (
        _category_bins(reference, current)
        if kind == "categorical"
        else _numeric_bins(reference, current, discrete)
    )
    ref_shares = _shares(binned["reference"], binned["bins"])
    cur_shares = _shares(binned["current"], binned["bins"])
    return {
        "feature": name,
        "psi": psi(ref_shares, cur_shares),
        "missing_reference": float(np.mean(binned["reference"] == MISSING)),
        "missing_current": float(np.mean(binned["current"] == MISSING)),
        "new_categories": binned["new"],
    }


@dataclass(frozen=True)
class DriftReport:
    """Per feature and for the score: the figures, and the alerts they raise."""

    reference_rows: int
    current_rows: int
    features: list[dict[str, Any]]
    score: dict[str, Any] | None
    alerts: list[str]
    thresholds: DriftThresholds

    @property
    def alerted(self) -> bool:
        return bool(self.alerts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "alerted": self.alerted,
            "alerts": self.alerts,
            "thresholds": {
                f.name: getattr(self.thresholds, f.name) for f in fields(DriftThresholds)
            },
            "score": self.score,
            "features": self.features,
        }


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    catalog: Sequence[Feature],
    thresholds: DriftThresholds | None = None,
    reference_scores: np.ndarray | None = None,
    current_scores: np.ndarray | None = None,
) -> DriftReport:
    """Compare ``current`` feature rows with ``reference`` for every catalog feature both
    have, and the scores when given; alerts where :class:`DriftThresholds` are crossed.

    Below ``thresholds.min_rows`` current rows the figures are computed but no alert is
    raised, and the one alert-free line says why: a handful of deals moves every PSI.
    """
    t = thresholds or DriftThresholds()
    rows = [
        {
            **feature_drift(f.name, f.kind, f.discrete, reference[f.name], current[f.name]),
            "history": f.view in HISTORY_VIEWS,
        }
        for f in catalog
        if f.name in reference and f.name in current
    ]
    score = None
    if reference_scores is not None and current_scores is not None:
        score = feature_drift(
            "score",
            "numeric",
            False,
            pd.Series(np.asarray(reference_scores, dtype=np.float64)),
            pd.Series(np.asarray(current_scores, dtype=np.float64)),
        )
    alerts: list[str] = []
    if len(current) >= t.min_rows:
        for r in rows:
            name = r["feature"]
            if r["history"]:
                continue
            if r["psi"] > t.psi:
                alerts.append(f"{name}: PSI {r['psi']:.2f} (over {t.psi:g})")
            moved = r["missing_current"] - r["missing_reference"]
            if abs(moved) > t.missing_change:
                alerts.append(
                    f"{name}: missing on {r['missing_current']:.0%} of deals, against "
                    f"{r['missing_reference']:.0%} in training"
                )
            for value, share in r["new_categories"].items():
                if share > t.new_category_share:
                    alerts.append(
                        f"{name}: new value {value!r} on {share:.0%} of deals, never seen in "
                        "training (scored as unknown)"
                    )
        if score is not None and score["psi"] > t.score_psi:
            alerts.append(f"score: PSI {score['psi']:.2f} (over {t.score_psi:g})")
    rows.sort(key=lambda r: -r["psi"] if math.isfinite(r["psi"]) else 0.0)
    return DriftReport(len(reference), len(current), rows, score, alerts, t)


#: The last comparison's file in the monitor folder (``Settings.monitor_dir``).
LATEST = "latest.json"


def write_latest(report: dict[str, Any], folder: Path) -> Path:
    """Keep ``report`` (a JSON-ready dict) as the folder's :data:`LATEST`, replaced whole."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LATEST
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str))
    tmp.replace(path)
    return path


def read_latest(folder: Path) -> dict[str, Any] | None:
    """The last comparison written to ``folder``, or None when there is none (or it cannot
    be read: a page or a gauge should say nothing rather than fail)."""
    try:
        report = json.loads((Path(folder) / LATEST).read_text())
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) else None
