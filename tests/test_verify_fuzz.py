"""Reports, journals and signature files are input: `pyward verify` and `pyward report` answer
a crafted one with a status (0 intact, 1 altered, 2 unreadable, 3 intact up to a checkpoint)
and `[pyward]` lines, never a Python traceback.  Real files from real runs, mutated by
hypothesis: keys removed, values of the wrong type, deep nesting, huge numbers, events
that are not objects, bytes cut or flipped."""
from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys

import pytest

from helpers import clean_env, pyward, recorders_of, wait_for_text

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from pyward import cli  # noqa: E402

PROGRAM = """\
import os, sys
for i in range(4):
    try:
        os.environ.get(f"SECRET_{i}")
    except PermissionError:
        pass
if sys.argv[1:] == ["kill"]:
    print("ready", flush=True)
    import time
    time.sleep(60)  # the whole run is killed here: its journal is what is left
"""
KEY = "0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A real report, its HMAC signature, and the journal a run killed whole (program and recorder) left."""
    app = tmp_path_factory.mktemp("fuzz")
    (app / "app.py").write_text(PROGRAM)
    env = clean_env(FUZZ_KEY=KEY)
    command = [sys.executable, "-m", "pyward", "run", "--quiet", "--deny-env=SECRET_*", "--report"]
    subprocess.run([*command, "r.json", "app.py"], cwd=app, env=env, capture_output=True, timeout=120)
    killed = subprocess.Popen([*command, "j.json", "app.py", "kill"], cwd=app, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
    try:
        assert killed.stdout is not None and killed.stdout.readline() == "ready\n"
        assert wait_for_text(app / "j.json", "SECRET_", 4)  # the recorder has the four denials on disk
        for pid in [*recorders_of(killed.pid), killed.pid]:
            os.kill(pid, signal.SIGKILL)
    finally:
        killed.kill()
        killed.wait()
    signed = pyward("sign", "r.json", "--hmac-key-env", "FUZZ_KEY", cwd=app, env=env)
    assert signed.returncode == 0, signed.stderr
    report = (app / "r.json").read_bytes()
    journal = (app / "j.json").read_bytes()
    assert report.startswith(b"{") and journal.startswith(b'{"format":"pyward.journal"'), journal[:80]
    return {"report": report, "journal": journal, "sig": (app / "r.json.sig").read_bytes()}


def run_cli(argv: list[str]) -> tuple[int, str]:
    """`pyward ARGV` in this process: its status and stderr; an exception escaping is the failure."""
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            status = cli.main(argv)
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 2
    return status, err.getvalue()


# -- mutations of parsed JSON ---------------------------------------------------------------

JSON_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(10 ** 40), max_value=10 ** 40),
                        st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8),
                        st.just(10 ** 300), st.just(1e308))
JSON_VALUES = st.recursive(JSON_LEAVES, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                                 st.dictionaries(st.text(max_size=6), inner,
                                                                                 max_size=3)), max_leaves=8)


def paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from paths(v, (*prefix, i))


def mutate(data, choice: int, how: str, replacement):
    every = list(paths(data))
    target = every[choice % len(every)]
    if not target:
        return replacement if how != "delete" else []
    parent = data
    for part in target[:-1]:
        parent = parent[part]
    last = target[-1]
    if how == "delete":
        del parent[last]
    elif how == "nest":
        parent[last] = DEEP  # written as nesting deeper than any recursion limit (dumps)
    else:
        parent[last] = replacement
    return data


DEEP = "\x00deep\x00"


def dumps(data) -> bytes:
    return json.dumps(data).encode().replace(json.dumps(DEEP).encode(), b"[" * 100_000 + b"]" * 100_000)


MUTATION = st.tuples(st.integers(min_value=0, max_value=10 ** 6), st.sampled_from(["delete", "replace", "nest"]),
                     JSON_VALUES)
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                       HealthCheck.function_scoped_fixture])


def check(status: int, stderr: str, statuses=(0, 1, 2, 3)) -> None:
    assert status in statuses, (status, stderr)
    assert "Traceback" not in stderr, stderr
    assert all(line.startswith("[pyward]") for line in stderr.splitlines()), stderr


@FUZZ
@given(mutations=st.lists(MUTATION, min_size=1, max_size=3))
def test_verify_and_report_of_a_mutated_report(files, tmp_path, mutations):
    data = json.loads(files["report"])
    for choice, how, replacement in mutations:
        data = mutate(data, choice, how, replacement)
    path = tmp_path / "r.json"
    path.write_bytes(dumps(data))
    status, stderr = run_cli(["verify", str(path)])
    check(status, stderr, (0, 1, 2))
    status, stderr = run_cli(["report", "--format", "html", "-o", str(tmp_path / "r.html"), str(path)])
    check(status, stderr, (0, 1, 2))


@FUZZ
@given(mutations=st.lists(MUTATION, min_size=1, max_size=3), line=st.integers(min_value=0, max_value=100))
def test_verify_and_report_of_a_mutated_journal(files, tmp_path, mutations, line):
    lines = files["journal"].split(b"\n")
    index = line % (len(lines) - 1)
    item = json.loads(lines[index])
    for choice, how, replacement in mutations:
        item = mutate(item, choice, how, replacement)
    lines[index] = dumps(item)
    path = tmp_path / "j.json"
    path.write_bytes(b"\n".join(lines))
    status, stderr = run_cli(["verify", str(path)])
    check(status, stderr)
    status, stderr = run_cli(["report", "--format", "sarif", "-o", str(tmp_path / "j.sarif"), str(path)])
    check(status, stderr, (0, 1, 2))


@FUZZ
@given(mutations=st.lists(MUTATION, min_size=1, max_size=2))
def test_verify_with_a_mutated_signature_file(files, tmp_path, mutations):
    (tmp_path / "r.json").write_bytes(files["report"])
    sig = json.loads(files["sig"])
    for choice, how, replacement in mutations:
        sig = mutate(sig, choice, how, replacement)
    (tmp_path / "r.json.sig").write_bytes(dumps(sig))
    os.environ["FUZZ_KEY"] = KEY
    try:
        status, stderr = run_cli(["verify", str(tmp_path / "r.json"), "--signature", "--hmac-key-env", "FUZZ_KEY"])
    finally:
        del os.environ["FUZZ_KEY"]
    check(status, stderr, (0, 1, 2))


@FUZZ
@given(cut=st.integers(min_value=0, max_value=10 ** 6), flips=st.lists(st.tuples(st.integers(0, 10 ** 6),
                                                                                  st.integers(0, 255)), max_size=4),
       which=st.sampled_from(["report", "journal"]))
def test_verify_of_cut_and_flipped_bytes(files, tmp_path, cut, flips, which):
    raw = bytearray(files[which][:cut % (len(files[which]) + 1)])
    for at, byte in flips:
        if raw:
            raw[at % len(raw)] = byte
    path = tmp_path / "x.json"
    path.write_bytes(bytes(raw))
    check(*run_cli(["verify", str(path)]))
    check(*run_cli(["report", "--format", "json", "-o", str(tmp_path / "x.out"), str(path)]), (0, 1, 2))


CRAFTED = {
    "not a dict": b"[1, 2, 3]",
    "events not objects": None,
    "run missing": None,
    "huge numbers": None,
    "deep nesting": b'{"format": "pyward.report", "version": 1, "run": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_reports_end_in_one_line_in_a_real_process(files, tmp_path, case):
    """The same, through the real command line (stderr as the user sees it)."""
    data = json.loads(files["report"])
    raw = CRAFTED[case]
    if case == "events not objects":
        data["events"] = [1, "two", None, [3]]
    elif case == "run missing":
        del data["run"]
    elif case == "huge numbers":
        data["run"]["exit_status"] = 10 ** 4000 // 10 ** 3990
        data["events"][0]["seq"] = 1e308
        data["integrity"]["events"] = 10 ** 100
    if raw is None:
        raw = json.dumps(data).encode()
    (tmp_path / "r.json").write_bytes(raw)
    (tmp_path / "r.json.sig").write_bytes(b"[]")
    for args in (["verify", "r.json"], ["verify", "r.json", "--signature"], ["report", "r.json", "-o", "out.html",
                                                                             "--format", "html"]):
        result = pyward(*args, cwd=tmp_path)
        assert result.returncode in (1, 2), (args, result)
        assert "Traceback" not in result.stderr, result.stderr
        assert len(result.stderr.splitlines()) == 1, result.stderr
