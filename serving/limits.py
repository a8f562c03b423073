"""Request size limits, load shedding and the batch lane of the scoring endpoints.

BentoML parses a request body on the worker's event loop before the endpoint runs, and
runs the endpoints one at a time per worker (one thread each): a 1,000-deal batch
parsed and scored in one piece holds a worker for more than a second, and every
single-deal request sent to that worker waits behind it. So this middleware, in front
of BentoML:

* refuses a body too large to parse safely (413), before parsing;
* refuses what the worker cannot serve soon (503 with ``Retry-After`` and the reason,
  counted in ``leadscore_shed_total{reason}``): too many requests or deals in
  progress, a second large batch, or more queued work than ``max_queue_delay`` seconds;
* hands a large batch (more than ``batch_deals`` deals) to the worker's batch process
  (:mod:`serving.batch_process`), which scores it whole at the lowest CPU priority, so
  that single deals never wait for it;
* or, while that process is not ready (or turned off), scores the batch in the worker as
  a sequence of small requests (the *batch lane*), each of at most ``batch_deals``
  deals, each started only once the small requests admitted before it are answered: a
  small request then waits for at most one chunk of a batch, whatever the batch's size,
  and a batch still moves on under steady small traffic. The chunks' answers are merged
  into the one answer the whole batch would have had.

Limits are per worker process.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import bentoml

from leadscore.config import ServingConfig
from serving import timing
from serving.auth import refuse
from serving.batch_process import AppFactory, BatchProcess, capture, replay
from serving.schemas import MAX_BATCH, ShedReason

#: Endpoints whose requests are limited; health, metrics, docs and the page are not.
#: Each maps to the request's list of deals (full deals, or ids).
LIMITED_PATHS = {"/score": "deals", "/score_ids": "deal_ids"}
#: Seconds a client is asked to wait before retrying a shed request.
RETRY_AFTER_SECONDS = 1
#: Weight of the newest observation in the service-time averages behind the queue delay.
SMOOTHING = 0.2

#: Why a request was shed (the ``reason`` of a 503 body and of ``leadscore_shed_total``).
SHED_REASONS: dict[ShedReason, str] = {
    "requests": "too many requests in progress",
    "deals": "too many deals in progress",
    "batches": "too many large batches in progress",
    "queue_delay": "the work queued ahead would delay this request too long",
}

#: Exported at /metrics; ``bentoml.metrics`` for the reason given in serving.service.
shed_total = bentoml.metrics.Counter(
    "leadscore_shed",
    "Scoring requests refused with 503 before being served, by reason "
    "(requests, deals, batches, queue_delay).",
    ["reason"],
)
#: Where each large batch was scored: ``process`` (the batch process) or ``chunks`` (the
#: worker, in chunks, while its batch process is not ready).
batches_total = bentoml.metrics.Counter(
    "leadscore_batches",
    "Large batches scored, by where: the batch process (process) or the worker in chunks "
    "(chunks, while the batch process is not ready).",
    ["lane"],
)
#: The values of ``batches_total``'s label.
BATCH_LANES = ("process", "chunks")


@dataclass
class ServiceTimes:
    """What the worker's recent answers took: the basis of the queue-delay estimate.

    Measured, not configured: the model, the machine and its other load all move them.
    Both start at 0, so a worker that has answered nothing yet refuses nothing for delay.
    """

    #: Seconds one small request takes, on average, by path. Apart: a /score_ids lookup
    #: of every feature costs ten to twenty times a deal sent in full to /score, and one
    #: average of both swung with the last few answers, admitting a queue of lookups at
    #: half their cost after a few /score answers (waits of 1.8 s for a 1 s limit).
    request: dict[str, float] = field(default_factory=dict)
    #: Seconds one deal of a batch takes, on average.
    deal: float = 0.0

    #: When the last request or chunk was answered (``time.monotonic()``).
    last_answer: float = 0.0

    def served(self, start: float) -> float:
        """Seconds the work started at ``start`` and answered now was served, not queued.

        The worker serves one request at a time: whatever ran before the previous answer
        was waiting, so the time served is counted from the later of the two. Latency
        would count the queue too, and estimating a queue from it would grow it.
        """
        now = time.monotonic()
        seconds = now - max(start, self.last_answer)
        self.last_answer = now
        return seconds

    def observe_request(self, start: float, path: str, scored: bool = True) -> None:
        """A small request to ``path`` answered now; ``scored``: with 200.

        Only scored answers teach what a request costs. A lookup refused at once while
        the online store is down (503) costs nothing, and learning that let a worker
        admit a queue of lookups when the store came back, each then costing a real
        lookup: they waited 2.5 s for a 1 s limit (issue 15).
        """
        seconds = self.served(start)
        if scored:
            self.request[path] = _smooth(self.request.get(path, 0.0), seconds)

    def observe_deals(self, start: float, deals: int) -> None:
        self.deal = _smooth(self.deal, self.served(start) / max(1, deals))


def _smooth(average: float, value: float) -> float:
    return value if average == 0.0 else average + SMOOTHING * (value - average)


def expected_wait(
    times: ServiceTimes,
    small_ahead: Iterable[str],
    batch_deals_ahead: int,
    chunk_deals: int,
    batch: bool,
) -> float:
    """Seconds a new request is expected to wait before its own work starts.

    Small requests go before batches, so a small one waits for the small requests in
    progress (``small_ahead``: their paths, each at its own average) and at most one
    chunk of a batch; a batch waits for everything in progress.
    """
    batch_ahead = batch_deals_ahead if batch else min(batch_deals_ahead, chunk_deals)
    small = sum(times.request.get(path, 0.0) for path in small_ahead)
    return small + batch_ahead * times.deal


@dataclass
class BatchPlan:
    """A batch body cut into chunk bodies, each a valid request of its own."""

    #: The request's list field ("deals" or "deal_ids").
    key: str
    #: Every other member of the request, as sent (``"as_of": "..."``).
    members: list[str]
    #: Each element of the list, as sent.
    elements: list[str] = field(default_factory=list)

    def chunks(self, size: int) -> Iterator[tuple[int, bytes]]:
        """(offset of the chunk's first element, chunk body), in order."""
        rest = "".join("," + m for m in self.members)
        for start in range(0, len(self.elements), size):
            items = ",".join(self.elements[start : start + size])
            yield start, f'{{"{self.key}":[{items}]{rest}}}'.encode()


class AdmissionMiddleware:
    """Refuse what a worker cannot take now, before BentoML reads it; cut batches up.

    * A body over ``max_body_bytes`` gets 413: at once when ``Content-Length`` says so,
      otherwise as soon as the bytes received pass the limit.
    * Beyond ``max_concurrent_requests`` requests, or ``max_queued_deals`` deals in the
      requests admitted and not answered yet, a request gets 503 with ``Retry-After``.
      Deals are counted in the raw body (``"deal_id"`` keys for /score, ids for
      /score_ids): an estimate, cheap enough for the event loop; the schema still caps
      a batch at 1,000 deals.
    * A request of more than ``batch_deals`` deals is a batch, and at most
      ``max_concurrent_batches`` batches are admitted at once.
    * A request expected to wait more than ``max_queue_delay`` seconds behind the work
      in progress (:func:`expected_wait`), its own time included for a small one, gets
      503 at once rather than a late answer.
    * A batch goes to the worker's batch process when ``batch_app`` is given (the
      service's endpoints, opened in that process) and the process is ready; otherwise
      it is scored here in chunks of ``batch_deals`` deals, each started once the small
      requests admitted before it are answered (:meth:`_score_in_chunks`).

    A worker with nothing in flight admits any request within the size limit, so a
    batch over ``max_queued_deals`` is slow, never refused forever.
    """

    def __init__(
        self,
        app: Any,
        config: ServingConfig | None = None,
        max_queue_delay: float | None = None,
        batch_app: AppFactory | None = None,
    ) -> None:
        self.app = app
        self.config = config or ServingConfig.from_env()
        #: Scores large batches off this worker, once ready; None: batches stay here.
        self.process: BatchProcess | None = None
        for lane in BATCH_LANES:  # on /metrics at 0 from the start
            batches_total.labels(lane=lane)
        if batch_app is not None and self.config.batch_process:
            self.process = BatchProcess(batch_app)
            self.process.start()
        self.max_queue_delay = (
            max_queue_delay if max_queue_delay is not None else self.config.max_queue_delay_seconds
        )
        self.requests = 0
        self.deals = 0
        self.batches = 0
        #: Small requests admitted and not answered yet, by admission number: a chunk
        #: of a batch waits for those admitted before it was ready to start.
        #: Their paths, which tell what each costs (:class:`ServiceTimes`).
        self.small: dict[int, str] = {}
        self._admitted = 0
        #: Deals of admitted batches not scored yet.
        self.batch_deals_left = 0
        self.times = ServiceTimes()
        #: Set, and replaced, each time a small request is answered.
        self._answered = asyncio.Event()
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
            await self._shed(send, "requests")
            return
        timings = timing.begin()
        send = timing.timed_send(send, timings, scope["path"])
        self.requests += 1
        try:
            body = await self._read(receive, limit)
            if body is None:
                await self._too_large(send, limit)
                return
            deals = _count_deals(scope["path"], body)
            batch = deals > self.config.batch_deals
            if self.deals and self.deals + deals > self.config.max_queued_deals:
                await self._shed(send, "deals")
                return
            if batch and self.batches >= self.config.max_concurrent_batches:
                await self._shed(send, "batches")
                return
            wait = expected_wait(
                self.times,
                self.small.values(),
                self.batch_deals_left,
                self.config.batch_deals,
                batch,
            )
            # Its own time too (a small request's; a batch is expected to take long): the
            # limit is on when the answer comes, and a lookup takes a good part of it.
            wait += 0.0 if batch else self.times.request.get(scope["path"], 0.0)
            timings.add("expected", wait)
            if wait > self.max_queue_delay:
                await self._shed(send, "queue_delay")
                return
            self.deals += deals
            timings.admit()
            try:
                if batch:
                    await self._batch(scope, body, deals, receive, send)
                else:
                    await self._small(scope, body, receive, send)
            finally:
                self.deals -= deals
        finally:
            self.requests -= 1

    async def _small(self, scope: dict[str, Any], body: bytes, receive: Any, send: Any) -> None:
        """A small request, at once: batches wait for it."""
        number = self._admitted
        self._admitted += 1
        self.small[number] = scope["path"]
        start = time.monotonic()
        statuses: list[int] = []

        async def sending(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                statuses.append(message["status"])
            await send(message)

        try:
            await self.app(scope, replay(body, receive), sending)
            self.times.observe_request(start, scope["path"], statuses == [200])
        finally:
            self.small.pop(number, None)
            self._answered.set()
            self._answered = asyncio.Event()

    async def _after_small_requests(self) -> None:
        """Return once the small requests admitted so far are answered.

        Not every small request: under steady traffic one is nearly always in progress,
        and the batch would never be scored. Those admitted while this waits go after.
        """
        ready = self._admitted
        while self.small and min(self.small) < ready:
            await self._answered.wait()

    async def _batch(
        self, scope: dict[str, Any], body: bytes, deals: int, receive: Any, send: Any
    ) -> None:
        self.batches += 1
        try:
            if self.process is not None:
                answer = await self.process.score(scope, body)
                if answer is not None:
                    batches_total.labels(lane="process").inc()
                    await _send(send, *answer)
                    return
            batches_total.labels(lane="chunks").inc()
            await self._batch_here(scope, body, deals, receive, send)
        finally:
            self.batches -= 1

    async def _batch_here(
        self, scope: dict[str, Any], body: bytes, deals: int, receive: Any, send: Any
    ) -> None:
        """The batch in this worker: in chunks after the small requests (class doc)."""
        self.batch_deals_left += deals
        try:
            plan = await _plan(
                LIMITED_PATHS[scope["path"]], body, self.config.batch_deals, MAX_BATCH
            )
            if plan is None:  # cannot be cut up faithfully: scored whole, after the small ones
                await self._after_small_requests()
                start = time.monotonic()
                await self.app(scope, replay(body, receive), send)
                self.times.observe_deals(start, deals)
            else:
                await self._score_in_chunks(scope, plan, send)
        finally:
            self.batch_deals_left -= deals

    async def _score_in_chunks(self, scope: dict[str, Any], plan: BatchPlan, send: Any) -> None:
        """Score ``plan`` a chunk at a time, each after the small requests in progress.

        The answers merge as the whole batch's would: results in order, every error
        located in the whole batch; 200 when something was scored, else 503 when the
        online store was unreachable, else 422. Any other answer to a chunk (a malformed
        ``as_of``, the same in every chunk) is the batch's answer.
        """
        merged = _Merged()
        size = self.config.batch_deals
        scored = 0
        try:
            for offset, chunk in plan.chunks(size):
                await self._after_small_requests()
                n = min(size, len(plan.elements) - offset)
                start = time.monotonic()
                status, headers, answer = await capture(self.app, scope, chunk)
                self.times.observe_deals(start, n)
                scored += n
                self.batch_deals_left -= n
                if not merged.add(status, answer, offset):
                    await _send(send, status, headers, answer)
                    return
        finally:
            self.batch_deals_left += scored  # _batch gives the whole batch back
        await merged.send(send)

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

    async def _shed(self, send: Any, reason: ShedReason) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1
        shed_total.labels(reason=reason).inc()
        problem = _problem(
            f"{SHED_REASONS[reason]}; retry after {RETRY_AFTER_SECONDS} s", "overloaded"
        )
        await refuse(
            send,
            503,
            "overloaded",
            [{**problem, "reason": reason}],
            [(b"retry-after", str(RETRY_AFTER_SECONDS).encode())],
        )


class _Merged:
    """The answers to a batch's chunks, merged into the answer to the whole batch."""

    def __init__(self) -> None:
        #: Each chunk's results, as JSON array items.
        self.results: list[str] = []
        self.errors: list[dict[str, Any]] = []
        #: The answer's other members (model_version, grade_thresholds), from the last chunk.
        self.rest: dict[str, Any] = {}
        #: A chunk got 503: the online store was unreachable for its ids.
        self.unavailable = False

    def add(self, status: int, answer: bytes, offset: int) -> bool:
        """Take in a chunk's answer; False when it is no scoring answer to merge."""
        if status not in (200, 422, 503):
            return False
        try:
            data = json.loads(answer)
        except ValueError:
            return False
        if not (
            isinstance(data, dict)
            and isinstance(data.get("results"), list)
            and isinstance(data.get("errors"), list)
        ):
            return False
        if data["results"]:
            self.results.append(_dumps(data["results"])[1:-1])
        for error in data["errors"]:
            error["index"] += offset
            for problem in error["problems"]:
                loc = problem["loc"]
                if len(loc) > 1 and isinstance(loc[1], int):  # ["deals", i, ...]
                    loc[1] += offset
        self.errors += data["errors"]
        self.rest = {k: v for k, v in data.items() if k not in ("results", "errors")}
        self.unavailable |= status == 503
        return True

    async def send(self, send: Any) -> None:
        """200 when a deal was scored, else 503 when the store was unreachable, else 422."""
        status = 200 if self.results else 503 if self.unavailable else 422
        members = [f'"results":[{",".join(self.results)}]', f'"errors":{_dumps(self.errors)}']
        members += [f"{_dumps(k)}:{_dumps(v)}" for k, v in self.rest.items()]
        headers = [(b"content-type", b"application/json")]
        if status == 503:
            headers.append((b"retry-after", str(RETRY_AFTER_SECONDS).encode()))
        await _send(send, status, headers, ("{" + ",".join(members) + "}").encode())


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


_SPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


def _space(text: str, pos: int) -> int:
    """The position after the JSON whitespace at ``pos``."""
    match = _SPACE.match(text, pos)
    assert match is not None  # the pattern matches the empty string
    return match.end()


async def _plan(key: str, body: bytes, size: int, most: int) -> BatchPlan | None:
    """``body`` cut into chunks of ``size`` elements of its ``key`` list, or None.

    None when cutting it up could change the answer, so the batch is scored whole: the
    body is not a JSON object with that list (BentoML then says what is wrong), the list
    is longer than ``most`` (refused whole), ``all_or_nothing`` is true (one invalid deal
    fails every chunk), an element is not a deal object or an id, or an id appears in
    two chunks (the second is a problem the endpoint finds within one request only).
    The body is decoded one element at a time, and the event loop served every ``size``.
    """
    try:
        text = body.decode()
        pos = _space(text, 0)
        if text[pos : pos + 1] != "{":
            return None
        pos = _space(text, pos + 1)
        names: set[str] = set()
        members: list[str] = []
        plan: BatchPlan | None = None
        while text[pos : pos + 1] != "}":
            if names:
                if text[pos : pos + 1] != ",":
                    return None
                pos = _space(text, pos + 1)
            name, pos = _DECODER.raw_decode(text, pos)
            if not isinstance(name, str) or name in names:
                return None
            names.add(name)
            pos = _space(text, pos)
            if text[pos : pos + 1] != ":":
                return None
            pos = _space(text, pos + 1)
            if name == key:
                plan = BatchPlan(key, members)
                end = await _elements(text, pos, plan.elements, key, size, most)
                if end is None:
                    return None
                pos = end
            else:
                start = pos
                value, pos = _DECODER.raw_decode(text, pos)
                if name == "all_or_nothing" and value is True:
                    return None
                members.append(f"{_dumps(name)}:{text[start:pos]}")
            pos = _space(text, pos)
        if plan is None or _space(text, pos + 1) != len(text):
            return None
        return plan
    except ValueError:  # not UTF-8, or not JSON
        return None


async def _elements(
    text: str, pos: int, out: list[str], key: str, size: int, most: int
) -> int | None:
    """Each element of the JSON array at ``pos``, as sent, into ``out``; the end, or None."""
    if text[pos : pos + 1] != "[":
        return None
    pos = _space(text, pos + 1)
    if text[pos : pos + 1] == "]":
        return pos + 1
    chunk_of: dict[str, int] = {}
    while True:
        start = pos
        value, pos = _DECODER.raw_decode(text, pos)
        if key == "deals":
            if not isinstance(value, dict):
                return None
            deal_id = value.get("deal_id")
        elif isinstance(value, str) and value:
            deal_id = value
        else:
            return None
        if isinstance(deal_id, str):
            chunk = chunk_of.setdefault(deal_id, len(out) // size)
            if chunk != len(out) // size:
                return None
        out.append(text[start:pos])
        if len(out) > most:
            return None
        if len(out) % size == 0:
            await asyncio.sleep(0)
        pos = _space(text, pos)
        if text[pos : pos + 1] == "]":
            return pos + 1
        if text[pos : pos + 1] != ",":
            return None
        pos = _space(text, pos + 1)


async def _send(send: Any, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    """One whole answer; ``Content-Length`` set from ``body``."""
    headers = [(k, v) for k, v in headers if k.lower() != b"content-length"]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _count_deals(path: str, body: bytes) -> int:
    """Deals in a raw body, estimated without parsing it (at least 1)."""
    if path == "/score":
        return max(1, body.count(b'"deal_id"'))
    return max(1, body.count(b'"') // 2 - body.count(b'":'))


def _problem(msg: str, kind: str) -> dict[str, Any]:
    """One problem with the request body, in the shape of every error's ``detail`` list."""
    return {"loc": ["body"], "msg": msg, "type": kind}
