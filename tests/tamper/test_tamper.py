"""The tamper engine end to end: seals, alerts naming the patcher, restore, fail-closed."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from helpers import clean_env
from sandbox_helpers import guard

WATCHERS = sys.version_info >= (3, 12)


def alerts(run):
    return run.events("alert", engine="tamper")


PATCH_OPEN = """
    import builtins
    real = builtins.open
    def fake_open(*a, **k):
        return real(*a, **k)
    builtins.open = fake_open
    def later():
        pass
    later()
    print('patched' if open is fake_open else 'original')
"""


def test_rebinding_a_sealed_builtin_is_reported_with_old_new_and_patcher(tmp_path):
    run = guard(tmp_path, PATCH_OPEN)
    assert run.status == 0 and run.stdout == "patched\n", run
    (alert,) = alerts(run)
    assert alert["name"] == "builtins.open"
    assert alert["details"]["new"] == f"<function fake_open at {tmp_path / 'app.py'}:4>"
    assert alert["details"]["old"] == "<builtin_function_or_method open>" or "open" in alert["details"]["old"]
    # synchronous (3.12+: dict watchers; 3.11: the sealed module's __setattr__): the statement itself
    assert alert["where"] == f"{tmp_path / 'app.py'}:6"
    assert f"builtins.open replaced by <function fake_open at {tmp_path / 'app.py'}:4> by " \
           f"{tmp_path / 'app.py'}:6 (<module>)" in run.stderr
    assert "1 tamper alerts" in run.stderr


def test_restore_puts_the_same_object_back(tmp_path):
    code = PATCH_OPEN + """
    import io
    print('same object' if open is io.open else 'different')
    """
    run = guard(tmp_path, code, "--restore")
    (alert,) = alerts(run)
    assert alert["message"].endswith("=> restored")
    # 3.12+: restored at the next call after the change; 3.11: the assignment never lands
    assert run.stdout == "original\nsame object\n", run


def test_patch_and_unpatch_between_two_statements_is_caught_on_312(tmp_path):
    code = """
        import os
        saved = os.system
        os.system = lambda cmd: 0
        os.system = saved
    """
    run = guard(tmp_path, code)
    (alert,) = alerts(run)  # the patch; the unpatch puts the sealed object back
    assert alert["name"] == "os.system" and alert["where"].endswith("app.py:4"), run


def test_code_swap_is_reported(tmp_path):
    (tmp_path / "secure.py").write_text("def check(token):\n    return token == 'right'\n")
    code = """
        import secure
        secure.check.__code__ = (lambda token: True).__code__
        print(secure.check('wrong'))
    """
    run = guard(tmp_path, code, "--watch", "secure.check")
    assert run.stdout == "True\n"
    (alert,) = alerts(run)
    assert alert["name"] == "secure.check" and "__code__ swapped" in alert["message"]
    assert alert["where"] == f"{tmp_path / 'app.py'}:3"  # 3.11: the object.__setattr__ audit event


def test_code_swap_restored(tmp_path):
    (tmp_path / "secure.py").write_text("def check(token):\n    return token == 'right'\n")
    code = """
        import secure
        secure.check.__code__ = (lambda token: True).__code__
        import json  # a check point on 3.11
        def later(): pass
        later()
        print(secure.check('wrong'))
    """
    run = guard(tmp_path, code, "--watch", "secure.check", "--restore")
    assert run.stdout == "False\n", run


def test_user_globs_and_pending_seals(tmp_path):
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "secure.py").write_text("def sign(x):\n    return x\ndef verify(x):\n    return x\n")
    code = """
        import mypkg.secure as s
        import json
        s.verify = lambda x: True
        import csv
    """
    run = guard(tmp_path, code, "--watch", "mypkg.secure.*,json.no_such_name,nomod.x", "-v")
    (alert,) = alerts(run)
    assert alert["name"] == "mypkg.secure.verify"
    # pending seals are announced, and what became of them is said
    assert "tamper: mypkg.secure.* is not imported yet; it is sealed when the program imports it" in run.stderr
    assert "[pyward][warning] tamper: cannot seal json.no_such_name: json has no attribute" in run.stderr
    assert "tamper: --watch nomod.x was never sealed: the program never imported its module" in run.stderr


def test_unknown_name_is_a_clear_error(tmp_path):
    run = guard(tmp_path, "print('ran')\n", "--watch", "os.no_such_function")
    assert run.status == 2 and "ran" not in run.stdout
    assert run.stderr.splitlines() == [  # one line: no run-end line for a run that never started
        "[pyward][error] tamper: cannot seal os.no_such_function: os has no attribute 'no_such_function'"]


def test_fail_closed_makes_the_statement_raise(tmp_path):
    code = """
        import os, pyward
        try:
            os.system = lambda c: 0
        except pyward.TamperError as exc:
            print('refused:', exc)
        print(os.system.__name__)
    """
    run = guard(tmp_path, code, "--fail-closed")
    assert run.status == 0, run
    assert run.stdout.startswith("refused: os.system is sealed by pyward (--fail-closed)")
    assert run.stdout.endswith("system\n")


def test_fail_closed_traceback_has_no_pyward_frame(tmp_path):
    run = guard(tmp_path, "import os\nos.system = print\n", "--fail-closed")
    assert run.status == 1, run
    assert "pyward.TamperError: os.system is sealed by pyward (--fail-closed)" in run.stderr
    tb = run.stderr[run.stderr.index("Traceback"):]
    assert "pyward/" not in tb.split("pyward.TamperError")[0], tb



LOCKED_MODULES = """
    import os, sys, types, pyward

    class Lazy(types.ModuleType):  # the module-subclass idiom: super().__setattr__ must keep working
        def __setattr__(self, name, value):
            super().__setattr__(name, value.upper() if isinstance(value, str) else value)

    lazy = Lazy("lazy")
    lazy.greeting = "hello"
    del lazy.greeting
    lazy.greeting = "hi"
    print(lazy.greeting, type(os) is types.ModuleType)
    try:
        object.__setattr__(os, "system", len)  # jumping over the module's own setattr
    except (TypeError, pyward.TamperError) as exc:
        print("refused:", type(exc).__name__)
    print(os.system.__name__)
"""


@pytest.mark.parametrize("flags", [(), ("--fail-closed",)])
def test_locked_modules_stay_plain_modules_and_subclasses_keep_working(tmp_path, flags):
    run = guard(tmp_path, LOCKED_MODULES, *flags)
    lines = run.stdout.splitlines()
    # sealed modules keep their exact type: attribute loads stay on the specialised path
    assert lines[0] == "HI True", run
    if flags and WATCHERS and run.status == 78:
        # newer CPythons (3.13) let object.__setattr__ jump over a module's own setattr:
        # the dict watcher sees the change and --fail-closed stops the run
        assert "os.system replaced by <builtin_function_or_method len>" in run.stderr
        assert "=> stopping the run (--fail-closed)" in run.stderr
        return
    assert run.status == 0, run
    if sys.version_info < (3, 13) or flags:  # ModuleType's setattr is hooked on every version (a sealed
        # module's __class__ is judged): CPython then refuses object.__setattr__ on a module before 3.13
        assert lines[1].startswith("refused:")
        assert lines[-1] == "system"
    else:  # watchers: the change is let through and reported as it happens
        assert lines[-1] == "len"
        assert [a["name"] for a in alerts(run)] == ["os.system"]
def test_allowed_patchers_are_authorised_not_alerts(tmp_path):
    (tmp_path / "patcher.py").write_text("import os\ndef patch():\n    os.system = lambda c: 0\n")
    run = guard(tmp_path, "import patcher\npatcher.patch()\n", "--allow-patcher", "patcher")
    assert alerts(run) == []
    assert [e["name"] for e in run.events("authorised", engine="tamper")] == ["os.system"]


def test_unittest_mock_patch_on_a_sealed_target(tmp_path):
    code = """
        import subprocess
        from unittest import mock
        with mock.patch('subprocess.Popen') as fake:
            subprocess.Popen(['x'])
        print('called', fake.called)
    """
    run = guard(tmp_path, code)
    assert run.stdout == "called True\n"
    names = [a["name"] for a in alerts(run)]
    assert names == ["subprocess.Popen"]  # patched (unpatching puts the sealed object back)
    assert alerts(run)[0]["where"] == f"{tmp_path / 'app.py'}:4"  # the user's line, not mock.py


def test_environment_changes_are_journaled_and_secrets_redacted(tmp_path):
    code = "import os\nos.environ['MODE'] = 'fast'\nos.environ['API_TOKEN'] = 's3cr3t'\ndel os.environ['MODE']\n"
    run = guard(tmp_path, code, "-A")
    changes = [e["message"] for e in run.events("env.changed", engine="tamper")]
    assert changes == ["environment variable MODE set to 'fast'", "environment variable API_TOKEN set to <redacted>",
                       "environment variable MODE removed"]
    assert "s3cr3t" not in run.stderr + str(run.log)


def test_only_sensitive_environment_changes_reach_the_console(tmp_path):
    """A program's changes to its own environment are info; what changes which code
    runs or whom it trusts, and secret-looking names, are news."""
    code = ("import os\nfor name in ('APP_MODE', 'LD_PRELOAD', 'PATH', 'PYTHONPATH', 'HTTPS_PROXY', 'DB_PASSWORD',"
            " 'PYTEST_CURRENT_TEST'):\n    os.environ[name] = 'x'\n")
    run = guard(tmp_path, code, "-A")
    severities = {e["name"]: e["severity"] for e in run.events("env.changed", engine="tamper")}
    assert severities == {"APP_MODE": "info", "LD_PRELOAD": "notice", "PATH": "notice", "PYTHONPATH": "notice",
                          "HTTPS_PROXY": "notice", "DB_PASSWORD": "notice", "PYTEST_CURRENT_TEST": "info"}
    shown = [line for line in run.stderr.splitlines() if "environment variable" in line]
    assert len(shown) == 5 and not any("APP_MODE" in line or "PYTEST_CURRENT" in line for line in shown)


def test_meta_path_and_tracing_hooks_are_reported(tmp_path):
    code = """
        import sys
        class Finder:
            def find_spec(self, *a):
                return None
        sys.meta_path.insert(0, Finder())
        import json
        sys.settrace(lambda *a: None)
        sys.settrace(None)
    """
    run = guard(tmp_path, code)
    kinds = [(e["kind"], e["name"]) for e in run.log if e["engine"] == "tamper"]
    assert ("composition.changed", "sys.meta_path") in kinds
    assert ("hook.changed", "settrace") in kinds


def test_trace_hooks_are_reported_as_what_is_known(tmp_path):
    """sys.settrace's audit event has no argument: the report names the call and the hook it
    replaces, and never calls an installed hook "removed"."""
    code = """
        import sys
        calls = []
        def tracer(frame, event, arg):
            calls.append(event)
        def work():
            return 1
        sys.settrace(tracer)
        work()
        sys.settrace(None)
        sys.setprofile(tracer)
        sys.setprofile(None)
        print(calls.count("call") >= 1, sys.gettrace(), sys.getprofile())
    """
    run = guard(tmp_path, code)
    assert run.stdout == "True None None\n", run  # the program's tracer ran as under python
    hooks = [(e["name"], e["message"]) for e in run.log if e["kind"] == "hook.changed"]
    assert [name for name, _ in hooks] == ["settrace", "settrace", "setprofile", "setprofile"], hooks
    assert all("removed" not in message and "installed" not in message for _, message in hooks), hooks
    assert "(no hook was set)" in hooks[0][1] and "(no hook was set)" in hooks[2][1], hooks
    assert "replacing" in hooks[1][1] and "tracer" in hooks[1][1], hooks
    assert "replacing" in hooks[3][1] and "tracer" in hooks[3][1], hooks


def test_check_modules(tmp_path):
    code = "import sys, types, json\nimport csv\nsys.modules['json'] = types.ModuleType('json')\nimport csv\n"
    run = guard(tmp_path, code, "--check-modules")
    assert any(a["name"] == "sys.modules['json']" for a in alerts(run)), run


def test_pywards_own_guards_are_sealed(tmp_path):
    code = "import _posixsubprocess\n_posixsubprocess.fork_exec = print\nimport json\n"
    run = guard(tmp_path, code, "-A")
    assert [a["name"] for a in alerts(run)] == ["_posixsubprocess.fork_exec"]


@pytest.mark.parametrize("flag", ["--no-tamper"])
def test_no_tamper(tmp_path, flag):
    run = guard(tmp_path, PATCH_OPEN, flag)
    assert alerts(run) == [] and "0 tamper alerts" in run.stderr


def test_glob_match_agrees_with_fnmatch_on_star_and_question_mark():
    import fnmatch
    import itertools

    from pyward.tamper.seals import glob_match

    patterns = ["".join(p) for n in range(5) for p in itertools.product("ab*?", repeat=n)]
    names = ["".join(p) for n in range(5) for p in itertools.product("ab", repeat=n)]
    for pattern in patterns:
        for name in names:
            assert glob_match(pattern, name) == fnmatch.fnmatchcase(name, pattern), (pattern, name)


def test_a_module_patched_right_after_its_import_is_sealed_first(tmp_path):
    # no other import in between: on 3.11 no check runs before the patch
    code = """
        import builtins, socket
        builtins.open = lambda *a: None
        socket.socket = type("Spy", (socket.socket,), {})
        print(open is None, socket.socket.__name__)
    """
    run = guard(tmp_path, code, "--restore")
    assert run.status == 0, run
    assert run.stdout == "False socket\n"  # both restored
    found = {a["name"]: a for a in alerts(run)}
    assert set(found) == {"builtins.open", "socket.socket"}
    assert found["builtins.open"]["where"].endswith("app.py:3"), found
    assert found["socket.socket"]["where"].endswith("app.py:4"), found


def test_without_the_native_extension_rebinding_is_still_seen_as_it_happens(tmp_path):
    from helpers import clean_env

    code = """
        import builtins, os
        builtins.open = lambda *a: None
        os.system = len
        print(open is None, os.system.__name__)
    """
    run = guard(tmp_path, code, "--restore", env=clean_env(PYWARD_DISABLE_NATIVE="1"))
    assert run.status == 0, run
    assert run.stdout == "False system\n"  # both restored
    found = {a["name"]: a for a in alerts(run)}
    assert set(found) == {"builtins.open", "os.system"}
    assert found["builtins.open"]["where"].endswith("app.py:3"), found
    assert found["os.system"]["where"].endswith("app.py:4"), found


def test_imports_are_checked_in_c_until_something_differs(tmp_path):
    """The import gate (tamper.c): the Python check runs at an import only when a seal, sys.meta_path,
    sys.path_hooks, an awaited module or the sys.monitoring tools changed; a change is still seen at the
    next import."""
    for i in range(60):
        (tmp_path / f"mod{i}.py").write_text(f"X = {i}\n")
    code = """
        import gc, sys
        engine = next(o for o in gc.get_objects() if type(o).__name__ == "TamperEngine")
        calls = []
        check = engine._check_all
        engine._check_all = lambda when: (calls.append(when), check(when))
        for i in range(30):
            __import__(f"mod{i}")
        print("quiet imports:", len(calls) < 10)
        class Finder:
            def find_spec(self, *args):
                return None
        before = len(calls)
        sys.meta_path.append(Finder())
        import mod30
        print("checked after the change:", len(calls) > before and calls[-1] == "import")
        for i in range(31, 60):
            __import__(f"mod{i}")
        print("quiet again:", len(calls) < 20)
    """
    run = guard(tmp_path, code, "--mode", "off")
    assert run.stdout == "quiet imports: True\nchecked after the change: True\nquiet again: True\n", run.stderr
    changes = [e for e in run.events("composition.changed", engine="tamper")]
    assert [e["name"] for e in changes] == ["sys.meta_path"], changes


def test_a_value_is_described_in_its_own_words_and_never_by_its_repr():
    from pyward.tamper.seals import describe

    class Loud:
        def __repr__(self):  # the program's code: never run by pyward
            raise AssertionError("repr called")

    assert [describe(v) for v in (None, True, False)] == ["None", "True", "False"]
    assert describe(Loud()).endswith("Loud object>") and describe(len) == "<builtin_function_or_method len>"
    bound = describe(Loud().__repr__)  # a bound method (pdb's trace_dispatch): its function, where it is
    line = Loud.__repr__.__code__.co_firstlineno
    assert bound.startswith("<method test_a_value_is_described_in_its_own_words_and_never_by_its_repr.<locals>"
                            ".Loud.__repr__ at ") and bound.endswith(f"{__file__}:{line}>"), bound


def test_import_hooks_that_matter_and_those_that_do_not(tmp_path):
    """`pyward run -m pytest` adds and removes pytest's assertion rewriter: the target's own, said at -v only.
    A hook another library adds, and one the run started with taken away, are notices."""
    (tmp_path / "test_a.py").write_text("def test_a():\n    assert 1\n")
    suite = subprocess.run([sys.executable, "-m", "pyward", "run", "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            "test_a.py"], cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=120)
    assert suite.returncode == 0, suite.stdout + suite.stderr
    assert [line for line in suite.stderr.splitlines() if line.startswith("[pyward]")][:-1] == [], suite.stderr
    (tmp_path / "lib.py").write_text("import sys\nclass Finder:\n    def find_spec(self, *a):\n        return None\n"
                                     "sys.meta_path.append(Finder())\n")
    run = guard(tmp_path, """\
        import sys
        import lib
        sys.path_hooks.pop()
        import json
    """)
    notices = [e["message"] for e in run.events("composition.changed", engine="tamper") if e["severity"] == "notice"]
    assert any("sys.meta_path changed: + <lib.Finder object>" in m for m in notices), notices
    assert any(m.startswith("sys.path_hooks changed: - ") for m in notices), notices


CHILD_PATCH = """
    import multiprocessing, subprocess, sys
    PATCH = ("import hashlib; hashlib.new = len; (lambda: 0)(); "
             "print('{}', 'patched' if hashlib.new is len else 'original')")
    def patch():
        exec(PATCH.format("spawn"))
    if __name__ == "__main__":
        subprocess.run([sys.executable, "-c", PATCH.format("-c")], check=True)
        p = multiprocessing.get_context("spawn").Process(target=patch)
        p.start(); p.join()
        import hashlib
        print("parent", "patched" if hashlib.new is len else "original")
"""


@pytest.mark.parametrize("restore", [False, True])
def test_python_children_are_sealed_too(tmp_path, restore):
    """A Python child (`python -c`, multiprocessing's spawn) runs under the run's seals: a rebinding there is
    the run's alert (reported by the child, counted in the run's report), restored under --restore."""
    run = guard(tmp_path, CHILD_PATCH, *(["--restore"] if restore else []))
    assert run.status == 0, run
    state = "original" if restore else "patched"
    assert run.stdout == f"-c {state}\nspawn {state}\nparent original\n", run
    names = [alert["name"] for alert in alerts(run)]
    assert names == ["hashlib.new", "hashlib.new"], run
    assert "2 tamper alerts" in run.stderr.splitlines()[-1], run


def test_a_python_child_s_own_python_children_are_sealed_too(tmp_path):
    """The engines go down every generation: a child that execs Python again (a server re-executing
    itself) hands its children the run's engines, as the program did."""
    code = """
        import os, sys
        generation = int(os.environ.get("GENERATION", "0"))
        if generation < 2:
            os.environ["GENERATION"] = str(generation + 1)
            os.execv(sys.executable, [sys.executable, "app.py"])
        import hashlib
        hashlib.new = len
        (lambda: 0)()
        print("generation", generation, "patched" if hashlib.new is len else "original")
    """
    run = guard(tmp_path, code, "--restore", "--report", "r.json")
    assert run.status == 0 and run.stdout == "generation 2 original\n", run
    report = json.loads((tmp_path / "r.json").read_text())  # the run's record (the program's --log ended at exec)
    assert [e["name"] for e in report["events"] if e["engine"] == "tamper" and e["kind"] == "alert"] == \
        ["hashlib.new"], report["events"]
