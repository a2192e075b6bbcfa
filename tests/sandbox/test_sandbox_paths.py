"""Paths judged by what the kernel will do with them: each test checks the file
system, not pyward's output."""
from __future__ import annotations

import os
import sys

import pytest

from sandbox_helpers import guard


def layout(tmp_path):
    (tmp_path / "prog").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro" / "config.txt").write_text("original")
    return ["--allow-read=prog", "--allow-read=ro", "--allow-write=out"]


def test_a_dangling_symlink_into_a_protected_directory_is_judged_by_its_target(tmp_path):
    flags = layout(tmp_path)
    run = guard(tmp_path, """
        import os
        os.symlink(os.path.abspath("ro/planted.txt"), "out/link")
        try:
            with open("out/link", "w") as f:
                f.write("x")
            print("written")
        except PermissionError:
            print("denied")
        # a chain of links, the last one dangling
        os.symlink(os.path.abspath("out/link"), "out/link2")
        try:
            open("out/link2", "a").close()
        except PermissionError:
            print("denied")
    """, *flags, name="prog/app.py")
    assert not (tmp_path / "ro" / "planted.txt").exists(), run
    assert run.stdout == "denied\ndenied\n", run


def test_removing_a_link_judges_the_link_not_its_target(tmp_path):
    flags = layout(tmp_path)
    run = guard(tmp_path, """
        import os
        os.symlink(os.path.abspath("ro/config.txt"), "out/link")
        os.remove("out/link")  # the link in a writable directory: its target is untouched
        print("removed")
    """, *flags, name="prog/app.py")
    assert run.stdout == "removed\n", run
    assert (tmp_path / "ro" / "config.txt").read_text() == "original"


def test_proc_self_fd_follows_dup2(tmp_path):
    flags = layout(tmp_path)
    run = guard(tmp_path, """
        import os
        fd = os.open("out/scratch", os.O_WRONLY | os.O_CREAT)
        with open("/proc/self/fd/%d" % fd, "w") as f:  # the file it names: writable
            f.write("fine")
        ro = os.open("ro/config.txt", os.O_RDONLY)
        os.dup2(ro, fd)  # the same path now names a file the program may only read
        try:
            with open("/proc/self/fd/%d" % fd, "w") as f:
                f.write("tampered")
            print("written")
        except PermissionError:
            print("denied")
    """, *flags, name="prog/app.py")
    assert (tmp_path / "ro" / "config.txt").read_text() == "original", run
    assert run.stdout == "denied\n", run


def test_a_hard_link_to_a_read_only_file_is_a_write_of_it(tmp_path):
    flags = layout(tmp_path)
    run = guard(tmp_path, """
        import os
        try:
            os.link("ro/config.txt", "out/alias")
            with open("out/alias", "w") as f:
                f.write("tampered")
            print("written")
        except PermissionError:
            print("denied")
    """, *flags, name="prog/app.py")
    assert (tmp_path / "ro" / "config.txt").read_text() == "original", run
    assert not (tmp_path / "out" / "alias").exists(), run
    assert run.stdout == "denied\n", run


def test_an_index_object_as_a_file_descriptor_is_not_trusted(tmp_path):
    flags = layout(tmp_path)
    run = guard(tmp_path, """
        import os
        fd = os.open("ro/config.txt", os.O_RDONLY)
        class Fd:
            def __index__(self):
                return fd
        try:
            os.truncate(Fd(), 0)
            print("truncated")
        except PermissionError:
            print("denied")
        except OSError as e:
            print("os error", e.errno)
    """, *flags, name="prog/app.py")
    assert (tmp_path / "ro" / "config.txt").read_text() == "original", run
    assert run.stdout == "denied\n", run


@pytest.mark.skipif(not hasattr(os, "memfd_create") or sys.platform != "linux", reason="memfd is Linux's")
def test_fexecve_of_a_memfd_is_running_a_program(tmp_path):
    flags = layout(tmp_path)
    marker = tmp_path / "out" / "MARKER"
    run = guard(tmp_path, f"""
        import os
        fd = os.memfd_create("payload", 0)
        os.write(fd, b"#!/bin/sh\\ntouch {marker}\\n")
        try:
            os.execve(fd, ["payload"], {{}})  # fexecve(3): what os.execve does with a descriptor
        except PermissionError:
            print("denied")
    """, *flags, name="prog/app.py")
    assert not marker.exists(), run
    assert run.stdout == "denied\n", run


def test_bytecode_caches_outside_the_program_are_refused_quietly_and_never_learned(tmp_path):
    """python writes a bytecode cache beside each module it imports and goes on without one it
    cannot write: outside the program's tree pyward refuses it under enforce without a word, and
    `pyward learn` writes no rule for it, so a learned policy runs the program as python does."""
    import json

    from helpers import pyward

    lib = tmp_path / "lib" / "site-packages"
    lib.mkdir(parents=True)
    (lib / "dep.py").write_text("VALUE = 42\n")
    app = tmp_path / "app"
    app.mkdir()
    (app / "main.py").write_text(f"import sys\nsys.dont_write_bytecode = False\nsys.path.insert(0, {str(lib)!r})\n"
                                 "import dep\nprint(dep.VALUE)\n")
    learned = pyward("learn", "-o", "policy.toml", "main.py", cwd=app)
    assert learned.returncode == 0 and learned.stdout == "42\n", learned.stderr
    assert "__pycache__" not in (app / "policy.toml").read_text()
    for cache in (lib / "__pycache__").glob("*"):
        cache.unlink()  # written under learn (watch blocks nothing): now enforce the learned policy
    run = pyward("run", "--config", "policy.toml", "--report", "r.json", "main.py", cwd=app)
    assert run.returncode == 0 and run.stdout == "42\n", run.stderr
    assert not list((lib / "__pycache__").glob("dep.*"))  # refused: python went on without it
    report = json.loads((app / "r.json").read_text())
    assert report["summary"]["denied"] == 0
    assert [line for line in run.stderr.splitlines() if not line.startswith("[pyward] run end:")] == []


def test_rules_realpath_is_os_realpath(tmp_path):
    """The policy's paths resolve as os.path.realpath resolves them, libc or not: missing names,
    missing directories, dangling links, links to directories, '..'."""
    from pyward.sandbox.rules import realpath

    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "file").write_text("x")
    (tmp_path / "to_dir").symlink_to(tmp_path / "dir")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere" / "deep")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    for rel in ("dir/file", "dir/missing", "missing/more/names", "to_dir/missing", "to_dir/file", "dangling",
                "dangling/below", "loop", "loop/below", "dir/../to_dir/missing", "missing/../dir", "dir/file/below",
                "to_dir/", "missing/"):
        path = f"{tmp_path}/{rel}"
        assert realpath(path) == os.path.realpath(path), rel


PROC_SELF = """
    import os, subprocess, sys, threading
    def first(path):
        try:
            with open(path) as f:
                return f.readline().split(":")[0]
        except PermissionError as exc:  # pyward.AccessDenied is one too; the kernel wall's EACCES as well
            return type(exc).__name__
    own = "/proc/%d/status" % os.getpid()  # as psutil spells it: its own pid
    print("self", first("/proc/self/status"), first(own))
    print("other", first("/proc/1/status"))
    child = subprocess.run([sys.executable, "-c", "print(open('/proc/self/status').readline().split(':')[0])"],
                           capture_output=True, text=True)
    print("child", child.stdout.strip() or child.stderr.strip().splitlines()[-1])
    sys.stdout.flush()
    pid = os.fork()
    if pid == 0:
        print("forked", first("/proc/self/status"), first("/proc/%d/status" % os.getpid()), flush=True)
        os._exit(0)
    os.waitpid(pid, 0)
    out = []
    worker = threading.Thread(target=lambda: out.append(open("/proc/thread-self/comm").read()))
    worker.start()
    worker.join()
    print("thread", out[0] == open("/proc/self/comm").read())
"""


def test_a_rule_on_proc_self_holds_in_every_process_of_the_run(tmp_path):
    """/proc/self is a different directory in each process: a rule on it (what `pyward learn`
    writes) lets the program, a Python child and a forked child read their own, and no one else's."""
    flags = ("--mode=enforce", "--allow-read=/proc/self/status", "--allow-read=/proc/thread-self/comm",
             "--allow-read=/proc/self/comm",
             f"--allow-run={sys.executable}", "--allow-run=fork")
    run = guard(tmp_path, PROC_SELF, *flags)
    assert run.stdout.splitlines() == ["self Name Name", "other AccessDenied", "child Name",
                                       "forked Name Name", "thread True"], run
    assert [e["name"] for e in run.denied] == ["/proc/1/status"]


def test_the_process_own_proc_files_are_named_by_proc_self(tmp_path):
    """A denial names /proc/self/..., whatever pid the program spelled, and says how to allow it:
    a rule naming this run's pid would mean another process in the next run."""
    run = guard(tmp_path, """
        import os
        for path in ("/proc/%d/status" % os.getpid(), "/proc/thread-self/comm"):
            try:
                open(path).close()
            except PermissionError as exc:
                print(exc)
    """, "--mode=enforce")
    assert [e["name"] for e in run.denied] == ["/proc/self/status", "/proc/thread-self/comm"], run
    assert "--allow-read=/proc/self/status" in run.stdout
    assert str(os.getpid()) not in run.stdout.replace(" ", "\n").split("\n")


def test_learn_writes_proc_self_and_its_policy_enforces_cleanly(tmp_path):
    import subprocess

    from helpers import clean_env

    (tmp_path / "app.py").write_text("import os\nprint(open('/proc/%d/status' % os.getpid()).readline().strip())\n")
    learned = subprocess.run([sys.executable, "-m", "pyward", "learn", "-o", "pyward.toml", "app.py"], cwd=tmp_path,
                             env=clean_env(), capture_output=True, text=True, timeout=60)
    assert learned.returncode == 0, learned.stderr
    policy = (tmp_path / "pyward.toml").read_text()
    assert '"/proc/self/status"' in policy
    assert "/proc/1" not in policy.replace("/proc/self", "")  # no pid of the learning run
    run = guard(tmp_path, (tmp_path / "app.py").read_text(), config=True)
    assert run.stdout.startswith("Name:"), run
    assert not run.denied


def test_own_proc_maps_only_this_process_and_this_thread():
    from pyward.sandbox._decide import own_proc

    assert own_proc("/proc/123/status", 123, 130) == "/proc/self/status"
    assert own_proc("/proc/123", 123, 130) == "/proc/self"
    assert own_proc("/proc/1234/status", 123, 130) == "/proc/1234/status"  # another pid with the same digits first
    assert own_proc("/proc/12/status", 123, 130) == "/proc/12/status"
    assert own_proc("/proc/123/task/130/comm", 123, 130) == "/proc/thread-self/comm"
    assert own_proc("/proc/123/task/1301/comm", 123, 130) == "/proc/self/task/1301/comm"  # another thread
    assert own_proc("/proc/sys/kernel/ostype", 123, 130) == "/proc/sys/kernel/ostype"
