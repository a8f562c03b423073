"""Benchmark `leadscore rank` on about 100k deals to rank: wall time and peak memory.

About a third of a synthetic CRM's deals are open or lost in the last 180 days, so the
default CRM of 300,000 deals (8 million activities) gives about 100,000 deals to rank.
Self-contained: a quick model is trained in-process with the training package's own
functions (time split, LightGBM with calibration, reason stats) on a smaller CRM from
the same generator; the big CRM is stored as ingest stores it and ranked by
:func:`leadscore.priority.rank.run_rank` with reasons, risk flags, history and files, exactly as
the command does after loading the champion. Peak memory is the process's peak
resident set size during the ranking alone (Linux ``VmHWM``, reset before ranking); the
processes the ranking forks have their own (each mostly the parent's pages, shared).

To compare versions of the code (issue 14), ``--work DIR`` stores the CRM and the quick
model there once (reused by later runs), and each ``--code`` folder (a checkout, or a
``git archive`` of a commit, holding ``leadscore/``) ranks it in a fresh process with that
folder first on ``PYTHONPATH``, the folders turn about, ``--runs`` times, one ranking at a
time; printed: each run's wall and CPU seconds (the ranking's processes included), peak
memory and phases, then the medians and each folder's ratio to the first.
Usage:

    uv run python benchmarks/rank_100k.py [--deals 300000] [--train-deals 10000] [--batch-size 10000]
    uv run python benchmarks/rank_100k.py --work /tmp/rank_100k --code /tmp/base --code . [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pickle
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from _synthetic import stored_crm

from leadscore.config import load_settings
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


def cpu_seconds() -> float:
    """CPU seconds of this process and of its ended children (the ranking's processes)."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def store(work: Path, deals: int, train_deals: int, seed: int) -> None:
    """The CRM and the quick model stored under ``work``, unless there already."""
    if (work / "model.pkl").is_file():
        return
    model = quick_model(train_deals, seed + 1)
    crm = generate_crm(deals, seed=seed, as_of=AS_OF)
    stored_crm(crm.tables, work)
    del crm
    (work / "model.pkl").write_bytes(pickle.dumps(model))


def one_run(work: Path, batch_size: int) -> dict[str, object]:
    """One ranking of the stored CRM by the code first on the path."""
    model = pickle.loads((work / "model.pkl").read_bytes())
    settings = load_settings(feature_repo=work / "features")
    reset_peak_rss()
    cpu, start, parent = cpu_seconds(), time.perf_counter(), time.process_time()
    run = run_rank(
        settings,
        model,
        "bench",
        rankings_dir(settings),
        RankConfig(batch_size=batch_size),
        as_of=AS_OF,
        revival=None,
    )
    return {
        "wall": time.perf_counter() - start,
        "cpu": cpu_seconds() - cpu,
        # The parent's own share: reading, the activity reference, the history and files.
        "parent_cpu": time.process_time() - parent,
        "peak_gib": peak_rss_gib(),
        "deals": sum(run.scored.values()),
        "phases": run.seconds,
    }


def compare(a: argparse.Namespace) -> None:
    """Each ``--code`` folder ranks the stored CRM in a fresh process, turn about."""
    a.work.mkdir(parents=True, exist_ok=True)
    store(a.work, a.deals, a.train_deals, a.seed)
    runs: dict[str, list[dict]] = {code: [] for code in a.code}
    for i in range(a.runs):
        for code in a.code:
            env = {**os.environ, "PYTHONPATH": str(Path(code).resolve())}
            out = subprocess.run(
                [sys.executable, __file__, "--one", "--work", str(a.work)]
                + ["--batch-size", str(a.batch_size)],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            runs[code].append(r)
            print(
                f"{code} run {i + 1}: {r['deals']:,} deals, wall {r['wall']:.1f} s, "
                f"cpu {r['cpu']:.1f} s (parent {r['parent_cpu']:.1f} s), "
                f"peak {r['peak_gib']:.2f} GiB, {r['phases']} "
                f"(load {os.getloadavg()[0]:.1f})",
                flush=True,
            )
    base = statistics.median(r["wall"] for r in runs[a.code[0]])
    for code, results in runs.items():
        wall = statistics.median(r["wall"] for r in results)
        print(
            f"{code}: median wall {wall:.1f} s (range {min(r['wall'] for r in results):.1f} "
            f"to {max(r['wall'] for r in results):.1f}), "
            f"cpu {statistics.median(r['cpu'] for r in results):.1f} s, "
            f"peak {max(r['peak_gib'] for r in results):.2f} GiB, {wall / base:.2f}x "
            f"{a.code[0]}, {statistics.median(r['deals'] for r in results) / wall:,.0f} deals/s"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deals", type=int, default=300_000, help="Deals in the synthetic CRM.")
    ap.add_argument("--train-deals", type=int, default=10_000)
    ap.add_argument("--batch-size", type=int, default=RankConfig().batch_size)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--work", type=Path, help="Store the CRM and model here, once.")
    ap.add_argument("--code", action="append", help="A folder holding leadscore/ (repeat).")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if a.one:
        print(json.dumps(one_run(a.work, a.batch_size)))
        return
    if a.code:
        if a.work is None:
            ap.error("--code needs --work")
        compare(a)
        return

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
