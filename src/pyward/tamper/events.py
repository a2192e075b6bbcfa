"""Audit events the tamper engine reports without a seal: the process environment
changed (os.putenv, os.unsetenv) and trace or profile hooks installed."""
from __future__ import annotations

import os

from .._isolation import isolate_builtins, isolate_module
from ..journal import Journal
from .environment import env_is_sensitive, redact
from .patcher import patcher, patcher_modules
from .seals import describe

isolate_builtins(globals())
os = isolate_module(os)  # noqa: F811
_emit = Journal.emit  # the journal's method as pyward defined it: an instance attribute cannot shadow it here

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
    """sys.settrace / sys.setprofile by anything but pyward."""
    where, function, module = patcher()
    if module.startswith("pyward") or alerts.acting() is not None:
        return
    hook = args[0] if args else None
    verb = "removed" if hook is None else f"installed ({describe(hook)})"
    _emit(alerts.session.journal, "tamper", "hook.changed", event.partition(".")[2], severity="notice",
          where=where or "", function=function, message=f"{event.partition('.')[2]} hook {verb} by {where or '?'}",
          details={"hook": event, "value": describe(hook)})
