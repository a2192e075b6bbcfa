"""`pyward watch`: keep a long-running program up under `--heal`.

The supervisor runs `pyward run --heal ...` as a child with the same
stdin, stdout and stderr (output passes through live, nothing buffered).
When the child exits non-zero and a new patch was saved during that run,
the program is started again, up to `--max-restarts` times, under the rule
`run --heal` follows for its own re-runs: not when the crashed run had side
effects (a file written, a connection, a process started, as its sandbox
journaled them) or when the sandbox was off and could not tell, unless
`--rerun-side-effects` is given.  A crash that left no new patch is not
retried (it would crash the same way), and a clean exit ends the watch.  The exit status is the last run's own (128+N
for a run killed by signal N).  Whether a patch was saved is read from the
patch store, before and after each run; what the run did, from the events
the child sends on an inherited pipe (PYWARD_TAP, see rerun.py).

SIGINT (Ctrl-C reaches the whole foreground process group) and SIGTERM /
SIGHUP (forwarded to the child) end the watch after the child stops; no
restart follows a run that was asked to stop.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

USAGE = "pyward watch [--max-restarts N] [run options] (SCRIPT | -m MODULE | -c CODE) [ARGS...]"
DEFAULT_MAX_RESTARTS = 5


def add_command(commands: Any) -> None:
    watch = commands.add_parser(
        "watch", help="run a long-running program under --heal, restart it after a healed crash",
        usage=USAGE,
        description="Run the program under `pyward run --heal` with its output passed through live. When it "
                    "crashes and pyward saved a patch for the crash, start it again (it then runs with the patch), "
                    "up to --max-restarts times. A crash that could not be healed, a clean exit, or Ctrl-C ends the "
                    "watch; the exit status is the program's own. Takes the options of `pyward run`.")
    watch.add_argument("--max-restarts", metavar="N", type=int, default=DEFAULT_MAX_RESTARTS,
                       help=f"restarts allowed in all (default {DEFAULT_MAX_RESTARTS}; 0: never restart)")


def _say(message: str) -> None:
    sys.stderr.write(f"[pyward] watch: {message}\n")
    sys.stderr.flush()


def cmd_watch(argv: list[str]) -> int:
    from ..commandline import fail, parse_run, settings_from, split_own_options
    from ..config import ConfigError
    from .paths import store_path

    own, rest = split_own_options(argv, "watch", {"--max-restarts": True})
    try:
        max_restarts = int(own.get("--max-restarts", DEFAULT_MAX_RESTARTS))
    except ValueError:
        max_restarts = -1
    if max_restarts < 0:
        fail(f"pyward watch: --max-restarts takes a whole number >= 0, not {own['--max-restarts']!r}")
    args, target = parse_run(rest, "watch")
    if target.kind == "stdin":
        fail("pyward watch: a program read from stdin cannot be restarted; give a SCRIPT, -m MODULE or -c CODE")
    try:
        store = store_path(settings_from(args, "run"), os.getcwd())
    except ConfigError as exc:
        fail(str(exc), getattr(exc, "status", 2))
    name = target.value if target.kind == "script" else f"{'-m' if target.kind == 'module' else '-c'} {target.value}"
    settings = settings_from(args, "run")
    watch = Watch([sys.executable, "-m", "pyward", "run", "--heal", *rest], store, name, max_restarts)
    watch.rerun_side_effects = bool(settings.get("heal.rerun_side_effects"))
    watch.sandbox_off = settings.get("mode") == "off"
    return watch.run()


class Watch:
    def __init__(self, command: list[str], store: str, name: str, max_restarts: int) -> None:
        self.command, self.store, self.name, self.max_restarts = command, store, name, max_restarts
        self.child: subprocess.Popen[bytes] | None = None
        self.stopping = False
        self.rerun_side_effects = False
        self.sandbox_off = False
        self.events: list[dict[str, Any]] = []

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        try:
            return self._loop()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.stopping = True
        child = self.child
        if signum != signal.SIGINT and child is not None and child.poll() is None:
            child.send_signal(signum)  # Ctrl-C already reached the child through the process group

    def _loop(self) -> int:
        restarts = 0
        healed: list[str] = []
        while True:
            before = self._patches()
            self.child, reader = self._start()
            status = self.child.wait()
            reader.join(5)
            new = [label for key, label in self._patches().items() if key not in before]
            healed += new
            status = 128 - status if status < 0 else status
            if status == 0 or self.stopping:
                break
            if not new:
                _say(f"{self.name} exited with status {status} and no new patch was saved: not restarting")
                break
            if restarts >= self.max_restarts:
                _say(f"{self.name} exited with status {status}; a patch was saved for {', '.join(new)} but "
                     f"--max-restarts {self.max_restarts} is used up: not restarting (the next run uses the patch)")
                break
            why = self._not_clean()
            if why:
                _say(f"{self.name} exited with status {status}; a patch was saved for {', '.join(new)} but {why}: "
                     "not restarting (the next run uses the patch; --rerun-side-effects restarts anyway)")
                break
            restarts += 1
            _say(f"{self.name} exited with status {status}; patch saved for {', '.join(new)}: restarting "
                 f"(restart {restarts} of {self.max_restarts})")
        if restarts:
            _say(f"{self.name} ended with status {status} after {restarts} restart{'s' * (restarts != 1)} "
                 f"(healed: {', '.join(healed)})")
        return status

    def _start(self) -> tuple[subprocess.Popen[bytes], Any]:
        """The child, with a pipe on which it sends its events (rerun.TAP_VARIABLE)."""
        import threading

        from ..rerun import TAP_VARIABLE

        read, write = os.pipe()
        env = dict(os.environ)
        env[TAP_VARIABLE] = str(write)
        self.events = []
        try:
            child = subprocess.Popen(self.command, env=env, pass_fds=(write,))
        finally:
            os.close(write)
        reader = threading.Thread(target=self._read, args=(read,), name="pyward-watch-events", daemon=True)
        reader.start()
        return child, reader

    def _read(self, fd: int) -> None:
        import json

        with os.fdopen(fd, "rb") as f:
            for line in f:
                try:
                    self.events.append(json.loads(line))
                except ValueError:
                    continue

    def _not_clean(self) -> str:
        """Why the crashed run may not be started again (run --heal's rule), or ''."""
        from .engine import side_effects

        if self.rerun_side_effects:
            effects = side_effects(self._last_attempt())
            if effects:
                _say("--rerun-side-effects: these will happen again: " + "; ".join(effects))
            return ""
        if self.sandbox_off:
            return "the sandbox is off (--mode off), so pyward cannot tell whether the crashed run had side effects"
        effects = side_effects(self._last_attempt())
        if effects:
            more = f" and {len(effects) - 3} more" if len(effects) > 3 else ""
            return "the crashed run had side effects: " + "; ".join(effects[:3]) + more
        return ""

    def _last_attempt(self) -> list[dict[str, Any]]:
        """The events of the run's last attempt (its process: `run --heal` may have re-run it)."""
        starts = [e.get("pid") for e in self.events if e.get("engine") == "pyward" and e.get("kind") == "run.start"]
        if not starts:
            return self.events
        return [e for e in self.events if e.get("pid") == starts[-1]]

    def _patches(self) -> dict[Any, str]:
        """The store's patches (id -> label); none when there is no store yet."""
        if not os.path.exists(self.store):
            return {}
        from .store import Store

        try:
            store = Store(self.store, create=False)
        except Exception as exc:
            _say(f"cannot read the patch store {self.store}: {exc}")
            return {}
        try:
            return {(r.id, r.created): r.label() for r in store.all()}
        finally:
            store.close()

