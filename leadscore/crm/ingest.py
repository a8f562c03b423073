"""Validate a CRM export folder and merge it into the stored tables.

An export is a folder with one ``<table>.csv`` or ``<table>.parquet`` per table of
:data:`leadscore.crm.contract.TABLES`; other files (e.g. ``truth.parquet``) are ignored.
Validation has two layers:

* per-column rules (type, required, allowed values, minimum) are pandera schemas
  built from the contract and validated lazily, so that every problem is reported;
* rules that span columns, rows or tables are written by hand, vectorised: duplicate
  keys, deal status versus ``closed_at``, times in the future, references to parent
  tables and "not before the deal was created". They run on the rows whose columns
  passed, so a row with a malformed value reports that value, not its consequences.

Every problem becomes a :class:`Reject` naming the file, the line, the column, the
value as written and a plain reason. ``line`` is where the row starts as an editor
numbers the file: in a CSV the header is line 1, so the first data row is line 2,
and a quoted value with a line break (or a blank line) moves every later row down a
line; a Parquet file has no lines, so there it is the row number, the first row being
row 1 (:attr:`Reject.place` says which). A row with any problem is left out;
all other rows are upserted by key into ``<crm_dir>/<table>.parquet``. Nothing is
written before the whole export has been read and validated, and each file is
replaced atomically, so a failing run never leaves a half-written store behind.

Decisions the rest of the pipeline relies on:

* stored types: ids and other text are ``object`` columns of ``str`` (``None`` when
  missing), ints nullable ``Int64``, floats ``float64``, times ``datetime64[us, UTC]``;
  enumerations are lower-case; extra columns follow the contract columns as text;
* stored tables are sorted by key, so the same content always gives the same bytes,
  and a table the export does not change is not rewritten;
* text is stripped and only an empty cell is missing: ``"NA"`` or ``"null"`` stay
  text (``"NA"`` may well be a region);
* a reference is satisfied by a valid row of the export or by a stored row: when the
  new version of a parent row is rejected its stored version stays, and so do its
  children;
* an identical repeated row is stored once and counted in ``duplicates``, so
  ``read == valid + rejected + duplicates`` for every table of the export.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import uuid
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pandera.backends.pandas.error_formatters import reshape_failure_cases
from pandera.engines import numpy_engine, pandas_engine
from pandera.errors import ParserError, SchemaError, SchemaErrorReason, SchemaErrors

from leadscore.config import crash_point
from leadscore.crm.attributes import (
    ATTRIBUTES_FILE,
    Attribute,
    AttributesError,
    attributes_json,
    read_attributes,
    with_attributes,
)
from leadscore.crm.contract import (
    AFTER_DEAL_CREATION,
    CLOSED_STATUSES,
    DEALS,
    EXPORT_FUTURE_TOLERANCE,
    PREVIOUS_DEAL,
    TABLES,
    Column,
    Table,
)
from leadscore.csvsafe import write_csv
from leadscore.parquetio import writer_options
from leadscore.pipeline_state import digest_ahead
from leadscore.progress import Progress, no_progress
from leadscore.timeutil import as_utc, utc_now

log = logging.getLogger(__name__)

#: Columns of ``rejects.csv``, in order.
REJECT_COLUMNS: tuple[str, ...] = ("table", "file", "line", "column", "value", "reason")
REJECTS_FILE = "rejects.csv"

_SUFFIXES: tuple[str, ...] = (".csv", ".parquet")
_TYPE_REASONS: dict[str, str] = {
    "int": "is not a whole number",
    "float": "is not a number",
    "datetime": "is not a date",
}
_ARROW_TYPES: dict[str, pyarrow.DataType] = {
    "string": pyarrow.string(),
    "int": pyarrow.int64(),
    "float": pyarrow.float64(),
    "datetime": pyarrow.timestamp("us", tz="UTC"),
}


class ExportError(ValueError):
    """The export as a whole cannot be used (a bad row, by contrast, is only rejected)."""


class NothingStoredError(ExportError):
    """No deal is stored after the ingest: the deals file had no rows, or all were rejected.

    See :meth:`IngestResult.nothing_stored`; ``leadscore ingest`` then stores nothing but
    ``rejects.csv``.
    """


@dataclass(frozen=True)
class Reject:
    """One problem with one row of an export file."""

    table: str
    file: str
    #: Where the row starts in the file: a CSV's line (the header is line 1), a Parquet
    #: file's row number (from 1).
    line: int
    column: str
    value: str
    reason: str

    @property
    def place(self) -> str:
        """Where to look: 'deals.csv line 11' or 'deals.parquet row 10'."""
        return f"{self.file} {place_word(self.file)} {self.line}"


def place_word(file: str) -> str:
    """'line' for a text file, whose rows an editor numbers by line; 'row' for Parquet."""
    return "row" if file.endswith(".parquet") else "line"


#: The columns of a changed row that say which rows it reaches (its deal, account, owner,
#: contact): what :class:`TableChange` keeps of the new rows.
CHANGE_COLUMNS: tuple[str, ...] = ("deal_id", "account_id", "owner_id", "contact_id")


@dataclass(frozen=True)
class TableChange:
    """The rows one ingest inserted or updated in one table.

    ``new`` holds their versions now stored, ``old`` the stored versions they replaced
    (an inserted row has none). Both are needed to know what a change reaches: a deal
    moved to another owner changes the new owner's track record and the old one's.
    ``new`` keeps only the table's :data:`CHANGE_COLUMNS` (all a reach reads): on a first
    ingest it is every row, and a copy of every column of millions of activities stayed
    in memory through the whole build of the feature sources.
    """

    new: pd.DataFrame
    old: pd.DataFrame


@dataclass
class IngestResult:
    """Outcome of one ingest run."""

    #: All stored tables after the merge (validated, typed), including the tables the
    #: export did not contain; each pandas when read whole, Arrow till then.
    tables: StoredTables
    #: Per table of the export: read, valid, rejected, duplicates, inserted, updated,
    #: unchanged.
    counts: dict[str, dict[str, int]]
    rejects: list[Reject]
    #: The export file of each table read.
    files: dict[str, Path] = field(default_factory=dict)
    #: The custom attributes in effect after the run: the export's ``attributes.json``,
    #: else the stored one (:mod:`leadscore.crm.attributes`).
    attributes: tuple[Attribute, ...] = ()
    #: Per table of the export, the rows this run inserted or updated (none for a table
    #: left unchanged): what an incremental rebuild of the feature sources starts from.
    changes: dict[str, TableChange] = field(default_factory=dict)
    #: The changed tables and the rejects being written on a thread (``ingest_export``'s
    #: ``write_behind``), None when they were written before it returned.
    written: Future[None] | None = None
    #: The tables as stored before this run (Arrow, as read), None when nothing was
    #: stored: an incremental rebuild compares the sources' rows before and after the
    #: change to find the months it changes (:mod:`leadscore.features.incremental`).
    before: StoredTables | None = None

    def wait_written(self) -> None:
        """Return once the changed tables and the rejects are in place; raise what their
        writing raised. A caller of ``write_behind`` calls it before it commits, and before
        it lets go of the folder they are written into."""
        if self.written is not None:
            self.written.result()

    def nothing_stored(self, rejects_file: Path) -> NothingStoredError | None:
        """The error to raise when no deal is stored after this run, else None.

        A first export whose deals file has no rows, or only rejected ones, leaves nothing
        to build features from; the caller then keeps its state as it was.
        """
        if DEALS.name in self.tables:
            return None
        name = self.files[DEALS.name].name if DEALS.name in self.files else "the deals file"
        read = self.counts.get(DEALS.name, {}).get("read", 0)
        if read == 0:
            return NothingStoredError(
                f"{name} has a header but no rows: no deal to store, nothing was stored"
            )
        first = next(r for r in self.rejects if r.table == DEALS.name)
        return NothingStoredError(
            f"all {read:,} rows of {name} were rejected, so nothing was stored (first "
            f"problem: {first.place}, {first.column} {first.value!r} {first.reason}); "
            f"every problem is listed in {rejects_file}"
        )


# --------------------------------------------------------------------------- types
# Pandera's built-in coercion finds the failing values by coercing one value at a
# time, which takes minutes on a million rows with a single bad value. These data
# types coerce a whole column at once (in Arrow's C++ kernels where possible, since
# pandas parses zoned timestamps about a hundred times slower) and report the values
# that did not survive.


def _arrow_text(values: pd.Series, lower: bool = False) -> pyarrow.Array:
    """Any column as Arrow text, stripped, with empty strings made null."""
    return _tidy(_as_arrow_text(values), lower)


def _as_arrow_text(values: pd.Series) -> pyarrow.Array:
    """``values`` as Arrow text, as ``astype("string[pyarrow]")`` makes it.

    A column of Python ``str`` (object or ``string[python]``, missing values any of
    pandas' nulls) goes to Arrow straight from its objects: pandas' ``astype`` first
    copied and checked every value and looked for missing ones twice, most of the
    coercion of millions of activities. Anything else (numbers, bytes, mixed) takes
    pandas' conversion, which writes a value as ``str`` does.
    """
    if _python_text(values) and pd.api.types.infer_dtype(values, skipna=True) in (
        "string",
        "empty",
    ):
        return pyarrow.array(
            np.asarray(values, dtype=object), type=pyarrow.large_string(), from_pandas=True
        )
    return pyarrow.array(values.astype("string[pyarrow]"))


def _python_text(values: pd.Series) -> bool:
    """Whether the column holds Python objects (``object`` or ``string[python]``)."""
    return values.dtype == object or (
        isinstance(values.dtype, pd.StringDtype) and values.dtype.storage == "python"
    )


def _tidy(written: pyarrow.Array, lower: bool = False) -> pyarrow.Array:
    text = pc.utf8_trim_whitespace(written)
    if lower:
        text = pc.utf8_lower(text)
    return pc.if_else(pc.equal(text, ""), pyarrow.scalar(None, text.type), text)


def _objects(values: pyarrow.Array, like: pd.Series, dtype: str | type | None = None) -> pd.Series:
    """An Arrow array as a pandas column indexed like ``like``; a text that repeats is one
    Python object (Arrow's ``to_pandas`` shares them), not one per row."""
    return pd.Series(values.to_pandas().to_numpy(), index=like.index, name=like.name, dtype=dtype)


def _clean_text(values: pd.Series, lower: bool = False) -> pd.Series:
    """Any column as stripped ``str`` objects, with empty strings made missing (None).

    A column of text that is tidy already (the rule for an export a program wrote) keeps
    its ``str`` objects: making millions of equal new ones cost most of the validation,
    and the objects the export's reader shares among equal values stay shared
    (:func:`_read_parquet`).
    """
    written = _as_arrow_text(values)
    text = _tidy(written, lower)
    same = pc.equal(text, written)  # null where either is: a missing or an emptied value
    if (
        _python_text(values)
        and same.null_count == written.null_count
        and pc.all(same).as_py() is not False
        and pd.api.types.infer_dtype(values, skipna=True) in ("string", "empty")
    ):
        # np.array, not to_numpy(dtype=object): that looks for missing values first.
        kept = np.array(values, dtype=object)
        if written.null_count:
            kept[written.is_null().to_numpy(zero_copy_only=False)] = None
        return pd.Series(kept, index=values.index, name=values.name, dtype=object)
    return _objects(text, values, dtype=object)


def _arrow_cast(text: pyarrow.Array, target: pyarrow.DataType) -> np.ndarray | None:
    """``text`` cast by Arrow, or None when some value does not parse."""
    try:
        return pc.cast(text, target).to_numpy(zero_copy_only=False)
    except pyarrow.ArrowInvalid:
        return None


class _VectorCoercion:
    """Mixin for pandera data types: coerce a column at once, fail with the misfits."""

    def parse(self, data: pd.Series) -> tuple[pd.Series, np.ndarray]:
        """Return the coerced column (missing where parsing failed) and a failure mask."""
        raise NotImplementedError

    def coerce(self, data_container: pd.Series) -> pd.Series:
        return self.parse(data_container)[0]

    def try_coerce(self, data_container: pd.Series) -> pd.Series:
        coerced, failed = self.parse(data_container)
        if failed.any():
            raise ParserError(
                f"could not coerce {data_container.name!r} to {self}",
                failure_cases=reshape_failure_cases(data_container[failed], ignore_na=False),
            )
        return coerced


class _Text(_VectorCoercion, pandas_engine.NpString):
    """Stripped text; an empty string is missing."""

    def parse(self, data: pd.Series) -> tuple[pd.Series, np.ndarray]:
        return _clean_text(data), np.zeros(len(data), dtype=bool)

    def check(self, pandera_dtype: object, data_container: object = None) -> bool:
        # ``parse`` built the column; pandera's per-value type check would only cost time.
        return isinstance(pandera_dtype, numpy_engine.Object | pandas_engine.NpString)


class _Enum(_Text):
    """Text matched case-insensitively, hence stored lower-case."""

    def parse(self, data: pd.Series) -> tuple[pd.Series, np.ndarray]:
        return _clean_text(data, lower=True), np.zeros(len(data), dtype=bool)


def _parse_number(data: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """Numbers from a numeric column or from text; infinities and non-numbers fail."""
    if pd.api.types.is_numeric_dtype(data) and not pd.api.types.is_bool_dtype(data):
        given = data.notna().to_numpy()
        numbers = data.astype("float64")
    else:
        text = _arrow_text(data)
        given = text.is_valid().to_numpy(zero_copy_only=False)
        parsed = _arrow_cast(text, pyarrow.float64())
        if parsed is None:  # pandas finds which values are not numbers
            parsed = pd.to_numeric(text.to_numpy(zero_copy_only=False), errors="coerce")
        numbers = pd.Series(parsed, index=data.index, name=data.name, dtype="float64")
    failed = given & ~np.isfinite(numbers.to_numpy())
    return numbers.mask(failed), failed


class _Float(_VectorCoercion, numpy_engine.Float64):
    """Finite numbers as ``float64``."""

    def parse(self, data: pd.Series) -> tuple[pd.Series, np.ndarray]:
        return _parse_number(data)


class _Int(_VectorCoercion, pandas_engine.INT64):
    """Whole numbers as nullable ``Int64``: "12" and 12.0 are fine, "12.5" is not."""

    def parse(self, data: pd.Series) -> tuple[pd.Series, np.ndarray]:
        numbers, failed = _parse_number(data)
        failed |= (numbers % 1 != 0).to_numpy() & numbers.notna().to_numpy()
        return numbers.mask(failed).astype("Int64"), failed


class _UtcTime(_VectorCoercion, pandas_engine.DateTime):
    """ISO 8601 text or datetimes; naive means UTC; kept as ``datetime64[us, UTC]``."""

    def parse(self, data: pd.Series) -> tuple[pd.Series, np.ndarray]:
        if pd.api.types.is_datetime64_any_dtype(data):
            given = data.notna().to_numpy()
            times = as_utc(data)
        else:
            text = _arrow_text(data)
            given = text.is_valid().to_numpy(zero_copy_only=False)
            # Arrow parses a column that is all zoned or all naive; pandas parses a mix
            # and finds the values that are not dates.
            parsed = _arrow_cast(text, pyarrow.timestamp("us", tz="UTC"))
            if parsed is None:
                parsed = _arrow_cast(text, pyarrow.timestamp("us"))
            if parsed is None:
                times = pd.to_datetime(
                    _objects(text, data), format="ISO8601", utc=True, errors="coerce"
                )
            else:
                times = pd.Series(parsed, index=data.index, name=data.name).dt.tz_localize("UTC")
        times = times.astype(self.type)
        return times, given & times.isna().to_numpy()


def _dtype(column: Column) -> pa.DataType:
    """The coercing data type of a contract column (enumerations are lower-cased text)."""
    # pandera's data types are dataclasses made by its own decorator, which mypy does not
    # read: it sees the base ``__init__(dtype)`` instead of the dataclass fields.
    if column.allowed:
        return _Enum()  # type: ignore[call-arg]
    if column.type == "datetime":
        return _UtcTime(unit="us", tz="UTC")  # type: ignore[call-arg]
    return {"string": _Text, "int": _Int, "float": _Float}[column.type]()  # type: ignore[call-arg]


def _pandera_column(column: Column) -> pa.Column:
    """One contract column as a pandera column; the check errors are the reject reasons."""
    checks = []
    if column.allowed:
        allowed = ", ".join(column.allowed)
        checks.append(pa.Check.isin(column.allowed, error=f"must be one of: {allowed}"))
    if column.min_value is not None:
        checks.append(pa.Check.ge(column.min_value, error=f"must be >= {column.min_value:g}"))
    return pa.Column(_dtype(column), checks=checks, nullable=not column.required, coerce=True)


def table_schema(table: Table, extra_columns: Iterable[str] = ()) -> pa.DataFrameSchema:
    """The pandera schema of one contract table; extra columns are kept as text."""
    columns = {c.name: _pandera_column(c) for c in table.columns}
    columns |= {
        name: pa.Column(_Text(), nullable=True, coerce=True)  # type: ignore[call-arg]
        for name in extra_columns
    }
    return pa.DataFrameSchema(columns, name=table.name)


# --------------------------------------------------------------------------- reading


_DELIMITERS = (",", ";", "\t", "|")
_DELIMITER_NAMES = {",": "commas", ";": "semicolons", "\t": "tabs", "|": "pipes"}
_BOMS: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe", "UTF-16"),
    (b"\xfe\xff", "UTF-16"),
)
_TOKENIZING = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")
_OPEN_QUOTE = re.compile(r"EOF inside string starting at row (\d+)")
_SAVE_AS = "save it as CSV UTF-8, comma-separated (Excel: 'CSV UTF-8 (Comma delimited)')"


def _head(path: Path, size: int = 64 * 1024) -> bytes:
    with path.open("rb") as f:
        return f.read(size)


def _delimiter_hint(path: Path) -> str:
    """What the header line looks separated by, for a message ('' when it is commas)."""
    try:
        header = _head(path).decode("utf-8-sig", errors="replace").splitlines()[0]
    except (OSError, IndexError):
        return ""
    counts = {d: header.count(d) for d in _DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    if best == "," or counts[best] == 0 or counts[best] <= counts[","]:
        return ""
    return (
        f"; the header is separated by {_DELIMITER_NAMES[best]} ({best!r}), not commas: " + _SAVE_AS
    )


def _encoding_problem(path: Path, exc: UnicodeDecodeError) -> str:
    """Where a file stops being UTF-8 and what it looks like instead."""
    head = _head(path)
    for bom, name in _BOMS:
        if head.startswith(bom):
            return f"{path.name}: it is not UTF-8 text but {name} (line 1); {_SAVE_AS}"
    data = path.read_bytes()  # only on this error path: find the line of the first bad byte
    try:
        data.decode("utf-8")
        offset = exc.start
    except UnicodeDecodeError as whole:
        offset = whole.start
    line = data[:offset].count(b"\n") + 1
    bad = data[offset : offset + 4]
    guess = ""
    try:
        data.decode("cp1252")
        guess = " it looks like Windows-1252 / Latin-1 text;"
    except UnicodeDecodeError:
        pass
    return (
        f"{path.name}: it is not UTF-8 text (line {line}, byte {offset}: 0x{bad[:1].hex()});"
        f"{guess} {_SAVE_AS}"
    )


def _read_file(path: Path) -> pd.DataFrame:
    """One export file as a frame with a 0-based RangeIndex (row = index + 1).

    Every way a file can be unreadable becomes one :class:`ExportError` naming the file,
    the line where known, the problem and a hint (the delimiter or encoding it looks like).
    """
    try:
        if path.suffix == ".csv":
            # Text exactly as written: 'D0001' must not become a number, 'NA' not missing.
            frame = pd.read_csv(
                path, dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8-sig"
            )
        else:
            frame = _read_parquet(path)
    except UnicodeDecodeError as exc:
        raise ExportError(_encoding_problem(path, exc)) from exc
    except pd.errors.EmptyDataError as exc:
        raise ExportError(f"{path.name} line 1: the file is empty (no header line)") from exc
    except pd.errors.ParserError as exc:
        found = _TOKENIZING.search(str(exc))
        if found:
            expected, line, saw = found.groups()
            raise ExportError(
                f"{path.name} line {line}: {saw} fields where the header has {expected}; a value "
                "with a comma must be in double quotes" + _delimiter_hint(path)
            ) from exc
        problem = str(exc).strip().removeprefix("Error tokenizing data. C error: ")
        quote = _OPEN_QUOTE.search(problem)
        if quote:
            line = int(quote.group(1)) + 1
            raise ExportError(
                f"{path.name} line {line}: a double quote opened on this line is never closed"
            ) from exc
        raise ExportError(f"{path.name}: cannot be read as CSV: {problem}") from exc
    except pyarrow.ArrowException as exc:
        raise ExportError(
            f"{path.name}: not a readable Parquet file ({exc}); export it again, or as CSV"
        ) from exc
    except OSError as exc:
        raise ExportError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise ExportError(f"cannot read {path}: {exc}") from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    # The frame is this reader's own: set its index, where reset_index copied every column.
    frame.index = pd.RangeIndex(len(frame))
    return frame


#: Rows of a text column looked at to decide whether it repeats (:func:`_read_parquet`).
_REPEAT_SAMPLE = 10_000


def _read_parquet(path: Path) -> pd.DataFrame:
    """A Parquet file (an export's, a stored table) as ``pd.read_parquet`` reads it (the same columns, types and
    values), with each distinct text of a column that repeats one Python object.

    ``pd.read_parquet`` makes one ``str`` per cell: 2.7 million activities gave 13.7
    million objects, 0.9 GB, most of them copies of a few deal ids, types and directions
    (and each later copy of the column copied them again). A column whose first
    :data:`_REPEAT_SAMPLE` rows repeat goes through Arrow's dictionary instead: one object
    per distinct value, shared by its rows; a column of unique ids (``activity_id``)
    converts as before.
    """
    return _frame(pq.read_table(path))


def _frame(table: pyarrow.Table) -> pd.DataFrame:
    """An Arrow table (a file read, or rows of one) as :func:`_read_parquet` gives it:
    ``to_pandas``'s columns, types and values, each text that repeats in a column one
    Python object."""
    like = table.slice(0, 0).to_pandas()  # the column types pd.read_parquet gives
    text = [
        f.name
        for f in table.schema
        if f.name in like.columns
        and (pyarrow.types.is_string(f.type) or pyarrow.types.is_large_string(f.type))
    ]
    frame = table.drop_columns(text).to_pandas()
    columns = {name: frame[name] for name in frame.columns}
    columns |= {name: _shared_text(table.column(name), like[name].dtype) for name in text}
    if like.columns.has_duplicates or set(columns) != set(like.columns):
        for name in text:
            frame[name] = columns[name]
        return frame[like.columns]
    # The columns put in order as they are: frame[like.columns] copied every one.
    return pd.DataFrame(
        {name: columns[name] for name in like.columns}, index=frame.index, copy=False
    )


def _shared_text(column: pyarrow.ChunkedArray, dtype: object) -> pd.Series:
    """An Arrow text column as pandas objects of ``dtype``, one object per distinct value
    when the column repeats (see :func:`_read_parquet`); missing values as pandas gives them."""
    head = column.slice(0, _REPEAT_SAMPLE)
    if len(head) == 0 or pc.count_distinct(head).as_py() > len(head) // 2:
        return pd.Series(column.to_numpy(), dtype=dtype)  # mostly distinct: nothing to share
    encoded = column.combine_chunks().dictionary_encode()
    words = encoded.dictionary.to_numpy(zero_copy_only=False)
    codes = encoded.indices.fill_null(-1).to_numpy()
    if isinstance(dtype, pd.StringDtype):
        # The distinct words made pandas text once, then taken (-1: missing): the rows
        # built first as objects were each checked again to make the StringArray.
        return pd.Series(pd.array(words, dtype=dtype).take(codes, allow_fill=True))
    values = np.append(words, np.array([None], dtype=object)).take(codes)  # -1: missing
    return pd.Series(values, dtype=dtype)


def read_export(
    export_dir: Path, progress: Progress = no_progress
) -> dict[str, tuple[Path, pd.DataFrame]]:
    """Read every contract table found in ``export_dir`` as a raw frame, with its file.

    Files not named after a contract table are ignored. Raises :class:`ExportError`
    when the folder or the mandatory ``deals`` table is missing, when a table is given
    both as CSV and as Parquet, or when a file cannot be read. ``progress`` hears of
    each file (task ``read export``).
    """
    export_dir = Path(export_dir)
    if not export_dir.is_dir():
        raise ExportError(f"export folder {export_dir} does not exist")
    files: dict[str, Path] = {}
    for name, table in TABLES.items():
        found = [p for p in (export_dir / f"{name}{s}" for s in _SUFFIXES) if p.is_file()]
        if len(found) > 1:
            raise ExportError(f"{export_dir} has both {found[0].name} and {found[1].name}")
        if found:
            files[name] = found[0]
        elif table.mandatory:
            understood = ", ".join(f"{n}.csv|.parquet" for n in TABLES)
            raise ExportError(
                f"{export_dir} has no {name} table: expected {name}.csv or {name}.parquet "
                f"(files understood: {understood})"
            )
    raw: dict[str, tuple[Path, pd.DataFrame]] = {}
    for name, path in files.items():
        progress("read export", len(raw), len(files), unit="files", detail=path.name)
        raw[name] = (path, _read_file(path))
        log.info("read %s: %d rows", path, len(raw[name][1]))
    progress("read export", len(raw), len(files), unit="files")
    return raw


# --------------------------------------------------------------------------- validation


def _written(raw: pd.DataFrame, column: str, positions: np.ndarray) -> np.ndarray:
    """Values of ``column`` at ``positions`` as written in the file ('' when empty)."""
    values = raw[column].iloc[positions]
    return values.astype("string").fillna("").to_numpy(dtype=object)


def _positions(problems: list[pd.DataFrame]) -> np.ndarray:
    """Sorted distinct row positions with at least one problem."""
    if not problems:
        return np.array([], dtype="int64")
    return np.unique(np.concatenate([p["position"].to_numpy() for p in problems]))


@dataclass
class _Checked:
    """Validation state of one export table."""

    table: Table
    path: Path
    #: Values as read, with every contract column present; row position = index.
    raw: pd.DataFrame
    #: Typed rows that passed the column checks, indexed by their position in the file.
    rows: pd.DataFrame
    #: Problems found so far: position, column, value, reason.
    problems: list[pd.DataFrame] = field(default_factory=list)
    duplicates: int = 0

    def add(
        self,
        positions: np.ndarray,
        column: str,
        reason: str | np.ndarray,
        value: np.ndarray | None = None,
    ) -> None:
        """Record a problem for rows given by file position."""
        if len(positions):
            self.problems.append(
                pd.DataFrame(
                    {
                        "position": positions,
                        "column": column,
                        "value": _written(self.raw, column, positions) if value is None else value,
                        "reason": reason,
                    }
                )
            )

    def reject(self, mask: np.ndarray, column: str, reason: str | np.ndarray) -> None:
        """Record a problem for the typed rows selected by ``mask``."""
        self.add(self.rows.index.to_numpy()[mask], column, reason)

    @cached_property
    def rejected(self) -> np.ndarray:
        """Positions of rejected rows; only read once all checks of the table ran."""
        return _positions(self.problems)

    @cached_property
    def valid(self) -> pd.DataFrame:
        """Typed rows without any problem, in file order, with a fresh index (the rows
        themselves, not a copy, when none was rejected)."""
        kept = ~self.rows.index.isin(self.rejected)
        valid = self.rows.copy(deep=False) if kept.all() else self.rows[kept]
        valid.index = pd.RangeIndex(len(valid))
        return valid


def _prepare(table: Table, path: Path, frame: pd.DataFrame) -> pd.DataFrame:
    """Contract columns first (missing optional ones added empty), then extra columns."""
    missing = [c.name for c in table.columns if c.name not in frame.columns]
    required = [name for name in missing if table.column(name).required]
    if required:
        found = ", ".join(repr(str(c)) for c in frame.columns[:8])
        more = f" and {len(frame.columns) - 8} more" if len(frame.columns) > 8 else ""
        hint = _delimiter_hint(path) if path.suffix == ".csv" else ""
        raise ExportError(
            f"{path.name} lacks required column(s): {', '.join(required)} (line 1, the "
            f"header, names {found}{more}){hint}"
        )
    extra = [c for c in frame.columns if c not in table.column_names]
    if not missing and list(frame.columns) == table.column_names + extra:
        return frame  # as read: not a copy of every column of millions of rows
    frame = frame.assign(**{name: None for name in missing})
    return frame[table.column_names + extra]


def _error_positions(cases: object) -> np.ndarray:
    """Row positions of a pandera error's failure cases (none for whole-column errors)."""
    if isinstance(cases, pd.DataFrame) and "index" in cases:
        return cases["index"].dropna().to_numpy(dtype="int64")
    return np.array([], dtype="int64")


def _column_checks(table: Table, path: Path, raw: pd.DataFrame) -> _Checked:
    """Coerce each column with the table's pandera schema, then run the schema's checks.

    Coercion runs on its own first because pandera skips the checks of a column it
    could not coerce. Cells that fail coercion are reported, blanked and the column is
    coerced again, so the checks run on every row and each row reports all of its
    problems (a blanked cell is not reported as missing as well).
    """
    schema = table_schema(table, raw.columns[len(table.columns) :])
    checked = _Checked(table, path, raw, rows=raw)
    typed: dict[str, pd.Series] = {}
    blanked: dict[str, np.ndarray] = {}
    for name, column in schema.columns.items():
        try:
            typed[name] = column.coerce_dtype(raw[name])
        except SchemaError as failed:
            positions = _error_positions(failed.failure_cases)
            checked.add(positions, name, _TYPE_REASONS[table.column(name).type])
            blanked[name] = positions
            typed[name] = column.coerce_dtype(raw[name].mask(raw.index.isin(positions)))
    # The coerced columns as they are: a dict makes pandas copy them into blocks.
    rows = pd.DataFrame(typed, index=raw.index, copy=False)
    rules = schema.update_columns({name: {"coerce": False} for name in schema.columns})
    try:
        rules.validate(rows, lazy=True, inplace=True)
    except SchemaErrors as errors:
        for error in errors.schema_errors:
            name, positions = error.schema.name, _error_positions(error.failure_cases)
            if error.reason_code == SchemaErrorReason.SERIES_CONTAINS_NULLS:
                checked.add(np.setdiff1d(positions, blanked.get(name, [])), name, "is required")
            elif error.reason_code == SchemaErrorReason.DATAFRAME_CHECK:
                # Contract checks carry their reject reason as the error message.
                checked.add(positions, name, error.check.error)
            else:
                raise RuntimeError(f"{path}: unexpected error on {name}: {error}") from errors
    if checked.problems:
        checked.rows = rows.drop(index=_positions(checked.problems))
    else:
        checked.rows = rows
    return checked


def _key_index(frame: pd.DataFrame, key: tuple[str, ...]) -> pd.Index:
    """The key columns as an index, for hashing lookups of single or composite keys."""
    if len(key) == 1:
        return pd.Index(frame[key[0]])
    return pd.MultiIndex.from_frame(frame[list(key)])


def _strictly_increasing(values: pd.Series) -> bool:
    """Whether a column of text is in strictly increasing order, so no value repeats.

    Comparing neighbours costs a fraction of hashing every value (``duplicated`` on 2.7
    million activity ids took a second); a column with a missing value or anything but
    ``str`` answers False and the caller takes the general way.
    """
    objects = np.asarray(values, dtype=object)
    return pd.api.types.infer_dtype(objects, skipna=False) == "string" and bool(
        (objects[1:] > objects[:-1]).all()
    )


def _check_duplicates(checked: _Checked) -> None:
    """Keep one of identical repeated rows; reject every row of a key with differing rows."""
    key = checked.table.key
    if len(key) == 1 and _strictly_increasing(checked.rows[key[0]]):
        return  # no key repeats: exports and stored tables usually come in key order
    # Identical rows share their key: only rows whose key repeats are compared whole
    # (usually none, where comparing every column of every row cost seconds).
    shared = checked.rows.duplicated(list(key), keep=False).to_numpy()
    if not shared.any():
        return
    repeated = np.zeros(len(checked.rows), dtype=bool)
    repeated[shared] = checked.rows[shared].duplicated(keep="first").to_numpy()
    checked.duplicates = int(repeated.sum())
    if checked.duplicates:
        log.info("%s: %d identical repeated rows kept once", checked.path.name, checked.duplicates)
        checked.rows = checked.rows[~repeated]
        shared = shared[~repeated]
    clash = np.zeros(len(checked.rows), dtype=bool)
    clash[shared] = checked.rows[shared].duplicated(list(key), keep=False).to_numpy()
    if not clash.any():
        return
    positions = checked.rows.index.to_numpy()[clash]
    written = [_written(checked.raw, name, positions) for name in key]
    named = [f"{name} '" + values + "'" for name, values in zip(key, written, strict=True)]
    reason = "conflicting rows share the key " + named[0]
    value = written[0]
    for more_named, more_value in zip(named[1:], written[1:], strict=True):
        reason, value = reason + ", " + more_named, value + ", " + more_value
    checked.add(positions, ", ".join(key), reason, value)


def _check_times(checked: _Checked, now: pd.Timestamp) -> None:
    """Reject times after ``now`` + tolerance and, for deals, inconsistent closing."""
    rows = checked.rows
    latest = now + EXPORT_FUTURE_TOLERANCE
    for column in checked.table.columns:
        if column.type == "datetime":
            checked.reject((rows[column.name] > latest).to_numpy(), column.name, "is in the future")
    if checked.table.name != DEALS.name:
        return
    closed = rows["closed_at"].notna().to_numpy()
    final = rows["status"].isin(CLOSED_STATUSES).to_numpy()
    checked.reject(~final & closed, "closed_at", "must be empty when status is open")
    before = (rows["closed_at"] < rows["created_at"]).to_numpy()
    checked.reject(before, "closed_at", "must not be before created_at")


def _check_references(
    checked: _Checked, done: Mapping[str, _Checked], stored: StoredTables
) -> None:
    """References to parent tables, checked when the parent is in the export or stored
    (only the stored rows the export names are looked at: :meth:`StoredTables.rows`)."""
    for column, parent, parent_column in checked.table.references:
        if parent not in done and parent not in stored:
            continue
        values = checked.rows[column]
        # Each distinct value is looked up once: millions of activities name a hundred
        # thousand deals, and Series.isin hashed every row (a missing value, code -1,
        # needs no parent).
        codes, distinct = pd.factorize(values)
        known = np.zeros(len(distinct) + 1, dtype=bool)
        known[-1] = True
        if parent in done:
            known[:-1] |= distinct.isin(done[parent].valid[parent_column])
        if parent in stored:
            named = stored.rows(parent, parent_column, distinct)[parent_column]
            known[:-1] |= distinct.isin(named)
        found = known[codes]
        if found.all():
            continue
        missing = values[~found]
        reason = (f"{column} '" + missing + f"' not found in {parent}").to_numpy(dtype=object)
        if parent in done:
            # Say why, when the parent row was in the export but was rejected.
            parent_raw = done[parent].raw[parent_column].iloc[done[parent].rejected]
            was_rejected = missing.isin(_clean_text(parent_raw)).to_numpy()
            reason[was_rejected] += f" (its row in {done[parent].path.name} was rejected)"
        checked.reject(~found, column, reason)


def _check_after_deal_creation(
    checked: _Checked, done: Mapping[str, _Checked], stored: StoredTables
) -> None:
    """Times that must not be before the deal's creation, as it will be after the merge."""
    time_column = AFTER_DEAL_CREATION.get(checked.table.name)
    deal_key = DEALS.key[0]
    if time_column is None or (DEALS.name not in stored and DEALS.name not in done):
        return
    # Looked up once per distinct deal, as in _check_references; -1 (missing) gives NaT.
    codes, distinct = pd.factorize(checked.rows[deal_key])
    frames = [stored.rows(DEALS.name, deal_key, distinct)] if DEALS.name in stored else []
    frames += [done[DEALS.name].valid] if DEALS.name in done else []
    deals = pd.concat([f[[deal_key, "created_at"]] for f in frames], ignore_index=True)
    created = deals.drop_duplicates(deal_key, keep="last").set_index(deal_key)["created_at"]
    deal_created = pd.Series(
        pd.Series(distinct).map(created).array.take(codes, allow_fill=True),
        index=checked.rows.index,
        name=deal_key,
    )
    early = (checked.rows[time_column] < deal_created).to_numpy()
    if early.any():
        when = deal_created[early].dt.strftime("%Y-%m-%dT%H:%M:%SZ").to_numpy(dtype=object)
        checked.reject(early, time_column, "is before the deal's created_at " + when)


def _previous_deal_problems(
    rows: pd.DataFrame, known: pd.DataFrame, rejected_ids: pd.Series
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``rows`` whose ``previous_deal_id`` breaks the rule, and the reason of each.

    ``known`` holds the deals a previous deal may be (indexed by deal_id: account_id,
    created_at); ``rejected_ids`` the ids of export rows that were rejected, to say why
    a deal is not found.
    """
    previous = rows[PREVIOUS_DEAL]
    linked = previous.notna().to_numpy()
    found = previous.isin(known.index).to_numpy()
    account = previous.map(known["account_id"])
    created = previous.map(known["created_at"])
    self_link = (previous == rows[DEALS.key[0]]).to_numpy(dtype=bool, na_value=False)
    no_account = rows["account_id"].isna().to_numpy()
    other_account = ~(account == rows["account_id"]).to_numpy(dtype=bool, na_value=False)
    not_earlier = (created >= rows["created_at"]).to_numpy(dtype=bool, na_value=False)
    quoted = "previous deal '" + previous.astype(object).fillna("") + "'"
    given = quoted + " is with account '" + account.astype(object).fillna("") + "'"
    when = created.dt.strftime("%Y-%m-%dT%H:%M:%SZ").astype(object).fillna("")
    reason = np.select(
        [
            ~found,
            self_link,
            no_account,
            other_account,
            not_earlier,
        ],
        [
            (
                quoted
                + " not found in deals"
                + np.where(previous.isin(rejected_ids), " (its row was rejected)", "")
            ).to_numpy(dtype=object),
            "must not be the deal itself",
            "needs the deal's account_id: a previous deal is of the same account",
            (given + ", not '" + rows["account_id"].astype(object).fillna("") + "'").to_numpy(
                dtype=object
            ),
            (quoted + " was created at " + when + ", not before this deal").to_numpy(dtype=object),
        ],
        "",
    )
    bad = linked & (reason != "")
    return bad, reason[bad]


def _check_previous_deals(checked: _Checked, stored: StoredTables) -> None:
    """``deals.previous_deal_id``: an earlier deal of the same account (export or stored).

    The previous deal is looked up as it will be after the merge (the export's valid
    version, else the stored one). Rejecting a deal can orphan a deal that follows it,
    so the check repeats until it rejects nothing more (chains are short: a few rounds).
    """
    if checked.table.name != DEALS.name or not checked.rows[PREVIOUS_DEAL].notna().any():
        return
    key, columns = DEALS.key[0], [DEALS.key[0], "account_id", "created_at"]
    previous = checked.rows[PREVIOUS_DEAL].dropna().unique()
    earlier = stored.rows(DEALS.name, key, previous) if DEALS.name in stored else None
    while True:
        rejected = _positions(checked.problems)
        valid = ~checked.rows.index.isin(rejected)
        versions = [f[columns] for f in (earlier, checked.rows[valid]) if f is not None]
        known = (
            pd.concat(versions, ignore_index=True).drop_duplicates(key, keep="last").set_index(key)
        )
        rejected_ids = _clean_text(checked.raw[key].iloc[rejected])
        bad, reasons = _previous_deal_problems(checked.rows[valid], known, rejected_ids)
        if not bad.any():
            return
        mask = np.zeros(len(checked.rows), dtype=bool)
        mask[np.flatnonzero(valid)[bad]] = True
        checked.reject(mask, PREVIOUS_DEAL, reasons)


def _table_order(names: Iterable[str]) -> list[str]:
    """Parents before children, so children are checked against validated parents."""
    graph = {name: {parent for _, parent, _ in t.references} for name, t in TABLES.items()}
    wanted = set(names)
    return [name for name in TopologicalSorter(graph).static_order() if name in wanted]


def _record_lines(path: Path, rows: int) -> np.ndarray:
    """The line each data row of a CSV starts on (header = line 1), by row position.

    Usually row ``i`` is on line ``i + 2``: that holds when the file has exactly one line
    per row plus the header, checked by counting line breaks. Otherwise (a quoted value
    with a line break, blank lines, which the reader skips) the file is read once more
    record by record, counting physical lines, as an editor shows them.
    """
    data = path.read_bytes()
    lines = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
    if lines == rows + 1:
        return np.arange(rows, dtype=np.int64) + 2
    starts: list[int] = []
    reader = csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""))
    before = 0
    for record in reader:
        if record:  # blank lines are skipped by the reader of the rows, as here
            starts.append(before + 1)
        before = reader.line_num
    return np.asarray(starts[1 : rows + 1], dtype=np.int64)


def _file_lines(path: Path, positions: np.ndarray, rows: int) -> np.ndarray:
    """:attr:`Reject.line` of rows given by position: the CSV line, or the Parquet row."""
    if place_word(path.name) == "row":
        return positions + 1
    return _record_lines(path, rows)[positions]


def _rejects_frame(checked: Iterable[_Checked]) -> pd.DataFrame:
    """All problems as one frame in ``rejects.csv`` layout, by table and line."""
    parts = []
    for c in checked:
        if c.problems:
            problems = pd.concat(c.problems, ignore_index=True).sort_values(
                "position", kind="stable"
            )
            parts.append(
                pd.DataFrame(
                    {
                        "table": c.table.name,
                        "file": c.path.name,
                        "line": _file_lines(c.path, problems["position"].to_numpy(), len(c.raw)),
                        "column": problems["column"].to_numpy(),
                        "value": problems["value"].to_numpy(),
                        "reason": problems["reason"].to_numpy(),
                    }
                )
            )
    if not parts:
        return pd.DataFrame(
            {n: pd.Series(dtype="int64" if n == "line" else object) for n in REJECT_COLUMNS}
        )
    return pd.concat(parts, ignore_index=True)


def _as_rejects(frame: pd.DataFrame) -> list[Reject]:
    """The public list form; ``tolist`` gives plain ints and strs, not numpy scalars."""
    return [Reject(*row) for row in zip(*(frame[c].tolist() for c in REJECT_COLUMNS), strict=True)]


def _validate(
    raw: Mapping[str, tuple[Path, pd.DataFrame]],
    stored: Mapping[str, pd.DataFrame],
    now: pd.Timestamp,
    progress: Progress = no_progress,
    attributes: Sequence[Attribute] = (),
) -> tuple[dict[str, _Checked], pd.DataFrame]:
    """Check every table, parents first; shared by :func:`validate_tables` and ingest.

    ``progress`` counts rows (task ``validate export``), table by table. Declared
    ``attributes`` are checked as optional columns of their table (numbers parsed).
    """
    if not isinstance(stored, StoredTables):
        stored = StoredTables(stored)  # a validation's own: its rows are picked as an ingest's
    done: dict[str, _Checked] = {}
    rows, total = 0, sum(len(frame) for _, frame in raw.values())
    for name in _table_order(raw):
        path, frame = raw[name]
        progress("validate export", rows, total, unit="rows", detail=path.name)
        table = with_attributes(TABLES[name], attributes)
        checked = _column_checks(table, path, _prepare(table, path, frame))
        _check_duplicates(checked)
        _check_times(checked, now)
        _check_references(checked, done, stored)
        _check_after_deal_creation(checked, done, stored)
        _check_previous_deals(checked, stored)
        done[name] = checked
        rows += len(frame)
    progress("validate export", rows, total, unit="rows")
    return done, _rejects_frame(done.values())


def validate_tables(
    raw: dict[str, tuple[Path, pd.DataFrame]],
    stored: dict[str, pd.DataFrame] | None = None,
    now: pd.Timestamp | None = None,
    attributes: Sequence[Attribute] = (),
) -> tuple[dict[str, pd.DataFrame], list[Reject]]:
    """Validate raw export tables; return the valid typed rows per table and the rejects.

    ``stored`` tables satisfy references the export does not (see the module notes);
    ``now`` (default: the current time; naive means UTC) bounds times in the future;
    declared ``attributes`` are checked as columns of their table.
    """
    checked, rejects = _validate(
        raw, stored or {}, utc_now() if now is None else as_utc(now), attributes=attributes
    )
    return {name: c.valid for name, c in checked.items()}, _as_rejects(rejects)


# --------------------------------------------------------------------------- merging


class StoredTables(Mapping[str, pd.DataFrame]):
    """The stored tables, each as pandas to whoever reads it whole, held as Arrow until then.

    A re-ingest reads every stored table and changes a few of their rows: making the
    Python objects of a million deals' 27 million activities cost it more than the merge
    (``docs/scaling.md``, "At a million deals"). So the tables are read as Arrow, merged
    and written as Arrow (:func:`_upsert`), and their rows a change reaches are found in
    Arrow (:meth:`rows`); a table becomes pandas (:func:`_frame`, the frame
    :func:`load_stored` gives) when ``tables[name]`` asks for it, once. A table an ingest
    built from its export alone (a first ingest) is held as the pandas frame it is.
    """

    def __init__(self, tables: Mapping[str, pd.DataFrame | pyarrow.Table] | None = None) -> None:
        self._arrow: dict[str, pyarrow.Table] = {}
        self._frames: dict[str, pd.DataFrame] = {}
        self._names: list[str] = []
        for name, table in (tables or {}).items():
            self.put(name, table)

    def put(self, name: str, table: pd.DataFrame | pyarrow.Table) -> None:
        """Hold ``table`` (Arrow or pandas) as ``name``, in place of any earlier one."""
        if name not in self._names:
            self._names.append(name)
        self._arrow.pop(name, None)
        self._frames.pop(name, None)
        if isinstance(table, pyarrow.Table):
            self._arrow[name] = table
        else:
            self._frames[name] = table

    def __getitem__(self, name: str) -> pd.DataFrame:
        frame = self._frames.get(name)
        if frame is None:
            frame = self._frames[name] = _frame(self._arrow[name])
        return frame

    def __contains__(self, name: object) -> bool:
        return name in self._arrow or name in self._frames

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._names))

    def __len__(self) -> int:
        return len(self._names)

    def arrow(self, name: str) -> pyarrow.Table | None:
        """The table as Arrow when it is held so (read from a file, or merged into one);
        None when absent or built as pandas."""
        return self._arrow.get(name)

    def columns(self, name: str, names: Sequence[str]) -> pd.DataFrame:
        """Only ``names`` of table ``name``, as pandas (as :meth:`__getitem__` gives
        them): a re-ingest's reach reads two columns of a million deals, not fifteen."""
        if name in self._frames:
            return self._frames[name][list(names)]
        return _frame(self._arrow[name].select(list(names)))

    def num_rows(self, name: str) -> int:
        """The rows of table ``name``, without making it pandas."""
        if name in self._frames:
            return len(self._frames[name])
        return self._arrow[name].num_rows

    def empty(self, name: str) -> pd.DataFrame:
        """The table without rows, with its columns and their pandas types."""
        if name in self._frames:
            return self._frames[name].iloc[:0]
        return _frame(self._arrow[name].slice(0, 0))

    def rows(self, name: str, column: str, values: Collection[str]) -> pd.DataFrame:
        """The rows of table ``name`` whose ``column`` is one of ``values`` (a missing
        value is none), in the table's order, as pandas with a fresh index.

        Arrow picks them when the table is held as Arrow: ``astype(str).isin`` on a
        million deals' 27 million activity deal ids took 9 s of a re-ingest for a few
        thousand deals' rows.
        """
        wanted = list(values)
        if name in self._frames:
            frame = self._frames[name]
            return frame[frame[column].isin(wanted).to_numpy(dtype=bool)].reset_index(drop=True)
        table = self._arrow[name]
        found = pc.is_in(table[column], value_set=pyarrow.array(wanted, table[column].type))
        return _frame(table.filter(found))


def read_stored(crm_dir: Path) -> StoredTables:
    """Every stored table in ``crm_dir``, as Arrow (:class:`StoredTables`): what ingest
    merges an export into."""
    paths = {name: Path(crm_dir) / f"{name}.parquet" for name in TABLES}
    return StoredTables(
        {name: pq.read_table(path) for name, path in paths.items() if path.is_file()}
    )


def load_stored(crm_dir: Path, names: Iterable[str] | None = None) -> dict[str, pd.DataFrame]:
    """The stored tables (``<table>.parquet`` in ``crm_dir``); absent tables are left out.

    ``names`` limits the read to those tables: callers that need only deals should not
    read millions of activities. Each is the frame ``pd.read_parquet`` gives, with the
    repeated texts of a column shared (:func:`_read_parquet`): a re-ingest reads every
    stored table, and one ``str`` per cell was the peak of a re-ingest at 200,000
    deals (2.56 GiB, 2.18 shared).
    """
    paths = {name: Path(crm_dir) / f"{name}.parquet" for name in (names or TABLES)}
    return {name: _read_parquet(path) for name, path in paths.items() if path.is_file()}


def last_recorded_event(crm_dir: Path) -> pd.Timestamp | None:
    """The latest time in the stored tables (any contract time column), None when none.

    It is the export's clock: an export cut years ago says nothing about today, so
    ranking and scoring default to this moment rather than now when it is well past
    (:func:`leadscore.priority.rank.default_as_of`). Only the time columns are read,
    and only when a stored file changed since the last call (the service asks per request).
    """
    files = []
    for name in TABLES:
        path = Path(crm_dir) / f"{name}.parquet"
        if path.is_file():
            stat = path.stat()
            files.append((name, str(path), stat.st_mtime_ns, stat.st_size))
    return _last_event(tuple(files))


def historical_as_of(crm_dir: Path, now: pd.Timestamp) -> pd.Timestamp | None:
    """The stored export's last recorded event when it is more than a day
    (:data:`EXPORT_FUTURE_TOLERANCE`) before ``now``, else None (the export is current).

    The default moment for ranking and scoring stored deals of a historical export.
    """
    last = last_recorded_event(crm_dir)
    return last if last is not None and last < now - EXPORT_FUTURE_TOLERANCE else None


@lru_cache(maxsize=8)
def _last_event(files: tuple[tuple[str, str, int, int], ...]) -> pd.Timestamp | None:
    """:func:`last_recorded_event` of these (table, path, mtime, size) files."""
    latest: pd.Timestamp | None = None
    for name, path, _, _ in files:
        times = [c.name for c in TABLES[name].columns if c.type == "datetime"]
        for _, column in pd.read_parquet(path, columns=times).items():
            value = column.max()
            if pd.notna(value) and (latest is None or value > latest):
                latest = as_utc(value)
    return latest


def stored_deals(crm_dir: Path) -> pd.DataFrame:
    """The stored deals table; a clear error when nothing was ingested yet."""
    tables = load_stored(crm_dir, ["deals"])
    if "deals" not in tables:
        raise FileNotFoundError(
            f"no deals stored in {crm_dir}; run `leadscore ingest EXPORT_DIR` first"
        )
    return tables["deals"]


def _conform(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """``frame`` with exactly ``columns``; absent (extra) columns are added as missing text.

    ``frame`` itself when it has them already, in that order (callers only read it): a
    copy of millions of activities per call made the upsert the peak of an ingest."""
    if list(frame.columns) == columns:
        return frame
    absent = {
        c: pd.Series(None, index=frame.index, dtype=object) for c in columns if c not in frame
    }
    return frame.assign(**absent)[columns]


def _same(old: pd.Series, new: pd.Series) -> np.ndarray:
    """Element-wise equality where two missing values count as equal."""
    equal = (old == new).to_numpy(dtype=bool, na_value=False)
    return equal | (old.isna().to_numpy() & new.isna().to_numpy())


def _upsert(
    stored: pyarrow.Table | None, new: pd.DataFrame, table: Table
) -> tuple[pd.DataFrame | pyarrow.Table | None, dict[str, int], TableChange]:
    """Replace stored rows by their new version and add rows with new keys.

    Returns the merged table sorted by key (:func:`_merged`, Arrow, when rows were
    stored; the export's rows sorted, pandas, on a first ingest), or ``None`` when
    nothing changed (so an unchanged table is not rewritten), the
    inserted/updated/unchanged counts, and the rows inserted or updated with the stored
    versions they replace. Only the stored rows the export names become pandas.
    """
    stored_columns = [] if stored is None else stored.column_names
    columns = list(dict.fromkeys([*table.column_names, *stored_columns, *new.columns]))
    at = _stored_positions(stored, new, table.key)
    known = at >= 0
    old = _conform(new.iloc[:0] if stored is None else _frame(_take(stored, at[known])), columns)
    current = _conform(new[known], columns).reset_index(drop=True)
    same = np.ones(len(current), dtype=bool)
    for column in columns:
        same &= _same(old[column], current[column])
    counts = {
        "inserted": int((~known).sum()),
        "updated": int((~same).sum()),
        "unchanged": int(same.sum()),
    }
    reaching = [c for c in columns if c in CHANGE_COLUMNS]
    inserted = new[[c for c in reaching if c in new]]
    inserted = _conform(inserted[~known] if known.any() else inserted, reaching)
    change = TableChange(
        new=pd.concat([inserted, current.loc[~same, reaching]], ignore_index=True),
        old=old[~same].reset_index(drop=True),
    )
    if counts["inserted"] == 0 and counts["updated"] == 0:
        return None, counts, change
    if stored is None:
        return _key_sorted(_conform(new, columns), table.key), counts, change
    return _merged(stored, np.sort(at[known]), _conform(new, columns), table), counts, change


def _key_sorted(frame: pd.DataFrame, key: tuple[str, ...]) -> pd.DataFrame:
    """``frame`` sorted by ``key`` as a stable sort sorts it: a first ingest's table.

    ``frame`` itself (a shallow copy) when it is in key order already, as an export
    written by id is; otherwise each column is put in order on its own, without
    consolidating the frame's columns first.
    """
    order = _key_order(frame, key)
    if order is None and not _in_key_order(frame, key):
        order = frame[list(key)].reset_index(drop=True).sort_values(list(key), kind="stable")
        order = order.index.to_numpy()
    if order is not None and bool((order == np.arange(len(order))).all()):
        order = None
    columns = {}
    for name in frame.columns:
        values = frame[name].copy(deep=False) if order is None else frame[name].take(order)
        values.index = pd.RangeIndex(len(values))  # its own index: no copy of the values
        columns[name] = values
    return pd.DataFrame(columns, copy=False)


def _key_order(frame: pd.DataFrame, key: tuple[str, ...]) -> np.ndarray | None:
    """The positions that sort ``frame`` by a one-column text key, as a stable sort does;
    None for another key (the caller sorts the general way)."""
    if len(key) != 1:
        return None
    keys = frame[key[0]].to_numpy(dtype=object)
    if pd.api.types.infer_dtype(keys, skipna=False) != "string":
        return None
    return np.argsort(keys, kind="stable")


def _in_key_order(frame: pd.DataFrame, key: tuple[str, ...]) -> bool:
    """Whether a stable sort by ``key`` leaves the rows where they are: no key value is
    missing and the rows are in non-decreasing key order (composite keys compared column
    after column). An export written in key order (stage history by deal and time) then
    needs no sort; a key of another type than text or times answers False.
    """
    tied = np.ones(max(len(frame) - 1, 0), dtype=bool)
    for name in key:
        column = frame[name]
        if column.isna().any():
            return False
        if pd.api.types.is_datetime64_any_dtype(column):
            values = column.astype("int64").to_numpy()  # the instants, in order
        elif pd.api.types.infer_dtype(column, skipna=False) == "string":
            values = np.asarray(column, dtype=object)
        else:
            return False
        before, after = values[:-1], values[1:]
        if (tied & (before > after)).any():
            return False
        tied &= before == after
    return True


def _stored_positions(
    stored: pyarrow.Table | None, new: pd.DataFrame, key: tuple[str, ...]
) -> np.ndarray:
    """Where each of ``new``'s keys is among ``stored``'s rows, -1 where it is not: the
    ``get_indexer`` of the key index.

    Arrow finds the stored rows whose first key column holds one of the export's values
    (a hash of the export's few thousand values, not of 27 million stored activity ids);
    only those rows' keys become pandas, and the key index is theirs.
    """
    if stored is None or stored.num_rows == 0 or not len(new):
        return np.full(len(new), -1, dtype=np.intp)  # a first ingest: nothing to find
    first = stored.column(key[0])
    wanted = pyarrow.array(new[key[0]], from_pandas=True).cast(first.type)
    hit = pc.is_in(first, value_set=pc.unique(wanted)).to_numpy(zero_copy_only=False)
    candidates = np.flatnonzero(hit)
    if not len(candidates):
        return np.full(len(new), -1, dtype=np.intp)
    found = _frame(_take(stored.select(list(key)), candidates))
    at = _key_index(found, key).get_indexer(_key_index(new, key))
    return np.where(at >= 0, candidates[np.maximum(at, 0)], -1)


def _take(table: pyarrow.Table, at: np.ndarray) -> pyarrow.Table:
    """``table.take(at)``, one chunk, taken from each chunk on its own: Arrow's take of a
    chunked text column concatenates its chunks first, a copy of a million deals' 27
    million activity ids for each handful of rows taken."""
    batches = table.to_batches()
    ends = np.cumsum([b.num_rows for b in batches], dtype=np.int64)
    which = np.searchsorted(ends, at, side="right")
    order = np.argsort(which, kind="stable")
    by_batch = at[order]
    bounds = np.searchsorted(which[order], np.arange(len(batches) + 1))
    parts = [
        batch.take(pyarrow.array(by_batch[lo:hi] - (end - batch.num_rows), pyarrow.int64()))
        for batch, end, lo, hi in zip(batches, ends, bounds[:-1], bounds[1:], strict=True)
        if hi > lo
    ]
    taken = pyarrow.Table.from_batches(parts, schema=table.schema).combine_chunks()
    return taken.take(pyarrow.array(np.argsort(order), pyarrow.int64()))


#: A merge of at most this many pieces (runs of stored rows, runs of new rows) is
#: their zero-copy slices; more (an export that changes rows everywhere) is one take.
_MOST_SLICES = 4096


def _merged(
    stored: pyarrow.Table, replaced: np.ndarray, new: pd.DataFrame, table: Table
) -> pyarrow.Table:
    """The ``stored`` rows but those at ``replaced`` (sorted positions) and the ``new``
    ones (with every column of the merge), sorted by the table's key as a stable sort
    of the two one after the other sorts them; in Arrow, typed as the file is written.

    Stored tables are written in key order, so each new row finds its place among the
    stored ones by a binary search and the merge is slices of the stored table between
    the new rows: no copy of the stored rows, none of them made a Python object (the
    pandas merge of a million deals' 27 million activities took seconds of every
    re-ingest, and their objects more). A stored table out of key order, or a key with a
    missing value, is sorted whole (Arrow's sort is stable, missing values last, as
    pandas').
    """
    schema = _merged_schema(stored, len(replaced), new, table)
    rows = _as_schema(stored, schema)
    added = _as_schema(
        pyarrow.Table.from_pandas(
            new, schema=_file_schema(schema.names, table), preserve_index=False
        ),
        schema,
    )
    key = list(table.key)
    by_key = [(name, "ascending") for name in key]
    gaps = any(t.column(name).null_count for t in (rows, added) for name in key)
    if gaps or not _arrow_in_key_order([rows.column(name) for name in key]):
        kept = rows.take(np.delete(np.arange(rows.num_rows), replaced))
        joined = pyarrow.concat_tables([kept, added])
        return joined.take(pc.sort_indices(joined, sort_keys=by_key))  # missing values last
    added = added.take(pc.sort_indices(added, sort_keys=by_key))
    places = _search_right(
        [rows.column(name) for name in key], [added.column(name).combine_chunks() for name in key]
    )
    return _assembled((rows, added), *_merge_pieces(rows.num_rows, replaced, places))


def _key_le(left: Sequence[Any], right: Sequence[Any]) -> Any:
    """Arrow booleans: whether each key of ``left`` (one array per key column) is at or
    before the same row's key of ``right``, comparing column after column."""
    result = pc.less_equal(left[-1], right[-1])
    for lower, upper in zip(reversed(left[:-1]), reversed(right[:-1]), strict=True):
        result = pc.or_(pc.less(lower, upper), pc.and_(pc.equal(lower, upper), result))
    return result


def _arrow_in_key_order(key: Sequence[pyarrow.ChunkedArray]) -> bool:
    """Whether the rows of these key columns (no value missing) are in non-decreasing
    key order."""
    n = len(key[0])
    if n < 2:
        return True
    before, after = [c.slice(0, n - 1) for c in key], [c.slice(1) for c in key]
    return bool(pc.all(_key_le(before, after)).as_py())


def _search_right(
    key: Sequence[pyarrow.ChunkedArray], probes: Sequence[pyarrow.Array]
) -> np.ndarray:
    """For each probe key, how many rows of ``key`` (columns in key order, none missing)
    are at or before it: ``searchsorted(side="right")``, every probe at once, a row of
    the stored key taken per probe and step."""
    n = len(key[0])
    keys = pyarrow.table(list(key), names=[str(i) for i in range(len(key))])
    low = np.zeros(len(probes[0]), dtype=np.int64)
    high = np.full(len(probes[0]), n, dtype=np.int64)
    while (open_ := low < high).any():
        middle = (low + high) // 2
        at = _take(keys, np.minimum(middle, n - 1))
        le = _key_le(at.columns, probes).to_numpy(zero_copy_only=False)
        low = np.where(open_ & le, middle + 1, low)
        high = np.where(open_ & ~le, middle, high)
    return low


def _merge_pieces(
    n: int, replaced: np.ndarray, places: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The merge as pieces in order: which table (0 the ``n`` stored rows, 1 the new rows
    in key order), and the rows ``[begin, end)`` of it.

    The stored rows are cut at each ``replaced`` row (left out) and where a new row goes
    (``places``: before that stored row); new rows go before the stored run that
    starts where they go, in their order. Runs that continue each other make one piece.
    """
    cuts = np.unique(np.concatenate([[0, n], replaced, replaced + 1, places]))
    begin, end = cuts[:-1], cuts[1:]
    kept = ~np.isin(begin, replaced)  # a run that starts at a replaced row is that row
    begin, end = begin[kept], end[kept]
    m = len(places)
    side = np.concatenate([np.zeros(len(begin), dtype=np.int8), np.ones(m, dtype=np.int8)])
    starts = np.concatenate([begin, np.arange(m)])
    ends = np.concatenate([end, np.arange(m) + 1])
    order = np.lexsort((starts, 1 - side, np.concatenate([begin, places])))
    side, starts, ends = side[order], starts[order], ends[order]
    piece = np.ones(len(side), dtype=bool)
    piece[1:] = (side[1:] != side[:-1]) | (starts[1:] != ends[:-1])
    first = np.flatnonzero(piece)
    last = np.append(first[1:], len(side)) - 1
    return side[first], starts[first], ends[last]


def _assembled(
    parts: tuple[pyarrow.Table, pyarrow.Table],
    side: np.ndarray,
    begin: np.ndarray,
    end: np.ndarray,
) -> pyarrow.Table:
    """The rows ``[begin, end)`` of ``parts[side]``, piece after piece: zero-copy slices,
    or one take when there are more than :data:`_MOST_SLICES` pieces."""
    if len(side) <= _MOST_SLICES:
        return pyarrow.concat_tables(
            [parts[s].slice(b, e - b) for s, b, e in zip(side, begin, end, strict=True)]
        )
    lengths = end - begin
    first = np.where(side == 0, 0, parts[0].num_rows) + begin - (np.cumsum(lengths) - lengths)
    return pyarrow.concat_tables(parts).take(
        np.repeat(first, lengths) + np.arange(int(lengths.sum()))
    )


def _file_schema(columns: Sequence[str], table: Table) -> pyarrow.Schema:
    """The Arrow types a stored table is written with: the contract's, text for the
    extra columns (so an all-missing column keeps its contract type)."""
    types = {c.name: _ARROW_TYPES[c.type] for c in table.columns}
    return pyarrow.schema([(c, types.get(c, pyarrow.string())) for c in columns])


def _merged_schema(
    stored: pyarrow.Table, n_replaced: int, new: pd.DataFrame, table: Table
) -> pyarrow.Schema:
    """:func:`_file_schema` of the merge, with the pandas metadata (each column's pandas
    type) that writing the merge from pandas records: the type a column of the kept
    stored rows and the new rows concatenated takes, as in :func:`_frame` of the stored
    rows. The bytes of the file depend on it."""
    columns = list(new.columns)
    heads = [_conform(_frame(stored.slice(0, 1)), columns)] if stored.num_rows > n_replaced else []
    heads += [new.iloc[:1]] if len(new) else []
    head = pd.concat(heads, ignore_index=True) if len(heads) == 2 else (heads or [new.iloc[:0]])[0]
    schema = _file_schema(columns, table)
    return pyarrow.Table.from_pandas(head, schema=schema, preserve_index=False).schema


def _as_schema(rows: pyarrow.Table, schema: pyarrow.Schema) -> pyarrow.Table:
    """``rows`` with exactly the columns of ``schema``, of its types (an absent column
    all missing), and its metadata."""
    columns = [
        (
            pyarrow.chunked_array([pyarrow.nulls(rows.num_rows, f.type)])
            if f.name not in rows.column_names
            else rows.column(f.name)
            if rows.schema.field(f.name).type == f.type
            else rows.column(f.name).cast(f.type)
        )
        for f in schema
    ]
    return pyarrow.Table.from_arrays(columns, schema=schema)


#: Rows per row group of a stored table: pyarrow's default, which every stored table
#: was written with.
_ROW_GROUP_ROWS = 1024 * 1024


def _parquet_writer(data: pd.DataFrame | pyarrow.Table, table: Table) -> Callable[[Path], None]:
    """Write with fixed Parquet types (:func:`_file_schema`; an Arrow table has them
    already) and dictionaries for text only (:func:`leadscore.parquetio.writer_options`).

    A row group at a time, each made one chunk: the merge of a re-ingest is thousands of
    slices, and Parquet writes a chunked column other bytes (and slower) than one chunk.
    """

    def write(path: Path) -> None:
        arrow = (
            data
            if isinstance(data, pyarrow.Table)
            else pyarrow.Table.from_pandas(
                data, schema=_file_schema(list(data.columns), table), preserve_index=False
            )
        )
        with pq.ParquetWriter(path, arrow.schema, **writer_options(arrow.schema)) as writer:
            for start in range(0, max(arrow.num_rows, 1), _ROW_GROUP_ROWS):
                writer.write_table(arrow.slice(start, _ROW_GROUP_ROWS).combine_chunks())

    return write


def _replace_files(writers: Mapping[Path, Callable[[Path], None]]) -> None:
    """Write every file to a temporary sibling first, then move them all into place.

    ``os.replace`` is atomic per file: readers see the old or the new version, and a
    failure while writing leaves every target as it was.
    """
    temporary: dict[Path, Path] = {}
    try:
        for target, write in writers.items():
            target.parent.mkdir(parents=True, exist_ok=True)
            temporary[target] = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
            write(temporary[target])
            digest_ahead(temporary[target])  # here, on the writing thread, not at the commit
            crash_point("ingest.table_written")
        for target, temp in temporary.items():
            os.replace(temp, target)
    finally:
        for temp in temporary.values():
            temp.unlink(missing_ok=True)


def _text_writer(text: str) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        path.write_text(text, encoding="utf-8")

    return write


def ingest_export(
    export_dir: Path,
    crm_dir: Path,
    rejects_dir: Path,
    now: pd.Timestamp | None = None,
    progress: Progress = no_progress,
    rejects_shown_at: Path | None = None,
    write_to: Path | None = None,
    write_behind: bool = False,
) -> IngestResult:
    """Validate ``export_dir`` and upsert its valid rows into the tables in ``crm_dir``.

    All rejects of the run go to ``rejects_dir/rejects.csv`` (header only when there
    are none). Running it twice on the same export leaves the store byte-identical.
    ``rejects_shown_at`` is the folder messages name for the rejects (default
    ``rejects_dir``): where the file will be once the caller has committed its state.
    ``write_to`` (default ``crm_dir``) receives the tables that changed, for a caller
    that commits a new folder of tables (:mod:`leadscore.pipeline_state`).
    ``progress`` hears of files read and rows validated.

    ``write_behind`` (for such a caller) writes the changed tables on a thread when every
    one of them is Arrow already, as a re-ingest's merged tables are, and returns at once:
    the caller builds the feature sources meanwhile and calls
    :meth:`IngestResult.wait_written` before committing. Parquet encoding releases the
    GIL, so the two overlap on two cores; at a million deals the 27 million stored
    activities took 16 s to write before the sources' rebuild could start. A first
    ingest's tables are pandas and are written before it returns, as without it: made
    Arrow early they would be held beside the frames the sources are built from.
    """
    raw = read_export(Path(export_dir), progress)
    stored = read_stored(Path(crm_dir))
    declared = (Path(export_dir) / ATTRIBUTES_FILE).is_file()
    try:
        attributes = read_attributes(Path(export_dir) if declared else Path(crm_dir))
    except AttributesError as exc:
        raise ExportError(str(exc)) from exc
    checked, rejects = _validate(
        raw, stored, utc_now() if now is None else as_utc(now), progress, attributes
    )
    del raw  # the frames as read: each table's are let go once its valid rows are stored
    files = {name: c.path for name, c in checked.items()}

    before = (
        StoredTables({n: t for n in stored if (t := stored.arrow(n)) is not None})
        if DEALS.name in stored
        else None
    )
    tables = stored  # each merged table takes the place of the one read
    counts: dict[str, dict[str, int]] = {}
    changes: dict[str, TableChange] = {}
    writers: dict[Path, Callable[[Path], None]] = {}
    all_arrow = True  # every table written is Arrow: nothing to convert on a thread
    for name in list(checked):
        c = checked.pop(name)
        merged, merge_counts, changes[name] = _upsert(stored.arrow(name), c.valid, c.table)
        counts[name] = {
            "read": len(c.raw),
            "valid": len(c.valid),
            "rejected": len(c.rejected),
            "duplicates": c.duplicates,
            **merge_counts,
        }
        if merged is not None:
            tables.put(name, merged)
            target = Path(write_to or crm_dir) / f"{name}.parquet"
            writers[target] = _parquet_writer(merged, c.table)
            all_arrow &= isinstance(merged, pyarrow.Table)
        log.info("%s: %s", c.path.name, ", ".join(f"{k} {v}" for k, v in counts[name].items()))
    rejects_path = Path(rejects_dir) / REJECTS_FILE
    shown = Path(rejects_shown_at or rejects_dir) / REJECTS_FILE
    writers[rejects_path] = lambda path: write_csv(rejects, path, encoding="utf-8")
    if declared:  # beside the tables it describes, replaced with them
        writers[Path(write_to or crm_dir) / ATTRIBUTES_FILE] = _text_writer(
            attributes_json(attributes)
        )
    written = None
    if write_behind and all_arrow:
        pool = ThreadPoolExecutor(1, thread_name_prefix="write-tables")
        written = pool.submit(_replace_files, writers)
        pool.shutdown(wait=False)  # the thread ends with its one task
    else:
        _replace_files(writers)
    if len(rejects):
        log.warning("%d problems in %s, listed in %s", len(rejects), export_dir, shown)
    return IngestResult(
        tables=tables,
        counts=counts,
        rejects=_as_rejects(rejects),
        files=files,
        attributes=attributes,
        changes=changes,
        written=written,
        before=before,
    )
