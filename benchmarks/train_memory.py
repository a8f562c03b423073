"""Where ``leadscore train`` holds memory: ``train_from_store`` with each phase traced.

Run with a workdir's environment (``benchmarks/pipeline_scale.py`` sets
``LEADSCORE_FEATURE_REPO``, ``MLFLOW_TRACKING_URI``, ``LEADSCORE_ARTIFACT_ROOT``)::

    nice -n 15 uv run python benchmarks/train_memory.py --no-mlflow [--frame tf.pkl]

Prints, per phase, the memory ``tracemalloc`` traces (numpy's and Python's allocations,
not DuckDB's or LightGBM's) at its start, its peak while it ran and at its end, in GiB, and
the peak in bytes per snapshot over the traced memory before the frame. ``--save-frame
PATH`` pickles the Feast frame once; ``--frame PATH`` trains on it instead of joining
through Feast, so DuckDB is out of the picture. ``--no-mlflow`` skips the MLflow run
(report, model logging, registration). The numbers are deterministic; docs/scaling.md,
"Training's own memory", has a before/after table made with it.
"""

from __future__ import annotations

import argparse
import functools
import logging
import pickle
import time
import tracemalloc
from pathlib import Path
from typing import Any

GIB = 2**30

#: Phases of training.train traced, by the name they have in its namespace.
PHASES = (
    "training_frame",
    "audit_tables",
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


class Tracer:
    """Per phase: traced bytes at entry, the peak while it ran (its nested phases included)
    and at exit; phases nest, so each reset of tracemalloc's peak first hands the peak so
    far to the phase that is running."""

    def __init__(self) -> None:
        self.stack: list[list[Any]] = []
        self.stats: dict[str, list[float]] = {}

    def wrap(self, module: Any, name: str) -> None:
        fn = getattr(module, name)

        @functools.wraps(fn)
        def traced(*args: Any, **kwargs: Any) -> Any:
            current, peak = tracemalloc.get_traced_memory()
            if self.stack:
                self.stack[-1][2] = max(self.stack[-1][2], peak)
            tracemalloc.reset_peak()
            self.stack.append([name, current, current])
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                current, peak = tracemalloc.get_traced_memory()
                _, entry, top = self.stack.pop()
                top = max(top, peak)
                s = self.stats.setdefault(name, [entry, top, current, 0.0])
                s[1], s[2], s[3] = max(s[1], top), current, s[3] + time.perf_counter() - start
                if self.stack:
                    self.stack[-1][2] = max(self.stack[-1][2], top)
                tracemalloc.reset_peak()

        setattr(module, name, traced)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frame", type=Path, help="Train on this pickled TrainingFrame.")
    ap.add_argument("--save-frame", type=Path, help="Pickle the Feast TrainingFrame here.")
    ap.add_argument("--no-mlflow", action="store_true", help="Skip the MLflow run.")
    a = ap.parse_args()
    tracemalloc.start()
    import training.train as T  # noqa: N812  (after tracemalloc starts: its imports count)
    from leadscore.config import load_settings

    settings = load_settings()
    if a.save_frame:
        tf = T.training_frame(settings, T.stored_deals(settings.crm_dir))
        a.save_frame.write_bytes(pickle.dumps(tf, protocol=5))
        print(f"saved {len(tf.frame)} snapshots to {a.save_frame}")
        return
    if a.frame:
        frame_file = a.frame
        T.training_frame = lambda settings, deals, progress=None: pickle.loads(  # type: ignore[assignment]
            frame_file.read_bytes()
        )
    if a.no_mlflow:
        T.log_training_run = lambda settings, result, report=None: {}  # type: ignore[assignment]
    tracer = Tracer()
    for name in PHASES:
        tracer.wrap(T, name)
    snapshots: list[int] = []
    frame_of = T.training_frame

    def counted(*args: Any, **kwargs: Any) -> Any:
        tf = frame_of(*args, **kwargs)
        snapshots.append(len(tf.frame))
        return tf

    T.training_frame = counted  # type: ignore[assignment]
    logging.basicConfig(level=logging.WARNING)
    base = tracemalloc.get_traced_memory()[0]
    start = time.perf_counter()
    T.train_from_store(settings, T.TrainConfig(seed=settings.seed))
    wall = time.perf_counter() - start
    print(f"{'phase':26s} {'start':>7s} {'peak':>7s} {'end':>7s} {'seconds':>8s}   (GiB traced)")
    for name, (entry, top, end, seconds) in tracer.stats.items():
        print(f"{name:26s} {entry / GIB:7.3f} {top / GIB:7.3f} {end / GIB:7.3f} {seconds:8.1f}")
    peak = max(s[1] for s in tracer.stats.values())
    n = snapshots[0]
    print(
        f"{n} snapshots; traced before the frame {base / GIB:.3f} GiB, peak {peak / GIB:.3f} GiB: "
        f"{(peak - base) / n:.0f} bytes per snapshot over it; wall {wall:.1f} s"
    )


if __name__ == "__main__":
    main()
