"""Deadlines on the online store, load shedding and size limits, without a server.

The real-Redis and real-server versions are in tests/integration/test_reliability.py.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import pytest

import serving.online as online
from leadscore.config import MAX_DEAL_LIST_ITEMS, ServingConfig, Settings
from serving.limits import AdmissionMiddleware
from serving.online import OnlineStore, StoreUnavailable, TrackRecords


class FrozenStore:
    """A Feast store whose lookups hang while ``frozen`` is clear... until it is set."""

    def __init__(self) -> None:
        self.thawed = threading.Event()
        self.thawed.set()
        self.calls = 0

    def get_online_features(self, features: list[str], entity_rows: list[dict[str, str]]) -> Any:
        self.calls += 1
        self.thawed.wait(10)
        values = {f.split(":")[1]: [1.0] * len(entity_rows) for f in features}
        return type("Response", (), {"to_dict": lambda self: values})()


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> FrozenStore:
    store = FrozenStore()
    monkeypatch.setattr(online, "open_store", lambda settings: store)
    yield store
    store.thawed.set()


#: The deadline of the hung-store tests: long beside a busy 2-core machine's scheduling
#: hiccups (tens of ms under the parallel suite), so "waited for the hang" (at least a
#: deadline) and "failed at once" (a small fraction of it) cannot be mistaken.
DEADLINE = 1.0
#: "At once": well under the deadline, whatever else the machine is running.
AT_ONCE = DEADLINE / 4


def test_a_hung_store_fails_lookups_within_the_deadline_and_recovers(frozen: FrozenStore):
    """A frozen Redis held the store's lock with no deadline: every request waited for it."""
    store = OnlineStore(Settings(), deadline=DEADLINE)
    records = TrackRecords(store, ttl=0)
    assert records.lookup([("A1", "U1")]) is not None and records.healthy()

    frozen.thawed.clear()
    times, answers = [], []
    for i in range(5):
        start = time.monotonic()
        answers.append(records.lookup([(f"A{i}", "U1")]))
        times.append(time.monotonic() - start)
    assert answers == [None] * 5, "a hung store degrades the lookup"
    assert times[0] < DEADLINE + AT_ONCE, times
    assert max(times[1:]) < AT_ONCE, f"while a lookup hangs, the next ones fail at once: {times}"
    with pytest.raises(StoreUnavailable, match="has not answered"):
        store.run(lambda s: None)
    start = time.monotonic()
    assert records.healthy() is False and time.monotonic() - start < AT_ONCE, "the probe waited"

    frozen.thawed.set()  # the store answers again: the service recovers by itself
    deadline = time.monotonic() + 5
    while records.lookup([("A9", "U1")]) is None:
        assert time.monotonic() < deadline, "no recovery"
        time.sleep(0.05)
    assert records.healthy()


def test_concurrent_lookups_on_a_hung_store_do_not_queue_behind_each_other(frozen: FrozenStore):
    """Twenty requests on a hung store: each waits one deadline at most, never its
    predecessors' too (queued, the last would wait twenty)."""
    store = OnlineStore(Settings(), deadline=DEADLINE)
    records = TrackRecords(store, ttl=0)
    records.lookup([("A0", "U0")])
    frozen.thawed.clear()
    times: list[float] = []

    def one(i: int) -> None:
        start = time.monotonic()
        records.lookup([(f"A{i}", "U1")])
        times.append(time.monotonic() - start)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(1, 21)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(times) == 20 and max(times) < DEADLINE + AT_ONCE, sorted(times)[-3:]


def test_the_readiness_probe_refreshes_in_the_background(
    frozen: FrozenStore, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(online, "READY_MAX_AGE_SECONDS", 0.0)
    store = OnlineStore(Settings(), deadline=0.2)
    records = TrackRecords(store, ttl=0)
    assert records.healthy() is False, "nothing looked up yet"
    deadline = time.monotonic() + 5
    while not records.healthy():  # the first call started a probe; a later one sees it
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert frozen.calls >= 1


# ---------------------------------------------------------------- admission middleware
class App:
    """An ASGI app that answers 200 once ``release`` is set, recording the bodies it read."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.bodies: list[bytes] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.bodies.append((await receive())["body"])
        await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


async def call(
    app: Any, path: str, body: bytes, chunk: int | None = None, length: bool = True
) -> tuple[int, dict[bytes, bytes], bytes]:
    chunks = [body[i : i + chunk] for i in range(0, len(body), chunk)] if chunk else [body]
    messages = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    headers = [(b"content-length", str(len(body)).encode())] if length else []
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "http", "path": path, "headers": headers}, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    return (
        start["status"],
        dict(start["headers"]),
        b"".join(m.get("body", b"") for m in sent[1:]),
    )


def deals_body(n: int, activities: int = 0) -> bytes:
    deal = {"deal_id": "D1", "account_id": "A1", "activities": [{"type": "call"}] * activities}
    return json.dumps({"deals": [deal] * n}).encode()


CONFIG = ServingConfig(
    grade_thresholds={"A": 60, "B": 40, "C": 20},
    max_concurrent_requests=3,
    max_queued_deals=100,
    batch_deals=10,
    max_concurrent_batches=1,
    max_body_bytes=50_000,
)


def test_a_body_over_the_limit_is_refused_before_parsing():
    """A 156 MB body was accepted and scored: now 413, declared or streamed."""

    async def scenario() -> None:
        inner = App()
        inner.release.set()
        app = AdmissionMiddleware(inner, CONFIG)
        big = deals_body(1, activities=5000)
        status, _, body = await call(app, "/score", big)
        assert status == 413 and b"50,000 bytes" in body
        status, _, _ = await call(app, "/score", big, chunk=4096, length=False)
        assert status == 413, "counted as it streams, without Content-Length"
        assert inner.bodies == [], "never handed to the app"
        small = deals_body(2)
        assert (await call(app, "/score", small, chunk=7, length=False))[0] == 200
        assert inner.bodies == [small], "the app reads the body as sent"
        assert (await call(app, "/readyz", big))[0] == 200, "only the scoring endpoints"

    asyncio.run(scenario())


def test_over_capacity_requests_get_a_fast_503_and_batches_have_their_own_budget():
    """Nothing answered 503 or 429 under load; batches starved single-deal requests."""

    async def scenario() -> None:
        inner = App()
        app = AdmissionMiddleware(inner, CONFIG)
        batch = asyncio.create_task(call(app, "/score", deals_body(50)))
        await asyncio.sleep(0.01)
        status, headers, body = await call(app, "/score", deals_body(50))
        assert status == 503 and headers[b"retry-after"] == b"1" and b"batches" in body
        ids = json.dumps({"deal_ids": [f"D{i}" for i in range(60)]}).encode()
        assert (await call(app, "/score_ids", ids))[0] == 503, "ids count as deals too"
        singles = [asyncio.create_task(call(app, "/score", deals_body(1))) for _ in range(2)]
        await asyncio.sleep(0.01)
        status, headers, body = await call(app, "/score", deals_body(1))
        assert status == 503 and b"too many requests" in body, "3 in flight already"
        inner.release.set()
        assert [(await t)[0] for t in (batch, *singles)] == [200, 200, 200]
        assert (app.requests, app.deals, app.batches) == (0, 0, 0), "every slot given back"
        assert app.refused == {"batches": 1, "deals": 1, "requests": 1}

    asyncio.run(scenario())


def test_an_idle_worker_takes_a_batch_larger_than_the_deal_budget():
    async def scenario() -> None:
        inner = App()
        inner.release.set()
        app = AdmissionMiddleware(inner, CONFIG)
        assert (await call(app, "/score", deals_body(200)))[0] == 200

    asyncio.run(scenario())


def test_lists_inside_a_deal_are_capped_and_the_field_named():
    from serving.schemas import InvalidDeal, ScoreRequest

    activity = {"type": "call", "occurred_at": "2025-01-02T00:00:00Z"}
    deal = {
        "deal_id": "D1",
        "account_id": "A1",
        "created_at": "2025-01-01T00:00:00Z",
        "activities": [activity] * (MAX_DEAL_LIST_ITEMS + 1),
    }
    parsed = ScoreRequest.model_validate({"deals": [deal]}).deals[0]
    assert isinstance(parsed, InvalidDeal)
    assert [p.loc for p in parsed.problems] == [["activities"]]
    assert "10000" in parsed.problems[0].msg
