"""The spool: how child processes of a guarded program report their sandbox events.

Python children (which run under the same policy, see sandbox/child.py) and
forked children append one JSON line per event to a file named in the policy
payload; the parent reads it back at the end of the run into its own
journal, log and report, so a denial in a child is counted where the run is.
When the program is killed before its end, the recorder reads it instead
(recorder.py).
"""
from __future__ import annotations

import os
import time

from ._isolation import isolate_builtins, isolate_module
from .canonical import dumps
from .children import CHILD_ENGINES
from .journal import Sink

isolate_builtins(globals())
os = isolate_module(os)  # noqa: F811
time = isolate_module(time)  # noqa: F811

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


#: the engines whose events a child may spool (a record naming another is not one)
ENGINES = ("sandbox", *CHILD_ENGINES)


def child_spool(pid: int) -> str:
    from .policy import temp_dir

    return os.path.join(temp_dir(), f"pyward-{pid}-{os.urandom(6).hex()}.children.jsonl")


def is_spool(path: object) -> bool:
    """A path child_spool made (or the one the kernel wall moves it to, `NAME.d/children.jsonl`): the
    recorder reads, and removes, nothing else."""
    if type(path) is not str or not os.path.isabs(path) or "/../" in path:
        return False
    name = os.path.basename(path)
    if name == "children.jsonl":
        name = os.path.basename(os.path.dirname(path))[:-2] if path.endswith(".children.jsonl.d/children.jsonl") \
            else ""
    stem = name[:-len(".children.jsonl")] if name.endswith(".children.jsonl") else ""
    parts = stem.split("-")
    return len(parts) == 3 and parts[0] == "pyward" and parts[1].isdigit() and len(parts[2]) == 12 \
        and all(c in "0123456789abcdef" for c in parts[2])


def write_spool(spool: str, kind: str, name: str, message: str, severity: str, details: dict[str, Any],
                site: tuple[str | None, str | None], engine: str = "sandbox") -> None:
    """Append one event; a single O_APPEND write, so children never tear each other's lines.  A sandbox
    event is 9 fields; another engine's (a Python child's heal) names its engine in a tenth."""
    record = [kind, name, message, severity, details, site[0], site[1], os.getpid(), time.time()]
    if engine != "sandbox":
        record.append(engine)
    line = dumps(record, sort_keys=False) + "\n"
    try:
        fd = os.open(spool, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    except FileNotFoundError:  # the run has ended and its directory is gone: a child that outlived it
        return  # (a daemon, multiprocessing's resource tracker) has printed the line, nobody reads the spool
    try:
        os.write(fd, line.encode("ascii"))
    finally:
        os.close(fd)


def read_spool(path: str | None) -> list[list[Any]]:
    """Events written by child processes, each [kind, name, message, severity, details, where, function,
    pid, time, engine]; the file is removed."""
    if not path or not os.path.exists(path):
        return []
    import json

    out = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if isinstance(item, list) and len(item) == 9 and isinstance(item[4], dict):
                out.append([*item, "sandbox"])
            elif isinstance(item, list) and len(item) == 10 and isinstance(item[4], dict) and item[9] in ENGINES:
                out.append(item)
    os.unlink(path)
    return out


class SpoolSink(Sink):
    """The journal sink of a Python child's own session (a heal engine there): each event spooled for the
    run's record."""

    def __init__(self, spool: str) -> None:
        self.spool = spool

    def write(self, event: Any) -> None:
        if event.engine != "pyward":  # (the child's own run.start: not an event of the run)
            write_spool(self.spool, event.kind, event.name, event.message, event.severity, event.details,
                        (event.where, event.function), event.engine)

