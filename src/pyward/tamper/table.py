"""The seal table: every seal by (namespace dict, attribute), and the C side it feeds.

Adding a seal registers its namespace (and a sealed function) with the C
watchers, records the seal in the C-held copy of the table (tamper.c), locks
a sealed module's setattr, and seals the globals a sealed function calls.
`reconcile` compares the C copy with this table: the program can clear or
rewrite the Python tables, not the copy.
"""
from __future__ import annotations

import sys

from .._isolation import isolate_builtins
from .._types import ModuleType
from .restore import remember_code
from .seals import MISSING, Seal, called_names, fingerprint, type_dict

isolate_builtins(globals())

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

CALLED = "called by a sealed function"


class SealTable:
    __slots__ = ("seals", "by_dict", "native", "watching", "lock", "finishing", "stopped")

    def __init__(self, native: Any) -> None:
        self.seals: dict[tuple[int, str], Seal] = {}  # (id(namespace dict), attr) -> seal
        self.by_dict: dict[int, Any] = {}  # id(namespace dict) -> owner (kept alive)
        self.native = native
        self.watching = False  # the C watchers are installed (3.12+, native extension)
        self.lock: Callable[[Any], None] = _no_lock  # locks a sealed module's setattr (lock.py)
        self.finishing: dict[str, Any] = {}  # modules sealed as they finish importing (Targets.resolve_pending)
        self.stopped = False  # the engine stopped watching: no change matters any more

    def add(self, seal: Seal) -> None:
        namespace = seal.real_namespace()
        here = id(namespace)  # once: each id() is an audit event (builtins.id)
        key = (here, seal.attr)
        if key in self.seals:
            return
        self.seals[key] = seal
        native, watching = self.native, self.watching
        if watching:
            native.tamper_watch_key(seal.attr)
        if here not in self.by_dict:
            self.by_dict[here] = seal.owner
            if watching:
                native.tamper_watch(namespace)
            if isinstance(seal.owner, ModuleType):  # once per module: the lock depends on nothing else
                self.lock(seal.owner)
        if seal.fingerprint is not None:
            remember_code(seal)
            if watching:
                native.tamper_watch(seal.original)
        self.record(seal, namespace)
        if seal.fingerprint is not None and seal.why != CALLED:
            self._seal_called_globals(seal)

    def record(self, seal: Seal, namespace: dict[str, Any] | None = None) -> None:
        """Keep the seal in C too: the program can clear or rewrite this table, not that copy."""
        if self.native is not None:
            self.native.tamper_seal(namespace if namespace is not None else seal.real_namespace(), seal.attr,
                                    (seal.owner, seal.attr, seal.original, seal.first, seal.name, seal.why))

    def reseal(self, seal: Seal, new: Any) -> None:
        """The seal follows a change that stands."""
        if new is not MISSING or seal.first is MISSING:
            seal.original, seal.fingerprint = new, fingerprint(new)
            self.record(seal)

    def _seal_called_globals(self, seal: Seal) -> None:
        """What a sealed function calls through its globals (a helper, a module, a class)
        is sealed too: rebinding `subprocess._fork_exec` changes what Popen runs
        without touching Popen."""
        function: Any = seal.original
        name = function.__globals__.get("__name__")
        module = sys.modules.get(name) if type(name) is str else None
        if module is None and type(name) is str:
            module = self.finishing.get(name)  # imported, not back in sys.modules yet (Targets.resolve_pending)
        namespace: dict[str, Any] = function.__globals__
        if module is None or getattr(module, "__dict__", None) is not namespace:
            return
        sealed, here = self.seals, id(namespace)
        code = seal.runs[0] if seal.runs is not None else function.__code__  # as read when sealed
        for name in called_names(code).intersection(namespace):  # most names are attributes'
            if (here, name) in sealed or name.startswith("__"):
                continue
            value = namespace.get(name, MISSING)
            if value is MISSING or not (callable(value) or type(value) is ModuleType):
                continue
            if _is_clock(value):  # what time it is decides no operation; test tools fake it (freezegun)
                continue
            self.add(Seal(f"{module.__name__}.{name}", module, name, value, CALLED))

    def seal_instances(self, objects: tuple[Any, ...]) -> None:
        """pyward's own objects (the session, its journal, the engines): an instance
        attribute named like one of their methods would shadow the method for every
        caller (`journal.emit = noop` blinds every engine), so its absence is sealed."""
        for obj in objects:
            if getattr(type(obj), "__dictoffset__", 0) == 0:
                continue
            namespace = obj.__dict__
            for cls in type(obj).__mro__[:-1]:
                for name, value in list(cls.__dict__.items()):
                    if name.startswith("__") or name in namespace or not callable(value) or isinstance(value, type):
                        continue
                    self.add(Seal(f"{type(obj).__module__}.{type(obj).__qualname__}().{name}", obj, name, MISSING,
                                  "pyward's own object: an instance attribute would shadow its method"))

    def reconcile(self) -> list[str]:
        """The seals as C keeps them against this table: the names of seals dropped from
        the table or whose recorded original was rewritten; each is put back."""
        if self.native is None:
            return []
        altered = []
        namespaces: dict[int, int] = {}  # id(owner) -> id(its namespace dict), found once per owner
        last: Any = MISSING
        here = 0
        for owner, attr, original, first, name, why in self.native.tamper_sealed():
            if owner is not last:  # seals come grouped by namespace: id() (an audit event) once per group
                last, ident = owner, id(owner)
                here = namespaces.get(ident) or 0
                if not here:
                    here = namespaces[ident] = id(type_dict(owner) if isinstance(owner, type) else owner.__dict__)
            key = (here, attr)
            seal = self.seals.get(key)
            if seal is not None and seal.original is original and seal.first is first and seal.owner is owner:
                continue
            altered.append(name)
            seal = Seal(name, owner, attr, first, why)
            seal.original, seal.fingerprint = original, fingerprint(original)
            self.seals[key] = seal
        return altered

    def module_owners(self) -> list[Any]:
        """Each module holding a seal, once."""
        owners: dict[int, Any] = {}
        last: Any = MISSING
        for seal in self.seals.values():
            if seal.owner is not last:  # seals come grouped by owner: id() (an audit event) once per group
                last = seal.owner
                if seal.module_owner:
                    owners[id(last)] = last
        return list(owners.values())


def _no_lock(module: Any) -> None:
    pass


def _is_clock(value: Any) -> bool:
    """The `time` and `datetime` modules and what they define."""
    if type(value) is ModuleType:
        return value.__name__ in ("time", "datetime")
    return getattr(value, "__module__", None) in ("time", "datetime")
