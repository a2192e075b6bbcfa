"""Heal for WSGI applications, under any server (gunicorn, wsgiref, uwsgi...).

    from pyward.integrations.wsgi import Middleware
    app = Middleware(app)            # Flask: app.wsgi_app = Middleware(app.wsgi_app) works too

The response is held until the application has returned and produced its
first non-empty chunk: a crash before that can be healed and the request
replayed (heal/boundary.py).  A streamed response is committed at its first chunk;
a crash after it is the server's to handle.  Frameworks that turn a view's
exception into their own 500 (Flask, Django, Bottle...) are heard through
sys.monitoring on 3.12+ (heal/monitor.py), and Flask also through its
`got_request_exception` signal (the only way on 3.11): a 5xx answered with
such an exception on record is healed and replayed as if the exception had
escaped; otherwise the framework's 500 goes through.
"""
from __future__ import annotations

import itertools

from ..heal import boundary, monitor, server
from .body import BodyRecorder

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable, Iterator

    from ..heal.engine import Healed
    from ..heal.server import Rule


class Middleware:
    """Heal crashes of `app`'s request handlers; see the module's documentation."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app
        server.prepare(app)
        _listen_to_flask(app)  # the framework turns exceptions into its own 500

    @boundary.unwound  # what escapes reaches the server as from the application: no frame of pyward's first
    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        # every request runs this (bench/serve.py measures it): the usual path, one attempt answered below 500
        # with escapes not watched, is all here; anything else is the boundary's (heal/boundary.py)
        if not boundary.takes(boundary.ACTIVE.get()):  # inside another boundary: that one answers for the request
            return self.app(environ, start_response)
        rule = server.rule()
        if rule is None:  # `pyward run` without --heal
            return self.app(environ, start_response)
        token = boundary.ACTIVE.set(self)
        try:
            pristine = environ.copy()
            method = environ.get("REQUEST_METHOD", "GET")
            body = None
            if method in rule.methods and (environ.get("CONTENT_LENGTH") not in _NO_BODY
                                           or "HTTP_TRANSFER_ENCODING" in environ):  # a body to keep for a replay
                body = environ["wsgi.input"] = BodyRecorder(environ["wsgi.input"], rule.body_limit)
            response = Held()
            if monitor.tool is not None:  # escapes are watched: around every attempt
                return boundary.serve(rule, _Request(self.app, environ, pristine, body, start_response, rule,
                                                      response))
            try:
                response.run(self.app, environ)
            except Exception as exc:
                error: Exception | None = exc  # handled outside this block: a replay's exceptions do not chain to it
            else:
                if response.status[:1] != "5":
                    return response.commit(start_response, None)
                error = None
            return boundary.serve(rule, _Request(self.app, environ, pristine, body, start_response, rule, response),
                                  error)
        finally:
            boundary.ACTIVE.reset(token)


class _Request(boundary.Exchange):
    """A WSGI request at the boundary: each attempt's environ (from the pristine
    one, the body kept so far read first) and its held response."""

    where = "wsgi request"

    def __init__(self, app: Callable[..., Any], environ: dict[str, Any], pristine: dict[str, Any],
                 body: BodyRecorder | None, start_response: Callable[..., Any], rule: Rule, response: Held) -> None:
        self.app, self.environ, self.pristine, self.body = app, environ, pristine, body
        self.start_response, self.rule, self.response = start_response, rule, response
        self.method = pristine.get("REQUEST_METHOD", "GET")
        self.path = pristine.get("PATH_INFO", "")

    def run(self) -> None:
        self.response.run(self.app, self.environ)

    def failed(self) -> bool:
        return self.response.status[:1] == "5"

    def body_over(self) -> bool:
        return self.body is not None and self.body.over

    def heard(self) -> Any:
        return self.environ.get(_HEARD, ())

    def again(self, heals: list[Healed]) -> None:
        self.response.discard()
        self.environ = self.pristine.copy()
        if self.body is not None:  # the body kept so far is read first
            self.body = self.environ["wsgi.input"] = BodyRecorder(self.body.replay(), self.rule.body_limit)
        self.response = Held()

    def answer(self, heals: list[Healed]) -> Iterable[bytes]:
        return self.response.commit(self.start_response, _header(heals) if heals else None)

    def unavailable(self, heals: list[Healed], why: str) -> list[bytes]:
        self.response.discard()
        body = boundary.unavailable_body(heals[-1], self.method, why)
        self.start_response("503 Service Unavailable", [
            ("Content-Type", "application/json"), ("Content-Length", str(len(body))),
            ("Retry-After", str(self.rule.retry_after)), _header(heals)])
        return [body] if self.method != "HEAD" else [b""]

    def unhealed(self, error: Exception | None, heals: list[Healed]) -> Iterable[bytes]:
        if error is not None:
            self.response.discard()
            raise error
        return self.answer(heals)  # the framework's own 500


_NO_BODY = (None, "", "0")
_HEARD = "pyward.escapes"  # the environ key where Flask's signal leaves the exception it reports


def _header(heals: list[Healed]) -> tuple[str, str]:
    return boundary.HEADER, boundary.header_value(heals)


class Held:
    """What the application answered, held back until it is committed: the
    start_response the application is given, then the body the server reads."""

    status = ""  # what most requests never change is a class attribute
    headers: list[tuple[str, str]] = []  # never changed in place
    written: list[bytes] | tuple[()] = ()  # the application's write() calls before the commit
    result: Any = None
    chunks: list[bytes] | tuple[()] = ()
    rest: Any = None
    server_write: Callable[[bytes], Any] | None = None  # the server's write(), once committed

    def __call__(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        if exc_info is not None and self.server_write is not None:  # too late: the headers are sent (PEP 3333)
            raise exc_info[1].with_traceback(exc_info[2])
        self.status, self.headers = status, headers
        return self.write

    def write(self, data: bytes) -> None:
        if self.server_write is not None:
            self.server_write(data)
        else:
            self.written = [*self.written, data]

    def run(self, app: Callable[..., Any], environ: dict[str, Any]) -> None:
        """Call the application and read up to its first non-empty chunk."""
        self.result = result = app(environ, self)
        if type(result) is list or isinstance(result, tuple):
            return
        wrapper = environ.get("wsgi.file_wrapper")
        if isinstance(wrapper, type) and isinstance(result, wrapper):
            return
        rest = iter(result)
        chunks = []
        for chunk in rest:
            chunks.append(chunk)
            if chunk:
                self.chunks, self.rest = chunks, rest
                return
        self.chunks = chunks

    def discard(self) -> None:
        """An attempt that is not answered: close its iterable."""
        try:
            self.close()
        except Exception:
            pass

    def commit(self, start_response: Callable[..., Any], extra: tuple[str, str] | None) -> Iterable[bytes]:
        """Send the head (with the header `extra`) and the held writes; the body iterable."""
        headers = self.headers if extra is None else [*self.headers, extra]
        self.server_write = write = start_response(self.status, headers)
        written, self.written = self.written, ()
        for data in written:
            write(data)
        if self.rest is None and not self.chunks:
            return self.result  # a list, a file wrapper: as the application returned it
        return self

    def __iter__(self) -> Iterator[bytes]:
        """The chunks read ahead, then the rest of the application's iterable."""
        return iter(self.chunks) if self.rest is None else itertools.chain(self.chunks, self.rest)

    def close(self) -> None:
        close = getattr(self.result, "close", None)
        if close is not None:
            close()


def _listen_to_flask(app: Any) -> None:
    """Flask handles a view's exception itself (a 500); its signal hands it to
    us first, and we leave it in the request's environ (`_HEARD`): the one
    the middleware passed on, so nothing is set up for requests that do not crash."""
    import sys

    flask = sys.modules.get("flask")
    target = getattr(app, "__self__", app)  # app.wsgi_app is a bound method of the Flask app
    if flask is not None and isinstance(target, flask.Flask):
        flask.got_request_exception.connect(_flask_exception, sender=target, weak=False)


def _flask_exception(sender: Any, exception: BaseException | None = None, **extra: Any) -> None:
    import flask

    if exception is not None and flask.has_request_context():
        flask.request.environ.setdefault(_HEARD, []).append((exception, exception.__traceback__))
