"""The program's own audit hook: `install_hook(hook)`, as PEP 578 hooks are written.

A hook is `hook(event, args)`.  It may return "allow"/True, "deny"/False or
None, or raise: a raised exception reaches the audited operation's caller
unchanged, as from any `sys.addaudithook` hook.  The native half
(_native/sandbox.c) calls it from pyward's C audit hook, so:

* with no sandbox installed, `install_hook` starts the sandbox "hook-only":
  the C hook and nothing else; no policy, no guards, nothing blocked but
  what the hook blocks;
* with a policy installed, the hook is composed with it (an explicit deny
  rule is final; "allow" grants what no rule mentions);
* refusals (a raise or "deny") are journaled as denials by the hook, through
  the sandbox's journal or, hook-only, a journal of their own (stderr);
* events the hook itself raises (it opens a log file...) are not passed to
  it again, and tracing is off while it runs, as CPython does for hooks.
"""
from __future__ import annotations

import os

from ..journal import user_site

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable

HOOK_RULE = "pyward.sandbox.install_hook()"


def split_events(events: Iterable[str] | str | None) -> tuple[list[str] | None, list[str] | None]:
    """(exact names, prefixes) from `events`: None is every event; "socket.*"
    (a trailing *) every event starting with "socket."; "*" alone, every event."""
    if events is None:
        return None, None
    if isinstance(events, str):
        events = [events]
    names: list[str] = []
    prefixes: list[str] = []
    for event in events:
        if not isinstance(event, str) or not event:
            raise TypeError(f"events must be non-empty str, not {event!r}")
        if event == "*":
            return None, None
        if "*" in event[:-1]:
            raise ValueError(f"bad event pattern {event!r}: only a trailing * is supported (\"socket.*\")")
        (prefixes if event.endswith("*") else names).append(event.rstrip("*"))
    return names, prefixes


def resource_of(event: str, args: Any) -> str:
    """What the event is about, for the journal: a path, an address, else the event's name."""
    for value in args[:2] if type(args) is tuple else ():
        kind = type(value)
        if kind is str:
            return value
        if kind is bytes:
            return os.fsdecode(value)
        if kind is tuple and len(value) >= 2 and type(value[0]) is str and type(value[1]) is int:
            return f"{value[0]}:{value[1]}"
    return event


def emitter(emit: Callable[..., Any]) -> Callable[[str, str, Any, str], None]:
    """`hook_emit(kind, event, args, reason)` for the native half, over an
    `emit(kind, name, message, severity, details, site)` like the decider's."""
    def hook_emit(kind: str, event: str, args: Any, reason: str) -> None:
        resource = resource_of(event, args)
        about = event if resource == event else f"{event} '{resource}'"
        if kind == "denied":
            message, severity = f"{about} denied by the hook installed with {HOOK_RULE} ({reason})", "warning"
        else:
            message, severity = f"{about} allowed by the hook installed with {HOOK_RULE} ({reason})", "notice"
        details = {"permission": "hook", "operation": event, "event": event, "rule": HOOK_RULE, "reason": reason}
        emit(kind, resource, message, severity, details, user_site(2))

    return hook_emit


def journal_emit(journal: Any) -> Callable[..., Any]:
    """An `emit` writing into `journal` (a pyward.journal.Journal), or onto stderr when None."""
    from ..journal import ConsoleSink, Journal

    if journal is None:
        journal = Journal()
        journal.add_sink(ConsoleSink())

    def emit(kind: str, name: str, message: str, severity: str, details: dict[str, Any],
             site: tuple[str | None, str | None]) -> None:
        journal.emit("sandbox", kind, name, message=message, severity=severity, details=details,
                     where=site[0] or "", function=site[1])

    return emit


def install_hook(hook: Callable[[str, tuple[Any, ...]], Any] | None, events: Iterable[str] | str | None = None,
                 journal: Any = None) -> None:
    from .._native import native
    from .errors import AccessDenied

    if native is None:
        raise RuntimeError("install_hook needs pyward's native extension")
    if hook is not None and not callable(hook):
        raise TypeError(f"the hook must be callable, not {type(hook).__name__}")
    names, prefixes = split_events(events)
    state = native.sandbox_hook_state()
    if hook is not None and not state["journaled"] and not state["policy"]:
        hook_emit = emitter(journal_emit(journal))  # hook-only: nothing blocks but the hook
        native.sandbox_hook_journal(hook_emit, AccessDenied)  # (not untracked: a later install() replaces it)
    native.sandbox_set_hook(hook, names, prefixes)


__all__ = ["install_hook", "split_events"]
