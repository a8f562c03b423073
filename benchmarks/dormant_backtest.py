"""Benchmark: dormant deals' own outcome against the win model, a dormant calibration, a
rate baseline and the oracle, beside open and lost deals (issue 12's closing table).

    nice -n 10 uv run python benchmarks/dormant_backtest.py [--deals 20000] [--seed 7]
        [--history-days 1460] [--as-of 2026-06-30] [--no-lost] [--json]

The synthetic CRM of ``benchmarks/revival_backtest.py`` (revival simulated, a fixed end
of history) is built in memory; the win model is trained on it exactly as ``leadscore
train`` trains (``fit_and_evaluate`` on the in-memory frame Feast's equals, with the
truth), which runs the dormant backtest (:mod:`training.dormant`) on its split: dormant
snapshots (open, quiet for 30 days) of the test slice, labelled "won within 365 days",
scored by the win model as trained (``win_model``), by the same trees through a
calibration fitted on the validation slice's dormant snapshots
(``dormant_calibration``), by the dormant win rate by stage x quiet-time band of the
training slice (``stage_quiet_rate``) and by the truth's ``p_latent`` (``oracle``).
Unless ``--no-lost``, the revival model is trained as ``leadscore train-revival`` does
(``fit_and_evaluate_revival``, with its oracles), so lost deals sit in the same table.

Printed: the counts, the table (deals, moment, predictor, deals and snapshots, ROC AUC
and ECE with deal-bootstrap 95% intervals, log loss) for open deals (the win model's own
per-deal figures), dormant deals (per deal at the first dormant snapshot, and per
snapshot) and lost deals, the dormant calibration fitted, the decision, and the wall
time of each step. ``--json`` prints the dormant evaluation instead.
"""

from __future__ import annotations

import json

from _synthetic import Steps, crm_arguments, revival_frame, synthetic_crm

from training.data import in_memory_frame
from training.dormant import backtest_table
from training.result import TrainConfig
from training.revival import fit_and_evaluate_revival
from training.train import fit_and_evaluate


def main() -> None:
    parser = crm_arguments(__doc__.split("\n")[0])
    parser.add_argument("--no-lost", action="store_true", help="skip the revival model")
    args = parser.parse_args()
    timed = Steps()
    crm = synthetic_crm(args, timed)
    win = timed(
        "win model and dormant backtest",
        lambda: fit_and_evaluate(
            in_memory_frame(crm.tables), "lead_scoring_v1", TrainConfig(), crm.truth
        ),
    )
    dormant = win.evaluation["dormant"]
    if args.json:
        print(json.dumps(dormant, indent=2, default=str))
        return
    lost = None
    if not args.no_lost:
        frame, _ = revival_frame(crm, timed)
        lost = timed(
            "revival model",
            fit_and_evaluate_revival,
            frame,
            TrainConfig(seed=args.seed),
            crm.revival_truth,
        ).evaluation["per_deal"]
    print(
        f"{args.deals:,} deals over {args.history_days:g} days to {args.as_of}, seed {args.seed}; "
        f"dormant: {dormant['definition']['dormant_days']:g} quiet days, outcome "
        f"{dormant['definition']['outcome']}"
    )
    for name, c in dormant["counts"].items():
        print(
            f"  {name}: {c['snapshots']:,} dormant snapshots ({c['censored']:,} censored) of "
            f"{c['deals']:,} deals, {c['won_within_horizon']:,} won within the horizon"
        )
    print()
    print(backtest_table(dormant, win.evaluation["per_deal"], lost))
    print()
    if "calibration" in dormant:
        print(f"dormant calibration: {dormant['calibration']['reason']}")
    print(f"decision ({dormant['choice']}): {dormant['sentence']}")
    print(timed.line())


if __name__ == "__main__":
    main()
