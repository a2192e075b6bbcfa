"""`pyward trace`: every audit event a program raises, on stderr, as it happens.

    pyward trace [--events GLOB,...] [--log FILE] (SCRIPT | -m MODULE | -c CODE | -) [ARGS...]

The program runs through the runner exactly as under `python` (same argv,
`__main__`, `sys.path[0]`, exit status), with no engine: nothing is judged,
no report is written.  Each event is one line on stderr,
`[audit] event: args`, written by a `sys.addaudithook` hook, so the trace
shows exactly what such a hook sees.  Its boundaries:

* it starts at the program's first instruction (Engine.program_starts):
  pyward's start-up, and the compile/exec with which the runner starts a
  script (python itself raises no event for those), are not in it; for -m,
  runpy's search for the module is, as python runs it for the program;
* it ends when pyward's end-of-run work starts, after the program's own exit
  handlers; interpreter teardown is not traced (CPython does not pass it to
  Python hooks either);
* events raised while an event is being printed (a repr() that opens a
  file) are not printed; child processes are not traced.

A separate command rather than `pyward run --trace`: under `run` the engines
raise audit events of their own while the program runs (the sandbox's
decisions read frames, the tamper engine its watchers), so a trace there would
not be the program's stream; `pyward trace` runs the program with no engine,
and matches a raw `sys.addaudithook` printer event for event.
"""
from __future__ import annotations

import os
import sys

from ._isolation import isolate_module
from ._types import CodeType
from .journal import jsonable, stderr_writer, thread_name
from .runner import Engine, TargetError

os = isolate_module(os)  # noqa: F811
from time import time as _time  # noqa: E402

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: Longest rendering of one string argument, of one container, and of a line's arguments.
STRING_LIMIT = 120
ITEMS_LIMIT = 8
LINE_LIMIT = 400
BYTES_SHOWN = 32


def shorten(value: Any, depth: int = 0) -> str:
    """An argument as the trace shows it: repr, shortened; bytes and code objects summarised."""
    kind = type(value)
    if value is None or kind is bool or kind is int or kind is float:
        return repr(value)
    if kind is str:
        return repr(value) if len(value) <= STRING_LIMIT else repr(value[:STRING_LIMIT]) + "…"
    if kind is bytes or kind is bytearray or kind is memoryview:
        if kind is not memoryview and len(value) <= BYTES_SHOWN:
            return repr(value)
        return f"<{len(value)} bytes>" if kind is not memoryview else f"<memoryview of {value.nbytes} bytes>"
    if kind is CodeType:
        return f"<code {value.co_qualname} at {value.co_filename}:{value.co_firstlineno}>"
    if depth < 3 and (kind is tuple or kind is list or kind is set or kind is frozenset):
        items = [shorten(v, depth + 1) for v in list(value)[:ITEMS_LIMIT]]
        if len(value) > ITEMS_LIMIT:
            items.append(f"... {len(value) - ITEMS_LIMIT} more")
        if kind is tuple:
            return "(" + ", ".join(items) + ("," if len(value) == 1 else "") + ")"
        if kind is list:
            return "[" + ", ".join(items) + "]"
        return kind.__name__ + "({" + ", ".join(items) + "})" if value else kind.__name__ + "()"
    if depth < 3 and kind is dict:
        pairs = [f"{shorten(k, depth + 1)}: {shorten(v, depth + 1)}" for k, v in list(value.items())[:ITEMS_LIMIT]]
        if len(value) > ITEMS_LIMIT:
            pairs.append(f"... {len(value) - ITEMS_LIMIT} more")
        return "{" + ", ".join(pairs) + "}"
    try:
        text = repr(value)
    except Exception as exc:  # the program's own __repr__ failed: the trace goes on
        return f"<{kind.__qualname__} object (repr failed: {type(exc).__name__})>"
    if type(text) is not str:
        return f"<{kind.__qualname__} object>"
    return text if len(text) <= STRING_LIMIT else text[:STRING_LIMIT] + "…>"


def format_event(event: str, args: Any) -> str:
    """`[audit] event: args`, as printed on stderr."""
    shown = shorten(args) if type(args) is tuple else shorten((args,))
    if len(shown) > LINE_LIMIT:
        shown = shown[:LINE_LIMIT] + "…"
    return f"[audit] {event}: {shown}"


class Selection:
    """Which events are traced: all, or those matching one of the shell-style patterns.
    The patterns are compiled before the program starts: nothing is imported while it runs."""

    def __init__(self, patterns: list[str] | None) -> None:
        self.match = None
        if patterns is not None:
            import fnmatch
            import re

            self.match = re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns)).match
        self.known: dict[str, bool] = {}

    def __contains__(self, event: str) -> bool:
        if self.match is None:
            return True
        hit = self.known.get(event)
        if hit is None:
            hit = self.known[event] = self.match(event) is not None
        return hit


class TraceEngine(Engine):
    """Prints the program's audit events; the one engine of a `pyward trace` run."""

    name = "trace"

    def __init__(self, patterns: list[str] | None, log: str | None) -> None:
        import _thread

        self.selection = Selection(patterns)
        self.log_path = log
        self.log_fd = -1
        self.active = False
        self.busy = _thread._local()  # set while this thread prints an event
        self.writer = stderr_writer()
        self.seq = 0

    def start(self, session: Any) -> None:
        if self.log_path:
            try:
                self.log_fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
                import json  # now: the program's imports are its own

                self.dumps = json.dumps
            except OSError as exc:
                raise TargetError(f"cannot open trace log {self.log_path}: {exc.strerror or exc}", 2) from None
        sys.addaudithook(self.on_event)  # for good (audit hooks cannot be removed): `active` switches it

    def program_starts(self, session: Any, code: Any) -> None:
        fresh_imports(session, code)
        self.pyward_acting = session.acting_engine  # pyward's own work in this thread (the runner's at a crash)
        self.skip_exec = code  # the runner's exec of the script: python raises no event for that
        self.active = True

    def stop(self, session: Any) -> None:
        self.active = False
        if self.log_fd >= 0:
            os.close(self.log_fd)
            self.log_fd = -1

    def child_ends(self, session: Any) -> None:
        self.active = False

    def on_event(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.active or getattr(self.busy, "on", False) or self.pyward_acting() is not None:
            return
        if self.skip_exec is not None and event == "exec" and args and args[0] is self.skip_exec:
            self.skip_exec = None
            return
        self.busy.on = True
        try:
            if event not in self.selection:
                return
            self.writer.write_line(format_event(event, args))
            if self.log_fd >= 0:
                self.write_json(event, args)
        finally:
            self.busy.on = False

    def write_json(self, event: str, args: tuple[Any, ...]) -> None:
        self.seq += 1
        record = {"seq": self.seq, "time": round(_time(), 6), "pid": os.getpid(), "thread": thread_name(),
                  "event": event, "args": [shorten(a) if type(a) not in (str, int, float, bool, type(None))
                                           else jsonable(a) for a in args]}
        data = (self.dumps(record, ensure_ascii=False) + "\n").encode("utf-8", "backslashreplace")
        try:
            os.write(self.log_fd, data)  # one write per line (O_APPEND): a forked child's lines do not interleave
        except OSError:
            pass

    skip_exec: Any = None
    pyward_acting: Any = None


def fresh_imports(session: Any, code: Any) -> None:
    """Let the program import, with their audit events, the modules pyward
    imported for itself: they leave sys.modules (pyward keeps its own copies
    by reference) unless python had them loaded before any pyward module.
    (Under `python -m pyward`, python loaded runpy and importlib.util for
    pyward before that: a program's imports of those are not traced then.)"""
    from . import _STARTUP_FINDERS, _STARTUP_MODULES

    for name in list(sys.modules):
        if name not in _STARTUP_MODULES and name != "pyward" and not name.startswith("pyward."):
            del sys.modules[name]
    for path in list(sys.path_importer_cache):  # a package's directory is listed again when first imported
        if path not in _STARTUP_FINDERS:
            del sys.path_importer_cache[path]
    if sys.path and not sys.flags.safe_path:  # python lists the program's own directory at its first import
        sys.path_importer_cache.pop(sys.path[0], None)
    if code is None:  # python -m has runpy and what it imports loaded: so does the program
        import runpy  # noqa: F401
    elif session.target.kind == "code":  # python 3.13+ gives -c source to linecache, loading it
        from .runner import _register_command_source

        _register_command_source(code, session.target.value)


def cmd_trace(argv: list[str]) -> int:
    from .commandline import fail, run_program, split_own_options, split_run_args

    own, rest = split_own_options(argv, "trace", {"--events": True, "--log": True})
    options, target, _ = split_run_args(rest)
    if options:
        fail(f"pyward trace: unrecognized arguments: {' '.join(options)} (see 'pyward trace --help')")
    if target is None:
        fail("pyward trace: nothing to run: give a SCRIPT, -m MODULE, -c CODE or - (stdin)")
    patterns = None
    if "--events" in own:
        patterns = [p.strip() for p in own["--events"].split(",") if p.strip()]
        if not patterns:
            fail("pyward trace: --events takes one or more patterns, separated by commas")
    log = os.path.abspath(own["--log"]) if "--log" in own else None
    quiet = {"quiet": True, "report": False, "log": None}  # the trace is the output: no journal, no report
    return run_program(["--no-config", *rest], extra=quiet, command="trace",
                   engines=lambda settings: [TraceEngine(patterns, log)])
