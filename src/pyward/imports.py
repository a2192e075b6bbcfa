"""The session's one import hook.

Engines ask the session, never `sys.meta_path`, to act on a module's import:

- `rewrite(wants, rewrite)`: change a module's code before it runs (heal
  applies stored recipes). `wants(fullname)` is asked at each import, so the
  set of modules can grow during the run; `rewrite(code, fullname)` returns
  the code to execute.
- `when_imported(module, callback)`: call `callback(module)` once the module
  has executed (the adapters of integrations).

The hook finds nothing itself: for a module it has work for, it asks the
finders after it for the spec and wraps the real loader, so every other part
of the import (its spec, its `__loader__`'s other methods, its errors) stays
the import system's own.
"""
from __future__ import annotations

import sys

TYPE_CHECKING = False  # importing typing costs milliseconds of start-up
if TYPE_CHECKING:
    from types import CodeType
    from typing import Any, Callable

    Rewrite = Callable[[CodeType, str], CodeType]


class ImportHook:
    def __init__(self) -> None:
        self.watched: dict[str, list[Callable[[Any], None]]] = {}
        self.rewriters: list[tuple[Callable[[str], bool], Rewrite]] = []

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        rewrites = [rewrite for wants, rewrite in self.rewriters if wants(fullname)]
        if not rewrites and fullname not in self.watched:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is None:
                continue
            loader = spec.loader
            if not hasattr(loader, "get_code"):
                rewrites = []  # no code to rewrite (a namespace package)
            if rewrites or (fullname in self.watched and hasattr(loader, "exec_module")):
                # a duck-typed wrapper: subclassing importlib.abc.Loader would shadow what __getattr__ forwards
                spec.loader = _HookedLoader(loader, self, rewrites)  # type: ignore[assignment]
            return spec
        return None


class _HookedLoader:
    """The real loader, with the module's code rewritten before it runs and the
    watchers called after."""

    def __init__(self, loader: Any, hook: ImportHook, rewrites: list[Rewrite]) -> None:
        self.loader, self.hook, self.rewrites = loader, hook, rewrites

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)

    def create_module(self, spec: Any) -> Any:
        return self.loader.create_module(spec)

    def get_code(self, fullname: str) -> Any:
        code = self.loader.get_code(fullname)
        if code is not None:
            for rewrite in self.rewrites:
                code = rewrite(code, fullname)
        return code

    def exec_module(self, module: Any) -> None:
        name = module.__spec__.name  # not __name__: an extension module may name itself otherwise
        code = self.get_code(name) if self.rewrites else None
        if code is None:  # nothing to rewrite, or no code object (an extension module)
            self.loader.exec_module(module)
        else:
            exec(code, module.__dict__)
        for callback in self.hook.watched.pop(name, ()):
            callback(module)
