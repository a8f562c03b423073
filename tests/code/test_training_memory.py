"""The memory-lean training path trains exactly what the straightforward one did.

:func:`training.data.canonical` builds its frame a column at a time and hands its own frame
back, the time split's slices are views (:func:`training.data.slice_rows`), the logistic
regression baseline writes the one matrix it fits on a column at a time
(:class:`training.baselines.LogisticBaseline`), and
:func:`training.train.train_from_store` builds the canonical frame straight from the
join's chunks (:func:`training.data.canonical_from_parts`), never holding a raw frame;
``train-revival`` the same (:func:`training.revival.loss_frame_from_parts`, its slices
views): none of it may change the canonical frame, its fingerprint, the model or a figure
by one bit. The reference here is the code as it was (the chunks concatenated; a typed
copy, a concatenation, a sort; slices copied by boolean masks; the baseline's input copied
and fitted by scikit-learn's pipeline).
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
import scipy.sparse as sp
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

import training.baselines as baselines
import training.train as training_train
from leadscore.config import REVIVAL_HORIZON_DAYS, REVIVAL_WINDOW_DAYS
from leadscore.crm.attributes import Attribute
from leadscore.crm.synth import REVIVAL_HISTORY_DAYS, generate_crm
from leadscore.features.catalog import CATEGORICAL_FEATURES, revival_catalog
from leadscore.features.featurize import build_feature_sources, features_as_of, model_frame
from leadscore.features.store import TrainingParts, deal_chunks
from leadscore.timeutil import TS, as_utc
from training.baselines import MISSING
from training.data import (
    META_COLUMNS,
    canonical,
    canonical_from_parts,
    fingerprint,
    in_memory_frame,
    slice_rows,
)
from training.result import TrainConfig, TrainingResult
from training.revival import (
    META,
    as_loss_frame,
    fit_and_evaluate_revival,
    loss_frame_from_parts,
    revival_entities,
)
from training.train import fit_and_evaluate

AS_OF = pd.Timestamp("2025-06-30", tz="UTC")


def straightforward_lr_input(
    frame: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str]
) -> pd.DataFrame:
    """The logistic regression baseline's input as it was (every number copied)."""
    out = pd.DataFrame(index=frame.index)
    for c in numeric:
        out[c] = pd.to_numeric(frame[c], errors="coerce").astype("float64")
    for c in categorical:
        out[c] = frame[c].astype(object).where(frame[c].notna(), MISSING).astype(str)
    return out


class PipelineBaseline:
    """:func:`training.baselines.fit_logistic_regression` as it was: scikit-learn's
    pipeline (impute + indicators + scale, one-hot, LR) on the copied input: the reference."""

    def __init__(
        self, train: pd.DataFrame, numeric: Sequence[str], categorical: Sequence[str]
    ) -> None:
        observed = [c for c in numeric if pd.to_numeric(train[c], errors="coerce").notna().any()]
        prep = ColumnTransformer(
            [
                (
                    "num",
                    make_pipeline(
                        SimpleImputer(strategy="median", add_indicator=True), StandardScaler()
                    ),
                    observed,
                ),
                ("cat", OneHotEncoder(handle_unknown="ignore"), list(categorical)),
            ]
        )
        self.numeric, self.categorical = list(numeric), list(categorical)
        self.pipeline = make_pipeline(prep, LogisticRegression(C=1.0, max_iter=2000))
        self.pipeline.fit(
            straightforward_lr_input(train, numeric, categorical), train["won"].to_numpy()
        )

    def design(self, frame: pd.DataFrame) -> Any:
        return self.pipeline[0].transform(
            straightforward_lr_input(frame, self.numeric, self.categorical)
        )

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        X = straightforward_lr_input(frame, self.numeric, self.categorical)
        return self.pipeline.predict_proba(X)[:, 1]


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


def concatenated(parts: list[tuple[np.ndarray, pd.DataFrame]]) -> pd.DataFrame:
    """:func:`leadscore.features.store._historical` as ``train`` used it: the chunks put
    together in the entities' order (the reference)."""
    frame = pd.concat([p for _, p in parts], ignore_index=True, copy=False)
    order = np.concatenate([at for at, _ in parts])
    return frame.take(np.argsort(order, kind="stable")).reset_index(drop=True)


def straightforward_loss_frame(joined: pd.DataFrame) -> pd.DataFrame:
    """:func:`training.revival.as_loss_frame` as it was (a typed copy, a concatenation, a
    sort): the reference."""
    meta = joined[[c for c in META if c not in ("deal_id", "crm_deal_id")]].copy()
    crm = joined["deal_id"].astype(str)
    meta.insert(0, "crm_deal_id", crm.to_numpy())
    meta.insert(0, "deal_id", (crm + "#" + joined["cycle"].astype(str)).to_numpy())
    for c in (TS, "created_at", "closed_at"):
        meta[c] = pd.to_datetime(meta[c], utc=True)
    out = pd.concat([meta, model_frame(joined, catalog=revival_catalog())], axis=1)
    return out.sort_values(["closed_at", "deal_id", "snapshot_index"], kind="stable").reset_index(
        drop=True
    )


def chunked(frame: pd.DataFrame, size: int, seed: int) -> list[tuple[np.ndarray, pd.DataFrame]]:
    """``frame``'s rows as a chunked join hands them over: ranges of ``size`` deals
    (:func:`leadscore.features.store.deal_chunks`), each with its rows' positions, in a
    shuffled order of chunks."""
    chunks = deal_chunks(frame["deal_id"], size)
    picked = np.random.default_rng(seed).permutation(len(chunks))
    return [(chunks[i], frame.iloc[chunks[i]].reset_index(drop=True)) for i in picked]


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
    monkeypatch.setattr(training_train, "fit_logistic_regression", PipelineBaseline)
    reference = summary(fit_and_evaluate(shuffled, "lead_scoring_v1", config, crm.truth))
    assert lean.keys() == reference.keys()
    for key in lean:
        assert lean[key] == reference[key], key


def test_train_from_store_trains_on_the_canonical_frame_of_the_parts_none_held(
    shuffled, crm, monkeypatch, isolated_settings
):
    """``train`` gets the canonical frame of the join's chunks, built as they come (a chunk
    handed over is gone before the next one), and no chunk is alive while it trains."""
    rows = shuffled.reset_index(drop=True)
    parts = chunked(rows, 300, seed=2)
    reference = straightforward_canonical(concatenated(parts))
    alive = [weakref.ref(part) for _, part in parts]
    seen: dict[str, Any] = {}

    def fake_train(settings, frame, *args: Any, **kwargs: Any) -> dict:
        gc.collect()
        seen["parts alive"] = sum(ref() is not None for ref in alive)
        seen["canonical"] = canonical(frame) is frame
        pd.testing.assert_frame_equal(frame, reference, check_exact=True)
        return {}

    def fake_parts(settings, deals, progress=None) -> TrainingParts:
        def handed() -> Any:  # as the join hands them: one chunk alive at a time
            while parts:
                gc.collect()
                assert sum(ref() is not None for ref in alive) == len(parts), "a part is held"
                yield parts.pop(0)

        return TrainingParts(rows[list(META_COLUMNS)], handed(), "lead_scoring_v1")

    deals = crm.tables["deals"]
    monkeypatch.setattr(training_train, "stored_deals", lambda crm_dir: deals)
    monkeypatch.setattr(training_train, "training_parts", fake_parts)
    monkeypatch.setattr(training_train, "load_stored", lambda crm_dir, names: {})
    monkeypatch.setattr(training_train, "audit_tables", lambda tables, attributes: None)
    monkeypatch.setattr(training_train, "train", fake_train)
    training_train.train_from_store(isolated_settings)
    assert seen == {"parts alive": 0, "canonical": True}


@pytest.mark.parametrize("size", [0, 1, 97, 400])
def test_canonical_from_parts_is_canonical_of_the_concatenated_parts(shuffled, size):
    """Chunks of any size, in any order: the frame the concatenation gave, bit for bit."""
    rows = shuffled.reset_index(drop=True)
    parts = chunked(rows, size, seed=size)
    reference = straightforward_canonical(concatenated(parts))
    lean = canonical_from_parts(rows[list(META_COLUMNS)], iter(parts))
    pd.testing.assert_frame_equal(lean, reference, check_exact=True)
    assert list(lean.dtypes) == list(reference.dtypes)
    assert fingerprint(lean) == fingerprint(reference)
    assert canonical(lean) is lean  # handed back as it is to train


def test_parts_that_are_not_the_rows_asked_for_are_refused(shuffled):
    rows = shuffled.reset_index(drop=True)
    parts = chunked(rows, 300, seed=1)
    with pytest.raises(ValueError, match="in no part"):
        canonical_from_parts(rows, iter(parts[1:]))
    with pytest.raises(ValueError, match="two parts"):
        canonical_from_parts(rows, iter([*parts, parts[0]]))
    at, part = parts[0]
    other = part.assign(deal_id=part["deal_id"].astype(str) + "x")
    with pytest.raises(ValueError, match="deal_id"):
        canonical_from_parts(rows, iter([(at, other), *parts[1:]]))


def test_canonical_from_parts_lets_go_of_each_part_before_the_next(shuffled):
    """A part is not held while the next is joined: when the join makes a chunk, the
    previous one is gone (its frame and its columns' arrays)."""
    rows = shuffled.reset_index(drop=True)
    alive: list[weakref.ref] = []

    def parts():  # a join's chunks: each made when asked for, kept by the consumer only
        for at in deal_chunks(rows["deal_id"], 200):
            gc.collect()
            assert all(ref() is None for ref in alive), "a previous part is still held"
            part = rows.iloc[at].reset_index(drop=True)
            alive.append(weakref.ref(part))
            yield at, part
            del part

    canonical_from_parts(rows, parts())
    assert len(alive) > 3


@pytest.fixture(scope="module")
def revival_crm():
    return generate_crm(1500, seed=3, as_of=AS_OF, revival=True, history_days=REVIVAL_HISTORY_DAYS)


@pytest.fixture(scope="module")
def revival_joined(revival_crm) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The revival entities and their joined rows (Feast's frame, computed in memory)."""
    entities, _ = revival_entities(
        revival_crm.tables, AS_OF, REVIVAL_WINDOW_DAYS, REVIVAL_HORIZON_DAYS
    )
    sources = build_feature_sources(
        dict(revival_crm.tables), revival_window_days=REVIVAL_WINDOW_DAYS
    )
    joined = features_as_of(sources, entities)
    assert (joined["deal_id"].to_numpy() == entities["deal_id"].to_numpy()).all()
    return entities, joined


@pytest.mark.parametrize("size", [0, 50, 300])
def test_the_loss_frame_from_parts_is_the_straightforward_one(revival_joined, size):
    entities, joined = revival_joined
    parts = chunked(joined, size, seed=size)
    reference = straightforward_loss_frame(concatenated(parts))
    for lean in (loss_frame_from_parts(entities, iter(parts)), as_loss_frame(joined)):
        pd.testing.assert_frame_equal(lean, reference, check_exact=True)
        assert list(lean.dtypes) == list(reference.dtypes)
        assert fingerprint(lean) == fingerprint(reference)


def test_the_lean_revival_path_trains_the_same_model_bit_for_bit(
    revival_joined, revival_crm, monkeypatch
):
    import training.revival as revival

    entities, joined = revival_joined
    config = TrainConfig(seed=3)
    truth = revival_crm.revival_truth
    frame = loss_frame_from_parts(entities, iter(chunked(joined, 300, seed=1)))
    fitted_on: list[pd.DataFrame] = []
    fit = revival.fit_scoring_model

    def seen_fit(train: pd.DataFrame, *args: Any, **kwargs: Any) -> Any:
        fitted_on.append(train)
        return fit(train, *args, **kwargs)

    monkeypatch.setattr(revival, "fit_scoring_model", seen_fit)
    lean = summary(fit_and_evaluate_revival(frame, config, truth))
    # The training slice is a view of the frame's rows, not a copy.
    assert np.shares_memory(fitted_on[0]["won"].to_numpy(), frame["won"].to_numpy())
    monkeypatch.setattr(revival, "slice_rows", lambda frame, mask: frame[mask])
    monkeypatch.setattr(revival, "fit_logistic_regression", PipelineBaseline)
    reference_frame = straightforward_loss_frame(joined)
    reference = summary(fit_and_evaluate_revival(reference_frame, config, truth))
    assert lean.keys() == reference.keys()
    for key in lean:
        assert lean[key] == reference[key], key
    # Training read the slices' rows of the frame, never wrote them.
    pd.testing.assert_frame_equal(frame, reference_frame, check_exact=True)


def baseline_frames(crm_frame: pd.DataFrame) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """(train, test) pairs the baseline is compared on: the canonical frame's rows split in
    time, with a number missing in test only and one missing throughout training, an unseen
    category and a missing one; and a random frame over 8,192 rows (where numpy's sums
    change strategy) whose one-hot is wide enough for the pipeline's matrix to be sparse."""
    cut = int(len(crm_frame) * 0.7)
    train, test = crm_frame.iloc[:cut].copy(), crm_frame.iloc[cut:].copy()
    train["deal_amount_log"] = np.nan  # entirely missing in training: left out
    full = [c for c in train.columns if train[c].dtype == np.float64 and train[c].notna().all()]
    test.loc[test.index[::7], full[0]] = np.nan  # missing where training never was
    test.loc[test.index[::5], "channel"] = "a channel never seen"
    test.loc[test.index[::11], "industry"] = None
    rng = np.random.default_rng(4)
    n = 20_000
    wide = pd.DataFrame({f"x{i}": rng.normal(i, 1 + i, n) * 10.0**i for i in range(6)})
    wide.loc[rng.random(n) < 0.2, "x1"] = np.nan
    wide.loc[rng.random(n) < 0.01, "x4"] = np.nan
    wide["constant"] = 3.0
    wide["owner"] = rng.integers(0, 300, n).astype(str)
    wide.loc[rng.random(n) < 0.05, "owner"] = None
    wide["tier"] = rng.choice(np.array(["a", "b", None], dtype=object), n)
    wide["won"] = (rng.random(n) < 1 / (1 + np.exp(-wide["x0"].fillna(0)))).astype(np.int8)
    return {
        "canonical": (train, test),
        "random, sparse": (wide.iloc[:15_000], wide.iloc[15_000:]),
    }


def baseline_columns(frame: pd.DataFrame) -> tuple[list[str], list[str]]:
    if "owner" in frame:
        return [f"x{i}" for i in range(6)] + ["constant"], ["owner", "tier"]
    numeric = [f for f in model_feature_names() if f not in CATEGORICAL_FEATURES]
    return numeric, [f for f in model_feature_names() if f in CATEGORICAL_FEATURES]


def model_feature_names() -> list[str]:
    from leadscore.features.catalog import model_catalog

    return [f.name for f in model_catalog()]


@pytest.mark.parametrize("case", ["canonical", "random, sparse"])
def test_the_baseline_is_the_pipeline_bit_for_bit(shuffled, case):
    """The logistic regression baseline built column by column in one matrix is the
    scikit-learn pipeline it replaced: the same design matrix (values, layout, or CSR
    structure), coefficients, iterations and probabilities, by the bit."""
    train, test = baseline_frames(canonical(shuffled))[case]
    numeric, categorical = baseline_columns(train)
    lean = baselines.fit_logistic_regression(train, numeric, categorical)
    reference = PipelineBaseline(train, numeric, categorical)
    assert lean.sparse == (case == "random, sparse") == reference.pipeline[0].sparse_output_
    for frame in (train, test):
        mine, theirs = lean.design(frame), reference.design(frame)
        if lean.sparse:
            for a in ("data", "indices", "indptr", "shape"):
                assert np.array_equal(getattr(mine, a), getattr(theirs, a)), a
        else:
            assert not sp.issparse(theirs) and mine.flags.c_contiguous
            assert mine.shape == theirs.shape
            assert mine.tobytes() == np.ascontiguousarray(theirs).tobytes()
    fitted = reference.pipeline[-1]
    assert lean.model.coef_.tobytes() == fitted.coef_.tobytes()
    assert lean.model.intercept_.tobytes() == fitted.intercept_.tobytes()
    assert list(lean.model.n_iter_) == list(fitted.n_iter_)
    expected = reference.predict(test).tobytes()
    assert lean.predict(test).tobytes() == expected


def test_the_baselines_matrix_is_the_only_copy_of_the_numbers(shuffled):
    """What the fit holds beside the frame: the design matrix (rows x columns x 8 bytes)
    and a column or two at a time, not the pipeline's copies (about 2.2 KB a row)."""
    import tracemalloc

    train = canonical(shuffled)
    numeric, categorical = baseline_columns(train)
    baselines.fit_logistic_regression(train, numeric, categorical)  # imports, caches
    tracemalloc.start()
    try:
        lean = baselines.fit_logistic_regression(train, numeric, categorical)
        _, lean_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        PipelineBaseline(train, numeric, categorical)
        _, pipeline_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    matrix = lean.design(train).nbytes
    print(
        f"peak over the matrix: {lean_peak / matrix:.3f}, the pipeline's {pipeline_peak / matrix:.3f}"
    )
    assert lean_peak < 1.25 * matrix
    assert lean_peak < 0.5 * pipeline_peak
