"""The request boundary: one attempt at a request, heal, then replay or 503.

A request is a boundary like the script's top level: an exception escaping
the handler is given to the heal engine.  When it patched the handler, the
request is replayed with the patched code if that is safe (GET, HEAD,
OPTIONS or a method marked idempotent, its body kept, nothing sent yet) and
the response says so in `X-Pyward-Healed`; otherwise the client gets an
honest 503 with the same header and `Retry-After`, and later requests use
the patch.  An exception the engine cannot heal keeps the server's own error
behaviour.

`Request` decides; `serve` and `serve_async` drive it over an `Exchange`,
what a server adapter (integrations/: wsgi, asgi, http.server) makes of one
request.  An adapter runs a request's first attempt itself (the usual
request ends there) and calls a driver only when it failed or escapes are
watched.  One boundary acts for a request: `ACTIVE` marks a request
already inside one, so an inner boundary (a middleware wrapped twice)
passes straight through.  http.server's boundary is `Outer`: it answers only
for what escapes the whole handler, so a WSGI middleware served by an
http.server handler (werkzeug's: Flask's development server) takes the
request, since it alone sees a framework answer its own 500; what then
escapes the handler was judged already and goes on as under python.
"""
from __future__ import annotations

import contextvars

from .._native import native
from . import monitor

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import TracebackType
    from typing import Any, Callable, TypeVar

    F = TypeVar("F", bound=Callable[..., Any])

    from .engine import Healed, HealEngine
    from .monitor import Escapes
    from .server import Rule

#: The boundary serving the current request (None outside one).  Also read by
#: escape.py: the threads a framework runs a request's sync code in get a copy
#: of the request's context (Starlette's threadpool), though their stacks do
#: not reach the boundary's frame.
ACTIVE: contextvars.ContextVar[object | None] = contextvars.ContextVar("pyward_boundary", default=None)


def unwound(serve: F) -> F:
    """`serve` (a middleware's `__call__`, a handler's method) as the server calls it, such that an
    exception escaping it reaches the server with the traceback python would have given it: without
    pyward's frames in front of the application's (_native/boundary.c; without the C extension,
    `serve` itself)."""
    if native is None:
        return serve
    return native.Boundary(serve)  # type: ignore[return-value]


class Outer:
    """`ACTIVE` while an http.server handler runs a request (integrations/httpserver.py):
    `taken` once a middleware inside it answers for the request."""

    __slots__ = ("handler", "taken")

    def __init__(self, handler: object) -> None:
        self.handler, self.taken = handler, False


def takes(current: object | None) -> bool:
    """Whether a middleware starting a request answers for it, `current` being `ACTIVE`'s
    value: outside every boundary, or inside http.server's (which is told so)."""
    if current is None:
        return True
    if type(current) is Outer:
        current.taken = True
        return True
    return False


HEADER = "X-Pyward-Healed"

# what comes after an attempt
ANSWER = "answer"  # send what the attempt answered
AGAIN = "again"  # a 5xx with nothing on record, escapes watched from now on: once more, to find what crashed
HEAL = "heal"  # a crash was found: give it to the engine
REPLAY = "replay"  # healed: the next attempt runs the patched handler
UNAVAILABLE = "unavailable"  # healed, not replayable: an honest 503
UNHEALED = "unhealed"  # the server's own error behaviour

_FIRST_NOT_RUN: Any = object()


class Exchange:
    """What a server adapter makes of one request for the boundary (a base
    class to document the interface; adapters override every method)."""

    method = "GET"
    path = ""
    where = "request"  # the boundary, as the journal names it
    #: ASGI: once a response streams, a crash is the server's to handle, healed or not
    sent_is_final = False

    @property
    def sent(self) -> bool:
        """Part of the response reached the client."""
        return False

    def run(self) -> Any:
        """One attempt at the request (a coroutine function for `serve_async`)."""
        raise NotImplementedError

    def failed(self) -> bool:
        """The attempt answered a 5xx."""
        return False

    def body_over(self) -> bool:
        """The request body is larger than could be kept for a replay."""
        return False

    def heard(self) -> Escapes | tuple[()]:
        """Exceptions a framework reported for this attempt (Flask's signal)."""
        return ()

    def again(self, heals: list[Healed]) -> Any:
        """Drop this attempt's response and set up the next one (with `heals`' header; a coroutine for
        `serve_async`)."""
        raise NotImplementedError

    def answer(self, heals: list[Healed]) -> Any:
        """Send the attempt's response (with `heals`' header when there are any)."""
        raise NotImplementedError

    def unavailable(self, heals: list[Healed], why: str) -> Any:
        """Healed and not replayable (`why`): the 503 (nothing to send when part was sent)."""
        raise NotImplementedError

    def unhealed(self, error: Exception | None, heals: list[Healed]) -> Any:
        """Not healable: raise `error`, or, when the application answered a 5xx itself, send it."""
        raise NotImplementedError


class Request:
    """One request at the boundary: its heals so far and what comes after each attempt."""

    __slots__ = ("rule", "exchange", "heals", "found", "why")

    def __init__(self, rule: Rule, exchange: Exchange) -> None:
        self.rule, self.exchange = rule, exchange
        self.heals: list[Healed] = []
        self.found: tuple[BaseException, TracebackType | None] | None = None
        self.why = ""

    def after(self, error: Exception | None, escapes: Escapes | tuple[()]) -> str:
        """An attempt ended, raising `error` (or None); `escapes`: what left the program's code meanwhile."""
        exchange = self.exchange
        failed = error is not None or exchange.failed()
        found = crash_of(error, escapes or exchange.heard()) if failed else None
        if found is None:
            if failed:  # a 5xx with no exception on record
                why = not_replayable(exchange.method, self.rule, sent=exchange.sent, body_over=exchange.body_over(),
                                     retries_used=False)
                heal = self.rule.heal
                if monitor.unheard(heal.started(), heal.is_program_file,
                                   "" if why else f"{exchange.method} {exchange.path}"):
                    return AGAIN
            if self.heals:
                answered(self.rule.heal, self.heals[-1], "replayed with the patched handler", exchange.method,
                         exchange.path)
            return ANSWER
        self.found = found
        return HEAL

    def healed(self, healed: Healed | None) -> str:
        """What the engine made of the crash found: replay, 503 or the server's own behaviour."""
        exchange = self.exchange
        if healed is None or (exchange.sent and exchange.sent_is_final):
            return UNHEALED
        self.heals.append(healed)
        rule = self.rule
        self.why = not_replayable(exchange.method, rule, sent=exchange.sent, body_over=exchange.body_over(),
                                  retries_used=len(self.heals) > rule.heal.retries)
        if self.why:
            how = "connection closed after what was sent" if exchange.sent else "503"
            answered(rule.heal, healed, f"{how} (not replayed: {self.why})", exchange.method, exchange.path)
            return UNAVAILABLE
        return REPLAY


def serve(rule: Rule, exchange: Exchange, first: Exception | None = _FIRST_NOT_RUN) -> Any:
    """Drive a request to its answer, from its first attempt's outcome when one
    is given (the exception it raised, or None: it answered a 5xx)."""
    request = Request(rule, exchange)
    while True:
        if first is _FIRST_NOT_RUN:
            with monitor.Attempt() as attempt:
                exchange.run()
            error, escapes = attempt.error, attempt.escapes
        else:
            error, escapes, first = first, (), _FIRST_NOT_RUN
        step = request.after(error, escapes)
        if step == HEAL:
            assert request.found is not None
            step = request.healed(crashed(rule.heal, request.found[0], exchange.where, request.found[1]))
        if step == ANSWER:
            return exchange.answer(request.heals)
        if step == UNHEALED:
            return exchange.unhealed(error, request.heals)
        if step == UNAVAILABLE:
            return exchange.unavailable(request.heals, request.why)
        exchange.again(request.heals)  # REPLAY, AGAIN


async def serve_async(rule: Rule, exchange: Exchange, first: Exception | None = _FIRST_NOT_RUN) -> Any:
    """`serve` for an ASGI exchange: its methods are coroutine functions, and the
    guard is built in a thread, so the event loop keeps serving other requests."""
    request = Request(rule, exchange)
    while True:
        if first is _FIRST_NOT_RUN:
            with monitor.Attempt() as attempt:
                await exchange.run()
            error, escapes = attempt.error, attempt.escapes
        else:
            error, escapes, first = first, (), _FIRST_NOT_RUN
        step = request.after(error, escapes)
        if step == HEAL:
            assert request.found is not None
            step = request.healed(await crashed_async(rule.heal, request.found[0], exchange.where, request.found[1]))
        if step == ANSWER:
            return await exchange.answer(request.heals)
        if step == UNHEALED:
            return await exchange.unhealed(error, request.heals)
        if step == UNAVAILABLE:
            return await exchange.unavailable(request.heals, request.why)
        await exchange.again(request.heals)


def not_replayable(method: str, rule: Rule, *, sent: bool, body_over: bool, retries_used: bool) -> str:
    """Why a healed request cannot be replayed ('' when it can)."""
    if method not in rule.methods:
        return f"{method} is not idempotent (heal.idempotent marks methods that are)"
    if sent:
        return "part of the response was already sent"
    if body_over:
        return f"its body is larger than heal.replay_body ({rule.body_limit} bytes)"
    if retries_used:
        return "the handler kept crashing (heal.retries)"
    return ""


def crash_of(error: BaseException | None,
             escapes: Escapes | tuple[()]) -> tuple[BaseException, TracebackType | None] | None:
    """What crashed in an attempt at a request that failed: the exception that
    escaped the application; or, when it answered a 5xx itself (`error` is
    None), the last exception that left the program's code meanwhile
    (monitor.py) with its traceback as it left; None: nothing to heal."""
    if error is not None:
        return error, None
    return escapes[-1] if escapes else None


def crashed(heal: HealEngine, exc: BaseException, where: str, tb: TracebackType | None = None) -> Healed | None:
    """Give an escaping exception to the engine (the request boundary `where`; `tb`: see HealEngine.heal)."""
    if not isinstance(exc, Exception):
        return None
    return heal.heal(exc, boundary=where, tb=tb)


async def crashed_async(heal: HealEngine, exc: BaseException, where: str,
                        tb: TracebackType | None) -> Healed | None:
    """`crashed` in a thread of the running asyncio loop, so the loop keeps
    serving other requests while the guard is built (~10 ms); in the loop's
    own thread under another event loop (trio)."""
    import asyncio

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return crashed(heal, exc, where, tb)
    return await loop.run_in_executor(None, crashed, heal, exc, where, tb)


def answered(heal: HealEngine, healed: Healed, how: str, method: str, path: str) -> None:
    """Journal what the client got for a healed request."""
    assert heal.session is not None
    heal.session.emit("heal", "request", healed.label, severity="notice", where="",
                      message=f"{method} {path}: {how}",
                      details={"kind": healed.kind, "operand": healed.operand, "response": how,
                               "method": method, "path": path})


def header_value(heals: list[Healed]) -> str:
    """X-Pyward-Healed's value: `guard=<kind>; target=<operand>` for each heal
    of the request (`; recovery=skip|return` when the guard skips the
    statement or returns from the function rather than giving the fallback
    value), comma-separated, safe in an HTTP header (printable ASCII: no
    newline can get in)."""
    return ", ".join(f"guard={h.kind}; target={_printable(h.operand)}"
                     f"{'; recovery=' + h.recovery if getattr(h, 'recovery', 'value') != 'value' else ''}"
                     for h in heals)


def _printable(text: str) -> str:
    return "".join(c if " " <= c <= "~" else "?" for c in text)


def unavailable_body(healed: Healed, method: str, why: str) -> bytes:
    """The JSON body of the 503 sent when a healed request is not replayed."""
    import json

    return json.dumps({
        "error": "service unavailable",
        "detail": f"the handler crashed and was healed ({healed.label}); this {method} request was not "
                  f"replayed because {why}. Retry it: later requests use the patch.",
        "healed": {"guard": healed.kind, "target": healed.operand,
                   **({"recovery": healed.recovery} if getattr(healed, "recovery", "value") != "value" else {})},
    }).encode()
