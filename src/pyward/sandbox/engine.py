"""The sandbox engine: compile the policy, build the private decider, install it.

How it holds up against the program it guards (docs/sandbox.md has more):

* the decision runs in functions re-created from `_decide` with a private
  globals dict holding only the compiled policy (tuples and strings), C-level
  functions captured now, and caches that map strings to ints; the dict and
  the functions are then untracked by the GC, and referenced only from C;
* denials are raised by C, so no pyward frame (and no way to the private
  globals) appears in a traceback;
* functions that start processes or open files without a usable audit event
  are replaced by C guards whose original cannot be reached from Python, and
  re-importing the modules they live in is denied;
* `os.environ` becomes a view whose values come from the C environment
  through the sandbox, and the startup snapshot of the environment is
  cleared, so values cannot be read around the policy.
"""
from __future__ import annotations

import _imp
import os
import sys
import types

from .._isolation import isolate_builtins, isolate_module
from ..policy import PERMISSIONS, Policy, expand, path_variables
from ..runner import Engine, TargetError, exit_at_once
from .errors import AccessDenied, ImportDenied
from .spool import child_spool, read_spool, write_spool

isolate_builtins(globals())

os = isolate_module(os)  # noqa: F811

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

MODES = {"watch": 0, "enforce": 1, "prompt": 2}
EXIT_STATUS_ON_DENY = 77  # EX_NOPERM in sysexits.h
HIDDEN_ENV = ("PYWARD_SANDBOX", "PYWARD_ORIG_PYTHONPATH")
BOOT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "boot")
# PYWARD_ORIG_PYTHONPATH holds the program's own PYTHONPATH; absent: it had none.

VERBS = {"read": "read", "write": "write to", "net": "network access to", "run": "running",
         "env": "environment variable", "ffi": "native code", "import": "importing"}
GLOB_CHARS = ("*", "?", "[")
MIME_FILES = ("/etc/mime.types", "/etc/httpd/mime.types", "/etc/httpd/conf/mime.types", "/etc/apache/mime.types",
              "/etc/apache2/mime.types", "/usr/local/etc/httpd/conf/mime.types",
              "/usr/local/lib/netscape/mime.types", "/usr/local/etc/mime.types")
SYSTEM_FILES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/etc/localtime",
                "/etc/timezone", *MIME_FILES)
#: Writing to these changes nothing anywhere: implicit, like reading the system files.
SINK_FILES = ("/dev/null",)
SYSTEM_DIRS = ("/usr/share/zoneinfo", "/usr/share/locale", "/usr/lib/locale")
#: Configuration the interpreter and the stdlib read on their own (tracebacks
#: read PYTHON_COLORS/NO_COLOR/TERM, ssl reads SSLKEYLOGFILE, tempfile TMPDIR...):
#: implicit reads, like the stdlib's files, with LC_* and PYTHON*.  Writes are
#: still checked, and none of these hold secrets by convention.
IMPLICIT_ENV = frozenset(("TERM", "NO_COLOR", "FORCE_COLOR", "COLUMNS", "LINES", "TZ", "LANG", "LANGUAGE",
                          "TMPDIR", "TEMP", "TMP", "SSLKEYLOGFILE", "SSL_CERT_FILE", "SSL_CERT_DIR"))
#: Modules whose functions the sandbox replaces by guards: a fresh copy of
#: them (re-import, importlib.util.module_from_spec) would bring the originals back.
GUARDED_MODULES = ("_posixsubprocess", "posix")
#: Modules that create subinterpreters, where the policy cannot be checked.
SUBINTERPRETER_MODULES = ("_xxsubinterpreters", "_interpreters", "_xxinterpchannels", "_interpchannels",
                          "_xxinterpqueues", "_interpqueues", "interpreters", "_testcapi", "_testinternalcapi")


def policy_candidates(cwd: str) -> list[str]:
    """Every file pyward's config discovery could read from `cwd`: the program
    must not be able to write its own policy for the next run."""
    out = []
    directory = cwd
    while True:
        out += [os.path.join(directory, "pyward.toml"), os.path.join(directory, "pyproject.toml")]
        parent = os.path.dirname(directory)
        if parent == directory:
            return out
        directory = parent


class Context:
    """What the sandbox needs to know about the run besides the policy."""

    def __init__(self, *, mode: str, on_deny: str, inherit: bool, program_dir: str, outputs: list[str],
                 emit: Callable[..., Any], exit_on_deny: Callable[[str], Any] | None, log: str | None,
                 spool: str | None = None, rerun: tuple[Any, ...] | None = None) -> None:
        self.mode, self.on_deny, self.inherit = mode, on_deny, inherit
        self.program_dir, self.outputs, self.emit = program_dir, outputs, emit
        self.exit_on_deny, self.log = exit_on_deny, log
        self.spool = spool  # where Python children report their events (see child.py)
        # (executable, argv, environment, cwd) of pyward's own re-run of the program (rerun.py), fixed before
        # the program runs: that exact process start is pyward's, not the program's
        self.rerun = rerun


class SandboxEngine(Engine):
    name = "sandbox"

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.policy = Policy.from_settings(settings)
        configured = settings.get("mode")
        self.mode = configured or ("enforce" if self.policy.configured else "watch")
        self.learn = settings.get("sandbox.learn")
        if self.learn:
            self.mode = "watch"
        check_taint(settings.source)
        self.counts: dict[str, int] = {}
        self.observations: list[tuple[str, str, str]] = []
        self.prompted: list[tuple[str, str]] = []  # (permission, scope or "*") granted at the prompt
        self.save_target: str | None = None
        self.save_digest: str | None = None
        self.session: Any = None

    def start(self, session: Any) -> None:
        self.session = session
        s = self.settings
        self.spool = child_spool(session.pid) if s.get("inherit", True) else None
        outputs = [p for p in (session.report_path, s.get("log"), self.learn, self.spool) if p]
        if s.get("sarif"):  # --sarif, written like the report (outputs.write_sarif)
            outputs += [s["sarif"], f"{s['sarif']}.{session.pid}.tmp"]
        if session.report_path:
            outputs.append(f"{session.report_path}.{session.pid}.tmp")
            directory = os.path.dirname(session.report_path)  # makedirs touches each level, existing or not
            while directory and directory != os.path.dirname(directory) and directory != session.cwd:
                outputs.append(directory)
                directory = os.path.dirname(directory)
            outputs.append(os.path.join(session.cwd, ".pyward", ".gitignore"))
        if s.get("heal.enabled"):  # the heal engine's patch store
            from ..heal import store_files, store_path

            outputs += store_files(store_path(s, session.cwd))
        if self.mode == "prompt":
            outputs.append("/dev/tty")  # where the answers are offered for saving at the end
            self.save_target = prompt_target(s.source, session.cwd)
            if self.save_target:  # pyward writes it at the end; a change by the program is caught by digest
                outputs += [self.save_target, self.save_target + ".bak"]
                self.save_digest = file_digest(self.save_target)
        if self.mode == "prompt" and not _stdin_is_tty():
            session.journal.emit("sandbox", "prompt.unavailable", "stdin", severity="warning", where="",
                                 message="prompt mode needs a terminal; denying like enforce instead")
        context = Context(mode=self.mode, on_deny=s.get("on_deny", "raise"), inherit=s.get("inherit", True),
                          program_dir=session.program_dir, outputs=outputs, emit=self._emit,
                          exit_on_deny=self._exit_on_deny if s.get("on_deny") == "exit" else None,
                          log=s.get("log"), spool=self.spool, rerun=_rerun_spec(session))
        warn_writable_policy(self.policy, session.journal)
        install(self.policy, context, protect=session.protect)
        from .._native import native

        if native is not None:  # under `pyward run` the program gets no callback to loosen the policy with
            native.sandbox_lock_hook()

    def _emit(self, kind: str, name: str, message: str, severity: str, details: dict[str, Any],
              site: tuple[str | None, str | None], pid: int | None = None, at: float | None = None) -> None:
        perm = details.get("permission", "")
        if kind == "granted":
            self.prompted.append((details["permission"], "*" if details["rule"] != "prompt" else name))
        if kind in ("observed", "allowed", "would_deny"):
            self.counts[perm] = self.counts.get(perm, 0) + 1
            if self.learn:
                self.observations.append((perm, name, details.get("operation", "")))
        if pid is None and self.spool and self.session.journal.is_child:  # forked: the parent records it
            message = f"child {os.getpid()}: {message}"
            write_spool(self.spool, kind, name, message, severity, details, site)
        self.session.journal.emit("sandbox", kind, name, message=message, severity=severity, details=details,
                                  where=site[0] or "", function=site[1], pid=pid, at=at)

    def _collect_children(self) -> None:
        """Events Python children reported: into this run's journal, log and report."""
        for kind, name, message, severity, details, where, function, pid, at in read_spool(self.spool):
            if kind == "granted":
                continue
            self._emit(kind, name, message, severity, details, (where, function), pid=pid, at=at)

    def _exit_on_deny(self, message: str) -> None:
        exit_at_once(EXIT_STATUS_ON_DENY, self.session, "denied (--on-deny=exit)")

    def stop(self, session: Any) -> None:
        self._collect_children()
        if self.learn:
            from ..policy.learn import write_learned

            path, rules = write_learned(self.learn, self.observations, session)
            found_here = os.path.realpath(path) == os.path.realpath(os.path.join(session.cwd, "pyward.toml"))
            hint = "the next `pyward run` in this directory uses it" if found_here else \
                f"use it with: pyward run --config {path} ..."
            status = session.exit_status
            if status:  # a policy of half a run: say so, where the user looks
                session.journal.emit(
                    "sandbox", "learned.incomplete", path, severity="warning", where="",
                    message=f"the learning run ended with exit status {status} ({session.exit_reason}): the "
                            f"policy in {path} covers only what ran before that; fix the run and learn again, "
                            "or review the policy by hand", details={"exit_status": status})
            session.journal.emit("sandbox", "learned", path, severity="notice", where="",
                                 message=f"learned policy written to {path} ({rules} rules); {hint}")
            return
        changed = [self.save_target] if self.save_target and file_digest(self.save_target) != self.save_digest \
            else []
        taint_policy_files(session, changed)
        if self.prompted and not changed:
            offer_to_save(self.prompted, self.settings.source, self.save_target, session)
        if self.mode == "watch" and self.counts:
            parts = [f"{self.counts[p]} {p}" for p in PERMISSIONS if self.counts.get(p)]
            session.journal.emit("sandbox", "summary", "watch", severity="info", where="",
                                 message="sandbox (watch): the program used " + ", ".join(parts)
                                         + " beyond its own files (-v lists them; pyward learn writes a policy)",
                                 details=dict(self.counts))


def _rerun_spec(session: Any) -> tuple[Any, ...] | None:
    """The one process start the sandbox leaves to pyward: a fresh run of this
    very command, in the directory and environment the run started with."""
    if getattr(session, "channel", None) is not None or not hasattr(session, "start_env"):
        return None  # a re-run never starts the next one: its supervisor does
    from ..rerun import RERUN_VARIABLE, command

    argv = command(session.invocation)
    if argv is None:
        return None
    return (argv[0], tuple(argv), dict(session.start_env), session.cwd, RERUN_VARIABLE)


def prompt_target(source: str | None, cwd: str) -> str | None:
    """Where prompt answers are saved: the pyward.toml in use, or a new one in
    the current directory; never a pyproject.toml (not pyward's to rewrite)."""
    if source:
        return os.path.realpath(source) if os.path.basename(source) == "pyward.toml" else None
    return os.path.join(os.path.realpath(cwd), "pyward.toml")


def file_digest(path: str) -> str | None:
    import hashlib

    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


def offer_to_save(answers: list[tuple[str, str]], source: str | None, target: str | None, session: Any) -> None:
    """At the end of a prompt-mode run: save the answers into pyward.toml, if the user says so."""
    from ..policy.learn import merge_answers

    if target is None:
        lines = ", ".join(f"{perm} += {scope!r}" for perm, scope in answers)
        session.journal.emit("sandbox", "prompt.unsaved", source or "", severity="notice", where="",
                             message=f"answers given at the prompt ({lines}) are not saved into {source}: "
                                     "add them to [tool.pyward.permissions] to keep them")
        return
    try:
        fd = os.open("/dev/tty", os.O_RDWR)
        try:
            os.write(fd, f"[pyward] Save {len(answers)} answer(s) into {target}? [y/N] > ".encode())
            reply = b""
            while not reply.endswith(b"\n"):
                byte = os.read(fd, 1)
                if not byte:
                    break
                reply += byte
        finally:
            os.close(fd)
    except OSError:
        return
    reply = reply.decode(errors="replace").strip()
    if reply[:1] not in ("y", "Y"):
        return
    try:
        backup = merge_answers(target, answers)
    except (OSError, ValueError) as exc:
        session.journal.emit("sandbox", "prompt.unsaved", target, severity="warning", where="",
                             message=f"could not save the answers into {target}: {exc}")
        return
    kept = f" (previous version kept as {backup})" if backup else ""
    session.journal.emit("sandbox", "prompt.saved", target, severity="notice", where="",
                         message=f"saved {len(answers)} answer(s) into {target}{kept}")


def _stdin_is_tty() -> bool:
    try:
        return os.isatty(0)
    except OSError:
        return False


# --- the policy files the program must not write -------------------------------


def _taint_file() -> str:
    return os.path.join(os.getcwd(), ".pyward", "tainted-policy.json")


def check_taint(source: str | None) -> None:
    """Refuse a policy file that a guarded program modified (until `pyward trust`)."""
    if not source or not os.path.exists(_taint_file()):
        return
    import hashlib
    import json

    try:
        with open(_taint_file(), encoding="utf-8") as f:
            tainted = json.load(f)
        with open(source, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
    except (OSError, ValueError):
        return
    entry = tainted.get(os.path.realpath(source)) if isinstance(tainted, dict) else None
    if isinstance(entry, dict) and entry.get("sha256") == digest:
        raise TargetError(f"{source} was modified by a program pyward guarded ({entry.get('when')}); pyward will "
                          f"not load a policy the guarded program wrote. Review it, then run: pyward trust {source}",
                          2)


def taint_policy_files(session: Any, changed: list[str] = ()) -> None:  # type: ignore[assignment]
    """Record policy files the program wrote during this run (watch mode lets
    it; `changed` are files whose content changed though pyward let only itself write them)."""
    candidates = {os.path.realpath(p) for p in policy_candidates(session.cwd)}
    written = {e.name for e in session.journal.events
               if e.engine == "sandbox" and e.details.get("permission") == "write" and e.name in candidates
               and e.kind != "denied"} | set(changed)
    if not written:
        return
    import hashlib
    import json

    path = os.path.join(session.cwd, ".pyward", "tainted-policy.json")
    try:
        with open(path, encoding="utf-8") as f:
            tainted = json.load(f)
    except (OSError, ValueError):
        tainted = {}
    from ..journal import iso_time

    for name in sorted(written):
        try:
            with open(name, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
        except OSError:
            continue
        tainted[name] = {"sha256": digest, "when": iso_time(session.start_time)}
        session.journal.emit("sandbox", "policy.tainted", name, severity="alert", where="",
                             message=f"the program wrote {name}, a file pyward reads its policy from; "
                                     "pyward will refuse it until you review it and run: pyward trust " + name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(tainted, f, indent=1)


def warn_writable_policy(policy: Policy, journal: Any) -> None:
    if not policy.source:
        return
    directory = os.path.dirname(os.path.realpath(policy.source))
    for rule in policy.allows("write"):
        scope = expand(rule.scope, policy.base_dirs.get(rule.origin, os.getcwd()), path_variables())
        if directory == scope or directory.startswith(scope.rstrip("/") + "/") or "write" in policy.allow_all:
            journal.emit("sandbox", "policy.writable", policy.source, severity="warning", where="",
                         message=f"the policy file {policy.source} lies in a directory the program may write "
                                 f"({rule.scope} from {rule.origin}): pyward denies writes to it during the run, "
                                 "but keep policy files where the guarded program cannot write")
            return


# --- compiling the policy into plain data ------------------------------------------


def compile_rules(policy: Policy) -> tuple[dict[str, tuple[list[tuple], list[tuple], str | None]],
                                           dict[str, dict[str, int]]]:
    """RULES[perm] = (allow rules, deny rules, blanket-allow origin) as tuples
    (see _decide.matches), and DENY_INODES for hard links to denied files."""
    variables = path_variables()
    rules: dict[str, tuple[list[tuple], list[tuple], str | None]] = {}
    inodes: dict[str, dict[str, int]] = {}
    for perm in PERMISSIONS:
        allow = [compile_rule(perm, r.scope, r.origin, policy.base_dirs.get(r.origin, os.getcwd()), variables)
                 for r in policy.allows(perm)]
        deny = [compile_rule(perm, r.scope, r.origin, policy.base_dirs.get(r.origin, os.getcwd()), variables)
                for r in policy.denies(perm)]
        rules[perm] = (allow, deny, policy.allow_all.get(perm))
        if perm in ("read", "write"):
            for rule in deny:
                if rule[0] == 0:
                    try:
                        info = os.stat(rule[1])
                    except OSError:
                        continue
                    if os.path.isdir(rule[1]):
                        for key in linked_inodes(rule[1]):
                            inodes.setdefault(perm, {})[key] = 1
                    else:
                        inodes.setdefault(perm, {})[f"{info.st_dev}:{info.st_ino}"] = 1
    return rules, inodes


INODE_WALK_LIMIT = 20000


def linked_inodes(top: str) -> list[str]:
    """The files under a denied directory that have other hard links (st_nlink > 1):
    a link to them elsewhere must be denied too.  The walk is bounded (see docs/sandbox.md)."""
    found: list[str] = []
    stack, seen = [top], 0
    while stack and seen < INODE_WALK_LIMIT:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            seen += 1
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                    continue
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if info.st_nlink > 1 and not entry.is_symlink():
                found.append(f"{info.st_dev}:{info.st_ino}")
    return found


def compile_rule(perm: str, scope: str, origin: str, base: str, variables: dict[str, str]) -> tuple:
    if scope == "*" and perm not in ("net",):
        return (6, None, origin)
    if perm in ("read", "write"):
        path = expand(scope, base, variables)
        if any(c in path for c in GLOB_CHARS):
            segments = path.split("/")
            fixed = []
            for segment in segments:
                if any(c in segment for c in GLOB_CHARS):
                    break
                fixed.append(segment)
            real = _realpath("/".join(fixed) or "/")
            return (1, tuple(real.split("/") + segments[len(fixed):]) if real != "/" else
                    tuple([""] + segments[len(fixed):]), origin)
        return (0, _realpath(path), origin)
    if perm == "run":
        if "/" in scope:
            return (4, _realpath(expand(scope, base, variables)), origin)
        return (3, scope, origin)
    if perm == "net":
        return compile_net(scope, origin, base, variables)
    return (2, tuple(scope.split("*")), origin)


def _realpath(path: str) -> str:
    from .._native import native

    real = native.realpath(path) if native is not None else None
    return real or os.path.realpath(path)


def compile_net(scope: str, origin: str, base: str = "", variables: dict[str, str] | None = None) -> tuple:
    """(5, host kind, origin, host, port, network, prefix, bits); kinds: 0 name,
    1 *.suffix, 2 address/network, 3 any host, 4 unix socket (a socket file, or
    every socket below a directory; $TMP and the other path variables expand),
    5 raw."""
    text = scope.strip().lower()
    if text.startswith("unix:"):
        raw = scope.strip()[5:]
        path = text[5:] if text[5:6] == "@" else _realpath(expand(raw, base or os.getcwd(), variables or {}))
        return (5, 4, origin, "unix:" + path, None, 0, 0, 0)
    if text == "raw":
        return (5, 5, origin, "raw", None, 0, 0, 0)
    port = None
    if text.startswith("["):
        close = text.find("]")
        host, rest = text[1:close], text[close + 1:]
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, tail = text.partition(":")
        if not tail.isdigit() and tail != "*":
            raise TargetError(f"{origin}: bad network scope {scope!r}: the port must be a number", 2)
        port = int(tail) if tail.isdigit() else None
    else:
        host = text
    if host in ("*", ""):
        return (5, 3, origin, None, port, 0, 0, 0)
    if host.startswith("*."):
        return (5, 1, origin, host[1:], port, 0, 0, 0)
    if host[0].isdigit() or ":" in host:
        import ipaddress

        try:
            network = ipaddress.ip_network(host, strict=False)
        except ValueError:
            raise TargetError(f"{origin}: bad network scope {scope!r}: not an address or network", 2) from None
        return (5, 2, origin, host, port, int(network.network_address), network.prefixlen, network.max_prefixlen)
    return (5, 0, origin, host, port, 0, 0, 0)


def implicit_roots(program_dir: str) -> tuple[tuple[str, ...], frozenset[str]]:
    """Directories and files python itself needs to read: sys.path, the stdlib,
    site-packages, pyward, the program's directory, a few system files."""
    import site

    roots = set()
    entries = [program_dir, *sys.path[1:], os.path.dirname(os.__file__),
               os.path.dirname(os.path.dirname(os.path.abspath(__file__))), *SYSTEM_DIRS]
    try:
        entries += site.getsitepackages() + [site.getusersitepackages()]
    except AttributeError:  # virtualenv's old site.py
        pass
    for entry in entries:
        real = _realpath(entry or os.getcwd())
        roots.add(real.rstrip("/") + "/")
    files = {_realpath(f) for f in SYSTEM_FILES}
    files |= {r.rstrip("/") for r in roots}  # the directories themselves (listing, zip files)
    return tuple(sorted(roots)), frozenset(files)


# --- building and installing the decider ------------------------------------------


def build_decider(policy: Policy, context: Context,
                  payload: str | None = None) -> tuple[Callable[..., Any], dict[str, Any], list[Any]]:
    """Re-create `_decide`'s functions in a private namespace; return
    (decide, namespace, objects to untrack)."""
    import _socket
    import builtins
    import posix

    from .._native import native
    from . import _decide

    rules, inodes = compile_rules(policy)
    outputs_real = {_realpath(p) for p in context.outputs}
    for candidate in policy_candidates(os.getcwd()):  # no writing its own policy
        if _realpath(candidate) not in outputs_real:  # (except the policy `pyward learn` writes)
            rules["write"][1].append((0, _realpath(candidate), "pyward (a file it reads its policy from)"))
    roots, files = implicit_roots(context.program_dir)
    if context.mode == "prompt":
        files = files | {"/dev/tty"}  # the answers are read from there
    if context.spool:
        files = files | {context.spool}  # children's events, read back at the end
    outputs = {_realpath(p) for p in context.outputs}
    how = policy.how_to_allow("{perm}", "{scope}").replace("'{scope}'", "'{scope}'")
    caches = {name: {} for name in ("CACHE", "NOTED", "GRANTED", "RESOLVED", "RESOLVED_PATHS",
                                     "STATE", "TTY", "ON_DISK")}
    stdlib = os.path.dirname(os.__file__)
    namespace: dict[str, Any] = {
        "__builtins__": {name: getattr(builtins, name) for name in (
            "len", "str", "int", "type", "tuple", "list", "dict", "bytes", "range", "zip", "OSError",
            "TypeError", "ValueError", "KeyError", "IndexError", "AttributeError", "Exception", "isinstance",
            "hasattr", "None",
            "True", "False") if hasattr(builtins, name)},
        "__name__": "pyward.sandbox.decider",
        **caches,
        "MODE": MODES[context.mode],
        "CONFIGURED": policy.configured,
        "RULES": rules,
        "DENY_INODES": inodes,
        "HOW": how,
        "VERBS": dict(VERBS),
        "EMIT": context.emit,
        "EXIT_ON_DENY": context.exit_on_deny,
        "GETFRAME": sys._getframe,
        "REALPATH": native.realpath,
        "GETCWD": posix.getcwd,
        "STAT": posix.stat,
        "PAYLOAD": payload,
        "RERUN": context.rerun,
        "BOOT_DIR": BOOT_DIR,
        "ENV_GET": native.env_get,
        "OPEN": posix.open,
        "READ": posix.read,
        "WRITE": posix.write,
        "O_RDWR": os.O_RDWR,
        "O_WRONLY": os.O_WRONLY,
        "WRITE_FLAGS": os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND,
        "STDIN_IS_TTY": _stdin_is_tty(),
        "STR_ADD": str.__add__,
        "BYTES_ADD": bytes.__add__,
        "BYTES_DECODE": bytes.decode,
        "INT_ADD": int.__add__,
        "INT_REPR": int.__repr__,
        "FS_ENCODING": sys.getfilesystemencoding(),
        "FS_ERRORS": sys.getfilesystemencodeerrors(),
        "FAMILY": _socket.socket.__dict__["family"].__get__,
        "AF_UNIX": _socket.AF_UNIX,
        "AF_INET": _socket.AF_INET,
        "AF_INET6": _socket.AF_INET6,
        "AF_PACKET": getattr(_socket, "AF_PACKET", -1),
        "SOCK_RAW": _socket.SOCK_RAW,
        "INET_PTON": _socket.inet_pton,
        "HEX_COLON": "0123456789abcdef:.",
        "IMPLICIT_READ_ROOTS": roots,
        "IMPLICIT_READ_FILES": files,
        "IMPLICIT_WRITE_FILES": frozenset((*outputs, *SINK_FILES)),
        "PROGRAM_DIRS": (_realpath(context.program_dir),),
        "STDLIB_NAMES": frozenset(sys.stdlib_module_names),
        "OWN_PACKAGES": frozenset(("pyward", "bytecode", "sitecustomize", "usercustomize")),
        "GUARDED_MODULES": frozenset(GUARDED_MODULES),
        "SUBINTERPRETER_MODULES": frozenset(SUBINTERPRETER_MODULES),
        "HIDDEN_ENV": frozenset(HIDDEN_ENV),
        "IMPLICIT_ENV": IMPLICIT_ENV,
        "IMPLICIT_ENV_PREFIXES": ("LC_", "PYTHON", "_PYTHON"),
        "IMPORT_MACHINERY": frozenset(("<frozen importlib._bootstrap_external>", "<frozen importlib._bootstrap>",
                                       "<frozen zipimport>")),
        "NAMESPACE_OPS": frozenset(("remove", "rmdir", "mkdir", "rmtree")),
        "PLUMBING": (os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + "/",
                     stdlib + "/", "<frozen "),
        "STDLIB": stdlib + "/",
        "STDLIB_DIR": stdlib,
        "SYS": sys,
        # doctest's runner saves sys.gettrace() and puts it back after each test; the audit event
        # does not carry the function, so the calling function is what tells a restore
        "HOOK_RESTORERS": frozenset(((stdlib + "/doctest.py", "run"),)),
        "MODULE_SUFFIXES": (".py", ".pyc", *_imp.extension_suffixes()),
        "CODE_RELABELLERS": frozenset(((stdlib + "/types.py", "coroutine"),
                                       (stdlib + "/modulefinder.py", "replace_paths_in_code"))),
    }
    functions = []
    for name, value in vars(_decide).items():
        if type(value) is types.FunctionType:
            namespace[name] = types.FunctionType(value.__code__, namespace, name, value.__defaults__)
            functions.append(namespace[name])
    handlers = namespace["build_handlers"]()
    namespace["HANDLERS"] = handlers
    hidden: list[Any] = [namespace, namespace["__builtins__"], *functions, *caches.values(), handlers, rules,
                         inodes, namespace["VERBS"]]
    for handler in handlers.values():  # closures made by path_handler() & co.
        hidden.append(handler)
        hidden += [cell for cell in (handler.__closure__ or ())]
    for perm_rules in rules.values():
        hidden += [perm_rules[0], perm_rules[1]]
    return namespace["decide"], namespace, hidden


_installed = False


def install(policy: Policy, context: Context, protect: Callable[..., Any] | None = None) -> None:
    """Install the sandbox for the rest of the process's life."""
    global _installed
    from .._native import native

    if _installed:
        raise RuntimeError("the sandbox is already installed in this process")
    if native is None:
        from .degraded import install_degraded

        install_degraded(policy, context)
        _installed = True
        return
    import _posixsubprocess  # wrapped now: later imports of it would be re-imports

    payload = inheritance_payload(policy, context) if context.inherit else None
    decide, namespace, hidden = build_decider(policy, context, payload)
    if payload is not None:
        set_inherited_environment(payload)
    guards = install_guards(namespace, payload is not None, protect)
    install_environ(payload is not None)
    native.untrack(*hidden, *guards)
    subinterpreters = "ffi" in policy.allow_all or any(r.scope == "subinterpreters" for r in policy.allows("ffi"))
    from .hooks import emitter

    hook_emit = emitter(context.emit)  # what an install_hook() callback refuses goes to this journal
    native.untrack(hook_emit)
    native.sandbox_install(list(namespace["HANDLERS"]), decide, AccessDenied, MODES[context.mode] != 0,
                           subinterpreters, ImportDenied, hook_emit)
    _installed = True


def install_guards(namespace: dict[str, Any], inherit: bool, protect: Callable[..., Any] | None) -> list[Any]:
    """Replace functions that start processes or open files without a usable audit event."""
    import _posixsubprocess
    import posix
    import _socket

    from .._native import native

    made = []

    def place(module: Any, name: str, guard: Any) -> None:
        setattr(module, name, guard)
        if protect is not None:
            protect(module, name, "sandbox guard")

    fork_exec = native.guard("pyward.fork_exec", _posixsubprocess.fork_exec,
                             namespace["inject_fork_exec"] if inherit else None)
    place(_posixsubprocess, "fork_exec", fork_exec)
    absolute = namespace["absolute_open"]
    opener = native.guard(None, posix.open, absolute)
    place(posix, "open", opener)
    place(sys.modules["os"], "open", opener)
    # socket.getaddrinfo calls _socket.getaddrinfo through the module at each call:
    # guarding the C function covers both, without importing socket (~5 ms) at start
    resolver = native.guard(None, _socket.getaddrinfo, None, namespace["record_addresses"])
    place(_socket, "getaddrinfo", resolver)
    made += [fork_exec, opener, resolver, absolute, namespace["record_addresses"]]
    if inherit:
        for name in ("execve", "posix_spawn", "posix_spawnp"):
            original = getattr(posix, name, None)
            if original is None:
                continue
            guard = native.guard(None, original, namespace["inject_third"])
            place(posix, name, guard)
            place(sys.modules["os"], name, guard)
            made.append(guard)
    return made


# --- child processes inherit the policy ----------------------------------------------


def inheritance_payload(policy: Policy, context: Context) -> str:
    from ..canonical import dumps

    return dumps({"policy": policy.to_json(), "mode": context.mode, "on_deny": context.on_deny,
                  "log": context.log, "spool": context.spool})


def set_inherited_environment(payload: str) -> None:
    """Put the policy and the boot directory in the C environment, so every
    child inherits them (the program's view of os.environ hides them)."""
    original = os.environ.get("PYTHONPATH")
    os.putenv("PYWARD_SANDBOX", payload)
    if original is not None:
        os.putenv("PYWARD_ORIG_PYTHONPATH", original)
    os.putenv("PYTHONPATH", BOOT_DIR if not original else BOOT_DIR + os.pathsep + original)


# --- os.environ through the sandbox ------------------------------------------------------


def install_environ(inheriting: bool) -> None:
    """Replace os.environ / os.environb by views of the C environment whose
    reads go through the sandbox, and clear the startup snapshot."""
    import posix

    from .._native import native

    real = sys.modules["os"]
    old, oldb = real.environ, real.environb
    env = GuardedEnviron(native, old.encodekey, old.decodekey, old.encodevalue, old.decodevalue, inheriting, False)
    envb = GuardedEnviron(native, oldb.encodekey, oldb.decodekey, oldb.encodevalue, oldb.decodevalue, inheriting,
                          True)
    real.environ, real.environb = env, envb
    old._data.clear()
    posix.environ.clear()


class GuardedEnviron(os._Environ):  # type: ignore[name-defined,misc]
    """os.environ, live over the C environment: reads ask the sandbox
    ("env" permission), writes go through os.putenv (audited too)."""

    def __init__(self, native: Any, encodekey: Any, decodekey: Any, encodevalue: Any, decodevalue: Any,
                 inheriting: bool, as_bytes: bool) -> None:
        super().__init__({}, encodekey, decodekey, encodevalue, decodevalue)
        self._native, self._inheriting, self._bytes = native, inheriting, as_bytes

    def _name(self, key: Any) -> str:
        raw = self.encodekey(key)  # validates the type like os.environ does
        return os.fsdecode(raw)

    def __getitem__(self, key: Any) -> Any:
        name = self._name(key)
        if name in HIDDEN_ENV:
            raise KeyError(key)
        if name == "PYTHONPATH" and self._inheriting:
            self._native.env_get("PYTHONPATH")  # the read is still checked and journaled
            value = self._native.env_get("PYWARD_ORIG_PYTHONPATH")
            if value is None:
                raise KeyError(key)
        else:
            value = self._native.env_get(name)
            if value is None:
                raise KeyError(key)
        return self.decodevalue(os.fsencode(value))

    def __setitem__(self, key: Any, value: Any) -> None:
        name, raw = self._name(key), self.encodevalue(value)
        if name == "PYTHONPATH" and self._inheriting:
            os.putenv("PYWARD_ORIG_PYTHONPATH", raw)
            raw = os.fsencode(BOOT_DIR) + (b":" + raw if raw else b"")
        os.putenv(self.encodekey(key), raw)

    def __delitem__(self, key: Any) -> None:
        name = self._name(key)
        if name not in self:
            raise KeyError(key)
        if name == "PYTHONPATH" and self._inheriting:
            os.unsetenv("PYWARD_ORIG_PYTHONPATH")
            os.putenv("PYTHONPATH", BOOT_DIR)
            return
        os.unsetenv(self.encodekey(key))

    def _names(self) -> list[str]:
        """The names the program may read (the others are not listed)."""
        present = self._native.env_names()
        names = []
        for name in present:
            if name in HIDDEN_ENV or (name == "PYTHONPATH" and self._inheriting
                                      and "PYWARD_ORIG_PYTHONPATH" not in present):
                continue
            try:
                self._native.sandbox_check("pyward.env.visible", (name,))
            except PermissionError:
                continue
            names.append(name)
        return names

    def __iter__(self) -> Any:
        for name in self._names():
            yield self.decodekey(os.fsencode(name))

    def __len__(self) -> int:
        return len(self._names())

    def __contains__(self, key: Any) -> bool:
        try:
            self._native.sandbox_check("pyward.env.visible", (self._name(key),))
        except PermissionError:
            return False
        try:
            self[key]
        except KeyError:
            return False
        return True

    def _listing(self) -> list[tuple[Any, Any]]:
        """(key, value) of every variable the program may read; values read as
        a listing (`pyward learn` does not turn those into rules)."""
        out = []
        for name in self._names():
            value = self._native.env_get(name, True)
            if name == "PYTHONPATH" and self._inheriting:  # checked as PYTHONPATH, read from where it hides
                value = self._native.env_get("PYWARD_ORIG_PYTHONPATH")
            if value is not None:
                out.append((self.decodekey(os.fsencode(name)), self.decodevalue(os.fsencode(value))))
        return out

    def items(self) -> Any:
        return self._listing()

    def values(self) -> Any:
        return [value for _, value in self._listing()]

    def copy(self) -> dict[Any, Any]:
        return dict(self._listing())

    def __repr__(self) -> str:
        items = ", ".join(f"{k!r}: {v!r}" for k, v in self.items())
        return f"environ({{{items}}})"


# --- the embedding API ---------------------------------------------------------------------


def install_standalone(policy: Policy | None, *, mode: str, on_deny: str, journal: Any) -> None:
    from ..journal import ConsoleSink, Journal

    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if journal is None:
        journal = Journal()
        journal.add_sink(ConsoleSink())

    def emit(kind: str, name: str, message: str, severity: str, details: dict[str, Any],
             site: tuple[str | None, str | None]) -> None:
        journal.emit("sandbox", kind, name, message=message, severity=severity, details=details,
                     where=site[0] or "", function=site[1])

    def exit_now(message: str) -> None:
        exit_at_once(EXIT_STATUS_ON_DENY)

    context = Context(mode=mode, on_deny=on_deny, inherit=False, program_dir=sys.path[0] or os.getcwd(),
                      outputs=[], emit=emit, exit_on_deny=exit_now if on_deny == "exit" else None, log=None)
    install(policy or Policy(), context)
