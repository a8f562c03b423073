"""The MLflow model registry for ``lead_scorer``: register, load, promote, roll back, list.

One registered model, versions moved between two aliases (never stages):

* ``challenger``: the newest trained version, waiting for the gate;
* ``champion``: what serving and ranking load (``models:/lead_scorer@champion``).

The registered model carries a tag ``champion_history``: the JSON list of versions that
were champion, oldest first, so :func:`rollback` can put the previous one back. Every
move is recorded on the model version as ``promotion.*`` / ``rollback.*`` tags.

The backend is whatever the tracking URI says: SQLite under ``mlruns/`` by default,
PostgreSQL (``postgresql://...``) in production. Artifacts always go to
``settings.artifact_root`` through the experiment's artifact location.
"""

from __future__ import annotations

import getpass
import json
import logging
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import lightgbm as lgb
import mlflow
import mlflow.lightgbm
import numpy as np
import pandas as pd
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient

from leadscore.config import CHALLENGER, CHAMPION, METADATA_KEY, Settings
from leadscore.crm.ingest import stored_deals
from leadscore.features.store import training_frame
from leadscore.model.registry import RegistryError, alias_version, load_scoring_model, mlflow_client
from leadscore.model.scoring_model import ScoringModel
from training.behaviour import run_behaviour_checks
from training.data import canonical, check_enough_data
from training.evaluate import HEADLINE, binary_metrics
from training.split import SplitBounds, slice_masks

log = logging.getLogger(__name__)

HISTORY_TAG = "champion_history"
#: What the logged model needs at load time (the booster only; calibration is plain math).
PIP_REQUIREMENTS = [
    f"lightgbm=={lgb.__version__}",
    f"numpy=={np.__version__}",
    f"pandas=={pd.__version__}",
]


def ensure_experiment(settings: Settings, client: MlflowClient) -> str:
    """The experiment's id, creating it with its artifacts under ``settings.artifact_root``.

    An explicit artifact location keeps artifacts in ``mlruns/`` with any backend
    (PostgreSQL has no default place for files).
    """
    found = client.get_experiment_by_name(settings.experiment)
    if found is not None:
        return found.experiment_id
    location = Path(settings.artifact_root).resolve() / settings.experiment
    location.mkdir(parents=True, exist_ok=True)
    try:
        return client.create_experiment(settings.experiment, artifact_location=location.as_uri())
    except MlflowException:  # created meanwhile by a concurrent run
        found = client.get_experiment_by_name(settings.experiment)
        if found is None:
            raise
        return found.experiment_id


def git_commit(root: Path) -> str | None:
    """HEAD of the repository the code runs from, or None outside git / before a first commit."""
    proc = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


# ---------------------------------------------------------------- log and load
def register_model(model: ScoringModel, example: pd.DataFrame, settings: Settings) -> ModelVersion:
    """Log the native booster in the active run and register it as a new version.

    Calibration, category lists, reason stats and info travel in the MLmodel file's
    metadata under ``lead_scorer``. The signature describes the booster's own input,
    ``ScoringModel.encode`` output (category codes, not strings), and its output is the
    *uncalibrated* probability: use :func:`load_scoring_model` to score.
    """
    X = model.encode(example)
    example_df = pd.DataFrame(X, columns=model.features)
    meta = json.loads(
        json.dumps(model.metadata(), allow_nan=False)
    )  # plain JSON types, or fail here
    client = mlflow_client(settings)  # log_model registers through MLflow's process-wide URI
    info = mlflow.lightgbm.log_model(
        model.booster,
        name="model",
        signature=infer_signature(example_df, model.booster.predict(X)),
        input_example=example_df,
        pip_requirements=PIP_REQUIREMENTS,
        registered_model_name=settings.model_name,
        metadata={METADATA_KEY: meta},
    )
    return client.get_model_version(settings.model_name, str(info.registered_model_version))


# ---------------------------------------------------------------- aliases
def champion_history(client: MlflowClient, name: str) -> list[str]:
    raw = client.get_registered_model(name).tags.get(HISTORY_TAG)
    return [str(v) for v in json.loads(raw)] if raw else []


def make_champion(client: MlflowClient, name: str, version: str, tags: dict[str, str]) -> None:
    """Move ``champion`` to ``version``, append it to the history, record ``tags`` on it.

    The ``challenger`` alias is removed when it pointed at the new champion.
    """
    client.set_registered_model_alias(name, CHAMPION, version)
    history = champion_history(client, name) + [version]
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history[-50:]))
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    if alias_version(client, name, CHALLENGER) == version:
        client.delete_registered_model_alias(name, CHALLENGER)
    log.info("%s version %s is now %s", name, version, CHAMPION)


def now_iso() -> str:
    """Current UTC time for registry tags, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


# ---------------------------------------------------------------- promotion
@dataclass(frozen=True)
class Tolerance:
    """How much worse than the champion a challenger may be on the same test slice."""

    max_auc_drop: float = 0.01
    max_log_loss_rise: float = 0.01


@dataclass
class PromotionDecision:
    challenger: str
    champion_before: str | None
    promoted: bool
    forced: bool
    reasons: list[str]
    test_slice: dict[str, Any]
    challenger_metrics: dict[str, Any]
    champion_metrics: dict[str, Any] | None
    behaviour: dict[str, Any]
    tolerance: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def promote(
    settings: Settings,
    frame: pd.DataFrame,
    version: str | None = None,
    tolerance: Tolerance | None = None,
    force: bool = False,
    note: str = "",
) -> PromotionDecision:
    """Move ``champion`` to the challenger (or ``version``) if it passes the gate.

    The gate, on the challenger's own test slice (deals closed between its validation
    and test cut points) rebuilt from ``frame``: its ROC AUC is at most
    ``max_auc_drop`` below the champion's and its log loss at most
    ``max_log_loss_rise`` above, and its behaviour checks pass. A champion trained on
    later data than the challenger would have seen that slice; the gate is meant for
    the usual case, a challenger trained on the newest data. ``force`` promotes
    whatever the gate says and records that, with ``note``, on the version.
    """
    tolerance = tolerance or Tolerance()
    client = mlflow_client(settings)
    name = settings.model_name
    challenger_v = version or alias_version(client, name, CHALLENGER)
    if challenger_v is None:
        raise RegistryError(f"no '{CHALLENGER}' version of {name}; run `leadscore train` first")
    champion_v = alias_version(client, name, CHAMPION)
    if champion_v == challenger_v:
        raise RegistryError(f"version {challenger_v} is already {CHAMPION}")

    challenger = load_scoring_model(f"models:/{name}/{challenger_v}", settings)
    if "split" not in challenger.info:
        raise RegistryError(
            f"version {challenger_v} records no time split to rebuild its test slice from; "
            "only versions logged by `leadscore train` can be promoted"
        )
    canon = canonical(frame)
    bounds = SplitBounds.from_dict(challenger.info["split"])
    test = canon[slice_masks(canon, bounds)["test"]]
    check_enough_data(test, 1, where="closed deals in the challenger's test slice")
    y = test["won"].to_numpy()
    # Both outcomes are in the test slice (checked above): no metric below is None.
    ch = cast(dict[str, Any], binary_metrics(y, challenger.probability(challenger.encode(test))))
    behaviour = run_behaviour_checks(challenger, test, seed=int(challenger.info.get("seed", 0)))
    reasons = behaviour.failures()
    cm: dict[str, Any] | None = None
    if champion_v is not None:
        champion = load_scoring_model(f"models:/{name}/{champion_v}", settings)
        cm = cast(dict[str, Any], binary_metrics(y, champion.probability(champion.encode(test))))
        if ch["roc_auc"] < cm["roc_auc"] - tolerance.max_auc_drop:
            reasons.append(
                f"ROC AUC {ch['roc_auc']:.4f} is {cm['roc_auc'] - ch['roc_auc']:.4f} below the "
                f"champion's {cm['roc_auc']:.4f} (tolerance {tolerance.max_auc_drop})"
            )
        if ch["log_loss"] > cm["log_loss"] + tolerance.max_log_loss_rise:
            reasons.append(
                f"log loss {ch['log_loss']:.4f} is {ch['log_loss'] - cm['log_loss']:.4f} above the "
                f"champion's {cm['log_loss']:.4f} (tolerance {tolerance.max_log_loss_rise})"
            )
    decision = PromotionDecision(
        challenger=challenger_v,
        champion_before=champion_v,
        promoted=force or not reasons,
        forced=force,
        reasons=reasons,
        test_slice={
            "deals": int(test["deal_id"].nunique()),
            "snapshots": int(len(test)),
            **bounds.to_dict(),
        },
        challenger_metrics=ch,
        champion_metrics=cm,
        behaviour=behaviour.to_dict(),
        tolerance=asdict(tolerance),
    )
    summary = json.dumps(
        {
            "challenger": {k: ch[k] for k in HEADLINE},
            "champion": {k: cm[k] for k in HEADLINE} if cm else None,
            "reasons": reasons,
        }
    )
    if decision.promoted:
        tags = {
            "promotion.at": now_iso(),
            "promotion.gate": "passed" if not reasons else "failed",
            "promotion.replaced": champion_v or "",
            "promotion.summary": summary,
        }
        if force:
            tags |= {
                "promotion.forced": "true",
                "promotion.by": getpass.getuser(),
                "promotion.note": note or "(no note given)",
            }
        elif note:
            tags["promotion.note"] = note
        make_champion(client, name, challenger_v, tags)
    else:
        client.set_model_version_tag(name, challenger_v, "promotion.refused_at", now_iso())
        client.set_model_version_tag(name, challenger_v, "promotion.summary", summary)
        log.warning("version %s not promoted: %s", challenger_v, "; ".join(reasons))
    return decision


def promote_from_store(settings: Settings, **kwargs: Any) -> PromotionDecision:
    """:func:`promote` on the current training frame rebuilt through Feast."""
    return promote(
        settings, training_frame(settings, stored_deals(settings.crm_dir)).frame, **kwargs
    )


@dataclass(frozen=True)
class Rollback:
    from_version: str
    to_version: str


def rollback(settings: Settings, note: str = "") -> Rollback:
    """Put ``champion`` back on the previous champion from the history."""
    client = mlflow_client(settings)
    name = settings.model_name
    current = alias_version(client, name, CHAMPION)
    history = champion_history(client, name)
    while history and history[-1] == current:
        history.pop()
    if current is None or not history:
        raise RegistryError(
            f"no previous {CHAMPION} of {name} to roll back to (history: {history or 'empty'})"
        )
    target = history[-1]
    client.set_registered_model_alias(name, CHAMPION, target)
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
    client.set_model_version_tag(name, current, "rollback.at", now_iso())
    client.set_model_version_tag(name, current, "rollback.note", note or "(no note given)")
    client.set_model_version_tag(name, target, "rollback.restored_at", now_iso())
    log.info("%s %s rolled back from version %s to %s", name, CHAMPION, current, target)
    return Rollback(current, target)


# ---------------------------------------------------------------- listing
HEADLINE_METRICS = (
    "test.roc_auc",
    "test.log_loss",
    "test.ece",
    "test.lift_at_10",
    "baselines.logistic_regression.roc_auc",
    "at_creation.model.roc_auc",
    "at_creation.oracle.roc_auc",
)


def list_versions(settings: Settings) -> list[dict[str, Any]]:
    """Every version, newest first, with aliases, headline test metrics and key tags."""
    client = mlflow_client(settings)
    name = settings.model_name
    try:
        versions = client.search_model_versions(f"name='{name}'")
    except MlflowException:
        return []
    # Search results do not carry aliases on every backend; the registered model does.
    aliases: dict[str, list[str]] = {}
    for alias, v in client.get_registered_model(name).aliases.items():
        aliases.setdefault(str(v), []).append(alias)
    out = []
    for mv in sorted(versions, key=lambda v: int(v.version), reverse=True):
        metrics = client.get_run(mv.run_id).data.metrics if mv.run_id else {}
        out.append(
            {
                "version": str(mv.version),
                "aliases": sorted(aliases.get(str(mv.version), [])),
                "created": datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC).isoformat(
                    timespec="seconds"
                ),
                "run_id": mv.run_id,
                "metrics": {k: metrics[k] for k in HEADLINE_METRICS if k in metrics},
                "tags": {k: v for k, v in mv.tags.items() if k != "promotion.summary"},
            }
        )
    return out
