"""The retraining loop run twice from the CLI while the real service answers (issue 16).

A service (``leadscore serve``, two workers, hot reload every half second) starts on a
weak champion: a model of the generator's own outcomes, on a CRM whose deals are won by
the interaction rule (:func:`tests.crm_fixture.with_interaction_export`). A client thread
sends ``/score`` and ``/score_ids`` requests the whole time. Then ``leadscore retrain``
runs as a scheduler would run it, in its own process:

1. on that export: the new version learns the rule, passes the gate, is promoted and
   packaged; every worker serves it within the reload interval (``GET /model``);
2. on the same export with its outcomes shuffled: the gate refuses the version (exit 1),
   and the served version does not change;

and ``leadscore rollback`` puts the first champion back, in the service too. Not one
request may fail. The switch time (pointer written to first answer of the new version)
and the slowest answer around it are printed (``-s``) as the figures of the issue.
"""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from leadscore.crm.synth import generate_crm, write_export
from leadscore.model.registry import mlflow_client
from tests.conftest import free_port
from tests.crm_fixture import with_interaction_export, with_shuffled_outcomes
from tests.serving_fixture import (
    AS_OF,
    crm_payloads,
    prepare_champion,
    running_server,
    serving_environment,
    small_champion,
)
from training.registry import make_champion

pytestmark = [pytest.mark.integration, pytest.mark.timeout(2400)]

#: Deals of the export: the fewest whose interaction model passes the baseline gate.
DEALS = 1500
RELOAD_SECONDS = 0.5
#: Between two rounds of requests: steady traffic that leaves the retrain a core.
PAUSE = 0.1


class Traffic(threading.Thread):
    """Requests one after another until stopped; every answer kept with its time."""

    def __init__(self, url: str, payloads: list[dict[str, Any]], ids: list[str]) -> None:
        super().__init__(daemon=True)
        self.url, self.payloads, self.ids = url, payloads, ids
        self.stop = threading.Event()
        #: (wall time at the answer, seconds taken, endpoint, status, model version or error)
        self.answers: list[tuple[float, float, str, int, str]] = []

    def run(self) -> None:
        as_of = AS_OF.isoformat()
        requests = [
            ("/score", {"deals": self.payloads, "as_of": as_of}),
            ("/score_ids", {"deal_ids": self.ids, "as_of": as_of}),
        ]
        with httpx.Client(base_url=self.url, timeout=60) as client:
            while not self.stop.is_set():
                for path, body in requests:
                    start = time.perf_counter()
                    try:
                        answer = client.post(path, json=body)
                        status = answer.status_code
                        said = answer.json()["model_version"] if status == 200 else answer.text
                    except (httpx.HTTPError, ValueError) as exc:
                        status, said = 0, repr(exc)
                    self.answers.append(
                        (time.time(), time.perf_counter() - start, path, status, said)
                    )
                self.stop.wait(PAUSE)

    def failed(self) -> list[tuple[float, float, str, int, str]]:
        return [a for a in self.answers if a[3] != 200]


def _problem(answer: str) -> str:
    """The first problem a failed answer states (its whole text when it is not ours)."""
    try:
        return str(json.loads(answer)["errors"][0]["problems"][0]["msg"])
    except (ValueError, KeyError, IndexError, TypeError):
        return answer[:300]


def leadscore(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``leadscore ARGS`` in its own process, as cron runs it."""
    command = [str(Path(sys.executable).with_name("leadscore")), *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)


def served_version(url: str) -> str:
    return str(httpx.get(f"{url}/model", timeout=30).json()["model_version"])


def wait_for_version(url: str, version: str, timeout: float = 60) -> None:
    """Until ten answers in a row of ``GET /model`` (either worker) say ``version``."""
    deadline, in_a_row = time.monotonic() + timeout, 0
    while in_a_row < 10:
        in_a_row = in_a_row + 1 if served_version(url) == version else 0
        assert time.monotonic() < deadline, f"still not serving version {version}"
        time.sleep(0.05)


def pointer_time(pointer: Path) -> float:
    return datetime.fromisoformat(json.loads(pointer.read_text())["written_at"]).timestamp()


def switch_figures(traffic: Traffic, written: float, version: str) -> dict[str, float]:
    """Seconds from the pointer's write to the first answer of ``version``, the slowest
    answer in the five seconds either side, and the median answer before."""
    first_new = min(t for t, _, _, _, v in traffic.answers if v == version and t >= written)
    around = [s for t, s, *_ in traffic.answers if written - 5 <= t <= first_new + 5]
    before = [s for t, s, *_ in traffic.answers if t < written - 5]
    return {
        "switch_seconds": round(first_new - written, 3),
        "max_latency_around_switch": round(max(around), 3),
        "median_latency_before": round(statistics.median(before), 3) if before else float("nan"),
    }


def test_retrain_promotes_then_is_refused_while_the_service_answers_every_request(
    tmp_path: Path,
):
    settings, env = serving_environment(tmp_path)
    crm = generate_crm(DEALS, seed=21, as_of=AS_OF)
    good = with_interaction_export(crm.tables)
    write_export(dataclasses.replace(crm, tables=good), tmp_path / "good")
    write_export(
        dataclasses.replace(crm, tables=with_shuffled_outcomes(good)), tmp_path / "shuffled"
    )
    with pytest.MonkeyPatch.context() as patch:
        for k, v in env.items():
            patch.setenv(k, v)
        weak, frame = small_champion()  # the generator's outcomes: blind to the rule
        prepare_champion(settings, good, weak, frame)
        # As `promote` records a champion, so that `rollback` can come back to it.
        make_champion(mlflow_client(settings), settings.model_name, "1", {})
    deals = good["deals"]
    open_ids = sorted(deals.loc[deals["status"] == "open", "deal_id"])[:3]

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cli_env = {**os.environ, **env, "LEADSCORE_ARTIFACT_ROOT": str(settings.artifact_root)}
    server_env = {
        **cli_env,
        "LEADSCORE_MODEL_RELOAD_SECONDS": str(RELOAD_SECONDS),
        "LEADSCORE_SERVED_LOG": "0",
        # Measured (issue 16): with the service's default deadline of 0.3 s, a lookup took
        # 0.35 s while this machine's load average was 12 on 2 cores (other test modules
        # beside this one), and the store then counts as down for a second: fast 503s of
        # the machine, not of the retrain (which runs at nice +10) nor of the switch.
        "LEADSCORE_STORE_TIMEOUT_SECONDS": "5",
    }
    serve = [str(Path(sys.executable).with_name("leadscore")), "serve", "--port", str(port)]
    server_log = tmp_path / "server.log"
    with running_server(serve, server_env, f"{url}/readyz", timeout=300, log=server_log):
        assert served_version(url) == "1"
        traffic = Traffic(url, crm_payloads(good, open_ids), open_ids)
        traffic.start()
        try:
            promoted = leadscore(cli_env, "retrain", str(tmp_path / "good"))
            assert promoted.returncode == 0, promoted.stdout + promoted.stderr[-3000:]
            assert "version 2 promoted (champion was 1)" in promoted.stdout, promoted.stdout
            written = pointer_time(settings.served_pointer)
            wait_for_version(url, "2")
            figures = switch_figures(traffic, written, "2")
            print("retrain loop, switch to version 2:", figures)

            refused = leadscore(cli_env, "retrain", str(tmp_path / "shuffled"))
            assert refused.returncode == 1, refused.stdout + refused.stderr[-3000:]
            assert "gate: not better than baseline" in refused.stdout, refused.stdout
            assert "version 3 NOT promoted; champion stays 2" in refused.stdout, refused.stdout
            assert pointer_time(settings.served_pointer) == written  # nothing served changed
            time.sleep(4 * RELOAD_SECONDS)
            assert {served_version(url) for _ in range(10)} == {"2"}

            back = leadscore(cli_env, "rollback", "--note", "retrain loop test")
            assert back.returncode == 0, back.stdout + back.stderr[-3000:]
            wait_for_version(url, "1")
        finally:
            traffic.stop.set()
            traffic.join(timeout=120)
    print("retrain loop:", figures, f"{len(traffic.answers)} requests")
    # Not one failed request: /score_ids too, while `retrain` materializes (Feast's
    # MATERIALIZING state and its emptied registry file failed lookups: the repo's
    # feature_store*.yaml, leadscore/features/registry_store.py).
    failed = [
        (datetime.fromtimestamp(t).isoformat(), round(s, 3), path, status, _problem(said))
        for t, s, path, status, said in traffic.failed()
    ]
    slowest = {
        p: max(s for _, s, q, *_ in traffic.answers if q == p) for p in ("/score", "/score_ids")
    }
    print(
        f"retrain loop: {len(failed)} of {len(traffic.answers)} requests failed; slowest answer "
        f"{ {p: round(s, 3) for p, s in slowest.items()} } s"
    )
    store_said = [
        line for line in server_log.read_text(errors="replace").splitlines() if "store" in line
    ]
    assert not failed, (failed[:5], store_said[:10])
    versions = [v for *_, v in traffic.answers]
    assert {"1", "2"} <= set(versions) and len(versions) > 20

    client = mlflow_client(settings)
    loops = client.search_runs(
        [client.get_experiment_by_name(settings.experiment).experiment_id],
        filter_string="tags.`leadscore.loop` = 'retrain'",
        order_by=["attributes.start_time ASC"],
    )
    assert [r.data.tags["retrain.decision"] for r in loops] == [
        "promoted by the gate",
        "refused by the gate",
    ]
    first, second = (r.data for r in loops)
    assert (first.tags["retrain.champion_before"], first.tags["retrain.champion_after"]) == (
        "1",
        "2",
    )
    assert second.tags["retrain.champion_after"] == "2"
    assert "not better than baseline" in second.tags["retrain.reasons"]
    assert second.metrics["gate.challenger.roc_auc"] < first.metrics["gate.challenger.roc_auc"]
    child = client.get_run(second.tags["retrain.training_run"])
    assert child.data.tags["mlflow.parentRunId"] == loops[1].info.run_id
