"""Import a CRM's own export: read the sources, apply the mapping, write a contract export.

One pass per contract table, vectorised in Arrow and batched: each source file is read
in blocks (:func:`leadscore.crm.importer.read.iter_batches`); each batch has its mapped
columns picked and parsed, its unparsable rows rejected and its kept rows written, typed,
to a spool Parquet file, so memory is bounded by the batch, not the file. What must see
every row keeps only small columns across batches: the file and line of each kept row,
the key (or a hash of the row when no key is mapped) for finding repeated rows, the
newest event time. After the last batch, repeated rows and the outcome rules rewrite the
spool group by group. :func:`write_export` then copies the spool files into the export
as ``<table>.parquet`` (typed, so nothing is parsed twice) plus ``attributes.json``. The
ingest that follows checks the contract's own rules (references, close after creation,
...); its rejects name the export's rows, and :func:`source_place` turns them back into
the source file and line.

A table may come from several sources (``sources:`` in the mapping, e.g. Salesforce Task
and Event as activities): their rows are stacked, each with its own file and line.

Accounting, per contract table: every data row of the source is written, rejected
(file, line, column, value, rule) or a duplicate stored once, so
``read == written + rejected + duplicates``. A duplicate row is only merged when the
mapping maps the table's key (the same id and the same values: the same record); without
a key each row gets its own id from its line and repeated rows are reported and kept.
"""

from __future__ import annotations

import fnmatch
import re
import shutil
import tempfile
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from leadscore.crm.attributes import Attribute, write_attributes
from leadscore.crm.contract import CLOSED_STATUSES, DEALS, LOST, OPEN, TABLES, WON, Column
from leadscore.crm.importer.mapping import (
    ColumnSpec,
    Join,
    Mapping,
    PartSpec,
    TableSpec,
    value_map,
)
from leadscore.crm.importer.read import (
    BLOCK_SIZE,
    SOURCE_SUFFIXES,
    BadRow,
    SourceFile,
    iter_batches,
    open_source,
    read_whole,
)
from leadscore.crm.importer.values import (
    DateOrder,
    DateOrderFound,
    blank,
    detect_date_order,
    map_values,
    parse_booleans,
    parse_dates,
    parse_numbers,
)

#: Columns of the rejects table, in order.
REJECT_COLUMNS: tuple[str, ...] = ("table", "file", "line", "column", "value", "rule")
#: Times that record something that happened (an expected close date does not).
_EVENT_TIMES: dict[str, tuple[str, ...]] = {
    "deals": ("created_at", "closed_at"),
    "stage_history": ("entered_at",),
    "activities": ("occurred_at",),
    "deal_contacts": ("added_at",),
    "accounts": ("created_at",),
    "contacts": ("created_at",),
}
#: Rows per group when a spool file is rewritten (repeated rows, outcome rules).
_GROUP_ROWS = 256 * 1024


class ImportFailure(ValueError):
    """The source cannot be imported with this mapping; the message says where and why."""


@dataclass
class ColumnReport:
    """How one contract column (or attribute) was filled from one source."""

    target: str
    source: str | None
    how: str = ""
    #: Value map: word -> [target, count]; unmatched word -> count.
    applied: dict[str, tuple[str, int]] = field(default_factory=dict)
    unmatched: dict[str, int] = field(default_factory=dict)
    otherwise: str | None = None
    symbols: dict[str, int] = field(default_factory=dict)
    #: The source (mapping name) and its files, when a table has several.
    part: str = ""
    files: tuple[str, ...] = ()

    def add(self, applied: dict[str, tuple[str, int]], unmatched: dict[str, int],
            symbols: dict[str, int]) -> None:  # fmt: skip
        """Counts of one more batch."""
        for word, (to, n) in applied.items():
            self.applied[word] = (to, self.applied.get(word, (to, 0))[1] + n)
        for word, n in unmatched.items():
            self.unmatched[word] = self.unmatched.get(word, 0) + n
        for symbol, n in symbols.items():
            self.symbols[symbol] = self.symbols.get(symbol, 0) + n

    def sort(self) -> None:
        self.applied = dict(sorted(self.applied.items(), key=lambda kv: -kv[1][1]))
        self.unmatched = dict(sorted(self.unmatched.items(), key=lambda kv: -kv[1]))
        self.symbols = dict(sorted(self.symbols.items(), key=lambda kv: -kv[1]))


@dataclass
class TableImport:
    """One contract table as imported; its rows are in the spool file ``path``."""

    table: str
    files: list[SourceFile]
    path: Path
    schema: pa.Schema
    #: Source file name and line of each written row.
    row_files: np.ndarray
    row_lines: np.ndarray
    columns: list[ColumnReport]
    unmapped: list[str]
    read: int = 0
    rejected: int = 0
    duplicates: int = 0
    #: Repeated rows: kept (no key mapped) or merged (same key and values), with lines.
    repeated_kept: int = 0
    repeated_lines: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    outcome: list[str] = field(default_factory=list)
    #: Newest value of each event-time column (for the export date).
    newest: dict[str, pd.Timestamp] = field(default_factory=dict)

    @property
    def written(self) -> int:
        return len(self.row_lines)

    @property
    def data(self) -> pa.Table:
        """The written rows, read back from the spool (whole: for tests and small tables)."""
        return pq.read_table(self.path) if self.path.exists() else self.schema.empty_table()


@dataclass
class ImportResult:
    mapping: Mapping
    source: Path
    tables: dict[str, TableImport]
    rejects: pd.DataFrame
    attributes: tuple[Attribute, ...]
    export_date: pd.Timestamp | None
    export_date_from: str
    files: list[SourceFile]
    unused_files: dict[str, str]
    #: Folder of the spool files; removed with the result.
    spool: Path | None = None


# --------------------------------------------------------------------------- finding files


def _file_key(name: str) -> str:
    """A file name compared without extension, case, spaces, underscores or dashes."""
    return re.sub(r"[\s_\-]", "", Path(name).stem.lower())


def source_files(source: Path) -> list[Path]:
    """The readable files of a source folder, or the single source file."""
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise ImportFailure(f"source {source} does not exist")
    return sorted(p for p in source.iterdir() if p.suffix.lower() in SOURCE_SUFFIXES)


def _match(patterns: Iterable[str], files: list[Path], single: bool) -> list[Path]:
    """Files named by ``patterns``: globs, or names compared as :func:`_file_key` does."""
    if single:
        return files
    found: list[Path] = []
    for pattern in patterns:
        if any(ch in pattern for ch in "*?["):
            found += [p for p in files if fnmatch.fnmatch(p.name.lower(), pattern.lower())]
        else:
            found += [p for p in files if _file_key(p.name) == _file_key(pattern)]
    return list(dict.fromkeys(found))


# --------------------------------------------------------------------------- sources

#: A batch of a source: text columns, file and line of each row, bad rows (file, row).
SourceBatch = tuple[pa.Table, np.ndarray, np.ndarray, list[tuple[str, BadRow]]]


def _align(table: pa.Table, names: list[str]) -> pa.Table:
    """``table`` with exactly the columns ``names`` (matched in any case), in that order;
    a column the file lacks is empty text, as when files of one source are stacked."""
    own = {n.lower(): n for n in table.column_names}
    return pa.table(
        {
            n: table.column(own[n.lower()])
            if n.lower() in own
            else pa.array([""] * table.num_rows, pa.string())
            for n in names
        }
    )


@dataclass
class _Source:
    """A named source: its files, read in batches, or whole when it has joins."""

    name: str
    files: list[SourceFile]
    #: Column names over all files (first spelling), then joined columns.
    names: list[str]
    #: The whole source with joins applied, its files and lines; None: read in batches.
    whole: tuple[pa.Table, np.ndarray, np.ndarray] | None = None

    def batches(self, columns: list[str] | None = None, block_size: int = BLOCK_SIZE
                ) -> Iterator[SourceBatch]:  # fmt: skip
        """Batches of ``columns`` (all when None); bad rows only in a full read."""
        if self.whole is not None:
            table, files, lines = self.whole
            bad = [(f.path.name, b) for f in self.files for b in f.bad_rows]
            yield (
                (table if columns is None else table.select(columns)),
                files,
                lines,
                (bad if columns is None else []),
            )
            return
        wanted = self.names if columns is None else columns
        for f in self.files:
            own = {n.lower(): n for n in f.names}
            present = [own[w.lower()] for w in wanted if w.lower() in own]
            for b in iter_batches(f, None if columns is None else present, block_size):
                yield (
                    _align(b.table, wanted),
                    _named(b.table.num_rows, f.path.name),
                    b.lines,
                    [(f.path.name, x) for x in b.bad],
                )


def _named(n: int, name: str) -> np.ndarray:
    """``n`` references to one file name (``np.full`` would copy the text ``n`` times)."""
    out = np.empty(n, dtype=object)
    out.fill(name)
    return out


def _union(names: Iterable[list[str]]) -> list[str]:
    seen: dict[str, str] = {}
    for file_names in names:
        for n in file_names:
            seen.setdefault(n.lower(), n)
    return list(seen.values())


class _Run:
    """State of one import: the files opened once, the rejects gathered."""

    def __init__(self, mapping: Mapping, source: Path, block_size: int) -> None:
        self.mapping = mapping
        self.source = source
        self.block_size = block_size
        self.files = source_files(source)
        self.single = source.is_file()
        self.read: dict[Path, SourceFile] = {}
        self.rejects: list[pd.DataFrame] = []
        self.used: set[Path] = set()
        self.spool = Path(tempfile.mkdtemp(prefix="leadscore-import-"))

    def file(self, path: Path, sheet: str | None) -> SourceFile:
        if path not in self.read:
            self.read[path] = open_source(path, sheet)
        self.used.add(path)
        return self.read[path]

    def reject(
        self, table: str, files: np.ndarray, lines: np.ndarray, column: str, values: Any, rule: Any
    ) -> None:
        if len(lines):
            self.rejects.append(
                pd.DataFrame(
                    {
                        "table": table,
                        "file": files,
                        "line": lines,
                        "column": column,
                        "value": values,
                        "rule": rule,
                    }
                )
            )

    def named(self, name: str, where: str, whole: bool = False) -> _Source | None:
        """A named source; None when an optional source has no file. Read whole when it
        joins other sources or ``whole`` (a join's other side)."""
        spec = self.mapping.sources[name]
        paths = _match(spec.files, self.files, self.single and name in self._main_sources())
        if not paths:
            if spec.optional or self.single:
                return None
            listed = ", ".join(p.name for p in self.files) or "no readable files"
            raise ImportFailure(
                f"{self.mapping.path}: {where}: no file in {self.source} matches "
                f"{', '.join(spec.files)} (found: {listed})"
            )
        parts = [self.file(p, spec.sheet) for p in paths]
        found = _Source(name, parts, _union(p.names for p in parts))
        if not (whole or spec.joins or any(p.delimiter is None for p in parts)):
            return found
        tables, files, lines = [], [], []
        for p in parts:
            table, at = read_whole(p)
            tables.append(_align(table, found.names))
            files.append(_named(table.num_rows, p.path.name))
            lines.append(at)
        table = pa.concat_tables(tables)
        for i, join in enumerate(spec.joins):
            table = self.join(table, join, f"sources.{name}.join[{i}]", parts[0].path.name)
        found.whole = (table, np.concatenate(files), np.concatenate(lines))
        found.names = table.column_names
        return found

    def _main_sources(self) -> set[str]:
        return {p.source for p in self.mapping.tables[DEALS.name].parts}

    def join(self, table: pa.Table, join: Join, where: str, file: str) -> pa.Table:
        found = self.named(join.source, where, whole=True)
        if found is None or found.whole is None:
            for _, name in join.take:
                table = table.append_column(name, pa.nulls(table.num_rows, pa.string()))
            return table
        other, other_files = found.whole[0], found.files
        left = [_column_name(table, c, file, f"{where}.on") for c, _ in join.on]
        right = [
            _column_name(other, c, other_files[0].path.name, f"{where}.on") for _, c in join.on
        ]
        taken = [
            _column_name(other, c, other_files[0].path.name, f"{where}.take") for c, _ in join.take
        ]
        keys = [f"__k{i}" for i in range(len(right))]
        side = pa.table(
            {**{k: blank(other.column(r)) for k, r in zip(keys, right, strict=True)},
             **{new: other.column(c) for c, (_, new) in zip(taken, join.take, strict=True)}}
        )  # fmt: skip
        if join.aggregate is None:
            frame = side.to_pandas()
            repeated = frame.duplicated(keys, keep=False) & frame[keys].notna().all(axis=1)
            if repeated.any():
                example = frame.loc[repeated, keys].iloc[0].tolist()
                raise ImportFailure(
                    f"{self.mapping.path}: {where}: {other_files[0].path.name} has several rows "
                    f"for {', '.join(right)} = {example}; set 'aggregate' (first, sum, min, max, count)"
                )
        else:
            aggregations = []
            for _, new in join.take:
                if join.aggregate in ("sum", "min", "max"):
                    side = side.set_column(
                        side.column_names.index(new),
                        new,
                        parse_numbers(blank(side.column(new))).values,
                    )
                aggregations.append((new, "count" if join.aggregate == "count" else join.aggregate))
            side = side.group_by(keys, use_threads=False).aggregate(aggregations)
            side = side.rename_columns(
                [c if c in keys else c.rsplit("_", 1)[0] for c in side.column_names]
            )
            for _, new in join.take:
                side = side.set_column(
                    side.column_names.index(new), new, pc.cast(side.column(new), pa.string())
                )
        left_keys = [f"__l{i}" for i in range(len(left))]
        indexed = table
        for k, c in zip(left_keys, left, strict=True):
            indexed = indexed.append_column(k, blank(table.column(c)))
        indexed = indexed.append_column("__row", pa.array(np.arange(table.num_rows)))
        joined = indexed.join(side, keys=left_keys, right_keys=keys, join_type="left outer")
        joined = joined.sort_by("__row")
        return joined.drop_columns([*left_keys, "__row"])


def _column_name(table: pa.Table, wanted: str, file: str, where: str) -> str:
    for name in table.column_names:
        if name.lower() == wanted.lower():
            return name
    raise ImportFailure(f"{where}: {file} has no column {wanted!r}")


def _find(names: list[str], spec: ColumnSpec) -> str | None:
    """The first of the spec's source columns among ``names`` (any case)."""
    lower = {n.lower(): n for n in names}
    for wanted in spec.sources:
        if wanted.lower() in lower:
            return lower[wanted.lower()]
    return None


def _contract_column(table: str, name: str) -> Column | None:
    t = TABLES[table]
    return t.column(name) if name in t.column_names else None


def _parse_column(
    run: _Run,
    spec: ColumnSpec,
    kind: str,
    allowed: tuple[str, ...] | None,
    text: pa.Array,
    order: DateOrder | None,
    report: ColumnReport,
) -> tuple[pa.Array, np.ndarray, str]:
    """One column parsed as its kind; returns values, failures and the failure rule."""
    if spec.split:
        parts = pc.split_pattern(text, spec.split, max_splits=1)
        text = blank(pc.list_element(parts, 0))
    if allowed is not None or spec.values:
        words = value_map(spec)
        mapped = map_values(text, words, spec.otherwise)
        report.add(mapped.applied, mapped.unmatched, {})
        report.otherwise = spec.otherwise
        known = ", ".join(words) if words else "none"
        return mapped.values, mapped.failed, f"is not in the value map of {spec.target} ({known})"
    if kind == "datetime":
        values, failed = parse_dates(text, order, spec.format)
        shape = (
            spec.format
            or {"day_first": "dd/mm/yyyy", "month_first": "mm/dd/yyyy", None: "ISO 8601"}[order]
        )
        report.how = f"dates: {shape}" if order or spec.format else "dates: ISO 8601"
        return (
            values,
            failed,
            "is not a date (" + (f"{shape} or ISO 8601" if shape != "ISO 8601" else shape) + ")",
        )
    if kind in ("int", "float", "numeric"):
        numbers = parse_numbers(text, spec.decimal or run.mapping.decimal, spec.scale)
        report.add({}, {}, numbers.symbols)
        report.how = "numbers" + (f", decimal {spec.decimal}" if spec.decimal == "," else "")
        failed = numbers.failed
        rule = "is not a number"
        if kind == "int":
            whole = pc.equal(numbers.values, pc.floor(numbers.values))
            failed = failed | ~np.asarray(
                pc.fill_null(whole, True).to_numpy(zero_copy_only=False), dtype=bool
            )
            rule = "is not a whole number"
        return numbers.values, failed, rule
    return text, np.zeros(len(text), dtype=bool), ""


def _date_orders(
    run: _Run, table: str, part: PartSpec, source: _Source
) -> tuple[dict[str, DateOrder | None], list[str]]:
    """Day-first or month-first for each date column: declared, else detected.

    Detected over every value of the column (a pass over the date columns alone when the
    source is read in batches). A file written by one spreadsheet uses one order, so the
    order one column proves applies to the file's other date columns; conflicting
    proofs are an error.
    """
    orders: dict[str, DateOrder | None] = {}
    notes: list[str] = []
    file = source.files[0].path.name
    undeclared: dict[str, str] = {}
    for c in part.columns:
        col = _contract_column(table, c.target)
        name = _find(source.names, c)
        if col is None or col.type != "datetime" or name is None:
            continue
        declared = c.date_order or run.mapping.date_order
        if declared or c.format:
            orders[c.target] = declared
        else:
            undeclared[c.target] = name
    found: dict[str, DateOrderFound] = {t: DateOrderFound() for t in undeclared}
    if undeclared:
        names = list(dict.fromkeys(undeclared.values()))
        for batch, _, _, _ in source.batches(names, run.block_size):
            for target, name in undeclared.items():
                found[target] += detect_date_order(
                    blank(batch.column(name), run.mapping.null_values)
                )
    for target, f in found.items():
        if f.conflicting:
            raise ImportFailure(
                f"{file} column {undeclared[target]}: dates are written both day-first and "
                f"month-first ({f.evidence}); fix the file or set date_order/format in "
                f"{run.mapping.path} (tables.{table}.columns.{target})"
            )
    proven = {t: f for t, f in found.items() if f.order}
    kinds = {f.order for f in proven.values()}
    if len(kinds) > 1:
        raise ImportFailure(
            f"{file}: date columns disagree on day/month order ("
            + "; ".join(f"{undeclared[t]}: {f.order} ({f.evidence})" for t, f in proven.items())
            + f"); set date_order per column in {run.mapping.path}"
        )
    file_order = next(iter(kinds)) if kinds else None
    for target, f in found.items():
        name = undeclared[target]
        if f.order:
            orders[target] = f.order
            notes.append(f"{file} {name}: {f.order.replace('_', '-')} detected from {f.evidence}")
        elif f.slashed and file_order:
            orders[target] = file_order
            notes.append(
                f"{file} {name}: {file_order.replace('_', '-')}, as the file's other date columns"
            )
        elif f.slashed:
            raise ImportFailure(
                f"{file} column {name}: all {f.slashed} dates read both day-first and "
                f"month-first (no day above 12); set date_order: day_first or month_first in "
                f"{run.mapping.path} (tables.{table}.columns.{target})"
            )
        else:
            orders[target] = None
    return orders, notes


# --------------------------------------------------------------------------- typed output

_ARROW: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int": pa.float64(),
    "float": pa.float64(),
    "datetime": pa.timestamp("us", tz="UTC"),
}


def _output_schema(spec: TableSpec, generated: bool) -> pa.Schema:
    """Columns of ``<table>.parquet``: the mapped contract columns in contract order
    (the generated key too), then the attributes."""
    contract = TABLES[spec.table]
    mapped = spec.mapped() | ({contract.key[0]} if generated else set())
    fields = [pa.field(c.name, _ARROW[c.type]) for c in contract.columns if c.name in mapped]
    fields += [
        pa.field(a.column.target, pa.float64() if a.kind == "numeric" else pa.string())
        for a in spec.attributes()
    ]
    return pa.schema(fields)


def _typed(arrays: dict[str, pa.Array], schema: pa.Schema, n: int) -> pa.Table:
    """The output columns of a batch in the schema's order and types; absent ones empty."""
    columns = []
    for f in schema:
        values = arrays.get(f.name)
        if values is None:
            columns.append(pa.nulls(n, f.type))
        else:
            columns.append(values if values.type == f.type else pc.cast(values, f.type))
    return pa.table(columns, schema=schema)


def _rewrite(path: Path, change: Any) -> None:
    """Pass the spool file through ``change(table, first_row) -> table`` group by group."""
    if not path.exists():
        return
    source = pq.ParquetFile(path)
    temporary = path.with_suffix(".rewrite")
    first = 0
    writer: pq.ParquetWriter | None = None
    try:
        for batch in source.iter_batches(batch_size=_GROUP_ROWS):
            table = change(pa.Table.from_batches([batch]), first)
            first += batch.num_rows
            if writer is None:
                writer = pq.ParquetWriter(temporary, table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
        source.close()
    if writer is None:
        return
    temporary.replace(path)


# --------------------------------------------------------------------------- one table


class _Table:
    """A contract table being imported: batches in, spool file and accounting out."""

    def __init__(self, run: _Run, spec: TableSpec, sources: list[tuple[PartSpec, _Source]]):
        self.run, self.spec, self.name = run, spec, spec.table
        contract = TABLES[spec.table]
        self.key = contract.key
        self.generated = len(self.key) == 1 and spec.parts[0].column(self.key[0]) is None
        self.schema = _output_schema(spec, self.generated)
        self.path = run.spool / f"{spec.table}.parquet"
        self.writer: pq.ParquetWriter | None = None
        self.files = [f for _, s in sources for f in s.files]
        self.row_files: list[np.ndarray] = []
        self.row_lines: list[np.ndarray] = []
        #: What makes two rows candidates for a repeat: the key, or a hash of the row.
        self.fingerprints: list[pa.Table] = []
        self.reports: dict[tuple[str, str], ColumnReport] = {}
        self.notes: list[str] = []
        self.newest: dict[str, pd.Timestamp] = {}
        self.read = self.rejected = 0
        #: (part, flag) -> [rows that disagree, first line]; open deals' close dates ignored.
        self.disagree: dict[tuple[str, str, str], list[int]] = {}
        self.blanked: dict[str, int] = {}
        self.rows = 0

    def add(self, part: PartSpec, source: _Source, batch: SourceBatch,
            orders: dict[str, DateOrder | None]) -> None:  # fmt: skip
        """Parse, check and write one batch of ``part``'s source."""
        table, row_files, row_lines, bad = batch
        run, name = self.run, self.name
        for file, b in bad:
            run.reject(
                name, np.array([file]), np.array([b.line]), "(row)", [b.text[:200]],
                f"has {b.fields} fields where the header has {b.expected}",
            )  # fmt: skip
        self.read += table.num_rows + len(bad)
        self.rejected += len(bad)
        n = table.num_rows
        if not n:
            return
        self.rows += n
        failed_any = np.zeros(n, dtype=bool)
        arrays: dict[str, pa.Array] = {}

        def fail(mask: np.ndarray, column: str, source_values: pa.Array | None, rule: str) -> None:
            nonlocal failed_any
            if mask.any():
                values = (
                    pc.filter(source_values, pa.array(mask)).to_numpy(zero_copy_only=False)
                    if source_values is not None else ""
                )  # fmt: skip
                run.reject(name, row_files[mask], row_lines[mask], column, values, rule)
                failed_any |= mask

        contract = TABLES[name]
        specs: list[tuple[ColumnSpec, str, tuple[str, ...] | None]] = [
            (c, contract.column(c.target).type, contract.column(c.target).allowed)
            for c in part.columns
        ]
        specs += [(a.column, a.kind, None) for a in part.attributes]
        for c, kind, allowed in specs:
            report = self.report(part, source, c)
            source_name = _find(table.column_names, c)
            if source_name is None:
                continue  # "not in the source: left empty" (checked before the batches)
            raw = table.column(source_name).combine_chunks()
            text = blank(raw, run.mapping.null_values)
            values, failed, rule = _parse_column(
                run, c, kind, allowed, text, orders.get(c.target), report
            )
            fail(failed, source_name, raw, f"{c.target}: {rule}")
            arrays[c.target] = values
        # Status checked against the source's own flags: the mapped word decides, the
        # disagreement is reported.
        status_spec = part.column("status")
        if status_spec is not None and status_spec.check and "status" in arrays:
            status = np.asarray(arrays["status"].to_numpy(zero_copy_only=False), dtype=object)
            for meaning, flag in status_spec.check:
                flag_name = _find(table.column_names, ColumnSpec(flag, (flag,)))
                if flag_name is None:
                    continue
                flags, unreadable = parse_booleans(
                    blank(table.column(flag_name)), empty_is_false=True
                )
                set_ = np.asarray(
                    pc.fill_null(flags, False).to_numpy(zero_copy_only=False), dtype=bool
                )
                says = np.isin(status, [WON] if meaning == "won" else list(CLOSED_STATUSES))
                disagree = (set_ != says) & ~unreadable & ~failed_any & pd.notna(status)
                counted = self.disagree.setdefault(
                    (part.source, flag_name, status_spec.sources[0]), [0, 0]
                )
                if disagree.any():
                    counted[0] += int(disagree.sum())
                    counted[1] = counted[1] or int(row_lines[disagree][0])
        # Rows the mapping says are not records (deleted ones).
        for column, value in part.reject_when:
            flag_name = _find(table.column_names, ColumnSpec(column, (column,)))
            if flag_name is None:
                continue
            raw = table.column(flag_name)
            flags, _ = parse_booleans(blank(raw), empty_is_false=True)
            hit = np.asarray(
                pc.fill_null(pc.equal(flags, value), False).to_numpy(zero_copy_only=False),
                dtype=bool,
            )
            fail(
                hit & ~failed_any,
                flag_name,
                raw,
                f"{flag_name} is {str(value).lower()}: not imported (reject_when)",
            )
        # An expected close date on an open deal is not a close.
        closed_spec = part.column("closed_at")
        if (
            closed_spec is not None
            and closed_spec.open_deals_expected_close
            and ("status" in arrays and "closed_at" in arrays)
        ):
            is_open = pc.fill_null(pc.equal(arrays["status"], OPEN), False)
            blanked = int(pc.sum(pc.and_(is_open, pc.is_valid(arrays["closed_at"]))).as_py() or 0)
            arrays["closed_at"] = pc.if_else(
                is_open, pa.scalar(None, arrays["closed_at"].type), arrays["closed_at"]
            )
            self.blanked[closed_spec.sources[0]] = (
                self.blanked.get(closed_spec.sources[0], 0) + blanked
            )
        # Ids: the mapped key, or one per row from its file and line.
        if self.generated:
            arrays[self.key[0]] = pc.binary_join_element_wise(
                pa.array(row_files.astype(str)), pa.array(row_lines.astype(str)), ":"
            )
        keep = ~failed_any
        data = _typed(arrays, self.schema, n)
        if not keep.all():
            data = data.filter(pa.array(keep))
        self.rejected += int(failed_any.sum())
        self.write(data, row_files[keep], row_lines[keep])

    def report(self, part: PartSpec, source: _Source, c: ColumnSpec) -> ColumnReport:
        key = (part.source, c.target)
        if key not in self.reports:
            found = _find(source.names, c)
            self.reports[key] = ColumnReport(
                c.target,
                found,
                how="" if found else "not in the source: left empty",
                part=part.source,
                files=tuple(f.path.name for f in source.files),
            )
        return self.reports[key]

    def write(self, data: pa.Table, files: np.ndarray, lines: np.ndarray) -> None:
        """Append kept rows to the spool, and keep what later steps need of them."""
        if not data.num_rows:
            return
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, self.schema)
        self.writer.write_table(data)
        self.row_files.append(files)
        self.row_lines.append(lines)
        for column in _EVENT_TIMES.get(self.name, ()):
            if column in data.column_names:
                newest = pc.max(data.column(column)).as_py()
                if newest is not None:
                    stamp = pd.Timestamp(newest)
                    if column not in self.newest or stamp > self.newest[column]:
                        self.newest[column] = stamp
        if not self.generated:
            self.fingerprints.append(data.select(list(self.key)))
        else:
            compare = [c for c in data.column_names if c != self.key[0]]
            hashed = pd.util.hash_pandas_object(data.select(compare).to_pandas(), index=False)
            self.fingerprints.append(pa.table({"row": hashed.to_numpy()}))

    def finish(self, unmapped: list[str]) -> TableImport:
        if self.writer is not None:
            self.writer.close()
        for (_, flag, word), (count, line) in self.disagree.items():
            if count:
                self.notes.append(
                    f"{flag} contradicts {word} on {count} of {self.rows} rows "
                    f"(e.g. line {line}): {word} decides"
                )
        for column, blanked in self.blanked.items():
            if blanked:
                self.notes.append(
                    f"{column} ignored on {blanked} open deals (their expected close date)"
                )
        files = np.concatenate(self.row_files) if self.row_files else np.zeros(0, dtype=object)
        lines = np.concatenate(self.row_lines) if self.row_lines else np.zeros(0, dtype=np.int64)
        if self.generated and len(lines):
            self.notes.append(
                f"{self.key[0]} not mapped: each row's id is its file and line "
                f"(e.g. {files[0]}:{lines[0]})"
            )
        for report in self.reports.values():
            report.sort()
        result = TableImport(
            self.name, self.files, self.path, self.schema, files, lines,
            list(self.reports.values()), unmapped, read=self.read, rejected=self.rejected,
            notes=self.notes, newest=self.newest,
        )  # fmt: skip
        repeated = self.repeated(len(lines))
        if repeated.any():
            result.repeated_lines = [int(x) for x in lines[repeated][:20]]
            if self.generated:
                result.repeated_kept = int(repeated.sum())
            else:
                result.duplicates = int(repeated.sum())
                _rewrite(
                    self.path,
                    lambda t, first: t.filter(pa.array(~repeated[first : first + t.num_rows])),
                )
                result.row_files, result.row_lines = files[~repeated], lines[~repeated]
        return result

    def repeated(self, n: int) -> np.ndarray:
        """Rows equal in every column (but a generated id) to an earlier row.

        Only rows whose fingerprint (key, or row hash) repeats can repeat, which is
        usually none: those few are read back from the spool and compared in full.
        """
        repeated = np.zeros(n, dtype=bool)
        if not n:
            return repeated
        prints = pa.concat_tables(self.fingerprints)
        if prints.num_columns == 1 and pc.count_distinct(prints.column(0), mode="all").as_py() == n:
            return repeated
        shared = prints.to_pandas().duplicated(keep=False).to_numpy()
        if not shared.any():
            return repeated
        candidates = np.flatnonzero(shared)
        rows, first = [], 0
        spool = pq.ParquetFile(self.path)
        for batch in spool.iter_batches(batch_size=_GROUP_ROWS):
            here = candidates[(candidates >= first) & (candidates < first + batch.num_rows)]
            if len(here):
                rows.append(pa.Table.from_batches([batch]).take(pa.array(here - first)))
            first += batch.num_rows
        spool.close()
        compare = [c for c in self.schema.names if not (self.generated and c == self.key[0])]
        frame = pa.concat_tables(rows).select(compare).to_pandas()
        repeated[candidates[frame.duplicated(keep="first").to_numpy()]] = True
        return repeated


def _import_table(run: _Run, spec: TableSpec) -> TableImport | None:
    sources = []
    for i, part in enumerate(spec.parts):
        where = f"tables.{spec.table}." + (f"sources[{i}]." if len(spec.parts) > 1 else "")
        found = run.named(part.source, where + "source")
        if found is not None:
            sources.append((part, found))
    if not sources:
        return None
    table = _Table(run, spec, sources)
    unmapped: list[str] = []
    for i, (part, source) in enumerate(sources):
        where = f"tables.{spec.table}" + (f".sources[{i}]" if len(spec.parts) > 1 else "")
        first = source.files[0].path.name
        used: set[str] = set()
        for c in [*part.columns, *(a.column for a in part.attributes)]:
            column = _find(source.names, c)
            if column is None and run.mapping.missing_columns == "error":
                raise ImportFailure(
                    f"{first} has no column {' or '.join(map(repr, c.sources))} for "
                    f"{c.target} ({run.mapping.path}: {where}.columns.{c.target}); "
                    f"its columns: {', '.join(source.names[:30])}"
                )
            used.add(column or "")
        status = part.column("status")
        flags = [flag for _, flag in status.check] if status is not None else []
        for flag in [*flags, *(column for column, _ in part.reject_when)]:
            used.add(_find(source.names, ColumnSpec(flag, (flag,))) or "")
        joined = _joined_names(run, part)
        unmapped += [c for c in source.names if c not in used and c not in joined]
        orders, notes = _date_orders(run, spec.table, part, source)
        table.notes += notes
        for batch in source.batches(None, run.block_size):
            table.add(part, source, batch, orders)
    return table.finish(list(dict.fromkeys(unmapped)))


def _joined_names(run: _Run, part: PartSpec) -> set[str]:
    names: set[str] = set()
    for j in run.mapping.sources[part.source].joins:
        names |= {new for _, new in j.take}
    return names


def _export_date(run: _Run, tables: dict[str, TableImport]) -> tuple[pd.Timestamp | None, str]:
    """The mapping's export date, else the newest event time in the imported data."""
    if run.mapping.export_date is not None:
        return run.mapping.export_date, f"declared in {run.mapping.path.name}"
    best: tuple[pd.Timestamp | None, str] = (None, "no time in the data")
    for name, t in tables.items():
        for column in _EVENT_TIMES.get(name, ()):
            newest = t.newest.get(column)
            if newest is not None and (best[0] is None or newest > best[0]):
                source = next((c.source for c in t.columns if c.target == column), column)
                best = (newest, f"newest {name}.{column} ({t.files[0].path.name} {source})")
    return best


def _lost_rule(t: TableImport, days: int, as_of: pd.Timestamp | None) -> None:
    """Open deals not won within ``days`` of creation, as of the export date, are lost."""
    rule = f"lost when not won within {days} days of creation, as of the export date"
    if as_of is None:
        t.outcome.append(f"{rule}: not applied, the data has no time to take as the export date")
        return
    counts = {"lost": 0, "open": 0, "undated": 0}
    fields = list(t.schema)
    if "closed_at" not in t.schema.names:
        fields.append(pa.field("closed_at", pa.timestamp("us", tz="UTC")))
    order = {c.name: i for i, c in enumerate(DEALS.columns)}
    schema = pa.schema(sorted(fields, key=lambda f: order.get(f.name, len(order))))

    def change(data: pa.Table, first: int) -> pa.Table:
        status = data.column("status")
        created = data.column("created_at")
        deadline = pc.add(
            created, pa.scalar(pd.Timedelta(days=days).to_pytimedelta(), pa.duration("us"))
        )
        is_open = pc.fill_null(pc.equal(status, OPEN), False)
        due = pc.fill_null(
            pc.less_equal(deadline, pa.scalar(as_of.to_pydatetime(), created.type)), False
        )
        hit = pc.and_(is_open, due)
        counts["lost"] += int(pc.sum(hit).as_py() or 0)
        counts["open"] += int(pc.sum(is_open).as_py() or 0)
        counts["undated"] += int(pc.sum(pc.and_(is_open, pc.is_null(created))).as_py() or 0)
        closed = (
            data.column("closed_at")
            if "closed_at" in data.column_names
            else pa.nulls(data.num_rows, created.type)
        )
        arrays = {name: data.column(name) for name in data.column_names}
        arrays["status"] = pc.if_else(hit, LOST, status)
        arrays["closed_at"] = pc.if_else(hit, deadline, closed)
        return pa.table({f.name: arrays[f.name] for f in schema}, schema=schema)

    _rewrite(t.path, change)
    t.schema = schema
    lost, open_total, undated = counts["lost"], counts["open"], counts["undated"]
    t.outcome.append(
        f"{rule} ({as_of:%Y-%m-%d}): {lost:,} of {open_total:,} open deals became lost, closed "
        f"{days} days after creation; {open_total - lost - undated:,} stay open (younger)"
        + (f"; {undated:,} stay open without a creation date" if undated else "")
    )


def run_import(source: Path, mapping: Mapping, block_size: int = BLOCK_SIZE) -> ImportResult:
    """Import ``source`` (a folder or one file) with ``mapping`` into spool files.

    Nothing is written beside the source or into an export: :func:`write_export` does
    that. ``block_size``: bytes of CSV per batch (memory is bounded by it).
    """
    run = _Run(mapping, Path(source), block_size)
    try:
        tables: dict[str, TableImport] = {}
        for name, spec in sorted(mapping.tables.items(), key=lambda kv: kv[0] != DEALS.name):
            t = _import_table(run, spec)
            if t is not None:
                tables[name] = t
        if DEALS.name not in tables:
            raise ImportFailure(f"no deals source found in {source} for {mapping.path}")
        as_of, as_of_from = _export_date(run, tables)
        deals_spec = mapping.tables[DEALS.name]
        if deals_spec.lost_when_not_won_within_days:
            _lost_rule(tables[DEALS.name], deals_spec.lost_when_not_won_within_days, as_of)
    except BaseException:
        shutil.rmtree(run.spool, ignore_errors=True)
        raise
    attributes = tuple(
        Attribute(
            name=a.column.target,
            table=t.table,  # type: ignore[arg-type]  # deals or accounts, checked by the mapping
            kind=a.kind,
            known=a.known,
            label=a.label,
            keep=a.keep,
            source=next((c.source for c in t.columns if c.target == a.column.target), None),
        )  # fmt: skip
        for t in tables.values()
        for a in mapping.tables[t.table].attributes()
    )
    rejects = (
        pd.concat(run.rejects, ignore_index=True)
        if run.rejects
        else pd.DataFrame(
            {c: pd.Series(dtype="int64" if c == "line" else object) for c in REJECT_COLUMNS}
        )
    )
    unused = {
        p.name: next(
            (why for n, why in mapping.ignore.items() if _file_key(n) == _file_key(p.name)),
            "not in the mapping",
        )
        for p in run.files
        if p not in run.used
    }
    result = ImportResult(
        mapping, Path(source), tables, rejects.sort_values(["table", "file", "line"], kind="stable", ignore_index=True),
        attributes, as_of, as_of_from, list(run.read.values()), unused, run.spool,
    )  # fmt: skip
    weakref.finalize(result, shutil.rmtree, run.spool, True)
    return result


# --------------------------------------------------------------------------- writing


def write_export(result: ImportResult, out: Path) -> dict[str, Path]:
    """Write ``<table>.parquet`` per imported table and ``attributes.json`` into ``out``.

    The spool files are the tables, typed: they are copied, not read. Tables of an
    earlier import into the same folder are removed first, so the folder never mixes two
    imports (ingest reads every contract table it finds).
    """
    out = Path(out)
    if out.resolve() == result.source.resolve() or (
        result.source.is_file() and out.resolve() == result.source.parent.resolve()
    ):
        raise ImportFailure(f"--out {out} is the source folder; choose another folder")
    out.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        for suffix in (".csv", ".parquet"):
            (out / f"{name}{suffix}").unlink(missing_ok=True)
    paths = {}
    for name, t in result.tables.items():
        paths[name] = out / f"{name}.parquet"
        if t.path.exists():
            shutil.copyfile(t.path, paths[name])
        else:
            pq.write_table(t.schema.empty_table(), paths[name])
    write_attributes(out, result.attributes)
    return paths


def source_place(result: ImportResult, table: str, export_line: int) -> tuple[str, int] | None:
    """The source file and line of the row at ``export_line`` of ``<table>.parquet``."""
    t = result.tables.get(table)
    if t is None or not 1 <= export_line <= len(t.row_lines):
        return None
    return str(t.row_files[export_line - 1]), int(t.row_lines[export_line - 1])


def source_values(
    result: ImportResult, wanted: Iterable[tuple[str, int, str]]
) -> dict[tuple[str, int, str], str]:
    """The text of (file, line, column) cells as the source wrote it.

    Each file is read again, in batches and only the columns asked for, so naming the
    source value of a few contract rejects costs no memory for the whole file.
    """
    by_file: dict[str, dict[str, set[int]]] = {}
    for file, line, column in wanted:
        by_file.setdefault(file, {}).setdefault(column, set()).add(line)
    files = {f.path.name: f for f in result.files}
    found: dict[tuple[str, int, str], str] = {}
    for file, columns in by_file.items():
        source = files.get(file)
        if source is None:
            continue
        own = {n.lower(): n for n in source.names}
        present = {c: own[c.lower()] for c in columns if c.lower() in own}
        if not present:
            continue
        names = list(dict.fromkeys(present.values()))
        for batch in iter_batches(source, names, BLOCK_SIZE):
            for column, name in present.items():
                lines = np.fromiter(columns[column], dtype=np.int64)
                at = np.flatnonzero(np.isin(batch.lines, lines))
                values = batch.table.column(name).take(pa.array(at)).to_pylist()
                for i, value in zip(at, values, strict=True):
                    found[(file, int(batch.lines[i]), column)] = value
    return found
