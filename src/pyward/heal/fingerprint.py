"""The crash-shape registry: a crash seen once is recognised elsewhere.

A crash's shape is the exception's class (with the few message forms the
analysis distinguishes: on None, not subscriptable, not callable, str
concatenation) and the instructions around the failing one, inside its
basic block: opcodes, with the arguments that change stack effects (call
argument counts, operators, the method/NULL bit) but not the names,
constants or locals.  Two crashes with the same shape have the same
failing-instruction/operand relationship, since the analysis reads nothing
else, so the guard site found for the first is the site for the second,
moved to the new instruction index.  Only the operand's name, the
attribute names and the line are read again from the new code; callees of
`int()`/`float()`/`open()` are checked again in the crashed frame.

The registry lives in the patch store (table `shapes`), so a shape learned
in one run, one worker or one function is recognised in the others.  A
shape whose template does not fit the new code (it cannot happen unless
the key is too coarse) is ignored and the full analysis runs.
"""
from __future__ import annotations

import dis
import json

from .._isolation import isolate_module
from ..digest import SHA256
from .analyse import PY, Site, _attr_name, _is_method_load, _runtime_value, operand_text

json = isolate_module(json)  # noqa: F811

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import CodeType
    from typing import Any

BACK = 40  # longest block prefix a shape covers
FORWARD = 16  # how far analyse._chained looks ahead
_NAMED = set(dis.hasname) | set(dis.hasconst) | set(dis.haslocal) | set(dis.hasfree) | set(dis.hasjrel) | \
    set(dis.hasjabs)
_MESSAGES = ("'NoneType' object is not subscriptable", "'NoneType' object is not callable", "can only concatenate str")


def _token(instr: dis.Instruction) -> str:
    mark = "^" if instr.is_jump_target else ""
    if instr.opcode in _NAMED:
        if instr.opname in ("LOAD_ATTR", "LOAD_GLOBAL"):  # the method / NULL bit changes the stack
            return f"{mark}{instr.opname}/{(instr.arg or 0) & 1}"
        return mark + instr.opname
    return f"{mark}{instr.opname}/{instr.arg}" if instr.arg is not None else mark + instr.opname


def _exception_shape(exc: BaseException) -> str:
    name = type(exc).__name__
    if isinstance(exc, AttributeError):
        return name + (":None" if getattr(exc, "obj", 0) is None else ":object")
    message = str(exc)
    return name + "".join(f":{m}" for m in _MESSAGES if message.startswith(m))


def window(instrs: list[dis.Instruction], index: int) -> tuple[int, int] | None:
    """[start, end) of everything the analysis can read for a crash at
    `index`: back to the start of the basic block (its walks never cross
    one), forward to the next jump target or FORWARD instructions.  None
    when the block is longer than BACK (no shape: the full analysis runs)."""
    start = index
    while start > 0 and not instrs[start].is_jump_target:
        start -= 1
        if index - start > BACK:
            return None
    end = index + 1
    while end < len(instrs) and end - index < FORWARD and not instrs[end].is_jump_target:
        end += 1
    return start, end


def shape(instrs: list[dis.Instruction], index: int, exc: BaseException) -> str | None:
    bounds = window(instrs, index)
    if bounds is None:
        return None
    start, end = bounds
    text = "|".join([f"{PY[0]}.{PY[1]}", _exception_shape(exc), str(index - start),
                     *(_token(instrs[n]) for n in range(start, end))])
    return SHA256(text.encode()).hexdigest()[:24]


def template(site: Site, index: int, instrs: list[dis.Instruction]) -> str | None:
    """The site, relative to the failing instruction; None if it reaches outside the shape's window."""
    bounds = window(instrs, index)
    if bounds is None:
        return None
    start, end = bounds
    used = [site.index, *(link.index for link in site.extra)]
    if site.source is not None:
        used.append(site.source[0])
    if site.callee is not None:
        used.append(site.callee)
    if not all(start <= n < end for n in used):
        return None
    data = site.to_json()
    data["index"] = site.index - index
    for link, extra in zip(site.extra, data["extra"]):
        extra["index"] = link.index - index
    data["source"] = [site.source[0] - index, site.source[1]] if site.source is not None else None
    data["callee"] = site.callee - index if site.callee is not None else None
    return json.dumps(data, sort_keys=True)


def relocate(stored: str, code: CodeType, instrs: list[dis.Instruction], index: int, frame: Any) -> Site | None:
    """The site of a known shape at `index` of `code`; None when it does not fit."""
    import builtins
    import io

    data = json.loads(stored)
    site = Site.from_json({**data, "index": data["index"] + index,
                           "extra": [{**x, "index": x["index"] + index} for x in data["extra"]]})
    for link in [site, *site.extra]:
        if not 0 <= link.index < len(instrs) or instrs[link.index].opname != link.opname:
            return None
        if link.kind == "null_guard" or (link.kind == "callable_guard" and link.method):
            link.detail = _attr_name(instrs[link.index])
            link.method = bool(_is_method_load(instrs[link.index]))
    if data["callee"] is not None:
        loader = instrs[data["callee"] + index]
        name = loader.argval if loader.opname in ("LOAD_GLOBAL", "LOAD_NAME", "LOAD_DEREF", "LOAD_FAST") else None
        called = _runtime_value(frame, loader, name)
        expected = (builtins.int, builtins.float) if site.kind == "type_coercion_guard" else (builtins.open, io.open)
        if called not in expected:
            return None  # same shape, another callee: not this guard
        if site.kind == "type_coercion_guard":
            site.detail = called.__name__
        site.callee = data["callee"] + index
    if data["source"] is not None:
        n, part = data["source"]
        site.source = (n + index, part)
        instr = instrs[n + index]
        site.operand = operand_text(code, instr, part if instr.opname == "LOAD_FAST_LOAD_FAST" else None)
    positions = instrs[index].positions
    lineno = positions.lineno if positions is not None else None
    for link in [site, *site.extra]:
        link.lineno = lineno
        link.operand = site.operand
    return site
