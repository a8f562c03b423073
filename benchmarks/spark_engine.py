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

Ratios are Spark's time over the local engine's, measured in the same run. The load
average is printed: on a shared machine the figures move with it. Usage:

    uv run python benchmarks/spark_engine.py [--deals 5000] [--runs 3] [--master local[2]]
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import time
from collections.abc import Callable

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deals", type=int, default=5000)
    parser.add_argument("--train-deals", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-rank", action="store_true", help="Leave out measurement 3.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

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
