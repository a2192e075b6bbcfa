"""One call of the program's into a library that patches many sealed targets
(gevent's `patch_all`, eventlet's `monkey_patch`): every change is an alert in
the journal, and the console shows the first in full, then one line for the
rest once the call has returned.

The call is the program's frame that called into the library, at the
instruction it was executing: the burst lasts while that frame is still there
(a loop calling the patcher from one line stays one burst).
"""
from __future__ import annotations

from .._isolation import isolate_builtins

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import FrameType

isolate_builtins(globals())


class Burst:
    __slots__ = ("module", "caller", "frame", "lasti", "first", "names", "response")

    def __init__(self, module: str, caller: str, frame: FrameType, first: str, response: str) -> None:
        self.module, self.caller, self.frame, self.lasti = module, caller, frame, frame.f_lasti
        self.first, self.names, self.response = first, [first], response

    def same_call(self, module: str, caller: str | None, frame: FrameType | None) -> bool:
        return frame is self.frame and module == self.module and caller == self.caller and self.is_open()

    def is_open(self) -> bool:
        """The program's call into the patcher has not returned yet."""
        return self.frame.f_lasti == self.lasti

    def line(self) -> str:
        """The console line for the changes after the first (there is more than one)."""
        parts = self.module.split(".")
        patcher = ".".join(parts[:2]) if len(parts) > 1 else self.module
        rest = self.names[1:]
        return (f"{patcher} also changed {len(rest)} more sealed target{'s' if len(rest) > 1 else ''} "
                f"(called from {self.caller}): {', '.join(rest)}{self.response} "
                f"(each is an alert in the report; --allow-patcher {patcher} authorises its changes)")
