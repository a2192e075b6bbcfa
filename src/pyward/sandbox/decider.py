"""The private decider: `_decide`'s functions re-created over a namespace of their own.

The namespace holds only the compiled policy, C-level functions captured
now, and caches that map strings to ints; build_decider returns what is to
be untracked by the GC so that nothing reaches it but C.
"""
from __future__ import annotations

import _imp
import _thread
import os
import sys

from .. import _types as types  # not the stdlib's: see _types.py
from .._isolation import isolate_builtins, isolate_module
from ..policy import SERVER_BIND, Policy
from .context import BOOT_DIR, CHILD_ARMING_ENV, HIDDEN_ENV, MODES, Context, stdin_is_tty
from .environ import GuardedEnviron
from .rules import SINK_FILES, compile_rules, implicit_roots, realpath
from .taint import policy_candidates

isolate_builtins(globals())

os = isolate_module(os)  # noqa: F811

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

VERBS = {"read": "read", "write": "write to", "net": "network access to", "run": "running",
         "env": "environment variable", "ffi": "native code", "import": "importing"}
#: Configuration the interpreter and the stdlib read on their own (tracebacks
#: read PYTHON_COLORS/NO_COLOR/TERM, ssl reads SSLKEYLOGFILE, tempfile TMPDIR...):
#: implicit reads, like the stdlib's files, with LC_* and PYTHON*.  Writes are
#: still checked, and none of these hold secrets by convention.
IMPLICIT_ENV = frozenset(("TERM", "NO_COLOR", "FORCE_COLOR", "COLUMNS", "LINES", "TZ", "LANG", "LANGUAGE",
                          "TMPDIR", "TEMP", "TMP", "SSLKEYLOGFILE", "SSL_CERT_FILE", "SSL_CERT_DIR"))
#: Modules whose functions the sandbox replaces by guards: a fresh copy of
#: them (re-import, importlib.util.module_from_spec) would bring the originals back.
GUARDED_MODULES = ("_posixsubprocess", "posix", "_imp")
#: Modules that create subinterpreters, where the policy cannot be checked.
SUBINTERPRETER_MODULES = ("_xxsubinterpreters", "_interpreters", "_xxinterpchannels", "_interpchannels",
                          "_xxinterpqueues", "_interpqueues", "interpreters", "_testcapi", "_testinternalcapi")


#: Libraries whose C code opens files or sockets with no audit event, at the few calls that name them
#: (the guarded calls' events are judged in _decide; what else they open there, such as SQL's read_csv,
#: an XSLT's document() or a gRPC channel's connect, only the kernel wall holds: docs/sandbox.md).
NATIVE_IO_ENTRIES = {
    "duckdb.duckdb": ((None, "connect", "pyward.duckdb.connect", ((0, "database"),)),),
    "h5py.h5f": ((None, "open", "pyward.h5py.open", ((0, "name"),)),
                 (None, "create", "pyward.h5py.create", ((0, "name"),))),
    "lxml.etree": ((None, "parse", "pyward.lxml.parse", ((0, "source"),)),
                   ("_ElementTree", "write", "pyward.lxml.write", ((1, "file"),))),
    "grpc._cython.cygrpc": (("Server", "add_http2_port", "pyward.grpc.add_http2_port", None),),
}
#: Polars' Rust core (its runtime packages' module; polars.polars before them): every local file it reads
#: or writes is named at one of these methods of its frame classes (read_csv is scan_csv(...).collect(),
#: write_parquet a sink_parquet); the static ones are guarded as static methods.
POLARS_IO = (("PyLazyFrame", "new_from_csv", "pyward.polars.scan_csv", None),
             ("PyLazyFrame", "new_from_ndjson", "pyward.polars.scan_ndjson", None),
             ("PyLazyFrame", "new_from_parquet", "pyward.polars.scan_parquet", None),
             ("PyLazyFrame", "new_from_ipc", "pyward.polars.scan_ipc", None),
             ("PyLazyFrame", "new_from_scan_lines", "pyward.polars.scan_lines", None),
             ("PyLazyFrame", "sink_parquet", "pyward.polars.sink_parquet", None),
             ("PyLazyFrame", "sink_ipc", "pyward.polars.sink_ipc", None),
             ("PyLazyFrame", "sink_csv", "pyward.polars.sink_csv", None),
             ("PyLazyFrame", "sink_ndjson", "pyward.polars.sink_ndjson", None),
             ("PyDataFrame", "read_json", "pyward.polars.read_json", None),
             ("PyDataFrame", "read_avro", "pyward.polars.read_avro", None),
             ("PyDataFrame", "write_json", "pyward.polars.write_json", None),
             ("PyDataFrame", "write_avro", "pyward.polars.write_avro", None))
NATIVE_IO_ENTRIES.update({name: POLARS_IO for name in (
    "_polars_runtime_32._polars_runtime", "_polars_runtime_64._polars_runtime",
    "_polars_runtime_compat._polars_runtime", "polars.polars")})


#: Modules that hand the program native memory: importing them is "ffi" (scope: the
#: library's name; the C half counts as its package).
FFI_MODULES = {"ctypes": "ctypes", "_ctypes": "ctypes", "cffi": "cffi", "_cffi_backend": "cffi"}


def build_decider(policy: Policy, context: Context,
                  payload: str | None = None) -> tuple[Callable[..., Any], dict[str, Any], list[Any]]:
    """Re-create `_decide`'s functions in a private namespace; return
    (decide, namespace, objects to untrack)."""
    import _posixsubprocess
    import _socket
    import builtins
    import posix

    from .._native import native
    from . import _decide

    rules, inodes = compile_rules(policy)
    outputs_real = {realpath(p) for p in context.outputs}
    for candidate in policy_candidates(os.getcwd()):  # no writing its own policy
        if realpath(candidate) not in outputs_real:  # (except the policy `pyward learn` writes)
            rules["write"][1].append((0, realpath(candidate), "pyward (a file it reads its policy from)"))
    roots, files = implicit_roots(context.program_dir, context.search_path)
    if context.mode == "prompt":
        files = files | {"/dev/tty"}  # the answers are read from there
    if context.spool:
        files = files | {context.spool}  # children's events, read back at the end
    outputs = {realpath(p) for p in context.outputs}
    how = policy.how_to_allow("{perm}", "{scope}").replace("'{scope}'", "'{scope}'")
    caches: dict[str, dict[Any, Any]] = {name: {} for name in (
        "CACHE", "NOTED", "GRANTED", "RESOLVED", "RESOLVED_PATHS", "DIRS", "PLANS", "SPOTS", "QUIET", "STATE", "TTY",
        "ON_DISK", "RULE_ADDRESSES")}
    stdlib = os.path.dirname(os.__file__)
    # directories whose files open quietly, and the paths opened so: read by the C side before it calls the decider
    # (a directory listed for it must not take a hard link to a denied file for a plain one)
    denied_inodes = tuple(sorted({int(key.split(":")[1]) for keys in inodes.values() for key in keys}))
    quiet_dirs, quiet_paths = native.take_quiet_dirs(denied_inodes) if hasattr(native, "take_quiet_dirs") else ({}, {})
    namespace: dict[str, Any] = {
        "QUIET_DIRS": quiet_dirs,
        "QUIET_PATHS": quiet_paths,
        "__builtins__": {name: getattr(builtins, name) for name in (
            "len", "str", "int", "type", "tuple", "list", "dict", "bytes", "range", "zip", "OSError",
            "TypeError", "ValueError", "KeyError", "IndexError", "AttributeError", "Exception", "isinstance",
            "PermissionError",
            "hasattr", "None",
            "True", "False") if hasattr(builtins, name)},
        "__name__": "pyward.sandbox.decider",
        **caches,
        "PENDING": [],
        "MODE": MODES[context.mode],
        "CONFIGURED": policy.configured,
        "RULES": rules,
        "DENY_INODES": inodes,
        "HOW": how,
        "SERVER_BIND": SERVER_BIND,
        "VERBS": dict(VERBS),
        "EMIT": context.emit,
        "EXIT_ON_DENY": context.exit_on_deny,
        "GETFRAME": sys._getframe,
        "REALPATH": native.realpath,
        "GETCWD": posix.getcwd,
        "STAT": posix.stat,
        "LSTAT": posix.lstat,
        "READLINK": posix.readlink,
        "FSTAT": posix.fstat,
        # type checks that call nothing the program defined (isinstance reads __class__)
        "SUBCLASS": type.__subclasscheck__,
        "TYPE_MRO": type.__dict__["__mro__"].__get__,
        "TYPE_DICT": type.__dict__["__dict__"].__get__,
        "FD_OBJECT": "(a file descriptor given by an object's __index__)",
        "DEVICE_NODE": "(a device node)",
        "O_NOFOLLOW": os.O_NOFOLLOW,
        "SPAWN_OPEN": getattr(os, "POSIX_SPAWN_OPEN", 0),
        "O_CREAT": os.O_CREAT,
        "O_EXCL": os.O_EXCL,
        "ACCESS_FLAGS": os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND,
        # a string per access combination, appended to a path to key QUIET
        "WANTS": {n: "\x00" + str(n) for n in range(
            (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND) + 1)},
        "ENTRY_OPS": frozenset(("remove", "rmdir", "mkdir", "rmtree", "mkfifo", "mknod")),
        "PAYLOAD": payload,
        # the process's own: a second copy (importlib.util.module_from_spec) gets the same guards
        "POSIX_MODULE": posix,
        "POSIXSUBPROCESS_MODULE": _posixsubprocess,
        "RERUN": context.rerun,
        "PROTECTED_PIDS": frozenset(context.protected_pids),
        "SIGNALS_SCOPED": context.signals_scoped,
        "KILL": posix.kill,
        "GETPID": posix.getpid,
        "THREAD_ID": _thread.get_native_id,
        "GETEUID": posix.geteuid,
        "BOOT_DIR": BOOT_DIR,
        # its own reads (PATH): unchecked, since a check inside a verdict is a nested verdict
        "ENV_GET": native.take_env_reader() if hasattr(native, "take_env_reader") else native.env_get,
        "OPEN": posix.open,
        "READ": posix.read,
        "WRITE": posix.write,
        "O_RDWR": os.O_RDWR,
        "O_WRONLY": os.O_WRONLY,
        "O_APPEND": os.O_APPEND,
        "O_TRUNC": os.O_TRUNC,
        "WRITE_FLAGS": os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND,
        "STDIN_IS_TTY": stdin_is_tty(),
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
        "INET_NTOP": _socket.inet_ntop,
        "INET_ATON": _socket.inet_aton,
        "INET_NTOA": _socket.inet_ntoa,
        "V4_MAPPED": b"\x00" * 10 + b"\xff\xff",
        "RESOLVE": getattr(native, "resolve", None),
        "HEX_COLON": "0123456789abcdef:.",
        "HEX_DOT": "0123456789abcdefx.",
        "IMPLICIT_READ_ROOTS": roots,
        "IMPLICIT_READ_FILES": files,
        "IMPLICIT_WRITE_FILES": frozenset((*outputs, *SINK_FILES)),
        "PROGRAM_DIRS": (realpath(context.program_dir),),
        "STDLIB_NAMES": frozenset(sys.stdlib_module_names),
        "OWN_PACKAGES": frozenset(("pyward", "bytecode", "sitecustomize", "usercustomize")),
        "GUARDED_MODULES": frozenset(GUARDED_MODULES),
        "SUBINTERPRETER_MODULES": frozenset(SUBINTERPRETER_MODULES),
        "FFI_MODULES": dict(FFI_MODULES),
        "HIDDEN_ENV": frozenset(HIDDEN_ENV),
        "CHILD_ARMING_ENV": frozenset(CHILD_ARMING_ENV),
        "PYTHONPATH_NAMES": frozenset(("PYTHONPATH", "PYWARD_ORIG_PYTHONPATH")),
        "OWN_ENV_WRITERS": frozenset((GuardedEnviron.__setitem__.__code__, GuardedEnviron.__delitem__.__code__)),
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
        # the function that writes a bytecode cache the program asked for (compileall, `-m py_compile`):
        # judged as any write, where the import system's own caches are implicit (_decide.compiling)
        "BYTECODE_WRITERS": frozenset(((stdlib + "/py_compile.py", "compile"),)),
        "MODULE_SUFFIXES": (".py", ".pyc", *_imp.extension_suffixes()),
        # guards of C functions that open files with no audit event (_decide.guard_module); None in
        # degraded mode, which has no guards
        "NATIVE_GUARD": getattr(native, "guard", None),
        "GUARD_METHOD": getattr(native, "guard_method", None),
        "STATIC_METHOD": staticmethod,
        "GUARD_TYPE": type(native.guard(None, len)) if hasattr(native, "guard") else None,
        "SQLITE_AUTHORIZER": getattr(native, "sqlite_authorizer", None),
        "SQLITE_BIND": getattr(native, "sqlite_bind", None),
        "SQLITE_ARM": getattr(native, "sqlite_arm", None),
        "SHIELD_SIGNALS": getattr(native, "shield_signals", None),
        "UNARMED_DATABASE": "(a database whose ATTACH pyward cannot judge)",
        "METHOD_DESCRIPTOR": type(str.join),
        "MODULE_TYPE": types.ModuleType,
        "MODULE_DICT": vars(types.ModuleType)["__dict__"].__get__,
        "TYPE_FLAGS": type.__dict__["__flags__"].__get__,
        "IMMUTABLE_TYPE": 1 << 8,  # Py_TPFLAGS_IMMUTABLETYPE: a C type, whose dict the program cannot change
        "READLINE_FILES": (("read_history_file", 0), ("write_history_file", 0), ("append_history_file", 1),
                           ("read_init_file", 0)),
        # uvloop's Loop methods that stand for a connect, bind, lookup or process start (libuv raises no event)
        "LOOP_METHODS": ("create_connection", "create_server", "create_datagram_endpoint", "create_unix_connection",
                         "create_unix_server", "getaddrinfo", "getnameinfo", "sock_connect", "subprocess_exec",
                         "subprocess_shell"),
        # libraries that open files and sockets in C, at the few calls that name them: module -> ((class or
        # None, function, event, path arguments), ...); what else they open only the kernel wall holds
        "NATIVE_IO_ENTRIES": NATIVE_IO_ENTRIES,
        # files an extension module's C code reads whatever the program does, judged at its import: DuckDB
        # reads its cgroup to size its threads (each database it makes), and aborts the process if it cannot
        "NATIVE_READS": {"duckdb.duckdb": ("/proc/self/cgroup",)},
        "FSPATH_DATABASE": "(a database named by an object's __fspath__)",
        "COMPUTED_DATABASE": "(a database name computed in SQL)",
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
                         namespace["PENDING"], quiet_dirs, quiet_paths, inodes, namespace["VERBS"],
                         namespace["FFI_MODULES"]]
    for handler in handlers.values():  # closures made by path_handler() & co.
        hidden.append(handler)
        hidden += [cell for cell in (handler.__closure__ or ())]
    for perm_rules in rules.values():
        hidden += [perm_rules[0], perm_rules[1]]
    return namespace["decide"], namespace, hidden
