"""Which exception escaped the program's own code during a request (3.12+).

Frameworks such as Django and Bottle turn a view's exception into their own
500 response: no exception reaches the request boundary (integrations/), so
the boundary cannot know what crashed.  On 3.12+ the heal engine takes a
free `sys.monitoring` tool id while a server integration is in use and
watches two events, with callbacks in C (_native/monitor.c):

* PY_UNWIND: a frame of the program's own code unwinding into a caller that
  is not (a framework, a library, C) is an escape; during a request it is
  recorded in the request's list (`Attempt`);
* EXCEPTION_HANDLED, only while escapes are recorded: the program's own code
  catching the exception (or one chained to it) takes it off the list, so an
  exception the program catches never leads to a patch.

The boundary then treats a 5xx response the framework produced with an
escape on the list as that escape's crash.  Outside requests nothing is
recorded.  Monitoring is on only where it is needed, as every request pays
for it (a few percent of a small request's time, bench/serve.py): from the
start for applications known to answer 500 themselves (Django, Bottle:
heal/server.py `swallows`), else from the first 5xx an application
answers with no exception reaching the boundary (`unheard`: a Starlette
exception handler, a Flask error handler...), when the request is tried once
more to find the crash if it can be replayed.  Flask's unhandled exceptions
are heard through its signal and Starlette's reach the boundary, so neither
needs it; a run that uses no server integration never turns it on.
Tool ids 3 and 4 are tried, never the ones debuggers (0), coverage.py (1),
profilers (2) and optimizers (5) use; when both are held, the conflict is
journaled and requests are healed from exceptions that reach the boundary.
"""
from __future__ import annotations

import contextvars
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import TracebackType
    from typing import Callable

    from ..runner import Link

TOOL_IDS = (3, 4)
TOOL_NAME = "pyward"

# the escapes of the current request, each with its traceback as it escaped (a framework may clear
# exc.__traceback__ before the request ends: Starlette's exception handlers do); None outside requests
Escapes = list[tuple[BaseException, "TracebackType | None"]]
_escapes: contextvars.ContextVar[Escapes | None] = contextvars.ContextVar("pyward_escapes", default=None)
tool: int | None = None  # the sys.monitoring tool id while escapes are watched
_started = False
_why_off = ""  # why monitoring is off, said once at the first 5xx a framework answers itself


def start(session: Link, classify: Callable[[str], bool]) -> bool:
    """Turn escape monitoring on (once per process; True when it is on); a conflict or its absence is journaled."""
    global tool, _started, _why_off
    if _started:
        return tool is not None
    _started = True
    from .._native import native

    if sys.version_info < (3, 12) or native is None:  # (the native callbacks need sys.monitoring too)
        _why_off = f"Python {sys.version_info[0]}.{sys.version_info[1]} has no sys.monitoring" \
            if sys.version_info < (3, 12) else "pyward's native extension is unavailable"
        return False
    monitoring = sys.monitoring
    free = [i for i in TOOL_IDS if monitoring.get_tool(i) is None]
    if not free:
        holders = ", ".join(f"{i}={monitoring.get_tool(i)!r}" for i in TOOL_IDS)  # said here, not again at a 5xx
        session.emit("heal", "monitoring.conflict", "sys.monitoring", severity="warning", where="",
                             message=f"sys.monitoring tool ids {holders} are in use: crashes a framework answers "
                                     "with its own 500 (Django, Bottle...) will not be healed; exceptions that reach "
                                     "the request boundary will",
                             details={"tools": {str(i): monitoring.get_tool(i) for i in TOOL_IDS}})
        return False
    chosen = free[0]
    events = monitoring.events
    monitoring.use_tool_id(chosen, TOOL_NAME)
    session.claim_monitoring_tool(chosen, TOOL_NAME)
    native.monitor_setup(classify, _escaped, _caught)
    monitoring.register_callback(chosen, events.PY_UNWIND, native.monitor_unwind)
    monitoring.register_callback(chosen, events.EXCEPTION_HANDLED, native.monitor_handled)
    monitoring.set_events(chosen, events.PY_UNWIND | events.EXCEPTION_HANDLED)
    tool = chosen
    session.emit("heal", "monitoring.on", "sys.monitoring", severity="debug", where="",
                         message=f"sys.monitoring tool {chosen} watches exceptions escaping the program's code")
    return True


def stop() -> None:
    global tool
    if tool is None or sys.version_info < (3, 12):  # (never set before 3.12)
        return
    from .._native import native

    monitoring = sys.monitoring
    try:
        monitoring.set_events(tool, 0)
        monitoring.register_callback(tool, monitoring.events.PY_UNWIND, None)
        monitoring.register_callback(tool, monitoring.events.EXCEPTION_HANDLED, None)
        monitoring.free_tool_id(tool)
    except ValueError:  # someone freed it already
        pass
    native.monitor_setup(None, None, None)
    tool = None


class Attempt:
    """One attempt at a request, run in a `with` block: `escapes` lists what
    escaped the program's code meanwhile (while sys.monitoring watches them;
    else it stays `()`), `error` the Exception the attempt raised, kept here
    rather than propagated (a BaseException such as a cancellation goes
    through).  Past the block the exception is no longer being handled, so
    what the boundary raises next does not chain to it."""

    __slots__ = ("escapes", "token", "error")

    def __enter__(self) -> Attempt:
        self.escapes: Escapes | tuple[()] = ()
        self.token: contextvars.Token[Escapes | None] | None = None
        self.error: Exception | None = None
        if tool is not None:
            escapes: Escapes = []
            self.escapes, self.token = escapes, _escapes.set(escapes)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> bool:
        if self.token is not None:
            _escapes.reset(self.token)
            if self.escapes and tool is not None:
                _arm(-len(self.escapes))
        if isinstance(exc, Exception):
            self.error = exc
            return True
        return False


def record(exc: BaseException) -> None:
    """Add `exc` to the current request's escapes."""
    escapes = _escapes.get()
    if escapes is None or any(e is exc for e, _ in escapes):
        return
    escapes.append((exc, exc.__traceback__))
    if tool is not None:
        _arm(1)


def _arm(delta: int) -> None:
    """Tell the native callbacks how many escapes are outstanding (only while a tool is set: 3.12+, native)."""
    from .._native import native

    if sys.version_info >= (3, 12):
        native.monitor_arm(delta)


def _escaped(exc: BaseException) -> None:
    if isinstance(exc, Exception):
        record(exc)


def _caught(exc: BaseException) -> None:
    escapes = _escapes.get()
    if not escapes:
        return
    chain: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and all(link is not c for c in chain):
        chain.append(link)
        link = link.__cause__ or link.__context__
    kept = [(e, tb) for e, tb in escapes if all(e is not c for c in chain)]
    if len(kept) != len(escapes):
        _arm(len(kept) - len(escapes))
        escapes[:] = kept


def unheard(session: Link, classify: Callable[[str], bool], retry: str = "") -> bool:
    """The application answered a 5xx with no exception on record.  Escapes
    are watched from then on (`start`): True when that begins now, so that
    the request (`retry`: 'METHOD path', '' when it cannot be replayed) is
    tried once more to find the crash; if monitoring cannot be on, say once
    what that means."""
    global _why_off
    if not _started:
        if start(session, classify):
            again = f" ({retry} is tried once more to find what crashed)" if retry else ""
            session.emit("heal", "monitoring.start", "sys.monitoring", severity="notice", where="",
                                 message="the application answered a 5xx itself, no exception reached the request "
                                         "boundary: from now on sys.monitoring watches the exceptions that leave "
                                         f"the program's code, so such crashes are healed too{again}")
            return bool(retry)
    if tool is None and _why_off:
        session.emit("heal", "monitoring.off", "sys.monitoring", severity="notice", where="",
                             message=f"the application answered a 5xx itself; {_why_off}, so a crash a framework "
                                     "answers with its own 500 (Django, Bottle...) is not healed: exceptions that "
                                     "reach the request boundary are (Flask's are heard through its signal)")
        _why_off = ""
    return False
