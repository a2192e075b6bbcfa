"""Checks: every seal compared with its target, at points in time.

This is 3.11's detection of rebinding (at every import, on --interval and at
exit); on 3.12+, where the watchers see each change as it happens, it is a
safety net run at exit.  A check also reports changes to sys.meta_path,
sys.path_hooks and the sys.monitoring tools, and (--check-modules) modules
replaced in sys.modules.  Between checks, C decides at each import whether
anything differs from what the last check saw (the import gate).
"""
from __future__ import annotations

import sys

from .._isolation import isolate_builtins
from .._types import ModuleType
from ..journal import Journal
from .patcher import started_with
from .seals import MISSING, describe

isolate_builtins(globals())
_emit = Journal.emit  # the journal's method as pyward defined it: an instance attribute cannot shadow it here

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

    from .alerts import Alerts
    from .table import SealTable
    from .targets import Targets

_CHANGE = {"deleted": "deleted", "rebound": "replaced", "code": "code changed"}


def monitoring_tools() -> dict[int, str]:
    monitoring = getattr(sys, "monitoring", None)
    if monitoring is None:
        return {}
    tools = list(map(monitoring.get_tool, range(6)))
    return {i: tool for i, tool in enumerate(tools) if tool is not None}


def disarm_gate(native: Any) -> None:
    """The next import must reach the Python check (a restore or a stop is due)."""
    gate = getattr(native, "tamper_import_gate", None)
    if gate is not None:
        gate(None)


class Checks:
    __slots__ = ("session", "table", "targets", "alerts", "check_modules", "modules", "meta_path", "path_hooks",
                 "monitoring", "subscriber", "initial")

    def __init__(self, session: Any, table: SealTable, targets: Targets, alerts: Alerts, check_modules: bool,
                 subscriber: Callable[[str, tuple[Any, ...]], None]) -> None:
        self.session, self.table, self.targets, self.alerts = session, table, targets, alerts
        self.check_modules = check_modules
        self.subscriber = subscriber  # the audit subscriber the import gate answers for
        self.modules: dict[str, int] = {}  # --check-modules: name -> id(module) at the last check
        self.meta_path: list[Any] = []
        self.path_hooks: list[Any] = []
        self.monitoring: dict[int, str] = {}
        self.initial: set[int] = set()  # the import hooks the run started with (ids)

    def begin(self) -> None:
        """What the checks compare with: the import hooks, the monitoring tools and the modules as they are now."""
        self.meta_path = list(sys.meta_path)
        self.path_hooks = list(sys.path_hooks)
        self.initial = {id(x) for x in (*self.meta_path, *self.path_hooks)}
        self.monitoring = monitoring_tools()
        if self.check_modules:
            self.modules = {name: id(mod) for name, mod in list(sys.modules.items())}

    def run(self, when: str) -> None:
        """Compare every seal with its target (3.11's detection; on 3.12+ a safety net).

        At an import (one per module loaded, so it must be cheap) 3.12+ leaves the
        seals to the watchers and 3.11 compares identities only: code swaps raise
        their own audit event, and the full fingerprints are compared on the
        interval and at exit."""
        alerts, table = self.alerts, self.table
        if alerts.restoring:
            return
        self.verify_table(when)
        self.targets.resolve_pending()
        alerts.apply_restores()
        seals = list(table.seals.values())
        at_import = when == "import"
        if at_import:  # identities only, inline: this runs once per module imported
            seals = [] if table.watching else [
                s for s in seals if s.owner.__dict__.get(s.attr, MISSING) is not s.original]
        for seal in seals:
            change = seal.changed(deep=not at_import)
            if change == "code" and seal.name in alerts.swapped:
                alerts.swapped.discard(seal.name)
                table.reseal(seal, seal.current())
                continue
            if change is not None and seal.name in alerts.reported and alerts.reported[seal.name] is seal.current():
                del alerts.reported[seal.name]  # reported when it happened
                table.reseal(seal, seal.current())
                continue
            if change == "rebound" and seal.current() is seal.first:
                alerts.reverted(seal, late=True)
                continue
            if change is not None:
                alerts.alert(seal, _CHANGE[change], seal.original, seal.current(), f"check at {when}", late=True)
        self._check_hooks(when)
        tools = monitoring_tools()
        if tools != self.monitoring:
            new = {k: v for k, v in tools.items()
                   if self.monitoring.get(k) != v and self.session.monitoring_tools.get(k) != v}
            self.monitoring = tools
            if new:
                # the tool the run was started with (`-m cProfile` registers "cProfile"): info
                own = all(started_with(self.session, name) for name in new.values())
                _emit(self.session.journal, "tamper", "hook.changed", "sys.monitoring",
                      severity="info" if own else "notice", where="",
                      message="sys.monitoring tools registered: " + ", ".join(
                          f"{k}={v!r}" for k, v in sorted(new.items())),
                      details={"tools": {str(k): v for k, v in new.items()}})
        if self.check_modules:
            for name, module in list(sys.modules.items()):
                ident = self.modules.get(name)
                if ident is None or name == "__main__":
                    self.modules[name] = id(module)  # imported since the last check
                elif id(module) != ident:
                    alerts.module_replaced(name, None, module)
                    self.modules[name] = id(module)
        self.arm_gate()

    def _check_hooks(self, when: str) -> None:
        hooks: tuple[tuple[str, list[Any], list[Any]], ...] = (
            ("sys.meta_path", self.meta_path, sys.meta_path), ("sys.path_hooks", self.path_hooks, sys.path_hooks))
        for name, before, now in hooks:
            if [id(x) for x in before] != [id(x) for x in now]:
                came = [x for x in now if all(x is not y for y in before)
                        and not type(x).__module__.startswith("pyward.")]  # heal's recipe finder
                went = [x for x in before if all(x is not y for y in now)]
                before[:] = list(now)
                if came or went:
                    added, removed = [describe(x) for x in came], [describe(x) for x in went]
                    # news: a hook a library adds, and one the run started with taken away; not the target's
                    # own (pytest's assertion rewriter under `-m pytest`), nor one taken away by whoever added it
                    authorised = all(self.alerts.allowed_patcher([type(x).__module__]) or self._targets_own(x)
                                     for x in came) and all(id(x) not in self.initial for x in went)
                    _emit(self.session.journal, "tamper", "composition.changed", name,
                          severity="info" if authorised else "notice", where="",
                          message=f"{name} changed: " + ", ".join(
                              [f"+ {a}" for a in added] + [f"- {r}" for r in removed]),
                          details={"added": added, "removed": removed, "when": when})

    def _targets_own(self, hook: Any) -> bool:
        """An import hook of the module the run was started with (`pyward run -m pytest`: pytest's)."""
        return started_with(self.session, type(hook).__module__)

    def verify_table(self, when: str) -> None:
        """The seals as C keeps them against the engine's table: a seal dropped from
        the table, or one whose recorded original was rewritten, is an alert of its
        own, and the seal is put back (its target is then compared like any other)."""
        if self.table.native is None:
            return
        altered = self.table.reconcile()
        alerts = self.alerts
        for module in self.table.module_owners():
            if type(module) is not ModuleType and id(module) not in alerts.class_reported:
                alerts.class_reported.add(id(module))
                alerts.class_swapped(module, type(module), late=True)
        if altered:
            alerts.table_altered(altered, when)

    def arm_gate(self) -> None:
        """Let C do the next imports' check (tamper_import_gate): the engine is
        called at an import only when a seal's entry, sys.meta_path,
        sys.path_hooks, the modules pending seals wait for or the
        sys.monitoring tools differ from what the last check saw."""
        table, targets, alerts = self.table, self.targets, self.alerts
        gate = getattr(table.native, "tamper_import_gate", None)
        if gate is None:
            return
        if self.check_modules or alerts.to_restore or alerts.stop_now or (targets.pending and targets.absent is None):
            gate(None)  # each import has work to do in Python
            return
        seals = []
        if not table.watching:  # 3.12+: the watchers see seals change; 3.11: compare identities at imports
            for seal in table.seals.values():  # MISSING: sealed as absent (the gate knows it)
                seals.append((seal.real_namespace(), seal.attr, seal.original))
        monitoring = getattr(sys, "monitoring", None)  # the gate compares the tools with the last check's
        # 3.11: the modules still running their code, which pending seals wait for (3.12+: the watcher)
        running = tuple(targets.running) if targets.pending and not table.watching else ()
        gate(self.subscriber, tuple(seals), (("meta_path", self.meta_path), ("path_hooks", self.path_hooks)),
             tuple(targets.absent or ()) if targets.pending else (), sys.modules,
             monitoring.get_tool if monitoring is not None else None, tuple(map(self.monitoring.get, range(6))),
             running)

    def start_timer(self, seconds: float, check: Callable[[str], None]) -> None:
        """3.11, --interval: a background thread runs `check` every `seconds`."""
        import _thread
        import time

        session = self.session

        def loop() -> None:
            while not session._finished:
                time.sleep(seconds)
                try:
                    check("interval")
                except Exception as exc:  # never kill the program from a background check; the next one runs
                    session.journal.internal_error("tamper", "checking seals on the interval", exc)

        _thread.start_new_thread(loop, ())
