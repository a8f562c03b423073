"""``leadscore import``: a CRM's own export, through a declarative mapping, into the contract.

:mod:`.mapping` reads the YAML mapping (or a preset), :mod:`.read` reads CSV/TSV/XLSX
sources with their encoding, delimiter and line numbers, :mod:`.values` parses words,
dates, booleans and numbers, :mod:`.run` builds and writes the contract export and
:mod:`.report` says what happened. :func:`check_export` runs ingest's contract checks on
the written export without storing anything, for ``--dry-run``; :func:`audit_import` runs
the leakage audit on the rows of the import the contract accepts, for every import.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from leadscore.crm.contract import ACCOUNTS, DEALS
from leadscore.crm.importer.report import contract_rejects
from leadscore.crm.importer.run import ImportResult
from leadscore.crm.ingest import load_stored, read_export, validate_tables
from leadscore.crm.leakage import LeakageAudit, audit_tables

#: The tables the leakage audit reads (accounts are joined to deals).
AUDITED_TABLES = (DEALS.name, ACCOUNTS.name)


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


def accepted_rows(
    result: ImportResult, export_dir: Path, checked: pd.DataFrame
) -> dict[str, pd.DataFrame]:
    """The deals and accounts of the export that ingest stores, or would store on a dry run.

    ``checked`` are the contract's rejects in source terms (:func:`contract_rejects`),
    whether from the real ingest or from :func:`check_export`, so both runs audit the
    same rows: every exported row but those rejected, an identical repeat kept once (as
    ingest does). The export's own typed Parquet is read, not the merged store: the
    audit judges this import, not what earlier imports left.
    """
    rows = {}
    for name in AUDITED_TABLES:
        t = result.tables.get(name)
        path = Path(export_dir) / f"{name}.parquet"
        if t is None or not path.is_file():
            continue
        frame = pd.read_parquet(path)
        mine = checked[checked["table"] == name]
        exported = pd.MultiIndex.from_arrays(
            [t.row_files.astype(str), t.row_lines.astype(np.int64)]
        )
        rejected = pd.MultiIndex.from_arrays(
            [mine["file"].astype(str).to_numpy(), mine["line"].astype(np.int64).to_numpy()]
        )
        keep = ~exported.isin(rejected)
        rows[name] = frame[keep].drop_duplicates(keep="first").reset_index(drop=True)
    return rows


def audit_import(
    result: ImportResult, export_dir: Path, checked: pd.DataFrame
) -> tuple[LeakageAudit, dict[str, int]]:
    """The leakage audit of :func:`accepted_rows` with the mapping's attributes, and the
    rows audited per table.

    Training audits the stored tables again and leaves flagged columns out; running
    the same audit at import shows the mapping's author which columns will go, with the
    evidence, while the mapping can still say ``keep`` for one.
    """
    rows = accepted_rows(result, export_dir, checked)
    audit = audit_tables(rows, result.attributes)
    return audit, {name: len(frame) for name, frame in rows.items()}
