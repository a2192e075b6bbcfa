"""Heal for ASGI applications, under any server (uvicorn, hypercorn...).

    from pyward.integrations.asgi import Middleware
    app = Middleware(app)

HTTP requests only (lifespan and websocket pass through untouched).  The
response is held until its first body message, so a crash before that can
be healed and the request replayed (heal/boundary.py); then it goes out: at once
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

from ..heal import boundary, monitor, server

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Awaitable, Callable

    from ..heal.engine import Healed
    from ..heal.server import Rule

    Receive = Callable[[], Awaitable[dict[str, Any]]]
    Send = Callable[[dict[str, Any]], Awaitable[None]]

ACTIVE = boundary.ACTIVE  # read and set by every request


class Middleware:
    """Heal crashes of `app`'s request handlers; see the module's documentation."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app
        server.prepare(app)

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        # every request runs this and the exchange's send twice (bench/serve.py measures it): the usual path, one
        # attempt answered below 500 with escapes not watched, is all here; anything else is the boundary's
        if scope["type"] != "http" or ACTIVE.get() is not None:  # not a request, or another boundary's
            return await self.app(scope, receive, send)
        rule = server.rule()
        if rule is None:
            return await self.app(scope, receive, send)
        # this request's task (a server runs each in its own) and the threads it starts are in the boundary
        token = ACTIVE.set(self)
        try:
            pristine = scope.copy()
            exchange = Exchange(send, receive, rule.body_limit if scope["method"] in rule.methods else -1)
            if monitor.tool is not None:  # escapes are watched: around every attempt
                return await boundary.serve_async(rule, _Request(self.app, scope, pristine, send, exchange, rule))
            try:
                await self.app(scope, exchange.receive, exchange.send)
            except Exception as exc:
                error: Exception | None = exc  # handled outside this block: a replay's exceptions do not chain to it
            else:
                if exchange.status < 500:
                    if not exchange.sent:  # a response with no body message
                        await exchange.commit()
                    return
                error = None
            return await boundary.serve_async(rule, _Request(self.app, scope, pristine, send, exchange, rule), error)
        finally:
            ACTIVE.reset(token)


class _Request(boundary.Exchange):
    """An ASGI request at the boundary: each attempt's scope and exchange."""

    where = "asgi request"
    sent_is_final = True

    def __init__(self, app: Callable[..., Any], scope: dict[str, Any], pristine: dict[str, Any], send: Send,
                 exchange: Exchange, rule: Rule) -> None:
        self.app, self.scope, self.pristine, self.send, self.exchange, self.rule = \
            app, scope, pristine, send, exchange, rule
        self.method = pristine["method"]  # upper case (ASGI)
        self.path = pristine.get("path", "")

    @property
    def sent(self) -> bool:
        return self.exchange.sent

    async def run(self) -> None:
        await self.app(self.scope, self.exchange.receive, self.exchange.send)

    def failed(self) -> bool:
        return self.exchange.status >= 500

    def body_over(self) -> bool:
        return self.exchange.over()

    async def again(self, heals: list[Healed]) -> None:
        self.scope = self.pristine.copy()
        self.exchange = self.exchange.replay(list(heals), boundary.header_value(heals).encode("latin-1"))

    async def answer(self, heals: list[Healed]) -> None:
        if not self.exchange.sent:  # a 5xx, or a response with no body message
            await self.exchange.commit()

    async def unavailable(self, heals: list[Healed], why: str) -> None:
        body = boundary.unavailable_body(heals[-1], self.method, why)
        value = boundary.header_value(heals)
        await self.send({"type": "http.response.start", "status": 503, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(self.rule.retry_after).encode()), (b"x-pyward-healed", value.encode("latin-1"))]})
        await self.send({"type": "http.response.body", "body": body if self.method != "HEAD" else b""})

    async def unhealed(self, error: Exception | None, heals: list[Healed]) -> None:
        await self.exchange.commit()  # the framework's own 500, if it sent one
        if error is not None:
            raise error


class Exchange:
    """One attempt at a request, between the application and the server.

    `send` holds the response until its first body message (a 5xx one until
    `commit`, unless it streams); `receive` keeps the request body's messages,
    up to `limit` bytes (-1: none), so that a replay receives them again
    without the socket.  One object for both, made for every request: its
    state is in slots, all set here, so that the interpreter specialises
    every attribute access of the usual request (a class attribute read
    through an instance, as a default, would not be)."""

    __slots__ = ("_send", "_receive", "limit", "start", "status", "sent", "held", "heals", "header", "kept",
                 "queue", "size")

    def __init__(self, send: Send, receive: Receive, limit: int) -> None:
        self._send, self._receive, self.limit = send, receive, limit
        self.start: dict[str, Any] | None = None  # the response's start message, held
        self.status = 0
        self.sent = False
        self.held: list[dict[str, Any]] | tuple[()] = ()  # the body of a 5xx, held
        self.heals: list[Healed] | tuple[()] = ()  # this request's heals, in its replays
        self.header = b""  # X-Pyward-Healed's value, when heals is not empty
        self.kept: list[dict[str, Any]] | tuple[()] = ()
        self.queue: list[dict[str, Any]] | tuple[()] = ()  # a replay's kept messages, not yet received again
        self.size = 0

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

    #: calling the exchange is its send (the application is given the bound `send`: a call the interpreter
    #: specialises, where an instance's `__call__` goes through the type's slot)
    __call__ = send

    def over(self) -> bool:
        return self.size > self.limit >= 0

    def replay(self, heals: list[Healed], header: bytes) -> Exchange:
        """The next attempt, after `heals`: its response carries X-Pyward-Healed: `header`."""
        attempt = type(self)(self._send, self._receive, self.limit)
        attempt.heals, attempt.header, attempt.queue = heals, header, list(self.kept)
        return attempt
