"""Benchmark: every row of a large, half-broken export is accounted for.

    uv run python benchmarks/import_accounting.py [--rows 1000000]

Generates a deals CSV of ``--rows`` rows of which half are bad in different ways (a
date that is not one, an amount that is not a number, an unknown status word, too few
fields, a deleted record, a negative amount, a close before creation, an empty id, an
exact repeat of an earlier row), imports it through a mapping and runs ingest's contract
checks on the export (``--dry-run``'s path: nothing is stored). Prints, per kind, the
rows made bad and the rows rejected or merged for that rule, and the accounting
``read = stored + rejected + duplicates``, which must balance.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from leadscore.crm.importer import check_export
from leadscore.crm.importer.mapping import load_mapping
from leadscore.crm.importer.report import build_report
from leadscore.crm.importer.run import run_import, write_export

MAPPING = """
name: accounting
tables:
  deals:
    source: deals
    reject_when: {Deleted: true}
    columns:
      deal_id: Id
      account_id: Account
      created_at: Created
      amount: Amount
      status: Status
      closed_at: Closed
"""
KINDS = (
    "bad date",
    "bad amount",
    "unknown status",
    "too few fields",
    "deleted",
    "negative amount",
    "closed before created",
    "empty id",
    "exact repeat",
)


def write_source(path: Path, rows: int, seed: int = 0) -> dict[str, int]:
    """The CSV, and how many rows of each kind were made bad."""
    rng = np.random.default_rng(seed)
    created = pd.Timestamp("2023-01-01") + pd.to_timedelta(rng.integers(0, 500, rows), unit="D")
    closed = created + pd.to_timedelta(rng.integers(1, 90, rows), unit="D")
    status = rng.choice(np.array(["Closed Won", "Closed Lost", "赢单", "输单"]), rows)
    frame = pd.DataFrame(
        {
            "Id": np.char.add("D", np.arange(rows).astype(str)).astype(object),
            "Account": "A1",
            "Created": created.strftime("%Y-%m-%d").astype(object),
            "Amount": rng.integers(1, 100_000, rows).astype(str).astype(object),
            "Status": status.astype(object),
            "Closed": closed.strftime("%Y-%m-%d").astype(object),
            "Deleted": "0",
        }
    )
    kind = np.full(rows, -1)
    bad = rng.permutation(rows)[: rows // 2]
    kind[bad] = np.arange(len(bad)) % len(KINDS)
    k = {name: kind == i for i, name in enumerate(KINDS)}
    frame.loc[k["bad date"], "Created"] = "31/31/2023"
    frame.loc[k["bad amount"], "Amount"] = "lots"
    frame.loc[k["unknown status"], "Status"] = "maybe"
    frame.loc[k["deleted"], "Deleted"] = "1"
    frame.loc[k["negative amount"], "Amount"] = "-5"
    frame.loc[k["closed before created"], "Closed"] = "2022-01-01"
    frame.loc[k["empty id"], "Id"] = ""
    # A repeat copies a good row (before or after it): one of the two is stored once.
    copied = rng.choice(np.flatnonzero(kind == -1), int(k["exact repeat"].sum()), replace=False)
    frame.loc[k["exact repeat"]] = frame.loc[copied].to_numpy()
    lines = frame.to_csv(index=False, lineterminator="\n").splitlines()
    short = np.flatnonzero(k["too few fields"]) + 1  # +1: the header is lines[0]
    for i in short:
        lines[i] = lines[i].rsplit(",", 3)[0]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return {name: int(mask.sum()) for name, mask in k.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "src").mkdir()
        made = write_source(root / "src" / "deals.csv", args.rows)
        mapping = root / "mapping.yaml"
        mapping.write_text(MAPPING, encoding="utf-8")
        start = time.perf_counter()
        result = run_import(root / "src", load_mapping(mapping))
        write_export(result, root / "out")
        imported = time.perf_counter() - start
        checked, counts = check_export(result, root / "out", root / "no-store")
        total = time.perf_counter() - start
        report = build_report(result, root / "out", checked, counts, dry_run=True)
    deals = report["tables"]["deals"]
    print(f"{args.rows:,} deals, {sum(made.values()):,} made bad; import {imported:.1f} s, "
          f"import + contract checks {total:.1f} s")  # fmt: skip
    print(f"{'kind of bad row':24s} {'made':>9s}")
    for name, n in made.items():
        print(f"{name:24s} {n:>9,d}")
    print("rejected rows by rule (import, then contract checks):")
    for r in report["rejects_by_rule"]:
        print(f"  {r['rows']:>9,d}  {r['rule']}")
    print(f"duplicates (same id and values, stored once): {deals['duplicates']:,}")
    print(f"deals: {deals['accounting']}  balanced: {deals['balanced']}")
    all_rejects = pd.concat([result.rejects, checked])
    named = all_rejects[["file", "line", "column", "value", "rule"]].notna().all(axis=1).all()
    print(f"every reject names file, line, column, value and rule: {bool(named)}")


if __name__ == "__main__":
    main()
