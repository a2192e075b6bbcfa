"""The tamper engine against a program that tries to blind it from inside: its C control
functions called directly, its seal tables cleared, its journal's method shadowed, `acting`
borrowed, a sealed module's class swapped, a sealed class's method or a sealed function's
global rebound.  Each test asserts what the report file (or the log) records and what the
program saw, not pyward's console text alone; plus the interpreter surviving what the
program does to the sandbox's untracked objects, and `__pycache__` writes outside the
program's tree."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import pyward
from helpers import clean_env
from sandbox_helpers import guard

WATCHERS = sys.version_info >= (3, 12)
FIND_ENGINE = """
    import gc, sys
    engine = next(o for o in gc.get_objects() if type(o).__name__ == "TamperEngine")
"""


def alerts(run):
    return run.events("alert", engine="tamper")


def report_alerts(tmp_path):
    data = json.loads((tmp_path / "r.json").read_text())
    return [e for e in data["events"] if e["engine"] == "tamper" and e["kind"] == "alert"]


def test_the_extension_control_functions_refuse_the_program(tmp_path):
    code = """
        import os
        from pyward._native import _pyward as native
        calls = {
            "tamper_quiet": lambda: native.tamper_quiet(setattr, os, "system", len),
            "tamper_stop": native.tamper_stop,
            "tamper_unwatch": lambda: native.tamper_unwatch(os.__dict__),
            "tamper_install": lambda: native.tamper_install(print, print, ()),
            "tamper_import_gate": lambda: native.tamper_import_gate(None),
            "tamper_lock_install": lambda: native.tamper_lock_install(print, None, ValueError, set()),
            "tamper_watch_modules": lambda: native.tamper_watch_modules({}, None),
            "tamper_seal": lambda: native.tamper_seal(os.__dict__, "system", None),
        }
        for name, call in calls.items():
            try:
                call()
                print(name, "went through")
            except PermissionError:
                print(name, "refused")
        os.system = len
        print(os.system is len)
    """
    run = guard(tmp_path, code, "--report", "r.json")
    lines = run.stdout.splitlines()
    assert lines[:-1] == [f"{n} refused" for n in ("tamper_quiet", "tamper_stop", "tamper_unwatch", "tamper_install",
                                                     "tamper_import_gate", "tamper_lock_install",
                                                     "tamper_watch_modules", "tamper_seal")], run
    assert lines[-1] == "True"
    assert [a["name"] for a in report_alerts(tmp_path)] == ["os.system"], run


def test_clearing_the_seal_tables_is_an_alert_and_the_change_is_still_found(tmp_path):
    code = FIND_ENGINE + """
    engine.table.seals.clear()
    engine.table.by_dict.clear()
    import os
    os.system = len
    """
    run = guard(tmp_path, code, "--report", "r.json")
    names = [a["name"] for a in report_alerts(tmp_path)]
    assert "pyward.tamper.seals" in names, run
    assert "os.system" in names, run


def test_rewriting_a_seal_original_is_an_alert(tmp_path):
    code = FIND_ENGINE + """
    import os
    fake = lambda cmd: 0
    for seal in list(engine.table.seals.values()):
        if seal.name == "os.system":
            seal.original = seal.first = fake
    os.system = fake
    """
    run = guard(tmp_path, code, "--report", "r.json")
    names = [a["name"] for a in report_alerts(tmp_path)]
    assert "pyward.tamper.seals" in names and "os.system" in names, run


def test_an_instance_attribute_shadowing_the_journal_method_is_an_alert(tmp_path):
    code = """
    import gc, os
    journal = next(o for o in gc.get_objects() if type(o).__name__ == "Journal")
    journal.emit = lambda *a, **k: None
    os.system = len
    import json  # 3.11: a check at the next import
    """
    run = guard(tmp_path, code, "--report", "r.json")
    names = [a["name"] for a in report_alerts(tmp_path)]
    assert "pyward.journal.Journal().emit" in names, run
    assert "os.system" in names, run  # the engine still journals, past the shadow


def test_borrowing_acting_does_not_authorise_the_program(tmp_path):
    code = """
    import gc, os
    session = next(o for o in gc.get_objects() if type(o).__name__ == "Session")
    with session.acting("heal"):
        os.system = len
    """
    run = guard(tmp_path, code, "--report", "r.json")
    assert [a["name"] for a in report_alerts(tmp_path)] == ["os.system"], run
    assert not run.events("authorised", engine="tamper"), run


def test_acting_with_code_compiled_under_pyward_s_file_name_is_not_authorised(tmp_path):
    code = f"""
    import gc, os
    session = next(o for o in gc.get_objects() if type(o).__name__ == "Session")
    forged = compile("os.system = len", {os.path.join(os.path.dirname(pyward.__file__), "heal", "engine.py")!r}, "exec")
    with session.acting("heal"):
        exec(forged, {{"os": os}})
    """
    run = guard(tmp_path, code, "--report", "r.json")
    assert [a["name"] for a in report_alerts(tmp_path)] == ["os.system"], run


@pytest.mark.parametrize("flags", [(), ("--restore",)])
def test_a_sealed_module_class_swap_is_an_alert(tmp_path, flags):
    code = """
    import os, types
    class Evil(types.ModuleType):
        def __getattribute__(self, name):
            if name == "system":
                return lambda cmd: print("evil", cmd)
            return super().__getattribute__(name)
    try:
        os.__class__ = Evil
    except Exception as exc:
        print("refused", type(exc).__name__)
    print(type(os).__name__)
    """
    run = guard(tmp_path, code, "--report", "r.json", *flags)
    assert [a["name"] for a in report_alerts(tmp_path)] == ["os.__class__"], run
    assert run.stdout.splitlines()[-1] == ("module" if flags else "Evil"), run


def test_replacing_a_method_of_a_sealed_class_is_an_alert(tmp_path):
    code = """
    import socket
    import colorsys  # 3.11: a module imported later is sealed at the next import (docs/tamper.md)
    real = socket.socket.connect
    def connect(self, address):
        return real(self, address)
    socket.socket.connect = connect
    import wave  # 3.11: a class attribute change is found at the next import
    """
    run = guard(tmp_path, code, "--report", "r.json")
    assert "socket.socket.connect" in [a["name"] for a in report_alerts(tmp_path)], run


def test_restore_removes_a_method_defined_over_an_inherited_one(tmp_path):
    code = """
    import socket
    import colorsys  # 3.11: sealed at the next import
    socket.socket.connect = lambda self, address: print("evil")
    import wave  # 3.11: found, and restored, at the next import
    print("connect" in socket.socket.__dict__)
    """
    run = guard(tmp_path, code, "--report", "r.json", "--restore")
    assert "socket.socket.connect" in [a["name"] for a in report_alerts(tmp_path)], run
    assert run.stdout.splitlines()[-1] == "False", run


def test_rebinding_a_global_a_sealed_function_calls_is_an_alert(tmp_path):
    code = """
    import subprocess
    import colorsys  # 3.11: sealed at the next import
    subprocess._fork_exec = lambda *a: 0  # what Popen._execute_child calls
    import wave
    """
    run = guard(tmp_path, code, "--report", "r.json")
    alert = next(a for a in report_alerts(tmp_path) if a["name"] == "subprocess._fork_exec")
    assert alert["details"]["why"] == "called by a sealed function", run


# -- the interpreter survives what the program does to untracked objects -----------------------

DROP_UNTRACKED = """
    import gc
    from pyward._native import _pyward as native
    def f():
        pass
    native.untrack(f)
    del f
    gc.collect()
    print("alive")
"""

CLEAR_DECIDER = """
    import gc, sys
    class Err:
        def __init__(self, real):
            self.real, self.done = real, False
        def write(self, s):
            frame = sys._getframe()
            while frame is not None and not self.done:
                if frame.f_globals.get("__name__") == "pyward.sandbox.decider":
                    frame.f_globals.clear()
                    self.done = True
                frame = frame.f_back
            return self.real.write(s)
        def flush(self):
            self.real.flush()
    sys.stderr = Err(sys.stderr)
    for path in ("/etc/shadow", "/etc/hostname"):
        try:
            open(path)
        except Exception:
            pass
        gc.collect()
    print("alive")
"""


@pytest.mark.parametrize("code", [DROP_UNTRACKED, CLEAR_DECIDER], ids=["untracked-dropped", "decider-cleared"])
def test_dropping_untracked_objects_does_not_crash_the_interpreter(tmp_path, code):
    run = guard(tmp_path, code, "--allow-read=.")
    assert run.status != -11 and run.status >= 0, run
    assert run.stdout.splitlines()[-1:] == ["alive"], run


# -- __pycache__ writes: only in the program's own tree ----------------------------------------

def test_pycache_writes_only_in_the_program_s_tree(tmp_path):
    package = os.path.dirname(pyward.__file__)
    planted = os.path.join(package, "__pycache__", f"planted-{os.getpid()}.cpython-3.pyc")
    (tmp_path / "mine.py").write_text("X = 1\n")
    code = f"""
    import sys
    sys.dont_write_bytecode = False
    import mine
    try:
        with open({planted!r}, "wb") as f:
            f.write(b"x")
        print("written")
    except PermissionError:
        print("refused")
    """
    try:
        run = guard(tmp_path, code, "--allow-read=.", "--allow-write=out")
        assert run.stdout.splitlines() == ["refused"], run
        assert not os.path.exists(planted)
        assert any(p.name.startswith("mine.") for p in (tmp_path / "__pycache__").iterdir()), run
    finally:
        if os.path.exists(planted):
            os.unlink(planted)


def test_the_fix_for_untracked_objects_is_in_c(tmp_path):
    """Same as the program: a function untracked and dropped, in a plain interpreter."""
    result = subprocess.run([sys.executable, "-c", "from pyward._native import _pyward as n\n"
                             "def f(): pass\nn.untrack(f)\ndel f\nprint('alive')"], capture_output=True, text=True,
                            env=clean_env(), timeout=60)
    assert result.returncode == 0 and result.stdout == "alive\n", result
