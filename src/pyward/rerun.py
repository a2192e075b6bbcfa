"""Re-running a program in a fresh interpreter, and the event channel back.

When an engine asks for the program to run again (the heal engine, after
patching a crash at the script's top level), the crashed process must not
host the next attempt: its modules, their state, logging handlers, atexit
handlers and working directory would all leak into it.  Instead the process
that crashed becomes a supervisor: it starts the same command line (the same
python executable and flags, the same `pyward run` options, the program and
its arguments) in the working directory and with the environment the run
started with, feeds it the same stdin, and records the events the new
process sends back into its own journal, so that one report covers every
attempt.  Its exit status is the last attempt's.

A re-run process (`PYWARD_RERUN=<attempt>:<fd>` in its environment, removed
before the program starts) journals as usual on stderr, writes no report and
no summary, and sends every event as a JSON line to the inherited file
descriptor.  When it crashes and may be re-run in turn, it says so and ends;
the supervisor starts the next attempt.  `pyward watch` reads the same
channel (`PYWARD_TAP=<fd>`) from the runs it supervises, which keep their
own report.

stdin: a terminal is shared (what was typed for the crashed attempt is not
typed again), a regular file is rewound to where the run started, and a pipe
or socket is tee'd from the start of the run (in memory, up to
STDIN_REPLAY_LIMIT bytes; past that the program is not re-run), so every
attempt reads the same bytes.
"""
from __future__ import annotations

import os
import sys
import time

from ._isolation import isolate_builtins, isolate_module
from .journal import Sink

isolate_builtins(globals())

os = isolate_module(os)  # noqa: F811
time = isolate_module(time)  # noqa: F811

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .runner import Session

RERUN_VARIABLE = "PYWARD_RERUN"
TAP_VARIABLE = "PYWARD_TAP"
STDIN_REPLAY_LIMIT = 64 * 1024 * 1024


def take_channel() -> tuple[int, int | None, int | None]:
    """(attempt, channel fd, tap fd) from this process's environment, which
    loses the variables (the program must not see them); call before anything
    reads the environment."""
    attempt, channel, tap = 1, None, None
    value = os.environ.pop(RERUN_VARIABLE, None)
    if value is not None:
        number, _, digits = value.partition(":")
        if number.isdigit() and digits.isdigit():
            attempt, channel = int(number), int(digits)
    value = os.environ.pop(TAP_VARIABLE, None)
    if value is not None and value.isdigit():
        tap = int(value)
    for fd in (channel, tap):
        if fd is not None:
            try:
                os.set_inheritable(fd, False)  # the program's own children do not get it
            except OSError:
                if fd == channel:
                    channel = None
                else:
                    tap = None
    return attempt, channel, tap


def command(invocation: list[str]) -> list[str] | None:
    """The command line of this pyward process, for a fresh interpreter: the
    same executable (sys.executable: a virtualenv's python stays that
    virtualenv's), the same interpreter flags, the same pyward arguments."""
    if not sys.executable:
        return None
    tail = list(invocation[1:])
    orig = list(getattr(sys, "orig_argv", []))
    if tail and len(orig) > len(tail) and orig[len(orig) - len(tail):] == tail:
        prefix = orig[1:len(orig) - len(tail)]
    else:  # pyward was called in process (cli.main): start it as python -m pyward
        prefix = ["-m", "pyward"]
    return [sys.executable, *prefix, *tail]


class FdSink(Sink):
    """Every event, as a JSON line, to a file descriptor (a pipe to the supervisor)."""

    console = False

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write(self, event: Any) -> None:
        from .canonical import dumps

        if self.fd < 0:
            return
        data = ("\n" + dumps(event.to_json()) + "\n").encode()  # a line of its own (see recorder.Wire._send)
        try:
            while data:
                data = data[os.write(self.fd, data):]
        except OSError:  # the supervisor is gone: keep running, journal locally
            self.fd = -1

    def close(self) -> None:
        if self.fd >= 0:
            try:
                os.close(self.fd)
            except OSError:
                pass
            self.fd = -1


# -- stdin ---------------------------------------------------------------------------


class Stdin:
    """How this run's stdin can be given to a fresh process."""

    def __init__(self) -> None:
        self.kind = "none"  # none (closed), tty, file, device, tee, code
        self.offset = 0
        self.tee: _Tee | None = None
        self.code: bytes | None = None

    @classmethod
    def at_start(cls, code: bytes | None) -> Stdin:
        import stat

        self = cls()
        if code is not None:  # `pyward run -`: the program came from stdin, python reads it to its end
            self.kind, self.code = "code", code
            return self
        try:
            mode = os.fstat(0).st_mode
        except OSError:
            return self
        if os.isatty(0):
            self.kind = "tty"
        elif stat.S_ISREG(mode):
            try:
                self.kind, self.offset = "file", os.lseek(0, 0, os.SEEK_CUR)
            except OSError:
                self.kind = "tee"
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            self.kind = "device"  # /dev/null and the like: nothing to replay
        else:
            self.kind = "tee"
        if self.kind == "tee":
            self.tee = _Tee()
        return self

    def blocker(self) -> str | None:
        if self.tee is not None and self.tee.overflow:
            return f"the program read more than {STDIN_REPLAY_LIMIT >> 20} MiB from a pipe on stdin, more than " \
                   "pyward keeps to replay it"
        return None

    def for_child(self) -> int | None:
        """A file descriptor to give the next attempt as its stdin, or None: it inherits fd 0."""
        if self.kind == "file":
            os.lseek(0, self.offset, os.SEEK_SET)
            return None
        if self.kind == "tee":
            assert self.tee is not None
            return self.tee.replay()
        if self.kind == "code":
            assert self.code is not None
            return _Feeder.of_bytes(self.code)
        return None

    def threads(self) -> list[Any]:
        return self.tee.threads() if self.tee is not None else []


class _Tee:
    """fd 0 becomes a pipe fed from the real stdin; every byte read is kept."""

    def __init__(self) -> None:
        import threading

        self.cond = threading.Condition()
        self.data = bytearray()
        self.eof = False
        self.overflow = False
        self.source = os.dup(0)  # not inheritable
        read, write = os.pipe()
        os.dup2(read, 0)
        os.close(read)
        self.feeder = _Feeder(self, write)
        self.reader = threading.Thread(target=self._read, name="pyward-stdin", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.source, 65536)
            except InterruptedError:
                continue
            except OSError:
                chunk = b""
            with self.cond:
                if chunk:
                    self.data += chunk
                    if len(self.data) > STDIN_REPLAY_LIMIT:
                        self.overflow = True
                else:
                    self.eof = True
                self.cond.notify_all()
            if not chunk:
                return

    def replay(self) -> int:
        """Stop feeding the crashed attempt; a new pipe that gives everything from the start."""
        self.feeder.stop()
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)  # the crashed attempt's end of the pipe is closed: its feeder ends
        os.close(null)
        read, write = os.pipe()
        self.feeder = _Feeder(self, write)
        return read

    def threads(self) -> list[Any]:
        return [self.reader, self.feeder.thread]


class _Feeder:
    """Writes the tee's bytes, from the first, to one pipe; closes it at the end."""

    def __init__(self, tee: _Tee | None, fd: int, data: bytes = b"") -> None:
        import threading

        self.tee, self.fd, self.fixed = tee, fd, data
        self.stopped = False
        self.thread = threading.Thread(target=self._run, name="pyward-stdin-feed", daemon=True)
        self.thread.start()

    @classmethod
    def of_bytes(cls, data: bytes) -> int:
        read, write = os.pipe()
        cls(None, write, data)
        return read

    def stop(self) -> None:
        if self.tee is not None:
            with self.tee.cond:
                self.stopped = True
                self.tee.cond.notify_all()

    def _write(self, data: bytes | bytearray) -> bool:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.fd, view):]
        except OSError:  # the reader is gone
            return False
        return True

    def _run(self) -> None:
        try:
            if self.tee is None:
                self._write(self.fixed)
                return
            tee, position = self.tee, 0
            while True:
                with tee.cond:
                    while not self.stopped and position >= len(tee.data) and not tee.eof:
                        tee.cond.wait()
                    if self.stopped:
                        return
                    chunk = bytes(tee.data[position:])
                    done = tee.eof
                position += len(chunk)
                if chunk and not self._write(chunk):
                    return
                if done and position >= len(tee.data):
                    return
        finally:
            try:
                os.close(self.fd)
            except OSError:
                pass


# -- the supervisor ---------------------------------------------------------------------


def program_threads(session: Session) -> list[str]:
    """Threads of the program still alive (pyward's own are not counted)."""
    threading = sys.modules.get("threading")
    if threading is None:
        return []
    own = set(map(id, session.stdin.threads())) if session.stdin is not None else set()
    main = threading.main_thread()
    return [t.name for t in threading.enumerate() if t is not main and id(t) not in own and t.is_alive()
            and not t.name.startswith("pyward")]


def blocker(session: Session) -> str | None:
    """Why this run cannot be started again cleanly in a fresh process, or None."""
    if session.journal.is_child:  # a fresh start would run the parent's code again in this process
        return "a forked child of the program is not re-run (the program's own process goes on)"
    if session.invocation[1:2] != ["run"]:
        return f"`pyward {session.invocation[1]}` is not re-run (only `pyward run` is)"
    if command(session.invocation) is None:
        return "python's executable is unknown (sys.executable is empty), so no fresh interpreter can be started"
    threads = program_threads(session)
    if threads:
        return f"the crashed attempt's threads are still running ({', '.join(threads[:3])})"
    if session.stdin is not None:
        return session.stdin.blocker()
    return None


def abandon_attempt() -> None:
    """The crashed attempt's output is flushed and its exit handlers do not run:
    the next attempt, in a fresh process, supersedes it."""
    import atexit

    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            pass
    atexit._clear()


def supervise(session: Session, attempt: int) -> None:
    """Run attempts `attempt`, `attempt + 1`, ... in fresh processes until one
    does not ask for another; then end this process with the last one's status
    (or its signal), after writing the report.  Never returns."""
    import signal

    abandon_attempt()
    argv = command(session.invocation)
    assert argv is not None
    try:
        os.chdir(session.cwd)
    except OSError:
        pass
    state = {"child": 0, "stop": False}

    def forward(signum: int, frame: Any) -> None:
        state["stop"] = True
        if signum != signal.SIGINT and state["child"]:  # Ctrl-C reached the child through the process group
            try:
                os.kill(state["child"], signum)
            except OSError:
                pass

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, forward)
    status, killed = 1, 0
    while True:
        pid, reader = _spawn(session, argv, attempt, state)
        if pid == 0:
            status, reason = 1, "the re-run could not start"
            break
        state["child"] = pid
        while True:
            try:
                _, raw = os.waitpid(pid, 0)
                break
            except ChildProcessError:
                raw = 0
                break
        state["child"] = 0
        reader.thread.join(5)
        code = os.waitstatus_to_exitcode(raw)
        killed = -code if code < 0 else 0
        status = 128 + killed if killed else code
        if reader.rerun and not state["stop"]:
            attempt += 1
            continue
        reason = reader.reason or ("KeyboardInterrupt" if killed == signal.SIGINT else
                                   f"killed by signal {killed}" if killed else "completed")
        break
    if not killed:  # --fail-on judges the whole run
        status = session.judge_exit(status)
    session.record_exit(status, f"attempt {attempt}: {reason}")
    session.finish()
    for stream in (sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            pass
    if killed:
        signal.signal(killed, signal.SIG_DFL)
        os.kill(os.getpid(), killed)
    os._exit(status)


class _Reader:
    """Reads a re-run's events into the supervisor's journal (its console printed them)."""

    def __init__(self, session: Session, fd: int) -> None:
        import threading

        self.session, self.fd = session, fd
        self.rerun = False
        self.reason = ""
        self.thread = threading.Thread(target=self._run, name="pyward-rerun-events", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        import json

        from .recorder import LINE_LIMIT

        with os.fdopen(self.fd, "rb", closefd=True) as f:
            skipping = False
            while line := f.readline(LINE_LIMIT):
                if skipping or not line.endswith(b"\n"):  # the rest of a line beyond the limit: skipped
                    skipping = not line.endswith(b"\n")
                    continue
                try:
                    item = json.loads(line)
                except ValueError:
                    continue
                if isinstance(item, dict):
                    self._record(item)

    def _record(self, item: dict[str, Any]) -> None:
        if item.get("engine") == "heal" and item.get("kind") == "rerun":
            self.rerun = True
        if item.get("engine") == "pyward" and item.get("kind") == "run.end":
            self.reason = (item.get("details") or {}).get("reason") or ""
        self.session.journal.emit(
            item.get("engine", "pyward"), item.get("kind", ""), item.get("name", ""), message=item.get("message", ""),
            severity=item.get("severity", "info"), details=item.get("details") or {},
            where=item.get("where") or "", function=item.get("function"), pid=int(item.get("pid") or 0),
            at=_parse_time(item.get("time")), thread=item.get("thread"))


def _parse_time(text: Any) -> float | None:
    import calendar

    if not isinstance(text, str) or len(text) < 20:
        return None
    try:
        whole = calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S"))
        return whole + float("0" + text[19:].rstrip("Z"))
    except ValueError:
        return None


def _spawn(session: Session, argv: list[str], attempt: int, state: dict[str, Any]) -> tuple[int, Any]:
    read, write = os.pipe()
    os.set_inheritable(write, True)
    env = dict(session.start_env)
    env[RERUN_VARIABLE] = f"{attempt}:{write}"
    stdin = session.stdin.for_child() if session.stdin is not None else None
    actions = [(os.POSIX_SPAWN_DUP2, stdin, 0)] if stdin is not None else []
    import signal

    try:
        pid = os.posix_spawn(argv[0], argv, env, file_actions=actions,
                             setsigdef=(signal.SIGPIPE, signal.SIGXFSZ))
    except OSError as exc:
        session.journal.emit("pyward", "rerun.failed", argv[0], severity="error", where="",
                             message=f"could not start the re-run: {exc}")
        pid = 0
    finally:
        os.close(write)
        if stdin is not None:
            os.close(stdin)
    reader = _Reader(session, read)
    return pid, reader
