"""Sealed modules whose attributes answer for themselves.

Under --fail-closed (any version) `module.attr = x` raises TamperError; on
3.11, which has no dict watchers, it is how a rebinding is seen as it happens
(with the patcher's frame), and how --restore refuses it.  The native half
hooks ModuleType's setattro (tamper.c) so that sealed modules stay plain
modules and attribute loads keep their specialised fast path.  A direct write
to module.__dict__ bypasses this: the checks find it later.  A sealed
module's `__class__` swap is judged here on every version.
"""
from __future__ import annotations

from .._isolation import isolate_builtins
from .._types import ModuleType
from ..journal import Journal
from .errors import TamperError
from .patcher import patcher
from .seals import MISSING, describe

isolate_builtins(globals())
_emit = Journal.emit  # the journal's method as pyward defined it: an instance attribute cannot shadow it here

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .alerts import Alerts
    from .table import SealTable
    from .targets import Targets
    from .watchers import Watchers


class ModuleLock:
    __slots__ = ("table", "targets", "alerts", "watchers")

    def __init__(self, table: SealTable, targets: Targets, alerts: Alerts, watchers: Watchers) -> None:
        self.table, self.targets, self.alerts, self.watchers = table, targets, alerts, watchers

    def lock(self, module: Any) -> None:
        if type(module) is not ModuleType:
            return
        alerts, table = self.alerts, self.table
        # every attribute is judged (not only __class__) where a rebinding must be refused or has no watcher
        full = alerts.fail_closed or alerts.restore or not table.watching
        own = module.__name__ == "pyward" or module.__name__.startswith("pyward.")
        if table.native is not None:
            table.native.tamper_lock(module, not full or own)  # pyward's own: only its __class__
            return
        if not full or own:
            return
        # degraded (no native extension): the module becomes an instance of a subclass
        # that asks first; attribute loads on it lose their specialised path
        judge_change = self.judge

        def judge(module: Any, name: str, value: Any) -> bool:
            verdict = judge_change(module, name, value)
            if isinstance(verdict, str):
                raise TamperError(verdict)
            return verdict

        class SealedModule(ModuleType):
            __slots__ = ()

            def __setattr__(self, name: str, value: Any) -> None:
                if judge(self, name, value):
                    super().__setattr__(name, value)

            def __delattr__(self, name: str) -> None:
                if judge(self, name, MISSING):
                    super().__delattr__(name)

        SealedModule.__name__ = SealedModule.__qualname__ = "module"
        SealedModule.__module__ = "builtins"
        module.__class__ = SealedModule

    def judge(self, module: Any, name: str, value: Any) -> bool | str:
        """`module.name = value` (MISSING: del) on a locked module: True when it may go
        ahead, False to drop it (--restore on 3.11), a message to raise TamperError with
        (--fail-closed; raised by the C slot, so no pyward frame is in the traceback)."""
        table, alerts = self.table, self.alerts
        if name == "__class__":
            if value is ModuleType or alerts.acting() is not None or table.stopped:
                return True
            return alerts.class_swapped(module, value)
        seal = table.seals.get((id(module.__dict__), name))
        if seal is None and not table.watching and getattr(module, "__name__", None) in self.targets.awaited:
            self.targets.resolve_pending()  # imported and changed before a check could seal it: seal it now
            seal = table.seals.get((id(module.__dict__), name))
        if seal is None or alerts.acting() is not None or table.stopped:
            return True
        if value is seal.first and (value is not seal.original or seal.name in alerts.reported):
            if not table.watching:
                alerts.reverted(seal)
            return True
        if value is seal.original:
            return True
        if alerts.fail_closed:
            where, _, _ = patcher()
            _emit(alerts.session.journal, "tamper", "alert", seal.name, severity="alert", where=where or "",
                  message=f"{seal.name}: change refused (--fail-closed)",
                  details={"target": seal.name, "new": describe(value), "change": "refused"})
            return f"{seal.name} is sealed by pyward (--fail-closed); the change at {where or '?'} was refused"
        if table.watching and not alerts.restore:
            return True  # the dict watcher reports it
        old = module.__dict__.get(name, MISSING)
        self.watchers.on_change("modified" if value is not MISSING else "deleted", module.__dict__, name, old, value)
        if seal in alerts.to_restore:  # --restore: the change never happens
            alerts.to_restore.remove(seal)
            return False
        return True
