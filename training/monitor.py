"""``leadscore monitor``: are new leads still like the ones the champion learnt from?

The comparison itself is :func:`leadscore.model.drift.drift_report`; this module picks
the two sets of deals from the stored CRM and scores them the same way:

* **reference**: the deals the champion trained on (closed by the end of its training
  slice, ``info["split"]``; with a random split, every deal closed by its training);
* **current**: the deals created in the last ``days`` before ``as_of`` (newly ingested
  leads);

each at its creation (:func:`leadscore.priority.at_creation.scored_at_creation`): the
one moment every deal has, so an old deal's history cannot pass for drift.

With ``--served`` the current deals are instead what the service scored in the window
(the served-deal log, :mod:`leadscore.model.served`), compared with the training
snapshots of the reference deals (only theirs are computed: on a large export the whole
training frame is most of the run's cost), and the served probabilities are scored on
the deals that have closed since (:func:`realised_quality`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leadscore.config import CHAMPION, DriftThresholds, Settings
from leadscore.crm.ingest import load_stored
from leadscore.features.catalog import features_by_name
from leadscore.model.drift import DriftReport, drift_report, write_latest
from leadscore.model.registry import alias_version, load_scoring_model, mlflow_client
from leadscore.model.scoring_model import ScoringModel
from leadscore.model.served import read_served
from leadscore.priority.at_creation import scored_at_creation
from leadscore.timeutil import as_utc
from training.data import in_memory_frame
from training.evaluate import with_intervals
from training.revival import stored_as_of
from training.split import SplitBounds

log = logging.getLogger(__name__)

#: Days of newly created deals compared with the training window, by default.
MONITOR_DAYS = 30.0
#: Fewer served deals closed since, won or lost, than this: no realised metric yet.
MIN_REALISED_CLASS_DEALS = 20


@dataclass(frozen=True)
class Monitored:
    """A drift report and what it compared."""

    report: DriftReport
    model_version: str
    as_of: pd.Timestamp
    reference_window: str
    current_window: str
    #: :func:`realised_quality` of the served deals (``--served`` only).
    realised: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_version": self.model_version,
            "as_of": self.as_of.isoformat(),
            "reference": self.reference_window,
            "current": self.current_window,
            **self.report.to_dict(),
            "realised": self.realised,
        }


def monitor_windows(
    deals: pd.DataFrame, info: dict[str, Any], as_of: pd.Timestamp, days: float
) -> tuple[np.ndarray, np.ndarray, str, str]:
    """The reference and current deal ids, and each window in words (module doc)."""
    created = as_utc(deals["created_at"]) if "created_at" in deals else None
    closed = as_utc(deals["closed_at"]) if "closed_at" in deals else None
    ids = deals["deal_id"].astype(str).to_numpy()
    if created is None:
        raise ValueError("the stored deals have no created_at: nothing is new, or old")
    start = as_of - pd.Timedelta(days=days)
    current = ((created > start) & (created <= as_of)).to_numpy()
    bounds = SplitBounds.from_dict(info["split"]) if "split" in info else None
    end = bounds.train_end if bounds is not None and bounds.method == "time" else None
    if end is None or closed is None:
        reference = (created <= start).to_numpy() & ~current
        words = f"deals created before {start.date()} (no time split recorded)"
    else:
        reference = (closed <= end).fillna(False).to_numpy()
        words = f"deals the model trained on (closed by {end.date()})"
    return ids[reference], ids[current], words, f"deals created {start.date()} to {as_of.date()}"


def realised_quality(
    served: pd.DataFrame, deals: pd.DataFrame, min_class_deals: int = MIN_REALISED_CLASS_DEALS
) -> dict[str, Any]:
    """What the served probabilities were worth, on the deals that have closed since.

    Each deal counts once, at the first time it was served in the window (the number a
    rep acted on first); its outcome is the stored status, when it closed after that.
    Below ``min_class_deals`` won or lost the metrics are missing with the counts; above,
    each comes with its deal-bootstrap interval (:func:`training.evaluate.with_intervals`).
    """
    first = served.sort_values("scored_at", kind="stable").drop_duplicates("deal_id")
    status = deals.set_index(deals["deal_id"].astype(str))
    closed_at = as_utc(status["closed_at"]) if "closed_at" in status else None
    known = first["deal_id"].astype(str).isin(status.index[status["status"].isin(("won", "lost"))])
    rows = first[known.to_numpy()]
    if closed_at is not None:
        after = (
            closed_at.reindex(rows["deal_id"].astype(str)).to_numpy()
            >= pd.to_datetime(rows["scored_at"], utc=True).to_numpy()
        )
        rows = rows[after]
    y = status.loc[rows["deal_id"].astype(str), "status"].eq("won").to_numpy(dtype=np.float64)
    won, lost = int(y.sum()), int(len(y) - y.sum())
    out: dict[str, Any] = {"served_deals": int(len(first)), "closed_since": len(y)}
    out |= {"won": won, "lost": lost}
    if min(won, lost) < min_class_deals:
        out["missing"] = f"{won} won and {lost} lost so far: fewer than {min_class_deals} of either"
        return out
    probability = rows["probability"].to_numpy(dtype=np.float64)
    deal_ids = rows["deal_id"].astype(str).to_numpy()
    return out | {"metrics": with_intervals(y, {"served": probability}, deal_ids)["served"]}


def _champion(settings: Settings) -> tuple[str, ScoringModel]:
    client = mlflow_client(settings)
    version = alias_version(client, settings.model_name, CHAMPION)
    if version is None:
        raise LookupError(
            f"no '{CHAMPION}' version of {settings.model_name}: train and promote a model first"
        )
    return str(version), load_scoring_model(f"models:/{settings.model_name}/{version}", settings)


def monitor_stored(
    settings: Settings,
    days: float = MONITOR_DAYS,
    as_of: pd.Timestamp | None = None,
    thresholds: DriftThresholds | None = None,
    served: bool = False,
) -> Monitored:
    """Compare the champion's training deals with the newest ones, at creation; or, with
    ``served``, what the service scored in the window with the training snapshots, plus
    the served probabilities' realised quality on the deals closed since."""
    version, model = _champion(settings)
    tables = load_stored(settings.crm_dir)
    as_of = as_of or stored_as_of(settings)
    ref_ids, cur_ids, ref_words, cur_words = monitor_windows(
        tables["deals"], model.info, as_of, days
    )
    realised = None
    if served:
        start = as_of - pd.Timedelta(days=days)
        log_rows = read_served(settings.served_dir, since=start)
        log_rows = log_rows[log_rows["model_version"].astype(str) == version]
        current = log_rows.sort_values("scored_at").drop_duplicates("deal_id", keep="last")
        reference = in_memory_frame(tables, attributes=model.attributes, deal_ids=ref_ids)
        reference["probability"] = model.probability(model.encode(reference))
        ref_words = ref_words.replace("deals", "snapshots of the deals", 1)
        cur_words = f"deals the service scored with version {version} since {start.date()}"
        realised = realised_quality(log_rows, tables["deals"])
    else:
        reference = scored_at_creation(tables, model, ref_ids)
        current = scored_at_creation(tables, model, cur_ids)
    catalog = features_by_name(model.attributes)
    report = drift_report(
        reference,
        current,
        [catalog[name] for name in model.features if name in catalog],
        thresholds or DriftThresholds.from_env(),
        reference["probability"].to_numpy(),
        current["probability"].to_numpy(),
    )
    for alert in report.alerts:
        log.warning("drift: %s", alert)
    return Monitored(report, version, as_of, ref_words, cur_words, realised)


def write_monitor(monitored: Monitored, folder: Path) -> Path:
    """The comparison as the folder's latest (:func:`leadscore.model.drift.write_latest`),
    for the page's banner, the service's gauge and the next reader."""
    return write_latest(monitored.to_dict(), folder)
