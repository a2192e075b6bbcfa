"""The embedding API: the sandbox installed by a program itself (`pyward.sandbox.install`), without a session."""
from __future__ import annotations

import os
import sys

from .._isolation import isolate_builtins, isolate_module
from ..policy import Policy
from ..runner import exit_at_once
from .context import EXIT_STATUS_ON_DENY, MODES, Context
from .install import install

isolate_builtins(globals())

os = isolate_module(os)  # noqa: F811

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def install_standalone(policy: Policy | None, *, mode: str, on_deny: str, journal: Any) -> None:
    from .hooks import journal_emit

    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    emit = journal_emit(journal)

    def exit_now(message: str) -> None:
        exit_at_once(EXIT_STATUS_ON_DENY)

    context = Context(mode=mode, on_deny=on_deny, inherit=False, program_dir=sys.path[0] or os.getcwd(),
                      outputs=[], emit=emit, exit_on_deny=exit_now if on_deny == "exit" else None, log=None)
    install(policy or Policy(), context)
