"""Hot reload pieces without a server: the pointer, the swap, a failed load, the retrain lock."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from leadscore.config import ServingConfig
from leadscore.crm.attributes import Attribute
from pipelines.retrain import RetrainBusy, retrain_lock
from serving.champion_pointer import ServedChampion, read_served_pointer, write_served_pointer
from serving.package import PackagedModel
from serving.reload import ServedModels, differs
from tests.conftest import isolated


def packaged(tag: str, version: str) -> PackagedModel:
    return PackagedModel(tag, "models:/lead_scorer@champion", version, "run", None, True)


def served(version: str, tag: str) -> ServedModels:
    model: Any = SimpleNamespace(info={}, gate_warning=None, features=("amount",))
    return ServedModels(model, version, tag, "champion", None, {}, None)  # type: ignore[arg-type]


def test_the_pointer_is_written_whole_and_read_back(tmp_path: Path):
    settings = dataclasses.replace(isolated(tmp_path), bentoml_home=tmp_path / "bentoml")
    assert read_served_pointer(settings.served_pointer) is None  # never packaged
    written = write_served_pointer(
        settings, packaged("lead_scorer:a", "3"), packaged("lead_scorer_revival:b", "1"), "test"
    )
    assert read_served_pointer(settings.served_pointer) == written
    assert (written.tag, written.mlflow_version, written.revival_tag) == (
        "lead_scorer:a",
        "3",
        "lead_scorer_revival:b",
    )
    # Renamed into place: no temporary file is left beside it.
    assert [p.name for p in settings.served_pointer.parent.iterdir()] == ["served_champion.json"]
    again = write_served_pointer(settings, packaged("lead_scorer:c", "4"), None, "test")
    assert read_served_pointer(settings.served_pointer) == again and again.revival_tag is None


def test_a_damaged_pointer_is_ignored_not_fatal(tmp_path: Path):
    path = tmp_path / "served_champion.json"
    path.write_text('{"tag": "lead_scorer:a"')  # cut short
    assert read_served_pointer(path) is None


def test_differs_on_the_win_or_the_revival_tag():
    now = served("3", "lead_scorer:a")
    assert not differs(now, None)
    assert not differs(now, ServedChampion("lead_scorer:a", "3"))
    assert differs(now, ServedChampion("lead_scorer:b", "4"))
    assert differs(now, ServedChampion("lead_scorer:a", "3", "lead_scorer_revival:x", "1"))


@pytest.fixture
def service(tmp_path: Path) -> Any:
    """The service class without its models loaded: reload's behaviour only."""
    from serving import service as module

    svc = module.LeadScorer.inner.__new__(module.LeadScorer.inner)
    svc.config = ServingConfig(grade_thresholds={"A": 60, "B": 40, "C": 20})
    svc.settings = isolated(tmp_path)
    svc.models = served("3", "lead_scorer:a")
    return svc


def test_a_reload_swaps_the_models_as_one_reference(service, monkeypatch):
    from serving import service as module

    new = served("4", "lead_scorer:b")
    monkeypatch.setattr(module, "load_pointed", lambda pointer, settings, grades: new)
    in_flight = service.models  # what a request started before the switch holds
    assert service.reload(ServedChampion("lead_scorer:b", "4"))
    assert service.models is new and in_flight.version == "3"
    assert service.model_facts()["model_version"] == "4"


def test_docs_json_follows_a_reload_to_the_model_now_served(service, monkeypatch):
    """/docs.json lists the served model's custom attributes: after a switch, the new one's."""
    from serving import service as module

    def documented() -> set[str]:
        spec = module._documented_spec(service.models)
        field = spec["components"]["schemas"]["DealIn"]["properties"]["attributes"]
        return set(field["anyOf"][0]["properties"])

    assert documented() == set()  # version 3 has no custom attributes
    team = Attribute("team", "deals", "categorical", "creation", label="Team")
    new = dataclasses.replace(served("4", "lead_scorer:b"), attributes={"team": team})
    monkeypatch.setattr(module, "load_pointed", lambda pointer, settings, grades: new)
    assert service.reload(ServedChampion("lead_scorer:b", "4"))
    assert documented() == {"team"}


def test_a_load_that_fails_keeps_the_served_models_and_says_why(
    service, caplog, monkeypatch, tmp_path: Path
):
    # BentoML's store under the test's folder (read on its first use in the process).
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    before = service.models
    # A tag this BentoML store does not hold: bentoml.models.get raises NotFound.
    assert not service.reload(ServedChampion("lead_scorer:notinthisstore", "9"))
    assert service.models is before
    assert "could not load lead_scorer:notinthisstore" in caplog.text
    assert "still serving lead_scorer:a" in caplog.text


def test_the_watcher_switches_once_and_does_not_retry_a_failed_pointer(service, monkeypatch):
    from serving import service as module

    service.config = ServingConfig(grade_thresholds={"A": 60}, model_reload_seconds=0.01)
    calls: list[str] = []

    def reload(pointer: ServedChampion) -> bool:
        calls.append(pointer.tag)
        return False  # a load that fails

    monkeypatch.setattr(service, "reload", reload)
    write_served_pointer(service.settings, packaged("lead_scorer:b", "4"), None, "test")
    sleeps = iter(range(20))

    def sleep(_: float) -> None:
        if next(sleeps, None) is None:
            raise SystemExit  # ends the watcher's loop

    monkeypatch.setattr(module.time, "sleep", sleep)
    with pytest.raises(SystemExit):
        service._watch_models()
    assert calls == ["lead_scorer:b"]  # tried once, not at every poll


def test_a_second_retrain_is_turned_away_at_once(tmp_path: Path):
    lock = tmp_path / "retrain.lock"
    with retrain_lock(lock):
        turned_away = threading.Event()

        def second() -> None:
            try:
                with retrain_lock(lock):
                    pass
            except RetrainBusy as exc:
                assert str(os.getpid()) in str(exc)
                turned_away.set()

        thread = threading.Thread(target=second)
        thread.start()
        thread.join(timeout=10)
        assert turned_away.is_set()
    with retrain_lock(lock):  # released at the end of the block
        pass


def test_a_killed_retrain_leaves_no_lock_behind(tmp_path: Path):
    lock = tmp_path / "retrain.lock"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from pipelines.retrain import "
            "retrain_lock\nwith retrain_lock(Path(sys.argv[1])):\n print('held', flush=True)\n"
            " time.sleep(600)",
            str(lock),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(RetrainBusy), retrain_lock(lock):
            pass
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    with retrain_lock(lock):  # the kernel dropped the dead run's lock
        pass


def test_the_serving_tests_settings_name_the_pointer_their_service_polls(tmp_path):
    """The serving tests' settings (where `prepare_champion` writes the served-champion
    pointer) and the environment their service and CLI run in name one BentoML home.
    When they did not, a service polled a pointer an earlier module's fallback had left in
    the process's home and served that fallback mid-module (issue 14's CI, session 27)."""
    from tests.serving_fixture import serving_environment

    settings, env = serving_environment(tmp_path)
    assert settings.bentoml_home == Path(env["BENTOML_HOME"])
    assert settings.served_pointer.parent == Path(env["BENTOML_HOME"])
