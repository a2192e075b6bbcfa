"""The sandbox in a Python child process of a guarded program."""
from __future__ import annotations

import os
import sys

from ..journal import ConsoleSink, Journal, JsonlSink
from ..policy import Policy
from .engine import Context, install


def install_child(payload: str) -> None:
    import json

    data = json.loads(payload)
    policy = Policy.from_json(data["policy"])
    journal = Journal()
    journal.add_sink(ConsoleSink())
    if data.get("log"):
        try:
            journal.add_sink(JsonlSink(data["log"], append=True))
        except OSError:
            pass
    spool = data.get("learn_spool")

    def emit(kind: str, name: str, message: str, severity: str, details: dict, site: tuple) -> None:
        if spool and kind in ("observed", "allowed", "would_deny"):
            line = json.dumps([details.get("permission"), name, details.get("operation")]) + "\n"
            fd = os.open(spool, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.write(fd, line.encode())
            os.close(fd)
        journal.emit("sandbox", kind, name, message=f"child {os.getpid()}: {message}", severity=severity,
                     details=details, where=site[0] or "", function=site[1])

    def exit_now(message: str) -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(77)

    program_dir = sys.path[0] if sys.path and sys.path[0] else os.getcwd()
    outputs = [data["log"]] if data.get("log") else []
    if spool:
        outputs.append(spool)
    context = Context(mode=data["mode"], on_deny=data["on_deny"], inherit=True, program_dir=program_dir,
                      outputs=outputs, emit=emit, exit_on_deny=exit_now if data["on_deny"] == "exit" else None,
                      log=data.get("log"), learn_spool=spool)
    install(policy, context)
