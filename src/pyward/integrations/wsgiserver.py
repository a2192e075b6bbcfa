"""Heal for WSGI applications served by the standard library's and werkzeug's
development servers and by gunicorn, with the program unchanged.

Installed under `pyward run --heal` when the program imports their module
(runner.ADAPTERS):

* wsgiref.handlers (wsgiref.simple_server, Django's `runserver`): every such
  server hands each request to `BaseHandler.run(application)`; the wrapper
  hands it the application inside `wsgi.Middleware` instead;
* werkzeug.serving (Flask's `app.run()`): the server keeps its application
  (`BaseWSGIServer.app`), which werkzeug's handler calls for each request; the
  server is made with the application inside the middleware (`server.app`
  is the middleware, its `app` the application);
* gunicorn.workers.base (`pyward run --heal -m gunicorn app:app`): each worker
  loads the application (`Worker.load_wsgi`) into `worker.wsgi`, which it
  calls for each request; that becomes the middleware.

The middleware is made once per application.  An application the program
wrapped itself runs in that middleware only (one boundary a request,
heal/boundary.py).
"""
from __future__ import annotations

from .wsgi import Middleware

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

    from ..heal.engine import HealEngine


_made: dict[int, tuple[Any, Middleware]] = {}  # id(application) -> (application, its middleware)


def healed(application: Callable[..., Any]) -> Callable[..., Any]:
    """`application` inside the middleware, made once (itself when it is one)."""
    if isinstance(application, Middleware):
        return application
    known = _made.get(id(application))
    if known is None or known[0] is not application:
        known = _made[id(application)] = (application, Middleware(application))
    return known[1]


def install(heal: HealEngine, module: Any) -> None:
    """Wrap `module.BaseHandler.run` (wsgiref.handlers, imported under `pyward run --heal`), once."""
    cls = module.BaseHandler
    if getattr(cls.run, "_pyward", False):
        return
    run = cls.run

    def run_(self: Any, application: Callable[..., Any]) -> Any:
        return run(self, healed(application))

    _mark(run_, run)
    with heal.started().acting("heal"):
        cls.run = run_


def install_werkzeug(heal: HealEngine, module: Any) -> None:
    """Wrap `module.BaseWSGIServer.__init__` (werkzeug.serving, imported under `pyward run --heal`), once."""
    cls = module.BaseWSGIServer
    if getattr(cls.__init__, "_pyward", False):
        return
    init = cls.__init__

    def init_(self: Any, host: Any, port: Any, app: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        init(self, host, port, healed(app), *args, **kwargs)

    _mark(init_, init)
    with heal.started().acting("heal"):
        cls.__init__ = init_


def install_gunicorn(heal: HealEngine, module: Any) -> None:
    """Wrap `module.Worker.load_wsgi` (gunicorn.workers.base, imported under `pyward run --heal`), once."""
    cls = module.Worker
    if getattr(cls.load_wsgi, "_pyward", False):
        return
    load_wsgi = cls.load_wsgi

    def load_wsgi_(self: Any) -> None:
        load_wsgi(self)
        if callable(getattr(self, "wsgi", None)):
            self.wsgi = healed(self.wsgi)

    _mark(load_wsgi_, load_wsgi)
    with heal.started().acting("heal"):
        cls.load_wsgi = load_wsgi_


def _mark(wrapper: Any, original: Any) -> None:
    wrapper._pyward = True
    wrapper.__wrapped__ = original
