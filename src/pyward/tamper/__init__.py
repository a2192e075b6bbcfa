"""The tamper engine: seal the functions a program must trust, report who rebinds them.

See engine.py for how detection works on each Python version, and
docs/tamper.md for what it covers.
"""
from __future__ import annotations

from .errors import TamperError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ..config import Settings
    from ..runner import Engine

__all__ = ["TamperError", "child_engine", "make_engine"]


def make_engine(settings: Settings) -> Engine | None:
    if not settings.get("tamper.enabled", True):
        return None
    from .engine import TamperEngine

    return TamperEngine(settings)


def child_engine(data: dict[str, Any], settings: Settings) -> Engine:
    """The tamper engine in a Python child of the run (children.py; `settings` hold the run's): the run's
    seals and answers to a change."""
    from .engine import TamperEngine

    return TamperEngine(settings)
