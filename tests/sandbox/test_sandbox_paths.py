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
