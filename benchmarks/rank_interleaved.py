"""`run_rank` of two versions of the code, interleaved on one stored CRM (issue 14).

On a machine shared with other work a wall time alone says little; the ratio of two
versions run turn about, under the same load, says what a change did. The CRM of
:mod:`rank_100k`'s generator (``--deals``, seed 7, as of its ``AS_OF``) and its quick
model are stored once under ``--work``; then each ``--code`` folder (a checkout, or a
``git archive`` of a commit, holding ``leadscore/``) ranks it in a fresh process with
that folder first on ``PYTHONPATH``, one after the other, ``--runs`` times. Printed:
each run's wall and CPU seconds of :func:`leadscore.priority.rank.run_rank` (the
process's imports not included; no revival model; the CPU of the processes it ranks on
included) and its phases, then the medians.
Each round also times, in a fresh process of its own, LightGBM's ``pred_contrib`` (one
in-process call, OpenMP on every core) on the model matrix of the same candidates (their
features built by the last ``--code``'s batches; not timed), and prints each code's
ranking as a multiple of it: ranking with reasons, flags and files against bare TreeSHAP
by LightGBM on the same deals and cores (issue 14's goal: at most 1.3x).
Usage:

    git archive BASE leadscore training | tar -x -C /tmp/base
    uv run python benchmarks/rank_interleaved.py --code /tmp/base --code . [--deals 100000]
        [--runs 3] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

AS_OF = pd.Timestamp("2025-06-01", tz="UTC")  # rank_100k's


def prepare(work: Path, deals: int) -> None:
    """Store the synthetic CRM and the quick model under ``work``, unless there already."""
    if (work / "model.pkl").is_file():
        return
    from _synthetic import stored_crm
    from rank_100k import quick_model

    from leadscore.crm.synth import generate_crm

    model = quick_model(10_000, 8)
    stored_crm(generate_crm(deals, seed=7, as_of=AS_OF).tables, work)
    (work / "model.pkl").write_bytes(pickle.dumps(model))


def cpu_seconds() -> float:
    """CPU seconds of this process and of its children that have ended (a ranking's
    processes end with it), every thread, user and system."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def one_run(work: Path) -> dict[str, object]:
    """One ranking of the stored CRM by the code first on the path."""
    from leadscore.config import load_settings
    from leadscore.priority.rank import RankConfig, rankings_dir, run_rank

    model = pickle.loads((work / "model.pkl").read_bytes())
    settings = load_settings(feature_repo=work / "features")
    cpu, wall, parent = cpu_seconds(), time.perf_counter(), time.process_time()
    run = run_rank(
        settings, model, "bench", rankings_dir(settings), RankConfig(), as_of=AS_OF, revival=None
    )
    return {
        "wall": time.perf_counter() - wall,
        "cpu": cpu_seconds() - cpu,
        # The parent's own share: reading, the activity reference, the history and files.
        "parent_cpu": time.process_time() - parent,
        "deals": sum(run.scored.values()),
        "phases": run.seconds,
    }


def one_contrib(work: Path) -> dict[str, object]:
    """``pred_contrib`` on the candidates' model matrix: one call, every core."""
    from leadscore.config import load_settings
    from leadscore.features.featurize import model_frame
    from leadscore.priority.rank import RankConfig, batch_ranker, batches, load_for_ranking

    model = pickle.loads((work / "model.pkl").read_bytes())
    settings = load_settings(feature_repo=work / "features")
    config = RankConfig()
    tables = load_for_ranking(settings.crm_dir, AS_OF, config)
    candidates, ranker = batch_ranker(tables, model, AS_OF, config)
    X = np.vstack(
        [
            model.encode_columns(
                {
                    name: v.tolist()
                    for name, v in model_frame(ranker.prepare(*part).features).items()
                }
            )
            for part in batches(tables, candidates, config.batch_size)
        ]
    )
    cpu, wall = time.process_time(), time.perf_counter()
    model.booster.predict(X, pred_contrib=True, num_threads=len(os.sched_getaffinity(0)))
    return {
        "wall": time.perf_counter() - wall,
        "cpu": time.process_time() - cpu,
        "deals": len(X),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--code", action="append", required=True, help="A folder holding leadscore/.")
    ap.add_argument("--deals", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--work", type=Path, default=Path("/tmp/rank_interleaved"))
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--one-contrib", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one or a.one_contrib:
        print(json.dumps(one_contrib(a.work) if a.one_contrib else one_run(a.work)))
        return
    a.work.mkdir(parents=True, exist_ok=True)
    prepare(a.work, a.deals)
    runs: dict[str, list[dict]] = {code: [] for code in a.code}
    contrib: list[dict] = []

    def fresh(code: str, mode: str) -> dict:
        env = {**os.environ, "PYTHONPATH": str(Path(code).resolve())}
        out = subprocess.run(
            [sys.executable, __file__, mode, "--work", str(a.work), "--code", code],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        return json.loads(out.stdout.strip().splitlines()[-1])

    for i in range(a.runs):
        for code in a.code:
            result = fresh(code, "--one")
            runs[code].append(result)
            print(
                f"{code} run {i + 1}: {result['deals']:,} deals, wall {result['wall']:.1f} s, "
                f"cpu {result['cpu']:.1f} s (parent {result['parent_cpu']:.1f} s), "
                f"{result['phases']} (load {os.getloadavg()[0]:.1f})",
                flush=True,
            )
        contrib.append(fresh(a.code[-1], "--one-contrib"))
        print(
            f"pred_contrib run {i + 1}: {contrib[-1]['deals']:,} deals, "
            f"wall {contrib[-1]['wall']:.1f} s, cpu {contrib[-1]['cpu']:.1f} s "
            f"(load {os.getloadavg()[0]:.1f})",
            flush=True,
        )
    bare = statistics.median(r["wall"] for r in contrib)
    print(
        f"pred_contrib: median wall {bare:.1f} s "
        f"(range {min(r['wall'] for r in contrib):.1f} to {max(r['wall'] for r in contrib):.1f})"
    )
    first = a.code[0]
    for code, results in runs.items():
        wall = statistics.median(r["wall"] for r in results)
        base = statistics.median(r["wall"] for r in runs[first])
        phases = {
            k: round(statistics.median(r["phases"].get(k, 0.0) for r in results), 2)
            for k in results[0]["phases"]
        }
        print(
            f"{code}: median wall {wall:.1f} s "
            f"(range {min(r['wall'] for r in results):.1f} to "
            f"{max(r['wall'] for r in results):.1f}), "
            f"cpu {statistics.median(r['cpu'] for r in results):.1f} s, "
            f"{wall / base:.2f}x {first}, {wall / bare:.2f}x pred_contrib, "
            f"{statistics.median(r['deals'] for r in results) / wall:,.0f} deals/s; "
            f"phases {phases}"
        )


if __name__ == "__main__":
    main()
