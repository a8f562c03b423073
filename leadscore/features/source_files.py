"""A feature source on disk: a folder of Parquet files, one per calendar month of its rows.

``sources/<view>.parquet/part-2024-03.parquet`` holds the rows of ``<view>`` whose
``event_timestamp`` falls in March 2024 (UTC), by key and then time as a full build
orders them. Why months: a re-ingest changes rows at or after the moments its changes
happened, and a day's sync happens at the end of the timeline. With one file per source,
any change, however small, rewrote every source whole: at a million deals that Parquet
decoding and encoding was most of a 1% re-ingest (``docs/scaling.md``, "Incremental
re-ingest"). With a file per month it reads and rewrites the months whose rows changed
and keeps the others as they are (hard links into the new generation).

Every reader takes the folder as one table: Feast's DuckDB offline store and Spark read a
folder of Parquet files, and so do ``pyarrow.parquet.read_table`` and ``pandas.read_parquet``
(in the order of the file names, which is the months' order). A source without rows is a
folder with one file without rows (:data:`NO_ROWS`), so its columns and types are still
there to be read. Rows without a time (a source never has them: the time is the moment
the row is known) would go to :data:`WITHOUT_TIME`, after the months.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

#: The column a source's rows are filed by: the moment each row is known.
TIME_COLUMN = "event_timestamp"
#: The label of the one file of a source without rows.
NO_ROWS = "none"
#: The label of rows without a time (a missing time, not the contract's ``UNDATED`` moment:
#: rows of undated deals have that moment and are filed under its month).
WITHOUT_TIME = "undated"
_PART = re.compile(r"^part-(\d{4}-\d{2}|none|undated)\.parquet$")


def source_path(sources_dir: Path, view: str) -> Path:
    """The folder of ``view``'s source (named as the single file it replaced, so the
    paths Feast's sources declare did not change)."""
    return Path(sources_dir) / f"{view}.parquet"


def part_name(label: str) -> str:
    """The file name of the part labelled ``label`` (a month ``YYYY-MM``, or one of
    :data:`NO_ROWS` and :data:`WITHOUT_TIME`)."""
    return f"part-{label}.parquet"


def parts(path: Path) -> dict[str, Path]:
    """The parts of the source folder ``path``, by label, in the months' order; other
    files (a temporary one) are not parts."""
    if not Path(path).is_dir():
        return {}
    found = {}
    for file in sorted(Path(path).iterdir()):
        match = _PART.match(file.name)
        if match and file.is_file():
            found[match.group(1)] = file
    return found


def is_source(path: Path) -> bool:
    """Whether ``path`` is a source folder with at least one part."""
    return bool(parts(path))


def read_schema(path: Path) -> pa.Schema:
    """The schema of the source folder ``path`` (every part is written with it)."""
    return pq.read_schema(next(iter(parts(path).values())))


def count_rows(path: Path) -> int:
    """The rows of the source folder ``path``, from its parts' footers."""
    return sum(pq.ParquetFile(p).metadata.num_rows for p in parts(path).values())


def _month_codes(table: pa.Table) -> np.ndarray:
    """Each row's month as ``year * 12 + month - 1`` (UTC), -1 for a row without a time."""
    times = table[TIME_COLUMN]
    if times.null_count == len(times):
        return np.full(len(times), -1, dtype=np.int64)
    codes = pc.add(pc.multiply(pc.year(times), 12), pc.subtract(pc.month(times), 1))
    return np.asarray(codes.fill_null(-1).to_numpy(), dtype=np.int64)


def _label(code: int) -> str:
    return WITHOUT_TIME if code < 0 else f"{code // 12:04d}-{code % 12 + 1:02d}"


def by_month(table: pa.Table) -> Iterator[tuple[str, pa.Table]]:
    """``table``'s rows split by the month of their time, in the months' order; each
    month's rows in ``table``'s order (a stable sort of small integers, one ``take``).
    Nothing for a table without rows."""
    if table.num_rows == 0:
        return
    codes = _month_codes(table)
    # Undated after every month, as the file names sort.
    codes = np.where(codes < 0, np.iinfo(np.int64).max, codes)
    if (codes == codes[0]).all():
        yield _label(int(codes[0]) if codes[0] != np.iinfo(np.int64).max else -1), table
        return
    order = np.argsort(codes, kind="stable")
    ordered, sorted_codes = table.take(pa.array(order)), codes[order]
    starts = np.flatnonzero(np.diff(sorted_codes)) + 1
    bounds = np.concatenate([[0], starts, [len(order)]])
    for begin, end in zip(bounds[:-1], bounds[1:], strict=True):
        code = int(sorted_codes[begin])
        label = _label(-1 if code == np.iinfo(np.int64).max else code)
        yield label, ordered.slice(int(begin), int(end - begin))
