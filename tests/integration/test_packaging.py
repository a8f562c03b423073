"""Packaging for production: the PostgreSQL registry, the Redis online store, a built Bento.

``leadscore package`` and ``leadscore serve`` run as subprocesses configured the way an
operator configures them (``MLFLOW_TRACKING_URI=postgresql://...``, the Redis Feast
config), against a throwaway PostgreSQL database and a private Redis database, both
dropped afterwards. Then the Bento built from the packaged champion is served from a
virtual environment holding only the Bento's own requirements, and the OpenAPI example
is scored through it. A last, fast check keeps ``serving/requirements.txt`` equal to the
lock's export.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import packages_distributions
from pathlib import Path

import httpx
import psycopg2
import pytest

from leadscore.config import CHAMPION, PROJECT_ROOT, Settings
from leadscore.features.featurize import build_feature_sources, write_sources
from leadscore.features.store import apply_repo, materialize
from leadscore.model.registry import mlflow_client
from serving.package import EXPORT_REQUIREMENTS, REQUIREMENTS
from tests.conftest import free_port, isolated, require_service
from tests.serving_fixture import (
    AS_OF,
    register_champion,
    running_server,
    seen_open,
    small_champion,
    synthetic_tables,
)

pytestmark = pytest.mark.integration

POSTGRES = "postgresql://postgres@localhost:5432"
#: A Redis database of its own (the feature store test uses 13, the demo 0); flushed after.
REDIS_DB = 12
#: Deals whose features the online store holds.
STORE_DEALS = 100
UV = os.environ.get("UV") or shutil.which("uv") or "uv"


@dataclass
class Production:
    settings: Settings
    env: dict[str, str]  # what an operator exports, plus private stores under tmp
    deal_ids: list[str]  # deals in the online store


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Production]:
    """A champion (version 1) in a new PostgreSQL database, its features in Redis."""
    require_service("PostgreSQL", 5432)
    require_service("Redis", 6379)
    import redis

    base = tmp_path_factory.mktemp("packaging")
    database = f"leadscore_test_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(f"{POSTGRES}/test")
    admin.autocommit = True
    store = redis.Redis(host="localhost", port=6379, db=REDIS_DB)
    store.flushdb()
    redis_address = f"localhost:6379,db={REDIS_DB}"
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{database}"')
        # A bare postgresql:// URI, as the README writes it.
        settings = dataclasses.replace(
            isolated(base),
            tracking_uri=f"{POSTGRES}/{database}",
            feature_store_yaml="feature_store.redis.yaml",
            redis=redis_address,
            bentoml_home=base / "bentoml",
        )
        env = {
            # The project's environment, and uv (`bentoml build` runs it).
            "PATH": f"{Path(sys.executable).parent}:{Path(UV).parent}:/usr/bin:/bin",
            "HOME": str(base),
            "MLFLOW_TRACKING_URI": settings.tracking_uri,
            "LEADSCORE_ARTIFACT_ROOT": str(settings.artifact_root),
            "LEADSCORE_FEATURE_REPO": str(settings.feature_repo),
            "LEADSCORE_FEATURE_STORE_YAML": settings.feature_store_yaml,
            "LEADSCORE_REDIS": redis_address,
            "BENTOML_HOME": str(settings.bentoml_home),
            # One worker: starts in half the time on a small machine.
            "BENTOML_CONFIG_OPTIONS": "services.lead_scorer.workers=1",
        }
        tables = synthetic_tables()
        ids = sorted(tables["deals"]["deal_id"].iloc[:STORE_DEALS])
        subset = {
            k: (v[v["deal_id"].isin(ids)] if "deal_id" in v else v) for k, v in tables.items()
        }
        sources = build_feature_sources(subset)
        # Scored by id: the deals as they stood open (a closed one gets no score, issue 12).
        sources["deal_profile"] = seen_open(sources["deal_profile"], set())
        write_sources(sources, settings.sources_dir)
        apply_repo(settings)
        materialize(settings, AS_OF.to_pydatetime())
        assert store.dbsize() > 0, "nothing was materialized to Redis"
        model, frame = small_champion()
        assert register_champion(model, frame, settings) == "1"
        yield Production(settings, env, ids)
    finally:
        store.flushdb()
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin.close()


def leadscore(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """A ``leadscore`` command in its own process, with exactly ``env``."""
    return subprocess.run(
        [str(Path(sys.executable).with_name("leadscore")), *args],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def served_versions(url: str, deal_ids: list[str]) -> set[str]:
    body = {"deal_ids": deal_ids, "as_of": AS_OF.isoformat()}
    answer = httpx.post(f"{url}/score_ids", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [r["deal_id"] for r in results] == deal_ids
    return {r["model_version"] for r in results}


def test_package_and_serve_the_exact_champion_on_postgres_and_redis(production: Production):
    env, ids = production.env, production.deal_ids

    refused = leadscore(env, "serve")
    assert refused.returncode == 1
    assert "champion is version 1" in refused.stderr and "leadscore package" in refused.stderr

    first = leadscore(env, "package")
    assert first.returncode == 0, first.stderr
    assert "imported" in first.stdout and "version 1" in first.stdout

    # Version 2 is packaged last, then champion goes back to 1: `:latest` would be wrong.
    model, frame = small_champion()
    assert register_champion(model, frame, production.settings) == "2"
    second = leadscore(env, "package")
    assert second.returncode == 0 and "version 2" in second.stdout, second.stderr
    client = mlflow_client(production.settings)
    client.set_registered_model_alias(production.settings.model_name, CHAMPION, "1")

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [str(Path(sys.executable).with_name("leadscore")), "serve", "--port", str(port)]
    with running_server(cmd, env, f"{url}/readyz", timeout=180):
        assert served_versions(url, ids[:10]) == {"1"}


def test_built_bento_serves_from_a_virtualenv_with_only_its_requirements(
    production: Production, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Build, export the Bento as an operator ships it, and serve it elsewhere.

    The other environment has the interpreter and the Bento's requirements (installed
    from uv's cache), not the project; its BentoML home holds only the imported Bento.
    """
    built = leadscore(production.env, "package", "--build")
    assert built.returncode == 0, built.stderr[-3000:]
    found = re.search(r"built Bento (lead_scorer:\w+) with (lead_scorer:\w+)", built.stdout)
    assert found, built.stdout
    bento, model = found[1], found[2]
    archive = tmp_path / "lead_scorer.bento"
    bentoml = str(Path(sys.executable).with_name("bentoml"))
    exported = subprocess.run(
        [bentoml, "export", bento, str(archive)], env=production.env, capture_output=True
    )
    assert exported.returncode == 0, exported.stderr[-3000:]
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    shipped = {n.split("/")[3] for n in names if n.count("/") > 3 and "/models/lead_scorer/" in n}
    assert shipped == {model.split(":")[1]}, shipped  # the champion, and only it

    venv = tmp_path / "venv"
    python = Path(sys.base_prefix) / "bin" / f"python3.{sys.version_info.minor}"
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "BENTOML_HOME": str(tmp_path / "deployed"),
        # The online store and nothing else of the project's configuration.
        **{k: v for k, v in production.env.items() if k.startswith("LEADSCORE_FEATURE")},
        "LEADSCORE_REDIS": production.env["LEADSCORE_REDIS"],
        "BENTOML_CONFIG_OPTIONS": production.env["BENTOML_CONFIG_OPTIONS"],
    }
    with tarfile.open(archive) as tar:
        requirements = tar.extractfile("./env/python/requirements.txt")
        assert requirements is not None
        (tmp_path / "requirements.txt").write_bytes(requirements.read())
    for cmd in (
        [UV, "venv", "--quiet", "--python", str(python), str(venv)],
        [UV, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python")]
        + ["-r", str(tmp_path / "requirements.txt")],
        [str(venv / "bin" / "bentoml"), "import", str(archive)],
    ):
        done = subprocess.run(cmd, env={**os.environ, **env}, capture_output=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    # Away from the project's folder, whose packages Python would find in the working dir.
    monkeypatch.chdir(tmp_path)
    check = subprocess.run([str(venv / "bin" / "python"), "-c", "import leadscore"], env=env)
    assert check.returncode != 0, "the project itself must not be installed there"

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [str(venv / "bin" / "bentoml"), "serve", bento, "--port", str(port)]
    with running_server(cmd, env, f"{url}/readyz", timeout=180):
        spec = httpx.get(f"{url}/docs.json", timeout=30).json()
        body = spec["paths"]["/score"]["post"]["requestBody"]["content"]["application/json"]
        answer = httpx.post(f"{url}/score", json=body["schema"]["example"], timeout=60)
        assert answer.status_code == 200, answer.text
        results = answer.json()["results"]
        assert results and 0 <= results[0]["probability"] <= 1
        assert served_versions(url, production.deal_ids[:3])
    # MLflow (imported by every worker) writes its installation id to HOME when its
    # telemetry starts; the Bento's envs turn it off.
    assert not (tmp_path / ".config" / "mlflow").exists(), "MLflow telemetry started"


def _requirement_names(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        if line and not line.startswith((" ", "#")):
            names.add(re.split(r"[=<>; \[]", line, maxsplit=1)[0].lower().replace("_", "-"))
    return names


def test_bento_requirements_are_the_lock_export_and_cover_the_service():
    """Regenerate with the command in serving/package.py (README, "Production configuration")."""
    fresh = subprocess.run(
        EXPORT_REQUIREMENTS, cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    )

    def body(text: str) -> list[str]:  # without uv's header naming the command line
        lines = text.splitlines()
        while lines and lines[0].startswith("#"):
            lines.pop(0)
        return lines

    assert body(REQUIREMENTS.read_text()) == body(fresh.stdout), (
        f"{REQUIREMENTS} differs from uv.lock; regenerate it: "
        f"{' '.join(EXPORT_REQUIREMENTS)} --output-file {REQUIREMENTS.relative_to(PROJECT_ROOT)}"
    )

    # Every distribution the service imports, in a fresh interpreter, is a requirement.
    probe = "import sys, serving.service; print('\\n'.join(sorted(sys.modules)))"
    modules = subprocess.run(
        [sys.executable, "-c", probe], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    top = {m.split(".")[0] for m in modules} - set(sys.stdlib_module_names)
    top -= {"leadscore", "serving", "features", "__main__"}
    dists = packages_distributions()
    imported = {d.lower().replace("_", "-") for m in top for d in dists.get(m, [])}
    missing = imported - _requirement_names(REQUIREMENTS.read_text())
    assert "pandera" in imported and not missing, sorted(missing)
