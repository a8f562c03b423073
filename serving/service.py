"""The lead scoring service: calibrated win probabilities with reasons, over HTTP.

``POST /score`` takes deals as the CRM holds them and computes their features with the
feature kernels training used (:func:`serving.payload.payload_features`); account and
owner track records come from the Feast online store. ``POST /score_ids`` takes ids only
and reads every feature from the online store. Both answer an open deal with a
probability, a 0-100 score, a grade and the reasons either way a rep can use, explained by
LightGBM's TreeSHAP. A closed deal never gets that open-deal score
(:mod:`serving.closed_deals`): a won deal is answered with its status, a lost one with a
per-item error, or by the revival model when the request sets ``revival``
(:mod:`serving.revival`: ``/score_ids`` only, features from the online store's
``revival_v1``; loaded when ``leadscore serve`` found a packaged revival champion).

With no trained champion yet, ``leadscore serve`` starts the service on the packaged
small-organisation fallback (:mod:`serving.fallback`): every open deal is then answered
with its probability and reasons, a ``model`` label and a warning saying it is a rough
prior and when a trained model takes over; ``GET /model`` says the same (``fallback``).

``GET /model`` says which model is served (name, version, alias) and how good training
measured it to be: the quality summary stored in the model (:mod:`training.quality`),
and the revival model's name and version when one is served.
``GET /healthz`` and ``/livez`` say the process is alive; ``GET /readyz`` that the model
is loaded and the online store answers; ``GET /metrics`` is BentoML's Prometheus endpoint
(plus ``leadscore_deals_total`` and ``leadscore_shed_total``, the 503s of an
overloaded worker by reason). When ``LEADSCORE_API_TOKEN`` is set, the scoring
endpoints require ``Authorization: Bearer <token>`` and the priority page at ``/leads``
the same token (or, from a browser, Basic authentication with the token as password);
health, metrics and docs stay open.

Payloads are never logged: they may carry contact names, e-mails and phones.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import partial
from typing import Any

import bentoml
import pandas as pd
from bentoml.models import BentoModel

from leadscore.config import REVIVAL_FEATURE_SERVICE, ServingConfig, load_settings
from leadscore.crm.contract import API_CLOCK_SKEW, LOST, OPEN, WON
from leadscore.crm.ingest import historical_as_of
from leadscore.features.featurize import DEAL_STATUS, model_frame, status_as_of
from leadscore.features.store import online_features
from leadscore.model.drift import read_latest
from leadscore.model.scoring_model import NO_QUALITY, Columns
from serving import timing
from serving.auth import LEADS_PATH, JsonBodyMiddleware, TokenMiddleware
from serving.champion_pointer import ServedChampion, read_served_pointer
from serving.closed_deals import (
    CLOSED_UNKNOWN,
    LOST_MESSAGE,
    NO_REVIVAL_MODEL,
    UNKNOWN_OUTCOME,
    ClosedDeal,
    closed_error,
    stored_status,
    won_result,
)
from serving.fallback import FallbackScorer
from serving.leads_page import create_app as leads_page
from serving.leads_page import create_index_app
from serving.limits import SHED_REASONS, AdmissionMiddleware, shed_total
from serving.online import OPEN_DEADLINE_SECONDS, OnlineStore, StoreUnavailable, TrackRecords
from serving.payload import (
    compile_feature_kernels,
    deal_problems,
    input_warnings,
    payload_features,
)
from serving.reload import ServedModels, differs, load_pointed, load_served
from serving.revival import (
    SENT_IN_FULL,
    ServedRevival,
    revival_columns,
    revival_results,
    sent_in_full,
)
from serving.schemas import (
    DealError,
    DealIn,
    InvalidDeal,
    ModelFacts,
    Problem,
    ScoreIdsRequest,
    ScoreRequest,
    ScoreResponse,
    ScoreResult,
    ScoreWarning,
    attribute_columns,
    attribute_problems,
    document_attributes,
    document_model_route,
    document_responses,
)
from serving.served_log import ServedLog

log = logging.getLogger(__name__)


#: Exported at /metrics with BentoML's own metrics. ``bentoml.metrics``, not
#: ``prometheus_client``: BentoML creates it lazily, once each worker's multiprocess mode
#: is set up (importing prometheus_client in a service breaks that mode, BentoML's docs
#: say). Every endpoint/outcome series is created at 0 when the service starts, so the
#: counter shows on /metrics before the first deal, not only after.
DEAL_OUTCOMES = (
    ("score", "scored"),
    ("score", "rejected"),
    ("score_ids", "scored"),
    ("score_ids", "rejected"),
)
#: Alerts of the last ``leadscore monitor`` run (``leadscore.model.drift.read_latest``),
#: -1 before any; re-read every ``ServingConfig.drift_refresh_seconds``. Across workers
#: the most recently set value: they all read the same file, and a process that only
#: imported this module (its gauge never set) must not outvote them, as "max" let a 0 do.
drift_alerts = bentoml.metrics.Gauge(
    "leadscore_drift_alerts",
    "Alerts raised by the last `leadscore monitor` run (0: none; -1: it never ran).",
    multiprocess_mode="mostrecent",
)
#: Switches to a newly packaged champion (:mod:`serving.reload`), by outcome.
RELOAD_OUTCOMES = ("loaded", "failed")
model_reloads = bentoml.metrics.Counter(
    "leadscore_model_reloads",
    "Hot reloads of the served models named by the served-champion pointer, by outcome "
    "(loaded; failed: the old models kept serving).",
    ["outcome"],
)
deals_total = bentoml.metrics.Counter(
    "leadscore_deals",
    "Deals received by the scoring endpoints, by endpoint and outcome (scored, rejected).",
    ["endpoint", "outcome"],
)


#: Warning on results scored at a past moment: the online store keeps only the latest state.
PAST_TRACK_RECORD: ScoreWarning = {
    "field": "account_history",
    "message": "Scored as of a past moment, but account and owner track records are the "
    "online store's latest: deals closed since then count too.",
}


# The managers' priority list (the page `leadscore report` writes) is served beside the
# API, from the latest ranked list. BentoML's own index at "/" loads a tag manager from
# the internet: ours replaces it, and serves /docs.json with every error answer documented.
@bentoml.asgi_app(leads_page(), path=LEADS_PATH)
@bentoml.asgi_app(
    create_index_app(
        lambda: _documented_spec(bentoml.get_current_service().models),
        lambda: bentoml.get_current_service().model_facts(),
    ),
    path="/",
)
@bentoml.service(
    name="lead_scorer",
    workers="cpu_count",
    traffic={"timeout": 60},
    # Set in every worker by `bentoml serve` (a value in the environment wins) and in a
    # built Bento's image: one OpenMP thread per worker (LightGBM's default of one per core
    # oversubscribes a small machine), and usage telemetry off (MLflow loads in workers).
    envs=[
        {"name": "OMP_NUM_THREADS", "value": "1"},
        {"name": "MLFLOW_DISABLE_TELEMETRY", "value": "true"},
        {"name": "BENTOML_DO_NOT_TRACK", "value": "true"},
    ],
)
class LeadScorer:
    """Lead scoring: calibrated win probability, score, grade and reasons for CRM deals."""

    # Declared on the class so `bentoml build` packages it. The tag comes from configuration:
    # `leadscore serve` passes the champion's exact one; a built Bento holds only that model.
    bento_model = BentoModel(load_settings().bento_model_tag)
    # The revival model, when `leadscore serve` (or `build`) found a packaged revival
    # champion and set LEADSCORE_REVIVAL_MODEL_TAG; else None. A conditional class
    # attribute because BentoML 1.4 has no optional model: the service collects its models
    # from the class attributes that are models (bentoml.models.BentoModel), resolves each
    # when a worker starts and `bentoml build` packages each, so an attribute that is None
    # is no model at all, while a BentoModel of a tag not in the store fails the start.
    _revival_tag = load_settings().revival_bento_model_tag
    revival_bento_model = BentoModel(_revival_tag) if _revival_tag else None

    #: One row per scored deal, for drift and realised quality (None: turned off).
    served: ServedLog | None = None

    def __init__(self) -> None:
        self.config = ServingConfig.from_env()
        self.settings = load_settings()
        #: The served models, one reference (:mod:`serving.reload`): a request reads it
        #: once, and :meth:`_watch_models` replaces it when a new champion is packaged.
        self.models: ServedModels = load_served(
            self.bento_model,
            self.revival_bento_model,
            self.settings,
            dict(self.config.grade_thresholds),
        )
        self.served = (
            ServedLog(
                self.settings.served_dir,
                self.models.model.features,
                self.config.served_log_flush_seconds,
            )
            if self.config.served_log
            else None
        )
        threading.Thread(target=self._watch_drift, name="drift-gauge", daemon=True).start()
        for outcome in RELOAD_OUTCOMES:
            model_reloads.labels(outcome=outcome)
        if self.config.model_reload_seconds > 0:
            threading.Thread(target=self._watch_models, name="model-reload", daemon=True).start()
        compile_feature_kernels()
        self.online = OnlineStore(self.settings, self.config.store_timeout_seconds)
        self.track_records = TrackRecords(self.online, self.config.history_ttl_seconds)
        for endpoint, outcome in DEAL_OUTCOMES:
            deals_total.labels(endpoint=endpoint, outcome=outcome)
        for reason in SHED_REASONS:
            shed_total.labels(reason=reason)
        # Open the store now, so neither the first request nor the first probe pays for it.
        if self.track_records.reachable(OPEN_DEADLINE_SECONDS):
            # The first feature-service lookup costs far more than the next ones: pay it now.
            services = [self.settings.feature_service]
            services += [REVIVAL_FEATURE_SERVICE] if self.models.revival is not None else []
            try:
                for service in services:
                    warm_up = partial(
                        online_features,
                        feature_service=service,
                        deal_ids=["__warmup__"],
                        as_of=datetime.now(UTC),
                    )
                    self.online.run(warm_up, OPEN_DEADLINE_SECONDS)
            except StoreUnavailable as exc:
                log.warning("online store warm-up failed (%s)", exc)
        else:
            log.warning(
                "online feature store unreachable at %s; not ready", self.settings.feature_repo
            )
        log.info(
            "loaded %s (MLflow version %s, %d features); revival model %s",
            self.models.bento_tag,
            self.models.version,
            len(self.models.model.features),
            self.models.revival_tag or "none",
        )

    # ------------------------------------------------------------------ endpoints
    @bentoml.api(route="/score")
    @timing.timed
    def score(self, request: ScoreRequest, /, ctx: bentoml.Context = None) -> ScoreResponse:  # type: ignore[assignment]
        """Score deals sent in full (deal fields, account, contacts, activities, stage history).

        Features are computed from the deal as sent, at `as_of`; the account's and owner's
        track records are the online store's latest, even for an `as_of` in the past (each
        result then says so in a warning). Invalid deals are listed in `errors`
        and the rest scored (200), unless `all_or_nothing` is true or no deal is valid
        (422). Unknown categories and missing optional data are scored, with a warning in
        the deal's result. At most 1,000 deals per request. A deal won by `as_of` is
        answered with its status and no score; a lost one is an error unless `revival`.
        """
        now = datetime.now(UTC)
        as_of = request.as_of or now
        models = self.models  # one model for the whole request, even across a reload
        valid: list[tuple[int, DealIn]] = []
        errors: list[DealError] = []
        seen: set[str] = set()
        for i, deal in enumerate(request.deals):
            if isinstance(deal, InvalidDeal):
                problems, deal_id = deal.problems, deal.deal_id
            else:
                problems, deal_id = deal_problems(deal, as_of, now), deal.deal_id
                problems += attribute_problems(deal, models.attributes)
                if deal.deal_id in seen:
                    problems.append(
                        Problem(
                            loc=["deal_id"],
                            msg="appears more than once in the batch",
                            type="invalid_value",
                        )
                    )
                seen.add(deal.deal_id)
            if problems:
                errors.append(
                    DealError(index=i, deal_id=deal_id, problems=_located(("deals", i), problems))
                )
            else:
                valid.append((i, deal))
        closed = [
            ClosedDeal(i, d.deal_id, ("deals", i), status)
            for i, d in valid
            if (status := status_as_of(d.status, d.closed_at, as_of)) != OPEN
        ]
        answered, closed_errors = self._answer_closed(models, closed, request.revival, as_of, now)
        errors = sorted(errors + closed_errors, key=lambda e: e.index)
        shut = {c.index for c in closed}
        positions = [i for i, _ in valid if i not in shut]
        valid_deals = [d for i, d in valid if i not in shut]
        if errors and (request.all_or_nothing or not (valid_deals or answered)):
            return self._rejected(models, "score", len(request.deals), errors, ctx)
        return self._score_sent(models, valid_deals, positions, answered, errors, as_of, now)

    def _score_sent(
        self,
        models: ServedModels,
        valid: list[DealIn],
        positions: list[int],
        answered: list[tuple[int, ScoreResult]],
        errors: list[DealError],
        as_of: datetime,
        now: datetime,
    ) -> ScoreResponse:
        """The open deals sent in full, scored; ``answered``: the closed deals' results."""
        if not valid:  # every valid deal was closed: nothing to compute or look up
            return self._respond(models, "score", [], {}, [], errors, as_of, now, [], answered)
        with timing.phase("features"):
            columns = payload_features(valid, as_of)
            columns.update(attribute_columns(valid, models.model.attributes))
        warnings = [input_warnings(d) for d in valid]
        history = self.track_records.lookup((d.account_id, d.owner_id or "") for d in valid)
        if history is None:
            for w in warnings:
                w.append(
                    {
                        "field": "account_history",
                        "message": "Online store unreachable: account and owner track records "
                        "are scored as unknown.",
                    }
                )
        else:
            for name in history[0] if history else ():
                columns[name] = [h[name] for h in history]
            if as_of < now - API_CLOCK_SKEW:
                for w in warnings:
                    w.append(PAST_TRACK_RECORD)
        return self._respond(
            models,
            "score",
            [d.deal_id for d in valid],
            columns,
            warnings,
            errors,
            as_of,
            now,
            positions,
            answered,
        )

    @bentoml.api(route="/score_ids")
    @timing.timed
    def score_ids(self, request: ScoreIdsRequest, /, ctx: bentoml.Context = None) -> ScoreResponse:  # type: ignore[assignment]
        """Score deals by id, with every feature from the online feature store.

        Ids the store does not know are listed in `errors`; the same 200/422 rules as
        /score apply. The store holds each deal's latest state: `as_of` moves the
        request-time features (deal age, days since last activity...), not the history.
        It defaults to now, or to the stored export's last recorded event when that is more
        than a day ago (a historical export); the response's `as_of` says which. Each
        deal's status is the store's latest too: a won deal is answered with its status
        and no score; a lost one is an error unless `revival`.
        """
        now = datetime.now(UTC)
        # A historical export is scored as of its last recorded event, as it is ranked.
        historical = historical_as_of(self.settings.crm_dir, pd.Timestamp(now))
        as_of = request.as_of or (historical.to_pydatetime() if historical is not None else now)
        models = self.models  # one model for the whole request, even across a reload
        ids, errors, index = [], [], {}
        for i, deal_id in enumerate(request.deal_ids):
            if deal_id in index:
                errors.append(
                    DealError(
                        index=i,
                        deal_id=deal_id,
                        problems=[
                            Problem(
                                loc=["deal_ids", i],
                                msg="appears more than once in the batch",
                                type="invalid_value",
                            )
                        ],
                    )
                )
            else:
                index[deal_id] = i
                ids.append(deal_id)
        try:
            frame = self.online.run(
                lambda store: online_features(
                    store, self.settings.feature_service, ids, as_of, models.model.attributes
                )
            )
        except StoreUnavailable as exc:
            log.warning("online store lookup failed (%s)", exc)
            errors += [
                DealError(
                    index=index[d],
                    deal_id=d,
                    problems=[
                        Problem(
                            loc=["deal_ids", index[d]],
                            msg=f"{exc}; retry in a few seconds, or send the deal "
                            "in full to /score",
                            type="unavailable",
                        )
                    ],
                )
                for d in ids
            ]
            if ctx is not None:
                ctx.response.status_code = 503
                ctx.response.headers["Retry-After"] = "1"
            return self._response(models, [], errors)

        features = model_frame(frame, models.model.attributes)
        statuses = frame[DEAL_STATUS] if DEAL_STATUS in frame else [None] * len(ids)
        found, rows, positions, closed = [], [], [], []
        for row, (deal_id, account_id, age, stored, stage) in enumerate(
            zip(
                ids,
                frame["account_id"],
                features["deal_age_days"],
                statuses,
                features["stage_index"],
                strict=True,
            )
        ):
            i = index[deal_id]
            if not account_id:
                problem = "not found in the online feature store"
            elif age < 0:
                problem = "the deal was created after as_of"
            elif (status := stored_status(stored, stage)) != OPEN:
                closed.append(ClosedDeal(i, deal_id, ("deal_ids", i), status))
                continue
            else:
                found.append(deal_id)
                rows.append(row)
                positions.append(i)
                continue
            errors.append(
                DealError(
                    index=i,
                    deal_id=deal_id,
                    problems=[Problem(loc=["deal_ids", i], msg=problem, type="invalid_value")],
                )
            )
        answered, closed_errors = self._answer_closed(models, closed, request.revival, as_of, now)
        errors = sorted(errors + closed_errors, key=lambda e: e.index)
        if errors and (request.all_or_nothing or not (found or answered)):
            return self._rejected(models, "score_ids", len(request.deal_ids), errors, ctx)
        columns = {name: values.tolist() for name, values in features.iloc[rows].items()}
        return self._respond(
            models,
            "score_ids",
            found,
            columns,
            [[] for _ in found],
            errors,
            as_of,
            now,
            positions,
            answered,
        )

    def _watch_drift(self) -> None:
        """Keep :data:`drift_alerts` on the last monitor report, for as long as the worker runs."""
        while True:
            report = read_latest(self.settings.monitor_dir)
            drift_alerts.set(len(report.get("alerts", [])) if report is not None else -1)
            time.sleep(self.config.drift_refresh_seconds)

    def _watch_models(self) -> None:
        """Switch to the models the served-champion pointer names, for as long as the
        worker runs (:mod:`serving.reload`). A pointer whose models failed to load is not
        tried again until it changes: the log says why once, not every few seconds."""
        failed: ServedChampion | None = None
        while True:
            time.sleep(self.config.model_reload_seconds)
            pointer = read_served_pointer(self.settings.served_pointer)
            if pointer is None or pointer == failed or not differs(self.models, pointer):
                continue
            self.reload(pointer)
            failed = None if not differs(self.models, pointer) else pointer

    def reload(self, pointer: ServedChampion) -> bool:
        """Load the models ``pointer`` names and swap them in; on failure keep the served
        ones (logged and counted). Whether the swap happened."""
        before = self.models
        start = time.perf_counter()
        try:
            loaded = load_pointed(pointer, self.settings, dict(self.config.grade_thresholds))
        except Exception:
            model_reloads.labels(outcome="failed").inc()
            log.exception(
                "could not load %s (MLflow version %s) named by %s; still serving %s "
                "(MLflow version %s)",
                pointer.tag,
                pointer.mlflow_version,
                self.settings.served_pointer,
                before.bento_tag,
                before.version,
            )
            return False
        self.models = loaded  # one reference: requests in flight keep the old models
        model_reloads.labels(outcome="loaded").inc()
        log.info(
            "switched from %s (MLflow version %s) to %s (MLflow version %s), revival %s, in %.2f s",
            before.bento_tag,
            before.version,
            loaded.bento_tag,
            loaded.version,
            loaded.revival_tag or "none",
            time.perf_counter() - start,
        )
        return True

    def model_facts(self) -> dict[str, Any]:
        """``GET /model``: the served model and the quality summary training stored in it.

        A model trained before training stored a summary is served all the same, with
        ``quality`` null and :data:`~leadscore.model.scoring_model.NO_QUALITY` as the note.
        """
        models = self.models
        quality = models.model.info.get("quality")
        fallback = models.model if isinstance(models.model, FallbackScorer) else None
        facts = ModelFacts.model_validate(
            {
                "model_name": models.bento_tag.partition(":")[0],
                "model_version": models.version,
                "alias": models.alias,
                "bento_tag": models.bento_tag,
                "feature_service": models.model.info.get("feature_service"),
                "quality": quality,
                "quality_note": None
                if quality
                else (NO_QUALITY if fallback is None else fallback.quality_note),
                "warning": models.model.gate_warning,
                "fallback": None if fallback is None else fallback.facts(),
                "revival": None
                if models.revival is None
                else {
                    "model_name": models.revival.name,
                    "model_version": models.revival.version,
                    "bento_tag": models.revival.bento_tag,
                    "meaning": models.revival.meaning,
                },
            }
        )
        return facts.model_dump(mode="json")

    # ------------------------------------------------------------------ lifecycle
    @bentoml.on_startup
    def _freeze_heap(self) -> None:
        """Keep what is loaded now (model, libraries, store) out of garbage collection scans.

        A batch of 1,000 deals allocates hundreds of thousands of objects, which triggers
        collections; without this each one walks the whole loaded heap, which more than
        doubled the time to read such a request.
        """
        gc.collect()
        gc.freeze()

    @bentoml.on_shutdown
    def _unfreeze_heap(self) -> None:
        gc.unfreeze()

    # ------------------------------------------------------------------ probes
    def __is_ready__(self) -> bool:
        """Ready when the model is loaded and the online store answered its last lookup.

        Never waits for the store: the state is the last lookup's (a request's, or a
        background probe started here when that is older than a few seconds).
        """
        return self.models is not None and self.track_records.healthy()

    # ------------------------------------------------------------------ helpers
    def _answer_closed(
        self,
        models: ServedModels,
        closed: list[ClosedDeal],
        revival: bool,
        as_of: datetime,
        now: datetime,
    ) -> tuple[list[tuple[int, ScoreResult]], list[DealError]]:
        """The answers to the deals the win model must not score, by request position.

        Won: a result with the status and no score. Lost: an error saying why, or, when
        the request asks for revival, the revival model's answer. Closed with an outcome
        the store does not hold: an error saying how to fix the store.
        """
        results = [
            (c.index, won_result(c.deal_id, models.version, as_of, now))
            for c in closed
            if c.status == WON
        ]
        errors = [closed_error(c, UNKNOWN_OUTCOME) for c in closed if c.status == CLOSED_UNKNOWN]
        lost = [c for c in closed if c.status == LOST]
        if revival:
            revived, refused = self._revival_results(models.revival, lost, as_of, now)
            results += revived
            errors += refused
        else:
            errors += [closed_error(c, LOST_MESSAGE) for c in lost]
        return results, errors

    def _revival_results(
        self, served: ServedRevival | None, lost: list[ClosedDeal], as_of: datetime, now: datetime
    ) -> tuple[list[tuple[int, ScoreResult]], list[DealError]]:
        """Lost deals asked for revival: the revival model's results, by request position.

        Without a revival model every one is an error saying so. A deal sent in full to
        /score is an error naming /score_ids (:data:`serving.revival.SENT_IN_FULL`); one
        asked by id gets the revival model's probability on the online store's
        ``revival_v1`` features at ``as_of``, or an error when the store does not answer.
        """
        if served is None:
            return [], [closed_error(c, NO_REVIVAL_MODEL) for c in lost]
        errors = [closed_error(c, SENT_IN_FULL) for c in lost if sent_in_full(c)]
        by_id = [c for c in lost if not sent_in_full(c)]
        if not by_id:
            return [], errors
        ids = [c.deal_id for c in by_id]
        try:
            frame = self.online.run(
                lambda store: online_features(store, REVIVAL_FEATURE_SERVICE, ids, as_of)
            )
        except StoreUnavailable as exc:
            log.warning("online store revival lookup failed (%s)", exc)
            return [], errors + [
                DealError(
                    index=c.index,
                    deal_id=c.deal_id,
                    problems=[
                        Problem(
                            loc=list(c.loc),
                            msg=f"{exc}; retry in a few seconds",
                            type="unavailable",
                        )
                    ],
                )
                for c in by_id
            ]
        results, refused = revival_results(served, by_id, revival_columns(frame), as_of, now)
        return results, errors + refused

    def _respond(
        self,
        models: ServedModels,
        endpoint: str,
        deal_ids: list[str],
        columns: Columns,
        warnings: list[list[ScoreWarning]],
        errors: list[DealError],
        as_of: datetime,
        now: datetime,
        positions: list[int],
        answered: list[tuple[int, ScoreResult]],
    ) -> ScoreResponse:
        """The open deals' scores and ``answered`` (closed deals' results), in request
        order by ``positions`` (each scored deal's place in the request)."""
        with timing.phase("explain"):
            explained = models.explainer.explain(columns) if deal_ids else []
            unseen = models.explainer.unseen_category_warnings(columns) if deal_ids else []
        scored: list[tuple[int, ScoreResult]] = [
            (
                position,
                {
                    "deal_id": deal_id,
                    "status": OPEN,
                    **e,  # type: ignore[typeddict-item]
                    "warnings": w + u,
                    "model_version": models.version,
                    "as_of": as_of,
                    "scored_at": now,
                },
            )
            for deal_id, e, w, u, position in zip(
                deal_ids, explained, warnings, unseen, positions, strict=True
            )
        ]
        if self.served is not None and deal_ids:
            self.served.record(
                endpoint,
                deal_ids,
                columns,
                [e["probability"] for e in explained],
                models.version,
                as_of,
                now,
                models.model.features,
            )
        results = [r for _, r in sorted(scored + answered, key=lambda item: item[0])]
        deals_total.labels(endpoint=endpoint, outcome="scored").inc(len(results))
        if errors:
            deals_total.labels(endpoint=endpoint, outcome="rejected").inc(len(errors))
        log.debug("%s: %d scored, %d rejected", endpoint, len(results), len(errors))
        return self._response(models, results, errors)

    def _rejected(
        self,
        models: ServedModels,
        endpoint: str,
        n: int,
        errors: list[DealError],
        ctx: bentoml.Context | None,
    ) -> ScoreResponse:
        """Nothing scored: 422 with every problem found."""
        deals_total.labels(endpoint=endpoint, outcome="rejected").inc(n)
        if ctx is not None:
            ctx.response.status_code = 422
        return self._response(models, [], errors)

    def _response(
        self, models: ServedModels, results: list[ScoreResult], errors: list[DealError]
    ) -> ScoreResponse:
        return ScoreResponse.model_construct(
            results=results,
            errors=errors,
            model_version=models.version,
            grade_thresholds=dict(self.config.grade_thresholds),
        )


#: The spec of the model this worker serves, by BentoML tag: built on the first request
#: for /docs.json, again after a hot reload (:mod:`serving.reload`) changed the model.
_specs: dict[str, dict[str, Any]] = {}


def _documented_spec(models: ServedModels) -> dict[str, Any]:
    """BentoML's OpenAPI spec of this service, with the answers it leaves out and the
    custom attributes of ``models`` (the served ones: after a reload, the new model's)."""
    spec = _specs.get(models.bento_tag)
    if spec is None:
        base: dict[str, Any] = LeadScorer.openapi_spec.asdict()  # type: ignore[attr-defined]
        attributes = list(models.attributes.values())
        spec = document_model_route(document_attributes(document_responses(base), attributes))
        _specs.clear()  # the served model's only
        _specs[models.bento_tag] = spec
    return spec


@asynccontextmanager
async def batch_endpoints() -> AsyncIterator[Any]:
    """The scoring endpoints as the batch process serves them (:mod:`serving.batch_process`).

    BentoML's app for this service, its instance created and started as in a worker,
    entered below the middleware: the worker has checked and admitted the request.
    """
    from _bentoml_impl.server.app import ContextMiddleware

    app = LeadScorer.to_asgi()  # type: ignore[attr-defined]
    async with app.router.lifespan_context(app):
        yield ContextMiddleware(app.router, context=LeadScorer.context)  # type: ignore[attr-defined]


def _located(prefix: tuple[str | int, ...], problems: list[Problem]) -> list[Problem]:
    """Problems located from the request body's root (deals[i].field)."""
    return [Problem(loc=[*prefix, *p.loc], msg=p.msg, type=p.type) for p in problems]


# mypy ignores what a class decorator returns: LeadScorer is a bentoml Service here.
LeadScorer.add_asgi_middleware(TokenMiddleware)  # type: ignore[attr-defined]
LeadScorer.add_asgi_middleware(JsonBodyMiddleware)  # type: ignore[attr-defined]
# Inside the token check: size limits, load shedding and the batch lane (large batches
# scored in the worker's batch process, or in chunks after the small requests), before
# BentoML parses a body.
LeadScorer.add_asgi_middleware(AdmissionMiddleware, batch_app=batch_endpoints)  # type: ignore[attr-defined]
