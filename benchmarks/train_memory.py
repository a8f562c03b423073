"""Where ``leadscore train`` (or ``train-revival``) holds memory: ``train_from_store``
(``train_revival_from_store``) with each phase traced.

Run with a workdir's environment (``benchmarks/pipeline_scale.py`` sets
``LEADSCORE_FEATURE_REPO``, ``MLFLOW_TRACKING_URI``, ``LEADSCORE_ARTIFACT_ROOT``)::

    nice -n 15 uv run python benchmarks/train_memory.py --no-mlflow [--frame tf.pkl]
        [--task revival]

Prints, per phase, the memory ``tracemalloc`` traces (numpy's and Python's allocations,
not DuckDB's or LightGBM's) at its start, its peak while it ran and at its end, in GiB, and
the peak in bytes per snapshot over the traced memory before the frame; and the process's
resident memory at the phase's start and the most sampled (every 10 ms) while it ran (a
short peak while a C call holds the GIL can be missed). ``--save-frame PATH`` pickles the
Feast frame once; ``--frame PATH`` trains on it instead of joining through Feast, so
DuckDB is out of the picture. ``--no-mlflow`` skips the MLflow run
(report, model logging, registration); ``--task revival`` traces ``train-revival``
(``--frame`` and ``--save-frame`` are the win model's only). Phases a version of the code
lacks are skipped, so the same script traces the code before a change (its tree first on
``PYTHONPATH``) and after. The numbers are deterministic; docs/scaling.md, "Training's own
memory" and "The join's end", have before/after tables made with it.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import pickle
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np

GIB = 2**30

#: Phases of training.train traced, by the name they have in its namespace.
PHASES = (
    "training_frame",
    "training_parts",
    "audit_tables",
    "canonical_from_parts",
    "canonical",
    "choose_split",
    "fit_scoring_model",
    "fit_logistic_regression",
    "fit_fallback_on_snapshots",
    "_fit_and_predict",
    "compute_reason_stats",
    "with_intervals",
    "per_segment",
    "backtest_dormant",
    "_segment_models",
    "run_behaviour_checks",
    "log_training_run",
    "train",
)

#: Phases of training.revival traced (``--task revival``).
REVIVAL_PHASES = (
    "stored_losses",
    "revival_training_frame",
    "revival_training_parts",
    "loss_frame_from_parts",
    "as_loss_frame",
    "reopened_win_probability",
    "fit_and_evaluate_revival",
    "fit_scoring_model",
    "compute_reason_stats",
    "fit_logistic_regression",
    "run_behaviour_checks",
    "log_training_run",
)


class Tracer:
    """Per phase: traced bytes at entry, the peak while it ran (its nested phases included)
    and at exit; phases nest, so each reset of tracemalloc's peak first hands the peak so
    far to the phase that is running."""

    def __init__(self) -> None:
        self.stack: list[list[Any]] = []
        self.stats: dict[str, list[float]] = {}
        #: Per phase: resident bytes at entry and the most sampled while it ran.
        self.resident: dict[str, list[float]] = {}
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        """Every 10 ms, the process's resident bytes, as the peak of every running phase:
        what the traced figures leave out (LightGBM's, DuckDB's, the allocator's)."""
        while True:
            now = resident_bytes()
            for entry in list(self.stack):
                entry[3] = max(entry[3], now)
            time.sleep(0.01)

    def wrap(self, module: Any, name: str) -> None:
        fn = getattr(module, name, None)
        if fn is None:  # not in this version of the code
            return

        @functools.wraps(fn)
        def traced(*args: Any, **kwargs: Any) -> Any:
            current, peak = tracemalloc.get_traced_memory()
            if self.stack:
                self.stack[-1][2] = max(self.stack[-1][2], peak)
            tracemalloc.reset_peak()
            rss = resident_bytes()
            self.stack.append([name, current, current, rss])
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                current, peak = tracemalloc.get_traced_memory()
                _, entry, top, rss_top = self.stack.pop()
                r = self.resident.setdefault(name, [rss, rss_top])
                r[1] = max(r[1], rss_top, resident_bytes())
                top = max(top, peak)
                s = self.stats.setdefault(name, [entry, top, current, 0.0])
                s[1], s[2], s[3] = max(s[1], top), current, s[3] + time.perf_counter() - start
                if self.stack:
                    self.stack[-1][2] = max(self.stack[-1][2], top)
                tracemalloc.reset_peak()

        setattr(module, name, traced)


def resident_bytes() -> int:
    """The process's resident set now (``/proc/self/statm``), in bytes."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frame", type=Path, help="Train on this pickled TrainingFrame.")
    ap.add_argument("--save-frame", type=Path, help="Pickle the Feast TrainingFrame here.")
    ap.add_argument("--no-mlflow", action="store_true", help="Skip the MLflow run.")
    ap.add_argument("--task", choices=("win", "revival"), default="win")
    a = ap.parse_args()
    tracemalloc.start()
    # After tracemalloc starts: their imports count.
    import training.revival as R  # noqa: N812
    import training.train as T  # noqa: N812
    from leadscore.config import load_settings

    settings = load_settings()
    if a.save_frame:
        from leadscore.features.store import training_frame

        tf = training_frame(settings, T.stored_deals(settings.crm_dir))
        a.save_frame.write_bytes(pickle.dumps(tf, protocol=5))
        print(f"saved {len(tf.frame)} snapshots to {a.save_frame}")
        return
    snapshots: list[int] = []
    if a.task == "revival":
        module, phases, entry = R, REVIVAL_PHASES, R.train_revival_from_store
        losses_of = R.stored_losses

        def counted(*args: Any, **kwargs: Any) -> Any:
            losses = losses_of(*args, **kwargs)
            snapshots.append(len(losses.frame))
            return losses

        R.stored_losses = counted  # type: ignore[assignment]
    else:
        module, phases, entry = T, PHASES, T.train_from_store
        if a.frame:
            frame_file = a.frame

            def pickled(settings: Any, deals: Any, progress: Any = None) -> Any:
                return pickle.loads(frame_file.read_bytes())

            if hasattr(T, "training_parts"):  # the frame as the join's one part

                def pickled_parts(settings: Any, deals: Any, progress: Any = None) -> Any:
                    from leadscore.features.store import TrainingParts

                    tf = pickled(settings, deals)
                    parts = iter([(np.arange(len(tf.frame)), tf.frame)])
                    return TrainingParts(tf.frame, parts, tf.feature_service, tf.attributes)

                T.training_parts = pickled_parts  # type: ignore[assignment]
            else:
                T.training_frame = pickled
        # The frame's length, counted where this version of the code makes it.
        made = "canonical_from_parts" if hasattr(T, "canonical_from_parts") else "canonical"
        make = getattr(T, made)

        def counted(*args: Any, **kwargs: Any) -> Any:
            frame = make(*args, **kwargs)
            if not snapshots:
                snapshots.append(len(frame))
            return frame

        setattr(T, made, counted)
    if a.no_mlflow:
        module.log_training_run = lambda settings, result, *args: {}
    tracer = Tracer()
    for name in phases:
        tracer.wrap(module, name)
    logging.basicConfig(level=logging.WARNING)
    base = tracemalloc.get_traced_memory()[0]
    start = time.perf_counter()
    entry(settings, T.TrainConfig(seed=settings.seed))
    wall = time.perf_counter() - start
    print(
        f"{'phase':26s} {'start':>7s} {'peak':>7s} {'end':>7s} {'seconds':>8s}"
        f" {'RSS start':>9s} {'RSS peak':>9s}   (GiB traced; GiB resident)"
    )
    for name, (entry_bytes, top, end, seconds) in tracer.stats.items():
        rss, rss_top = tracer.resident[name]
        print(
            f"{name:26s} {entry_bytes / GIB:7.3f} {top / GIB:7.3f} {end / GIB:7.3f} {seconds:8.1f}"
            f" {rss / GIB:9.3f} {rss_top / GIB:9.3f}"
        )
    peak = max(s[1] for s in tracer.stats.values())
    n = snapshots[0]
    print(
        f"{n} snapshots; traced before the frame {base / GIB:.3f} GiB, peak {peak / GIB:.3f} GiB: "
        f"{(peak - base) / n:.0f} bytes per snapshot over it; wall {wall:.1f} s"
    )


if __name__ == "__main__":
    main()
