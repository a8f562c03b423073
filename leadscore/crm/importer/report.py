"""The import report: what was read, how it was mapped, what was rejected and why.

One dictionary (``import_report.json`` beside the export, ``--json`` on the command
line) and its plain-text rendering. It answers the questions a data scientist asks of
an import before trusting it: which encoding and delimiter were read, which source
column became which contract column and which were left out, which words the value
maps turned into what and which matched nothing, how dates were read, what the outcome
rules did (in words, with counts), which rows repeat, every rejected row by file,
line as numbered in the file, column, value and rule, and what the leakage audit made of
the deals and accounts this import stores (flagged columns with their evidence, kept ones
with the mapping's reason, what it could not judge). The accounting closes per table:
``read = stored + rejected + duplicates``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from leadscore.crm.importer.run import (
    REJECT_COLUMNS,
    ColumnReport,
    ImportResult,
    source_place,
    source_values,
)
from leadscore.crm.leakage import LeakageAudit
from leadscore.csvsafe import write_csv

REPORT_FILE = "import_report.json"
REJECTS_FILE = "import_rejects.csv"
#: Rejected rows listed in the report itself; all of them are in ``import_rejects.csv``.
#: An ISO time at the end of a reject's rule, the row's own value.
_ROW_TIME = r"\s+\d{4}-\d{2}-\d{2}T[\d:.]+Z?$"

REPORT_REJECTS = 100
#: What the audit's verdicts mean for training, said under them.
LEAKAGE_TRAINING = (
    "flagged columns will be left out of training unless the mapping keeps them "
    '(keep: "reason" on the attribute) or `leadscore train --keep-flagged` is used'
)


def contract_rejects(result: ImportResult, rejects: Sequence[Any]) -> pd.DataFrame:
    """Rejects of the contract checks (ingest's), moved to the source file and line.

    ``rejects`` are :class:`leadscore.crm.ingest.Reject` of the written export, whose
    ``line`` is the row number in ``<table>.parquet``.
    """
    rejects = list(rejects)
    places = [source_place(result, r.table, r.line) for r in rejects]
    sources = []
    for r, place in zip(rejects, places, strict=True):
        t = result.tables.get(r.table)
        file = place[0] if place else None
        source = next(
            (c.source for c in t.columns if c.target == r.column and (not c.files or file in c.files)),
            None,
        ) if t else None  # fmt: skip
        sources.append(source)
    written = source_values(
        result,
        [(p[0], p[1], s) for p, s in zip(places, sources, strict=True) if p and s],
    )
    rows = []
    for r, place, source in zip(rejects, places, sources, strict=True):
        file, line = place if place else (r.file, r.line)
        column, value = r.column, r.value
        if place and source is not None and (file, line, source) in written:
            # Name the source column and the value as the source wrote it.
            column = f"{source} ({r.column})"
            value = written[(file, line, source)]
        rows.append((r.table, file, line, column, value, r.reason))
    return pd.DataFrame(rows, columns=list(REJECT_COLUMNS)).astype({"line": "int64"})


def _column_key(c: ColumnReport, several: bool) -> str:
    """A contract column, and its source file when the table has several sources."""
    return f"{c.target} [{', '.join(c.files)}]" if several else c.target


def build_report(
    result: ImportResult,
    export_dir: Path | None,
    checked: pd.DataFrame | None = None,
    contract_counts: dict[str, dict[str, int]] | None = None,
    dry_run: bool = False,
    audit: LeakageAudit | None = None,
    audited_rows: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """The report as a JSON-ready dictionary.

    ``checked``: contract rejects from ingest (or its dry-run validation), already in
    source terms (:func:`contract_rejects`); ``contract_counts``: per table, ``valid``,
    ``rejected`` and ``duplicates`` of those checks (ingest's counts). Without them the
    report covers the import alone. ``audit``: the leakage audit of the rows stored (or
    that would be), ``audited_rows`` their number per table
    (:func:`leadscore.crm.importer.audit_import`); ``None`` when it did not run.
    """
    checked = checked if checked is not None else pd.DataFrame(columns=list(REJECT_COLUMNS))
    rejects = (
        pd.concat([d for d in (result.rejects, checked) if len(d)], ignore_index=True)
        if len(result.rejects) or len(checked)
        else result.rejects
    )
    stored_word = "would be stored" if dry_run else "stored"
    tables = {}
    for name, t in result.tables.items():
        several = len({c.part for c in t.columns}) > 1
        counts = (contract_counts or {}).get(name, {})
        contract_rejected = int(counts.get("rejected", 0))
        contract_dups = int(counts.get("duplicates", 0))
        kept = int(counts.get("valid", t.written - contract_rejected - contract_dups))
        rejected = t.rejected + contract_rejected
        duplicates = t.duplicates + contract_dups
        tables[name] = {
            "files": [f.path.name for f in t.files],
            "read": t.read,
            "written_to_export": t.written,
            stored_word.replace(" ", "_"): kept,
            "rejected": rejected,
            "rejected_by_import": t.rejected,
            "rejected_by_contract": contract_rejected,
            "duplicates": duplicates,
            "accounting": (
                f"read {t.read:,} = {stored_word} {kept:,} + rejected {rejected:,} "
                f"+ duplicates {duplicates:,}"
            ),
            "balanced": t.read == kept + rejected + duplicates,
            "columns": {
                _column_key(c, several): {
                    "source": c.source,
                    **({"how": c.how} if c.how else {}),
                    **(
                        {
                            "value_map": {
                                w: {"to": to, "rows": n} for w, (to, n) in c.applied.items()
                            }
                        }
                        if c.applied
                        else {}
                    ),
                    **({"matched_none": c.unmatched} if c.unmatched else {}),
                    **(
                        {"otherwise": c.otherwise or "empty"}
                        if c.unmatched and c.otherwise is not None
                        else {}
                    ),
                    **({"currency_symbols_stripped": c.symbols} if c.symbols else {}),
                }
                for c in t.columns
            },
            "unmapped_source_columns": t.unmapped,
            "repeated_rows": {
                "merged_as_duplicates": t.duplicates,
                "kept_no_key": t.repeated_kept,
                "lines": t.repeated_lines,
            },
            "notes": t.notes,
            "outcome_rules": t.outcome,
        }
    # A rule's message may end with the row's own value ("is before the deal's created_at
    # 2022-05-31T00:00:00Z"): counted by the rule, not by every distinct time.
    rules = rejects.assign(rule=rejects["rule"].str.replace(_ROW_TIME, "", regex=True))
    by_rule = (
        rules.groupby(["table", "rule"])
        .size()
        .sort_values(ascending=False)
        .reset_index(name="rows")
        if len(rejects)
        else pd.DataFrame(columns=["table", "rule", "rows"])
    )
    return {
        "source": str(result.source),
        "mapping": str(result.mapping.path),
        "export": str(export_dir) if export_dir else None,
        "dry_run": dry_run,
        "export_date": None if result.export_date is None else result.export_date.isoformat(),
        "export_date_from": result.export_date_from,
        "files": [
            {
                "file": f.path.name,
                "encoding": f.encoding,
                "delimiter": f.delimiter,
                "rows": f.rows_read,
            }
            for f in result.files
        ],
        "files_not_imported": result.unused_files,
        "tables": tables,
        "attributes": [
            {
                "name": a.name,
                "table": a.table,
                "kind": a.kind,
                "known": a.known,
                "source": a.source,
                **({"keep": a.keep} if a.keep else {}),
            }
            for a in result.attributes
        ],  # fmt: skip
        "rejected_rows": len(rejects),
        "rejects_by_rule": by_rule.to_dict("records"),
        "rejects": rejects.head(REPORT_REJECTS).to_dict("records"),
        "rejects_file": str(export_dir / REJECTS_FILE) if export_dir else None,
        "leakage_audit": None
        if audit is None
        else {
            "rows": dict(audited_rows or {}),
            "rows_of": f"the rows this import {'would store' if dry_run else 'stores'}",
            **audit.to_dict(),
            "training": LEAKAGE_TRAINING,
        },
    }


def write_report(report: dict[str, Any], rejects: pd.DataFrame, export_dir: Path) -> Path:
    """``import_report.json`` and ``import_rejects.csv`` (every reject) beside the export."""
    path = Path(export_dir) / REPORT_FILE
    path.write_text(
        json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8"
    )
    write_csv(rejects, Path(export_dir) / REJECTS_FILE, encoding="utf-8")
    return path


def report_lines(report: dict[str, Any]) -> list[str]:
    """The report in words, for the terminal."""
    out = [f"source {report['source']}  mapping {report['mapping']}"]
    for f in report["files"]:
        delim = f", {f['delimiter']}-separated" if f["delimiter"] else ""
        out.append(f"  read {f['file']}: {f['rows']:,} rows, {f['encoding']}{delim}")
    for name, why in report["files_not_imported"].items():
        out.append(f"  not imported: {name} ({why})")
    if report["export_date"]:
        out.append(f"export date {report['export_date'][:19]} ({report['export_date_from']})")
    for name, t in report["tables"].items():
        out.append(f"{name} <- {', '.join(t['files'])}: {t['accounting']}")
        for target, c in t["columns"].items():
            line = f"  {target:18s} <- {c['source'] or '-'}"
            if c.get("how"):
                line += f"  [{c['how']}]"
            out.append(line)
            if c.get("value_map"):
                words = ", ".join(
                    f"{w!r}->{m['to']} ({m['rows']:,})"
                    for w, m in list(c["value_map"].items())[:12]
                )
                out.append(f"      mapped: {words}")
            if c.get("matched_none"):
                words = ", ".join(f"{w!r} ({n:,})" for w, n in list(c["matched_none"].items())[:12])
                then = f" -> {c['otherwise']}" if c.get("otherwise") else " -> rejected"
                out.append(f"      matched none{then}: {words}")
            if c.get("currency_symbols_stripped"):
                out.append(f"      currency symbols stripped: {c['currency_symbols_stripped']}")
        if t["unmapped_source_columns"]:
            cols = t["unmapped_source_columns"]
            out.append(
                f"  unmapped: {', '.join(cols[:15])}{f' and {len(cols) - 15} more' if len(cols) > 15 else ''}"
            )
        rep = t["repeated_rows"]
        if rep["merged_as_duplicates"]:
            out.append(
                f"  duplicates: {rep['merged_as_duplicates']:,} rows repeat a row with the same key and values, stored once (lines {rep['lines']})"
            )
        if rep["kept_no_key"]:
            out.append(
                f"  repeated rows: {rep['kept_no_key']:,} rows repeat another row; no key is mapped, so all are kept (lines {rep['lines']})"
            )
        out += [f"  note: {n}" for n in t["notes"]]
        out += [f"  outcome rule: {n}" for n in t["outcome_rules"]]
    for a in report["attributes"]:
        keep = f", kept: {a['keep']}" if a.get("keep") else ""
        out.append(
            f"attribute {a['table']}.{a['name']} <- {a['source']} ({a['kind']}, known {a['known']}{keep})"
        )
    out.append(f"rejected rows: {report['rejected_rows']:,}")
    for r in report["rejects_by_rule"][:15]:
        out.append(f"  {r['rows']:>8,}  {r['table']}: {r['rule']}")
    for r in report["rejects"][:20]:
        out.append(f"  {r['file']} line {r['line']}, {r['column']}={r['value']!r}: {r['rule']}")
    if report["rejects_file"] and report["rejected_rows"]:
        out.append(f"every rejected row: {report['rejects_file']}")
    audit = report.get("leakage_audit")
    if audit is not None:
        rows = ", ".join(f"{n:,} {name}" for name, n in audit["rows"].items())
        out += audit["lines"]
        out.append(f"  audited: {rows} ({audit['rows_of']})")
        if audit["findings"]:
            out.append(f"  {audit['training']}")
    return out
