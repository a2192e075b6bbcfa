"""The sandbox engine: PEP 578 audit hooks, filtered in C, and a permission policy.

Imported at every `pyward run` start: `make_engine(settings)` must stay cheap; the
work happens in `pyward.sandbox.engine` when the engine starts.

Embedding API (without `pyward run`)::

    from pyward.sandbox import install, Policy
    install(Policy.from_dict(allow={"read": ["./data"]}))

or a PEP 578 hook of your own, which works alone (see install_hook)::

    from pyward.sandbox import install_hook
    install_hook(my_hook)
"""
from __future__ import annotations

from .errors import AccessDenied

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable, Iterable

    from ..config import Settings
    from ..policy import Policy
    from ..runner import Engine

__all__ = ["AccessDenied", "make_engine", "Policy", "install", "install_hook", "lock_hook", "uninstall_hook"]


def make_engine(settings: Settings) -> Engine | None:
    if settings.get("mode") == "off":
        return None
    from .engine import SandboxEngine

    return SandboxEngine(settings)


def install(policy: Policy | None = None, *, mode: str = "enforce", on_deny: str = "raise",
            journal: Any = None) -> None:
    """Install the sandbox in this process, for good (it cannot be removed).

    `policy` defaults to nothing allowed; `mode` is enforce, watch or prompt.
    Events go to `journal` (a pyward.journal.Journal) or to stderr.
    """
    from .standalone import install_standalone

    install_standalone(policy, mode=mode, on_deny=on_deny, journal=journal)


def install_hook(hook: Callable[[str, tuple[Any, ...]], Any], events: Iterable[str] | str | None = None,
                 *, journal: Any = None) -> None:
    """Install `hook(event, args)`: it sees every audit event (or only `events`).

    Works on its own in any process: with no sandbox installed, it starts one
    in hook-only mode, which blocks nothing by itself (no policy, no guards):
    the hook decides.  The hook blocks an operation the PEP 578 way, by
    raising: the exception reaches the operation's caller unchanged (its own
    type and message).  It may also return "deny" (pyward.AccessDenied is
    raised), "allow", or None (no opinion).  Each refusal is journaled as a
    denial by the hook: into `journal` (a pyward.journal.Journal) when this
    call starts the sandbox, else onto stderr; with a sandbox installed, into
    its journal.

    `events` narrows what the hook sees: exact names ("open") and prefixes
    ("socket.*"); default every event, including the ones no policy checks.
    With a policy installed (`install`), the hook is composed with it: a deny
    rule is final (the hook is not asked), "allow" grants what no rule
    grants, "deny" or a raise refuses what the policy allows.  Events raised
    by the hook itself are not passed to it again.

    One hook at a time: a second call replaces the first.  Under `pyward run`,
    and after `lock_hook()`, it raises pyward.AccessDenied: the program cannot
    loosen its own policy.
    """
    from .hooks import install_hook as install

    install(hook, events, journal)


def lock_hook() -> None:
    """From now on `install_hook` and `uninstall_hook` raise pyward.AccessDenied
    (for good): call it before running code that must not change the callback."""
    from .._native import native

    if native is None:
        raise RuntimeError("lock_hook needs pyward's native extension")
    native.sandbox_lock_hook()


def uninstall_hook() -> None:
    """Stop calling the hook; the C audit hook (and any policy) stays installed.
    Under `pyward run`, and after `lock_hook()`, it raises pyward.AccessDenied."""
    from .._native import native

    if native is not None:
        native.sandbox_set_hook(None)


def __getattr__(name: str) -> Any:
    if name == "Policy":
        from ..policy import Policy

        return Policy
    raise AttributeError(f"module 'pyward.sandbox' has no attribute {name!r}")
