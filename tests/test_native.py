"""The native extension: built, audit subscriptions filtered in C, and the degraded mode."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from helpers import clean_env, pyward, pyward_lines


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Audit hooks are process-wide and permanent: each test gets its own process."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=clean_env(**env), timeout=60)


def test_extension_is_built_and_loaded():
    from pyward._native import error, native

    assert error is None, error
    assert native is not None and native.ABI == 1


def test_only_subscribed_events_reach_python():
    result = run_python("""
        import sys
        from pyward._native import native
        seen = []
        native.audit_subscribe(["pyward.test.a", "open"], lambda e, a: seen.append((e, a[0])))
        sys.audit("pyward.test.a", 1)
        sys.audit("pyward.test.b", 2)
        open(__import__("os").devnull).close()
        print(seen, native.audit_state()["dispatched"], native.audit_state()["registered"])
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"[('pyward.test.a', 1), ('open', '{__import__('os').devnull}')] 2 True"


def test_several_subscribers_each_get_their_events():
    result = run_python("""
        import sys
        from pyward._native import native
        a, b = [], []
        native.audit_subscribe(["ev.one", "ev.both"], lambda e, args: a.append(e))
        native.audit_subscribe(["ev.two", "ev.both"], lambda e, args: b.append(e))
        for name in ("ev.one", "ev.two", "ev.both", "ev.none"):
            sys.audit(name)
        print(a, b, native.audit_state()["subscribers"], native.audit_state()["names"])
    """)
    assert result.stdout.strip() == "['ev.one', 'ev.both'] ['ev.two', 'ev.both'] 2 3"


def test_callback_exception_propagates_into_the_operation():
    result = run_python("""
        from pyward._native import native
        def deny(event, args):
            if args[0].endswith("secret.txt"):
                raise PermissionError("denied by test")
        native.audit_subscribe(["open"], deny)
        try:
            open("/tmp/secret.txt", "w")
        except PermissionError as exc:
            print("blocked:", exc)
        import os
        open(os.devnull).close()
        print("other opens fine")
    """)
    assert result.stdout.splitlines() == ["blocked: denied by test", "other opens fine"]


def test_bad_arguments_are_errors():
    result = run_python("""
        from pyward._native import native
        for args in ((["x"], 3), ([1], print), ("ab", print)):
            try:
                native.audit_subscribe(*args)
            except TypeError as exc:
                print("TypeError")
            else:
                print("accepted")
        print(native.audit_state()["names"])
    """)
    # a str is an iterable of names ('a', 'b'): accepted, like any iterable of str
    assert result.stdout.split() == ["TypeError", "TypeError", "accepted", "2"]


def test_many_names_grow_the_table():
    result = run_python("""
        import sys
        from pyward._native import native
        seen = []
        native.audit_subscribe([f"ev.{i}" for i in range(500)], lambda e, a: seen.append(e))
        for i in range(0, 1000, 7):
            sys.audit(f"ev.{i}")
        print(len(seen), native.audit_state()["names"])
    """)
    assert result.stdout.split() == [str(len(range(0, 500, 7))), "500"]


def test_degraded_mode_runs_and_says_so_once(tmp_path):
    (tmp_path / "app.py").write_text("import sys\nprint('ok', sys.argv[1:])\n")
    result = pyward("run", "--report", "r.json", "app.py", "x", cwd=tmp_path, env=clean_env(PYWARD_DISABLE_NATIVE="1"))
    assert result.returncode == 0
    assert result.stdout == "ok ['x']\n"
    warnings = [line for line in pyward_lines(result.stderr) if line.startswith("[pyward][warning]")]
    assert len(warnings) == 1
    assert "native extension unavailable" in warnings[0] and "PYWARD_DISABLE_NATIVE" in warnings[0]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["run"]["pyward"]["native"] is False
    assert any(e["kind"] == "degraded" for e in report["events"])


def test_native_mode_does_not_warn(tmp_path):
    (tmp_path / "app.py").write_text("pass\n")
    result = pyward("run", "app.py", cwd=tmp_path)
    assert not [line for line in pyward_lines(result.stderr) if "[warning]" in line]


def test_installs_and_runs_degraded_without_a_c_compiler(tmp_path):
    """pip install on a machine without a compiler: pyward installs, runs degraded and says why."""
    import os
    import pathlib
    import shutil
    import venv

    import pytest

    source = tmp_path / "src"  # a clean copy: no build/ left by an earlier install with a compiler
    shutil.copytree(pathlib.Path(__file__).resolve().parents[1], source,
                    ignore=shutil.ignore_patterns(".git", ".venv", "build", "*.so", "__pycache__", ".pyward*",
                                                  "*.egg-info"))
    venv.EnvBuilder(with_pip=True).create(tmp_path / "v")
    python = str(tmp_path / "v" / "bin" / "python")
    install = subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                              str(source)], capture_output=True, text=True, timeout=600,
                             env=clean_env(CC="/bin/false", PIP_NO_CACHE_DIR="1", HOME=os.environ.get("HOME", "/")))
    if install.returncode != 0 and any(s in install.stderr for s in (
            "No matching distribution found", "Could not find a version", "ConnectionError", "NewConnectionError")):
        pytest.skip(f"not run: the package index could not be reached to build pyward ({install.stderr[-200:]})")
    assert install.returncode == 0, install.stderr
    (tmp_path / "app.py").write_text("print('ran')\n")
    result = subprocess.run([python, "-m", "pyward", "run", "--no-report", "--allow-read=.", "app.py"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=60, env=clean_env())
    assert (result.returncode, result.stdout) == (0, "ran\n"), result.stderr
    (warning,) = [line for line in pyward_lines(result.stderr) if line.startswith("[pyward][warning]")]
    assert "the C extension was not built when pyward was installed" in warning
