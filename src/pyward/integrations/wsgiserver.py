"""Heal for WSGI applications served by `wsgiref` (and servers built on it:
Django's `runserver`), with the program unchanged.

Installed under `pyward run --heal` when the program imports wsgiref.handlers
(runner.ADAPTERS).  Every such server hands each request to
`BaseHandler.run(application)`; the wrapper hands it the application inside
`wsgi.Middleware` instead, made once per application.  An application the
program wrapped itself, or one served inside http.server's boundary, runs
in that boundary only (one boundary a request, heal/boundary.py).
"""
from __future__ import annotations

from .wsgi import Middleware

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

    from ..heal.engine import HealEngine


def install(heal: HealEngine, module: Any) -> None:
    """Wrap `module.BaseHandler.run` (wsgiref.handlers, imported under `pyward run --heal`), once."""
    cls = module.BaseHandler
    if getattr(cls.run, "_pyward", False):
        return
    run = cls.run
    wrapped: dict[int, tuple[Any, Middleware]] = {}  # id(application) -> (application, its middleware)

    def run_(self: Any, application: Callable[..., Any]) -> Any:
        if isinstance(application, Middleware):
            return run(self, application)
        known = wrapped.get(id(application))
        if known is None or known[0] is not application:
            known = wrapped[id(application)] = (application, Middleware(application))
        return run(self, known[1])

    run_._pyward = True  # type: ignore[attr-defined]
    run_.__wrapped__ = run  # type: ignore[attr-defined]
    with heal.started().acting("heal"):
        cls.run = run_
