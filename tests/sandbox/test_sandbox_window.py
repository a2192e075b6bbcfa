"""A verdict never runs the program's code, and code the interpreter runs inside
one (a patched stdlib function the journal calls, a finalizer, a signal handler)
is judged like any other: each test checks the side effect did not happen.

And such code is never handed a frame of pyward's: a signal handler is deferred to the
program's next bytecode and the collector waits while pyward's Python runs (shield.c).
Without that, the handler's `frame` argument or any `f_back` led into the decision's
private namespace."""
from __future__ import annotations

import socket

import pytest

from sandbox_helpers import guard


def layout(tmp_path):
    (tmp_path / "prog").mkdir()
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "key.txt").write_text("TOPSECRET-42")
    return ["--allow-read=prog", "--allow-write=prog"]


def test_a_patched_time_time_cannot_read_through_the_journal(tmp_path):
    flags = layout(tmp_path)
    run = guard(tmp_path, """
        import time, threading
        real = time.time
        def fake():  # what freezegun does, plus a read
            try:
                with open("secret/key.txt") as f:
                    print("LEAK", f.read())
            except Exception:
                pass
            return real()
        time.time = fake
        threading.current_thread = lambda: fake() and None
        for _ in range(3):
            try:
                open("secret/key.txt")
            except PermissionError:
                print("denied")
    """, *flags, name="prog/app.py")
    assert "TOPSECRET" not in run.stdout + run.stderr, run
    assert run.stdout.count("denied") == 3, run
    assert run.denied, run


def test_a_finalizer_of_cyclic_garbage_cannot_run_a_shell(tmp_path):
    flags = layout(tmp_path)
    marker = tmp_path / "prog" / "MARKER"
    run = guard(tmp_path, """
        import gc, os
        class Bomb:
            def __del__(self):
                os.system("touch prog/MARKER")
        gc.set_threshold(1, 1, 1)  # a collection at nearly every allocation: inside verdicts too
        for i in range(300):
            b = Bomb()
            b.cycle = b
            del b
            try:
                open("secret/nothing-%d" % i, "w")
            except PermissionError:
                pass
        print("done")
    """, *flags, name="prog/app.py")
    assert not marker.exists(), run
    assert run.stdout == "done\n", run
    assert any(e["details"].get("permission") == "run" for e in run.denied), run


def test_a_signal_handler_cannot_connect(tmp_path):
    flags = layout(tmp_path)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    run = guard(tmp_path, f"""
        import signal, socket
        def handler(signum, frame):
            s = socket.socket()
            try:
                s.connect(("127.0.0.1", {port}))
                s.sendall(b"LEAK")
            except OSError:
                pass
            finally:
                s.close()
        signal.signal(signal.SIGALRM, handler)
        signal.setitimer(signal.ITIMER_REAL, 0.0005, 0.0005)
        for i in range(3000):
            try:
                open("secret/nothing-%d" % i)
            except (PermissionError, FileNotFoundError):
                pass
        signal.setitimer(signal.ITIMER_REAL, 0)
        print("done")
    """, *flags, name="prog/app.py")
    try:
        conn, _ = listener.accept()
        received = conn.recv(100)
        conn.close()
    except OSError:
        received = b""
    finally:
        listener.close()
    assert received == b"", run
    assert run.stdout == "done\n", run


#: Opens 3,000 distinct files (3,000 verdicts) while a 50 µs interval timer's handler, or finalizers of
#: cyclic garbage collected every few allocations, walk the stack they are given; prints whether they ran
#: at all and how many of them found a frame of pyward's.
PROGRAM = """
import gc, os, signal, sys
how = sys.argv[1]
os.mkdir("files")
for i in range(3000):
    open(f"files/f{i}", "w").close()
seen = {"ran": 0, "pyward": 0}

def look(frame):
    seen["ran"] += 1
    while frame is not None:
        if "/pyward/" in frame.f_code.co_filename:
            seen["pyward"] += 1
            return
        frame = frame.f_back

if how == "signal":
    signal.signal(signal.SIGALRM, lambda signum, frame: look(frame))
elif how == "reimported":  # a fresh copy of _signal sets the handler
    del sys.modules["_signal"]
    import _signal
    _signal.signal(signal.SIGALRM, lambda signum, frame: look(frame))
elif how == "gc":
    class Cycle:
        def __init__(self):
            self.me = self
        def __del__(self):
            look(sys._getframe(1))
    gc.set_threshold(5)
if how != "gc":
    signal.setitimer(signal.ITIMER_REAL, 0.00005, 0.00005)
for i in range(3000):
    if how == "gc":
        Cycle(), Cycle(), Cycle()
    open(f"files/f{i}").close()
signal.setitimer(signal.ITIMER_REAL, 0)
print(seen["ran"], seen["pyward"])
"""


@pytest.mark.parametrize("how", ["signal", "reimported", "gc"])
@pytest.mark.parametrize("mode", ["--mode=enforce", "--mode=watch"])
def test_code_run_inside_a_verdict_is_handed_no_frame_of_pyward(tmp_path, how, mode):
    run = guard(tmp_path, PROGRAM, mode, "--allow-read=.", "--allow-write=.", "--no-kernel", args=(how,),
                timeout=120)
    assert run.status == 0, run.stderr
    ran, pyward_frames = map(int, run.stdout.split())
    assert ran > 20  # the handlers and finalizers did run: deferred, not dropped
    assert pyward_frames == 0


def test_the_program_sees_its_own_handlers(tmp_path):
    run = guard(tmp_path, """
        import _signal, signal
        def mine(signum, frame):
            print("handled", signum, frame.f_code.co_name)
        assert signal.signal(signal.SIGUSR1, mine) is signal.SIG_DFL
        assert signal.getsignal(signal.SIGUSR1) is mine and _signal.getsignal(signal.SIGUSR1) is mine
        assert signal.signal(signal.SIGUSR1, signal.SIG_IGN) is mine
        assert signal.signal(signal.SIGUSR1, mine) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        def main():
            signal.raise_signal(signal.SIGUSR1)
        main()
        try:
            signal.signal(signal.SIGUSR1, 42)
        except TypeError as exc:
            print("TypeError", exc)
        """, "--allow-read=.")
    assert run.status == 0, run.stderr
    assert run.stdout.splitlines() == ["handled 10 main",
                                       "TypeError signal handler must be signal.SIG_IGN, signal.SIG_DFL, or a "
                                       "callable object"]


@pytest.mark.parametrize("call", ["os.pidfd_open(**{Name('pid'): os.getpid()})",
                                  "os.mkfifo(**{Name('path'): 'prog/fifo'})",
                                  "__import__('_posixshmem').shm_open(**{Name('path'): '/pyward-kw', 'flags': 0})"])
def test_a_keyword_name_that_is_a_str_subclass_runs_no_code_in_a_verdict(tmp_path, call):
    # a guard's decision looks its keywords up by name: a key whose __eq__ is the program's
    # ran inside the verdict, with the decider's frame (and its private globals) below it
    flags = layout(tmp_path)
    run = guard(tmp_path, f"""
        import os, sys
        got = []
        class Name(str):
            def __hash__(self):
                return str.__hash__(self)
            def __eq__(self, other):
                got.append(sys._getframe(1).f_globals)
                return str.__eq__(self, other)
        try:
            {call}
        except Exception as exc:
            print("refused", type(exc).__name__)
        for space in got:
            space["check"] = lambda *a, **k: None  # every later check allows
            for name in list(space):
                if name.startswith("on_") and callable(space[name]):
                    space[name] = lambda *a, **k: None
        try:
            with open("secret/key.txt") as f:
                print("LEAK", f.read())
        except PermissionError:
            pass
        print("CALLED", len(got))
    """, *flags, "--no-kernel", name="prog/app.py")
    assert "TOPSECRET" not in run.stdout, run
    assert "CALLED 0" in run.stdout, run
