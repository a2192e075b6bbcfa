"""What the server integrations share (httpserver.py, wsgi.py, asgi.py).

A request is a boundary like the script's top level: an exception escaping
the handler is given to the heal engine.  When it patched the handler, the
request is replayed with the patched code if that is safe (GET, HEAD,
OPTIONS or a method marked idempotent, its body kept, nothing sent yet) and
the response says so in `X-Pyward-Healed`; otherwise the client gets an
honest 503 with the same header and `Retry-After`, and later requests use
the patch.  An exception the engine cannot heal keeps the server's own error
behaviour.

The engine is `pyward run --heal`'s, or, in a process pyward did not start
(gunicorn, uvicorn, plain python), one started here at the first request
from the same configuration and patch store.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time

from ..heal import monitor
from ..heal.engine import active
from ..runner import current

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import TracebackType
    from typing import Any

    from ..config import Settings
    from ..heal.engine import HealEngine, Healed
    from ..heal.monitor import Escapes

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
HEADER = "X-Pyward-Healed"

_lock = threading.Lock()
_settings: Settings | None = None
_said_off = False
_failed = False  # the engine could not start here: not tried again
_watch = False  # an application that answers its crashes with its own 500 is served: watch escapes (monitor.py)


def configure(app: Any) -> None:
    """Read the configuration now (a middleware's construction), so that a bad
    config file fails when the application loads, not at its first request;
    and import what a heal needs (~25 ms), so the first crashed request does
    not wait for it.  The engine itself starts at the first request: after
    the fork, in each worker of a pre-forking server."""
    global _settings, _watch
    _watch = _watch or swallows(app)
    if active() is None and current() is None and _settings is None:
        import bytecode  # noqa: F401

        from .. import config
        from ..heal import engine, fingerprint, guards, store, synth  # noqa: F401

        _settings = config.load(cwd=os.getcwd(), overrides={"heal.enabled": True})
        engine._library_dirs()
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
    session = current()
    if session is not None:  # `pyward run` without --heal
        global _said_off
        if not _said_off:
            _said_off = True
            session.journal.emit("heal", "off", "integrations", severity="notice", where="",
                                 message="the server integration does not heal: this run has no --heal")
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
    import atexit

    from .. import config
    from ..heal.engine import HealEngine
    from ..runner import Session, Target

    settings = _settings or config.load(cwd=os.getcwd(), overrides={"heal.enabled": True})
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    session = Session(settings, Target("server", name), list(sys.argv))
    heal = HealEngine(settings)
    session.engines.append(heal)
    session.open()
    atexit.register(session.record_exit, 0, "the server process ended")  # runs before session.finish (LIFO)
    if _watch:
        heal.watch_escapes()
    return heal


class Replay:
    """What a request needs from this process's heal engine: the engine and its replay rule."""

    __slots__ = ("heal", "methods", "body_limit", "retry_after")

    def __init__(self, heal: HealEngine) -> None:
        from ..config import as_list

        self.heal = heal
        self.methods = SAFE_METHODS | {m.upper() for m in as_list(heal.settings.get("heal.idempotent"))}
        self.body_limit = heal.settings.get("heal.replay_body", 1048576)
        self.retry_after = heal.settings.get("heal.retry_after", 1)


_rule: Replay | None = None


def request() -> Replay | None:
    """A request starts: the rule of this process's heal engine (None: no
    healing here), after the engine has applied the patches other workers
    saved (HealEngine.refresh, at most every heal.sync_interval; a stopped
    engine's time is always due).  Every request pays for this: the usual
    case is one test."""
    rule = _rule
    if rule is None or rule.heal.sync_due <= time.monotonic():
        return _new_rule()
    return rule


def _new_rule() -> Replay | None:
    global _rule
    heal = engine()
    if heal is None:
        _rule = None
        return None
    if _rule is None or _rule.heal is not heal:
        _rule = Replay(heal)
    heal.refresh()
    return _rule


def refuse_replay(rule: Replay, heals: list[Healed], method: str, path: str, *, sent: bool = False,
                  body_over: bool = False) -> str:
    """After `heals[-1]`: why the request cannot be replayed ('' when it can),
    journaled with what the client gets instead."""
    heal = rule.heal
    why = not_replayable(method, rule, sent=sent, body_over=body_over, retries_used=len(heals) > heal.retries)
    if why:
        answer = "connection closed after what was sent" if sent else "503"
        answered(heal, heals[-1], f"{answer} (not replayed: {why})", method, path)
    return why


def not_replayable(method: str, rule: Replay, *, sent: bool, body_over: bool, retries_used: bool) -> str:
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


def unavailable(healed: Healed, method: str, why: str) -> bytes:
    """The JSON body of the 503 sent when a healed request is not replayed."""
    return json.dumps({
        "error": "service unavailable",
        "detail": f"the handler crashed and was healed ({healed.label}); this {method} request was not "
                  f"replayed because {why}. Retry it: later requests use the patch.",
        "healed": {"guard": healed.kind, "target": healed.operand,
                   **({"recovery": healed.recovery} if getattr(healed, "recovery", "value") != "value" else {})},
    }).encode()


def crash_of(error: BaseException | None,
             escapes: Escapes | tuple[()]) -> tuple[BaseException, TracebackType | None] | None:
    """What crashed in an attempt at a request that failed: the exception that
    escaped the application; or, when it answered a 5xx itself (`error` is
    None), the last exception that left the program's code meanwhile
    (heal/monitor.py) with its traceback as it left; None: nothing to heal."""
    if error is not None:
        return error, None
    return escapes[-1] if escapes else None


def unheard(heal: HealEngine, retry: str) -> bool:
    """The application answered a 5xx and no exception is on record: True
    when escapes are watched from now on (monitor.unheard), so that the
    request `retry` ('METHOD path', '' when it cannot be replayed) is tried
    once more to find what crashed."""
    return monitor.unheard(heal.session, heal.is_program_file, retry)  # type: ignore[arg-type]


def crashed(heal: HealEngine, exc: BaseException, where: str, tb: TracebackType | None = None) -> Healed | None:
    """Give an escaping exception to the engine (the request boundary `where`; `tb`: see HealEngine.heal)."""
    if not isinstance(exc, Exception):
        return None
    return heal.heal(exc, boundary=where, tb=tb)


def answered(heal: HealEngine, healed: Healed, how: str, method: str, path: str) -> None:
    """Journal what the client got for a healed request."""
    assert heal.session is not None
    heal.session.journal.emit("heal", "request", healed.label, severity="notice", where="",
                              message=f"{method} {path}: {how}",
                              details={"kind": healed.kind, "operand": healed.operand, "response": how,
                                       "method": method, "path": path})


class BodyRecorder:
    """A request body stream that keeps what the handler reads (up to a
    limit), so a replay reads the same bytes without touching the socket again."""

    __slots__ = ("stream", "kept", "limit", "over")

    def __init__(self, stream: Any, limit: int) -> None:
        self.stream, self.limit, self.kept, self.over = stream, limit, bytearray(), False

    def _keep(self, data: bytes) -> bytes:
        if not self.over:
            if len(self.kept) + len(data) > self.limit:
                self.over, self.kept = True, bytearray()
            else:
                self.kept += data
        return data

    def read(self, *args: Any) -> bytes:
        return self._keep(self.stream.read(*args))

    def read1(self, *args: Any) -> bytes:
        return self._keep(self.stream.read1(*args))

    def readline(self, *args: Any) -> bytes:
        return self._keep(self.stream.readline(*args))

    def readlines(self, hint: int = -1) -> list[bytes]:
        return [self._keep(line) for line in self.stream.readlines(hint)]

    def readinto(self, buffer: Any) -> int:
        n = self.stream.readinto(buffer)
        if n:
            self._keep(bytes(memoryview(buffer)[:n]))
        return n

    def __iter__(self) -> Any:
        return iter(self.readline, b"")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)

    def replay(self) -> BodyReplay:
        return BodyReplay(bytes(self.kept), self.stream)


class BodyReplay:
    """The kept bytes first, then the rest of the real stream (never re-read)."""

    __slots__ = ("kept", "pos", "stream")

    def __init__(self, kept: bytes, stream: Any) -> None:
        self.kept, self.pos, self.stream = kept, 0, stream

    def read(self, size: int | None = -1) -> bytes:
        left = self.kept[self.pos:]
        if size is None or size < 0:
            self.pos = len(self.kept)
            return left + self.stream.read()
        if left:
            chunk = left[:size]
            self.pos += len(chunk)
            return chunk
        return self.stream.read(size)

    read1 = read

    def readline(self, size: int | None = -1) -> bytes:
        limit = -1 if size is None or size < 0 else size
        if self.pos < len(self.kept):
            end = self.kept.find(b"\n", self.pos)
            end = len(self.kept) if end < 0 else end + 1
            if limit >= 0:
                end = min(end, self.pos + limit)
            line = self.kept[self.pos:end]
            self.pos = end
            if line.endswith(b"\n") or len(line) == limit or self.pos < len(self.kept):
                return line
            # the kept bytes end inside the line: the rest of it is still in the stream
            return line + self.stream.readline(-1 if limit < 0 else limit - len(line))
        return self.stream.readline(limit)

    def readlines(self, hint: int = -1) -> list[bytes]:
        return list(iter(self.readline, b""))

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def __iter__(self) -> Any:
        return iter(self.readline, b"")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)
