"""The served-deal log's layout, shared by its writer and its readers (issue 16).

The service (``serving.served_log.ServedLog``) writes one Parquet file per flush under
``Settings.served_dir``; ``leadscore monitor --served`` reads them back
(:func:`read_served`). One row per scored open deal: :data:`META` and the model's
features under their Feast names.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

#: Columns every row has besides the model's features.
META = ("deal_id", "endpoint", "model_version", "as_of", "scored_at", "probability")
#: File names: ``served-<day>-<pid>-<writer>-<unix seconds>-<sequence>.parquet``.
PREFIX, SUFFIX = "served-", ".parquet"


def served_file(folder: Path, day: str, pid: int, writer: str, seconds: int, sequence: int) -> Path:
    """Where one flush goes: unique per writer and flush, sortable by day. ``writer``
    tells apart two logs of one process (two service instances in one test process
    flushed their first batch in the same second to one name, and one tore the other's
    file)."""
    return Path(folder) / f"{PREFIX}{day}-{pid}-{writer}-{seconds}-{sequence}{SUFFIX}"


def read_served(folder: Path, since: pd.Timestamp | None = None) -> pd.DataFrame:
    """Every row logged under ``folder`` (scored at or after ``since``), oldest first."""
    files = sorted(Path(folder).glob(f"{PREFIX}*{SUFFIX}"))
    if not files:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in META})
    frame = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    if since is not None:
        frame = frame[pd.to_datetime(frame["scored_at"], utc=True) >= since]
    return frame.sort_values("scored_at", kind="stable").reset_index(drop=True)
