"""Benchmark: the revival model against its baselines, its oracles and today's approach.

    nice -n 10 uv run python benchmarks/revival_backtest.py [--deals 20000] [--seed 7]
        [--history-days 1460] [--as-of 2026-06-30] [--json]

A synthetic CRM with revival simulated (``generate_crm(..., revival=True)``) over
``--history-days`` is built in memory; the win model is trained on it exactly as
``leadscore train`` trains (``fit_and_evaluate`` on the in-memory frame Feast's equals,
a test proves it), and scores every revival snapshot as the list used to: the lost deal
as if re-opened (``today``). The revival model is then trained and evaluated as
``leadscore train-revival`` does (``fit_and_evaluate_revival``), with both oracles of the
revival truth: ``oracle`` knows the latent state, ``oracle_observable`` only what the
export shows (plus the lost deal's hidden quality), the ceiling a model can approach.

Printed: the entity counts, how many test losses each moment scores (a loss revived or
censored before the moment has no row there), the per-loss table (moment, predictor, losses, ROC AUC with
its deal-bootstrap 95% interval, ECE), the paired differences of the model with each
oracle and with today's approach, the gate's sentence and the behaviour checks, and the
wall time of each step. ``--json`` prints the evaluation instead.
"""

from __future__ import annotations

import json

from _synthetic import Steps, crm_arguments, revival_frame, synthetic_crm

from training.data import in_memory_frame
from training.result import TrainConfig
from training.revival import (
    backtest_table,
    difference_words,
    fit_and_evaluate_revival,
    reopened_win_probability,
    sample_words,
)
from training.train import fit_and_evaluate


def main() -> None:
    args = crm_arguments(__doc__.split("\n")[0]).parse_args()
    timed = Steps()
    crm = synthetic_crm(args, timed)
    win = timed(
        "win model",
        lambda: fit_and_evaluate(in_memory_frame(crm.tables), "lead_scoring_v1", TrainConfig()),
    )
    frame, counts = revival_frame(crm, timed)
    today = timed("today's approach", reopened_win_probability, win.model, crm.tables, frame)
    result = timed(
        "revival model",
        fit_and_evaluate_revival,
        frame,
        TrainConfig(seed=args.seed),
        crm.revival_truth,
        today,
        counts,
    )
    if args.json:
        print(json.dumps(result.evaluation, indent=2, default=str))
        return
    print(
        f"{args.deals:,} deals over {args.history_days:g} days to {args.as_of}, seed {args.seed}: "
        f"{counts['losses']:,} losses, {counts['kept']:,} snapshots with a known outcome "
        f"({counts['positive']:,} revived and won), {counts['censored']:,} censored"
    )
    print(f"losses per slice: {result.evaluation['data']['losses']}")
    print(f"losses scored: {sample_words(result.evaluation)}")
    print()
    print(backtest_table(result.evaluation))
    print()
    for other in ("oracle_observable", "oracle", "today"):
        for line in difference_words(result.evaluation, other):
            print(line)
    gate = result.evaluation["gate"]
    print(f"gate: {'passed' if gate['passed'] else 'FAILED'}: {gate['sentence']}")
    print(f"behaviour checks: {'passed' if result.behaviour.passed else 'FAILED'}")
    print(timed.line())


if __name__ == "__main__":
    main()
