"""The policy files the program must not write.

A file pyward reads its policy from that the guarded program wrote (watch
mode lets it) is recorded in .pyward/tainted-policy.json and refused at the
next start until `pyward trust`.
"""
from __future__ import annotations

import os

from .._isolation import isolate_builtins, isolate_module
from ..policy import Policy, expand, path_variables
from ..runner import TargetError

isolate_builtins(globals())

os = isolate_module(os)  # noqa: F811

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any


def policy_candidates(cwd: str) -> list[str]:
    """Every file pyward's config discovery could read from `cwd`: the program
    must not be able to write its own policy for the next run."""
    out = []
    directory = cwd
    while True:
        out += [os.path.join(directory, "pyward.toml"), os.path.join(directory, "pyproject.toml")]
        parent = os.path.dirname(directory)
        if parent == directory:
            return out
        directory = parent


def _taint_file() -> str:
    return os.path.join(os.getcwd(), ".pyward", "tainted-policy.json")


def check_taint(source: str | None) -> None:
    """Refuse a policy file that a guarded program modified (until `pyward trust`)."""
    if not source or not os.path.exists(_taint_file()):
        return
    import hashlib
    import json

    try:
        with open(_taint_file(), encoding="utf-8") as f:
            tainted = json.load(f)
        with open(source, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
    except (OSError, ValueError):
        return
    entry = tainted.get(os.path.realpath(source)) if isinstance(tainted, dict) else None
    if isinstance(entry, dict) and entry.get("sha256") == digest:
        raise TargetError(f"{source} was modified by a program pyward guarded ({entry.get('when')}); pyward will "
                          f"not load a policy the guarded program wrote. Review it, then run: pyward trust {source}",
                          2)


def taint_policy_files(session: Any, changed: Iterable[str] = ()) -> None:
    """Record policy files the program wrote during this run (watch mode lets
    it; `changed` are files whose content changed though pyward let only itself write them)."""
    candidates = {os.path.realpath(p) for p in policy_candidates(session.cwd)}
    written = {e.name for e in session.journal.events
               if e.engine == "sandbox" and e.details.get("permission") == "write" and e.name in candidates
               and e.kind != "denied"} | set(changed)
    if not written:
        return
    import hashlib
    import json

    path = os.path.join(session.cwd, ".pyward", "tainted-policy.json")
    try:
        with open(path, encoding="utf-8") as f:
            tainted = json.load(f)
    except (OSError, ValueError):
        tainted = {}
    from ..journal import iso_time

    for name in sorted(written):
        try:
            with open(name, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
        except OSError:
            continue
        tainted[name] = {"sha256": digest, "when": iso_time(session.start_time)}
        session.journal.emit("sandbox", "policy.tainted", name, severity="alert", where="",
                             message=f"the program wrote {name}, a file pyward reads its policy from; "
                                     "pyward will refuse it until you review it and run: pyward trust " + name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(tainted, f, indent=1)


def warn_writable_policy(policy: Policy, journal: Any) -> None:
    if not policy.source:
        return
    directory = os.path.dirname(os.path.realpath(policy.source))
    for rule in policy.allows("write"):
        scope = expand(rule.scope, policy.base_dirs.get(rule.origin, os.getcwd()), path_variables())
        if directory == scope or directory.startswith(scope.rstrip("/") + "/") or "write" in policy.allow_all:
            journal.emit("sandbox", "policy.writable", policy.source, severity="warning", where="",
                         message=f"the policy file {policy.source} lies in a directory the program may write "
                                 f"({rule.scope} from {rule.origin}): pyward denies writes to it during the run, "
                                 "but keep policy files where the guarded program cannot write")
            return
