"""The journal: events, ordering, program sites, safe details, sinks, the JSON-lines schema."""
from __future__ import annotations

import io
import json
import os
import shutil
import threading
from importlib import resources

import jsonschema
import pytest

from helpers import pyward, pyward_lines
from pyward import journal
from pyward.journal import ConsoleSink, Event, Journal, JsonlSink, jsonable

SCHEMA = json.loads(resources.files("pyward.schema").joinpath("event-1.json").read_text())


def validate(obj: dict) -> None:
    jsonschema.validate(obj, SCHEMA, cls=jsonschema.Draft202012Validator)


def test_schema_is_itself_valid():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_seq_is_gapless_and_ordered_under_threads():
    j = Journal()
    seen: list[int] = []

    class Recorder(journal.Sink):
        def write(self, event: Event) -> None:
            seen.append(event.seq)

    j.add_sink(Recorder())

    def work(n: int) -> None:
        for i in range(200):
            j.emit("pyward", "note", f"{n}-{i}", where="")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == list(range(1, 1601))
    assert [e.seq for e in j.events] == seen
    assert {e.thread for e in j.events} == {t.name for t in threads}


def program_code_calls_emit(j: Journal) -> Event:
    return j.emit("sandbox", "open", "/etc/hosts")  # the line the event must point at


def test_where_points_at_the_program_not_pyward_or_stdlib():
    j = Journal()
    event = program_code_calls_emit(j)
    assert event.where.endswith(f"test_journal.py:{program_code_calls_emit.__code__.co_firstlineno + 1}")
    assert event.function == "program_code_calls_emit"


def test_where_skips_stdlib_frames():
    j = Journal()
    events: list[Event] = []
    # the stdlib's copy module calls our __deepcopy__; the event must name this test, not copy.py
    import copy

    class Probe:
        def __deepcopy__(self, memo):
            events.append(j.emit("sandbox", "x", "y", depth=1))
            return self

    copy.deepcopy([Probe()])
    assert "copy.py" not in events[0].where
    assert "test_journal.py" in events[0].where


def test_jsonable_never_runs_program_code():
    class Evil:
        def __repr__(self):
            raise AssertionError("repr called")

        __str__ = __repr__

    out = jsonable({"obj": Evil(), "b": b"\xffabc", "t": (1, [2, {3}]), "f": float("nan"), 4: "int key"})
    assert out["obj"].startswith("<") and "Evil" in out["obj"]
    assert out["b"] == "\udcffabc"
    assert out["t"] == [1, [2, [3]]]
    assert out["f"] == "nan"
    assert out["4"] == "int key"
    json.dumps(out)  # serialisable


def test_jsonable_copies_lists_of_plain_values():
    class Name(str):
        pass

    out = jsonable(("a", "b", 1, None, True))
    assert out == ["a", "b", 1, None, True] and type(out) is list
    assert jsonable([Name("x"), "y"]) == [f"<{__name__}.{Name.__qualname__} object>", "y"]  # a subclass: never as is


def test_jsonable_bounds_depth_and_size():
    deep: list = []
    node = deep
    for _ in range(20):
        node.append([])
        node = node[0]
    assert "list object" in json.dumps(jsonable(deep))
    assert jsonable(b"x" * 10000) == "<10000 bytes>"


def console_to_pipe(sink: ConsoleSink) -> int:
    """Point the sink at a pipe of its own; returns the read end."""
    read, write = os.pipe()
    writer = journal._StderrWriter()
    os.close(writer.fd)
    writer.fd = write
    sink.writer = writer
    return read


def read_all(fd: int) -> str:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks).decode()


def test_console_threshold_and_format():
    sink = ConsoleSink("notice", "never")
    read = console_to_pipe(sink)
    for severity in journal.SEVERITIES:
        sink.write(Event(1, 0.0, "tamper", "k", "n", severity, f"msg {severity}"))
    os.close(sink.writer.fd)
    assert read_all(read).splitlines() == [
        "[pyward] msg notice",
        "[pyward][warning] msg warning",
        "[pyward][alert] msg alert",
        "[pyward][error] msg error",
    ]


def test_console_colour_rules(monkeypatch):
    writer = journal._StderrWriter()
    monkeypatch.setattr(writer, "isatty", lambda: True)
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert journal.use_color("auto", writer) is True
    monkeypatch.setenv("NO_COLOR", "1")
    assert journal.use_color("auto", writer) is False
    assert journal.use_color("always", writer) is True
    monkeypatch.delenv("NO_COLOR")
    monkeypatch.setattr(writer, "isatty", lambda: False)
    assert journal.use_color("auto", writer) is False
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert journal.use_color("auto", writer) is True
    assert journal.use_color("never", writer) is False


def test_console_survives_closed_stderr():
    sink = ConsoleSink("notice", "never")
    read = console_to_pipe(sink)
    closed = io.StringIO()
    closed.close()
    sink.writer.stream = closed
    sink.say("still heard")
    os.close(sink.writer.fd)
    assert read_all(read) == "[pyward] still heard\n"


def test_console_speaks_on_the_stderr_it_started_with(tmp_path):
    """A program that captures descriptor 2 (as pytest does) or closes sys.stderr
    never finds pyward's lines in its own streams; they still reach the terminal's."""
    program = tmp_path / "capture.py"
    program.write_text(
        "import builtins, os, sys\n"
        "saved = os.dup(2)\n"
        "capture = open('captured.txt', 'w+')\n"
        "os.dup2(capture.fileno(), 2)\n"
        "print('program line', file=sys.stderr, flush=True)\n"
        "builtins.open = print  # a tamper alert, spoken while fd 2 is captured\n"
        "os.dup2(saved, 2)\n"
        "capture.seek(0)\n"
        "print(repr(capture.read()))\n"
    )
    result = pyward("run", str(program), cwd=tmp_path)
    assert result.stdout == "'program line\\n'\n"
    assert any("builtins.open replaced" in line for line in pyward_lines(result.stderr)), result.stderr


def test_jsonl_sink_lines_validate(tmp_path):
    path = tmp_path / "log.jsonl"
    j = Journal()
    j.add_sink(JsonlSink(str(path)))
    j.emit("sandbox", "open", "/tmp/\udcff", severity="info", details={"mode": "r", "raw": b"\xfe"})
    j.emit("heal", "healed", "f", severity="notice", message="healed f", where="")
    j.close()
    lines = path.read_text(encoding="ascii").splitlines()
    assert len(lines) == 2
    for line in lines:
        validate(json.loads(line))
    assert json.loads(lines[0])["name"] == "/tmp/\udcff"


def test_closed_journal_drops_nothing_silently():
    j = Journal()
    j.close()
    assert j.emit("pyward", "late", "x", where="") is None


def test_end_to_end_log_validates(tmp_path):
    (tmp_path / "app.py").write_text("import threading\nthreading.Thread(target=print).start()\n")
    result = pyward("run", "--log", "out.jsonl", "app.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    for event in events:
        validate(event)
    assert events[0]["kind"] == "run.start" and events[-1]["kind"] == "run.end"
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))


def test_report_events_validate_without_chain(tmp_path):
    (tmp_path / "app.py").write_text("pass\n")
    pyward("run", "--report", "r.json", "app.py", cwd=tmp_path)
    for event in json.loads((tmp_path / "r.json").read_text())["events"]:
        assert len(event.pop("chain")) == 64
        validate(event)


@pytest.mark.parametrize("flags, shown", [([], 1), (["-q"], 0)])
def test_quiet(tmp_path, flags, shown):
    (tmp_path / "app.py").write_text("print('out')\n")
    result = pyward("run", *flags, "app.py", cwd=tmp_path)
    assert result.stdout == "out\n"
    assert len(pyward_lines(result.stderr)) == shown


def test_verbose_shows_debug_events(tmp_path):
    (tmp_path / "app.py").write_text("pass\n")
    result = pyward("run", "-vv", "app.py", cwd=tmp_path)
    assert any("run start: app.py" in line for line in pyward_lines(result.stderr))


def test_no_threading_import_by_pyward(tmp_path):
    (tmp_path / "app.py").write_text("import sys\nprint('threading' in sys.modules)\n")
    assert pyward("run", "-q", "app.py", cwd=tmp_path).stdout == "False\n"


def test_schema_is_shipped_as_package_data():
    assert shutil.os.path.exists(str(resources.files("pyward.schema").joinpath("event-1.json")))


def test_repeats_beyond_the_limit_are_counted_not_recorded():
    j = Journal()
    j.repeat_limit = 3
    for i in range(10):
        j.emit("sandbox", "denied", "/etc/shadow", severity="warning", message=f"denied #{i}", where="")
    j.emit("sandbox", "denied", "/other", severity="warning", message="other", where="")
    assert [e.message for e in j.events] == ["denied #0", "denied #1", "denied #2", "other"]
    j.settle_repeats()
    last = j.events[-1]
    assert (last.name, last.details["repeated"]) == ("/etc/shadow", 7)
    assert last.message.startswith("denied #9 (and 7 more like it")
    assert [e.seq for e in j.events] == [1, 2, 3, 4, 5]  # gapless: verify checks seq against position
    summary = journal.summarize([e.to_json() for e in j.events], 0)
    assert (summary["denied"], summary["events"]) == (11, 5)


def test_a_report_stays_bounded_and_counts_every_denial(tmp_path):
    program = tmp_path / "app.py"
    program.write_text("import os\nfor i in range(3000):\n    os.environ['PYTEST_CURRENT_TEST'] = str(i)\n"
                       "    try:\n        open('/etc/shadow')\n    except PermissionError:\n        pass\n")
    result = pyward("run", "--report", "r.json", "--allow-read=.", "--allow-env", "--deny-read=/etc/shadow",
                    "app.py", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["summary"]["denied"] == 3000
    changes = [e for e in report["events"] if e["kind"] == "env.changed"]
    assert len(changes) == journal.REPEAT_LIMIT + 1  # 100 recorded, then one that stands for the rest
    assert changes[-1]["details"]["repeated"] == 3000 - journal.REPEAT_LIMIT
    assert len(report["events"]) < 2 * journal.REPEAT_LIMIT + 20
    assert pyward_lines(result.stderr)[-1].startswith("[pyward] run end: exit=0 · 3000 denied")
    assert pyward("verify", "r.json", cwd=tmp_path).returncode == 0


def test_default_reports_are_kept_to_a_bound(tmp_path):
    reports = tmp_path / ".pyward" / "reports"
    reports.mkdir(parents=True)
    (reports / "notes.json").write_text("{}")  # not a name pyward gives: never touched
    for _ in range(5):
        assert pyward("run", "--keep-reports", "3", "-c", "pass", cwd=tmp_path).returncode == 0
    kept = sorted(p.name for p in reports.iterdir())
    assert len(kept) == 4 and "notes.json" in kept
    assert pyward("run", "--report", "mine.json", "--keep-reports", "1", "-c", "pass", cwd=tmp_path).returncode == 0
    assert len(list(reports.iterdir())) == 4  # --report FILE: the directory is not pruned


def test_an_internal_error_is_journaled_counted_and_never_raised():
    j = Journal()

    class Odd(Exception):
        def __str__(self) -> str:  # pyward must not call the program's code to describe an error
            raise AssertionError("str() called")

    j.internal_error("tamper", "checking seals on the interval", Odd("the dict changed size"))
    j.internal_error("heal", "journaling a guard firing", KeyError(3))
    first, second = j.events
    assert (first.engine, first.kind, first.severity) == ("tamper", "internal_error", "error")
    assert first.message == ("pyward tamper: internal error while checking seals on the interval "
                             "(Odd: the dict changed size)")
    assert second.message.endswith("(KeyError)") and first.where is None
    summary = journal.summarize([e.to_json() for e in j.events], 0)
    assert summary["internal_errors"] == 2
    j.close()
    j.internal_error("tamper", "after the end", RuntimeError("late"))  # a closed journal: nothing, no raise
    assert len(j.events) == 2
