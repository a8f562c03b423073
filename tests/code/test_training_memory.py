"""The memory-lean training path trains exactly what the straightforward one did.

:func:`training.data.canonical` builds its frame a column at a time and hands its own frame
back, the time split's slices are views (:func:`training.data.slice_rows`), the logistic
regression baseline reads the numbers without copying them, and
:func:`training.train.train_from_store` lets go of the raw frame before training: none of
it may change the canonical frame, its fingerprint, the model or a figure by one bit.
The reference here is the code as it was (a typed copy, a concatenation, a sort; slices
copied by boolean masks; the baseline's input copied).
"""

from __future__ import annotations

import gc
import json
import pickle
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytest

import training.baselines as baselines
import training.train as training_train
from leadscore.crm.attributes import Attribute
from leadscore.crm.synth import generate_crm
from leadscore.features.featurize import model_frame
from leadscore.features.store import TrainingFrame
from leadscore.timeutil import TS, as_utc
from training.baselines import MISSING
from training.data import META_COLUMNS, canonical, fingerprint, in_memory_frame, slice_rows
from training.result import TrainConfig, TrainingResult
from training.train import fit_and_evaluate

AS_OF = pd.Timestamp("2025-06-30", tz="UTC")


def straightforward_lr_input(
    frame: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str]
) -> pd.DataFrame:
    """:func:`training.baselines._lr_input` as it was (every number copied): the reference."""
    out = pd.DataFrame(index=frame.index)
    for c in numeric:
        out[c] = pd.to_numeric(frame[c], errors="coerce").astype("float64")
    for c in categorical:
        out[c] = frame[c].astype(object).where(frame[c].notna(), MISSING).astype(str)
    return out


def straightforward_canonical(
    frame: pd.DataFrame, attributes: Sequence[Attribute] = ()
) -> pd.DataFrame:
    """:func:`training.data.canonical` as it was before it was made lean: the reference."""
    meta = frame[list(META_COLUMNS)].copy()
    for c in (TS, "created_at", "closed_at"):
        meta[c] = as_utc(meta[c])
    for c in ("deal_id", "account_id", "owner_id"):
        meta[c] = meta[c].astype(str)
    meta["snapshot_index"] = meta["snapshot_index"].astype(np.int32)
    meta["won"] = meta["won"].astype(np.int8)
    out = pd.concat([meta, model_frame(frame, attributes)], axis=1)
    return out.sort_values(["closed_at", "deal_id", "snapshot_index"], kind="stable").reset_index(
        drop=True
    )


@pytest.fixture(scope="module")
def crm():
    return generate_crm(1500, seed=5, as_of=AS_OF)


@pytest.fixture(scope="module")
def shuffled(crm) -> pd.DataFrame:
    """The frame in another row order, with keys and times typed as a raw export might
    have them (numbers for ids, naive times), so canonical() has work to do."""
    frame = in_memory_frame(crm.tables).sample(frac=1.0, random_state=7)
    frame["snapshot_index"] = frame["snapshot_index"].astype(np.int64)
    frame["created_at"] = frame["created_at"].dt.tz_localize(None)
    frame["won"] = frame["won"].astype(bool)
    return frame


def test_canonical_is_the_straightforward_frame_value_for_value(shuffled):
    lean, reference = canonical(shuffled), straightforward_canonical(shuffled)
    pd.testing.assert_frame_equal(lean, reference, check_exact=True)
    assert list(lean.dtypes) == list(reference.dtypes)
    assert fingerprint(lean) == fingerprint(reference)


def test_canonical_hands_back_only_its_own_frame(shuffled):
    frame = canonical(shuffled)
    assert canonical(frame) is frame
    copied = frame.copy()
    assert canonical(copied) is not copied
    pd.testing.assert_frame_equal(canonical(copied), frame, check_exact=True)


def test_a_run_of_rows_is_a_view_and_any_mask_gives_the_masked_rows(shuffled):
    frame = canonical(shuffled)
    run = np.zeros(len(frame), dtype=bool)
    run[100:900] = True
    scattered = np.arange(len(frame)) % 3 == 0
    for mask in (run, scattered, np.zeros(len(frame), dtype=bool)):
        pd.testing.assert_frame_equal(slice_rows(frame, mask), frame[mask], check_exact=True)
    assert np.shares_memory(slice_rows(frame, run)["won"].to_numpy(), frame["won"].to_numpy())


def summary(result: TrainingResult) -> dict[str, Any]:
    """Everything a trained result carries that the memory work could have changed."""
    model = result.model
    return {
        "booster": model.booster.model_to_string(),
        "calibration": pickle.dumps(model.calibration),
        "dormant_calibration": pickle.dumps(model.dormant_calibration),
        "segments": [
            (s.rule.name, s.booster.model_to_string(), pickle.dumps(s.calibration))
            for s in model.segment_models
        ],
        "reason_stats": json.dumps(model.reason_stats, sort_keys=True, default=str),
        "info": json.dumps(model.info, sort_keys=True, default=str),
        "evaluation": json.dumps(result.evaluation, sort_keys=True, default=str),
        "preds": {k: v.tobytes() for k, v in result.test_predictions.items()},
        "fingerprint": fingerprint(result.frame),
    }


def test_the_lean_path_trains_the_same_model_bit_for_bit(shuffled, crm, monkeypatch):
    config = TrainConfig(seed=3)
    lean = summary(fit_and_evaluate(shuffled, "lead_scoring_v1", config, crm.truth))
    monkeypatch.setattr(training_train, "canonical", straightforward_canonical)
    monkeypatch.setattr(training_train, "slice_rows", lambda frame, mask: frame[mask])
    monkeypatch.setattr(baselines, "_lr_input", straightforward_lr_input)
    reference = summary(fit_and_evaluate(shuffled, "lead_scoring_v1", config, crm.truth))
    assert lean.keys() == reference.keys()
    for key in lean:
        assert lean[key] == reference[key], key


def test_train_from_store_lets_go_of_the_raw_frame_before_training(
    shuffled, crm, monkeypatch, isolated_settings
):
    raw = shuffled.copy()
    alive = weakref.ref(raw)
    seen: dict[str, Any] = {}

    def fake_train(settings, frame, *args: Any, **kwargs: Any) -> dict:
        gc.collect()
        seen["raw alive"] = alive() is not None
        seen["canonical"] = canonical(frame) is frame
        return {}

    def fake_frame(settings, deals, progress=None) -> TrainingFrame:
        return TrainingFrame(frame=holder.pop(), feature_service="lead_scoring_v1")

    holder = [raw]
    del raw
    deals = crm.tables["deals"]
    monkeypatch.setattr(training_train, "stored_deals", lambda crm_dir: deals)
    monkeypatch.setattr(training_train, "training_frame", fake_frame)
    monkeypatch.setattr(training_train, "load_stored", lambda crm_dir, names: {})
    monkeypatch.setattr(training_train, "audit_tables", lambda tables, attributes: None)
    monkeypatch.setattr(training_train, "train", fake_train)
    training_train.train_from_store(isolated_settings)
    assert seen == {"raw alive": False, "canonical": True}
