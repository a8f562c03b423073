"""Benchmark: `leadscore import` throughput and memory on a plain CSV deals table.

    uv run python benchmarks/importer_throughput.py [--rows 1000000] [--runs 3] [--ingest]

Generates a CSV deals table (ids, account, owner, ISO dates, amounts with thousands
separators, status and stage words) and a mapping for it, then imports it into a
contract export in a fresh subprocess per run, so that the memory figure is that run's
own: peak RSS and the peak above the process's RSS once its modules are
imported, both relative to the file size (``VmHWM``: the process's own high-water mark). Reports the median rows per second over the
runs. ``--ingest`` adds one run of import + the normal ingest (validation, stored
tables, feature sources) into a throw-away feature repo. Target (issue 10): at least
300,000 rows/s and a peak under 3x the file size.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

MAPPING = """
name: benchmark
tables:
  deals:
    source: deals
    columns:
      deal_id: Opportunity ID
      account_id: Account
      owner_id: Owner
      created_at: Created
      amount: Amount
      stage: Stage
      status: {from: Stage, otherwise: open}
      closed_at: {from: Closed, open_deals: expected_close}
"""

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from leadscore.crm.importer.mapping import load_mapping
from leadscore.crm.importer.run import run_import, write_export
import pyarrow, pandas  # noqa: F401  (loaded before the baseline)

def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()

source, mapping, out, ingest, repo = sys.argv[1:6]
base = rss()
start = time.perf_counter()
result = run_import(Path(source), load_mapping(mapping))
write_export(result, Path(out))
imported = time.perf_counter() - start
stored = None
if ingest == "1":
    from leadscore.config import load_settings
    from pipelines.steps import ingest as run_ingest
    settings = load_settings(feature_repo=Path(repo))
    summary = run_ingest(Path(out), settings)
    stored = summary.counts["deals"]["valid"]
total = time.perf_counter() - start
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over exec from the parent that forked
# us (which held the generated data), VmHWM belongs to this process's memory alone.
with open("/proc/self/status") as f:
    peak = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:"))
print(json.dumps({"seconds_import": imported, "seconds_total": total, "baseline_rss": base,
                  "peak_rss": peak, "written": result.tables["deals"].written, "stored": stored}))
"""


def write_source(folder: Path, rows: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    created = pd.Timestamp("2022-01-01") + pd.to_timedelta(
        rng.integers(0, 700 * 86400, rows), unit="s"
    )
    stage = rng.choice(
        np.array(
            ["Prospecting", "Qualification", "Negotiation/Review", "Closed Won", "Closed Lost"]
        ),
        rows,
    )
    closed = created + pd.to_timedelta(rng.integers(86400, 90 * 86400, rows), unit="s")
    amount = rng.integers(1_000, 2_000_000, rows)
    frame = pd.DataFrame(
        {
            "Opportunity ID": np.char.add("OPP", np.arange(rows).astype(str)),
            "Account": np.char.add("ACC", rng.integers(0, rows // 10 + 1, rows).astype(str)),
            "Owner": np.char.add("U", rng.integers(0, 200, rows).astype(str)),
            "Created": created.strftime("%Y-%m-%d %H:%M:%S"),
            "Closed": closed.strftime("%Y-%m-%d"),
            "Amount": [f"{a:,}.00" for a in amount],
            "Stage": stage,
        }
    )
    path = folder / "deals.csv"
    frame.to_csv(path, index=False)
    return path


def run_child(source: Path, mapping: Path, out: Path, ingest: bool, repo: Path) -> dict:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            str(source),
            str(mapping),
            str(out),
            "1" if ingest else "0",
            str(repo),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ingest", action="store_true", help="also time one import + ingest")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "src").mkdir()
        source = write_source(root / "src", args.rows)
        mapping = root / "mapping.yaml"
        mapping.write_text(MAPPING, encoding="utf-8")
        size = source.stat().st_size
        runs = [
            run_child(source, mapping, root / f"out{i}", False, root / "repo")
            for i in range(args.runs)
        ]
        seconds = statistics.median(r["seconds_import"] for r in runs)
        peak = max(r["peak_rss"] for r in runs)
        above = max(r["peak_rss"] - r["baseline_rss"] for r in runs)
        print(f"file: {args.rows:,} rows, {size / 1e6:.1f} MB ({source.name})")
        print(
            f"import into a contract export: median {seconds:.2f} s over {args.runs} runs = "
            f"{args.rows / seconds:,.0f} rows/s (target >= 300,000)"
        )
        print(
            f"peak RSS {peak / 1e6:.0f} MB = {peak / size:.2f}x the file; above the "
            f"interpreter with its modules loaded: {above / 1e6:.0f} MB = {above / size:.2f}x "
            "(target < 3x)"
        )
        if args.ingest:
            from tests.conftest import copy_feature_repo

            repo = copy_feature_repo(root / "features")
            r = run_child(source, mapping, root / "out_ingest", True, repo)
            print(
                f"import + ingest (validation, stored tables, feature sources): "
                f"{r['seconds_total']:.2f} s = {args.rows / r['seconds_total']:,.0f} rows/s; "
                f"stored {r['stored']:,} deals; peak RSS {r['peak_rss'] / 1e6:.0f} MB = "
                f"{r['peak_rss'] / size:.2f}x the file"
            )


if __name__ == "__main__":
    main()
