"""Sealed checkpoints: the journal at the report path while the run goes, and verify's verdicts on
what a killed run leaves there (real runs killed by SIGKILL, os._exit and an address-space limit)."""
from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import pytest

from helpers import clean_env, pyward, pyward_lines, recorders_of
from pyward import checkpoint, report
from pyward import journal as journal_module
from pyward.journal import Journal

KEY = "0123456789abcdef0123456789abcdef"

#: A program that journals one denial per step (distinct names: none is folded into a repeat)
#: and prints the step once it is journaled; `exit K` ends it with os._exit after step K,
#: `oom K` exhausts an address-space limit after step K, `hold K` waits on stdin after step K
#: (so a kill lands while the program runs, however fast or slow the machine is).
PROGRAM = """\
import os, sys
steps, how, at = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
hoard = []
for i in range(steps):
    try:
        os.environ.get(f"SECRET_{i}")
    except PermissionError:
        pass
    print(i, flush=True)
    if i == at and how == "hold":
        sys.stdin.readline()
    if i == at and how == "exit":
        os._exit(5)
    if i == at and how == "oom":
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, resource.getrlimit(resource.RLIMIT_AS)[1]))
        while True:
            hoard.append(bytearray(1 << 24))
"""


def run_args(report_path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pyward", "run", "-q", "--report", str(report_path), "-A", "--deny-env", *extra,
            "app.py"]


@pytest.fixture
def app(tmp_path):
    (tmp_path / "app.py").write_text(PROGRAM)
    return tmp_path


def verify(path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return pyward("verify", str(path), *args, env=env)


def journal_lines(path) -> list[dict]:
    """The complete lines (a kill can cut the last write short: it is not sealed, and verify says so)."""
    text = path.read_text()
    return [json.loads(line) for line in text[:text.rfind("\n") + 1].splitlines()]


def write_lines(path, items: list[dict]) -> None:
    path.write_text("".join(json.dumps(item, separators=(",", ":")) + "\n" for item in items))


def killed_run(app, steps: int, after: int, *extra: str, env: dict[str, str] | None = None):
    """Run the program and SIGKILL pyward's processes (the program's and its recorder's: the whole run, as a
    machine that goes down) once `after` steps are journaled and the program waits: what is left is the sealed
    journal."""
    path = app / "r.json"
    proc = subprocess.Popen([*run_args(path, *extra), str(steps), "hold", str(after - 1)], cwd=app,
                            env=env or clean_env(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    for _ in range(after):
        assert proc.stdout.readline()
    deadline = time.monotonic() + 30  # the recorder writes what reached it: let it catch up with the program
    while (not path.exists() or path.read_bytes().count(b'"kind":"denied"') < after) and time.monotonic() < deadline:
        time.sleep(0.01)
    for pid in recorders_of(proc.pid):
        os.kill(pid, signal.SIGKILL)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    return path


# --- the Merkle root as it grows ------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 100, 129])
def test_merkle_frontier_equals_the_report_root(n):
    items = [{"i": i, "x": "y" * i} for i in range(n)]
    frontier = checkpoint.MerkleFrontier()
    for item in items:
        frontier.add(report.canonical(item))
    assert frontier.root() == report.merkle_root(items)


# --- the sink, in process --------------------------------------------------------------------


def sink_journal(tmp_path, n: int, **kwargs) -> tuple[Journal, checkpoint.CheckpointSink]:
    journal = Journal()
    sink = checkpoint.CheckpointSink(str(tmp_path / "j.json"), {"pid": 1, "start": "t0"}, **kwargs)
    journal.add_sink(sink)
    for i in range(n):
        journal.emit("sandbox", "denied", f"subject-{i}", severity="notice", where="", details={"i": i})
    return journal, sink


def test_a_checkpoint_every_100_events_and_one_at_the_end(tmp_path):
    journal, sink = sink_journal(tmp_path, 250, every_ms=0)
    lines = journal_lines(tmp_path / "j.json")
    assert [item["events"] for item in lines if "checkpoint" in item] == [100, 200]
    journal.close()
    verdict = checkpoint.verify_journal((tmp_path / "j.json").read_bytes())
    assert (verdict.status, verdict.checkpoint, verdict.sealed, verdict.unsealed) == (3, 3, 250, 0)


def test_the_first_event_after_the_interval_is_sealed_at_once(tmp_path):
    journal, sink = sink_journal(tmp_path, 3, every_events=0, every_ms=1000)
    assert sink.checkpoints == 0
    sink.last -= 2  # as if two seconds had passed since the last checkpoint
    journal.emit("sandbox", "denied", "late", severity="notice", where="")
    assert sink.checkpoints == 1 and sink.sealed == 4


def test_a_full_disk_stops_the_checkpoints_with_one_line_not_an_error(tmp_path, capfd, monkeypatch):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    monkeypatch.setattr(journal_module, "_writer", None)  # pyward's stderr as captured here
    journal = Journal()
    sink = checkpoint.CheckpointSink("/dev/full", {"pid": 1})
    journal.add_sink(sink)
    for i in range(3):
        journal.emit("sandbox", "denied", f"s{i}", severity="notice", where="")
    journal.close()
    assert sink.failed and "No space left" in sink.failed
    assert len(journal.events) == 3
    err = capfd.readouterr().err
    assert err.count("[pyward][error] checkpoints stopped: cannot write /dev/full") == 1


def test_a_forked_child_does_not_write_into_the_parents_journal(tmp_path):
    journal, sink = sink_journal(tmp_path, 2)
    pid = os.fork()
    if pid == 0:
        try:
            journal.emit("sandbox", "denied", "in-child", severity="notice", where="")
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    journal.emit("sandbox", "denied", "in-parent", severity="notice", where="")
    names = [item.get("name") for item in journal_lines(tmp_path / "j.json")]
    assert "in-child" not in names and "in-parent" in names
    assert checkpoint.verify_journal((tmp_path / "j.json").read_bytes()).status == 3


# --- real runs ---------------------------------------------------------------------------------


def test_a_run_that_ends_replaces_its_journal_with_the_report(app):
    result = subprocess.run([*run_args(app / "r.json"), "150", "none", "-1"], cwd=app, env=clean_env(),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    data = json.loads((app / "r.json").read_text())
    assert data["format"] == "pyward.report" and set(data) == {"format", "version", "run", "events", "summary",
                                                              "integrity"}
    assert verify(app / "r.json").returncode == 0


def test_sigkill_at_random_points(app):
    rng = random.Random(20261207)
    for _ in range(4):
        steps = rng.randrange(50, 400)
        after = rng.randrange(1, steps)
        path = killed_run(app, steps, after)
        result = verify(path)
        assert result.returncode == 3, (after, result.stdout, result.stderr)
        match = re.search(r"intact up to checkpoint (\d+) \((?:events 1\.\.(\d+)|no event sealed yet)\)", result.stdout)
        assert match, result.stdout
        k, sealed = int(match[1]), int(match[2] or 0)
        events = [item for item in journal_lines(path)[1:] if "checkpoint" not in item]
        assert len(events) >= after  # every journaled step is on disk
        assert sealed == 100 * k or sealed == len(events)
        assert len(events) - sealed < 100  # at most the tail since the last checkpoint is unsealed
        assert "did not end normally" in result.stdout  # killed while the program runs


def test_os_exit_at_random_points(app):
    rng = random.Random(7)
    for _ in range(3):
        at = rng.randrange(0, 300)
        result = subprocess.run([*run_args(app / "r.json"), "300", "exit", str(at)], cwd=app, env=clean_env(),
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 5
        verdict = verify(app / "r.json")  # os._exit ends the run as an exit does: the report is whole
        assert verdict.returncode == 0, verdict.stdout + verdict.stderr
        data = json.loads((app / "r.json").read_text())
        assert (data["run"]["exit_status"], data["run"]["exit_reason"]) == (5, "os._exit")
        assert data["summary"]["denied"] == at + 1
        events = data["events"]
        assert sum(1 for e in events if e["kind"] == "denied" and e["name"].startswith("SECRET_")) == at + 1


def test_address_space_exhausted(app):
    rng = random.Random(11)
    at = rng.randrange(0, 150)
    result = subprocess.run([*run_args(app / "r.json"), "200", "oom", str(at)], cwd=app, env=clean_env(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    verdict = verify(app / "r.json")
    # the report is written at exit if memory allows; if not, the journal says how far it is intact
    # the recorder writes the report however the program's process ends (it has its own address space)
    assert verdict.returncode in (0, 3), verdict.stderr
    data = json.loads((app / "r.json").read_text())
    if verdict.returncode == 3:
        assert "did not end normally" in verdict.stdout and data["run"]["exit_status"] is None
    events = data["events"]
    assert sum(1 for e in events if e["kind"] == "denied" and e["name"].startswith("SECRET_")) == at + 1


# --- edits ------------------------------------------------------------------------------------


@pytest.fixture
def killed(app):
    path = killed_run(app, 400, 330)
    lines = journal_lines(path)
    assert sum(1 for item in lines if "checkpoint" in item) >= 3
    return path, lines


def last_checkpoint_line(lines: list[dict]) -> int:
    return max(i for i, item in enumerate(lines) if "checkpoint" in item)


def test_an_edited_event_before_the_last_checkpoint_is_caught(killed):
    path, lines = killed
    lines[50]["message"] = "nothing happened"
    write_lines(path, lines)
    result = verify(path)
    assert result.returncode == 1 and "ALTERED" in result.stderr and "hash chain broken" in result.stderr


def test_an_edit_with_a_recomputed_chain_is_caught_by_the_checkpoint(killed):
    path, lines = killed
    run = lines[0]["run"]
    head = report.genesis(run)
    lines[50]["message"] = "nothing happened"
    for item in lines[1:]:
        if "checkpoint" not in item:
            head = report.chain_next(head, {k: v for k, v in item.items() if k != "chain"})
            item["chain"] = head.hex()
    write_lines(path, lines)
    result = verify(path)
    assert result.returncode == 1 and "checkpoint 1" in result.stderr


@pytest.mark.parametrize("edit", ["remove_event", "remove_checkpoint", "merkle_root", "header_run", "count"])
def test_other_edits_before_the_last_checkpoint(killed, edit):
    path, lines = killed
    checkpoints = [i for i, item in enumerate(lines) if "checkpoint" in item]
    if edit == "remove_event":
        del lines[10]
    elif edit == "remove_checkpoint":
        del lines[checkpoints[0]]
    elif edit == "merkle_root":
        lines[checkpoints[1]]["merkle_root"] = "0" * 64
    elif edit == "header_run":
        lines[0]["run"]["pid"] += 1
    elif edit == "count":
        lines[checkpoints[-1]]["events"] -= 1
    write_lines(path, lines)
    assert verify(path).returncode == 1


def test_a_line_cut_mid_write_is_reported_not_taken_for_an_edit(killed):
    path, lines = killed
    path.write_bytes(path.read_bytes()[:-25])
    result = verify(path)
    assert result.returncode == 3 and "cut mid-write" in result.stdout


def test_unreadable_journal(app):
    (app / "r.json").write_text('{"format":"pyward.journal","version":7}\n')
    result = verify(app / "r.json")
    assert result.returncode == 2 and len(pyward_lines(result.stderr)) == 1


# --- signed checkpoints -------------------------------------------------------------------------


def test_signed_checkpoints(app):
    (app / "peek.py").write_text("import os; print(os.environ.get('PYWARD_HMAC_KEY'))\n")
    result = subprocess.run([sys.executable, "-m", "pyward", "run", "-q", "--report", "p.json", "peek.py"],
                            cwd=app, env=clean_env(PYWARD_HMAC_KEY=KEY), capture_output=True, text=True)
    assert result.stdout == "None\n"  # the program cannot read the key that signs its record
    path = killed_run(app, 300, 250, env=clean_env(PYWARD_HMAC_KEY=KEY))
    lines = journal_lines(path)
    assert lines[0]["checkpoints"]["hmac"] and all("hmac" in item for item in lines if "checkpoint" in item)
    checked = verify(path, env=clean_env(PYWARD_HMAC_KEY=KEY))
    assert checked.returncode == 3 and "checkpoints signed and checked" in checked.stdout
    unchecked = verify(path)
    assert unchecked.returncode == 3 and "signatures not checked" in unchecked.stderr
    # a forger who recomputes a checkpoint without the key
    k = last_checkpoint_line(lines)
    forged = dict(lines[k], time="2000-01-01T00:00:00.000000Z")
    forged["hmac"] = checkpoint.checkpoint_mac(b"x" * 32, forged, lines[0]["genesis"])
    lines[k] = forged
    write_lines(path, lines)
    result = verify(path, env=clean_env(PYWARD_HMAC_KEY=KEY))
    assert result.returncode == 1 and "HMAC does not match" in result.stderr


def test_no_checkpoints(app):
    proc = subprocess.Popen([*run_args(app / "r.json", "--no-checkpoints"), "300", "none", "-1"], cwd=app,
                            env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline()
    for pid in recorders_of(proc.pid):
        os.kill(pid, signal.SIGKILL)
    proc.kill()
    proc.communicate()
    assert not (app / "r.json").exists()


def test_a_journal_is_not_signed_as_a_report(killed, tmp_path):
    path, _ = killed
    result = pyward("sign", str(path), env=clean_env(PYWARD_HMAC_KEY=KEY))
    assert result.returncode == 2 and "did not end normally, not a report" in result.stderr
    assert not (tmp_path / "r.json.sig").exists()
