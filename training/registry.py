"""The MLflow model registry for ``lead_scorer``: register, load, promote, roll back, list.

One registered model per task (:data:`leadscore.config.TASKS`: ``lead_scorer`` for the
win model, ``lead_scorer_revival`` for the revival model, named by
:func:`leadscore.config.task_model_name`), versions moved between two aliases (never
stages):

* ``challenger``: the newest trained version, waiting for the gate;
* ``champion``: what serving and ranking load (``models:/lead_scorer@champion``).

Promotion, rollback and listing are the same functions for every task (``task=``); what
differs (the test slice's frame, the behaviour checks, the words) is in :data:`TASK_RULES`.

The registered model carries a tag ``champion_history``: the JSON list of versions that
were champion, oldest first, so :func:`rollback` can put the previous one back. Every
move is recorded on the model version as ``promotion.*`` / ``rollback.*`` tags.

A training run that dies (``kill -9``, out of memory) cannot mark itself failed. Its run
carries the pid and host of its process (:func:`process_tags`), and every command that
reads or moves aliases first marks such runs FAILED (:func:`fail_dead_runs`). Training
sets aliases only after its run has FINISHED, and :func:`promote` refuses a version whose
run did not finish, so a version of a dead run never receives an alias.

The backend is whatever the tracking URI says: SQLite under ``mlruns/`` by default,
PostgreSQL (``postgresql://...``) in production. Artifacts always go to
``settings.artifact_root`` through the experiment's artifact location.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import socket
import subprocess
import tempfile
from collections.abc import Callable
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

from leadscore.config import (
    CHALLENGER,
    CHAMPION,
    METADATA_KEY,
    REVIVAL,
    TASKS,
    WIN,
    Settings,
    task_model_name,
)
from leadscore.crm.ingest import stored_deals
from leadscore.features.catalog import revival_catalog
from leadscore.features.store import training_frame
from leadscore.model.registry import (
    RegistryError,
    alias_version,
    load_scoring_model,
    mlflow_client,
    segment_booster_files,
)
from leadscore.model.scoring_model import ScoringModel
from training.behaviour import CHECKS, Check, checks_of, run_behaviour_checks
from training.data import canonical, check_enough_data, class_counts
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
    *uncalibrated* probability of the global booster: use :func:`load_scoring_model` to
    score. Segment models' boosters are extra files of the same model
    (:func:`leadscore.model.registry.segment_booster_files`): one version, one artifact.
    """
    X = model.encode(example)
    example_df = pd.DataFrame(X, columns=model.features)
    meta = json.loads(
        json.dumps(model.metadata(), allow_nan=False)
    )  # plain JSON types, or fail here
    client = mlflow_client(settings)  # log_model registers through MLflow's process-wide URI
    with tempfile.TemporaryDirectory() as tmp:
        info = mlflow.lightgbm.log_model(
            model.booster,
            name="model",
            signature=infer_signature(example_df, model.booster.predict(X)),
            input_example=example_df,
            pip_requirements=PIP_REQUIREMENTS,
            registered_model_name=settings.model_name,
            metadata={METADATA_KEY: meta},
            extra_files=segment_booster_files(model, Path(tmp)) or None,
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


# ---------------------------------------------------------------- runs that died
#: Run tags naming the process that runs it, so a later command can tell a run whose
#: process is gone (``kill -9``, a crash, a lost machine) from one still training.
PID_TAG, HOST_TAG, START_TAG = "leadscore.pid", "leadscore.host", "leadscore.process_start"
FINISHED = "FINISHED"


def _process_start(pid: int) -> str | None:
    """The kernel's start time of process ``pid`` (Linux), or None where it cannot be read.

    With the pid it identifies one process: a pid reused by a later process has another
    start time.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    if fields and fields[0] == "Z":  # a zombie: dead, only not yet reaped
        return "zombie"
    return fields[19] if len(fields) > 19 else None


def process_tags() -> dict[str, str]:
    """Tags identifying this process, recorded on a run when it starts."""
    pid = os.getpid()
    return {
        PID_TAG: str(pid),
        HOST_TAG: socket.gethostname(),
        START_TAG: _process_start(pid) or "",
    }


def _process_gone(tags: dict[str, str]) -> bool:
    """Whether the process a run's tags name has ended (only known on its own host)."""
    if tags.get(HOST_TAG) != socket.gethostname() or not tags.get(PID_TAG, "").isdigit():
        return False
    pid = int(tags[PID_TAG])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # someone else's process: alive
        pass
    start = _process_start(pid)
    return start == "zombie" or bool(tags.get(START_TAG) and start and start != tags[START_TAG])


def fail_dead_runs(settings: Settings, client: MlflowClient) -> list[str]:
    """Mark FAILED the experiment's RUNNING runs whose process is gone; unalias their versions.

    Every command that reads or moves aliases calls this first, so a ``leadscore train``
    killed mid-run is marked failed by the next command instead of staying RUNNING
    forever. A run's process is known from the tags :func:`process_tags` put on it; a run
    started on another host (a shared PostgreSQL registry) cannot be checked from here and
    is left alone. Returns the ids of the runs marked failed.
    """
    experiment = client.get_experiment_by_name(settings.experiment)
    if experiment is None:
        return []
    running = client.search_runs(
        [experiment.experiment_id], filter_string="attributes.status = 'RUNNING'"
    )
    failed = []
    for run in running:
        if _process_gone(run.data.tags):
            client.set_tag(
                run.info.run_id,
                "leadscore.failure",
                f"process {run.data.tags[PID_TAG]} on {run.data.tags[HOST_TAG]} ended before "
                f"the run finished (found {now_iso()})",
            )
            client.set_terminated(run.info.run_id, status="FAILED")
            failed.append(run.info.run_id)
            log.warning("training run %s died before it finished; marked FAILED", run.info.run_id)
    _unalias_unfinished(settings, client)
    return failed


def _run_status(client: MlflowClient, run_id: str | None) -> str:
    if not run_id:
        return "no run"
    try:
        return str(client.get_run(run_id).info.status)
    except MlflowException:
        return "deleted"


def _unalias_unfinished(settings: Settings, client: MlflowClient) -> None:
    """Remove an alias from a version whose run failed or was killed.

    ``leadscore train`` only sets aliases after its run finished, so this finds nothing
    unless a version was aliased by hand or by an older version of the product. Every
    task's model is looked at: the runs of both share the experiment.
    """
    for name in dict.fromkeys(task_model_name(settings.model_name, task) for task in TASKS):
        for alias in (CHALLENGER, CHAMPION):
            version = alias_version(client, name, alias)
            if version is None:
                continue
            status = _run_status(client, client.get_model_version(name, version).run_id)
            if status in ("FAILED", "KILLED"):
                client.delete_registered_model_alias(name, alias)
                log.warning(
                    "removed alias %s from version %s: its run is %s", alias, version, status
                )


def finished_run_check(
    client: MlflowClient, name: str, version: str, train_command: str = "leadscore train"
) -> None:
    """Raise :class:`RegistryError` unless ``version`` comes from a run that FINISHED."""
    run_id = client.get_model_version(name, version).run_id
    status = _run_status(client, run_id)
    if status != FINISHED:
        raise RegistryError(
            f"version {version} cannot be promoted: its training run {run_id or ''} did not "
            f"finish (status {status}); run `{train_command}` again"
        )


# ---------------------------------------------------------------- tasks
@dataclass(frozen=True)
class TaskRules:
    """What promotion does differently for one task's model; the rest is shared."""

    #: The command that trains (and registers) a version of it.
    train_command: str
    #: The frame's rows as the model's training ordered and typed them (the win model's
    #: frame goes through :func:`training.data.canonical`; the revival frame comes out of
    #: :func:`training.revival.as_loss_frame` already so, with other features).
    ordered: Callable[[pd.DataFrame], pd.DataFrame]
    #: The behaviour checks of its catalog's monotone directions (as at training).
    checks: tuple[Check, ...]
    #: The frame's unit in messages, and its two outcomes as ``{won}``/``{lost}`` counts.
    units: str
    outcomes: str


TASK_RULES: dict[str, TaskRules] = {
    WIN: TaskRules(
        train_command="leadscore train",
        ordered=canonical,
        checks=CHECKS,
        units="closed deals",
        outcomes="{won} won and {lost} lost deals",
    ),
    REVIVAL: TaskRules(
        train_command="leadscore train-revival",
        ordered=lambda frame: frame,
        checks=checks_of(revival_catalog()),
        units="lost deals",
        outcomes="{won} revived-and-won and {lost} other lost deals",
    ),
}


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
    #: The challenger's baseline gate as training measured it (``passed``, ``sentence``...).
    baseline_gate: dict[str, Any] = field(default_factory=dict)
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
    task: str = WIN,
) -> PromotionDecision:
    """Move ``champion`` of ``task``'s model to its challenger (or ``version``) if it
    passes the gate.

    The gate: the challenger passed the baseline gate at training
    (:func:`training.quality.baseline_gate`, stored in the model: better than logistic
    regression, the channel win rate and the stage and channel fallback per deal beyond
    the interval); and, on its own
    test slice (deals closed between its validation and test cut points) rebuilt from
    ``frame``, its ROC AUC is at most ``max_auc_drop`` below the champion's and its log
    loss at most ``max_log_loss_rise`` above, and its behaviour checks pass. A champion trained on
    later data than the challenger would have seen that slice; the gate is meant for
    the usual case, a challenger trained on the newest data. ``force`` promotes
    whatever the gate says and records that, with ``note``, on the version.

    ``task`` (:data:`leadscore.config.TASKS`) picks the model
    (:func:`leadscore.config.task_model_name`) and its :data:`TASK_RULES`: ``frame`` is
    that task's training frame (for the revival model, the loss frame of
    :func:`training.revival.stored_losses`), and the behaviour checks are its catalog's.
    """
    rules = TASK_RULES[task]
    tolerance = tolerance or Tolerance()
    client = mlflow_client(settings)
    name = task_model_name(settings.model_name, task)
    fail_dead_runs(settings, client)
    challenger_v = version or alias_version(client, name, CHALLENGER)
    if challenger_v is None:
        raise RegistryError(
            f"no '{CHALLENGER}' version of {name}; run `{rules.train_command}` first"
        )
    champion_v = alias_version(client, name, CHAMPION)
    if champion_v == challenger_v:
        raise RegistryError(f"version {challenger_v} is already {CHAMPION}")
    finished_run_check(client, name, challenger_v, rules.train_command)

    challenger = load_scoring_model(f"models:/{name}/{challenger_v}", settings)
    if "split" not in challenger.info:
        raise RegistryError(
            f"version {challenger_v} records no time split to rebuild its test slice from; "
            f"only versions logged by `{rules.train_command}` can be promoted"
        )
    canon = rules.ordered(frame)
    bounds = SplitBounds.from_dict(challenger.info["split"])
    test = canon[slice_masks(canon, bounds)["test"]]
    if not len(test):
        check_enough_data(test, 1, where=f"{rules.units} in the challenger's test slice")
    won, lost = class_counts(test)
    y = test["won"].to_numpy()
    ch = cast(dict[str, Any], binary_metrics(y, challenger.probability(challenger.encode(test))))
    behaviour = run_behaviour_checks(
        challenger, test, seed=int(challenger.info.get("seed", 0)), checks=rules.checks
    )
    reasons = behaviour.failures()
    gate = challenger.gate
    if not gate["passed"]:
        reasons.append(gate["sentence"])
    cm: dict[str, Any] | None = None
    if champion_v is not None:
        champion = load_scoring_model(f"models:/{name}/{champion_v}", settings)
        cm = cast(dict[str, Any], binary_metrics(y, champion.probability(champion.encode(test))))
        if not won or not lost:
            # A slice of one outcome ranks nothing: training's figures came from
            # cross-validation, but no fair comparison with the champion exists here.
            held = rules.outcomes.format(won=won, lost=lost)
            reasons.append(
                f"no comparison with the champion: the challenger's test slice holds {held} "
                "(its evaluation pooled cross-validation folds instead); "
                "`promote --force --note WHY` accepts it on the baseline gate and behaviour"
            )
        elif ch["roc_auc"] < cm["roc_auc"] - tolerance.max_auc_drop:
            reasons.append(
                f"ROC AUC {ch['roc_auc']:.4f} is {cm['roc_auc'] - ch['roc_auc']:.4f} below the "
                f"champion's {cm['roc_auc']:.4f} (tolerance {tolerance.max_auc_drop})"
            )
        if won and lost and ch["log_loss"] > cm["log_loss"] + tolerance.max_log_loss_rise:
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
        baseline_gate=gate,
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


def promote_from_store(settings: Settings, task: str = WIN, **kwargs: Any) -> PromotionDecision:
    """:func:`promote` on ``task``'s current training frame rebuilt through Feast: the win
    model's from ``lead_scoring_v1``, the revival model's from ``revival_v1``."""
    if task == REVIVAL:
        # Imported here: training.revival builds on training.train, which builds on this
        # module, so a module-level import would be circular.
        from training.revival import stored_losses

        frame = stored_losses(settings).frame
    else:
        frame = training_frame(settings, stored_deals(settings.crm_dir)).frame
    return promote(settings, frame, task=task, **kwargs)


@dataclass(frozen=True)
class Rollback:
    from_version: str
    to_version: str


def rollback(settings: Settings, note: str = "", task: str = WIN) -> Rollback:
    """Put ``champion`` of ``task``'s model back on the previous champion from its history."""
    client = mlflow_client(settings)
    fail_dead_runs(settings, client)
    name = task_model_name(settings.model_name, task)
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
    "gate.passed",
)


def list_versions(settings: Settings, task: str = WIN) -> list[dict[str, Any]]:
    """Every version of ``task``'s model, newest first, with aliases, headline test
    metrics and key tags."""
    client = mlflow_client(settings)
    fail_dead_runs(settings, client)
    name = task_model_name(settings.model_name, task)
    try:
        versions = client.search_model_versions(f"name='{name}'")
    except MlflowException:
        return []
    if not versions:  # nothing registered yet: no registered model to read aliases from
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
                "run_status": _run_status(client, mv.run_id),
                "metrics": {k: metrics[k] for k in HEADLINE_METRICS if k in metrics},
                "tags": {k: v for k, v in mv.tags.items() if k != "promotion.summary"},
            }
        )
    return out
