"""Peak memory and wall time of `leadscore ingest`, old code against this checkout (issue 14).

Each run is the real command in a fresh process (peak RSS from ``wait4``), on an empty
state: the first ingest of a generated export, then the re-ingest of a 1% delta
(``benchmarks/pipeline_scale.one_percent_change``). The old code is ``git archive REV``
of this repository, run beside this checkout's with the same interpreter; the two
alternate (old, new, then new, old, ...), so a change of the machine's load hits both.
Prints every run as a JSON line, then medians and ratios:

    uv run python benchmarks/ingest_memory.py --deals 100000 --rounds 3 --old-rev main \\
        --workdir /tmp/ingest-memory

The first round of each code compiles its numba kernels into its own cache (by the
code's path): run ``--rounds`` one more than you count, or read the later rounds.

This process stays small on purpose (no pandas, the delta made in a process of its
own): a child's peak RSS as ``wait4`` reports it is at least its parent's RSS when it
was forked (Linux counts the parent's pages the child starts with), so a parent that
had read the export made every run below its size look as large as the parent.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parent.parent

CLI = "import sys; sys.path.insert(0, sys.argv.pop(1)); from pipelines.cli import app; app()"


def run(code: Path, args: list[str], repo: Path) -> tuple[float, float]:
    """Wall seconds and peak GiB of one `leadscore` command of the code in ``code``."""
    env = {**os.environ, "LEADSCORE_FEATURE_REPO": str(repo)}
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", CLI, str(code), *args],
        env=env,
        cwd=code,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out = proc.stdout.read() if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{code}: {' '.join(args)} failed:\n{out}")
    return time.perf_counter() - start, usage.ru_maxrss / 2**20  # KiB -> GiB


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deals", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--old-rev", default="main", help="The code to compare with (git rev).")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/ingest-memory"))
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    export, delta = a.workdir / f"export{a.deals}", a.workdir / f"delta{a.deals}"
    if not export.is_dir():
        cmd = ["generate", "--deals", str(a.deals), "--seed", str(a.seed), "--out", str(export)]
        run(ROOT, cmd, a.workdir / "generate")
    if not delta.is_dir():  # in a process of its own: see the module
        code = (
            "import sys; from pathlib import Path; "
            "from benchmarks.pipeline_scale import one_percent_change as c; "
            "print('1% change:', c(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])))"
        )
        cmd = [sys.executable, "-c", code, str(export), str(delta), str(a.seed)]
        subprocess.run(cmd, cwd=ROOT, check=True)
    old = a.workdir / f"code-{a.old_rev}"
    if not old.is_dir():
        old.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "archive", a.old_rev, "leadscore", "training", "pipelines", "serving"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
    codes = {"old": old, "new": ROOT}
    results: list[dict[str, object]] = []
    for r in range(a.rounds):
        for name in ("old", "new") if r % 2 == 0 else ("new", "old"):
            repo = a.workdir / f"state-{name}"
            shutil.rmtree(repo, ignore_errors=True)
            repo.mkdir(parents=True)
            for step, folder in (("ingest", export), ("re-ingest 1%", delta)):
                load = os.getloadavg()[0]
                wall, peak = run(codes[name], ["ingest", str(folder)], repo)
                results.append(
                    {
                        "round": r,
                        "code": name,
                        "step": step,
                        "wall": wall,
                        "peak": peak,
                        "load": load,
                    }
                )
                print(json.dumps(results[-1]), flush=True)
    print(f"\n{a.deals:,d} deals, {a.rounds} rounds; medians (range):")
    for step in ("ingest", "re-ingest 1%"):
        line = {}
        for name in ("old", "new"):
            mine = [x for x in results if x["code"] == name and x["step"] == step]
            walls = [float(x["wall"]) for x in mine]  # type: ignore[arg-type]
            peaks = [float(x["peak"]) for x in mine]  # type: ignore[arg-type]
            line[name] = (median(walls), median(peaks))
            print(
                f"  {step:13s} {name}: {median(walls):6.1f} s ({min(walls):.1f}-{max(walls):.1f}),"
                f" {median(peaks):.2f} GiB ({min(peaks):.2f}-{max(peaks):.2f})"
            )
        print(
            f"  {step:13s} new/old: wall {line['new'][0] / line['old'][0]:.2f},"
            f" peak {line['new'][1] / line['old'][1]:.2f}"
        )


if __name__ == "__main__":
    main()
