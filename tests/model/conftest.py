"""One model trained once per session on a small synthetic CRM, for behavioural tests.

:func:`train_on` trains the same way on a changed copy of the frame (a feature shuffled,
a signal reversed), to show that a test fails on a model that lacks what it checks.
Training takes about a second.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
import pytest

from leadscore.crm.synth import SyntheticCRM, generate_crm
from training.data import in_memory_frame
from training.result import TrainConfig, TrainingResult
from training.train import fit_and_evaluate

TrainOn = Callable[..., TrainingResult]


#: End of the synthetic CRM's history.
AS_OF = pd.Timestamp("2025-06-30", tz="UTC")


@pytest.fixture(scope="session")
def crm() -> SyntheticCRM:
    """A 2,000-deal synthetic CRM whose history ends at :data:`AS_OF`."""
    return generate_crm(2000, seed=11, as_of=AS_OF)


@pytest.fixture(scope="session")
def crm_frame(crm: SyntheticCRM) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The training frame of :func:`crm`, and the generator's truth."""
    return in_memory_frame(crm.tables), crm.truth


@pytest.fixture(scope="session")
def train_on(crm_frame: tuple[pd.DataFrame, pd.DataFrame]) -> TrainOn:
    """Train with the production recipe on ``change(frame)``; ``config`` overrides it."""
    frame, truth = crm_frame

    def train(
        change: Callable[[pd.DataFrame], pd.DataFrame] = lambda f: f,
        config: TrainConfig | None = None,
    ) -> TrainingResult:
        return fit_and_evaluate(
            change(frame.copy()), "lead_scoring_v1", config or TrainConfig(seed=11), truth
        )

    return train


@pytest.fixture(scope="session")
def trained(train_on: TrainOn) -> TrainingResult:
    return train_on()


@pytest.fixture(scope="session")
def test_rows(trained: TrainingResult) -> pd.DataFrame:
    """The trained model's test slice: real rows it never saw."""
    return trained.frame[trained.masks["test"]]
