"""Peak memory of ``leadscore train`` and ``leadscore train-revival``, old code against new.

Each command runs in its own process on a ``benchmarks/pipeline_scale.py`` workdir
(generated with ``--revival --history-days 1460`` for ``train-revival``), the old and the
new code interleaved (old first in even rounds, new first in odd ones)::

    git archive REV leadscore training | tar -x -C OLD
    nice -n 10 uv run python benchmarks/train_join_memory.py --state W/local --old OLD
        [--runs 3] [--tasks train,train-revival] [--chunk 5000]

"Old" puts ``OLD`` first on ``PYTHONPATH``, "new" ``--new NEW`` if given (a tree of the
new code: edits to the checkout while it runs then change nothing). Per run: the peak RSS
of the process and its children (``wait4``), and from an RSS timeline of the process
sampled every 50 ms the peak
before the first LightGBM fit (the join, the frame put together) and after it (training),
the snapshots the command logged and the wall time. Printed per task and code: the
medians and ranges, the ratios new/old of the medians, ``uptime`` before and after. Each
run registers a version; at the end the versions of a task must all have the same
``model.lgb`` bytes and ``data.fingerprint`` (else the script exits non-zero).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

GIB = 2**30
#: The log line that starts training: the frame is whole by then, in both versions.
FIRST_FIT = re.compile(r"LightGBM: \d+ trees")
SNAPSHOTS = re.compile(r"(?:training|revival) frame: (\d+) snapshots")
#: Registered model of each task (the settings' defaults).
MODELS = {"train": "lead_scorer", "train-revival": "lead_scorer_revival"}


@dataclass
class Run:
    task: str
    code: str
    peak: float  # GiB, wait4
    before_fit: float  # GiB, sampled
    after_fit: float  # GiB, sampled
    snapshots: int
    wall: float


def rss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def run(task: str, code: str, env: dict[str, str]) -> Run:
    """One ``leadscore -v TASK`` in its own process, sampled."""
    cmd = [str(Path(sys.executable).with_name("leadscore")), "-v", task]
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: list[str] = []
    fit_at: list[float] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if not fit_at and FIRST_FIT.search(line):
                fit_at.append(time.perf_counter())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    samples: list[tuple[float, int]] = []
    status = usage = None
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        samples.append((time.perf_counter(), rss_bytes(proc.pid)))
        time.sleep(0.05)
    wall = time.perf_counter() - start
    reader.join()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{task} ({code}) failed:\n{''.join(lines[-40:])}")
    split = fit_at[0] if fit_at else float("inf")
    before = max((r for t, r in samples if t < split), default=0)
    after = max((r for t, r in samples if t >= split), default=0)
    counts = [int(m.group(1)) for line in lines if (m := SNAPSHOTS.search(line))]
    return Run(
        task,
        code,
        usage.ru_maxrss / 1024 / 1024,  # KiB -> GiB
        before / GIB,
        after / GIB,
        counts[0] if counts else 0,
        wall,
    )


def versions(env: dict[str, str], model: str) -> list[tuple[str, str, bytes]]:
    """(version, data.fingerprint, model.lgb bytes) of every version of ``model``."""
    for k, v in env.items():
        os.environ[k] = v
    import mlflow

    client = mlflow.MlflowClient()
    out = []
    for mv in sorted(client.search_model_versions(f"name='{model}'"), key=lambda m: int(m.version)):
        with tempfile.TemporaryDirectory() as tmp:
            path = mlflow.artifacts.download_artifacts(
                f"models:/{model}/{mv.version}", dst_path=tmp
            )
            lgb = next(Path(path).rglob("model.lgb")).read_bytes()
        out.append((str(mv.version), mv.tags.get("data.fingerprint", ""), lgb))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--state", type=Path, required=True, help="The workdir's state (W/local).")
    ap.add_argument("--old", type=Path, required=True, help="The old code's tree.")
    ap.add_argument("--new", type=Path, help="The new code's tree (default: this checkout).")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tasks", default="train,train-revival")
    ap.add_argument("--chunk", type=int, help="LEADSCORE_FEAST_CHUNK_DEALS.")
    a = ap.parse_args()
    state = a.state.resolve()
    env = {
        **os.environ,
        "LEADSCORE_FEATURE_REPO": str(state / "features"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{state / 'mlruns' / 'mlflow.db'}",
        "LEADSCORE_ARTIFACT_ROOT": str(state / "mlruns" / "artifacts"),
        "BENTOML_HOME": str(state / "bentoml"),
    }
    if a.chunk is not None:
        env["LEADSCORE_FEAST_CHUNK_DEALS"] = str(a.chunk)

    def first(tree: Path | None) -> dict[str, str]:
        if tree is None:
            return env
        return {
            **env,
            "PYTHONPATH": os.pathsep.join([str(tree.resolve()), env.get("PYTHONPATH", "")]),
        }

    codes = {"old": first(a.old), "new": first(a.new)}
    tasks = [t.strip() for t in a.tasks.split(",")]
    load = [os.getloadavg()]
    print(f"load average before: {load[0][0]:.2f} {load[0][1]:.2f} {load[0][2]:.2f}", flush=True)
    runs: list[Run] = []
    for i in range(a.runs):
        for code in ("old", "new") if i % 2 == 0 else ("new", "old"):
            for task in tasks:
                r = run(task, code, codes[code])
                runs.append(r)
                print(
                    f"  round {i} {task:14s} {code}: peak {r.peak:.2f} GiB (before the first "
                    f"fit {r.before_fit:.2f}, after {r.after_fit:.2f}), {r.snapshots} snapshots, "
                    f"{r.wall:.0f} s, load {os.getloadavg()[0]:.2f}",
                    flush=True,
                )
    load.append(os.getloadavg())
    print(f"load average after: {load[1][0]:.2f} {load[1][1]:.2f} {load[1][2]:.2f}")
    print(
        f"\n{'task':14s} {'code':4s} {'peak GiB: median [range]':>26s} "
        f"{'before fit':>20s} {'after fit':>20s} {'wall s':>16s}"
    )
    medians: dict[tuple[str, str], float] = {}
    for task in tasks:
        for code in ("old", "new"):
            rs = [r for r in runs if r.task == task and r.code == code]

            def fmt(values: list[float], digits: int = 2) -> str:
                return (
                    f"{statistics.median(values):.{digits}f} "
                    f"[{min(values):.{digits}f}, {max(values):.{digits}f}]"
                )

            medians[task, code] = statistics.median(r.peak for r in rs)
            print(
                f"{task:14s} {code:4s} {fmt([r.peak for r in rs]):>26s} "
                f"{fmt([r.before_fit for r in rs]):>20s} {fmt([r.after_fit for r in rs]):>20s} "
                f"{fmt([r.wall for r in rs], 0):>16s}"
            )
        print(f"{task:14s} new/old peak: {medians[task, 'new'] / medians[task, 'old']:.2f}")
    same = True
    for task in tasks:
        got = versions(env, MODELS[task])[-2 * a.runs :]
        prints = {fp for _, fp, _ in got}
        models = {lgb for _, _, lgb in got}
        ok = len(prints) == 1 and len(models) == 1
        same &= ok
        print(
            f"{task}: versions {', '.join(v for v, _, _ in got)}: "
            f"{len(prints)} data fingerprint(s), {len(models)} distinct model.lgb: "
            + ("identical" if ok else "DIFFERENT")
        )
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
