"""What the service scored, kept for drift and for checking it once outcomes arrive (issue 16).

Each open deal the service scores becomes one row: ``deal_id``, ``endpoint``,
``model_version``, ``as_of``, ``scored_at``, ``probability`` and the model's features as
the model saw them, under their Feast names. Nothing else of the request is kept: the
features hold no contact name, e-mail or phone, and the deal's sent fields are not
copied. Rows gather in memory; a background thread writes them every ``flush_seconds``
(or as soon as ``flush_rows`` wait) as one Parquet file under the folder, named by day,
process and sequence, written to a temporary name and renamed, so workers never share a
file and a reader never sees half of one. A worker killed outright loses at most its
last ``flush_seconds`` of rows; a clean stop writes them.

Why not Feast's feature logging: Feast logs what its own feature server serves, and this
service computes features itself (from the request for ``/score``, from the online store
for ``/score_ids``). The rows keep Feast's feature names, so reading them back against
the training frame is the same join (:func:`leadscore.model.served.read_served`,
``leadscore monitor --served``).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from leadscore.model.scoring_model import Columns
from leadscore.model.served import served_file

log = logging.getLogger(__name__)


class ServedLog:
    """The buffer and its writer thread (module doc). ``record`` is cheap: it copies the
    request's columns into lists; files are written off the request path."""

    def __init__(
        self,
        folder: Path,
        features: Sequence[str],
        flush_seconds: float = 5.0,
        flush_rows: int = 5000,
    ) -> None:
        self.folder = Path(folder)
        self.features = tuple(features)
        self.flush_seconds = flush_seconds
        self.flush_rows = flush_rows
        self._rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._sequence = 0
        self._writer = uuid.uuid4().hex[:8]
        self._thread = threading.Thread(target=self._run, name="served-log", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def record(
        self,
        endpoint: str,
        deal_ids: Sequence[str],
        columns: Columns,
        probabilities: Sequence[float],
        model_version: str,
        as_of: datetime,
        scored_at: datetime,
        features: Sequence[str] | None = None,
    ) -> None:
        """One row per scored deal; the model's features only (module doc): ``features``,
        the scoring model's, which a hot reload may change (default: those given at start)."""
        kept = {name: columns[name] for name in features or self.features if name in columns}
        rows = [
            {
                "deal_id": deal_id,
                "endpoint": endpoint,
                "model_version": model_version,
                "as_of": as_of,
                "scored_at": scored_at,
                "probability": float(p),
                **{name: values[i] for name, values in kept.items()},
            }
            for i, (deal_id, p) in enumerate(zip(deal_ids, probabilities, strict=True))
        ]
        with self._lock:
            self._rows.extend(rows)
            full = len(self._rows) >= self.flush_rows
        if full:
            self._wake.set()

    def flush(self) -> Path | None:
        """Write what waits as one file now; its path, or None when nothing waited."""
        with self._lock:
            rows, self._rows = self._rows, []
            self._sequence += 1
            sequence = self._sequence
        if not rows:
            return None
        frame = pd.DataFrame(rows)
        for column in ("as_of", "scored_at"):
            frame[column] = pd.to_datetime(frame[column], utc=True)
        self.folder.mkdir(parents=True, exist_ok=True)
        day = frame["scored_at"].max().strftime("%Y%m%d")
        path = served_file(self.folder, day, os.getpid(), self._writer, int(time.time()), sequence)
        tmp = path.with_suffix(".parquet.tmp")
        frame.to_parquet(tmp, index=False)
        tmp.replace(path)
        return path

    def close(self) -> None:
        """Stop the writer and write what waits (at exit, or when the service stops)."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=10)
        self._flush_logged()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            self._flush_logged()

    def _flush_logged(self) -> None:
        try:
            self.flush()
        except Exception:  # a full disk must not take the scoring down with it
            log.exception("could not write the served-deal log to %s", self.folder)
