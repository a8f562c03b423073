"""Benchmark the whole pipeline on a large synthetic CRM, step by step (issue 14).

Runs each step as the real `leadscore` command in its own process, in a private copy of
the feature repo and a private MLflow store, and prints each step's wall time and that
process's peak memory (max RSS of the process and its children, from wait4):

    generate, ingest, re-ingest of a 1% change, training set, materialize, train,
    promote (forced: the benchmark needs a champion to rank with), rank

The 1% change is a delta export, as a CRM's daily sync sends it: 1% of the deals get a
new activity a day after the export's last event, and a third of those that are open
close (won or lost, with the stage history row). Its re-ingest is timed against the
first ingest of the same run (the goal: at least 10x faster). Usage:

    uv run python benchmarks/pipeline_scale.py [--deals 100000] [--engine local|spark]
        [--steps generate,ingest,...] [--workdir /tmp/leadscore-scale]

Steps without ``ingest`` run on the workdir's kept state (e.g. ``--steps rank``). ``promote``
is skipped when ``train`` made its version champion. ``--engine spark`` runs ingest and rank
with ``--engine spark`` (Spark at
``LEADSCORE_SPARK_MASTER``, e.g. ``local[2]``). ``--keep`` reuses a workdir's generated
export, for a second engine on the same data.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
STEPS = (
    "generate",
    "ingest",
    "re-ingest 1%",
    "features apply",
    "training set",
    "materialize",
    "train",
    "promote",
    "rank",
)


def run(name: str, args: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Wall seconds, peak GiB and the last output line of one `leadscore` command."""
    cmd = [str(Path(sys.executable).with_name("leadscore")), *args]
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{name} failed:\n{out}")
    last = [line for line in out.splitlines() if line.strip()][-1:]
    return wall, usage.ru_maxrss / 1024 / 1024, last[0] if last else ""  # KiB -> GiB


def champion(env: dict[str, str]) -> bool:
    """Whether the store has a champion (a first version that passes the gate becomes one)."""
    cmd = [str(Path(sys.executable).with_name("leadscore")), "models", "--json"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return '"champion"' in out


def one_percent_change(export: Path, out: Path, seed: int) -> dict[str, int]:
    """Write the delta export of a 1% change of ``export`` into ``out`` (see the module)."""
    rng = np.random.default_rng(seed)
    deals = pd.read_parquet(export / "deals.parquet")
    path = export / "activities.parquet"
    # Only the times of every activity and the rows of the picked deals: the whole
    # activities frame of a million-deal export (27 million rows) took 13 GiB here.
    times = pd.read_parquet(path, columns=["occurred_at"])["occurred_at"]
    day_after = pd.to_datetime(times, utc=True).max() + pd.Timedelta(days=1)
    del times
    picked = deals.iloc[rng.choice(len(deals), size=max(1, len(deals) // 100), replace=False)]
    activities = pd.read_parquet(path, filters=[("deal_id", "in", picked["deal_id"].tolist())])
    ordered = activities.sort_values("occurred_at", kind="stable")
    last = ordered.groupby("deal_id").tail(1).set_index("deal_id")
    new = last.loc[last.index.intersection(picked["deal_id"])].reset_index()
    new["activity_id"] = [f"XSCALE{i:08d}" for i in range(len(new))]
    new["occurred_at"] = day_after
    open_ = picked[picked["status"] == "open"]
    closing = open_.iloc[: len(open_) // 3].copy()
    closing["status"] = np.where(rng.random(len(closing)) < 0.4, "won", "lost")
    closing["stage"] = "closed"
    closing["closed_at"] = day_after
    stages = pd.DataFrame(
        {"deal_id": closing["deal_id"], "stage": "closed", "entered_at": day_after}
    )
    out.mkdir(parents=True, exist_ok=True)
    activities.iloc[:0].pipe(lambda empty: pd.concat([empty, new[empty.columns]])).to_parquet(
        out / "activities.parquet", index=False
    )
    closing.to_parquet(out / "deals.parquet", index=False)
    stages.to_parquet(out / "stage_history.parquet", index=False)
    return {"deals": len(picked), "activities": len(new), "closed": len(closing)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deals", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--engine", choices=("local", "spark"), default="local")
    ap.add_argument("--steps", default=",".join(STEPS), help="Comma-separated, in order.")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/leadscore-scale"))
    ap.add_argument("--keep", action="store_true", help="Reuse the workdir's export.")
    a = ap.parse_args()
    steps = [s.strip() for s in a.steps.split(",")]
    unknown = set(steps) - set(STEPS)
    if unknown:
        sys.exit(f"unknown steps {sorted(unknown)}; known: {', '.join(STEPS)}")

    export, delta = a.workdir / "export", a.workdir / "delta"
    state = a.workdir / a.engine
    if not a.keep:
        shutil.rmtree(a.workdir, ignore_errors=True)
    fresh = "ingest" in steps or not state.is_dir()  # else: later steps on the kept state
    if fresh:
        shutil.rmtree(state, ignore_errors=True)
    repo = state / "features"
    repo.mkdir(parents=True, exist_ok=True)
    for p in (ROOT / "features").iterdir():
        if fresh and (p.suffix in (".py", ".yaml") or p.name == ".feastignore"):
            shutil.copy2(p, repo / p.name)
    env = {
        **os.environ,
        "LEADSCORE_FEATURE_REPO": str(repo),
        "MLFLOW_TRACKING_URI": f"sqlite:///{state / 'mlruns' / 'mlflow.db'}",
        "LEADSCORE_ARTIFACT_ROOT": str(state / "mlruns" / "artifacts"),
        "BENTOML_HOME": str(state / "bentoml"),
    }
    (state / "mlruns").mkdir(exist_ok=True)
    engine = ["--engine", a.engine]
    commands = {
        "generate": [
            "generate",
            "--deals",
            str(a.deals),
            "--seed",
            str(a.seed),
            "--out",
            str(export),
        ],
        "ingest": ["ingest", str(export), *engine],
        "re-ingest 1%": ["ingest", str(delta), *engine],
        "features apply": ["features", "apply"],
        "training set": ["training-set", "--out", str(state / "train.parquet")],
        "materialize": ["features", "materialize"],
        "train": ["train"],
        "promote": ["promote", "--force", "--note", "benchmark: rank needs a champion"],
        "rank": ["rank", "--out", str(state / "ranked"), *engine],
    }
    print(f"{a.deals:,d} deals, engine {a.engine}, workdir {a.workdir}, {os.cpu_count()} cores")
    results: dict[str, tuple[float, float]] = {}
    for name in steps:
        if name == "re-ingest 1%":
            # Built in a process of its own: a child's peak (wait4's ru_maxrss) counts
            # its parent's resident size when it was forked, and the export loaded here
            # would be added to the re-ingest's peak.
            with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
                change = pool.submit(one_percent_change, export, delta, a.seed).result()
            print(f"  1% change: {change}", flush=True)
        if name == "promote" and champion(env):
            print("  promote: skipped, train made its version champion (it passed the gate)")
            continue
        wall, peak, last = run(name, commands[name], env)
        results[name] = (wall, peak)
        print(f"  {name}: {wall:.1f} s, {peak:.2f} GiB  | {last}", flush=True)
    if "generate" in results:
        acts = len(pd.read_parquet(export / "activities.parquet", columns=["activity_id"]))
        print(f"activities: {acts:,d}")
        if "ingest" in results:
            print(f"ingest rate: {acts / results['ingest'][0]:,.0f} activities/s")
    print(f"\n{'step':16s} {'wall s':>8s} {'peak GiB':>9s}")
    for name, (wall, peak) in results.items():
        print(f"{name:16s} {wall:8.1f} {peak:9.2f}")
    if "ingest" in results and "re-ingest 1%" in results:
        ratio = results["ingest"][0] / results["re-ingest 1%"][0]
        print(f"re-ingest of 1% against the first ingest: {ratio:.1f}x faster")


if __name__ == "__main__":
    main()
