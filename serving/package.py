"""The hand-off from MLflow to BentoML, and starting the service.

``leadscore package`` is the one step that moves a model into serving: it imports
``models:/lead_scorer@champion`` from the MLflow registry into the BentoML model store
as ``lead_scorer``, with labels and metadata saying which MLflow version it is, which
feature service it was trained on, and how it calibrates and encodes. The service then
loads ``lead_scorer:latest``: the MLflow model directory inside the BentoML model holds
the native LightGBM booster, and its ``MLmodel`` file the :class:`ScoringModel`
metadata training wrote (``metadata.lead_scorer``), so serving rebuilds exactly the
model training evaluated.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from leadscore.config import METADATA_KEY, PROJECT_ROOT, Settings
from leadscore.model.scoring_model import ScoringModel

log = logging.getLogger(__name__)

#: Folder of the MLflow model inside a BentoML model imported by ``bentoml.mlflow``.
MLFLOW_MODEL_FOLDER = "mlflow_model"
#: Import path of the service, for ``bentoml serve`` and bentofile.yaml.
SERVICE = "serving.service:LeadScorer"


class PackagingError(RuntimeError):
    """The champion cannot be packaged; the message says what to do."""


@dataclass(frozen=True)
class PackagedModel:
    """What ``leadscore package`` produced (or found already packaged)."""

    tag: str
    model_uri: str
    mlflow_version: str
    run_id: str
    feature_service: str | None
    created: bool


def package_champion(settings: Settings, alias: str = "champion") -> PackagedModel:
    """Import ``models:/<name>@<alias>`` into the BentoML model store as ``<name>``.

    Idempotent: when the latest BentoML model already is that MLflow version, nothing is
    imported. The BentoML metadata repeats what an operator needs to see with
    ``bentoml models get lead_scorer:latest`` (MLflow version and run, feature service,
    calibration, category maps); the service itself reads the MLmodel file.
    """
    import bentoml
    import mlflow
    from mlflow.exceptions import MlflowException

    # bentoml.mlflow downloads through MLflow's process-wide URIs; point both at ours.
    mlflow.set_tracking_uri(settings.tracking_uri)
    mlflow.set_registry_uri(settings.tracking_uri)
    client = mlflow.MlflowClient(
        tracking_uri=settings.tracking_uri, registry_uri=settings.tracking_uri
    )
    name = settings.model_name
    try:
        version = client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        raise PackagingError(
            f"no model version of {name!r} has the alias {alias!r} in {settings.tracking_uri}; "
            "train and promote one first (`leadscore train`)"
        ) from exc
    model_uri = f"models:/{name}@{alias}"
    meta = mlflow.models.get_model_info(model_uri).metadata or {}
    if METADATA_KEY not in meta:
        raise PackagingError(
            f"{model_uri} has no '{METADATA_KEY}' metadata; it was not logged by training/"
        )
    scoring_meta = meta[METADATA_KEY]
    run = client.get_run(version.run_id)
    feature_service = (
        version.tags.get("feast.feature_service")
        or run.data.tags.get("feast.feature_service")
        or scoring_meta.get("info", {}).get("feature_service")
    )

    existing = _latest(bentoml, name)
    if (
        existing is not None
        and existing.info.labels.get("mlflow_run_id") == version.run_id
        and (existing.info.labels.get("mlflow_version") == str(version.version))
    ):
        log.info("%s already holds %s version %s", existing.tag, name, version.version)
        return PackagedModel(
            str(existing.tag),
            model_uri,
            str(version.version),
            version.run_id,
            feature_service,
            created=False,
        )

    labels = {
        "mlflow_version": str(version.version),
        "mlflow_run_id": version.run_id,
        "alias": alias,
        "feature_service": feature_service or "unknown",
    }
    metadata: dict[str, Any] = {
        "mlflow_model_uri": model_uri,
        "mlflow_version": str(version.version),
        "mlflow_run_id": version.run_id,
        "feature_service": feature_service,
        "features": scoring_meta["features"],
        "categories": scoring_meta["categories"],
        "calibration": scoring_meta["calibration"],
    }
    bento_model = bentoml.mlflow.import_model(name, model_uri, labels=labels, metadata=metadata)
    log.info("imported %s version %s as %s", model_uri, version.version, bento_model.tag)
    return PackagedModel(
        str(bento_model.tag),
        model_uri,
        str(version.version),
        version.run_id,
        feature_service,
        created=True,
    )


def _latest(bentoml: Any, name: str) -> Any:
    from bentoml.exceptions import NotFound

    try:
        return bentoml.models.get(f"{name}:latest")
    except NotFound:
        return None


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


def serve(port: int = 3000, host: str = "0.0.0.0", working_dir: Path = PROJECT_ROOT) -> NoReturn:
    """Replace this process with ``bentoml serve`` for the LeadScorer service.

    Exec rather than a child process, so signals (Ctrl-C, a supervisor's SIGTERM) reach
    the server directly. One OpenMP thread per worker: LightGBM's default of one per
    core oversubscribes a small machine as soon as two requests run at once.
    """
    bentoml = shutil.which("bentoml", path=str(Path(sys.executable).parent)) or "bentoml"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.setdefault("BENTOML_DO_NOT_TRACK", "true")
    args = [
        bentoml,
        "serve",
        SERVICE,
        "--port",
        str(port),
        "--host",
        host,
        "--working-dir",
        str(working_dir),
    ]
    log.info("starting %s on %s:%d", SERVICE, host, port)
    os.execvpe(bentoml, args, env)
