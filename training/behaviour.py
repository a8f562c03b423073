"""Behaviour checks: directions a sales team takes for granted, tested on real rows.

A model can score well and still say something absurd for one deal, e.g. that bringing
the economic buyer in lowers the odds. Such a model loses the team's trust at the first
example, so these checks gate promotion. There is one check per feature the catalog
gives a direction (:attr:`leadscore.features.catalog.Feature.monotone`): it takes a
sample of real rows, adds the feature's ``check_step``, all else equal (a binary goes
0 -> 1, an ordinal stops at its top level), and counts rows whose calibrated probability
moved the wrong way by more than ``tolerance``: an economic buyer or a more senior
contact does not lower the probability, another stall or slower replies do not raise
it, and so on for every directed feature (:data:`CHECKS`).

A check needs rows that can take its change: with no contacts table there is no deal
whose economic buyer could be brought in. Such a check is *not applicable*: it proved
nothing either way, so it neither passes nor blocks promotion, and reports say so.

Training makes these hold by construction with LightGBM monotone constraints read from
the same catalog entries; the checks prove it on the artifact that ships, whatever its
training configuration was.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from leadscore.features.catalog import FEATURES, Feature, Monotone
from leadscore.model.scoring_model import ScoringModel


@dataclass(frozen=True)
class Check:
    """One feature moved by ``step`` (up to ``top``), all else equal; the probability
    must not move against ``direction``."""

    feature: str
    direction: Monotone
    step: float
    top: float

    @classmethod
    def of(cls, feature: Feature) -> Check:
        return cls(feature.name, feature.monotone, feature.check_step, feature.top)

    @property
    def name(self) -> str:
        return self.feature

    @property
    def description(self) -> str:
        change = (
            f"{self.feature} 0 -> 1"
            if self.top == self.step == 1
            else f"{self.feature} + {self.step:g}"
            + (f" (up to {self.top:g})" if np.isfinite(self.top) else "")
        )
        return f"{change} does not {'lower' if self.direction > 0 else 'raise'} the probability"

    def eligible(self, values: np.ndarray) -> np.ndarray:
        """Rows that can take the change: known and below the top value."""
        return ~np.isnan(values) & (values < self.top)

    def change(self, values: np.ndarray) -> np.ndarray:
        return np.minimum(values + self.step, self.top)


def checks_of(features: Iterable[Feature] = FEATURES) -> tuple[Check, ...]:
    """A check per feature with a monotone direction."""
    return tuple(Check.of(f) for f in features if f.monotone)


CHECKS: tuple[Check, ...] = checks_of()


#: What a check found: it held, it did not, or no row could take its change.
PASSED, FAILED, NOT_APPLICABLE = "passed", "failed", "not applicable"


@dataclass(frozen=True)
class CheckResult:
    name: str
    description: str
    rows: int
    violations: int
    #: Share of ``rows`` that moved the wrong way; None when no row could be checked.
    violation_rate: float | None
    #: Largest move in the wrong direction (probability points, 0 when none).
    worst: float
    #: :data:`PASSED`, :data:`FAILED` or :data:`NOT_APPLICABLE`.
    status: str

    @property
    def passed(self) -> bool:
        """Not failed: a check without applicable rows blocks nothing."""
        return self.status != FAILED


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
            f"{r.name}: the model does not read this feature"
            if r.violation_rate is None
            else f"{r.name}: {r.violations}/{r.rows} rows ({r.violation_rate:.1%}) move the wrong way"
            for r in self.results
            if not r.passed
        ]

    def not_applicable(self) -> list[str]:
        """Checks no row could take, by name."""
        return [r.name for r in self.results if r.status == NOT_APPLICABLE]

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "tolerance": self.tolerance,
            "max_violation_rate": self.max_violation_rate,
            "not_applicable": self.not_applicable(),
            "checks": {r.name: asdict(r) | {"passed": r.passed} for r in self.results},
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
    wrong way by more than ``tolerance`` (probability). A check with no eligible rows is
    not applicable (the data has no case of it); a model that does not read the
    feature fails, since its direction is then nobody's guarantee.
    """
    rng = np.random.default_rng(seed)
    rows: np.ndarray | list[int] = (
        rng.choice(len(frame), size=min(sample, len(frame)), replace=False) if len(frame) else []
    )
    X = model.encode(frame.iloc[np.sort(rows)])
    base = model.probability(X)
    results = []
    for check in checks:
        if check.feature not in model.features:
            # A model that does not read the feature proves nothing about its direction.
            results.append(CheckResult(check.name, check.description, 0, 0, None, 0.0, FAILED))
            continue
        j = model.features.index(check.feature)
        ok = check.eligible(X[:, j])
        changed = X[ok].copy()
        changed[:, j] = check.change(X[ok, j])
        delta = model.probability(changed) - base[ok] if len(changed) else np.zeros(0)
        wrong = -delta if check.direction > 0 else delta
        bad = wrong > tolerance
        n = int(ok.sum())
        rate = float(bad.mean()) if n else None
        status = (
            NOT_APPLICABLE if rate is None else PASSED if rate <= max_violation_rate else FAILED
        )
        results.append(
            CheckResult(
                check.name,
                check.description,
                n,
                int(bad.sum()),
                rate,
                max(float(wrong.max(initial=0.0)), 0.0) + 0.0,
                status,
            )
        )
    return BehaviourReport(tuple(results), tolerance, max_violation_rate)
