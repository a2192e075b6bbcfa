"""`pyward run` must behave exactly like `python`.

Each case is a small program run twice from the same directory, as
`python ARGS` and as `python -m pyward run ARGS`, with the same stdin and
environment.  stdout must be byte-identical, stderr identical once pyward's
own `[pyward]` lines are removed, and the exit status identical.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import zipapp

import pytest

from helpers import clean_env, pyward_lines

ARGV = "import sys\nprint(sys.argv)\n"
PATH0 = "import sys\nprint(repr(sys.path[0]))\n"
GLOBALS = """\
import sys
print(list(globals()))
print(type(__loader__).__name__, __spec__ and __spec__.name, repr(__package__), repr(globals().get('__cached__')))
print(__name__, sys.modules['__main__'] is sys.modules[__name__], globals().get('__file__'))
print(type(__builtins__).__name__, __annotations__)
"""

RECURSE = """\
import sys
depth = 0
def down():
    global depth
    depth += 1
    down()
try:
    down()
except RecursionError:
    print("deepest:", depth)
down()
"""


#: the frames below the program: none for a script or -c, runpy's for -m (no frame of pyward's)
STACK = """\
import inspect, sys
print([f.function for f in inspect.stack()])
try:
    sys._getframe(1)
    print("a frame below")
except ValueError as exc:
    print("ValueError:", exc)
try:
    raise KeyError("k")
except KeyError as exc:
    frame = exc.__traceback__.tb_frame.f_back
    print(frame and frame.f_code.co_name)
def walk():
    names, frame = [], sys._getframe()
    while frame is not None:
        names.append(frame.f_code.co_name)
        frame = frame.f_back
    return names
print(walk())
"""


def D(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


PKG = {
    "pkg/__init__.py": "",
    "pkg/__main__.py": "from . import helper\nimport sys\n"
                       "print('pkg main', __name__, __package__, helper.X, sys.argv)\n",
    "pkg/helper.py": "X = 'helper'\n",
    "pkg/sub/__init__.py": "",
    "pkg/sub/mod.py": D("""
        from . import leaf
        from ..helper import X
        from .leaf import Y
        import sys
        print(__name__, __package__, X, Y, leaf.__name__, sys.argv, __file__)
    """),
    "pkg/sub/leaf.py": "Y = 'leaf'\n",
    "pkg/bad.py": "def f():\n    raise ValueError('raised in -m module')\nf()\n",
}

# name -> (files, argv, stdin, extra env)
CASES: dict[str, tuple[dict[str, str], list[str], bytes | None, dict[str, str]]] = {
    "argv_script_with_pyward_like_args": ({"app.py": ARGV}, ["app.py", "a", "--quiet", "-v", "--log", "x", "--"], None,
                                          {}),
    "argv_c_with_args": ({}, ["-c", ARGV, "x", "--quiet", "-q"], None, {}),
    "argv_and_relative_imports_m": (PKG, ["-m", "pkg.sub.mod", "arg", "--no-report"], None, {}),
    "m_package_main": (PKG, ["-m", "pkg", "z"], None, {}),
    "directory_with_main": (PKG, ["pkg", "d1"], None, {}),
    "stack_script": ({"app.py": STACK}, ["app.py"], None, {}),
    "stack_c": ({}, ["-c", STACK], None, {}),
    "stack_m": ({"sm.py": STACK}, ["-m", "sm"], None, {}),
    "globals_script": ({"app.py": GLOBALS}, ["app.py"], None, {}),
    "globals_c": ({}, ["-c", GLOBALS], None, {}),
    "globals_m": ({"gm.py": GLOBALS}, ["-m", "gm"], None, {}),
    "file_relative_subdir": ({"sub/app.py": GLOBALS + PATH0}, ["sub/app.py"], None, {}),
    "file_dotdot": ({"sub/x": "", "app.py": GLOBALS + PATH0}, ["./sub/../app.py"], None, {}),
    "path0_script": ({"sub/app.py": PATH0}, ["sub/app.py"], None, {}),
    "path0_m": ({"pm.py": PATH0}, ["-m", "pm"], None, {}),
    "path0_c": ({}, ["-c", PATH0], None, {}),
    "path0_stdin_program": ({}, ["-"], PATH0.encode() + b"print(__name__)\n", {}),
    "path0_safe_path": ({"app.py": PATH0 + "import sys; print(sys.flags.safe_path)\n"}, ["app.py"], None,
                        {"PYTHONSAFEPATH": "1"}),
    "sibling_import_shadows_stdlib": ({
        "app.py": "import colorsys, helper\nprint(colorsys.ORIGIN, helper.f())\n",
        "colorsys.py": "ORIGIN = 'local colorsys'\n",
        "helper.py": "def f():\n    return 'sibling helper'\n",
    }, ["app.py"], None, {}),
    "stdin_and_binary_stdout": ({"app.py": D("""
        import sys
        data = sys.stdin.read()
        sys.stdout.write(f"read {len(data)} chars: {data.upper()!r}\\n")
        sys.stdout.flush()
        sys.stdout.buffer.write(b"\\x00\\xffraw bytes\\n")
        print("buffered, never flushed", end="")
    """)}, ["app.py"], b"hello\nworld\n", {}),
    "atexit_lifo": ({"app.py": D("""
        import atexit, sys
        atexit.register(print, "first registered, runs last")
        atexit.register(lambda: sys.stderr.write("stderr from atexit\\n"))
        @atexit.register
        def last():
            print("last registered, runs first")
        print("main done")
    """)}, ["app.py"], None, {}),
    "gc_state": ({"app.py": D("""
        import gc
        print(gc.isenabled(), gc.get_freeze_count(), gc.get_threshold())
        class Cycle:
            pass
        a, b = Cycle(), Cycle()
        a.other, b.other = b, a
        del a, b
        print(gc.collect() >= 2)
    """)}, ["app.py"], None, {}),
    "exit_zero": ({"app.py": "import sys\nprint('x')\nsys.exit(0)\n"}, ["app.py"], None, {}),
    "exit_three": ({"app.py": "import sys\nsys.exit(3)\n"}, ["app.py"], None, {}),
    "exit_256": ({"app.py": "import sys\nsys.exit(256)\n"}, ["app.py"], None, {}),
    "exit_minus_one": ({"app.py": "import sys\nsys.exit(-1)\n"}, ["app.py"], None, {}),
    "exit_message": ({"app.py": "import sys\nsys.exit('fatal: bad config')\n"}, ["app.py"], None, {}),
    "exit_none": ({"app.py": "import sys\nsys.exit(None)\n"}, ["app.py"], None, {}),
    # os._exit: no flush of the program's buffers, no atexit, status & 0xFF; a bad argument is python's TypeError
    "os_exit_unflushed": ({"app.py": D("""
        import atexit, os, sys
        atexit.register(print, "atexit ran")
        print("flushed", flush=True)
        sys.stdout.write("buffered, lost")
        os._exit(259)
    """)}, ["app.py"], None, {}),
    "os_exit_bad_status": ({"app.py": "import os\nos._exit('x')\n"}, ["app.py"], None, {}),
    "os_exit_in_a_thread": ({"app.py": D("""
        import os, threading, time
        threading.Thread(target=os._exit, args=(4,)).start()
        time.sleep(30)
    """)}, ["app.py"], None, {}),
    "exit_nested_systemexit": ({"app.py": "def f():\n    raise SystemExit(7)\ndef g():\n    f()\ng()\n"},
                               ["app.py"], None, {}),
    "exit_in_c": ({}, ["-c", "import sys; print('c'); sys.exit(5)"], None, {}),
    "traceback_chained": ({"app.py": D("""
        def parse(s):
            return int(s)
        def load():
            try:
                parse("x")
            except ValueError as exc:
                raise RuntimeError("could not load") from exc
        def main():
            try:
                load()
            except RuntimeError:
                {}["missing"]
        main()
    """)}, ["app.py"], None, {}),
    "traceback_in_sibling_module": ({"app.py": "import lib\nlib.boom(3)\n",
                                     "lib.py": "def boom(n):\n    return [1, 2][n]\n"}, ["app.py"], None, {}),
    "traceback_m_module_runpy_frames": (PKG, ["-m", "pkg.bad"], None, {}),
    "traceback_c": ({}, ["-c", "x = None\nx.attr"], None, {}),
    # the script compiled as python compiles it: its declared encoding, a `-c` command's (ignored), a NUL byte
    "source_encoding_declared": ({"app.py": "# -*- coding: latin-1 -*-\nprint(ascii('\u00e9t\u00e9'))\n"}, ["app.py"],
                                 None, {}),
    "source_encoding_c_ignores_declaration": ({}, ["-c", "# -*- coding: latin-1 -*-\nprint(ascii('\u00e9t\u00e9'))"],
                                              None, {}),
    "source_nul_byte": ({"app.py": "print(1)\n\0\n"}, ["app.py"], None, {}),
    "syntax_error_script": ({"app.py": "x = 1\ndef broken(:\n    pass\n"}, ["app.py"], None, {}),
    "syntax_error_imported": ({"app.py": "print('before')\nimport broken\n", "broken.py": "if True\n  x = 1\n"},
                              ["app.py"], None, {}),
    "program_excepthook": ({"app.py": D("""
        import sys
        def hook(kind, value, tb):
            frames = []
            while tb:
                frames.append(tb.tb_frame.f_code.co_name)
                tb = tb.tb_next
            print("custom hook:", kind.__name__, value, frames)
        sys.excepthook = hook
        def inner():
            raise KeyError("k")
        inner()
    """)}, ["app.py"], None, {}),
    "keyboard_interrupt_in_code": ({"app.py": "print('about to')\nraise KeyboardInterrupt\n"}, ["app.py"], None, {}),
    "threads": ({"app.py": D("""
        import threading, time
        def slow():
            time.sleep(0.3)
            print("non-daemon thread finished after main")
        def bad():
            raise ValueError("in thread")
        threading.Thread(target=slow).start()
        t = threading.Thread(target=bad, name="worker")
        t.start(); t.join()
        print("main ends")
    """)}, ["app.py"], None, {}),
    "pickle_main_class": ({"app.py": D("""
        import pickle, pathlib
        class Point:
            def __init__(self, x, y):
                self.x, self.y = x, y
            def __repr__(self):
                return f"Point({self.x}, {self.y})"
        data = pickle.dumps(Point(1, 2))
        print(pickle.loads(data), b"__main__" in data)
        pathlib.Path("p.pkl").write_bytes(pickle.dumps([Point(3, 4)]))
        print(pickle.loads(pathlib.Path("p.pkl").read_bytes()))
    """)}, ["app.py"], None, {}),
    "multiprocessing_fork": ({"app.py": D("""
        import multiprocessing as mp
        def square(x):
            return x * x
        def child(q):
            q.put(__name__)
        if __name__ == "__main__":
            ctx = mp.get_context("fork")
            with ctx.Pool(2) as pool:
                print(pool.map(square, range(6)))
            q = ctx.Queue()
            p = ctx.Process(target=child, args=(q,))
            p.start(); print("child saw", q.get()); p.join()
            print("exitcode", p.exitcode)
    """)}, ["app.py"], None, {}),
    "multiprocessing_spawn": ({"app.py": D("""
        import multiprocessing as mp
        import sys
        class Box:
            def __init__(self, v):
                self.v = v
        def square(box):
            return box.v * box.v
        def child(q):
            q.put((__name__, sys.argv[1:]))
        if __name__ == "__main__":
            ctx = mp.get_context("spawn")
            with ctx.Pool(2) as pool:
                print(pool.map(square, [Box(i) for i in range(5)]))
            q = ctx.Queue()
            p = ctx.Process(target=child, args=(q,))
            p.start(); print("child saw", q.get()); p.join()
    """)}, ["app.py", "arg1"], None, {}),
    "warnings_to_stderr": ({"app.py": "import warnings\nwarnings.warn('careful', DeprecationWarning, stacklevel=1)\n"
                                      "warnings.warn('user warning')\n"}, ["app.py"], None,
                           {"PYTHONWARNINGS": "default"}),
    "recursion_depth_script": ({"app.py": RECURSE}, ["app.py"], None, {}),
    "recursion_depth_c": ({}, ["-c", RECURSE], None, {}),
    "recursion_depth_m": ({"rec.py": RECURSE}, ["-m", "rec"], None, {}),
    "recursion_limit_seen": ({"app.py": "import sys\nprint(sys.getrecursionlimit())\nsys.setrecursionlimit(50)\n"
                                        "print(sys.getrecursionlimit())\n" + RECURSE}, ["app.py"], None, {}),
    "flags_and_debug": ({"app.py": "import sys\nprint(__debug__, sys.flags.optimize, sys.flags.no_user_site)\n"},
                        ["app.py"], None, {}),
}


def materialise(tmp_path, files: dict[str, str]) -> None:
    for name, content in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        # a script that declares its encoding is written in it (compiled by its declaration, as python does)
        declared = content.startswith("# -*- coding: ") and content.split()[3]
        path.write_bytes(content.encode(declared or "utf-8"))


def both(argv: list[str], cwd, stdin: bytes | None = None, env_extra: dict[str, str] | None = None,
         launcher: list[str] | None = None):
    env = clean_env(**(env_extra or {}))
    common = dict(cwd=cwd, env=env, input=stdin if stdin is not None else b"", capture_output=True, timeout=90)
    plain = subprocess.run([sys.executable, *argv], **common)
    guarded = subprocess.run([*(launcher or [sys.executable, "-m", "pyward"]), "run", *argv], **common)
    return plain, guarded


def strip_pyward(stderr: bytes) -> bytes:
    return b"".join(line for line in stderr.splitlines(keepends=True) if not line.startswith(b"[pyward]"))


def assert_same(plain, guarded) -> None:
    assert guarded.stdout == plain.stdout
    assert strip_pyward(guarded.stderr) == plain.stderr
    assert guarded.returncode == plain.returncode
    assert b"pyward" not in strip_pyward(guarded.stderr)  # no pyward frame or message leaked


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_as_python(name, tmp_path):
    files, argv, stdin, env = CASES[name]
    materialise(tmp_path, files)
    plain, guarded = both(argv, tmp_path, stdin, env)
    assert_same(plain, guarded)
    # the summary is always pyward's last word, with the right status
    summary = pyward_lines(guarded.stderr.decode())[-1]
    expected = plain.returncode if plain.returncode >= 0 else 128 - plain.returncode
    assert summary.startswith(f"[pyward] run end: exit={expected}")


def test_console_script_launcher(tmp_path):
    launcher = os.path.join(os.path.dirname(sys.executable), "pyward")
    (tmp_path / "app.py").write_text(GLOBALS + PATH0 + "raise ValueError('x')\n")
    plain, guarded = both(["app.py", "a"], tmp_path, launcher=[launcher])
    assert_same(plain, guarded)


def test_absolute_path_script(tmp_path):
    (tmp_path / "app.py").write_text(GLOBALS + PATH0)
    assert_same(*both([str(tmp_path / "app.py")], tmp_path))


def test_symlinked_script_and_directory(tmp_path):
    materialise(tmp_path, {"real/app.py": GLOBALS + PATH0 + "import sibling\n", "real/sibling.py": "print('sib')\n"})
    (tmp_path / "links").mkdir()
    (tmp_path / "links" / "app.py").symlink_to(tmp_path / "real" / "app.py")
    (tmp_path / "linkdir").symlink_to(tmp_path / "real")
    assert_same(*both(["links/app.py"], tmp_path))
    assert_same(*both(["linkdir/app.py"], tmp_path))


def test_zipapp(tmp_path):
    materialise(tmp_path, {"src/__main__.py": GLOBALS + PATH0 + "import mod\nprint(mod.V)\n", "src/mod.py": "V = 9\n"})
    zipapp.create_archive(tmp_path / "src", tmp_path / "app.pyz")
    assert_same(*both(["app.pyz", "x"], tmp_path))


def test_real_ctrl_c(tmp_path):
    """A real SIGINT: python prints the KeyboardInterrupt and dies by the signal; so must pyward."""
    (tmp_path / "app.py").write_text(D("""
        import time
        print("ready", flush=True)
        while True:
            time.sleep(0.05)
    """))
    results = []
    for cmd in ([sys.executable, "app.py"], [sys.executable, "-m", "pyward", "run", "app.py"]):
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout.readline() == b"ready\n"
        time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        results.append((out, err, proc.returncode))
    (p_out, p_err, p_rc), (g_out, g_err, g_rc) = results
    assert p_rc == g_rc == -signal.SIGINT
    assert g_out == p_out
    normalise = lambda err: [line for line in err.splitlines() if not line.startswith(b"[pyward]")]  # noqa: E731
    assert normalise(g_err)[-1] == normalise(p_err)[-1] == b"KeyboardInterrupt"
    assert b"pyward" not in b"\n".join(normalise(g_err))
    assert pyward_lines(g_err.decode())[-1].startswith("[pyward] run end: exit=130 (SIGINT)")


# --- bad input: pyward's own one-line errors, python's exit statuses ----------


def run_pyward(*args: str, cwd):
    return subprocess.run([sys.executable, "-m", "pyward", "run", *args], cwd=cwd, env=clean_env(),
                          capture_output=True, text=True, timeout=60)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("[pyward][error]")]


def bad_input_dir(tmp_path):
    (tmp_path / "emptydir").mkdir()
    (tmp_path / "plainpkg").mkdir()
    (tmp_path / "plainpkg" / "__init__.py").write_text("")
    (tmp_path / "app.py").write_text("open('ran.marker', 'w').close()\n")


@pytest.mark.parametrize("args", [["missing.py"], ["emptydir"], ["-m", "no_such_module_xyz"], ["-m", "plainpkg"]])
def test_target_python_cannot_start(tmp_path, args):
    """Where python itself refuses to start the program, pyward prints python's
    own line (no pyward prefix: python speaks) and uses python's status."""
    bad_input_dir(tmp_path)
    result = run_pyward(*args, cwd=tmp_path)
    plain = subprocess.run([sys.executable, *args], cwd=tmp_path, env=clean_env(), capture_output=True, text=True,
                           timeout=60)
    assert plain.returncode in (1, 2)
    assert result.returncode == plain.returncode
    assert strip_pyward(result.stderr.encode()).decode() == plain.stderr
    assert not error_lines(result.stderr)
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "ran.marker").exists()


@pytest.mark.parametrize("args, needle", [
    (["--bogus", "app.py"], "unrecognized arguments: --bogus"),
    ([], "nothing to run"),
])
def test_bad_usage(tmp_path, args, needle):
    bad_input_dir(tmp_path)
    result = run_pyward(*args, cwd=tmp_path)
    assert result.returncode == 2
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and needle in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "ran.marker").exists()


def test_quiet_success_prints_nothing(tmp_path):
    (tmp_path / "app.py").write_text("print('only me')\n")
    result = run_pyward("--quiet", "app.py", cwd=tmp_path)
    assert (result.stdout, result.stderr, result.returncode) == ("only me\n", "", 0)


def test_a_daemon_child_does_not_hold_the_callers_pipes(tmp_path):
    """A forked child that points its streams at /dev/null and goes on: the caller reading
    the program's stdout and stderr sees their end when the program ends, as under python."""
    (tmp_path / "app.py").write_text(D("""
        import os, sys, time
        pid = os.fork()
        if pid == 0:
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            time.sleep(float(sys.argv[1]))
            os._exit(0)
        print(pid, flush=True)
    """))
    for cmd in ([sys.executable, "app.py", "60"], [sys.executable, "-m", "pyward", "run", "app.py", "60"]):
        try:
            done = subprocess.run(cmd, cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{cmd[1:]}: the caller's pipes stayed open while the daemon child lives")
        try:
            assert done.returncode == 0, done.stderr
        finally:
            os.kill(int(done.stdout.split()[0]), signal.SIGKILL)
