"""Request size limits and load shedding for the scoring endpoints, before a body is parsed.

BentoML parses a request body on the worker's event loop before the endpoint runs, and
runs the endpoints one at a time per worker: a request it cannot serve soon is better
refused at once (503 with ``Retry-After``) than queued, and a body too large to parse
safely is refused before parsing (413). Limits are per worker process.
"""

from __future__ import annotations

from typing import Any

from leadscore.config import ServingConfig
from serving.auth import refuse

#: Endpoints whose requests are limited; health, metrics, docs and the page are not.
LIMITED_PATHS = frozenset({"/score", "/score_ids"})
#: Seconds a client is asked to wait before retrying a shed request.
RETRY_AFTER_SECONDS = 1


class AdmissionMiddleware:
    """Refuse what a worker cannot take now, before BentoML reads it.

    * A body over ``max_body_bytes`` gets 413: at once when ``Content-Length`` says so,
      otherwise as soon as the bytes received pass the limit.
    * Beyond ``max_concurrent_requests`` requests, or ``max_queued_deals`` deals in the
      requests admitted and not answered yet, a request gets 503 with ``Retry-After``.
      Deals are counted in the raw body (``"deal_id"`` keys for /score, ids for
      /score_ids): an estimate, cheap enough for the event loop; the schema still caps
      a batch at 1,000 deals.
    * A request of more than ``batch_deals`` deals is a batch, and at most
      ``max_concurrent_batches`` batches are admitted at once, so a client sending large
      batches back to back cannot take every slot from single-deal requests.

    A worker with nothing in flight admits any request within the size limit, so a
    batch over ``max_queued_deals`` is slow, never refused forever.
    """

    def __init__(self, app: Any, config: ServingConfig | None = None) -> None:
        self.app = app
        self.config = config or ServingConfig.from_env()
        self.requests = 0
        self.deals = 0
        self.batches = 0
        #: Requests refused, by reason, since the worker started.
        self.refused: dict[str, int] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") not in LIMITED_PATHS:
            await self.app(scope, receive, send)
            return
        limit = self.config.max_body_bytes
        headers = dict(scope.get("headers") or ())
        try:
            declared = int(headers.get(b"content-length", b"0"))
        except ValueError:
            declared = 0
        if declared > limit:
            await self._too_large(send, limit)
            return
        if self.requests >= self.config.max_concurrent_requests:
            await self._shed(send, "requests", "too many requests in progress")
            return
        self.requests += 1
        try:
            body = await self._read(receive, limit)
            if body is None:
                await self._too_large(send, limit)
                return
            deals = _count_deals(scope["path"], body)
            batch = deals > self.config.batch_deals
            if self.deals and self.deals + deals > self.config.max_queued_deals:
                await self._shed(send, "deals", "too many deals in progress")
                return
            if batch and self.batches >= self.config.max_concurrent_batches:
                await self._shed(send, "batches", "too many large batches in progress")
                return
            self.deals += deals
            self.batches += batch
            try:
                await self.app(scope, _replay(body, receive), send)
            finally:
                self.deals -= deals
                self.batches -= batch
        finally:
            self.requests -= 1

    @staticmethod
    async def _read(receive: Any, limit: int) -> bytes | None:
        """The whole body, or None as soon as it passes ``limit`` bytes."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left
                return b"".join(chunks)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _too_large(self, send: Any, limit: int) -> None:
        self.refused["size"] = self.refused.get("size", 0) + 1
        await refuse(
            send,
            413,
            "request too large",
            [
                _problem(
                    f"the request body is larger than {limit:,} bytes; send fewer deals per request",
                    "too_large",
                )
            ],
        )

    async def _shed(self, send: Any, reason: str, message: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1
        await refuse(
            send,
            503,
            "overloaded",
            [_problem(f"{message}; retry after {RETRY_AFTER_SECONDS} s", "overloaded")],
            [(b"retry-after", str(RETRY_AFTER_SECONDS).encode())],
        )


def _count_deals(path: str, body: bytes) -> int:
    """Deals in a raw body, estimated without parsing it (at least 1)."""
    if path == "/score":
        return max(1, body.count(b'"deal_id"'))
    return max(1, body.count(b'"') // 2 - body.count(b'":'))


def _replay(body: bytes, receive: Any) -> Any:
    """A ``receive`` that gives the app the body already read, then the client's messages."""
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        message: dict[str, Any] = await receive()
        return message

    return replay


def _problem(msg: str, kind: str) -> dict[str, Any]:
    """One problem with the request body, in the shape of every error's ``detail`` list."""
    return {"loc": ["body"], "msg": msg, "type": kind}
