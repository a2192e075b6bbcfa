"""Audit events the tamper engine reports without a seal: the process environment
changed (os.putenv, os.unsetenv) and trace or profile hooks installed."""
from __future__ import annotations

import os
import sys

from .._isolation import isolate_builtins, isolate_module
from ..journal import Journal
from .environment import env_is_sensitive, redact
from .patcher import patcher, patcher_modules, tools_own
from .seals import describe

isolate_builtins(globals())
os = isolate_module(os)  # noqa: F811
_emit = Journal.emit  # the journal's method as pyward defined it: an instance attribute cannot shadow it here
_current = {"sys.settrace": sys.gettrace, "sys.setprofile": sys.getprofile}  # the program may replace them

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .alerts import Alerts


def env_changed(alerts: Alerts, event: str, args: tuple[Any, ...]) -> None:
    """os.putenv / os.unsetenv: news, louder for a sensitive variable."""
    raw = args[0] if args else b""
    name = os.fsdecode(raw) if isinstance(raw, (bytes, str)) else "?"
    if name.startswith("PYWARD_"):
        return
    journal = alerts.session.journal
    if not env_is_sensitive(name) and journal.count_repeat("tamper", "env.changed", name):
        return  # the hundred-and-first change of one variable: counted, nothing else (REPEAT_LIMIT)
    if alerts.acting() is not None:
        return
    value = os.fsdecode(args[1]) if event == "os.putenv" and len(args) > 1 else None
    shown = redact(name, value)
    message = f"environment variable {name} {'set to ' + shown if value is not None else 'removed'}"
    where, function, _ = patcher()
    news = env_is_sensitive(name) and alerts.allowed_patcher(patcher_modules()) is None
    _emit(journal, "tamper", "env.changed", name, severity="notice" if news else "info", where=where or "",
          function=function, message=message, details={"variable": name, "value": shown})


def hook_changed(alerts: Alerts, event: str, args: tuple[Any, ...]) -> None:
    """sys.settrace / sys.setprofile by anything but pyward.  Their audit events carry no
    argument: what is known is the call and the calling thread's hook it replaces (the
    event is raised before the new one is set).  A debugger or profiler the user started
    (pdb, profile, trace, the run's `-m` tool) sets and resets its hook at every step:
    `info`, in the report and at -v."""
    where, function, module = patcher()
    if module.startswith("pyward") or alerts.acting() is not None:
        return
    getter = _current.get(event)
    before = getter() if getter is not None else None
    was = "no hook was set" if before is None else f"replacing {describe(before)}"
    severity = "info" if tools_own(alerts.session) else "notice"
    _emit(alerts.session.journal, "tamper", "hook.changed", event.partition(".")[2], severity=severity,
          where=where or "", function=function, message=f"{event} called by {where or '?'} ({was})",
          details={"hook": event, "before": describe(before) if before is not None else None})
