"""The tamper engine: its start, its stop, and the parts it is made of.

Detection, by Python version (docs/tamper.md has the table):

* 3.12+: CPython's dict watchers on every namespace holding a seal (module
  and class dicts), plus the function watcher for code, defaults and
  kwdefaults swaps, report a change synchronously, in the thread making it
  (watchers.py); sys.modules is watched so that a module imported later is
  sealed the moment it has finished initialising (targets.py).
* 3.11: the `object.__setattr__` audit event reports code/defaults swaps
  synchronously; rebinding is found by comparing seals at every import, on
  an interval (--interval) and at exit (checks.py).

The parts: targets.py (what is sealed, now or once imported), table.py (the
seals and the C watchers and table they feed), alerts.py (who did it, and
--restore / --fail-closed), watchers.py, checks.py, lock.py (sealed modules'
setattr) and events.py (environment and trace-hook news).
"""
from __future__ import annotations

import sys

from .._isolation import isolate_builtins
from ..children import engine_settings
from ..config import as_list
from ..journal import Journal
from ..runner import Engine
from . import alerts, checks, events, lock, restore, table, targets, watchers
from .errors import TamperError
from .own import engine_codes
from .seals import DEFAULT_TARGETS, MISSING, Seal

isolate_builtins(globals())
_emit = Journal.emit  # the journal's method as pyward defined it: an instance attribute cannot shadow it here

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

PARTS = ("table", "targets", "alerts", "checks", "watchers", "lock")  # the engine's attributes holding its parts
_OWN = "pyward's own object: an instance attribute would shadow its method"


class TamperEngine(Engine):
    name = "tamper"

    def __init__(self, settings: Any) -> None:
        self.user_targets = as_list(settings.get("tamper.watch"))
        self.allow = tuple(as_list(settings.get("tamper.allow")))
        self.restore = bool(settings.get("tamper.restore"))
        self.fail_closed = bool(settings.get("tamper.fail_closed"))
        self.interval = settings.get("tamper.interval") or 0
        self.check_modules = bool(settings.get("tamper.check_modules"))
        self.native: Any = None
        #: what a Python child needs to run this engine too (child_arming)
        self.child_settings = engine_settings(settings, "tamper.")

    # -- lifecycle -------------------------------------------------------------

    def start(self, session: Any) -> None:
        from .._native import native

        self.native = native
        self.table = table.SealTable(native)
        self.targets = targets.Targets(self.table, session.journal)
        self.alerts = alerts.Alerts(session, self.table, self.allow, self.restore, self.fail_closed,
                                    lambda: checks.disarm_gate(native))
        self.checks = checks.Checks(session, self.table, self.targets, self.alerts, self.check_modules, self._on_audit)
        self.watchers = watchers.Watchers(self.table, self.targets, self.alerts, self.checks)
        self.lock = lock.ModuleLock(self.table, self.targets, self.alerts, self.watchers)
        self.table.lock = self.lock.lock
        watching = False
        if native is not None:
            # only the code that calls them (these modules') may mute, stop or re-point the watchers from now on
            own = engine_codes(sys.modules[__name__], checks, restore, table)
            watching = self.table.watching = bool(native.tamper_install(self.watchers.on_change,
                                                                        self.watchers.pending, own))
            # __class__ swaps of sealed modules are judged on every version
            native.tamper_lock_install(self.lock.judge, MISSING, TamperError,
                                       self.targets.awaited if not watching else set())
        for spec in DEFAULT_TARGETS:
            self.targets.seal(spec, "default seal", user=False)
        for namespace, attr, why in session.protected:  # what other engines installed
            self.table.add(Seal(f"{getattr(namespace, '__name__', '?')}.{attr}", namespace, attr,
                                namespace.__dict__.get(attr), f"pyward: {why}"))
        self.table.seal_instances((session, session.journal, *getattr(session, "engines", ())))
        for part in PARTS:  # replacing a part would blind the engine as surely as shadowing a method
            self.table.add(Seal(f"{__name__}.TamperEngine().{part}", self, part, getattr(self, part), _OWN))
        errors = []
        for spec in self.user_targets:
            error = self.targets.seal(spec, "--watch", user=True)
            if error:
                errors.append(error)
            elif self.targets.is_pending(spec):
                _emit(session.journal, "tamper", "pending", spec, severity="info", where="",
                      message=f"tamper: {spec} is not imported yet; it is sealed when the "
                              f"program imports it", details={"target": spec})
        if errors and not session.child:  # (a child's program may never hold a target its parent's does)
            from ..runner import TargetError

            self.stop_watching()
            raise TargetError("tamper: cannot seal " + "; ".join(errors), 2)
        self.checks.begin()
        subscribed = ["import", "os.putenv", "os.unsetenv", "sys.settrace", "sys.setprofile"]
        if not watching:
            subscribed.append("object.__setattr__")
        on_audit = self.checks.subscriber  # one bound method: the import gate answers for that object
        if native is not None:
            native.audit_subscribe(subscribed, on_audit)
        else:  # degraded: a Python audit hook (every event reaches Python; said at start-up)
            wanted = frozenset(subscribed)

            def hook(event: str, args: tuple[Any, ...]) -> None:
                if event in wanted and (event != "object.__setattr__" or
                                        (len(args) > 1 and args[1] in ("__code__", "__defaults__", "__kwdefaults__"))):
                    on_audit(event, args)

            sys.addaudithook(hook)
        if watching:  # a live set: Targets.resolve_pending keeps it to the modules still awaited
            native.tamper_watch_modules(sys.modules, None if self.check_modules else self.targets.awaited)
        if self.interval and not watching:
            self.checks.start_timer(float(self.interval), self._check_all)
        self.checks.arm_gate()

    def stop(self, session: Any) -> None:
        self.alerts.end_burst()
        self._check_all("exit")
        checks.disarm_gate(self.native)
        self.alerts.apply_restores()
        pending = [t for t, _ in self.targets.pending]
        for spec in pending:
            if spec in self.user_targets:
                _emit(session.journal, "tamper", "pending", spec, severity="notice", where="",
                      message=f"tamper: --watch {spec} was never sealed: the program never "
                              f"imported its module", details={"target": spec})
        seals = self.table.seals
        _emit(session.journal, "tamper", "sealed", "seals", severity="debug", where="",
              message=f"tamper: {len(seals)} seals"
                      + (f"; never imported, so never sealed: {', '.join(pending)}" if pending else ""),
              details={"seals": sorted(s.name for s in seals.values()), "pending": pending,
                       "watchers": self.table.watching})
        self.stop_watching()

    def child_arming(self, session: Any) -> dict[str, Any] | None:
        """A Python child runs under the same seals (multiprocessing's spawn workers, `python -c`): the run's
        tamper settings; its alerts are the run's (children.py)."""
        if session.child:
            return None  # (a child's own children: armed from the run's payload, which they inherit)
        return {"settings": dict(self.child_settings)}

    def child_ends(self, session: Any) -> None:
        table = self.__dict__.get("table")
        if session.child and not session.journal.is_child and table is not None and not table.watching:
            self._check_all("exit")  # 3.11: a Python child's last look, as stop() takes the program's
        self.stop_watching()

    def stop_watching(self) -> None:
        parts = self.__dict__
        if "table" in parts:
            parts["table"].stopped = True
        if self.native is not None:
            self.native.tamper_stop()

    # -- the audit events it subscribes to ---------------------------------------------

    def _on_audit(self, event: str, args: tuple[Any, ...]) -> None:
        if event == "import":
            self._check_all("import")
        elif event == "object.__setattr__":  # 3.11: code and defaults swaps
            if self.alerts.restoring:
                return
            if len(args) >= 3 and args[1] in ("__code__", "__defaults__", "__kwdefaults__"):
                self.targets.resolve_pending()
                self.watchers.on_change(args[1], args[0], None, getattr(args[0], args[1], None), args[2])
        elif event in ("os.putenv", "os.unsetenv"):
            events.env_changed(self.alerts, event, args)
        elif event in ("sys.settrace", "sys.setprofile"):
            events.hook_changed(self.alerts, event, args)

    def _check_all(self, when: str) -> None:
        self.checks.run(when)
