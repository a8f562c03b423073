"""The hand-off from MLflow to BentoML; starting the service; building a Bento.

``leadscore package`` is the one step that moves a model into serving: it imports
``models:/lead_scorer@champion`` from the MLflow registry into the project's BentoML model
store (``bentoml_home/``, or ``BENTOML_HOME``) as ``lead_scorer``, labelled with the MLflow
version and run it came from, the feature service it was trained on, and how it
calibrates and encodes. ``leadscore serve`` asks MLflow which version is champion now,
finds the BentoML model packaged from exactly that version and run, and starts the
service on that tag (``LEADSCORE_MODEL_TAG``): a model packaged later, or a champion
that moved since, is never served by accident. The revival model
(``models:/lead_scorer_revival@champion``, issue 12) goes the same way, by the same
functions with its name as a parameter, when one is registered: ``package`` imports it as
``lead_scorer_revival``, ``serve`` passes its tag in ``LEADSCORE_REVIVAL_MODEL_TAG`` (and
nothing when there is none: lost deals asked for revival are then an error that says so). The MLflow model directory inside the
BentoML model holds the native LightGBM booster, and its ``MLmodel`` file the
:class:`ScoringModel` metadata training wrote (``metadata.lead_scorer``), so serving
rebuilds exactly the model training evaluated.

The Bento's Python requirements are ``serving/requirements.txt``, exported from
``uv.lock`` by :data:`EXPORT_REQUIREMENTS` (a test keeps the two equal).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from leadscore.config import (
    CHAMPION,
    METADATA_KEY,
    MODEL_RELOAD_ENV,
    MODEL_TAG_ENV,
    PROJECT_ROOT,
    REVIVAL_MODEL_TAG_ENV,
    SERVICE_HOST,
    SERVICE_PORT,
    ServingConfig,
    Settings,
    child_environment,
    load_settings,
)
from leadscore.model.scoring_model import ScoringModel

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

#: Folder of the MLflow model inside a BentoML model imported by ``bentoml.mlflow``.
MLFLOW_MODEL_FOLDER = "mlflow_model"
#: Import path of the service, for ``bentoml serve`` and bentofile.yaml.
SERVICE = "serving.service:LeadScorer"
#: The Bento's Python requirements (bentofile.yaml ``python.requirements_txt``).
REQUIREMENTS = PROJECT_ROOT / "serving" / "requirements.txt"
#: The export of uv.lock that :data:`REQUIREMENTS` holds (written with ``--output-file
#: serving/requirements.txt``, in the project root): the runtime dependencies at their
#: locked versions, without dev tools or the project itself (the Bento carries its code).
EXPORT_REQUIREMENTS = ("uv", "export", "--frozen", "--no-dev", "--no-hashes", "--no-emit-project")


class PackagingError(RuntimeError):
    """The champion cannot be packaged, served or built; the message says what to do."""


@dataclass(frozen=True)
class PackagedModel:
    """A BentoML model packaged from an MLflow version (by this call or an earlier one)."""

    tag: str
    model_uri: str
    mlflow_version: str
    run_id: str
    feature_service: str | None
    created: bool


def _aliased_version(
    settings: Settings, alias: str, name: str
) -> tuple[MlflowClient, ModelVersion, str]:
    """The project's MLflow client, the version of model ``name`` behind ``alias``, its run id.

    MLflow is imported here, not with the module: the service imports this module, and
    its main process (which never scores) should not load MLflow.
    """
    from mlflow.exceptions import MlflowException

    from leadscore.model.registry import mlflow_client

    client = mlflow_client(settings)
    try:
        version = client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        raise PackagingError(
            f"no version of {name!r} has the alias {alias!r} in "
            f"{settings.tracking_uri}; train and promote one first (`leadscore train`, "
            "`leadscore promote`)"
        ) from exc
    if version.run_id is None:  # registered from a path, not logged by a run
        raise PackagingError(
            f"version {version.version} of {name!r} has no MLflow run; only "
            "versions logged by `leadscore train` can be packaged"
        )
    return client, version, version.run_id


def _packaged(name: str, version: str, run_id: str) -> Any:
    """The newest BentoML model imported from MLflow ``version`` of run ``run_id``, or None.

    The run id is compared too: version numbers restart in another registry (a switch
    from SQLite to PostgreSQL), run ids do not.
    """
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        models = bentoml.models.list(name)
    except NotFound:
        return None
    for model in sorted(models, key=lambda m: m.info.creation_time, reverse=True):
        labels = model.info.labels
        if labels.get("mlflow_version") == version and labels.get("mlflow_run_id") == run_id:
            return model
    return None


def package_champion(
    settings: Settings, alias: str = CHAMPION, model_name: str | None = None
) -> PackagedModel:
    """Import ``models:/<name>@<alias>`` into the BentoML model store as ``<name>``.

    ``name`` is ``model_name``, by default the win model's (``settings.model_name``); the
    revival model is packaged by this same function (:func:`package_revival`).

    Idempotent: when that MLflow version is already in the store (say, packaged before a
    rollback), nothing is imported. The BentoML metadata repeats what an operator needs
    to see with ``bentoml models get`` (MLflow version and run, feature service,
    calibration, category maps); the service itself reads the MLmodel file.
    """
    import bentoml
    import mlflow

    name = model_name or settings.model_name
    client, version, run_id = _aliased_version(settings, alias, name)
    number = str(version.version)
    model_uri = f"models:/{name}@{alias}"
    existing = _packaged(name, number, run_id)
    if existing is not None:
        log.info("%s already holds %s version %s", existing.tag, name, number)
        return _described(existing, model_uri, created=False)

    # mlflow_client (above) pointed MLflow's process-wide URIs, which bentoml.mlflow
    # downloads through, at the configured registry.
    meta = mlflow.models.get_model_info(model_uri).metadata or {}
    if METADATA_KEY not in meta:
        raise PackagingError(
            f"{model_uri} has no '{METADATA_KEY}' metadata; it was not logged by training/"
        )
    scoring_meta = meta[METADATA_KEY]
    run = client.get_run(run_id)
    feature_service = (
        version.tags.get("feast.feature_service")
        or run.data.tags.get("feast.feature_service")
        or scoring_meta.get("info", {}).get("feature_service")
    )
    labels = {
        "mlflow_version": number,
        "mlflow_run_id": run_id,
        "alias": alias,
        "feature_service": feature_service or "unknown",
    }
    metadata: dict[str, Any] = {
        "mlflow_model_uri": model_uri,
        "mlflow_version": number,
        "mlflow_run_id": run_id,
        "feature_service": feature_service,
        "features": scoring_meta["features"],
        "categories": scoring_meta["categories"],
        "calibration": scoring_meta["calibration"],
    }
    bento_model = bentoml.mlflow.import_model(name, model_uri, labels=labels, metadata=metadata)
    log.info(
        "imported %s version %s as %s into %s", model_uri, number, bento_model.tag, bento_model.path
    )
    return _described(bento_model, model_uri, created=True)


def _described(bento_model: Any, model_uri: str, created: bool) -> PackagedModel:
    labels = bento_model.info.labels
    service = labels.get("feature_service")
    return PackagedModel(
        str(bento_model.tag),
        model_uri,
        labels["mlflow_version"],
        labels["mlflow_run_id"],
        None if service in (None, "unknown") else service,
        created,
    )


def packaged_champion(
    settings: Settings, alias: str = CHAMPION, model_name: str | None = None
) -> PackagedModel:
    """The BentoML model packaged from the version ``alias`` points at now (of
    ``model_name``, by default the win model).

    Raises PackagingError, saying to run ``leadscore package``, when that version is not
    in the store: serving whatever was packaged last would serve the wrong model.
    """
    name = model_name or settings.model_name
    _, version, run_id = _aliased_version(settings, alias, name)
    number = str(version.version)
    found = _packaged(name, number, run_id)
    if found is None:
        raise PackagingError(
            f"{alias} is version {number} of {name} (run {run_id}), "
            f"which is not packaged in the BentoML store {settings.bentoml_home}; run "
            "`leadscore package` first"
        )
    return _described(found, f"models:/{name}@{alias}", created=False)


def _revival_registered(settings: Settings, alias: str) -> bool:
    """Whether a version of the revival model has ``alias`` (none is the usual case
    before ``leadscore train-revival``: not an error)."""
    from leadscore.model.registry import alias_version, mlflow_client

    client = mlflow_client(settings)
    return alias_version(client, settings.revival_model_name, alias) is not None


def package_revival(settings: Settings, alias: str = CHAMPION) -> PackagedModel | None:
    """:func:`package_champion` for the revival model; None when no version of it has
    ``alias`` (the service then answers lost deals asked for revival with an error)."""
    if not _revival_registered(settings, alias):
        return None
    return package_champion(settings, alias, settings.revival_model_name)


def packaged_revival(settings: Settings, alias: str = CHAMPION) -> PackagedModel | None:
    """:func:`packaged_champion` for the revival model; None when none has ``alias``.

    A revival version with the alias but not packaged raises PackagingError like the win
    model's: serving without it would silently refuse every revival request.
    """
    if not _revival_registered(settings, alias):
        return None
    return packaged_champion(settings, alias, settings.revival_model_name)


@dataclass(frozen=True)
class PackagedChampions:
    """The win model and the revival model (None: none registered) packaged from one alias."""

    win: PackagedModel
    revival: PackagedModel | None


def package_served(
    settings: Settings, alias: str = CHAMPION, by: str = "leadscore package"
) -> PackagedChampions:
    """Package both models of ``alias`` and, for the champions, point running services at
    them (:mod:`serving.champion_pointer`): the one step that moves a new champion, or a
    rolled-back one, into serving. Packaging another alias (``challenger``) changes
    nothing served."""
    from serving.champion_pointer import write_served_pointer

    packaged = PackagedChampions(
        package_champion(settings, alias), package_revival(settings, alias)
    )
    if alias == CHAMPION:
        write_served_pointer(settings, packaged.win, packaged.revival, by)
    return packaged


def load_packaged(bento_model: Any) -> tuple[ScoringModel, dict[str, Any]]:
    """The ScoringModel inside a packaged BentoML model, and the model's BentoML metadata.

    The booster is loaded natively from the MLflow model folder (no pyfunc wrapper, no
    pandas on the scoring path) and combined with the MLmodel metadata.
    """
    import mlflow.lightgbm
    from mlflow.models import Model

    path = bento_model.path_of(MLFLOW_MODEL_FOLDER)
    mlmodel = Model.load(path)
    booster = mlflow.lightgbm.load_model(path)
    model = ScoringModel.from_metadata(booster, (mlmodel.metadata or {})[METADATA_KEY])
    return model, dict(bento_model.info.metadata)


def _bentoml_command() -> str:
    """The ``bentoml`` executable of this interpreter's environment."""
    return shutil.which("bentoml", path=str(Path(sys.executable).parent)) or "bentoml"


def _server_env(
    settings: Settings, tag: str, revival_tag: str | None = None, **extra: str
) -> dict[str, str]:
    """The environment of a ``bentoml`` process serving or building ``tag`` (and the
    revival model ``revival_tag``; without one, the variable is removed, so a value left
    in this shell cannot make the service load a model that is not the champion), with
    ``extra`` over it.

    One OpenMP thread per worker: LightGBM's default of one per core oversubscribes a
    small machine as soon as two requests run at once.
    """
    env = child_environment(settings, OMP_NUM_THREADS="1", **{MODEL_TAG_ENV: tag}, **extra)
    env.pop(REVIVAL_MODEL_TAG_ENV, None)
    if revival_tag is not None:
        env[REVIVAL_MODEL_TAG_ENV] = revival_tag
    return env


def _revival_tag(settings: Settings, alias: str) -> str | None:
    revival = packaged_revival(settings, alias)
    return None if revival is None else revival.tag


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # 0.0.0.0 is an address; a host name may resolve to anything


def exposure_warning(host: str, api_token: str | None) -> str | None:
    """The warning for serving on a non-loopback address without a token, else None."""
    if api_token or is_loopback(host):
        return None
    return (
        f"SERVING ON {host}, REACHABLE FROM OTHER MACHINES, WITHOUT AUTHENTICATION: anyone "
        "who can reach this port can score deals and read the priority list. Set "
        "LEADSCORE_API_TOKEN, or serve on 127.0.0.1 (the default, without --host)."
    )


def serve(
    port: int = SERVICE_PORT,
    host: str = SERVICE_HOST,
    settings: Settings | None = None,
    alias: str = CHAMPION,
) -> NoReturn:
    """Replace this process with ``bentoml serve`` on the packaged ``alias`` version.

    Exec rather than a child process, so signals (Ctrl-C, a supervisor's SIGTERM) reach
    the server directly. Raises PackagingError before starting anything when that version
    is not packaged. Binds 127.0.0.1 unless ``host`` says otherwise, and warns loudly
    when it serves a non-loopback address without ``LEADSCORE_API_TOKEN``.

    Serving the champions, it writes the served-champion pointer first (so the workers'
    hot reload, :mod:`serving.reload`, starts from what they load) and the service then
    follows every later ``package``; serving another alias turns hot reload off
    (``LEADSCORE_MODEL_RELOAD_SECONDS=0``): it serves that version until stopped.
    """
    from serving.champion_pointer import write_served_pointer

    settings = settings or load_settings()
    packaged = packaged_champion(settings, alias)
    revival = packaged_revival(settings, alias)
    revival_tag = None if revival is None else revival.tag
    extra = {}
    if alias == CHAMPION:
        write_served_pointer(settings, packaged, revival, "leadscore serve")
    else:
        extra[MODEL_RELOAD_ENV] = "0"
    warning = exposure_warning(host, ServingConfig.from_env().api_token)
    if warning is not None:
        log.warning("%s\n%s\n%s", "!" * 78, warning, "!" * 78)
    bentoml = _bentoml_command()
    args = [bentoml, "serve", SERVICE, "--port", str(port), "--host", host]
    args += ["--working-dir", str(settings.root)]
    log.info(
        "starting %s on %s:%d with %s (MLflow version %s), revival model %s",
        SERVICE,
        host,
        port,
        packaged.tag,
        packaged.mlflow_version,
        revival_tag or "none",
    )
    os.execvpe(bentoml, args, _server_env(settings, packaged.tag, revival_tag, **extra))


def build_bento(settings: Settings, alias: str = CHAMPION) -> str:
    """``bentoml build`` the project (bentofile.yaml) with the packaged ``alias`` version
    (and the revival model's, when one is packaged: the service declares it then).

    The Bento goes to the same BentoML home as the model; its tag is returned.
    """
    packaged = packaged_champion(settings, alias)
    revival_tag = _revival_tag(settings, alias)
    proc = subprocess.run(
        [_bentoml_command(), "build", str(settings.root), "--output", "tag"],
        cwd=settings.root,
        env=_server_env(settings, packaged.tag, revival_tag),
        capture_output=True,
        text=True,
        check=False,
    )
    tags = [
        line.removeprefix("__tag__:")
        for line in proc.stdout.splitlines()
        if line.startswith("__tag__:")
    ]
    if proc.returncode != 0 or not tags:
        raise PackagingError(f"bentoml build failed: {(proc.stderr or proc.stdout)[-2000:]}")
    log.info("built Bento %s with %s", tags[-1], packaged.tag)
    return tags[-1]
