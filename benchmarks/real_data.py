"""Benchmark: the shared real datasets through import, training and evaluation, one table.

    nice -n 10 uv run python benchmarks/real_data.py [--seed 42] [--json]

Each dataset under ``<repo>/../shared/datasets`` (read in place; see each SOURCE.md) goes
through the commands a user runs, in its own private feature repository, MLflow store and
artifact folder: ``leadscore import SOURCE --mapping M --json``, ``features apply``,
``train --json``. Training decides everything shown; this script only reads its output:

- IBM Sales Win-Loss through ``benchmarks/ibm_win_loss.yaml`` (every column ``anytime``,
  the audit leaves out what it flags; ``benchmarks/ibm_win_loss.py`` compares with all
  columns kept);
- the X Education leads file through ``benchmarks/x_education.yaml`` (the sales team's
  notes declared ``anytime`` as the data dictionary describes them, "Select" read as
  empty; whatever the audit does not flag trains);
- the three Salesforce samples through the ``salesforce`` preset. Training needs 40 won
  and 40 lost deals; a sample with fewer shows train's "not enough closed deals" message.

Neither IBM nor X Education has dates, so training splits them at random (stratified,
seeded) and their figures are not out of time; every deal then has one snapshot, shown as
"single snapshot". Dated data is scored per deal at creation and at 30 days.

Printed: one Markdown table (rows read, closed deals, positives, split, per-deal ROC AUC,
log loss and ECE with deal-bootstrap 95% intervals, both baselines' per-deal ROC AUC, the
columns the leakage audit flagged, the baseline gate's decision from ``train --json``'s
``gate`` when training has one), then one note per dataset (split, slice warnings, why a
dataset did not train). ``--json`` prints the rows instead.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leadscore.config import PROJECT_ROOT, child_environment, datasets_dir, load_settings
from leadscore.crm.contract import CLOSED_STATUSES, WON
from leadscore.crm.ingest import stored_deals

DATASETS_DIR = datasets_dir()
BENCHMARKS = PROJECT_ROOT / "benchmarks"
#: The per-deal blocks of ``train --json`` and how the table names them.
BLOCK_NAMES = {"at_creation": "at creation", "at_age": "at {age:g} days"}
UNDATED_BLOCK = "single snapshot"
BASELINES = ("logistic_regression", "channel_rate")
NO_GATE = "n/a (no gate yet)"
#: Reject rules of the deals table named in a dataset's note; the rest are counted.
SHOWN_REJECT_RULES = 2


@dataclass(frozen=True)
class Dataset:
    name: str
    #: A file or a folder of a CRM's own export.
    source: Path
    #: A mapping file, or the name of a preset shipped with the product.
    mapping: str


DATASETS = (
    Dataset(
        "IBM Sales Win-Loss",
        DATASETS_DIR / "ibm-sales-win-loss" / "WA_Fn-UseC_-Sales-Win-Loss.csv",
        str(BENCHMARKS / "ibm_win_loss.yaml"),
    ),
    Dataset(
        "X Education leads",
        DATASETS_DIR / "x-education-leads" / "Leads.csv",
        str(BENCHMARKS / "x_education.yaml"),
    ),
    Dataset(
        "Salesforce Data Cloud workshop",
        DATASETS_DIR / "salesforce-datacloud-workshop",
        "salesforce",
    ),
    Dataset(
        "Salesforce Preppin' Data 2022w23",
        DATASETS_DIR / "salesforce-preppin-2022w23",
        "salesforce",
    ),
    Dataset(
        "Salesforce weekly export (dev org)",
        DATASETS_DIR / "salesforce-weekly-export-devorg",
        "salesforce",
    ),
)


@contextmanager
def private_environment(seed: int) -> Iterator[tuple[Path, dict[str, str]]]:
    """A throw-away feature repository (a copy of the project's definitions), MLflow store
    and artifact folder, and the environment that points ``leadscore`` at them, so a run
    neither reads nor changes the project's own data, models or ``mlruns/``."""
    with tempfile.TemporaryDirectory(prefix="leadscore_real_data_") as tmp:
        root = Path(tmp)
        repo = root / "features"
        repo.mkdir()
        for path in (PROJECT_ROOT / "features").iterdir():
            if path.suffix in (".py", ".yaml") or path.name == ".feastignore":
                shutil.copy2(path, repo / path.name)
        yield (
            repo,
            child_environment(
                load_settings(),
                LEADSCORE_FEATURE_REPO=str(repo),
                MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlruns.db'}",
                LEADSCORE_ARTIFACT_ROOT=str(root / "artifacts"),
                LEADSCORE_SEED=str(seed),
            ),
        )


def leadscore(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``leadscore ARGS`` as a user would (stdout: the JSON; stderr: logs, errors)."""
    return subprocess.run(
        [str(Path(sys.executable).with_name("leadscore")), *args],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def error_message(done: subprocess.CompletedProcess[str]) -> str:
    """What a failed command told its user: its ``error:`` line, else its last stderr line."""
    lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
    errors = [line.removeprefix("error:").strip() for line in lines if line.startswith("error:")]
    return errors[-1] if errors else (lines[-1] if lines else f"exit code {done.returncode}")


def run_dataset(dataset: Dataset, seed: int) -> dict[str, Any]:
    """One dataset through import, ``features apply`` and ``train --json``: its row."""
    start = time.perf_counter()
    row: dict[str, Any] = {
        "dataset": dataset.name,
        "source": str(dataset.source),
        "mapping": dataset.mapping,
    }
    with private_environment(seed) as (repo, env):
        out = repo.parent / "export"
        done = leadscore(
            [
                "import",
                str(dataset.source),
                "--mapping",
                dataset.mapping,
                "--out",
                str(out),
                "--json",
            ],
            env,
        )
        if done.returncode != 0:
            return row | {"failed": f"import: {error_message(done)}", "seconds": _since(start)}
        imported = json.loads(done.stdout)
        deals = stored_deals(load_settings(feature_repo=repo).crm_dir)
        closed = deals["status"].isin(CLOSED_STATUSES)
        row |= {
            "rows_read": {table: t["read"] for table, t in imported["tables"].items()},
            "import": _deals_accounting(imported),
            "closed_deals": int(closed.sum()),
            "positives": int((deals["status"] == WON).sum()),
            "flagged": _flagged(imported["leakage_audit"]),
        }
        for step in (["features", "apply"], ["train", "--json"]):
            done = leadscore(step, env)
            if done.returncode != 0:
                return row | {
                    "failed": f"{step[0]}: {error_message(done)}",
                    "seconds": _since(start),
                }
        trained = json.loads(done.stdout)
    return row | evaluation_row(trained) | {"seconds": _since(start)}


def _since(start: float) -> float:
    return round(time.perf_counter() - start, 1)


def _deals_accounting(imported: dict[str, Any]) -> str:
    """The import's accounting of deals, with its first reasons for rejecting any (every
    rejected row is in the import report's ``import_rejects.csv``)."""
    rules = [
        f"{r['rows']:,} {r['rule']}" for r in imported["rejects_by_rule"] if r["table"] == "deals"
    ]
    if len(rules) > SHOWN_REJECT_RULES:
        rules = [*rules[:SHOWN_REJECT_RULES], f"{len(rules) - SHOWN_REJECT_RULES:,} more rules"]
    accounting = f"deals {imported['tables']['deals']['accounting']}"
    return accounting + (f" ({'; '.join(rules)})" if rules else "")


def _flagged(audit: dict[str, Any]) -> list[str]:
    """Columns the leakage audit flagged, each once, ``(kept)`` after one a mapping keeps."""
    out: dict[str, str] = {}
    for f in audit["findings"]:
        out.setdefault(f["column"], f"{f['column']} (kept)" if f.get("kept") else f["column"])
    return list(out.values())


def evaluation_row(trained: dict[str, Any]) -> dict[str, Any]:
    """The table's figures from one ``train --json`` summary.

    Per-deal blocks come from ``per_deal``: at creation and at ``age_days`` for a time
    split; for a random split (no dates) every deal has a single snapshot, so only the
    creation block exists. ``gate`` is training's own decision when it makes one.
    """
    split = trained["data"]["split"]
    per_deal = trained["per_deal"]
    blocks = {"at_creation": UNDATED_BLOCK} if split["method"] == "random" else BLOCK_NAMES
    return {
        "split": split["method"],
        "split_note": split["note"],
        "per_deal": {
            name.format(age=per_deal["age_days"]): _block(per_deal[key])
            for key, name in blocks.items()
        },
        "flagged": _flagged(trained["audit"]) if "audit" in trained else [],
        "gate": trained.get("gate"),
        "warnings": trained["warnings"],
    }


def _block(block: dict[str, Any]) -> dict[str, Any]:
    """Deal counts, the model's metrics with intervals, and each baseline's ROC AUC."""
    model = block["model"]
    return {
        "deals": block["deals"],
        "won": block["won"],
        "lost": block["lost"],
        "model": {
            k: {"value": model[k], "ci95": [model["ci95"][k]["low"], model["ci95"][k]["high"]]}
            for k in ("roc_auc", "log_loss", "ece")
        },
        **{
            name: {
                "roc_auc": {
                    "value": block[name]["roc_auc"],
                    "ci95": [
                        block[name]["ci95"]["roc_auc"]["low"],
                        block[name]["ci95"]["roc_auc"]["high"],
                    ],
                }
            }
            for name in BASELINES
        },
    }


# ---------------------------------------------------------------- the table
COLUMNS = (
    "dataset",
    "rows read",
    "closed deals",
    "positives",
    "split",
    "scored per deal",
    "test deals (won/lost)",
    "ROC AUC [95%]",
    "log loss [95%]",
    "ECE [95%]",
    "LR baseline AUC [95%]",
    "channel rate AUC [95%]",
    "flagged by leakage audit",
    "gate",
)


def _figure(m: dict[str, Any]) -> str:
    if m["value"] is None:
        return "n/a"
    low, high = m["ci95"]
    interval = "" if low is None else f" [{low:.3f}, {high:.3f}]"
    return f"{m['value']:.3f}{interval}"


def _gate(gate: dict[str, Any] | None) -> str:
    if gate is None:
        return NO_GATE
    decision = "passed" if gate["passed"] else "refused"
    return f"{decision}: {gate['sentence']}" if gate.get("sentence") else decision


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table_rows(row: dict[str, Any]) -> list[list[str]]:
    """Cells of one dataset: a line per per-deal block, or one line saying why it stopped."""
    read = row.get("rows_read")
    head = [
        row["dataset"],
        "—" if read is None else f"{read.get('deals', 0):,} deals",
        f"{row['closed_deals']:,}" if "closed_deals" in row else "—",
        f"{row['positives']:,}" if "positives" in row else "—",
    ]
    flagged = ", ".join(row.get("flagged", [])) or "none"
    if "failed" in row:
        return [[*head, "—", "not trained", "—", row["failed"], "—", "—", "—", "—", flagged, "—"]]
    out = []
    for name, b in row["per_deal"].items():
        out.append(
            [
                *head,
                row["split"],
                name,
                f"{b['deals']:,} ({b['won']:,}/{b['lost']:,})",
                _figure(b["model"]["roc_auc"]),
                _figure(b["model"]["log_loss"]),
                _figure(b["model"]["ece"]),
                _figure(b["logistic_regression"]["roc_auc"]),
                _figure(b["channel_rate"]["roc_auc"]),
                flagged,
                _gate(row["gate"]),
            ]
        )
    return out


def report_text(rows: list[dict[str, Any]], seconds: float) -> str:
    lines = [
        "| " + " | ".join(COLUMNS) + " |",
        "|"
        + "|".join(
            "---"
            if c in ("dataset", "split", "scored per deal", "flagged by leakage audit", "gate")
            else "---:"
            for c in COLUMNS
        )
        + "|",
    ]
    for row in rows:
        lines += ["| " + " | ".join(_cell(c) for c in cells) + " |" for cells in table_rows(row)]
    lines.append("")
    for row in rows:
        notes = [row.get("import"), row.get("split_note"), *row.get("warnings", [])]
        if "failed" in row:
            notes = [row.get("import"), row["failed"]]
        lines.append(
            f"- {row['dataset']} ({row['seconds']:.0f} s): " + "; ".join(n for n in notes if n)
        )
    lines.append(f"\ntotal {seconds:.0f} s")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", action="store_true", help="Print the rows as JSON.")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="WORD",
        help="Run only the datasets whose name contains WORD (any case; repeatable).",
    )
    args = parser.parse_args()
    chosen = [
        d for d in DATASETS if not args.only or any(w.lower() in d.name.lower() for w in args.only)
    ]
    start = time.perf_counter()
    rows = [run_dataset(d, args.seed) for d in chosen]
    seconds = time.perf_counter() - start
    if args.json:
        print(json.dumps({"rows": rows, "seconds": round(seconds, 1)}, indent=2))
    else:
        print(report_text(rows, seconds))


if __name__ == "__main__":
    main()
