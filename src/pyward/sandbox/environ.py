"""`os.environ` through the sandbox: a view of the C environment whose reads ask the policy."""
from __future__ import annotations

import os
import sys

from .._isolation import isolate_builtins, isolate_module
from .context import BOOT_DIR, HIDDEN_ENV

isolate_builtins(globals())

os = isolate_module(os)  # noqa: F811

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def install_environ(inheriting: bool) -> None:
    """Replace os.environ / os.environb by views of the C environment whose
    reads go through the sandbox, and clear the startup snapshot."""
    import posix

    from .._native import native

    real: Any = sys.modules["os"]  # the real module (`os` here is pyward's copy), whose environ is replaced
    old, oldb = real.environ, real.environb
    env = GuardedEnviron(native, old.encodekey, old.decodekey, old.encodevalue, old.decodevalue, inheriting, False)
    envb = GuardedEnviron(native, oldb.encodekey, oldb.decodekey, oldb.encodevalue, oldb.decodevalue, inheriting,
                          True)
    real.environ, real.environb = env, envb
    old._data.clear()
    posix.environ.clear()


class GuardedEnviron(os._Environ):
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

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        """What python's deepcopy of os.environ is: an os._Environ over a snapshot of the
        variables (here, those the program may read), whose writes still reach the process
        environment (requests' tests compare the environment with such a copy)."""
        data = {self.encodekey(key): self.encodevalue(value) for key, value in self._listing()}
        return os._Environ(data, self.encodekey, self.decodekey, self.encodevalue, self.decodevalue)

    def __repr__(self) -> str:
        items = ", ".join(f"{k!r}: {v!r}" for k, v in self.items())
        return f"environ({{{items}}})"
