"""Access to the Feast online store for the service: one open store, cached track records.

Account and owner track records are not in a CRM's payload; the service reads them from
the online store (materialized by ``leadscore features materialize``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

from leadscore.config import Settings
from leadscore.features.store import open_store
from serving import timing
from serving.payload import HISTORY_FEATURES

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Accounts and owners whose track record is cached before expired entries are dropped.
MAX_CACHED_RECORDS = 200_000
#: A lookup still running after this many seconds is given up: its thread is left to
#: finish on its own and a new one (with its own store) takes over. A safety net: the
#: Redis socket timeouts end a lookup long before.
ABANDON_AFTER_SECONDS = 30.0
#: The readiness state is refreshed in the background when older than this.
READY_MAX_AGE_SECONDS = 5.0
#: Deadline of the first lookup, which opens the store (parses the feature registry).
OPEN_DEADLINE_SECONDS = 30.0
#: While the store is down, one request's lookup per this many seconds tries it again.
RETRY_SECONDS = 1.0


class StoreUnavailable(RuntimeError):
    """The online store failed, or did not answer within the deadline; the message says which."""


class OnlineStore:
    """The Feast online store, opened once and shared by the endpoints, with a deadline.

    Opening a store parses the feature registry, which costs more than a lookup, so it
    is opened on first use and kept; after a failed lookup it is reopened next time (the
    server may have restarted). Lookups take turns on one thread that owns the store: a
    SQLite connection must not be used by two threads at once, and BentoML runs sync
    endpoints in a thread pool.

    A caller waits for its lookup at most ``deadline`` seconds, then gets
    :class:`StoreUnavailable`; no lock is held while a lookup runs. Once a lookup failed
    or timed out, the store counts as down and lookups fail at once instead of waiting
    (endpoints run one at a time per worker: waiting would stall every request behind
    it); every :data:`RETRY_SECONDS` one of them is started in the background to try the
    store again, and its success brings the store back, so the service recovers by
    itself. The same holds while a lookup has been running longer than the deadline (a
    frozen Redis): nothing queues behind it. The state is kept for the readiness probe
    (:meth:`healthy`), which never waits.
    """

    def __init__(self, settings: Settings, deadline: float = 0.3) -> None:
        self._settings = settings
        self.deadline = deadline
        self._lock = threading.Lock()  # guards the fields below; never held across a lookup
        self._executor = self._new_executor()
        self._local = threading.local()  # the store, per lookup thread
        self._busy_since: float | None = None
        #: (monotonic time, ok) of the last lookup that ended, or timed out.
        self._last: tuple[float, bool] = (0.0, False)
        #: Since when the store is down (a lookup failed or timed out); None: up.
        self._down_since: float | None = None
        self._last_retry = 0.0

    @staticmethod
    def _new_executor() -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="online-store")

    def run(self, lookup: Callable[[Any], T], deadline: float | None = None) -> T:
        """``lookup(store)`` on the open store, within ``deadline`` seconds (default: the store's).

        Raises :class:`StoreUnavailable` when the store failed or did not answer in time.
        """
        with timing.phase("store"):
            return self._run(lookup, self.deadline if deadline is None else deadline)

    def _run(self, lookup: Callable[[Any], T], deadline: float) -> T:
        with self._lock:
            now = time.monotonic()
            if self._busy_since is not None:
                stuck = now - self._busy_since
                if stuck > ABANDON_AFTER_SECONDS:
                    log.warning("online store lookup stuck for %.0f s; starting afresh", stuck)
                    self._executor.shutdown(wait=False, cancel_futures=True)
                    self._executor = self._new_executor()
                    self._busy_since = None
                elif stuck > self.deadline:
                    self._last = (now, False)
                    self._down_since = self._down_since or now
                    raise StoreUnavailable(
                        f"the online feature store has not answered for {stuck:.1f} s"
                    )
            if self._down_since is not None:
                if self._busy_since is None and now - self._last_retry >= RETRY_SECONDS:
                    self._last_retry = now
                    self._executor.submit(self._call, lookup).add_done_callback(_quiet)
                raise StoreUnavailable(
                    f"the online feature store is unreachable (for {now - self._down_since:.1f} s; "
                    f"tried again every {RETRY_SECONDS:g} s)"
                )
            future: Future[T] = self._executor.submit(self._call, lookup)
        try:
            return future.result(timeout=deadline)
        except FutureTimeout:
            if future.cancel():  # still queued behind other lookups: busy, not down
                raise StoreUnavailable(
                    f"the online feature store is busy: no answer within {deadline:g} s"
                ) from None
            with self._lock:
                self._last = (now := time.monotonic(), False)
                self._down_since = self._down_since or now
            raise StoreUnavailable(
                f"the online feature store did not answer within {deadline:g} s"
            ) from None
        except StoreUnavailable:
            raise
        except Exception as exc:
            raise StoreUnavailable(
                f"the online feature store failed ({type(exc).__name__}: {exc})"
            ) from exc

    def _call(self, lookup: Callable[[Any], T]) -> T:
        """On the lookup thread: open the store if needed, run the lookup, record the outcome."""
        with self._lock:
            self._busy_since = started = time.monotonic()
        ok = False
        try:
            store = getattr(self._local, "store", None)
            if store is None:
                store = self._local.store = open_store(self._settings)
            try:
                result = lookup(store)
            except Exception:
                self._local.store = None
                raise
            ok = True
            return result
        finally:
            with self._lock:
                if self._busy_since == started:  # not a thread given up on, ending late
                    self._busy_since = None
                now = time.monotonic()
                self._last = (now, ok)
                self._down_since = None if ok else self._down_since or now
                self._last_retry = now

    def healthy(self, probe: Callable[[Any], object]) -> bool:
        """Whether the last lookup succeeded, without waiting for the store.

        When that outcome is older than :data:`READY_MAX_AGE_SECONDS` and no lookup is
        running, ``probe(store)`` is started in the background so the next call knows
        better; a lookup running past the deadline counts as a failure now.
        """
        with self._lock:
            now = time.monotonic()
            checked_at, ok = self._last
            busy = self._busy_since
            if busy is not None and now - busy > self.deadline:
                return False
            ok = ok and self._down_since is None
            if busy is None and now - checked_at > READY_MAX_AGE_SECONDS:
                self._last = (now, ok)  # one background probe at a time
                self._executor.submit(self._call, probe).add_done_callback(_quiet)
        return ok


def _quiet(future: Future[Any]) -> None:
    """Retrieve a background probe's failure, so it is not reported as never retrieved."""
    if not future.cancelled() and (exc := future.exception()) is not None:
        log.debug("online store probe failed (%s: %s)", type(exc).__name__, exc)


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
            except StoreUnavailable as exc:  # score without history, say so
                log.warning("online store lookup failed (%s)", exc)
                return None
        out = []
        for account, owner in pairs:
            record = dict(self._cache[("account", account)][1])
            record.update(self._cache[("owner", owner)][1])
            out.append(record)
        return out

    def reachable(self, deadline: float | None = None) -> bool:
        """Whether the store answers a lookup now (a sentinel id, never cached).

        Waits for the answer (up to ``deadline``); the readiness probe uses :meth:`healthy`.
        """
        try:
            self._online.run(self._probe, deadline)
        except StoreUnavailable as exc:
            log.warning("online store lookup failed (%s)", exc)
            return False
        return True

    def healthy(self) -> bool:
        """Whether the store answered its last lookup; never waits (see OnlineStore.healthy)."""
        return self._online.healthy(self._probe)

    @staticmethod
    def _probe(store: Any) -> object:
        features = [f"{view}:{name}" for view, names in HISTORY_FEATURES.items() for name in names]
        rows = [{"account_id": "__readyz__", "owner_id": "__readyz__"}]
        return store.get_online_features(features=features, entity_rows=rows).to_dict()
