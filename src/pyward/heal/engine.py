"""The heal engine: patch structural crashes, persist recipes, re-run honestly.

Catching costs nothing while nothing fails: no trace function, no
monitoring events.  A crash is analysed where it escapes the program, at
boundaries pyward controls: the runner (the script's top level),
`threading.excepthook` and `pyward.resilient`.  The traceback keeps the
failing frame and its instruction offset, which is all the analysis needs,
on 3.11, 3.12 and 3.13 alike.

A heal: analyse (analyse.py) -> build the guard from the function's
original code and verify it (synth.py) -> swap `__code__` on every function
that runs that code and in the constants of every enclosing function, so
closures made later get it too -> save a recipe (store.py) -> re-run the
script only when the journal shows no side effect before the crash.
"""
from __future__ import annotations

import os
import sys
import time

from .._isolation import isolate_module
from ..children import engine_settings
from ..runner import Engine
from . import current
from .paths import library_dirs, store_path
from .paths import short_path as _short

time = isolate_module(time)  # noqa: F811 - a recipe is stamped with real time, under freezegun too

# analyse, guards and synth (dis, hashlib, bytecode) and the store (sqlite3)
# are imported when a crash is analysed or a stored patch applies, never
# on a run where nothing happens.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import CodeType, FunctionType, TracebackType
    from typing import Any

    from ..config import Settings
    from ..runner import Link, Session
    from .analyse import Site
    from .guards import Guard
    from .store import Recipe, Store

#: Exit status of a run that completed but healed something, under --fail-on heal (outputs.FAIL_ON).
EXIT_STATUS_HEALED = 79
SIDE_EFFECT_PERMISSIONS = ("write", "net", "run")

_DEBUG = bool(os.environ.get("PYWARD_DEBUG"))  # read before the sandbox is installed: it may not allow it later


class Healed:
    """What `HealEngine.heal` did: the guarded function's label, the guard kind, the operand and the
    recovery (value, skip, return: recovery.py)."""

    __slots__ = ("label", "kind", "operand", "recovery")

    def __init__(self, label: str, kind: str, operand: str, recovery: str = "value") -> None:
        self.label, self.kind, self.operand, self.recovery = label, kind, operand, recovery


#: What a fallback does, by recovery, for messages: "the guard {returns None} when x would fail".
def recovery_words(recovery: str, value: str) -> str:
    if recovery == "skip":
        return "skips the statement"
    if recovery == "return":
        return f"makes the function return {value}"
    return f"returns {value}"


class Crash:
    """One crash being healed: the exception, the boundary it escaped at, the
    program's frame it escaped from, and the code analysed there (the original
    code of a function healed before)."""

    __slots__ = ("exc", "boundary", "tb", "frame_tb", "frame", "code", "what", "where", "runtime", "patch",
                 "original", "instrs", "index", "shape")

    def __init__(self, exc: BaseException, boundary: str, tb: TracebackType | None, frame_tb: TracebackType) -> None:
        self.exc, self.boundary, self.tb, self.frame_tb = exc, boundary, tb, frame_tb
        self.frame = frame_tb.tb_frame
        self.code: CodeType = self.frame.f_code
        self.what = f"{type(exc).__name__}: {exc}"
        self.where = f"{_short(self.code.co_filename)}:{frame_tb.tb_lineno}"
        self.runtime = False
        self.patch: Patch | None = None
        self.original: CodeType = self.code
        self.instrs: list[Any] = []
        self.index = 0
        self.shape: str | None = None


class Patch:
    """A function's original code, its guards (sites + recipes) and the code now in use."""

    __slots__ = ("original", "sites", "guards", "recipes", "current", "inserted", "module")

    def __init__(self, original: CodeType, module: str) -> None:
        self.original, self.module = original, module
        self.sites: list[Site] = []
        self.guards: list[Guard] = []
        self.recipes: list[Recipe | None] = []
        self.current = original
        self.inserted: list[int] = []


def _is_python(path: str) -> bool:
    """Whether `path` names a Python interpreter (this one, or a python* command)."""
    name = os.path.basename(path)
    if name.startswith("python") and all(c.isdigit() or c == "." for c in name[6:]):
        return True
    return os.path.realpath(path) == os.path.realpath(sys.executable)


class HealEngine(Engine):
    name = "heal"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.retries = settings.get("heal.retries", 3)
        self.dry_run = settings.get("heal.dry_run", False)
        self.reruns = bool(self.retries) and not self.dry_run
        self.rerun_requested = False  # this process's attempt crashed and asked for the next one
        #: the script's code as compiled and as run (with stored guards): code outside it was made by exec()
        self.main_code: tuple[CodeType, CodeType] | None = None
        self.verbose = settings.get("verbose", 0)
        self.session: Link | None = None  # the session, as an engine within the program's reach holds it
        self.store: Store | None = None
        self.patches: dict[int, Patch] = {}  # id(current code) -> patch
        self.pending: dict[str, list[Recipe]] = {}  # module -> recipes not applied yet
        self.saved = 0  # recipes saved to the store by this process
        self.healed = 0
        self.fired: set[int] = set()
        self.said: set[int] = set()  # recipes already announced (applied or stale) in this run
        self.python_child_said = False  # heal does not follow a Python process the program starts: said once
        self._excludes: tuple[str, ...] = ()
        self.store_path = ""
        self._store_pid = 0
        self.shapes: dict[str, tuple[str, str]] | None = None  # the crash-shape registry, read at the first crash
        # code a later heal replaced, kept alive: a thread still running it may crash on a site already guarded
        self.superseded: dict[int, tuple[CodeType, Patch, list[int]]] = {}
        self.known: set[int] = set()  # ids of the store's recipes this process has read or written
        self.sync_interval = settings.get("heal.sync_interval", 1.0)
        self.sync_due = 0.0  # when refresh() reads the store next (time.monotonic())
        self._synced = 0  # the highest recipe id read from the store
        import threading

        self._lock = threading.RLock()  # one heal at a time: threaded servers crash in parallel
        os.register_at_fork(after_in_child=self._forked)

    def _forked(self) -> None:
        """A forked child (a pre-forking server's worker) counts the guard firings it makes itself:
        the parent's are counted by the parent."""
        for guard, _ in self._guards():
            guard.hits = 0

    # -- lifecycle -------------------------------------------------------------

    def start(self, session: Session) -> None:
        self.session = session.link()
        self.store_path = store_path(self.settings, session.cwd)
        current.engine = self
        ttl = self.settings.get("heal.ttl", 7)
        stale_checked: set[str] = set()
        for recipe in self._stored():
            self.known.add(recipe.saved_id())
            self._synced = max(self._synced, recipe.saved_id())
            self.pending.setdefault(recipe.module, []).append(recipe)
            if ttl and recipe.age_days() > ttl and recipe.qualname not in stale_checked:
                stale_checked.add(recipe.qualname)
                session.journal.emit("heal", "expired", recipe.qualname, severity="warning", where="",
                                     message=f"patch on {recipe.label()} is {recipe.age_days():.0f} days old "
                                             f"(--ttl {ttl}): the root cause at {_short(recipe.file)}:"
                                             f"{recipe.lineno} is still unfixed")
        for module in [m for m in self.pending if m in sys.modules and m != "__main__"]:
            self._patch_loaded_module(sys.modules[module])
        session.rewrite_imports(self._wants, self._rewrite)  # recipes for modules imported later
        import threading

        previous = threading.excepthook

        def excepthook(args: Any) -> None:
            if args.exc_value is not None and not isinstance(args.exc_value, SystemExit):
                self.heal(args.exc_value, boundary="thread")
            previous(args)

        threading.excepthook = excepthook
        session.protect(threading, "excepthook", "the heal engine's thread boundary")
        from .._native import native

        if native is not None and not session.children_armed and not session.child:
            # (the sandbox arms Python children, and carries this engine to them: children.py)
            native.audit_subscribe(("subprocess.Popen", "os.posix_spawn", "os.exec", "os.spawn"), self._started)

    def child_arming(self, session: Session) -> dict[str, Any] | None:
        """A Python child heals too (a development server's reloader serves from one): the run's heal
        settings, with its store by absolute path (the child may start elsewhere)."""
        if session.child:
            return None  # (a child's own children: armed from the run's payload, which they inherit)
        settings = engine_settings(self.settings, "heal.")
        settings["heal.store"] = store_path(self.settings, session.cwd)
        return {"settings": settings}

    def _started(self, event: str, args: tuple[Any, ...]) -> None:
        """The program starts a process: heal does not follow a Python one (said once).  An audit
        subscriber: never raises into the program's call."""
        try:
            if self.python_child_said or self.rerun_requested or current.engine is not self or not args:
                return  # (a re-run of the program is pyward's own process start)
            path, argv = args[0], args[1] if len(args) > 1 else None
            if path is None and type(argv) in (list, tuple) and argv:
                path = argv[0]
            if type(path) is bytes:
                path = os.fsdecode(path)
            if type(path) is not str or not _is_python(path):
                return
            self.python_child_said = True
            words = argv if isinstance(argv, (list, tuple)) else [path]
            shown = " ".join(w if type(w) is str else os.fsdecode(w) if type(w) is bytes else "…" for w in words)
            self.started().emit(
                "heal", "python_child", os.path.basename(path), severity="notice",
                message=f"heal does not follow the Python process this program started ({shown[:100]}): what "
                        "crashes there is not healed (a development server's reloader serves from one: run it "
                        "without the reloader, or wrap the application in pyward's middleware)")
        except Exception:
            pass

    def started(self) -> Link:
        """The session's link, for what runs after start() (a heal, a boundary, an import)."""
        if self.session is None:
            raise RuntimeError("the heal engine has not started")
        return self.session

    def watch_escapes(self) -> bool:
        """A WSGI/ASGI middleware serves: on 3.12+, find the exceptions frameworks answer themselves (monitor.py)."""
        from . import monitor

        return monitor.start(self.started(), self.is_program_file)

    def _stored(self) -> list[Recipe]:
        """This Python's recipes, when a store exists (no store: no sqlite3 import)."""
        if not os.path.exists(self.store_path):
            return []
        return self._open_store().for_python()

    def _open_store(self) -> Store:
        if self.store is None or self._store_pid != os.getpid():  # a forked worker opens its own connection
            from .store import Store

            self.store, self._store_pid = Store(self.store_path), os.getpid()
        return self.store

    def prepare_code(self, session: Session, code: CodeType, module: str) -> CodeType:
        """Apply stored recipes to a module's code before it runs (the script's)."""
        patched = self._patch_tree(code, module, code.co_filename)
        if module == "__main__":
            self.main_code = (code, patched)
        return patched

    def stop(self, session: Session) -> None:
        if "pyward.heal.monitor" in sys.modules:
            sys.modules["pyward.heal.monitor"].stop()
        firings, hits = self._firings()
        self._attempt_event(session, firings)
        if self.store is not None:
            self._save_hits(session, hits)
            self.store.close()
        current.engine = None
        self.sync_due = 0.0  # a server integration's next request looks for the engine again (server.rule)

    def child_ends(self, session: Session) -> None:
        """A forked child (a worker) ends: its guard firings, for the run's summary and the store.
        A Python child whose crash escaped it (python has printed it): said unhealed, as it is."""
        if session.child and not session.journal.is_child:
            self._escaped_child()
        firings, hits = self._firings()
        if not firings:
            return
        pid = os.getpid()
        session.journal.emit("heal", "firings", str(pid), severity="info", where="",
                             message=f"child process {pid}: {firings} guard firing{'s' * (firings != 1)}",
                             details={"firings": firings})
        if self.store is not None and self._store_pid == pid:
            self._save_hits(session, hits)

    def _escaped_child(self) -> None:
        """The exception python printed as this Python child's end (`sys.last_exc`), if any: a child is not
        the program `pyward run` started, so it is not re-run; healing it would promise what no run does."""
        exc = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
        if not isinstance(exc, Exception) or isinstance(exc, SyntaxError):
            return
        tb, where, function = exc.__traceback__, None, ""
        while tb is not None:
            if self.is_program_file(tb.tb_frame.f_code.co_filename):
                code = tb.tb_frame.f_code
                where, function = f"{code.co_filename}:{tb.tb_lineno}", code.co_qualname
            tb = tb.tb_next
        self._unhealed(exc, "it escaped a Python child of the program, which is not re-run (only the program "
                            "`pyward run` started is)", where, function)

    def _guards(self) -> list[tuple[Guard, Recipe | None]]:
        """Every guard of this process's patches (superseded ones too), each once, with its recipe."""
        found: dict[int, tuple[Guard, Recipe | None]] = {}
        for patch in [*self.patches.values(), *(p for _, p, _ in self.superseded.values())]:
            for guard, recipe in zip(patch.guards, patch.recipes):
                found.setdefault(id(guard), (guard, recipe))
        return list(found.values())

    def _firings(self) -> tuple[int, dict[int, int]]:
        """(guard firings in this process, firings by stored recipe id)."""
        hits: dict[int, int] = {}
        firings = 0
        for guard, recipe in self._guards():
            firings += guard.hits
            if guard.hits and recipe is not None and recipe.id is not None:
                hits[recipe.id] = hits.get(recipe.id, 0) + guard.hits
        return firings, hits

    def _save_hits(self, session: Session, hits: dict[int, int]) -> None:
        if not hits or self.dry_run or self.store is None:
            return
        try:
            self.store.add_hits(hits)
        except Exception as exc:
            session.journal.emit("heal", "store.error", self.store.path, severity="warning", where="",
                                 message=f"guard hits not saved: {exc}")

    def _attempt_event(self, session: Session, firings: int) -> None:
        """How this process's attempt ended, with its guard firings: the summary
        counts attempts, firings and runs that completed only through a fallback."""
        if self.rerun_requested:
            outcome, completed = "crashed; healed and re-run in a fresh process", False
        else:
            reason = session.exit_reason or ""
            completed = reason == "completed" or reason.startswith("sys.exit(") or reason.startswith("attempt ")
            if reason.startswith("attempt "):  # a supervisor: its own attempt crashed and was re-run
                outcome, completed = "crashed; healed and re-run in a fresh process", False
            else:
                outcome = "completed" if completed else reason
        degraded = completed and firings > 0
        how = f"{firings} guard firing{'s' * (firings != 1)}"
        if degraded:
            message = f"attempt {session.attempt} completed only through a fallback ({how}): its output may be " \
                      "incomplete (degraded)"
        else:
            message = f"attempt {session.attempt}: {outcome} ({how})"
        session.journal.emit("heal", "attempt", str(session.attempt), severity="notice" if degraded else "info",
                             where="", message=message,
                             details={"attempt": session.attempt, "firings": firings, "completed": completed,
                                      "degraded": degraded, "outcome": outcome})

    def on_crash(self, session: Session, exc: BaseException) -> bool:
        if not isinstance(exc, Exception) or isinstance(exc, SyntaxError):  # python reports those as they are
            return False
        saved_before = self.saved
        healed = self.heal(exc, boundary="script")
        if healed is None:
            return False
        if self.dry_run:
            return False
        rerun, why, reason, effects = self._may_rerun(session)
        if not rerun:
            saved = "The patch is saved: the next run uses it" if self.saved > saved_before else \
                "The patch was not saved"
            session.journal.emit("heal", "not_rerun", healed.label, severity="warning", where="",
                                 message=f"not re-running: {why}. {saved}",
                                 details={"reason": reason, "side_effects": effects})
            return False
        self.rerun_requested = True
        session.journal.emit("heal", "rerun", healed.label, severity="notice", where="",
                             message=f"re-running the program (attempt {session.attempt + 1} of {self.retries + 1}) "
                                     "in a fresh process: it starts from the top, so the output above is printed "
                                     "again",
                             details={"attempt": session.attempt + 1})
        return True

    # -- healing ---------------------------------------------------------------

    def heal(self, exc: BaseException, boundary: str, tb: TracebackType | None = None) -> Healed | None:
        """Patch the crash behind `exc` (`tb`: its traceback as it escaped, when
        a framework may have cleared it since): what was done, or None
        (unhealed, journaled)."""
        with self._lock:
            try:
                return self._heal(exc, boundary, tb or exc.__traceback__)
            except Exception as error:  # a sandbox denial of what a heal needs, or a pyward bug: never the program's
                if _DEBUG:
                    raise
                self._unhealed(exc, f"pyward could not heal it ({type(error).__name__}: {error})", None)
                return None

    def _heal(self, exc: BaseException, boundary: str, tb: TracebackType | None) -> Healed | None:
        """Locate the crash in the program's code, find the failing operation (site),
        choose how the program goes on (recovery), build and verify the guarded
        code, then swap it in and store its recipe."""
        if self.fired and self.settings.get("heal.shadow"):
            self._shadow_crash(exc)
        crash = self._locate(exc, boundary, tb)
        if crash is None:
            return None
        if self._caught_on_the_way(crash):
            return None
        found = self._site(crash)
        if found is None:
            return None
        site, origin = found
        if crash.patch is None:
            crash.patch = Patch(crash.original, _module_name(crash.frame.f_globals))
        for done, guard in zip(crash.patch.sites, crash.patch.guards):
            if done.index == site.index and done.kind == site.kind:
                if crash.patch.current is crash.code:  # the guard ran and let it through
                    self._unhealed(exc, f"the guard of {guard.label} let it through: whoever receives it may "
                                        "catch it (a handler on its way, or the code awaiting the task it ran "
                                        "in), so healing it would hide it from them", crash.where,
                                   crash.code.co_qualname)
                    return None
                return Healed(guard.label, site.kind, site.operand, guard.recovery)  # guarded since this frame started
        fallback = self._fallback(site.kind)
        if not self._recover(crash, site, fallback):
            return None
        built = self._build(crash, site, fallback)
        if built is None:
            return None
        guard, new_code, inserted = built
        if self.dry_run:
            self.session.emit(  # type: ignore[union-attr]
                "heal", "dry_run", guard.label, severity="notice", where=crash.where, function=crash.code.co_qualname,
                message=f"dry run: {crash.what} in {guard.label} can be healed (guard built and verified, "
                        f"recovery: {guard.recovery}; nothing patched or saved)")
            return Healed(guard.label, site.kind, site.operand, guard.recovery)
        return self._install(crash, site, guard, new_code, inserted, origin)

    def _locate(self, exc: BaseException, boundary: str, tb: TracebackType | None) -> Crash | None:
        """The program's frame the exception escaped from, and the code to analyse there."""
        from . import fingerprint
        from .analyse import index_of_offset, instructions

        frame_tb = self._program_frame(tb)
        if frame_tb is None:
            if type(exc.__cause__).__name__ in ("_RemoteTraceback", "RemoteTraceback"):  # a process pool's
                self._unhealed(exc, "it was raised in another process (a process pool's worker) and sent back: "
                                    "the code that failed did not run in this one", None)
                return None
            self._unhealed(exc, "it was raised outside the program's own code (a library or python itself)", None)
            return None
        crash = Crash(exc, boundary, tb, frame_tb)
        code = crash.code
        crash.runtime = self._compiled_at_run_time(code, crash.frame)
        if crash.runtime and boundary == "script":
            self._unhealed(exc, f"it is in code compiled while the program ran (exec() or compile(), file "
                                f"{code.co_filename!r}): a guard there cannot be stored, and a re-run would compile "
                                "that code again without it", crash.where, code.co_qualname)
            return None
        patch = self.patches.get(id(code))
        inserted: list[int] = patch.inserted if patch is not None else []
        if patch is None and id(code) in self.superseded:  # healed since this frame started
            _, patch, inserted = self.superseded[id(code)]
        crash.patch = patch
        crash.original = patch.original if patch is not None else code
        crash.instrs = instructions(crash.original)
        if patch is not None:  # a second crash in a healed function: analyse the original code
            crash.index = _original_index(inserted, _index_at(code, frame_tb.tb_lasti))
        else:
            crash.index = index_of_offset(crash.instrs, frame_tb.tb_lasti)
        crash.shape = fingerprint.shape(crash.instrs, crash.index, exc)
        return crash

    def _caught_on_the_way(self, crash: Crash) -> bool:
        """A handler on the exception's way to the boundary caught it and handed it
        on (escape.caught_on_the_way): a guard would let it through, so it is not
        healed (journaled)."""
        from .escape import caught_on_the_way

        catcher = caught_on_the_way(type(crash.exc), crash.tb)
        if catcher is None:
            return False
        self._unhealed(crash.exc, f"it was caught on its way ({catcher}) and handed on to the code that "
                                  "raised it again, which may catch it itself: a guard would let it through",
                       crash.where, crash.code.co_qualname)
        return True

    def _site(self, crash: Crash) -> tuple[Site, str] | None:
        """The failing operation (a crash shape seen before, or the analysis), and where the shape came from."""
        from .analyse import Unhealable, analyse

        known = self._recognise(crash.shape, crash.original, crash.instrs, crash.index, crash.frame)
        if known is not None:
            return known
        try:
            site = analyse(crash.original, crash.instrs[crash.index].offset, crash.exc, crash.frame)
        except Unhealable as reason:
            self._unhealed(crash.exc, str(reason), crash.where, crash.code.co_qualname)
            return None
        return site, ""

    def _recover(self, crash: Crash, site: Site, fallback: str) -> bool:
        """Choose how the program goes on when the guard falls back (recovery.py); False: unhealed."""
        from .analyse import Unhealable
        from .guards import fallback_value
        from .recovery import plan as plan_recovery

        if site.kind == "type_coercion_guard":
            site.catches = type(crash.exc).__name__
        try:
            site.plan = plan_recovery(crash.original, site)
        except Unhealable as reason:
            self._unhealed(crash.exc, str(reason), crash.where, crash.code.co_qualname)
            return False
        site.plan.value = fallback_value(fallback)
        if site.plan.recovery == "return" and crash.boundary.endswith("request") and \
                self._server_called(crash.tb, crash.frame_tb):
            self._unhealed(crash.exc, f"no recovery lets the request complete ({crash.code.co_qualname} is the "
                                      f"handler the server called: it would give the server "
                                      f"{'None' if fallback == 'none' else fallback} instead of a response)",
                           crash.where, crash.code.co_qualname)
            return False
        return True

    def _build(self, crash: Crash, site: Site, fallback: str) -> tuple[Guard, CodeType, list[int]] | None:
        """The guard and the guarded code, through synth's verification gate; None: refused (journaled)."""
        from .guards import Guard
        from .synth import RefusedPatch, diff, synthesise

        session = self.session
        assert session is not None and crash.patch is not None and site.plan is not None
        code = crash.code
        label = f"{code.co_qualname} ({site.kind} on {site.operand})"
        guard = Guard(site.kind, site.operand, fallback, self._fired, label, site.plan.recovery, site.catches)
        try:
            new_code, inserted = synthesise(crash.original, [*crash.patch.sites, site],
                                            self._helper_maker(crash.patch, site, guard))
        except RefusedPatch as refusal:
            session.emit("heal", "refused", code.co_qualname, severity="error", where=crash.where,
                                 function=code.co_qualname,
                                 message=f"unhealed {crash.what} in {code.co_qualname}: the guard was refused by the "
                                         f"verification gate ({refusal})")
            return None
        if self.verbose or self.dry_run:
            lines = diff(new_code, inserted)
            session.emit("heal", "diff", code.co_qualname, severity="info" if not self.dry_run else "notice",
                                 where=crash.where, function=code.co_qualname,
                                 message="guarded bytecode ('+' inserted):\n" + "\n".join(lines))
        return guard, new_code, inserted

    def _install(self, crash: Crash, site: Site, guard: Guard, new_code: CodeType, inserted: list[int],
                 origin: str) -> Healed | None:
        """Swap the guarded code in, then store its recipe and journal the heal."""
        session = self.session
        patch = crash.patch
        assert session is not None and patch is not None
        code, exc = crash.code, crash.exc
        # first: a swap that fails (a sandbox denial, no function found) leaves nothing saved
        if not self._swap(patch, new_code, inserted):
            self._unhealed(exc, f"no live function runs the code of {code.co_qualname} (pyward looks in the "
                                "collector's lists and, after gc.freeze(), in the module's namespace)", crash.where,
                           code.co_qualname)
            return None
        fallback = guard.fallback
        recipe = self._recipe(patch, site, fallback, exc) if not crash.runtime else None
        if not origin:
            self._learn_shape(crash.shape, site, crash.instrs, crash.index, crash.original)
        patch.sites.append(site)
        patch.guards.append(guard)
        patch.recipes.append(recipe)
        self.healed += 1
        value = "None" if fallback == "none" else fallback
        recovery = guard.recovery
        boundary = crash.boundary
        session.emit("heal", "healed", guard.label, severity="warning", where=crash.where,
                             function=code.co_qualname,
                             message=f"healed {crash.what} in {guard.label}: the guard "
                                     f"{recovery_words(recovery, value)} when {site.operand} would fail"
                                     f"{' (boundary: ' + boundary + ')' if boundary != 'script' else ''}"
                                     f"{'; crash shape recognised from ' + origin if origin else ''}"
                                     f"{_RUNTIME_NOTE if crash.runtime else ''}",
                             details={"kind": site.kind, "operand": site.operand, "fallback": fallback,
                                      "recovery": recovery, "function": code.co_qualname, "module": patch.module,
                                      "exception": crash.what, "recipe": recipe.id if recipe is not None else None,
                                      "shape": crash.shape, "recognised_from": origin or None,
                                      "stored": recipe is not None})
        return Healed(guard.label, site.kind, site.operand, recovery)

    def _compiled_at_run_time(self, code: CodeType, frame: Any) -> bool:
        """True for code the program compiled while it ran (exec(), compile()):
        not loaded from its module's file, nor part of the script's code.  A
        recipe for it could never be applied: the next run compiles it afresh."""
        space = frame.f_globals
        file = space.get("__file__")
        main = sys.modules.get("__main__")
        if isinstance(file, str) and not (main is not None and space is vars(main) and self.main_code is not None):
            return not _same_file(file, code.co_filename) and not file.endswith((".pyc", ".pyo"))
        if self.main_code is not None and main is not None and space is vars(main):
            original = self.patches[id(code)].original if id(code) in self.patches else \
                self.superseded[id(code)][1].original if id(code) in self.superseded else code
            return not any(_in_tree(top, original) or _in_tree(top, code) for top in self.main_code)
        return not isinstance(file, str)

    def _recognise(self, shape: str | None, code: CodeType, instrs: list[Any], index: int,
                   frame: Any) -> tuple[Site, str] | None:
        """The site of a crash whose shape the registry knows, found without
        analysis (fingerprint.py), and where the shape was learned."""
        from . import fingerprint

        if shape is None:
            return None
        if self.shapes is None:
            self.shapes = self._open_store().shapes() if os.path.exists(self.store_path) else {}
        known = self.shapes.get(shape)
        if known is None:
            return None
        site = fingerprint.relocate(known[0], code, instrs, index, frame)
        return (site, known[1]) if site is not None else None

    def _learn_shape(self, shape: str | None, site: Site, instrs: list[Any], index: int, code: CodeType) -> None:
        from . import fingerprint

        if shape is None or self.shapes is None or shape in self.shapes:
            return
        stored = fingerprint.template(site, index, instrs)
        if stored is None:
            return
        origin = f"{code.co_qualname} ({_short(code.co_filename)}:{site.lineno})"
        self.shapes[shape] = (stored, origin)
        try:
            self._open_store().save_shape(shape, stored, origin)
        except Exception as exc:  # the registry saves re-analysis, nothing depends on it: said, not raised
            self.session.emit("heal", "store.error", shape, severity="warning", where="",  # type: ignore[union-attr]
                                      message=f"crash shape not saved: {type(exc).__name__}: {exc}")

    def _helper_maker(self, patch: Patch, new_site: Site, new_guard: Guard) -> Any:
        from .guards import helper

        guards = dict(zip(map(id, patch.sites), patch.guards))
        guards[id(new_site)] = new_guard

        def make(site: Site, link: Site) -> Any:
            return helper(link.kind, guards[id(site)], link.detail, link.method)
        return make

    def _swap(self, patch: Patch, new_code: CodeType, inserted: list[int]) -> bool:
        """Every function running `patch.current` (and every enclosing code)
        gets `new_code`; False when no function was found to run it."""
        old = patch.current
        with self.started().acting("heal"):
            if not _install(old, new_code):
                return False
        # a thread still running the old code (the original too) may crash in it: its site maps to this patch
        self.patches.pop(id(old), None)
        self.superseded[id(old)] = (old, patch, patch.inserted)
        patch.current, patch.inserted = new_code, inserted
        self.patches[id(new_code)] = patch
        return True

    def _recipe(self, patch: Patch, site: Site, fallback: str, exc: BaseException) -> Recipe | None:
        import json

        from .._version import __version__
        from .store import PYTHON, Recipe
        from .synth import code_hash

        code = patch.original
        recipe = Recipe(module=patch.module, qualname=code.co_qualname, file=code.co_filename,
                        firstlineno=code.co_firstlineno, code_hash=code_hash(code), python=PYTHON, pyward=__version__,
                        kind=site.kind, operand=site.operand, fallback=fallback, lineno=site.lineno,
                        site=json.dumps(site.to_json(), sort_keys=True), exception=f"{type(exc).__name__}: {exc}",
                        created=time.time())
        try:
            self._open_store().save(recipe)
        except Exception as error:
            self.started().emit("heal", "store.error", "store", severity="error", where="",
                                      message=f"the patch works in this run but was not saved: {error}")
            return None
        self.saved += 1
        self.known.add(recipe.saved_id())
        self.said.add(recipe.saved_id())  # healed in this run: the re-run says nothing more about it
        self.pending.setdefault(patch.module, []).append(recipe)  # applied when its module is imported
        return recipe

    def _fallback(self, kind: str) -> str:
        return self.settings.get(f"heal.fallback.{kind}") or "none"

    def _fired(self, guard: Guard) -> None:
        """A guard took its fallback: journal it (once per guard), and trace where its value goes under --shadow.
        Never raises: the guarded program goes on whatever happens here."""
        if id(guard) in self.fired or self.session is None:
            return
        self.fired.add(id(guard))
        try:
            self._journal_firing(guard)
        except Exception as exc:
            self.session.internal_error("heal", f"journaling the firing of {guard.label}", exc)

    def _journal_firing(self, guard: Guard) -> None:
        assert self.session is not None
        from . import guards, synth

        between = (guards.helper.__code__.co_filename, synth.synthesise.__code__.co_filename)
        caller = sys._getframe(2)  # the guard <- _fired <- here
        while caller.f_code.co_filename in between and caller.f_back is not None:  # fire <- helper(s) <- guarded
            caller = caller.f_back
        where = f"{_short(caller.f_code.co_filename)}:{caller.f_lineno}"
        value = "None" if guard.fallback == "none" else guard.fallback
        outcome = {"skip": "statement skipped", "return": f"the function returns {value}"}.get(guard.recovery, value)
        self.session.emit("heal", "fired", guard.label, severity="notice", where=where,
                                  function=caller.f_code.co_qualname,
                                  message=f"guard fired: {guard.label} -> {outcome}",
                                  details={"recovery": guard.recovery})
        if self.settings.get("heal.shadow"):
            self._shadow(guard, caller)

    def _shadow_crash(self, exc: BaseException) -> None:
        """--shadow: a crash on the kind of value guards have been producing may be their doing."""
        text = str(exc)
        fallback = "none" if "'NoneType'" in text else "zero" if isinstance(exc, ZeroDivisionError) else None
        suspects = [f"{g.label} ({g.hits} time{'s' * (g.hits != 1)})" for p in self.patches.values()
                    for g in p.guards if g.hits and g.fallback == fallback]
        if suspects:
            self.started().emit(
                "heal", "shadow", type(exc).__name__, severity="warning", where="",
                message=f"shadow: {type(exc).__name__}: {exc}: guards produced "
                        f"{'None' if fallback == 'none' else '0'} before this crash and may have caused it: "
                        + ", ".join(suspects))

    def _shadow(self, guard: Guard, frame: Any) -> None:
        """--shadow: follow the fallback from the guarded instruction (shadow.py) and say where it goes."""
        from . import shadow
        from .analyse import instructions
        from .guards import fallback_value

        found = next(((p, p.sites[i]) for p in self.patches.values() for i, g in enumerate(p.guards) if g is guard),
                     None)
        if found is None:
            return
        patch, site = found
        start = shadow.fallback_position(site, instructions(patch.original))
        if start is None:
            return

        def caller_site(caller: Any) -> tuple[CodeType, int] | None:
            code = caller.f_code
            if not self.is_program_file(code.co_filename):
                return None
            # a caller's f_lasti may point into its CALL's inline cache: the CALL is the last instruction before it
            index = max(n for n, ins in enumerate(instructions(code)) if ins.offset <= caller.f_lasti)
            known = self.patches.get(id(code))
            return (known.original, _original_index(known.inserted, index)) if known is not None else (code, index)

        try:
            trail = shadow.follow(patch.original, start[0], start[1], fallback_value(guard.fallback), frame,
                                  caller_site)
        except Exception as exc:  # the walk is advice: it never breaks the run
            trail = shadow.Trail()
            trail.end = f"not followed ({type(exc).__name__}: {exc})"
        value = "None" if guard.fallback == "none" else guard.fallback
        self.started().emit(
            "heal", "shadow", guard.label, severity="warning" if trail.worry else "notice",
            where=f"{_short(frame.f_code.co_filename)}:{frame.f_lineno}", function=frame.f_code.co_qualname,
            message=f"shadow: the {value} from {guard.label} goes: {trail.text()}",
            details={"trail": trail.hops, "end": trail.end, "worry": trail.worry})

    def _unhealed(self, exc: BaseException, reason: str, where: str | None, function: str = "") -> None:
        self.started().emit("heal", "unhealed", type(exc).__name__, severity="error",
                                  where=where or "", function=function,
                                  message=f"unhealed {type(exc).__name__}: {exc}: {reason}")

    def _may_rerun(self, session: Session) -> tuple[bool, str, str, list[str]]:
        """(re-run?, why not, the reason's key, the side effects seen): one rule for `run --heal` and `watch`."""
        if session.attempt > self.retries:
            return False, f"--retries {self.retries} used up", "retries", []
        blocker = session.rerun_blocker()
        if blocker:
            return False, f"{blocker}, so a clean start cannot be made", "no_clean_start", []
        effects = side_effects([e.to_json() for e in session.journal.events])  # this process: this attempt
        if self.settings.get("heal.rerun_side_effects"):
            if effects:
                session.journal.emit("heal", "rerun.side_effects", "rerun", severity="warning", where="",
                                     message="--rerun-side-effects: these will happen again: " + "; ".join(effects))
            return True, "", "", effects
        if not any(e.name == "sandbox" for e in session.engines):
            return False, "the sandbox is off (--mode off), so pyward cannot tell whether the crashed attempt had " \
                          "side effects (--rerun-side-effects re-runs anyway)", "no_sandbox", []
        if effects:
            more = f" and {len(effects) - 3} more" if len(effects) > 3 else ""
            return False, "the crashed attempt had side effects: " + "; ".join(effects[:3]) + more + \
                " (--rerun-side-effects re-runs anyway)", "side_effects", effects
        return True, "", "", []

    def skipped_block(self, exc: BaseException, label: str) -> None:
        self.started().emit("heal", "block_skipped", label, severity="warning",
                                  message=f"the rest of the `with pyward.resilient()` block was skipped after "
                                          f"{type(exc).__name__}: {exc}; later runs of it use the patch")

    # -- where a crash comes from ----------------------------------------------

    def _server_called(self, tb: TracebackType | None, frame_tb: TracebackType) -> bool:
        """`frame_tb`'s function was called by code that is not the program's (the server or
        framework serving a request): the outermost program frame of the traceback."""
        while tb is not None and not self.is_program_file(tb.tb_frame.f_code.co_filename):
            tb = tb.tb_next
        return tb is frame_tb

    def _program_frame(self, tb: TracebackType | None) -> TracebackType | None:
        """The innermost traceback entry, if it is the program's own code."""
        last = None
        while tb is not None:
            last = tb
            tb = tb.tb_next
        if last is None or not self.is_program_file(last.tb_frame.f_code.co_filename):
            return None
        return last

    def is_program_file(self, filename: str) -> bool:
        if filename.startswith("<") and filename != "<string>" and filename != "<stdin>":
            return False
        if not self._excludes:
            self._excludes = library_dirs()
        real = os.path.realpath(filename) if not filename.startswith("<") else filename
        return not any(real.startswith(d) for d in self._excludes)

    # -- recipes at import -----------------------------------------------------

    def _patch_tree(self, code: CodeType, module: str, filename: str) -> CodeType:
        recipes = [r for r in self.pending.get(module, ()) if _same_file(r.file, filename) or module != "__main__"]
        if not recipes:
            return code
        by_name: dict[str, list[Recipe]] = {}
        for r in recipes:
            by_name.setdefault(r.qualname, []).append(r)
        return self._patch_code(code, by_name, module)

    def _patch_code(self, code: CodeType, by_name: dict[str, list[Recipe]], module: str,
                    memo: dict[int, CodeType] | None = None) -> CodeType:
        if memo is not None and id(code) in memo:  # code shared by several functions (closures): patched once
            return memo[id(code)]
        new = code
        recipes = by_name.get(code.co_qualname)
        if recipes:
            new = self._apply(code, recipes, module)
        consts = list(new.co_consts)
        changed = False
        for i, const in enumerate(consts):
            if hasattr(const, "co_code"):
                inner = self._patch_code(const, by_name, module, memo)
                if inner is not const:
                    consts[i], changed = inner, True
        if changed:
            patch = self.patches.pop(id(new), None)
            new = new.replace(co_consts=tuple(consts))
            if patch is not None:
                patch.current = new
                self.patches[id(new)] = patch
        if memo is not None:
            memo[id(code)] = new
        return new

    def _apply(self, code: CodeType, recipes: list[Recipe], module: str) -> CodeType:
        """Re-synthesise and re-verify stored recipes on `code`: a function's
        original, or code this process already guarded (the recipes are added
        to its guards: another worker saved them)."""
        from .analyse import Site, Unhealable
        from .guards import Guard, fallback_value, helper
        from .recovery import plan as plan_recovery
        from .synth import RefusedPatch, code_hash, synthesise

        session = self.session
        assert session is not None
        existing = self.patches.get(id(code))
        if existing is not None:
            have = {(s.index, s.kind) for s in existing.sites}
            have_ids = {r.id for r in existing.recipes if r is not None}
            recipes = [r for r in recipes if r.id not in have_ids
                       and (r.site_data()["index"], r.kind) not in have]
            if not recipes:
                return code
            code = existing.original
        digest = code_hash(code)
        fresh = [r for r in recipes if r.code_hash == digest]
        for r in recipes:
            if r.code_hash != digest and r.id not in self.said:
                self.said.add(r.saved_id())
                session.emit("heal", "stale", r.qualname, severity="notice", where="",
                                     message=f"stale patch not applied: {r.label()}: {r.qualname} changed since the "
                                             f"patch was made (fixed?); `pyward rollback {r.qualname}` removes it")
        if not fresh:
            return existing.current if existing is not None else code
        patch = existing or Patch(code, module)
        sites, guards = list(patch.sites), list(patch.guards)
        kept = []
        for r in fresh:
            site = Site.from_json(r.site_data())
            if site.kind == "type_coercion_guard" and not site.catches:  # none stored: the exception's type
                site.catches = r.exception.split(":", 1)[0]
            try:  # the recovery is chosen again from the code, as the guard is built again
                site.plan = plan_recovery(code, site)
            except Unhealable as reason:
                if r.id not in self.said:
                    self.said.add(r.saved_id())
                    session.emit("heal", "dropped", r.qualname, severity="warning", where="",
                                         message=f"stored patch not applied: {r.label()}: {reason}; "
                                                 f"`pyward rollback {r.id}` removes it")
                continue
            site.plan.value = fallback_value(r.fallback)
            sites.append(site)
            guards.append(Guard(r.kind, r.operand, r.fallback, self._fired, r.label(), site.plan.recovery,
                                site.catches))
            kept.append(r)
        fresh = kept
        if not fresh:
            return existing.current if existing is not None else code
        lookup = dict(zip(map(id, sites), guards))
        try:
            new, inserted = synthesise(code, sites, lambda s, link: helper(link.kind, lookup[id(s)], link.detail,
                                                                             link.method))
        except RefusedPatch as refusal:
            session.emit("heal", "refused", code.co_qualname, severity="warning", where="",
                                 message=f"stored patch for {code.co_qualname} not applied: {refusal}")
            return patch.current
        patch.sites, patch.guards, patch.recipes = sites, guards, [*patch.recipes, *fresh]
        if existing is not None:  # live code: every function running it changes now
            self._swap(patch, new, inserted)
        else:
            patch.current, patch.inserted = new, inserted
            self.patches[id(new)] = patch
        for r in fresh:
            if r.id not in self.said:
                self.said.add(r.saved_id())
                session.emit("heal", "already_healed", r.qualname, severity="notice", where="",
                                     message=f"already healed: {r.label()}",
                                     details={"recipe": r.id, "kind": r.kind, "operand": r.operand})
        return new

    def _patch_loaded_module(self, module: Any, recipes: list[Recipe] | None = None) -> None:
        """Patch the functions of a module already imported: before the engine
        started (rare), or with recipes another process saved (`refresh`)."""
        name = getattr(module, "__name__", "")
        by_name: dict[str, list[Recipe]] = {}
        for r in self.pending.get(name, ()) if recipes is None else recipes:
            by_name.setdefault(r.qualname, []).append(r)
        memo: dict[int, CodeType] = {}
        for f in _functions(getattr(module, "__file__", None) or "", name):
            new = self._patch_code(f.__code__, by_name, name, memo)
            if new is not f.__code__:
                with self.started().acting("heal"):
                    f.__code__ = new

    def refresh(self) -> None:
        """Apply the recipes other processes saved since this one last looked:
        the workers of a server share one store.  Called at request
        boundaries; reads the store at most every `heal.sync_interval` seconds."""
        now = time.monotonic()
        if now < self.sync_due:
            return
        self.sync_due = now + self.sync_interval
        if not os.path.exists(self.store_path):
            return
        with self._lock:
            try:
                saved = self._open_store().for_python(after=self._synced)
            except Exception:  # a store another process is creating, a locked file: next time
                return
            self._synced = max([self._synced, *(r.saved_id() for r in saved)])  # this process's own recipes included
            new = [r for r in saved if r.id not in self.known]
            for r in new:
                self.known.add(r.saved_id())
                self.pending.setdefault(r.module, []).append(r)  # modules not imported yet: at their import
            for name in {r.module for r in new if r.module in sys.modules}:
                self._patch_loaded_module(sys.modules[name], [r for r in new if r.module == name])

    def _wants(self, module: str) -> bool:
        return module in self.pending

    def _rewrite(self, code: CodeType, module: str) -> CodeType:
        return self._patch_tree(code, module, code.co_filename)


def _install(old: CodeType, new: CodeType) -> bool:
    """Swap `old` for `new` in every function running it and in the code of
    every function that encloses it (closures, lambdas, comprehensions made
    later).  False when `old` is a module-level function's or a method's
    code and no function runs it: then nothing will run `new`."""
    import gc
    import types

    from .synth import replace_const

    if "<locals>" not in old.co_qualname and not old.co_name.startswith("<"):
        # not nested in a function (module-level functions, methods, class bodies): only the functions running it.
        # gc.get_referrers scans in C; a whole-heap walk in Python costs ~5 ms per heal in a Flask worker
        changed = False
        for f in [*gc.get_referrers(old), *_frozen_functions(old.co_filename)]:
            if type(f) is types.FunctionType and f.__code__ is old:
                f.__code__ = new
                changed = True
        return changed or not old.co_flags & _CO_OPTIMIZED  # a class body runs once: no function to change
    # nested: the enclosing functions' code holds it in its constants, which the gc does not track
    for f in _functions(old.co_filename):
        if f.__code__ is old:
            f.__code__ = new
            continue
        outer = replace_const(f.__code__, old, new)
        if outer is not None:
            f.__code__ = outer
    return True


_CO_OPTIMIZED = 0x1  # inspect.CO_OPTIMIZED: a function's code (not a module's or a class body's)


def _functions(filename: str, module: str | None = None) -> list[FunctionType]:
    """Every function object the program can reach made from code in
    `filename`, or, given `module`, defined in that module (loaded from `filename`)."""
    import gc
    import types

    def wanted(f: FunctionType) -> bool:
        return f.__code__.co_filename == filename if module is None else f.__module__ == module

    found = [o for o in gc.get_objects() if type(o) is types.FunctionType and wanted(o)]
    known = set(map(id, found))
    return [*found, *(f for f in _frozen_functions(filename) if wanted(f) and id(f) not in known)]


def _frozen_functions(filename: str) -> list[FunctionType]:
    """After gc.freeze() (pre-forking servers call it so that workers share
    the parent's memory), the objects it froze are in none of the lists
    gc.get_referrers and gc.get_objects scan.  Then the functions of
    `filename` are looked for where a program keeps them: the namespaces of
    the modules loaded from it, their classes, the dicts, lists and tuples
    they hold, and what decorators wrap (__wrapped__, closures,
    staticmethod, classmethod, property, partial).
    Unfreezing instead would copy every page the workers share."""
    import functools
    import gc
    import types

    if not gc.get_freeze_count():
        return []
    modules = [m for m in list(sys.modules.values()) if getattr(m, "__file__", None) == filename]
    names = {m.__name__ for m in modules}
    todo: list[Any] = [v for m in modules for v in list(vars(m).values())]
    seen: set[int] = set()
    found = []
    while todo:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if type(obj) is types.FunctionType:
            if obj.__code__.co_filename == filename:
                found.append(obj)
            todo.extend(cell.cell_contents for cell in obj.__closure__ or () if _filled(cell))
            wrapped = getattr(obj, "__wrapped__", None)
            if wrapped is not None:
                todo.append(wrapped)
        elif isinstance(obj, type):
            if obj.__module__ in names:
                todo.extend(vars(obj).values())
        elif type(obj) in (dict, list, tuple):  # a registry of handlers
            todo.extend(obj.values() if type(obj) is dict else obj)
        elif isinstance(obj, (staticmethod, classmethod, types.MethodType)):
            todo.append(obj.__func__)
        elif isinstance(obj, property):
            todo.extend(f for f in (obj.fget, obj.fset, obj.fdel) if f is not None)
        elif isinstance(obj, functools.partial):
            todo.append(obj.func)
    return found


def _filled(cell: Any) -> bool:
    try:
        _ = cell.cell_contents
    except ValueError:  # an empty cell
        return False
    return True


_RUNTIME_NOTE = "; for this process only: the code was compiled while the program ran (exec()/compile()), " \
                "so the guard is not stored"


def _in_tree(top: CodeType, code: CodeType) -> bool:
    """Whether `code` is `top` or nested in its constants."""
    todo = [top]
    while todo:
        current = todo.pop()
        if current is code:
            return True
        todo.extend(c for c in current.co_consts if hasattr(c, "co_code"))
    return False


def side_effects(events: list[dict[str, Any]]) -> list[str]:
    """The program's writes, connections and process starts among `events`
    (JSON dicts), as the sandbox journaled them; python's own bytecode cache is
    not the program's side effect."""
    out = []
    for event in events:
        if event.get("engine") == "sandbox" and event.get("kind") in ("observed", "allowed", "would_deny") and \
                (event.get("details") or {}).get("permission") in SIDE_EFFECT_PERMISSIONS and \
                not (event.get("where") or "").startswith("<frozen importlib") and \
                "__pycache__" not in (event.get("name") or ""):
            out.append(f"{event.get('message')} at {event.get('where')}")
    return out


def _original_index(inserted: list[int], patched_index: int) -> int:
    """The index in the original code of an instruction of the guarded code (`inserted`: the guards' indices)."""
    return patched_index - sum(1 for n in inserted if n < patched_index)


def _index_at(code: CodeType, offset: int) -> int:
    from .analyse import index_of_offset, instructions

    return index_of_offset(instructions(code), offset)


def _module_name(space: dict[str, Any]) -> str:
    """The name a module's recipes are filed under: its import name (also
    for `-m`, whose __name__ is __main__), or __main__ for a script."""
    spec = space.get("__spec__")
    return getattr(spec, "name", None) or space.get("__name__") or "__main__"


def _same_file(a: str, b: str) -> bool:
    return a == b or os.path.realpath(a) == os.path.realpath(b)

