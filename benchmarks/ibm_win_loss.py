"""Benchmark: IBM's "Sales Win Loss" table through the product, audited vs all columns.

    uv run python benchmarks/ibm_win_loss.py [--seed 42] [--json]

The table (``<repo>/../shared/datasets/ibm-sales-win-loss``, read in place) goes
through the normal commands in a private feature repository and MLflow store:
``leadscore import SOURCE --mapping benchmarks/ibm_win_loss.yaml`` (deals with an id and
a status and no dates, every other column a custom attribute declared ``anytime``:
nothing in the file says which columns were filled in late, and the mapping does not
say it either), ``features apply``, ``train --json`` (the leakage audit leaves out what
it flags) and ``train --json --keep-flagged`` (every column, as published results use).
The file has no dates, so training makes a seeded random split, not an out-of-time one.

Printed: the import summary, the columns the audit flagged with its evidence, and test
ROC AUC / log loss of the audited model against the all-columns one.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from real_data import leadscore, private_environment  # this folder: run as a script

from leadscore.config import PROJECT_ROOT, datasets_dir

DATA = datasets_dir() / "ibm-sales-win-loss"
SOURCE = DATA / "WA_Fn-UseC_-Sales-Win-Loss.csv"
MAPPING = PROJECT_ROOT / "benchmarks" / "ibm_win_loss.yaml"
PUBLISHED = {"name": "best published: random forest, all columns", "roc_auc": 0.90}


def _leadscore(args: list[str], env: dict[str, str]) -> str:
    """Run ``leadscore ARGS`` as a user would; its stdout (logs go to stderr)."""
    done = leadscore(args, env)
    if done.returncode != 0:
        raise SystemExit(f"leadscore {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def run(seed: int) -> dict[str, Any]:
    with private_environment(seed) as (repo, env):
        export = repo.parent / "export"
        imported = _leadscore(
            ["import", str(SOURCE), "--mapping", str(MAPPING), "--out", str(export)], env
        )
        _leadscore(["features", "apply"], env)
        audited = json.loads(_leadscore(["train", "--json"], env))
        everything = json.loads(_leadscore(["train", "--json", "--keep-flagged"], env))
    return {
        "data": {
            "file": str(SOURCE),
            "import": [line for line in imported.splitlines() if not line.startswith("  ")],
        },
        "split": audited["data"]["split"],
        "audit": audited["audit"],
        "results": {
            "audited (flagged columns left out)": _metrics(audited),
            "all columns (--keep-flagged, leaky)": _metrics(everything),
        },
        "published": PUBLISHED,
    }


def _metrics(summary: dict[str, Any]) -> dict[str, Any]:
    t = summary["test"]
    return {
        "roc_auc": t["roc_auc"],
        "roc_auc_ci95": [t["ci95"]["roc_auc"]["low"], t["ci95"]["roc_auc"]["high"]],
        "log_loss": t["log_loss"],
        "ece": t["ece"],
        "left_out": summary["audit"]["excluded_features"],
    }


def report_text(report: dict[str, Any]) -> str:
    d = report["data"]
    lines = [
        f"IBM Sales Win Loss through `leadscore import`; split: {report['split']['note']}.",
        *(f"import: {line}" for line in d["import"]),
        "",
        *report["audit"]["lines"],
        "",
        "| model | ROC AUC [95%] | log loss | ECE | features left out |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in report["results"].items():
        low, high = r["roc_auc_ci95"]
        lines.append(
            f"| {name} | {r['roc_auc']:.4f} [{low:.4f}, {high:.4f}] | {r['log_loss']:.4f} | "
            f"{r['ece']:.4f} | {len(r['left_out'])} |"
        )
    p = report["published"]
    lines.append(f"| {p['name']} | {p['roc_auc']:.2f} | n/a | n/a | 0 |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", action="store_true", help="Print the report as JSON.")
    args = parser.parse_args()
    report = run(args.seed)
    print(json.dumps(report, indent=2) if args.json else report_text(report))


if __name__ == "__main__":
    main()
