"""Read source files (CSV, TSV or XLSX) as text columns, batch by batch, with each row's line.

CRM exports come in whatever the CRM or the spreadsheet wrote: UTF-8 with or without a
byte-order mark, GB18030/GBK from a Chinese Excel, Windows-1252/Latin-1 from an older
European one; commas, semicolons, tabs or pipes; quoted fields with line breaks. The
encoding and delimiter are detected and reported, never assumed silently.

A CSV file is read by Arrow's streaming reader in blocks of :data:`BLOCK_SIZE` bytes,
every column as text (``D0001`` must not become a number, ``NA`` not missing), so an
import holds one block's rows at a time and its memory does not grow with the file. A
row with the wrong number of fields is not fatal but a reject naming its line. The line
of each row is the line as numbered in the file (header = line 1), counting physical
lines when quoted fields hold line breaks, so a user can open the file at the line a
report names. One cheap pass over the bytes first counts the lines, checks the encoding
over the whole file and spots blank lines and carriage-return line ends, for which the
lines are taken from Python's csv module instead (the records Arrow returns skip them).
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

#: File extensions read as source tables.
SOURCE_SUFFIXES: tuple[str, ...] = (".csv", ".tsv", ".txt", ".xlsx")
DELIMITERS: dict[str, str] = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}
#: Bytes of CSV per batch: large enough that the per-batch cost of parsing vanishes,
#: small enough that a batch's text and its parsed columns stay far below the file's size.
BLOCK_SIZE = 16 * 1024 * 1024
#: Bytes per block of Arrow's reader, which reads up to 32 blocks ahead of the one
#: being parsed: small blocks bound that read-ahead; batches gather several.
_READ_BLOCK = 1024 * 1024
_HEAD = 256 * 1024
_CHUNK = 4 * 1024 * 1024


class SourceError(ValueError):
    """A source file cannot be read at all; the message names the file and line."""


@dataclass(frozen=True)
class BadRow:
    """A row whose number of fields differs from the header's."""

    line: int
    text: str
    fields: int
    expected: int


@dataclass
class SourceFile:
    """One source file: how it is written, its header, and (once read through) its rows."""

    path: Path
    encoding: str
    #: Name of the delimiter ("comma", ...); None for a spreadsheet.
    delimiter: str | None
    #: Header names as written (trimmed).
    names: list[str]
    #: Readable data rows, counted by the first complete read.
    rows: int = 0
    bad_rows: list[BadRow] = field(default_factory=list)
    #: The whole file as text columns and the line of each row: only from
    #: :func:`read_source`; an import streams the file with :func:`iter_batches`.
    table: pa.Table = field(default_factory=lambda: pa.table({}))
    lines: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    #: ``table`` and ``lines`` hold the whole file.
    whole: bool = False
    codec: str = "utf-8"
    sheet: str | None = None
    #: Line feeds in the file, whether it ends with one, and the start line of every
    #: record when Arrow's records cannot be counted into lines (blank lines, CR ends).
    newlines: int = 0
    trailing: bool = True
    record_lines: np.ndarray | None = None

    @property
    def rows_read(self) -> int:
        """Data rows in the file: the readable ones and the ones with a wrong field count."""
        return self.rows + len(self.bad_rows)

    @property
    def header_height(self) -> int:
        return 1 + sum(n.count("\n") for n in self.names)


@dataclass(frozen=True)
class Batch:
    """Consecutive rows of a file: text columns, their lines, and the bad rows among them."""

    table: pa.Table
    lines: np.ndarray
    bad: list[BadRow]


def _decodes_head(head: bytes, codec: str) -> bool:
    try:
        head.decode(codec)
        return True
    except UnicodeDecodeError as exc:
        # A character cut by the end of the head is not a fault of the file.
        return exc.start >= len(head) - 3 and exc.reason == "unexpected end of data"


def detect_encoding(head: bytes, decodes: Callable[[str], bool] | None = None) -> tuple[str, str]:
    """(codec, name for the report) of a text file, from its first bytes.

    ``decodes(codec)`` says whether the whole file decodes (default: the head does). A
    byte-order mark decides. Otherwise UTF-8 when the bytes decode as UTF-8; else
    GB18030 when they decode as GB18030 and most non-ASCII characters of the head are
    common Chinese characters or full-width punctuation (lead byte 0xA1-0xA9 or
    0xB0-0xD7): Latin-1's lower-case accented letters (0xE0-0xFF) followed by an ASCII
    letter also form valid GB18030 pairs, but rare characters; else Windows-1252, whose
    superset of Latin-1 also decodes curly quotes and the euro sign.
    """
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8", "UTF-8 with BOM"
    for bom, codec in ((codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if head.startswith(bom):
            return codec, "UTF-16 with BOM"
    check = decodes or (lambda codec: _decodes_head(head, codec))
    if check("utf-8"):
        return "utf-8", "UTF-8"
    if check("gb18030"):
        text = head.decode("gb18030", errors="ignore")
        wide = [ch.encode("gb18030")[0] for ch in text[:100_000] if ord(ch) > 127]
        common = sum(1 for lead in wide if 0xA1 <= lead <= 0xA9 or 0xB0 <= lead <= 0xD7)
        if wide and common / len(wide) > 0.5:
            return "gb18030", "GB18030 (GBK)"
    if check("cp1252"):
        return "cp1252", "Windows-1252 (Latin-1)"
    return "latin-1", "Latin-1"


def _file_decodes(path: Path, codec: str) -> bool:
    """Whether the whole file decodes with ``codec``, read in chunks, never whole."""
    decoder = codecs.getincrementaldecoder(codec)()
    try:
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                decoder.decode(chunk)
        decoder.decode(b"", final=True)
        return True
    except UnicodeDecodeError:
        return False


def detect_delimiter(header: str, suffix: str) -> str:
    """The delimiter of the header line: the candidate that occurs most outside quotes."""
    bare = re.sub(r'"[^"]*"', "", header)
    counts = {d: bare.count(d) for d in DELIMITERS}
    best = max(counts, key=lambda d: counts[d])
    if suffix == ".tsv" and counts["\t"]:
        return "\t"
    return best if counts[best] else ","


@dataclass(frozen=True)
class _Scan:
    newlines: int
    trailing: bool
    #: Blank lines or carriage returns without a line feed: Arrow's records skip or
    #: split lines differently from a count of line feeds.
    irregular: bool
    #: The bytes are valid UTF-8 throughout.
    utf8: bool


def _scan(path: Path) -> _Scan:
    """One pass over the bytes in chunks: line feeds, irregular line ends, UTF-8."""
    newlines, irregular, utf8 = 0, False, True
    tail = b""  # the last bytes of the previous chunk, for patterns across the boundary
    pending = b""  # a UTF-8 character cut by the chunk boundary
    last = b""
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            newlines += chunk.count(b"\n")
            last = chunk[-1:]
            if not irregular:
                window = tail + chunk
                body = window[:-1] if window.endswith(b"\r") else window
                irregular = (
                    b"\n\n" in window
                    or b"\n\r\n" in window
                    or body.count(b"\r") != body.count(b"\r\n")
                )
                tail = window[-2:]
            if utf8:
                data = pending + chunk
                try:
                    data.decode("utf-8")
                    pending = b""
                except UnicodeDecodeError as exc:
                    if exc.reason == "unexpected end of data" and exc.start >= len(data) - 3:
                        pending = data[exc.start :]
                    else:
                        utf8 = False
    if last == b"\r" and not irregular:
        irregular = True
    return _Scan(newlines, last == b"\n", irregular, utf8 and not pending)


def _lines_by_python(path: Path, codec: str, delimiter: str) -> np.ndarray:
    """Start line of every non-blank data record, by Python's csv.

    The slow path, for files whose Arrow records cannot be counted into lines: blank
    lines between rows, carriage-return line ends.
    """
    starts: list[int] = []
    with path.open(encoding=codec, newline="") as f:
        reader = csv.reader(f, delimiter=delimiter)
        previous = 0
        for row in reader:
            if row:
                starts.append(previous + 1)
            previous = reader.line_num
    return np.array(starts[1:], dtype=np.int64)


def _header(text: str, delimiter: str, path: Path) -> list[str]:
    try:
        names = next(csv.reader(io.StringIO(text), delimiter=delimiter))
    except StopIteration:
        raise SourceError(f"{path.name} line 1: the file is empty (no header line)") from None
    names = [n.strip().lstrip("\ufeff") for n in names]
    seen: dict[str, int] = {}
    for i, name in enumerate(names, start=1):
        if not name:
            raise SourceError(f"{path.name} line 1 column {i}: a column without a name")
        if name.lower() in seen:
            raise SourceError(
                f"{path.name} line 1: columns {seen[name.lower()]} and {i} are both named "
                f"{name!r} (headers are matched without regard to case)"
            )
        seen[name.lower()] = i
    return names


def open_csv_source(path: Path) -> SourceFile:
    """A CSV/TSV file's encoding, delimiter, header and line count; no rows are read."""
    with path.open("rb") as f:
        head = f.read(_HEAD)
    if not head.strip():
        raise SourceError(f"{path.name} line 1: the file is empty (no header line)")
    scan = _scan(path)
    codec, encoding = detect_encoding(head)
    if codec == "utf-8" and not scan.utf8:
        codec, encoding = detect_encoding(head, lambda c: _file_decodes(path, c))
    text_head = head.decode(codec, errors="ignore" if codec == "utf-8" else "replace")
    first_line = text_head.lstrip("\ufeff").split("\n", 1)[0]
    delimiter = detect_delimiter(first_line, path.suffix.lower())
    names = _header(text_head.lstrip("\ufeff"), delimiter, path)
    return SourceFile(
        path,
        encoding,
        DELIMITERS[delimiter],
        names,
        codec=codec,
        newlines=scan.newlines,
        trailing=scan.trailing,
        record_lines=_lines_by_python(path, codec, delimiter) if scan.irregular else None,
    )


def iter_batches(
    source: SourceFile, columns: Sequence[str] | None = None, block_size: int = BLOCK_SIZE
) -> Iterator[Batch]:
    """The file's rows in batches of about ``block_size`` bytes, with their lines.

    ``columns``: return only these (names as in the header); every column is parsed
    all the same, since line breaks in any of them count. A pass that returns every
    column to the end records the rows and bad rows in ``source``. Bad rows are listed
    in the batch that holds their line (a last batch may hold only bad rows).
    """
    if source.delimiter is None:  # a spreadsheet: read whole, row by row
        if not source.whole:
            raise SourceError(f"{source.path.name}: a spreadsheet is read whole")
        table = source.table if columns is None else source.table.select(list(columns))
        yield Batch(table, source.lines, [])
        return
    delimiter = next(d for d, n in DELIMITERS.items() if n == source.delimiter)
    found: list[tuple[int, str]] = []

    def skip(row: pcsv.InvalidRow) -> str:
        # Read on one thread, Arrow numbers records with the header as record 1.
        found.append((row.number if row.number is not None else -1, row.text))
        return "skip"

    names = source.names
    try:
        reader = pcsv.open_csv(
            source.path,
            read_options=pcsv.ReadOptions(
                encoding=source.codec,
                column_names=names,
                skip_rows=1,
                use_threads=False,
                block_size=min(block_size, _READ_BLOCK),
            ),
            parse_options=pcsv.ParseOptions(
                delimiter=delimiter, newlines_in_values=True, invalid_row_handler=skip
            ),
            convert_options=pcsv.ConvertOptions(
                column_types={n: pa.string() for n in names},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as exc:
        raise SourceError(f"{source.path.name}: cannot be read as CSV: {exc}") from exc
    header = source.header_height
    valid = 0  # valid rows before the batch
    next_record, next_line = 0, header + 1  # the first record not placed yet, its line
    placed_bad = 0  # bad rows already given a line
    bad_rows: list[BadRow] = []

    def place(records: np.ndarray, heights: np.ndarray | None) -> np.ndarray:
        """Lines of ``records`` (0-based data records from ``next_record`` on)."""
        nonlocal next_record, next_line
        if source.record_lines is not None:
            return source.record_lines[records]
        if not len(records):
            return records
        first = next_record
        span = np.ones(int(records[-1]) - first + 1, dtype=np.int64)
        if heights is not None:
            span[records - first] = heights
        starts = next_line + np.concatenate([[0], np.cumsum(span)[:-1]])
        next_record = int(records[-1]) + 1
        next_line = int(starts[-1] + span[-1])
        return starts[records - first]

    def take_bad(upto: int | None) -> list[BadRow]:
        """Bad rows found so far up to record ``upto`` (all when None), placed in order."""
        nonlocal placed_bad
        out = []
        while placed_bad < len(found):
            number, text = found[placed_bad]
            if number < 2:
                raise SourceError(f"{source.path.name}: a bad row without a record number")
            record = number - 2
            if upto is not None and record > upto:
                break
            height = 1 + text.count("\n")
            line = int(place(np.array([record]), np.array([height]))[0])
            out.append(BadRow(line, text, text.count(delimiter) + 1, len(names)))
            placed_bad += 1
        return out

    group: list[Batch] = []
    size = 0
    try:
        for record_batch in reader:
            table = pa.Table.from_batches([record_batch])
            m = table.num_rows
            bad_numbers = np.array([n - 2 for n, _ in found], dtype=np.int64)
            before = bad_numbers - np.arange(len(bad_numbers))  # valid records before each
            ids = np.arange(valid, valid + m, dtype=np.int64)
            records = ids + np.searchsorted(before, ids, side="right")
            lines = np.empty(m, dtype=np.int64)
            bad_here: list[BadRow] = []
            # Place records in file order: bad rows between valid ones take their lines.
            breaks = np.ones(m, dtype=np.int64)
            if source.record_lines is None and m:
                for column in table.columns:
                    breaks += np.asarray(
                        pc.fill_null(pc.count_substring(column, "\n"), 0).to_numpy(
                            zero_copy_only=False
                        )
                    )
            start = 0
            while start < m:
                # Valid rows up to the next bad row still to place.
                next_bad = found[placed_bad][0] - 2 if placed_bad < len(found) else None
                stop = m if next_bad is None else int(np.searchsorted(records, next_bad))
                if stop > start:
                    lines[start:stop] = place(records[start:stop], breaks[start:stop])
                    start = stop
                if start < m:
                    bad_here += take_bad(int(records[start]) - 1)
            valid += m
            bad_rows += bad_here
            group.append(
                Batch(table if columns is None else table.select(list(columns)), lines, bad_here)
            )
            size += table.nbytes
            if size >= block_size:
                yield _gather(group)
                group, size = [], 0
                # Arrow's allocator keeps freed memory for reuse; give the batch's back.
                pa.default_memory_pool().release_unused()
    except pa.ArrowInvalid as exc:
        raise SourceError(f"{source.path.name}: cannot be read as CSV: {exc}") from exc
    rest = take_bad(None)
    bad_rows += rest
    if rest:
        empty = pa.table({n: pa.array([], pa.string()) for n in (columns or names)})
        group.append(Batch(empty, np.zeros(0, dtype=np.int64), rest))
    if group:
        yield _gather(group)
    if source.record_lines is None:
        total = next_line - 1
        if total != source.newlines + (0 if source.trailing else 1):
            raise SourceError(
                f"{source.path.name}: {total} lines counted from its records but the file "
                f"has {source.newlines + (0 if source.trailing else 1)}; please report this file"
            )
    if columns is None:
        source.rows, source.bad_rows = valid, bad_rows


def read_xlsx_source(path: Path, sheet: str | None = None) -> SourceFile:
    """One sheet of a workbook (the first, or ``sheet``) as text; line = the sheet's row.

    Row by row in Python, and whole: openpyxl's ``read_only`` mode is the only streaming
    reader of XLSX at hand (Arrow reads no spreadsheets), it yields Python values one cell
    at a time, and a sheet holds at most 1,048,576 rows, so workbooks stay small next to
    the CSV exports the batched path is for. ``data_only`` takes cached formula results.
    """
    from openpyxl import load_workbook

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many kinds for a file that is not a workbook
        raise SourceError(f"{path.name}: not a readable XLSX workbook ({exc})") from exc
    try:
        if sheet is not None and sheet not in book.sheetnames:
            raise SourceError(
                f"{path.name}: no sheet {sheet!r} (sheets: {', '.join(book.sheetnames)})"
            )
        ws = book[sheet] if sheet else book.worksheets[0]
        rows = ws.iter_rows(values_only=True)
        header = next(rows, None)
        if header is None:
            raise SourceError(f"{path.name} line 1: the sheet is empty (no header row)")
        names = _header(
            ",".join('"' + ("" if v is None else str(v)).replace('"', '""') + '"' for v in header),
            ",",
            path,
        )
        columns: list[list[str]] = [[] for _ in names]
        lines: list[int] = []
        for number, row in enumerate(rows, start=2):
            if row is None or all(v is None or v == "" for v in row):
                continue
            lines.append(number)
            for i in range(len(names)):
                columns[i].append(_cell_text(row[i] if i < len(row) else None))
    finally:
        book.close()
    table = pa.table({n: pa.array(c, pa.string()) for n, c in zip(names, columns, strict=True)})
    return SourceFile(
        path,
        "XLSX",
        None,
        names,
        rows=table.num_rows,
        table=table,
        lines=np.array(lines, dtype=np.int64),
        whole=True,
        sheet=sheet,
    )


def _cell_text(value: object) -> str:
    """A spreadsheet cell as the text a CSV export would hold (ISO times, 12 not 12.0)."""
    import datetime as dt

    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _gather(group: list[Batch]) -> Batch:
    """Consecutive batches as one."""
    if len(group) == 1:
        return group[0]
    return Batch(
        pa.concat_tables([b.table for b in group]).combine_chunks(),
        np.concatenate([b.lines for b in group]),
        [r for b in group for r in b.bad],
    )


def open_source(path: Path, sheet: str | None = None) -> SourceFile:
    """A source file ready to be read: a CSV's header and encoding, a spreadsheet whole."""
    try:
        if path.suffix.lower() == ".xlsx":
            return read_xlsx_source(path, sheet)
        return open_csv_source(path)
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from exc


def read_whole(source: SourceFile) -> tuple[pa.Table, np.ndarray]:
    """Every row of a file at once (for joins and small lookups), with its lines."""
    if source.whole:
        return source.table, source.lines
    batches = list(iter_batches(source))
    table = (
        pa.concat_tables([b.table for b in batches])
        if batches
        else pa.table({n: pa.array([], pa.string()) for n in source.names})
    )
    lines = np.concatenate([b.lines for b in batches]) if batches else np.zeros(0, np.int64)
    return table, lines


def read_source(path: Path, sheet: str | None = None) -> SourceFile:
    """Any source file, whole, by its extension; raises :class:`SourceError` when unreadable."""
    source = open_source(path, sheet)
    try:
        source.table, source.lines = read_whole(source)
        source.whole = True
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return source
