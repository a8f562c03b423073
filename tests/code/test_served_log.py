"""The served-deal log (serving/served_log.py, leadscore/model/served.py) and what
`leadscore monitor --served` reads from it (training/monitor.py realised_quality)."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from leadscore.config import ServingConfig
from leadscore.model.served import META, read_served
from serving.served_log import ServedLog
from training.monitor import realised_quality

T0 = datetime(2025, 6, 1, tzinfo=UTC)


def test_rows_keep_the_models_features_only_and_are_read_back_in_order(tmp_path: Path):
    log = ServedLog(tmp_path, ["amount", "channel"], flush_seconds=3600)
    columns = {"amount": [10.0, 20.0], "channel": ["web", None], "contact_name": ["Ada", "Bo"]}
    log.record("score", ["D2", "D1"], columns, [0.2, 0.7], "3", T0, T0 + timedelta(seconds=1))
    assert read_served(tmp_path).empty, "nothing written before a flush"
    first = log.flush()
    log.record("score_ids", ["D3"], {"amount": [5.0]}, [0.1], "3", T0, T0)
    log.close()  # a clean stop writes what waits
    assert first is not None and first.name.startswith("served-20250601-")
    rows = read_served(tmp_path)
    assert list(rows["deal_id"]) == ["D3", "D2", "D1"]  # by scored_at
    assert set(rows.columns) == set(META) | {"amount", "channel"}
    assert rows.loc[rows["deal_id"] == "D1", "probability"].item() == 0.7
    assert list(
        read_served(tmp_path, since=pd.Timestamp(T0 + timedelta(seconds=1)))["deal_id"]
    ) == [
        "D2",
        "D1",
    ]
    assert not list(tmp_path.glob("*.tmp")), "a reader never sees half a file"


def test_two_logs_of_one_process_flushing_in_the_same_second_keep_both_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Two service instances in one process (as in a test process) named their first
    flush alike: one file overwrote, and tore, the other's."""
    monkeypatch.setattr(time, "time", lambda: 1_750_000_000.0)
    logs = [ServedLog(tmp_path, ["amount"], flush_seconds=3600) for _ in range(2)]
    for k, log in enumerate(logs):
        log.record("score", [f"D{k}"], {"amount": [float(k)]}, [0.5], "1", T0, T0)
    paths = [log.flush() for log in logs]
    for log in logs:
        log.close()
    assert len({p for p in paths if p is not None}) == 2
    assert sorted(read_served(tmp_path)["deal_id"]) == ["D0", "D1"]


def test_the_writer_thread_flushes_on_its_own(tmp_path: Path):
    log = ServedLog(tmp_path, ["amount"], flush_seconds=0.05)
    log.record("score", ["D1"], {"amount": [1.0]}, [0.5], "1", T0, T0)
    deadline = datetime.now(UTC) + timedelta(seconds=5)
    while read_served(tmp_path).empty and datetime.now(UTC) < deadline:
        time.sleep(0.01)
    assert list(read_served(tmp_path)["deal_id"]) == ["D1"]
    log.close()


def test_the_log_is_on_by_default_and_can_be_turned_off():
    assert ServingConfig.from_env({}).served_log
    assert not ServingConfig.from_env({"LEADSCORE_SERVED_LOG": "0"}).served_log
    assert (
        ServingConfig.from_env({"LEADSCORE_SERVED_LOG_FLUSH_SECONDS": "2"}).served_log_flush_seconds
        == 2
    )


def test_realised_quality_counts_each_deal_once_from_its_first_serving():
    served = pd.DataFrame(
        {
            "deal_id": ["A", "A", "B", "C", "D"],
            "scored_at": pd.to_datetime(
                ["2025-06-01", "2025-06-05", "2025-06-01", "2025-06-01", "2025-06-01"], utc=True
            ),
            "probability": [0.9, 0.1, 0.2, 0.6, 0.5],
        }
    )
    deals = pd.DataFrame(
        {
            "deal_id": ["A", "B", "C", "D"],
            "status": ["won", "lost", "won", "open"],
            # C closed before it was served: its outcome was known, not predicted.
            "closed_at": pd.to_datetime(["2025-07-01", "2025-07-01", "2025-05-01", None], utc=True),
        }
    )
    out = realised_quality(served, deals, min_class_deals=1)
    assert (out["served_deals"], out["closed_since"], out["won"], out["lost"]) == (4, 2, 1, 1)
    assert out["metrics"]["roc_auc"] == 1.0  # A at its first 0.9 above B's 0.2
    assert out["metrics"]["mean_p"] == pytest.approx(np.mean([0.9, 0.2]))
    few = realised_quality(served, deals, min_class_deals=5)
    assert "metrics" not in few and few["missing"].startswith("1 won and 1 lost so far")


def test_rows_are_written_straight_to_arrow_as_pandas_wrote_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The log is kept by column and written without a pandas frame (issue 15: building
    one from row dicts held the GIL for tens of milliseconds each flush). Missing values
    are null whether NaN or None, even in a text column; a feature a hot reload added is
    missing in the rows logged before it; times are UTC."""
    log = ServedLog(tmp_path, ["amount", "channel"], flush_seconds=3600)
    paris = datetime(2025, 6, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    log.record(
        "score",
        ["D1", "D2"],
        {"amount": [1.5, None], "channel": ["web", math.nan]},
        [0.25, 0.5],
        "3",
        paris,
        paris,
    )
    log.record(
        "score_ids",
        ["D3"],
        {"amount": [2.0], "channel": [None], "industry": ["saas"]},
        [0.75],
        "4",
        paris,
        paris,
        features=["amount", "channel", "industry"],
    )
    with monkeypatch.context() as patch:

        def no_frame(*args: object, **kwargs: object) -> None:
            raise AssertionError("the writer built a pandas frame")

        patch.setattr(pd, "DataFrame", no_frame)
        path = log.flush()
    assert path is not None and not list(tmp_path.glob("*.tmp"))
    frame = read_served(tmp_path)
    assert frame["deal_id"].tolist() == ["D1", "D2", "D3"]
    assert frame["amount"].tolist()[0] == 1.5 and math.isnan(frame["amount"].tolist()[1])
    assert frame["channel"].tolist() == ["web", None, None]
    assert frame["industry"].tolist() == [None, None, "saas"]
    assert frame["model_version"].tolist() == ["3", "3", "4"]
    assert frame["probability"].tolist() == [0.25, 0.5, 0.75]
    assert (frame["as_of"] == pd.Timestamp("2025-06-01 12:00", tz="UTC")).all()
    assert str(frame["scored_at"].dt.tz) == "UTC"
