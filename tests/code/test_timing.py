"""Each scoring answer says where its time went (``Server-Timing``, :mod:`serving.timing`).

The slow answers of the reliability benchmark's Redis outage (issue 15) could not be
explained from the client: the header showed they waited behind one request whose
online-store lookup ran to a 10 s deadline, not that they worked.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from test_batch_lane import CONFIG, deals, post

from serving import timing
from serving.limits import AdmissionMiddleware


def phases(header: bytes) -> dict[str, str]:
    out = {}
    for item in header.decode().split(", "):
        name, _, value = item.partition(";")
        out[name] = value.partition("=")[2]
    return out


class Endpoint:
    """An app that runs its endpoint in a thread, as BentoML runs a sync endpoint: the
    phases it adds there must reach the answer."""

    @timing.timed
    def score(self) -> None:
        with timing.phase("store"):
            time.sleep(0.03)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await asyncio.sleep(0.02)  # BentoML reading the body, the endpoint thread's queue
        await asyncio.to_thread(self.score)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})


def test_an_answer_carries_its_phases_and_its_worker():
    status, headers, _, seconds = asyncio.run(
        post(AdmissionMiddleware(Endpoint(), CONFIG), "/score", deals(["D1"]))
    )
    assert status == 200
    got = phases(headers[timing.HEADER])
    assert {"admit", "expected", "wait", "store", "endpoint", "total", "worker"} <= set(got)
    ms = {k: float(v) for k, v in got.items() if k != "worker"}
    assert ms["wait"] >= 20 and ms["store"] >= 30 and ms["endpoint"] >= ms["store"]
    assert ms["total"] >= ms["wait"] + ms["endpoint"] and ms["total"] <= seconds * 1000 + 1
    assert got["worker"].strip('"').isdigit()


def test_outside_a_timed_request_phases_cost_nothing_and_fail_nothing():
    result: list[str] = []

    def work() -> None:
        with timing.phase("store"):
            result.append("ran")

    thread = threading.Thread(target=work)  # no request context: nothing to add to
    thread.start()
    thread.join()
    assert result == ["ran"]
