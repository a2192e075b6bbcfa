"""The journal: one event model for every engine, and the sinks that read it.

Engines call `Journal.emit`; sinks turn events into the human stream on
stderr (`ConsoleSink`), JSON lines (`JsonlSink`) and the end-of-run report
(the journal keeps every event for it).  The JSON form of an event is
documented in docs/journal.md and by the JSON Schema in
src/pyward/schema/event-1.json.
"""
from __future__ import annotations

import _thread
import os
import sys
import time

from ._isolation import isolate_builtins, isolate_module
from .canonical import dumps

isolate_builtins(globals())

os = isolate_module(os)  # noqa: F811 - the program may patch os; we must not care
time = isolate_module(time)  # noqa: F811 - freezegun must not stamp the journal
_getframe = sys._getframe  # the program may delete or replace it (monkeypatch.delattr)

TYPE_CHECKING = False  # importing typing costs milliseconds of startup
if TYPE_CHECKING:
    from types import FrameType
    from typing import Any, Callable

SCHEMA_VERSION = 1

#: Ordered from least to most important.  The console shows `notice` and up
#: by default; `-v` adds `info`, `-vv` adds `debug`.
SEVERITIES = ("debug", "info", "notice", "warning", "alert", "error")
_RANK = {name: i for i, name in enumerate(SEVERITIES)}

ENGINES = ("pyward", "sandbox", "tamper", "heal")

#: Events of one engine, kind and name recorded one by one; beyond that they
#: are counted, and one event at the end of the run stands for them all
#: (`details.repeated`, with the first and last times): a suite of thousands
#: of tests that each set PYTEST_CURRENT_TEST gives a report of bounded size.
REPEAT_LIMIT = 100

_PKG_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
_STDLIB_DIR = os.path.dirname(os.__file__) + os.sep


def is_plumbing(filename: str) -> bool:
    """True for frames of pyward itself, the stdlib, and frozen modules."""
    if filename.startswith(_PKG_DIR) or filename.startswith("<frozen "):
        return True
    if filename.startswith(_STDLIB_DIR):
        return "-packages" + os.sep not in filename  # site-/dist-packages is user code
    return False


def user_site(depth: int = 1) -> tuple[str | None, str | None]:
    """`(file:line, function)` of the code that caused the current event,
    searching outwards from `depth` frames above this call (1: our caller).

    The first frame that is neither pyward nor the stdlib: for an `open()`
    called inside `shutil.copy`, that is the program's line calling
    `shutil.copy`.  Falls back to the first non-pyward frame.
    """
    frame: FrameType | None = _getframe(depth)
    fallback = None
    while frame is not None:
        filename = frame.f_code.co_filename
        if not is_plumbing(filename):
            return f"{filename}:{frame.f_lineno}", frame.f_code.co_qualname
        if fallback is None and not filename.startswith(_PKG_DIR):
            fallback = frame
        frame = frame.f_back
    if fallback is None:
        return None, None
    return f"{fallback.f_code.co_filename}:{fallback.f_lineno}", fallback.f_code.co_qualname


_MAIN_THREAD = _thread.get_ident()


def thread_name() -> str:
    """The current thread's name, without calling into `threading`.

    pyward does not import `threading` itself (plain python does not either),
    and may be asked for a name while the program is halfway through
    importing it, or after it patched it: so the name is read from the
    module's registry of live threads as data, never through its functions.
    """
    ident = _thread.get_ident()
    threading = sys.modules.get("threading")
    active = vars(threading).get("_active") if type(threading) is type(sys) else None
    thread = active.get(ident) if type(active) is dict else None
    try:
        name = vars(thread)["_name"]
    except (TypeError, KeyError):
        name = None
    if type(name) is str:
        return name
    return "MainThread" if ident == _MAIN_THREAD else f"Thread-{ident}"


_AS_IS = {str, int, bool, type(None)}  # what jsonable returns unchanged


def jsonable(value: Any, _depth: int = 0) -> Any:
    """A JSON-safe copy of `value` that never runs the program's code.

    Details often carry objects from audit events; calling their `__repr__`
    could run arbitrary code inside a hook, so only built-in types are
    rendered and everything else becomes `<module.Type object>`.
    """
    kind = type(value)
    if value is None or kind is bool or kind is int or kind is str:
        return value
    if kind is float:
        return value if value == value and value not in (float("inf"), float("-inf")) else repr(value)
    if kind is bytes or kind is bytearray:
        return os.fsdecode(bytes(value)) if len(value) < 4096 else f"<{len(value)} bytes>"
    if _depth < 6:
        if kind is list or kind is tuple or kind is set or kind is frozenset:
            if set(map(type, value)) <= _AS_IS:  # names, numbers (the seals at exit): copied in C
                return list(value)
            return [jsonable(v, _depth + 1) for v in value]
        if kind is dict:
            return {k if type(k) is str else str(jsonable(k, _depth + 1)): jsonable(v, _depth + 1)
                    for k, v in value.items()}
    return f"<{kind.__module__}.{kind.__qualname__} object>"


class Event:
    """One thing that happened.  `name` is the subject (a function, a path,
    an operation); `kind` is what happened to it, within its `engine`."""

    __slots__ = ("seq", "time", "engine", "kind", "name", "severity", "message", "details", "thread", "pid",
                 "where", "function", "policy")

    def __init__(self, seq: int, time: float, engine: str, kind: str, name: str, severity: str, message: str,
                 details: dict[str, Any] | None = None, thread: str = "", pid: int = 0, where: str | None = None,
                 function: str | None = None, policy: str | None = None) -> None:
        self.seq = seq
        self.time = time
        self.engine = engine
        self.kind = kind
        self.name = name
        self.severity = severity
        self.message = message
        self.details = details if details is not None else {}
        self.thread = thread
        self.pid = pid
        self.where = where
        self.function = function
        self.policy = policy  # the short id of the policy revision in force (identity.py)

    def __repr__(self) -> str:
        return f"<Event #{self.seq} {self.engine}/{self.kind} {self.name!r} {self.severity}>"

    def to_json(self) -> dict[str, Any]:
        data = {
            "v": SCHEMA_VERSION,
            "seq": self.seq,
            "time": iso_time(self.time),
            "pid": self.pid,
            "thread": self.thread,
            "engine": self.engine,
            "kind": self.kind,
            "name": self.name,
            "severity": self.severity,
            "message": self.message,
            "where": self.where,
            "function": self.function,
            "details": self.details,
        }
        if self.policy is not None:
            data["policy"] = self.policy
        return data


def iso_time(t: float) -> str:
    """RFC 3339 UTC with microseconds, without importing datetime."""
    whole = int(t)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{int((t - whole) * 1e6):06d}Z"


class Sink:
    """What a sink provides; sinks are called under the journal's lock."""

    console = False  # the human stream (see Journal.emit's pid)

    def write(self, event: Event) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


def _unseen_lock() -> Any:
    """A reentrant lock that `gc.get_objects()` does not list: eventlet's `monkey_patch`
    counts the RLocks there it could not reach from `sys.modules` and logs "N RLock(s)
    were not greened", an error plain python does not print.  (It holds no reference to
    another object, so leaving it out of the collector is safe; C keeps it for good.)"""
    lock = _thread.RLock()
    from ._native import native

    if native is not None:
        native.untrack(lock)
    return lock


class Journal:
    """Thread-safe, ordered event log shared by every engine.

    Sinks run under the journal's lock so that every sink sees events in
    `seq` order.  While a thread is inside `emit`, `busy()` is true for it:
    engines use that to ignore the I/O that pyward's own sinks cause.
    """

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.sinks: list[Sink] = []
        #: the channel to the process that keeps the run's record (recorder.py): it gets every
        #: event first, also after `close` (the record ends when the process does, not the session),
        #: also in a forked child (whose events it sends on a channel of their own)
        self.wire: Sink | None = None
        #: engines whose events in a forked child the parent records (the sandbox's, from its spool):
        #: the child's wire leaves them out
        self.recorded_by_parent: set[str] = set()
        #: called before the next event is recorded (an engine's line that waits for the program
        #: to move on: the tamper engine's one line for a library's many changes)
        self.settle: Callable[[], None] | None = None
        self._lock = _unseen_lock()
        self._local = _thread._local()
        self._seq = 0
        self._pid = self._origin_pid = os.getpid()
        self.closed = False
        self.repeat_limit = REPEAT_LIMIT
        #: the short id of the policy revision every event is recorded under (set by the session)
        self.revision: str | None = None
        self._seen: dict[tuple[str, str, str], int] = {}
        # (engine, kind, name) -> [count, first, last, severity, message, where, function, pid]
        self._repeats: dict[tuple[str, str, str], list[Any]] = {}
        os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        # The child inherits a lock that another parent thread may hold; it
        # keeps journaling (console, log, the record's wire) but the report belongs to the parent.
        self._lock = _unseen_lock()
        self._local = _thread._local()
        self._pid = os.getpid()
        self.events = []
        self._seen, self._repeats = {}, {}

    @property
    def is_child(self) -> bool:
        """True in a process forked from the one that created the journal."""
        return os.getpid() != self._origin_pid

    def busy(self) -> bool:
        return getattr(self._local, "busy", False)

    def add_sink(self, sink: Sink) -> None:
        with self._lock:
            self.sinks.append(sink)

    def emit(
        self,
        engine: str,
        kind: str,
        name: str,
        *,
        message: str = "",
        severity: str = "info",
        details: dict[str, Any] | None = None,
        where: str | None = None,
        function: str | None = None,
        depth: int = 1,
        pid: int | None = None,
        at: float | None = None,
        thread: str | None = None,
    ) -> Event | None:
        """Record an event; returns it (None once the journal is closed).

        `pid`/`at` (and `thread`) record an event a child process reported
        (it printed it on its own stderr already: the console does not repeat it).

        `where`/`function` default to the program's own code that caused the
        event (see `user_site`); `depth` is how many frames above the caller
        of `emit` to start looking.
        """
        if severity not in _RANK:
            raise ValueError(f"unknown severity {severity!r}")
        if self.settle is not None:
            self.settle()
        if where is None and self.saturated(engine, kind, name):
            where = ""  # counted, not recorded: the site of the first recorded ones is enough
        if where is None:
            where, found = user_site(depth + 1)
            function = function or found
        elif where == "":  # the caller says: no program site applies
            where = function = None
        when = time.time() if at is None else at
        with self._lock:
            if self.closed and self.wire is None:
                return None
            key = (engine, kind, name)
            seen = self._seen.get(key, 0) + 1
            self._seen[key] = seen
            if seen > self.repeat_limit and not self.closed:
                repeat = self._repeats.get(key)
                if repeat is None:
                    self._repeats[key] = [1, when, when, severity, message, where, function, pid]
                else:
                    repeat[0] += 1
                    repeat[2] = when
                    if _RANK[severity] > _RANK[repeat[3]]:  # the one event speaks for the gravest
                        repeat[3] = severity
                    repeat[4] = message
                    if where is not None:
                        repeat[5:7] = [where, function]
                    repeat[7] = pid
                return None
            return self._record(engine, kind, name, message, severity, details, where, function, pid, when, thread)

    def internal_error(self, engine: str, doing: str, exc: BaseException) -> None:
        """pyward's own failure, caught where it must not reach the program: journaled
        (and counted: the run-end line names it), never raised.  `doing` says what
        pyward was doing ("checking seals on the interval")."""
        why = type(exc).__name__  # str() of an exception could run the program's code
        if exc.args and type(exc.args[0]) is str:
            why = f"{why}: {exc.args[0]}"
        try:
            self.emit(engine, "internal_error", doing, severity="error", where="",
                      message=f"pyward {engine}: internal error while {doing} ({why})", details={"error": why})
        except Exception:  # the journal itself failed: nothing left to tell
            pass

    def count_repeat(self, engine: str, kind: str, name: str) -> bool:
        """Count one more event of this engine, kind and name if it is already past
        REPEAT_LIMIT (True), without describing it: the one event that stands for
        the repeats keeps the last recorded description.  False: emit it."""
        key = (engine, kind, name)
        with self._lock:
            repeat = self._repeats.get(key)
            if repeat is None or self.closed:
                return False
            self._seen[key] += 1
            repeat[0] += 1
            repeat[2] = time.time()
        return True

    def saturated(self, engine: str, kind: str, name: str) -> bool:
        """True when the next event of this engine, kind and name will be counted, not recorded
        (REPEAT_LIMIT): its caller may skip the work of describing it."""
        return self._seen.get((engine, kind, name), 0) >= self.repeat_limit

    def _record(self, engine: str, kind: str, name: str, message: str, severity: str,
                details: dict[str, Any] | None, where: str | None, function: str | None, pid: int | None,
                when: float, thread: str | None = None) -> Event:
        """Append one event and hand it to the sinks; called under the lock."""
        local = self._local
        local.busy = True
        try:
            self._seq += 1
            event = Event(
                seq=self._seq,
                time=when,
                engine=engine,
                kind=kind,
                name=name,
                severity=severity,
                message=message or f"{engine} {kind}: {name}",
                details=jsonable(details or {}),
                thread=thread_name() if thread is None else thread,
                pid=self._pid if pid is None else pid,
                where=where,
                function=function,
                policy=self.revision,
            )
            self.events.append(event)
            if self.wire is not None and (self._pid == self._origin_pid or engine not in self.recorded_by_parent):
                self.wire.write(event)
            for sink in self.sinks if not self.closed else ():
                if pid is None or not sink.console:  # a child's event: it printed it already
                    sink.write(event)
        finally:
            local.busy = False
        return event

    def count(self, engine: str | None = None, kind: str | None = None, severity: str | None = None) -> int:
        return sum(
            1
            for e in self.events
            if (engine is None or e.engine == engine)
            and (kind is None or e.kind == kind)
            and (severity is None or e.severity == severity)
        )

    def settle_repeats(self) -> None:
        """One event for each run of repeats beyond the limit (see REPEAT_LIMIT)."""
        with self._lock:
            if self.closed:
                return
            repeats, self._repeats = self._repeats, {}
            for (engine, kind, name), (count, first, last, severity, message, where, function, pid) \
                    in repeats.items():
                self._record(engine, kind, name, f"{message} (and {count} more like it, not recorded one by one,"
                             f" from {iso_time(first)} to {iso_time(last)})", severity,
                             {"repeated": count, "first": iso_time(first), "last": iso_time(last)},
                             where, function, pid, last)

    def close(self) -> None:
        self.settle_repeats()
        with self._lock:
            if self.closed:
                return
            self.closed = True
            for sink in self.sinks:
                sink.close()


def summarize(events: list[dict[str, Any]], exit_status: int | None) -> dict[str, Any]:
    """Counts derived from events (as JSON dicts); the report stores them and
    `pyward verify` recomputes them, the console prints the run-end line."""
    by_engine: dict[str, int] = {}
    by_severity: dict[str, int] = {}
    denied = alerts = internal = 0
    healed: set[str] = set()  # guards that were made or used in this run, each counted once
    attempts = firings = degraded = 0
    for e in events:
        by_engine[e["engine"]] = by_engine.get(e["engine"], 0) + 1
        by_severity[e["severity"]] = by_severity.get(e["severity"], 0) + 1
        times = (e.get("details") or {}).get("repeated") or 1  # one event standing for many: REPEAT_LIMIT
        if e["engine"] == "sandbox" and e["kind"] == "denied":
            denied += times
        elif e["engine"] == "tamper" and e["severity"] == "alert":
            alerts += times
        elif e["kind"] == "internal_error":
            internal += times
        elif e["engine"] == "heal" and e["kind"] in ("healed", "fired"):
            healed.add(e["name"])
        elif e["engine"] == "heal" and e["kind"] == "firings":  # a forked child's (a worker's) own
            count = (e.get("details") or {}).get("firings")
            firings += count if type(count) is int else 0
        elif e["engine"] == "heal" and e["kind"] == "attempt":  # one per process the program ran in
            details = e.get("details") or {}
            attempts += 1
            fired = count if type(count := details.get("firings")) is int else 0
            firings += fired
            if details.get("completed") is True and fired:
                degraded += 1
    summary = {
        "exit_status": exit_status,
        "events": len(events),
        "denied": denied,
        "tamper_alerts": alerts,
        "healed": len(healed),
        "by_engine": dict(sorted(by_engine.items())),
        "by_severity": dict(sorted(by_severity.items())),
    }
    if internal:  # absent when none: a summary without the field still verifies
        summary["internal_errors"] = internal
    if attempts:  # under --heal: how the run got to its end
        summary["attempts"] = attempts
        summary["guard_firings"] = firings
        summary["degraded_runs"] = degraded  # attempts that completed only because a guard returned a fallback
    return summary


class _StderrWriter:
    """Writes whole lines to the stderr pyward started with, on a descriptor of its own.

    The program may rebind or close `sys.stderr`, or point descriptor 2
    somewhere else (pytest captures it to test what the program prints):
    pyward's lines still reach the terminal's stderr as it was at start, and
    never land inside the program's streams.  The original stream is flushed
    first so that the two interleave as they were written.

    A forked child writes to its descriptor 2 instead, as the program's own
    lines do: a copy of the parent's stderr kept open in a child that goes on
    (a daemon that points its streams at /dev/null) would keep whoever reads
    that stderr waiting for its end, which plain python does not.
    """

    def __init__(self) -> None:
        self.stream = sys.__stderr__
        try:
            self.fd = os.dup(2)  # not inherited by child processes
        except OSError:  # no stderr at all
            self.fd = -1
        os.register_at_fork(after_in_child=self._in_child)

    def _in_child(self) -> None:
        if self.fd > 2:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = 2

    def isatty(self) -> bool:
        try:
            return self.fd >= 0 and os.isatty(self.fd)
        except OSError:
            return False

    def write_line(self, line: str) -> None:
        stream = self.stream
        try:
            if stream is not None and not stream.closed:
                stream.flush()
        except (ValueError, OSError, AttributeError):
            pass
        if self.fd < 0:
            return
        data = (line + "\n").encode("utf-8", "backslashreplace")
        try:
            while data:
                data = data[os.write(self.fd, data):]
        except OSError:
            pass


_writer: _StderrWriter | None = None


def stderr_writer() -> _StderrWriter:
    """The one writer of pyward's own lines in this process."""
    global _writer
    if _writer is None:
        _writer = _StderrWriter()
    return _writer


def use_color(mode: str, writer: _StderrWriter) -> bool:
    """`auto` follows NO_COLOR / FORCE_COLOR, then whether stderr is a TTY."""
    if mode == "always":
        return True
    if mode == "never":
        return False
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return writer.isatty() and os.environ.get("TERM") != "dumb"


_COLORS = {"debug": "2", "info": "2", "notice": "36", "warning": "33", "alert": "1;31", "error": "1;31"}


class ConsoleSink(Sink):
    """The human stream: `[pyward] ...` lines on stderr, quiet by default."""

    console = True

    def __init__(self, threshold: str = "notice", color: str = "auto", group: bool = False) -> None:
        self.writer = stderr_writer()
        self.threshold = _RANK[threshold]
        self.color = use_color(color, self.writer)
        #: with `group`, a line already shown is not shown again (a mock re-applied in every test,
        #: a denied call retried in a loop): `repeats` counts them for the run-end line
        self.shown: set[tuple[str, str, str | None]] | None = set() if group else None
        self.repeats = 0

    def format(self, event: Event) -> str:
        tag = "" if event.severity in ("info", "notice", "debug") else f"[{event.severity}]"
        if self.color:
            code = _COLORS[event.severity]
            return f"\x1b[{code}m[pyward]{tag}\x1b[0m {event.message}"
        return f"[pyward]{tag} {event.message}"

    def write(self, event: Event) -> None:
        if _RANK[event.severity] < self.threshold or "shown_with" in event.details:
            return  # (shown_with: another line stands for this event, a patcher's burst)
        if self.shown is not None:
            line = (event.severity, event.message, event.where)
            if line in self.shown:
                self.repeats += 1
                return
            if len(self.shown) < 10000:
                self.shown.add(line)
        self.writer.write_line(self.format(event))

    def say(self, text: str, severity: str = "notice") -> None:
        """A pyward line that is not an event (for example the summary)."""
        if _RANK[severity] >= self.threshold:
            self.writer.write_line(self.format(Event(0, 0.0, "pyward", "say", "", severity, text)))


class JsonlSink(Sink):
    """`--log FILE`: one JSON object per line, written as events happen.

    The file is opened O_APPEND and each line goes out in a single write, so
    forked children can share it without tearing lines.
    """

    def __init__(self, path: str, append: bool = False) -> None:
        self.path = path
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (0 if append else os.O_TRUNC)
        self.fd: int | None = os.open(path, flags, 0o644)

    def write(self, event: Event) -> None:
        if self.fd is not None:
            os.write(self.fd, (dumps(event.to_json(), sort_keys=False) + "\n").encode("ascii"))

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
