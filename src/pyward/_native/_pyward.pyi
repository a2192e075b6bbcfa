"""Types of pyward's C extension, pyward._native._pyward (the sources are the *.c files beside this stub).

Every public name here exists in the built module and the other way round (tests/test_native_stub.py).
Names starting with an underscore are for typing only.  The functions take positional arguments only.
"""

import sys
from collections.abc import Callable, Iterable
from os import PathLike
from types import CodeType, FunctionType, ModuleType
from typing import Any, Final, Literal, Self, TypedDict, TypeVar, TypeVarTuple, Unpack, final, overload

_T = TypeVar("_T")
_Ts = TypeVarTuple("_Ts")

ABI: Final[int]

# --- audit.c: the process-wide audit hook --------------------------------------------------------------------------

class _AuditState(TypedDict):
    registered: bool
    subscribers: int
    names: int
    dispatched: int

def audit_subscribe(names: Iterable[str], callback: Callable[[str, tuple[Any, ...]], object], /) -> None: ...
def audit_state() -> _AuditState: ...

# --- sandbox.c: the sandbox's native half ------------------------------------------------------------------------

# decide(event, args): None allows, "message" denies, ("message",) denies unless a user hook allows,
# (message, explicit) denies an import with ImportDenied.
_Verdict = str | tuple[str] | tuple[str, bool] | None
# the program's install_hook() callback: "allow" or True, "deny" or False, None, or raise
_UserHook = Callable[[str, tuple[Any, ...]], object]
# emit(kind, event, args, reason): journals the user hook's verdicts
_HookEmit = Callable[[str, str, tuple[Any, ...], str], object]

class _HookState(TypedDict):
    hook: _UserHook | None
    journaled: bool
    policy: bool
    locked: bool

def sandbox_install(
    names: Iterable[str],
    decide: Callable[[str, tuple[Any, ...]], _Verdict],
    denied_type: type[BaseException],
    fail_closed: bool,
    subinterpreters: bool = False,
    import_denied: type[BaseException] = ...,
    hook_emit: _HookEmit | None = None,
    pending: list[Any] | None = None,
    flush: Callable[[], None] | None = None,
    /,
) -> None: ...
def sandbox_set_hook(
    hook: _UserHook | None, names: Iterable[str] | None = None, prefixes: Iterable[str] | None = None, /
) -> None: ...
def sandbox_hook_journal(emit: _HookEmit, denied_type: type[BaseException], /) -> bool: ...
def sandbox_hook_state() -> _HookState: ...
def sandbox_lock_hook() -> None: ...
def sandbox_installed() -> bool: ...
def sandbox_check(event: str, args: tuple[Any, ...], /) -> None: ...

# a guard's transform(args, kwargs) -> (args, kwargs) and after(args, kwargs, result) -> result
_Transform = Callable[[tuple[Any, ...], dict[str, Any] | None], tuple[tuple[Any, ...], dict[str, Any] | None]]
_After = Callable[[tuple[Any, ...], dict[str, Any] | None, Any], Any]

def guard(
    event: str | None,
    original: Callable[..., Any],
    transform: _Transform | None = None,
    after: _After | None = None,
    paths: tuple[tuple[int, str | None] | tuple[int | None, str | None, str], ...] | None = None,
    /,
) -> Callable[..., Any]: ...
def guard_method(type: type, name: str, guard: Callable[..., Any], /) -> bool: ...
def sqlite_bind(connection_type: type, /) -> bool: ...
def sqlite_arm(connection: object, /) -> bool: ...
def sqlite_authorizer(inner: Callable[..., Any] | None, /) -> Callable[..., int]: ...
def untrack(*objects: object) -> None: ...
def realpath(path: str | bytes | PathLike[str] | PathLike[bytes], /) -> str | None: ...
def env_get(name: str, listing: bool = False, /) -> str | None: ...
def take_env_reader() -> Callable[[str], str | None]: ...
def take_quiet_dirs(inodes: tuple[int, ...], /) -> tuple[dict[str, tuple[Any, Any]], dict[str, int]]: ...
def resolve(host: str, family: int, /) -> list[str]: ...
def landlock_abi() -> int: ...
def landlock_restrict(
    fs: int, net: int, paths: list[tuple[str, int]], ports: list[tuple[int, int]], scoped: int = 0, /
) -> list[str]: ...
def env_names() -> list[str]: ...

# reach.c: what keeps pyward's objects out of the program's reach
def top(fn: Callable[[Unpack[_Ts]], _T], /, *args: Unpack[_Ts]) -> _T: ...
def sealed(fn: Callable[..., _T], /) -> Callable[..., _T]: ...  # a callable with no way back to fn

# script.c: the program's source compiled as python compiles a script
def compile_script(source: str | bytes, filename: str, /) -> CodeType: ...

# shield.c: while pyward's Python runs, no collection and the program's signal handlers deferred
def shield_signals(module: ModuleType, /) -> bool: ...

# --- tamper.c: watchers, locked modules and the import gate -------------------------------------------------------

@overload
def tamper_import_gate(callback: None, /) -> None: ...
@overload
def tamper_import_gate(
    callback: Callable[[str, tuple[Any, ...]], object],
    seals: tuple[tuple[dict[Any, Any], str, object], ...],
    lists: tuple[tuple[str, list[Any]], ...],
    absent: tuple[str, ...],
    modules: dict[str, ModuleType],
    get_tool: Callable[[int], object] | None,
    tools: tuple[object, ...],
    running: tuple[ModuleType, ...] = (),
    /,
) -> None: ...

# report(kind, container, key, old, new)
def tamper_install(
    report: Callable[[str, object, object, object, object], object],
    pending: Callable[[], object],
    codes: Iterable[CodeType],
    /,
) -> bool: ...
def tamper_seal(namespace: dict[Any, Any], key: object, entry: tuple[Any, ...], /) -> None: ...
def tamper_sealed() -> list[tuple[Any, ...]]: ...
def tamper_stop() -> None: ...
def tamper_watch(namespace_or_function: dict[Any, Any] | FunctionType, /) -> bool: ...
def tamper_watch_key(name: str, /) -> None: ...
def tamper_watch_modules(modules: dict[str, ModuleType], names: set[str] | None, /) -> bool: ...
def tamper_unwatch(namespace_or_function: dict[Any, Any] | FunctionType, /) -> None: ...
def tamper_schedule() -> None: ...
def tamper_lock_install(
    judge: Callable[[ModuleType, str, object], bool | str],
    missing: object,
    error: type[BaseException],
    awaited: set[str],
    /,
) -> None: ...
def tamper_lock(module: ModuleType, /) -> None: ...
def tamper_quiet(fn: Callable[[Unpack[_Ts]], _T], /, *args: Unpack[_Ts]) -> _T: ...

# --- monitor.c: sys.monitoring callbacks (3.12+) ------------------------------------------------------------------

if sys.version_info >= (3, 12):
    def monitor_unwind(code: CodeType, offset: int, exception: BaseException, /) -> None: ...
    def monitor_handled(code: CodeType, offset: int, exception: BaseException, /) -> None: ...
    @overload
    def monitor_setup(classify: None, on_escape: None, on_caught: None, /) -> None: ...
    @overload
    def monitor_setup(
        classify: Callable[[str], bool],
        on_escape: Callable[[BaseException], object],
        on_caught: Callable[[BaseException], object],
        /,
    ) -> None: ...
    def monitor_arm(delta: int, /) -> int: ...

# --- guards.c: a heal guard's helper whose usual case is answered in C --------------------------------------------

GUARD_PRESENT: Final[Literal[0]]
GUARD_NOT_NONE: Final[Literal[1]]
GUARD_NONZERO: Final[Literal[2]]
GUARD_NOT_STR_LEFT: Final[Literal[3]]

@final
class FastGuard:
    def __new__(cls, test: int, slow: Callable[..., Any]) -> Self: ...
    @property
    def slow(self) -> Callable[..., Any]: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...

@final
class Boundary:
    @property
    def __wrapped__(self) -> Callable[..., Any]: ...
    def __new__(cls, serve: Callable[..., Any], /) -> Self: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...
    def __get__(self, instance: object, owner: type | None = None, /) -> Any: ...
