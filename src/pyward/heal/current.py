"""The heal engine of this process, when one runs: what a guard, a request
boundary or a program's own `pyward.resilient` asks for (set by the engine's
start, cleared by its stop)."""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .engine import HealEngine

engine: HealEngine | None = None


def active() -> HealEngine | None:
    return engine
