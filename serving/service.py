"""The lead scoring service: calibrated win probabilities with reasons, over HTTP.

``POST /score`` takes deals as the CRM holds them and computes their features with the
feature kernels training used (:func:`serving.scoring.payload_features`); account and
owner track records come from the Feast online store. ``POST /score_ids`` takes ids only
and reads every feature from the online store. Both answer with a probability, a 0-100
score, a grade and the strongest reasons either way, explained by LightGBM's TreeSHAP.

``GET /healthz`` and ``/livez`` say the process is alive; ``GET /readyz`` that the model
is loaded and the online store answers; ``GET /metrics`` is BentoML's Prometheus endpoint
(plus ``leadscore_deals_total``). When ``LEADSCORE_API_TOKEN`` is set, the scoring
endpoints require ``Authorization: Bearer <token>`` and the priority page at ``/leads``
the same token (or, from a browser, Basic authentication with the token as password);
health, metrics and docs stay open.

Payloads are never logged: they may carry contact names, e-mails and phones.
"""

from __future__ import annotations

import os

# Before numpy or LightGBM start their thread pools: one thread per worker (see package.serve).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import base64  # noqa: E402
import binascii  # noqa: E402
import gc  # noqa: E402
import hmac  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterable, Sequence  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from typing import Any, TypeVar  # noqa: E402

import bentoml  # noqa: E402
from bentoml.models import BentoModel  # noqa: E402
from prometheus_client import Counter  # noqa: E402

from leadscore.config import Settings, load_settings  # noqa: E402
from leadscore.featurize import model_frame  # noqa: E402
from leadscore.model import Columns  # noqa: E402
from pipelines.feature_store import online_features, open_store  # noqa: E402
from serving.leads_page import create_app as leads_page  # noqa: E402
from serving.package import load_packaged  # noqa: E402
from serving.schemas import (  # noqa: E402
    FUTURE_TOLERANCE,
    DealError,
    InvalidDeal,
    Problem,
    ScoreIdsRequest,
    ScoreRequest,
    ScoreResponse,
    ScoreResult,
    ScoreWarning,
)
from serving.scoring import (  # noqa: E402
    HISTORY_FEATURES,
    Explainer,
    ServingConfig,
    compile_feature_kernels,
    deal_problems,
    input_warnings,
    payload_features,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Accounts and owners whose track record is cached before expired entries are dropped.
MAX_CACHED_RECORDS = 200_000
#: Endpoints that need the bearer token when one is configured.
PROTECTED_PATHS = frozenset({"/score", "/score_ids"})
#: Where the managers' priority page is mounted; it needs the token too.
LEADS_PATH = "/leads"

#: Exported at /metrics with BentoML's own metrics (prometheus_client, multiprocess mode).
deals_total = Counter(
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


class OnlineStore:
    """The Feast online store, opened once and shared by the endpoints.

    Opening a store parses the feature registry, which costs more than a lookup, so it
    is opened on first use and kept; after a failed lookup it is reopened next time (the
    server may have restarted). Lookups take turns: a SQLite connection must not be used
    by two threads at once, and BentoML runs sync endpoints in a thread pool.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._store: Any = None
        self._lock = threading.Lock()

    def run(self, lookup: Callable[[Any], T]) -> T:
        """``lookup(store)``, on the open store."""
        with self._lock:
            if self._store is None:
                self._store = open_store(self._settings)
            try:
                return lookup(self._store)
            except Exception:
                self._store = None
                raise


class TrackRecords:
    """Account and owner track records from the Feast online store, briefly cached.

    They change only when a deal closes and the store is re-materialized, so reusing a
    value for a few minutes (``ttl``) spares the store a lookup per request. When the
    store cannot be reached the features stay missing and callers add a warning.
    """

    def __init__(self, online: OnlineStore, ttl: float) -> None:
        self._online = online
        self._ttl = ttl
        self._cache: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}

    def _fetch(self, accounts: Sequence[str], owners: Sequence[str]) -> None:
        n = max(len(accounts), len(owners))
        rows = [
            {
                "account_id": accounts[i] if i < len(accounts) else "",
                "owner_id": owners[i] if i < len(owners) else "",
            }
            for i in range(n)
        ]
        features = [f"{view}:{name}" for view, names in HISTORY_FEATURES.items() for name in names]
        values = self._online.run(
            lambda store: store.get_online_features(features=features, entity_rows=rows).to_dict()
        )
        now = time.monotonic()
        if len(self._cache) > MAX_CACHED_RECORDS:
            self._cache = {k: v for k, v in self._cache.items() if v[0] >= now}
        expires = now + self._ttl
        for i, row in enumerate(rows):
            for view, key, entity in (
                ("account_history", "account_id", "account"),
                ("owner_history", "owner_id", "owner"),
            ):
                record = {name: values[name][i] for name in HISTORY_FEATURES[view]}
                self._cache[(entity, row[key])] = (expires, record)

    def lookup(self, pairs: Iterable[tuple[str, str]]) -> list[dict[str, Any]] | None:
        """History features per (account_id, owner_id); None when the store is unreachable."""
        pairs = list(pairs)
        now = time.monotonic()

        def stale(key: tuple[str, str]) -> bool:
            hit = self._cache.get(key)
            return hit is None or hit[0] < now

        accounts = sorted({a for a, _ in pairs if stale(("account", a))})
        owners = sorted({o for _, o in pairs if stale(("owner", o))})
        if accounts or owners:
            try:
                self._fetch(accounts, owners)
            except Exception as exc:  # any store failure: score without history, say so
                log.warning("online store lookup failed (%s: %s)", type(exc).__name__, exc)
                return None
        out = []
        for account, owner in pairs:
            record = dict(self._cache[("account", account)][1])
            record.update(self._cache[("owner", owner)][1])
            out.append(record)
        return out

    def reachable(self) -> bool:
        """Whether the store answers a lookup now (a sentinel id, never cached)."""
        self._cache.pop(("account", "__readyz__"), None)
        self._cache.pop(("owner", "__readyz__"), None)
        return self.lookup([("__readyz__", "__readyz__")]) is not None


class TokenMiddleware:
    """Require ``LEADSCORE_API_TOKEN`` on the scoring endpoints and the priority page.

    API clients send ``Authorization: Bearer <token>``. The page at ``/leads`` is opened
    in a browser, which cannot add a bearer header, so it also accepts HTTP Basic
    authentication with the token as the password (any user name): the browser asks
    for it once. The token is read when the app is built; without one, requests pass
    untouched. Health, metrics and docs stay open.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        token = ServingConfig.from_env().api_token
        self.token = token.encode() if token else None

    @staticmethod
    def _allowed(header: bytes, token: bytes, page: bool) -> bool:
        scheme, _, credentials = header.partition(b" ")
        if scheme.lower() == b"bearer":
            return hmac.compare_digest(credentials, token)
        if page and scheme.lower() == b"basic":
            try:
                password = base64.b64decode(credentials, validate=True).partition(b":")[2]
            except binascii.Error:
                return False
            return hmac.compare_digest(password, token)
        return False

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        page = path == LEADS_PATH or path.startswith(LEADS_PATH + "/")
        if (
            self.token is not None
            and scope["type"] == "http"
            and (path in PROTECTED_PATHS or page)
        ):
            given = dict(scope.get("headers") or ()).get(b"authorization", b"")
            if not self._allowed(given, self.token, page):
                body = json.dumps(
                    {
                        "error": "unauthorized",
                        "detail": [
                            {
                                "loc": ["header", "Authorization"],
                                "msg": "missing or wrong bearer token",
                                "type": "unauthorized",
                            }
                        ],
                    }
                ).encode()
                challenge = b'Basic realm="lead_scorer", charset="UTF-8"' if page else b"Bearer"
                await send(
                    {
                        "type": "http.response.start",
                        "status": 401,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"www-authenticate", challenge),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


# The managers' priority list (the page `leadscore report` writes) is served beside the
# API, from the latest ranked list; BentoML keeps "/" for its own index.
@bentoml.asgi_app(leads_page(), path=LEADS_PATH)
@bentoml.service(
    name="lead_scorer",
    workers="cpu_count",
    traffic={"timeout": 60},
    envs=[{"name": "OMP_NUM_THREADS", "value": "1"}],
)
class LeadScorer:
    """Lead scoring: calibrated win probability, score, grade and reasons for CRM deals."""

    bento_model = BentoModel("lead_scorer:latest")

    def __init__(self) -> None:
        self.config = ServingConfig.from_env()
        self.settings = load_settings()
        self.model, meta = load_packaged(self.bento_model)
        self.model_version = str(meta.get("mlflow_version", self.bento_model.tag.version))
        self.explainer = Explainer(self.model, self.config.grade_thresholds)
        compile_feature_kernels()
        self.online = OnlineStore(self.settings)
        self.track_records = TrackRecords(self.online, self.config.history_ttl_seconds)
        # Open the store now, so neither the first request nor the first probe pays for it.
        self._ready_checked = (time.monotonic(), self.track_records.reachable())
        if not self._ready_checked[1]:
            log.warning(
                "online feature store unreachable at %s; not ready", self.settings.feature_repo
            )
        log.info(
            "loaded %s (MLflow version %s, %d features)",
            self.bento_model.tag,
            self.model_version,
            len(self.model.features),
        )

    # ------------------------------------------------------------------ endpoints
    @bentoml.api(route="/score")
    def score(self, request: ScoreRequest, /, ctx: bentoml.Context = None) -> ScoreResponse:  # type: ignore[assignment]
        """Score deals sent in full (deal fields, account, contacts, activities, stage history).

        Features are computed from the deal as sent, at `as_of`; the account's and owner's
        track records are the online store's latest, even for an `as_of` in the past (each
        result then says so in a warning). Invalid deals are listed in `errors`
        and the rest scored (200), unless `all_or_nothing` is true or no deal is valid
        (422). Unknown categories and missing optional data are scored, with a warning in
        the deal's result. At most 1,000 deals per request.
        """
        now = datetime.now(UTC)
        as_of = request.as_of or now
        valid, errors = [], []
        seen: set[str] = set()
        for i, deal in enumerate(request.deals):
            if isinstance(deal, InvalidDeal):
                problems, deal_id = deal.problems, deal.deal_id
            else:
                problems, deal_id = deal_problems(deal, as_of, now), deal.deal_id
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
                valid.append(deal)
        if errors and (request.all_or_nothing or not valid):
            return self._rejected("score", len(request.deals), errors, ctx)

        columns = payload_features(valid, as_of)
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
            if as_of < now - FUTURE_TOLERANCE:
                for w in warnings:
                    w.append(PAST_TRACK_RECORD)
        return self._respond(
            "score", [d.deal_id for d in valid], columns, warnings, errors, as_of, now
        )

    @bentoml.api(route="/score_ids")
    def score_ids(self, request: ScoreIdsRequest, /, ctx: bentoml.Context = None) -> ScoreResponse:  # type: ignore[assignment]
        """Score deals by id, with every feature from the online feature store.

        Ids the store does not know are listed in `errors`; the same 200/422 rules as
        /score apply. The store holds each deal's latest state: `as_of` moves the
        request-time features (deal age, days since last activity...), not the history.
        """
        now = datetime.now(UTC)
        as_of = request.as_of or now
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
                lambda store: online_features(store, self.settings.feature_service, ids, as_of)
            )
        except Exception as exc:
            log.warning("online store lookup failed (%s: %s)", type(exc).__name__, exc)
            errors += [
                DealError(
                    index=index[d],
                    deal_id=d,
                    problems=[
                        Problem(
                            loc=["deal_ids", index[d]],
                            msg="the online feature store is unreachable",
                            type="unavailable",
                        )
                    ],
                )
                for d in ids
            ]
            if ctx is not None:
                ctx.response.status_code = 503
            return self._response([], errors)

        features = model_frame(frame)
        found, rows = [], []
        for row, (deal_id, account_id, age) in enumerate(
            zip(ids, frame["account_id"], features["deal_age_days"], strict=True)
        ):
            i = index[deal_id]
            if not account_id:
                problem = "not found in the online feature store"
            elif age < 0:
                problem = "the deal was created after as_of"
            else:
                found.append(deal_id)
                rows.append(row)
                continue
            errors.append(
                DealError(
                    index=i,
                    deal_id=deal_id,
                    problems=[Problem(loc=["deal_ids", i], msg=problem, type="invalid_value")],
                )
            )
        errors.sort(key=lambda e: e.index)
        if errors and (request.all_or_nothing or not found):
            return self._rejected("score_ids", len(request.deal_ids), errors, ctx)
        columns = {name: values.tolist() for name, values in features.iloc[rows].items()}
        return self._respond("score_ids", found, columns, [[] for _ in found], errors, as_of, now)

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
        """Ready when the model is loaded and the online store answers (checked at most every 5 s)."""
        checked_at, ok = self._ready_checked
        if time.monotonic() - checked_at > 5.0:
            ok = self.model is not None and self.track_records.reachable()
            self._ready_checked = (time.monotonic(), ok)
        return ok

    # ------------------------------------------------------------------ helpers
    def _respond(
        self,
        endpoint: str,
        deal_ids: list[str],
        columns: Columns,
        warnings: list[list[ScoreWarning]],
        errors: list[DealError],
        as_of: datetime,
        now: datetime,
    ) -> ScoreResponse:
        explained = self.explainer.explain(columns)
        unseen = self.explainer.unseen_category_warnings(columns)
        results: list[ScoreResult] = [
            {
                "deal_id": deal_id,
                **e,  # type: ignore[typeddict-item]
                "warnings": w + u,
                "model_version": self.model_version,
                "as_of": as_of,
                "scored_at": now,
            }
            for deal_id, e, w, u in zip(deal_ids, explained, warnings, unseen, strict=True)
        ]
        deals_total.labels(endpoint=endpoint, outcome="scored").inc(len(results))
        if errors:
            deals_total.labels(endpoint=endpoint, outcome="rejected").inc(len(errors))
        log.debug("%s: %d scored, %d rejected", endpoint, len(results), len(errors))
        return self._response(results, errors)

    def _rejected(
        self, endpoint: str, n: int, errors: list[DealError], ctx: bentoml.Context | None
    ) -> ScoreResponse:
        """Nothing scored: 422 with every problem found."""
        deals_total.labels(endpoint=endpoint, outcome="rejected").inc(n)
        if ctx is not None:
            ctx.response.status_code = 422
        return self._response([], errors)

    def _response(self, results: list[ScoreResult], errors: list[DealError]) -> ScoreResponse:
        return ScoreResponse.model_construct(
            results=results,
            errors=errors,
            model_version=self.model_version,
            grade_thresholds=dict(self.config.grade_thresholds),
        )


def _located(prefix: tuple[str | int, ...], problems: list[Problem]) -> list[Problem]:
    """Problems located from the request body's root (deals[i].field)."""
    return [Problem(loc=[*prefix, *p.loc], msg=p.msg, type=p.type) for p in problems]


LeadScorer.add_asgi_middleware(TokenMiddleware)
