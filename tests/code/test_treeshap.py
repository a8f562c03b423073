"""The numba TreeSHAP (:mod:`leadscore.model.treeshap`) gives LightGBM's ``pred_contrib``.

Exact to 1e-9 in log-odds on the tests' real model (categorical splits on five features)
and on hand-made boosters built to reach every branch LightGBM's predictor has: missing
types None, Zero and NaN with both default sides, categorical sets over more than one
32-bit word, NaN, negative, fractional, tiny and huge values, and categories never seen
in training. What the kernel does not support falls back to ``pred_contrib``.
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from leadscore.model import treeshap
from leadscore.model.scoring_model import Calibration, ScoringModel, SegmentModel, SegmentRule
from tests.serving_fixture import small_champion

TOLERANCE = 1e-9


def pred_contrib(booster: lgb.Booster, X: np.ndarray) -> np.ndarray:
    return np.asarray(booster.predict(X, pred_contrib=True, num_threads=1))


def kernel(booster: lgb.Booster, X: np.ndarray) -> np.ndarray:
    compiled = treeshap.compiled(booster)
    assert compiled is not None, "the kernel should support this booster"
    return compiled.contributions(X)


def assert_exact(booster: lgb.Booster, X: np.ndarray) -> None:
    ours, theirs = kernel(booster, X), pred_contrib(booster, X)
    assert ours.shape == theirs.shape
    assert np.abs(ours - theirs).max() < TOLERANCE


def odd_values(X: np.ndarray, categorical: list[int], seed: int) -> np.ndarray:
    """``X`` with a quarter of its cells replaced by what LightGBM treats specially."""
    rng = np.random.default_rng(seed)
    X = X.copy()
    specials = np.array([np.nan, 0.0, -0.0, 1e-40, -1e-40, -1.0, -0.5, -3.7, 1e12, 2.0**31])
    cells = rng.random(X.shape) < 0.25
    X[cells] = rng.choice(specials, cells.sum())
    # categories never seen in training, codes far beyond any bitset, fractional codes
    for j in categorical:
        rows = rng.random(len(X)) < 0.2
        X[rows, j] = rng.choice([57.0, 64.0, 300.0, 1.5, 2.9, 1e9], rows.sum())
    return X


@pytest.fixture(scope="module")
def champion() -> tuple[ScoringModel, np.ndarray]:
    model, frame = small_champion()
    return model, model.encode(frame)


def test_the_tests_model_has_categorical_splits(champion):
    """Guard for the cases below: the served model's kind of split is really exercised."""
    model, _ = champion
    dump = model.booster.dump_model()

    def kinds(node: dict) -> set[str]:
        if "leaf_value" in node:
            return set()
        return {node["decision_type"]} | kinds(node["left_child"]) | kinds(node["right_child"])

    assert {"==", "<="} <= set().union(*(kinds(t["tree_structure"]) for t in dump["tree_info"]))


def test_exact_on_the_tests_model_rows(champion):
    model, X = champion
    assert_exact(model.booster, X)


def test_exact_on_nan_unseen_categories_and_odd_values(champion):
    model, X = champion
    assert_exact(model.booster, odd_values(X[:1500], model.categorical_indices, seed=1))


def test_exact_on_unseen_categories_as_serving_encodes_them(champion):
    """An unseen category is NaN in the model matrix (:meth:`ScoringModel.encode_columns`)."""
    model, frame = small_champion()
    columns = {c: frame[c].tolist()[:300] for c in model.features}
    for name in model.categories:
        columns[name] = ["never-seen"] * 150 + columns[name][150:]
    X = model.encode_columns(columns)
    assert np.isnan(X[:150, model.categorical_indices]).all()
    assert_exact(model.booster, X)


def test_exact_on_random_rows_of_random_values(champion):
    model, X = champion
    rng = np.random.default_rng(2)
    noise = rng.normal(0, 3 * np.nanstd(X, axis=0) + 1, size=(500, X.shape[1]))
    assert_exact(model.booster, odd_values(noise, model.categorical_indices, seed=3))


def hand_made(missing: str, seed: int, **params: object) -> tuple[lgb.Booster, np.ndarray]:
    """A booster on two categorical features (3 and 70 categories: a set spans three
    32-bit words) and three numeric ones, with NaN or zeros as missing values."""
    rng = np.random.default_rng(seed)
    n = 3000
    X = np.column_stack(
        [
            rng.integers(0, 3, n),
            rng.integers(0, 70, n),
            rng.normal(0, 1, n),
            rng.exponential(1, n),
            rng.integers(-2, 3, n),
        ]
    ).astype(np.float64)
    logit = (
        np.array([1.0, -1.0, 0.2])[X[:, 0].astype(int)] + np.sin(X[:, 1]) + X[:, 2] - (X[:, 4] == 0)
    )
    if missing == "nan":
        X[rng.random(X.shape) < 0.15] = np.nan
    elif missing == "zero":
        X[:, 2:][rng.random((n, 3)) < 0.15] = 0.0
    y = (logit + rng.logistic(size=n) > 0).astype(int)
    base = {
        "objective": "binary",
        "num_leaves": 24,
        "min_data_in_leaf": 5,
        "min_data_per_group": 5,
        "cat_smooth": 1.0,
        "max_cat_to_onehot": 2,
        "seed": seed,
        "num_threads": 1,
        "verbose": -1,
        "deterministic": True,
    }
    data = lgb.Dataset(X, y, categorical_feature=[0, 1])
    return lgb.train({**base, **params}, data, num_boost_round=40), X


@pytest.mark.parametrize(
    ("missing", "params"),
    [
        ("nan", {}),
        ("zero", {"zero_as_missing": True}),
        ("nan", {"use_missing": False}),
        ("none", {}),
    ],
    ids=["missing-NaN", "missing-Zero", "missing-None", "no-missing"],
)
def test_exact_on_hand_made_boosters(missing: str, params: dict):
    booster, X = hand_made(missing, seed=len(missing), **params)
    dump = booster.dump_model()
    splits: list[dict] = []

    def collect(node: dict) -> None:
        if "leaf_value" not in node:
            splits.append(node)
            collect(node["left_child"])
            collect(node["right_child"])

    for tree in dump["tree_info"]:
        collect(tree["tree_structure"])
    assert any(s["decision_type"] == "==" for s in splits)
    assert any(
        s["decision_type"] == "==" and max(map(int, str(s["threshold"]).split("||"))) >= 32
        for s in splits
    ), "a categorical set beyond one 32-bit word"
    if missing != "none":
        assert (
            any(s["missing_type"] != "None" for s in splits) or params.get("use_missing") is False
        )
    assert_exact(booster, X)
    assert_exact(booster, odd_values(X, [0, 1], seed=5))


def test_contributions_add_up_to_the_raw_score(champion):
    model, X = champion
    X = odd_values(X[:500], model.categorical_indices, seed=7)
    np.testing.assert_allclose(
        kernel(model.booster, X).sum(axis=1),
        model.booster.predict(X, raw_score=True),
        rtol=0,
        atol=1e-9,
    )


def test_a_routed_model_explains_each_row_with_its_segment_booster(champion):
    """Each row through its route's compiled trees, as LightGBM's path does."""
    model, X = champion
    segment = lgb.train(
        {"objective": "binary", "num_leaves": 8, "verbose": -1, "num_threads": 1, "seed": 3},
        lgb.Dataset(X, (np.nan_to_num(X[:, 0]) % 2 == 0).astype(int)),
        num_boost_round=15,
    )
    channel = next(iter(model.categories))
    rule = SegmentRule(
        "channel", model.categories[channel][0], channel, category=model.categories[channel][0]
    )
    routed = ScoringModel(
        booster=model.booster,
        features=model.features,
        categories=model.categories,
        segment_models=(SegmentModel(rule, segment, Calibration("none")),),
    )
    X = odd_values(X[:1000], model.categorical_indices, seed=11)
    routes = routed.route(X)
    assert (routes == 0).any() and (routes != 0).any()
    ours = routed.contributions(X)
    theirs = ScoringModel(
        booster=model.booster,
        features=model.features,
        categories=model.categories,
        segment_models=routed.segment_models,
        shap_engine="lightgbm",
    ).contributions(X)
    assert np.abs(ours - theirs).max() < TOLERANCE
    assert np.abs(ours[routes == 0] - pred_contrib(segment, X[routes == 0])).max() < TOLERANCE


def test_linear_trees_fall_back_to_pred_contrib():
    """Not computed by the kernel: LightGBM answers, here with its own refusal."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 3))
    y = (X[:, 0] + rng.logistic(size=500) > 0).astype(int)
    booster = lgb.train(
        {"objective": "binary", "linear_tree": True, "verbose": -1, "num_threads": 1},
        lgb.Dataset(X, y),
        num_boost_round=5,
    )
    with pytest.raises(treeshap.Unsupported, match="linear"):
        treeshap.compile_booster(booster)
    assert treeshap.compiled(booster) is None
    with pytest.raises(lgb.basic.LightGBMError, match="linear trees"):
        treeshap.contributions(booster, X)


def test_multiclass_falls_back_to_pred_contrib():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    booster = lgb.train(
        {"objective": "multiclass", "num_class": 3, "verbose": -1, "num_threads": 1},
        lgb.Dataset(X, rng.integers(0, 3, 300)),
        num_boost_round=3,
    )
    assert treeshap.compiled(booster) is None
    np.testing.assert_array_equal(treeshap.contributions(booster, X), pred_contrib(booster, X))


def test_the_lightgbm_engine_never_uses_the_kernel(champion, monkeypatch):
    model, X = champion

    def refuse(booster: lgb.Booster) -> None:
        raise AssertionError("the kernel was used")

    monkeypatch.setattr(treeshap, "compiled", refuse)
    lightgbm_model = ScoringModel(
        booster=model.booster,
        features=model.features,
        categories=model.categories,
        shap_engine="lightgbm",
    )
    np.testing.assert_array_equal(
        lightgbm_model.contributions(X[:50]), pred_contrib(model.booster, X[:50])
    )


def test_a_booster_trained_further_is_compiled_again():
    """The cache holds a booster's trees as they were: one more tree compiles them again."""
    booster, X = hand_made("none", seed=4)
    booster = lgb.train(
        {"objective": "binary", "num_leaves": 8, "verbose": -1, "num_threads": 1},
        lgb.Dataset(X, (X[:, 2] > 0).astype(int), categorical_feature=[0, 1]),
        num_boost_round=3,
        keep_training_booster=True,
    )
    before = kernel(booster, X[:50])
    booster.update()  # one more tree on the same booster object
    after = kernel(booster, X[:50])
    assert np.abs(after - pred_contrib(booster, X[:50])).max() < TOLERANCE
    assert not np.allclose(after, before)


def test_a_matrix_of_the_wrong_width_is_refused(champion):
    model, X = champion
    with pytest.raises(ValueError, match="features"):
        kernel(model.booster, X[:, :-1])


def test_prepare_contributions_compiles_every_booster_once(monkeypatch):
    """What serving calls while loading a model: no request pays for compiling after it."""
    built: list[lgb.Booster] = []
    compile_booster = treeshap.compile_booster

    def counted(booster: lgb.Booster) -> treeshap.CompiledTrees:
        built.append(booster)
        return compile_booster(booster)

    monkeypatch.setattr(treeshap, "compile_booster", counted)
    boosters = [hand_made("none", seed=s)[0] for s in (21, 22)]
    rule = SegmentRule("x", "low", "f2", low=-1e9, high=0.0)
    routed = ScoringModel(
        booster=boosters[0],
        features=[f"f{j}" for j in range(5)],
        categories={},
        segment_models=(SegmentModel(rule, boosters[1], Calibration("none")),),
    )
    every = sorted(map(id, boosters))
    routed.prepare_contributions()
    assert sorted(map(id, built)) == every
    X = np.random.default_rng(0).normal(size=(200, 5))
    assert (routed.route(X) == 0).any()
    routed.contributions(X)
    assert sorted(map(id, built)) == every
