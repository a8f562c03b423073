"""The batch process: a worker's large batches answered by a process of their own.

Single deals beside 1,000-deal batches sent back to back waited 135 ms at p99 with the
batches scored in the worker, in chunks (issue 15). A tiny ASGI app stands in for the
service here; the process is a real one (spawned), as in the service.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

import pytest
from prometheus_client import REGISTRY

from serving import batch_process
from serving.batch_process import NICENESS, BatchProcess
from serving.limits import AdmissionMiddleware
from tests.code.batch_echo import echo_app
from tests.code.test_batch_lane import CONFIG, Scorer, deals, post


def ready(process: BatchProcess, timeout: float = 120) -> BatchProcess:
    deadline = time.monotonic() + timeout
    while not process.ready:
        assert time.monotonic() < deadline, "the batch process never got ready"
        time.sleep(0.05)
    return process


SCOPE = {"type": "http", "path": "/score", "headers": [(b"content-type", b"application/json")]}


#: The tests' batch processes run at a milder priority than the service's (NICENESS): at
#: 19 beside a busy test run's workers, a child can wait minutes for the CPU to start.
TEST_NICENESS = 5


def test_the_process_answers_at_a_lower_priority_and_stops_with_its_pipe():
    assert BatchProcess(echo_app).niceness == NICENESS == 19  # the service's: the lowest
    process = BatchProcess(echo_app, niceness=TEST_NICENESS)
    try:
        assert asyncio.run(process.score(SCOPE, b"{}")) is None, "started, not ready yet"
        ready(process)
        status, headers, body = asyncio.run(process.score(SCOPE, b"x" * 300_000))
    finally:
        process.close()
    answer = json.loads(body)
    assert status == 201 and (b"x-echo", b"1") in headers
    assert answer["path"] == "/score" and answer["bytes"] == 300_000
    assert answer["pid"] != os.getpid()
    assert answer["nice"] == min(19, os.nice(0) + TEST_NICENESS)
    assert not process._process.is_alive()


def test_a_process_that_dies_leaves_the_batch_to_the_worker_and_is_started_again(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setattr(batch_process, "RESTART_SECONDS", 0.0)
    process = BatchProcess(echo_app, niceness=TEST_NICENESS)
    process.start()
    ready(process)
    try:
        first = process._process.pid
        assert asyncio.run(process.score(SCOPE, b"die")) is None
        assert not process.ready
        assert asyncio.run(process.score(SCOPE, b"{}")) is None, "started again, not ready"
        ready(process)
        status, _, body = asyncio.run(process.score(SCOPE, b"{}"))
    finally:
        process.close()
    assert status == 201 and json.loads(body)["pid"] not in (first, os.getpid())


def test_a_process_still_exiting_after_its_pipe_closed_is_replaced_at_the_next_batch(
    monkeypatch: pytest.MonkeyPatch,
):
    """The process closes its pipes, then lingers 3 s: the next batch must start a new one
    (the old check saw it alive and waited for a batch that never came)."""
    monkeypatch.setattr(batch_process, "RESTART_SECONDS", 0.0)
    process = BatchProcess(echo_app, niceness=TEST_NICENESS)
    process.start()
    ready(process)
    try:
        first = process._process
        assert asyncio.run(process.score(SCOPE, b"die slowly")) is None
        assert first.is_alive() and not process.ready  # its pipe closed, not yet exited
        assert asyncio.run(process.score(SCOPE, b"{}")) is None, "started again, not ready"
        assert process._process is not first
        ready(process)
        status, _, body = asyncio.run(process.score(SCOPE, b"{}"))
    finally:
        process.close()
    assert status == 201 and json.loads(body)["pid"] != first.pid


class Answering:
    """Stands in for the batch process: answers each batch at once, or gives it back (None)."""

    def __init__(self, ready: bool) -> None:
        self.ready = ready
        self.bodies: list[bytes] = []

    async def score(self, scope: dict[str, Any], body: bytes) -> Any:
        if not self.ready:
            return None
        self.bodies.append(body)
        return 200, [(b"content-type", b"application/json")], b'{"results": [], "errors": []}'


def batches(lane: str) -> float:
    return REGISTRY.get_sample_value("leadscore_batches_total", {"lane": lane}) or 0.0


@pytest.mark.parametrize("ready", [True, False])
def test_a_batch_goes_to_the_process_when_ready_else_is_scored_here_in_chunks(ready: bool):
    async def scenario() -> tuple[int, Any, list[int], Answering]:
        scorer = Scorer()
        app = AdmissionMiddleware(scorer, CONFIG)
        app.process = Answering(ready)  # type: ignore[assignment]
        status, _, answer, _ = await post(app, "/score", deals([f"D{i}" for i in range(25)]))
        single, _, _, _ = await post(app, "/score", deals(["S"]))
        assert single == 200
        return status, answer, scorer.requests, app.process  # type: ignore[return-value]

    before = {lane: batches(lane) for lane in ("process", "chunks")}
    status, answer, requests, process = asyncio.run(scenario())
    assert status == 200
    if ready:
        assert requests == [1], "only the single deal was scored in the worker"
        assert [len(json.loads(b)["deals"]) for b in process.bodies] == [25]
    else:
        assert requests == [10, 10, 5, 1] and len(answer["results"]) == 25
    lane = "process" if ready else "chunks"
    assert batches(lane) == before[lane] + 1
