"""A re-ingest rebuilds only the feature rows its changes can reach.

Every source but the owner's track record is built from the rows of one account (its
deals, their stage history, contacts and activities, the account itself), and the
owner's track record from the deals of one owner: the Spark engine's groups rest on the
same fact (:data:`leadscore.features.featurize.OWNER_VIEWS`). So when an export changes
some rows, the sources change only for

* every deal of each account a changed row belongs to, now or before the change (a deal
  moved from one account to another changes both accounts' rows: the account's record,
  the other open deals a lost deal's account has, the follow-up that revives a loss),
* a deal without an account, when one of its rows changed,
* the deals whose contact changed (a new title changes the seniority reached),
* every owner a changed deal belongs to, now or before.

The :data:`~leadscore.features.featurize.DEAL_VIEWS` (profile, stage, contacts,
activity, custom attributes) are narrower still: a deal's rows of these depend on its own
rows, the contacts and the account row it names (ingest builds them a range of deals at a
time on that fact), so they are rebuilt only for the deals whose own rows or contacts
changed and the deals of an account whose ``accounts`` row changed. A close reaches the
account's other deals through the account's record and a lost deal's account counts, not
through their activity: at a million deals a 1% change reached 75,818 deals' accounts but
changed the activity rows of 10,000.

:func:`update_sources` rebuilds those keys' rows with the one function that builds them
all (:func:`~leadscore.features.featurize.build_feature_sources`), on those rows alone,
and splices them into the committed sources in the order a full build writes (by key,
then time; a key's rows all come from one of the two). A source is a folder of a file
per month (:mod:`leadscore.features.source_files`), and only the months whose rows of
the reached keys differ from the committed ones are spliced and written; the others are
kept as they are (a day's sync changes the last month). The result is the full build's,
value for value and row for row (``tests/code/test_incremental_sources.py``); a late
event is not missed, because the close of a deal is a changed deal row and reaches its
account and its owner, and a late activity changes the months from its own on.

A full rebuild is still done when the committed sources were built by another
definition: other feature code (any module of ``leadscore.features`` or
``leadscore.crm``), other custom attributes or another revival window. Each build
records its definition in the sources folder (:data:`BUILD_FILE`), and a mismatch, a
missing record or a missing source file means "build everything".
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import leadscore.crm
import leadscore.features
from leadscore.crm.attributes import Attribute, attributes_json
from leadscore.crm.ingest import StoredTables, TableChange
from leadscore.features.featurize import (
    DEAL_TABLES,
    DEAL_VIEWS,
    OWNER_VIEWS,
    VIEW_KEYS,
    build_feature_sources,
    deal_range_starts,
    iter_feature_sources,
    source_table,
)
from leadscore.features.source_files import (
    NO_ROWS,
    by_month,
    count_rows,
    is_source,
    parts,
    read_schema,
    source_path,
)
from leadscore.progress import Progress, no_progress

log = logging.getLogger(__name__)

#: The record of the definition that built a sources folder, beside the sources.
BUILD_FILE = "_build.json"


def source_definition(attributes: Sequence[Attribute], revival_window_days: int) -> str:
    """A digest of everything the sources depend on besides the stored rows: the code
    that builds them (every module of ``leadscore.features`` and ``leadscore.crm``, read
    from disk: a deploy of new feature code must rebuild everything), the custom
    attributes and the revival window."""
    digest = hashlib.sha256()
    for package in (leadscore.crm, leadscore.features):
        for folder in package.__path__:
            for path in sorted(Path(folder).rglob("*.py")):
                digest.update(path.relative_to(Path(folder).parent).as_posix().encode())
                digest.update(path.read_bytes())
    digest.update(attributes_json(attributes).encode())
    digest.update(str(int(revival_window_days)).encode())
    return digest.hexdigest()


def write_build_record(sources_dir: Path, definition: str) -> None:
    """Record which definition built ``sources_dir``. Only that: the same export ingested
    twice leaves the same files, whether the second run rebuilt anything or not."""
    record = {"definition": definition}
    (Path(sources_dir) / BUILD_FILE).write_text(json.dumps(record, indent=1), encoding="utf-8")


def _built_by(sources_dir: Path) -> str | None:
    try:
        return str(json.loads((Path(sources_dir) / BUILD_FILE).read_text("utf-8"))["definition"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True)
class Reach:
    """The keys whose source rows a change can alter."""

    #: Deals whose rows of the views built from an account's deals (``deal_revival``)
    #: are rebuilt: every deal of a reached account.
    deals: frozenset[str]
    #: Accounts whose ``account_history`` rows are rebuilt.
    accounts: frozenset[str]
    #: Owners whose ``owner_history`` rows are rebuilt.
    owners: frozenset[str]
    #: Deals whose :data:`DEAL_VIEWS` rows are rebuilt: those whose own rows or contacts
    #: changed and those of an account whose ``accounts`` row changed; among ``deals``.
    own_deals: frozenset[str]


def _ids(frames: Iterable[pd.DataFrame], column: str) -> set[str]:
    out: set[str] = set()
    for frame in frames:
        if column in frame:
            # Distinct values first: two million activities name a few thousand contacts.
            out.update(str(v) for v in pd.unique(frame[column].dropna()))
    out.discard("")
    return out


def _versions(change: TableChange | None) -> list[pd.DataFrame]:
    return [] if change is None else [change.new, change.old]


def _held(tables: Mapping[str, pd.DataFrame]) -> StoredTables:
    """``tables`` as :class:`~leadscore.crm.ingest.StoredTables` (an ingest's are so
    already), whose rows are picked without making the whole tables pandas."""
    return tables if isinstance(tables, StoredTables) else StoredTables(tables)


def reach(tables: Mapping[str, pd.DataFrame], changes: Mapping[str, TableChange]) -> Reach:
    """What the ``changes`` of one ingest reach in the merged ``tables`` (see the module)."""
    tables = _held(tables)
    deals = tables.columns("deals", ["deal_id", "account_id"])
    deal_ids = deals["deal_id"].astype(str)
    account_ids = deals["account_id"].astype("string").fillna("")
    touched = _ids(_versions(changes.get("deals")), "deal_id")
    for name in DEAL_TABLES:
        touched |= _ids(_versions(changes.get(name)), "deal_id")
    contacts = _ids(_versions(changes.get("contacts")), "contact_id")
    if contacts:
        for name in ("deal_contacts", "activities"):
            if name in tables and "contact_id" in tables.empty(name):
                touched |= set(tables.rows(name, "contact_id", contacts)["deal_id"].astype(str))
    described = _ids(_versions(changes.get("accounts")), "account_id")  # accounts rows
    described.discard("")
    is_touched = deal_ids.isin(touched)
    accounts = described | set(account_ids[is_touched])
    old_deals = changes["deals"].old if "deals" in changes else deals.iloc[:0]
    accounts |= _ids([old_deals], "account_id")
    accounts.discard("")
    # Every deal of a reached account; a deal without one is its own group.
    in_reach = account_ids.isin(accounts) | (is_touched & (account_ids == ""))
    owners = _ids(_versions(changes.get("deals")), "owner_id")
    own = is_touched | account_ids.isin(described)
    return Reach(
        deals=frozenset(deal_ids[in_reach.to_numpy(dtype=bool)]),
        accounts=frozenset(accounts),
        owners=frozenset(owners),
        own_deals=frozenset(deal_ids[own.to_numpy(dtype=bool)]),
    )


def _rows_of(tables: StoredTables, reached: Reach) -> dict[str, pd.DataFrame]:
    """The tables' rows the reached accounts' sources are built from, each table's in
    its order (:meth:`~leadscore.crm.ingest.StoredTables.rows`: the few reached rows
    become pandas, not the tables)."""
    part = {"deals": tables.rows("deals", "deal_id", reached.deals)}
    for name in DEAL_TABLES:
        if name in tables:
            part[name] = tables.rows(name, "deal_id", reached.deals)
    if "accounts" in tables:
        part["accounts"] = tables.rows("accounts", "account_id", reached.accounts)
    if "contacts" in tables:
        named = _ids([part[n] for n in ("deal_contacts", "activities") if n in part], "contact_id")
        part["contacts"] = tables.rows("contacts", "contact_id", named)
    return part


def _dropped_keys(view: str, reached: Reach) -> frozenset[str]:
    """The keys whose rows of ``view`` are rebuilt and replace the committed ones."""
    if view in OWNER_VIEWS:
        return reached.owners
    if view in DEAL_VIEWS:
        return reached.own_deals
    return reached.accounts if VIEW_KEYS[view] == "account_id" else reached.deals


def _runs(keys: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Where each run of equal keys starts in a source's key column (a source is sorted
    by key), with the end as a last bound, and each run's key."""
    array = keys.combine_chunks()
    n = len(array)
    if n == 0:
        return np.zeros(1, dtype=np.int64), np.array([], dtype=object)
    differs = pc.not_equal(array.slice(1), array.slice(0, n - 1))
    starts = np.concatenate([[0], np.flatnonzero(differs.to_numpy(zero_copy_only=False)) + 1])
    return np.append(starts, n), array.take(pa.array(starts)).to_numpy(zero_copy_only=False)


def _spliced(committed: pa.Table, new: pa.Table, key: str, keys: pd.Index) -> pa.Table:
    """``committed`` with ``keys``' rows replaced by ``new``'s, in the full build's order
    (by key, then time).

    A key's rows come all from ``committed`` or all from ``new``, each in the order the
    full build gives them, so ordering the runs of equal keys is enough: the result is
    one ``take`` of the two tables' rows, run after run, not a sort of millions of rows.
    (Slices of each run, concatenated, took 2.4 s for a month of a million deals'
    activity rows against 0.4 s: tens of thousands of slices.)
    """
    bounds, run_keys = _runs(committed[key])
    new_bounds, new_keys = _runs(new[key])
    kept = ~pd.Index(run_keys).isin(keys)
    # Each run's rows in the two tables one after the other: ``new`` after ``committed``.
    begin = np.concatenate([bounds[:-1][kept], new_bounds[:-1] + committed.num_rows])
    end = np.concatenate([bounds[1:][kept], new_bounds[1:] + committed.num_rows])
    order = np.argsort(np.concatenate([run_keys[kept], new_keys]), kind="stable")
    begin, end = begin[order], end[order]
    lengths = end - begin
    # Row i of the result is row i + (its run's begin - the run's first row in the result).
    shift = np.repeat(begin - (np.cumsum(lengths) - lengths), lengths)
    rows = np.arange(int(lengths.sum()), dtype=np.int64) + shift
    return pa.concat_tables([committed, new]).take(pa.array(rows, pa.int64()))


def _below(table: pa.Table, key: str, bound: str | None) -> int:
    """How many of ``table``'s first rows have a key before ``bound`` (None: all of them);
    the table is sorted by key, and Arrow orders text as Python does (by code point)."""
    if bound is None or table.num_rows == 0:
        return table.num_rows
    return int(pc.sum(pc.less(table[key], pa.scalar(bound, pa.string()))).as_py() or 0)


def _rest(table: pa.Table, n: int) -> pa.Table:
    """``table`` without its first ``n`` rows, nor the chunks they leave empty: an empty
    slice still holds its row group's buffers, and the held rows would keep every row
    group read so far."""
    rest = [batch for batch in table.slice(n).to_batches() if batch.num_rows]
    return pa.Table.from_batches(rest, schema=table.schema)


def _ranges(
    path: Path | None,
    new: pa.Table,
    key: str,
    keys: pd.Index,
    starts: Sequence[str],
) -> Iterator[pa.Table]:
    """The committed source at ``path`` with ``keys``' rows replaced by ``new``'s, a
    range of keys at a time: one piece per range (each begins at one of ``starts``, the
    first at the first key), as a full build writes it.

    The file is read a row group at a time, and a row group holds the rows of one range
    of the build that wrote it: memory holds the rows of about one range, not the source
    (a million deals' activity source is gigabytes). A range without rows gives no
    piece, as in a full build; the caller writes each piece as it comes. (Reading the
    next row group on a thread while this one is spliced held one range more and saved
    no time measurable on two cores: the writer's thread already overlaps.)
    """
    groups = _row_groups(path)
    held = new.schema.empty_table()  # committed rows read and not yet placed
    for bound in [*starts, None]:
        # Read until a row at or after the bound is held: a range may span row groups
        # (the committed file's ranges were cut among fewer deals, or not at all).
        while _below(held, key, bound) == held.num_rows:
            group = next(groups, None)
            if group is None:
                break
            held = pa.concat_tables([held, group])
        n_held, n_new = _below(held, key, bound), _below(new, key, bound)
        if n_held or n_new:
            yield _spliced(held.slice(0, n_held), new.slice(0, n_new), key, keys)
        held, new = _rest(held, n_held), new.slice(n_new)


def _row_groups(path: Path | None) -> Iterator[pa.Table]:
    """The row groups of the Parquet file at ``path``, read as they are asked for (none
    without a file: a month the committed source has no rows in)."""
    if path is None:
        return
    file = pq.ParquetFile(path)
    for i in range(file.num_row_groups):
        yield file.read_row_group(i)


class _Stale(Exception):
    """The committed sources cannot be updated in place: build everything."""


@dataclass(frozen=True)
class SourceUpdate:
    """What an incremental rebuild gives: the sources it changes, as pieces to write one
    after another (made as they are consumed), and the row count of every source as
    committed.

    ``pieces`` is what :func:`~leadscore.features.featurize.write_sources` takes: the
    pieces of one view are consecutive and make its folder, the rows of a rewritten month
    a row group per piece, a committed month the change leaves as it is a
    :class:`~pathlib.Path` to link; a view not among them is unchanged (the caller keeps
    the committed folder). Its ``rows`` are what that write returns for the views it
    wrote and :attr:`rows` for the others.
    """

    pieces: Iterable[tuple[str, pa.Table | Path]]
    rows: dict[str, int]
    reached: Reach


def update_sources(
    tables: Mapping[str, pd.DataFrame],
    changes: Mapping[str, TableChange],
    sources_dir: Path,
    definition: str,
    attributes: Sequence[Attribute],
    revival_window_days: int,
    progress: Progress = no_progress,
    chunk_deals: int = 0,
    before: Mapping[str, pd.DataFrame] | None = None,
) -> SourceUpdate | None:
    """The feature sources of the merged ``tables`` from the committed ones in
    ``sources_dir``, rebuilding only what ``changes`` reach and rewriting only the months
    whose rows change; None (build everything) when the committed sources were built by
    another definition or are incomplete, or when the tables as stored ``before`` this
    ingest are not given.

    Which months change is measured, not assumed: a month whose rows of the reached keys
    are the same, value for value and in order, before and after the change is left as
    committed. Before is the deal's own views built from the tables as stored ``before``
    this ingest, and the other views' rows read from the committed folders; built rows
    are the committed ones (the committed sources are the full build of the tables
    before, by the same definition), so the kept months are the full build's. A change
    at the end of the timeline, as a day's sync is, rewrites the last month or two; a new
    account attribute or a deal moved between accounts rewrites every month it reaches.

    Sources the change leaves as they are are not among the pieces: the caller keeps the
    committed folders (hard links into the new state). ``definition`` is
    :func:`source_definition` of ``attributes`` and ``revival_window_days``, which the
    caller records beside the sources it writes. ``chunk_deals`` is the first ingest's
    (:func:`~leadscore.features.featurize.iter_feature_sources`): the deal-keyed sources
    are spliced and written a range of deals at a time, cut where a full build of
    ``tables`` cuts them, and memory holds one range of a committed month (issue 14).
    """
    if _built_by(sources_dir) != definition:
        log.info("feature sources: built by another definition, rebuilding all of them")
        return None
    if before is None:
        log.info("feature sources: no tables as stored before, rebuilding all of them")
        return None
    tables = _held(tables)
    empty = build_feature_sources(
        {name: tables.empty(name) for name in tables},
        attributes=attributes,
        revival_window_days=revival_window_days,
    )
    paths = {view: source_path(sources_dir, view) for view in empty}
    if not all(is_source(path) for path in paths.values()):
        log.info("feature sources: a committed source is missing, rebuilding all of them")
        return None
    schemas = {view: read_schema(path) for view, path in paths.items()}
    for view, schema in schemas.items():
        names, committed = source_table(view, empty[view]).schema.names, schema.names
        if names != committed:
            log.info(
                "feature sources: %s has columns %s, not %s: rebuilding all", view, committed, names
            )
            return None
    reached = reach(tables, changes)
    rows = {view: count_rows(path) for view, path in paths.items()}
    if not (reached.deals or reached.accounts or reached.owners):
        return SourceUpdate((), rows, reached)
    try:
        rebuilt = _rebuild(tables, reached, schemas, attributes, revival_window_days, progress)
        # The deal's own views of the few deals whose own rows changed, as they were; the
        # others' reached rows are read from the committed files instead: building them
        # again (an account's deals, an owner's) cost more than reading their sources.
        deal_schemas = {v: schema for v, schema in schemas.items() if v in DEAL_VIEWS}
        previous = _rebuild(
            _held(before), reached, deal_schemas, attributes, revival_window_days, no_progress
        )
    except _Stale as exc:
        log.info("feature sources: %s, rebuilding all of them", exc)
        return None
    months: dict[str, dict[str, pa.Table]] = {}  # per changed view, its changed months' rows
    for view in paths:
        was = previous.pop(view, None)
        if was is None:
            was = _committed_rows(paths[view], VIEW_KEYS[view], _dropped_keys(view, reached))
        changed = _changed_months(was.cast(schemas[view]), rebuilt.pop(view))
        if changed:
            months[view] = changed
    log.info(
        "feature sources: rebuilt %d of %d deals (their own views for %d), %d accounts,"
        " %d owners; %d sources changed (%s)",
        len(reached.deals),
        tables.num_rows("deals"),
        len(reached.own_deals),
        len(reached.accounts),
        len(reached.owners),
        len(months),
        "; ".join(f"{v}: {len(m)} of {len(parts(paths[v]))} months" for v, m in months.items()),
    )
    starts = deal_range_starts(tables.columns("deals", ["deal_id"]), chunk_deals)
    return SourceUpdate(_pieces(months, paths, reached, starts), rows, reached)


def _rebuild(
    tables: StoredTables,
    reached: Reach,
    schemas: Mapping[str, pa.Schema],
    attributes: Sequence[Attribute],
    revival_window_days: int,
    progress: Progress,
) -> dict[str, pa.Table]:
    """The reached keys' rows of every source built from ``tables``, typed as the
    committed files are (``schemas``, whose column names :func:`update_sources` has
    checked already)."""
    deal_views = [v for v in schemas if v in DEAL_VIEWS]
    account_views = [v for v in schemas if v not in OWNER_VIEWS and v not in DEAL_VIEWS]
    owner_views = [v for v in schemas if v in OWNER_VIEWS]
    part = _rows_of(tables, reached) if account_views else None
    own = replace(reached, deals=reached.own_deals)  # ``own_deals`` is within ``deals``
    builds: list[Iterable[tuple[str, pd.DataFrame]]] = []
    if deal_views:
        builds.append(
            iter_feature_sources(
                _rows_of(tables if part is None else StoredTables(part), own),
                progress,
                attributes,
                revival_window_days=revival_window_days,
                views=deal_views,
            )
        )
    if account_views:
        builds.append(
            iter_feature_sources(
                part or {},
                attributes=attributes,
                revival_window_days=revival_window_days,
                views=account_views,
            )
        )
    if owner_views:
        builds.append(
            iter_feature_sources(
                {"deals": tables.rows("deals", "owner_id", reached.owners)},
                attributes=attributes,
                revival_window_days=revival_window_days,
                views=owner_views,
            )
        )
    built = itertools.chain(*builds)
    rebuilt = {}
    for view, frame in built:  # each frame let go once typed
        table = source_table(view, frame).cast(schemas[view])
        keys = pd.Index(_runs(table[VIEW_KEYS[view]])[1])
        if not keys.isin(list(_dropped_keys(view, reached))).all():
            raise _Stale(f"{view}: rows rebuilt for keys the change does not reach")
        rebuilt[view] = table
    return rebuilt


def _committed_rows(path: Path, key: str, keys: Collection[str]) -> pa.Table:
    """The rows of ``keys`` in the committed source folder ``path``, in its order (the
    months in order, each by key and then time)."""
    table = pq.read_table(path)
    return table.filter(pc.is_in(table[key], value_set=pa.array(list(keys), pa.string())))


def _same(a: pa.Table, b: pa.Table) -> bool:
    """Whether two tables of one schema hold the same rows in the same order: missing
    where the other is missing, NaN where the other is NaN."""
    if a.num_rows != b.num_rows:
        return False
    for name in a.column_names:
        x, y = a[name], b[name]
        if x.null_count != y.null_count:
            return False
        same = pc.equal(x, y).fill_null(False)
        if x.null_count:
            same = pc.or_(same, pc.and_(pc.is_null(x), pc.is_null(y)))
        if pa.types.is_floating(x.type):
            nan = pc.and_(pc.is_nan(x), pc.is_nan(y)).fill_null(False)
            same = pc.or_(same, nan)
        if len(same) and not pc.all(same).as_py():
            return False
    return True


def _changed_months(before: pa.Table, after: pa.Table) -> dict[str, pa.Table]:
    """The months whose rows differ between the reached keys' rows of a view before the
    change and after it (each in the full build's order), each with its rows after (none:
    every row of the month went), in the months' order."""
    old, new = dict(by_month(before)), dict(by_month(after))
    empty = after.schema.empty_table()
    return {
        m: new.get(m, empty)
        for m in sorted(old.keys() | new.keys())
        if not _same(old.get(m, empty), new.get(m, empty))
    }


def _pieces(
    months: dict[str, dict[str, pa.Table]],
    paths: Mapping[str, Path],
    reached: Reach,
    starts: Sequence[str],
) -> Iterator[tuple[str, pa.Table | Path]]:
    """The changed views, one after another: each committed month the change leaves as
    it is (its file), and each month it changes (``months``: the rebuilt rows of each)
    spliced (:func:`_ranges`), the :data:`DEAL_VIEWS` a range of deals at a time, cut at
    ``starts``, the others whole (a full build writes them so). Each view's rebuilt rows
    are let go once it is done."""
    for view in list(months):
        changed = months.pop(view)
        keys = pd.Index(list(_dropped_keys(view, reached)))
        cuts = starts if view in DEAL_VIEWS else ()
        committed = {m: p for m, p in parts(paths[view]).items() if m != NO_ROWS}
        yield view, next(iter(changed.values())).slice(0, 0)  # the schema, should all go
        for month in sorted(committed.keys() | changed.keys()):
            if month not in changed:
                yield view, committed[month]
                continue
            rows = changed.pop(month)
            yield from (
                (view, piece)
                for piece in _ranges(committed.get(month), rows, VIEW_KEYS[view], keys, cuts)
            )
