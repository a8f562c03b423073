"""Ranking with reasons against LightGBM's own TreeSHAP on the same cores (issue 14).

The goal: scores and reasons for a batch cost at most 1.3x the bare ``pred_contrib``
call on the same deals and cores, and ``leadscore rank`` lists 100,000 deals with
reasons in under 45 s on 2 cores. One run measures, on the deals a synthetic CRM of
``--deals`` gives to rank (300,000 gives about 100,000):

* **baseline**: in-process ``booster.predict(X, pred_contrib=True)`` on the ranked deals'
  model matrix, both ways of using the cores: one call on LightGBM's OpenMP threads, and
  chunks of :data:`~leadscore.model.explain.CHUNK_ROWS` on a thread pool, one LightGBM
  thread each; the faster is the baseline;
* **numba TreeSHAP** (:mod:`leadscore.model.treeshap`, what ``contributions`` uses): the
  same chunks on the same pool, its ratio to the baseline, and its largest difference
  from ``pred_contrib``; and both on one thread over the first ``--single-rows`` deals
  (in-process deals/s);
* **scores and reasons**: :meth:`Explainer.explain` on the same deals' columns with
  ``threads`` = the cores, and its ratio to the baseline, with the numba TreeSHAP and
  with ``shap_engine="lightgbm"``;
* **ranking**: :func:`leadscore.priority.rank.run_rank` end to end (features, scores,
  reasons, risk flags, history and files), its wall time and deals/s, and the ratio of
  its deals/s to the baseline's.

Each figure is the median of ``--runs`` runs (3). The model and the CRM come from
:mod:`rank_100k`'s generator and quick model. Process CPU seconds are printed beside the
wall times: on a machine shared with other work the wall time says what a user waits,
the CPU time what the work costs.
Usage:

    uv run python benchmarks/rank_speed.py [--deals 300000] [--runs 3] [--rank-runs R]
        [--threads N] [--single-rows 5000]
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
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _synthetic import stored_crm
from rank_100k import AS_OF, quick_model

from leadscore.crm.synth import generate_crm
from leadscore.features.featurize import build_feature_sources, model_frame
from leadscore.model import treeshap
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


def pooled_contributions(
    contributions: Callable[[np.ndarray], np.ndarray], X: np.ndarray, threads: int
) -> np.ndarray:
    """``contributions`` of ``X`` in chunks on ``threads`` threads, one thread each."""
    with ThreadPoolExecutor(threads) as pool:
        parts = pool.map(
            lambda s: contributions(X[s : s + CHUNK_ROWS]), range(0, len(X), CHUNK_ROWS)
        )
        return np.vstack(list(parts))


def same_explanations(ours: list[Any], theirs: list[Any]) -> bool:
    """Scores, grades and reasons equal; probabilities to 1e-12 (the contributions sum
    in another order, so the last bits of a probability may differ)."""
    if len(ours) != len(theirs):
        return False
    for a, b in zip(ours, theirs, strict=True):
        if abs(a["probability"] - b["probability"]) > 1e-12:
            return False
        if {**a, "probability": 0} != {**b, "probability": 0}:
            return False
    return True


def single_thread_deals_per_second(
    contributions: Callable[[np.ndarray], np.ndarray], X: np.ndarray, runs: int
) -> float:
    """Deals/s of ``contributions`` on the calling thread, by that thread's CPU time
    (what the work costs, whatever else the machine runs)."""
    times = []
    for _ in range(runs):
        cpu = time.thread_time()
        contributions(X)
        times.append(time.thread_time() - cpu)
    return len(X) / statistics.median(times)


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
    ap.add_argument(
        "--single-rows", type=int, default=5_000, help="Deals of the one-thread comparison."
    )
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

        def lightgbm(rows: np.ndarray) -> np.ndarray:
            return np.asarray(model.booster.predict(rows, pred_contrib=True, num_threads=1))

        compiled = treeshap.compiled(model.booster)
        if compiled is None:
            raise SystemExit("the numba TreeSHAP does not support this model")
        kernel = compiled.contributions
        kernel(X[:10])  # load the compiled kernel before timing

        omp = timed(
            lambda: model.booster.predict(X, pred_contrib=True, num_threads=a.threads), a.runs
        )
        pooled = timed(lambda: pooled_contributions(lightgbm, X, a.threads), a.runs)
        if not np.array_equal(omp[2], pooled[2]):
            raise SystemExit("chunked pred_contrib differs from one call")
        fast = timed(lambda: pooled_contributions(kernel, X, a.threads), a.runs)
        difference = float(np.abs(fast[2] - pooled[2]).max())
        explainer = Explainer(
            model, config.grade_thresholds, max_reasons=config.max_reasons, threads=a.threads
        )
        explained = timed(lambda: explainer.explain(columns), a.runs)
        slow_explainer = Explainer(
            replace(model, shap_engine="lightgbm"),
            config.grade_thresholds,
            max_reasons=config.max_reasons,
            threads=a.threads,
        )
        explained_slow = timed(lambda: slow_explainer.explain(columns), a.runs)
        if not same_explanations(explained[2], explained_slow[2]):
            raise SystemExit("the Explainer says otherwise with the numba TreeSHAP")
        one = np.ascontiguousarray(X[: a.single_rows])
        single = {
            "pred_contrib": single_thread_deals_per_second(lightgbm, one, a.runs),
            "numba TreeSHAP": single_thread_deals_per_second(kernel, one, a.runs),
        }

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
        ("numba TreeSHAP, chunks on a pool", fast),
        ("scores and reasons (Explainer)", explained),
        ("  the same by pred_contrib", explained_slow),
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
        f"\nnumba TreeSHAP / pred_contrib on the pool: {fast[0] / pooled[0]:.2f}x wall, "
        f"{fast[1] / pooled[1]:.2f}x CPU; largest difference {difference:.1e}"
    )
    print(
        f"one thread, {len(one):,} deals, by thread CPU time: "
        + ", ".join(f"{k} {v:,.0f} deals/s" for k, v in single.items())
        + f" ({single['numba TreeSHAP'] / single['pred_contrib']:.1f}x)"
    )
    print(
        f"scores and reasons / pred_contrib: {explained[0] / baseline:.2f}x (goal <= 1.3x); "
        f"rank {scored:,} deals in {wall:.1f} s (goal < 45 s at 100,000)"
    )


if __name__ == "__main__":
    main()
