"""Who made a change: the first frame of the program (not pyward, not the
standard library), the program's own caller when a library patched, the
modules that made it (the code making the change, through the standard
library, up to the first frame of a library or of the program), and whether
that is the tool the run was started with.

Each function starts two frames above itself: past the engine's method that
asks, at the code that made the change.
"""
from __future__ import annotations

import os
import sys

from .._isolation import isolate_builtins
from ..journal import is_plumbing

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import FrameType
    from typing import Any

isolate_builtins(globals())
_getframe = sys._getframe  # the program may delete or replace it (monkeypatch.delattr)
_own_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
# the standard library's debugger, profilers and tracer: pdb (also breakpoint()), profile, cProfile (3.11), trace
_STDLIB_TOOL_MODULES = ("pdb", "bdb", "profile", "cProfile", "trace")
_stdlib_tools = frozenset(os.path.join(os.path.dirname(os.__file__), name + ".py") for name in _STDLIB_TOOL_MODULES)


def patcher() -> tuple[str | None, str | None, str]:
    """(file:line, function, module name) of the code making the change."""
    frame: FrameType | None = _getframe(2)
    fallback = None
    while frame is not None:
        filename = frame.f_code.co_filename
        if not is_plumbing(filename):
            return (f"{filename}:{frame.f_lineno}", frame.f_code.co_qualname,
                    str(frame.f_globals.get("__name__", "")))
        if fallback is None and "/pyward/" not in filename:
            fallback = frame
        frame = frame.f_back
    if fallback is not None:
        return (f"{fallback.f_code.co_filename}:{fallback.f_lineno}", fallback.f_code.co_qualname,
                str(fallback.f_globals.get("__name__", "")))
    return None, None, ""


def caller_of(module: str) -> tuple[str | None, FrameType | None]:
    """When a library made the change (gevent, pytest's monkeypatch...), the first
    frame of the program's own code that called into it: (file:line, the frame)."""
    top = module.partition(".")[0]
    if not top or "-packages" not in str(getattr(sys.modules.get(top), "__file__", "")):
        return None, None
    frame: FrameType | None = _getframe(2)
    seen_library = False
    while frame is not None:
        name = str(frame.f_globals.get("__name__", ""))
        filename = frame.f_code.co_filename
        if name.partition(".")[0] == top:
            seen_library = True
        elif seen_library and not is_plumbing(filename) and "-packages" not in filename:
            return f"{filename}:{frame.f_lineno}", frame
        frame = frame.f_back
    return None, None


def patcher_modules() -> list[str]:
    """The modules of the frames that made the change, from the change outwards, up to
    and including the first one that is neither pyward nor the standard library.

    An allowed patcher may make its change through the stdlib (`unittest.mock`,
    `setattr` in `functools`...), but code it merely calls (a plugin, an event
    subscriber, a callback) is not the patcher: gevent's `patch_all` notifies
    `zope.event` subscribers while it runs, and a subscriber's own rebinding must
    not pass as gevent's."""
    names: list[str] = []
    frame: FrameType | None = _getframe(2)
    while frame is not None:
        names.append(str(frame.f_globals.get("__name__", "")))
        if not is_plumbing(frame.f_code.co_filename):
            break
        frame = frame.f_back
    return names


def started_with(session: Any, module: str) -> bool:
    """Whether `module` belongs to the package the run was started with (`pyward run -m
    pytest`: pytest's, and `_pytest`'s)."""
    target = getattr(session, "target", None)
    if getattr(target, "kind", None) != "module":
        return False
    top = str(getattr(target, "value", "")).partition(".")[0]
    return module.partition(".")[0] in (top, "_" + top)


def tools_own(session: Any) -> bool:
    """Whether the call being reported was made by a debugger or profiler the user started: the
    standard library's (pdb, breakpoint(), profile, trace), or the package the run was started
    with (`pyward run -m pyinstrument`), or any, when the run was started with the standard
    library's (`-m pdb`: its quit clears the hook again from C, with only the program's frame
    to show).  Starts two frames above itself, as the others."""
    if any(started_with(session, name) for name in _STDLIB_TOOL_MODULES):
        return True
    frame: FrameType | None = _getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith(_own_dir):
        frame = frame.f_back  # the engine's own frames, down to the code that made the call
    if frame is None:
        return False
    return frame.f_code.co_filename in _stdlib_tools or started_with(session, str(frame.f_globals.get("__name__", "")))
