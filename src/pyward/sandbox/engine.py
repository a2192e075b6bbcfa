"""The sandbox engine: its part in a session's life.

At start it compiles the policy and installs the decider (install.py), with
the files pyward itself writes (the session's outputs) let through; at the
end it collects the events Python children spooled, writes a learned policy,
records policy files the program wrote, and offers to save prompt answers.

How it holds up against the program it guards (docs/sandbox.md has more):

* the decision runs in functions re-created from `_decide` with a private
  globals dict holding only the compiled policy (tuples and strings), C-level
  functions captured now, and caches that map strings to ints; the dict and
  the functions are then untracked by the GC, and referenced only from C
  (decider.py);
* denials are raised by C, so no pyward frame (and no way to the private
  globals) appears in a traceback;
* functions that start processes or open files without a usable audit event
  are replaced by C guards whose original cannot be reached from Python, and
  re-importing the modules they live in is denied (install.py);
* `os.environ` becomes a view whose values come from the C environment
  through the sandbox, and the startup snapshot of the environment is
  cleared, so values cannot be read around the policy (environ.py).
"""
from __future__ import annotations

import os

from .._isolation import isolate_builtins, isolate_module
from ..policy import OBSERVED, PERMISSIONS, Policy, path_variables
from ..runner import Engine, exit_at_once
from ..spool import child_spool, read_spool, write_spool
from .context import EXIT_STATUS_ON_DENY, Context
from .install import install
from .taint import check_taint, taint_policy_files, warn_writable_policy

isolate_builtins(globals())

os = isolate_module(os)  # noqa: F811

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class SandboxEngine(Engine):
    name = "sandbox"

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.policy = Policy.from_settings(settings)
        configured = settings.get("mode")
        self.mode = configured or ("enforce" if self.policy.configured else "watch")
        self.learn = settings.get("sandbox.learn")
        if self.learn:
            self.mode = "watch"
        check_taint(settings.source)
        self.counts: dict[str, int] = {}
        self.observations: list[tuple[str, str, str]] = []
        self.prompted: list[tuple[str, str]] = []  # (permission, scope or "*") granted at the prompt
        self.save_target: str | None = None
        self.save_digest: str | None = None
        self.session: Any = None
        self.wall: Any = None  # the kernel wall's plan until the program's first line (kernel.py)
        self.spool_dir: str | None = None

    def start(self, session: Any) -> None:
        self.session = session
        s = self.settings
        self.spool = child_spool(session.pid) if s.get("inherit", True) else None
        if self.spool:  # a forked child's events come back through it: recorded by this process
            session.journal.recorded_by_parent.add("sandbox")
        if self.mode == "enforce":  # the one mode a kernel wall can go up in (kernel.py, ~1 M instructions to import)
            from .kernel import plan, wanted

            if wanted(s, self.mode):
                self.wall = plan(self.spool)
                self.spool = self.wall.spool
        if self.spool:  # a program killed before its end leaves its children's events to the record to collect
            session.note_spool(self.spool)
        outputs = [*session.outputs, *(p for p in (self.learn, self.spool, self.wall and self.wall.spool_dir) if p)]
        if self.mode == "prompt":  # (prompt.py is imported for this mode only)
            from .prompt import file_digest, prompt_target, stdin_is_tty

            outputs.append("/dev/tty")  # where the answers are offered for saving at the end
            self.save_target = prompt_target(s.source, session.cwd)
            if self.save_target:  # pyward writes it at the end; a change by the program is caught by digest
                outputs += [self.save_target, self.save_target + ".bak"]
                self.save_digest = file_digest(self.save_target)
            if not stdin_is_tty():
                session.journal.emit("sandbox", "prompt.unavailable", "stdin", severity="warning", where="",
                                     message="prompt mode needs a terminal; denying like enforce instead")
        context = Context(mode=self.mode, on_deny=s.get("on_deny", "raise"), inherit=s.get("inherit", True),
                          program_dir=session.program_dir, outputs=outputs, emit=self._emit,
                          exit_on_deny=self._exit_on_deny if s.get("on_deny") == "exit" else None,
                          log=s.get("log"), spool=self.spool, rerun=_rerun_spec(session),
                          protected_pids=tuple(getattr(session, "protected_pids", ())),
                          children=getattr(session, "child_arming", {}),
                          child_outputs=list(getattr(session, "outputs", ())))
        if self.wall is not None:
            self.wall.compile(self.policy, context, session)
            context.signals_scoped = bool(self.wall.wall is not None and self.wall.wall.scoped)
        warn_writable_policy(self.policy, session.journal)
        path_variables()  # pyward's own reads, made before the hook would take them for the program's
        if self.learn:
            from ..policy.learn import ephemeral_range

            ephemeral_range()
        install(self.policy, context, protect=session.protect)
        if context.inherit and self.mode != "off":  # the children are armed: the other engines go with them
            session.children_armed = True
        from .._native import native

        if native is not None:  # under `pyward run` the program gets no callback to loosen the policy with
            native.sandbox_lock_hook()
        if self.wall is None and self.mode != "off":
            session.layers["audit"] = self.mode
            if self.mode == "enforce":
                why = "--no-kernel or kernel = false" if s.get("kernel", True) is False else \
                    "--no-inherit: children run unguarded, and a wall binds every descendant"
                session.layers["kernel"] = f"off ({why})"
                session.journal.emit("sandbox", "layers", "audit", severity="info", where="",
                                     message=f"sandbox layers: audit hooks (enforce); kernel wall off ({why})",
                                     details={"kernel": False})

    def program_starts(self, session: Any, code: Any) -> None:
        if self.wall is not None:
            self.wall.raise_(self.mode, session)
            self.spool_dir, self.wall = self.wall.spool_dir, None

    def _emit(self, kind: str, name: str, message: str, severity: str, details: dict[str, Any],
              site: tuple[str | None, str | None], pid: int | None = None, at: float | None = None) -> None:
        if pid is None and kind in OBSERVED and self.session.acting_engine() == "sandbox":
            return  # pyward's own work at the end (the children's spool, the learned policy), not the program's
        perm = details.get("permission", "")
        if kind == "granted":
            self.prompted.append((details["permission"], "*" if details["rule"] != "prompt" else name))
        if kind in OBSERVED:
            self.counts[perm] = self.counts.get(perm, 0) + 1
            if self.learn:
                self.observations.append((perm, learned_name(name, details), details.get("operation", "")))
        if pid is None and self.spool and self.session.journal.is_child:  # forked: the parent records it
            message = f"child {os.getpid()}: {message}"
            write_spool(self.spool, kind, name, message, severity, details, site)
        self.session.journal.emit("sandbox", kind, name, message=message, severity=severity, details=details,
                                  where=site[0] or "", function=site[1], pid=pid, at=at)

    def _collect_children(self) -> None:
        """Events Python children reported: into this run's journal, log and report."""
        for kind, name, message, severity, details, where, function, pid, at, engine in read_spool(self.spool):
            if kind == "granted":
                continue
            if engine != "sandbox":  # a Python child's heal: its events go where the run's are
                self.session.journal.emit(engine, kind, name, message=message, severity=severity, details=details,
                                          where=where or "", function=function, pid=pid, at=at)
                continue
            self._emit(kind, name, message, severity, details, (where, function), pid=pid, at=at)

    def _exit_on_deny(self, message: str) -> None:
        exit_at_once(EXIT_STATUS_ON_DENY, self.session, "denied (--on-deny=exit)")

    def stop(self, session: Any) -> None:
        with session.acting("sandbox"):  # what the sandbox sees in this thread now is pyward's doing (_emit)
            self._collect_children()
            if self.spool_dir:  # the spool's own directory under the kernel wall (kernel.plan)
                try:
                    os.rmdir(self.spool_dir)
                except OSError:
                    pass
            if self.learn:
                from ..policy.learn import write_learned

                path, rules, unseen, native = write_learned(self.learn, self.observations, session.invocation,
                                                            getattr(session, "start_env", {}))
        if self.learn:
            found_here = os.path.realpath(path) == os.path.realpath(os.path.join(session.cwd, "pyward.toml"))
            hint = "the next `pyward run` in this directory uses it" if found_here else \
                f"use it with: pyward run --config {path} ..."
            status = session.exit_status
            if status:  # a policy of half a run: say so, where the user looks
                session.journal.emit(
                    "sandbox", "learned.incomplete", path, severity="warning", where="",
                    message=f"the learning run ended with exit status {status} ({session.exit_reason}): the "
                            f"policy in {path} covers only what ran before that; fix the run and learn again, "
                            "or review the policy by hand", details={"exit_status": status})
            session.journal.emit("sandbox", "learned", path, severity="notice", where="",
                                 message=f"learned policy written to {path} ({rules} rule{'s' * (rules != 1)}); {hint}")
            if unseen:
                from ..policy.learn import unseen_notice

                session.journal.emit("sandbox", "learned.unseen", path, severity="notice", where="",
                                     message=unseen_notice(unseen), details={"commands": unseen})
            if native:
                from ..policy.learn import native_notice

                session.journal.emit("sandbox", "learned.native", path, severity="notice", where="",
                                     message=native_notice(native), details={"libraries": native})
            return
        changed: list[str] = []
        if self.save_target or self.prompted:  # prompt mode, whose start imported prompt.py
            from .prompt import file_digest, offer_to_save

            if self.save_target and file_digest(self.save_target) != self.save_digest:
                changed = [self.save_target]
        taint_policy_files(session, changed)
        if self.prompted and not changed:
            offer_to_save(self.prompted, self.settings.source, self.save_target, session)
        if self.mode == "watch" and self.counts:
            parts = [f"{self.counts[p]} {p}" for p in PERMISSIONS if self.counts.get(p)]
            session.journal.emit("sandbox", "summary", "watch", severity="info", where="",
                                 message="sandbox (watch): the program used " + ", ".join(parts)
                                         + " beyond its own files (-v lists them; pyward learn writes a policy)",
                                 details=dict(self.counts))


def _rerun_spec(session: Any) -> tuple[Any, ...] | None:
    """The one process start the sandbox leaves to pyward: a fresh run of this
    very command, in the directory and environment the run started with."""
    if getattr(session, "channel", None) is not None or not hasattr(session, "start_env"):
        return None  # a re-run never starts the next one: its supervisor does
    if not any(getattr(engine, "reruns", False) for engine in getattr(session, "engines", ())):
        return None  # no engine of this run re-runs the program (the heal engine with --retries does)
    from ..rerun import RERUN_VARIABLE, command

    argv = command(session.invocation)
    if argv is None:
        return None
    return (argv[0], tuple(argv), dict(session.start_env), session.cwd, RERUN_VARIABLE)


def learned_name(name: str, details: dict[str, Any]) -> str:
    """What learn writes for an event: a connection to an address a name gave is learned as the
    name and port (the address is this network's answer, the name holds elsewhere), unless a
    name other than localhost led to this host (a machine's own name does not travel)."""
    via = details.get("via")
    if type(via) is not str:
        return name
    if name.startswith(("127.", "[::1]", "0.0.0.0", "[::]")) and not via.startswith("localhost:"):
        return name
    return via
