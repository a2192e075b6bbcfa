"""The sandbox in a Python child process of a guarded program."""
from __future__ import annotations

import os
import sys

from ..journal import ConsoleSink, Journal
from ..policy import Policy
from ..runner import exit_at_once, guard_child
from ..spool import write_spool
from .context import EXIT_STATUS_ON_DENY, Context
from .install import install

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def install_child(payload: str) -> None:
    from ..canonical import loads

    data: Any = loads(payload)
    policy = Policy.from_json(data["policy"])
    journal = Journal()
    journal.add_sink(ConsoleSink())
    spool = data.get("spool")

    def emit(kind: str, name: str, message: str, severity: str, details: dict, site: tuple) -> None:
        """Shown here at once; recorded by the parent (its log, report and summary) from the spool."""
        message = f"child {os.getpid()}: {message}"
        journal.emit("sandbox", kind, name, message=message, severity=severity, details=details,
                     where=site[0] or "", function=site[1])
        if spool:
            write_spool(spool, kind, name, message, severity, details, site)

    def exit_now(message: str) -> None:
        exit_at_once(EXIT_STATUS_ON_DENY)

    program_dir = child_program_dir(getattr(sys, "orig_argv", []))
    own_outputs = [p for p in data.get("outputs", ()) if type(p) is str]
    outputs = ([spool] if spool else []) + own_outputs
    engines = data.get("engines")
    context = Context(mode=data["mode"], on_deny=data["on_deny"], inherit=True, program_dir=program_dir,
                      outputs=outputs, emit=emit, exit_on_deny=exit_now if data["on_deny"] == "exit" else None,
                      log=data.get("log"), spool=spool,
                      protected_pids=tuple(pid for pid in data.get("protected", ()) if type(pid) is int),
                      search_path=tuple(sys.path),  # armed while site runs: no script directory in front yet
                      # this child's own Python children get the run's engines and outputs, as it did
                      children=engines if type(engines) is dict else None, child_outputs=own_outputs)
    if engines and type(engines) is dict:  # the run's other engines, in this child too (children.py)
        from ..children import arm_engines, prepare_engines

        prepare_engines(engines)
    install(policy, context)
    if engines and type(engines) is dict:
        arm_engines(engines, spool, guard_child)


OPTIONS_WITH_VALUE = ("-W", "-X", "--check-hash-based-pycs")


def child_program_dir(argv: list[str]) -> str:
    """The directory of the script a child python runs (its own files are
    implicit reads, as for the parent); the cwd for -c, -m and stdin.  At
    sitecustomize time sys.argv is not set yet, so read sys.orig_argv."""
    args = argv[1:]
    while args:
        arg = args.pop(0)
        if arg in OPTIONS_WITH_VALUE:
            args = args[1:]
            continue
        if arg.startswith("-c") or arg.startswith("-m") or arg == "-":
            break
        if arg.startswith("-"):
            if arg[1:2] in ("W", "X") or arg.startswith("--"):
                continue
            if "c" in arg[1:] or "m" in arg[1:]:  # -Ic CODE, -um MODULE
                break
            continue
        return os.path.dirname(os.path.realpath(arg))
    return os.getcwd()
