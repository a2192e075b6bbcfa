"""The heal engine: keep a program alive through structural bugs, honestly.

`pyward run --heal app.py`: a crash on None, a missing key, a bad index, a
division by zero, a bad conversion, str + non-str, a missing file or a call
of None is analysed (analyse.py), a guard is synthesised into the function's
live bytecode and verified (synth.py, guards.py), and a recipe is stored
(store.py) so the next run starts healed.  engine.py ties them together;
commands.py holds `pyward patches / explain / rollback`.

Imported at every `pyward run` start: keep this module light.
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

    from ..config import Settings
    from ..runner import Engine
    from .paths import short_path, store_files, store_path

__all__ = ["child_engine", "make_engine", "outputs", "resilient", "short_path", "store_files", "store_path"]


def __getattr__(name: str) -> Any:  # paths.py's names, imported when first used (never in a run without heal)
    if name in ("short_path", "store_files", "store_path"):
        from . import paths

        return getattr(paths, name)
    raise AttributeError(f"module 'pyward.heal' has no attribute {name!r}")


def outputs(settings: Settings, cwd: str) -> list[str]:
    """What the heal engine writes while the program runs: its patch store."""
    if not settings.get("heal.enabled"):
        return []
    from .paths import store_files, store_path

    return store_files(store_path(settings, cwd))


def make_engine(settings: Settings) -> Engine | None:
    if not settings.get("heal.enabled"):
        return None
    from .engine import HealEngine

    return HealEngine(settings)


class resilient:  # noqa: N801 - used as a decorator and a context manager, like contextlib's
    """Mark code as safe to heal in flight (under `pyward run --heal`).

    As a decorator: a crash inside the function is healed and the function is
    called again with the same arguments (up to `retries` times), so the
    caller never sees a healable exception.  Only use it on functions that
    are safe to re-invoke.  As a context manager (`with pyward.resilient():`)
    a healable crash inside the block is patched and the rest of the block is
    skipped; the journal says so.  Outside `pyward run --heal` it does nothing.
    """

    def __init__(self, function: Callable[..., Any] | None = None, *, retries: int = 3) -> None:
        self.function, self.retries = function, retries
        if function is not None:
            import functools

            functools.update_wrapper(self, function)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.function is None:  # @resilient(retries=2)
            return resilient(args[0], retries=self.retries)
        from .current import active

        attempt = 0
        while True:
            try:
                return self.function(*args, **kwargs)
            except Exception as exc:
                heal = active()
                attempt += 1
                if heal is None or attempt > self.retries or heal.heal(exc, boundary="resilient") is None:
                    raise

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        if instance is None:
            return self
        import functools

        return functools.partial(self.__call__, instance)

    def __enter__(self) -> resilient:
        return self

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> bool:
        if not isinstance(exc, Exception):
            return False
        from .current import active

        heal = active()
        if heal is None:
            return False
        healed = heal.heal(exc, boundary="resilient block")
        if healed is None:
            return False
        heal.skipped_block(exc, healed.label)
        return True


def child_engine(data: dict[str, Any], settings: Settings) -> Engine:
    """The heal engine in a Python child of a `--heal` run (children.py; `settings` hold the run's, its
    store among them)."""
    from .engine import HealEngine

    settings["heal.enabled"] = True
    return HealEngine(settings)
