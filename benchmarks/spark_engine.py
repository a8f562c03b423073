"""Local engine against Spark ``local[N]`` on one synthetic CRM, and the per-core rates
docs/scaling.md plans a cluster from.

Three measurements, each the median of ``--runs`` runs on the same CRM in this process:

1. each feature source built alone by the local engine (one core): rows in and out per
   second, the per-core rates a cluster plan multiplies;
2. all feature sources, local engine against ``spark_feature_sources`` at ``--master``
   (the session's start and the first, warming run reported apart: Python workers
   import the project and load the numba kernels once);
3. batch ranking with reasons, ``rank_deals`` against ``spark_rank_deals``, with a
   quick model trained in-process (``benchmarks/rank_100k.py``'s).

With ``--feast``, instead: the Feast steps on both engines, each the real ``leadscore``
command in its own process (as a user runs it, Spark's start included), on a private copy
of the feature repo and a private redis-server:

4. ``training-set`` (the point-in-time join: DuckDB, or Feast's Spark offline store with
   ``--engine spark``) and ``features materialize --full`` into Redis (Feast's local
   engine, or its Spark compute engine), wall time and peak memory of the process tree
   (the command, and with Spark its JVM and Python workers: the sum of their resident
   sets, sampled every 0.2 s). Both frames must be equal and both Redis databases hold
   the same keys.

Ratios are Spark's time over the local engine's, measured in the same run. The load
average is printed: on a shared machine the figures move with it. Usage:

    uv run python benchmarks/spark_engine.py [--deals 5000] [--runs 3] [--master local[2]]
    nice -n 10 uv run python benchmarks/spark_engine.py --feast --deals 20000
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from rank_100k import AS_OF, quick_model

from leadscore.config import load_settings
from leadscore.crm.synth import generate_crm
from leadscore.features.featurize import build_feature_sources
from leadscore.features.spark_engine import spark_feature_sources, spark_session, spark_tables
from leadscore.priority.rank import RankConfig, rank_deals
from leadscore.priority.spark_rank import spark_rank_deals

#: The table each source is mostly built from (rows in, for the per-core rate).
SOURCE_INPUT = {
    "deal_profile": "deals",
    "deal_stage": "stage_history",
    "deal_contacts": "deal_contacts",
    "deal_activity": "activities",
    "account_history": "deals",
    "owner_history": "deals",
    "deal_revival": "deals",
}


def median_seconds(fn: Callable[[], object], runs: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(runs):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants (Spark's JVM, its workers)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def run_command(args: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """``leadscore ARGS`` in its own process: wall seconds, peak tree RSS, last line."""
    cmd = [str(Path(sys.executable).with_name("leadscore")), "--quiet", *args]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    peak = [0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_rss(proc.pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out = proc.communicate()[0].decode(errors="replace")
    wall = time.perf_counter() - start
    sampler.join()
    if proc.returncode != 0:
        sys.exit(f"leadscore {' '.join(args)} failed:\n{out}")
    return wall, peak[0], ([line for line in out.splitlines() if line.strip()] or [""])[-1]


def feast_steps(args: argparse.Namespace) -> None:
    """Measurement 4: training set and materialization, local engine against Spark."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import redis

    from tests.conftest import copy_feature_repo, free_port
    from tests.redis_fixture import RedisServer

    work = Path(tempfile.mkdtemp(prefix="feast-spark-"))
    server = RedisServer(free_port(), work / "redis")
    server.start()
    env = {
        **os.environ,
        "LEADSCORE_FEATURE_REPO": str(copy_feature_repo(work / "features")),
        "LEADSCORE_SPARK_MASTER": args.master,
        # The local engine's steps on the Redis configuration (the same DuckDB offline store
        # and registry as the embedded default), so both materialize into Redis.
        "LEADSCORE_FEATURE_STORE_YAML": "feature_store.redis.yaml",
    }
    try:
        export = work / "export"
        print(f"4. Feast steps, {args.deals:,} deals, local against spark {args.master}")
        print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        setup = [
            [
                "generate",
                "--deals",
                str(args.deals),
                "--seed",
                str(args.seed),
                "--out",
                str(export),
            ],
            ["ingest", str(export)],
            ["features", "apply"],
            ["features", "apply", "--engine", "spark"],
        ]
        for step in setup:
            wall, _, said = run_command(step, env)
            print(f"  {' '.join(step[:3])}: {wall:.1f} s")
        activities = len(pd.read_parquet(export / "activities.parquet", columns=["deal_id"]))
        print(f"  {activities:,} activities")
        rows = []
        for engine, db in (("local", 1), ("spark", 2)):
            env["LEADSCORE_REDIS"] = f"{server.address},db={db}"
            frame = work / f"train-{engine}.parquet"
            for name, step in (
                ("training-set", ["training-set", "--out", str(frame)]),
                ("materialize", ["features", "materialize", "--full"]),
            ):
                wall, peak, said = run_command([*step, "--engine", engine], env)
                rows.append((name, engine, wall, peak))
                print(f"  {name} --engine {engine}: {wall:.1f} s, {peak / 2**30:.2f} GiB: {said}")
        frames = [pd.read_parquet(work / f"train-{e}.parquet") for e in ("local", "spark")]
        # By name: Feast orders a few columns differently from one process to the next,
        # on either engine (the same command run twice on the local engine does it too).
        pd.testing.assert_frame_equal(frames[1][frames[0].columns], frames[0], check_exact=True)
        sizes = [redis.Redis(port=server.port, db=db).dbsize() for db in (1, 2)]
        assert sizes[0] == sizes[1] > 0, sizes
        print(f"same training frame ({len(frames[0]):,} rows), same Redis keys ({sizes[0]:,})")
        print(f"\n{'step':14s} {'engine':7s} {'wall s':>8s} {'peak GiB':>9s}")
        for name, engine, wall, peak in rows:
            print(f"{name:14s} {engine:7s} {wall:8.1f} {peak / 2**30:9.2f}")
        for name in ("training-set", "materialize"):
            local, spark = (r for r in rows if r[0] == name)
            print(
                f"{name}: spark/local wall {spark[2] / local[2]:.2f}x, peak {spark[3] / local[3]:.2f}x"
            )
        print(f"load average at end: {os.getloadavg()[0]:.1f}")
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deals", type=int, default=5000)
    parser.add_argument("--train-deals", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-rank", action="store_true", help="Leave out measurement 3.")
    parser.add_argument(
        "--feast", action="store_true", help="Measurement 4 (Feast's steps) instead of 1 to 3."
    )
    parser.add_argument("--keep", action="store_true", help="Keep measurement 4's folder.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.feast:
        feast_steps(args)
        return

    tables = generate_crm(args.deals, seed=args.seed, as_of=AS_OF).tables
    counts = {name: len(t) for name, t in tables.items()}
    print(f"CRM: {args.deals:,} deals, {counts['activities']:,} activities, seed {args.seed}")
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

    print("\n1. per source, local engine, one core (median of", args.runs, "runs)")
    print(f"{'source':16s} {'seconds':>8s} {'rows in':>10s} {'in/s':>10s} {'rows out':>10s}")
    for view, table in SOURCE_INPUT.items():
        seconds, built = median_seconds(
            lambda view=view: build_feature_sources(tables, views=[view]), args.runs
        )
        rows_out = len(built[view])  # type: ignore[index]
        print(
            f"{view:16s} {seconds:8.3f} {counts[table]:10,d} "
            f"{counts[table] / seconds:10,.0f} {rows_out:10,d}"
        )

    print(f"\n2. all feature sources: local against spark {args.master}")
    local_s, local = median_seconds(lambda: build_feature_sources(tables), args.runs)
    start = time.perf_counter()
    spark = spark_session(load_settings(spark_master=args.master), app_name="bench")
    session_s = time.perf_counter() - start
    on_spark = spark_tables(spark, tables)
    start = time.perf_counter()
    spark_feature_sources(spark, on_spark)
    first_s = time.perf_counter() - start
    spark_s, remote = median_seconds(lambda: spark_feature_sources(spark, on_spark), args.runs)
    same = all(
        len(local[v]) == len(remote[v])  # type: ignore[index]
        for v in local  # type: ignore[union-attr]
    )
    print(f"session start {session_s:.1f} s, first (warming) run {first_s:.1f} s")
    print(
        f"local {local_s:.2f} s ({counts['activities'] / local_s:,.0f} activities/s), "
        f"spark {spark_s:.2f} s ({counts['activities'] / spark_s:,.0f} activities/s), "
        f"spark/local {spark_s / local_s:.2f}x, same row counts: {same}"
    )

    if args.no_rank:
        spark.stop()
        return
    print(f"\n3. ranking with reasons: local against spark {args.master}")
    model = quick_model(args.train_deals, args.seed + 1)
    as_of = pd.Timestamp("2025-06-01", tz="UTC")
    config = RankConfig()
    local_r, ranked = median_seconds(lambda: rank_deals(tables, model, as_of, config), args.runs)
    spark_rank_deals(spark, tables, model, as_of, config)  # warm the workers
    spark_r, _ = median_seconds(
        lambda: spark_rank_deals(spark, tables, model, as_of, config), args.runs
    )
    n = len(ranked.frame)  # type: ignore[attr-defined]
    print(
        f"{n:,} deals ranked: local {local_r:.2f} s ({n / local_r:,.0f} deals/s), "
        f"spark {spark_r:.2f} s ({n / spark_r:,.0f} deals/s), spark/local {spark_r / local_r:.2f}x"
    )
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    spark.stop()


if __name__ == "__main__":
    main()
