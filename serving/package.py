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

With no champion at all (a small organisation, below the minimum for a trained model),
``package`` fits the labelled fallback on the stored CRM (``docs/fallback.md``) and saves it
as the BentoML model ``lead_scorer_fallback`` (:func:`package_fallback`; labelled with a
fingerprint of its parameters), and ``serve`` starts the service on it
(:func:`served_model`), which then answers every open deal with the fallback's
probability, a ``model`` label and a warning (:mod:`serving.fallback`). The fallback must
be the one the stored CRM gives now: after an ingest, ``package`` again. Once a champion
exists both commands use it, as before.

The Bento's Python requirements are ``serving/requirements.txt``, exported from
``uv.lock`` by :data:`EXPORT_REQUIREMENTS` (a test keeps the two equal).
"""

from __future__ import annotations

import ipaddress
import json
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
    FALLBACK,
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
from leadscore.model.fallback import StageFallback
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


class NoVersionError(PackagingError):
    """No version of the model has the alias: with the champion, the fallback's case."""


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
        raise NoVersionError(
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


#: File of the fitted fallback's parameters inside its BentoML model.
FALLBACK_FILE = "fallback.json"
#: Label that tells a packaged fallback from a packaged MLflow model.
KIND_LABEL, FALLBACK_KIND = "kind", FALLBACK


def _stored_fallback(settings: Settings) -> StageFallback:
    """The fallback fitted on the stored CRM now, or PackagingError saying why not."""
    from leadscore.priority.rank import RankingError, stored_fallback

    try:
        return stored_fallback(settings.crm_dir)
    except RankingError as exc:
        raise PackagingError(f"no champion, and no fallback either: {exc}") from exc


def _packaged_fallback(settings: Settings, fingerprint: str) -> Any:
    """The newest packaged fallback with exactly these parameters, or None."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        models = bentoml.models.list(settings.fallback_model_name)
    except NotFound:
        return None
    for model in sorted(models, key=lambda m: m.info.creation_time, reverse=True):
        if model.info.labels.get("fingerprint") == fingerprint:
            return model
    return None


def _described_fallback(bento_model: Any, fallback: StageFallback, created: bool) -> PackagedModel:
    return PackagedModel(
        str(bento_model.tag),
        f"stored CRM: {fallback.name}",
        FALLBACK_KIND,
        "",
        bento_model.info.labels.get("feature_service"),
        created,
    )


def package_fallback(settings: Settings) -> PackagedModel:
    """Fit the fallback on the stored CRM and save it as the BentoML model
    ``<model_name>_fallback`` (``settings.fallback_model_name``), for when no champion exists.

    Idempotent like :func:`package_champion`: the same stored CRM gives the same
    parameters (their fingerprint is a label), and a fallback already packaged with them
    is kept. Raises PackagingError when the stored CRM has no closed deal.
    """
    import bentoml

    fallback = _stored_fallback(settings)
    existing = _packaged_fallback(settings, fallback.fingerprint)
    if existing is not None:
        return _described_fallback(existing, fallback, created=False)
    labels = {
        KIND_LABEL: FALLBACK_KIND,
        "fingerprint": fallback.fingerprint,
        "closed_deals": str(fallback.closed_deals),
        "feature_service": settings.feature_service,
    }
    metadata = {"model_version": FALLBACK_KIND, "label": fallback.name}
    with bentoml.models.create(
        settings.fallback_model_name, labels=labels, metadata=metadata
    ) as bento_model:
        Path(bento_model.path_of(FALLBACK_FILE)).write_text(json.dumps(fallback.to_dict()))
    log.info("packaged %s as %s", fallback.name, bento_model.tag)
    return _described_fallback(bento_model, fallback, created=True)


def packaged_fallback(settings: Settings) -> PackagedModel:
    """The packaged fallback fitted on the stored CRM as it is now.

    Raises PackagingError, saying to run ``leadscore package``, when the CRM changed
    since (an ingest): serving an older fit would label its rows with the wrong counts.
    """
    fallback = _stored_fallback(settings)
    found = _packaged_fallback(settings, fallback.fingerprint)
    if found is None:
        raise PackagingError(
            f"no champion, and the {fallback.name} of the stored CRM is not packaged in the "
            f"BentoML store {settings.bentoml_home}; run `leadscore package` first"
        )
    return _described_fallback(found, fallback, created=False)


def is_fallback(bento_model: Any) -> bool:
    """Whether a BentoML model is a packaged fallback (not an MLflow model)."""
    return bento_model.info.labels.get(KIND_LABEL) == FALLBACK_KIND


def load_fallback(bento_model: Any) -> StageFallback:
    """The fitted fallback inside a BentoML model :func:`package_fallback` saved."""
    return StageFallback.from_dict(json.loads(Path(bento_model.path_of(FALLBACK_FILE)).read_text()))


def served_model(settings: Settings, alias: str = CHAMPION) -> PackagedModel:
    """What ``serve`` and ``build`` start the service on: the packaged ``alias`` version,
    or, when the champion is asked for and none exists, the packaged fallback."""
    try:
        return packaged_champion(settings, alias)
    except NoVersionError as exc:
        if alias != CHAMPION:
            raise
        fallback = packaged_fallback(settings)
        log.warning("%s; serving the fallback %s", exc, fallback.tag)
        return fallback


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
    nothing served. With no champion yet, the fallback fitted on the stored CRM is
    packaged (:func:`package_fallback`) and pointed at instead: ``win.mlflow_version``
    is then :data:`FALLBACK_KIND`."""
    from serving.champion_pointer import write_served_pointer

    try:
        win = package_champion(settings, alias)
    except NoVersionError:
        if alias != CHAMPION:
            raise
        win = package_fallback(settings)  # no champion yet: the labelled fallback serves
    packaged = PackagedChampions(win, package_revival(settings, alias))
    if alias == CHAMPION:
        write_served_pointer(settings, packaged.win, packaged.revival, by)
    return packaged


def load_packaged(bento_model: Any) -> tuple[ScoringModel, dict[str, Any]]:
    """The ScoringModel inside a packaged BentoML model, and the model's BentoML metadata.

    The booster is loaded natively from the MLflow model folder (no pyfunc wrapper, no
    pandas on the scoring path) and combined with the MLmodel metadata and the segment
    models' boosters, as :func:`leadscore.model.registry.load_model_folder` does for MLflow.
    """
    from leadscore.model.registry import load_model_folder  # MLflow only when a model loads

    path = bento_model.path_of(MLFLOW_MODEL_FOLDER)
    return load_model_folder(Path(path), str(bento_model.tag)), dict(bento_model.info.metadata)


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
    packaged = served_model(settings, alias)
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
    packaged = served_model(settings, alias)
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
