"""Bearer-token access to the scoring endpoints and the managers' page."""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from typing import Any

from leadscore.config import ServingConfig

#: Endpoints that need the bearer token when one is configured.
PROTECTED_PATHS = frozenset({"/score", "/score_ids"})
#: Where the managers' priority page is mounted; it needs the token too.
LEADS_PATH = "/leads"


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
        if self.token is not None and scope["type"] == "http" and (path in PROTECTED_PATHS or page):
            given = dict(scope.get("headers") or ()).get(b"authorization", b"")
            if not self._allowed(given, self.token, page):
                challenge = b'Basic realm="lead_scorer", charset="UTF-8"' if page else b"Bearer"
                await refuse(
                    send,
                    401,
                    "unauthorized",
                    [
                        {
                            "loc": ["header", "Authorization"],
                            "msg": "missing or wrong bearer token",
                            "type": "unauthorized",
                        }
                    ],
                    [(b"www-authenticate", challenge)],
                )
                return
        await self.app(scope, receive, send)


#: Media types the scoring endpoints read: JSON (BentoML reads a body without a type as JSON).
JSON_TYPES = (b"application/json", b"")


class JsonBodyMiddleware:
    """Answer 415 to a scoring request whose body is not JSON, before BentoML reads it.

    BentoML tries to read any other type as a form; a ``multipart/form-data`` without a
    boundary then fails inside it with a 500. Only ``application/json`` (and ``+json``
    types, or no type at all) reach the endpoints.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope.get("path", "") in PROTECTED_PATHS:
            given = dict(scope.get("headers") or ()).get(b"content-type", b"")
            media = given.partition(b";")[0].strip().lower()
            if media not in JSON_TYPES and not media.endswith(b"+json"):
                await refuse(
                    send,
                    415,
                    "unsupported media type",
                    [
                        {
                            "loc": ["header", "Content-Type"],
                            "msg": "send the body as application/json",
                            "type": "unsupported_media_type",
                        }
                    ],
                )
                return
        await self.app(scope, receive, send)


async def refuse(
    send: Any,
    status: int,
    error: str,
    detail: list[dict[str, Any]],
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """A JSON error answer in BentoML's shape: ``{"error": ..., "detail": [problems]}``."""
    body = json.dumps({"error": error, "detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
