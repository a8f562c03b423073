"""Benchmark: what segment models cost in training time, and which are kept.

    nice -n 10 uv run python benchmarks/segment_models.py [--deals 20000] [--seed 7]
        [--history-days 1460] [--as-of 2026-06-30] [--repeats 3] [--json]

The synthetic CRM the other backtests read is built in memory, and the win model is
trained on it as ``leadscore train`` trains (``fit_and_evaluate`` on the in-memory frame)
``--repeats`` times with segment models switched off (the baseline) and as many with them
on, alternating so a busy machine slows both alike. Printed: the median seconds of each
and their ratio (issue 16 allows training to grow by about 30%), then every segment
candidate's decision with its per-deal figures, and the routed model against the global
one on all test deals. ``--json`` prints the same as one object.
"""

from __future__ import annotations

import json
import statistics
import time
from typing import Any

from _synthetic import Steps, crm_arguments, synthetic_crm

from training.data import in_memory_frame
from training.result import TrainConfig, TrainingResult
from training.train import fit_and_evaluate


def timed_fit(frame: Any, seed: int, segments: bool) -> tuple[float, TrainingResult]:
    start = time.perf_counter()
    result = fit_and_evaluate(
        frame, "lead_scoring_v1", TrainConfig(seed=seed, segment_models=segments)
    )
    return time.perf_counter() - start, result


def main() -> None:
    parser = crm_arguments(__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    steps = Steps()
    crm = synthetic_crm(args, steps)
    frame = steps("training frame", in_memory_frame, crm.tables)
    seconds: dict[str, list[float]] = {"without": [], "with": []}
    result = None
    for _ in range(args.repeats):
        for name in ("without", "with"):
            took, r = timed_fit(frame, args.seed, name == "with")
            seconds[name].append(round(took, 1))
            if name == "with":
                result = r
    assert result is not None
    medians = {k: statistics.median(v) for k, v in seconds.items()}
    block = result.evaluation["segment_models"]
    out = {
        "deals": args.deals,
        "snapshots": len(frame),
        "seconds": seconds,
        "median_seconds": medians,
        "ratio": round(medians["with"] / medians["without"], 3),
        "kept": block.get("kept", []),
        "candidates": [
            {k: c.get(k) for k in ("segment", "decision", "reason", "deals", "added_trees")}
            for c in block.get("candidates", [])
        ],
        "routed": block.get("routed"),
    }
    if args.json:
        print(json.dumps(out, indent=2))
        return
    print(
        f"{args.deals:,} deals, {len(frame):,} snapshots; fit_and_evaluate median "
        f"{medians['without']:.1f} s without segment models, {medians['with']:.1f} s with "
        f"(x{out['ratio']:.2f}; runs {seconds})"
    )
    print(
        f"kept {len(out['kept'])} of {len(out['candidates'])}: {', '.join(out['kept']) or 'none'}"
    )
    for c in out["candidates"]:
        print(f"  {c['segment']:<24} {c['decision']:<9} {c['reason']}")
    routed = out["routed"]
    if routed:
        d = routed["routed_minus_global"]
        print(
            "routed minus global on all {} test deals: ".format(routed["deals"])
            + ", ".join(
                f"{k} {d[k]['difference']:+.4f} [{d[k]['low']:+.4f}, {d[k]['high']:+.4f}]"
                for k in ("roc_auc", "log_loss", "ece")
            )
        )
    print(steps.line())


if __name__ == "__main__":
    main()
