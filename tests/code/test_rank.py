"""Selection, re-opened features, ordering, filters, the score history and the terminal table."""

from __future__ import annotations

import io
import os
import sys
import time
from datetime import date

import numpy as np
import pandas as pd
import pytest

from leadscore.csvsafe import write_csv
from leadscore.features.featurize import (
    build_feature_sources,
    features_as_of,
    model_frame,
    scoring_entities,
)
from leadscore.model.scoring_model import ScoringModel
from leadscore.priority import rank
from leadscore.priority.rank import (
    ACTIVE,
    DORMANT,
    RECENTLY_LOST,
    Filters,
    RankConfig,
    candidate_features,
    even_batch_size,
    load_history,
    order_ranked,
    rank_deals,
    rank_processes,
    read_ranked,
    record_scores,
    run_rank,
    select_candidates,
    size_band,
)
from leadscore.priority.report import display_width, fit, text_table
from tests.crm_fixture import day, ranking_crm, tiny_crm
from tests.serving_fixture import synthetic_tables, train_small_model

AS_OF = day(70)


@pytest.fixture(scope="module")
def model() -> ScoringModel:
    return train_small_model(synthetic_tables())[0]


def groups(scored: pd.DataFrame) -> dict[str, str]:
    return dict(zip(scored["deal_id"], scored["priority_group"], strict=True))


def test_active_dormant_and_recently_lost_deals_are_selected(model):
    # Day 70: D1 won (left out), D2 lost on day 40, D3 quiet since day 20, D4 touched on day 53.
    tables = ranking_crm()
    scored = rank_deals(tables, model, AS_OF).frame
    assert groups(scored) == {"D2": RECENTLY_LOST, "D3": DORMANT, "D4": ACTIVE}
    # The list names the priority group, not the CRM status it would be confused with.
    assert "status" not in scored
    narrow = rank_deals(
        tables, model, AS_OF, RankConfig(dormant_days=60, lost_window_days=20)
    ).frame
    assert groups(narrow) == {"D3": ACTIVE, "D4": ACTIVE}
    # Before D4 existed and before D2 was lost, as the stored statuses say.
    assert list(select_candidates(tables["deals"], day(39), 180)["deal_id"]) == ["D3"]


def test_a_recently_lost_deal_is_scored_as_if_reopened_today():
    tables = tiny_crm()
    candidates = select_candidates(tables["deals"], AS_OF, 180)
    got = candidate_features(tables, build_feature_sources(tables), candidates, AS_OF)
    # The definition: the same CRM without D2's close (status, close time, 'closed' stage entry).
    reopened = {k: v.copy() for k, v in tables.items()}
    d2 = reopened["deals"]["deal_id"] == "D2"
    reopened["deals"].loc[d2, ["status", "stage"]] = ["open", "lead"]
    reopened["deals"].loc[d2, "closed_at"] = pd.NaT
    sh = reopened["stage_history"]
    reopened["stage_history"] = sh[~((sh["deal_id"] == "D2") & (sh["stage"] == "closed"))]
    lost = candidates["deal_id"] == "D2"
    expected = features_as_of(
        build_feature_sources(reopened), scoring_entities(candidates[lost], AS_OF)
    )
    pd.testing.assert_frame_equal(
        model_frame(got[lost.to_numpy()]).reset_index(drop=True), model_frame(expected)
    )
    row = got[lost.to_numpy()].iloc[0]
    assert row["stage_index"] == 0  # lead, not closed
    # A1's record without D2's loss: D1 won. U2 closed nothing else: no record.
    assert (
        row["account_prior_closed"],
        row["account_prior_won"],
        row["account_prior_win_rate"],
    ) == (1, 1, 1.0)
    assert np.isnan(row["owner_prior_closed"]) and np.isnan(row["owner_prior_win_rate"])
    # Open deals keep every close: D4 (A1) sees both D1 and D2.
    d4 = got[(candidates["deal_id"] == "D4").to_numpy()].iloc[0]
    assert (d4["account_prior_closed"], d4["account_prior_won"]) == (2, 1)


def ranked_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "deal_id": ["big", "likely", "no_amount", "tie"],
            "owner_id": ["王芳", "U2", "王芳", "U3"],
            "channel": ["web", "referral", "paid_ads", "web"],
            "industry": ["retail", "software", None, "retail"],
            "segment": ["enterprise", "small", "unknown", "mid-market"],
            "priority_group": [ACTIVE, DORMANT, RECENTLY_LOST, ACTIVE],
            "probability": [0.2, 0.9, 0.95, 0.9],
            "amount": [100_000.0, 10_000.0, np.nan, 10_000.0],
        }
    ).assign(expected_value=lambda f: f["probability"] * f["amount"])


def test_expected_value_ranks_big_deals_first_and_probability_can_be_chosen():
    by_value = order_ranked(ranked_frame())
    # 20,000 > 9,000 = 9,000 (tie broken by deal id); no amount, no expected value: last.
    assert list(by_value["deal_id"]) == ["big", "likely", "tie", "no_amount"]
    assert list(by_value["rank"]) == [1, 2, 3, 4]
    assert list(order_ranked(ranked_frame(), "probability")["deal_id"]) == [
        "no_amount",
        "likely",
        "tie",
        "big",
    ]
    with pytest.raises(ValueError, match="expected_value"):
        order_ranked(ranked_frame(), "amount")  # type: ignore[arg-type]


def test_filters_by_owner_channel_segment_and_priority_group():
    f = ranked_frame()

    def ids(filters: Filters) -> list[str]:
        return list(filters.apply(f)["deal_id"])

    assert ids(Filters(owners=("王芳",))) == ["big", "no_amount"]
    assert ids(Filters(channels=("Paid Ads", "Referral"))) == ["likely", "no_amount"]
    assert ids(Filters(segments=("Retail",))) == ["big", "tie"]  # an industry
    assert ids(Filters(segments=("mid-market", "small"))) == ["likely", "tie"]  # size bands
    assert ids(Filters(groups=("recently_lost", "Dormant"))) == ["likely", "no_amount"]
    assert ids(Filters(owners=("王芳",), groups=("active",))) == ["big"]
    # CRM statuses are not priority groups: 'open' covers both active and dormant deals.
    for status in ("open", "won"):
        with pytest.raises(ValueError, match="recently lost"):
            Filters(groups=(status,))


def test_segments_are_size_bands_by_employees():
    bands = size_band(pd.Series([0, 99, 100, 999, 1000, 250_000, np.nan]))
    assert list(bands) == [
        "small",
        "small",
        "mid-market",
        "mid-market",
        "enterprise",
        "enterprise",
        "unknown",
    ]


def test_batches_rank_exactly_as_one_batch(model):
    tables = synthetic_tables()
    as_of = pd.Timestamp("2025-06-01", tz="UTC")
    whole = rank_deals(tables, model, as_of, RankConfig(batch_size=100_000)).frame
    done: list[tuple[int, int]] = []
    batched = rank_deals(
        tables,
        model,
        as_of,
        RankConfig(batch_size=150, threads=1),
        progress=lambda task, n, total, **_: done.append((n, total)),
    ).frame
    pd.testing.assert_frame_equal(batched, whole)
    assert done == [(0, 539), (150, 539), (300, 539), (450, 539), (539, 539)]


def test_batches_ranked_on_processes_are_the_batches_ranked_here(model):
    # Several batches and two cores: forked processes rank them (issue 14), in batches
    # evened out between them; the rows and their order are those of the batches ranked
    # one after another here.
    tables = synthetic_tables()
    as_of = pd.Timestamp("2025-06-01", tz="UTC")
    here = rank_deals(tables, model, as_of, RankConfig(batch_size=150, threads=1))
    done: list[int] = []
    forked = rank_deals(
        tables,
        model,
        as_of,
        RankConfig(batch_size=150, threads=2),
        progress=lambda task, n, total, **_: done.append(n),
    )
    assert "batches" in forked.seconds and "batches" not in here.seconds  # where each ran
    assert forked.seconds["features"] > 0  # the processes' phases are counted
    pd.testing.assert_frame_equal(forked.frame, here.frame, check_exact=True)
    assert done == [0, 135, 270, 405, 539]  # four batches, two each


def test_a_ranking_process_writes_to_its_own_streams_not_the_parents_proxies(monkeypatch):
    # The CLI's progress bars replace stdout and stderr with proxies behind a lock their
    # refresh thread may hold at the fork; a ranking process writes past them.
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    monkeypatch.setattr(rank, "_FORKED", None)
    rank._adopt(None, None)  # type: ignore[arg-type]
    assert sys.stdout is sys.__stdout__ and sys.stderr is sys.__stderr__


def test_batches_are_evened_out_between_the_processes():
    assert even_batch_size(34_447, 10_000, 2) == 8_612  # 4 batches, not 3 and a small one
    assert even_batch_size(30_001, 10_000, 2) == 7_501  # 4, not 3: each process 2
    assert even_batch_size(100_000, 10_000, 2) == 10_000
    assert even_batch_size(539, 150, 1) == 150  # one process: as configured
    assert even_batch_size(0, 150, 2) == 150


def test_ranking_processes_one_per_core_at_most_one_per_batch():
    assert rank_processes(RankConfig(batch_size=100, threads=2), 1_000) == 2
    assert rank_processes(RankConfig(batch_size=100, threads=8), 250) == 3
    assert rank_processes(RankConfig(batch_size=100, threads=2), 100) == 1
    assert rank_processes(RankConfig(batch_size=100, threads=1), 1_000) == 1
    assert rank_processes(RankConfig(batch_size=100, threads=2), 0) == 1


def test_a_batch_whose_deals_never_had_a_reply_is_ranked(model):
    assert len(rank_deals(tiny_crm(), model, AS_OF).frame) == 3


def test_score_history_is_idempotent_per_day_and_model_and_gives_change_and_trend(
    stored, model, tmp_path
):
    out = tmp_path / "rankings"
    first = run_rank(stored, model, "1", out, as_of=AS_OF)
    assert first.ranked["change"].isna().all()  # nothing earlier to compare with
    again = run_rank(stored, model, "1", out, as_of=AS_OF + pd.Timedelta(hours=5))
    history = load_history(out / "score_history")
    assert len(history) == 3 and set(history["deal_id"]) == {"D2", "D3", "D4"}
    assert again.ranked["change"].isna().all()  # same day: still no earlier run
    run_rank(stored, model, "2", out, as_of=AS_OF)  # another model the same day adds its own rows
    assert sorted(load_history(out / "score_history")["model_version"].value_counts().items()) == [
        ("1", 3),
        ("2", 3),
    ]

    nxt = run_rank(stored, model, "2", out, as_of=AS_OF + pd.Timedelta(days=10))
    ranked = nxt.ranked.set_index("deal_id")
    before = history.set_index("deal_id")["probability"]
    np.testing.assert_allclose(
        ranked["change"], ranked["probability"] - before.reindex(ranked.index)
    )
    assert all(len(t) == 2 for t in ranked["trend"])
    assert len(load_history(out / "score_history")) == 9


def test_the_list_is_written_filtered_and_cut_as_parquet_and_csv(stored, model, tmp_path):
    run = run_rank(
        stored, model, "1", tmp_path, as_of=AS_OF, filters=Filters(owners=("U1",)), top=1
    )
    assert (
        len(load_history(tmp_path / "score_history")) == 3
    )  # every deal recorded, whatever the filter
    back = read_ranked(tmp_path)
    assert len(back) == 1 and back["owner_id"].iloc[0] == "U1" and back["rank"].iloc[0] == 1
    row = back.iloc[0]
    for col in (
        "deal_id",
        "account_id",
        "owner_id",
        "priority_group",
        "probability",
        "grade",
        "amount",
        "expected_value",
        "change",
        "next_step",
        "model_version",
        "as_of",
    ):
        assert col in back, col
    assert row["expected_value"] == pytest.approx(row["probability"] * row["amount"])
    assert {"feature", "text", "tooltip", "contribution"} <= set(row["negative_reasons"][0])
    csv = pd.read_csv(run.paths["csv"], encoding="utf-8-sig")
    assert csv.loc[0, "negative_reasons"] == "; ".join(r["text"] for r in row["negative_reasons"])


def test_the_terminal_table_lines_up_wide_characters():
    assert display_width("王芳 ok") == 7
    assert fit("王芳王芳", 5) == "王芳…"  # 4 + 1 cells
    assert display_width(fit("王芳王芳", 6)) == 6
    frame = order_ranked(ranked_frame()).assign(
        account_id=["华为技术有限公司", "Acme", "北京客户", "A9"],
        grade="A",
        change=[0.05, np.nan, -0.1, 0.0],
        next_step="Reply within 24h",
        positive_reasons=[[{"text": "Referral channel"}]] * 4,
        negative_reasons=[[]] * 4,
        risk_flags=[[{"text": "No follow-up for 20 days"}]] * 4,
    )
    lines = text_table(frame).splitlines()
    rows = [line for line in lines if not line.startswith(" ")]
    assert len(rows) == 5  # header and four deals
    # The group column starts at the same terminal cell on every row.
    starts = {
        display_width(line[: line.index(s)])
        for line, s in zip(rows, ["group", *frame["priority_group"]], strict=True)
    }
    assert len(starts) == 1
    assert "+5 pts" in rows[1] and "-10 pts" in rows[3] and "±0 pts" in rows[4]
    assert (
        lines[2].strip() == "+ Referral channel"
        and lines[3].strip() == "! No follow-up for 20 days"
    )


def test_a_killed_runs_leftover_from_an_earlier_day_is_swept_and_a_running_ones_is_kept(
    tmp_path,
):
    """A rank killed between writing and renaming leaves ``.scores.parquet.tmp``; the next
    run removes an old one (another day's) but not one a concurrent run is writing."""
    history = tmp_path / "score_history"
    old = history / "run_date=2025-01-01" / "model_version=1" / ".scores.parquet.tmp"
    fresh = history / "run_date=2025-01-02" / "model_version=1" / ".scores.parquet.tmp"
    for path in (old, fresh):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"half a parquet file")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    scored = pd.DataFrame(
        {
            "deal_id": ["D1"],
            "priority_group": [ACTIVE],
            "probability": [0.4],
            "grade": ["B"],
            "amount": [1000.0],
            "expected_value": [400.0],
        }
    )
    written = record_scores(
        history, scored, date(2025, 1, 3), "1", pd.Timestamp("2025-01-03", tz="UTC")
    )
    assert written.is_file() and not old.exists() and fresh.exists()
    assert len(load_history(history)) == 1


def test_the_history_is_read_by_the_columns_asked_for_those_a_file_holds(tmp_path):
    # The change and the trend read a few numbers per deal, not the reasons; a run
    # recorded before the ``model`` column is read without it.
    history = tmp_path / "score_history"
    scored = pd.DataFrame(
        {
            "deal_id": ["D1", "D2"],
            "priority_group": [ACTIVE, ACTIVE],
            "probability": [0.4, 0.1],
            "positive_reasons": [[], []],
        }
    )
    at = pd.Timestamp("2025-01-03", tz="UTC")
    record_scores(history, scored, date(2025, 1, 3), "1", at)
    record_scores(history, scored.assign(model="win"), date(2025, 1, 4), "1", at)
    read = load_history(history, columns=("deal_id", "model", "probability"))
    assert list(read.columns) == ["deal_id", "probability", "model"]
    assert read["model"].isna().tolist() == [True, True, False, False]
    assert "positive_reasons" in load_history(history)
    assert list(load_history(tmp_path / "none", columns=("deal_id",)).columns) == ["deal_id"]


@pytest.mark.parametrize(
    "moment",
    [
        pd.Timestamp("2025-06-01", tz="UTC"),
        pd.Timestamp("2025-06-01 13:45:10.123", tz="UTC"),
        pd.Timestamp("2025-06-01"),  # naive at midnight: pandas writes the date alone
        pd.Timestamp("2025-06-01 00:00:00.5"),
    ],
)
def test_the_csvs_one_moment_column_is_written_as_pandas_writes_it_row_by_row(moment):
    # `as_of` is one moment on every row: formatted once (issue 14), the bytes unchanged.
    frame = ranked_frame().assign(
        positive_reasons=[[{"text": "=a"}], [], [], []],
        negative_reasons=[[], [{"text": "b"}, {"text": "c"}], [], []],
        risk_flags=[[], [], [], []],
        trend=[[0.25], [], [0.5, 0.125], []],
        as_of=moment,
    )
    flat = rank._csv_frame(frame)
    assert (flat["as_of"] == flat["as_of"].iloc[0]).all()
    by_row = frame.assign(
        positive_reasons=flat["positive_reasons"],
        negative_reasons=flat["negative_reasons"],
        risk_flags=flat["risk_flags"],
        trend=flat["trend"],
    )
    assert flat["as_of"].iloc[0] == by_row[["as_of"]].to_csv(index=False).splitlines()[1]
    ours, theirs = io.BytesIO(), io.BytesIO()
    write_csv(flat, ours, encoding="utf-8-sig")
    write_csv(by_row, theirs, encoding="utf-8-sig")
    assert ours.getvalue() == theirs.getvalue()
