"""Benchmark: the pipeline forecast's backtest error on the synthetic CRM.

    nice -n 10 uv run python benchmarks/forecast_backtest.py [--deals 20000] [--seed 7]
        [--history-days 1460] [--as-of 2026-06-30] [--cuts 12] [--json]

A synthetic CRM is built in memory (``generate_crm``), the win model is trained on it as
``leadscore train`` trains (``fit_and_evaluate`` on the in-memory frame, as
``benchmarks/revival_backtest.py`` does), and the forecast is rebuilt at the last
``--cuts`` month starts whose three following months are in the export
(:func:`leadscore.insights.forecast.backtest`). Each cut's time-to-close model learns
only from wins before the cut. The probabilities compared:

* ``model``: the win model trained on every closed deal, as the champion is: it saw the
  outcomes of the months it is tested on, so its error is optimistic;
* ``model_before_cuts``: the same training on the deals closed before the first cut
  only: no outcome of a tested month reaches it (leakage-free, a little stale);
* ``stage_rate``: the win rate of the deals closed before each cut that reached the
  deal's stage (leakage-free);
* ``persistence``: the naive reference, what earlier cuts' pipelines brought in at the
  same horizon.

Printed: the counts, WAPE, bias and MAPE per horizon and method, the months, and the
wall time of each step. ``--json`` prints the errors and months instead.
"""

from __future__ import annotations

import json

import pandas as pd
from _synthetic import Steps, crm_arguments, synthetic_crm

from leadscore.config import BACKTEST_HORIZON
from leadscore.insights import deal_facts, to_records
from leadscore.insights.forecast import (
    backtest,
    backtest_cuts,
    backtest_errors,
    model_probability,
    stage_rate_probability,
)
from training.data import in_memory_frame
from training.result import TrainConfig
from training.train import fit_and_evaluate


def main() -> None:
    parser = crm_arguments(__doc__.split("\n")[0])
    parser.add_argument("--cuts", type=int, default=12)
    args = parser.parse_args()
    timed = Steps()
    # Four years: a year of history before the first of twelve cuts, and the leakage-free
    # model two years of closed deals to learn from. No revivals: the open-deal pipeline.
    crm = synthetic_crm(args, timed, revival=False)
    facts = deal_facts(crm.tables)
    cuts = backtest_cuts(facts, crm.as_of, args.cuts, BACKTEST_HORIZON)
    frame = timed("training frame", in_memory_frame, crm.tables)
    win = timed(
        "win model", fit_and_evaluate, frame, "lead_scoring_v1", TrainConfig(seed=args.seed)
    )
    before = frame[pd.to_datetime(frame["closed_at"], utc=True) < cuts[0]]
    early = timed(
        "win model before the cuts",
        fit_and_evaluate,
        before,
        "lead_scoring_v1",
        TrainConfig(seed=args.seed),
    )
    probabilities = {
        "model": model_probability(win.model, crm.tables),
        "model_before_cuts": model_probability(early.model, crm.tables),
        "stage_rate": stage_rate_probability(facts),
    }
    months = timed("backtest", backtest, facts, cuts, probabilities, BACKTEST_HORIZON)
    errors = backtest_errors(months, list(probabilities))
    if args.json:
        out = {"errors": to_records(errors), "months": to_records(months)}
        print(json.dumps(out, indent=2, default=str))
        return
    closed = frame.drop_duplicates("deal_id")
    print(
        f"{args.deals:,} deals over {args.history_days:g} days to {args.as_of}, seed "
        f"{args.seed}: {len(cuts)} cuts {cuts[0]:%Y-%m} to {cuts[-1]:%Y-%m}, months "
        f"t+1..t+{BACKTEST_HORIZON}; the win model learned from {len(closed):,} closed deals, "
        f"the one before the cuts from {before['deal_id'].nunique():,}"
    )
    print()
    print(errors.round(3).to_string(index=False))
    print()
    print(months.round(0).to_string(index=False))
    print(timed.line())


if __name__ == "__main__":
    main()
