"""Heal for `http.server` (and every socketserver-based server using its handlers).

Installed under `pyward run --heal` when the program imports http.server
(runner.ADAPTERS).  `BaseHTTPRequestHandler` gets two wrappers:

* `handle_one_request`: the request boundary (heal/boundary.py): an
  exception escaping the handler goes to the heal engine;
* `parse_request`: inside that boundary, once the request line and headers
  are read, the handler's `wfile` becomes a buffer (the response reaches the
  socket when the handler returns, calls `wfile.flush()` or writes more than
  1 MiB) and, for replayable methods, `rfile` keeps what the handler reads
  of the body.

A handler that serves requests without `handle_one_request` (wsgiref's,
whose WSGI application has its own boundary, wsgi.Middleware) is left as it
is.  Without a crash the cost is these two calls and one buffer per request.
"""
from __future__ import annotations

from ..heal import boundary, server
from .body import BodyRecorder

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ..heal.engine import Healed, HealEngine
    from ..heal.server import Rule

#: A response larger than this is sent as it is written (and no longer replayable).
RESPONSE_BUFFER = 1 << 20


class ResponseBuffer:
    """The handler's `wfile` while it runs: nothing reaches the client before
    the handler is done, flushes, or writes more than `limit` bytes.  It also
    keeps what the request changed on the handler (its own rfile, the body's
    recorder) and its replay rule."""

    __slots__ = ("real", "chunks", "size", "limit", "sent", "rfile", "body", "rule")

    def __init__(self, real: Any, limit: int) -> None:
        self.real, self.size, self.limit, self.sent = real, 0, limit, False
        self.chunks: list[bytes] = []
        self.rfile: Any = None
        self.body: BodyRecorder | None = None
        self.rule: Rule | None = None

    def write(self, data: Any) -> int:
        if self.sent:
            return self.real.write(data)
        data = bytes(data)
        self.chunks.append(data)
        self.size += len(data)
        if self.size > self.limit:
            self.commit()
        return len(data)

    def commit(self) -> None:
        if self.chunks:
            self.sent = True
            self.real.write(b"".join(self.chunks))
            self.chunks.clear()

    def flush(self) -> None:
        self.commit()
        self.real.flush()

    def discard(self) -> None:
        self.chunks.clear()
        self.size = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def install(heal: HealEngine, module: Any) -> None:
    """Wrap `module.BaseHTTPRequestHandler` (http.server, imported under `pyward run --heal`), once."""
    cls = module.BaseHTTPRequestHandler
    current = cls.handle_one_request  # the wrapper, or (from C) the boundary around it
    if getattr(current, "_pyward", False) or getattr(getattr(current, "__wrapped__", None), "_pyward", False):
        return
    parse_request, handle_one_request = cls.parse_request, cls.handle_one_request
    active = boundary.ACTIVE

    def parse_request_(self: Any) -> bool:
        ok = parse_request(self)
        current = active.get()
        mine = type(current) is boundary.Outer and current.handler is self  # this handler's boundary is the request's
        if ok and mine:
            rule = server.rule()
            if rule is not None:
                self._pyward = out = self.wfile = ResponseBuffer(self.wfile, RESPONSE_BUFFER)
                out.rfile, out.rule = self.rfile, rule
                if self.command in rule.methods:
                    out.body = self.rfile = BodyRecorder(self.rfile, rule.body_limit)
        return ok

    def handle_one_request_(self: Any) -> None:
        if active.get() is not None:  # inside another boundary: that one answers for the request
            return handle_one_request(self)
        outer = boundary.Outer(self)
        token = active.set(outer)
        try:
            handle_one_request(self)
        except Exception as exc:
            request = self.__dict__.get("_pyward")
            if request is None or outer.taken:  # a middleware inside answered for the request: judged already
                raise
            boundary.serve(request.rule, _Request(self, request, request.rule), exc)
        finally:
            active.reset(token)
            request = self.__dict__.pop("_pyward", None)
            if request is not None:
                request.commit()
                self.wfile, self.rfile = request.real, request.rfile

    # markers on the wrapper functions (mypy knows no attributes on a function)
    parse_request_._pyward = handle_one_request_._pyward = True  # type: ignore[attr-defined]
    parse_request_.__wrapped__ = parse_request  # type: ignore[attr-defined]
    handle_one_request_.__wrapped__ = handle_one_request  # type: ignore[attr-defined]
    with heal.started().acting("heal"):
        # what escapes the handler reaches socketserver's handle_error as from the handler: no frame of pyward's
        cls.parse_request, cls.handle_one_request = parse_request_, boundary.unwound(handle_one_request_)


class _Request(boundary.Exchange):
    """An http.server request at the boundary: a replay calls the handler's
    `do_<METHOD>` again on a fresh buffer, its response carrying X-Pyward-Healed."""

    where = "http.server request"

    def __init__(self, handler: Any, request: ResponseBuffer, rule: Rule) -> None:
        self.handler, self.request, self.rule = handler, request, rule
        self.method, self.path = handler.command, handler.path

    @property
    def sent(self) -> bool:
        return self.request.sent

    def body_over(self) -> bool:
        return self.request.body is not None and self.request.body.over

    def run(self) -> None:
        handler = self.handler
        try:
            getattr(handler, "do_" + handler.command)()
            handler.wfile.flush()
        finally:
            handler.__dict__.pop("end_headers", None)

    def again(self, heals: list[Healed]) -> None:
        handler, request = self.handler, self.request
        request.discard()
        handler._headers_buffer = []
        if request.body is not None:  # the replay reads the kept bytes, and keeps them (and more) again
            handler.rfile = request.body = BodyRecorder(request.body.replay(), self.rule.body_limit)
        handler.end_headers = _with_header(handler, boundary.header_value(heals))

    def answer(self, heals: list[Healed]) -> None:
        pass  # the handler's response goes out when handle_one_request_ commits the buffer

    def unavailable(self, heals: list[Healed], why: str) -> None:
        _unavailable(self.handler, self.request, heals, boundary.header_value(heals), why, self.rule)

    def unhealed(self, error: Exception | None, heals: list[Healed]) -> None:
        _server_error(self.handler, self.request, heals)
        assert error is not None
        raise error


def _with_header(handler: Any, value: str) -> Any:
    cls_end_headers = type(handler).end_headers

    def end_headers() -> None:
        handler.send_header(boundary.HEADER, value)
        cls_end_headers(handler)
    return end_headers


def _unavailable(handler: Any, request: Any, heals: list[Healed], value: str, why: str,
                 rule: Rule) -> None:
    """An honest 503 when nothing was sent yet; else the connection is closed
    after what the handler sent (a streamed response cannot be taken back)."""
    handler.close_connection = True  # the request body may be unread
    if request.sent:
        return
    request.discard()
    handler._headers_buffer = []
    handler.wfile = request.real
    body = boundary.unavailable_body(heals[-1], handler.command, why)
    handler.send_response(503)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.send_header("Retry-After", str(rule.retry_after))
    handler.send_header(boundary.HEADER, value)
    handler.send_header("Connection", "close")
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(body)


def _server_error(handler: Any, request: Any, heals: list[Healed]) -> None:
    """Not healable: what http.server does (the traceback, the connection
    closed), after a 500 if nothing was sent, so the client is not left
    with a reset connection.  After a replay, the 500 says which guards ran."""
    handler.close_connection = True
    if request.sent:
        return
    request.discard()
    handler._headers_buffer = []
    handler.wfile = request.real
    if heals:
        handler.end_headers = _with_header(handler, boundary.header_value(heals))
    try:
        handler.send_error(500)
    except OSError:  # the client went away: nothing more to tell it
        pass
    finally:
        handler.__dict__.pop("end_headers", None)
