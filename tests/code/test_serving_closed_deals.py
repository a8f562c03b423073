"""The API never gives an open-deal score to a closed deal (issue 12), on the service class.

A hand-made CRM of four deals (open, won, lost, lost with no close time), its feature
sources built by the pipeline, and the service class with the in-memory point-in-time
join standing in for the Feast online store: /score_ids and /score answer a won deal
with its status, a lost one with a per-item error (or, asked for revival, the revival
model's answer: a small revival model trained here on a synthetic CRM with revival, its
probability checked against the model applied to the in-memory features), and still
score the open ones the same.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

from leadscore.config import DEFAULT_GRADE_THRESHOLDS, ServingConfig
from leadscore.crm.contract import UNDATED
from leadscore.features.catalog import revival_catalog
from leadscore.features.featurize import (
    DEAL_STATUS,
    TS,
    build_feature_sources,
    features_as_of,
    model_frame,
    profile_source,
    scoring_entities,
    status_as_of,
)
from leadscore.model.explain import Explainer
from serving.closed_deals import (
    CLOSED_UNKNOWN,
    LOST_MESSAGE,
    NO_REVIVAL_MODEL,
    UNKNOWN_OUTCOME,
    WON_NOTE,
    stored_status,
)
from serving.reload import ServedModels
from serving.revival import (
    NO_LOSS_TIME,
    SENT_IN_FULL,
    ServedRevival,
    revival_meaning,
)
from serving.schemas import ModelFacts, ScoreIdsRequest, ScoreRequest, ScoreResult
from tests.serving_fixture import REVIVAL_AS_OF, revival_tables, small_champion, small_revival

T0 = pd.Timestamp("2025-01-01", tz="UTC")
CLOSED = pd.Timestamp("2025-03-01", tz="UTC")
AS_OF = pd.Timestamp("2025-05-01", tz="UTC")
BEFORE_CLOSE = pd.Timestamp("2025-02-01", tz="UTC")


def deals() -> pd.DataFrame:
    """Open, won and lost deals closed on 1 March, and a lost one with no close time."""
    return pd.DataFrame(
        {
            "deal_id": ["OPEN", "WON", "LOST", "LOST-UNDATED"],
            "account_id": ["A1", "A1", "A2", "A2"],
            "owner_id": ["U1", "U1", "U1", "U1"],
            "created_at": [T0] * 4,
            "channel": ["web"] * 4,
            "product": ["core"] * 4,
            "amount": [1000.0] * 4,
            "status": ["open", "won", "lost", "lost"],
            "closed_at": [pd.NaT, CLOSED, CLOSED, pd.NaT],
        }
    )


# ====================================================================== the stored status
def test_the_profile_source_dates_a_close_by_a_second_row_with_the_outcome():
    profile = profile_source(deals(), None)
    rows = {d: g[[TS, DEAL_STATUS]].values.tolist() for d, g in profile.groupby("deal_id")}
    assert rows["OPEN"] == [[T0, "open"]]
    assert rows["WON"] == [[T0, "open"], [CLOSED, "won"]]
    assert rows["LOST"] == [[T0, "open"], [CLOSED, "lost"]]
    # No close time: the outcome is all that is known, from the one row on.
    assert rows["LOST-UNDATED"] == [[T0, "lost"]]
    # The second row repeats the profile: no model input changes at the close.
    won = profile[profile["deal_id"] == "WON"].drop(columns=[TS, DEAL_STATUS])
    assert won.iloc[0].equals(won.iloc[1])


def test_a_close_at_the_creation_instant_or_an_undated_creation_leaves_one_row():
    d = deals().iloc[[1, 2]].copy()
    d["closed_at"] = [T0, CLOSED]
    d["created_at"] = [T0, pd.NaT]
    profile = profile_source(d, None)
    assert profile[[TS, DEAL_STATUS]].values.tolist() == [[UNDATED, "lost"], [T0, "won"]]


def test_the_status_is_point_in_time():
    sources = build_feature_sources({"deals": deals()})
    before = features_as_of(sources, scoring_entities(deals(), BEFORE_CLOSE))
    after = features_as_of(sources, scoring_entities(deals(), AS_OF))
    assert before[DEAL_STATUS].tolist() == ["open", "open", "open", "lost"]
    assert after[DEAL_STATUS].tolist() == ["open", "won", "lost", "lost"]


@pytest.mark.parametrize(
    ("status", "closed_at", "expected"),
    [
        ("open", None, "open"),
        ("won", CLOSED, "won"),
        ("lost", CLOSED, "lost"),
        ("lost", None, "lost"),
        ("lost", AS_OF, "lost"),  # closed at the very moment: closed
        ("won", AS_OF + pd.Timedelta(seconds=1), "open"),  # closed after as_of: open then
    ],
)
def test_status_as_of(status: str, closed_at: pd.Timestamp | None, expected: str):
    when = None if closed_at is None else closed_at.to_pydatetime()
    assert status_as_of(status, when, AS_OF.to_pydatetime()) == expected


@pytest.mark.parametrize(
    ("stored", "stage", "expected"),
    [
        ("won", 4.0, "won"),
        ("lost", 2.0, "lost"),
        ("open", 4.0, "open"),  # the stored status wins
        (None, 4.0, CLOSED_UNKNOWN),  # an older store: the closed stage says closed
        (None, 2.0, "open"),
        (None, math.nan, "open"),
        (None, None, "open"),
    ],
)
def test_stored_status(stored: Any, stage: Any, expected: str):
    assert stored_status(stored, stage) == expected


# ====================================================================== the service class
class NoHistory:
    """Track records: none known (the features stay missing)."""

    def lookup(self, pairs: Any) -> list[dict[str, Any]]:
        return [{} for _ in pairs]


class InMemoryStore:
    """The online store's place: runs a lookup with no store object."""

    def run(self, lookup: Any, deadline: float | None = None) -> Any:
        return lookup(None)


@pytest.fixture
def service(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> Iterator[Any]:
    """The service class around the tests' model, with the hand-made CRM as its store."""
    yield scoring_service(monkeypatch, tmp_path, {"deals": deals()})


def scoring_service(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
    tables: Mapping[str, pd.DataFrame],
    revival: ServedRevival | None = None,
) -> Any:
    """The service class around the tests' win model (and ``revival``), with ``tables``
    as its online store: every feature service's lookup is the in-memory point-in-time
    join of the tables' feature sources at ``as_of``."""
    from serving import service as module
    from tests.conftest import isolated

    table = tables["deals"]
    sources = build_feature_sources(tables)
    keys = table.set_index("deal_id")
    drop_status = {"on": False}

    def online(
        store: Any, feature_service: str, ids: list[str], as_of: datetime, attributes: Any = ()
    ) -> pd.DataFrame:
        known = keys.reindex(ids)
        entities = pd.DataFrame(
            {
                "deal_id": ids,
                "account_id": known["account_id"].fillna("").tolist(),
                "owner_id": known["owner_id"].fillna("").tolist(),
                TS: pd.Series([pd.Timestamp(as_of)] * len(ids), dtype="datetime64[us, UTC]"),
            }
        )
        frame = features_as_of(sources, entities)
        return frame.drop(columns=DEAL_STATUS) if drop_status["on"] else frame

    monkeypatch.setattr(module, "online_features", online)
    svc = module.LeadScorer.inner.__new__(module.LeadScorer.inner)
    svc.config = ServingConfig(grade_thresholds={"A": 60, "B": 40, "C": 20})
    svc.settings = isolated(tmp_path)
    model = small_champion()[0]
    svc.models = ServedModels(
        model=model,
        version="7",
        bento_tag="lead_scorer:test",
        alias="champion",
        explainer=Explainer(model, svc.config.grade_thresholds),
        attributes={},
        revival=revival,
    )
    svc.online = InMemoryStore()
    svc.track_records = NoHistory()
    svc.drop_status = drop_status
    return svc


def context() -> Any:
    return SimpleNamespace(response=SimpleNamespace(status_code=200, headers={}))


def by_ids(svc: Any, ids: Sequence[str], ctx: Any = None, **extra: Any) -> Any:
    request = ScoreIdsRequest(deal_ids=list(ids), as_of=AS_OF.to_pydatetime(), **extra)
    return svc.score_ids(request, ctx)


def sent(deal_id: str, **changes: Any) -> dict[str, Any]:
    return {
        "deal_id": deal_id,
        "account_id": "A1",
        "created_at": T0.isoformat(),
        "channel": "web",
        "product": "core",
        "amount": 1000,
        **changes,
    }


def in_full(svc: Any, payloads: list[dict[str, Any]], ctx: Any = None, **extra: Any) -> Any:
    request = ScoreRequest.model_validate({"deals": payloads, "as_of": AS_OF.isoformat(), **extra})
    return svc.score(request, ctx)


def is_won(result: ScoreResult, deal_id: str) -> bool:
    scored = {"probability", "score", "grade", "positive_reasons", "negative_reasons"}
    return (
        result["deal_id"] == deal_id
        and result["status"] == "won"
        and result["note"] == WON_NOTE
        and not scored & result.keys()
    )


def is_scored(result: ScoreResult, deal_id: str) -> bool:
    return (
        result["deal_id"] == deal_id
        and result["status"] == "open"
        and 0 <= result["probability"] <= 1
        and "note" not in result
    )


def closed_problem(error: Any, index: int, deal_id: str, loc: list[Any], msg: str) -> bool:
    return (
        error.index == index
        and error.deal_id == deal_id
        and [(p.loc, p.msg, p.type) for p in error.problems] == [(loc, msg, "invalid_value")]
    )


def test_score_ids_answers_won_with_its_status_lost_with_an_error_and_scores_open(service):
    ctx = context()
    response = by_ids(service, ["WON", "OPEN", "LOST"], ctx)
    assert ctx.response.status_code == 200
    won, scored = response.results
    assert is_won(won, "WON") and is_scored(scored, "OPEN")
    assert won["model_version"] == "7" and won["as_of"] == AS_OF.to_pydatetime()
    [error] = response.errors
    assert closed_problem(error, 2, "LOST", ["deal_ids", 2], LOST_MESSAGE)


def test_score_ids_a_lost_deal_without_a_close_time_is_lost(service):
    response = by_ids(service, ["LOST-UNDATED"], context())
    assert response.results == []
    assert closed_problem(response.errors[0], 0, "LOST-UNDATED", ["deal_ids", 0], LOST_MESSAGE)


def test_score_ids_revival_asks_the_revival_model_which_is_not_registered_yet(service):
    response = by_ids(service, ["LOST", "OPEN", "WON"], context(), revival=True)
    assert [r["deal_id"] for r in response.results] == ["OPEN", "WON"]
    assert is_scored(response.results[0], "OPEN") and is_won(response.results[1], "WON")
    [error] = response.errors
    assert closed_problem(error, 0, "LOST", ["deal_ids", 0], NO_REVIVAL_MODEL)


def test_the_revival_model_is_asked_through_one_function(service, monkeypatch):
    """The revival model replaces ``_revival_results`` only: what it answers is served."""
    answer = {"deal_id": "LOST", "status": "lost", "warnings": []}
    monkeypatch.setattr(
        type(service),
        "_revival_results",
        lambda self, served, lost, as_of, now: ([(c.index, answer) for c in lost], []),
    )
    response = by_ids(service, ["OPEN", "LOST"], context(), revival=True)
    assert response.results[1] is answer and not response.errors
    assert by_ids(service, ["LOST"], context()).errors[0].problems[0].msg == LOST_MESSAGE


def test_score_ids_all_or_nothing_with_a_lost_deal_fails_the_batch(service):
    ctx = context()
    response = by_ids(service, ["OPEN", "LOST"], ctx, all_or_nothing=True)
    assert ctx.response.status_code == 422 and response.results == []
    assert closed_problem(response.errors[0], 1, "LOST", ["deal_ids", 1], LOST_MESSAGE)


def test_score_ids_a_won_deal_is_an_answer_not_an_error(service):
    ctx = context()
    response = by_ids(service, ["WON"], ctx, all_or_nothing=True)
    assert ctx.response.status_code == 200 and not response.errors
    assert is_won(response.results[0], "WON")


def test_score_ids_only_lost_deals_is_422(service):
    ctx = context()
    response = by_ids(service, ["LOST", "LOST-UNDATED"], ctx)
    assert ctx.response.status_code == 422 and len(response.errors) == 2


def test_score_ids_a_store_without_statuses_never_scores_a_deal_in_the_closed_stage(
    service, monkeypatch
):
    from serving import service as module

    service.drop_status["on"] = True
    real = module.model_frame

    def closed_stage(frame: pd.DataFrame, attributes: Any = ()) -> pd.DataFrame:
        out = real(frame, attributes)
        out["stage_index"] = [4.0 if d == "LOST" else 1.0 for d in frame["deal_id"]]
        return out

    monkeypatch.setattr(module, "model_frame", closed_stage)
    response = by_ids(service, ["OPEN", "LOST"], context())
    assert [r["deal_id"] for r in response.results] == ["OPEN"]
    assert closed_problem(response.errors[0], 1, "LOST", ["deal_ids", 1], UNKNOWN_OUTCOME)


def test_score_answers_a_sent_won_deal_with_its_status_and_a_lost_one_with_an_error(service):
    ctx = context()
    payloads = [
        sent("W", status="won", closed_at=CLOSED.isoformat()),
        sent("O"),
        sent("L", status="LOST", closed_at=CLOSED.isoformat()),
        sent("L2", status="lost"),  # no close time: lost all the same
    ]
    response = in_full(service, payloads, ctx)
    assert ctx.response.status_code == 200
    assert is_won(response.results[0], "W") and is_scored(response.results[1], "O")
    assert len(response.results) == 2
    assert closed_problem(response.errors[0], 2, "L", ["deals", 2], LOST_MESSAGE)
    assert closed_problem(response.errors[1], 3, "L2", ["deals", 3], LOST_MESSAGE)


def test_score_a_deal_closed_after_as_of_was_open_then_and_is_scored(service):
    later = (AS_OF + pd.Timedelta(days=1)).isoformat()
    response = in_full(service, [sent("L", status="lost", closed_at=later)], context())
    assert not response.errors and is_scored(response.results[0], "L")


def test_score_the_open_score_is_the_same_whatever_closed_deals_come_with_it(service):
    alone = in_full(service, [sent("O")], context()).results[0]
    mixed = in_full(
        service,
        [sent("W", status="won"), sent("O"), sent("L", status="lost")],
        context(),
        revival=True,
    )
    assert mixed.results[1]["probability"] == alone["probability"]
    assert mixed.errors[0].problems[0].msg == NO_REVIVAL_MODEL


def test_score_all_or_nothing_with_a_lost_deal_fails_the_batch_and_only_won_is_200(service):
    ctx = context()
    response = in_full(service, [sent("O"), sent("L", status="lost")], ctx, all_or_nothing=True)
    assert ctx.response.status_code == 422 and response.results == []
    ctx = context()
    response = in_full(service, [sent("W", status="won")], ctx, all_or_nothing=True)
    assert ctx.response.status_code == 200 and is_won(response.results[0], "W")


def test_revival_is_off_by_default_and_documented():
    for model in (ScoreRequest, ScoreIdsRequest):
        field = model.model_fields["revival"]
        assert field.default is False and field.description and field.examples == [True]


# ====================================================================== the revival model
@lru_cache(maxsize=1)
def revival_crm() -> tuple[dict[str, pd.DataFrame], ServedRevival]:
    """The revival CRM and a small revival model trained on it, as the service holds it."""
    model, _ = small_revival()
    explainer = Explainer(model, DEFAULT_GRADE_THRESHOLDS, catalog=revival_catalog())
    return revival_tables(), ServedRevival(model, "lead_scorer_revival", "3", "r:1", 365, explainer)


def status_at(tables: Mapping[str, pd.DataFrame], as_of: pd.Timestamp) -> pd.DataFrame:
    """Every deal's features at ``as_of``, by the in-memory join (the test's own reading)."""
    deals_ = tables["deals"]
    return features_as_of(build_feature_sources(tables), scoring_entities(deals_, as_of))


@pytest.fixture(scope="module")
def revival_case() -> tuple[dict[str, pd.DataFrame], ServedRevival, pd.DataFrame]:
    tables, revival = revival_crm()
    return tables, revival, status_at(tables, REVIVAL_AS_OF)


@pytest.fixture
def revival_service(monkeypatch, tmp_path, revival_case) -> Any:
    tables, revival, _ = revival_case
    return scoring_service(monkeypatch, tmp_path, tables, revival)


def some(features: pd.DataFrame, status: str, n: int) -> list[str]:
    """``n`` deals of ``status`` at the revival CRM's as_of (lost: with a dated loss)."""
    rows = features[features[DEAL_STATUS] == status]
    if status == "lost":
        rows = rows[rows["days_since_loss"].notna()]
    return rows["deal_id"].head(n).tolist()


def revived(svc: Any, ids: Sequence[str], revival: bool = True, ctx: Any = None) -> Any:
    request = ScoreIdsRequest(
        deal_ids=list(ids), as_of=REVIVAL_AS_OF.to_pydatetime(), revival=revival
    )
    return svc.score_ids(request, ctx)


def test_revival_meaning_says_the_horizon_in_months_or_days():
    assert revival_meaning(365) == "chance of a win within 12 months if re-engaged now"
    assert revival_meaning(730) == "chance of a win within 24 months if re-engaged now"
    assert revival_meaning(180) == "chance of a win within 180 days if re-engaged now"


def test_score_ids_a_lost_deal_asked_for_revival_gets_the_revival_models_probability(
    revival_service, revival_case
):
    tables, revival, features = revival_case
    lost = some(features, "lost", 5)
    assert len(lost) == 5
    response = revived(revival_service, lost)
    assert not response.errors
    # The expectation, apart from the service: the model on the in-memory features at as_of.
    mine = features.set_index("deal_id").loc[lost].reset_index()
    X = revival.model.encode(model_frame(mine, catalog=revival_catalog()))
    expected = revival.model.probability(X)
    assert len(set(expected.round(6))) > 1  # the deals differ: not a constant
    for result, deal_id, p in zip(response.results, lost, expected, strict=True):
        assert result["deal_id"] == deal_id and result["status"] == "lost"
        assert result["probability"] == pytest.approx(p, abs=1e-9)
        assert result["score"] == int(round(100 * p))
        assert result["meaning"] == "chance of a win within 12 months if re-engaged now"
        assert result["model_name"] == "lead_scorer_revival" and result["model_version"] == "3"
        assert "grade" not in result  # the grade thresholds are the win model's
        # Reasons in words, of the revival model's own features.
        revival_names = {f.name for f in revival_catalog()}
        reasons = result["positive_reasons"] + result["negative_reasons"]
        assert reasons and all(r["feature"] in revival_names for r in reasons)


def test_revival_leaves_won_deals_unscored_and_open_deals_as_the_win_model_scores_them(
    revival_service, revival_case, monkeypatch, tmp_path
):
    tables, _, features = revival_case
    won, opened, lost = (
        some(features, "won", 2),
        some(features, "open", 3),
        some(features, "lost", 1),
    )
    response = revived(revival_service, [*won, *opened, *lost])
    statuses = [r["status"] for r in response.results]
    assert statuses == ["won", "won", "open", "open", "open", "lost"]
    assert all(is_won(r, d) for r, d in zip(response.results[:2], won, strict=True))
    # Open deals: the same numbers with revival off, and without any revival model.
    plain = scoring_service(monkeypatch, tmp_path / "plain", tables)
    for other in (revived(revival_service, opened, False), revived(plain, opened, True)):
        assert [r["probability"] for r in other.results] == [
            r["probability"] for r in response.results[2:5]
        ]
        assert all(is_scored(r, d) for r, d in zip(other.results, opened, strict=True))


def test_revival_off_still_refuses_a_lost_deal(revival_service, revival_case):
    lost = some(revival_case[2], "lost", 1)
    response = revived(revival_service, lost, revival=False)
    assert response.results == [] and response.errors[0].problems[0].msg == LOST_MESSAGE


def test_a_lost_deal_sent_in_full_for_revival_is_an_error_naming_score_ids(
    monkeypatch, tmp_path, revival_case
):
    svc = scoring_service(monkeypatch, tmp_path, {"deals": deals()}, revival_case[1])
    response = in_full(svc, [sent("O"), sent("L", status="lost")], context(), revival=True)
    assert is_scored(response.results[0], "O") and len(response.results) == 1
    assert closed_problem(response.errors[0], 1, "L", ["deals", 1], SENT_IN_FULL)
    assert "/score_ids" in SENT_IN_FULL


def test_a_lost_deal_without_a_loss_time_is_an_error_not_a_revival_score(
    monkeypatch, tmp_path, revival_case
):
    svc = scoring_service(monkeypatch, tmp_path, {"deals": deals()}, revival_case[1])
    response = by_ids(svc, ["LOST", "LOST-UNDATED"], context(), revival=True)
    [result] = response.results
    assert result["deal_id"] == "LOST" and result["status"] == "lost"
    assert 0 <= result["probability"] <= 1
    assert closed_problem(response.errors[0], 1, "LOST-UNDATED", ["deal_ids", 1], NO_LOSS_TIME)


def test_get_model_lists_the_revival_model_when_one_is_served(monkeypatch, tmp_path, revival_case):
    bento = SimpleNamespace(info=SimpleNamespace(labels={"alias": "champion"}), tag="lead_scorer:x")
    for revival, expected in ((None, None), (revival_case[1], ("lead_scorer_revival", "3"))):
        svc = scoring_service(monkeypatch, tmp_path, {"deals": deals()}, revival)
        svc.bento_model = bento
        facts = ModelFacts.model_validate(svc.model_facts())
        got = facts.revival and (facts.revival.model_name, facts.revival.model_version)
        assert got == expected
