"""The sandbox without pyward's native extension: a Python audit hook.

Weaker, and said so at start-up: every audit event reaches Python (slower),
denials carry a pyward frame in their traceback, and the functions that need
a native guard (fork_exec without an audit event, dir_fd opens, os.environ
values, the C code that opens files with no audit event: sqlite3's ATTACH,
readline, ssl's certificates, shm_open) are not guarded.
"""
from __future__ import annotations

import _thread
import sys

from .errors import AccessDenied, ImportDenied

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def install_degraded(policy: Any, context: Any) -> None:
    import _posixsubprocess  # noqa: F401  (imported now: a later import event would be a re-import)
    import os

    from .decider import build_decider

    class Fallback:  # just enough of the native module for build_decider
        @staticmethod
        def realpath(path: str) -> str | None:
            real = os.path.realpath(path)
            return real if os.path.exists(real) else None

        @staticmethod
        def env_get(name: str) -> str | None:
            return os.environ.get(name)

    import pyward._native as loader

    loader.native = Fallback()  # type: ignore[assignment]  # a stand-in for the C module (duck-typed)
    try:
        decide, namespace, _ = build_decider(policy, context)
    finally:
        loader.native = None  # type: ignore[assignment]  # as it was: no C module in degraded mode
    handlers = namespace["HANDLERS"]
    local = _thread._local()
    fail_closed = context.mode != "watch"

    def hook(event: str, args: tuple) -> None:
        if event not in handlers or getattr(local, "busy", False):
            return
        local.busy = True
        try:
            verdict = decide(event, args)
        except Exception as exc:
            if fail_closed:
                raise AccessDenied(f"pyward sandbox: internal error while checking {event} ({exc}); denied") from None
            sys.stderr.write(f"[pyward][error] sandbox: internal error while checking {event} ({exc})\n")
            return
        finally:
            local.busy = False
        namespace["flush"]()  # journaled after the verdict, never inside it
        if verdict is not None:
            if isinstance(verdict, tuple) and len(verdict) == 2:
                raise ImportDenied(verdict[0])
            raise AccessDenied(verdict if isinstance(verdict, str) else verdict[0])

    sys.addaudithook(hook)
