"""The managers' page over HTTP: the latest ranked list and the CRM charts, as a Starlette app.

``GET /`` answers with the page ``leadscore report`` writes
(:func:`leadscore.priority.report.build_page`), from the ranked list the last ``leadscore rank``
wrote and the stored CRM tables. The page is rendered again only when one of those
files changes, so reloading it costs nothing while a rank run is hours away; until a
ranked list exists the answer is 503 with what to run.

The service mounts :func:`create_app` at ``/leads`` and ``/``; on its own::

    uvicorn --factory serving.leads_page:create_app --port 8080
"""

from __future__ import annotations

import html
import logging
import threading
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from leadscore.config import Settings, load_settings
from leadscore.priority.rank import RANKED_FILE, RankingError, rankings_dir
from leadscore.priority.report import DEFAULT_MAX_ROWS, build_page

log = logging.getLogger(__name__)

Stamp = tuple[tuple[str, int, int], ...]


class LeadsPage:
    """The rendered page, kept until the ranked list or the stored CRM changes."""

    def __init__(self, source: Path, crm_dir: Path, max_rows: int = DEFAULT_MAX_ROWS) -> None:
        self.source, self.crm_dir, self.max_rows = source, crm_dir, max_rows
        self._lock = threading.Lock()
        self._cached: tuple[Stamp, str] | None = None

    def _stamp(self) -> Stamp:
        files = [self.source / f"{RANKED_FILE}.parquet", *sorted(self.crm_dir.glob("*.parquet"))]
        return tuple(
            (str(f), s.st_mtime_ns, s.st_size) for f in files if f.is_file() for s in [f.stat()]
        )

    def html(self) -> str:
        """The page; raises :class:`RankingError` when nothing was ranked yet."""
        with self._lock:
            stamp = self._stamp()
            if self._cached is None or self._cached[0] != stamp:
                self._cached = (stamp, build_page(self.source, self.crm_dir, self.max_rows))
                log.info("leads page rendered from %s", self.source)
            return self._cached[1]


def create_app(
    settings: Settings | None = None, source: Path | None = None, max_rows: int = DEFAULT_MAX_ROWS
) -> Starlette:
    """The page as an ASGI app; ``source`` is the ranked list's folder (default: settings')."""
    settings = settings or load_settings()
    page = LeadsPage(source or rankings_dir(settings), settings.crm_dir, max_rows)

    async def index(request: Request) -> HTMLResponse:
        try:
            return HTMLResponse(await run_in_threadpool(page.html))
        except RankingError as exc:
            return HTMLResponse(
                f'<!DOCTYPE html><meta charset="utf-8"><title>Lead priorities</title>'
                f"<p>{html.escape(str(exc))}</p>",
                status_code=503,
            )

    return Starlette(routes=[Route("/", index, methods=["GET"])])
