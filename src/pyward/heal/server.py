"""The heal engine a served request talks to, and its replay rule.

The engine is `pyward run --heal`'s, or, in a process pyward did not start
(gunicorn, uvicorn, plain python), one started here at the first request
from the same configuration and patch store.  `rule()` is what every
request asks first (boundary.py): None when nothing heals here.
"""
from __future__ import annotations

import os
import sys
import threading
import time

from .. import runner
from .current import active

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ..config import Settings
    from .engine import HealEngine

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_lock = threading.Lock()
_settings: Settings | None = None
_failed = False  # the engine could not start here: not tried again
_watch = False  # an application that answers its crashes with its own 500 is served: watch escapes (monitor.py)


def prepare(app: Any) -> None:
    """Read the configuration now (a middleware's construction), so that a bad
    config file fails when the application loads, not at its first request;
    and import what the engine's start and a heal need (~25 ms; more where
    no bytecode cache is written), so that neither the first request nor
    the first crashed one waits for imports.  The engine itself starts at
    the first request: after the fork, in each worker of a pre-forking
    server."""
    global _settings, _watch
    _watch = _watch or swallows(app)
    if active() is None and runner.unhealed_integration is None and _settings is None:
        import bytecode  # noqa: F401

        from .. import checkpoint, config, identity, policy, recorder, report  # noqa: F401 (the session's record)
        from . import fingerprint, guards, paths, recovery, shadow, store, synth  # noqa: F401
        from .engine import HealEngine  # noqa: F401 (`from . import engine` is the package's engine())

        _settings = config.load(cwd=os.getcwd(), overrides={"heal.enabled": True})
        paths.library_dirs()
    heal = active()
    if heal is not None and _watch:  # `pyward run --heal`
        heal.watch_escapes()


def swallows(app: Any) -> bool:
    """Whether `app` is known to answer a crash with its own 500, the exception
    reaching neither the request boundary nor a signal: Django, Bottle."""
    return type(getattr(app, "__self__", app)).__module__.partition(".")[0] in ("django", "bottle")


def engine() -> HealEngine | None:
    """The heal engine of this process; None under `pyward run` without --heal."""
    heal = active()
    if heal is not None:
        return heal
    unhealed = runner.unhealed_integration
    if unhealed is not None:  # `pyward run` without --heal
        unhealed()
        return None
    global _failed
    if _failed:
        return None
    with _lock:
        heal = active()
        if heal is None and not _failed:
            try:
                heal = _start()
            except Exception as exc:  # serve unguarded rather than fail every request
                _failed = True
                print(f"[pyward][error] the heal engine could not start in this process ({type(exc).__name__}: "
                      f"{exc}): requests are served without healing", file=sys.stderr, flush=True)
    return heal


def _start() -> HealEngine:
    """A session of the heal engine alone, in a process pyward did not start."""
    from .. import config
    from ..runner import guard_server
    from .engine import HealEngine

    settings = _settings or config.load(cwd=os.getcwd(), overrides={"heal.enabled": True})
    heal = HealEngine(settings)
    guard_server(settings, [heal])
    if _watch:
        heal.watch_escapes()
    return heal


class Rule:
    """What a request needs from this process's heal engine: the engine and its replay rule."""

    __slots__ = ("heal", "methods", "body_limit", "retry_after")

    def __init__(self, heal: HealEngine) -> None:
        from ..config import as_list

        self.heal = heal
        self.methods = SAFE_METHODS | {m.upper() for m in as_list(heal.settings.get("heal.idempotent"))}
        self.body_limit = heal.settings.get("heal.replay_body", 1048576)
        self.retry_after = heal.settings.get("heal.retry_after", 1)


_rule: Rule | None = None


def rule() -> Rule | None:
    """A request starts: the rule of this process's heal engine (None: no
    healing here), after the engine has applied the patches other workers
    saved (HealEngine.refresh, at most every heal.sync_interval; a stopped
    engine's time is always due).  Every request pays for this: the usual
    case is one test."""
    current_rule = _rule
    if current_rule is None or current_rule.heal.sync_due <= time.monotonic():
        return _new_rule()
    return current_rule


def _new_rule() -> Rule | None:
    global _rule
    heal = engine()
    if heal is None:
        _rule = None
        return None
    if _rule is None or _rule.heal is not heal:
        _rule = Rule(heal)
    heal.refresh()
    return _rule
