"""Which targets are sealed, and when: now, or once their module is imported.

A target whose module is not imported yet is pending: pyward never imports
it itself.  It is sealed the moment its module has finished initialising
(3.12+: the sys.modules watcher; 3.11: the checks at every import), retried
only when one of its dotted prefixes has newly appeared.
"""
from __future__ import annotations

import sys

from .._isolation import isolate_builtins
from ..journal import Journal
from .seals import prefixes, resolve

isolate_builtins(globals())
_emit = Journal.emit  # the journal's method as pyward defined it: an instance attribute cannot shadow it here

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .table import SealTable


class Targets:
    __slots__ = ("table", "journal", "pending", "awaited", "tried", "absent", "running")

    def __init__(self, table: SealTable, journal: Any) -> None:
        self.table, self.journal = table, journal
        self.pending: list[tuple[str, str]] = []  # (target, why) whose module is not imported yet
        self.awaited: set[str] = set()  # module names pending targets wait for (sys.modules watcher filter)
        self.tried: dict[str, int] = {}  # pending target -> how many of its prefixes were imported at the last try
        self.absent: set[str] | None = None  # awaited modules not imported at the last try (None: unknown)
        self.running: list[Any] = []  # awaited modules whose code was still running at the last try

    def seal(self, spec: str, why: str, user: bool) -> str | None:
        """Seal `spec` now, or keep it pending; the error for a --watch target that cannot be."""
        seals, error = resolve(spec, why)
        if error:
            return error if user else None
        if not seals:
            self.pending.append((spec, why))
            self.awaited.update(prefixes(spec))
            self.absent = None
            return None
        for seal in seals:
            self.table.add(seal)
        return None

    def is_pending(self, spec: str) -> bool:
        return any(t == spec for t, _ in self.pending)

    def resolve_pending(self, finished: dict[str, Any] | None = None) -> None:
        """Seal pending targets whose module has been imported since the last try.

        Called at every import, so a target is retried only when one of its
        dotted prefixes (`a`, `a.b` for `a.b.c`) has newly appeared."""
        if not self.pending:
            return
        if finished is None and self.absent is not None and not any(n in sys.modules for n in self.absent) \
                and all(_running(module) for module in self.running):
            return  # none of the modules the pending targets wait for has appeared or finished
        still = []
        retry_all = False
        running: dict[int, Any] = {}
        table = self.table
        for spec, why in self.pending:
            present = sum(1 for p in prefixes(spec) if p in sys.modules or (finished and p in finished))
            if present <= self.tried.get(spec, 0):
                still.append((spec, why))
                continue
            names = [n for n in (finished or ()) if spec.startswith(n + ".")]
            if not names:
                module = sys.modules.get(spec.split(".")[0])
                spec_obj = getattr(module, "__spec__", None) if module is not None else None
                if module is None or getattr(spec_obj, "_initializing", False):
                    still.append((spec, why))
                    if module is not None:
                        # its code is running: the imports it makes meanwhile need no check (3.12+'s
                        # sys.modules watcher reports it the moment it has finished, watchers.py; on 3.11
                        # the import gate looks whether it has, checks.arm_gate)
                        running[id(module)] = module
                    continue
            seals, error = resolve(spec, why, finished)
            table.finishing = finished or {}
            if error and why == "--watch":
                _emit(self.journal, "tamper", "error", spec, severity="warning", where="",
                      message=f"tamper: cannot seal {error} (its module was imported "
                              f"after the run started)", details={"target": spec})
            if not seals and not error:
                still.append((spec, why))
                self.tried[spec] = present
            for seal in seals:
                table.add(seal)
            table.finishing = {}
        self.pending = still
        self.awaited.clear()
        self.awaited.update(p for spec, _ in still for p in prefixes(spec))
        self.absent = None if retry_all else {p for p in self.awaited if p not in sys.modules}
        self.running = list(running.values())


def _running(module: Any) -> bool:
    """Whether python is still running the module's code (as the import gate reads it, tamper.c)."""
    return bool(getattr(getattr(module, "__spec__", None), "_initializing", False))
