"""Metrics on hand-checked examples."""

from __future__ import annotations

import numpy as np
import pytest

from training.evaluate import (
    HEADLINE,
    binary_metrics,
    expected_calibration_error,
    flatten_metrics,
    metrics_by_group,
    top_share,
)


def test_ece_is_the_row_weighted_gap_per_equal_width_bin():
    # Bin [0.1, 0.2): p 0.1 twice, one win -> |0.5 - 0.1| = 0.4 on 2 of 4 rows.
    # Bin [0.9, 1.0]: p 0.9 and 1.0, both won -> |1 - 0.95| = 0.05 on 2 of 4 rows.
    y = np.array([1, 0, 1, 1])
    p = np.array([0.1, 0.1, 0.9, 1.0])
    assert expected_calibration_error(y, p) == pytest.approx(0.5 * 0.4 + 0.5 * 0.05)
    assert expected_calibration_error(np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(0.0)


def test_lift_and_capture_of_the_top_share():
    y = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 1])
    p = np.linspace(1, 0, 10)  # rows already in score order
    lift, capture = top_share(y, p, 0.2)  # top 2 rows: both won
    assert lift == pytest.approx(1.0 / 0.3)
    assert capture == pytest.approx(2 / 3)


def test_binary_metrics_have_the_headline_keys_and_no_nan():
    rng = np.random.default_rng(0)
    p = rng.uniform(size=500)
    y = (rng.uniform(size=500) < p).astype(int)
    m = binary_metrics(y, p)
    assert set(HEADLINE) <= set(m)
    assert 0.6 < m["roc_auc"] < 0.9
    single = binary_metrics(np.zeros(5), np.full(5, 0.2))
    assert single["roc_auc"] is None and single["log_loss"] is not None


def test_metrics_by_group_and_flat_names_for_mlflow():
    y = np.array([1, 0, 1, 0])
    p = np.array([0.8, 0.2, 0.6, 0.4])
    groups = np.array(["web", "web", None, None], dtype=object)
    by = metrics_by_group(y, p, groups)
    assert list(by) == ["(missing)", "web"]
    flat = flatten_metrics({"test": {"by_channel": by}, "passed": True, "name": "text"})
    assert flat["test.by_channel._missing_.roc_auc"] == 1.0
    assert flat["passed"] == 1.0 and "name" not in flat
