"""Would python have let this exception escape?  Asked by a guard only when
it is about to take its fallback (an error is happening), never on the
usual path.

The walk goes up the live frames from the guarded one.  In each frame the
code object's exception table says whether the current instruction
(`f_lasti`) is covered, and the handler's first instructions say what it
does:

- `except T:` clauses (`LOAD_GLOBAL T; CHECK_EXC_MATCH`, tuples, `mod.T`):
  the types are looked up in the frame and matched; a clause whose type
  cannot be read statically counts as catching;
- a bare `except:`, `except*`, or anything not recognised: catching;
- a `with` block's cleanup: not catching, unless the context manager is
  made by a call to a known suppressor (`suppress`, `pytest.raises`,
  `assertRaises`...), whose `__exit__` swallows exceptions;
- `finally:` blocks that re-raise, the cleanup of an except body, the
  generator's StopIteration conversion: not catching; the walk goes on to
  the handler that covers them.

The walk stops at pyward's own frames (the runner, `resilient`, a server
integration, a thread's bootstrap under heal's excepthook): past them, the
exception is pyward's to handle.  Frames of asyncio route an exception to
whoever awaits the task; their handlers are not counted.

A catch-all handler (`except Exception`, bare, unknown) in a library frame
(a framework, a test runner) counts as catching, except when the walk ends
at a server integration: there, a framework turning a view's exception into
its own 500 is the request boundary, which heal already treats as an escape.
"""
from __future__ import annotations

import builtins
import dis
import functools
import os
import sys

from .analyse import instructions, offset_table

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import CodeType, FrameType, TracebackType
    from typing import Any

#: Context managers whose `__exit__` may swallow the exception (by the name of what makes them).
SUPPRESSORS = frozenset({"suppress", "raises", "assertRaises", "assertRaisesRegex", "assertRaisesRegexp",
                         "ExitStack", "AsyncExitStack", "catch", "ignore", "ignored"})

_PACKAGE = os.path.dirname(os.path.dirname(os.path.realpath(__file__))) + os.sep
#: the request boundary and its adapters: a frame of one of them is a request's boundary
_REQUESTS = (os.path.join(_PACKAGE, "heal", "boundary.py"),
             *(os.path.join(_PACKAGE, "integrations", name) for name in ("wsgi.py", "asgi.py", "httpserver.py")))
_ASYNCIO = os.path.join(os.path.dirname(os.path.realpath(os.__file__)), "asyncio") + os.sep
_START = (os.path.join(_PACKAGE, "heal", "guards.py"), os.path.join(_PACKAGE, "heal", "synth.py"))

_ALL, _TYPES, _WITH, _RERAISE, _UNKNOWN = "all", "types", "with", "reraise", "unknown"



@functools.lru_cache(maxsize=512)
def _table(code: CodeType) -> tuple[tuple[int, int, int, int, bool], ...]:
    return tuple((e.start, e.end, e.target, e.depth, e.lasti) for e in dis._parse_exception_table(code))  # type: ignore[attr-defined]  # CPython's private parser


def handler(code: CodeType, offset: int) -> tuple[int, int, bool] | None:
    """(target offset, depth, lasti) of the handler covering `offset`, or None."""
    for start, end, target, depth, lasti in _table(code):
        if start <= offset < end:
            return target, depth, lasti
    return None


@functools.lru_cache(maxsize=512)
def classify(code: CodeType, target: int) -> tuple[str, Any]:
    """What the handler at `target` does, from its first instructions."""
    instrs = instructions(code)
    where = offset_table(code)
    n = where.get(target)
    if n is None:
        return _UNKNOWN, None
    first = instrs[n]
    if first.opname == "END_ASYNC_FOR":
        return _TYPES, [[("const", StopAsyncIteration)]]
    if first.opname != "PUSH_EXC_INFO":
        # stack shuffles, local restores (inlined comprehensions), POP_EXCEPT, then RERAISE: re-raises
        for ins in instrs[n:n + 12]:
            if ins.opname in ("RERAISE", "CLEANUP_THROW"):
                return _RERAISE, None
            if ins.opname not in ("COPY", "POP_EXCEPT", "SWAP", "POP_TOP", "STORE_FAST", "STORE_FAST_MAYBE_NULL",
                                  "CALL_INTRINSIC_1", "NOP", "END_SEND", "DELETE_FAST"):
                return _UNKNOWN, None
        return _UNKNOWN, None
    n += 1
    if instrs[n].opname in ("WITH_EXCEPT_START",):
        return _WITH, None
    if instrs[n].opname == "POP_TOP":  # a bare `except:`
        return _ALL, None
    clauses: list[list[Any]] = []
    for _ in range(32):
        loads: list[dis.Instruction] = []
        while n < len(instrs) and instrs[n].opname not in ("CHECK_EXC_MATCH", "RERAISE") and len(loads) < 40:
            loads.append(instrs[n])
            n += 1
        if n >= len(instrs) or len(loads) >= 40:
            return _UNKNOWN, None
        if instrs[n].opname == "RERAISE":
            if clauses:
                return _TYPES, clauses
            # `finally:` re-raising; a body that may return or jump elsewhere is not one we can tell
            if any(ins.opname.startswith(("RETURN", "JUMP", "POP_JUMP", "POP_EXCEPT", "YIELD", "SEND", "FOR_ITER",
                                          "CHECK_EG_MATCH", "RAISE")) for ins in loads):
                return _UNKNOWN, None
            return _RERAISE, None
        clauses.append([_load(ins) for ins in loads])
        jump = instrs[n + 1] if n + 1 < len(instrs) else None
        if jump is None or "IF_FALSE" not in jump.opname:
            return _UNKNOWN, None
        n = where.get(jump.argval, -1)
        if n < 0:
            return _UNKNOWN, None
        if instrs[n].opname == "RERAISE":
            return _TYPES, clauses
    return _UNKNOWN, None


def _load(ins: dis.Instruction) -> tuple[str, Any]:
    name = ins.opname
    if name in ("LOAD_GLOBAL", "LOAD_NAME"):
        return ("global" if name == "LOAD_GLOBAL" else "name"), ins.argval
    if name in ("LOAD_FAST", "LOAD_FAST_CHECK", "LOAD_DEREF", "LOAD_CLASSDEREF"):
        return "local", ins.argval
    if name == "LOAD_CONST":
        return "const", ins.argval
    if name in ("LOAD_ATTR", "LOAD_METHOD"):
        value = ins.argval
        return "attr", value[1] if isinstance(value, tuple) else value
    if name == "BUILD_TUPLE":
        return "tuple", ins.arg or 0
    if name in ("NOP", "PUSH_NULL"):
        return "nop", None
    return "?", name


def _types(clause: list[tuple[str, Any]], frame: FrameType) -> tuple[type, ...] | None:
    """The exception classes a clause names, read from the frame; None when unknown."""
    stack: list[Any] = []
    for op, arg in clause:
        if op == "nop":
            continue
        if op in ("global", "name"):
            space = frame.f_globals
            if op == "name" and frame.f_locals is not space and arg in frame.f_locals:
                stack.append(frame.f_locals[arg])
                continue
            if arg in space:
                stack.append(space[arg])
                continue
            found = frame.f_builtins.get(arg, _MISSING) if isinstance(frame.f_builtins, dict) else \
                getattr(builtins, arg, _MISSING)
            if found is _MISSING:
                return None
            stack.append(found)
        elif op == "local":
            try:
                stack.append(frame.f_locals[arg])
            except Exception:
                return None
        elif op == "const":
            stack.append(arg)
        elif op == "attr":
            if not stack:
                return None
            owner = stack.pop()
            found = _static_attr(owner, arg)
            if found is _MISSING:
                return None
            stack.append(found)
        elif op == "tuple":
            if len(stack) < arg:
                return None
            items = tuple(stack[len(stack) - arg:]) if arg else ()
            del stack[len(stack) - arg:]
            stack.append(items)
        else:
            return None
    if len(stack) != 1:
        return None
    value = stack[0]
    kinds = value if isinstance(value, tuple) else (value,)
    if not all(isinstance(k, type) and issubclass(k, BaseException) for k in kinds):
        return None
    return kinds


_MISSING = object()


def _static_attr(owner: Any, name: str) -> Any:
    """`owner.name` for modules and classes, without running a property or `__getattr__`."""
    if isinstance(owner, type):
        for klass in owner.__mro__:
            if name in klass.__dict__:
                return klass.__dict__[name]
        return _MISSING
    space = getattr(owner, "__dict__", None)
    if type(owner).__name__ == "module" and isinstance(space, dict):
        return space.get(name, _MISSING)
    return _MISSING


def _with_suppresses(code: CodeType, target: int) -> bool:
    """Whether the `with` statement whose cleanup is at `target` may swallow
    the exception: its context manager is made by a call to a known suppressor."""
    from .analyse import Unhealable, producer
    from .shadow import _callee

    starts = [start for start, _, t, _, _ in _table(code) if t == target]
    if not starts:
        return True
    instrs = instructions(code)
    where = offset_table(code)
    n = where.get(min(starts))
    if n is None:
        return True
    found = next((m for m in range(n - 1, max(n - 8, -1), -1)
                  if instrs[m].opname in ("BEFORE_WITH", "BEFORE_ASYNC_WITH")), None)
    if found is None:
        return True
    try:
        made, _ = producer(instrs, found, 1)
    except Unhealable:
        return False  # a context manager held in a name or attribute (`with lock:`)
    if instrs[made].opname not in ("CALL", "CALL_KW"):
        return False
    nargs = (instrs[made].arg or 0) + (1 if instrs[made].opname == "CALL_KW" else 0)
    callee = _callee(code, instrs, made, nargs)
    name = callee.split("(")[0].rsplit(".", 1)[-1].strip()
    return name in SUPPRESSORS or not name.isidentifier()


def _catches(frame: FrameType, kind: type[BaseException], offset: int | None = None) -> str | None:
    """'yes', 'all' (a catch-all), or None: does a handler of `frame` catch `kind`
    at `offset` (default: the frame's current instruction)?"""
    code = frame.f_code
    if offset is None:
        offset = frame.f_lasti
    for _ in range(16):  # handlers nest: an except body's cleanup, a finally, a with, then the outer try
        found = handler(code, offset)
        if found is None:
            return None
        target = found[0]
        what, clauses = classify(code, target)
        if what == _ALL or what == _UNKNOWN:
            return "all"
        if what == _WITH and _with_suppresses(code, target):
            return "all"
        if what == _TYPES:
            for clause in clauses:
                kinds = _types(clause, frame)
                if kinds is None:
                    return "all"
                if issubclass(kind, kinds):
                    return "all" if any(k in (Exception, BaseException) for k in kinds) else "yes"
        offset = target  # not caught here: re-raised from the handler, which the next entry covers
    return "all"


def escapes(kind: type[BaseException], frame: FrameType | None) -> bool:
    """True when no handler between `frame` (the guarded code's) and pyward's
    boundary would catch an exception of class `kind`: python would have
    let it escape, so the guard may take its fallback."""
    while frame is not None and _realpath(frame.f_code.co_filename) in _START:
        frame = frame.f_back  # the guard's own helpers
    program = _program_test()
    bootstrap = _thread_bootstrap()
    tentative = False
    task: Any = None  # the asyncio task whose step the walk came out of
    while frame is not None:
        code = frame.f_code
        filename = code.co_filename
        if _realpath(filename).startswith(_PACKAGE):
            if _realpath(filename) in _REQUESTS:
                return True  # a request boundary: a framework's catch-all on the way is its 500
            break
        if code is bootstrap:  # threading.excepthook is heal's boundary for threads
            break
        if _realpath(filename).startswith(_ASYNCIO):
            if task is None and code.co_name == "_run":  # the loop runs a task's step (or a callback)
                task = _current_task()
            elif task is not None and code.co_name == "run_until_complete" and frame.f_locals.get("future") is task:
                task = False  # the task `asyncio.run` waits for: its exception escapes through the loop
        else:
            verdict = _catches(frame, kind)
            if verdict == "yes" or (verdict == "all" and program(filename)):
                return False
            if verdict == "all":
                tentative = True
        frame = frame.f_back
    if task:  # another task's: the exception goes to whoever awaits it, which may catch it
        tentative = True
    if not tentative:
        return True
    from .boundary import ACTIVE  # a request's context, copied into a framework's thread

    return ACTIVE.get() is not None


def caught_on_the_way(kind: type[BaseException], tb: TracebackType | None) -> str | None:
    """The walk of `escapes`, over the frames an escaped exception went through
    (its traceback, innermost first) rather than the live ones: the frame
    ('module: function') whose handler caught it on its way to the boundary
    and handed it on (a `concurrent.futures` worker keeping it for
    `future.result()`, a program's `except ...: raise`), where a guard would
    let it through; None when a guard would take its fallback, or when the
    traceback does not reach a boundary to tell."""
    entries = []
    while tb is not None:
        entries.append(tb)
        tb = tb.tb_next
    program = _program_test()
    bootstrap = _thread_bootstrap()
    catcher = None
    for entry in reversed(entries):
        frame = entry.tb_frame
        code = frame.f_code
        filename = _realpath(code.co_filename)
        if filename.startswith(_PACKAGE):
            if filename in _REQUESTS:
                return None
            break
        if code is bootstrap:
            break
        if not filename.startswith(_ASYNCIO):
            verdict = _catches(frame, kind, entry.tb_lasti)
            if verdict == "yes" or (verdict == "all" and program(code.co_filename)):
                return _name(frame)
            if verdict == "all" and catcher is None:
                catcher = _name(frame)
    else:
        return None  # no boundary in the traceback (a framework's own 500): the live walk decides
    if catcher is None:
        return None
    from .boundary import ACTIVE

    return catcher if ACTIVE.get() is None else None


def _name(frame: FrameType) -> str:
    return f"{frame.f_globals.get('__name__', '?')}: {frame.f_code.co_qualname}"


@functools.lru_cache(maxsize=256)
def _realpath(filename: str) -> str:
    return os.path.realpath(filename) if not filename.startswith("<") else filename


def _program_test() -> Any:
    from .current import active

    engine = active()
    if engine is not None:
        return engine.is_program_file
    from .paths import library_dirs

    dirs = library_dirs()
    return lambda filename: not any(_realpath(filename).startswith(d) for d in dirs)


def _current_task() -> Any:
    asyncio = sys.modules.get("asyncio")
    try:
        return asyncio.current_task() if asyncio is not None else None
    except RuntimeError:  # no running loop in this thread
        return None


def _thread_bootstrap() -> Any:
    """The code that runs a thread and hands its uncaught exception to threading.excepthook."""
    threading = sys.modules.get("threading")
    inner = getattr(getattr(threading, "Thread", None), "_bootstrap_inner", None)
    return getattr(inner, "__code__", None)
