"""The retraining loop (issue 16): one command a scheduler runs, from an export to serving.

``leadscore retrain EXPORT`` ingests the export, refreshes the feature store (applies
the repo when it never was, materializes), trains a version, puts it through the promotion gate (never forced), and,
only when it becomes champion, packages it and points running services at it
(:func:`serving.package.package_served`; each worker switches within
``LEADSCORE_MODEL_RELOAD_SECONDS``, :mod:`serving.reload`). A version the gate refuses
stays challenger and nothing served changes.

**Safe from cron.** One run at a time: the run holds an exclusive ``flock`` on
:attr:`~leadscore.config.Settings.retrain_lock` for its whole length, and a second run
finds it taken and stops at once (:class:`RetrainBusy`). The kernel releases the lock
when a run dies, however it dies, so no stale lock blocks the next night. A run killed
part way leaves what each step guarantees: ingest commits whole or not at all
(:mod:`leadscore.pipeline_state`), training sets aliases only once its run finished
(:mod:`training.registry`), and the pointer is renamed into place whole.

**Logged to MLflow.** The loop is one MLflow run of its own (``run_name`` ``retrain``),
the training run its child (``mlflow.parentRunId``), with each step's outcome and time
(``retrain.step.<step>`` tags, ``retrain.seconds.<step>`` metrics), the ingest counts,
the champion before and after, the decision and its reasons, the gate's figures for the
challenger and the champion on the challenger's test slice, and the whole decision as
``retrain/decision.json``. A run that dies is marked FAILED by the next command, as a
training run is (it carries the same process tags).

**Either model.** ``task`` (``leadscore retrain --task revival``) picks the model the loop
trains and gates: the win model (``leadscore train``) by default, or the revival model
(``leadscore train-revival``, gated by ``promote --task revival``'s rules), with the same
steps, exit codes and MLflow record (tag ``retrain.task``). Packaging always packages
both champions and points running services at both, so a new revival champion reaches
``/score_ids`` the way a new win champion does.

**Either engine.** ``engine`` (``leadscore retrain --engine spark``) runs the loop's data
steps where ``ingest``, ``features materialize`` and ``train`` run with the same option:
the feature sources built on Spark, materialization by Feast's Spark compute engine into
the Redis online store, the training set from Feast's Spark offline store
(:func:`leadscore.config.engine_settings`). Training, the gate and packaging are the
same on both (tag ``retrain.engine``).
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from leadscore.config import (
    CHAMPION,
    LOCAL_ENGINE,
    REVIVAL,
    WIN,
    Settings,
    engine_settings,
    task_model_name,
)
from leadscore.features.store import apply_repo, is_applied, materialize
from leadscore.model.registry import alias_version, mlflow_client
from leadscore.progress import Progress, no_progress
from pipelines.steps import IngestSummary, ingest
from serving.package import PackagedChampions, PackagingError, package_served
from training.evaluate import HEADLINE
from training.registry import (
    PromotionDecision,
    Tolerance,
    ensure_experiment,
    process_tags,
    promote_from_store,
    rollback,
)
from training.result import TrainConfig
from training.revival import train_revival_from_store
from training.train import train_from_store

log = logging.getLogger(__name__)

T = TypeVar("T")

#: The loop's steps, in order, as the run's tags and ``progress`` name them.
RETRAIN_STEPS = (
    "ingest",
    "features apply",
    "features materialize",
    "train",
    "promote",
    "package",
)
#: What trains each task's model from the stored CRM, through Feast (the same signature:
#: settings, config, truth path, progress; the summary ``leadscore train --json`` prints).
TRAINERS: dict[str, Callable[..., dict[str, Any]]] = {
    WIN: train_from_store,
    REVIVAL: train_revival_from_store,
}
#: Exit codes of ``leadscore retrain``.
PROMOTED, REFUSED, BAD_INPUT = 0, 1, 2
#: Another run holds the lock: ``EX_TEMPFAIL`` (sysexits.h), "try again later".
BUSY = 75


def lower_priority(settings: Settings) -> None:
    """Lower this process's CPU priority by ``settings.retrain_nice`` (0: leave it).

    For the command's process, before the loop: a scheduled retrain usually runs on the
    machine that serves, and its ingest, materialization and training would otherwise
    take CPU from the answers. The kernel does not let a process raise its priority
    back, so a library call must not do this to a caller's process: the command does.
    """
    if settings.retrain_nice:
        os.nice(settings.retrain_nice)
        log.info("retrain runs at nice +%d (LEADSCORE_RETRAIN_NICE)", settings.retrain_nice)


class RetrainBusy(RuntimeError):
    """Another ``leadscore retrain`` holds the lock; this one did nothing."""


@contextmanager
def retrain_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` for the block, or raise :class:`RetrainBusy` at once.

    ``flock`` rather than a file that exists while a run does: the kernel drops the lock
    with the process, so a run killed with ``kill -9`` blocks nothing. The file keeps the
    pid of the run that holds it, for the message of the one turned away.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise RetrainBusy(
                f"another `leadscore retrain` is running (pid {holder}, lock {path}); "
                "this run did nothing"
            ) from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


@dataclass
class RetrainOutcome:
    """What one run of the loop did and decided; ``exit_code`` is the command's."""

    run_id: str
    exit_code: int
    champion_before: str | None
    champion_after: str | None
    #: The version trained by this run, and its aliases once the gate decided.
    version: str | None = None
    reasons: list[str] = field(default_factory=list)
    ingest: IngestSummary | None = None
    decision: PromotionDecision | None = None
    packaged: PackagedChampions | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    #: The model the run trained and gated (:data:`~leadscore.config.TASKS`).
    task: str = WIN

    @property
    def promoted(self) -> bool:
        return self.exit_code == PROMOTED

    @property
    def served_tag(self) -> str | None:
        """The BentoML tag now served for this run's task; None when nothing was packaged."""
        if self.packaged is None:
            return None
        served = self.packaged.win if self.task == WIN else self.packaged.revival
        return None if served is None else served.tag


def retrain(
    settings: Settings,
    export_dir: Path,
    tolerance: Tolerance | None = None,
    config: TrainConfig | None = None,
    progress: Progress = no_progress,
    task: str = WIN,
    engine: str = LOCAL_ENGINE,
) -> RetrainOutcome:
    """Run the loop on ``export_dir`` for ``task``'s model on ``engine`` (module doc); raises
    :class:`RetrainBusy` when another run holds the lock, and the ingest's or training's
    errors on bad input (:class:`~leadscore.crm.ingest.ExportError`,
    :class:`~training.data.InsufficientDataError`), the loop's run then marked FAILED."""
    model_name = task_model_name(settings.model_name, task)  # unknown task: fails before the lock
    settings = engine_settings(settings, engine)  # unknown engine: fails before the lock too
    with retrain_lock(settings.retrain_lock):
        client = mlflow_client(settings)
        run = client.create_run(
            ensure_experiment(settings, client),
            run_name="retrain",
            tags={
                "leadscore.loop": "retrain",
                "retrain.task": task,
                "retrain.engine": engine,
                "retrain.export": str(export_dir),
                **process_tags(),
            },
        )
        run_id = run.info.run_id
        before = alias_version(client, model_name, CHAMPION)
        client.set_tag(run_id, "retrain.champion_before", before or "none")
        outcome = RetrainOutcome(run_id, REFUSED, before, before, task=task)

        def step(name: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
            progress(
                "retrain", RETRAIN_STEPS.index(name), len(RETRAIN_STEPS), unit="steps", detail=name
            )
            start = time.perf_counter()
            try:
                out = fn(*args, **kwargs)
            except BaseException as exc:
                client.set_tag(run_id, f"retrain.step.{name}", f"failed: {exc}"[:5000])
                raise
            seconds = round(time.perf_counter() - start, 2)
            outcome.seconds[name] = seconds
            client.log_metric(run_id, f"retrain.seconds.{name}", seconds)
            client.set_tag(run_id, f"retrain.step.{name}", "done")
            log.info("retrain: %s done in %.1f s", name, seconds)
            return out

        try:
            _loop(settings, export_dir, tolerance, config, progress, outcome, step, task, engine)
        except BaseException as exc:
            client.set_tag(run_id, "retrain.decision", f"failed: {type(exc).__name__}")
            client.set_terminated(run_id, status="FAILED")
            raise
        after = alias_version(client, model_name, CHAMPION)
        outcome.champion_after = after
        client.set_tag(run_id, "retrain.champion_after", after or "none")
        client.set_tag(run_id, "retrain.reasons", json.dumps(outcome.reasons)[:5000])
        client.set_terminated(run_id, status="FINISHED")
        progress("retrain", len(RETRAIN_STEPS), len(RETRAIN_STEPS), unit="steps")
        return outcome


def _loop(
    settings: Settings,
    export_dir: Path,
    tolerance: Tolerance | None,
    config: TrainConfig | None,
    progress: Progress,
    outcome: RetrainOutcome,
    step: Callable[..., Any],
    task: str = WIN,
    engine: str = LOCAL_ENGINE,
) -> None:
    """The steps of :func:`retrain`, recording each decision on ``outcome`` and its run;
    ``settings`` are ``engine``'s already."""
    client = mlflow_client(settings)
    run_id = outcome.run_id
    outcome.ingest = step("ingest", ingest, export_dir, settings, progress=progress, engine=engine)
    for table, counts in outcome.ingest.counts.items():
        for key in ("read", "rejected", "inserted", "updated"):
            client.log_metric(run_id, f"ingest.{table}.{key}", counts.get(key, 0))
    if is_applied(settings):  # deployed with the code (`leadscore features apply`)
        client.set_tag(run_id, "retrain.step.features apply", "skipped: already applied")
    else:
        step("features apply", apply_repo, settings, progress)
    step("features materialize", materialize, settings, progress=progress)
    config = config or TrainConfig(seed=settings.seed)
    trained = step("train", TRAINERS[task], settings, config, progress=progress)
    outcome.version = str(trained["model_version"])
    client.set_tag(trained["run_id"], "mlflow.parentRunId", run_id)
    client.set_tag(run_id, "retrain.version", outcome.version)
    client.set_tag(run_id, "retrain.training_run", trained["run_id"])
    for key in HEADLINE:
        value = (trained.get("test") or {}).get(key)
        if value is not None:
            client.log_metric(run_id, f"challenger.training_test.{key}", float(value))

    if CHAMPION in trained["aliases"]:
        # The first version: training made it champion on the baseline gate and its
        # behaviour checks (nothing to compare it with).
        decision_tag = "first version: champion by the baseline gate"
    else:
        decision = step(
            "promote", promote_from_store, settings, task=task, tolerance=tolerance or Tolerance()
        )
        outcome.decision = decision
        outcome.reasons = list(decision.reasons)
        client.log_dict(run_id, decision.to_dict(), "retrain/decision.json")
        for who, metrics in (
            ("challenger", decision.challenger_metrics),
            ("champion", decision.champion_metrics),
        ):
            for key in HEADLINE:
                value = (metrics or {}).get(key)
                if value is not None:
                    client.log_metric(run_id, f"gate.{who}.{key}", float(value))
        client.log_metric(run_id, "gate.test_slice_deals", decision.test_slice["deals"])
        if not decision.promoted:
            client.set_tag(run_id, "retrain.decision", "refused by the gate")
            log.warning(
                "retrain: version %s refused: %s", decision.challenger, "; ".join(decision.reasons)
            )
            return
        decision_tag = "promoted by the gate"
    by = "leadscore retrain" + ("" if task == WIN else f" --task {task}")
    outcome.packaged = step("package", package_served, settings, by=by)
    client.set_tag(run_id, "retrain.served_tag", outcome.served_tag or "none")
    client.set_tag(run_id, "retrain.decision", decision_tag)
    outcome.exit_code = PROMOTED


@dataclass(frozen=True)
class ServedRollback:
    """A rollback: the registry's move, and what is packaged now, or why packaging failed
    (the move stands: the registry is the record, and ``leadscore package`` repeats the
    packaging once the cause is fixed)."""

    from_version: str
    to_version: str
    packaged: PackagedChampions | None
    packaging_error: str | None = None


def rollback_served(settings: Settings, note: str = "", task: str = WIN) -> ServedRollback:
    """The loop in reverse: move ``champion`` of ``task``'s model back
    (:func:`training.registry.rollback`), package the champions again (the previous one is
    usually still in the BentoML store: nothing is imported then) and point running
    services at them, so they switch back within their reload interval.

    Holds the retrain lock, so a rollback never interleaves with a retrain's promotion.
    """
    with retrain_lock(settings.retrain_lock):
        moved = rollback(settings, note, task)
        try:
            packaged = package_served(
                settings, by=f"leadscore rollback{'' if task == WIN else ' --task ' + task}"
            )
        except PackagingError as exc:
            return ServedRollback(moved.from_version, moved.to_version, None, str(exc))
        return ServedRollback(moved.from_version, moved.to_version, packaged)
