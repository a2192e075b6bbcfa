"""Guard synthesis with the `bytecode` library, and the verification gate.

A guard is straight-line code inserted before the failing instruction::

    PUSH_NULL; LOAD_CONST helper        (3.13: LOAD_CONST helper; PUSH_NULL)
    COPY a1+2; COPY a2+3 ...            the slots the helper reads
    [PRECALL n]; CALL n                 (PRECALL on 3.11 only)
    SWAP depth+1; POP_TOP               the result replaces slot `depth`

No jump, no new exception-table entry: every original instruction stays,
with its arguments, line, position and handler.  `verify` proves it on the
code CPython accepts: drop the inserted instructions and the rest is the
original, instruction by instruction, jump target by jump target, handler
by handler.  Anything else is refused and the crash stays unhealed.

Patches are always built from the *original* code object, with every
guard of that function at once, so a second crash in a healed function
adds a guard instead of stacking patches.
"""
from __future__ import annotations

import dis
import hashlib

from .analyse import PY, Site, instructions, offset_table

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import CodeType
    from typing import Any, Callable


class RefusedPatch(Exception):
    """The verification gate refused a patch; str() says which check failed."""


def code_hash(code: CodeType) -> str:
    """Identity of a function's code for recipes: what it does, not where the
    file lives (bytecode, names, constants, nested code, qualname)."""
    h = hashlib.sha256()
    _feed(h, code)
    return h.hexdigest()[:24]


def _feed(h: Any, code: CodeType) -> None:
    h.update(code.co_code)
    h.update(repr((code.co_qualname, code.co_names, code.co_varnames, code.co_freevars, code.co_cellvars,
                   code.co_argcount, code.co_kwonlyargcount, code.co_flags)).encode())
    for const in code.co_consts:
        if hasattr(const, "co_code"):
            _feed(h, const)
        else:
            h.update(repr((type(const).__name__, const)).encode())


def _guard_instrs(site: Site, helper: Callable[..., Any], location: Any) -> list[Any]:
    from bytecode import Instr

    def make(name: str, arg: Any = None) -> Any:
        if arg is None:
            return Instr(name, location=location)
        return Instr(name, arg, location=location)

    n = len(site.args)
    if PY >= (3, 13):
        seq = [make("LOAD_CONST", helper), make("PUSH_NULL")]
    else:
        seq = [make("PUSH_NULL"), make("LOAD_CONST", helper)]
    for i, depth in enumerate(site.args):
        seq.append(make("COPY", depth + 2 + i))
    if PY < (3, 12):
        seq.append(make("PRECALL", n))
    seq += [make("CALL", n), make("SWAP", site.depth + 1), make("POP_TOP")]
    return seq


def _compose(first: Callable[..., Any], second: Callable[..., Any]) -> Callable[..., Any]:
    """Both guards of one instruction: the second sees what the first left in the slot."""
    def composed(value: Any, *rest: Any) -> Any:
        return second(first(value, *rest), *rest)
    return composed


def guard_size(site: Site) -> int:
    """How many instructions `_guard_instrs` inserts for `site`."""
    return 5 + len(site.args) + (PY < (3, 12))


def synthesise(original: CodeType, sites: list[Site],
               helper_for: Callable[[Site, Site], Callable[..., Any]]) -> tuple[CodeType, list[int]]:
    """The original code with a guard before each site (and each link of a
    chain: `site.extra`); also the indices, in the patched instruction list,
    of the inserted instructions.  `helper_for(site, link)` makes the
    runtime helper of one link."""
    from bytecode import Bytecode, Instr

    bc = Bytecode.from_code(original, conserve_exception_block_stackdepth=True)
    real = [pos for pos, item in enumerate(bc) if isinstance(item, Instr)]
    inserts = []
    for site in sites:
        for link in [site, *site.extra]:
            if not 0 <= link.index < len(real) or bc[real[link.index]].name != link.opname:
                raise RefusedPatch(f"instruction #{link.index} is not {link.opname} in this code")
            made = helper_for(site, link)
            same = next((n for n, other in enumerate(inserts) if other[0] == link.index), None)
            if same is not None:  # two guards on one instruction (None, then a missing key): chain them
                _, first, earlier = inserts[same]
                if (first.depth, first.args) != (link.depth, link.args):
                    raise RefusedPatch(f"instruction #{link.index} is already guarded differently")
                inserts[same] = (link.index, first, _compose(earlier, made))
                continue
            inserts.append((link.index, link, made))
    inserts.sort(key=lambda t: t[0], reverse=True)
    for index, s, helper in inserts:
        pos = real[index]
        seq = _guard_instrs(s, helper, bc[pos].location)
        bc[pos:pos] = seq
    try:
        patched = bc.to_code(compute_exception_stack_depths=False)
    except Exception as exc:  # bytecode's own checks (stack depth, arguments)
        raise RefusedPatch(f"the guarded code does not assemble: {exc}") from None
    inserted: list[int] = []
    shift = 0
    for index, s, _ in sorted(inserts, key=lambda t: t[0]):
        size = guard_size(s)
        inserted += range(index + shift, index + shift + size)
        shift += size
    verify(original, patched, inserted)
    return patched, inserted


def verify(original: CodeType, patched: CodeType, inserted: list[int]) -> None:
    """The verification gate (see the module docstring); raises RefusedPatch."""
    before = instructions(original)
    after = instructions(patched)
    skip = set(inserted)
    kept = [n for n in range(len(after)) if n not in skip]
    if len(kept) != len(before):
        raise RefusedPatch(f"{len(after)} instructions, {len(inserted)} inserted, {len(before)} in the original")
    back = {n: i for i, n in enumerate(kept)}  # patched index -> original index
    by_offset_before = offset_table(original)
    by_offset_after = offset_table(patched)

    def target(table: dict[int, int], ins: dis.Instruction) -> Any:
        if ins.opcode in dis.hasjrel or ins.opcode in dis.hasjabs:
            return _Jump(table.get(ins.argval))
        return ins.argval

    for i, n in enumerate(kept):
        a, b = before[i], after[n]
        if a.opname != b.opname:
            raise RefusedPatch(f"instruction #{i} changed: {a.opname} -> {b.opname}")
        ta = target(by_offset_before, a)
        tb = target(by_offset_after, b)
        if isinstance(tb, _Jump) and tb.to is not None:
            tb = _Jump(_first_kept(tb.to, kept, back))
        if ta != tb and not _same_const(ta, tb):
            raise RefusedPatch(f"instruction #{i} {a.opname} changed its argument: {ta!r} -> {tb!r}")
        if a.positions != b.positions:
            raise RefusedPatch(f"instruction #{i} {a.opname} moved: {a.positions} -> {b.positions}")
    handlers_a = _handlers(original, before)
    handlers_b = _handlers(patched, after)
    for i, n in enumerate(kept):
        ha, hb = handlers_a[i], handlers_b[n]
        if hb is not None:
            hb = (_first_kept(hb[0], kept, back), hb[1], hb[2])
        if ha != hb:
            raise RefusedPatch(f"instruction #{i} {before[i].opname} has another exception handler: {ha} -> {hb}")
    for n in inserted:
        if n > 0 and n - 1 not in skip and after[n - 1].opname == "KW_NAMES":
            raise RefusedPatch("a guard would separate KW_NAMES from its call")
    for n in inserted:  # a guard runs under the handler of the instruction it guards
        following = next((k for k in kept if k > n), None)
        if following is not None and handlers_b[n] != handlers_b[following]:
            raise RefusedPatch("an inserted instruction is not covered like the instruction it guards")


class _Jump:
    __slots__ = ("to",)

    def __init__(self, to: int | None) -> None:
        self.to = to

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Jump) and other.to == self.to

    def __repr__(self) -> str:
        return f"jump to #{self.to}"


def _first_kept(n: int, kept: list[int], back: dict[int, int]) -> int | None:
    """A jump into a guard lands on the instruction it guards: map it there."""
    for k in kept:
        if k >= n:
            return back[k]
    return None


def _same_const(a: Any, b: Any) -> bool:
    return hasattr(a, "co_code") and hasattr(b, "co_code") and a == b


def _handlers(code: CodeType, instrs: list[dis.Instruction]) -> list[tuple[int, int, bool] | None]:
    """For each instruction: (handler instruction index, depth, lasti) or None."""
    entries = dis.Bytecode(code).exception_entries
    index = offset_table(code)
    out: list[tuple[int, int, bool] | None] = []
    for ins in instrs:
        found = None
        for e in entries:
            if e.start <= ins.offset < e.end:
                found = (index.get(e.target, -1), e.depth, e.lasti)
                break
        out.append(found)
    return out


def replace_const(code: CodeType, old: CodeType, new: CodeType) -> CodeType | None:
    """`code` with `old` replaced by `new` anywhere in its constants tree,
    or None when `old` is not in it."""
    consts = list(code.co_consts)
    changed = False
    for i, const in enumerate(consts):
        if const is old:
            consts[i], changed = new, True
        elif hasattr(const, "co_code"):
            inner = replace_const(const, old, new)
            if inner is not None:
                consts[i], changed = inner, True
    return code.replace(co_consts=tuple(consts)) if changed else None


def walk(code: CodeType) -> Any:
    """Every code object in a module's tree, the module's own first."""
    yield code
    for const in code.co_consts:
        if hasattr(const, "co_code"):
            yield from walk(const)


def diff(patched: CodeType, inserted: list[int]) -> list[str]:
    """Instruction listing of the patched code, '+' on inserted lines (for --verbose and explain)."""
    lines = []
    skip = set(inserted)
    for n, ins in enumerate(instructions(patched)):
        arg = ins.argrepr or ("" if ins.arg is None else str(ins.arg))
        if ins.opname == "LOAD_CONST" and n in skip:
            arg = "<pyward guard>"
        mark = "+" if n in skip else " "
        lines.append(f"{mark} {ins.positions.lineno if ins.positions else '':>4} {ins.opname:<20} {arg}")
    return lines

