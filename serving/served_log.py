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
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from leadscore.model.scoring_model import Columns
from leadscore.model.served import served_file

log = logging.getLogger(__name__)

#: The time columns' Arrow type: UTC, whatever zone a request's moment was given in.
TIMES = {"as_of": pa.timestamp("us", tz="UTC"), "scored_at": pa.timestamp("us", tz="UTC")}


class ServedLog:
    """The buffer and its writer thread (module doc). ``record`` is cheap: it extends one
    list per column with the request's columns; files are written off the request path.

    Kept by column, not as a dict per row: the writer holds the GIL while it builds the
    frame, and every request of the worker waits meanwhile. From 600 row dicts (five
    seconds of 125 single deals a second) that took tens of milliseconds, a stall in the
    single-deal p99 every flush (issue 15); from columns, a list per column, far less.
    """

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
        #: The rows waiting, by column; a column a hot reload added or removed is
        #: missing (None) in the rows recorded without it.
        self._columns: dict[str, list[Any]] = {}
        self._count = 0
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
        n = len(deal_ids)
        if len(probabilities) != n:
            raise ValueError(f"{n} deals but {len(probabilities)} probabilities")
        block: dict[str, list[Any]] = {
            "deal_id": list(deal_ids),
            "endpoint": [endpoint] * n,
            "model_version": [model_version] * n,
            # In UTC here: Arrow stores an aware time's wall clock in the column's zone.
            "as_of": [as_of.astimezone(UTC)] * n,
            "scored_at": [scored_at.astimezone(UTC)] * n,
            "probability": [float(p) for p in probabilities],
        }
        for name in features or self.features:
            if name in columns:
                block[name] = list(columns[name])
        with self._lock:
            for name, column in self._columns.items():
                if name not in block:
                    column.extend([None] * n)
            for name, values in block.items():
                if name not in self._columns:  # new since the last flush: missing before
                    self._columns[name] = [None] * self._count
                self._columns[name].extend(values)
            self._count += n
            full = self._count >= self.flush_rows
        if full:
            self._wake.set()

    def flush(self) -> Path | None:
        """Write what waits as one file now; its path, or None when nothing waited."""
        with self._lock:
            columns, self._columns, self._count = self._columns, {}, 0
            self._sequence += 1
            sequence = self._sequence
        if not columns:
            return None
        # Straight to Arrow (NaN and None both null, as pandas' writer stores them): a
        # pandas frame first cost twice the time, all of it holding the GIL.
        table = pa.table(
            {
                name: pa.array(values, type=TIMES.get(name), from_pandas=True)
                for name, values in columns.items()
            }
        )
        self.folder.mkdir(parents=True, exist_ok=True)
        day = max(columns["scored_at"]).strftime("%Y%m%d")
        path = served_file(self.folder, day, os.getpid(), self._writer, int(time.time()), sequence)
        tmp = path.with_suffix(".parquet.tmp")
        pq.write_table(table, tmp)
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
