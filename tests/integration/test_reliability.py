"""The service on a Redis online store that dies or freezes: every request answers fast.

A private redis-server on a free port holds the online store; `leadscore serve` runs on
it. The Redis process is then frozen (SIGSTOP) and killed (SIGKILL) under concurrent
traffic: every request must answer within a second (/score_ids 503 with Retry-After,
/score scored with its "store unreachable" warning, /readyz its cached state), and the
service must recover by itself once Redis continues or restarts. Beside large batches
sent back to back, single deals must still answer in a fraction of a batch's time.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import IN_CI, free_port
from tests.redis_fixture import RedisServer
from tests.serving_fixture import (
    AS_OF,
    crm_payloads,
    prepare_champion,
    running_server,
    serving_environment,
    small_champion,
    synthetic_tables,
)

pytestmark = pytest.mark.integration

STORE_DEALS = 40
#: The online store's deadline in these tests (seconds).
STORE_TIMEOUT = 0.5


@dataclass
class Service:
    url: str
    redis: RedisServer
    payloads: list[dict[str, Any]]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    if not RedisServer.available():
        if IN_CI:
            pytest.fail("redis-server is not installed; CI must have it")
        pytest.skip("redis-server is not installed")
    base = tmp_path_factory.mktemp("reliability")
    redis = RedisServer(free_port(), base / "redis")
    redis.start()
    settings, env = serving_environment(base)
    settings = dataclasses.replace(
        settings, feature_store_yaml="feature_store.redis.yaml", redis=redis.address
    )
    env.update(
        LEADSCORE_FEATURE_STORE_YAML="feature_store.redis.yaml",
        LEADSCORE_REDIS=redis.address,
        LEADSCORE_HISTORY_TTL_SECONDS="0",  # every /score asks the store
        BENTOML_CONFIG_OPTIONS="services.lead_scorer.workers=1",
        # The deadline under test, a little over production's 0.3 s: a healthy Redis
        # missed 0.3 s on CI's loaded cores. Load shedding is tested in test_batch_lane*;
        # here it would refuse the /score a dead store must still answer degraded.
        LEADSCORE_STORE_TIMEOUT_SECONDS=str(STORE_TIMEOUT),
        LEADSCORE_MAX_QUEUE_DELAY_SECONDS="5",
    )
    patch = pytest.MonkeyPatch()
    try:
        for k, v in env.items():
            patch.setenv(k, v)
        tables = synthetic_tables()
        model, frame = small_champion()
        ids = sorted(tables["deals"]["deal_id"].iloc[:STORE_DEALS])
        prepare_champion(settings, tables, model, frame, ids)
        redis.save()  # a restart after SIGKILL comes back with the store
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        leadscore = str(Path(sys.executable).with_name("leadscore"))
        cmd = [leadscore, "serve", "--port", str(port), "--host", "127.0.0.1"]
        with running_server(cmd, dict(os.environ), f"{url}/readyz", timeout=120):
            yield Service(url, redis, crm_payloads(tables, ids))
    finally:
        patch.undo()
        redis.stop()


@dataclass
class Answer:
    endpoint: str
    status: int | None  # None: no answer within the client's timeout
    seconds: float
    degraded: bool = False
    retry_after: str | None = None
    #: Why a 503 was answered: the shed reason, or "unavailable" (the store).
    reason: str | None = None


def hammer(service: Service, seconds: float, clients: int = 6) -> list[Answer]:
    """Concurrent clients cycling through /score_ids, /score and /readyz for ``seconds``."""
    stop = time.monotonic() + seconds
    answers: list[Answer] = []

    def run(k: int) -> None:
        with httpx.Client(base_url=service.url, timeout=5) as c:
            i = k
            while time.monotonic() < stop:
                i += 1
                deal = service.payloads[i % len(service.payloads)]
                endpoint = ("/score_ids", "/score", "/readyz")[i % 3]
                start = time.monotonic()
                try:
                    if endpoint == "/score_ids":
                        r = c.post(
                            endpoint,
                            json={"deal_ids": [deal["deal_id"]], "as_of": AS_OF.isoformat()},
                        )
                    elif endpoint == "/score":
                        r = c.post(endpoint, json={"deals": [deal], "as_of": AS_OF.isoformat()})
                    else:
                        r = c.get(endpoint)
                except httpx.HTTPError:
                    answers.append(Answer(endpoint, None, time.monotonic() - start))
                    continue
                degraded = endpoint == "/score" and any(
                    "unreachable" in w["message"]
                    for res in r.json().get("results", [])
                    for w in res["warnings"]
                )
                answers.append(
                    Answer(
                        endpoint,
                        r.status_code,
                        time.monotonic() - start,
                        degraded,
                        r.headers.get("retry-after"),
                        refusal(r) if r.status_code == 503 else None,
                    )
                )

    threads = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def refusal(r: httpx.Response) -> str:
    """Why a 503 was answered: the shed reason, or the type of its first deal error."""
    try:
        body = r.json()
    except ValueError:
        return r.text[:40]
    if "detail" in body:
        return str(body["detail"][0].get("reason"))
    return str(body["errors"][0]["problems"][0]["type"]) if body.get("errors") else "?"


def wait_for_recovery(service: Service, timeout: float = 30) -> float:
    """Seconds until /score_ids scores and /readyz says ready again."""
    start = time.monotonic()
    ids = [service.payloads[0]["deal_id"]]
    with httpx.Client(base_url=service.url, timeout=5) as c:
        while True:
            by_id = c.post("/score_ids", json={"deal_ids": ids, "as_of": AS_OF.isoformat()})
            if by_id.status_code == 200 and c.get("/readyz").status_code == 200:
                return time.monotonic() - start
            assert time.monotonic() - start < timeout, f"no recovery in {timeout} s"
            time.sleep(0.2)


def test_healthy_redis_scores_everything(service: Service):
    answers = hammer(service, 1.5)
    assert answers and {a.status for a in answers} == {200}, {a.reason for a in answers}
    assert not any(a.degraded for a in answers)


@pytest.mark.parametrize("failure", ["frozen", "killed"])
def test_a_frozen_or_killed_redis_never_holds_a_request_and_the_service_recovers(
    service: Service, failure: str
):
    """Killing Redis made /score_ids wait up to 29.7 s, /score hang and /readyz time out."""
    redis = service.redis
    if failure == "frozen":
        redis.freeze()
    else:
        redis.kill()
    try:
        answers = hammer(service, 4)
    finally:
        if failure == "frozen":
            redis.thaw()
        else:
            redis.start()
    slowest = max(answers, key=lambda a: a.seconds)
    # The deadline, then a scoring without the store: never the 29.7 s of a held request.
    assert slowest.seconds < STORE_TIMEOUT + 1.0, slowest
    by = {e: [a for a in answers if a.endpoint == e] for e in ("/score_ids", "/score", "/readyz")}
    assert all(by.values())
    assert {a.status for a in by["/score_ids"]} == {503}
    assert {a.retry_after for a in by["/score_ids"]} == {"1"}
    assert {a.status for a in by["/score"]} == {200} and all(a.degraded for a in by["/score"])
    assert {a.status for a in by["/readyz"]} <= {200, 503} and by["/readyz"][-1].status == 503
    assert wait_for_recovery(service) < 20
    test_healthy_redis_scores_everything(service)


def test_single_deals_beside_batches_wait_a_chunk_not_a_batch(service: Service):
    """Single deals waited for whole 1,000-deal batches: 779 ms at p99 (issue 15)."""
    tables = synthetic_tables()
    deals = [p for p in crm_payloads(tables) if p["created_at"] <= AS_OF.isoformat()][:300]
    batch = json.dumps({"deals": deals, "as_of": AS_OF.isoformat()})
    stop = time.monotonic() + 6
    batches: list[tuple[int, float]] = []
    singles: list[tuple[int, float]] = []

    def send_batches() -> None:
        with httpx.Client(base_url=service.url, timeout=30) as c:
            while time.monotonic() < stop:
                start = time.monotonic()
                r = c.post("/score", content=batch, headers={"Content-Type": "application/json"})
                batches.append((r.status_code, time.monotonic() - start))

    def send_singles(k: int) -> None:
        with httpx.Client(base_url=service.url, timeout=30) as c:
            i = k
            while time.monotonic() < stop:
                i += 7
                start = time.monotonic()
                r = c.post(
                    "/score", json={"deals": [deals[i % len(deals)]], "as_of": AS_OF.isoformat()}
                )
                singles.append((r.status_code, time.monotonic() - start))
                time.sleep(0.02)

    threads = [threading.Thread(target=send_batches)]
    threads += [threading.Thread(target=send_singles, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    scored = [seconds for status, seconds in batches if status == 200]
    assert scored, batches
    assert {status for status, _ in singles} == {200}
    waits = sorted(seconds for _, seconds in singles)
    p90 = waits[int(0.9 * len(waits))]
    # A chunk is 20 of the batch's 300 deals: a single waits for one, not for the batch.
    assert p90 < statistics.median(scored) / 4, (p90, statistics.median(scored))
