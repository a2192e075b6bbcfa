"""A verdict never runs the program's code, and code the interpreter runs inside
one (a patched stdlib function the journal calls, a finalizer, a signal handler)
is judged like any other: each test checks the side effect did not happen."""
from __future__ import annotations

import socket

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
