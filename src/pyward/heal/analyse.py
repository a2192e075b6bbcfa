"""Find the failing instruction of a crash and the operand that failed.

Input: the innermost program frame of an escaping exception (its code and
instruction offset, `tb_lasti`) and the exception.  Output: a `Site` naming
the guard kind, the instruction, which stack slot the guard must transform
and a readable operand ("profile", "data['user']"), or `Unhealable` with
the reason.  The same analysis runs on the bytecode of 3.11, 3.12 and 3.13:
instructions are numbered in `dis` order without CACHE and EXTENDED_ARG,
which is also the order of `bytecode.Instr` objects in a `Bytecode`.

Stack slots are found by walking back from the failing instruction inside
its basic block, counting what each instruction pushes; a jump target in
between ends the walk (the operand's origin is then unknown: unhealable).
"""
from __future__ import annotations

import dis
import functools
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import CodeType
    from typing import Any

PY = sys.version_info[:2]

KINDS = ("null_guard", "key_guard", "subscript_guard", "chain_subscript_guard", "index_guard",
         "type_coercion_guard", "division_guard", "str_coerce_guard", "file_guard", "callable_guard")

# BINARY_OP argument numbers (Include/opcode.h NB_*), stable across 3.11-3.13.
NB_ADD, NB_FLOOR_DIVIDE, NB_REMAINDER, NB_TRUE_DIVIDE = 0, 2, 6, 11
NB_INPLACE = 13
DIVISIONS = {NB_FLOOR_DIVIDE: "//", NB_REMAINDER: "%", NB_TRUE_DIVIDE: "/"}

_NO_PUSH = {
    "NOP", "RESUME", "PRECALL", "KW_NAMES", "POP_TOP", "STORE_FAST", "STORE_NAME", "STORE_GLOBAL", "STORE_DEREF",
    "STORE_ATTR", "STORE_SUBSCR", "DELETE_FAST", "DELETE_NAME", "DELETE_GLOBAL", "DELETE_DEREF", "DELETE_ATTR",
    "DELETE_SUBSCR", "RETURN_VALUE", "RETURN_CONST", "POP_EXCEPT", "RAISE_VARARGS", "RERAISE", "END_FOR",
    "POP_JUMP_IF_FALSE", "POP_JUMP_IF_TRUE", "POP_JUMP_IF_NONE", "POP_JUMP_IF_NOT_NONE",
    "POP_JUMP_FORWARD_IF_FALSE", "POP_JUMP_FORWARD_IF_TRUE", "POP_JUMP_FORWARD_IF_NONE",
    "POP_JUMP_FORWARD_IF_NOT_NONE", "POP_JUMP_BACKWARD_IF_FALSE", "POP_JUMP_BACKWARD_IF_TRUE",
    "POP_JUMP_BACKWARD_IF_NONE", "POP_JUMP_BACKWARD_IF_NOT_NONE", "JUMP_FORWARD", "JUMP_BACKWARD",
    "JUMP_BACKWARD_NO_INTERRUPT", "JUMP", "JUMP_NO_INTERRUPT", "STORE_FAST_STORE_FAST", "MAKE_CELL",
    "COPY_FREE_VARS", "SETUP_ANNOTATIONS", "IMPORT_STAR", "POP_BLOCK", "SETUP_FINALLY", "SETUP_CLEANUP",
    "SETUP_WITH", "CACHE", "EXTENDED_ARG", "LIST_APPEND", "SET_ADD", "MAP_ADD", "LIST_EXTEND", "SET_UPDATE",
    "DICT_UPDATE", "DICT_MERGE", "STORE_FAST_MAYBE_NULL", "END_SEND", "CHECK_EG_MATCH",
}
#: Instructions that reorder or duplicate slots: the walk stops at them.
_OPAQUE = {"SWAP", "ROT_TWO", "ROT_THREE", "ROT_FOUR", "ROT_N", "DUP_TOP", "DUP_TOP_TWO", "FOR_ITER", "SEND",
           "BEFORE_WITH", "BEFORE_ASYNC_WITH", "PUSH_EXC_INFO", "CHECK_EXC_MATCH", "CLEANUP_THROW",
           "WITH_EXCEPT_START", "GET_AWAITABLE", "YIELD_VALUE", "UNPACK_SEQUENCE", "UNPACK_EX", "COPY",
           "LOAD_SUPER_ATTR", "MATCH_CLASS", "MATCH_KEYS", "MATCH_MAPPING", "MATCH_SEQUENCE"}


def pushes(instr: dis.Instruction) -> int | None:
    """How many stack slots `instr` pushes (None: unknown, stop the walk)."""
    name = instr.opname
    if name in _OPAQUE:
        return None
    if name in _NO_PUSH:
        return 0
    arg = instr.arg or 0
    if name == "LOAD_METHOD" or name == "LOAD_FAST_LOAD_FAST":
        return 2
    if name == "LOAD_ATTR" and PY >= (3, 12):
        return 2 if arg & 1 else 1
    if name == "LOAD_GLOBAL":
        return 2 if arg & 1 else 1
    return 1


class Unhealable(Exception):
    """The crash cannot be guarded; str() says why, in a phrase."""


class Site:
    """Where a guard goes.

    `index` is the instruction the guard is inserted before, `depth` the
    stack slot (1 = top) the guard replaces, `args` the slots its helper
    reads (same numbering), `method` whether an attribute is loaded for a
    call (`obj.name(...)`), `detail` the attribute name, operator or callable.
    """

    __slots__ = ("kind", "index", "opname", "depth", "args", "operand", "lineno", "detail", "method", "extra",
                 "source", "callee", "plan", "catches")

    def __init__(self, kind: str, index: int, opname: str, depth: int, args: tuple[int, ...], operand: str,
                 lineno: int | None, detail: str = "", method: bool = False) -> None:
        self.kind, self.index, self.opname, self.depth, self.args = kind, index, opname, depth, args
        self.operand, self.lineno, self.detail, self.method = operand, lineno, detail, method
        self.extra: list[Site] = []  # more sites of the same guard (chain_subscript_guard)
        # for the crash-shape registry (fingerprint.py), not stored in recipes: the instruction whose
        # source names the operand (and which local, for LOAD_FAST_LOAD_FAST), the callee's loader
        self.source: tuple[int, int | None] | None = None
        self.callee: int | None = None
        self.plan: Any = None  # how the program goes on when the guard falls back (recovery.py), set before synthesis
        self.catches = ""  # type_coercion_guard: the exception it was made for (ValueError or TypeError)

    def to_json(self) -> dict[str, Any]:
        data = {"kind": self.kind, "index": self.index, "opname": self.opname, "depth": self.depth,
                "args": list(self.args), "operand": self.operand, "lineno": self.lineno, "detail": self.detail,
                "method": self.method, "extra": [s.to_json() for s in self.extra]}
        if self.plan is not None:  # a recipe keeps the recovery it was made with (shown by patches/explain)
            data["recovery"] = self.plan.recovery
        if self.catches:
            data["catches"] = self.catches
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Site:
        site = cls(data["kind"], data["index"], data["opname"], data["depth"], tuple(data["args"]),
                   data["operand"], data["lineno"], data["detail"], data["method"])
        site.extra = [cls.from_json(x) for x in data.get("extra", ())]
        site.catches = data.get("catches", "")
        return site

    def __repr__(self) -> str:
        return f"<Site {self.kind} on {self.operand!r} at #{self.index} {self.opname}>"


def _real(code: CodeType) -> Any:
    """(offsets of its EXTENDED_ARG prefixes, instruction) for each real
    instruction.  A jump to an instruction with a prefix lands on the prefix:
    the instruction is marked as the jump target it is."""
    prefixes: list[dis.Instruction] = []
    for instr in dis.get_instructions(code):
        if instr.opname == "CACHE":
            continue
        if instr.opname == "EXTENDED_ARG":
            prefixes.append(instr)
            continue
        target = next((p for p in prefixes if p.is_jump_target), None)
        if target is not None and not instr.is_jump_target:
            if sys.version_info >= (3, 13):
                instr = instr._replace(label=target.label)
            else:
                instr = instr._replace(is_jump_target=True)
        yield [p.offset for p in prefixes], instr
        prefixes = []


@functools.lru_cache(maxsize=16)
def _decoded(code: CodeType) -> tuple[tuple[list[int], dis.Instruction], ...]:
    """_real(code), decoded once: one heal reads the same code a dozen times."""
    return tuple(_real(code))


def instructions(code: CodeType) -> list[dis.Instruction]:
    """The instructions without CACHE and EXTENDED_ARG entries."""
    return [instr for _, instr in _decoded(code)]


def offset_table(code: CodeType) -> dict[int, int]:
    """Index in `instructions(code)` by offset, prefixes included."""
    table = {}
    for n, (prefixes, instr) in enumerate(_decoded(code)):
        for offset in prefixes:
            table[offset] = n
        table[instr.offset] = n
    return table


def index_of_offset(instrs: list[dis.Instruction], offset: int) -> int:
    for n, instr in enumerate(instrs):
        if instr.offset == offset:
            return n
    # an EXTENDED_ARG prefix: the instruction that follows it
    for n, instr in enumerate(instrs):
        if instr.offset > offset:
            return n
    raise Unhealable("the failing instruction was not found in the function's code")


def producer(instrs: list[dis.Instruction], index: int, depth: int) -> tuple[int, int]:
    """The instruction that pushed stack slot `depth` (1 = top) as seen just
    before `instrs[index]` runs, and which of its pushes it is (1 = last)."""
    n = index - 1
    while n >= 0:
        if instrs[n + 1].is_jump_target:
            raise Unhealable("the operand comes from another branch (a conditional expression or a loop)")
        instr = instrs[n]
        if instr.opname in _NO_FALLTHROUGH:
            raise Unhealable("the operand's origin is not reached by straight-line code")
        count = pushes(instr)
        if count is None:
            raise Unhealable(f"the operand passes through {instr.opname}, which the analysis does not follow")
        if depth <= count:
            return n, depth
        effect = dis.stack_effect(instr.opcode, instr.arg if instr.opcode >= dis.HAVE_ARGUMENT else None,
                                  jump=False)
        depth = depth - count + (count - effect)  # the slot, as seen before `instr` popped its inputs
        n -= 1
    raise Unhealable("the operand's origin is not in this function")


_NO_FALLTHROUGH = {"JUMP_FORWARD", "JUMP_BACKWARD", "JUMP_BACKWARD_NO_INTERRUPT", "JUMP", "JUMP_NO_INTERRUPT",
                   "RETURN_VALUE", "RETURN_CONST", "RAISE_VARARGS", "RERAISE"}


def source_text(code: CodeType, instr: dis.Instruction, limit: int = 60) -> str:
    """The source of the expression `instr` computes, or a name for it."""
    import linecache

    pos = instr.positions
    if pos is not None and pos.lineno is not None and pos.col_offset is not None and pos.end_col_offset is not None:
        lines = linecache.getlines(code.co_filename)
        if pos.lineno == pos.end_lineno and 0 < pos.lineno <= len(lines):
            text = lines[pos.lineno - 1].encode()[pos.col_offset:pos.end_col_offset].decode(errors="replace")
            if text.strip():
                return text if len(text) <= limit else text[:limit - 3] + "..."
    if isinstance(instr.argval, str):
        return instr.argval
    return instr.opname.lower()


def _callable_slots(instrs: list[dis.Instruction], call: int, nargs: int) -> tuple[int, int]:
    """(index of the instruction that loaded the callable, its depth before
    `call`); `nargs` counts every slot above the callable's pair."""
    if PY >= (3, 13):
        n, which = producer(instrs, call, nargs + 2)
        return n, nargs + 2
    n, which = producer(instrs, call, nargs + 2)
    # 3.11/3.12: [NULL, callable, args] or [method, self, args]
    if instrs[n].opname == "PUSH_NULL" or (instrs[n].opname == "LOAD_GLOBAL" and which == 2):
        m, _ = producer(instrs, call, nargs + 1)
        return m, nargs + 1
    return n, nargs + 2


def _is_method_load(instr: dis.Instruction) -> bool:
    return instr.opname == "LOAD_METHOD" or (instr.opname == "LOAD_ATTR" and PY >= (3, 12)
                                             and (instr.arg or 0) & 1 == 1)


def _call_of(instrs: list[dis.Instruction], index: int) -> tuple[int, int, int]:
    """For a call: the instruction the guard goes before, the argument count
    (positional and keyword) and how many slots sit above the arguments there.

    Keyword names travel outside the stack on 3.11/3.12 (KW_NAMES sets them
    for the next call): the guard goes before KW_NAMES, never between it and
    its call.  On 3.13 CALL_KW finds them on the stack, above the arguments."""
    instr = instrs[index]
    if instr.opname not in ("CALL", "PRECALL", "CALL_KW"):
        raise Unhealable(f"the call is made by {instr.opname} (star arguments are not guarded)")
    nargs = instr.arg or 0
    if instr.opname == "CALL_KW":
        return index, nargs, 1
    if PY < (3, 12) and instr.opname == "CALL":
        index -= 1  # the guard goes before PRECALL
        if index < 0 or instrs[index].opname != "PRECALL":
            raise Unhealable("unexpected call sequence")
    if index > 0 and instrs[index - 1].opname == "KW_NAMES":
        index -= 1
    return index, nargs, 0


def analyse(code: CodeType, offset: int, exc: BaseException, frame: Any = None) -> Site:
    """The guard for `exc` raised at `offset` in `code`; raises Unhealable."""
    instrs = instructions(code)
    index = index_of_offset(instrs, offset)
    source: list[tuple[int, int | None]] = []

    def operand_at(depth: int, at: int = index) -> tuple[int, str]:
        n, which = producer(instrs, at, depth)
        part = None if instrs[n].opname != "LOAD_FAST_LOAD_FAST" else 1 if which == 1 else 0
        source.append((n, part))
        return n, operand_text(code, instrs[n], part)

    site = _site(code, instrs, index, exc, frame, operand_at)
    if site.source is None:
        site.source = source[-1]
    return site


def operand_text(code: CodeType, instr: dis.Instruction, part: int | None) -> str:
    """The operand's name: the source of the expression `instr` computes, or
    one local of a LOAD_FAST_LOAD_FAST (3.13: two locals in one instruction)."""
    if part is not None:
        return instr.argval[part]
    return source_text(code, instr)


def _site(code: CodeType, instrs: list[dis.Instruction], index: int, exc: BaseException, frame: Any,
          operand_at: Any) -> Site:
    instr = instrs[index]
    op, kind_of_exc, message = instr.opname, type(exc), str(exc)
    lineno = instr.positions.lineno if instr.positions is not None else None

    if op in ("LOAD_ATTR", "LOAD_METHOD") and kind_of_exc is AttributeError:
        if getattr(exc, "obj", 0) is not None:
            raise Unhealable("the attribute is missing on a real object, not on None")
        _, text = operand_at(1)
        site = Site("null_guard", index, op, 1, (1,), text, lineno, _attr_name(instr), _is_method_load(instr))
        # a.b.c: when a is None, each attribute of the chain is None too
        for n in _chained(instrs, index, ("LOAD_ATTR", "LOAD_METHOD"), 1):
            site.extra.append(Site("null_guard", n, instrs[n].opname, 1, (1,), text, lineno,
                                   _attr_name(instrs[n]), _is_method_load(instrs[n])))
        return site

    if op == "BINARY_SUBSCR":
        if kind_of_exc is KeyError:
            kind = "key_guard"
        elif kind_of_exc is IndexError:
            kind = "index_guard"
        elif kind_of_exc is TypeError and message.startswith("'NoneType' object is not subscriptable"):
            kind = "subscript_guard"
        else:
            raise Unhealable(f"{kind_of_exc.__name__} from a subscript is not a structural bug pyward guards")
        n, text = operand_at(2)
        site = Site(kind, index, op, 2, (2, 1), text, lineno)
        # a chain: data["a"]["b"]["c"], the failing subscript anywhere in it
        chain = []
        while instrs[n].opname == "BINARY_SUBSCR":
            chain.append(n)
            n, _ = producer(instrs, n, 2)
        chain += _chained(instrs, index, ("BINARY_SUBSCR",), 2)
        if chain and kind != "index_guard":
            last = max([index, *chain])
            site.kind = "chain_subscript_guard"
            site.operand = source_text(code, instrs[last])
            site.extra = [Site("chain_subscript_guard", c, "BINARY_SUBSCR", 2, (2, 1), site.operand, lineno)
                          for c in chain]
            site.source = (last, None)
        return site

    if op == "BINARY_OP":
        arg = instr.arg or 0
        base = arg - NB_INPLACE if arg >= NB_INPLACE else arg
        if kind_of_exc is ZeroDivisionError and base in DIVISIONS:
            _, text = operand_at(1)
            return Site("division_guard", index, op, 2, (2, 1), text, lineno, DIVISIONS[base])
        if kind_of_exc is TypeError and base == NB_ADD and message.startswith("can only concatenate str"):
            _, text = operand_at(1)
            return Site("str_coerce_guard", index, op, 2, (2, 1), text, lineno, "+")
        raise Unhealable(f"{kind_of_exc.__name__} from an operator is not a structural bug pyward guards")

    if op in ("CALL", "PRECALL", "CALL_KW"):
        at, nargs, top = _call_of(instrs, index)
        if kind_of_exc is TypeError and message.startswith("'NoneType' object is not callable"):
            loader, which = producer(instrs, at, nargs + top + 2)
            if _is_method_load(instrs[loader]):
                site = Site("callable_guard", loader, instrs[loader].opname, 1, (1,),
                            source_text(code, instrs[loader]), lineno, _attr_name(instrs[loader]), True)
                site.source = (loader, None)
                return site
            n, depth = _callable_slots(instrs, at, nargs + top)
            site = Site("callable_guard", at, instrs[at].opname, depth, (depth,), source_text(code, instrs[n]),
                        lineno)
            site.source = (n, None)
            return site
        n, depth = _callable_slots(instrs, at, nargs + top)
        load = instrs[n]
        name = load.argval if load.opname in ("LOAD_GLOBAL", "LOAD_NAME", "LOAD_DEREF", "LOAD_FAST") else None
        called = _runtime_value(frame, load, name)
        import builtins
        import io

        if called in (builtins.int, builtins.float) and kind_of_exc in (ValueError, TypeError) and nargs >= 1:
            _, text = operand_at(nargs + top, at)
            site = Site("type_coercion_guard", at, instrs[at].opname, depth, (depth,), text, lineno,
                        called.__name__)
            site.callee = n
            site.catches = kind_of_exc.__name__
            return site
        if called in (builtins.open, io.open) and kind_of_exc is FileNotFoundError and nargs >= 1:
            _, text = operand_at(nargs + top, at)
            site = Site("file_guard", at, instrs[at].opname, depth, (depth,), text, lineno, "open")
            site.callee = n
            return site
        raise Unhealable(f"{kind_of_exc.__name__} raised by a call is not a structural bug pyward guards")

    raise Unhealable(f"{kind_of_exc.__name__} at {op} is not a structural bug pyward guards")


def _attr_name(instr: dis.Instruction) -> str:
    value = instr.argval
    return value[1] if isinstance(value, tuple) else str(value)


def _chained(instrs: list[dis.Instruction], index: int, opnames: tuple[str, ...], depth: int) -> list[int]:
    """Later instructions of the same expression that consume, at `depth`,
    the result of `instrs[index]` (or of the previous link)."""
    links, last = [], index
    for n in range(index + 1, min(index + 16, len(instrs))):
        if instrs[n].is_jump_target:
            break
        if instrs[n].opname in opnames:
            try:
                origin, _ = producer(instrs, n, depth)
            except Unhealable:
                break
            if origin != last:
                break
            links.append(n)
            last = n
    return links


def _runtime_value(frame: Any, loader: dis.Instruction, name: Any) -> Any:
    """What the name a call site loaded refers to in the crashed frame."""
    if frame is None or not isinstance(name, str):
        return None
    import builtins

    if loader.opname in ("LOAD_FAST", "LOAD_DEREF"):
        return frame.f_locals.get(name)
    if name in frame.f_globals:
        return frame.f_globals[name]
    space = frame.f_builtins if isinstance(frame.f_builtins, dict) else vars(builtins)
    return space.get(name)
