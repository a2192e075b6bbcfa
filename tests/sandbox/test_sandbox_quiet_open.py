"""Opens the native side answers alone: once a directory's allowance is journaled, the
next opens of plain files in it are allowed in C, without the decider.  Each test warms
a directory that way and then opens what must still reach the decider; the kernel wall
is off (--no-kernel), so only the sandbox's own verdict stands between the program and
the file."""
from __future__ import annotations

import os

import pytest

from sandbox_helpers import guard

ATTEMPT = """
import os
def attempt(path):
    try:
        with open(path) as f:
            print(path, f.read())
    except PermissionError:
        print(path, "denied")
"""
WARM = ATTEMPT + """
for name in ("a.txt", "b.txt", "c.txt", "c.txt"):  # the first is journaled; the directory is the C side's
    open("data/" + name).close()                    # from then on, and c.txt a path it has answered for
"""


def workspace(tmp_path):
    for directory in ("prog", "data", "secret", "elsewhere/data"):
        (tmp_path / directory).mkdir(parents=True)
    for name in ("a.txt", "b.txt", "c.txt"):
        (tmp_path / "data" / name).write_text("public")
        (tmp_path / "secret" / name).write_text("TOPSECRET")
        (tmp_path / "elsewhere" / "data" / name).write_text("TOPSECRET")
    (tmp_path / "secret" / "key.txt").write_text("TOPSECRET")
    return tmp_path


def test_a_symlink_or_a_hard_link_in_a_warm_directory_is_judged_by_its_target(tmp_path):
    workspace(tmp_path)
    os.symlink(tmp_path / "secret" / "key.txt", tmp_path / "data" / "link.txt")
    os.link(tmp_path / "secret" / "key.txt", tmp_path / "data" / "hard.txt")
    run = guard(tmp_path, WARM + """
attempt("data/a.txt")
attempt("data/link.txt")
attempt("data/hard.txt")
attempt(os.path.abspath("data/link.txt"))
""", "--no-kernel", "--allow-read=data", "--deny-read=secret/key.txt", name="prog/app.py")
    assert run.stdout.splitlines() == ["data/a.txt public", "data/link.txt denied", "data/hard.txt denied",
                                       f"{tmp_path}/data/link.txt denied"], run
    assert len(run.denied) == 3, run.denied


def test_links_are_judged_while_another_thread_runs(tmp_path):
    """With a second thread alive the C side lets the GIL go around its lstat (and checks
    the table again after): a link is still judged by its target, a plain file still quiet."""
    workspace(tmp_path)
    os.symlink(tmp_path / "secret" / "key.txt", tmp_path / "data" / "link.txt")
    os.link(tmp_path / "secret" / "key.txt", tmp_path / "data" / "hard.txt")
    (tmp_path / "data" / "d.txt").write_text("public")
    run = guard(tmp_path, WARM + """
import threading
stop = threading.Event()
def spin():
    while not stop.is_set():
        pass
worker = threading.Thread(target=spin)
worker.start()
try:
    attempt("data/d.txt")
    attempt("data/link.txt")
    attempt("data/hard.txt")
finally:
    stop.set()
    worker.join()
""", "--no-kernel", "--allow-read=data", "--deny-read=secret/key.txt", name="prog/app.py")
    assert run.stdout.splitlines() == ["data/d.txt public", "data/link.txt denied", "data/hard.txt denied"], run
    # the symlink by its target; the hard link by its own name
    assert [e["name"] for e in run.denied] == [str(tmp_path / "secret" / "key.txt"),
                                               str(tmp_path / "data" / "hard.txt")], run.denied


SWAP = "import os; os.remove('data/{name}'); os.symlink({target!r}, 'data/{name}')"


def test_a_file_swapped_for_a_link_after_the_directory_went_quiet_is_judged_again(tmp_path):
    """Another process (beyond the audit layer's sight) turns a plain file of a warm
    directory, not opened yet, into a symlink: the lstat of the path as spelled sees the link."""
    workspace(tmp_path)
    (tmp_path / "data" / "d.txt").write_text("public")
    swap = SWAP.format(name="d.txt", target=str(tmp_path / "secret" / "key.txt"))
    run = guard(tmp_path, WARM + f"""
import subprocess, sys
subprocess.run([sys.executable, "-c", {swap!r}], check=True)
attempt("data/d.txt")
""", "--no-kernel", "--no-inherit", "--allow-read=data", "--allow-run", name="prog/app.py")
    assert run.stdout.splitlines() == ["data/d.txt denied"], run
    assert [e["name"] for e in run.denied] == [str(tmp_path / "secret" / "key.txt")], run.denied


@pytest.mark.parametrize("start", ["subprocess", "os.system", "os.posix_spawn"])
def test_a_child_empties_what_was_answered_for_paths(tmp_path, start):
    """A path answered for already is not looked at again, until the program starts a child
    (which may change names): by whatever route, subprocess's on every Python included."""
    workspace(tmp_path)
    swap = SWAP.format(name="b.txt", target=str(tmp_path / "secret" / "key.txt"))
    child = {"subprocess": f"subprocess.run([sys.executable, '-c', {swap!r}], check=True)",
             "os.system": f"assert os.system(shlex.join([sys.executable, '-c', {swap!r}])) == 0",
             "os.posix_spawn": f"os.waitpid(os.posix_spawn(sys.executable, [sys.executable, '-c', {swap!r}], "
                               "dict(os.environ)), 0)"}[start]
    run = guard(tmp_path, WARM + f"""
import shlex, subprocess, sys
{child}
attempt("data/b.txt")
""", "--no-kernel", "--no-inherit", "--allow-read=data", "--allow-run", name="prog/app.py")
    assert run.stdout.splitlines() == ["data/b.txt denied"], run
    assert [e["name"] for e in run.denied] == [str(tmp_path / "secret" / "key.txt")], run.denied


def test_a_relative_directory_is_the_new_one_after_chdir(tmp_path):
    workspace(tmp_path)
    run = guard(tmp_path, WARM + """
os.chdir("elsewhere")
for name in ("a.txt", "b.txt"):  # the C side's again, for another directory
    open("../data/" + name).close()
attempt("data/c.txt")
attempt("data/b.txt")
""", "--no-kernel", "--allow-read=data", name="prog/app.py")
    assert run.stdout.splitlines() == ["data/c.txt denied", "data/b.txt denied"], run
    assert [e["name"] for e in run.denied] == [str(tmp_path / "elsewhere" / "data" / n) for n in ("c.txt", "b.txt")]


def test_a_directory_name_pointed_elsewhere_is_resolved_again(tmp_path):
    workspace(tmp_path)
    os.symlink("data", tmp_path / "current")
    run = guard(tmp_path, ATTEMPT + """
for name in ("a.txt", "b.txt", "c.txt", "c.txt"):
    open("current/" + name).close()
os.remove("current")
os.symlink("secret", "current")
for name in ("a.txt", "b.txt"):
    open("data/" + name).close()
attempt("current/c.txt")
attempt("current/b.txt")
""", "--no-kernel", "--allow-read=data", "--allow-write=.", name="prog/app.py")
    assert run.stdout.splitlines() == ["current/c.txt denied", "current/b.txt denied"], run
    assert [e["name"] for e in run.denied] == [str(tmp_path / "secret" / n) for n in ("c.txt", "b.txt")]


def test_names_the_rules_do_not_allow_still_reach_the_decider(tmp_path):
    """The directory is warm for *.txt: another name in it is judged, and journaled, in watch mode too."""
    workspace(tmp_path)
    (tmp_path / "data" / "notes.md").write_text("private")
    for mode, expected in (("enforce", "data/notes.md denied"), ("watch", "data/notes.md private")):
        run = guard(tmp_path, WARM + 'attempt("data/notes.md")\n', "--no-kernel", f"--mode={mode}",
                    f"--allow-read={tmp_path}/data/*.txt", name="prog/app.py")
        assert run.stdout.splitlines() == [expected], run
        kind = "denied" if mode == "enforce" else "would_deny"
        assert [e["name"] for e in run.events(kind)] == [str(tmp_path / "data" / "notes.md")], run.log
        # the allowance of the directory is journaled once, whichever side answered the other opens
        assert len(run.events("allowed")) == 1, run.log


def test_the_table_of_quiet_directories_is_not_handed_to_the_program(tmp_path):
    run = guard(tmp_path, """
from pyward._native import native
try:
    native.take_quiet_dirs()
    print("taken")
except RuntimeError:
    print("refused")
""", "--no-kernel")
    assert run.stdout == "refused\n", run
