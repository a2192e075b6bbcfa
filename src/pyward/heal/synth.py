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

from ..digest import SHA256
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
    h = SHA256()
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
    runtime helper of one link.

    A site whose recovery (`site.plan`, recovery.py) skips the statement or
    returns from the function also gets a handler, appended after the last
    instruction: the guard raises guards.Skip, the handler catches it and
    jumps to the next statement (or returns the fallback); any other
    exception goes on, re-raised, to the handler that covered the guarded
    instruction, as before."""
    from bytecode import Bytecode, Instr, Label, TryBegin, TryEnd

    bc = Bytecode.from_code(original, conserve_exception_block_stackdepth=True)
    real = [pos for pos, item in enumerate(bc) if isinstance(item, Instr)]
    objects = [item for item in bc if isinstance(item, Instr)]  # objects[i] is bc[real[i]]
    inserts: list[tuple[int, Site, Callable[..., Any], Site]] = []  # (index, link, helper, site)
    for site in sites:
        for link in [site, *site.extra]:
            if not 0 <= link.index < len(real) or objects[link.index].name != link.opname:
                raise RefusedPatch(f"instruction #{link.index} is not {link.opname} in this code")
            made = helper_for(site, link)
            same = next((n for n, other in enumerate(inserts) if other[0] == link.index), None)
            if same is not None:  # two guards on one instruction (None, then a missing key): chain them
                _, first, earlier, owner = inserts[same]
                if (first.depth, first.args) != (link.depth, link.args):
                    raise RefusedPatch(f"instruction #{link.index} is already guarded differently")
                if _recovery(owner) != _recovery(site):
                    raise RefusedPatch(f"instruction #{link.index} is guarded with another recovery")
                inserts[same] = (link.index, first, _compose(earlier, made), owner)
                continue
            inserts.append((link.index, link, made, site))
    inserts.sort(key=lambda t: t[0], reverse=True)
    marked: dict[int, int] = {}  # id(instruction) -> id(site) of the recovery region it is in
    starts: dict[int, Any] = {}  # original index -> the first instruction now there (its guard's)
    recovering = [site for site in sites if _recovery(site) != "value"]
    for index, s, helper, owner in inserts:
        pos = real[index]
        seq = _guard_instrs(s, helper, objects[index].location)  # (inserts go last to first: bc[pos] still)
        bc[pos:pos] = seq
        starts[index] = seq[0]
        if _recovery(owner) != "value":
            for item in seq:
                marked[id(item)] = id(owner)
    handlers = {}
    for site in recovering:
        plan = site.plan
        if plan.depth < 0:
            raise RefusedPatch(f"the recovery of instruction #{site.index} has no stack depth")
        for index in plan.cover:
            if 0 <= index < len(objects):
                marked.setdefault(id(objects[index]), id(site))
        handlers[id(site)] = Label()
        if plan.recovery == "skip":
            if not 0 <= plan.resume < len(objects):
                raise RefusedPatch(f"the statement after instruction #{site.index} is not in this code")
            target = starts.get(plan.resume, objects[plan.resume])
            at = next(n for n, item in enumerate(bc) if item is target)
            plan.label = Label()
            bc[at:at] = [plan.label]
    # the recovery regions cut the original exception table's entries: close and reopen them around
    out: list[Any] = []
    logical = None  # the original entry in effect
    opened = None  # the entry open in `out` (the original or a copy of it)
    mine = None  # id(site) of the recovery region open in `out`
    mine_entry: TryBegin | None = None  # its entry
    outer: dict[int, Any] = {}  # id(site) -> the original entry its guarded instruction was under
    by_id = {id(site): site for site in recovering}
    for item in bc:
        if isinstance(item, TryBegin):
            logical = item
            if mine is None:
                out.append(item)
                opened = item
            continue
        if isinstance(item, TryEnd):
            logical = None
            if mine is None and opened is not None:
                out.append(TryEnd(opened))
                opened = None
            continue
        if isinstance(item, Instr):
            key = marked.get(id(item))
            if key != mine:
                if mine_entry is not None:
                    out.append(TryEnd(mine_entry))
                    mine, mine_entry = None, None
                    if logical is not None:
                        opened = TryBegin(logical.target, logical.push_lasti, logical.stack_depth)
                        out.append(opened)
                if key is not None:
                    if opened is not None:
                        out.append(TryEnd(opened))
                        opened = None
                    outer.setdefault(key, logical)
                    mine, mine_entry = key, TryBegin(handlers[key], False, by_id[key].plan.depth)
                    out.append(mine_entry)
        out.append(item)
    if mine_entry is not None:
        out.append(TryEnd(mine_entry))
    out = _without_empty_entries(out)
    appended = 0
    for site in recovering:
        block = _handler_block(site, handlers[id(site)], outer.get(id(site)), objects[site.index].location)
        appended += sum(1 for item in block if isinstance(item, Instr))
        out.extend(block)
    _check_entries(out)
    bc.clear()
    bc.extend(out)
    try:
        patched = bc.to_code(compute_exception_stack_depths=False)
    except Exception as exc:  # bytecode's own checks (stack depth, arguments)
        raise RefusedPatch(f"the guarded code does not assemble: {exc}") from None
    inserted: list[int] = []
    shift = 0
    for index, s, _, _ in sorted(inserts, key=lambda t: t[0]):
        size = guard_size(s)
        inserted += range(index + shift, index + shift + size)
        shift += size
    total = len(instructions(patched))
    inserted += range(total - appended, total)
    verify(original, patched, inserted)
    return patched, inserted


def _check_entries(items: list[Any]) -> None:
    """Exception-table entries one after the other, each opened, holding an
    instruction, then closed (bytecode does not check it and would loop)."""
    from bytecode import Instr, TryBegin, TryEnd

    current = None
    filled = False
    for item in items:
        if isinstance(item, TryBegin):
            if current is not None:
                raise RefusedPatch("exception-table entries overlap in the guarded code")
            current, filled = item, False
        elif isinstance(item, TryEnd):
            if item.entry is not current or not filled:
                raise RefusedPatch("an exception-table entry of the guarded code is empty or not open")
            current = None
        elif isinstance(item, Instr):
            filled = True


def _without_empty_entries(items: list[Any]) -> list[Any]:
    """Drop a reopened entry that ends before any instruction (the recovery
    region was the last part of the original range): an empty range does
    not assemble."""
    from bytecode import Instr, TryBegin, TryEnd

    out: list[Any] = []
    begun: dict[int, int] = {}  # id(TryBegin) -> its position in `out`
    for item in items:
        if isinstance(item, TryBegin):
            begun[id(item)] = len(out)
        elif isinstance(item, TryEnd) and id(item.entry) in begun:
            at = begun.pop(id(item.entry))
            if not any(isinstance(x, Instr) for x in out[at + 1:]):
                del out[at]
                continue
        out.append(item)
    return out


def _recovery(site: Site) -> str:
    plan = getattr(site, "plan", None)
    return "value" if plan is None else plan.recovery


def _handler_block(site: Site, start: Any, outer: Any, location: Any) -> list[Any]:
    """The handler of a recovery region (see synthesise): Skip goes to the
    next statement or returns; anything else is re-raised to `outer`."""
    from bytecode import Instr, Label, TryBegin, TryEnd

    from .guards import Skip

    plan = site.plan
    none = object()

    def make(name: str, arg: Any = none) -> Any:
        return Instr(name, location=location) if arg is none else Instr(name, arg, location=location)

    other, cleanup = Label(), Label()
    first = TryBegin(cleanup, True, plan.depth + 1)
    second = TryBegin(cleanup, True, plan.depth + 1)
    block = [start, first, make("PUSH_EXC_INFO"), make("LOAD_CONST", Skip), make("CHECK_EXC_MATCH"),
             make("POP_JUMP_FORWARD_IF_FALSE" if PY < (3, 12) else "POP_JUMP_IF_FALSE", other), make("POP_TOP"),
             TryEnd(first), make("POP_EXCEPT")]
    if plan.recovery == "skip":
        block.append(make("JUMP_BACKWARD_NO_INTERRUPT", plan.label))
    else:
        block += [make("POP_TOP") for _ in range(plan.depth)]
        block += [make("LOAD_CONST", plan.value), make("RETURN_VALUE")]
    block += [other, second, make("RERAISE", 0), TryEnd(second), cleanup]
    tail = [make("COPY", 3), make("POP_EXCEPT"), make("RERAISE", 1)]
    if outer is not None:
        entry = TryBegin(outer.target, outer.push_lasti, outer.stack_depth)
        block += [entry, *tail, TryEnd(entry)]
    else:
        block += tail
    return block


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
    ours = _recovery_handlers(after, handlers_b, skip)

    def seen(h: tuple[int, int, bool] | None) -> tuple[int, int, bool] | None:
        """A recovery handler re-raises what is not its Skip to the handler of its cleanup: that one counts."""
        return ours.get(h[0], h) if h is not None else None

    for i, n in enumerate(kept):
        ha, sb = handlers_a[i], seen(handlers_b[n])
        hb = (_first_kept(sb[0], kept, back), sb[1], sb[2]) if sb is not None else None
        if ha != hb:
            raise RefusedPatch(f"instruction #{i} {before[i].opname} has another exception handler: {ha} -> {hb}")
    for n in inserted:
        if n > 0 and n - 1 not in skip and after[n - 1].opname == "KW_NAMES":
            raise RefusedPatch("a guard would separate KW_NAMES from its call")
    for n in inserted:  # a guard runs under the handler of the instruction it guards
        following = next((k for k in kept if k > n), None)
        if following is not None and seen(handlers_b[n]) != seen(handlers_b[following]):
            raise RefusedPatch("an inserted instruction is not covered like the instruction it guards")


_BLOCK = ("PUSH_EXC_INFO", "LOAD_CONST", "CHECK_EXC_MATCH", "POP_JUMP_IF_FALSE", "POP_TOP", "POP_EXCEPT")


def _recovery_handlers(after: list[dis.Instruction], handlers: list[Any], inserted: set[int]) -> dict[int, Any]:
    """The recovery handlers of a patched code (inserted, starting with
    PUSH_EXC_INFO; LOAD_CONST Skip): start index -> the handler that covers
    their cleanup.  Each is checked instruction by instruction; a handler
    that is not exactly one is refused."""
    from .guards import Skip

    found: dict[int, Any] = {}
    for n in sorted(inserted):
        if after[n].opname != "PUSH_EXC_INFO" or n + 1 >= len(after) or after[n + 1].argval is not Skip:
            continue
        names = [ins.opname.replace("_FORWARD", "") for ins in after[n:n + 6]]
        if tuple(names) != _BLOCK or handlers[n] is None:
            raise RefusedPatch("a recovery handler is not the expected one")
        m = n + 6
        if after[m].opname == "JUMP_BACKWARD_NO_INTERRUPT":
            m += 1
        else:
            while after[m].opname == "POP_TOP":
                m += 1
            if [ins.opname for ins in after[m:m + 2]] != ["LOAD_CONST", "RETURN_VALUE"]:
                raise RefusedPatch("a recovery handler does not end as expected")
            m += 2
        cleanup = handlers[n][0]
        if after[m].opname != "RERAISE" or [ins.opname for ins in after[cleanup:cleanup + 3]] != \
                ["COPY", "POP_EXCEPT", "RERAISE"] or not all(k in inserted for k in range(n, m + 1)):
            raise RefusedPatch("a recovery handler's re-raise is not the expected one")
        found[n] = handlers[cleanup]
    return found


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
    entries = dis.Bytecode(code).exception_entries  # type: ignore[attr-defined]  # CPython 3.11+, not in typeshed
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
        line = ins.positions.lineno if ins.positions is not None else None  # (None: a coroutine's own plumbing)
        lines.append(f"{mark} {'' if line is None else line:>4} {ins.opname:<20} {arg}")
    return lines

