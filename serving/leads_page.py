"""The managers' page over HTTP: the latest ranked list, its insights and charts, as a Starlette app.

``GET /`` answers with the page (:func:`leadscore.priority.report.render_page`) in the
request's language (``?lang=``, ``LEADSCORE_LANGUAGE``, or the browser's
Accept-Language), carrying the first page of the list; its script asks ``GET /api/leads``
for other pages and filters (JSON, :mod:`leadscore.priority.listing`), ``GET
/api/sections`` for the insights and charts, ``GET /api/compare?by=`` for an A/B
comparison with its lead-quality check (the champion's win probabilities at creation,
scored once per reading, :meth:`LeadsPage.lead_scores`), and ``GET /api/plotly.js`` for
plotly, once its first rows are drawn (charts are drawn as they scroll into view). The ranked list and the stored CRM are
read again only when one of their files changes, so reloading costs nothing while a
rank run is hours away; until a ranked list exists the answer is 503 with what to run.
The stored tables also decide whether the page says the list is ranked as of the
export's last recorded event: a new ingest moves that event, and the page is rendered
again. The model panel describes the version that ranked the list, from the quality
summary training stored in it.

``GET /deal/{deal_id}`` answers with one deal's timeline
(:mod:`leadscore.priority.timeline`: stage changes, activities, contacts and its score
history with what moved it), in English or Chinese (``?lang=en|zh``, else the browser's
``Accept-Language``), read from the stored CRM and the score history at each request
(only the deal's rows); 404 names an unknown id.

The service mounts :func:`create_app` at ``/leads``; on its own::

    uvicorn --factory serving.leads_page:create_app --port 8080

No page the product serves makes a request to the internet. The page loads plotly.js
from this server, and every answer here sends a Content-Security-Policy allowing nothing but this
server and the page's own inline scripts (by hash, :func:`content_security_policy`),
refuses framing, sniffing and referrers (:data:`SECURITY_HEADERS`). BentoML's own index
page at ``/`` loads a tag manager from the internet; :func:`create_index_app` replaces it
with the same API documentation (Swagger UI from BentoML's local copy) without it.
"""

from __future__ import annotations

import base64
import hashlib
import html
import logging
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import pandas as pd
from plotly.offline import get_plotlyjs
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from leadscore.config import Settings, load_settings
from leadscore.crm.ingest import last_recorded_event, load_stored
from leadscore.insights import Facts, compared_deals, deal_facts
from leadscore.insights.overview import Overview, comparison, managers_overview
from leadscore.model.drift import read_latest
from leadscore.priority.at_creation import AtCreation, champion_at_creation
from leadscore.priority.i18n import EN, choose_language, texts
from leadscore.priority.listing import LeadQuery, lead_page
from leadscore.priority.rank import (
    HISTORY_DIR,
    RANKED_FILE,
    RankingError,
    rankings_dir,
    read_ranked,
)
from leadscore.priority.report import (
    CHART_TABLES,
    DEFAULT_MAX_ROWS,
    comparison_html,
    model_panel,
    open_probability,
    ranking_moment,
    render_page,
    render_sections,
)
from leadscore.priority.timeline import Lang, UnknownDeal, stored_timeline, timeline_html

log = logging.getLogger(__name__)

Stamp = tuple[tuple[str, int, int], ...]

#: Sent with every page: no framing (clickjacking), no MIME sniffing, no referrer.
SECURITY_HEADERS: dict[str, str] = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_INLINE_SCRIPT = re.compile(
    r"<script(?![^>]*\ssrc=)[^>]*>(.*?)</script>", re.DOTALL | re.IGNORECASE
)


def content_security_policy(page: str) -> str:
    """A policy allowing only this server, and the page's own inline scripts by their hash.

    Styles may be inline (plotly sets them as it draws); images and fonts may be data:
    URIs (plotly's mode bar). Nothing may come from another origin, frame the page, or
    be the target of a form.
    """
    hashes = sorted(
        {
            "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
            for body in _INLINE_SCRIPT.findall(page)
        }
    )
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self' " + " ".join(hashes) if hashes else "script-src 'self'",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "font-src 'self' data:",
            "connect-src 'self'",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        ]
    )


def page_headers(page: str) -> dict[str, str]:
    """Security headers of one HTML page: :data:`SECURITY_HEADERS` and its policy."""
    return {**SECURITY_HEADERS, "Content-Security-Policy": content_security_policy(page)}


class _Ranking:
    """What one ranked list and stored CRM give the page, read once (until they change)."""

    def __init__(self, source: Path, crm_dir: Path, settings: Settings | None) -> None:
        self.ranked = read_ranked(source)
        self.tables = load_stored(crm_dir, CHART_TABLES)
        self.last_event = last_recorded_event(crm_dir)
        versions = self.ranked["model_version"].astype(str).unique() if len(self.ranked) else []
        self.model = (
            model_panel(settings, versions[0]) if settings is not None and len(versions) else None
        )
        self.drift = read_latest(settings.monitor_dir) if settings is not None else None
        self.pages: dict[str, tuple[str, dict[str, str]]] = {}
        self.sections: dict[str, str] = {}
        self.comparisons: dict[tuple[str, str], str] = {}
        self.overview: Overview | None = None
        self.facts: Facts | None = None
        self.crm: dict[str, pd.DataFrame] | None = None
        self.at_creation: AtCreation | None = None


class LeadsPage:
    """The page, its list and its sections, kept until the ranked list or the stored CRM
    changes (a new ranked list is a new reading).

    The HTML is rendered per language on first ask and ships the first page of the
    list; other pages are cut from the ranked list held in memory. The insights behind
    the sections (:func:`leadscore.insights.overview.managers_overview`, seconds on a big
    CRM) are computed on the first ask for the sections, which the page makes after it
    has drawn its first rows, so the first view never waits for them. With
    ``settings``, the page has the panel of the model that ranked the list, read from
    their registry once per reading.
    """

    def __init__(
        self,
        source: Path,
        crm_dir: Path,
        max_rows: int = DEFAULT_MAX_ROWS,
        settings: Settings | None = None,
    ) -> None:
        self.source, self.crm_dir, self.max_rows = source, crm_dir, max_rows
        self.settings = settings
        self.teams = settings.teams if settings is not None else ()
        self._lock = threading.Lock()
        self._insights_lock = threading.Lock()
        self._scores_lock = threading.Lock()
        self._cached: tuple[Stamp, _Ranking] | None = None

    def _stamp(self) -> Stamp:
        files = [self.source / f"{RANKED_FILE}.parquet", *sorted(self.crm_dir.glob("*.parquet"))]
        return tuple(
            (str(f), s.st_mtime_ns, s.st_size) for f in files if f.is_file() for s in [f.stat()]
        )

    def ranking(self) -> _Ranking:
        """The current reading; raises :class:`RankingError` when nothing was ranked yet."""
        with self._lock:
            stamp = self._stamp()
            if self._cached is None or self._cached[0] != stamp:
                self._cached = (stamp, _Ranking(self.source, self.crm_dir, self.settings))
                log.info("leads page read %s", self.source)
            return self._cached[1]

    def html(self, lang: str = EN, api: str = "/leads/api") -> tuple[str, dict[str, str]]:
        """The page in ``lang`` and its headers; its script asks ``api`` for the rest."""
        r = self.ranking()
        key = f"{lang}|{api}"
        if key not in r.pages:
            page = render_page(
                r.ranked,
                None,
                self.max_rows,
                r.last_event,
                r.model,
                r.drift,
                lang=lang,
                api=api,
                teams=self.teams,
            )
            r.pages[key] = (page, page_headers(page))
        return r.pages[key]

    def leads(self, query: LeadQuery, lang: str = EN) -> dict[str, Any]:
        """One page of the list (:func:`leadscore.priority.listing.lead_page`)."""
        return lead_page(self.ranking().ranked, query, lang, self.teams)

    def _insights(self, r: _Ranking) -> tuple[Facts, Overview]:
        with self._insights_lock:
            if r.overview is None or r.facts is None:
                r.crm = load_stored(self.crm_dir)
                r.facts = deal_facts(r.crm)
                r.overview = managers_overview(
                    r.facts,
                    ranking_moment(r.ranked, r.last_event),
                    open_probability(r.ranked),
                    tables=r.crm,
                )
                log.info("leads page insights computed from %s", self.crm_dir)
            return r.facts, r.overview

    def sections(self, lang: str = EN) -> str:
        """The summary and charts above the list, as an HTML fragment."""
        r = self.ranking()
        if lang not in r.sections:
            _, overview = self._insights(r)
            r.sections[lang] = render_sections(r.tables, overview, lang)
        return r.sections[lang]

    def lead_scores(self) -> AtCreation:
        """The champion's win probability at creation of every deal the page's comparisons
        count (:func:`~leadscore.priority.at_creation.champion_at_creation`): the A/B
        section's lead-quality check. Scored once per reading, on the first comparison
        asked for (after the first view), since scoring every deal of a year takes a while."""
        r = self.ranking()
        facts, overview = self._insights(r)
        with self._scores_lock:
            if r.at_creation is None:
                if self.settings is None or r.crm is None:
                    r.at_creation = AtCreation(None, skipped="no model registry configured")
                else:
                    ids = compared_deals(facts, overview.start, overview.end)
                    r.at_creation = champion_at_creation(self.settings, r.crm, ids)
                    log.info("leads page scored %d deals at creation", len(ids))
            return r.at_creation

    def comparison(self, by: str, lang: str = EN) -> str:
        """The A/B table of cut ``by`` with its lead-quality check (raises
        :class:`CutUnavailable`)."""
        r = self.ranking()
        if (by, lang) not in r.comparisons:
            facts, overview = self._insights(r)
            r.comparisons[(by, lang)] = comparison_html(
                comparison(facts, by, overview.start, overview.end, self.lead_scores()), lang
            )
        return r.comparisons[(by, lang)]


def request_language(settings: Settings, request: Request) -> str:
    """``?lang=``, the setting, or the browser's Accept-Language (:func:`choose_language`)."""
    return choose_language(
        settings.language, request.headers.get("accept-language"), request.query_params.get("lang")
    )


#: plotly.js may be cached by the browser for a day: it changes only with the package.
STATIC_HEADERS = {**SECURITY_HEADERS, "Cache-Control": "public, max-age=86400"}


def _plain_page(status: int, title: str, message: str) -> HTMLResponse:
    text = (
        f'<!DOCTYPE html><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<p>{html.escape(message)}</p>"
    )
    return HTMLResponse(text, status_code=status, headers=page_headers(text))


def create_app(
    settings: Settings | None = None, source: Path | None = None, max_rows: int = DEFAULT_MAX_ROWS
) -> Starlette:
    """The page as an ASGI app; ``source`` is the ranked list's folder (default: settings').

    ``GET /`` the page; ``GET /api/leads`` a page of the list as JSON (``page, size,
    owner, team, channel, segment, status, grade, sort, desc, lang``); ``GET
    /api/sections`` and ``GET /api/compare?by=`` HTML fragments the page inserts; ``GET
    /api/plotly.js`` plotly.js, kept out of the page so the page stays small.
    """
    settings = settings or load_settings()
    page = LeadsPage(source or rankings_dir(settings), settings.crm_dir, max_rows, settings)

    def not_ranked(exc: RankingError) -> HTMLResponse:
        return _plain_page(503, "Lead priorities", str(exc))

    async def index(request: Request) -> HTMLResponse:
        lang = request_language(settings, request)
        api = request.scope.get("root_path", "") + "/api"
        try:
            text, headers = await run_in_threadpool(page.html, lang, api)
        except RankingError as exc:
            return not_ranked(exc)
        return HTMLResponse(text, headers={**headers, "Vary": "Accept-Language"})

    async def leads(request: Request) -> JSONResponse:
        try:
            query = LeadQuery.from_params(request.query_params)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, 400, headers=dict(SECURITY_HEADERS))
        try:
            body = await run_in_threadpool(page.leads, query, request_language(settings, request))
        except RankingError as exc:
            return JSONResponse({"error": str(exc)}, 503, headers=dict(SECURITY_HEADERS))
        return JSONResponse(body, headers=dict(SECURITY_HEADERS))

    async def sections(request: Request) -> Response:
        try:
            text = await run_in_threadpool(page.sections, request_language(settings, request))
        except RankingError as exc:
            return not_ranked(exc)
        return HTMLResponse(text, headers=dict(SECURITY_HEADERS))

    async def compare(request: Request) -> Response:
        by = (request.query_params.get("by") or "").strip()
        lang = request_language(settings, request)
        try:
            text = await run_in_threadpool(page.comparison, by, lang)
        except RankingError as exc:
            return not_ranked(exc)
        except ValueError as exc:  # CutUnavailable too
            return HTMLResponse(
                f'<p class="note">{html.escape(str(exc))}</p>', 400, headers=dict(SECURITY_HEADERS)
            )
        return HTMLResponse(text, headers=dict(SECURITY_HEADERS))

    async def plotly(request: Request) -> Response:
        return Response(get_plotlyjs(), media_type="text/javascript", headers=STATIC_HEADERS)

    history = (source or rankings_dir(settings)) / HISTORY_DIR

    async def deal(request: Request) -> HTMLResponse:
        """One deal's timeline (:mod:`leadscore.priority.timeline`), in the reader's language."""
        deal_id = request.path_params["deal_id"]
        lang = cast(Lang, request_language(settings, request))

        def render() -> str:
            return timeline_html(stored_timeline(settings.crm_dir, history, deal_id), lang)

        try:
            text = await run_in_threadpool(render)
        except UnknownDeal as exc:
            words = texts(lang)
            return _plain_page(
                404, words["tl_unknown_title"], words["tl_unknown"].format(deal=exc.args[0])
            )
        return HTMLResponse(text, headers=page_headers(text))

    return Starlette(
        routes=[
            Route("/", index, methods=["GET"]),
            Route("/api/leads", leads, methods=["GET"]),
            Route("/api/sections", sections, methods=["GET"]),
            Route("/api/compare", compare, methods=["GET"]),
            Route("/api/plotly.js", plotly, methods=["GET"]),
            Route("/deal/{deal_id}", deal, methods=["GET"]),
        ]
    )


#: The API documentation page at ``/``: BentoML's Swagger UI (served by BentoML from its
#: package at ``/static_content``), without BentoML's tag manager and outside links.
INDEX_HTML = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>lead_scorer API</title>
<link rel="stylesheet" type="text/css" href="./static_content/swagger-ui.css">
<link rel="stylesheet" type="text/css" href="./static_content/index.css">
<link rel="icon" type="image/png" href="./static_content/favicon-light-32x32.png" sizes="32x32">
</head>
<body>
<p style="font-family: sans-serif; margin: 1em 2em">The managers' priority list:
<a href="./leads/">/leads/</a>. The OpenAPI spec: <a href="./docs.json">/docs.json</a>.</p>
<div id="swagger-ui"></div>
<script src="./static_content/swagger-ui-bundle.js" charset="UTF-8"></script>
<script src="./static_content/swagger-ui-standalone-preset.js" charset="UTF-8"></script>
<script src="./index.js" charset="UTF-8"></script>
</body>
</html>
"""

#: Swagger UI's start, as BentoML's, without the online validator (a request to the internet).
INDEX_JS = """window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "./docs.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    plugins: [SwaggerUIBundle.plugins.DownloadUrl],
    layout: "StandaloneLayout",
  });
};
"""


def create_index_app(
    openapi: Callable[[], dict[str, Any]] | None = None,
    model_facts: Callable[[], dict[str, Any]] | None = None,
) -> Starlette:
    """``GET /`` (the API documentation page), its script, ``/docs.json`` and ``/model``,
    to mount at ``/``.

    Mounted by the service in place of BentoML's index page, which loads a tag manager
    from the internet; only these paths match, so BentoML's other routes stay theirs.
    ``openapi`` gives the spec served at ``/docs.json`` (called at each request: the
    served model, whose attributes it documents, changes with a hot reload; it caches);
    ``model_facts`` the served model's facts answered at ``GET /model`` (BentoML routes
    its own endpoints by POST only, so a GET lives here).
    """

    async def index(request: Request) -> HTMLResponse:
        return HTMLResponse(INDEX_HTML, headers=page_headers(INDEX_HTML))

    async def script(request: Request) -> Response:
        return Response(INDEX_JS, media_type="text/javascript", headers=dict(SECURITY_HEADERS))

    async def docs(request: Request) -> JSONResponse:
        assert openapi is not None
        return JSONResponse(openapi())

    async def model(request: Request) -> JSONResponse:
        assert model_facts is not None
        return JSONResponse(model_facts(), headers=dict(SECURITY_HEADERS))

    routes = [Route("/", index, methods=["GET"]), Route("/index.js", script, methods=["GET"])]
    if openapi is not None:
        routes.append(Route("/docs.json", docs, methods=["GET"]))
    if model_facts is not None:
        routes.append(Route("/model", model, methods=["GET"]))
    return Starlette(routes=routes)
