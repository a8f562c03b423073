"""Exact TreeSHAP for LightGBM boosters, several times faster than ``pred_contrib`` (issue 14).

Why it exists: ranking deals with reasons spent about half its CPU in
``booster.predict(X, pred_contrib=True)``, LightGBM's recursive TreeSHAP (about 1 ms of
CPU per deal for the served model). No faster exact package runs on our model: it has
categorical splits, which ``treeshap`` (Rust), fasttreeshap and woodelf reject. This
module computes the *same* numbers (path-dependent TreeSHAP on the trees' data counts:
``max |difference| < 1e-9`` in log-odds, checked by ``tests/code/test_treeshap.py``) with
Fast TreeSHAP v2 (Yang 2021, arXiv:2109.09847):

* once per booster (:func:`compile_booster`), each leaf's path is reduced to its ``d``
  unique features, each with its zero fraction ``z`` (the product of the data-count
  ratios of its edges on the path). A deal's contribution from the leaf depends only on
  which of those features the deal satisfies (a bit pattern ``P``): for a feature not in
  ``P`` it is ``-v * H(P)``, for one in ``P`` it is ``v * (1 - z) / z * H(P without it)``,
  where ``H(P) = sum over S subset of P of |S|! (d-1-|S|)! / d! * prod of z outside S``.
  ``v * H`` is tabulated for all ``2**d`` patterns of every leaf (a subset-sum transform;
  the served model has at most 11 features on a path and about half a million entries,
  4 MB);
* per deal (:func:`_shap_rows`), each tree's nodes are evaluated once, in split order
  (a parent precedes its children), carrying the set of the tree's features whose
  condition the deal failed on the way down; each leaf then reads its pattern and adds
  ``d`` table entries. That is O(leaves x d) per tree against the recursion's
  O(leaves x d^2), with no allocation.

Splits are decided exactly as LightGBM's predictor does: ``<=`` with ``missing_type``
None (NaN becomes 0), Zero (0 and NaN take the default side) and NaN (NaN takes it);
categorical ``==`` splits by bitset, NaN, negatives and categories outside the set to the
right; values within ``1e-35`` of zero read as zero (LightGBM drops them from a dense row).

What the kernel does not cover (linear trees, multiclass boosters, a zero data count, a
tree with more than 63 split features or a path whose table would be too large) raises
:class:`Unsupported` in :func:`compile_booster`; :func:`contributions` then uses
``pred_contrib`` for that booster, and ``engine="lightgbm"`` always does. The kernel
runs on the calling thread with the GIL released, so the caller's thread pool
(:meth:`leadscore.model.explain.Explainer.explain`) splits the cores, as it does for
LightGBM at one thread.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

import lightgbm as lgb
import numba
import numpy as np

log = logging.getLogger(__name__)

#: ``auto``: this module's kernel where it supports the booster, else ``pred_contrib``;
#: ``lightgbm``: always ``pred_contrib``.
ShapEngine = Literal["auto", "lightgbm"]
#: LightGBM's ``kZeroThreshold``: values this close to zero are zero to its predictor.
ZERO_THRESHOLD = 1e-35
#: Most unique features on one leaf's path (its table has ``2**d`` entries).
MAX_PATH_FEATURES = 20
#: Most table entries for one booster (float64): 64 MiB.
MAX_TABLE_ENTRIES = 1 << 23
#: Rows the kernel takes through one tree at a time: the tree's tables (tens of KB) then
#: stay in cache across them, and the block's output rows too (a row at a time through
#: all trees ran 5-10x slower, each leaf's table read from memory).
BLOCK_ROWS = 128
#: Bits of the per-tree "failed features" set (an int64).
MAX_TREE_FEATURES = 63

_NUMERICAL, _CATEGORICAL = 0, 1


class Unsupported(ValueError):
    """The booster uses something the kernel does not compute: use ``pred_contrib``."""


@dataclass(frozen=True)
class CompiledTrees:
    """A booster's trees as flat arrays (see the module docstring for the algorithm).

    Nodes and leaves of all trees are numbered globally, tree by tree (``tree_node_start``,
    ``tree_leaf_start``); a child is a tree-local node index, or ``~leaf`` (tree-local).
    """

    n_features: int
    #: Sum of the trees' expected values, added in tree order as LightGBM does.
    expected_value: float
    tree_node_start: np.ndarray
    tree_leaf_start: np.ndarray
    node_feature: np.ndarray
    node_threshold: np.ndarray
    node_kind: np.ndarray
    #: Where a numerical node sends NaN, and zero (LightGBM's missing types folded in).
    node_nan_left: np.ndarray
    node_zero_left: np.ndarray
    node_cat_start: np.ndarray
    node_cat_end: np.ndarray
    cat_bits: np.ndarray
    node_left: np.ndarray
    node_right: np.ndarray
    #: The node's feature as a bit of its tree's feature set.
    node_bit: np.ndarray
    #: Each leaf's unique path features: global id, tree bit and ``(1 - z) / z``.
    leaf_feature_start: np.ndarray
    leaf_feature: np.ndarray
    leaf_bit: np.ndarray
    leaf_ratio: np.ndarray
    #: Each leaf's ``v * H(P)`` for its ``2**d`` patterns.
    leaf_table_start: np.ndarray
    table: np.ndarray

    def arrays(self) -> tuple[np.ndarray, ...]:
        return (
            self.tree_node_start,
            self.tree_leaf_start,
            self.node_feature,
            self.node_threshold,
            self.node_kind,
            self.node_nan_left,
            self.node_zero_left,
            self.node_cat_start,
            self.node_cat_end,
            self.cat_bits,
            self.node_left,
            self.node_right,
            self.node_bit,
            self.leaf_feature_start,
            self.leaf_feature,
            self.leaf_bit,
            self.leaf_ratio,
            self.leaf_table_start,
            self.table,
        )

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """``pred_contrib`` of the rows of ``X``: one column per feature, the expected value last."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(
                f"expected a matrix of {self.n_features} features, got shape {X.shape}"
            )
        out = np.zeros((len(X), self.n_features + 1))
        out[:, -1] = self.expected_value
        if len(X):
            _shap_rows(X, out, *self.arrays())
        return out


def _count(node: Mapping[str, Any]) -> int:
    return int(node["leaf_count"] if "leaf_value" in node else node["internal_count"])


def _bitset(categories: str) -> np.ndarray:
    """LightGBM's category bitset (32-bit words) of a dumped ``"1||4||7"`` threshold."""
    codes = [int(c) for c in categories.split("||")]
    bits = np.zeros(max(codes) // 32 + 1, dtype=np.uint32)
    for c in codes:
        bits[c // 32] |= np.uint32(1 << (c % 32))
    return bits


def _missing_sides(node: Mapping[str, Any]) -> tuple[bool, bool]:
    """Where a numerical split sends NaN and zero, as LightGBM's ``NumericalDecision``:
    missing type None reads NaN as 0 and compares; Zero sends NaN and 0 the default way;
    NaN sends NaN the default way and compares 0."""
    missing = node["missing_type"]
    if missing not in ("None", "Zero", "NaN"):
        raise Unsupported(f"missing type {missing!r}")
    default_left = bool(node["default_left"])
    zero_compared = 0.0 <= float(node["threshold"])
    nan_left = zero_compared if missing == "None" else default_left
    zero_left = default_left if missing == "Zero" else zero_compared
    return nan_left, zero_left


def compile_booster(booster: lgb.Booster) -> CompiledTrees:
    """Flatten and tabulate ``booster``'s trees (the ones ``predict`` uses by default).

    Raises :class:`Unsupported` for what the kernel does not compute exactly.
    """
    dump = booster.dump_model()
    if dump.get("num_tree_per_iteration", 1) != 1 or dump.get("num_class", 1) != 1:
        raise Unsupported("more than one tree per iteration (multiclass)")
    n_features = int(dump["max_feature_idx"]) + 1
    nodes: dict[str, list[Any]] = {k: [] for k in _NODE_FIELDS}
    leaves: dict[str, list[Any]] = {k: [] for k in _LEAF_FIELDS}
    cat_bits: list[np.ndarray] = []
    cat_words = 0
    tree_node_start, tree_leaf_start = [0], [0]
    path_features: list[list[tuple[int, int, float]]] = []
    leaf_values: list[float] = []
    expected = 0.0
    for tree in dump["tree_info"]:
        root = tree["tree_structure"]
        if "leaf_value" in root:  # a single leaf: only the expected value
            expected += float(root["leaf_value"])
            tree_node_start.append(tree_node_start[-1])
            tree_leaf_start.append(tree_leaf_start[-1])
            continue
        n_leaves = int(tree["num_leaves"])
        n_nodes = n_leaves - 1
        local: dict[str, list[Any]] = {k: [None] * n_nodes for k in _NODE_FIELDS}
        tree_leaves: list[tuple[float, int, list[tuple[int, int, float]]] | None] = [
            None
        ] * n_leaves
        bits: dict[int, int] = {}
        stack: list[tuple[Mapping[str, Any], dict[int, tuple[int, float]]]] = [(root, {})]
        while stack:
            node, path = stack.pop()
            if "leaf_value" in node:
                if "leaf_coeff" in node or "leaf_features" in node:
                    raise Unsupported("linear trees")
                tree_leaves[int(node["leaf_index"])] = (
                    float(node["leaf_value"]),
                    _count(node),
                    [(f, b, z) for f, (b, z) in path.items()],
                )
                continue
            k = int(node["split_index"])
            feature = int(node["split_feature"])
            if feature not in bits:
                if len(bits) == MAX_TREE_FEATURES:
                    raise Unsupported(f"a tree splits on more than {MAX_TREE_FEATURES} features")
                bits[feature] = len(bits)
            count = _count(node)
            if count <= 0 or _count(node["left_child"]) <= 0 or _count(node["right_child"]) <= 0:
                raise Unsupported("a node without data (zero count)")
            local["feature"][k] = feature
            local["bit"][k] = bits[feature]
            if node["decision_type"] == "<=":
                local["kind"][k] = _NUMERICAL
                local["threshold"][k] = float(node["threshold"])
                local["nan_left"][k], local["zero_left"][k] = _missing_sides(node)
                local["cat_start"][k] = local["cat_end"][k] = 0
            elif node["decision_type"] == "==":
                words = _bitset(str(node["threshold"]))
                local["kind"][k] = _CATEGORICAL
                local["threshold"][k] = 0.0
                local["nan_left"][k] = local["zero_left"][k] = False  # unused
                local["cat_start"][k] = cat_words
                cat_words += len(words)
                local["cat_end"][k] = cat_words
                cat_bits.append(words)
            else:
                raise Unsupported(f"decision type {node['decision_type']!r}")
            for side in ("left", "right"):
                child = node[f"{side}_child"]
                local[side][k] = (
                    ~int(child["leaf_index"])
                    if "leaf_value" in child
                    else int(child["split_index"])
                )
                z = _count(child) / count
                bit, z0 = path.get(feature, (bits[feature], 1.0))
                stack.append((child, {**path, feature: (bit, z0 * z)}))
        for key in _NODE_FIELDS:
            nodes[key].extend(local[key])
        total = _count(root)
        tree_expected = 0.0
        for leaf in tree_leaves:
            value, count, features = cast(tuple[float, int, list[tuple[int, int, float]]], leaf)
            tree_expected += (count / total) * value
            if len(features) > MAX_PATH_FEATURES:
                raise Unsupported(f"a path with more than {MAX_PATH_FEATURES} features")
            leaf_values.append(value)
            path_features.append(features)
        expected += tree_expected
        tree_node_start.append(tree_node_start[-1] + n_nodes)
        tree_leaf_start.append(tree_leaf_start[-1] + n_leaves)

    sizes = np.array([1 << len(f) for f in path_features], dtype=np.int64)
    if sizes.sum() > MAX_TABLE_ENTRIES:
        raise Unsupported(f"tables of {sizes.sum():,} entries (limit {MAX_TABLE_ENTRIES:,})")
    for features in path_features:
        for feature, bit, fraction in features:
            leaves["feature"].append(feature)
            leaves["bit"].append(bit)
            leaves["z"].append(fraction)
    leaf_feature_start = np.zeros(len(path_features) + 1, dtype=np.int64)
    np.cumsum([len(f) for f in path_features], out=leaf_feature_start[1:])
    leaf_table_start = np.zeros(len(path_features) + 1, dtype=np.int64)
    np.cumsum(sizes, out=leaf_table_start[1:])
    zero_fractions = np.array(leaves["z"], dtype=np.float64)
    table = np.empty(int(leaf_table_start[-1]))
    _tabulate(
        np.array(leaf_values, dtype=np.float64),
        leaf_feature_start,
        zero_fractions,
        leaf_table_start,
        table,
    )
    return CompiledTrees(
        n_features=n_features,
        expected_value=expected,
        tree_node_start=np.array(tree_node_start, dtype=np.int64),
        tree_leaf_start=np.array(tree_leaf_start, dtype=np.int64),
        node_feature=np.array(nodes["feature"], dtype=np.int64),
        node_threshold=np.array(nodes["threshold"], dtype=np.float64),
        node_kind=np.array(nodes["kind"], dtype=np.int8),
        node_nan_left=np.array(nodes["nan_left"], dtype=np.bool_),
        node_zero_left=np.array(nodes["zero_left"], dtype=np.bool_),
        node_cat_start=np.array(nodes["cat_start"], dtype=np.int64),
        node_cat_end=np.array(nodes["cat_end"], dtype=np.int64),
        cat_bits=np.concatenate(cat_bits) if cat_bits else np.zeros(1, dtype=np.uint32),
        node_left=np.array(nodes["left"], dtype=np.int64),
        node_right=np.array(nodes["right"], dtype=np.int64),
        node_bit=np.array(nodes["bit"], dtype=np.int64),
        leaf_feature_start=leaf_feature_start,
        leaf_feature=np.array(leaves["feature"], dtype=np.int64),
        leaf_bit=np.array(leaves["bit"], dtype=np.int64),
        leaf_ratio=(1.0 - zero_fractions) / zero_fractions,
        leaf_table_start=leaf_table_start,
        table=table,
    )


_NODE_FIELDS = (
    "feature",
    "threshold",
    "kind",
    "nan_left",
    "zero_left",
    "cat_start",
    "cat_end",
    "left",
    "right",
    "bit",
)
_LEAF_FIELDS = ("feature", "bit", "z")


@numba.njit(cache=True)
def _tabulate(
    values: np.ndarray,
    feature_start: np.ndarray,
    z: np.ndarray,
    table_start: np.ndarray,
    table: np.ndarray,
) -> None:
    """Each leaf's ``v * H(P)`` for every pattern ``P`` of its ``d`` path features.

    ``H(P) = sum over S subset of P of w(|S|) * prod_{j not in S} z_j`` with the Shapley
    weight ``w(k) = k! (d-1-k)! / d!``: the terms, then a subset-sum (zeta) transform.
    All terms are positive, so the sums lose nothing to cancellation.
    """
    for leaf in range(len(values)):
        s0 = feature_start[leaf]
        d = feature_start[leaf + 1] - s0
        base = table_start[leaf]
        weights = np.empty(d)
        for k in range(d):  # w(k) = 1 / (d * C(d-1, k))
            c = 1.0
            for m in range(k):
                c = c * (d - 1 - m) / (m + 1)
            weights[k] = 1.0 / (d * c)
        for s in range(1 << d):
            term = 1.0
            size = 0
            for j in range(d):
                if (s >> j) & 1:
                    size += 1
                else:
                    term *= z[s0 + j]
            table[base + s] = weights[size] * term
        for j in range(d):
            bit = 1 << j
            for s in range(1 << d):
                if s & bit:
                    table[base + s] += table[base + (s ^ bit)]
        for s in range(1 << d):
            table[base + s] *= values[leaf]


@numba.njit(cache=True, nogil=True)
def _shap_rows(
    X: np.ndarray,
    out: np.ndarray,
    tree_node_start: np.ndarray,
    tree_leaf_start: np.ndarray,
    node_feature: np.ndarray,
    node_threshold: np.ndarray,
    node_kind: np.ndarray,
    node_nan_left: np.ndarray,
    node_zero_left: np.ndarray,
    node_cat_start: np.ndarray,
    node_cat_end: np.ndarray,
    cat_bits: np.ndarray,
    node_left: np.ndarray,
    node_right: np.ndarray,
    node_bit: np.ndarray,
    leaf_feature_start: np.ndarray,
    leaf_feature: np.ndarray,
    leaf_bit: np.ndarray,
    leaf_ratio: np.ndarray,
    leaf_table_start: np.ndarray,
    table: np.ndarray,
) -> None:
    """Add each row's TreeSHAP values to ``out`` (expected value already in its last column)."""
    n_trees = len(tree_node_start) - 1
    most_nodes, most_leaves = 1, 1
    for t in range(n_trees):
        most_nodes = max(most_nodes, tree_node_start[t + 1] - tree_node_start[t])
        most_leaves = max(most_leaves, tree_leaf_start[t + 1] - tree_leaf_start[t])
    failed = np.zeros(most_nodes, dtype=np.int64)  # features failed above each node
    leaf_failed = np.zeros(most_leaves, dtype=np.int64)
    for b0 in range(0, X.shape[0], BLOCK_ROWS):
        b1 = min(b0 + BLOCK_ROWS, X.shape[0])
        for t in range(n_trees):  # a tree for a block of rows: its tables stay in cache
            n0 = tree_node_start[t]
            n_nodes = tree_node_start[t + 1] - n0
            if n_nodes == 0:
                continue
            l0 = tree_leaf_start[t]
            n_leaves = tree_leaf_start[t + 1] - l0
            for r in range(b0, b1):
                x = X[r]
                phi = out[r]
                failed[0] = 0
                for k in range(n_nodes):  # split order: a parent precedes its children
                    g = n0 + k
                    bit = np.int64(1) << node_bit[g]
                    to_left = failed[k]
                    to_right = failed[k]
                    # LightGBM's CategoricalDecision / NumericalDecision, inline (as a
                    # function it cost a third of the kernel's time)
                    value = x[node_feature[g]]
                    if node_kind[g] == _CATEGORICAL:
                        # NaN, negatives (static_cast<int> truncates toward zero; beyond
                        # int range it is negative) and codes outside the set go right
                        left = False
                        if value > -1.0 and value < 2147483648.0:
                            code = int(value)
                            word = node_cat_start[g] + (code >> 5)
                            if word < node_cat_end[g]:
                                left = (cat_bits[word] >> (code & 31)) & 1 != 0
                    else:
                        # NaN and zero (within ZERO_THRESHOLD: LightGBM's dense rows drop
                        # such values) go where _missing_sides says, the rest by <=
                        left = value <= node_threshold[g]
                        if abs(value) <= ZERO_THRESHOLD:
                            left = node_zero_left[g]
                        if value != value:
                            left = node_nan_left[g]
                    if left:
                        to_right |= bit
                    else:
                        to_left |= bit
                    child = node_left[g]
                    if child >= 0:
                        failed[child] = to_left
                    else:
                        leaf_failed[~child] = to_left
                    child = node_right[g]
                    if child >= 0:
                        failed[child] = to_right
                    else:
                        leaf_failed[~child] = to_right
                for j in range(n_leaves):
                    leaf = l0 + j
                    fails = leaf_failed[j]
                    s0 = leaf_feature_start[leaf]
                    d = leaf_feature_start[leaf + 1] - s0
                    pattern = 0
                    for i in range(d):
                        if not (fails >> leaf_bit[s0 + i]) & 1:
                            pattern |= 1 << i
                    base = leaf_table_start[leaf]
                    for i in range(d):  # branch-free: met, v (1-z)/z H(P - i); unmet, -v H(P)
                        met = (pattern >> i) & 1
                        weight = leaf_ratio[s0 + i] if met else -1.0
                        phi[leaf_feature[s0 + i]] += weight * table[base + (pattern & ~(1 << i))]


class _Cache:
    """Compiled trees per booster (or why not), built once, dropped with the booster.

    A booster trained further after compiling (more trees, another best iteration) is
    compiled again.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._compiled: weakref.WeakKeyDictionary[
            lgb.Booster, tuple[tuple[int, int], CompiledTrees | Unsupported]
        ] = weakref.WeakKeyDictionary()

    def get(self, booster: lgb.Booster) -> CompiledTrees | Unsupported:
        trees = (booster.num_trees(), booster.best_iteration)
        with self._lock:
            hit = self._compiled.get(booster)
            if hit is not None and hit[0] == trees:
                return hit[1]
            try:
                compiled: CompiledTrees | Unsupported = compile_booster(booster)
            except Unsupported as why:
                log.info("TreeSHAP by LightGBM's pred_contrib for this booster: %s", why)
                compiled = why
            self._compiled[booster] = (trees, compiled)
            return compiled


_cache = _Cache()


def compiled(booster: lgb.Booster) -> CompiledTrees | None:
    """``booster``'s compiled trees (built on first use), None when the kernel cannot do it."""
    hit = _cache.get(booster)
    return None if isinstance(hit, Unsupported) else hit


def contributions(booster: lgb.Booster, X: np.ndarray, engine: ShapEngine = "auto") -> np.ndarray:
    """``booster.predict(X, pred_contrib=True, num_threads=1)``, by this module's kernel
    where it supports the booster (``engine="auto"``), else by LightGBM."""
    trees = compiled(booster) if engine == "auto" else None
    if trees is None:
        return cast(np.ndarray, booster.predict(X, pred_contrib=True, num_threads=1))
    return trees.contributions(X)
