"""Evaluation that does not flatter: per-deal figures expose what per-snapshot ones hide.

Two models trained with the production recipe on a changed synthetic CRM:

* a *deal-age leak*: outcomes are drawn at random (nothing at creation predicts them),
  but every lost deal is closed 200 days after creation by a rule, as some real exports
  date their losses. Old snapshots are then all lost, so deal age predicts the label
  per snapshot; at creation every deal is 0 days old and the per-deal figure falls to
  chance. Per-snapshot metrics alone would report a good model. (The export has no
  accounts or owners: their track records grow with calendar time, and a time split of
  such data sets old losses beside young wins, which would let creation-time features
  tell them apart too; that is a separate confound, not the one under test.)
* *shuffled labels*: a useless model. Its quality summary (what the page and
  ``GET /model`` show) must not call it better than either baseline.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leadscore.crm.synth import generate_crm
from training.data import in_memory_frame
from training.result import TrainConfig
from training.train import fit_and_evaluate

AS_OF = pd.Timestamp("2025-06-30", tz="UTC")
LOST_AFTER = pd.Timedelta(days=200)


def _deal_age_leak(seed: int = 4) -> pd.DataFrame:
    """The training frame of a CRM whose outcomes are coin flips dated by a rule."""
    crm = generate_crm(2000, seed=seed, as_of=AS_OF)
    tables = {k: v.copy() for k, v in crm.tables.items()}
    deals = tables["deals"]
    closed = deals["status"].isin(["won", "lost"]).to_numpy()
    rng = np.random.default_rng(seed)
    won = rng.random(len(deals)) < 0.35
    deals.loc[closed, "status"] = np.where(won[closed], "won", "lost")
    lost = (deals["status"] == "lost").to_numpy()
    # Won deals keep their (mostly short) cycle; every loss is recorded 200 days in.
    deals.loc[lost, "closed_at"] = deals.loc[lost, "created_at"] + LOST_AFTER
    # Track records (account and owner win rates so far) grow with calendar time, and a
    # time split picks old losses beside young wins: without them nothing known at
    # creation can tell the outcome (a partial export: no accounts, no owners).
    deals["account_id"] = None
    deals["owner_id"] = None
    del tables["accounts"]
    keep = deals["closed_at"].isna() | (deals["closed_at"] <= AS_OF)
    tables["deals"] = deals[keep]
    ids = set(tables["deals"]["deal_id"])
    for name in ("deal_contacts", "activities", "stage_history"):
        close = tables["deals"].set_index("deal_id")["closed_at"]
        t = tables[name]
        t = t[t["deal_id"].isin(ids)]
        when = {"activities": "occurred_at", "stage_history": "entered_at"}.get(name, "added_at")
        t = t[t[when] <= t["deal_id"].map(close).fillna(AS_OF)]
        if name == "stage_history":  # no "closed" stage ahead of the new close dates
            t = t[t["stage"] != "closed"]
        tables[name] = t
    return in_memory_frame(tables)


@pytest.fixture(scope="module")
def leaky():
    frame = _deal_age_leak()
    return fit_and_evaluate(frame, "lead_scoring_v1", TrainConfig(seed=4)).evaluation


def test_a_deal_age_leak_flatters_per_snapshot_and_per_deal_at_creation_exposes_it(leaky):
    per_snapshot = leaky["test"]["roc_auc"]
    creation = leaky["per_deal"]["at_creation"]["model"]
    assert per_snapshot >= 0.72, per_snapshot  # the flattering number
    # At creation the label is a coin flip: chance is inside the interval, and the
    # figure is far below the per-snapshot one.
    ci = creation["ci95"]["roc_auc"]
    assert ci["low"] <= 0.5 <= ci["high"], creation
    assert creation["roc_auc"] < per_snapshot - 0.2


def test_a_model_trained_on_shuffled_labels_is_never_called_better_than_a_baseline(train_on):
    def shuffle_labels(frame: pd.DataFrame) -> pd.DataFrame:
        deals = frame.drop_duplicates("deal_id")[["deal_id", "won"]]
        flipped = np.random.default_rng(0).permutation(deals["won"].to_numpy())
        frame["won"] = frame["deal_id"].map(dict(zip(deals["deal_id"], flipped, strict=True)))
        return frame

    useless = train_on(shuffle_labels)
    quality = useless.model.info["quality"]
    for name, baseline in quality["baselines"].items():
        for block in ("at_creation", "at_age"):
            assert baseline[block]["verdict"] != "better", (name, block, baseline[block])
    creation = quality["per_deal"]["at_creation"]["roc_auc"]
    assert creation["low"] <= 0.5 <= creation["high"], creation
