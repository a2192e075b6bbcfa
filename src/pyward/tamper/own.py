"""pyward's own code, told apart from code that only claims to be.

Two questions the tamper engine asks about a frame's code object:

* is it the engine's own (`engine_codes`)?  The C functions that mute, stop or
  re-point the watchers accept calls only from these code objects, collected
  before the program runs;
* is it pyward's (`is_pyward_code`)?  A change made while an engine says it is
  acting (`session.acting("heal")`) is authorised only when the code making it
  is pyward's: its file is in pyward's package *and* its bytecode is what that
  file compiles to, so neither borrowing `acting` nor compiling code under
  pyward's file name makes a change look authorised.
"""
from __future__ import annotations

import os

from .. import _types as types  # not the stdlib's: see _types.py
from .._isolation import isolate_builtins

isolate_builtins(globals())

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterator

PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_compiled: dict[str, dict[tuple[str, int], types.CodeType]] = {}


def _nested(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for const in code.co_consts:
        if type(const) is types.CodeType:
            yield from _nested(const)


def _functions(namespace: dict[str, Any], seen: set[int]) -> Iterator[types.FunctionType]:
    for value in list(namespace.values()):
        if type(value) in (staticmethod, classmethod):
            value = value.__func__
        if type(value) is property:
            yield from (f for f in (value.fget, value.fset, value.fdel) if type(f) is types.FunctionType)
        elif type(value) is types.FunctionType:
            yield value
        elif isinstance(value, type) and id(value) not in seen and value.__module__ == namespace.get("__name__"):
            seen.add(id(value))
            yield from _functions(dict(value.__dict__, __name__=value.__module__), seen)


def engine_codes(*modules: types.ModuleType) -> tuple[types.CodeType, ...]:
    """Every code object defined by these modules (functions, methods, nested functions)."""
    codes: dict[int, types.CodeType] = {}
    for module in modules:
        for function in _functions(module.__dict__, set()):
            for code in _nested(function.__code__):
                codes[id(code)] = code
    return tuple(codes.values())


def is_pyward_code(code: types.CodeType) -> bool:
    """True when `code` is a function of pyward's source as it is on disk."""
    filename = code.co_filename
    if not filename.startswith(PACKAGE_DIR) or not filename.endswith(".py"):
        return False
    table = _compiled.get(filename)
    if table is None:
        try:
            with open(filename, "rb") as f:
                module = compile(f.read(), filename, "exec", dont_inherit=True)
        except (OSError, SyntaxError, ValueError):
            return False
        table = _compiled[filename] = {(c.co_qualname, c.co_firstlineno): c for c in _nested(module)}
    genuine = table.get((code.co_qualname, code.co_firstlineno))
    return genuine is not None and genuine.co_code == code.co_code and genuine.co_names == code.co_names \
        and genuine.co_consts == code.co_consts
