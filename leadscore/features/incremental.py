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

:func:`update_sources` rebuilds those keys' rows with the one function that builds them
all (:func:`~leadscore.features.featurize.build_feature_sources`), on those rows alone,
and splices them into the committed sources in the order a full build writes (by key,
then time; a key's rows all come from one of the two). The result is the full build's,
value for value and row for row (``tests/code/test_incremental_sources.py``); a late
event is not missed, because the close of a deal is a changed deal row and reaches its
account and its owner.

A full rebuild is still done when the committed sources were built by another
definition: other feature code (any module of ``leadscore.features`` or
``leadscore.crm``), other custom attributes or another revival window. Each build
records its definition in the sources folder (:data:`BUILD_FILE`), and a mismatch, a
missing record or a missing source file means "build everything".
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import leadscore.crm
import leadscore.features
from leadscore.crm.attributes import Attribute, attributes_json
from leadscore.crm.ingest import TableChange
from leadscore.features.featurize import (
    DEAL_TABLES,
    OWNER_VIEWS,
    VIEW_KEYS,
    build_feature_sources,
    source_table,
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

    #: Deals whose deal-keyed rows are rebuilt: every deal of a reached account.
    deals: frozenset[str]
    #: Accounts whose ``account_history`` rows are rebuilt.
    accounts: frozenset[str]
    #: Owners whose ``owner_history`` rows are rebuilt.
    owners: frozenset[str]


def _ids(frames: Iterable[pd.DataFrame], column: str) -> set[str]:
    out: set[str] = set()
    for frame in frames:
        if column in frame:
            values = frame[column].dropna().astype(str)
            out.update(values[values != ""])
    return out


def _versions(change: TableChange | None) -> list[pd.DataFrame]:
    return [] if change is None else [change.new, change.old]


def reach(tables: Mapping[str, pd.DataFrame], changes: Mapping[str, TableChange]) -> Reach:
    """What the ``changes`` of one ingest reach in the merged ``tables`` (see the module)."""
    deals = tables["deals"]
    deal_ids = deals["deal_id"].astype(str)
    account_ids = deals["account_id"].astype("string").fillna("")
    touched = _ids(_versions(changes.get("deals")), "deal_id")
    for name in DEAL_TABLES:
        touched |= _ids(_versions(changes.get(name)), "deal_id")
    contacts = _ids(_versions(changes.get("contacts")), "contact_id")
    if contacts:
        for name in ("deal_contacts", "activities"):
            table = tables.get(name)
            if table is not None and "contact_id" in table:
                named = table["contact_id"].astype("string").isin(contacts).fillna(False)
                touched |= set(table.loc[named.to_numpy(dtype=bool), "deal_id"].astype(str))
    accounts = _ids(_versions(changes.get("accounts")), "account_id")
    accounts |= set(account_ids[deal_ids.isin(touched)])
    old_deals = changes["deals"].old if "deals" in changes else deals.iloc[:0]
    accounts |= _ids([old_deals], "account_id")
    accounts.discard("")
    # Every deal of a reached account; a deal without one is its own group.
    in_reach = account_ids.isin(accounts) | (deal_ids.isin(touched) & (account_ids == ""))
    owners = _ids(_versions(changes.get("deals")), "owner_id")
    return Reach(
        deals=frozenset(deal_ids[in_reach.to_numpy(dtype=bool)]),
        accounts=frozenset(accounts),
        owners=frozenset(owners),
    )


def _rows_of(tables: Mapping[str, pd.DataFrame], reached: Reach) -> dict[str, pd.DataFrame]:
    """The tables' rows the reached accounts' sources are built from."""
    deals = tables["deals"]
    part = {"deals": deals[deals["deal_id"].astype(str).isin(reached.deals)]}
    for name in DEAL_TABLES:
        if name in tables:
            table = tables[name]
            part[name] = table[table["deal_id"].astype(str).isin(reached.deals)]
    if "accounts" in tables:
        accounts = tables["accounts"]
        part["accounts"] = accounts[accounts["account_id"].astype(str).isin(reached.accounts)]
    if "contacts" in tables:
        named = _ids([part[n] for n in ("deal_contacts", "activities") if n in part], "contact_id")
        contacts = tables["contacts"]
        part["contacts"] = contacts[contacts["contact_id"].astype(str).isin(named)]
    return part


def _dropped_keys(view: str, reached: Reach) -> frozenset[str]:
    if view in OWNER_VIEWS:
        return reached.owners
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


def _spliced(
    view: str, committed: pa.Table, rebuilt: pd.DataFrame, keys: frozenset[str]
) -> pa.Table | None:
    """``committed`` with ``keys``' rows replaced by ``rebuilt``'s, in the full build's
    order (by key, then time); None when that changes nothing.

    A key's rows come all from ``committed`` or all from ``rebuilt``, each in the order
    the full build gives them, so ordering the runs of equal keys is enough: the result
    is a few zero-copy slices of the two tables, not a sort of millions of rows.
    """
    key = VIEW_KEYS[view]
    new = source_table(view, rebuilt)
    if new.schema.names != committed.schema.names:
        raise _Stale(f"{view}: columns {new.schema.names} against {committed.schema.names}")
    new = new.cast(committed.schema)
    bounds, run_keys = _runs(committed[key])
    new_bounds, new_keys = _runs(new[key])
    dropped = pd.Index(run_keys).isin(list(keys))
    if not dropped.any() and len(new_keys) == 0:
        return None
    if not set(new_keys) <= keys:
        raise _Stale(f"{view}: rows rebuilt for keys the change does not reach")
    kept = ~dropped
    side = np.concatenate([np.zeros(kept.sum(), dtype=np.int8), np.ones(len(new_keys), np.int8)])
    begin = np.concatenate([bounds[:-1][kept], new_bounds[:-1]])
    end = np.concatenate([bounds[1:][kept], new_bounds[1:]])
    order = np.argsort(np.concatenate([run_keys[kept], new_keys]), kind="stable")
    side, begin, end = side[order], begin[order], end[order]
    # Runs that continue each other in the same table make one slice.
    piece = np.ones(len(order), dtype=bool)
    piece[1:] = (side[1:] != side[:-1]) | (begin[1:] != end[:-1])
    first = np.flatnonzero(piece)
    last = np.append(first[1:], len(order)) - 1
    tables = (committed, new)
    slices = [
        tables[side[i]].slice(begin[i], end[j] - begin[i]) for i, j in zip(first, last, strict=True)
    ]
    # One chunk per column: Parquet writes thousands of small chunks ten times slower.
    return pa.concat_tables(slices).combine_chunks() if slices else committed.slice(0, 0)


class _Stale(Exception):
    """The committed sources cannot be updated in place: build everything."""


@dataclass(frozen=True)
class SourceUpdate:
    """What an incremental rebuild gives: the sources it changed (to write) and the row
    count of every source, changed or kept as committed."""

    changed: dict[str, pa.Table]
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
) -> SourceUpdate | None:
    """The feature sources of the merged ``tables`` from the committed ones in
    ``sources_dir``, rebuilding only what ``changes`` reach; None (build everything)
    when the committed sources were built by another definition or are incomplete.

    Sources the change leaves as they are are not in ``changed``: the caller keeps the
    committed files (hard links into the new state). ``definition`` is
    :func:`source_definition` of ``attributes`` and ``revival_window_days``, which the
    caller records beside the sources it writes.
    """
    if _built_by(sources_dir) != definition:
        log.info("feature sources: built by another definition, rebuilding all of them")
        return None
    empty = build_feature_sources(
        {name: table.iloc[:0] for name, table in tables.items()},
        attributes=attributes,
        revival_window_days=revival_window_days,
    )
    paths = {view: Path(sources_dir) / f"{view}.parquet" for view in empty}
    if not all(path.is_file() for path in paths.values()):
        log.info("feature sources: a committed source is missing, rebuilding all of them")
        return None
    reached = reach(tables, changes)
    rows = {view: pq.ParquetFile(path).metadata.num_rows for view, path in paths.items()}
    if not (reached.deals or reached.accounts or reached.owners):
        return SourceUpdate({}, rows, reached)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="read-sources") as reader:
        # The committed sources are read (Arrow's C++, without the GIL) while the reached
        # rows are rebuilt here: on two cores the two overlap.
        committed = {view: reader.submit(pq.read_table, path) for view, path in paths.items()}
        return _update(tables, reached, committed, rows, attributes, revival_window_days, progress)


def _update(
    tables: Mapping[str, pd.DataFrame],
    reached: Reach,
    committed: dict[str, Future[pa.Table]],
    rows: dict[str, int],
    attributes: Sequence[Attribute],
    revival_window_days: int,
    progress: Progress,
) -> SourceUpdate | None:
    """:func:`update_sources` once the reach is known and the committed sources are
    being read: rebuild the reached rows and splice them in."""
    account_views = [v for v in committed if v not in OWNER_VIEWS]
    owner_views = [v for v in committed if v in OWNER_VIEWS]
    rebuilt = build_feature_sources(
        _rows_of(tables, reached),
        progress,
        attributes,
        revival_window_days=revival_window_days,
        views=account_views,
    )
    deals = tables["deals"]
    owned = deals["owner_id"].astype("string").isin(reached.owners).fillna(False)
    rebuilt.update(
        build_feature_sources(
            {"deals": deals[owned.to_numpy(dtype=bool)]},
            attributes=attributes,
            revival_window_days=revival_window_days,
            views=owner_views,
        )
    )
    changed = {}
    try:
        for view in list(committed):
            keys = _dropped_keys(view, reached)
            spliced = _spliced(view, committed.pop(view).result(), rebuilt[view], keys)
            if spliced is not None:
                changed[view] = spliced
                rows[view] = spliced.num_rows
    except _Stale as exc:
        log.info("feature sources: %s, rebuilding all of them", exc)
        return None
    log.info(
        "feature sources: rebuilt %d of %d deals, %d accounts, %d owners; %d sources changed",
        len(reached.deals),
        len(deals),
        len(reached.accounts),
        len(reached.owners),
        len(changed),
    )
    return SourceUpdate(changed, rows, reached)
