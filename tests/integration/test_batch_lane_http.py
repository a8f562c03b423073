"""The batch lane on the real service: a batch scored in chunks answers as if scored whole.

The packaged service (``leadscore serve``), with chunks of 7 deals so that a
batch of 40 is 6 chunks; every deal of a batch must get the answer it gets alone, every
problem must be located in the whole batch, and ``/metrics`` must show the shed counter.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port
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

CHUNK = 7
STORE_DEALS = 40


@pytest.fixture(scope="module")
def lane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, list[dict[str, Any]]]]:
    """The packaged service in its own process (``leadscore serve``), chunks of 7 deals.

    Its own process: BentoML registers its Prometheus metrics once per process, and the
    other in-process app of the suite (tests/integration/test_service_http.py) has them.
    """
    settings, env = serving_environment(tmp_path_factory.mktemp("lane"))
    with pytest.MonkeyPatch.context() as patch:
        for k, v in env.items():
            patch.setenv(k, v)
        tables = synthetic_tables()
        model, frame = small_champion()
        ids = sorted(tables["deals"]["deal_id"].iloc[:STORE_DEALS])
        prepare_champion(settings, tables, model, frame, ids)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    leadscore = str(Path(sys.executable).with_name("leadscore"))
    server_env = {**os.environ, **env, "LEADSCORE_BATCH_DEALS": str(CHUNK)}
    cmd = [leadscore, "serve", "--port", str(port)]
    with (
        running_server(cmd, server_env, f"{url}/readyz", timeout=180),
        httpx.Client(base_url=url, timeout=60) as client,
    ):
        yield client, crm_payloads(tables, ids)


def scored(result: dict[str, Any]) -> dict[str, Any]:
    """A result without the moment it was scored at."""
    return {k: v for k, v in result.items() if k != "scored_at"}


def test_a_chunked_batch_answers_as_its_deals_do_alone(lane: tuple[Any, list[dict[str, Any]]]):
    client, payloads = lane
    deals = [dict(p) for p in payloads[:STORE_DEALS]]
    deals[9] = {**deals[9], "created_at": "not a time"}
    deals[30] = {**deals[30], "amount": -5}
    deals.insert(23, deals[22])  # the same deal twice in one chunk
    as_of = AS_OF.isoformat()
    whole = client.post("/score", json={"deals": deals, "as_of": as_of})
    assert whole.status_code == 200
    answer = whole.json()
    alone = [client.post("/score", json={"deals": [d], "as_of": as_of}) for d in deals]
    assert [i for i, r in enumerate(alone) if r.status_code != 200] == [9, 31]
    expected = [scored(r.json()["results"][0]) for i, r in enumerate(alone) if i not in (9, 23, 31)]
    assert [scored(r) for r in answer["results"]] == expected
    assert [(e["index"], e["deal_id"]) for e in answer["errors"]] == [
        (9, deals[9]["deal_id"]),
        (23, deals[23]["deal_id"]),
        (31, deals[31]["deal_id"]),
    ]
    assert answer["errors"][0]["problems"][0]["loc"] == ["deals", 9, "created_at"]
    assert answer["errors"][1]["problems"][0]["msg"] == "appears more than once in the batch"
    assert answer["errors"][2]["problems"][0]["loc"] == ["deals", 31, "amount"]
    everything = {"deals": deals[:9] + deals[10:22], "as_of": as_of, "all_or_nothing": True}
    at_once = client.post("/score", json=everything)  # all_or_nothing: scored whole
    chunked = client.post("/score", json={**everything, "all_or_nothing": False})
    assert at_once.status_code == chunked.status_code == 200
    assert [scored(r) for r in at_once.json()["results"]] == [
        scored(r) for r in chunked.json()["results"]
    ]


def test_a_chunked_ids_batch_locates_unknown_ids_in_the_whole_batch(
    lane: tuple[Any, list[dict[str, Any]]],
):
    client, payloads = lane
    ids = [p["deal_id"] for p in payloads[:20]]
    ids[12] = "NO-SUCH-DEAL"
    answer = client.post("/score_ids", json={"deal_ids": ids, "as_of": AS_OF.isoformat()})
    assert answer.status_code == 200
    body = answer.json()
    assert [r["deal_id"] for r in body["results"]] == ids[:12] + ids[13:]
    assert [(e["index"], e["problems"][0]["loc"]) for e in body["errors"]] == [
        (12, ["deal_ids", 12])
    ]
    nothing = client.post("/score_ids", json={"deal_ids": [f"NO-{i}" for i in range(9)]})
    assert nothing.status_code == 422 and len(nothing.json()["errors"]) == 9


def test_the_shed_counter_is_on_metrics_for_every_reason(lane: tuple[Any, list[dict[str, Any]]]):
    client, _ = lane
    metrics = client.get("/metrics").text
    for reason in ("requests", "deals", "batches", "queue_delay"):
        assert f'leadscore_shed_total{{reason="{reason}"}}' in metrics
