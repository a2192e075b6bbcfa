"""Run a program exactly as `python` would, inside one guarded session.

What "exactly" means here, checked by tests/test_runner_fidelity.py against plain
python on every supported version:

* `sys.argv`, `sys.path[0]` (the script's real directory; the cwd for `-m`;
  '' for `-c` and stdin; nothing under `-P`/PYTHONSAFEPATH), and a fresh
  `__main__` module with the same globals, in the same order, as python's;
* scripts are compiled and executed directly; `-m`, directories and zip
  files go through `runpy._run_module_as_main`, as python does, so even the
  `<frozen runpy>` frames of their tracebacks are the same;
* an escaping exception propagates out of pyward unchanged, so python itself
  prints it, sets the exit status (1; death by SIGINT for
  KeyboardInterrupt) and runs `atexit`.  A one-shot `sys.excepthook` shim
  drops pyward's own frames from the traceback first.

The session registers its end-of-run work with `atexit` *before* the program
runs; atexit is last-in first-out, so the report is written after the
program's own exit handlers, and the summary is the last line.
"""
from __future__ import annotations

import atexit
import os
import sys
import time

from ._isolation import isolate_builtins, isolate_module
from ._version import __version__
from .config import display_path
from .imports import ImportHook
from .journal import ConsoleSink, Journal, JsonlSink, iso_time, stderr_writer, summarize

isolate_builtins(globals())

os = isolate_module(os)  # noqa: F811
time = isolate_module(time)  # noqa: F811 - freezegun must not stamp the journal
_getframe = sys._getframe  # the program may delete or replace it (monkeypatch.delattr)

TYPE_CHECKING = False  # importing typing costs milliseconds of startup
if TYPE_CHECKING:
    from importlib.abc import Loader
    from types import CodeType
    from typing import Any, Callable

    from .config import Settings
    from .imports import Rewrite


class TargetError(Exception):
    """The program cannot be started; `status` is python's own exit status for it.

    `python_line` is the line python itself prints for the same failure, when
    there is one: pyward prints that, unprefixed, where python would."""

    def __init__(self, message: str, status: int, python_line: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.python_line = python_line


class Target:
    """What to run: kind is script, module, code or stdin (`-`); server: a
    process pyward did not start, guarded by a server integration (integrations/)."""

    __slots__ = ("kind", "value", "args")

    def __init__(self, kind: str, value: str, args: list[str] | tuple[str, ...] = ()) -> None:
        if kind not in ("script", "module", "code", "stdin", "server"):
            raise ValueError(kind)
        self.kind, self.value, self.args = kind, value, list(args)

    def describe(self) -> str:
        return {"script": self.value, "module": f"-m {self.value}", "code": "-c ...", "stdin": "- (stdin)",
                "server": f"{self.value} (server integration)"}[self.kind]

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "value": self.value, "args": self.args}


#: Engine modules in start order, each exposing `make_engine(settings) -> Engine | None`
#: (None when its settings leave it off; not `engine`, which the package's engine.py
#: replaces once it is imported) and, when the engine writes files of
#: its own while the program runs, `outputs(settings, cwd) -> list[str]`.
#: Modules are imported only here, at session start; keep their package
#: __init__ light.  The sandbox starts first so that tamper can seal its
#: wrappers; heal starts last.
ENGINES: tuple[str, ...] = (
    # sandbox
    "pyward.sandbox",

    # tamper
    "pyward.tamper",
    # heal
    "pyward.heal",
)


#: Adapters into libraries a program imports, by the engine they serve: while
#: that engine runs, `install(engine, module)` of the adapter module (or the
#: function named after a colon) is called once the program has imported the
#: library (imported only then, by name).
ADAPTERS: tuple[tuple[str, str, str], ...] = (
    ("heal", "http.server", "pyward.integrations.httpserver"),
    ("heal", "wsgiref.handlers", "pyward.integrations.servers"),
    ("heal", "werkzeug.serving", "pyward.integrations.servers:install_werkzeug"),
    ("heal", "gunicorn.workers.base", "pyward.integrations.servers:install_gunicorn"),
    ("heal", "uvicorn.config", "pyward.integrations.servers:install_uvicorn"),
    ("heal", "waitress.server", "pyward.integrations.servers:install_waitress"),
    ("heal", "hypercorn.app_wrappers", "pyward.integrations.servers:install_hypercorn"),
    ("heal", "aiohttp.web", "pyward.integrations.servers:unsupported"),
    ("heal", "tornado.web", "pyward.integrations.servers:unsupported"),
)


#: Set while a session guards this process without the heal engine: a server
#: integration calls it to say once that it does not heal.  Sealed (reach.c):
#: the program can call it, not reach the session through it; pyward keeps no
#: other module-level way to its session.
unhealed_integration: Callable[[], None] | None = None


def _module(name: str) -> Any:
    """importlib.import_module(name) for an absolute name, without importing importlib
    (and warnings) into every run: ~1.7 M instructions, and modules python's own run lacks."""
    __import__(name)
    return sys.modules[name]


def engines_for(settings: Settings) -> list[Engine]:
    engines = []
    for name in ENGINES:
        engine = _module(name).make_engine(settings)
        if engine is not None:
            engines.append(engine)
    return engines


def outputs_for(settings: Settings, cwd: str) -> list[str]:
    """The files pyward's engines write while the program runs (their `outputs`)."""
    paths: list[str] = []
    for name in ENGINES:
        outputs = getattr(_module(name), "outputs", None)
        if outputs is not None:
            paths += outputs(settings, cwd)
    return paths


class Engine:
    """What an engine provides to a session (see sandbox/, tamper/, heal/).

    `start` runs before the program's first line, `stop` after its last exit
    handler and before the report is written.  `on_crash` sees an exception
    escaping the program and returns True when the program should run again
    (the heal engine, after patching); the default never asks for that.
    """

    name = "engine"

    def start(self, session: Session) -> None:
        pass

    def stop(self, session: Session) -> None:
        pass

    def on_crash(self, session: Session, exc: BaseException) -> bool:
        return False

    def prepare_code(self, session: Session, code: Any, module: str) -> Any:
        """The code of the script (module `__main__`) about to run, possibly
        transformed (the heal engine applies stored patches); on every attempt."""
        return code

    def program_starts(self, session: Session, code: Any) -> None:
        """The program's first instruction is next, in this frame: `code` is the
        code object about to be executed, or None when runpy runs the target
        (-m, a directory, a zip file), as python itself does.  Nothing of
        pyward runs between this call and the program (the compile of a
        script came before it)."""

    def exit_status(self, session: Session, status: int) -> int:
        """The exit status of a run the program completed with `status`."""
        return status

    def child_ends(self, session: Session) -> None:
        """A forked child of the program is ending: it owns no report, and nothing
        of the engine may run while its interpreter tears the modules down."""

    def child_arming(self, session: Session) -> dict[str, Any] | None:
        """What a Python child the program starts needs to run this engine too (JSON data, handed to
        `pyward.<engine>.child_engine` in the child; see children.py), or None: the engine stays here.
        Asked before any engine starts: the sandbox, which arms the children, carries it."""
        return None

    #: True when `on_crash` may ask for a re-run: the session then keeps what
    #: a fresh process needs (stdin, see rerun.py) from the start.
    reruns = False


class _Adapter:
    """An adapter module's `install(engine, library)` (or the function named after a colon),
    imported when it is called."""

    __slots__ = ("adapter", "engine")

    def __init__(self, adapter: str, engine: Engine) -> None:
        self.adapter, self.engine = adapter, engine

    def __call__(self, library: Any) -> None:
        import importlib

        module, _, function = self.adapter.partition(":")
        getattr(importlib.import_module(module), function or "install")(self.engine, library)


def _thread_local() -> Any:
    import _thread

    return _thread._local()


def _sealed(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` as a callable with no way back to what it is bound to (reach.c); in degraded mode, `fn` itself."""
    from ._native import native

    return native.sealed(fn) if native is not None else fn


class Link:
    """What an engine whose code runs within the program's reach holds of its
    session (heal: the guards it synthesises run in the program's code and
    call it): the journal's emit and internal_error, `acting`, a claim on a
    sys.monitoring tool id, sealed (reach.c: callable, with no way back to
    the session), and plain values."""

    __slots__ = ("emit", "internal_error", "acting", "claim_monitoring_tool", "attempt", "cwd")

    def __init__(self, session: Session) -> None:
        self.emit = _sealed(session.journal.emit)
        self.internal_error = _sealed(session.journal.internal_error)
        self.acting = _sealed(session.acting)
        self.claim_monitoring_tool = _sealed(session.monitoring_tools.__setitem__)
        self.attempt, self.cwd = session.attempt, session.cwd


class _Acting:
    __slots__ = ("local", "engine", "previous")

    def __init__(self, local: Any, engine: str) -> None:
        self.local, self.engine, self.previous = local, engine, None

    def __enter__(self) -> None:
        self.previous = getattr(self.local, "engine", None)
        self.local.engine = self.engine

    def __exit__(self, *exc: object) -> None:
        self.local.engine = self.previous


def _python_abspath(path: str) -> str:
    """CPython's _Py_abspath: join with the cwd, without normalising."""
    return path if os.path.isabs(path) else os.path.join(os.getcwd(), path)


class _Prepared:
    """A resolved target: how to execute it and what __main__ must look like."""

    __slots__ = ("argv", "path0", "code", "file", "filename", "loader", "run_module", "alter_argv", "transform",
                 "starts")

    def __init__(self) -> None:
        self.argv: list[str] = []
        self.path0: str | None = None
        self.code: str | bytes | CodeType | None = None  # source, or the code of a .pyc
        self.file: str | None = None  # __file__, for scripts only
        self.filename = ""  # what the code is compiled as
        self.loader: Loader | None = None
        self.run_module: str | None = None
        self.alter_argv = False
        self.transform: Callable[[Any], Any] | None = None  # applied to the compiled script
        self.starts: Callable[[Any], None] | None = None  # told the code that runs next (Engine.program_starts)


def prepare(target: Target) -> _Prepared:
    """Resolve `target` without running any of its code.

    Raises TargetError with python's exit status for a script that cannot be
    opened.  Syntax errors are *not* raised here: python reports them as a
    traceback from the run, and so does pyward.
    """
    p = _Prepared()
    if target.kind == "module":
        p.argv = ["-m", *target.args]
        p.path0 = os.getcwd()
        p.run_module, p.alter_argv = target.value, True
        return p
    if target.kind in ("code", "stdin"):
        p.argv = ["-c" if target.kind == "code" else "-", *target.args]
        p.path0 = ""
        p.filename = "<string>" if target.kind == "code" else "<stdin>"
        return p
    script = target.value
    p.argv = [script, *target.args]
    absolute = _python_abspath(script)
    if os.path.isdir(script) or (not script.endswith(".py") and _is_zip(script)):
        p.path0 = absolute
        p.run_module = "__main__"
        return p
    p.path0 = os.path.dirname(os.path.realpath(script))
    p.file = p.filename = absolute
    return p


def _is_zip(path: str) -> bool:
    try:
        import zipimport

        zipimport.zipimporter(path)
    except (ImportError, OSError):
        return False
    return True


def _read_script(p: _Prepared) -> None:
    """Load the script's code like python does (source or .pyc)."""
    # importlib.machinery's classes, from where it takes them (importing importlib costs every run)
    from _frozen_importlib_external import SourceFileLoader, SourcelessFileLoader

    assert p.file is not None
    try:
        with open(p.file, "rb") as f:
            data = f.read()
    except OSError as exc:
        message = f"can't open file {p.file!r}: [Errno {exc.errno}] {exc.strerror}"
        raise TargetError(message, 2, f"{sys.executable}: {message}") from None
    if p.file.endswith(".pyc"):
        import marshal
        from importlib.util import MAGIC_NUMBER

        if data[:4] != MAGIC_NUMBER:
            raise TargetError(f"can't run {p.file!r}: bad magic number in .pyc file", 1)
        p.code = marshal.loads(data[16:])
        p.loader = SourcelessFileLoader("__main__", p.file)
    else:
        p.code = data
        p.loader = SourceFileLoader("__main__", p.file)


def _fresh_main(p: _Prepared) -> Any:
    """A new __main__ module with python's globals, in python's order."""
    import builtins
    from _frozen_importlib import BuiltinImporter  # importlib.machinery's, without importing importlib

    main: Any = type(sys)("__main__")  # a module (gets attributes ModuleType does not declare)
    main.__loader__ = BuiltinImporter
    main.__annotations__ = {}
    main.__builtins__ = builtins
    if p.file is not None:
        main.__loader__ = p.loader
        main.__file__ = p.file
        main.__cached__ = None
    sys.modules["__main__"] = main
    return main


def exit_at_once(status: int, session: Session | None = None, reason: str = "") -> None:
    """End the process now (os._exit, no atexit, no finally), after flushing the
    program's stdout and stderr; with a session, its report is written first.
    For engines that must stop a run where no exception can be raised."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    if session is not None:
        session.record_exit(status, reason)
        session.finish()
    os._exit(status)


def system_exit_status(code: object) -> int:
    """The process exit status python derives from SystemExit(code)."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    return 1


class Session:
    """One guarded run: settings, journal and sinks, engines, the report."""

    def __init__(self, settings: Settings, target: Target, invocation: list[str]) -> None:
        from ._native import error as native_error

        self.settings = settings
        self.target = target
        self.invocation = invocation
        self.journal = Journal()
        self.console: ConsoleSink | None = None
        self.engines: list[Engine] = []
        self.native_error = native_error
        self.cwd = os.getcwd()
        self.pid = os.getpid()
        self.start_time = time.time()
        self._start_clock = time.monotonic()
        self.exit_status: int | None = None
        self.exit_reason = "running"
        self.report_path: str | None = None
        self.report_written = False
        self.identity: dict[str, Any] = {}
        self.policy: dict[str, Any] = {}
        self.checkpoints: Any = None  # checkpoint.CheckpointSink while the report path holds the journal
        self.recorder: Any = None  # recorder.Wire: the process that keeps the record, when there is one
        #: pids the program may not signal (the recorder's): the sandbox denies it
        self.protected_pids: tuple[int, ...] = ()
        self.otel: Any = None  # integrations.otel.OtelSink with --otel
        self.program_dir = self.cwd  # the script's directory (sys.path[0]), set by start()
        self._finished = False
        self._original_main = sys.modules.get("__main__")
        #: (namespace, attribute, why) that an engine installed and wants the
        #: tamper engine to seal, e.g. the sandbox's wrapper of fork_exec.
        self.protected: list[tuple[object, str, str]] = []
        #: Files pyward itself writes while the program runs (the report, the
        #: log, an engine's store), filled in before any engine starts: the
        #: sandbox lets pyward write them and tells the program's writes apart.
        self.outputs: list[str] = []
        #: sys.monitoring tool ids pyward's engines hold (id -> name): not news to the tamper engine.
        self.monitoring_tools: dict[int, str] = {}
        #: the sandbox's layers in force (audit hooks, kernel wall), for the report's run metadata
        self.layers: dict[str, Any] = {}
        #: what Python children need to run engines other than the sandbox (Engine.child_arming), and
        #: whether the sandbox arms them (it carries this to them)
        self.child_arming: dict[str, Any] = {}
        self.children_armed = False
        #: a session of a Python child of a guarded run (children.py): no report, no run-end line of its own
        self.child = False
        self._acting = _thread_local()
        self._said_unhealed = False  # the notice of unhealed_integration, said once
        #: what a re-run in a fresh process needs (rerun.py): the environment as
        #: the run started (engines may change it), the attempt this process
        #: runs, the channel to the supervisor when it is a re-run, stdin
        self.start_env = dict(os.environ)
        self._imports: ImportHook | None = None
        self.attempt = 1
        self.channel: int | None = None
        self.tap: int | None = None
        self.stdin: Any = None

    # -- cooperation between engines ------------------------------------------

    def protect(self, namespace: object, attribute: str, why: str) -> None:
        """Ask for `namespace.attribute` (installed by pyward) to be sealed."""
        self.protected.append((namespace, attribute, why))

    def acting(self, engine: str) -> _Acting:
        """`with session.acting("heal"):` marks changes made in this thread as
        pyward's own, so the tamper engine authorises them by construction."""
        return _Acting(self._acting, engine)

    def link(self) -> Link:
        """This session as an engine within the program's reach holds it (see Link)."""
        return Link(self)

    def acting_engine(self) -> str | None:
        """The engine acting in this thread (see `acting`), or None."""
        return getattr(self._acting, "engine", None)

    def _unhealed_integration(self) -> None:
        if not self._said_unhealed:
            self._said_unhealed = True
            self.journal.emit("heal", "off", "integrations", severity="notice", where="",
                              message="the server integration does not heal: this run has no --heal")

    # -- lifecycle -----------------------------------------------------------

    def open(self, stdin_code: bytes | None = None) -> None:
        s = self.settings
        if not s["quiet"]:
            threshold = ("notice", "info", "debug")[min(s["verbose"], 2)]
            self.console = ConsoleSink(threshold, s["color"], group=not s["verbose"])
            self.journal.add_sink(self.console)
        if self.channel is not None or self.tap is not None:
            from .rerun import FdSink

            for fd in (self.channel, self.tap):
                if fd is not None:
                    self.journal.add_sink(FdSink(fd))
        if s["log"] and self.channel is None:  # a re-run's events reach the log through its supervisor
            try:
                self.journal.add_sink(JsonlSink(s["log"]))
            except OSError as exc:
                raise TargetError(f"cannot open log file {s['log']}: {exc.strerror or exc}", 2) from None
        report = s["report"] if self.channel is None else False  # a re-run: the supervisor writes the report
        if report is True:
            stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(self.start_time))
            self.report_path = os.path.join(self.cwd, ".pyward", "reports", f"{stamp}-{self.pid}.json")
            keep = s.get("keep_reports", 50)
            if keep:  # before the sandbox starts: this is pyward's own housekeeping, not the program's
                prune_reports(os.path.dirname(self.report_path), keep - 1)
        elif report:
            self.report_path = os.path.abspath(report)
        self.outputs += self._own_outputs()
        self._open_record()  # (its policy revision binds digest.SHA256 for every later hash, before the program runs)
        self._guard_exit()
        self._watch_exec()
        for engine in self.engines:
            arming = engine.child_arming(self)
            if arming is not None:
                self.child_arming[engine.name] = arming
        for engine in self.engines:
            try:
                engine.start(self)
            except TargetError:
                raise
            except Exception as exc:
                if os.environ.get("PYWARD_DEBUG"):
                    raise
                raise TargetError(f"the {engine.name} engine could not start ({type(exc).__name__}: {exc}); "
                                  "the program was not run. This is a pyward bug: PYWARD_DEBUG=1 shows the "
                                  "traceback", 70) from None
        if self.channel is None and self.target.kind != "server" and any(engine.reruns for engine in self.engines):
            from .rerun import Stdin

            self.stdin = Stdin.at_start(stdin_code)
        self._adapt()
        atexit.register(self.finish)
        if not any(engine.name == "heal" for engine in self.engines):
            global unhealed_integration
            unhealed_integration = _sealed(self._unhealed_integration)
        self.journal.emit("pyward", "run.start", self.target.describe(), severity="debug",
                          message=f"run start: {self.target.describe()}",
                          details={"target": self.target.to_json(), "cwd": self.cwd, "pyward": __version__,
                                   "python": sys.version.split()[0], "config": s.source, "attempt": self.attempt,
                                   "identity": self.identity, "policy": self.policy},
                          where="", function="")
        if self.native_error is not None:
            from ._native import DEGRADED

            self.journal.emit("pyward", "degraded", "pyward._native", severity="warning", where="", function="",
                              message=f"native extension unavailable ({self.native_error}); running degraded: "
                                      f"{DEGRADED}", details={"reason": self.native_error})

    def _guard_exit(self) -> None:
        """`os._exit(n)` ends the run as an exit does (the engines stop, a learning run writes its policy, the
        report records status n, the summary is printed), then the process ends as python's `os._exit` ends it:
        at once, without flushing the program's streams or running its atexit handlers.  Tools that end this
        way on purpose (mypy, forked workers) are common.  The guard holds the session out of the program's
        reach (sandbox.c: a guard has no referents)."""
        from ._native import native

        if native is None:
            return
        modules: list[Any] = [sys.modules.get("posix"), sys.modules.get("os")]
        original = getattr(modules[0], "_exit", None)
        if original is None or any(getattr(module, "_exit", None) is not original for module in modules):
            return
        guard = native.guard(None, original, self._exiting)
        for module in modules:
            module._exit = guard

    def _watch_exec(self) -> None:
        from ._native import native

        if native is not None and self.recorder is not None:
            native.audit_subscribe(("os.exec",), self._execing)

    def _execing(self, event: str, args: tuple[Any, ...]) -> None:
        """The program replaces itself (os.exec*): the recorder says so, rather than "killed", when no end
        comes (an exec that fails leaves the program running, and its end follows).  An audit subscriber:
        never raises into the program's call."""
        try:
            if self.journal.is_child or self.recorder is None or not args:
                return  # (a forked child's exec is its own: the run goes on)
            path = args[0]
            if type(path) is bytes:
                path = os.fsdecode(path)
            self.recorder.note_exec(path if type(path) is str else "a program")
        except Exception:
            pass

    def _exiting(self, args: tuple[Any, ...], kwargs: dict[str, Any] | None) -> tuple[tuple[Any, ...], Any]:
        """The program calls `os._exit(*args)`: finish the run first (when the call is one that exits)."""
        if self._finished or kwargs or len(args) != 1 or type(args[0]) not in (int, bool):
            return args, kwargs  # python's own TypeError, or a status only its __index__ can give: as it is
        try:
            if self.journal.is_child:  # a forked child (a pool's worker): the parent's run goes on
                self.finish()
                return args, kwargs
            status = args[0] & 0xFF  # what the parent of the process will see
            judged = self.judge_exit(status)
            self.record_exit(judged, "os._exit")
            self.finish()
            if judged != status:
                args = (judged,)
        except BaseException as exc:  # the process ends as the program asked, whatever pyward's trouble
            try:
                self.journal.internal_error("pyward", "ending the run at os._exit", exc)
            except BaseException:
                pass
        return args, kwargs

    def _own_outputs(self) -> list[str]:
        """The log, the report and the SARIF file, with the temporary files and directories writing them makes."""
        paths = [p for p in (self.report_path, self.settings.get("log")) if p]
        sarif = self.settings.get("sarif")
        if sarif:  # --sarif, written like the report (outputs.write_sarif)
            paths += [sarif, f"{sarif}.{self.pid}.tmp"]
        if self.report_path:
            paths.append(f"{self.report_path}.{self.pid}.tmp")
            directory = os.path.dirname(self.report_path)  # makedirs touches each level, existing or not
            while directory and directory != os.path.dirname(directory) and directory != self.cwd:
                paths.append(directory)
                directory = os.path.dirname(directory)
            paths.append(os.path.join(self.cwd, ".pyward", ".gitignore"))
        return paths

    def _adapt(self) -> None:
        """Install ADAPTERS for the engines of this session: now, or when the program imports their library."""
        for name, library, adapter in ADAPTERS:
            for engine in self.engines:
                if engine.name == name:
                    self.when_imported(library, _Adapter(adapter, engine))

    def when_imported(self, module: str, callback: Callable[[Any], None]) -> None:
        """Call `callback(module)` once `module` is imported: now if it is."""
        if module in sys.modules:
            callback(sys.modules[module])
            return
        self._import_hook().watched.setdefault(module, []).append(callback)

    def rewrite_imports(self, wants: Callable[[str], bool], rewrite: Rewrite) -> None:
        """Run `rewrite(code, fullname)` on the code of every module imported from
        now on for which `wants(fullname)` is true, before that code runs."""
        self._import_hook().rewriters.append((wants, rewrite))

    def _import_hook(self) -> ImportHook:
        if self._imports is None:
            self._imports = ImportHook()
            with self.acting("pyward"):
                sys.meta_path.insert(0, self._imports)
        return self._imports

    # -- the record: identity, policy revision, sealed checkpoints (identity.py, checkpoint.py) --

    def _open_record(self) -> None:
        """Identity and policy revision for the run, then the journal on disk at
        the report path, before any engine starts (it is pyward's file)."""
        from .identity import identity, policy_revision

        s = self.settings
        self.identity = identity(s, self.target, self.pid)
        self.policy = policy_revision(s)
        self.journal.revision = self.policy["id"]
        self._open_journal()
        if s.get("otel.enabled"):  # after the recorder is forked: the exporter may start threads
            from .integrations.otel import start as start_export

            self.otel = start_export(self)
            if self.otel is not None:
                self.journal.add_sink(self.otel)

    def _open_journal(self) -> None:
        """The record at the report path: kept by the recorder process, or else
        the journal sealed by checkpoints in this process."""
        s = self.settings
        if self.report_path is None:
            return
        from .checkpoint import CheckpointSink, run_key
        from .report import SigningKeyError

        checkpoints = s.get("checkpoint.enabled", True)
        try:
            key = run_key(s) if checkpoints else None
            self._ensure_report_dir()
            if self._start_recorder(checkpoints, key):
                return
            if not checkpoints:
                return
            self.checkpoints = CheckpointSink(self.report_path, self.start_metadata(),
                                              every_events=s.get("checkpoint.events", 100),
                                              every_ms=s.get("checkpoint.interval_ms", 1000), key=key)
        except SigningKeyError as exc:
            raise TargetError(f"checkpoint key: {exc}", 2) from None
        except OSError as exc:
            self._say(f"no checkpoints: cannot write {display_path(self.report_path)}: {exc.strerror or exc}; "
                      "the report is written at exit if it can be", "error")
            return
        self.journal.add_sink(self.checkpoints)

    def _start_recorder(self, checkpoints: bool, key: bytes | None) -> bool:
        """The record kept by a process of its own (recorder.py), when one can be
        forked: the program's process then neither writes nor holds it."""
        from . import recorder

        if self.target.kind == "server" or not recorder.available():
            return False
        s = self.settings
        every = {"every_events": s.get("checkpoint.events", 100), "every_ms": s.get("checkpoint.interval_ms", 1000)}
        assert self.report_path is not None
        try:
            learn = s.get("sandbox.learn")
            lost = {"report": display_path(self.report_path), "learn": learn, "say": not s["quiet"],
                    "shown_learn": display_path(learn) if learn else None}
            self.recorder = recorder.start(self.report_path, self.start_metadata(), self._start_clock,
                                           every if checkpoints else None, key, lost)
        except OSError as exc:
            self._say(f"no recorder process ({exc.strerror or exc}): the report is written by this process", "error")
            return False
        self.journal.wire = self.recorder
        self.protected_pids = (self.recorder.pid, self.recorder.group)
        own = (self.report_path, f"{self.report_path}.{self.pid}.tmp")  # the recorder's now, not this process's
        self.outputs = [path for path in self.outputs if path not in own]
        return True

    def note_spool(self, path: str) -> None:
        """Where Python and forked children spool their sandbox events: the recorder collects them itself when
        the program is killed before its end collects them (a learning run then still writes its policy)."""
        if self.recorder is not None:
            self.recorder.note_spool(path)

    def record_exit(self, status: int, reason: str) -> None:
        self.exit_status, self.exit_reason = status, reason

    def finish(self) -> None:
        """End of run (atexit): stop engines, write the report, print the summary."""
        if self._finished:
            return
        self._finished = True
        if self.journal.is_child or self.child:  # a forked or Python child: the parent owns the report
            for engine in self.engines:
                try:
                    engine.child_ends(self)
                except Exception as exc:  # the child's exit must not fail on pyward's account
                    self.journal.internal_error(engine.name, "ending a forked child", exc)
            self.journal.close()
            return
        if self.exit_status is None:  # the program ended in a way we did not see
            self.record_exit(1, "unknown")
        for engine in reversed(self.engines):
            try:
                engine.stop(self)
            except Exception as exc:  # never let an engine hide the report
                self._say(f"{engine.name} engine failed to stop cleanly: {type(exc).__name__}: {exc}", "error")
        if self.otel is not None:
            from .integrations.otel import report as report_export

            report_export(self, self.otel)
        if self.checkpoints is not None and self.checkpoints.failed:
            self.journal.emit("pyward", "checkpoint.failed", display_path(self.report_path or ""), severity="warning",
                              where="", function="", details={"error": self.checkpoints.failed},
                              message=f"checkpoints stopped during the run: {self.checkpoints.failed}")
        self.journal.settle_repeats()
        self.journal.emit("pyward", "run.end", self.target.describe(), severity="debug", where="", function="",
                          message=f"run end: exit={self.exit_status} ({self.exit_reason})",
                          details={"exit_status": self.exit_status, "reason": self.exit_reason})
        events = list(self.journal.events)
        self.journal.close()
        data = None
        counts = None
        if self.recorder is not None:
            answer = self.recorder.end(self.exit_status, self.exit_reason)
            if answer is None:
                self._say("the recorder process ended before the run did: no report beyond the journal it sealed at "
                          f"{display_path(self.report_path or '')} (pyward verify says how far it is intact)", "error")
            else:
                self.report_written = answer.get("written") is True
                counts = answer.get("summary") if type(answer.get("summary")) is dict else None
                if self.report_written and self.settings.get("sarif"):
                    data = self._recorded_report()  # the SARIF of what was recorded, as `pyward report` gives it
                if not self.report_written:
                    self._say(f"report not written to {display_path(self.report_path or '')}: "
                              f"{answer.get('problem')}", "error")
        elif self.report_path is not None:
            try:
                data = self._write_report(events)
                self.report_written = True
            except Exception as exc:
                self._say(f"report not written to {display_path(self.report_path)}: {type(exc).__name__}: {exc}",
                          "error")
        if self.settings.get("sarif") and self.channel is None:  # a re-run's supervisor writes it
            self._write_sarif(events, data)
        if self.channel is None:  # a re-run's supervisor prints the one summary of the run
            self._say(self.summary_line(events, counts))

    def start_metadata(self) -> dict[str, Any]:
        """What is known of the run when it starts (the header of the journal on disk)."""
        return {
            "command": self.invocation,
            "target": self.target.to_json(),
            "cwd": self.cwd,
            "python": {"version": sys.version.split()[0], "implementation": sys.implementation.name,
                       "executable": sys.executable},
            "pyward": {"version": __version__, "native": self.native_error is None, "config": self.settings.source},
            "pid": self.pid,
            "identity": self.identity,
            "policy": self.policy,
            "start": iso_time(self.start_time),
        }

    def run_metadata(self) -> dict[str, Any]:
        end = time.time()
        return {
            **self.start_metadata(),
            "end": iso_time(end),
            "duration_s": round(time.monotonic() - self._start_clock, 6),
            "exit_status": self.exit_status,
            "exit_reason": self.exit_reason,
            **({"layers": self.layers} if self.layers else {}),
        }

    def _write_report(self, events: list[Any]) -> dict[str, Any]:
        from . import report

        assert self.report_path is not None
        self._ensure_report_dir()
        data = report.build(self.run_metadata(), events)
        report.write(self.report_path, data)
        return data

    def _ensure_report_dir(self) -> None:
        assert self.report_path is not None
        default_dir = os.path.join(self.cwd, ".pyward")
        if self.report_path.startswith(default_dir + os.sep) and not os.path.isdir(default_dir):
            os.makedirs(default_dir, exist_ok=True)
            with open(os.path.join(default_dir, ".gitignore"), "w") as f:
                f.write("# created by pyward\n*\n")
        os.makedirs(os.path.dirname(self.report_path), exist_ok=True)

    def _recorded_report(self) -> dict[str, Any] | None:
        """The report the recorder wrote, read back (None when it cannot be)."""
        from . import report

        try:
            return report.load(self.report_path or "")[1]
        except report.ReportError:
            return None

    def _write_sarif(self, events: list[Any], data: dict[str, Any] | None) -> None:
        from . import report
        from .outputs import write_sarif

        try:
            problem = write_sarif(self, data if data is not None else report.build(self.run_metadata(), events))
        except Exception as exc:  # never let an output change the run's end
            problem = f"SARIF not written: {type(exc).__name__}: {exc}"
        if problem:
            self._say(problem, "error")

    def summary_line(self, events: list[Any], counts: dict[str, Any] | None = None) -> str:
        """The run-end line; `counts`: the recorder's summary, else counted from `events`."""
        if counts is None:
            counts = summarize([{"engine": e.engine, "kind": e.kind, "severity": e.severity, "name": e.name,
                                 "details": e.details} for e in events],
                               self.exit_status)
        status = f"exit={self.exit_status}"
        if self.exit_reason.endswith("KeyboardInterrupt"):
            status += " (SIGINT)"
        elif self.exit_reason == "os._exit":
            status += " (os._exit)"
        parts = [f"run end: {status}", f"{counts['denied']} denied", f"{counts['tamper_alerts']} tamper alerts",
                 f"{counts['healed']} healed"]
        if counts.get("internal_errors"):
            n = counts["internal_errors"]
            parts.append(f"{n} internal error{'s' if n != 1 else ''} (pyward: see the report)")
        attempts, firings = counts.get("attempts", 0), counts.get("guard_firings", 0)
        if attempts > 1 or firings or counts["healed"]:
            parts.append(f"{attempts} attempt{'s' * (attempts != 1)}")
            parts.append(f"{firings} guard firing{'s' * (firings != 1)}")
            degraded = counts.get("degraded_runs", 0)
            parts.append(f"{degraded} run{'s' * (degraded != 1)} completed only through a fallback"
                         if degraded else "no run completed through a fallback")
        repeats = self.console.repeats if self.console is not None else 0
        if repeats:
            parts.append(f"{repeats} repeated line{'s' * (repeats != 1)} not shown")
        if self.report_written and self.report_path:
            parts.append(f"report: {display_path(self.report_path)}")
        elif self.report_path is None:
            parts.append("no report")
        return " · ".join(parts)

    def judge_exit(self, status: int) -> int:
        """The exit status of a run whose program ended with `status`: the engines', then --fail-on's
        (outputs.py); a re-run's supervisor judges the whole run, not each attempt."""
        for engine in self.engines:
            status = engine.exit_status(self, status)
        if self.channel is None and (self.settings.get("fail_on") or self.settings.get("heal.fail_on_heal")):
            from .outputs import exit_status

            status = exit_status(self, status)
        return status

    def _say(self, text: str, severity: str = "notice") -> None:
        if self.console is not None:
            self.console.say(text, severity)
        elif severity == "error":  # errors are shown even under --quiet
            stderr_writer().write_line(f"[pyward][error] {text}")

    # -- running -------------------------------------------------------------

    def rerun_blocker(self) -> str | None:
        """Why this program cannot be started again in a fresh process (rerun.py), or None."""
        from .rerun import blocker

        return blocker(self)

    def _rerun(self) -> None:
        """Start the program again in a fresh process: here when this process is
        the first attempt (it supervises the next ones), by the supervisor when it
        is a re-run (this one says so on its channel and ends).  Never returns."""
        from . import rerun

        if self.channel is None:
            rerun.supervise(self, self.attempt + 1)
        rerun.abandon_attempt()
        self.record_exit(1, "crashed; re-run requested")
        self.finish()
        os._exit(1)

    def run(self, p: _Prepared) -> int:
        """Execute the program; return 0, or let its exit propagate."""
        if p.path0 is not None and not sys.flags.safe_path:
            sys.path[0] = p.path0
        if any(type(e).prepare_code is not Engine.prepare_code for e in self.engines):
            def transform(code: Any) -> Any:
                for engine in self.engines:
                    code = engine.prepare_code(self, code, "__main__")
                return code
            p.transform = transform
        starters = [e for e in self.engines if type(e).program_starts is not Engine.program_starts]
        if starters:
            def starts(code: Any) -> None:
                for engine in starters:
                    engine.program_starts(self, code)
                if self.layers and self.recorder is not None:
                    self.recorder.note_layers(self.layers)
            p.starts = starts
        # one attempt per process: a re-run starts a fresh one (rerun.py)
        sys.argv[:] = p.argv
        _fresh_main(p)
        try:
            _execute(p)
        except SystemExit as exc:
            with self.acting("runner"):  # reading the traceback raises audit events: pyward's, not the program's
                runpy_error = _from_runpy_error(exc)
            if runpy_error:  # python's own line, as python prints it
                self.record_exit(1, "target not found")
                sys.stderr.write(f"{exc.code}\n")
                raise SystemExit(1) from None
            status = system_exit_status(exc.code)
            judged = self.judge_exit(status)
            self.record_exit(judged, f"sys.exit({exc.code!r})")
            if judged != status:
                raise SystemExit(judged) from None
            raise
        except BaseException as exc:
            if not isinstance(exc, KeyboardInterrupt) and any(e.on_crash(self, exc) for e in self.engines):
                self._rerun()  # never returns
            if isinstance(exc, KeyboardInterrupt):
                self.record_exit(130, "KeyboardInterrupt")
            else:
                self.record_exit(1, f"uncaught {type(exc).__name__}")
            with self.acting("runner"):
                _print_without_pyward_frames(exc)
            raise
        status = self.judge_exit(0)
        self.record_exit(status, "completed")
        if status:
            raise SystemExit(status)
        return 0


def prune_reports(directory: str, keep: int) -> None:
    """Keep the newest `keep` default-named reports (and their signatures) in `directory`."""
    try:
        names = sorted(n for n in os.listdir(directory) if _is_default_report_name(n))
    except OSError:
        return
    for name in names[:len(names) - keep]:
        for path in (os.path.join(directory, name), os.path.join(directory, name + ".sig")):
            try:
                os.unlink(path)
            except OSError:
                pass


def _is_default_report_name(name: str) -> bool:
    """`YYYYmmdd-HHMMSS-PID.json`, as pyward names reports by default."""
    stem, dot, ext = name.partition(".")
    parts = stem.split("-")
    return (dot == "." and ext == "json" and len(parts) == 3 and len(parts[0]) == 8 and len(parts[1]) == 6
            and all(p.isdigit() for p in parts))


def _execute(p: _Prepared) -> None:
    """The frame every program runs under; tracebacks are cut just below it.

    The program's code is called with no frame below it (reach.c): its
    bottom frame's `f_back` is None as under python (with `-m`, runpy's
    frames), so no frame of pyward's (and no way to the session) is in its
    reach.  The program gets python's recursion depth: the limit grows by
    the frames pyward occupies below it (this one included) while the
    program runs."""
    from ._native import native

    top = native.top if native is not None else _call  # degraded: pyward's frames stay linked
    limit = sys.getrecursionlimit()
    if sys.version_info >= (3, 12):  # the limit counts Python frames
        depth = 0
        frame: Any = _getframe()
        while frame is not None:
            depth += 1
            frame = frame.f_back
    else:  # 3.11 also counts each entry into the eval loop from C, which frames do not show: measure
        probe: dict[str, Any] = {}
        probe_code = compile(_DEPTH_PROBE, "<pyward depth probe>", "exec") if native is None else \
            native.compile_script(_DEPTH_PROBE, "<pyward depth probe>")
        top(exec, probe_code, probe)  # from this frame, as the program's code will run
        depth = (limit - 2) - probe["room"]  # python's own top level has limit - 2 calls of room
        if p.run_module is not None:
            depth -= 1  # python enters runpy from C, one more entry than our call into it
    sys.setrecursionlimit(limit + depth)
    hidden = _hide_frames(depth)
    try:
        if p.run_module is not None:
            import runpy

            if p.starts is not None:
                p.starts(None)
            top(runpy._run_module_as_main, p.run_module, p.alter_argv)  # type: ignore[attr-defined]  # CPython private, as -m
            return
        source = p.code
        code = source
        if isinstance(source, (str, bytes)):  # compiled here so a SyntaxError surfaces as python's would
            # as python compiles a script, without the ast module's classes compile() builds (_native/script.c);
            # inline: a SyntaxError's traceback is cut at this frame, as python shows none
            if isinstance(source, bytes) and b"\0" in source:  # python's reader stops there, before parsing
                raise _null_byte(source, p.filename)
            if native is None or (isinstance(source, str) and "\0" in source):
                code = compile(source, p.filename, "exec", dont_inherit=True)
            else:
                code = native.compile_script(source, p.filename)
            if p.filename == "<string>":
                _register_command_source(code, source)
        if p.transform is not None:
            code = p.transform(code)
        if p.starts is not None:
            p.starts(code)
        assert code is not None  # a script, a command or stdin: prepare() and start() set it
        top(exec, code, sys.modules["__main__"].__dict__)
    finally:
        if sys.__dict__.get("getrecursionlimit") is hidden[0]:
            sys.getrecursionlimit = hidden[2]
        if sys.__dict__.get("setrecursionlimit") is hidden[1]:
            sys.setrecursionlimit = hidden[3]
        if sys.getrecursionlimit() == limit + depth:  # unless the program set its own
            sys.setrecursionlimit(limit)


def _call(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


def _null_byte(source: bytes, filename: str) -> SyntaxError:
    """The error python's reader of a script file (or stdin) gives for a NUL byte: the line up to it."""
    at = source.index(b"\0")
    line = source.count(b"\n", 0, at) + 1
    text = source[source.rfind(b"\n", 0, at) + 1:at].decode("utf-8", "replace")
    return SyntaxError("source code cannot contain null bytes", (filename, line, 0, text, line, 0))


_EXECUTE_CODE = _execute.__code__  # read now: a function's __code__ is an audit event, a traced one later

#: 3.11: how many calls the program has room for, run from the frame the program's code will run from
_DEPTH_PROBE = """\
def down(n):
    try:
        return down(n + 1)
    except RecursionError:
        return n
room = down(0)
"""


def _hide_frames(depth: int) -> tuple[Any, Any, Any, Any]:
    """`sys.getrecursionlimit`/`setrecursionlimit` as the program expects them:
    the limit it reads and sets does not count pyward's own frames."""
    get, put = sys.getrecursionlimit, sys.setrecursionlimit

    def getrecursionlimit() -> int:
        return get() - depth

    def setrecursionlimit(limit: int, /) -> None:
        if not isinstance(limit, int) or limit < 1:
            put(limit)  # python's own TypeError / ValueError
        put(limit + depth)

    for wrapper, real in ((getrecursionlimit, get), (setrecursionlimit, put)):
        wrapper.__module__, wrapper.__doc__ = "sys", real.__doc__
    sys.getrecursionlimit, sys.setrecursionlimit = getrecursionlimit, setrecursionlimit
    return getrecursionlimit, setrecursionlimit, get, put


def _register_command_source(code: Any, source: str | bytes) -> None:
    """Python 3.13+ shows `-c` source lines in tracebacks: the interpreter
    registers the command with linecache, keyed by code object where
    linecache has a code-keyed cache (newer releases), by the '<string>'
    filename on 3.13.0.  Do exactly what this interpreter does."""
    import linecache

    register = getattr(linecache, "_register_code", None)
    if register is None:  # 3.11, 3.12: python does not register it
        return
    text = source if isinstance(source, str) else source.decode()
    register(code if hasattr(linecache, "_getlines_from_code") else "<string>", text, "<string>")


def _from_runpy_error(exc: SystemExit) -> bool:
    """True for runpy's own 'No module named ...' style exits, not the program's."""
    tb = exc.__traceback__
    if tb is None or not isinstance(exc.code, str) or not exc.code.startswith(f"{sys.executable}: "):
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code.co_name == "_run_module_as_main"


def _print_without_pyward_frames(exc: BaseException) -> None:
    """Arrange for python's own exception printing to skip pyward's frames.

    The exception still propagates out of pyward (so python sets the exit
    status and handles KeyboardInterrupt its way); whichever `sys.excepthook`
    is current, the program's or python's, is called once with the traceback
    starting at the program's first frame.
    """
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code is not _EXECUTE_CODE:
        tb = tb.tb_next
    clean = tb.tb_next if tb is not None else exc.__traceback__
    hook = sys.excepthook

    def excepthook(kind: type[BaseException], value: BaseException, traceback: Any) -> Any:
        sys.excepthook = hook
        if value is exc:
            # python's C printer reads the exception's own __traceback__
            traceback = value.__traceback__ = sys.last_traceback = clean
        return hook(kind, value, traceback)

    sys.excepthook = excepthook


def guard_child(settings: Settings, engines: list[Engine], spool: str | None) -> Session:
    """A session for a Python child of a guarded run, with `engines` (children.py): its events are shown
    here and spooled for the run's record (the parent's journal, report and summary); no report of its own."""
    from .spool import SpoolSink

    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    session = Session(settings, Target("server", name), list(getattr(sys, "orig_argv", sys.argv)))
    session.engines = list(engines)
    session.child = True
    if spool:
        session.journal.add_sink(SpoolSink(spool))
    session.open()
    return session


def guard_server(settings: Settings, engines: list[Engine], name: str | None = None) -> Session:
    """A session for a process pyward did not start (a server a middleware
    guards), with `engines`: opened now; its exit is recorded when the process ends."""
    if name is None:
        name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else "python"
    session = Session(settings, Target("server", name), list(sys.argv))
    session.engines = list(engines)
    session.open()
    atexit.register(session.record_exit, 0, "the server process ended")  # runs before session.finish (LIFO)
    return session


def _load(target: Target) -> _Prepared:
    """The target resolved and its code read (a script's source, -c's text, stdin's bytes, so that a coding
    cookie is honoured as python does); raises TargetError (python's exit status) when it cannot start."""
    p = prepare(target)
    if p.file is not None:
        _read_script(p)
    elif target.kind == "code":
        p.code = target.value
    elif target.kind == "stdin":
        p.code = sys.stdin.buffer.read()
    return p


def run_as_child(target: Target) -> int:
    """`pyward run` in a Python child that a guarded run already armed (children.armed: a development
    server's reloader restarting `sys.orig_argv`): the program runs as python runs it, under the run that
    armed this process (its policy, its engines, its record), whatever this command line asks: a program
    cannot loosen its own run by starting pyward again.  Raises TargetError as start() does."""
    p = _load(target)
    if p.path0 is not None and not sys.flags.safe_path:
        sys.path[0] = p.path0
    sys.argv[:] = p.argv
    _fresh_main(p)
    _execute(p)
    return 0


def start(settings: Settings, target: Target, invocation: list[str],
          engines: Callable[[Settings], list[Engine]] | None = None,
          channel: tuple[int, int | None, int | None] = (1, None, None)) -> tuple[Session, _Prepared]:
    """Resolve the target and open the session; nothing of the program runs yet.
    `channel`: (attempt, channel fd, tap fd) of a re-run or a watched run (rerun.take_channel).

    Raises TargetError (python's exit status) when the target cannot start.
    """
    p = _load(target)
    stdin_code = p.code if type(p.code) is bytes and target.kind == "stdin" else None
    session = Session(settings, target, invocation)
    session.attempt, session.channel, session.tap = channel
    session.program_dir = p.path0 or os.getcwd()
    session.engines = (engines or engines_for)(settings)
    if engines is None:
        session.outputs += outputs_for(settings, session.cwd)
    try:
        session.open(stdin_code)
    except TargetError as exc:  # the recorder, if it started, records that the program was not run
        if session.recorder is not None:
            session.recorder.end(exc.status, f"not run: {exc}"[:300])
        raise
    return session, p
