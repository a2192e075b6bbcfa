"""What happens when a seal changes: the alert naming who did it, and the response.

A change made by pyward's own engine (`session.acting(...)`, from pyward's
own code) or by an --allow-patcher module is accepted; anything else is an
alert naming the patcher (file:line and function of the first frame outside
pyward and the standard library), the old and the new value.  --restore puts
the original back (the raw namespace entry, latest change first);
--fail-closed stops the run (exit status 78), or refuses the change where it
can still be refused.
"""
from __future__ import annotations

import os
import sys

from .._isolation import isolate_builtins
from ..journal import Journal
from ..runner import exit_at_once
from .burst import Burst
from .errors import TamperError
from .own import is_pyward_code
from .patcher import caller_of, patcher, patcher_modules
from .restore import put_back
from .seals import Seal, describe, fingerprint

isolate_builtins(globals())
_getframe = sys._getframe  # the program may delete or replace it (monkeypatch.delattr)
_emit = Journal.emit  # the journal's method as pyward defined it: an instance attribute cannot shadow it here

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

    from .table import SealTable

EXIT_STATUS_FAIL_CLOSED = 78
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep  # the tamper engine's own frames
WATCHERS = sys.version_info >= (3, 12)


class Alerts:
    __slots__ = ("session", "table", "native", "allow", "restore", "fail_closed", "disarm", "reported", "swapped",
                 "class_reported", "to_restore", "stop_now", "restoring", "burst")

    def __init__(self, session: Any, table: SealTable, allow: tuple[str, ...], restore: bool, fail_closed: bool,
                 disarm: Callable[[], None]) -> None:
        self.session, self.table, self.native = session, table, table.native
        self.allow, self.restore, self.fail_closed = allow, restore, fail_closed
        self.disarm = disarm  # the next import must reach the Python check (a restore or a stop is due)
        self.reported: dict[str, Any] = {}  # seal name -> the new value a synchronous alert named
        self.swapped: set[str] = set()  # seals whose code swap was reported as it happened
        self.class_reported: set[int] = set()  # modules whose __class__ swap was reported
        self.to_restore: list[Seal] = []
        self.stop_now = False
        self.restoring = False
        self.burst: Burst | None = None  # a library's changes from one call of the program's

    # -- who is changing it ---------------------------------------------------------

    def acting(self) -> str | None:
        """The pyward engine making this change, if one is: `session.acting(...)` says
        so, and the code making the change (the first frame outside this package and
        the import machinery) must be pyward's own code as it is on disk, so that the
        program cannot borrow `acting` to make its own change look authorised."""
        engine = self.session.acting_engine()
        if engine is None:
            return None
        frame: Any = _getframe(1)
        here = _PACKAGE_DIR
        while frame is not None and (frame.f_code.co_filename.startswith(here)
                                     or frame.f_code.co_filename.startswith("<frozen importlib")):
            frame = frame.f_back
        if frame is None or not is_pyward_code(frame.f_code):
            return None
        return engine

    def allowed_patcher(self, modules: list[str]) -> str | None:
        """The --allow-patcher entry that covers one of `modules`, if any."""
        return next((a for a in self.allow for m in modules if m == a or m.startswith(a + ".")), None)

    # -- alerts ---------------------------------------------------------------------

    def alert(self, seal: Seal, what: str, old: Any, new: Any, how: str, late: bool = False) -> None:
        acting = self.acting()
        if acting is not None:
            _emit(self.session.journal, "tamper", "authorised", seal.name, severity="debug", where="",
                  message=f"{seal.name} {what} by pyward's {acting} engine (authorised)", details={"engine": acting})
            self.accept(seal, new, late)
            return
        where, function, module = patcher()
        allowed = self.allowed_patcher(patcher_modules())
        new_text = describe(new)
        caller, call = caller_of(module) if where and not late else (None, None)
        by = f" by {where} ({function})" if where and not late else ""
        if caller:
            by += f" called from {caller}"
        message = f"{seal.name} {what if what != 'replaced' else 'replaced by ' + new_text}{by}"
        watching = self.table.watching
        if late and not watching:
            message += f" (found at {how}; the patcher is not known " + (
                f"on Python {sys.version_info[0]}.{sys.version_info[1]} without watchers)" if not WATCHERS
                else "without pyward's native extension)")
        elif late:
            message += f" (found at {how})"
        details = {"target": seal.name, "old": describe(old), "new": new_text, "change": what,
                   "detected": how, "patcher_module": module, "caller": caller, "why": seal.why}
        if allowed:
            _emit(self.session.journal, "tamper", "authorised", seal.name, severity="info", where=where or "",
                  function=function, message=f"{message} (allowed patcher {allowed})", details=details)
            self.accept(seal, new, late)
            return
        response = ""
        if self.fail_closed:
            response = " => stopping the run (--fail-closed)"
            self.stop_now = True
            self.disarm()
            self.reported[seal.name] = new  # the check at exit must not report it again
        elif self.restore:
            response = " => restored"
            self.to_restore.append(seal)
            self.disarm()
        elif late:
            self.table.reseal(seal, new)  # report each change once
        else:
            self.reported[seal.name] = new
        burst = self.burst
        if burst is not None and burst.same_call(module, caller, call):
            burst.names.append(seal.name)
            details["shown_with"] = burst.first  # the console shows it in the burst's line
        else:
            self.end_burst()
            if caller is not None and call is not None and not self.fail_closed:
                self.burst = Burst(module, caller, call, seal.name, response)
                self.session.journal.settle = self.settle_burst
        _emit(self.session.journal, "tamper", "alert", seal.name, severity="alert", where=where or "",
              function=function, message=message + response, details=details)
        if not (self.restore or self.fail_closed):
            return
        if late:  # a check point, not inside the change: act now
            self.apply_restores()
            if self.stop_now:
                self.stop_run()
        elif watching:
            self.native.tamper_schedule()  # a watcher may not write the dict it reports on
        elif self.fail_closed:  # 3.11, inside the audit event of the change: refuse it
            self.stop_now = False
            self.to_restore.clear()
            raise TamperError(f"{seal.name}: {what} refused by pyward (--fail-closed)")
        # 3.11 and --restore: the change has not happened yet; the next check puts the original back

    def settle_burst(self) -> None:
        """Before the journal's next event: the burst's line, once the program's call has returned."""
        burst = self.burst
        if burst is None or not burst.is_open():
            self.end_burst()

    def end_burst(self) -> None:
        """One console line for a burst's changes after the first (the journal has each)."""
        burst, self.burst = self.burst, None
        journal = self.session.journal
        if journal.settle is not None:
            journal.settle = None
        if burst is None or len(burst.names) < 2:
            return
        line = burst.line()
        for sink in journal.sinks:
            if sink.console:
                sink.say(line, "alert")

    def reverted(self, seal: Seal, late: bool = False) -> None:
        """The sealed object is back (a patcher undoing its patch): news, not an alert."""
        where, function, _ = patcher() if not late else (None, None, "")
        _emit(self.session.journal, "tamper", "reverted", seal.name, severity="info", where=where or "",
              function=function, message=f"{seal.name} is the sealed original again"
              + (f" ({where})" if where else ""), details={"target": seal.name})
        if late:
            self.table.reseal(seal, seal.first)
        else:
            self.reported.pop(seal.name, None)
            seal.original, seal.fingerprint = seal.first, fingerprint(seal.first)
            self.table.record(seal)

    def accept(self, seal: Seal, new: Any, late: bool) -> None:
        """The change stands: the seal follows it (now, or once it has landed)."""
        if late:
            self.table.reseal(seal, new)
        else:
            self.reported[seal.name] = new

    def class_swapped(self, module: Any, new: Any, late: bool = False) -> bool | str:
        """A sealed module's __class__ swapped: attribute lookups on it no longer come
        from its namespace (a __getattribute__ can hand out anything), so the seals of
        that module stop meaning anything.  An alert; refused under --restore and
        --fail-closed when it is seen as it happens."""
        name = f"{getattr(module, '__name__', '?')}.__class__"
        where, function, _ = patcher() if not late else (None, None, "")
        response = ""
        verdict: bool | str = True
        if not late and self.fail_closed:
            response, verdict = " => refused (--fail-closed)", f"{name} is sealed by pyward (--fail-closed); " \
                                                                  f"the change at {where or '?'} was refused"
        elif not late and self.restore:
            response, verdict = " => refused (--restore)", False
        else:
            self.class_reported.add(id(module))  # the swap stands: reported once
        _emit(self.session.journal, "tamper", "alert", name, severity="alert", where=where or "", function=function,
              message=f"{name} swapped to {describe(new)}" + (f" by {where} ({function})" if where else "")
                      + (" (found at a check)" if late else "") + response,
              details={"target": name, "old": "<type module>", "new": describe(new), "change": "class swapped",
                       "detected": "check" if late else "setattr"})
        return verdict

    def module_replaced(self, name: str, old: Any, new: Any) -> None:
        where, function, _ = patcher()
        _emit(self.session.journal, "tamper", "alert", f"sys.modules[{name!r}]", severity="alert",
              where=where or "", function=function, message=f"sys.modules[{name!r}] replaced by {describe(new)}",
              details={"target": name, "new": describe(new)})

    def table_altered(self, altered: list[str], when: str) -> None:
        _emit(self.session.journal, "tamper", "alert", "pyward.tamper.seals", severity="alert", where="",
              message=f"the tamper engine's seal table was altered ({len(altered)} seals dropped or rewritten: "
                      f"{', '.join(sorted(altered)[:5])}{', ...' if len(altered) > 5 else ''}); found at check "
                      f"at {when}, the seals are put back",
              details={"target": "pyward.tamper.seals", "seals": sorted(altered), "change": "table altered",
                       "detected": f"check at {when}"})

    # -- response -------------------------------------------------------------------

    def apply_restores(self) -> None:
        """Put originals back, exactly: the raw namespace entry, latest change first."""
        todo, self.to_restore = self.to_restore, []
        self.restoring = True
        try:
            for seal in reversed(todo):
                put_back(seal, self.native)
        finally:
            self.restoring = False

    def stop_run(self) -> None:
        exit_at_once(EXIT_STATUS_FAIL_CLOSED, self.session, "stopped by the tamper engine (--fail-closed)")
