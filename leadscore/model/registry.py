"""The MLflow connection, and loading a registered ``lead_scorer`` version to score with.

Every command that talks to MLflow (train, promote, rank, package, serve) goes through
:func:`mlflow_client`, so each works in a fresh shell with nothing set: the tracking URI
comes from :class:`~leadscore.config.Settings` (the project's SQLite store by default,
``MLFLOW_TRACKING_URI`` for PostgreSQL), never from whatever an earlier call in the
same process left in MLflow's process-wide state.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import lightgbm as lgb
import mlflow
import mlflow.lightgbm
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.tracking import MlflowClient

from leadscore.config import CHAMPION, METADATA_KEY, Settings
from leadscore.model.scoring_model import ScoringModel


class RegistryError(RuntimeError):
    """A registry operation cannot run as asked (no champion, nothing to roll back to, ...)."""


class NoVersionError(RegistryError):
    """The registry answered, and no version holds the alias asked for: ranking then falls
    back (:func:`leadscore.priority.rank.ranking_model`), where other registry errors stop."""


def resolve_tracking_uri(uri: str) -> str:
    """The tracking URI with a PostgreSQL driver that is installed.

    SQLAlchemy 2.1 reads a bare ``postgresql://`` as psycopg 3, while the project ships
    psycopg2; the same database through ``postgresql+psycopg2://`` then. A URI naming
    its driver is left alone.
    """
    if uri.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None:
        return "postgresql+psycopg2://" + uri.removeprefix("postgresql://")
    return uri


def mlflow_client(settings: Settings) -> MlflowClient:
    """Point MLflow (fluent API and client) at the configured tracking and registry URI.

    The fluent API (``start_run``, ``log_model``) has only process-wide state, so this
    sets it; call it at the start of every operation rather than relying on whatever a
    previous call left behind.
    """
    uri = resolve_tracking_uri(settings.tracking_uri)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def alias_version(client: MlflowClient, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def load_scoring_model(model_uri: str, settings: Settings) -> ScoringModel:
    """The :class:`ScoringModel` behind a model URI, e.g. ``models:/lead_scorer@champion``.

    The URI is resolved against ``settings``' registry (through :func:`mlflow_client`),
    so it works in a fresh process where nothing else has pointed MLflow anywhere.
    """
    mlflow_client(settings)  # MLflow resolves models:/ through its process-wide registry URI
    uri = resolve_tracking_uri(settings.tracking_uri)
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=model_uri, tracking_uri=uri, registry_uri=uri
    )
    return load_model_folder(Path(local), model_uri)


#: Where the MLflow LightGBM flavor keeps ``extra_files`` inside a model folder.
EXTRA_FILES = "extra_files"


def segment_booster_files(model: ScoringModel, folder: Path) -> list[str]:
    """Write each segment model's booster into ``folder`` and return the paths, in routing
    order: ``log_model(extra_files=...)`` copies them into the model folder, so the segment
    models travel in the registered version itself (and in the BentoML model imported from
    it) and :func:`load_model_folder` finds them by the same names."""
    paths = []
    for k, segment in enumerate(model.segment_models):
        path = Path(folder) / segment_file(k)
        segment.booster.save_model(str(path))
        paths.append(str(path))
    return paths


def segment_file(k: int) -> str:
    return f"segment-{k}.lgb.txt"


def load_model_folder(local: Path, source: str) -> ScoringModel:
    """The :class:`ScoringModel` in a downloaded MLflow model folder: the native booster,
    the ``MLmodel`` metadata, and the segment models' boosters from its extra files.
    ``source`` names the model in the error of a folder training did not write."""
    meta = (Model.load(str(local)).metadata or {}).get(METADATA_KEY)
    if meta is None:
        raise RegistryError(
            f"{source} has no '{METADATA_KEY}' metadata; it was not logged by leadscore train"
        )
    segments = [
        lgb.Booster(model_file=str(Path(local) / EXTRA_FILES / segment_file(k)))
        for k in range(len(meta.get("segment_models") or []))
    ]
    return ScoringModel.from_metadata(mlflow.lightgbm.load_model(str(local)), meta, segments)


def load_champion(
    settings: Settings, alias: str = CHAMPION, name: str | None = None
) -> tuple[ScoringModel, str]:
    """The model behind ``models:/<name>@<alias>`` and its version number.

    ``name`` defaults to the win model's (``settings.model_name``); the revival model's is
    ``settings.revival_model_name``. The alias is resolved once and the version loaded by
    number, so the version recorded with the scores is the one that produced them even if
    the alias moves.
    """
    name = name or settings.model_name
    version = alias_version(mlflow_client(settings), name, alias)
    if version is None:
        raise NoVersionError(
            f"no '{alias}' version of {name} in {settings.tracking_uri}; "
            "run `leadscore train` (and `leadscore promote`) first"
        )
    return load_scoring_model(f"models:/{name}/{version}", settings), version
