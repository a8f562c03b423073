"""Segment models on a synthetic CRM (issue 16): kept where a segment differs, else none.

The planted CRM relabels every deal by its region, and the large accounts (1,000 employees
or more) by other regions than the rest: a relation the global model, fitted to all
deals, blurs. Its control relabels all deals by the same regions, so no segment differs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from serving.schemas import Quality
from training.evaluate import per_deal_rows
from training.result import TrainingResult

TrainOn = Callable[..., TrainingResult]

LARGE = "size_band=1000+"


def relabelled(differ: bool):
    """Each deal won with probability 0.85 in two regions and 0.08 elsewhere; with
    ``differ`` the large accounts' two regions are two others."""

    def change(frame: pd.DataFrame) -> pd.DataFrame:
        deals = frame.groupby("deal_id")[["region", "employee_count"]].first()
        regions = sorted(frame["region"].dropna().unique())
        large = (deals["employee_count"] >= 1000).to_numpy() & differ
        good = np.where(
            large, deals["region"].isin(regions[2:4]), deals["region"].isin(regions[:2])
        )
        draw = np.random.default_rng(0).random(len(deals))
        won = pd.Series((draw < np.where(good, 0.85, 0.08)).astype("int8"), index=deals.index)
        frame["won"] = frame["deal_id"].map(won).to_numpy()
        return frame

    return change


@pytest.fixture(scope="module")
def planted(train_on: TrainOn) -> TrainingResult:
    return train_on(relabelled(differ=True))


def test_the_segment_with_its_own_relation_gets_its_own_model(planted: TrainingResult):
    block = planted.evaluation["segment_models"]
    assert block["kept"] == [LARGE]
    (large,) = [c for c in block["candidates"] if c["segment"] == LARGE]
    assert large["segment_minus_global"]["roc_auc"]["low"] > 0
    assert [m.rule.name for m in planted.model.segment_models] == [LARGE]
    # GET /model shows the routing table stored in the quality summary.
    quality = Quality.model_validate(planted.model.info["quality"])
    assert quality.segment_models is not None
    assert [k.segment for k in quality.segment_models.kept] == [LARGE]


def test_the_routed_model_ranks_the_segment_better_than_the_global_one(planted: TrainingResult):
    test = planted.frame[planted.masks["test"]]
    rows = test.iloc[per_deal_rows(test, planted.config.per_deal_age_days)["at_age"]]
    model = planted.model
    X = model.encode(rows)
    large = model.route(X) == 0
    y = rows["won"].to_numpy()[large]
    alone = replace(model, segment_models=())
    routed = roc_auc_score(y, model.probability(X)[large])
    assert routed > roc_auc_score(y, alone.probability(X)[large]) + 0.01
    # Deals outside the segment are scored by the global model, unchanged.
    np.testing.assert_array_equal(model.probability(X)[~large], alone.probability(X)[~large])


def test_a_crm_whose_segments_share_one_relation_keeps_no_segment_model(train_on: TrainOn):
    control = train_on(relabelled(differ=False))
    assert control.evaluation["segment_models"]["kept"] == []
    assert control.model.segment_models == ()


def test_the_synthetic_crm_trains_with_segment_candidates_judged(trained: TrainingResult):
    block = trained.evaluation["segment_models"]
    decisions = {c["decision"] for c in block["candidates"]}
    assert decisions <= {"kept", "not kept", "skipped"} and "not kept" in decisions
    assert [m.rule.name for m in trained.model.segment_models] == block["kept"]
