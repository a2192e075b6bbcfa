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

from ..heal import monitor
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
        serving.configure()

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        # every request pays for what runs here until the application returns (bench/serve.py): keep it short
        heal = serving.engine() if scope.get("type") == "http" else None
        if heal is None:
            return await self.app(scope, receive, send)
        heal.refresh()
        rule = serving.replay_rule(heal)
        method = scope.get("method", "GET")  # upper case (ASGI)
        pristine = dict(scope)
        heals: list[Healed] = []
        exchange = _Exchange(send, receive, rule.body_limit if method in rule.methods else -1, heals)
        while True:
            escapes, token = monitor.begin()
            error: Exception | None = None
            try:
                await self.app(scope, exchange.receive, exchange.send)
            except Exception as exc:
                error = exc
            finally:
                monitor.end(escapes, token)
            found = serving.crash_of(heal, error, escapes, exchange.status >= 500)
            if found is None:
                if exchange.held:  # a 5xx, or a response without a body message
                    await exchange.commit()
                if heals:
                    serving.answered(heal, heals[-1], "replayed with the patched handler", method,
                                     pristine.get("path", ""))
                return
            healed = await _heal(heal, *found)
            if healed is None or exchange.sent:  # not healable, or a stream already under way
                await exchange.commit()  # the framework's own 500, if it sent one
                if error is not None:
                    raise error
                return
            heals.append(healed)
            why = serving.refuse_replay(heal, heals, method, pristine.get("path", ""), body_over=exchange.over())
            if why:
                await _unavailable(send, heals, method, why, rule)
                return
            scope = dict(pristine)
            exchange = exchange.replay()


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
    without the socket.  One object for both: it is made for every request."""

    __slots__ = ("_send", "_receive", "limit", "heals", "held", "sent", "status", "kept", "size")

    def __init__(self, send: Send, receive: Receive, limit: int, heals: list[Healed]) -> None:
        self._send, self._receive, self.limit, self.heals = send, receive, limit, heals
        self.held: list[dict[str, Any]] = []
        self.kept: list[dict[str, Any]] = []
        self.sent, self.status, self.size = False, 0, 0

    async def send(self, message: dict[str, Any]) -> None:
        if self.sent:
            return await self._send(message)
        self.held.append(message)
        kind = message.get("type")
        if kind == "http.response.start":
            self.status = message.get("status", 200)
        elif kind == "http.response.body" and (self.status < 500 or message.get("more_body", False)):
            await self.commit()

    async def commit(self) -> None:
        held, self.held = self.held, []
        if not held:
            return
        self.sent = True
        if self.heals and held[0].get("type") == "http.response.start":
            value = ", ".join(serving.header_value(h) for h in self.heals).encode("latin-1")
            start = held[0]
            held[0] = dict(start, headers=[*start.get("headers", ()), (b"x-pyward-healed", value)])
        for message in held:
            await self._send(message)

    async def receive(self) -> dict[str, Any]:
        message = await self._receive()
        if self.limit >= 0 and message.get("type") == "http.request":
            self.size += len(message.get("body", b""))
            if self.size <= self.limit:
                self.kept.append(message)
            else:  # too large to keep: not replayed
                self.kept = []
        return message

    def over(self) -> bool:
        return self.size > self.limit >= 0

    def replay(self) -> _Exchange:
        """The next attempt: the kept body messages first, then the server's."""
        kept, receive = list(self.kept), self._receive

        async def again() -> dict[str, Any]:
            return kept.pop(0) if kept else await receive()
        return _Exchange(self._send, again, self.limit, self.heals)


async def _unavailable(send: Send, heals: list[Healed], method: str, why: str, rule: serving.Replay) -> None:
    body = serving.unavailable(heals[-1], method, why)
    value = ", ".join(serving.header_value(h) for h in heals)
    await send({"type": "http.response.start", "status": 503, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(rule.retry_after).encode()), (b"x-pyward-healed", value.encode("latin-1"))]})
    await send({"type": "http.response.body", "body": body if method != "HEAD" else b""})
