"""Benchmark the feature pipeline on a large synthetic CRM.

Runs each step as the real `leadscore` command in its own process, in a private copy
of the feature repo, and prints wall time and that process's peak memory (max RSS,
from wait4). Usage:

    uv run python benchmarks/pipeline_100k.py [--deals 100000] [--workdir /tmp/leadscore-bench]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(name: str, args: list[str], env: dict[str, str]) -> tuple[str, float, float]:
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
    print(f"  {name}: {last[0] if last else ''}", flush=True)
    return name, wall, usage.ru_maxrss / 1024 / 1024  # KiB -> GiB


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deals", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/leadscore-bench"))
    a = ap.parse_args()

    shutil.rmtree(a.workdir, ignore_errors=True)
    repo = a.workdir / "features"
    repo.mkdir(parents=True)
    for p in (ROOT / "features").iterdir():
        if p.suffix in (".py", ".yaml") or p.name == ".feastignore":
            shutil.copy2(p, repo / p.name)
    env = {**os.environ, "LEADSCORE_FEATURE_REPO": str(repo)}
    export = a.workdir / "export"
    steps = [
        (
            "generate",
            ["generate", "--deals", str(a.deals), "--seed", str(a.seed), "--out", str(export)],
        ),
        ("ingest", ["ingest", str(export)]),
        ("features apply", ["features", "apply"]),
        ("training-set", ["training-set", "--out", str(a.workdir / "train.parquet")]),
        ("materialize", ["features", "materialize"]),
        ("ingest again (idempotent)", ["ingest", str(export)]),
    ]
    print(f"{a.deals:,d} deals, workdir {a.workdir}, {os.cpu_count()} cores")
    results = [run(name, args, env) for name, args in steps]
    print(f"\n{'step':28s} {'wall s':>8s} {'peak GiB':>9s}")
    for name, wall, peak in results:
        print(f"{name:28s} {wall:8.1f} {peak:9.2f}")


if __name__ == "__main__":
    main()
