"""Installing the sandbox in this process: the decider behind the native hook,
C guards for what has no usable audit event, the guarded os.environ, and the
environment that makes child processes inherit the policy.
"""
from __future__ import annotations

import os
import sys

from .._isolation import isolate_builtins, isolate_module
from ..policy import Policy
from .context import BOOT_DIR, MODES, Context
from .decider import build_decider
from .environ import install_environ
from .errors import AccessDenied, ImportDenied

isolate_builtins(globals())

os = isolate_module(os)  # noqa: F811

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

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
    import _posixsubprocess  # noqa: F401  (wrapped now: later imports of it would be re-imports)

    payload = inheritance_payload(policy, context) if context.inherit else None
    decide, namespace, hidden = build_decider(policy, context, payload)
    if payload is not None:
        set_inherited_environment(payload)
    if context.mode != "watch":
        remove_denied_variables(namespace["evaluate"], namespace["own_variable"])
    guards = install_guards(namespace, payload is not None, protect)
    install_environ(payload is not None)
    native.untrack(*hidden, *guards)
    subinterpreters = "ffi" in policy.allow_all or any(r.scope == "subinterpreters" for r in policy.allows("ffi"))
    from .hooks import emitter

    hook_emit = emitter(context.emit)  # what an install_hook() callback refuses goes to this journal
    native.untrack(hook_emit)
    native.sandbox_install(list(namespace["HANDLERS"]), decide, AccessDenied, MODES[context.mode] != 0,
                           subinterpreters, ImportDenied, hook_emit, namespace["PENDING"], namespace["flush"])
    _installed = True


def install_guards(namespace: dict[str, Any], inherit: bool, protect: Callable[..., Any] | None) -> list[Any]:
    """Replace functions that start processes or open files without a usable audit event."""
    import _posixsubprocess
    import _socket
    import posix

    from .._native import native

    made = []

    def place(module: Any, name: str, guard: Any) -> None:
        setattr(module, name, guard)
        if protect is not None:
            protect(module, name, "sandbox guard")

    # (the environment given to a process start: read into a plain dict or list, from C, before pyward's
    # transform adds its variables: see plain_environment in _native/sandbox.c)
    fork_exec = native.guard("pyward.fork_exec", _posixsubprocess.fork_exec,
                             namespace["inject_fork_exec"] if inherit else None, None,
                             ((5, None, "env"),) if inherit else None)
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
    # extension modules whose C code opens files with no audit event (sqlite3's ATTACH,
    # readline's history, ssl's certificates, shm_open) get guards as they are made
    import _imp

    namespace["guard_module"](_imp)
    for name in ("create_dynamic", "exec_dynamic", "create_builtin"):
        made.append(getattr(_imp, name))
        if protect is not None:
            protect(_imp, name, "sandbox guard")
    made += [namespace["guard_created"], namespace["guard_executed"]]
    # the program's signal handlers, deferred while pyward's Python runs (shield.c)
    import _signal  # type: ignore[import-not-found]  # signal.py's C half

    native.shield_signals(_signal)
    for name in ("signal", "getsignal"):
        if protect is not None:
            protect(_signal, name, "sandbox guard")

    def replace(module: Any, name: str, copy: str, make: Callable[[Any, str], Any]) -> None:
        """`module.name` by the guard `make(original, name)` makes, and so the copy another module took
        of it (os: `from posix import *`, signal.py: `from _signal import *`), when it has one."""
        original = getattr(module, name, None)
        if original is None:
            return
        guard = make(original, name)
        place(module, name, guard)
        if copy in sys.modules and getattr(sys.modules[copy], name, None) is original:
            place(sys.modules[copy], name, guard)
        made.append(guard)

    # process descriptors (no audit event): none of pyward's recorder, no signal through one to it
    def judged(original: Any, name: str) -> Any:  # raises pyward.NAME, judged by the decider
        return native.guard("pyward." + name, original)

    replace(posix, "pidfd_open", "os", judged)
    replace(_signal, "pidfd_send_signal", "signal", judged)
    # entries made with no audit event (3.11-3.13): FIFOs, devices, empty files, anywhere
    for name in ("mkfifo", "mknod"):
        replace(posix, name, "os", lambda original, name: native.guard("pyward." + name, original, None, None,
                                                                        ((0, "path"),)))
    for name in ("_sqlite3", "readline", "_ssl", "_posixshmem", "uvloop.loop", "zmq.backend.cython._zmq",
                 *namespace["NATIVE_IO_ENTRIES"]):
        if name in sys.modules:
            namespace["guard_module"](sys.modules[name])
    # an explicit environment gets pyward's variables; posix_spawn's file_actions (opens in the child,
    # with no audit event) are judged as opens
    for name in ("execve", "posix_spawn", "posix_spawnp") if inherit else ("posix_spawn", "posix_spawnp"):
        replace(posix, name, "os", lambda original, name: native.guard(*namespace["spawn_guard"](name, original)))
    return made


def inheritance_payload(policy: Policy, context: Context) -> str:
    from ..canonical import dumps

    return dumps({"policy": policy.to_json(), "mode": context.mode, "on_deny": context.on_deny,
                  "log": context.log, "spool": context.spool, "protected": list(context.protected_pids),
                  "engines": context.children, "outputs": context.child_outputs})


def remove_denied_variables(evaluate: Callable[[str, str], int], own: Callable[[str], str | None]) -> None:
    """A variable a deny rule names leaves the process environment before the program
    starts: the program is refused it either way (the rule still judges the name), and
    nothing pyward cannot judge sees it either: native code's getenv(), and the children
    that inherit the environment without being armed (`python -S`, a shell, any binary).
    pyward's own variables (`own`: what arms the children) stay, whatever rule names them."""
    from .._native import native

    for name in native.env_names():
        if evaluate("env", name) == 3 and own(name) is None:
            os.unsetenv(name)


def set_inherited_environment(payload: str) -> None:
    """Put the policy and the boot directory in the C environment, so every
    child inherits them (the program's view of os.environ hides them)."""
    original = os.environ.get("PYTHONPATH")
    os.putenv("PYWARD_SANDBOX", payload)
    if original is not None:
        os.putenv("PYWARD_ORIG_PYTHONPATH", original)
    os.putenv("PYTHONPATH", BOOT_DIR if not original else BOOT_DIR + os.pathsep + original)
