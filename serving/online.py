"""Access to the Feast online store for the service: one open store, cached track records.

Account and owner track records are not in a CRM's payload; the service reads them from
the online store (materialized by ``leadscore features materialize``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from leadscore.config import Settings
from leadscore.features.store import open_store
from serving.payload import HISTORY_FEATURES

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Accounts and owners whose track record is cached before expired entries are dropped.
MAX_CACHED_RECORDS = 200_000


class OnlineStore:
    """The Feast online store, opened once and shared by the endpoints.

    Opening a store parses the feature registry, which costs more than a lookup, so it
    is opened on first use and kept; after a failed lookup it is reopened next time (the
    server may have restarted). Lookups take turns: a SQLite connection must not be used
    by two threads at once, and BentoML runs sync endpoints in a thread pool.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._store: Any = None
        self._lock = threading.Lock()

    def run(self, lookup: Callable[[Any], T]) -> T:
        """``lookup(store)``, on the open store."""
        with self._lock:
            if self._store is None:
                self._store = open_store(self._settings)
            try:
                return lookup(self._store)
            except Exception:
                self._store = None
                raise


class TrackRecords:
    """Account and owner track records from the Feast online store, briefly cached.

    They change only when a deal closes and the store is re-materialized, so reusing a
    value for a few minutes (``ttl``) spares the store a lookup per request. When the
    store cannot be reached the features stay missing and callers add a warning.
    """

    def __init__(self, online: OnlineStore, ttl: float) -> None:
        self._online = online
        self._ttl = ttl
        self._cache: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}

    def _fetch(self, accounts: Sequence[str], owners: Sequence[str]) -> None:
        n = max(len(accounts), len(owners))
        rows = [
            {
                "account_id": accounts[i] if i < len(accounts) else "",
                "owner_id": owners[i] if i < len(owners) else "",
            }
            for i in range(n)
        ]
        features = [f"{view}:{name}" for view, names in HISTORY_FEATURES.items() for name in names]
        values = self._online.run(
            lambda store: store.get_online_features(features=features, entity_rows=rows).to_dict()
        )
        now = time.monotonic()
        if len(self._cache) > MAX_CACHED_RECORDS:
            self._cache = {k: v for k, v in self._cache.items() if v[0] >= now}
        expires = now + self._ttl
        for i, row in enumerate(rows):
            for view, key, entity in (
                ("account_history", "account_id", "account"),
                ("owner_history", "owner_id", "owner"),
            ):
                record = {name: values[name][i] for name in HISTORY_FEATURES[view]}
                self._cache[(entity, row[key])] = (expires, record)

    def lookup(self, pairs: Iterable[tuple[str, str]]) -> list[dict[str, Any]] | None:
        """History features per (account_id, owner_id); None when the store is unreachable."""
        pairs = list(pairs)
        now = time.monotonic()

        def stale(key: tuple[str, str]) -> bool:
            hit = self._cache.get(key)
            return hit is None or hit[0] < now

        accounts = sorted({a for a, _ in pairs if stale(("account", a))})
        owners = sorted({o for _, o in pairs if stale(("owner", o))})
        if accounts or owners:
            try:
                self._fetch(accounts, owners)
            except Exception as exc:  # any store failure: score without history, say so
                log.warning("online store lookup failed (%s: %s)", type(exc).__name__, exc)
                return None
        out = []
        for account, owner in pairs:
            record = dict(self._cache[("account", account)][1])
            record.update(self._cache[("owner", owner)][1])
            out.append(record)
        return out

    def reachable(self) -> bool:
        """Whether the store answers a lookup now (a sentinel id, never cached)."""
        self._cache.pop(("account", "__readyz__"), None)
        self._cache.pop(("owner", "__readyz__"), None)
        return self.lookup([("__readyz__", "__readyz__")]) is not None
