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
        # the path of a request that does not crash is kept short: it is paid by every request (bench/serve.py)
        heal = serving.engine() if scope.get("type") == "http" else None
        if heal is None:
            return await self.app(scope, receive, send)
        heal.refresh()
        rule = serving.replay_rule(heal)
        method = scope.get("method", "GET")  # upper case (ASGI)
        pristine = dict(scope)
        body = _Body(receive, rule.body_limit) if method in rule.methods else None
        heals: list[Healed] = []
        while True:
            response = _Response(send, heals)
            escapes, token = monitor.begin() if monitor.watching() else _UNWATCHED
            error: Exception | None = None
            try:
                await self.app(scope, body or receive, response)
            except Exception as exc:
                error = exc
            finally:
                if token is not None:
                    monitor.end(escapes, token)
            found = serving.crash_of(heal, error, escapes, response.status >= 500)
            if found is None:
                if response.held:  # a 5xx, or a response without a body message
                    await response.commit()
                if heals:
                    serving.answered(heal, heals[-1], "replayed with the patched handler", method,
                                     pristine.get("path", ""))
                return
            healed = await _heal(heal, *found)
            if healed is None or response.sent:  # not healable, or a stream already under way
                await response.commit()  # the framework's own 500, if it sent one
                if error is not None:
                    raise error
                return
            heals.append(healed)
            why = serving.refuse_replay(heal, heals, method, pristine.get("path", ""),
                                        body_over=body is not None and body.over)
            if why:
                await _unavailable(send, heals, method, why, rule)
                return
            scope = dict(pristine)
            if body is not None:
                body = body.replay()


_UNWATCHED: tuple[tuple[()], None] = ((), None)  # no escapes are recorded: sys.monitoring is off (monitor.py)


async def _heal(heal: Any, error: BaseException, tb: TracebackType | None) -> Healed | None:
    """serving.crashed in a thread, so the event loop keeps serving other
    requests while the guard is built (~10 ms); in the loop's own thread
    under another event loop (trio)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return serving.crashed(heal, error, "asgi request", tb)
    return await loop.run_in_executor(None, serving.crashed, heal, error, "asgi request", tb)


class _Response:
    """The application's `send`: the response held until its first body
    message (a 5xx one until commit, unless it streams)."""

    __slots__ = ("send", "heals", "held", "sent", "status")

    def __init__(self, send: Send, heals: list[Healed]) -> None:
        self.send, self.heals, self.held, self.sent, self.status = send, heals, [], False, 0

    async def __call__(self, message: dict[str, Any]) -> None:
        if self.sent:
            return await self.send(message)
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
            await self.send(message)


class _Body:
    """The application's `receive`: keeps the request body's messages (up to
    a limit) so that a replay receives them again without the socket."""

    __slots__ = ("receive", "limit", "kept", "size", "over")

    def __init__(self, receive: Receive, limit: int) -> None:
        self.receive, self.limit = receive, limit
        self.kept: list[dict[str, Any]] = []
        self.size, self.over = 0, False

    async def __call__(self) -> dict[str, Any]:
        message = await self.receive()
        if message.get("type") == "http.request" and not self.over:
            self.size += len(message.get("body", b""))
            if self.size > self.limit:
                self.over, self.kept = True, []
            else:
                self.kept.append(message)
        return message

    def replay(self) -> _Body:
        kept, receive = list(self.kept), self.receive

        async def again() -> dict[str, Any]:
            return kept.pop(0) if kept else await receive()
        return _Body(again, self.limit)



async def _unavailable(send: Send, heals: list[Healed], method: str, why: str, rule: serving.Replay) -> None:
    body = serving.unavailable(heals[-1], method, why)
    value = ", ".join(serving.header_value(h) for h in heals)
    await send({"type": "http.response.start", "status": 503, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(rule.retry_after).encode()), (b"x-pyward-healed", value.encode("latin-1"))]})
    await send({"type": "http.response.body", "body": body if method != "HEAD" else b""})
