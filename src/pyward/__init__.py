"""pyward: run any Python program under a guard.

    pyward run app.py [args...]

This module is imported before the guarded program runs, so it stays cheap:
the public names below are loaded on first use.

PYTEST_DONT_REWRITE: pytest marks the packages of installed plugins for
assertion rewriting and warns about those already imported; under
`pyward run -m pytest` this one always is, and a suite that turns warnings
into errors would not start.
"""
import sys

from ._version import __version__

#: The modules python had loaded before pyward's first: what a program run by
#: python itself would find in sys.modules (`pyward trace` hides the others).
_STARTUP_MODULES = frozenset(sys.modules)
_STARTUP_FINDERS = frozenset(sys.path_importer_cache)  # and the directories its import system had looked at
del sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .policy import Policy
    from .sandbox.errors import AccessDenied, ImportDenied

__all__ = ["AccessDenied", "ImportDenied", "Policy", "TamperError", "__version__", "resilient"]


def __getattr__(name):  # lazy public API (PEP 562)
    if name in ("AccessDenied", "ImportDenied"):
        from .sandbox import errors

        return getattr(errors, name)
    if name == "TamperError":
        from .tamper import TamperError

        return TamperError
    if name == "resilient":
        from .heal import resilient

        return resilient
    if name == "Policy":
        from .policy import Policy

        return Policy
    raise AttributeError(f"module 'pyward' has no attribute {name!r}")
