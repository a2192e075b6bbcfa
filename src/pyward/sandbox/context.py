"""The run as the sandbox sees it (`Context`), and the constants its parts share."""
from __future__ import annotations

import os
import sys

from .._isolation import isolate_builtins, isolate_module

isolate_builtins(globals())

os = isolate_module(os)  # noqa: F811

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

MODES = {"watch": 0, "enforce": 1, "prompt": 2}
EXIT_STATUS_ON_DENY = 77  # EX_NOPERM in sysexits.h
HIDDEN_ENV = ("PYWARD_SANDBOX", "PYWARD_ORIG_PYTHONPATH")
# PYWARD_ORIG_PYTHONPATH holds the program's own PYTHONPATH; absent: it had none.
#: What decides how a Python child is armed: in an environment the program hands a
#: child (env=), these are dropped and pyward's own values put in their place.
CHILD_ARMING_ENV = (*HIDDEN_ENV, "PYTHONPATH", "PYWARD_DISABLE_NATIVE")
BOOT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "boot")


def stdin_is_tty() -> bool:
    """Whether a prompt can be answered: stdin is a terminal."""
    try:
        return os.isatty(0)
    except OSError:
        return False


class Context:
    """The run as the sandbox sees it (`Context`), and the constants its parts share."""

    def __init__(self, *, mode: str, on_deny: str, inherit: bool, program_dir: str, outputs: list[str],
                 emit: Callable[..., Any], exit_on_deny: Callable[[str], Any] | None, log: str | None,
                 spool: str | None = None, rerun: tuple[Any, ...] | None = None,
                 protected_pids: tuple[int, ...] = (), search_path: tuple[str, ...] | None = None,
                 children: dict[str, Any] | None = None, child_outputs: list[str] | None = None) -> None:
        self.mode, self.on_deny, self.inherit = mode, on_deny, inherit
        # the module search path python reads by itself: sys.path without its first entry (the
        # launcher's directory; the program's is program_dir), or the whole of it in a child
        # armed while site runs, before python puts the script's directory first
        self.search_path = tuple(sys.path[1:]) if search_path is None else search_path
        self.program_dir, self.outputs, self.emit = program_dir, outputs, emit
        self.exit_on_deny, self.log = exit_on_deny, log
        self.spool = spool  # where Python children report their events (see child.py)
        # (executable, argv, environment, cwd) of pyward's own re-run of the program (rerun.py), fixed before
        # the program runs: that exact process start is pyward's, not the program's
        self.rerun = rerun
        # pyward's own processes the program may not signal (the recorder: recorder.py)
        self.protected_pids = protected_pids
        # the kernel wall keeps the run's signals inside it (kernel.py, Landlock's signal scope)
        self.signals_scoped = False
        # what Python children need to run the run's other engines (Engine.child_arming), and the files
        # those engines write there (pyward's, as here)
        self.children = children or {}
        self.child_outputs = child_outputs or []
