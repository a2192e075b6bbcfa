"""Heal for `http.server` (and every socketserver-based server using its handlers).

Installed by the heal engine when `http.server` is imported under
`pyward run --heal`.  `BaseHTTPRequestHandler` gets two wrappers:

* `parse_request`: once the request line and headers are read, the handler's
  `wfile` becomes a buffer (the response reaches the socket when the handler
  returns, calls `wfile.flush()` or writes more than 1 MiB) and, for
  replayable methods, `rfile` keeps what the handler reads of the body;
* `handle_one_request`: an exception escaping the handler goes to the heal
  engine (serving.py says what happens next).  Without a crash the cost is
  these two calls and one buffer per request (in C: _native/serving.c).
"""
from __future__ import annotations

from .._native import native
from . import serving

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ..heal.engine import Healed, HealEngine

#: A response larger than this is sent as it is written (and no longer replayable).
RESPONSE_BUFFER = 1 << 20


class _ResponseBuffer:
    """The handler's `wfile` while it runs: nothing reaches the client before
    the handler is done, flushes, or writes more than `limit` bytes.  It also
    keeps what the request changed on the handler (its own rfile, the body's
    recorder) and its replay rule.  The extension's ResponseBuffer is the same
    in C, used when it is loaded; this class is the fallback."""

    __slots__ = ("real", "chunks", "size", "limit", "sent", "rfile", "body", "rule")

    def __init__(self, real: Any, limit: int) -> None:
        self.real, self.chunks, self.size, self.limit, self.sent = real, [], 0, limit, False
        self.rfile = self.body = self.rule = None

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


ResponseBuffer: Any = getattr(native, "ResponseBuffer", _ResponseBuffer)  # native is None: the fallback


def install(heal: HealEngine, module: Any) -> None:
    """Wrap `module.BaseHTTPRequestHandler` (http.server, being imported under `pyward run --heal`), once."""
    cls = module.BaseHTTPRequestHandler
    if getattr(cls.handle_one_request, "_pyward", False):
        return
    parse_request, handle_one_request = cls.parse_request, cls.handle_one_request

    def parse_request_(self: Any) -> bool:
        ok = parse_request(self)
        if ok:
            rule = serving.request()
            if rule is not None:
                self._pyward = out = self.wfile = ResponseBuffer(self.wfile, RESPONSE_BUFFER)
                out.rfile, out.rule = self.rfile, rule
                if self.command in rule.methods:
                    out.body = self.rfile = serving.BodyRecorder(self.rfile, rule.body_limit)
        return ok

    def handle_one_request_(self: Any) -> None:
        try:
            handle_one_request(self)
        except Exception as exc:
            request = self.__dict__.get("_pyward")
            if request is None:
                raise
            _crashed(self, request, exc)
        finally:
            request = self.__dict__.pop("_pyward", None)
            if request is not None:
                request.commit()
                self.wfile, self.rfile = request.real, request.rfile

    parse_request_._pyward = handle_one_request_._pyward = True  # type: ignore[attr-defined]
    parse_request_.__wrapped__ = parse_request  # type: ignore[attr-defined]
    handle_one_request_.__wrapped__ = handle_one_request  # type: ignore[attr-defined]
    with heal.session.acting("heal"):  # type: ignore[union-attr]
        cls.parse_request, cls.handle_one_request = parse_request_, handle_one_request_


def _crashed(handler: Any, request: Any, exc: Exception) -> None:
    """The handler raised: heal, then replay, answer 503, or keep the server's behaviour."""
    rule = request.rule
    heal = rule.heal
    heals: list[Healed] = []
    while True:
        healed = serving.crashed(heal, exc, "http.server request")
        if healed is None:
            _server_error(handler, request, heals)
            raise exc
        heals.append(healed)
        value = serving.header_value(heals)
        why = serving.refuse_replay(rule, heals, handler.command, handler.path, sent=request.sent,
                                    body_over=request.body is not None and request.body.over)
        if why:
            _unavailable(handler, request, heals, value, why, rule)
            return
        request.discard()
        handler._headers_buffer = []
        if request.body is not None:  # the replay reads the kept bytes, and keeps them (and more) again
            handler.rfile = request.body = serving.BodyRecorder(request.body.replay(), rule.body_limit)
        handler.end_headers = _with_header(handler, value)
        try:
            getattr(handler, "do_" + handler.command)()
            handler.wfile.flush()
        except Exception as again:
            exc = again
            continue
        finally:
            handler.__dict__.pop("end_headers", None)
        serving.answered(heal, healed, "replayed with the patched handler", handler.command, handler.path)
        return


def _with_header(handler: Any, value: str) -> Any:
    cls_end_headers = type(handler).end_headers

    def end_headers() -> None:
        handler.send_header(serving.HEADER, value)
        cls_end_headers(handler)
    return end_headers


def _unavailable(handler: Any, request: Any, heals: list[Healed], value: str, why: str,
                 rule: serving.Replay) -> None:
    """An honest 503 when nothing was sent yet; else the connection is closed
    after what the handler sent (a streamed response cannot be taken back)."""
    handler.close_connection = True  # the request body may be unread
    if request.sent:
        return
    request.discard()
    handler._headers_buffer = []
    handler.wfile = request.real
    body = serving.unavailable(heals[-1], handler.command, why)
    handler.send_response(503)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.send_header("Retry-After", str(rule.retry_after))
    handler.send_header(serving.HEADER, value)
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
        handler.end_headers = _with_header(handler, serving.header_value(heals))
    try:
        handler.send_error(500)
    except OSError:  # the client went away: nothing more to tell it
        pass
    finally:
        handler.__dict__.pop("end_headers", None)
