"""Drift (leadscore/model/drift.py) and `leadscore monitor` (training/monitor.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from leadscore.config import DriftThresholds
from leadscore.features.catalog import FEATURES, FEATURES_BY_NAME
from leadscore.model.drift import drift_report, feature_drift, psi
from tests.serving_fixture import small_champion


def test_psi_is_the_sum_of_share_changes_times_their_log_ratio():
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0.0
    expected = (0.7 - 0.5) * math.log(0.7 / 0.5) + (0.3 - 0.5) * math.log(0.3 / 0.5)
    assert psi([0.5, 0.5], [0.7, 0.3]) == pytest.approx(expected)
    # An empty bin counts at the floor instead of making the index infinite.
    assert math.isfinite(psi([1.0, 0.0], [0.5, 0.5]))


@pytest.fixture(scope="module")
def at_creation() -> tuple[pd.DataFrame, np.ndarray]:
    """The small champion's training deals at creation, with its scores, shuffled."""
    model, frame = small_champion()
    first = frame[frame["snapshot_index"] == 0].sample(frac=1.0, random_state=0)
    first = first.reset_index(drop=True)
    return first, model.probability(model.encode(first))


def test_a_sample_like_the_training_deals_raises_nothing(at_creation):
    rows, scores = at_creation
    half = len(rows) // 2
    report = drift_report(rows[:half], rows[half:], FEATURES, None, scores[:half], scores[half:])
    assert report.current_rows >= 100 and not report.alerted, report.alerts
    assert max(r["psi"] for r in report.features) < 0.1


def test_a_new_channel_and_doubled_deal_sizes_raise_alerts_naming_them(at_creation):
    rows, scores = at_creation
    half = len(rows) // 2
    shifted = rows[half:].copy()
    shifted.loc[shifted.index[: len(shifted) // 3], "channel"] = "tiktok"
    shifted["amount"] *= 2
    shifted["log_amount"] += math.log(2)
    model, _ = small_champion()
    rescored = model.probability(model.encode(shifted))
    report = drift_report(rows[:half], shifted, FEATURES, None, scores[:half], rescored)
    text = "\n".join(report.alerts)
    assert "channel: new value 'tiktok' on 33% of deals" in text
    assert "amount: PSI" in text and "log_amount: PSI" in text
    assert report.score is not None and report.score["psi"] > 0
    assert report.features[0]["feature"] in {"amount", "log_amount", "channel"}
    assert not any(a.startswith(("industry", "max_seniority")) for a in report.alerts)


def test_missing_values_and_the_minimum_sample():
    f = FEATURES_BY_NAME["median_reply_hours"]
    ref = pd.Series(np.r_[np.arange(180.0), [np.nan] * 20])
    cur = pd.Series(np.r_[np.arange(100.0), [np.nan] * 100])
    row = feature_drift(f.name, f.kind, f.discrete, ref, cur)
    assert (row["missing_reference"], row["missing_current"]) == (0.1, 0.5)
    frame = lambda s: pd.DataFrame({f.name: s})  # noqa: E731
    alerts = drift_report(frame(ref), frame(cur), [f]).alerts
    assert any("missing on 50% of deals, against 10% in training" in a for a in alerts)
    # Thirty new deals move every index: figures, but no alert.
    few = drift_report(frame(ref), frame(cur[:30]), [f], DriftThresholds(min_rows=100))
    assert not few.alerted and few.features[0]["psi"] > 0


def test_thresholds_come_from_the_environment_with_a_clear_error():
    t = DriftThresholds.from_env({"LEADSCORE_DRIFT_PSI": "0.1", "LEADSCORE_DRIFT_MIN_ROWS": "5"})
    assert (t.psi, t.min_rows, t.score_psi) == (0.1, 5, 0.25)
    with pytest.raises(ValueError, match="LEADSCORE_DRIFT_PSI='high': not a number"):
        DriftThresholds.from_env({"LEADSCORE_DRIFT_PSI": "high"})


def test_the_monitor_command_exits_3_on_drift_and_keeps_the_report(tmp_path: Path):
    from leadscore.crm.synth import generate_crm, write_export
    from tests.conftest import cli, ingested_synthetic, isolated
    from tests.serving_fixture import register_champion

    crm = generate_crm(800, seed=3, as_of=pd.Timestamp("2025-06-30", tz="UTC"))
    env = ingested_synthetic(tmp_path, crm)
    cli(env, "monitor", code=1)  # no champion yet: says so, exit 1
    register_champion(*small_champion(), isolated(tmp_path))
    out = json.loads(cli(env, "monitor", "--days", "90", "--json"))
    assert out["current_rows"] > 0 and out["reference_rows"] > out["current_rows"]
    assert not out["alerted"], out["alerts"]
    # The same deals, the newest of them now from a lead source never seen before.
    deals = crm.tables["deals"]
    new = pd.to_datetime(deals["created_at"], utc=True) > crm.as_of - pd.Timedelta(days=90)
    deals.loc[new, "channel"] = "tiktok"
    write_export(crm, tmp_path / "y")
    cli(env, "ingest", str(tmp_path / "y"))
    text = cli(env, "monitor", "--days", "90", code=3)
    assert "ALERT channel: new value 'tiktok'" in text
    kept = json.loads((isolated(tmp_path).feature_data / "monitor" / "latest.json").read_text())
    assert kept["alerted"] and kept["model_version"] == out["model_version"]


def test_track_records_are_reported_but_never_alert():
    """An export's first deals have no history and its last ones plenty, so a track record
    always "drifts"; its figure is kept, the alert is not raised."""
    f = FEATURES_BY_NAME["owner_prior_win_rate"]
    ref = pd.DataFrame({f.name: np.r_[[np.nan] * 150, np.linspace(0, 1, 50)]})
    cur = pd.DataFrame({f.name: np.linspace(0.2, 0.4, 200)})
    report = drift_report(ref, cur, [f])
    row = report.features[0]
    assert row["history"] and row["psi"] > 1 and row["missing_reference"] == 0.75
    assert not report.alerted


def test_monitor_served_compares_what_was_served_and_scores_it_on_the_deals_closed_since(
    tmp_path: Path,
):
    """`monitor --served`: the served rows against the training snapshots, and the served
    probabilities' realised quality on the served deals that closed after their serving."""
    from leadscore.crm.synth import generate_crm
    from serving.served_log import ServedLog
    from tests.conftest import cli, ingested_synthetic, isolated
    from tests.serving_fixture import register_champion
    from training.data import in_memory_frame

    crm = generate_crm(800, seed=3, as_of=pd.Timestamp("2025-06-30", tz="UTC"))
    env = ingested_synthetic(tmp_path, crm)
    model, frame = small_champion()
    register_champion(model, frame, isolated(tmp_path))
    version = json.loads(cli(env, "monitor", "--days", "90", "--json"))["model_version"]
    # Served 180 to 166 days ago: every deal then open that has closed since, once, at its
    # snapshot in those two weeks (as the service would have scored it then).
    start = crm.as_of - pd.Timedelta(days=180)
    first = in_memory_frame(crm.tables, attributes=model.attributes)
    at = pd.to_datetime(first["event_timestamp"], utc=True)
    first = first[(at >= start) & (at < start + pd.Timedelta(days=14))].reset_index(drop=True)
    probability = model.probability(model.encode(first))
    log = ServedLog(isolated(tmp_path).served_dir, model.features, flush_seconds=3600)
    for at, rows in first.groupby("event_timestamp"):
        idx = rows.index.to_numpy()
        columns = {name: first.loc[idx, name].tolist() for name in model.features}
        log.record("score", rows["deal_id"].tolist(), columns, probability[idx], version, at, at)
    log.close()
    out = json.loads(cli(env, "monitor", "--served", "--days", "180", "--json"))
    realised = out["realised"]
    deals = crm.tables["deals"]
    closed = int(deals["status"].isin(["won", "lost"]).sum())
    assert realised["served_deals"] == len(first) >= 100
    assert realised["closed_since"] == len(first) <= closed  # all closed after serving
    assert realised["won"] + realised["lost"] == realised["closed_since"]
    m = realised["metrics"]
    assert m["n"] == len(first) and 0.5 < m["roc_auc"] <= 1.0
    assert m["ci95"]["roc_auc"]["low"] < m["roc_auc"] < m["ci95"]["roc_auc"]["high"]
    text = cli(env, "monitor", "--served", "--days", "180")
    assert f"served: {len(first):,} deals, {len(first):,} closed since" in text
    assert "ROC AUC 0." in text and "ECE 0." in text and "[" in text
    assert out["current_rows"] == len(first) and out["reference_rows"] > 0


def test_an_empty_bin_has_no_share_even_when_its_label_is_a_position():
    """A bin no deal falls in counts 0. Numeric bins are labelled 0, 1, 2... beside the
    missing label; when every value was missing, ``Series.get(0)`` read the absent label 0
    as a position and gave bin 0 the missing share too (shares summing to 2)."""
    from leadscore.model.drift import MISSING, _shares

    assert _shares(np.array([MISSING] * 3, dtype=object), [0, 1, MISSING]).tolist() == [0, 0, 1]
    labels = np.array([0, 0, MISSING], dtype=object)
    assert _shares(labels, [0, 1, 2, MISSING]).tolist() == [2 / 3, 0.0, 0.0, 1 / 3]
