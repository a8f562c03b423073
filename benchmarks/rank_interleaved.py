"""`run_rank` of two versions of the code, interleaved on one stored CRM (issue 14).

On a machine shared with other work a wall time alone says little; the ratio of two
versions run turn about, under the same load, says what a change did. The CRM of
:mod:`rank_100k`'s generator (``--deals``, seed 7, as of its ``AS_OF``) and its quick
model are stored once under ``--work``; then each ``--code`` folder (a checkout, or a
``git archive`` of a commit, holding ``leadscore/``) ranks it in a fresh process with
that folder first on ``PYTHONPATH``, one after the other, ``--runs`` times. Printed:
each run's wall and CPU seconds of :func:`leadscore.priority.rank.run_rank` (the
process's imports not included; no revival model) and its phases, then the medians.
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
import statistics
import subprocess
import sys
import time
from pathlib import Path

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


def one_run(work: Path) -> dict[str, object]:
    """One ranking of the stored CRM by the code first on the path."""
    from leadscore.config import load_settings
    from leadscore.priority.rank import RankConfig, rankings_dir, run_rank

    model = pickle.loads((work / "model.pkl").read_bytes())
    settings = load_settings(feature_repo=work / "features")
    cpu, wall = time.process_time(), time.perf_counter()
    run = run_rank(
        settings, model, "bench", rankings_dir(settings), RankConfig(), as_of=AS_OF, revival=None
    )
    return {
        "wall": time.perf_counter() - wall,
        "cpu": time.process_time() - cpu,
        "deals": sum(run.scored.values()),
        "phases": run.seconds,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--code", action="append", required=True, help="A folder holding leadscore/.")
    ap.add_argument("--deals", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--work", type=Path, default=Path("/tmp/rank_interleaved"))
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one_run(a.work)))
        return
    a.work.mkdir(parents=True, exist_ok=True)
    prepare(a.work, a.deals)
    runs: dict[str, list[dict]] = {code: [] for code in a.code}
    for i in range(a.runs):
        for code in a.code:
            env = {**os.environ, "PYTHONPATH": str(Path(code).resolve())}
            out = subprocess.run(
                [sys.executable, __file__, "--one", "--work", str(a.work), "--code", code],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            result = json.loads(out.stdout.strip().splitlines()[-1])
            runs[code].append(result)
            print(
                f"{code} run {i + 1}: {result['deals']:,} deals, wall {result['wall']:.1f} s, "
                f"cpu {result['cpu']:.1f} s, {result['phases']}",
                flush=True,
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
            f"{wall / base:.2f}x {first}; phases {phases}"
        )


if __name__ == "__main__":
    main()
