"""The recorder: a process of its own that keeps the run's record.

The journal's record (hash chain, Merkle tree, sealed checkpoints at the
report path, the final report and its summary) is not kept in the program's
process, where the program could reach it, but in a recorder process forked
before the program's first line:

* the program's process stays the main process: its pid, parent, signals,
  process group, session, terminal and job control are python's.  The
  recorder is started by a double fork (the intermediate child exits at
  once, so the recorder is no child of the program: a `wait()` of the
  program never sees it) and `setsid()` (no terminal, no process group of
  the program's: Ctrl-C, Ctrl-Z, `kill 0` and `killpg` do not reach it);
* it is forked before any engine starts and before any thread exists, so it
  holds no lock and no thread of the program's; it has pyward's modules
  already imported, which makes it cheap (no second interpreter start-up);
* events reach it over a pipe as they happen, one JSON line each (as a
  re-run's events reach its supervisor, rerun.FdSink); the program side only
  writes.  A forked child of the program (a pre-forking server's worker)
  sends its events as datagrams on a socket of their own, each one whole, so
  that two processes never interleave a line; it cannot end the run.  The
  recorder numbers events itself, chains and seals them, and writes the
  report; nothing the program does later changes an event it already sent;
* the end of the run is the end of the pipe: the program's process closes
  it when it ends, however it ends (exit, `os._exit`, SIGKILL, the OOM
  killer).  At its normal end the program sends an end record (exit status
  and reason) and waits for the recorder's answer (the report is written, with
  its summary), so the report exists when `pyward run` returns.  Without an
  end record the report says `killed or os._exit (no end recorded)` and has
  no exit status; `pyward verify` gives status 3 for it.  Events that follow
  an end record (an end sent early) are recorded too, and the report is
  written again once the process is gone;
* a pidfd of the program tells the recorder when the program ended even if
  a forked child still holds the pipe, and that the program is still running
  when the pipe is closed by the program itself (the report says so).

Control lines carry `"ctl"`; every other line is an event as
`Event.to_json` makes it, checked field by field (a line that is not is
recorded as `pyward/record.malformed`).
"""
from __future__ import annotations

import _socket
import _thread
import errno
import os
import sys
import time

from . import canonical as _canonical
from ._isolation import isolate_builtins, isolate_module
from .journal import SCHEMA_VERSION, SEVERITIES, Sink, iso_time
from .spool import is_spool

isolate_builtins(globals())

os = isolate_module(os)  # noqa: F811
time = isolate_module(time)  # noqa: F811

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: exit_reason of a run whose process ended without an end record
LOST = "killed or os._exit (no end recorded)"
#: exit_reason of a run whose program replaced itself by an exec (the new image's end is not the program's)
EXECED = "replaced itself with {} (exec; the exit status of what it ran is not recorded)"
#: malformed lines recorded one by one; beyond that they are counted
MALFORMED_LIMIT = 20
#: how long after the end of the pipe the program's process may take to be seen ending
CLOSE_GRACE_S = 2.0
#: the longest line the recorder keeps (pyward's events are far shorter): the rest of a longer one, which only
#: the program can write, is skipped up to its end, so that writing on the channel without end costs the
#: recorder no more than reading it
LINE_LIMIT = 1 << 24
#: the largest datagram a forked child's event is read in (the socket's own limit is lower)
CHILD_DATAGRAM = 1 << 20
#: at most this many of the forked children's events are read once the program has ended
CHILD_DRAIN = 10000


def available() -> bool:
    """True when a recorder can be forked here: a POSIX system, and no thread yet
    (a forked process must not inherit a lock another thread holds)."""
    if not hasattr(os, "fork") or not hasattr(os, "setsid"):
        return False
    threading = sys.modules.get("threading")
    active = vars(threading).get("_active") if threading is not None else None
    return not (type(active) is dict and len(active) > 1)


class Wire(Sink):
    """The program's end of the pipe to the recorder: it only writes.

    Set as the journal's `wire`: it gets every event, also after the journal's
    own sinks are closed.  A forked child of the program closes its copy of the
    pipe (the run's end is the parent's) and sends its events on `children`,
    one datagram each."""

    console = False

    def __init__(self, fd: int, answers: int, pid: int, group: int, children: int = -1) -> None:
        self.fd, self.answers, self.pid, self.children = fd, answers, pid, children
        self.group = group  # its process group and session (the intermediate child's pid, which ended)
        self.lost = False  # the recorder is gone (a write failed)
        self.forked = False
        self._lock = _thread.allocate_lock()
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._lock = _thread.allocate_lock()
        for fd in (self.fd, self.answers):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.fd = self.answers = -1
        self.forked = True

    def _send(self, text: str) -> None:
        # a line of its own even after bytes the program wrote here without an end of line (which would
        # otherwise make the event part of one malformed line, out of the summary)
        data = b"\n" + text.encode("ascii")
        with self._lock:
            if self.forked:
                self._send_from_child(data)
                return
            if self.fd < 0:
                return
            try:
                while data:
                    data = data[os.write(self.fd, data):]
            except OSError:
                self.lost = True
                self.fd = -1

    def _send_from_child(self, data: bytes) -> None:
        if self.children < 0:
            return
        try:
            os.write(self.children, data)  # one datagram: whole, or not at all
        except OSError as exc:
            if exc.errno != errno.EMSGSIZE:  # (an event too large for one datagram is the only one lost)
                self.children = -1

    def write(self, event: Any) -> None:
        self._send(_canonical.dumps(event.to_json(), sort_keys=False) + "\n")

    def note_layers(self, layers: dict[str, Any]) -> None:
        """The sandbox's layers in force, for the report's run metadata (sent once the program starts)."""
        self._send(_canonical.dumps({"ctl": "layers", "layers": layers}) + "\n")

    def note_spool(self, path: str) -> None:
        """The children's spool (spool.py), sent before the program's first line."""
        self._send(_canonical.dumps({"ctl": "spool", "path": path}) + "\n")

    def note_exec(self, path: str) -> None:
        """The program's process is about to replace itself (os.exec*): its end will not come from it."""
        self._send(_canonical.dumps({"ctl": "exec", "path": path}) + "\n")

    def end(self, status: int | None, reason: str) -> dict[str, Any] | None:
        """Send the end record and wait for the recorder's answer (the report
        written, its summary); None when the recorder is gone."""
        self._send(_canonical.dumps({"ctl": "end", "exit_status": status, "exit_reason": reason}) + "\n")
        if self.answers < 0 or self.lost:
            return None
        line = _read_line(self.answers)
        answer = _parse(line) if line else None
        return answer if type(answer) is dict else None


def _read_line(fd: int) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        try:
            chunk = os.read(fd, 65536)
        except InterruptedError:
            continue
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    return data.strip()


# -- reading JSON without importing json (it imports re: ~6 ms) ----------------------------


class _Context:
    """What _json's C scanner reads from a JSONDecoder."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo: dict[str, str] = {}

    @staticmethod
    def parse_constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON pyward writes")


_scan: Any = None


def _parse(data: bytes) -> Any:
    """The value of one JSON document, or None when it is not one."""
    global _scan
    if _scan is None:
        from _json import make_scanner

        _scan = make_scanner(_Context())  # type: ignore[arg-type]  # the C scanner reads a context's attributes
    try:
        text = data.decode("ascii")
        value, end = _scan(text, 0)
    except (ValueError, UnicodeDecodeError, StopIteration, RecursionError):
        return None
    finally:
        _Context.memo.clear()
    return value if end == len(text) else None


_TEXT = ("time", "thread", "engine", "kind", "name", "severity", "message")


def _event(item: Any) -> dict[str, Any] | None:
    """`item` as an event's JSON in `Event.to_json`'s order, or None when it is not one."""
    if type(item) is not dict or item.get("v") != SCHEMA_VERSION:
        return None
    if not set(item) <= {"v", "seq", "pid", "where", "function", "details", "policy", *_TEXT}:
        return None
    for key in _TEXT:
        if type(item.get(key)) is not str:
            return None
    if item["severity"] not in SEVERITIES or type(item.get("pid")) is not int:
        return None
    if type(item.get("details")) is not dict or type(item.get("seq")) is not int:
        return None
    for key in ("where", "function"):
        if item.get(key) is not None and type(item[key]) is not str:
            return None
    if "policy" in item and type(item["policy"]) is not str:
        return None
    event: dict[str, Any] = {"v": SCHEMA_VERSION, "seq": 0}
    for key in ("time", "pid", "thread", "engine", "kind", "name", "severity", "message", "where", "function",
                "details"):
        event[key] = item.get(key)
    if "policy" in item:
        event["policy"] = item["policy"]
    return event


class _Item:
    """An event as the report and the checkpoints take it (`to_json`)."""

    __slots__ = ("item",)

    def __init__(self, item: dict[str, Any]) -> None:
        self.item = item

    def to_json(self) -> dict[str, Any]:
        return dict(self.item)


# -- starting it ------------------------------------------------------------------------


def start(path: str, run: dict[str, Any], start_clock: float, checkpoints: dict[str, Any] | None,
          key: bytes | None, lost: dict[str, Any] | None = None) -> Wire:
    """Fork the recorder for the report at `path`; the program's end of the pipe.

    `run`: the start metadata; `checkpoints`: CheckpointSink's settings (None:
    no journal on disk while the run goes); `lost`: for a program that ends
    without an end record, the report as shown ("report"), a learning run's
    policy file ("learn") and whether to say so on stderr ("say": not --quiet).
    Raises OSError when it cannot."""
    from . import checkpoint, report  # noqa: F401 - imported before the fork: the recorder has them

    pidfd = _pidfd_of_self()
    events_r, events_w = os.pipe()
    answers_r, answers_w = os.pipe()
    children_r, children_w = (end.detach() for end in _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_DGRAM))
    first = os.fork()
    if first == 0:  # the intermediate child: a new session, the recorder, and gone
        code = 70
        try:
            os.setsid()
            second = os.fork()
            if second:
                os.write(answers_w, f"{second}\n".encode())
                code = 0
            else:
                import gc

                gc.enable()  # collections were paused for the program's start-up (commandline.pause_collections)
                os.close(events_w)
                os.close(answers_r)
                os.close(children_w)
                _detach((events_r, answers_w, children_r, pidfd))
                recorder = Recorder(path, run, start_clock, checkpoints, key, pidfd, lost)
                recorder.serve(events_r, answers_w, children_r)
                code = 0
        except BaseException:
            if os.environ.get("PYWARD_DEBUG"):
                import traceback

                traceback.print_exc()
        finally:
            os._exit(code)
    os.close(events_r)
    os.close(answers_w)
    os.close(children_r)
    if pidfd is not None:
        os.close(pidfd)
    while True:
        try:
            os.waitpid(first, 0)
            break
        except InterruptedError:
            continue
        except ChildProcessError:
            break
    line = _read_line(answers_r)
    if not line.isdigit():
        os.close(events_w)
        os.close(answers_r)
        os.close(children_w)
        raise OSError("the recorder process did not start")
    return Wire(events_w, answers_r, int(line), first, children_w)


def _pidfd_of_self() -> int | None:
    try:
        return os.pidfd_open(os.getpid())
    except (AttributeError, OSError):
        return None


def _detach(keep: tuple[int | None, ...]) -> None:
    """The recorder holds none of the program's streams but stderr (its error lines),
    nor any other descriptor, and ignores the terminal's signals."""
    import _signal  # type: ignore[import-not-found]  # not signal: its enums cost the recorder ~10 ms before it can answer the program's end

    for sig in (_signal.SIGINT, _signal.SIGHUP, _signal.SIGTSTP, _signal.SIGTTIN, _signal.SIGTTOU, _signal.SIGPIPE):
        _signal.signal(sig, _signal.SIG_IGN)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    kept = {0, 1, 2, *(fd for fd in keep if fd is not None)}
    try:
        open_fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        open_fds = []
    for fd in open_fds:
        if fd not in kept:
            try:
                os.close(fd)
            except OSError:
                pass
    try:
        os.chdir("/")  # the program's working directory stays unmountable by nothing of ours
    except OSError:
        pass


def _cmdline(pid: object) -> bytes:
    """/proc/PID/cmdline (b"" when it cannot be read, or for a process that has ended)."""
    if type(pid) is not int:
        return b""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


# -- the recorder ------------------------------------------------------------------------


class Recorder:
    """Numbers, chains and seals the events it reads; writes the report."""

    def __init__(self, path: str, run: dict[str, Any], start_clock: float, checkpoints: dict[str, Any] | None,
                 key: bytes | None, pidfd: int | None, lost: dict[str, Any] | None = None) -> None:
        self.path, self.run, self.start_clock, self.pidfd, self.lost = path, run, start_clock, pidfd, lost
        self.spool: str | None = None  # the children's spool, collected here when the program could not
        self.execed: str | None = None  # what the program's process last asked to exec (the program's words)
        self.cmdline = _cmdline(run.get("pid"))  # the program's command line before its first line
        self.events: list[dict[str, Any]] = []
        self.ended: tuple[int | None, str] | None = None
        self.after_end = 0  # events received after the last end record
        self.malformed = 0
        self.pending = bytearray()  # the line being read
        self.overlong = 0  # bytes of a line beyond LINE_LIMIT skipped so far (0: none is being skipped)
        self.written: tuple[int, int, int] | None = None  # (inode, size, mtime) of the report written
        self.problem: str | None = None
        self.sink: Any = None
        if checkpoints is not None:
            from .checkpoint import CheckpointSink

            try:
                self.sink = CheckpointSink(path, run, key=key, **checkpoints)
            except OSError as exc:
                self.say(f"no checkpoints: cannot write {path}: {exc.strerror or exc}; "
                         "the report is written at the end if it can be")

    @staticmethod
    def say(text: str) -> None:
        from .journal import stderr_writer

        stderr_writer().write_line(f"[pyward][error] {text}")

    def serve(self, fd: int, answers: int, children: int = -1) -> None:
        import select

        poller = select.poll()
        poller.register(fd, select.POLLIN)
        if children >= 0:
            os.set_blocking(children, False)
            poller.register(children, select.POLLIN)
        if self.pidfd is not None:
            poller.register(self.pidfd, select.POLLIN)
        program_alive = True
        while True:
            ready = dict(poller.poll())
            if self.pidfd is not None and self.pidfd in ready:  # the program ended: drain, even if a child
                program_alive = False                          # still holds the pipe
                poller.unregister(self.pidfd)
                self._drain(fd, answers)
                self._from_children(children)
                break
            if children in ready:  # first: what a worker sent before it ended precedes the program's end record
                self._from_children(children)
            if fd not in ready:
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            self._lines(chunk, answers)
        if self.overlong:
            self._too_long()
        elif self.pending:  # the last write was cut: never a whole event
            self._malformed(bytes(self.pending), "cut short")
        if program_alive and self.pidfd is not None and not self._ended(CLOSE_GRACE_S):
            # a process closes its descriptors before it is seen to end: only a program still running
            # after the grace time closed the channel itself, or replaced itself by an exec, which its
            # command line shows (an exec note alone is the program's word: it could send one and go on)
            if self.execed is not None and not self._became_another():
                self.execed = None
            if self.execed is None:
                self._add_own("record.closed", "warning", "pyward's channel to its recorder was closed while the "
                              "program was still running: what it did after that is not in this record")
            self._ended(None)
        self.finish()
        try:
            os.close(answers)
        except OSError:
            pass

    def _became_another(self) -> bool:
        """Whether the program, still running after the grace time, now runs another command line (an
        exec).  A process that ends meanwhile has none left to read (a zombie's is empty), and one midway
        through its exec has none yet: an empty one is read again until the process shows which it is."""
        for _ in range(50):
            now = _cmdline(self.run.get("pid"))
            if now:
                return now != self.cmdline
            if self._ended(0.02):  # it ran its grace time and ended: as any program that ends within it
                return True
        return False

    def _ended(self, timeout: float | None) -> bool:
        """Wait up to `timeout` seconds (None: for ever) for the program to end."""
        import select

        while True:
            try:
                assert self.pidfd is not None
                return bool(select.select([self.pidfd], [], [], timeout)[0])
            except InterruptedError:
                continue

    def _drain(self, fd: int, answers: int) -> None:
        import select

        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while poller.poll(0):
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            self._lines(chunk, answers)

    def _from_children(self, children: int) -> None:
        """The datagrams forked children sent (one event each) that are waiting, up to CHILD_DRAIN: a child
        that goes on sending cannot hold the record open, nor keep the pipe waiting (`children` does not block)."""
        for _ in range(CHILD_DRAIN if children >= 0 else 0):
            try:
                datagram = os.read(children, CHILD_DATAGRAM)
            except OSError:  # (BlockingIOError: none waiting)
                return
            line = datagram.strip(b"\n")
            value = _parse(line) if line else None
            if type(value) is dict and "ctl" in value:  # the run's end and metadata are the program's
                self._malformed(line, "a control record from a forked child")
            elif (event := _event(value)) is None:
                self._malformed(line, "not an event")
            else:
                self._add(event)

    def _lines(self, chunk: bytes, answers: int) -> None:
        """Take the whole lines `chunk` ends, keep what it starts (at most LINE_LIMIT bytes of a line)."""
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            if self.overlong:
                self.overlong += end - start
                self._too_long()
            else:
                self.pending += chunk[start:end]
                line = bytes(self.pending)
                self.pending.clear()
                self.take(line, answers)
            start = end + 1
        rest = len(chunk) - start
        if self.overlong:
            self.overlong += rest
        elif len(self.pending) + rest > LINE_LIMIT:
            self.overlong = len(self.pending) + rest
            self.pending.clear()
        else:
            self.pending += chunk[start:]

    def _too_long(self) -> None:
        self._malformed(b"", f"{self.overlong} bytes long (beyond {LINE_LIMIT}), skipped")
        self.overlong = 0

    def take(self, line: bytes, answers: int) -> None:
        if not line:
            return  # (each record starts a line of its own: see Wire._send)
        value = _parse(line)
        if type(value) is dict and "ctl" in value:
            if value.get("ctl") == "end" and set(value) == {"ctl", "exit_status", "exit_reason"}:
                status, reason = value["exit_status"], value["exit_reason"]
                if (status is None or type(status) is int) and type(reason) is str:
                    self.ended, self.after_end = (status, reason), 0
                    self._answer(answers, self.write())
                    return
            if value.get("ctl") == "layers" and set(value) == {"ctl", "layers"} and type(value["layers"]) is dict \
                    and "layers" not in self.run:
                self.run = {**self.run, "layers": value["layers"]}
                return
            if value.get("ctl") == "exec" and set(value) == {"ctl", "path"} and type(value["path"]) is str:
                self.execed = value["path"][:300]  # an exec that fails leaves the program running: its end follows
                return
            if value.get("ctl") == "spool" and set(value) == {"ctl", "path"} and self.spool is None \
                    and not self.events and is_spool(value["path"]):  # (sent before any event of the program's)
                self.spool = value["path"]
                return
            self._malformed(line, "not a control record pyward sends")
            return
        event = _event(value)
        if event is None:
            self._malformed(line, "not an event")
            return
        self._add(event)

    def _add(self, event: dict[str, Any]) -> None:
        event["seq"] = len(self.events) + 1  # the recorder's numbering, whatever the line said
        self.events.append(event)
        if self.ended is not None:
            self.after_end += 1
        if self.sink is not None:
            self.sink.write(_Item(event))

    def _add_own(self, kind: str, severity: str, message: str, details: dict[str, Any] | None = None) -> None:
        self._record("pyward", kind, "recorder", severity, message, details or {}, os.getpid(), "pyward-recorder",
                     time.time(), None, None)

    def _record(self, engine: str, kind: str, name: str, severity: str, message: str, details: dict[str, Any],
                pid: int, thread: str, at: float, where: str | None, function: str | None) -> None:
        """An event the recorder itself adds (its own, or a child's it collected), in the run's policy."""
        event = {"v": SCHEMA_VERSION, "seq": 0, "time": iso_time(at), "pid": pid, "thread": thread,
                 "engine": engine, "kind": kind, "name": name, "severity": severity, "message": message,
                 "where": where, "function": function, "details": details}
        policy = (self.run.get("policy") or {}).get("id")
        if type(policy) is str:
            event["policy"] = policy
        self._add(event)

    def _malformed(self, line: bytes, why: str) -> None:
        self.malformed += 1
        if self.malformed <= MALFORMED_LIMIT:
            excerpt = line[:200].decode("ascii", "backslashreplace")
            self._add_own("record.malformed", "alert", f"a line on pyward's channel to its recorder was "
                          f"{why}: written by the program, or cut: {excerpt!r}", {"line": excerpt, "why": why})

    def _answer(self, answers: int, data: dict[str, Any] | None) -> None:
        answer = {"written": data is not None, "problem": self.problem,
                  "summary": data["summary"] if data is not None else None}
        payload = (_canonical.dumps(answer) + "\n").encode("ascii")
        try:
            while payload:
                payload = payload[os.write(answers, payload):]
        except OSError:  # the program is gone already
            pass

    def finish(self) -> None:
        """The program's process is gone: the report as it ended."""
        if self.malformed > MALFORMED_LIMIT:
            self._add_own("record.malformed", "alert", f"{self.malformed} lines on pyward's channel to its "
                          "recorder were not events pyward sends (the first ones are recorded above)",
                          {"count": self.malformed})
        if self.ended is None:
            self._collect_spool()
            learned = self._learn()
            reason = self._lost()
            self._add_own("run.end", "error" if self.execed is None else "notice", f"run end: {reason}",
                          {"exit_status": None, "reason": reason})
            data = self.write()
            if self.lost and self.lost.get("say"):
                self._say_lost(data, learned)
        elif self.after_end or self.malformed or self._changed():
            status, reason = self.ended
            if self.after_end:
                self.ended = (status, f"{reason}; {self.after_end} more event{'s' * (self.after_end != 1)} "
                                      "after the end was recorded")
            self.write()
        if self.sink is not None and self.written is None:
            self.sink.close()  # the journal at the report path stays, sealed: verify says how far it is intact

    def _collect_spool(self) -> None:
        """The sandbox events of the program's children, which the program's own end would have collected."""
        if self.spool is None:
            return
        from .spool import read_spool

        try:
            spooled = read_spool(self.spool)
        except (OSError, ValueError):
            return
        for kind, name, message, severity, details, where, function, pid, at, engine in spooled:
            if kind == "granted" or severity not in SEVERITIES or type(pid) is not int \
                    or not all(type(x) is str for x in (kind, name, message)):
                continue
            self._record(engine, kind, name, severity, message, details, pid, "",
                         at if type(at) is float else time.time(), where if type(where) is str else None,
                         function if type(function) is str else None)
        directory = os.path.dirname(self.spool)
        if directory.endswith(".children.jsonl.d"):  # the spool's own directory under the kernel wall
            try:
                os.rmdir(directory)
            except OSError:
                pass

    def _lost(self) -> str:
        """Why there is no end record: an exec the program asked for, or a death pyward did not see."""
        return LOST if self.execed is None else EXECED.format(self.execed)

    def _learn(self) -> list[str]:
        """A learning run's policy, from what was recorded (the sandbox writes it when the program ends, which
        it did not); the lines to say of it ("[pyward]..." each), none when this is no learning run."""
        if not self.lost or not self.lost.get("learn"):
            return []
        from .policy.learn import native_notice, observations_of, unseen_notice, write_learned

        path, shown = self.lost["learn"], self.lost.get("shown_learn") or self.lost["learn"]
        ended = f"the learning run's program did not finish ({self._lost()})"
        try:
            _, rules, unseen, native = write_learned(path, observations_of(self.events),
                                                     self.run.get("command") or [],
                                                     os.environ)  # (as the program started with it: forked before)
        except Exception as exc:
            why = f"{type(exc).__name__}: {exc}"
            message = f"{ended}, and its policy could not be written to {shown}: {why}"
            self._add_own("learn.unwritten", "error", message, {"path": path, "error": why})
            return [f"[pyward][error] {message}"]
        counted = f"{rules} rule{'s' * (rules != 1)}"
        if self.execed is None:  # killed: what it would have done next is not in the policy
            message, severity = f"{ended}: the policy written to {shown} ({counted}) holds what it did until then", \
                "warning"
        else:  # an exec is the program's own end (a Python it becomes is armed: its events are in the record)
            message, severity = f"learned policy written to {shown} ({counted}); the program replaced itself " \
                f"with {self.execed} (exec)", "notice"
        self._add_own("learned", severity, message, {"path": path, "rules": rules})
        lines = [f"[pyward][{severity}] {message}" if severity != "notice" else f"[pyward] {message}"]
        if unseen:
            self._add_own("learned.unseen", "notice", unseen_notice(unseen), {"commands": unseen})
            lines.append(f"[pyward] {unseen_notice(unseen)}")
        if native:
            self._add_own("learned.native", "notice", native_notice(native), {"libraries": native})
            lines.append(f"[pyward] {native_notice(native)}")
        return lines

    def _say_lost(self, data: dict[str, Any] | None, learned: list[str]) -> None:
        """The run-end line the program's process could not print, after whatever it printed."""
        from .journal import stderr_writer

        writer = stderr_writer()
        for line in learned:
            writer.write_line(line)
        counts = data["summary"] if data is not None else None
        parts = [f"run end: {self._lost()}"]
        if counts is not None:
            parts += [f"{counts['denied']} denied", f"{counts['tamper_alerts']} tamper alerts",
                      f"{counts['healed']} healed", f"report: {self.lost and self.lost.get('report')}"]
        writer.write_line("[pyward] " + " · ".join(parts))

    def _changed(self) -> bool:
        try:
            st = os.stat(self.path, follow_symlinks=False)
        except OSError:
            return True
        return (st.st_ino, st.st_size, st.st_mtime_ns) != self.written

    def run_metadata(self) -> dict[str, Any]:
        status, reason = self.ended if self.ended is not None else (None, self._lost())
        return {**self.run, "end": iso_time(time.time()), "duration_s": round(time.monotonic() - self.start_clock, 6),
                "exit_status": status, "exit_reason": reason}

    def write(self) -> dict[str, Any] | None:
        from . import report

        try:
            data = report.build(self.run_metadata(), [_Item(e) for e in self.events])
            self.written = write_new(self.path, _canonical.dumps(data, sort_keys=False, indent=1) + "\n")
        except Exception as exc:
            self.problem = f"{type(exc).__name__}: {exc}"
            self.say(f"report not written to {self.path}: {self.problem}")
            return None
        self.problem = None
        return data


def write_new(path: str, text: str) -> tuple[int, int, int]:
    """Write `text` at `path` atomically, through a temporary file of a name no one can
    guess and that did not exist (O_EXCL, O_NOFOLLOW): a link planted there is never
    followed.  Returns (inode, size, mtime) of what is now at `path`."""
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = f"{path}.{os.urandom(8).hex()}.tmp"
        try:
            fd = os.open(tmp, flags, 0o644)
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError(f"no fresh temporary name next to {path}")
    try:
        data = text.encode("ascii")
        while data:
            data = data[os.write(fd, data):]
        st = os.fstat(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return st.st_ino, st.st_size, st.st_mtime_ns
