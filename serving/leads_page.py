"""The managers' page over HTTP: the latest ranked list and the CRM charts, as a Starlette app.

``GET /deal/{deal_id}`` answers with one deal's timeline
(:mod:`leadscore.priority.timeline`: stage changes, activities, contacts and its score
history with what moved it), in English or Chinese (``?lang=en|zh``, else the browser's
``Accept-Language``), read from the stored CRM and the score history at each request
(only the deal's rows); 404 names an unknown id.

``GET /`` answers with the page ``leadscore report`` writes
(:func:`leadscore.priority.report.build_page`), from the ranked list the last ``leadscore rank``
wrote and the stored CRM tables. The page is rendered again only when one of those
files changes, so reloading it costs nothing while a rank run is hours away; until a
ranked list exists the answer is 503 with what to run. The stored tables also decide
whether the page says the list is ranked as of the export's last recorded event: a new
ingest moves that event, and the page is rendered again. The model panel describes the
version that ranked the list, from the quality summary training stored in it.

The service mounts :func:`create_app` at ``/leads``; on its own::

    uvicorn --factory serving.leads_page:create_app --port 8080

No page the product serves makes a request to the internet. The page carries plotly.js
inline, and every answer here sends a Content-Security-Policy allowing nothing but this
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
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from leadscore.config import Settings, load_settings
from leadscore.priority.rank import HISTORY_DIR, RANKED_FILE, RankingError, rankings_dir
from leadscore.priority.report import DEFAULT_MAX_ROWS, build_page
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


class LeadsPage:
    """The rendered page, kept until the ranked list or the stored CRM changes.

    With ``settings``, the page has the panel of the model that ranked the list, read from
    their registry once per rendering (a new ranked list is a new rendering).
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
        self._lock = threading.Lock()
        self._cached: tuple[Stamp, str, dict[str, str]] | None = None

    def _stamp(self) -> Stamp:
        files = [self.source / f"{RANKED_FILE}.parquet", *sorted(self.crm_dir.glob("*.parquet"))]
        return tuple(
            (str(f), s.st_mtime_ns, s.st_size) for f in files if f.is_file() for s in [f.stat()]
        )

    def html(self) -> tuple[str, dict[str, str]]:
        """The page and its headers; raises :class:`RankingError` when nothing was ranked yet."""
        with self._lock:
            stamp = self._stamp()
            if self._cached is None or self._cached[0] != stamp:
                page = build_page(self.source, self.crm_dir, self.max_rows, self.settings)
                self._cached = (stamp, page, page_headers(page))
                log.info("leads page rendered from %s", self.source)
            return self._cached[1], self._cached[2]


def page_language(asked: str | None, accept_language: str | None) -> Lang:
    """``?lang=en|zh`` when given, else the browser's first choice of the two
    (``Accept-Language``, by its q-values), else English."""
    if asked in ("en", "zh"):
        return asked  # type: ignore[return-value]
    best: tuple[float, Lang] = (0.0, "en")
    for position, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        primary = tag.strip().lower().split("-")[0]
        if primary not in ("en", "zh"):
            continue
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        # Equal weights: the earlier tag wins (a small nudge by position).
        score = q - position * 1e-6
        if score > best[0]:
            best = (score, primary)  # type: ignore[assignment]
    return best[1]


def _plain_page(status: int, title: str, message: str) -> HTMLResponse:
    text = (
        f'<!DOCTYPE html><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<p>{html.escape(message)}</p>"
    )
    return HTMLResponse(text, status_code=status, headers=page_headers(text))


def create_app(
    settings: Settings | None = None, source: Path | None = None, max_rows: int = DEFAULT_MAX_ROWS
) -> Starlette:
    """The page as an ASGI app; ``source`` is the ranked list's folder (default: settings')."""
    settings = settings or load_settings()
    page = LeadsPage(source or rankings_dir(settings), settings.crm_dir, max_rows, settings)

    async def index(request: Request) -> HTMLResponse:
        try:
            text, headers = await run_in_threadpool(page.html)
            return HTMLResponse(text, headers=headers)
        except RankingError as exc:
            return _plain_page(503, "Lead priorities", str(exc))

    history = (source or rankings_dir(settings)) / HISTORY_DIR

    async def deal(request: Request) -> HTMLResponse:
        """One deal's timeline (:mod:`leadscore.priority.timeline`), in the reader's language."""
        deal_id = request.path_params["deal_id"]
        lang = page_language(
            request.query_params.get("lang"), request.headers.get("accept-language")
        )

        def render() -> str:
            return timeline_html(stored_timeline(settings.crm_dir, history, deal_id), lang)

        try:
            text = await run_in_threadpool(render)
        except UnknownDeal as exc:
            return _plain_page(404, "Unknown deal", f"{exc}. Check the id in the list at /leads/.")
        return HTMLResponse(text, headers=page_headers(text))

    return Starlette(
        routes=[
            Route("/", index, methods=["GET"]),
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
    ``openapi`` gives the spec served at ``/docs.json`` (computed once, on first use);
    ``model_facts`` the served model's facts answered at ``GET /model`` (BentoML routes
    its own endpoints by POST only, so a GET lives here).
    """
    spec: list[dict[str, Any]] = []

    async def index(request: Request) -> HTMLResponse:
        return HTMLResponse(INDEX_HTML, headers=page_headers(INDEX_HTML))

    async def script(request: Request) -> Response:
        return Response(INDEX_JS, media_type="text/javascript", headers=dict(SECURITY_HEADERS))

    async def docs(request: Request) -> JSONResponse:
        if not spec and openapi is not None:
            spec.append(openapi())
        return JSONResponse(spec[0])

    async def model(request: Request) -> JSONResponse:
        assert model_facts is not None
        return JSONResponse(model_facts(), headers=dict(SECURITY_HEADERS))

    routes = [Route("/", index, methods=["GET"]), Route("/index.js", script, methods=["GET"])]
    if openapi is not None:
        routes.append(Route("/docs.json", docs, methods=["GET"]))
    if model_facts is not None:
        routes.append(Route("/model", model, methods=["GET"]))
    return Starlette(routes=routes)
