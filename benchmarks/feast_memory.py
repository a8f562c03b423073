"""Peak memory of the Feast steps, chunked against unchunked, in one run (issue 14).

Runs on the state ``benchmarks/pipeline_scale.py`` leaves in its workdir (ingest and
``features apply`` done), each step as the real `leadscore` command in its own process,
old and new one after the other so both see the same load:

    training set   LEADSCORE_FEAST_CHUNK_DEALS=0 (one point-in-time join) / --chunk
    materialize    --full, Feast's default materialization (every row, the latest kept
                   in pandas) / the repo's feature_store.yaml (latest rows from DuckDB)
    train          as the training set (train builds its frame the same way)

The old runs also give DuckDB its own memory limit (80% of the machine) instead of
``LEADSCORE_DUCKDB_MEMORY``.

and prints wall time and peak memory (max RSS, from wait4) of each, with the ratios:

    uv run python benchmarks/feast_memory.py --workdir /tmp/leadscore-scale [--chunk 20000]
        [--steps "training set,materialize,train"]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline_scale import ROOT, run  # noqa: E402

OLD_YAML = "feature_store.all_rows.yaml"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/leadscore-scale"))
    ap.add_argument("--chunk", type=int, default=None, help="Deals per join (default: config's).")
    ap.add_argument("--steps", default="training set,materialize,train")
    a = ap.parse_args()
    state = a.workdir / "local"
    repo = state / "features"
    # The repo's configuration as it is now, and the same without its materialization
    # block: Feast's default, the old behaviour.
    shutil.copy2(ROOT / "features" / "feature_store.yaml", repo / "feature_store.yaml")
    config = yaml.safe_load((repo / "feature_store.yaml").read_text())
    config.pop("materialization", None)
    (repo / OLD_YAML).write_text(yaml.safe_dump(config))
    env = {
        **os.environ,
        "LEADSCORE_FEATURE_REPO": str(repo),
        "MLFLOW_TRACKING_URI": f"sqlite:///{state / 'mlruns' / 'mlflow.db'}",
        "LEADSCORE_ARTIFACT_ROOT": str(state / "mlruns" / "artifacts"),
        "BENTOML_HOME": str(state / "bentoml"),
    }
    new_chunk = {} if a.chunk is None else {"LEADSCORE_FEAST_CHUNK_DEALS": str(a.chunk)}
    machine = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    duckdb_default = {"LEADSCORE_DUCKDB_MEMORY": f"{int(machine * 0.8) // 2**20}MiB"}
    variants = {
        "training set": (
            ["training-set", "--out", str(state / "train_old.parquet")],
            {"LEADSCORE_FEAST_CHUNK_DEALS": "0", **duckdb_default},
            ["training-set", "--out", str(state / "train_new.parquet")],
            new_chunk,
        ),
        "materialize": (
            ["features", "materialize", "--full"],
            {"LEADSCORE_FEATURE_STORE_YAML": OLD_YAML, **duckdb_default},
            ["features", "materialize", "--full"],
            {},
        ),
        "train": (
            ["train"],
            {"LEADSCORE_FEAST_CHUNK_DEALS": "0", **duckdb_default},
            ["train"],
            new_chunk,
        ),
    }
    rows = []
    for step in [s.strip() for s in a.steps.split(",")]:
        old_args, old_env, new_args, new_env = variants[step]
        ow, op, _ = run(f"{step} (old)", old_args, {**env, **old_env})
        print(f"  {step} old: {ow:.1f} s, {op:.2f} GiB", flush=True)
        nw, np_, last = run(f"{step} (new)", new_args, {**env, **new_env})
        print(f"  {step} new: {nw:.1f} s, {np_:.2f} GiB  | {last}", flush=True)
        rows.append((step, ow, op, nw, np_))
    print(
        f"\n{'step':14s} {'old s':>7s} {'old GiB':>8s} {'new s':>7s} {'new GiB':>8s} "
        f"{'wall new/old':>13s} {'peak new/old':>13s}"
    )
    for step, ow, op, nw, np_ in rows:
        print(
            f"{step:14s} {ow:7.1f} {op:8.2f} {nw:7.1f} {np_:8.2f} {nw / ow:13.2f} {np_ / op:13.2f}"
        )
    if "training set" in [r[0] for r in rows]:
        import pandas as pd

        old = pd.read_parquet(state / "train_old.parquet")
        new = pd.read_parquet(state / "train_new.parquet")
        pd.testing.assert_frame_equal(new, old[list(new.columns)], check_exact=True)
        print(f"training sets equal: {len(new):,d} rows, {new.shape[1]} columns")


if __name__ == "__main__":
    main()
