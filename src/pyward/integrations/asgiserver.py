"""Heal for ASGI applications served by uvicorn, with the program unchanged.

Installed under `pyward run --heal` when the program imports uvicorn.config
(runner.ADAPTERS): `pyward run --heal -m uvicorn app:app`, or a program
calling `uvicorn.run`.  uvicorn loads the application once
(`Config.load`) and serves every request through `config.loaded_app`; the
wrapper puts the loaded application inside `asgi.Middleware`, outermost, so
it sees the requests as uvicorn hands them over.  An application the program
wrapped itself runs in that middleware only (one boundary a request,
heal/boundary.py).
"""
from __future__ import annotations

from .asgi import Middleware

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ..heal.engine import HealEngine


def install(heal: HealEngine, module: Any) -> None:
    """Wrap `module.Config.load` (uvicorn.config, imported under `pyward run --heal`), once."""
    cls = module.Config
    if getattr(cls.load, "_pyward", False):
        return
    load = cls.load

    def load_(self: Any) -> None:
        load(self)
        if not isinstance(self.loaded_app, Middleware):
            self.loaded_app = Middleware(self.loaded_app)

    load_._pyward = True  # type: ignore[attr-defined]
    load_.__wrapped__ = load  # type: ignore[attr-defined]
    with heal.started().acting("heal"):
        cls.load = load_
