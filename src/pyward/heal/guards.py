"""The runtime half of a guard: a helper the patched bytecode calls.

A guard is a few instructions inserted before the failing instruction (see
synth.py): they call `helper(slots...)` and put its result in place of one
stack slot (the object, container, left operand or callable).  The helper
returns that slot unchanged unless the original instruction would raise the
healed exception; only then does it return a stand-in that makes the
instruction yield the fallback.  So valid inputs take exactly the original
path, and a guard never hides any other error.  Helpers never raise.
"""
from __future__ import annotations

import builtins
import io
import sys

from .._native import native
from .escape import escapes

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Callable

#: What each kind guards against and what its fallbacks mean (README table).
DESCRIPTIONS: dict[str, tuple[str, str]] = {
    "null_guard": ("attribute of None (`x.attr`, `x.method()`)",
                   "the attribute (or the method call) gives the fallback"),
    "key_guard": ("missing key in a dict (`d[k]`)", "the subscript gives the fallback"),
    "subscript_guard": ("subscript of None (`x[k]` with x None)", "the subscript gives the fallback"),
    "chain_subscript_guard": ("nested subscripts through None or missing keys (`d['a']['b']`)",
                              "the whole chain gives the fallback"),
    "index_guard": ("index out of range (`xs[i]`)", "the subscript gives the fallback"),
    "type_coercion_guard": ("`int(x)` / `float(x)` of bad input", "the conversion gives the fallback"),
    "division_guard": ("division or modulo by zero (`/`, `//`, `%`)", "the division gives the fallback (never x)"),
    "str_coerce_guard": ("str + non-str (`'n=' + 5`)", "the concatenation gives the fallback"),
    "file_guard": ("`open()` of a missing file", "open() gives the fallback"),
    "callable_guard": ("calling None (`cb()` with cb None)", "the call gives the fallback"),
}


def fallback_value(strategy: str, like: Any = None) -> Any:
    if strategy == "zero":
        return 0.0 if like is builtins.float else 0
    if strategy == "empty":
        return ""
    return None


#: How the program goes on when a guard takes its fallback (recovery.py chooses, from where the value goes):
#: "value": the guarded operation gives the fallback; "skip": the statement is skipped; "return": the
#: function returns the fallback.
RECOVERIES = ("value", "skip", "return")


class Skip(BaseException):
    """Raised by a guard whose recovery is "skip" or "return": the handler
    synthesised around the guarded instruction (synth.py) catches it at once
    and goes to the next statement, or returns.  Never seen by the program."""


class Guard:
    """One inserted guard: its kind, fallback, recovery and a `fired(guard)`
    callback (the engine's: count, journal).  `hits` counts fallbacks in this
    process.  `catches` narrows the exception a wrapping guard takes over
    (type_coercion_guard: the ValueError or the TypeError it was made for)."""

    __slots__ = ("kind", "operand", "fallback", "fired", "hits", "label", "recovery", "catches")

    def __init__(self, kind: str, operand: str, fallback: str, fired: Callable[[Guard], None] | None,
                 label: str = "", recovery: str = "value", catches: str = "") -> None:
        self.kind, self.operand, self.fallback, self.fired = kind, operand, fallback, fired
        self.hits = 0
        self.label = label
        self.recovery = recovery
        self.catches = catches

    def take(self, kind: type[BaseException], frame: Any) -> bool:
        """About to fall back instead of letting python raise `kind`: only
        when nothing between the guarded code and pyward's boundary would
        catch it (escape.py).  Fires the guard; raises Skip for the
        statement/function recoveries; False: let python raise."""
        if not escapes(kind, frame):
            return False
        self.fire()
        if self.recovery != "value":
            raise Skip
        return True

    def fire(self) -> None:
        self.hits += 1
        if self.fired is not None:
            try:
                self.fired(self)  # the engine's: journals its own failures (HealEngine._fired)
            except Exception:  # a last resort: the guarded program must go on
                pass


class _StandIn:
    """Makes the guarded instruction produce `value` (and is consumed by it)."""

    __slots__ = ("value", "method", "left")

    def __init__(self, value: Any, method: bool = False, left: Any = None) -> None:
        self.value, self.method, self.left = value, method, left

    def __getattr__(self, name: str) -> Any:
        if self.method:
            value = self.value
            return lambda *args, **kwargs: value
        return self.value

    def __getitem__(self, key: Any) -> Any:
        return self.value

    def __truediv__(self, other: Any) -> Any:
        return self.value

    __floordiv__ = __mod__ = __truediv__

    def __add__(self, other: Any) -> Any:
        if self.left is not None:  # str_coerce_guard with the "str" fallback
            return self.left + str(other)
        return self.value


class _Lookup:
    """A mapping other than an exact dict (a custom `__getitem__`, `__missing__`):
    the subscript is made through this, once, and a KeyError it raises is
    the guard's to decide."""

    __slots__ = ("container", "guard", "value")

    def __init__(self, container: Any, guard: Guard, value: Any) -> None:
        self.container, self.guard, self.value = container, guard, value

    def __getitem__(self, key: Any) -> Any:
        try:
            return self.container[key]
        except KeyError:
            if not self.guard.take(KeyError, sys._getframe()):
                raise
        return self.value


_SEQUENCES = (list, tuple, str, bytes, bytearray, range)
_NUMBERS = (int, float, bool)
_Mapping = __import__("collections.abc").abc.Mapping
_NOT_STR = (int, float, bool, complex, type(None), list, tuple, dict, set, frozenset, bytes, bytearray)


_ABSENT = object()


def _static_attribute(obj: Any, name: str) -> Any:
    space = getattr(obj, "__dict__", None)
    if type(space) is dict and name in space:
        return space[name]
    for klass in type(obj).__mro__:
        if name in klass.__dict__:
            return klass.__dict__[name]
    return _ABSENT


def helper(kind: str, guard: Guard, detail: str = "", method: bool = False) -> Callable[..., Any]:
    """What the guard's instructions call for one site: the Python helper, its
    usual case answered in C when the extension is there (_native/guards.c:
    a key that is there, an object that is not None... goes on without a
    Python frame; every other call goes to the helper as it came)."""
    slow = _helper(kind, guard, detail, method)
    test = None if native is None or (kind == "callable_guard" and method) else _FAST.get(kind)
    return slow if test is None else native.FastGuard(getattr(native, test), slow)


#: The C test (_native/guards.c) that answers each kind's usual case.
_FAST = {"null_guard": "GUARD_NOT_NONE", "callable_guard": "GUARD_NOT_NONE", "key_guard": "GUARD_PRESENT",
         "subscript_guard": "GUARD_PRESENT", "index_guard": "GUARD_PRESENT", "chain_subscript_guard": "GUARD_PRESENT",
         "division_guard": "GUARD_NONZERO", "str_coerce_guard": "GUARD_NOT_STR_LEFT"}


def _helper(kind: str, guard: Guard, detail: str, method: bool) -> Callable[..., Any]:
    value = fallback_value(guard.fallback)

    if kind == "null_guard":
        def null_guard(obj: Any) -> Any:
            if obj is None and guard.take(AttributeError, sys._getframe()):
                return _StandIn(value, method)
            return obj
        return null_guard

    if kind == "callable_guard" and method:  # obj.name(...) where obj.name is None
        def callable_owner_guard(obj: Any) -> Any:
            try:  # a static lookup: no property or __getattr__ runs twice
                found = _static_attribute(obj, detail)
            except Exception:
                return obj
            if found is None and guard.take(TypeError, sys._getframe()):
                return _StandIn(value, True)
            return obj
        return callable_owner_guard

    if kind == "callable_guard":
        def callable_guard(function: Any) -> Any:
            if function is None and guard.take(TypeError, sys._getframe()):
                return lambda *args, **kwargs: value
            return function
        return callable_guard

    if kind in ("key_guard", "subscript_guard", "index_guard", "chain_subscript_guard"):
        catch_keys = kind in ("key_guard", "chain_subscript_guard")
        catch_index = kind in ("index_guard", "chain_subscript_guard")
        catch_none = kind in ("subscript_guard", "chain_subscript_guard")

        def subscript_guard(container: Any, key: Any) -> Any:
            try:
                if type(container) is dict and key in container:  # the usual case, first: every call pays
                    return container
                kind_of = type(container)
                raised: type[BaseException] = KeyError
                if container is None:
                    missing, raised = catch_none, TypeError
                elif kind_of is dict:
                    missing = catch_keys and key not in container
                elif kind_of in _SEQUENCES and type(key) is int:
                    missing, raised = catch_index and not -len(container) <= key < len(container), IndexError
                elif catch_keys and isinstance(container, dict) and kind_of.__getitem__ is dict.__getitem__ \
                        and not hasattr(kind_of, "__missing__"):  # OrderedDict, a plain subclass: dict's lookup
                    missing = not dict.__contains__(container, key)
                elif catch_keys and isinstance(container, _Mapping):  # its own __getitem__ decides
                    return _Lookup(container, guard, value)
                else:
                    missing = False
            except Exception:
                return container
            if missing and guard.take(raised, sys._getframe()):
                return _StandIn(value)
            return container
        subscript_guard.__name__ = kind
        return subscript_guard

    if kind == "division_guard":
        def division_guard(left: Any, right: Any) -> Any:
            if type(right) in _NUMBERS and type(left) in _NUMBERS and right == 0 and \
                    guard.take(ZeroDivisionError, sys._getframe()):
                return _StandIn(value)
            return left
        return division_guard

    if kind == "str_coerce_guard":
        coerce = guard.fallback == "str"

        def str_coerce_guard(left: Any, right: Any) -> Any:
            if type(left) is str and type(right) in _NOT_STR and guard.take(TypeError, sys._getframe()):
                return _StandIn(value, left=left if coerce else None)
            return left
        return str_coerce_guard

    if kind == "type_coercion_guard":
        originals = {builtins.int, builtins.float}
        wrappers = {}
        # the exception the guard was made for: int(None)'s TypeError is not int("abc")'s ValueError
        taken = {"ValueError": ValueError, "TypeError": TypeError}.get(guard.catches, (ValueError, TypeError))
        for convert in originals:
            def guarded(*args: Any, _convert: Any = convert, **kwargs: Any) -> Any:
                try:
                    return _convert(*args, **kwargs)
                except taken as exc:
                    if not guard.take(type(exc), sys._getframe()):
                        raise
                    return fallback_value(guard.fallback, _convert)
            wrappers[convert] = guarded

        def type_coercion_guard(function: Any) -> Any:
            return wrappers.get(function, function) if function in originals else function
        return type_coercion_guard

    if kind == "file_guard":
        def guarded_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
            try:
                return io.open(file, mode, *args, **kwargs)
            except FileNotFoundError as exc:
                if not guard.take(type(exc), sys._getframe()):
                    raise
                if guard.fallback == "empty" and "r" in mode and "+" not in mode:
                    return io.BytesIO() if "b" in mode else io.StringIO()
                return None

        def file_guard(function: Any) -> Any:
            return guarded_open if function is builtins.open or function is io.open else function
        return file_guard

    raise ValueError(kind)
