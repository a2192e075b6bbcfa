"""Private copies of the stdlib modules pyward relies on.

A guarded program may monkeypatch `os`, `time` or `hashlib` (tests do it all
the time; freezegun patches `time` in every module it finds); pyward must
keep working with the real functions.  Like coverage.py's `isolate_module`,
we copy a module's namespace and use the copy.  The copy is made once per
module, by the first `isolate_module` call: for the modules pyward loads at
start (os, time, hashlib) that is before any program code runs, so a module
of pyward's imported later (the heal engine's, at a crash) gets the same
clean copy.  A module first loaded by the program (json) is copied when
pyward first needs it.
"""
from __future__ import annotations

from . import _types as types  # not the stdlib's: see _types.py

_ISOLATED: dict[types.ModuleType, types.ModuleType] = {}


def isolate_module(mod: types.ModuleType) -> types.ModuleType:
    """Return a copy of `mod` whose attributes cannot be rebound from outside.  The copy
    does not bear the module's name: patchers that find a module by its name in every
    module's globals (pyfakefs puts a fake `os` wherever it finds one) leave it alone."""
    if mod not in _ISOLATED:
        new = types.ModuleType(mod.__name__)
        _ISOLATED[mod] = new
        namespace = vars(new)
        namespace.update(vars(mod))  # os has ~350 names: copied in C, only its modules one by one
        namespace["__name__"] = f"pyward's copy of {mod.__name__}"
        for name, value in list(namespace.items()):
            if isinstance(value, types.ModuleType):
                namespace[name] = isolate_module(value)
    return _ISOLATED[mod]


_BUILTINS: dict[str, object] = {}


def isolate_builtins(namespace: dict[str, object]) -> None:
    """Make the functions defined after this call in a module see the builtins
    as they were when pyward started, not whatever the program rebinds later
    (`builtins.len = ...` must not break the journal that reports it).
    Call it after the imports, before the first `def`."""
    if not _BUILTINS:
        import builtins

        _BUILTINS.update(vars(builtins))
    namespace["__builtins__"] = _BUILTINS
