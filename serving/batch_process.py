"""The batch process: large batches scored beside the worker, at the lowest CPU priority.

In the worker, a batch shares one GIL, one event loop and one endpoint thread with the
single-deal requests. Scored there in chunks (:mod:`serving.limits`), a single deal still
waits for one chunk: 20 deals are about 40 ms of CPU (TreeSHAP alone is 1 ms a deal),
and more on a busy core; single-deal p99 was 135 ms beside 1,000-deal batches sent back to
back on 2 cores, for a goal of 50 ms (issue 15). A process of its own at ``nice`` 19
shares none of that, and takes a core only when the workers leave it: the kernel hands the
CPU to a worker as soon as a request wakes it.

Each worker starts one such process when it starts (``ServingConfig.batch_process``).
The process builds the same service (BentoML's app for it, so the same code answers as in
the worker) and answers each batch its worker hands it whole, in turn. Until it is ready,
and whenever it has died (it is started again, at most every :data:`RESTART_SECONDS`), the
worker scores the batch itself, in chunks. The process ends when its worker does: it
reads the worker's pipe between batches and stops at its end.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib
import itertools
import logging
import math
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from multiprocessing.connection import Connection
from typing import Any

log = logging.getLogger(__name__)

#: Opens the ASGI app the process scores with: a module-level function, since the process
#: is spawned (a fresh interpreter imports it by name), returning an async context manager.
#: The app is the service's endpoints without the middleware that starts this process.
AppFactory = Callable[[], AbstractAsyncContextManager[Any]]
#: Status, headers and body of an answer.
Answer = tuple[int, list[tuple[bytes, bytes]], bytes]

#: The process's priority: the lowest, so that it never delays a worker.
NICENESS = 19
#: Seconds between two starts of the process, so one that cannot start is not restarted
#: in a loop.
RESTART_SECONDS = 30.0
#: Seconds a stopping worker waits for its process to finish the batch in hand.
STOP_SECONDS = 10.0
#: How long a process whose pipe closed may take to exit before a restart kills it.
EXITING_SECONDS = 1.0
#: The scope members sent with a batch; the rest (server state, extensions) is the worker's.
SCOPE_KEYS = (
    "type",
    "asgi",
    "http_version",
    "method",
    "scheme",
    "path",
    "raw_path",
    "root_path",
    "query_string",
    "headers",
    "client",
    "server",
)
#: What the process sends once its app is open.
READY = "ready"


class BatchProcess:
    """A worker's batch process (module doc): :meth:`score` hands it a request."""

    def __init__(self, factory: AppFactory, niceness: int = NICENESS) -> None:
        self.factory = factory
        self.niceness = niceness
        self._conn: Connection | None = None
        self._process: Any = None  # multiprocessing's SpawnProcess
        self._ready = threading.Event()
        #: Set when the running process's answers' pipe closed: it is gone, or going.
        self._gone = threading.Event()
        self._started = -math.inf
        self._ids = itertools.count()
        #: Requests sent and not answered: their event loop and future, by number.
        self._waiting: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Future[Any]]] = {}
        self._lock = threading.Lock()  # guards _waiting
        self._sending = threading.Lock()  # one message at a time on the pipe
        self._closing = False
        self._registered = False

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def start(self) -> None:
        """Start the process, unless it runs or was started less than
        :data:`RESTART_SECONDS` ago; it is ready once its app is open."""
        if self._closing or time.monotonic() - self._started < RESTART_SECONDS:
            return
        if self._process is not None and self._process.is_alive():
            if not self._gone.is_set():
                return  # running, or starting
            # Its pipe is closed, so it is exiting (or hung without it): a process can
            # still be alive for a moment after it closed its pipe, and without this the
            # restart waited for a next batch that the worker, seeing it alive, never sent.
            self._process.join(EXITING_SECONDS)
            if self._process.is_alive():
                self._process.kill()
        self._started = time.monotonic()
        self._gone = threading.Event()
        context = multiprocessing.get_context("spawn")
        # One pipe each way: closing the requests' pipe ends the process even while this
        # worker's reader thread waits on the answers' pipe (closing a pipe a thread is
        # reading would not reach the process).
        requests, to_process = context.Pipe(duplex=False)
        from_process, answers = context.Pipe(duplex=False)
        # The factory by name: the process imports it (the whole service) once niced.
        factory = f"{self.factory.__module__}:{self.factory.__qualname__}"
        process = context.Process(
            target=serve_batches,
            args=(requests, answers, factory, self.niceness),
            name="leadscore-batches",
        )
        process.start()
        requests.close()
        answers.close()
        self._conn, self._process = to_process, process
        threading.Thread(
            target=self._read, args=(from_process, self._gone), name="batch-answers", daemon=True
        ).start()
        if not self._registered:  # the worker's exit closes the pipe before joining
            self._registered = True
            atexit.register(self.close)

    async def score(self, scope: dict[str, Any], body: bytes) -> Answer | None:
        """The process's answer to the request, or None when it is not ready or stopped
        before answering: the worker scores the request then."""
        conn = self._conn
        if not self.ready or conn is None:
            self.start()
            return None
        loop = asyncio.get_running_loop()
        answered: asyncio.Future[Answer | None] = loop.create_future()
        number = next(self._ids)
        with self._lock:
            self._waiting[number] = (loop, answered)
        message = (number, {k: scope[k] for k in SCOPE_KEYS if k in scope}, body)
        try:
            # From a thread: the pipe blocks until the process has read the body.
            await asyncio.to_thread(self._send, conn, message)
            return await answered
        except (OSError, ValueError):  # the pipe broke: the process died
            return None
        finally:
            with self._lock:
                self._waiting.pop(number, None)

    def _send(self, conn: Connection, message: Any) -> None:
        with self._sending:
            conn.send(message)

    def _read(self, conn: Connection, gone: threading.Event) -> None:
        """Hand each answer to the request awaiting it, until the process ends; then set
        ``gone`` (before giving the waiting requests back, so a request that follows them
        finds the process gone and starts another)."""
        try:
            while True:
                message = conn.recv()
                if message == READY:
                    self._ready.set()
                    log.info("batch process %d ready", self._process.pid)
                    continue
                number, answer = message
                with self._lock:
                    waiting = self._waiting.get(number)
                if waiting is not None:  # else given up (cancelled) by its request
                    loop, answered = waiting
                    loop.call_soon_threadsafe(_settle, answered, answer)
        except (EOFError, OSError):
            pass
        finally:
            gone.set()
            self._ready.clear()
            with self._lock:
                waiting_now = list(self._waiting.values())
            for loop, answered in waiting_now:
                loop.call_soon_threadsafe(_settle, answered, None)
            if not self._closing:
                log.warning("batch process stopped; batches are scored in the worker meanwhile")

    def close(self) -> None:
        """Close the pipe (the process stops after the batch in hand), wait for it briefly."""
        self._closing = True
        if self._conn is not None:
            self._conn.close()
        if self._process is not None:
            self._process.join(STOP_SECONDS)
            if self._process.is_alive():
                self._process.terminate()


def _settle(future: asyncio.Future[Any], answer: Any) -> None:
    if not future.done():
        future.set_result(answer)


def serve_batches(requests: Connection, answers: Connection, factory: str, niceness: int) -> None:
    """The process: at ``niceness``, open the app of ``factory`` ("module:name") and answer
    each request read from ``requests`` on ``answers``, until the worker closes ``requests``.

    Niced before importing the factory's module, so that loading the service does not
    slow its worker's own start either.
    """
    os.nice(niceness)
    module, _, name = factory.partition(":")
    opened: AppFactory = getattr(importlib.import_module(module), name)
    asyncio.run(_answer(requests, answers, opened))


async def _answer(requests: Connection, answers: Connection, factory: AppFactory) -> None:
    async with factory() as app:
        answers.send(READY)
        while True:
            try:
                number, scope, body = await asyncio.to_thread(requests.recv)
            except (EOFError, OSError):  # the worker is gone
                return
            try:
                answer: Answer | None = await capture(app, scope, body)
            except Exception:
                log.exception("the batch process could not score a batch")
                answer = None
            try:
                answers.send((number, answer))
            except OSError:
                return


async def capture(app: Any, scope: dict[str, Any], body: bytes) -> Answer:
    """``app``'s answer to ``scope`` with ``body``: status, headers, body."""
    sent: list[dict[str, Any]] = []
    headers = [(k, v) for k, v in scope.get("headers") or () if k != b"content-length"]
    headers.append((b"content-length", str(len(body)).encode()))

    async def gone() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def keep(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({**scope, "headers": headers}, replay(body, gone), keep)
    start = next(m for m in sent if m["type"] == "http.response.start")
    answer = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], list(start.get("headers", [])), answer


def replay(body: bytes, receive: Any) -> Any:
    """A ``receive`` that gives the app the body already read, then the client's messages."""
    sent = False

    async def replayed() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        message: dict[str, Any] = await receive()
        return message

    return replayed
