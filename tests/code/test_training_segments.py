"""The model per segment (training/segments.py): labels, figures, small segments, the card."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from leadscore.insights.facts import UNKNOWN
from training.result import TrainConfig
from training.segments import SEGMENTS, per_segment, segment_labels


def test_each_row_gets_its_channel_size_band_industry_and_stage():
    rows = pd.DataFrame(
        {
            "channel": [" web", "", None, "partner"],
            "industry": ["retail", "retail", "tech", None],
            "employee_count": [10.0, 50.0, np.nan, 5000.0],
            "stage_index": [0.0, 2.0, np.nan, 3.0],
        }
    )
    labels = segment_labels(rows)
    assert list(labels) == list(SEGMENTS)
    assert labels["channel"].tolist() == ["web", UNKNOWN, UNKNOWN, "partner"]
    assert labels["size_band"].tolist() == ["<50", "50-249", UNKNOWN, "1000+"]
    assert labels["industry"].tolist() == ["retail", "retail", "tech", UNKNOWN]
    assert labels["stage"].tolist() == ["lead", "solution", UNKNOWN, "committed"]
    # A frame without a segment's column (a partial export) has it unknown, not an error.
    assert set(segment_labels(rows.drop(columns="industry"))["industry"]) == {UNKNOWN}


def one_snapshot_per_deal(channels: list[str], won: np.ndarray) -> pd.DataFrame:
    n = len(channels)
    created = pd.Timestamp("2025-01-01", tz="UTC")
    return pd.DataFrame(
        {
            "deal_id": [f"D{i}" for i in range(n)],
            "snapshot_index": 0,
            "event_timestamp": created,
            "created_at": created,
            "won": won,
            "channel": channels,
            "industry": "retail",
            "employee_count": 100.0,
            "stage_index": 1.0,
        }
    )


def test_a_segment_gets_its_own_figures_and_a_small_one_its_counts_only():
    rng = np.random.default_rng(0)
    n_web, n_partner, n_event = 200, 200, 30
    won = np.r_[rng.random(n_web) < 0.4, rng.random(n_partner) < 0.4, np.arange(n_event) < 5]
    test = one_snapshot_per_deal(
        ["web"] * n_web + ["partner"] * n_partner + ["event"] * n_event, won.astype(np.int8)
    )
    # The model ranks web deals perfectly and partner deals at random; the baseline is flat.
    model = np.where(won, 0.7, 0.2) + rng.normal(0, 0.01, len(won))
    model[n_web : n_web + n_partner] = rng.random(n_partner)
    preds = {"model": np.clip(model, 0.01, 0.99), "flat": np.full(len(won), 0.4)}
    out = per_segment(test, preds, TrainConfig(bootstrap_resamples=50), ["flat"])

    by_channel = {e["value"]: e for e in out["channel"]}
    assert set(by_channel) == {"web", "partner", "event"}
    web, partner, event = by_channel["web"], by_channel["partner"], by_channel["event"]
    assert web["deals"] == n_web and web["won"] == int(won[:n_web].sum())
    assert web["model"]["roc_auc"] == pytest.approx(1.0)
    partner_auc = roc_auc_score(won[n_web : n_web + n_partner], preds["model"][n_web:-n_event])
    assert partner["model"]["roc_auc"] == pytest.approx(partner_auc)
    ci = partner["model"]["ci95"]["roc_auc"]
    assert ci["low"] <= partner_auc <= ci["high"]
    margin = web["model_minus_baseline"]["flat"]["roc_auc"]
    assert margin["difference"] == pytest.approx(0.5) and margin["low"] > 0
    # 5 won of 30: too few to rank, so counts and the reason only.
    assert "model" not in event and event["missing"].startswith("5 won and 25 lost deals")
    # Every deal counts once in each segment cut.
    for segment in SEGMENTS:
        assert sum(e["deals"] for e in out[segment]) == len(test)


def test_the_model_card_shows_a_table_per_segment():
    segments = {
        "age_days": 30.0,
        "min_class_deals": 20,
        "channel": [
            {"value": "event", "deals": 30, "won": 5, "win_rate": 5 / 30, "missing": "too few"},
        ],
    }
    from training import report

    lines = report._segment_section({"segments": segments})
    text = "\n".join(lines)
    assert "## Per segment" in text
    for segment in SEGMENTS:
        assert f"### By {segment.replace('_', ' ')}" in text
    assert "| event | 30 | 16.7% | too few |" in text


def test_the_model_card_lists_every_segment_model_tried_with_its_decision():
    interval = {"difference": 0.02, "low": 0.01, "high": 0.03}
    tried = {
        "deals": {"test": {"won": 40, "lost": 60}},
        "segment_model": {"roc_auc": 0.8},
        "global_model": {"roc_auc": 0.78},
        "segment_minus_global": {"roc_auc": interval, "log_loss": interval, "ece": interval},
    }
    block = {
        "age_days": 30.0,
        "kept": ["channel=web"],
        "candidates": [
            {"segment": "channel=web", "decision": "kept", **tried},
            {"segment": "stage=lead", "decision": "not kept", **tried},
            {
                "segment": "channel=event",
                "decision": "skipped",
                "deals": {"test": {"won": 3, "lost": 9}},
                "reason": "3 won and 9 lost test deals (needs 20 of each)",
            },
        ],
        "routed": {"deals": 100, "routed_minus_global": tried["segment_minus_global"]},
    }
    from training import report

    text = "\n".join(report._segment_model_section(block))
    assert "## Segment models" in text and "(the first in this order: channel=web)" in text
    assert "| channel=web | kept | 40/60 | 0.8000 | 0.7800 | +0.020 [+0.010, +0.030] |" in text
    assert "| stage=lead | not kept |" in text
    assert "| channel=event | skipped | 3/9 | 3 won and 9 lost test deals" in text
    assert "Routed minus global on all 100 test deals" in text
    off = report._segment_model_section({"skipped": "switched off"})
    assert off[-1] == "None tried: switched off."
