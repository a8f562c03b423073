"""Behaviour checks: directions a sales team takes for granted, tested on real rows.

A model can score well and still say something absurd for one deal, e.g. that bringing
the economic buyer in lowers the odds. Such a model loses the team's trust at the first
example, so these checks gate promotion. Each check takes a sample of real rows, changes
one thing, all else equal, and counts rows whose calibrated probability moved the wrong
way by more than ``tolerance``:

* an engaged economic buyer (has_economic_buyer 0 -> 1) does not lower the probability;
* a more senior contact (max_seniority + 1, up to 6) does not lower it;
* a longer stall (stalls + 1 and days_in_stage + 30) does not raise it;
* slower replies (median_reply_hours + 24) do not raise it.

Training makes these hold by construction with LightGBM monotone constraints (see
:data:`training.train.MONOTONE`); the checks prove it on the artifact that ships,
whatever its training configuration was.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from leadscore.model.scoring_model import ScoringModel

Direction = Literal["not_lower", "not_higher"]
MAX_SENIORITY = 6.0


@dataclass(frozen=True)
class Check:
    name: str
    description: str
    expect: Direction
    #: Features the change touches; rows where any is missing are not eligible.
    features: tuple[str, ...]
    #: Which rows can take the change (e.g. no economic buyer yet), given their values.
    eligible: Callable[[np.ndarray], np.ndarray]
    #: The changed values, one column per feature.
    change: Callable[[np.ndarray], np.ndarray]


CHECKS: tuple[Check, ...] = (
    Check(
        "economic_buyer",
        "an engaged economic buyer (0 -> 1) does not lower the probability",
        "not_lower",
        ("has_economic_buyer",),
        lambda v: v[:, 0] == 0,
        lambda v: np.ones_like(v),
    ),
    Check(
        "seniority",
        "a more senior contact (max_seniority + 1) does not lower the probability",
        "not_lower",
        ("max_seniority",),
        lambda v: v[:, 0] < MAX_SENIORITY,
        lambda v: np.minimum(v + 1, MAX_SENIORITY),
    ),
    Check(
        "stall",
        "a longer stall (stalls + 1, days_in_stage + 30) does not raise the probability",
        "not_higher",
        ("stalls", "days_in_stage"),
        lambda v: np.ones(len(v), dtype=bool),
        lambda v: v + np.array([1.0, 30.0]),
    ),
    Check(
        "slow_replies",
        "slower replies (median_reply_hours + 24) do not raise the probability",
        "not_higher",
        ("median_reply_hours",),
        lambda v: np.ones(len(v), dtype=bool),
        lambda v: v + 24.0,
    ),
)


@dataclass(frozen=True)
class CheckResult:
    name: str
    description: str
    rows: int
    violations: int
    violation_rate: float
    #: Largest move in the wrong direction (probability points, 0 when none).
    worst: float
    passed: bool


@dataclass(frozen=True)
class BehaviourReport:
    results: tuple[CheckResult, ...]
    tolerance: float
    max_violation_rate: float

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    def failures(self) -> list[str]:
        return [
            f"{r.name}: {r.violations}/{r.rows} rows ({r.violation_rate:.1%}) move the wrong way"
            for r in self.results
            if not r.passed
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "tolerance": self.tolerance,
            "max_violation_rate": self.max_violation_rate,
            "checks": {r.name: asdict(r) for r in self.results},
        }


def run_behaviour_checks(
    model: ScoringModel,
    frame: pd.DataFrame,
    sample: int = 1000,
    tolerance: float = 1e-3,
    max_violation_rate: float = 0.01,
    seed: int = 0,
    checks: tuple[Check, ...] = CHECKS,
) -> BehaviourReport:
    """Run ``checks`` on up to ``sample`` rows of ``frame`` (drawn with ``seed``).

    A check passes when at most ``max_violation_rate`` of its eligible rows move the
    wrong way by more than ``tolerance`` (probability). A check with no eligible rows
    fails: it proved nothing.
    """
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(frame), size=min(sample, len(frame)), replace=False) if len(frame) else []
    X = model.encode(frame.iloc[np.sort(rows)])
    base = model.probability(X)
    results = []
    for check in checks:
        cols = [model.features.index(f) for f in check.features]
        values = X[:, cols]
        ok = ~np.isnan(values).any(axis=1)
        ok[ok] = check.eligible(values[ok])
        changed = X[ok].copy()
        changed[:, cols] = check.change(values[ok])
        delta = model.probability(changed) - base[ok]
        wrong = -delta if check.expect == "not_lower" else delta
        bad = wrong > tolerance
        n = int(ok.sum())
        rate = float(bad.mean()) if n else 1.0
        results.append(
            CheckResult(
                check.name,
                check.description,
                n,
                int(bad.sum()),
                rate,
                max(float(wrong.max(initial=0.0)), 0.0) + 0.0,
                n > 0 and rate <= max_violation_rate,
            )
        )
    return BehaviourReport(tuple(results), tolerance, max_violation_rate)
