"""The error a patching statement raises under --fail-closed."""
from __future__ import annotations


class TamperError(RuntimeError):
    """Raised by a patching statement under --fail-closed: a sealed target may not change."""


TamperError.__module__ = "pyward"
