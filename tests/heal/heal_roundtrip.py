"""Round-trip harness for guard synthesis, on real standard-library modules.

    python heal_roundtrip.py MODULE TESTMODULE

Compiles MODULE's source, and in every function of it (methods, nested
functions, lambdas, comprehensions, the module body) asks the real analysis
for a guard at every instruction where one could apply: an attribute load
(null_guard), a subscript (key / index / subscript guards and chains), a
division (division_guard), `+` (str_coerce_guard), a call (callable_guard,
and type_coercion_guard / file_guard where the callee is int, float or
open).  All guards of a function are synthesised at once with the real
synthesis, so the verification gate checks them; the harness then checks
again, independently, that the instructions outside the guards are the
original ones.  The patched module replaces the real one in sys.modules and
the module's own CPython tests (TESTMODULE, from the `test` package) run
against it.

The guards' helpers are the real ones, with one change: when a guard would
fire (the original instruction is about to raise), the harness counts it
and lets the original exception happen, because the stdlib raises and
catches these exceptions on purpose and its tests assert them.  Every other
call must return its slot unchanged: that is the "valid inputs behave
exactly as before" promise, checked on every value the test suite sends
through the guarded instructions.

Prints one JSON object: counts of functions, guards (per kind), refusals,
guard executions, would-fire events, helper contract violations, test results.
"""
from __future__ import annotations

import builtins
import dis
import importlib
import importlib.util
import io
import json
import sys
import types
import unittest

from pyward.heal import fingerprint
from pyward.heal import guards as guards_module
from pyward.heal.analyse import Unhealable, analyse, instructions
from pyward.heal.guards import Guard, helper
from pyward.heal.recovery import plan
from pyward.heal.synth import RefusedPatch, synthesise

STATS: dict = {"functions": 0, "guarded_functions": 0, "guards": {}, "recoveries": {}, "refused": [], "executions": 0,
               "would_fire": 0, "violations": [],
               "shapes_recognised": 0, "shape_mismatches": []}


def candidate_exceptions(instr: dis.Instruction, n: int) -> list[BaseException]:
    """The crashes a guard at `instr` could heal (one per instruction, varied by position)."""
    op = instr.opname
    if op in ("LOAD_ATTR", "LOAD_METHOD"):
        return [AttributeError("'NoneType' object has no attribute 'x'")]
    if op == "BINARY_SUBSCR":
        return [[KeyError("k"), IndexError("list index out of range"),
                 TypeError("'NoneType' object is not subscriptable")][n % 3]]
    if op == "BINARY_OP":
        return [ZeroDivisionError("division by zero"), TypeError('can only concatenate str (not "int") to str')]
    if op in ("CALL", "PRECALL"):
        return [TypeError("'NoneType' object is not callable"), ValueError("invalid literal"),
                FileNotFoundError("missing")]
    return []


class FakeFrame:
    """What analyse reads from a frame: the module's globals for callee names."""

    def __init__(self, space: dict) -> None:
        self.f_locals: dict = {}
        self.f_globals = space
        self.f_builtins = vars(builtins)


SHAPES: dict[str, tuple[str, str]] = {}


def check_shape_registry(code: types.CodeType, index: int, exc: BaseException, frame: FakeFrame, site) -> None:
    """Every crash whose shape was seen before (in any function) must get,
    from the registry alone, exactly the site the full analysis found."""
    instrs = instructions(code)
    key = fingerprint.shape(instrs, index, exc)
    if key is None:
        return
    if key in SHAPES:
        STATS["shapes_recognised"] += 1
        again = fingerprint.relocate(SHAPES[key][0], code, instrs, index, frame)
        if again is None or again.to_json() != site.to_json() or again.source != site.source:
            STATS["shape_mismatches"].append(f"{code.co_qualname} #{index} vs {SHAPES[key][1]}: "
                                             f"{again and again.to_json()} != {site.to_json()}"[:300])
        return
    stored = fingerprint.template(site, index, instrs)
    if stored is not None:
        SHAPES[key] = (stored, f"{code.co_qualname} #{index}")


def sites_for(code: types.CodeType, space: dict) -> list:
    sites, taken = [], set()
    frame = FakeFrame(space)
    for n, instr in enumerate(instructions(code)):
        for exc in candidate_exceptions(instr, n):
            try:
                site = analyse(code, instr.offset, exc, frame)
            except Unhealable:
                continue
            check_shape_registry(code, n, exc, frame, site)
            links = [site, *site.extra]
            if any((link.index, link.kind) in taken for link in links):
                continue
            taken.update((link.index, link.kind) for link in links)
            sites.append(site)
    return sites


def checking_helper(kind: str, guard: Guard, detail: str, method: bool):
    real = helper(kind, guard, detail, method)

    def check(*slots):
        STATS["executions"] += 1
        before = guard.hits
        try:
            result = real(*slots)
        except BaseException as exc:  # a helper must never raise
            STATS["violations"].append(f"{kind} helper raised {type(exc).__name__}: {exc}")
            return slots[0]
        if guard.hits != before:
            STATS["would_fire"] += 1
            return slots[0]  # let the original instruction raise, as the stdlib expects
        if result is not slots[0] and kind in ("type_coercion_guard", "file_guard"):
            return watched_wrapper(guard, result, slots[0])  # int/float/open behind a guarded wrapper
        if isinstance(result, guards_module._Lookup) and result.container is slots[0]:
            return WatchedLookup(guard, result)  # a mapping's own __getitem__, through the guard
        if result is not slots[0]:
            STATS["violations"].append(f"{kind} changed a valid input: {slots[0]!r} -> {result!r}"[:200])
        return result
    return check


class WatchedLookup:
    """A guard's lookup through a mapping other than a dict, except that where
    it would fall back the mapping's KeyError goes on (and the harness counts it)."""

    def __init__(self, guard: Guard, lookup) -> None:
        self.guard, self.lookup = guard, lookup

    def __getitem__(self, key):
        before = self.guard.hits
        value = self.lookup[key]
        if self.guard.hits != before:
            STATS["would_fire"] += 1
            return self.lookup.container[key]
        return value


def watched_wrapper(guard: Guard, wrapper, original):
    """The guarded int/float/open, except that where it would fall back the
    original raises (and the harness counts it)."""
    def call(*args, **kwargs):
        before = guard.hits
        value = wrapper(*args, **kwargs)
        if guard.hits != before:
            STATS["would_fire"] += 1
            return original(*args, **kwargs)
        return value
    return call


def guard_code(code: types.CodeType, space: dict) -> types.CodeType:
    consts = [guard_code(c, space) if isinstance(c, types.CodeType) else c for c in code.co_consts]
    code = code.replace(co_consts=tuple(consts))
    STATS["functions"] += 1
    sites = []
    for site in sites_for(code, space):  # each with the recovery a heal would give it (recovery.py)
        try:
            site.plan = plan(code, site)
        except Unhealable:
            continue
        sites.append(site)
        STATS["recoveries"][site.plan.recovery] = STATS["recoveries"].get(site.plan.recovery, 0) + 1
    if not sites:
        return code
    # the helpers give the fallback value (where they would fire, the harness lets the original raise): the code
    # has the recovery handlers, which the module's own exceptions go through
    guards = {id(s): Guard(s.kind, s.operand, "none", None) for s in sites}
    try:
        patched, inserted = synthesise(code, sites, lambda s, link: checking_helper(link.kind, guards[id(s)],
                                                                                    link.detail, link.method))
    except RefusedPatch as refusal:
        STATS["refused"].append(f"{code.co_qualname}: {refusal}")
        return code
    independent_check(code, patched, inserted)
    STATS["guarded_functions"] += 1
    for s in sites:
        STATS["guards"][s.kind] = STATS["guards"].get(s.kind, 0) + 1
    return patched


def independent_check(original: types.CodeType, patched: types.CodeType, inserted: list[int]) -> None:
    """Outside the inserted instructions: same opcodes, same non-jump arguments, same lines."""
    skip = set(inserted)
    kept = [ins for n, ins in enumerate(instructions(patched)) if n not in skip]
    before = instructions(original)
    jumps = set(dis.hasjrel) | set(dis.hasjabs)
    assert len(kept) == len(before), (original.co_qualname, len(kept), len(before))
    for a, b in zip(before, kept):
        assert a.opname == b.opname, (original.co_qualname, a, b)
        if a.opcode not in jumps and not isinstance(a.argval, types.CodeType):
            assert a.argval == b.argval or a.argval != a.argval, (original.co_qualname, a, b)
        assert a.positions == b.positions, (original.co_qualname, a, b)
    assert patched.co_exceptiontable != b"" or original.co_exceptiontable == b""


def main(module_name: str, test_name: str) -> None:
    spec = importlib.util.find_spec(module_name)
    assert spec is not None and spec.origin and spec.origin.endswith(".py"), spec
    source = spec.loader.get_source(module_name)  # type: ignore[union-attr]
    code = compile(source, spec.origin, "exec")
    module = importlib.util.module_from_spec(spec)
    space = module.__dict__
    # callee names resolve in the module's globals: import the real module once for them
    space.update({k: v for k, v in vars(importlib.import_module(module_name)).items() if not k.startswith("__")})
    patched = guard_code(code, space)
    for name in [k for k in space if not k.startswith("__")]:
        del space[name]
    sys.modules[module_name] = module
    exec(patched, space)
    if "." in module_name:
        parent, _, child = module_name.rpartition(".")
        setattr(sys.modules[parent], child, module)
    sys.modules.pop(test_name, None)
    tests = importlib.import_module(test_name)
    suite = unittest.defaultTestLoader.loadTestsFromModule(tests)
    result = unittest.TextTestRunner(stream=io.StringIO(), verbosity=0).run(suite)
    STATS["tests"] = result.testsRun
    STATS["test_failures"] = [f"{t}: {tb.strip().splitlines()[-1]}" for t, tb in result.failures + result.errors]
    STATS["skipped"] = len(result.skipped)
    print(json.dumps(STATS))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
