"""Shared fixtures: isolated copies of the Feast repo, and service availability."""

from __future__ import annotations

import itertools
import os
import random
import shutil
import socket
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from leadscore.config import PROJECT_ROOT, Settings, load_settings
from leadscore.crm.synth import SyntheticCRM, generate_crm, write_export
from leadscore.model.registry import mlflow_client
from pipelines.cli import app
from training.registry import ensure_experiment

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def service_available(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


#: Ports :func:`free_port` hands out: below Linux's ephemeral range (32768 and up), so
#: neither ``bind(0)`` nor an outgoing connection of another test takes one meanwhile.
PORTS = range(20000, 32000)
#: Where this process starts in its share: random, so test sessions run side by side on
#: one machine do not walk the same ports in step.
_next_port = itertools.count(random.randrange(len(PORTS)))


def free_port() -> int:
    """A localhost port nothing listens on now, for a server started by a test.

    The port is free when this returns, not yet taken. Under pytest-xdist each worker
    keeps to the ports congruent to its number modulo the worker count, so two workers
    never get the same one; in one worker each call moves on to the next port, so two
    servers of one test do not either. (Not ``bind(0)``: Linux gives it odd ports
    only, which a parity split cannot share.)
    """
    index = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    mine = PORTS[index % workers :: workers]
    for _ in range(len(mine)):
        port = mine[next(_next_port) % len(mine)]
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {PORTS} for worker {index}")


def require_service(name: str, port: int) -> None:
    """Skip with a reason on a machine without the service; in CI its absence fails."""
    if service_available("127.0.0.1", port):
        return
    message = f"{name} is not reachable on localhost:{port}"
    if IN_CI:
        pytest.fail(f"{message}; CI must run it (see README, 'Services')")
    pytest.skip(f"{message}; start it to run this test")


def copy_feature_repo(dest: Path) -> Path:
    """A fresh copy of features/ (definitions only) whose data lives under ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    src = PROJECT_ROOT / "features"
    for path in src.iterdir():
        if path.suffix in (".py", ".yaml") or path.name == ".feastignore":
            shutil.copy2(path, dest / path.name)
    return dest


def isolated(root: Path) -> Settings:
    """Settings pointing at a private feature repo and MLflow store under ``root``."""
    repo = copy_feature_repo(root / "features")
    return load_settings(
        feature_repo=repo,
        tracking_uri=f"sqlite:///{root / 'mlruns' / 'mlflow.db'}",
        artifact_root=root / "mlruns" / "artifacts",
    )


def environment(root: Path) -> dict[str, str]:
    """The environment of a CLI run against the private stores of :func:`isolated`."""
    settings = isolated(root)
    ensure_experiment(settings, mlflow_client(settings))  # artifacts stay under root
    return {
        "LEADSCORE_FEATURE_REPO": str(settings.feature_repo),
        "MLFLOW_TRACKING_URI": settings.tracking_uri,
        "LEADSCORE_ARTIFACT_ROOT": str(settings.artifact_root),
        "BENTOML_HOME": str(root / "bentoml"),
        # `retrain` run by CliRunner would lower the priority of the test process for good.
        "LEADSCORE_RETRAIN_NICE": "0",
    }


def cli(env: dict[str, str], *args: str, code: int = 0) -> str:
    """Run ``leadscore ARGS`` in-process; assert its exit code, return its stdout."""
    out = CliRunner().invoke(app, list(args), env=env)
    assert out.exit_code == code, f"{args}: {out.output}"
    return out.stdout


def ingested_synthetic(root: Path, crm: SyntheticCRM | None = None) -> dict[str, str]:
    """:func:`environment` of ``root`` with ``crm`` (default: 300 deals, seed 3, history to
    2025-06-30) exported under ``root / "x"`` and ingested through the CLI."""
    env = environment(root)
    crm = crm or generate_crm(300, seed=3, as_of=pd.Timestamp("2025-06-30", tz="UTC"))
    write_export(crm, root / "x")
    cli(env, "ingest", str(root / "x"))
    return env


@pytest.fixture
def isolated_settings(tmp_path: Path) -> Settings:
    return isolated(tmp_path)


INTEGRATION_DIR = Path(__file__).parent / "integration"
#: The modules that take longest alone (measured one by one with ``pytest -n 0 FILE``):
#: each README command in its own shell, and the retraining loop against a live service.
LONGEST_MODULES = frozenset({"test_fresh_shell.py", "test_retrain_loop.py"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under tests/integration ``integration``, so the daily tier
    (``pytest -m "not integration"``, ``make test-fast``) leaves out a new file there even
    when it forgets its ``pytestmark``."""
    for item in items:
        if INTEGRATION_DIR in item.path.parents:
            item.add_marker(pytest.mark.integration)
    if "PYTEST_XDIST_WORKER" in os.environ:
        # A pytest-xdist worker: hand out the integration modules (the long ones, minutes
        # each) before the rest, so the short modules fill the workers' last minutes
        # instead of one long chain starting when the others are done. The sort is stable:
        # each module stays in one piece, in its order. (pyproject's addopts turn off
        # xdist's own reordering, by test count, which put one-test modules last.)
        # The longest modules go first of all: a long one handed out late ends the run.
        items.sort(
            key=lambda item: (
                INTEGRATION_DIR not in item.path.parents,
                item.path.name not in LONGEST_MODULES,
            )
        )
