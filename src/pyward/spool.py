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

isolate_builtins(globals())
os = isolate_module(os)  # noqa: F811
time = isolate_module(time)  # noqa: F811

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def child_spool(pid: int) -> str:
    from .policy import temp_dir

    return os.path.join(temp_dir(), f"pyward-{pid}-{os.urandom(6).hex()}.children.jsonl")


def write_spool(spool: str, kind: str, name: str, message: str, severity: str, details: dict[str, Any],
                site: tuple[str | None, str | None]) -> None:
    """Append one event; a single O_APPEND write, so children never tear each other's lines."""
    line = dumps([kind, name, message, severity, details, site[0], site[1], os.getpid(),
                  time.time()], sort_keys=False) + "\n"
    try:
        fd = os.open(spool, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    except FileNotFoundError:  # the run has ended and its directory is gone: a child that outlived it
        return  # (a daemon, multiprocessing's resource tracker) has printed the line, nobody reads the spool
    try:
        os.write(fd, line.encode("ascii"))
    finally:
        os.close(fd)


def read_spool(path: str | None) -> list[list[Any]]:
    """Events written by child processes; the file is removed."""
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
                out.append(item)
    os.unlink(path)
    return out
