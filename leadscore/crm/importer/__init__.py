"""``leadscore import``: a CRM's own export, through a declarative mapping, into the contract.

:mod:`.mapping` reads the YAML mapping (or a preset), :mod:`.read` reads CSV/TSV/XLSX
sources with their encoding, delimiter and line numbers, :mod:`.values` parses words,
dates, booleans and numbers, :mod:`.run` builds and writes the contract export and
:mod:`.report` says what happened. :func:`check_export` runs ingest's contract checks on
the written export without storing anything, for ``--dry-run``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from leadscore.crm.importer.report import contract_rejects
from leadscore.crm.importer.run import ImportResult
from leadscore.crm.ingest import load_stored, read_export, validate_tables


def check_export(
    result: ImportResult, export_dir: Path, crm_dir: Path
) -> tuple[pd.DataFrame, dict[str, dict[str, int]]]:
    """What ingest would reject in ``export_dir``, in source terms, and its counts.

    References are checked against the stored tables too, as the real ingest does.
    """
    raw = read_export(export_dir)
    valid, rejects = validate_tables(raw, load_stored(crm_dir))
    checked = contract_rejects(result, rejects)
    counts = {}
    for name, (_, frame) in raw.items():
        rejected = len({r.line for r in rejects if r.table == name})
        kept = len(valid.get(name, ()))
        counts[name] = {
            "valid": kept,
            "rejected": rejected,
            "duplicates": len(frame) - kept - rejected,
        }
    return checked, counts
