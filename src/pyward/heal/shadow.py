"""`--shadow`: where does a guard's fallback go?

When a guard fires for the first time, the fallback it produced is followed
forward through the bytecode, statically, from the guarded instruction: on
the stack (simulated slot by slot), into a local variable and its next
load, out through `return` into the caller that is waiting for it (the
live frame stack says which), up to a few hops.  The walk ends at the
instruction that consumes the value, which is what the warning names:

- output: an argument of `print()`, or of a `.write()` call;
- an operation that fails on it: an attribute, a subscript, an arithmetic
  operator, a call (for None, each of these raises);
- a check (`is None`, a comparison, a truth test): the program handles it,
  nothing is said;
- anything else (passed to another function, formatted into a string, a
  branch the walk does not follow) is named as where the trail ends.

It is a static walk over straight-line code: it follows one path (the next
load of a variable, in instruction order), not every path, and says so
("first use").  A second, runtime signal backs it: under --shadow, a later
crash on a None (or zero) value while a guard has produced that value is
reported with the guards that may have caused it.
"""
from __future__ import annotations

import dis

from .analyse import instructions, producer, pushes, source_text
from .paths import short_path as _short

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import CodeType, FrameType
    from typing import Any

HOPS = 6
_CHECKS = {"POP_JUMP_IF_NONE", "POP_JUMP_IF_NOT_NONE", "POP_JUMP_FORWARD_IF_NONE", "POP_JUMP_FORWARD_IF_NOT_NONE",
           "POP_JUMP_BACKWARD_IF_NONE", "POP_JUMP_BACKWARD_IF_NOT_NONE", "IS_OP", "COMPARE_OP", "TO_BOOL",
           "POP_JUMP_IF_FALSE", "POP_JUMP_IF_TRUE", "POP_JUMP_FORWARD_IF_FALSE", "POP_JUMP_FORWARD_IF_TRUE",
           "POP_JUMP_BACKWARD_IF_FALSE", "POP_JUMP_BACKWARD_IF_TRUE", "JUMP_IF_FALSE_OR_POP", "JUMP_IF_TRUE_OR_POP",
           "UNARY_NOT", "CONTAINS_OP"}
_STORES = {"STORE_FAST", "STORE_NAME", "STORE_DEREF", "STORE_GLOBAL"}
_LOADS = {"LOAD_FAST", "LOAD_FAST_CHECK", "LOAD_NAME", "LOAD_DEREF", "LOAD_GLOBAL", "LOAD_CLASSDEREF"}
_CALLS = {"CALL", "CALL_KW"}
_OUTPUT = {"print", "write", "writelines"}


class Trail:
    """Where a fallback went: hops (readable steps) and the end."""

    def __init__(self) -> None:
        self.hops: list[str] = []
        self.end = ""
        self.worry = False  # output, or an operation that fails on the fallback

    def text(self) -> str:
        return " -> ".join([*self.hops, self.end])


def follow(code: CodeType, index: int, depth: int, value: Any, frame: FrameType | None,
           original_index: Any = None) -> Trail:
    """Follow the slot `depth` (1 = top) as seen just after instruction
    `index` of `code` runs; `frame` runs `code` (its callers give the
    `return` hops).  `original_index(frame, code) -> (code, index)` maps a
    live caller frame to its original code and the index of its call."""
    trail = Trail()
    instrs = instructions(code)
    n = index + 1
    for _ in range(HOPS):
        step = _consumer(instrs, n, depth)
        if step is None:
            trail.end = "the trail ends (a branch or an instruction the walk does not follow)"
            return trail
        n, depth = step
        instr = instrs[n]
        line = instr.positions.lineno if instr.positions is not None else None
        where = f"{_short(code.co_filename)}:{line}"
        name = instr.opname
        if name in _CHECKS:
            trail.end = f"checked at {where} (the program handles it)"
            return trail
        if name in _STORES:
            var = instr.argval
            load = next((m for m in range(n + 1, len(instrs)) if (instrs[m].opname in _LOADS and
                         instrs[m].argval == var) or (instrs[m].opname == "LOAD_FAST_LOAD_FAST" and
                                                      var in instrs[m].argval)), None)
            if load is None:
                trail.end = f"stored in {var} at {where}, not read again"
                return trail
            trail.hops.append(f"{var} ({where})")
            pair = instrs[load].opname == "LOAD_FAST_LOAD_FAST"  # 3.13: two locals, the first one deeper
            n, depth = load + 1, 2 if pair and instrs[load].argval[0] == var else 1
            continue
        if name in ("RETURN_VALUE",):
            caller = frame.f_back if frame is not None else None
            if caller is None or code.co_flags & 0x2a0 or original_index is None:  # generator/coroutine: no caller
                trail.end = f"returned at {where}"
                return trail
            mapped = original_index(caller)
            if mapped is None:
                trail.end = f"returned at {where} to code pyward does not follow"
                return trail
            trail.hops.append(f"returned to {caller.f_code.co_qualname}()")
            code, call = mapped
            instrs, frame, n, depth = instructions(code), caller, call + 1, 1
            continue
        if name in _CALLS:
            nargs = (instr.arg or 0) + (1 if name == "CALL_KW" else 0)
            callee = _callee(code, instrs, n, nargs)
            if depth > nargs:  # the value is the callable
                trail.end = f"called at {where}: {'fails' if value is None else 'may fail'}"
                trail.worry = True
                return trail
            if callee.rsplit(".", 1)[-1] in _OUTPUT:
                trail.end = f"output by {callee}() at {where}"
                trail.worry = True
                return trail
            trail.end = f"passed to {callee}() at {where}"
            return trail
        if name in ("LOAD_ATTR", "LOAD_METHOD"):
            attr = instr.argval[1] if isinstance(instr.argval, tuple) else instr.argval
            fails = not hasattr(value, attr)
            failure = f": fails ({type(value).__name__} has no .{attr})" if fails else ""
            trail.end = f".{attr} at {where}{failure}"
            trail.worry = fails
            return trail
        if name in ("BINARY_SUBSCR", "BINARY_OP", "STORE_SUBSCR", "UNARY_NEGATIVE", "UNARY_INVERT", "GET_ITER"):
            op = instr.argrepr or name.lower()
            fails = value is None
            trail.end = f"used in `{op}` at {where}{': fails on None' if fails else ''}"
            trail.worry = fails
            return trail
        if name in ("FORMAT_VALUE", "FORMAT_SIMPLE", "CONVERT_VALUE", "BUILD_STRING"):
            trail.end = f"formatted into a string at {where}"
            trail.worry = True
            return trail
        trail.end = f"used by {name} at {where}"
        return trail
    trail.end = "the trail is longer than pyward follows"
    return trail


def fallback_position(site: Any, instrs: list[dis.Instruction]) -> tuple[int, int] | None:
    """(index, depth): the fallback is slot `depth` just after instruction
    `index` runs.  Guards on a callable (calling None, int(), open(), a
    method of None) make the call itself give the fallback."""
    last = max([site.index, *(link.index for link in site.extra)])
    if site.kind in ("callable_guard", "type_coercion_guard", "file_guard") or site.method:
        if site.method:  # the method load: [method, self] (3.13: [callable, self]) just after it
            call = _consumer(instrs, site.index + 1, 2)
        else:  # the guard sits before the call sequence, the callable at site.depth
            call = _consumer(instrs, site.index, site.depth)
        if call is None or instrs[call[0]].opname not in _CALLS:
            return None
        return call[0], 1
    return last, 1


def _consumer(instrs: list[dis.Instruction], n: int, depth: int) -> tuple[int, int] | None:
    """The first instruction from `n` on that consumes slot `depth`, and the
    slot's position among its inputs (1 = top)."""
    while n < len(instrs):
        instr = instrs[n]
        if instr.is_jump_target and n > 0:
            return None
        name = instr.opname
        if name == "COPY":
            depth += 1
        elif name == "SWAP":
            k = instr.arg or 0
            depth = k if depth == 1 else 1 if depth == k else depth
        elif name in ("NOP", "RESUME", "KW_NAMES"):
            pass
        elif name == "PRECALL":  # 3.11: PRECALL n + CALL n pop n + 2 slots and push the result
            if depth <= (instr.arg or 0) + 2:
                return n + 1, depth
            depth -= (instr.arg or 0) + 1
            n += 1  # past the CALL
        else:
            count = pushes(instr)
            if count is None or name.startswith("JUMP") and name not in _CHECKS:
                return None
            effect = dis.stack_effect(instr.opcode, instr.arg if instr.opcode >= dis.HAVE_ARGUMENT else None,
                                      jump=False)
            pops = count - effect
            if depth <= pops:
                return n, depth
            depth += effect
        n += 1
    return None


def _callee(code: CodeType, instrs: list[dis.Instruction], call: int, nargs: int) -> str:
    """The source of the callable of a call with `nargs` slots of arguments:
    below them sit [NULL, callable] or [method, self] (3.11/3.12) or
    [callable, NULL or self] (3.13); the deeper slot names it unless it is
    a PUSH_NULL."""
    if call > 0 and instrs[call - 1].opname == "PRECALL":  # 3.11: the slots as PRECALL sees them
        call -= 1
    try:
        n, _ = producer(instrs, call, nargs + 2)
        if instrs[n].opname == "PUSH_NULL":
            n, _ = producer(instrs, call, nargs + 1)
        return source_text(code, instrs[n])
    except Exception:
        return "a function"

