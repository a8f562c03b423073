"""The batch path of :class:`Explainer` (issue 14) says exactly what the per-deal one said.

The oracle below is the per-deal explanation as it was before the reasons were chosen
over arrays: every candidate phrased in full by the reason functions themselves (no
memo, no facts per bin), read strongest first until both sides are full. Random pushes
on the features of :mod:`test_reason_rules` (track records, contradicting tooltips, one
text from several features, pushes at the floor's rounding edge, missing values) must
give the same reasons, words and numbers, on one thread and on a pool of small chunks.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from test_reason_rules import FEATURES, STATS, StubModel

import leadscore.model.explain as explain_module
import leadscore.model.reasons as reasons_module
from leadscore.features.catalog import FEATURES_BY_NAME
from leadscore.model.explain import (
    Candidate,
    Explainer,
    choose_reasons,
    choose_reasons_batch,
    grade_of,
)
from leadscore.model.reasons import (
    Phrase,
    is_missing,
    reason_fact,
    reason_text,
    reason_text_zh,
)


class RowStub(StubModel):
    """A stub whose contributions follow the rows it is given (the row number in column 0),
    so a chunk of the batch gets its own deals' pushes."""

    def encode_columns(self, columns: dict[str, list[Any]]) -> np.ndarray:
        X = np.zeros((len(self._pushes), len(FEATURES)))
        X[:, 0] = np.arange(len(self._pushes))
        return X

    def contributions(self, X: np.ndarray) -> np.ndarray:
        rows = X[:, 0].astype(int)
        return np.column_stack([self._pushes[rows], np.full(len(rows), -0.4)])


def per_deal(explainer: Explainer, columns: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """The explanation as the per-deal path gave it (the oracle)."""
    model = explainer.model
    X = model.encode_columns(columns)
    contributions = model.contributions(X)
    probability = model.calibrate(contributions.sum(axis=1), X).tolist()
    candidates = np.where(explainer._shown, contributions[:, :-1] @ explainer._group, 0.0)
    order = np.argsort(-np.abs(candidates), axis=1, kind="stable")
    values = [columns.get(name) for name in explainer.reason_features]

    def phrase(name: str, value: Any) -> Phrase:
        feature = FEATURES_BY_NAME[name]
        value = None if is_missing(value) else value
        fact = reason_fact(feature, value, STATS)
        return Phrase(
            reason_text(feature, value, STATS),
            None if fact is None else fact.tooltip,
            0 if fact is None else fact.direction,
            reason_text_zh(feature, value, STATS),
            None if fact is None else fact.tooltip_zh,
        )

    def deal(row: list[float], ranked: list[int], i: int) -> Any:
        for j in ranked:
            push = row[j]
            if round(abs(push), 4) <= explainer.min_contribution:
                return
            name = explainer.reason_features[j]
            value = None if values[j] is None else values[j][i]
            yield Candidate(push, explainer._actionable[j], phrase(name, value), name, value)

    def reason(c: Candidate) -> dict[str, Any]:
        return {
            "feature": c.feature,
            "label": FEATURES_BY_NAME[c.feature].label,
            "value": None if is_missing(c.value) else c.value,
            "contribution": round(c.push, 4),
            "text": c.phrase.text,
            "tooltip": c.phrase.tooltip,
            "text_zh": c.phrase.text_zh,
            "tooltip_zh": c.phrase.tooltip_zh,
        }

    out = []
    for i, (p, row, ranked) in enumerate(
        zip(probability, candidates.tolist(), order.tolist(), strict=True)
    ):
        up, down = choose_reasons(deal(row, ranked, i), explainer.max_reasons)
        score = int(round(100 * p))
        out.append(
            {
                "probability": p,
                "score": score,
                "grade": grade_of(score, explainer.grade_thresholds),
                "positive_reasons": [reason(c) for c in up],
                "negative_reasons": [reason(c) for c in down],
            }
        )
    return out


def random_deals(n: int, seed: int) -> tuple[dict[str, list[Any]], list[dict[str, float]]]:
    """Deals with values across the stats' bins (and missing), and random pushes, some
    exactly at the floor's rounding edge (0.01005 shows as 0.01 or 0.0101)."""
    rng = np.random.default_rng(seed)
    pools: dict[str, list[Any]] = {
        "channel": ["referral", "web", "partner", None],
        "stage_index": [0.0, 1.0, 2.0, 3.0, 4.0],
    }
    columns: dict[str, list[Any]] = {}
    for name in FEATURES:
        pool = pools.get(name, [0.0, 1.0, 2.0, 4.0, 7.0, 15.0, 61.0, math.nan, None])
        columns[name] = [pool[k] for k in rng.integers(0, len(pool), n)]
    edge = [0.01005, -0.01005, 0.010049999, 0.0100500001, 0.01, 0.0]
    pushes = []
    for _ in range(n):
        row = {}
        for name in FEATURES:
            if rng.random() < 0.15:
                row[name] = float(rng.choice(edge))
            else:
                row[name] = float(rng.normal(0, 0.3)) if rng.random() < 0.8 else 0.0
        pushes.append(row)
    return columns, pushes


@pytest.mark.parametrize("max_reasons", [1, 3])
def test_the_batch_path_gives_the_per_deal_reasons_word_for_word(max_reasons):
    columns, pushes = random_deals(300, seed=max_reasons)
    explainer = Explainer(RowStub(pushes), max_reasons=max_reasons)  # type: ignore[arg-type]
    expected = per_deal(explainer, columns)
    assert explainer.explain(columns) == expected
    # The cases the rules are about did occur: a text from two features, a contradiction.
    texts = [[r["text"] for r in e["positive_reasons"] + e["negative_reasons"]] for e in expected]
    assert all(len(t) == len(set(t)) for t in texts)
    assert any(e["positive_reasons"] and e["negative_reasons"] for e in expected)


def test_a_batch_on_a_pool_of_chunks_gives_the_same_reasons_in_deal_order(monkeypatch):
    columns, pushes = random_deals(101, seed=7)
    one = Explainer(RowStub(pushes)).explain(columns)  # type: ignore[arg-type]
    monkeypatch.setattr(explain_module, "CHUNK_ROWS", 8)
    pooled = Explainer(RowStub(pushes), threads=3).explain(columns)  # type: ignore[arg-type]
    assert pooled == one
    assert len(pooled) == 101


def test_directions_of_a_column_are_those_of_each_value():
    explainer = Explainer(RowStub([{}]))  # type: ignore[arg-type]
    book = explainer.phrasebook
    for name in ("act_call_7d", "days_in_stage", "channel", "act_meeting_30d"):
        values = [0.0, 0.5, 1.0, 2.99, 3.0, 9.0, 10.0, 1e9, math.nan, None, "web", "referral"]
        if name != "channel":
            values = values[:-2]
        expected = [
            0 if (f := reason_fact(FEATURES_BY_NAME[name], v, STATS)) is None else f.direction
            for v in (None if is_missing(v) else v for v in values)
        ]
        assert book.directions(name, values).tolist() == expected, name


def test_a_single_deals_directions_are_read_value_by_value(monkeypatch):
    """The array path's fixed cost (np.unique and friends, per column) was a third of
    explaining one deal (issue 15, single-deal p99): a short column skips it, and says
    what the array path says of the same values."""
    explainer = Explainer(RowStub([{}]))  # type: ignore[arg-type]
    book = explainer.phrasebook
    values = [0.0, 0.5, 2.99, 3.0, 10.0, 1e9, math.nan, None]
    assert len(values) <= reasons_module.PER_VALUE_MAX < len(values) * 2
    names = ("act_call_7d", "days_in_stage", "act_meeting_30d")
    by_array = {name: book.directions(name, values * 2).tolist()[: len(values)] for name in names}

    def no_arrays(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a short column went through the array path")

    monkeypatch.setattr(reasons_module.np, "unique", no_arrays)
    for name in names:
        assert [book.directions(name, [v]).tolist()[0] for v in values] == by_array[name], name
        assert book.directions(name, values).tolist() == by_array[name], name


def tricky_deals(n: int, seed: int) -> tuple[dict[str, list[Any]], list[dict[str, float]]]:
    """Deals made to trip a batch choice: pushes from a few values (ties within a deal,
    broken by feature order), some the same both ways, missing values of every kind
    (None, NaN, pd.NA) and categories, mostly one-sided deals (a side never full)."""
    rng = np.random.default_rng(seed)
    columns, pushes = random_deals(n, seed)
    columns["channel"] = [
        [None, math.nan, pd.NA, "referral", "web", "partner"][k] for k in rng.integers(0, 6, n)
    ]
    ties = [0.3, -0.3, 0.3, 0.12, -0.12, 0.05, 0.01005, -0.5]
    for k, row in enumerate(pushes):
        for name in FEATURES:
            if k % 3 == 0:
                row[name] = float(rng.choice(ties))
            elif k % 3 == 1:  # one-sided
                row[name] = abs(row[name])
    return columns, pushes


@pytest.mark.parametrize("max_reasons", [1, 2, 5])
def test_the_batch_path_gives_the_per_deal_reasons_on_a_tricky_batch(max_reasons, monkeypatch):
    """Ties, missing values of every kind, categories, one-sided deals, every language:
    the batch path must say word for word (English and Chinese, text and tooltip) what
    the per-deal rules say, including for deals whose first candidates did not decide
    (read again with more of them)."""
    calls: list[int] = []
    batch_choice = explain_module.choose_reasons_batch

    def counted(*args: Any) -> Any:
        calls.append(1)
        return batch_choice(*args)

    monkeypatch.setattr(explain_module, "choose_reasons_batch", counted)
    columns, pushes = tricky_deals(400, seed=10 + max_reasons)
    explainer = Explainer(RowStub(pushes), max_reasons=max_reasons)  # type: ignore[arg-type]
    got = explainer.explain(columns)
    assert got == per_deal(explainer, columns)
    if 2 * max_reasons + 2 < len(FEATURES):  # some deals needed more than their first ones
        assert len(calls) > 1
    reasons = [r for e in got for r in e["positive_reasons"] + e["negative_reasons"]]
    assert all(r["text_zh"] for r in reasons)
    assert any(r["value"] is None for r in reasons)  # a missing value shown as null
    assert any(r["feature"] == "channel" and r["value"] is not None for r in reasons)


def test_the_batch_choice_is_the_per_deal_choice_cell_for_cell():
    """:func:`choose_reasons_batch` against :func:`choose_reasons` on random candidates:
    shared texts, contradictions, ties, actionable or not; and a deal it calls decided on
    its first candidates is decided as on all of them."""
    rng = np.random.default_rng(3)
    rows, per_row = 500, rng.integers(0, 12, 500)
    row = np.repeat(np.arange(rows), per_row)
    magnitude = rng.choice([0.5, 0.3, 0.3, 0.2, 0.1], len(row))
    push = magnitude * rng.choice([-1.0, 1.0], len(row))
    push = push[np.lexsort((-np.abs(push), row))]  # each deal's strongest first, ties kept
    cells = explain_module.Cells(
        row,
        push,
        rng.integers(-1, 2, len(row)).astype(np.int8),
        rng.integers(0, 6, len(row)),
        rng.random(len(row)) < 0.5,
    )
    for k in (1, 2, 3):
        chosen, undecided = choose_reasons_batch(cells, k, np.ones(rows, dtype=bool))
        assert not undecided.any()
        for i in range(rows):
            at = np.flatnonzero(cells.row == i)
            up, down = choose_reasons(
                (
                    Candidate(
                        float(cells.push[c]),
                        bool(cells.actionable[c]),
                        Phrase(str(cells.text[c]), None, int(cells.direction[c])),
                        str(c),
                        None,
                    )
                    for c in at
                ),
                k,
            )
            mine = [c for c in chosen.tolist() if cells.row[c] == i]
            assert mine == [int(c.feature) for c in down + up], (k, i)
    # The first three candidates of each deal: a decided deal chooses as with all.
    first = np.flatnonzero(np.arange(len(row)) - np.searchsorted(row, row) < 3)
    part = explain_module.Cells(*(a[first] for a in cells))
    short, undecided = choose_reasons_batch(part, 1, per_row <= 3)
    whole, _ = choose_reasons_batch(cells, 1, np.ones(rows, dtype=bool))
    decided = ~undecided
    assert [first[c] for c in short.tolist() if decided[row[first[c]]]] == [
        c for c in whole.tolist() if decided[row[c]]
    ]
    assert undecided.any() and decided.any()
