"""The run's engines in a Python child of the guarded program.

The sandbox arms every Python child (sandbox/childboot.py) and carries, in the
same payload, what the run's other engines asked to give them
(`Engine.child_arming`): here each such engine is made by its package's
`child_engine(data, settings)`, and all of them run in one session of the
child (runner.guard_child). Their events are shown on the child's stderr and
spooled for the run's record (spool.py), as the sandbox's are. A child
started outside the sandbox's reach (`--no-inherit`, `python -S`) runs none.
"""
from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

#: the engines that follow the program into its Python children (besides the sandbox, which carries them),
#: in the order they start there
CHILD_ENGINES = ("tamper", "heal")

#: True in a Python child the sandbox armed: a `pyward run` here (a reloader restarting `sys.orig_argv`,
#: as werkzeug's does) runs its program under the run that armed this process (runner.run_as_child)
armed = False


def engine_settings(settings: Any, prefix: str) -> dict[str, Any]:
    """What an engine hands its Python children (`Engine.child_arming`): its own settings (`prefix`, as
    "heal.") and the console's."""
    return {key: value for key, value in settings.items()
            if key.startswith(prefix) or key in ("verbose", "quiet", "color")}


def _asked(engines: dict[str, Any]) -> list[tuple[str, Any]]:
    """The engines given to this child, each with its data."""
    return [(name, engines[name]) for name in CHILD_ENGINES if type(engines.get(name)) is dict]


def _package(name: str) -> Any:
    __import__(f"pyward.{name}")
    return sys.modules[f"pyward.{name}"]


def prepare_engines(engines: dict[str, Any]) -> None:
    """Before the child's sandbox is installed: each engine's module imported, so that what it reads of
    pyward's own as it is imported (heal reads PYWARD_DEBUG) is not the program's to be judged for."""
    for name, _ in _asked(engines):
        try:
            __import__(f"pyward.{name}.engine")
        except Exception:  # arm_engines says so, once the child can speak
            pass


def arm_engines(engines: dict[str, Any], spool: str | None, guard_child: Callable[..., Any]) -> None:
    """The engines `engines` names, in one session of this child made by `guard_child` (runner.guard_child,
    handed in by the child's sandbox: runner's recorder reads CHILD_ENGINES, so this module cannot import it)."""
    from . import config

    settings = config.defaults()
    settings.update({"report": False, "log": None})
    made = []
    for name, data in _asked(engines):
        given = data.get("settings")
        if type(given) is dict:  # the run's settings for this engine (engine_settings), known names only
            settings.update({key: value for key, value in given.items() if key in settings})
        try:
            made.append(_package(name).child_engine(data, settings))
        except Exception as exc:  # the child runs as python would, without that engine, and says so
            _cannot_start(name, exc)
    if not made:
        return
    try:
        guard_child(settings, made, spool)
    except Exception as exc:
        _cannot_start(" and ".join(engine.name for engine in made), exc)


def _cannot_start(name: str, exc: Exception) -> None:
    sys.stderr.write(f"[pyward][error] the {name} engine could not start in this Python child "
                     f"({type(exc).__name__}: {exc}): it runs without it\n")
    sys.stderr.flush()
