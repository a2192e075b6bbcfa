"""The sandbox engine: PEP 578 audit hooks, filtered in C, and a permission policy.

Imported at every `pyward run` start: `engine(settings)` must stay cheap; the
work happens in `pyward.sandbox.engine` when the engine starts.

Embedding API (without `pyward run`)::

    from pyward.sandbox import install, Policy
    install(Policy.from_dict(allow={"read": ["./data"]}))
"""
from __future__ import annotations

from .errors import AccessDenied

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ..config import Settings
    from ..policy import Policy
    from ..runner import Engine

__all__ = ["AccessDenied", "Policy", "engine", "install", "install_hook", "lock_hook", "uninstall_hook"]


def engine(settings: Settings) -> Engine | None:
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
    from .engine import install_standalone

    install_standalone(policy, mode=mode, on_deny=on_deny, journal=journal)


def install_hook(callback: Any) -> None:
    """Compose `callback(event, args) -> "allow" | "deny" | None` with the policy.

    "deny" denies what the policy allows; "allow" allows what the policy does
    not mention (never what a deny rule denies); None leaves the policy's
    verdict.  One callback at a time; it runs for every event the sandbox
    checks, so keep it fast.  Under `pyward run`, and after `lock_hook()`,
    it raises pyward.AccessDenied: the program cannot loosen the policy.
    """
    from .._native import native

    if native is None:
        raise RuntimeError("install_hook needs pyward's native extension")
    native.sandbox_set_hook(callback)


def lock_hook() -> None:
    """From now on `install_hook` and `uninstall_hook` raise pyward.AccessDenied
    (for good): call it before running code that must not change the callback."""
    from .._native import native

    if native is None:
        raise RuntimeError("lock_hook needs pyward's native extension")
    native.sandbox_lock_hook()


def uninstall_hook() -> None:
    """Stop calling the callback; the sandbox itself stays installed."""
    from .._native import native

    if native is not None:
        native.sandbox_set_hook(None)


def __getattr__(name: str) -> Any:
    if name == "Policy":
        from ..policy import Policy

        return Policy
    raise AttributeError(f"module 'pyward.sandbox' has no attribute {name!r}")
