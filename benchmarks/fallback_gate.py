"""The fallback as a gate baseline: does the trained model beat it, at 20,000 deals and at 300?

Trains as ``leadscore train`` trains (``training.train.fit_and_evaluate`` with the project's
``TrainConfig``) on the in-memory training frame of a synthetic CRM (no Feast store: the
same frame's shape, computed from the tables), and prints the baseline gate's verdict and
the model's margin over each baseline per deal at creation and at 30 days, with paired 95%
intervals. ``docs/fallback.md`` quotes the result.

    nice -n 10 uv run python benchmarks/fallback_gate.py            # 20,000 and 300 deals
    nice -n 10 uv run python benchmarks/fallback_gate.py 4000 1000 --seed 7  # other sizes, CRM seed
"""

from __future__ import annotations

import argparse
import time

import pandas as pd

from leadscore.config import FEATURE_SERVICE, SEED
from leadscore.crm.synth import generate_crm
from training.data import InsufficientDataError, in_memory_frame
from training.result import TrainConfig
from training.train import BASELINES, fit_and_evaluate

AS_OF = pd.Timestamp("2025-06-30", tz="UTC")


def _figure(d: dict[str, float | None]) -> str:
    if d.get("difference") is None:
        return "n/a"
    if d.get("low") is None:
        return f"{d['difference']:+.3f} (no interval)"
    return f"{d['difference']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}]"


def run(deals: int, seed: int = SEED) -> None:
    crm = generate_crm(deals, seed=seed, as_of=AS_OF)
    closed = crm.tables["deals"]["status"].isin(["won", "lost"])
    won = int((crm.tables["deals"]["status"] == "won").sum())
    print(f"\n## {deals:,} deals, seed {seed} ({int(closed.sum()):,} closed: {won:,} won)")
    start = time.perf_counter()
    frame = in_memory_frame(crm.tables)
    try:
        result = fit_and_evaluate(frame, FEATURE_SERVICE, TrainConfig(seed=SEED))
    except InsufficientDataError as exc:
        print(f"training refused: {exc}")
        return
    ev = result.evaluation
    print(f"trained in {time.perf_counter() - start:.0f} s")
    print(f"gate {'passed' if ev['gate']['passed'] else 'FAILED'}: {ev['gate']['sentence']}")
    per_deal = ev["per_deal"]
    for block in ("at_creation", "at_age"):
        b = per_deal[block]
        print(f"per deal {block} ({b['won']:,} won, {b['lost']:,} lost):")
        for name in ("model", *BASELINES):
            m = b[name]
            print(f"  {name}: ROC AUC {m['roc_auc']:.3f}, log loss {m['log_loss']:.4f}")
        for name in BASELINES:
            d = b["model_minus_baseline"][name]
            print(
                f"  model - {name}: ROC AUC {_figure(d['roc_auc'])}, "
                f"log loss {_figure(d['log_loss'])}"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("deals", type=int, nargs="*", default=[20_000, 300])
    parser.add_argument("--seed", type=int, default=SEED, help="the synthetic CRM's seed")
    args = parser.parse_args()
    for n in args.deals:
        run(n, args.seed)
