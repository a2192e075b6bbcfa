"""The tamper engine: seals, detection, response.

Detection, by Python version (docs/tamper.md has the table):

* 3.12+: CPython's dict watchers on every namespace holding a seal (module
  and class dicts), plus the function watcher for code, defaults and
  kwdefaults swaps, report a change synchronously, in the thread making it;
  sys.modules is watched so that a module imported later is sealed the
  moment it has finished initialising.
* 3.11: the `object.__setattr__` audit event reports code/defaults swaps
  synchronously; rebinding is found by comparing seals at every import, on
  an interval (--interval) and at exit.

Every change is journaled with the patcher (file:line and function of the
first frame outside pyward and the standard library), the old and the new
value.  --restore puts the original back (the raw namespace entry, latest
change first); --fail-closed makes `module.attr = x` raise TamperError and
stops the run (exit status 78) for changes that cannot raise.
"""
from __future__ import annotations

import os
import sys
from types import ModuleType

from .._isolation import isolate_builtins, isolate_module
from ..config import as_list
from ..journal import Journal
from ..runner import Engine, exit_at_once
from .environment import env_is_sensitive, redact
from .errors import TamperError
from .own import engine_codes, is_pyward_code
from .patcher import caller_of, patcher, patcher_modules
from .restore import put_back, remember_code
from .seals import DEFAULT_TARGETS, MISSING, Seal, called_names, describe, fingerprint, prefixes, resolve, type_dict

isolate_builtins(globals())
os = isolate_module(os)  # noqa: F811
_getframe = sys._getframe  # the program may delete or replace it (monkeypatch.delattr)
_emit = Journal.emit  # the journal's method as pyward defined it: an instance attribute cannot shadow it here

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

EXIT_STATUS_FAIL_CLOSED = 78
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep  # the tamper engine's own frames
WATCHERS = sys.version_info >= (3, 12)


class TamperEngine(Engine):
    name = "tamper"

    def __init__(self, settings: Any) -> None:
        self.user_targets = as_list(settings.get("tamper.watch"))
        self.allow = tuple(as_list(settings.get("tamper.allow")))
        self.restore = bool(settings.get("tamper.restore"))
        self.fail_closed = bool(settings.get("tamper.fail_closed"))
        self.interval = settings.get("tamper.interval") or 0
        self.check_modules = bool(settings.get("tamper.check_modules"))
        self.seals: dict[tuple[int, str], Seal] = {}  # (id(namespace dict), attr) -> seal
        self.by_dict: dict[int, Any] = {}  # id(namespace dict) -> owner (kept alive)
        self.pending: list[tuple[str, str]] = []  # (target, why) whose module is not imported yet
        self.awaited: set[str] = set()  # module names pending targets wait for (sys.modules watcher filter)
        self.tried: dict[str, int] = {}  # pending target -> how many of its prefixes were imported at the last try
        self.absent: set[str] | None = None  # awaited modules not imported at the last try (None: unknown)
        self.to_restore: list[Seal] = []
        self.session: Any = None
        self.native: Any = None
        self.lock_installed = False
        self.watching = False
        self.modules: dict[str, int] = {}
        self.stop_now = False
        self.restoring = False
        self.swapped: set[str] = set()
        self.reported: dict[str, Any] = {}  # seal name -> the new value a synchronous alert named
        self.stopped = False
        self.popped: dict[str, Any] = {}
        self.class_reported: set[int] = set()  # modules whose __class__ swap was reported
        self.finishing: dict[str, Any] = {}  # modules sealed as they finish importing (_resolve_pending)

    # -- lifecycle -------------------------------------------------------------

    def start(self, session: Any) -> None:
        from .._native import native

        self.session, self.native = session, native
        if native is not None:
            from . import restore

            # only this code may mute, stop or re-point the watchers from now on (tamper.c)
            self.watching = bool(native.tamper_install(self._on_change, self._pending,
                                                       engine_codes(sys.modules[__name__], restore)))
            # __class__ swaps of sealed modules are judged on every version
            native.tamper_lock_install(self._judge_module_change, MISSING, TamperError,
                                       self.awaited if not self.watching else set())
            self.lock_installed = True
        for spec in DEFAULT_TARGETS:
            self._seal(spec, "default seal", user=False)
        for namespace, attr, why in session.protected:  # what other engines installed
            self._add(Seal(f"{getattr(namespace, '__name__', '?')}.{attr}", namespace, attr,
                           namespace.__dict__.get(attr), f"pyward: {why}"))
        self._seal_instances(session)
        errors = []
        for spec in self.user_targets:
            error = self._seal(spec, "--watch", user=True)
            if error:
                errors.append(error)
            elif any(t == spec for t, _ in self.pending):
                _emit(session.journal, "tamper", "pending", spec, severity="info", where="",
                                     message=f"tamper: {spec} is not imported yet; it is sealed when the "
                                             f"program imports it", details={"target": spec})
        if errors:
            from ..runner import TargetError

            self.stop_watching()
            raise TargetError("tamper: cannot seal " + "; ".join(errors), 2)
        self.meta_path = list(sys.meta_path)
        self.path_hooks = list(sys.path_hooks)
        self.monitoring = self._monitoring_tools()
        if self.check_modules:
            self.modules = {name: id(mod) for name, mod in list(sys.modules.items())}
        events = ["import", "os.putenv", "os.unsetenv", "sys.settrace", "sys.setprofile"]
        if not self.watching:
            events.append("object.__setattr__")
        self._audit = self._on_audit  # the subscriber object the import gate answers for
        if native is not None:
            native.audit_subscribe(events, self._audit)
        else:  # degraded: a Python audit hook (every event reaches Python; said at start-up)
            wanted, on_audit = frozenset(events), self._on_audit

            def hook(event: str, args: tuple[Any, ...]) -> None:
                if event in wanted and (event != "object.__setattr__" or
                                        (len(args) > 1 and args[1] in ("__code__", "__defaults__", "__kwdefaults__"))):
                    on_audit(event, args)

            sys.addaudithook(hook)
        if native is not None:
            if self.watching:  # a live set: _resolve_pending keeps it to the modules still awaited
                native.tamper_watch_modules(sys.modules, None if self.check_modules else self.awaited)
        if self.interval and not self.watching:
            self._start_timer(float(self.interval))
        self._arm_gate()

    def stop(self, session: Any) -> None:
        self._check_all("exit")
        self._disarm_gate()
        self._apply_restores()
        pending = [t for t, _ in self.pending]
        for spec in pending:
            if spec in self.user_targets:
                _emit(session.journal, "tamper", "pending", spec, severity="notice", where="",
                                     message=f"tamper: --watch {spec} was never sealed: the program never "
                                             f"imported its module", details={"target": spec})
        _emit(session.journal, "tamper", "sealed", "seals", severity="debug", where="",
                             message=f"tamper: {len(self.seals)} seals"
                                     + (f"; never imported, so never sealed: {', '.join(pending)}" if pending else ""),
                             details={"seals": sorted(s.name for s in self.seals.values()), "pending": pending,
                                      "watchers": self.watching})
        self.stop_watching()

    def child_ends(self, session: Any) -> None:
        self.stop_watching()

    def stop_watching(self) -> None:
        self.stopped = True
        if self.native is not None:
            self.native.tamper_stop()

    # -- sealing ---------------------------------------------------------------

    def _seal(self, spec: str, why: str, user: bool) -> str | None:
        seals, error = resolve(spec, why)
        if error:
            return error if user else None
        if not seals:
            self.pending.append((spec, why))
            self.awaited.update(prefixes(spec))
            self.absent = None
            return None
        for seal in seals:
            self._add(seal)
        return None

    def _add(self, seal: Seal) -> None:
        namespace = seal.real_namespace()
        key = (id(namespace), seal.attr)
        if key in self.seals:
            return
        self.seals[key] = seal
        if self.watching:
            self.native.tamper_watch_key(seal.attr)
        if id(namespace) not in self.by_dict:
            self.by_dict[id(namespace)] = seal.owner
            if self.watching:
                self.native.tamper_watch(namespace)
            if isinstance(seal.owner, ModuleType):  # once per module: the lock depends on nothing else
                self._lock_module(seal.owner, full=self.fail_closed or self.restore or not self.watching)
        if seal.fingerprint is not None:
            remember_code(seal.original)
            if self.watching:
                self.native.tamper_watch(seal.original)
        self._record(seal, namespace)
        if seal.fingerprint is not None and seal.why != "called by a sealed function":
            self._seal_called_globals(seal)

    def _record(self, seal: Seal, namespace: dict[str, Any] | None = None) -> None:
        """Keep the seal in C too: the program can clear or rewrite this engine's tables, not that copy."""
        if self.native is not None:
            self.native.tamper_seal(namespace if namespace is not None else seal.real_namespace(), seal.attr,
                                    (seal.owner, seal.attr, seal.original, seal.first, seal.name, seal.why))

    def _seal_called_globals(self, seal: Seal) -> None:
        """What a sealed function calls through its globals (a helper, a module, a class)
        is sealed too: rebinding `subprocess._fork_exec` changes what Popen runs
        without touching Popen."""
        function: Any = seal.original
        name = function.__globals__.get("__name__")
        module = sys.modules.get(name) if type(name) is str else None
        if module is None and type(name) is str:
            module = self.finishing.get(name)  # imported, not back in sys.modules yet (_resolve_pending)
        namespace: dict[str, Any] = function.__globals__
        if module is None or id(getattr(module, "__dict__", None)) != id(namespace):
            return
        sealed, here = self.seals, id(namespace)
        for name in called_names(function.__code__).intersection(namespace):  # most names are attributes'
            if (here, name) in sealed or name.startswith("__"):
                continue
            value = namespace.get(name, MISSING)
            if value is MISSING or not (callable(value) or type(value) is ModuleType):
                continue
            if _is_clock(value):  # what time it is decides no operation; test tools fake it (freezegun)
                continue
            self._add(Seal(f"{module.__name__}.{name}", module, name, value, "called by a sealed function"))

    def _seal_instances(self, session: Any) -> None:
        """pyward's own objects (the session, its journal, the engines): an instance
        attribute named like one of their methods would shadow the method for every
        caller (`journal.emit = noop` blinds every engine), so its absence is sealed."""
        for obj in (session, session.journal, *getattr(session, "engines", ())):
            if getattr(type(obj), "__dictoffset__", 0) == 0:
                continue
            namespace = obj.__dict__
            for cls in type(obj).__mro__[:-1]:
                for name, value in list(cls.__dict__.items()):
                    if name.startswith("__") or name in namespace or not callable(value) or isinstance(value, type):
                        continue
                    self._add(Seal(f"{type(obj).__module__}.{type(obj).__qualname__}().{name}", obj, name, MISSING,
                                   "pyward's own object: an instance attribute would shadow its method"))

    def _resolve_pending(self, finished: dict[str, Any] | None = None) -> None:
        """Seal pending targets whose module has been imported since the last try.

        Called at every import, so a target is retried only when one of its
        dotted prefixes (`a`, `a.b` for `a.b.c`) has newly appeared."""
        if not self.pending:
            return
        if finished is None and self.absent is not None and not any(n in sys.modules for n in self.absent):
            return  # none of the modules the pending targets wait for has appeared
        still = []
        retry_all = False
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
                    retry_all = retry_all or module is not None
                    continue
            seals, error = resolve(spec, why, finished)
            self.finishing = finished or {}
            if error and why == "--watch":
                _emit(self.session.journal, "tamper", "error", spec, severity="warning", where="",
                                          message=f"tamper: cannot seal {error} (its module was imported "
                                                  f"after the run started)", details={"target": spec})
            if not seals and not error:
                still.append((spec, why))
                self.tried[spec] = present
            for seal in seals:
                self._add(seal)
            self.finishing = {}
        self.pending = still
        self.awaited.clear()
        self.awaited.update(p for spec, _ in still for p in prefixes(spec))
        self.absent = None if retry_all else {p for p in self.awaited if p not in sys.modules}

    # -- detection ----------------------------------------------------------------

    def _on_change(self, kind: str, container: Any, key: Any, old: Any, new: Any) -> None:
        """Called by the C watchers (3.12+), synchronously, in the patching thread (and
        for code swaps on 3.11, from the object.__setattr__ audit event)."""
        if self.stopped or sys.modules is None:
            return
        if container is sys.modules:
            self._on_modules(kind, key, old, new)
            return
        if kind in ("__code__", "__defaults__", "__kwdefaults__"):
            for sealed in list(self.seals.values()):
                if sealed.original is container:
                    self.swapped.add(sealed.name)  # the check at exit must not report it twice
                    self._alert(sealed, f"{kind} swapped", old, new, kind)
            return
        seal = self.seals.get((id(container), key)) if type(key) is str else None
        if seal is None:
            if kind == "cleared":
                for s in [s for (d, _), s in self.seals.items() if d == id(container)]:
                    self._alert(s, "cleared", s.original, MISSING, "cleared")
            return
        owner_spec = getattr(seal.owner, "__spec__", None)
        if getattr(owner_spec, "_initializing", False):
            return  # the module (re)defining itself
        if kind == "deleted":
            self._alert(seal, "deleted", old, MISSING, kind)
        elif new is seal.first and (new is not seal.original or seal.name in self.reported):
            self._reverted(seal)
        elif new is not seal.original:
            self._alert(seal, "replaced", old, new, kind)

    def _on_modules(self, kind: str, name: Any, old: Any, new: Any) -> None:
        if type(name) is not str:
            return
        if kind == "deleted":
            self.popped[name] = old
        elif kind == "added" and self.popped.pop(name, None) is new and self.pending:
            # importlib pops a module and puts it back once its code has run: it is
            # complete now, before anything else can touch it
            self._resolve_pending({name: new})
        if self.check_modules and kind == "modified" and old is not None and new is not old \
                and name in self.modules and name != "__main__":
            self._module_replaced(name, old, new)

    def _pending(self) -> None:
        """From a pending call (main thread, between bytecodes): seal modules that
        finished importing, put back what --restore must restore, stop under --fail-closed.

        A pending call can run before the change it was scheduled for has landed
        (the watcher fires before the write, and the journal's own calls check the
        eval breaker): a target still equal to its seal is retried later."""
        self._resolve_pending()
        if self.stop_now:
            self._stop_run()
        landed = [seal for seal in self.to_restore if seal.changed() is not None]
        waiting = [seal for seal in self.to_restore if seal.changed() is None]
        self.to_restore = landed
        self._apply_restores()
        self.to_restore = waiting  # not landed: put back at the next change reported or the next check
        self._arm_gate()

    def _arm_gate(self) -> None:
        """Let C do the next imports' check (tamper_import_gate): this engine is
        called at an import only when a seal's entry, sys.meta_path,
        sys.path_hooks, the modules pending seals wait for or the
        sys.monitoring tools differ from what the last check saw."""
        gate = getattr(self.native, "tamper_import_gate", None)
        if gate is None:
            return
        if self.check_modules or self.to_restore or self.stop_now or (self.pending and self.absent is None):
            gate(None)  # each import has work to do in Python
            return
        seals = []
        if not self.watching:  # 3.12+: the watchers see seals change; 3.11: compare identities at imports
            for seal in self.seals.values():  # MISSING: sealed as absent (the gate knows it)
                seals.append((seal.real_namespace(), seal.attr, seal.original))
        monitoring = getattr(sys, "monitoring", None)  # the gate compares the tools with the last check's
        gate(self._audit, tuple(seals), (("meta_path", self.meta_path), ("path_hooks", self.path_hooks)),
             tuple(self.absent or ()) if self.pending else (), sys.modules,
             monitoring.get_tool if monitoring is not None else None, tuple(map(self.monitoring.get, range(6))))

    def _disarm_gate(self) -> None:
        """The next import must reach the Python check (a restore or a stop is due)."""
        gate = getattr(self.native, "tamper_import_gate", None)
        if gate is not None:
            gate(None)

    def _on_audit(self, event: str, args: tuple[Any, ...]) -> None:
        if event == "import":
            self._check_all("import")
        elif event == "object.__setattr__":  # 3.11: code and defaults swaps
            if self.restoring:
                return
            if len(args) >= 3 and args[1] in ("__code__", "__defaults__", "__kwdefaults__"):
                self._resolve_pending()
                self._on_change(args[1], args[0], None, getattr(args[0], args[1], None), args[2])
        elif event in ("os.putenv", "os.unsetenv"):
            raw = args[0] if args else b""
            name = os.fsdecode(raw) if isinstance(raw, (bytes, str)) else "?"
            if name.startswith("PYWARD_"):
                return
            journal = self.session.journal
            if not env_is_sensitive(name) and journal.count_repeat("tamper", "env.changed", name):
                return  # the hundred-and-first change of one variable: counted, nothing else (REPEAT_LIMIT)
            if self._pyward_acting():
                return
            value = os.fsdecode(args[1]) if event == "os.putenv" and len(args) > 1 else None
            shown = redact(name, value)
            message = f"environment variable {name} {'set to ' + shown if value is not None else 'removed'}"
            where, function, _ = patcher()
            news = env_is_sensitive(name) and self._allowed_patcher(patcher_modules()) is None
            _emit(journal, "tamper", "env.changed", name, severity="notice" if news else "info", where=where or "",
                         function=function, message=message, details={"variable": name, "value": shown})
        elif event in ("sys.settrace", "sys.setprofile"):
            where, function, module = patcher()
            if module.startswith("pyward") or self._pyward_acting():
                return
            hook = args[0] if args else None
            verb = "removed" if hook is None else f"installed ({describe(hook)})"
            _emit(self.session.journal, "tamper", "hook.changed", event.partition(".")[2], severity="notice",
                                      where=where or "", function=function,
                                      message=f"{event.partition('.')[2]} hook {verb} by {where or '?'}",
                                      details={"hook": event, "value": describe(hook)})

    def _check_all(self, when: str) -> None:
        """Compare every seal with its target (3.11's detection; on 3.12+ a safety net).

        At an import (one per module loaded, so it must be cheap) 3.12+ leaves the
        seals to the watchers and 3.11 compares identities only: code swaps raise
        their own audit event, and the full fingerprints are compared on the
        interval and at exit."""
        if self.restoring:
            return
        self._verify_table(when)
        self._resolve_pending()
        self._apply_restores()
        seals = list(self.seals.values())
        at_import = when == "import"
        if at_import:  # identities only, inline: this runs once per module imported
            seals = [] if self.watching else [
                s for s in seals if s.owner.__dict__.get(s.attr, MISSING) is not s.original]
        for seal in seals:
            change = seal.changed(deep=not at_import)
            if change == "code" and seal.name in self.swapped:
                self.swapped.discard(seal.name)
                self._reseal(seal, seal.current())
                continue
            if change is not None and seal.name in self.reported and self.reported[seal.name] is seal.current():
                del self.reported[seal.name]  # reported when it happened
                self._reseal(seal, seal.current())
                continue
            if change == "rebound" and seal.current() is seal.first:
                self._reverted(seal, late=True)
                continue
            if change is not None:
                now = seal.current()
                self._alert(seal, {"deleted": "deleted", "rebound": "replaced", "code": "code changed"}[change],
                            seal.original, now, f"check at {when}", late=True)
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
                    authorised = all(self._allowed_patcher([type(x).__module__]) for x in came + went)
                    _emit(self.session.journal,
                        "tamper", "composition.changed", name, severity="info" if authorised else "notice",
                        where="",
                        message=f"{name} changed: " + ", ".join(
                            [f"+ {a}" for a in added] + [f"- {r}" for r in removed]),
                        details={"added": added, "removed": removed, "when": when})
        tools = self._monitoring_tools()
        if tools != self.monitoring:
            new = {k: v for k, v in tools.items()
                   if self.monitoring.get(k) != v and self.session.monitoring_tools.get(k) != v}
            self.monitoring = tools
            if new:
                _emit(self.session.journal, "tamper", "hook.changed", "sys.monitoring", severity="notice", where="",
                                          message="sys.monitoring tools registered: " + ", ".join(
                                              f"{k}={v!r}" for k, v in sorted(new.items())),
                                          details={"tools": {str(k): v for k, v in new.items()}})
        if self.check_modules:
            for name, module in list(sys.modules.items()):
                ident = self.modules.get(name)
                if ident is None or name == "__main__":
                    self.modules[name] = id(module)  # imported since the last check
                elif id(module) != ident:
                    self._module_replaced(name, None, module)
                    self.modules[name] = id(module)
        self._arm_gate()

    def _verify_table(self, when: str) -> None:
        """The seals as C keeps them against this engine's tables: a seal dropped from
        the table, or one whose recorded original was rewritten, is an alert of its
        own, and the seal is put back (its target is then compared like any other)."""
        if self.native is None:
            return
        altered = []
        namespaces: dict[int, int] = {}  # id(owner) -> id(its namespace dict), found once per owner
        for owner, attr, original, first, name, why in self.native.tamper_sealed():
            here = namespaces.get(id(owner))
            if here is None:
                here = namespaces[id(owner)] = id(type_dict(owner) if isinstance(owner, type) else owner.__dict__)
            key = (here, attr)
            seal = self.seals.get(key)
            if seal is not None and seal.original is original and seal.first is first and seal.owner is owner:
                continue
            altered.append(name)
            seal = Seal(name, owner, attr, first, why)
            seal.original, seal.fingerprint = original, fingerprint(original)
            self.seals[key] = seal
        for module in {id(s.owner): s.owner for s in self.seals.values() if s.module_owner}.values():
            if type(module) is not ModuleType and id(module) not in self.class_reported:
                self.class_reported.add(id(module))
                self._class_swapped(module, type(module), late=True)
        if altered:
            _emit(self.session.journal, "tamper", "alert", "pyward.tamper.seals", severity="alert", where="",
                  message=f"the tamper engine's seal table was altered ({len(altered)} seals dropped or rewritten: "
                          f"{', '.join(sorted(altered)[:5])}{', ...' if len(altered) > 5 else ''}); found at check "
                          f"at {when}, the seals are put back",
                  details={"target": "pyward.tamper.seals", "seals": sorted(altered), "change": "table altered",
                           "detected": f"check at {when}"})

    def _class_swapped(self, module: Any, new: Any, late: bool = False) -> bool | str:
        """A sealed module's __class__ swapped: attribute lookups on it no longer come
        from its namespace (a __getattribute__ can hand out anything), so the seals of
        that module stop meaning anything.  An alert; refused under --restore and
        --fail-closed when it is seen as it happens."""
        name = f"{getattr(module, '__name__', '?')}.__class__"
        where, function, _ = patcher() if not late else (None, None, "")
        response = ""
        verdict: bool | str = True
        if not late and self.fail_closed:
            response, verdict = " => refused (--fail-closed)", f"{name} is sealed by pyward (--fail-closed); " \
                                                                  f"the change at {where or '?'} was refused"
        elif not late and self.restore:
            response, verdict = " => refused (--restore)", False
        else:
            self.class_reported.add(id(module))  # the swap stands: reported once
        _emit(self.session.journal, "tamper", "alert", name, severity="alert", where=where or "", function=function,
              message=f"{name} swapped to {describe(new)}" + (f" by {where} ({function})" if where else "")
                      + (" (found at a check)" if late else "") + response,
              details={"target": name, "old": "<type module>", "new": describe(new), "change": "class swapped",
                       "detected": "check" if late else "setattr"})
        return verdict

    @staticmethod
    def _monitoring_tools() -> dict[int, str]:
        monitoring = getattr(sys, "monitoring", None)
        if monitoring is None:
            return {}
        tools = list(map(monitoring.get_tool, range(6)))
        return {i: tool for i, tool in enumerate(tools) if tool is not None}

    # -- response -------------------------------------------------------------------

    def _pyward_acting(self) -> bool:
        return self._acting() is not None

    def _acting(self) -> str | None:
        """The pyward engine making this change, if one is: `session.acting(...)` says
        so, and the code making the change (the first frame outside this package and
        the import machinery) must be pyward's own code as it is on disk, so that the
        program cannot borrow `acting` to make its own change look authorised."""
        engine = self.session.acting_engine()
        if engine is None:
            return None
        frame: Any = _getframe(1)
        here = _PACKAGE_DIR
        while frame is not None and (frame.f_code.co_filename.startswith(here)
                                     or frame.f_code.co_filename.startswith("<frozen importlib")):
            frame = frame.f_back
        if frame is None or not is_pyward_code(frame.f_code):
            return None
        return engine

    def _allowed_patcher(self, modules: list[str]) -> str | None:
        """The --allow-patcher entry that covers one of `modules`, if any."""
        return next((a for a in self.allow for m in modules if m == a or m.startswith(a + ".")), None)

    def _alert(self, seal: Seal, what: str, old: Any, new: Any, how: str, late: bool = False) -> None:
        acting = self._acting()
        if acting is not None:
            _emit(self.session.journal, "tamper", "authorised", seal.name, severity="debug", where="",
                                      message=f"{seal.name} {what} by pyward's {acting} engine (authorised)",
                                      details={"engine": acting})
            self._accept(seal, new, late)
            return
        where, function, module = patcher()
        allowed = self._allowed_patcher(patcher_modules())
        new_text = describe(new)
        caller = caller_of(module) if where and not late else None
        by = f" by {where} ({function})" if where and not late else ""
        if caller:
            by += f" called from {caller}"
        message = f"{seal.name} {what if what != 'replaced' else 'replaced by ' + new_text}{by}"
        if late and not self.watching:
            message += f" (found at {how}; the patcher is not known " + (
                f"on Python {sys.version_info[0]}.{sys.version_info[1]} without watchers)" if not WATCHERS
                else "without pyward's native extension)")
        elif late:
            message += f" (found at {how})"
        details = {"target": seal.name, "old": describe(old), "new": new_text, "change": what,
                   "detected": how, "patcher_module": module, "caller": caller, "why": seal.why}
        if allowed:
            _emit(self.session.journal, "tamper", "authorised", seal.name, severity="info", where=where or "",
                                      function=function, message=f"{message} (allowed patcher {allowed})",
                                      details=details)
            self._accept(seal, new, late)
            return
        response = ""
        if self.fail_closed:
            response = " => stopping the run (--fail-closed)"
            self.stop_now = True
            self._disarm_gate()
            self.reported[seal.name] = new  # the check at exit must not report it again
        elif self.restore:
            response = " => restored"
            self.to_restore.append(seal)
            self._disarm_gate()
        elif late:
            self._reseal(seal, new)  # report each change once
        else:
            self.reported[seal.name] = new
        _emit(self.session.journal, "tamper", "alert", seal.name, severity="alert", where=where or "",
                                  function=function, message=message + response, details=details)
        if not (self.restore or self.fail_closed):
            return
        if late:  # a check point, not inside the change: act now
            self._apply_restores()
            if self.stop_now:
                self._stop_run()
        elif self.watching:
            self.native.tamper_schedule()  # a watcher may not write the dict it reports on
        elif self.fail_closed:  # 3.11, inside the audit event of the change: refuse it
            self.stop_now = False
            self.to_restore.clear()
            raise TamperError(f"{seal.name}: {what} refused by pyward (--fail-closed)")
        # 3.11 and --restore: the change has not happened yet; the next check puts the original back

    def _reverted(self, seal: Seal, late: bool = False) -> None:
        """The sealed object is back (a patcher undoing its patch): news, not an alert."""
        where, function, _ = patcher() if not late else (None, None, "")
        _emit(self.session.journal, "tamper", "reverted", seal.name, severity="info", where=where or "",
                                  function=function, message=f"{seal.name} is the sealed original again"
                                  + (f" ({where})" if where else ""), details={"target": seal.name})
        if late:
            self._reseal(seal, seal.first)
        else:
            self.reported.pop(seal.name, None)
            seal.original, seal.fingerprint = seal.first, fingerprint(seal.first)
            self._record(seal)

    def _accept(self, seal: Seal, new: Any, late: bool) -> None:
        """The change stands: the seal follows it (now, or once it has landed)."""
        if late:
            self._reseal(seal, new)
        else:
            self.reported[seal.name] = new

    def _reseal(self, seal: Seal, new: Any) -> None:
        if new is not MISSING or seal.first is MISSING:
            seal.original, seal.fingerprint = new, fingerprint(new)
            self._record(seal)

    def _module_replaced(self, name: str, old: Any, new: Any) -> None:
        where, function, _ = patcher()
        _emit(self.session.journal, "tamper", "alert", f"sys.modules[{name!r}]", severity="alert",
                                  where=where or "", function=function,
                                  message=f"sys.modules[{name!r}] replaced by {describe(new)}",
                                  details={"target": name, "new": describe(new)})

    def _apply_restores(self) -> None:
        """Put originals back, exactly: the raw namespace entry, latest change first."""
        todo, self.to_restore = self.to_restore, []
        self.restoring = True
        try:
            for seal in reversed(todo):
                put_back(seal, self.native)
        finally:
            self.restoring = False

    def _stop_run(self) -> None:
        exit_at_once(EXIT_STATUS_FAIL_CLOSED, self.session, "stopped by the tamper engine (--fail-closed)")

    # -- modules whose attributes answer for themselves ------------------------------
    # Under --fail-closed (any version) `module.attr = x` raises TamperError; on 3.11,
    # which has no dict watchers, it is how a rebinding is seen as it happens (with the
    # patcher's frame), and how --restore refuses it.  The native half hooks
    # ModuleType's setattro (tamper.c) so that sealed modules stay plain modules and
    # attribute loads keep their specialised fast path.  A direct write to
    # module.__dict__ bypasses this: the checks find it later.

    def _lock_module(self, module: Any, full: bool = True) -> None:
        if type(module) is not ModuleType:
            return
        own = module.__name__ == "pyward" or module.__name__.startswith("pyward.")
        if self.native is not None:
            self.native.tamper_lock(module, not full or own)  # pyward's own: only its __class__
            return
        if not full or own:
            return
        # degraded (no native extension): the module becomes an instance of a subclass
        # that asks first; attribute loads on it lose their specialised path
        def judge(module: Any, name: str, value: Any) -> bool:
            verdict = self._judge_module_change(module, name, value)
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

    def _judge_module_change(self, module: Any, name: str, value: Any) -> bool | str:
        """`module.name = value` (MISSING: del) on a locked module: True when it may go
        ahead, False to drop it (--restore on 3.11), a message to raise TamperError with
        (--fail-closed; raised by the C slot, so no pyward frame is in the traceback)."""
        if name == "__class__":
            if value is ModuleType or self._acting() is not None or self.stopped:
                return True
            return self._class_swapped(module, value)
        seal = self.seals.get((id(module.__dict__), name))
        if seal is None and not self.watching and getattr(module, "__name__", None) in self.awaited:
            self._resolve_pending()  # imported and changed before a check could seal it: seal it now
            seal = self.seals.get((id(module.__dict__), name))
        if seal is None or self._acting() is not None or self.stopped:
            return True
        if value is seal.first and (value is not seal.original or seal.name in self.reported):
            if not self.watching:
                self._reverted(seal)
            return True
        if value is seal.original:
            return True
        if self.fail_closed:
            where, _, _ = patcher()
            _emit(self.session.journal, "tamper", "alert", seal.name, severity="alert", where=where or "",
                                      message=f"{seal.name}: change refused (--fail-closed)",
                                      details={"target": seal.name, "new": describe(value), "change": "refused"})
            return f"{seal.name} is sealed by pyward (--fail-closed); the change at {where or '?'} was refused"
        if self.watching and not self.restore:
            return True  # the dict watcher reports it
        old = module.__dict__.get(name, MISSING)
        self._on_change("modified" if value is not MISSING else "deleted", module.__dict__, name, old, value)
        if seal in self.to_restore:  # --restore: the change never happens
            self.to_restore.remove(seal)
            return False
        return True

    # -- 3.11: an optional timer ----------------------------------------------------------

    def _start_timer(self, seconds: float) -> None:
        import _thread
        import time

        def loop() -> None:
            while not self.session._finished:
                time.sleep(seconds)
                try:
                    self._check_all("interval")
                except Exception as exc:  # never kill the program from a background check; the next one runs
                    self.session.journal.internal_error("tamper", "checking seals on the interval", exc)

        _thread.start_new_thread(loop, ())


def _is_clock(value: Any) -> bool:
    """The `time` and `datetime` modules and what they define."""
    if type(value) is ModuleType:
        return value.__name__ in ("time", "datetime")
    return getattr(value, "__module__", None) in ("time", "datetime")
