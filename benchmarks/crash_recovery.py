"""`kill -9` during ingest and train, then a rerun: does the state converge, with no leftovers?

Each point runs the real `leadscore` command in its own process, in a private copy of the
feature repo and MLflow store, and kills it there: at a named step through the test hook
``LEADSCORE_TEST_CRASH_AT`` (:func:`leadscore.config.crash_point`, which sends the process
SIGKILL, exactly what ``kill -9`` does), or by the clock (``kill -9`` from outside after a
fraction of an uninterrupted run's time).

Ingest (ten points): the state holds export A; the killed run ingests export B. Right after
the kill the committed state must be exactly the old one or exactly the new one (hash of
every stored table, feature source and rejects file), and after a plain rerun it must
equal the reference (the same two ingests, uninterrupted) with no stray files: no
``*.tmp`` anywhere, no generation but ``current`` and ``previous``.

Train (five points): after the kill, the next command (`leadscore models`) must leave no
RUNNING run and no alias on a version of a dead run; `promote` of the dead run's version
must be refused; a rerun of `leadscore train` registers a version from a FINISHED run.

    uv run python benchmarks/crash_recovery.py [--deals 2000] [--workdir /tmp/leadscore-crash]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from leadscore.config import CRASH_AT_ENV  # noqa: E402
from leadscore.pipeline_state import (  # noqa: E402
    CURRENT,
    GENERATIONS,
    PARTS,
    PREVIOUS,
    state_fingerprint,
)

#: Named steps of `leadscore ingest`, in order (grep crash_point for where each is).
INGEST_HOOKS = (
    "ingest.start",  # before the lock: nothing touched yet
    "ingest.opened",  # lock held, leftovers cleaned, the new generation folder made
    "ingest.table_written",  # the first changed table written to a temporary file
    "ingest.tables_written",  # every table and rejects.csv in the new generation
    "ingest.source_written",  # the first feature source written
    "ingest.sources_written",  # every source written, manifest not yet
    "state.before_swap",  # manifest written and flushed, the switch not yet made
    "state.after_swap",  # switched; links and old generations not yet tidied
)
#: Kills from outside, this many seconds after the new generation's folder appears
#: (validation and writing: the points between the named ones).
INGEST_TIMED = (0.5, 2.0)
#: Named steps of `leadscore train`, in order.
TRAIN_HOOKS = (
    "train.run_started",
    "train.logged",
    "train.version_created",  # the case: version registered, run still RUNNING
    "train.version_tagged",
    "train.run_finished",  # run FINISHED, alias not yet set
)


def leadscore() -> str:
    return str(Path(sys.executable).with_name("leadscore"))


@dataclass
class Workspace:
    """A private feature repo and MLflow store under ``root``."""

    root: Path

    @property
    def repo(self) -> Path:
        return self.root / "features"

    @property
    def data(self) -> Path:
        return self.repo / "data"

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k != CRASH_AT_ENV and not k.startswith("LEADSCORE_")
        }
        env |= {
            "LEADSCORE_FEATURE_REPO": str(self.repo),
            "MLFLOW_TRACKING_URI": f"sqlite:///{self.root / 'mlruns' / 'mlflow.db'}",
            "LEADSCORE_ARTIFACT_ROOT": str(self.root / "mlruns" / "artifacts"),
        }
        return env | extra

    def generations(self) -> set[str]:
        folder = self.data / GENERATIONS
        return {p.name for p in folder.iterdir()} if folder.is_dir() else set()

    def run(
        self,
        *args: str,
        crash_at: str | None = None,
        kill_after_new_generation: float | None = None,
    ) -> tuple[int, str, float]:
        """Run ``leadscore --quiet ARGS``; returns the exit code (-9 when killed), output, seconds.

        ``crash_at`` names a step for the test hook; ``kill_after_new_generation`` sends
        SIGKILL from outside that many seconds after a new generation folder appears.
        """
        extra = {CRASH_AT_ENV: crash_at} if crash_at else {}
        before = self.generations()
        start = time.perf_counter()
        with open(self.root / "command.log", "w+") as log:
            proc = subprocess.Popen(
                [leadscore(), "--quiet", *args],
                env=self.env(**extra),
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
            if kill_after_new_generation is not None:
                while proc.poll() is None and not self.generations() - before:
                    time.sleep(0.01)
                time.sleep(kill_after_new_generation)
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL)
            proc.wait()
            log.seek(0)
            out = log.read()
        return proc.returncode, out, time.perf_counter() - start

    def must(self, *args: str) -> str:
        code, out, _ = self.run(*args)
        if code != 0:
            raise RuntimeError(f"leadscore {' '.join(args)} failed ({code}):\n{out}")
        return out

    def copy_to(self, root: Path) -> Workspace:
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(self.repo, root / "features", symlinks=True)
        if (self.root / "mlruns").exists():
            shutil.copytree(self.root / "mlruns", root / "mlruns", symlinks=True)
        return Workspace(root)


def new_workspace(root: Path) -> Workspace:
    shutil.rmtree(root, ignore_errors=True)
    (root / "features").mkdir(parents=True)
    (root / "mlruns").mkdir()
    for p in (ROOT / "features").iterdir():
        if p.suffix in (".py", ".yaml") or p.name == ".feastignore":
            shutil.copy2(p, root / "features" / p.name)
    return Workspace(root)


def fingerprint(ws: Workspace) -> str:
    return state_fingerprint(ws.data, PARTS)


def stray_files(ws: Workspace) -> list[str]:
    """Files no committed state explains: temporary files, generations beyond the two kept."""
    keep = {
        os.readlink(ws.data / n).split("/")[-1]
        for n in (CURRENT, PREVIOUS)
        if (ws.data / n).is_symlink()
    }
    stray = [str(p.relative_to(ws.data)) for p in ws.data.rglob("*") if p.name.endswith(".tmp")]
    generations = ws.data / GENERATIONS
    if generations.is_dir():
        stray += [f"{GENERATIONS}/{p.name}" for p in generations.iterdir() if p.name not in keep]
    return sorted(stray)


# ------------------------------------------------------------------ ingest


@dataclass
class IngestOutcome:
    point: str
    exit_code: int
    after_kill: str  # "old", "new" or "MIX"
    leftovers: int
    rerun_seconds: float
    converged: bool
    stray_after_rerun: list[str]

    @property
    def ok(self) -> bool:
        return self.after_kill in ("old", "new") and self.converged and not self.stray_after_rerun


def prepare_ingest(workdir: Path, deals: int, seed: int) -> tuple[Workspace, Path, str, str, float]:
    """A workspace holding export A, export B, and the fingerprints of A and A-then-B."""
    base = new_workspace(workdir / "base")
    a, b = workdir / "export_a", workdir / "export_b"
    for export, n, s in ((a, deals, seed), (b, int(deals * 1.1), seed + 1)):
        shutil.rmtree(export, ignore_errors=True)
        base.must("generate", "--deals", str(n), "--seed", str(s), "--out", str(export))
    base.must("ingest", str(a))
    old = fingerprint(base)
    reference = base.copy_to(workdir / "reference")
    start = time.perf_counter()
    reference.must("ingest", str(b))
    seconds = time.perf_counter() - start
    return base, b, old, fingerprint(reference), seconds


def ingest_point(
    base: Workspace,
    export: Path,
    old: str,
    new: str,
    point: str,
    kill_after: float | None,
    root: Path,
) -> IngestOutcome:
    ws = base.copy_to(root)
    if kill_after is None:
        code, _, _ = ws.run("ingest", str(export), crash_at=point)
    else:
        code, _, _ = ws.run("ingest", str(export), kill_after_new_generation=kill_after)
    state = fingerprint(ws)
    after = "old" if state == old else "new" if state == new else "MIX"
    leftovers = len(stray_files(ws))
    start = time.perf_counter()
    ws.must("ingest", str(export))
    seconds = time.perf_counter() - start
    outcome = IngestOutcome(
        point, code, after, leftovers, seconds, fingerprint(ws) == new, stray_files(ws)
    )
    shutil.rmtree(root, ignore_errors=True)
    return outcome


# ------------------------------------------------------------------ train


@dataclass
class TrainOutcome:
    point: str
    exit_code: int
    dead_version: str | None  # the killed run's version, when it got that far
    dead_status: str  # its run's status after the next command
    running_after: int
    aliased_dead: list[str]
    promote_refused: bool | None
    rerun_status: str
    rerun_aliases: list[str]

    @property
    def ok(self) -> bool:
        return (
            self.exit_code == -9
            and self.running_after == 0
            and not self.aliased_dead
            and self.promote_refused is not False
            and self.rerun_status == "FINISHED"
            and bool(self.rerun_aliases)
        )


def versions(ws: Workspace) -> list[dict]:
    return json.loads(ws.must("models", "--json"))


def running_runs(ws: Workspace) -> int:
    code = (
        "import mlflow,sys;c=mlflow.MlflowClient(sys.argv[1]);"
        "e=c.get_experiment_by_name('lead_scoring');"
        "print(len(c.search_runs([e.experiment_id],\"attributes.status = 'RUNNING'\")) if e else 0)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, ws.env()["MLFLOW_TRACKING_URI"]],
        capture_output=True,
        text=True,
        check=True,
        env=ws.env(),
    )
    return int(out.stdout.strip().splitlines()[-1])


def prepare_train(workdir: Path, deals: int, seed: int, first_train: bool = True) -> Workspace:
    ws = new_workspace(workdir / "train")
    export = workdir / "export_train"
    shutil.rmtree(export, ignore_errors=True)
    ws.must("generate", "--deals", str(deals), "--seed", str(seed), "--out", str(export))
    ws.must("ingest", str(export))
    ws.must("features", "apply")
    if first_train:
        ws.must("train")
        # Version 1 as champion, so a killed run has an older one beside it. A CRM this
        # small fails the baseline gate, which is not what this benchmark is about: force.
        if "champion" not in versions(ws)[0]["aliases"]:
            ws.must("promote", "--force", "--note", "crash benchmark: an older champion")
    return ws


def train_point(ws: Workspace, point: str) -> TrainOutcome:
    before = {v["version"] for v in versions(ws)}
    code, out, _ = ws.run("train", crash_at=point)
    listed = versions(ws)  # the next command: marks the dead run FAILED
    new = [v for v in listed if v["version"] not in before]
    dead = new[0]["version"] if new else None
    dead_status = new[0]["run_status"] if new else "-"
    aliased_dead = [v["version"] for v in listed if v["aliases"] and v["run_status"] != "FINISHED"]
    refused = None
    if dead is not None and new[0]["run_status"] != "FINISHED":
        rc, said, _ = ws.run("promote", "--version", dead)
        refused = rc != 0 and "did not finish" in said
    ws.must("train")
    latest = versions(ws)[0]
    return TrainOutcome(
        point,
        code,
        dead,
        dead_status,
        running_runs(ws),
        aliased_dead,
        refused,
        latest["run_status"],
        latest["aliases"],
    )


# ------------------------------------------------------------------ main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deals", type=int, default=2000)
    ap.add_argument("--train-deals", type=int, default=600)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/leadscore-crash"))
    ap.add_argument("--skip-train", action="store_true")
    a = ap.parse_args()

    print(
        f"ingest: {a.deals:,d} deals (export A), then export B; kill -9 at each point", flush=True
    )
    base, export_b, old, new, seconds = prepare_ingest(a.workdir, a.deals, a.seed)
    print(f"uninterrupted ingest of B: {seconds:.1f} s", flush=True)
    points: list[tuple[str, float | None]] = [(p, None) for p in INGEST_HOOKS]
    points += [(f"kill -9 {d} s after opening", d) for d in INGEST_TIMED]
    ingest_rows = []
    for point, after in points:
        outcome = ingest_point(base, export_b, old, new, point, after, a.workdir / "point")
        ingest_rows.append(outcome)
        print(
            f"  {point:28s} exit {outcome.exit_code:>4}  state after kill {outcome.after_kill:4s} "
            f"leftovers {outcome.leftovers:>2}  rerun {outcome.rerun_seconds:5.1f} s  "
            f"converged {'yes' if outcome.converged else 'NO'}  "
            f"stray after rerun {len(outcome.stray_after_rerun)}",
            flush=True,
        )

    train_rows = []
    if not a.skip_train:
        print(
            f"\ntrain: {a.train_deals:,d} deals; kill -9 at each point, then "
            "`leadscore models`, `promote` of the dead version, `train` again",
            flush=True,
        )
        ws = prepare_train(a.workdir, a.train_deals, a.seed)
        for point in TRAIN_HOOKS:
            outcome = train_point(ws, point)
            train_rows.append(outcome)
            print(
                f"  {point:24s} exit {outcome.exit_code:>4}  dead version "
                f"{outcome.dead_version or '-':>2}  RUNNING after {outcome.running_after}  "
                f"aliased dead {outcome.aliased_dead or '-'}  promote refused "
                f"{'-' if outcome.promote_refused is None else outcome.promote_refused}  "
                f"rerun {outcome.rerun_status} {','.join(outcome.rerun_aliases)}",
                flush=True,
            )

    print("\n| process | kill point | after kill | rerun converged | stray files | ok |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in ingest_rows:
        print(
            f"| ingest | {r.point} | {r.after_kill} state ({r.leftovers} leftovers) | "
            f"{'yes' if r.converged else 'NO'} ({r.rerun_seconds:.1f} s) | "
            f"{len(r.stray_after_rerun)} | {'yes' if r.ok else 'NO'} |"
        )
    for t in train_rows:
        dead = f"version {t.dead_version} (run {t.dead_status})" if t.dead_version else "no version"
        print(
            f"| train | {t.point} | {dead}, {t.running_after} RUNNING, "
            f"aliased dead {len(t.aliased_dead)} | new version {t.rerun_status}, "
            f"{','.join(t.rerun_aliases)} | - | {'yes' if t.ok else 'NO'} |"
        )
    failed = [r.point for r in ingest_rows if not r.ok] + [t.point for t in train_rows if not t.ok]
    print(
        f"\n{len(ingest_rows) + len(train_rows) - len(failed)} of "
        f"{len(ingest_rows) + len(train_rows)} points recovered"
        + (f"; FAILED: {', '.join(failed)}" if failed else "")
    )
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
