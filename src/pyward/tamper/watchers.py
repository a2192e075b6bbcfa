"""Changes reported as they happen.

On 3.12+ CPython's dict watchers (every namespace holding a seal) and the
function watcher (code, defaults and kwdefaults swaps) call `on_change`
synchronously, in the thread making the change; sys.modules is watched so
that a module imported later is sealed the moment it has finished
initialising.  On 3.11 the `object.__setattr__` audit event and the hook on
ModuleType's setattr (lock.py) call the same `on_change`.  What a watcher may
not do in the middle of a change (write the dict it reports on, stop the
run) is done by `pending`, a pending call that runs once the change has landed.
"""
from __future__ import annotations

import sys

from .._isolation import isolate_builtins
from .seals import MISSING

isolate_builtins(globals())
_finalizing = sys.is_finalizing  # at exit the module's globals are cleared (sys = None) while watchers still fire

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .alerts import Alerts
    from .checks import Checks
    from .table import SealTable
    from .targets import Targets


class Watchers:
    __slots__ = ("table", "targets", "alerts", "checks", "popped")

    def __init__(self, table: SealTable, targets: Targets, alerts: Alerts, checks: Checks) -> None:
        self.table, self.targets, self.alerts, self.checks = table, targets, alerts, checks
        self.popped: dict[str, Any] = {}  # modules importlib took out of sys.modules to put back once complete

    def on_change(self, kind: str, container: Any, key: Any, old: Any, new: Any) -> None:
        """Called by the C watchers (3.12+), synchronously, in the patching thread (and
        for code swaps on 3.11, from the object.__setattr__ audit event)."""
        table, alerts = self.table, self.alerts
        if table.stopped or _finalizing():
            return
        if container is sys.modules:
            self._on_modules(kind, key, old, new)
            return
        if kind in ("__code__", "__defaults__", "__kwdefaults__"):
            for sealed in list(table.seals.values()):
                if sealed.original is container:
                    alerts.swapped.add(sealed.name)  # the check at exit must not report it twice
                    alerts.alert(sealed, f"{kind} swapped", old, new, kind)
            return
        seal = table.seals.get((id(container), key)) if type(key) is str else None
        if seal is None:
            if kind == "cleared":
                for s in [s for (d, _), s in table.seals.items() if d == id(container)]:
                    alerts.alert(s, "cleared", s.original, MISSING, "cleared")
            return
        owner_spec = getattr(seal.owner, "__spec__", None)
        if getattr(owner_spec, "_initializing", False):
            return  # the module (re)defining itself
        if kind == "deleted":
            # an inherited method is sealed as absent from the class: deleting the override
            # a patcher defined there (mock.patch.object's undo) brings the original back
            new = MISSING
        elif kind == "added":
            old = MISSING
        if new is seal.first and (new is not seal.original or seal.name in alerts.reported):
            alerts.reverted(seal)
        elif new is not seal.original:
            alerts.alert(seal, "deleted" if new is MISSING else "replaced", old, new, kind)

    def _on_modules(self, kind: str, name: Any, old: Any, new: Any) -> None:
        if type(name) is not str:
            return
        if kind == "deleted":
            self.popped[name] = old
        elif kind == "added" and self.popped.pop(name, None) is new and self.targets.pending:
            # importlib pops a module and puts it back once its code has run: it is
            # complete now, before anything else can touch it
            self.targets.resolve_pending({name: new})
        checks = self.checks
        if checks.check_modules and kind == "modified" and old is not None \
                and new is not old and name in checks.modules and name != "__main__":
            self.alerts.module_replaced(name, old, new)

    def pending(self) -> None:
        """From a pending call (main thread, between bytecodes): seal modules that
        finished importing, put back what --restore must restore, stop under --fail-closed.

        A pending call can run before the change it was scheduled for has landed
        (the watcher fires before the write, and the journal's own calls check the
        eval breaker): a target still equal to its seal is retried later."""
        alerts = self.alerts
        self.targets.resolve_pending()
        if alerts.stop_now:
            alerts.stop_run()
        landed = [seal for seal in alerts.to_restore if seal.changed() is not None]
        waiting = [seal for seal in alerts.to_restore if seal.changed() is None]
        alerts.to_restore = landed
        alerts.apply_restores()
        alerts.to_restore = waiting  # not landed: put back at the next change reported or the next check
        self.checks.arm_gate()
