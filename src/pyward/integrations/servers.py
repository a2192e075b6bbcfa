"""Heal for applications served by common servers, with the program unchanged:
the application each server calls goes through pyward's middleware.

Installed under `pyward run --heal` when the program imports the server's
module (runner.ADAPTERS); each wraps one method of the server, once:

* wsgiref.handlers (wsgiref.simple_server, Django's `runserver`): every such
  server hands each request to `BaseHandler.run(application)`; the wrapper
  hands it the application inside `wsgi.Middleware` instead;
* werkzeug.serving (Flask's `app.run()`, `flask run`): the server keeps its
  application (`BaseWSGIServer.app`), which werkzeug's handler calls for each
  request; the server is made with the application inside the middleware
  (`server.app` is the middleware, its `app` the application);
* gunicorn.workers.base (`pyward run --heal -m gunicorn app:app`): each worker
  loads the application (`Worker.load_wsgi`) into `worker.wsgi`, which it
  calls for each request; that becomes the middleware;
* uvicorn.config (`pyward run --heal -m uvicorn app:app`, `uvicorn.run`):
  uvicorn loads the application once (`Config.load`) and serves every request
  through `config.loaded_app`, which becomes the application inside
  `asgi.Middleware`, outermost;
* waitress.server (`waitress.serve(app)`, `waitress-serve`): each server keeps
  its application (`BaseWSGIServer.application`), which a task calls for each
  request; the server is made, then that becomes the middleware;
* hypercorn.app_wrappers (`hypercorn.asyncio.serve`, the `hypercorn`
  command): hypercorn wraps the application it serves (`ASGIWrapper`,
  `WSGIWrapper`) and calls the wrapper for each request; the wrapper is made
  with the application inside the ASGI or WSGI middleware.

aiohttp and tornado are neither WSGI nor ASGI: `unsupported` says so once.

The WSGI middleware is made once per application.  An application the
program wrapped itself runs in that middleware only (one boundary a request,
heal/boundary.py).
"""
from __future__ import annotations

from . import asgi, wsgi

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

    from ..heal.engine import HealEngine


_made: dict[int, tuple[Any, wsgi.Middleware]] = {}  # id(application) -> (application, its middleware)


def healed(application: Callable[..., Any]) -> Callable[..., Any]:
    """`application` inside the WSGI middleware, made once (itself when it is one)."""
    if isinstance(application, wsgi.Middleware):
        return application
    known = _made.get(id(application))
    if known is None or known[0] is not application:
        known = _made[id(application)] = (application, wsgi.Middleware(application))
    return known[1]


def install(heal: HealEngine, module: Any) -> None:
    """wsgiref.handlers: `BaseHandler.run(application)` runs the application inside the middleware."""

    def run_(run: Callable[..., Any], self: Any, application: Callable[..., Any]) -> Any:
        return run(self, healed(application))

    _wrap(heal, module.BaseHandler, "run", run_)


def install_werkzeug(heal: HealEngine, module: Any) -> None:
    """werkzeug.serving: a `BaseWSGIServer` is made with the application inside the middleware."""

    def init_(init: Callable[..., Any], self: Any, host: Any, port: Any, app: Callable[..., Any], *args: Any,
              **kwargs: Any) -> None:
        init(self, host, port, healed(app), *args, **kwargs)

    _wrap(heal, module.BaseWSGIServer, "__init__", init_)


def install_gunicorn(heal: HealEngine, module: Any) -> None:
    """gunicorn.workers.base: the application a worker loads is the middleware."""

    def load_wsgi_(load_wsgi: Callable[..., Any], self: Any) -> None:
        load_wsgi(self)
        if callable(getattr(self, "wsgi", None)):
            self.wsgi = healed(self.wsgi)

    _wrap(heal, module.Worker, "load_wsgi", load_wsgi_)


def install_uvicorn(heal: HealEngine, module: Any) -> None:
    """uvicorn.config: the application `Config.load` loads is inside the ASGI middleware."""

    def load_(load: Callable[..., Any], self: Any) -> None:
        load(self)
        if not isinstance(self.loaded_app, asgi.Middleware):
            self.loaded_app = asgi.Middleware(self.loaded_app)

    _wrap(heal, module.Config, "load", load_)


def install_waitress(heal: HealEngine, module: Any) -> None:
    """waitress.server: a server is made with the application inside the middleware
    (its tasks call `server.application`)."""

    def init_(init: Callable[..., Any], self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        if callable(getattr(self, "application", None)):
            self.application = healed(self.application)

    _wrap(heal, module.BaseWSGIServer, "__init__", init_)


def install_hypercorn(heal: HealEngine, module: Any) -> None:
    """hypercorn.app_wrappers: every application hypercorn serves (`serve(app, config)`, the
    `hypercorn` command) is wrapped once, ASGI or WSGI; the one inside goes through the middleware."""

    def asgi_(init: Callable[..., Any], self: Any, app: Any, *args: Any, **kwargs: Any) -> None:
        init(self, app if isinstance(app, asgi.Middleware) else asgi.Middleware(app), *args, **kwargs)

    def wsgi_(init: Callable[..., Any], self: Any, app: Any, *args: Any, **kwargs: Any) -> None:
        init(self, healed(app), *args, **kwargs)

    _wrap(heal, module.ASGIWrapper, "__init__", asgi_)
    _wrap(heal, module.WSGIWrapper, "__init__", wsgi_)


def unsupported(heal: HealEngine, module: Any) -> None:
    """aiohttp.web, tornado.web: servers that are neither WSGI nor ASGI, whose request
    handling no adapter holds: a handler's crash gets the framework's own 500, as under
    python, unhealed; said once, when the program imports the framework."""
    name = module.__name__.split(".")[0]
    heal.started().emit("heal", "no_boundary", name, severity="notice", where="",
                        message=f"heal holds no request boundary in {name} (neither WSGI nor ASGI): a handler's "
                                f"crash gets {name}'s own 500 and is not healed")


def _wrap(heal: HealEngine, cls: type, name: str, wrapper: Callable[..., Any]) -> None:
    """`cls.name` becomes `wrapper(original, *args)`, once (pyward's own change, authorised)."""
    original = getattr(cls, name)
    if getattr(original, "_pyward", False):
        return

    def method(*args: Any, **kwargs: Any) -> Any:
        return wrapper(original, *args, **kwargs)

    method._pyward = True  # type: ignore[attr-defined]
    method.__wrapped__ = original  # type: ignore[attr-defined]
    method.__name__ = method.__qualname__ = getattr(original, "__name__", name)
    with heal.started().acting("heal"):
        setattr(cls, name, method)
