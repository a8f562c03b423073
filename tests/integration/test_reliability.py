"""The service on a Redis online store that dies or freezes: every request answers fast.

A private redis-server on a free port holds the online store; `leadscore serve` runs on
it. The Redis process is then frozen (SIGSTOP) and killed (SIGKILL) under concurrent
traffic: every request must answer within a second (/score_ids 503 with Retry-After,
/score scored with its "store unreachable" warning, /readyz its cached state), and the
service must recover by itself once Redis continues or restarts.
"""

from __future__ import annotations

import dataclasses
import os
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
                    )
                )

    threads = [threading.Thread(target=run, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


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
    assert answers and {a.status for a in answers} == {200}
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
    assert slowest.seconds < 1.0, slowest
    by = {e: [a for a in answers if a.endpoint == e] for e in ("/score_ids", "/score", "/readyz")}
    assert all(by.values())
    assert {a.status for a in by["/score_ids"]} == {503}
    assert {a.retry_after for a in by["/score_ids"]} == {"1"}
    assert {a.status for a in by["/score"]} == {200} and all(a.degraded for a in by["/score"])
    assert {a.status for a in by["/readyz"]} <= {200, 503} and by["/readyz"][-1].status == 503
    assert wait_for_recovery(service) < 20
    test_healthy_redis_scores_everything(service)
