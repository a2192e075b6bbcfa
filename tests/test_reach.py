"""What the program can reach: no session, journal or engine of pyward's.

A program walks every reference it can follow without the garbage collector
(whose lists are `--allow-ffi=introspection`): from sys.modules, the import
system, the hooks python calls, the signal handlers, sys.monitoring's tools
and its own frames, through dicts, sequences, functions' globals, closures
and defaults, bound methods, classes, instances' dicts and slots, and frames'
locals and callers.  It prints the first path to any instance of the classes
that hold the run's state.  A planted instance, hidden in a closure behind a default,
shows the walk finds what is there.  Under `--heal` the heal engine is in reach
by design, and nothing beyond it.
"""
from __future__ import annotations

import pytest

from helpers import pyward

WALK = """\
import builtins, signal, sys, threading, types

HELD = {"Session", "Journal", "SandboxEngine", "TamperEngine", "HealEngine"}
MINE = sys.argv[1:] == ["--plant"]


def plant():
    class Session:  # a stand-in, in a closure behind a module-level function's default
        pass
    hidden = Session()
    def outer():
        def inner():
            return hidden
        return inner
    def keep(handle=outer()):
        return handle
    sys.modules["planted"] = types.ModuleType("planted")
    sys.modules["planted"].keep = keep


def roots():
    yield "sys.modules", sys.modules
    yield "sys.meta_path", sys.meta_path
    yield "sys.path_hooks", sys.path_hooks
    yield "sys.path_importer_cache", sys.path_importer_cache
    yield "builtins", vars(builtins)
    for name in ("excepthook", "displayhook", "unraisablehook", "breakpointhook"):
        yield f"sys.{name}", getattr(sys, name)
    yield "threading.excepthook", threading.excepthook
    yield "the program's frame", sys._getframe()
    for number in signal.valid_signals():
        try:
            yield f"signal {number}", signal.getsignal(number)
        except (OSError, ValueError):
            pass
    monitoring = getattr(sys, "monitoring", None)
    if monitoring is not None:
        for tool in range(6):
            yield f"sys.monitoring tool {tool}", monitoring.get_tool(tool)


def slots(kind):
    for klass in kind.__mro__:
        names = klass.__dict__.get("__slots__", ())
        for name in (names,) if isinstance(names, str) else names:
            descriptor = klass.__dict__.get(name)
            if descriptor is not None and type(descriptor).__name__ == "member_descriptor":
                yield name, descriptor


def edges(obj):
    if isinstance(obj, dict):
        for key, value in list(obj.items()):
            yield f"[{key!r}]"[:50], value
            yield ".key", key
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for i, value in enumerate(list(obj)):
            yield f"[{i}]", value
    elif isinstance(obj, types.ModuleType):
        yield ".__dict__", obj.__dict__
    elif isinstance(obj, types.FunctionType):
        yield ".__globals__", obj.__globals__
        for i, cell in enumerate(obj.__closure__ or ()):
            yield f".__closure__[{i}]", cell
        yield ".__defaults__", obj.__defaults__
        yield ".__kwdefaults__", obj.__kwdefaults__
        yield ".__dict__", obj.__dict__
    elif isinstance(obj, types.CellType):
        try:
            yield ".cell_contents", obj.cell_contents
        except ValueError:
            pass
    elif isinstance(obj, (types.MethodType, types.BuiltinMethodType)):
        yield ".__self__", obj.__self__
        yield ".__func__", getattr(obj, "__func__", None)
    elif isinstance(obj, types.FrameType):
        yield ".f_locals", obj.f_locals
        yield ".f_globals", obj.f_globals
        yield ".f_back", obj.f_back
    elif isinstance(obj, type):
        yield ".__dict__", dict(obj.__dict__)
        yield ".__mro__", obj.__mro__
    elif isinstance(obj, (staticmethod, classmethod)):
        yield ".__func__", obj.__func__
    elif isinstance(obj, property):
        yield ".fget", obj.fget
    else:
        try:
            yield ".__dict__", object.__getattribute__(obj, "__dict__")
        except (AttributeError, TypeError):
            pass
        for name, descriptor in slots(type(obj)):
            try:
                yield f".{name}", descriptor.__get__(obj, type(obj))
            except AttributeError:
                pass


if MINE:
    plant()
seen, found, walked = set(), {}, 0
todo = list(roots())
while todo:
    path, obj = todo.pop()
    if obj is None or id(obj) in seen or isinstance(obj, (str, bytes, int, float)):
        continue
    seen.add(id(obj))
    walked += 1
    kind = type(obj)
    if kind.__name__ in HELD and kind.__module__.startswith(("pyward", "__main__")):
        found.setdefault(kind.__name__, path)
    for label, value in edges(obj):
        todo.append((path + label, value))
print("walked", walked)
for name, path in sorted(found.items()):
    print("REACHED", name, "<-", path)
"""


def walk(tmp_path, *flags: str, plant: bool = False) -> tuple[int, list[str]]:
    (tmp_path / "walk.py").write_text(WALK)
    run = pyward("run", "-q", "--no-report", *flags, "walk.py", *(["--plant"] if plant else []), cwd=tmp_path,
                 timeout=120)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    return int(lines[0].split()[1]), [line for line in lines[1:] if line.startswith("REACHED")]


def test_the_walk_finds_what_is_there(tmp_path):
    walked, reached = walk(tmp_path, "-A", plant=True)
    assert walked > 2000
    assert [line.split(" <- ")[0] for line in reached] == ["REACHED Session"], reached
    assert reached[0].endswith("['planted'].__dict__['keep'].__defaults__[0].__closure__[0].cell_contents")


@pytest.mark.parametrize("flags", [("-A",), ("-A", "--no-tamper"), ("-A", "--mode=watch"), ("-A", "--no-kernel")])
def test_no_session_journal_or_engine_in_the_program_s_reach(tmp_path, flags):
    walked, reached = walk(tmp_path, *flags)
    assert walked > 2000
    assert reached == []


def test_under_heal_only_the_heal_engine_is_in_reach(tmp_path):
    """Its guards run in the program's code and call it: it holds the session's link, not the session."""
    walked, reached = walk(tmp_path, "-A", "--heal")
    assert walked > 2000
    assert [line.split(" <- ")[0] for line in reached] == ["REACHED HealEngine"], reached
