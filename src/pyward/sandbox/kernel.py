"""The kernel wall: the same policy compiled into a Landlock ruleset.

Under `--mode enforce` the program's process is restricted, just before its
first line, to the files its policy lets it read, write and run (plus what
python and pyward need), and to the TCP ports its network rules name.  The
kernel holds the wall for the process and every descendant, whatever their
environment, so it still stands where the audit layer is bypassed (native
code calling libc, a child started without pyward's variables).  The audit
layer stays in front: its denials are precise and catchable; the wall is
what is left when it is gone.

The wall is a superset of the audit layer's allow-list, never narrower where
the audit layer would allow, except where docs/sandbox.md says so: deny rules,
globs and hosts stay the audit layer's alone, since Landlock only allows.
"""
from __future__ import annotations

import os
import sys

from .._isolation import isolate_builtins, isolate_module
from ..executable import elf_interpreter, shebang
from .rules import SINK_FILES, compile_rule, implicit_roots, realpath

isolate_builtins(globals())

os = isolate_module(os)  # noqa: F811

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ..policy import Policy
    from .context import Context

# Landlock's access rights (linux/landlock.h) and the ABI that brought each
EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
REMOVE_DIR, REMOVE_FILE, MAKE_CHAR, MAKE_DIR = 1 << 4, 1 << 5, 1 << 6, 1 << 7
MAKE_REG, MAKE_SOCK, MAKE_FIFO, MAKE_BLOCK, MAKE_SYM = 1 << 8, 1 << 9, 1 << 10, 1 << 11, 1 << 12
REFER = 1 << 13  # ABI 2
TRUNCATE = 1 << 14  # ABI 3
BIND_TCP, CONNECT_TCP = 1 << 0, 1 << 1  # ABI 4
SCOPE_SIGNAL = 1 << 1  # ABI 6: no signal to a process outside the domain

READ = READ_FILE | READ_DIR
WRITE = (WRITE_FILE | REMOVE_DIR | REMOVE_FILE | MAKE_CHAR | MAKE_DIR | MAKE_REG | MAKE_SOCK | MAKE_FIFO
         | MAKE_BLOCK | MAKE_SYM | REFER | TRUNCATE)
#: What a write rule grants: every right of WRITE but making device nodes (a block or character device made
#: in a writable directory, by root, reads and writes the device itself, beyond any file rule; only a blanket
#: write permission, which leaves writing unhandled, lets them be made).
WRITE_GRANT = WRITE & ~(MAKE_CHAR | MAKE_BLOCK)
#: The rights that make entries in a directory (a carved grant's way down must have none, see Wall.carve).
MAKE_ENTRIES = MAKE_CHAR | MAKE_DIR | MAKE_REG | MAKE_SOCK | MAKE_FIFO | MAKE_BLOCK | MAKE_SYM | REFER
#: The most rules carving one deny rule out of the grants above it may add.
MAX_CARVED = 4096
#: The rights a rule on a file (not a directory) may carry.
FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE
#: What writing a file pyward creates needs in its directory (a temporary name renamed over the file).
CREATE_FILES = MAKE_REG | REMOVE_FILE | WRITE_FILE | TRUNCATE | READ_FILE

#: Files C libraries read below the audit layer, where no audit event shows them: the dynamic
#: loader and the shared libraries of extension modules and of every program started, glibc's
#: resolver and user database, OpenSSL's configuration and certificates, the CPU count, the cgroups'
#: limits (DuckDB and other runtimes size their threads and memory by them) and the kernel's overcommit
#: setting (jemalloc).  The audit layer neither sees nor judges these reads, so the wall lets them
#: through to keep behaviour as is.  Which cgroup a process is in (/proc/self/cgroup) is per process,
#: as every /proc/self file: a library that reads it is judged at its import (decider.NATIVE_READS).
BENEATH_AUDIT = ("/lib", "/lib32", "/lib64", "/usr/lib", "/usr/lib32", "/usr/lib64", "/usr/local/lib",
                 "/etc/ld.so.cache", "/etc/ld.so.preload", "/etc/nsswitch.conf", "/etc/hosts",
                 "/etc/resolv.conf", "/etc/host.conf", "/etc/gai.conf", "/etc/services", "/etc/protocols",
                 "/etc/passwd", "/etc/group", "/etc/ssl", "/usr/share/ca-certificates",
                 "/sys/devices/system/cpu", "/etc/localtime", "/sys/fs/cgroup", "/proc/sys/vm/overcommit_memory")

#: Where commands live when a policy lets the program run any (besides the directories of its PATH).
STANDARD_BIN = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")

#: Where C creates files below the audit layer: POSIX semaphores and shared memory (sem_open for
#: multiprocessing's locks, shm_open) live in /dev/shm.
BENEATH_AUDIT_CREATES = ("/dev/shm",)


def abi() -> int:
    """The Landlock ABI version this kernel offers; 0 when it has none."""
    from .._native import native

    return native.landlock_abi() if native is not None else 0


def wanted(settings: Any, mode: str) -> bool:
    """The wall goes up under enforce, unless `--no-kernel` or `kernel = false`, or `--no-inherit`
    (every descendant inherits a wall: children could not run unguarded).
    Watch blocks nothing; prompt may grant at the terminal what a wall would refuse."""
    return (mode == "enforce" and settings.get("kernel", True) is not False
            and settings.get("inherit", True) is not False)


class Wall:
    """A Landlock ruleset as plain data: handled rights, (path, rights) rules, (port, rights) rules."""

    def __init__(self, version: int) -> None:
        self.abi = version
        self.fs = 0
        self.net = 0
        self.paths: dict[str, int] = {}
        self.ports: dict[int, int] = {}
        #: deny rules (as "read 'secret'") beneath a grant of the same right: the audit layer holds them, the
        #: wall cannot (Landlock only allows), so code beneath the audit layer could read or write there
        self.unheld: list[str] = []
        self.bypassable = False  # the policy runs commands or native code: code beneath the audit layer
        self.scoped = 0  # SCOPE_SIGNAL: signals stay inside the run (where code beneath the audit layer may run)

    def grant(self, path: str, access: int, *, ancestor: bool = False) -> None:
        """Allow `access` beneath `path`.  A path not there yet gets nothing (nothing to read
        or to write there), unless `ancestor`: a policy's rule naming a file or directory the
        program will make, granted at its nearest existing ancestor, but never at `/` (the
        whole file system for one missing name)."""
        access &= self.fs
        if not access or not path:
            return
        path = realpath(path)
        if not os.path.exists(path):
            if not ancestor:
                return
            while not os.path.exists(path):
                path = os.path.dirname(path)
            if path == "/":
                return
        if not os.path.isdir(path):
            access &= FILE_RIGHTS
        if access:
            self.paths[path] = self.paths.get(path, 0) | access

    def carve(self, denied: str) -> bool:
        """Take reading away from `denied` (a real path) where the grants above it give it: each such
        grant loses its read rights, and the entries beside the way down to `denied` get them instead
        (directories whole, files alone; links none: what they lead to is judged where it is).  The
        directories on the way keep READ_DIR (their names stay listable, `denied`'s included).
        False, and nothing changed, when the wall cannot hold it that way: a grant lets entries be made
        on the way down (they would have no rule, so could not be read), or the entries are too many."""
        above = sorted(p for p, access in self.paths.items() if access & READ_FILE and _at_or_above(p, denied))
        if not above:
            return True
        parent = os.path.dirname(denied)
        if any(access & MAKE_ENTRIES and _at_or_above(p, parent) for p, access in self.paths.items()):
            return False
        grants: dict[str, int] = {}
        level = above[0]
        while level != denied:
            if not os.path.isdir(level):
                return False
            step = denied[len(level.rstrip("/")) + 1:].split("/", 1)[0]
            grants[level] = READ_DIR
            try:
                with os.scandir(level) as entries:
                    for entry in entries:
                        if entry.name == step or entry.is_symlink():
                            continue
                        grants[entry.path] = READ if entry.is_dir() else READ_FILE
                        if len(grants) > MAX_CARVED:
                            return False
            except OSError:
                return False
            level = os.path.join(level, step)
        for path in above:
            self.paths[path] &= ~READ
            if not self.paths[path]:
                del self.paths[path]
        for path, access in grants.items():
            self.paths[path] = self.paths.get(path, 0) | (access & self.fs)
        return True

    def layers(self) -> dict[str, Any]:
        return {"abi": self.abi, "read": bool(self.fs & READ_FILE), "write": bool(self.fs & WRITE_FILE),
                "run": bool(self.fs & EXECUTE), "tcp_ports": sorted(self.ports) if self.net else None,
                "signals": bool(self.scoped & SCOPE_SIGNAL),
                "rules": len(self.paths) + len(self.ports), "unheld": list(self.unheld)}


def compile_wall(policy: Policy, context: Context, version: int, *, reruns: bool = False) -> Wall:
    """The policy's read, write, run and TCP port rules as a Landlock ruleset for ABI `version`."""
    from ..policy import expand, path_variables

    wall = Wall(version)
    supported = READ | EXECUTE | (WRITE & ~REFER & ~TRUNCATE)
    if version >= 2:
        supported |= REFER
    if version >= 3:
        supported |= TRUNCATE
    blanket = {perm for perm in ("read", "write", "run")
               if perm in policy.allow_all or any(r.scope == "*" for r in policy.allows(perm))}
    if any(_is_shell(r.scope) for r in policy.allows("run")):
        blanket.add("run")  # a shell runs any command its script names, which the audit layer never sees
    for perm, rights in (("read", READ), ("write", WRITE), ("run", EXECUTE)):
        if perm not in blanket:  # a blanket grant (`--allow-read`, a `*` scope): nothing to restrict there
            wall.fs |= rights & supported
    variables = path_variables()
    for perm, rights in (("read", READ), ("write", WRITE_GRANT)):
        for rule in policy.allows(perm):
            base = policy.base_dirs.get(rule.origin, os.getcwd())
            root = _rule_root(compile_rule(perm, rule.scope, rule.origin, base, variables))
            if root is not None and _per_process(root):
                # each process of the run has its own /proc/self: the wall cannot tell one process's
                # directory from another's, so it grants /proc (files only, for a rule on a file)
                wall.grant("/proc", rights if os.path.isdir(realpath(root)) else rights & FILE_RIGHTS)
            elif root is not None:
                wall.grant(root, rights, ancestor=True)
    # what python and pyward read, as the audit layer's implicit reads, and what C reads beneath it
    roots, files = implicit_roots(context.program_dir, context.search_path)
    for path in (*roots, *files, *BENEATH_AUDIT, *_interpreter_files()):
        wall.grant(path, READ)
    for path in BENEATH_AUDIT_CREATES:
        wall.grant(path, CREATE_FILES)
    for path in SINK_FILES:
        wall.grant(path, WRITE_FILE | TRUNCATE)
    for path in context.outputs:  # pyward's own files: those not there yet are created in their directory
        if os.path.isdir(path):
            continue
        if os.path.exists(path):
            wall.grant(path, READ_FILE | WRITE_FILE | TRUNCATE)
        elif os.path.isdir(os.path.dirname(path)):
            wall.grant(os.path.dirname(path), CREATE_FILES)
        else:  # its directory is made too (the heal store's .pyward/ beside a report written elsewhere)
            wall.grant(os.path.dirname(path), CREATE_FILES | MAKE_DIR, ancestor=True)
    if context.spool:  # children append to it; pyward reads it back, removes it and its directory
        wall.grant(os.path.dirname(context.spool), CREATE_FILES)
        wall.grant(os.path.dirname(os.path.dirname(context.spool)), REMOVE_DIR)
    if "run" in blanket:  # the kernel reads a file it executes: any command means any command's file
        for directory in (*os.get_exec_path(), *STANDARD_BIN):
            wall.grant(directory, READ)
    for rule in policy.allows("run"):
        if rule.scope == "fork":
            continue
        if "/" in rule.scope:
            path = expand(rule.scope, policy.base_dirs.get(rule.origin, os.getcwd()), variables)
            _grant_executable(wall, path)
            if is_compiler(path):
                _grant_toolchain(wall, path)
            continue
        # a name matches any command of that base name: those in PATH, and this interpreter
        for path in _which(rule.scope, every=True):
            _grant_executable(wall, path)
            if is_compiler(rule.scope):
                _grant_toolchain(wall, path)
        if rule.scope in (os.path.basename(sys.executable), os.path.basename(realpath(sys.executable))):
            _grant_executable(wall, sys.executable)
    if reruns:  # a crash healed by a re-run starts this interpreter again
        _grant_executable(wall, sys.executable)
    for perm, right in (("read", READ_FILE), ("write", WRITE_FILE)):
        for rule in policy.denies(perm):
            base = policy.base_dirs.get(rule.origin, os.getcwd())
            compiled = compile_rule(perm, rule.scope, rule.origin, base, variables)
            root = _rule_root(compiled)
            if root is None:
                continue
            target = realpath(root)
            if perm == "read" and compiled[0] == 0 and wall.fs & right and not _per_process(root) \
                    and wall.carve(target):
                continue  # (a glob's files are not known in advance: not carved)
            if not wall.fs & right or any(access & right and _at_or_above(path, target)
                                          for path, access in wall.paths.items()):
                wall.unheld.append(f"{perm} {rule.scope!r}")
    wall.bypassable = bool(policy.allows("run") or "run" in policy.allow_all or policy.allows("ffi")
                           or "ffi" in policy.allow_all)
    if version >= 6 and wall.bypassable:
        # the audit layer keeps the program's own signals off pyward's recorder; a command or native
        # code is kept inside the run by the kernel (which keeps every signal to an outside process)
        wall.scoped = SCOPE_SIGNAL
    if version >= 4 and "net" not in policy.allow_all:
        ports = _ports(policy)
        if ports is not None:
            wall.net = BIND_TCP | CONNECT_TCP
            for port in ports:
                wall.ports[port] = BIND_TCP | CONNECT_TCP
    return wall


def _at_or_above(path: str, below: str) -> bool:
    """Whether a grant on `path` covers `below` (both real paths)."""
    return below == path or below.startswith(path.rstrip("/") + "/")


def _per_process(path: str) -> bool:
    """Whether `path` (a compiled rule's) is below /proc/self or /proc/thread-self: a different
    directory in each process."""
    return any(path == top or path.startswith(top + "/") for top in ("/proc/self", "/proc/thread-self"))


def _rule_root(compiled: tuple) -> str | None:
    """Where a compiled read or write rule applies: its path, or the directory above a glob's first
    wildcard; None for a rule that names no path."""
    if compiled[0] == 0:
        return compiled[1]
    if compiled[0] == 1:
        fixed = []
        for segment in compiled[1]:
            if any(c in segment for c in "*?["):
                break
            fixed.append(segment)
        return "/".join(fixed) or "/"
    return None


def _interpreter_files() -> list[str]:
    """What python reads at start-up before any hook exists: pyvenv.cfg beside or above the executable,
    and the executable's directory (children started by name)."""
    found = []
    for exe in {sys.executable, realpath(sys.executable)}:
        here = os.path.dirname(exe)
        found += [os.path.join(here, "pyvenv.cfg"), os.path.join(os.path.dirname(here), "pyvenv.cfg"), exe]
    found += [sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix]
    return [p for p in found if p and os.path.exists(p)]


def _ports(policy: Policy) -> list[int] | None:
    """The TCP ports the net rules allow, or None when a rule allows every port (or a unix socket
    rule is all there is that the kernel could not tell apart)."""
    from .rules import compile_net

    ports = set()
    for rule in policy.allows("net"):
        compiled = compile_net(rule.scope, rule.origin)
        if compiled[1] in (4, 5):  # unix sockets and raw sockets are not TCP
            continue
        if compiled[4] is None:
            return None
        ports.add(compiled[4])
    return sorted(ports)


def _which(name: str, every: bool = False) -> list[str]:
    found = []
    for directory in os.environ.get("PATH", os.defpath).split(os.pathsep):
        candidate = os.path.join(directory or ".", name)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            found.append(candidate)
            if not every:
                break
    return found


#: Command interpreters: allowing one to run allows whatever its script runs.
SHELLS = frozenset(("sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "busybox", "fish", "csh", "tcsh", "env",
                    "xargs"))


def _is_shell(scope: str) -> bool:
    return os.path.basename(scope) in SHELLS


def _grant_executable(wall: Wall, path: str, depth: int = 0) -> None:
    """Execute (and read: a script is read by its interpreter) the file, its `#!` interpreter,
    and the ELF interpreter it names (the dynamic loader is executed too)."""
    if depth > 3 or not os.path.isfile(path):
        return
    wall.grant(path, EXECUTE | READ_FILE)
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError:
        return
    programs = shebang(head)
    if programs:
        _grant_executable(wall, programs[0], depth + 1)
        for found in _which(programs[1]) if len(programs) > 1 else ():
            _grant_executable(wall, found, depth + 1)
        return
    loader = elf_interpreter(head)
    if loader:
        wall.grant(loader, EXECUTE | READ_FILE)


#: Compiler drivers: each runs its passes (cc1, as, collect2, ld; rustc runs cc to link), programs the
#: audit layer never sees, and reads the system headers.  Spelled bare, versioned (`gcc-12`) or with a
#: target prefix (`x86_64-linux-gnu-gcc`).
COMPILERS = frozenset(("cc", "c++", "gcc", "g++", "cpp", "clang", "clang++", "gfortran", "rustc"))
#: The programs a driver finds through PATH (or its target's bin directory) rather than in its own.
TOOLCHAIN_PROGRAMS = ("as", "ld", "ld.bfd", "ld.gold", "ld.lld", "cc")
#: Where a toolchain's passes live below its prefix, and where the headers a compilation reads are.
TOOLCHAIN_DIRS = ("lib/gcc", "libexec/gcc", "lib/gcc-cross")
HEADER_DIRS = ("/usr/include", "/usr/local/include")


def is_compiler(scope: str) -> bool:
    """Whether a run scope names a compiler driver (`gcc`, `/usr/bin/x86_64-linux-gnu-gcc-12`, `clang++-14`)."""
    name = os.path.basename(scope)
    head, sep, tail = name.rpartition("-")
    if sep and tail.replace(".", "").isdigit():  # a version suffix
        name = head
    return name.rpartition("-")[2] in COMPILERS


def _grant_toolchain(wall: Wall, driver: str) -> None:
    """What running the compiler `driver` runs and reads beneath the audit layer: its passes (the
    gcc directories beside it, clang's own binary), the assembler and linker it finds, the system
    headers.  Granted only when the policy lets the program run the driver."""
    prefix = os.path.dirname(os.path.dirname(realpath(driver)))
    for sub in TOOLCHAIN_DIRS:
        directory = os.path.join(prefix, sub)
        if not os.path.isdir(directory):
            continue
        wall.grant(directory, EXECUTE | READ)
        for target in os.listdir(directory):  # gcc looks for as and ld in PREFIX/TARGET/bin first
            if os.path.isdir(os.path.join(prefix, target, "bin")):
                wall.grant(os.path.join(prefix, target, "bin"), EXECUTE | READ)
    for name in TOOLCHAIN_PROGRAMS:
        for path in _which(name):
            _grant_executable(wall, path)
            if name == "cc" and os.path.basename(realpath(driver)) != os.path.basename(realpath(path)):
                _grant_toolchain(wall, path)  # rustc links with cc
    for directory in (*HEADER_DIRS, os.path.join(prefix, "include")):
        if os.path.isdir(directory):
            wall.grant(directory, READ)


class Plan:
    """The wall from the sandbox engine's start to the program's first line: the ABI, the children's
    spool moved into a directory of its own (made now: under the wall the program may create and
    remove files there, and nowhere else in the temporary directory), and the compiled rules (made
    before the audit layer is installed: reading an executable's header is pyward's work)."""

    def __init__(self, spool: str | None) -> None:
        self.abi = abi()
        self.spool = spool
        self.spool_dir: str | None = None
        self.wall: Wall | None = None
        if spool and self.abi:
            try:
                os.mkdir(spool + ".d", 0o700)
            except OSError:  # already inside a wall (a heal re-run, pyward under pyward): no spool here
                self.spool = None
                return
            self.spool_dir = spool + ".d"
            self.spool = os.path.join(self.spool_dir, "children.jsonl")

    def compile(self, policy: Policy, context: Context, session: Any) -> None:
        if self.abi:
            reruns = any(getattr(e, "reruns", False) for e in session.engines)
            self.wall = compile_wall(policy, context, self.abi, reruns=reruns)

    def raise_(self, mode: str, session: Any) -> None:
        """Raise the wall now (the program's first line is next) and say which layers are active."""
        journal = session.journal
        session.layers["audit"] = mode
        if self.wall is None:
            session.layers["kernel"] = "unavailable: kernel without Landlock (ABI 0)"
            journal.emit("sandbox", "kernel.unavailable", "landlock", severity="notice", where="",
                         message="kernel without Landlock (ABI 0): the sandbox runs with the audit layer only",
                         details={"abi": 0})
            return
        if not self.wall.fs and not self.wall.net:  # every file and every port allowed (-A)
            session.layers["kernel"] = "off (nothing to restrict: the policy allows every file, command and port)"
            journal.emit("sandbox", "layers", "landlock", severity="info", where="",
                         message=f"sandbox layers: audit hooks ({mode}); no kernel wall: the policy allows every "
                                 "file, command and port", details={"abi": self.abi, "rules": 0})
            return
        try:
            gone = raise_wall(self.wall)
        except OSError as exc:
            session.layers["kernel"] = f"failed: {exc.strerror or exc}"
            journal.emit("sandbox", "kernel.failed", "landlock", severity="warning", where="",
                         message=f"the kernel wall could not be raised ({exc.strerror or exc}): the sandbox "
                                 "runs with the audit layer only", details={"abi": self.abi})
            return
        layers = self.wall.layers()
        session.layers["kernel"] = layers
        held = [name for name in ("read", "write", "run") if layers[name]]
        if layers["tcp_ports"] is not None:
            held.append("TCP ports " + (", ".join(str(port) for port in layers["tcp_ports"]) or "none"))
        if layers["signals"]:
            held.append("signals kept inside the run")
        journal.emit("sandbox", "layers", "landlock", severity="info", where="",
                     message=f"sandbox layers: audit hooks ({mode}) + kernel wall (Landlock ABI {self.abi}: "
                             + (", ".join(held) or "nothing to restrict") + ")",
                     details={**layers, "gone": gone})
        if self.wall.unheld and self.wall.bypassable:
            names = ", ".join(self.wall.unheld)
            journal.emit("sandbox", "kernel.unheld", "landlock", severity="notice", where="",
                         message=f"the kernel wall cannot hold the deny rules {names} (they lie inside a directory "
                                 "the policy allows, and Landlock only allows): the audit layer holds them for "
                                 "Python, but a command it starts without pyward (a shell, a binary, python -S) "
                                 "or native code could reach them",
                         details={"rules": self.wall.unheld})


def plan(spool: str | None) -> Plan:
    return Plan(spool)


def raise_wall(wall: Wall) -> list[str]:
    """Restrict this process and every descendant for good; returns the paths that were gone."""
    from .._native import native

    return native.landlock_restrict(wall.fs, wall.net, sorted(wall.paths.items()), sorted(wall.ports.items()),
                                    wall.scoped)
