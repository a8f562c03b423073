"""Benchmark: the small-organisation fallback against no score and the channel win rate.

    nice -n 10 uv run python benchmarks/fallback_backtest.py [--reps 10] [--seed 7] [--json]

Which fallback ``leadscore rank`` uses below the training minimum, and where a trained
model takes over, decided on exports cut down to a small organisation's size:

- the synthetic CRM (``generate_crm``, ``--synthetic-deals`` deals ending 2026-06-30);
- the shared datasets in ``../shared/datasets`` through the importer as a user runs it
  (``leadscore import`` with the mappings of ``benchmarks/real_data.py``: IBM Sales
  Win-Loss and X Education without dates, the Salesforce samples with them), each cut to
  ``--cap`` deals at random (the cut only bounds the runtime; every window below is
  smaller than it).

For each dataset, training size N (closed deals) and repetition: **dated** exports take N
consecutive closed deals in close order as training and the next ``--test`` closed deals
as test, the windows spread evenly over the history; **undated** ones a seeded random N
and a disjoint random test set. Every predictor learns from the N training deals only:

- ``no score``: the training win rate (one deal each way added), the same for every deal;
- ``channel win rate``: ``training.baselines.fit_group_rate`` (the gate's baseline);
- ``fallback: stage rates`` and ``fallback: stage and channel rates``:
  :func:`leadscore.model.fallback.fit_fallback` on the training deals' rows and stage
  history;
- ``trained model``: ``training.train.fit_scoring_model`` with the project's
  ``TrainConfig`` and catalog features on the in-memory snapshot frame (the training
  deals split 80/20 in close order into train and validation, as calibration needs), to
  find the size at which it beats the fallback.

Each test deal is scored once, as the list would see it: at 30 days after creation, the
deals still open then (figures before session 24 also scored a deal closed younger at its
last snapshot before close), undated deals at their one snapshot.
Printed: the table (dataset, closed deals, predictor, per-deal ROC AUC with the 2.5-97.5
percentile range over repetitions, log loss, ECE, repetitions that fitted), then per
dataset the trained model minus the chosen fallback in ROC AUC and log loss at every N.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from real_data import DATASETS, leadscore, private_environment  # this folder: run as a script

from leadscore.config import MIN_CLASS_DEALS, load_settings
from leadscore.crm.contract import AFTER_DEAL_CREATION, CLOSED_STATUSES
from leadscore.crm.synth import generate_crm
from leadscore.features.catalog import model_catalog
from leadscore.model.fallback import fit_fallback
from training.baselines import fit_group_rate
from training.data import in_memory_frame
from training.evaluate import binary_metrics, per_deal_rows
from training.result import TrainConfig
from training.train import fit_scoring_model

SIZES = (50, 100, 200, 400, 800)
AGE_DAYS = 30.0
NO_SCORE, CHANNEL = "no score", "channel win rate"
STAGE, STAGE_CHANNEL = "fallback: stage rates", "fallback: stage and channel rates"
TRAINED = "trained model"
PREDICTORS = (NO_SCORE, CHANNEL, STAGE, STAGE_CHANNEL, TRAINED)


@dataclass(frozen=True)
class Source:
    name: str
    tables: dict[str, pd.DataFrame]
    dated: bool


def cut(tables: Mapping[str, pd.DataFrame], n: int, seed: int) -> dict[str, pd.DataFrame]:
    """At most ``n`` deals at random, with their rows of the per-deal tables."""
    deals = tables["deals"]
    if len(deals) <= n:
        return dict(tables)
    keep = deals.sample(n, random_state=seed)
    ids = set(keep["deal_id"].astype(str))
    out = {**tables, "deals": keep.reset_index(drop=True)}
    for name in AFTER_DEAL_CREATION:
        if name in tables:
            t = tables[name]
            out[name] = t[t["deal_id"].astype(str).isin(ids)].reset_index(drop=True)
    return out


def imported_sources(seed: int, cap: int) -> tuple[list[Source], dict[str, str]]:
    """The shared datasets through ``leadscore import``; the ones that failed, and why."""
    sources, failed = [], {}
    for dataset in DATASETS:
        with private_environment(seed) as (repo, env):
            out = repo.parent / "export"
            args = ["import", str(dataset.source), "--mapping", dataset.mapping, "--out", str(out)]
            done = leadscore(args, env)
            if done.returncode != 0:
                failed[dataset.name] = done.stderr.strip().splitlines()[-1:][0]
                continue
            crm = load_settings(feature_repo=repo).crm_dir
            tables = {p.stem: pd.read_parquet(p) for p in crm.glob("*.parquet")}
        deals = tables["deals"]
        dated = bool(pd.to_datetime(deals["closed_at"], utc=True).notna().any())
        sources.append(Source(dataset.name, cut(tables, cap, seed), dated))
    return sources, failed


def windows(
    closed: pd.DataFrame, n: int, reps: int, test: int, dated: bool, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(training ids, test ids) per repetition (module doc); none when too few deals."""
    ids = closed["deal_id"].astype(str).to_numpy()
    if len(ids) < n + 50:
        return []
    if dated:
        order = ids[np.argsort(closed["closed_at"].to_numpy(), kind="stable")]
        last = len(order) - n - min(test, len(order) - n)
        starts = np.unique(np.linspace(0, max(last, 0), reps).astype(int))
        return [(order[s : s + n], order[s + n : s + n + test]) for s in starts]
    rng = np.random.default_rng(seed + n)
    out = []
    for _ in range(reps):
        perm = rng.permutation(ids)
        out.append((perm[:n], perm[n : n + test]))
    return out


def trained_model(
    rows: pd.DataFrame, dated: bool, seed: int
) -> Callable[[pd.DataFrame], np.ndarray]:
    """The project's booster and calibration on these snapshot rows (80/20 by close time)."""
    deals = rows.drop_duplicates("deal_id")
    if dated:
        order = deals.sort_values("closed_at", kind="stable")["deal_id"].astype(str).to_numpy()
    else:
        order = np.random.default_rng(seed).permutation(deals["deal_id"].astype(str).to_numpy())
    valid_ids = set(order[int(0.8 * len(order)) :])
    in_valid = rows["deal_id"].astype(str).isin(valid_ids).to_numpy()
    catalog = model_catalog()
    features = [f.name for f in catalog]
    categorical = [f.name for f in catalog if f.kind == "categorical"]
    fitted = fit_scoring_model(
        rows[~in_valid], rows[in_valid], features, categorical, TrainConfig()
    ).model
    return lambda frame: fitted.probability(fitted.encode(frame))


def evaluate_window(
    source: Source, frame: pd.DataFrame, train_ids: np.ndarray, test_ids: np.ndarray, seed: int
) -> dict[str, dict[str, float | None]]:
    """Every predictor fitted on ``train_ids``, scored per deal on ``test_ids``."""
    train_set, test_set = set(train_ids), set(test_ids)
    deal_of = frame["deal_id"].astype(str)
    rows = frame[deal_of.isin(train_set).to_numpy()]
    test = frame[deal_of.isin(test_set).to_numpy()].reset_index(drop=True)
    at = per_deal_rows(test, AGE_DAYS)["at_age" if source.dated else "at_creation"]
    test = test.iloc[at]
    y = test["won"].to_numpy(dtype=float)
    deals = source.tables["deals"]
    mine = deals[deals["deal_id"].astype(str).isin(train_set)]
    history = source.tables.get("stage_history")
    if history is not None:
        history = history[history["deal_id"].astype(str).isin(train_set)]
    stage, channel = test["stage_index"].to_numpy(), test["channel"].to_numpy()
    with_channel = fit_fallback(mine, history)
    preds = {
        NO_SCORE: np.full(len(y), with_channel.overall),
        CHANNEL: fit_group_rate(rows).predict(test),
        STAGE: fit_fallback(mine, history, use_channel=False).predict(stage, channel),
        STAGE_CHANNEL: with_channel.predict(stage, channel),
    }
    try:
        preds[TRAINED] = trained_model(rows, source.dated, seed)(test)
    except Exception as exc:  # too few deals of a class in a slice: recorded, not fatal
        print(f"  {source.name}, {len(train_ids)} deals: trained model failed: {exc}")
    out = {}
    for name, p in preds.items():
        m = binary_metrics(y, p)
        out[name] = {k: m[k] for k in ("roc_auc", "log_loss", "ece")}  # type: ignore[misc]
    return out


def summary(results: list[dict[str, dict[str, float | None]]], name: str) -> dict[str, Any]:
    """Mean and 2.5-97.5 percentile range over repetitions of each metric."""
    out: dict[str, Any] = {"fitted": sum(name in r for r in results)}
    for metric in ("roc_auc", "log_loss", "ece"):
        v = np.array(
            [r[name][metric] for r in results if name in r and r[name][metric] is not None]
        )
        out[metric] = (
            {
                "mean": float(v.mean()),
                "low": float(np.percentile(v, 2.5)),
                "high": float(np.percentile(v, 97.5)),
            }
            if len(v)
            else None
        )
    return out


def paired(results: list[dict[str, dict[str, float | None]]], a: str, b: str) -> dict[str, Any]:
    """``a`` minus ``b`` per repetition (same windows): mean and 2.5-97.5 percentile range."""
    out: dict[str, Any] = {}
    for metric in ("roc_auc", "log_loss"):
        d = np.array(
            [
                r[a][metric] - r[b][metric]  # type: ignore[operator]
                for r in results
                if a in r and b in r and r[a][metric] is not None and r[b][metric] is not None
            ]
        )
        out[metric] = (
            {
                "mean": float(d.mean()),
                "low": float(np.percentile(d, 2.5)),
                "high": float(np.percentile(d, 97.5)),
            }
            if len(d)
            else None
        )
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    synthetic = generate_crm(args.synthetic_deals, args.seed, pd.Timestamp("2026-06-30", tz="UTC"))
    sources = [Source(f"synthetic CRM ({args.synthetic_deals:,} deals)", synthetic.tables, True)]
    imported, failed = imported_sources(args.seed, args.cap)
    sources += imported
    rows, differences, notes = [], [], dict(failed)
    for source in sources:
        frame = in_memory_frame(source.tables)
        deals = source.tables["deals"]
        closed = deals[deals["status"].isin(CLOSED_STATUSES)].copy()
        if source.dated:
            closed["closed_at"] = pd.to_datetime(closed["closed_at"], utc=True)
            closed = closed[closed["closed_at"].notna()]
        closed = closed[closed["deal_id"].astype(str).isin(set(frame["deal_id"].astype(str)))]
        sizes = [n for n in args.sizes if windows(closed, n, 1, args.test, source.dated, 0)]
        if not sizes:
            notes[source.name] = f"{len(closed)} closed deals: fewer than {min(args.sizes)} + 50"
            continue
        for n in sizes:
            results = [
                evaluate_window(source, frame, tr, te, args.seed)
                for tr, te in windows(closed, n, args.reps, args.test, source.dated, args.seed)
            ]
            for name in PREDICTORS:
                rows.append(
                    {"dataset": source.name, "closed_deals": n, "predictor": name}
                    | summary(results, name)
                )
            differences.append(
                {"dataset": source.name, "closed_deals": n}
                | {"trained minus " + STAGE_CHANNEL: paired(results, TRAINED, STAGE_CHANNEL)}
                | {"stage and channel minus " + CHANNEL: paired(results, STAGE_CHANNEL, CHANNEL)}
            )
        print(f"  {source.name}: done at {time.perf_counter() - started:.0f} s", flush=True)
    return {
        "rows": rows,
        "differences": differences,
        "notes": notes,
        "reps": args.reps,
        "test_deals": args.test,
        "min_class_deals": MIN_CLASS_DEALS,
        "seconds": round(time.perf_counter() - started, 1),
    }


def _range(m: dict[str, float] | None, digits: int = 3) -> str:
    if m is None:
        return "-"
    return f"{m['mean']:.{digits}f} [{m['low']:.{digits}f}, {m['high']:.{digits}f}]"


def _signed(m: dict[str, float] | None) -> str:
    if m is None:
        return "-"
    return f"{m['mean']:+.3f} [{m['low']:+.3f}, {m['high']:+.3f}]"


def report_text(report: dict[str, Any]) -> str:
    lines = [
        f"Per-deal metrics on later closed deals (up to {report['test_deals']} per window), "
        f"mean [2.5-97.5 percentile] over up to {report['reps']} windows.",
        "",
        "| dataset | closed deals | predictor | ROC AUC | log loss | ECE | windows |",
        "|---|---:|---|---|---|---|---:|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['dataset']} | {r['closed_deals']} | {r['predictor']} | {_range(r['roc_auc'])} | "
            f"{_range(r['log_loss'])} | {_range(r['ece'])} | {r['fitted']} |"
        )
    lines += [
        "",
        "Paired differences, same windows (ROC AUC; log loss, lower is better):",
        "",
        "| dataset | closed deals | comparison | ROC AUC | log loss |",
        "|---|---:|---|---|---|",
    ]
    for d in report["differences"]:
        for key, m in d.items():
            if key in ("dataset", "closed_deals"):
                continue
            lines.append(
                f"| {d['dataset']} | {d['closed_deals']} | {key} | {_signed(m['roc_auc'])} | "
                f"{_signed(m['log_loss'])} |"
            )
    for name, note in report["notes"].items():
        lines.append(f"- {name}: {note}")
    lines.append(f"\n{report['seconds']} s")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--test", type=int, default=500, help="test deals per window")
    parser.add_argument("--synthetic-deals", type=int, default=4000)
    parser.add_argument("--cap", type=int, default=6000, help="deals kept of a big dataset")
    parser.add_argument(
        "--sizes", type=lambda s: [int(x) for x in s.split(",")], default=list(SIZES)
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = run(args)
    print(json.dumps(report, indent=2) if args.json else report_text(report))


if __name__ == "__main__":
    main()
