"""Ranking with reasons against LightGBM's own TreeSHAP on the same cores (issue 14).

The goal: scores and reasons for a batch cost at most 1.3x the bare ``pred_contrib``
call on the same deals and cores, and ``leadscore rank`` lists 100,000 deals with
reasons in under 45 s on 2 cores. One run measures, on the deals a synthetic CRM of
``--deals`` gives to rank (300,000 gives about 100,000):

* **baseline**: in-process ``booster.predict(X, pred_contrib=True)`` on the ranked deals'
  model matrix, both ways of using the cores: one call on LightGBM's OpenMP threads, and
  chunks of :data:`~leadscore.model.explain.CHUNK_ROWS` on a thread pool, one LightGBM
  thread each; the faster is the baseline;
* **scores and reasons**: :meth:`Explainer.explain` on the same deals' columns with
  ``threads`` = the cores, and its ratio to the baseline;
* **ranking**: :func:`leadscore.priority.rank.run_rank` end to end (features, scores,
  reasons, risk flags, history and files), its wall time and deals/s, and the ratio of
  its deals/s to the baseline's.

Each figure is the median of ``--runs`` runs (3). The model and the CRM come from
:mod:`rank_100k`'s generator and quick model. Process CPU seconds are printed beside the
wall times: on a machine shared with other work the wall time says what a user waits,
the CPU time what the work costs.
Usage:

    uv run python benchmarks/rank_speed.py [--deals 300000] [--runs 3] [--rank-runs R] [--threads N]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _synthetic import stored_crm
from rank_100k import AS_OF, quick_model

from leadscore.crm.synth import generate_crm
from leadscore.features.featurize import build_feature_sources, model_frame
from leadscore.model.explain import CHUNK_ROWS, Explainer
from leadscore.model.scoring_model import ScoringModel
from leadscore.priority.rank import (
    RankConfig,
    batches,
    candidate_features,
    load_for_ranking,
    ranking_deals,
    rankings_dir,
    run_rank,
    track_records,
)


def timed(fn: Callable[[], Any], runs: int) -> tuple[float, float, Any]:
    """Median wall and CPU seconds of ``runs`` calls of ``fn``, and its last result."""
    walls, cpus, out = [], [], None
    for _ in range(runs):
        cpu, wall = time.process_time(), time.perf_counter()
        out = fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), out


def ranked_columns(crm_dir: Path, model: ScoringModel, config: RankConfig) -> dict[str, list]:
    """The model columns of every deal ``rank`` scores, as ``rank_deals`` builds them."""
    tables = load_for_ranking(crm_dir, AS_OF, config)
    candidates, _ = ranking_deals(tables["deals"], AS_OF, config)
    records = track_records(tables["deals"])
    parts = []
    for part, part_tables in batches(tables, candidates, config.batch_size):
        sources = {**build_feature_sources(part_tables, attributes=model.attributes), **records}
        parts.append(model_frame(candidate_features(part_tables, sources, part, AS_OF)))
    frame = pd.concat(parts, ignore_index=True)
    return {name: frame[name].tolist() for name in frame.columns}


def pooled_contributions(model: ScoringModel, X: np.ndarray, threads: int) -> np.ndarray:
    """``pred_contrib`` in chunks on ``threads`` threads, one LightGBM thread each."""
    with ThreadPoolExecutor(threads) as pool:
        parts = pool.map(
            lambda s: model.booster.predict(
                X[s : s + CHUNK_ROWS], pred_contrib=True, num_threads=1
            ),
            range(0, len(X), CHUNK_ROWS),
        )
        return np.vstack(list(parts))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deals", type=int, default=300_000, help="Deals in the synthetic CRM.")
    ap.add_argument("--train-deals", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument(
        "--rank-runs", type=int, default=None, help="Runs of the whole ranking (--runs by default)."
    )
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    config = RankConfig(threads=a.threads)

    model = quick_model(a.train_deals, a.seed + 1)
    crm = generate_crm(a.deals, seed=a.seed, as_of=AS_OF)
    with tempfile.TemporaryDirectory() as tmp:
        settings = stored_crm(crm.tables, Path(tmp))
        del crm
        columns = ranked_columns(settings.crm_dir, model, config)
        n = len(next(iter(columns.values())))
        X = model.encode_columns(columns)
        print(
            f"{n:,} deals to rank; {model.booster.current_iteration()} trees; "
            f"{a.threads} threads on {os.cpu_count()} cores; medians of {a.runs} runs"
        )

        omp = timed(
            lambda: model.booster.predict(X, pred_contrib=True, num_threads=a.threads), a.runs
        )
        pooled = timed(lambda: pooled_contributions(model, X, a.threads), a.runs)
        if not np.array_equal(omp[2], pooled[2]):
            raise SystemExit("chunked pred_contrib differs from one call")
        explainer = Explainer(
            model, config.grade_thresholds, max_reasons=config.max_reasons, threads=a.threads
        )
        explained = timed(lambda: explainer.explain(columns), a.runs)

        def rank() -> Any:
            return run_rank(
                settings, model, "bench", rankings_dir(settings), config, as_of=AS_OF, revival=None
            )

        ranked = timed(rank, a.runs if a.rank_runs is None else a.rank_runs)
        scored = sum(ranked[2].scored.values())

    baseline = min(omp[0], pooled[0])
    rows = [
        ("pred_contrib, one call, OpenMP", omp),
        ("pred_contrib, chunks on a pool", pooled),
        ("scores and reasons (Explainer)", explained),
    ]
    print(f"\n{'step':34s} {'wall s':>8s} {'cpu s':>8s} {'deals/s':>9s} {'x baseline':>11s}")
    for label, (wall, cpu, _) in rows:
        print(f"{label:34s} {wall:8.2f} {cpu:8.2f} {n / wall:9,.0f} {wall / baseline:11.2f}")
    wall, cpu, _ = ranked
    print(
        f"{'rank end to end (' + format(scored, ',') + ' deals)':34s} {wall:8.2f} {cpu:8.2f} "
        f"{scored / wall:9,.0f} {wall / baseline * n / scored:11.2f}"
    )
    print(
        "phases of the last ranking (s): "
        + ", ".join(f"{k} {v}" for k, v in ranked[2].seconds.items())
    )
    print(
        f"\nscores and reasons / pred_contrib: {explained[0] / baseline:.2f}x (goal <= 1.3x); "
        f"rank {scored:,} deals in {wall:.1f} s (goal < 45 s at 100,000)"
    )


if __name__ == "__main__":
    main()
