"""Opens the native side answers alone: once a directory's allowance is journaled, the
next opens of plain files in it are allowed in C, without the decider.  Each test warms
a directory that way and then opens what must still reach the decider; the kernel wall
is off (--no-kernel), so only the sandbox's own verdict stands between the program and
the file."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from helpers import clean_env
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


@pytest.mark.parametrize("listed", [False, True], ids=["looked-at", "listed"])
def test_a_file_swapped_for_a_link_after_the_directory_went_quiet_is_judged_again(tmp_path, listed):
    """Another process turns a plain file of a warm directory, not opened yet, into a symlink:
    the lstat of the path as spelled sees the link; in a directory listed already (see crowded),
    the program's starting that process emptied what the listing said."""
    if listed:
        crowded(tmp_path)
        warm, name = GO_THROUGH, "spare.txt"
    else:
        workspace(tmp_path)
        (tmp_path / "data" / "d.txt").write_text("public")
        warm, name = WARM, "d.txt"
    swap = SWAP.format(name=name, target=str(tmp_path / "secret" / "key.txt"))
    run = guard(tmp_path, warm + f"""
import subprocess, sys
subprocess.run([sys.executable, "-c", {swap!r}], check=True)
attempt("data/{name}")
""", "--no-kernel", "--no-inherit", "--allow-read=data", "--allow-run", name="prog/app.py")
    assert run.stdout.splitlines() == [f"data/{name} denied"], run
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
    native.take_quiet_dirs(())
    print("taken")
except RuntimeError:
    print("refused")
""", "--no-kernel")
    assert run.stdout == "refused\n", run


# a directory the program goes through: past a few dozen opens the C side lists it once
# and answers for its plain files from the listing, not from an lstat of each
MANY = 100
GO_THROUGH = ATTEMPT + f"""
for i in range({MANY}):
    open("data/many-%d.txt" % i).close()
"""


def crowded(tmp_path):
    workspace(tmp_path)
    for i in range(MANY):
        (tmp_path / "data" / f"many-{i}.txt").write_text("public")
    (tmp_path / "data" / "spare.txt").write_text("public")  # listed, never opened before the checks
    os.symlink(tmp_path / "secret" / "key.txt", tmp_path / "data" / "link.txt")
    os.link(tmp_path / "secret" / "key.txt", tmp_path / "data" / "hard.txt")  # a deny rule's file
    os.link(tmp_path / "secret" / "c.txt", tmp_path / "data" / "other.txt")   # a file no rule names
    (tmp_path / "data" / "notes.md").write_text("private")


CHECKS = """
for name in ("spare.txt", "link.txt", "hard.txt", "other.txt", "notes.md", "new.txt"):
    attempt("data/" + name)
"""


@pytest.mark.parametrize("mode", ["enforce", "watch"])
def test_a_listed_directory_is_judged_as_one_looked_at_file_by_file(tmp_path, mode):
    """The same checks after a few opens in the directory and after enough for it to be
    listed: the same output, the same journal (a symlink by its target, a hard link to a
    denied file by its name, a name the rules do not allow, a file that is not there)."""
    crowded(tmp_path)
    flags = ("--no-kernel", f"--mode={mode}", f"--allow-read={tmp_path}/data/*.txt",
             "--deny-read=secret/key.txt")
    few = guard(tmp_path, WARM + CHECKS, *flags, name="prog/app.py")
    listed = guard(tmp_path, GO_THROUGH + CHECKS, *flags, name="prog/app.py")
    assert listed.stdout == few.stdout, (few, listed)
    if mode == "enforce":
        assert few.stdout.splitlines() == ["data/spare.txt public", "data/link.txt denied", "data/hard.txt denied",
                                           "data/other.txt TOPSECRET", "data/notes.md denied"], few
    summary = [(e["kind"], e["name"]) for e in listed.events() if e["kind"] != "allowed"]
    assert summary == [(e["kind"], e["name"]) for e in few.events() if e["kind"] != "allowed"], (few.log, listed.log)
    kind = "denied" if mode == "enforce" else "would_deny"
    assert [name for k, name in summary if k == kind] == [
        str(tmp_path / "secret" / "key.txt"), str(tmp_path / "data" / "hard.txt"), str(tmp_path / "data" / "notes.md")]
    assert len(listed.events("allowed")) == len(few.events("allowed")) == 1, listed.log


def traced(tmp_path, code: str) -> list[str]:
    """The file system calls (stat-like, openat, getdents) of `code` run under pyward, as strace saw them."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("not run: strace is not installed (it counts the system calls)")
    (tmp_path / "prog" / "app.py").write_text(code)
    trace = tmp_path / "trace.txt"
    result = subprocess.run([strace, "-f", "-qq", "-e", "trace=/stat|getdents|openat", "-o", str(trace), sys.executable,
                             "-m", "pyward", "run", "--no-config", "--no-kernel", "--no-report", "--allow-read=.",
                             "prog/app.py"], cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=120)
    if result.returncode != 0 and "ptrace" in result.stderr:
        pytest.skip(f"not run: strace cannot trace here ({result.stderr.strip()})")
    assert result.returncode == 0, result
    return trace.read_text().splitlines()


def test_a_directory_gone_through_is_listed_once_not_looked_at_file_by_file(tmp_path):
    """What the listing is for: the files of a directory the program goes through cost one
    getdents, not one lstat each (counted with strace, which sees every system call)."""
    crowded(tmp_path)
    calls = traced(tmp_path, GO_THROUGH)
    looked_at = [line for line in calls if "stat" in line and "data/many-" in line]
    assert 0 < len(looked_at) < MANY // 2, looked_at
    assert [line for line in calls if "O_DIRECTORY" in line and '"data/"' in line], calls


def test_files_opened_across_directories_are_not_a_reason_to_list_them(tmp_path):
    """Opens that alternate between directories (an import, a copy from one to another) are
    not a walk through either: each file costs its lstat, no directory is read."""
    crowded(tmp_path)
    (tmp_path / "other").mkdir()
    for i in range(MANY):
        (tmp_path / "other" / f"many-{i}.txt").write_text("public")
    calls = traced(tmp_path, f"""
for i in range({MANY}):
    open("data/many-%d.txt" % i).close()
    open("other/many-%d.txt" % i).close()
""")
    assert len([line for line in calls if "stat" in line and "data/many-" in line]) >= MANY, calls
    assert not [line for line in calls if "O_DIRECTORY" in line and ('"data/"' in line or '"other/"' in line)]
