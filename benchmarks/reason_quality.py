"""How the ranked list's reasons read to a rep, on a synthetic CRM (issue 13's figures).

Trains the win model with training's own recipe on a synthetic CRM, ranks that CRM's
open, dormant and recently lost deals with :func:`leadscore.priority.rank.rank_deals`
(three reasons each way, as ``leadscore rank`` lists them) and audits the listed
reasons (:mod:`leadscore.model.reason_audit`): the share of shown reasons that
contradict their tooltip, the share of deals showing an owner's or any track-record
reason, a text twice or one both ways, and the groups of the top three reasons each way.
Prints one JSON object. Usage:

    uv run python benchmarks/reason_quality.py [--deals 5000] [--seed 7]
"""

from __future__ import annotations

import argparse
import json
import logging

import pandas as pd

from leadscore.crm.synth import generate_crm
from leadscore.features.catalog import features_by_name
from leadscore.model.reason_audit import audit_reasons
from leadscore.priority.rank import rank_deals
from training.data import in_memory_frame
from training.result import TrainConfig
from training.train import fit_and_evaluate

AS_OF = pd.Timestamp("2025-06-30", tz="UTC")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--deals", type=int, default=5000, help="Deals in the synthetic CRM.")
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    crm = generate_crm(a.deals, seed=a.seed, as_of=AS_OF)
    model = fit_and_evaluate(
        in_memory_frame(crm.tables), "lead_scoring_v1", TrainConfig(seed=a.seed), crm.truth
    ).model
    ranked = rank_deals(crm.tables, model, AS_OF).frame
    audit = audit_reasons(
        zip(ranked["positive_reasons"], ranked["negative_reasons"], strict=True),
        features_by_name(model.attributes),
    )
    print(json.dumps({"crm_deals": a.deals, "seed": a.seed, **audit.shares()}, indent=1))


if __name__ == "__main__":
    main()
