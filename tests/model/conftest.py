"""One model trained once per session on a small synthetic CRM, for behavioural tests."""

from __future__ import annotations

import pandas as pd
import pytest

from leadscore.crm.synth import generate_crm
from training.data import in_memory_frame
from training.train import TrainConfig, TrainingResult, fit_and_evaluate


@pytest.fixture(scope="session")
def trained() -> TrainingResult:
    crm = generate_crm(2000, seed=11, as_of=pd.Timestamp("2025-06-30", tz="UTC"))
    return fit_and_evaluate(
        in_memory_frame(crm.tables), "lead_scoring_v1", TrainConfig(seed=11), crm.truth
    )


@pytest.fixture(scope="session")
def test_rows(trained: TrainingResult) -> pd.DataFrame:
    """The trained model's test slice: real rows it never saw."""
    return trained.frame[trained.masks["test"]]
