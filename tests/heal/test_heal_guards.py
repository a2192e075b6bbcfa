"""A guard's helper with its usual case answered in C (_native/guards.c) against the
Python helper alone: the same result, the same fires, for valid and failing inputs;
and the C part calls the Python helper for everything it is not sure of."""
from __future__ import annotations

import collections

import pytest

from pyward._native import native
from pyward.heal import guards


class BadKey:
    def __hash__(self):
        raise RuntimeError("no hash")


SUBSCRIPTS = [({"a": 1}, "a"), ({"a": 1}, "b"), ({}, BadKey()), ({}, ["unhashable"]), (None, "a"), ([1], 0),
              ([1], 5), ([1, 2], -2), ([1], -2), ((1,), 0), ((), 0), ([1], 2**70), ([1], True), ("abc", 1),
              ("abc", 9), (collections.OrderedDict(a=1), "a"), (collections.OrderedDict(a=1), "b"), ({1: 2}, True)]
CASES = {
    **{kind: SUBSCRIPTS for kind in ("key_guard", "subscript_guard", "index_guard", "chain_subscript_guard")},
    "null_guard": [(None,), (0,), ("",)],
    "callable_guard": [(None,), (len,)],
    "division_guard": [(1, 0), (1, 0.0), (1, -0.0), (1, 2), (1, 2.5), (True, False), (1, 2**100), (1, 0j),
                       ("a", 0), (None, 0), (1.5, 1)],
    "str_coerce_guard": [("a", 1), ("a", "b"), (1, "b"), (None, 1), ("a", None), ("a", [1])],
}


@pytest.fixture(autouse=True)
def _nothing_catches(monkeypatch):
    """These helpers are called from pytest, whose runner catches everything: a
    guard there would never fall back (escape.py).  Here the fallbacks are what
    is compared, so the stack is taken as one where the error would escape."""
    monkeypatch.setattr(guards, "escapes", lambda kind, frame: True)


def outcome(function, guard, args):
    result = function(*args)
    if isinstance(result, guards._StandIn):
        return "stand-in", result.value, guard.hits
    return "unchanged", result is args[0], guard.hits


@pytest.mark.parametrize("kind", sorted(CASES))
def test_the_c_usual_case_gives_what_the_python_helper_gives(kind):
    for args in CASES[kind]:
        fast_guard, slow_guard = (guards.Guard(kind, "x", "none", None) for _ in range(2))
        fast = guards.helper(kind, fast_guard)
        assert type(fast) is native.FastGuard
        slow = guards._helper(kind, slow_guard, "", False)
        assert outcome(fast, fast_guard, args) == outcome(slow, slow_guard, args), (kind, args)


def test_the_c_part_answers_only_what_it_is_sure_of_and_passes_the_rest_on_as_it_came():
    calls = []

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return "slow"

    present = native.FastGuard(native.GUARD_PRESENT, spy)
    box = {"a": 1}
    assert present(box, "a") is box and present([1], -1) is not None and calls == []
    assert present(box, "b") == "slow" and present(box, key="a") == "slow" and present(box) == "slow"
    assert calls == [((box, "b"), {}), ((box,), {"key": "a"}), ((box,), {})]
    assert native.FastGuard(native.GUARD_NOT_NONE, spy)(None) == "slow"
    assert native.FastGuard(native.GUARD_NONZERO, spy)(1, 0) == "slow"
    assert native.FastGuard(native.GUARD_NOT_STR_LEFT, spy)("a", 1) == "slow"
    assert len(calls) == 6
    assert repr(present).startswith("<pyward guard <function") and present.slow is spy
    with pytest.raises(ValueError):
        native.FastGuard(99, spy)
    with pytest.raises(ValueError):
        native.FastGuard(native.GUARD_PRESENT, None)


def test_a_method_call_guard_has_no_c_part():
    guard = guards.Guard("callable_guard", "x", "none", None)
    assert type(guards.helper("callable_guard", guard, "run", method=True)) is not native.FastGuard
