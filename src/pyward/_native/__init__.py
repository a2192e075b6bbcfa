"""Access to pyward's C extension, with an honest degraded mode.

`native` is the loaded extension module, or None.  When it is None, `error`
says why (set PYWARD_DISABLE_NATIVE=1 to simulate that), and `DEGRADED` lists
what pyward cannot do as well without it; the runner prints that once.
"""
from __future__ import annotations

import os
from types import ModuleType

native: ModuleType | None
error: str | None

DEGRADED = (
    "audit events are filtered in Python instead of C (slower); "
    "tamper detection falls back to checks instead of watchers"
)

if os.environ.get("PYWARD_DISABLE_NATIVE"):
    native, error = None, "disabled by PYWARD_DISABLE_NATIVE"
else:
    try:
        from . import _pyward as native
    except ImportError as exc:  # not built, or built for another interpreter
        import importlib.machinery

        here = os.path.dirname(__file__)
        built = any(name.startswith("_pyward.") and name.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
                    for name in os.listdir(here))
        native, error = None, (f"{type(exc).__name__}: {exc}" if built else
                               "the C extension was not built when pyward was installed (no C compiler or "
                               "Python headers); reinstall with gcc and python3-dev to get it")
    else:
        error = None
