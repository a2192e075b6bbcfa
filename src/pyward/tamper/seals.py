"""What a seal is, which targets are sealed by default, and how names resolve.

A seal records a target (`builtins.open`, `ssl.SSLContext.wrap_socket`), the
namespace that holds it (a module or a class) and the exact object found
there, plus a fingerprint of functions (code, defaults, closure), so that a
rebinding *and* a code swap are both seen, and the original can be put back.
"""
from __future__ import annotations

import sys
from gc import get_referents as _get_referents

from .. import _types as types  # not the stdlib's: see _types.py
from .._isolation import isolate_builtins

isolate_builtins(globals())

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: Sealed unless the user turns tamper off.  Modules not yet imported are
#: sealed when the program imports them (pyward never imports them itself).
#: A class is sealed with the methods its instances perform the guarded
#: operation through: replacing `socket.socket.connect` changes every
#: connection without touching `socket.socket`.  A method a class inherits
#: (socket.socket's come from _socket.socket) is sealed as absent from the
#: class's own namespace: defining it there is the change.  The globals a
#: sealed Python function calls are sealed with it (table.py).
DEFAULT_TARGETS = (
    "builtins.open", "builtins.__import__", "builtins.exec", "builtins.eval", "builtins.compile",
    "socket.socket", "socket.create_connection", "socket.getaddrinfo",
    "socket.socket.connect", "socket.socket.connect_ex", "socket.socket.bind", "socket.socket.sendto",
    "socket.socket.sendmsg", "socket.socket.send", "socket.socket.sendall", "socket.socket.accept",
    "socket.socket.listen", "socket.socket.recv", "socket.socket.recv_into", "socket.socket.recvfrom",
    "subprocess.Popen", "subprocess.Popen.__init__", "subprocess.Popen._execute_child",
    "subprocess.Popen.communicate", "subprocess.run", "subprocess.call", "subprocess.check_call",
    "subprocess.check_output", "subprocess.getoutput", "subprocess.getstatusoutput",
    "os.system", "os.popen", "os.exec*", "os.spawn*", "os.posix_spawn*", "posix.posix_spawn*", "posix.system",
    "_posixsubprocess.fork_exec", "ssl.SSLContext", "ssl.SSLContext.wrap_socket", "ssl.SSLContext.wrap_bio",
    "ssl.SSLContext.load_verify_locations", "ssl.SSLContext.load_cert_chain", "ssl.SSLSocket.connect",
    "ssl.SSLSocket.do_handshake", "ssl.create_default_context", "hashlib.new", "random.random",
    "io.open", "io.FileIO", "os.open", "os.environ", "os.putenv", "os.unsetenv",
    "sys.meta_path", "sys.path_hooks", "sys.settrace", "sys.setprofile", "sys.addaudithook", "sys.audit",
    "pyward.journal.Journal.emit", "pyward.journal.Journal.add_sink", "pyward.runner.Session.finish",
    "pyward.runner.Session.acting", "pyward.runner.Session.acting_engine", "pyward.report.write",
    # the tamper engine itself: what it runs, and the helpers it calls through its module's globals
    "pyward.tamper.engine.TamperEngine.*", "pyward.tamper.engine.*", "pyward.tamper.seals.*",
    "pyward.tamper.restore.*", "pyward.tamper.patcher.*", "pyward.tamper.own.*",
    "pyward.tamper.table.SealTable.*", "pyward.tamper.table.*", "pyward.tamper.targets.Targets.*",
    "pyward.tamper.targets.*", "pyward.tamper.alerts.Alerts.*", "pyward.tamper.alerts.*",
    "pyward.tamper.checks.Checks.*", "pyward.tamper.checks.*", "pyward.tamper.watchers.Watchers.*",
    "pyward.tamper.watchers.*", "pyward.tamper.lock.ModuleLock.*", "pyward.tamper.lock.*", "pyward.tamper.events.*",
)


class Seal:
    __slots__ = ("name", "owner", "attr", "original", "fingerprint", "why", "first", "runs")

    def __init__(self, name: str, owner: Any, attr: str, original: Any, why: str) -> None:
        self.name, self.owner, self.attr, self.original, self.why = name, owner, attr, original, why
        self.fingerprint, self.runs = fingerprint_and_runs(original)
        self.first = original  # what was sealed; `original` follows changes the user let stand

    def namespace(self) -> dict[str, Any]:
        return self.owner.__dict__

    def real_namespace(self) -> dict[str, Any]:
        """The dict itself (a class's hides behind its mappingproxy): what watchers see."""
        return type_dict(self.owner) if isinstance(self.owner, type) else self.owner.__dict__

    @property
    def module_owner(self) -> bool:
        return isinstance(self.owner, types.ModuleType)

    def current(self) -> Any:
        """The raw namespace entry now (a missing entry is _MISSING)."""
        return self.namespace().get(self.attr, MISSING)

    def changed(self, deep: bool = True) -> str | None:
        """How the target differs from the seal: None, 'rebound', 'deleted' or 'code'
        (code, defaults and closure compared only when `deep`)."""
        now = self.current()
        if now is self.original:
            pass
        elif now is MISSING:
            return "deleted"
        else:
            return "rebound"
        if deep and self.fingerprint is not None and fingerprint(now) != self.fingerprint:
            return "code"
        return None


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


MISSING = _Missing()


def fingerprint(obj: Any) -> tuple[Any, ...] | None:
    """Python functions: code (bytecode, constants, names), defaults, kwdefaults,
    closure cell contents' identities.  Other objects: None (identity is enough)."""
    return fingerprint_and_runs(obj)[0]


def fingerprint_and_runs(obj: Any) -> tuple[tuple[Any, ...] | None, tuple[Any, Any, Any] | None]:
    """(fingerprint, (code, defaults, kwdefaults)) of a Python function, (None, None) for
    anything else.  Each of those attributes is read once: every read is an audit event
    (object.__getattr__), which the sealing of ~300 targets at start-up would pay three times."""
    if type(obj) is types.FunctionType:
        code, closure, defaults, kwdefaults = obj.__code__, obj.__closure__, obj.__defaults__, obj.__kwdefaults__
        cells = tuple(id(c.cell_contents) if _has_contents(c) else None for c in closure) if closure else ()
        return ((id(code), code.co_code, code.co_consts, code.co_names, defaults,
                 tuple(sorted(kwdefaults.items())) if kwdefaults else (), cells), (code, defaults, kwdefaults))
    return None, None


def _has_contents(cell: Any) -> bool:
    try:
        _ = cell.cell_contents
    except ValueError:
        return False
    return True


def split_target(spec: str, extra: dict[str, Any] | None = None) -> tuple[str, list[str]]:
    """'ssl.SSLContext.wrap_socket' -> ('ssl', ['SSLContext', 'wrap_socket']) using the
    longest prefix that is an imported module (or one in `extra`); ('', []) when none is."""
    parts = spec.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        name = ".".join(parts[:cut])
        if name in sys.modules or (extra and name in extra):
            return name, parts[cut:]
    return "", parts


def resolve(spec: str, why: str, extra: dict[str, Any] | None = None) -> tuple[list[Seal], str | None]:
    """Seals for `spec` if its module is imported (else ([], None): pending), or
    ([], error) when the module is imported but the name cannot be found.  `extra`:
    modules that finished importing but are not back in sys.modules yet."""
    module_name, rest = split_target(spec, extra)
    if not module_name:
        return [], None
    owner: Any = (extra or {}).get(module_name) or sys.modules[module_name]
    for i, part in enumerate(rest[:-1]):
        value = owner.__dict__.get(part, MISSING) if hasattr(owner, "__dict__") else MISSING
        if value is MISSING:
            if isinstance(owner, types.ModuleType) and i == 0 and f"{module_name}.{part}" not in sys.modules:
                return [], None  # maybe a submodule, imported later
            return [], f"{'.'.join([module_name, *rest[:i + 1]])} does not exist"
        owner = value
    last = rest[-1]
    namespace = owner.__dict__
    if any(c in last for c in "*?"):
        names = sorted(n for n in glob_names(last, list(namespace)) if not n.startswith("__"))
        prefix = spec.rpartition(".")[0]
        return [Seal(f"{prefix}.{n}", owner, n, namespace[n], why) for n in names
                if callable(namespace[n]) or isinstance(namespace[n], type)], None
    if last not in namespace:
        if isinstance(owner, type) and hasattr(owner, last):  # inherited: sealed as absent from the class's own
            return [Seal(spec, owner, last, MISSING, why)], None
        return [], f"{spec}: {'.'.join([module_name, *rest[:-1]])} has no attribute {last!r}"
    return [Seal(spec, owner, last, namespace[last], why)], None


def called_names(code: types.CodeType) -> set[str]:
    """The global names a function's code (and the functions nested in it) loads."""
    names = set(code.co_names)
    nested = [const for const in code.co_consts if type(const) is types.CodeType]
    while nested:
        inner = nested.pop()
        names.update(inner.co_names)
        nested.extend(const for const in inner.co_consts if type(const) is types.CodeType)
    return names


def glob_names(pattern: str, names: list[str]) -> list[str]:
    """The names `pattern` matches.  `x*` (every default glob) is a prefix search run
    in C over the names joined (a call per name costs ~1,000 instructions: `os.exec*`
    alone would cost ~0.4 M); any other pattern goes name by name through glob_match."""
    head = pattern[:-1]
    if pattern.endswith("*") and "*" not in head and "?" not in head:
        if not head:
            return names
        text = "\0" + "\0".join(names) + "\0"
        if text.count("\0") != len(names) + 1:  # a name holding the separator: name by name
            return [n for n in names if n.startswith(head)]
        found, key = [], "\0" + head
        at = text.find(key)
        while at >= 0:
            end = text.find("\0", at + 1)
            found.append(text[at + 1:end])
            at = text.find(key, end)
        return found
    return [n for n in names if glob_match(pattern, n)]


def glob_match(pattern: str, name: str) -> bool:
    """`*` (any run of characters) and `?` (one character), case-sensitive: enough
    for attribute names, without importing fnmatch and re (~3 ms of every run)."""
    p = n = 0
    star, mark = -1, 0
    while n < len(name):
        if p < len(pattern) and pattern[p] in ("?", name[n]):
            p, n = p + 1, n + 1
        elif p < len(pattern) and pattern[p] == "*":
            star, mark, p = p, n, p + 1
        elif star >= 0:
            p, mark = star + 1, mark + 1
            n = mark
        else:
            return False
    return all(c == "*" for c in pattern[p:])


def describe(value: Any) -> str:
    """`<function fake_open at evil.py:12>` for functions; a short repr otherwise (never the program's __repr__)."""
    if value is MISSING:
        return "<deleted>"
    if value is None or value is True or value is False:  # (a hook removed, a flag set: their own words)
        return repr(value)
    if type(value) is types.FunctionType:
        code = value.__code__
        return f"<function {value.__qualname__} at {code.co_filename}:{code.co_firstlineno}>"
    kind = type(value)
    if kind is types.MethodType and type(value.__func__) is types.FunctionType:  # pdb's trace_dispatch
        code = value.__func__.__code__
        return f"<method {value.__func__.__qualname__} at {code.co_filename}:{code.co_firstlineno}>"
    if kind in (types.BuiltinFunctionType, type):
        return f"<{kind.__name__} {getattr(value, '__qualname__', '?')}>"
    if kind is types.CodeType:
        return f"<code {value.co_name} at {value.co_filename}:{value.co_firstlineno}>"
    return f"<{kind.__module__}.{kind.__qualname__} object>"


def prefixes(spec: str, _cache: dict[str, tuple[str, ...]] = {}) -> tuple[str, ...]:  # noqa: B006
    """'a.b.c' -> ('a', 'a.b'): the module names a dotted target can live under."""
    found = _cache.get(spec)
    if found is None:
        parts = spec.split(".")
        found = _cache[spec] = tuple(".".join(parts[:i]) for i in range(1, len(parts)))
    return found


def type_dict(cls: type) -> Any:
    """The real dict behind a class's mappingproxy (the watcher needs the dict itself)."""
    for referent in _get_referents(cls.__dict__):
        if isinstance(referent, dict):
            return referent
    return cls.__dict__
