"""Benchmark `leadscore rank` on about 100k deals to rank: wall time and peak memory.

About a third of a synthetic CRM's deals are open or lost in the last 180 days, so the
default CRM of 300,000 deals (8 million activities) gives about 100,000 deals to rank.
Self-contained: a quick model is trained in-process with the training package's own
functions (time split, LightGBM with calibration, reason stats) on a smaller CRM from
the same generator; the big CRM is stored as ingest stores it and ranked by
:func:`leadscore.priority.rank.run_rank` with reasons, risk flags, history and files, exactly as
the command does after loading the champion. Peak memory is the process's peak
resident set size during the ranking alone (Linux ``VmHWM``, reset before ranking).
Usage:

    uv run python benchmarks/rank_100k.py [--deals 300000] [--train-deals 10000] [--batch-size 10000]
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import tempfile
import time
from pathlib import Path

import pandas as pd
from _synthetic import stored_crm

from leadscore.crm.synth import generate_crm
from leadscore.features.catalog import CATEGORICAL_FEATURES, MODEL_FEATURES
from leadscore.model.reason_stats import compute_reason_stats
from leadscore.model.scoring_model import ScoringModel
from leadscore.priority.rank import RankConfig, rankings_dir, run_rank
from training.data import canonical, in_memory_frame
from training.result import TrainConfig
from training.split import slice_masks, split_bounds
from training.train import fit_scoring_model

AS_OF = pd.Timestamp("2025-06-01", tz="UTC")


def quick_model(n_deals: int, seed: int) -> ScoringModel:
    """Train, early-stop and calibrate on a time split of a small synthetic CRM."""
    frame = canonical(in_memory_frame(generate_crm(n_deals, seed=seed, as_of=AS_OF).tables))
    masks = slice_masks(frame, split_bounds(frame))
    train, valid = frame[masks["train"]], frame[masks["valid"]]
    fitted = fit_scoring_model(
        train, valid, MODEL_FEATURES, CATEGORICAL_FEATURES, TrainConfig(seed=seed)
    )
    fitted.model.reason_stats = compute_reason_stats(train, MODEL_FEATURES, fitted.model.categories)
    return fitted.model


def peak_rss_gib() -> float:
    """Peak resident memory since the last reset (Linux), else since the process started."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def reset_peak_rss() -> bool:
    """Start a new peak-memory window (Linux ``clear_refs`` 5); False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deals", type=int, default=300_000, help="Deals in the synthetic CRM.")
    ap.add_argument("--train-deals", type=int, default=10_000)
    ap.add_argument("--batch-size", type=int, default=RankConfig().batch_size)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    start = time.perf_counter()
    model = quick_model(a.train_deals, a.seed + 1)
    print(
        f"quick model: {a.train_deals:,} deals, {model.booster.current_iteration()} trees, "
        f"{time.perf_counter() - start:.1f}s"
    )
    start = time.perf_counter()
    crm = generate_crm(a.deals, seed=a.seed, as_of=AS_OF)
    print(
        f"synthetic CRM: {a.deals:,} deals, {len(crm.tables['activities']):,} activities, "
        f"{time.perf_counter() - start:.1f}s"
    )

    with tempfile.TemporaryDirectory() as tmp:
        settings = stored_crm(crm.tables, Path(tmp))
        del crm
        exact = reset_peak_rss()
        before = peak_rss_gib()
        start = time.perf_counter()
        run = run_rank(
            settings,
            model,
            "bench",
            rankings_dir(settings),
            RankConfig(batch_size=a.batch_size),
            as_of=AS_OF,
        )
        wall = time.perf_counter() - start
        peak = peak_rss_gib()
        scored = sum(run.scored.values())
        sizes = {k: p.stat().st_size / 1024**2 for k, p in run.paths.items()}

    print(
        f"\nranked {scored:,} deals ({', '.join(f'{n:,} {s}' for s, n in run.scored.items())}) "
        f"with up to {RankConfig().max_reasons} reasons each way, risk flags and next steps"
    )
    print(f"{'phase':22s} {'seconds':>8s}")
    for phase, seconds in run.seconds.items():
        print(f"{phase:22s} {seconds:>8.2f}")
    print(f"{'total (with loading)':22s} {wall:>8.2f}   {scored / wall:,.0f} deals/s")
    print(
        f"peak memory: {peak:.2f} GiB resident"
        + (f" (ranking only; {before:.2f} GiB before)" if exact else " (whole process)")
    )
    print("files: " + ", ".join(f"{k} {v:.1f} MiB" for k, v in sizes.items()))
    print(f"{os.cpu_count()} cores; LightGBM on 1 thread")


if __name__ == "__main__":
    main()
