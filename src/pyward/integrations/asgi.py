"""Heal for ASGI applications, under any server (uvicorn, hypercorn...).

    from pyward.integrations.asgi import Middleware
    app = Middleware(app)

HTTP requests only (lifespan and websocket pass through untouched).  The
response is held until its first body message, so a crash before that can
be healed and the request replayed (serving.py); then it goes out: at once
when the body is complete (a background task that runs after the response
does not delay it) or a stream begins, and a crash after that is the
server's to handle.  A 5xx response is held until the application returns:
Starlette and FastAPI send their own 500 and re-raise, and that 500 is
dropped when the request is replayed or answered 503, and sent as it is
when the crash cannot be healed.  Frameworks that answer
500 without re-raising are heard through sys.monitoring on 3.12+
(heal/monitor.py), as in wsgi.py.
"""
from __future__ import annotations

import asyncio

from .._native import native
from ..heal import monitor
from ..heal.escape import IN_REQUEST
from . import serving

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import TracebackType
    from typing import Any, Awaitable, Callable

    from ..heal.engine import Healed

    Receive = Callable[[], Awaitable[dict[str, Any]]]
    Send = Callable[[dict[str, Any]], Awaitable[None]]


class Middleware:
    """Heal crashes of `app`'s request handlers; see the module's documentation."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app
        serving.configure(app)

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        # every request runs this and the exchange's send twice (bench/serve.py measures it): the usual path, one
        # attempt answered below 500 with escapes not watched, is all here; anything else is _serve's
        rule = serving.request() if scope["type"] == "http" else None
        if rule is None:
            return await self.app(scope, receive, send)
        pristine = scope.copy()
        IN_REQUEST.set(True)  # this request's task (a server runs each in its own) and the threads it starts
        exchange = Exchange(send, receive, rule.body_limit if scope["method"] in rule.methods else -1)
        if monitor.tool is not None:  # escapes are watched: around every attempt
            return await self._serve(rule, scope, pristine, send, exchange)
        try:
            await self.app(scope, exchange.receive, exchange)
        except Exception as exc:
            error: Exception | None = exc  # handled outside this block: a replay's exceptions do not chain to it
        else:
            if exchange.status < 500:
                if not exchange.sent:  # a response with no body message
                    await exchange.commit()
                return
            error = None
        return await self._serve(rule, scope, pristine, send, exchange, error)

    async def _serve(self, rule: serving.Replay, scope: dict[str, Any], pristine: dict[str, Any], send: Send,
                     exchange: _Exchange, *first: Exception | None) -> None:
        """The request, from its first attempt's outcome when one is given (the
        exception it raised, or None: it answered a 5xx): heal, replay, answer."""
        method = pristine["method"]  # upper case (ASGI)
        while True:
            if first:
                error, escapes, first = first[0], (), ()
            else:
                with monitor.Attempt() as attempt:
                    await self.app(scope, exchange.receive, exchange)
                error, escapes = attempt.error, attempt.escapes
            failed = error is not None or exchange.status >= 500
            found = serving.crash_of(error, escapes) if failed else None
            if found is None:
                if failed:  # a 5xx with no exception on record
                    why = serving.not_replayable(method, rule, sent=exchange.sent, body_over=exchange.over(),
                                                 retries_used=False)
                    if serving.unheard(rule.heal, "" if why else f"{method} {pristine.get('path', '')}"):
                        scope = pristine.copy()  # watched from now on: once more, to find what crashed
                        exchange = _replay(exchange, exchange.heals)
                        continue
                if not exchange.sent:  # a 5xx, or a response with no body message
                    await exchange.commit()
                if exchange.heals:
                    serving.answered(rule.heal, exchange.heals[-1], "replayed with the patched handler", method,
                                     pristine.get("path", ""))
                return
            healed = await _heal(rule.heal, *found)
            if healed is None or exchange.sent:  # not healable, or a stream already under way
                await exchange.commit()  # the framework's own 500, if it sent one
                if error is not None:
                    raise error
                return
            heals = [*exchange.heals, healed]
            why = serving.refuse_replay(rule, heals, method, pristine.get("path", ""), body_over=exchange.over())
            if why:
                await _unavailable(send, heals, method, why, rule)
                return
            scope = pristine.copy()
            exchange = _replay(exchange, heals)


async def _heal(heal: Any, error: BaseException, tb: TracebackType | None) -> Healed | None:
    """serving.crashed in a thread, so the event loop keeps serving other
    requests while the guard is built (~10 ms); in the loop's own thread
    under another event loop (trio)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return serving.crashed(heal, error, "asgi request", tb)
    return await loop.run_in_executor(None, serving.crashed, heal, error, "asgi request", tb)


class _Exchange:
    """One attempt at a request, between the application and the server.

    `send` holds the response until its first body message (a 5xx one until
    `commit`, unless it streams); `receive` keeps the request body's messages,
    up to `limit` bytes (-1: none), so that a replay receives them again
    without the socket.  One object for both, made for every request: what
    most requests never change is a class attribute.  The extension's
    `Exchange` (_native/asgi.c) is the same in C, used when it is there: its
    send and receive return awaitables rather than being coroutines, and the
    send that releases a held start sends the start at the call."""

    start: dict[str, Any] | None = None  # the response's start message, held
    status = 0
    sent = False
    held: list[dict[str, Any]] | tuple[()] = ()  # the body of a 5xx, held
    heals: list[Healed] | tuple[()] = ()  # this request's heals, in its replays
    header = b""  # X-Pyward-Healed's value, when heals is not empty
    kept: list[dict[str, Any]] | tuple[()] = ()
    queue: list[dict[str, Any]] | tuple[()] = ()  # a replay's kept messages, not yet received again
    size = 0

    def __init__(self, send: Send, receive: Receive, limit: int) -> None:
        self._send, self._receive, self.limit = send, receive, limit

    async def send(self, message: dict[str, Any]) -> None:
        if self.sent:
            return await self._send(message)
        kind = message["type"]
        if kind == "http.response.start":
            self.start, self.status = message, message["status"]
        elif kind == "http.response.body" and self.status >= 500 and not message.get("more_body", False):
            self.held = [*self.held, message]  # a complete 5xx: held until the application returns
        elif self.start is None:  # an extension's message before the response: not held
            await self._send(message)
        else:  # the response goes out
            await self.commit()
            await self._send(message)

    async def commit(self) -> None:
        """Send what is held (nothing once sent)."""
        if self.sent or self.start is None:
            return
        self.sent = True
        start = self.start
        if self.heals:
            start = dict(start, headers=[*start.get("headers", ()), (b"x-pyward-healed", self.header)])
        await self._send(start)
        for message in self.held:
            await self._send(message)

    async def receive(self) -> dict[str, Any]:
        if self.queue:  # a replay: the kept messages first
            message, self.queue = self.queue[0], self.queue[1:]
        else:
            message = await self._receive()
        if self.limit >= 0 and message["type"] == "http.request":
            self.size += len(message.get("body", b""))
            if self.size <= self.limit:
                self.kept = [*self.kept, message]
            else:  # too large to keep: not replayed
                self.kept = ()
        return message

    __call__ = send  # the exchange is the application's send: no bound method a request

    def over(self) -> bool:
        return self.size > self.limit >= 0

    def replay(self, heals: list[Healed], header: bytes) -> _Exchange:
        """The next attempt, after `heals`: its response carries X-Pyward-Healed: `header`."""
        attempt = type(self)(self._send, self._receive, self.limit)
        attempt.heals, attempt.header, attempt.queue = heals, header, list(self.kept)
        return attempt


Exchange: Callable[[Send, Receive, int], _Exchange] = getattr(native, "Exchange", _Exchange)  # None: the fallback


def _replay(exchange: _Exchange, heals: list[Healed]) -> _Exchange:
    return exchange.replay(heals, serving.header_value(heals).encode("latin-1"))


async def _unavailable(send: Send, heals: list[Healed], method: str, why: str, rule: serving.Replay) -> None:
    body = serving.unavailable(heals[-1], method, why)
    value = serving.header_value(heals)
    await send({"type": "http.response.start", "status": 503, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(rule.retry_after).encode()), (b"x-pyward-healed", value.encode("latin-1"))]})
    await send({"type": "http.response.body", "body": body if method != "HEAD" else b""})
