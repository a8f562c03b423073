"""Where a scoring request's time went, by phase, in its answer's ``Server-Timing`` header.

A slow answer is only explained by knowing whether it waited (for the worker's endpoint
thread, behind other requests) or worked (features, the online store, the model), and
the client cannot tell the two apart. So :class:`serving.limits.AdmissionMiddleware`
starts a :class:`Timings` for every scoring request it admits, the service adds its
phases to it, and the answer carries them (milliseconds) in the standard
``Server-Timing`` header, which ``benchmarks/reliability.py`` records per request. The
same figures are logged at debug level.

Phases (each summed over the request; absent when it did not happen):

``admit``
    reading the body and the admission checks, from the middleware's start;
``expected``
    the wait admission expected (:func:`serving.limits.expected_wait`): compared with
    ``wait``, how good the load-shedding estimate was;
``wait``
    from admission to the endpoint's first line: BentoML reading the request into its
    schema and the wait for the worker's one endpoint thread;
``store``
    online-store lookups, waited for in the endpoint (:class:`serving.online.OnlineStore`);
``features``, ``explain``
    computing a sent deal's features; the model's probability and reasons;
``endpoint``
    the whole endpoint, the phases above included;
``total``
    from the middleware's start to the answer's first byte.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")

#: The response header holding the timings (W3C Server Timing).
HEADER = b"server-timing"


@dataclass
class Timings:
    """One request's phases, in seconds, since ``start`` (``time.perf_counter()``)."""

    start: float = field(default_factory=time.perf_counter)
    phases: dict[str, float] = field(default_factory=dict)
    #: When the request was admitted (its body read and checked).
    admitted: float | None = None

    def add(self, phase: str, seconds: float) -> None:
        self.phases[phase] = self.phases.get(phase, 0.0) + seconds

    def admit(self) -> None:
        self.admitted = time.perf_counter()
        self.add("admit", self.admitted - self.start)

    def header(self) -> bytes:
        """The ``Server-Timing`` value: each phase's milliseconds, the worker's pid last."""
        phases = {**self.phases, "total": time.perf_counter() - self.start}
        items = [f"{name};dur={seconds * 1000:.2f}" for name, seconds in phases.items()]
        items.append(f'worker;desc="{os.getpid()}"')
        return ", ".join(items).encode()


_current: ContextVar[Timings | None] = ContextVar("leadscore_timings", default=None)


def begin() -> Timings:
    """Start timing the request of the current task (and of the threads it hands work to:
    anyio copies the context into BentoML's endpoint thread)."""
    timings = Timings()
    _current.set(timings)
    return timings


def timed(api: Callable[P, R]) -> Callable[P, R]:
    """An endpoint that adds its time, and the ``wait`` before it, to its request's phases.

    The signature and annotations stay the endpoint's (``functools.wraps``): BentoML
    reads its request and response schemas from them.
    """

    @functools.wraps(api)
    def endpoint(*args: P.args, **kwargs: P.kwargs) -> R:
        timings = _current.get()
        start = time.perf_counter()
        if timings is not None and timings.admitted is not None:
            timings.add("wait", start - timings.admitted)
        try:
            return api(*args, **kwargs)
        finally:
            if timings is not None:
                timings.add("endpoint", time.perf_counter() - start)

    return endpoint


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Add the time the block takes to the current request's ``name`` phase (if timed)."""
    timings = _current.get()
    if timings is None:
        yield
        return
    start = time.perf_counter()
    try:
        yield
    finally:
        timings.add(name, time.perf_counter() - start)


def timed_send(send: Any, timings: Timings, path: str) -> Any:
    """``send`` with the ``Server-Timing`` header added to the answer's start."""

    async def sending(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            value = timings.header()
            headers = [*message.get("headers", []), (HEADER, value)]
            message = {**message, "headers": headers}
            log.debug("%s %s: %s", path, message["status"], value.decode())
        await send(message)

    return sending
