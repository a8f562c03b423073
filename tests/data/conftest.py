"""A small generated CRM, exported, ingested and stored, and its training frame.

Data expectations run on what the product keeps (the stored Parquet tables after
``ingest_export``) and on what it learns from (the point-in-time training frame), not
on the generator's in-memory tables. A few seconds in all.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from leadscore.crm.ingest import ingest_export, load_stored
from leadscore.crm.synth import generate_crm
from training.data import in_memory_frame

AS_OF = pd.Timestamp("2025-06-01", tz="UTC")


@pytest.fixture(scope="package")
def stored(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    """The stored tables of a 600-deal synthetic CRM with lost deals coming back (re-opened
    deals test the frame's open-time rule), exported as CSV and ingested."""
    root = tmp_path_factory.mktemp("data")
    export = root / "export"
    export.mkdir()
    for name, table in generate_crm(600, seed=5, as_of=AS_OF, revival=True).tables.items():
        table.to_csv(export / f"{name}.csv", index=False)
    result = ingest_export(export, root / "crm", root / "rejects", now=AS_OF)
    assert not result.rejects, result.rejects[:5]
    return load_stored(Path(root / "crm"))


@pytest.fixture(scope="package")
def training_frame(stored: dict[str, pd.DataFrame]) -> pd.DataFrame:
    return in_memory_frame(stored)
