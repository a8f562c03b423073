"""A tiny ASGI app for the batch process's tests (tests/code/test_batch_process.py).

In a module of its own that imports nothing heavy: the batch process is spawned, and a
fresh interpreter imports the module of its app by name.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Says which process answered, at which niceness, what it read; "die" ends the process."""
    body = (await receive())["body"]
    if body == b"die":
        os._exit(3)
    if body == b"die slowly":  # its pipes closed at once, the process gone only later
        os.closerange(3, 1024)
        time.sleep(3)
        os._exit(3)
    answer = json.dumps(
        {"pid": os.getpid(), "nice": os.nice(0), "path": scope["path"], "bytes": len(body)}
    ).encode()
    await send({"type": "http.response.start", "status": 201, "headers": [(b"x-echo", b"1")]})
    await send({"type": "http.response.body", "body": answer})


@asynccontextmanager
async def echo_app() -> AsyncIterator[Any]:
    yield echo
