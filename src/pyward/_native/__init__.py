"""Access to pyward's C extension, with an honest degraded mode.

`native` is the loaded extension module, or None.  When it is None, `error`
says why (set PYWARD_DISABLE_NATIVE=1 to simulate that), and `DEGRADED` lists
what pyward cannot do as well without it; the runner prints that once.
"""
from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType

DEGRADED = (
    "audit events are filtered in Python instead of C (slower); "
    "tamper detection falls back to checks instead of watchers"
)


def _load() -> tuple[ModuleType | None, str | None]:
    """The extension module and None, or None and why it is missing."""
    if os.environ.get("PYWARD_DISABLE_NATIVE"):
        return None, "disabled by PYWARD_DISABLE_NATIVE"
    try:
        from . import _pyward
    except ImportError as exc:  # not built, or built for another interpreter
        import importlib.machinery

        here = os.path.dirname(__file__)
        built = any(name.startswith("_pyward.") and name.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
                    for name in os.listdir(here))
        return None, (f"{type(exc).__name__}: {exc}" if built else
                      "the C extension was not built when pyward was installed (no C compiler or "
                      "Python headers); reinstall with gcc and python3-dev to get it")
    return _pyward, None


_module, error = _load()
if TYPE_CHECKING:
    # mypy checks every call against the stub, _pyward.pyi.  It has no type for "this module or None":
    # callers test `native is None` before use, and mypy cannot enforce that.
    from . import _pyward as native
else:
    native = _module
del _module
