"""How the program goes on when a guard falls back: chosen from where the
guarded operation's result goes (the instructions after it, in the same
statement).

- "value": the operation gives the fallback.  Where the result is returned,
  yielded, stored at module level, printed, formatted, compared for
  equality, tested, put in a container or passed to a function: nothing
  there fails on it.
- "skip": the statement is skipped.  Where the result feeds an
  accumulation (`total += x`, `total = total + x`, `xs.append(x)`) or an
  operand of a statement that binds nothing new (`print(a * b)`): that
  element's contribution is left out and the loop or block goes on.
- "return": the function returns the fallback.  Where the result is stored
  in a function and used later, or is an operand, a context manager, an
  iterable or a callable in a statement that binds a new name (`port =
  cfg["port"] + 1`, `with open(path) as f:`).

When none applies (an operand at module level whose statement binds a
name, a `return` that would skip a `with` block's exit or a `finally`),
the crash is not healed: `plan` raises Unhealable.
"""
from __future__ import annotations

import ast
import dis
import functools
import linecache

from .analyse import Unhealable, instructions, offset_table

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import CodeType
    from typing import Any

    from .analyse import Site

_CO_OPTIMIZED = 0x1
#: Consumers that do not fail on None (or the configured fallback).
_VALUE = {"RETURN_VALUE", "YIELD_VALUE", "POP_TOP", "IS_OP", "TO_BOOL", "FORMAT_VALUE", "FORMAT_SIMPLE",
          "FORMAT_WITH_SPEC", "CONVERT_VALUE", "BUILD_STRING", "BUILD_LIST", "BUILD_TUPLE", "BUILD_SET", "BUILD_MAP",
          "BUILD_CONST_KEY_MAP", "LIST_APPEND", "SET_ADD", "MAP_ADD", "POP_JUMP_IF_NONE", "POP_JUMP_IF_NOT_NONE",
          "POP_JUMP_FORWARD_IF_NONE", "POP_JUMP_FORWARD_IF_NOT_NONE", "POP_JUMP_BACKWARD_IF_NONE",
          "POP_JUMP_BACKWARD_IF_NOT_NONE", "POP_JUMP_IF_FALSE", "POP_JUMP_IF_TRUE", "POP_JUMP_FORWARD_IF_FALSE",
          "POP_JUMP_FORWARD_IF_TRUE", "POP_JUMP_BACKWARD_IF_FALSE", "POP_JUMP_BACKWARD_IF_TRUE",
          "JUMP_IF_FALSE_OR_POP", "JUMP_IF_TRUE_OR_POP", "UNARY_NOT", "RETURN_GENERATOR", "STORE_NAME"}
_COMPREHENSIONS = {"<listcomp>", "<setcomp>", "<dictcomp>", "<genexpr>"}
_LOCAL_STORES = {"STORE_FAST", "STORE_DEREF", "STORE_FAST_MAYBE_NULL"}
#: Builtins that raise on None among their arguments.
_STRICT_CALLEES = {"len", "sum", "sorted", "list", "tuple", "set", "frozenset", "dict", "iter", "next", "abs",
                   "round", "min", "max", "enumerate", "zip", "map", "filter", "reversed", "any", "all", "ord",
                   "chr", "hex", "oct", "bin", "divmod", "pow", "range", "int", "float", "complex", "open", "bytes",
                   "bytearray", "hash", "format"}
#: Methods whose argument is added to the object: the call is an accumulation.
_ACCUMULATORS = {"append", "add", "extend", "insert", "update", "appendleft", "extendleft", "put", "push",
                 "write", "writelines"}


class Plan:
    """The recovery of one site.  `resume`: the instruction the statement
    skip goes on at; `depth`: the stack depth the synthesised handler keeps;
    `cover`: instructions of the original code, besides the guard, that may
    raise the guard's Skip (the subscript a mapping lookup is made in, the
    int()/open() call)."""

    __slots__ = ("recovery", "resume", "depth", "cover", "why", "value", "label")

    def __init__(self, recovery: str, resume: int = -1, depth: int = 0, cover: tuple[int, ...] = (),
                 why: str = "") -> None:
        self.recovery, self.resume, self.depth, self.cover, self.why = recovery, resume, depth, cover, why
        self.value: Any = None  # what "return" returns: the guard's fallback
        self.label: Any = None  # synth.py: the label of `resume`

    def __repr__(self) -> str:
        return f"<Plan {self.recovery} resume={self.resume} depth={self.depth} cover={self.cover}>"


def plan(code: CodeType, site: Site) -> Plan:
    """The recovery for `site` in `code` (its original code); raises Unhealable."""
    instrs = instructions(code)
    result, cover = _result(instrs, site)
    step = _consumer(instrs, result + 1, 1)
    if step is None:  # a branch or an instruction the walk does not follow: the value goes on as it did
        return Plan("value", why="the result goes where the analysis does not follow")
    n, slot = step
    ins = instrs[n]
    name = ins.opname
    # a function that can return its fallback (a comprehension's or a generator expression's result is not one)
    function = bool(code.co_flags & _CO_OPTIMIZED) and code.co_name not in _COMPREHENSIONS
    what = _operand_use(code, instrs, n, slot)
    if what is None:
        if name in _LOCAL_STORES and function:
            later = _later_use(code, instrs, n)
            if later is not None:  # the variable is read again where None fails: the function fails soft
                found = _returning(code, instrs, site, cover)
                if found is not None:
                    found.why = f"the result is stored, then used as {later}: the function fails soft"
                    return found
                raise Unhealable(f"no recovery lets the statement complete (the result is stored, then used as "
                                 f"{later}, inside a block a return would cut short)")
        return Plan("value", why=f"the result goes to {name}, which accepts it")
    accumulation = what == "accumulation"
    stmt = _statement(code, instrs[site.index])
    binds_nothing = stmt is not None and (isinstance(stmt, (ast.Expr, ast.AugAssign)) or _accumulates(stmt))
    if stmt is not None and (accumulation or binds_nothing) and \
            isinstance(stmt, (ast.Expr, ast.AugAssign, ast.Assign, ast.AnnAssign)):
        found = _skipping(code, instrs, site, stmt, cover)
        if found is not None:
            found.why = f"the result feeds {what}: the statement is skipped"
            return found
    if function:
        found = _returning(code, instrs, site, cover)
        if found is not None:
            found.why = f"the result is {what}: the function fails soft"
            return found
    raise Unhealable(f"no recovery lets the statement complete (the result is {what}"
                     f"{'' if function else ', at module level'})")


def _consumer(instrs: list[dis.Instruction], n: int, depth: int) -> tuple[int, int] | None:
    """shadow._consumer, which also names the instructions it does not walk
    through when they take the value from the top (a `with`, an unpacking)."""
    from . import shadow
    from .analyse import pushes

    found = shadow._consumer(instrs, n, depth)
    if found is not None:
        return found
    while n < len(instrs):  # find where the walk stopped, with the slot on top
        ins = instrs[n]
        if ins.is_jump_target and n > 0:
            return None
        if pushes(ins) is None:
            return (n, 1) if depth == 1 and ins.opname in _TAKES_TOP else None
        step = shadow._consumer(instrs, n, depth)
        if step is not None:
            return step
        effect = dis.stack_effect(ins.opcode, ins.arg if ins.opcode >= dis.HAVE_ARGUMENT else None, jump=False)
        if ins.opname in ("COPY", "SWAP", "PRECALL", "KW_NAMES") or ins.opname.startswith("JUMP"):
            return None
        pops = (pushes(ins) or 0) - effect
        if depth <= pops:
            return None
        depth += effect
        n += 1
    return None


_TAKES_TOP = {"BEFORE_WITH", "BEFORE_ASYNC_WITH", "UNPACK_SEQUENCE", "UNPACK_EX", "FOR_ITER", "GET_AWAITABLE",
              "MATCH_CLASS", "MATCH_KEYS", "MATCH_MAPPING", "MATCH_SEQUENCE"}


def _result(instrs: list[dis.Instruction], site: Site) -> tuple[int, tuple[int, ...]]:
    """The instruction whose result the guard replaces, and the original
    instructions that may raise Skip (see Plan)."""
    links = [site, *site.extra]
    last = max(link.index for link in links)
    if site.kind in ("key_guard", "subscript_guard", "index_guard", "chain_subscript_guard"):
        return last, tuple(link.index for link in links)
    if site.kind in ("division_guard", "str_coerce_guard"):
        return site.index, ()
    final = next(link for link in links if link.index == last)
    if final.method:  # a method load: the call gives the result
        step = _consumer(instrs, last + 1, 2)
        if step is None or instrs[step[0]].opname not in ("CALL", "CALL_KW"):
            raise Unhealable("the method's call is not found")
        return step[0], ()
    if site.kind in ("callable_guard", "type_coercion_guard", "file_guard"):
        step = _consumer(instrs, site.index, site.depth)
        if step is None or instrs[step[0]].opname not in ("CALL", "CALL_KW"):
            raise Unhealable("the guarded call is not found")
        return step[0], tuple(range(site.index, step[0] + 1))
    return last, ()


def _operand_use(code: CodeType, instrs: list[dis.Instruction], n: int, slot: int) -> str | None:
    """What the consumer does with the value when that fails on None: "an
    operand", "accumulation", "a context manager"...; None when it accepts it."""
    from .shadow import _callee

    ins = instrs[n]
    name = ins.opname
    if name in _VALUE or name in _LOCAL_STORES or name == "STORE_GLOBAL":
        return None
    if name == "COMPARE_OP":
        compare = ins.argrepr.removeprefix("bool(").removesuffix(")")  # 3.13 writes bool(==) for a test
        return None if compare in ("==", "!=") else "an operand of a comparison"
    if name == "CONTAINS_OP":
        return "an operand of `in`" if slot == 1 else None
    if name == "STORE_ATTR":
        return None if slot == 2 else "an object whose attribute is set"
    if name == "STORE_SUBSCR":
        return None if slot == 3 else "a container or key that is stored into"
    if name == "BINARY_OP":
        if (ins.arg or 0) >= 13:
            return "accumulation" if slot == 1 else "an operand"
        return "an operand"
    if name in ("BEFORE_WITH", "BEFORE_ASYNC_WITH"):
        return "a context manager"
    if name in ("GET_ITER", "GET_AITER", "FOR_ITER", "UNPACK_SEQUENCE", "UNPACK_EX", "LIST_EXTEND", "SET_UPDATE",
                "DICT_UPDATE", "DICT_MERGE", "GET_LEN"):
        return "an iterable"
    if name in ("CALL", "CALL_KW"):
        nargs = (ins.arg or 0) + (1 if name == "CALL_KW" else 0)
        if slot > nargs:
            return "a callable"
        callee = _callee(code, instrs, n, nargs)
        short = callee.split("(")[0].rsplit(".", 1)[-1].strip()
        if "." in callee and short in _ACCUMULATORS:
            return "accumulation"
        if short in _STRICT_CALLEES and "." not in callee:
            return f"an argument of {short}()"
        return None
    if name == "CALL_FUNCTION_EX":
        return "a callable or its arguments"
    if name in ("LOAD_ATTR", "LOAD_METHOD", "LOAD_SUPER_ATTR"):
        return "an object whose attribute is read"
    return "an operand"


def _later_use(code: CodeType, instrs: list[dis.Instruction], store: int) -> str | None:
    """How the local that `instrs[store]` sets is used at its next load (in
    instruction order, through a few copies): what fails on None there, or
    None when that use accepts it or there is none."""
    for _ in range(4):
        var = instrs[store].argval
        load = next((m for m in range(store + 1, len(instrs))
                     if (instrs[m].opname in ("LOAD_FAST", "LOAD_FAST_CHECK", "LOAD_DEREF") and
                         instrs[m].argval == var) or
                     (instrs[m].opname == "LOAD_FAST_LOAD_FAST" and var in instrs[m].argval)), None)
        if load is None:
            return None
        pair = instrs[load].opname == "LOAD_FAST_LOAD_FAST"
        step = _consumer(instrs, load + 1, 2 if pair and instrs[load].argval[0] == var else 1)
        if step is None:
            return None
        what = _operand_use(code, instrs, step[0], step[1])
        if what is not None:
            return what
        if instrs[step[0]].opname not in _LOCAL_STORES:
            return None
        store = step[0]
    return None


def _accumulates(stmt: ast.stmt) -> bool:
    """`total = total + x`: every name the statement assigns is read in its value."""
    if not isinstance(stmt, ast.Assign):
        return False
    targets = {t.id for t in stmt.targets if isinstance(t, ast.Name)}
    if len(targets) != len(stmt.targets):
        return False
    read = {n.id for n in ast.walk(stmt.value) if isinstance(n, ast.Name)}
    return targets <= read


@functools.lru_cache(maxsize=32)
def _statements(filename: str, size: int, first: str) -> tuple[ast.stmt, ...]:
    """Every statement of a source file, parsed once per file."""
    try:
        tree = ast.parse("".join(linecache.getlines(filename)))
    except (SyntaxError, ValueError):
        return ()
    return tuple(node for node in ast.walk(tree) if isinstance(node, ast.stmt))


def _statement(code: CodeType, ins: dis.Instruction) -> ast.stmt | None:
    """The innermost statement of the source whose span holds `ins`."""
    pos = ins.positions
    if pos is None or pos.lineno is None or pos.col_offset is None:
        return None
    lines = linecache.getlines(code.co_filename)
    if not lines:
        return None
    best = None
    for node in _statements(code.co_filename, len(lines), lines[0]):
        if node.lineno <= pos.lineno and _inside(pos, node):
            if best is None or (node.lineno, node.col_offset) >= (best.lineno, best.col_offset):
                best = node
    return best


def _inside(pos: Any, node: ast.stmt) -> bool:
    if pos.lineno is None or pos.col_offset is None or node.end_lineno is None or node.end_col_offset is None:
        return False
    end_line = pos.end_lineno if pos.end_lineno is not None else pos.lineno
    end_col = pos.end_col_offset if pos.end_col_offset is not None else pos.col_offset
    return (node.lineno, node.col_offset) <= (pos.lineno, pos.col_offset) and \
        (end_line, end_col) <= (node.end_lineno, node.end_col_offset)


def _skipping(code: CodeType, instrs: list[dis.Instruction], site: Site, stmt: ast.stmt,
              cover: tuple[int, ...]) -> Plan | None:
    """Skip `stmt`: from its first instruction's stack depth to the first
    instruction after the guarded one where the stack is back at it."""
    depths = stack_depths(code)
    start = site.index
    while start > 0 and instrs[start - 1].positions is not None and _inside(instrs[start - 1].positions, stmt) \
            and not instrs[start].is_jump_target:
        start -= 1
    depth = depths[start]
    if depth is None or depth < 0:
        return None
    first = min([site.index, *(link.index for link in site.extra)])
    for n in range(first + 1, len(instrs)):
        pos = instrs[n].positions
        if depths[n] == depth and (n == len(instrs) or instrs[n - 1].opname not in _NO_FALLTHROUGH):
            if not _straight(instrs, start, n):
                return None
            return Plan("skip", resume=n, depth=depth, cover=cover)
        if pos is not None and pos.lineno is not None and not _inside(pos, stmt):
            return None
    return None


def _straight(instrs: list[dis.Instruction], start: int, end: int) -> bool:
    """No jump from inside [start, end) lands outside it (except on `end`), and nothing leaves by return or raise."""
    table = None
    for n in range(start, end):
        ins = instrs[n]
        if ins.opname in _NO_FALLTHROUGH and ins.opname not in ("JUMP_FORWARD", "JUMP_BACKWARD", "JUMP",
                                                                "JUMP_NO_INTERRUPT", "JUMP_BACKWARD_NO_INTERRUPT"):
            return False
        if ins.opcode in dis.hasjrel or ins.opcode in dis.hasjabs:
            if table is None:
                table = {i.offset: k for k, i in enumerate(instrs)}
            to = table.get(ins.argval)
            if to is None or not start <= to <= end:
                if ins.opname != "FOR_ITER":  # a comprehension's exhausted loop lands after it, inside
                    return False
    return True


_NO_FALLTHROUGH = {"JUMP_FORWARD", "JUMP_BACKWARD", "JUMP_BACKWARD_NO_INTERRUPT", "JUMP", "JUMP_NO_INTERRUPT",
                   "RETURN_VALUE", "RETURN_CONST", "RAISE_VARARGS", "RERAISE"}


def _returning(code: CodeType, instrs: list[dis.Instruction], site: Site, cover: tuple[int, ...]) -> Plan | None:
    """Return the fallback from the function, when no `with` exit, `finally`
    or except-body cleanup would be skipped by returning there."""
    from .escape import _RERAISE, _TYPES, _WITH, classify, handler

    offset = instrs[site.index].offset
    found = handler(code, offset)
    depth = found[1] if found is not None else 0
    for _ in range(16):
        if found is None:
            return Plan("return", depth=depth, cover=cover)
        target = found[0]
        what, _ = classify(code, target)
        if what == _WITH:
            return None
        if what == _RERAISE:
            first = instructions(code)[offset_table(code)[target]].opname
            if first == "CALL_INTRINSIC_1":  # the generator's StopIteration conversion, outermost
                return Plan("return", depth=depth, cover=cover)
            return None  # an except body's cleanup, a finally, a comprehension's variable restore
        if what != _TYPES and what != "all":
            return None
        # the try body of an except: the try statement itself may sit in another block
        cleanup = handler(code, target)
        if cleanup is None:
            return Plan("return", depth=depth, cover=cover)
        found = handler(code, cleanup[0])
    return None


@functools.lru_cache(maxsize=32)
def stack_depths(code: CodeType) -> tuple[int | None, ...]:
    """The stack depth before each instruction (in `instructions` order), None where unreachable."""
    from .escape import _table

    instrs = instructions(code)
    where = offset_table(code)
    depths: list[int | None] = [None] * len(instrs)
    todo = [(0, 0)]
    for _start, _end, target, depth, lasti in _table(code):
        if target in where:
            todo.append((where[target], depth + 1 + int(lasti)))
    while todo:
        n, depth = todo.pop()
        while 0 <= n < len(instrs):
            if depths[n] is not None:
                break
            depths[n] = depth
            ins = instrs[n]
            arg = ins.arg if ins.opcode >= dis.HAVE_ARGUMENT else None
            if ins.opcode in dis.hasjrel or ins.opcode in dis.hasjabs:
                to = where.get(ins.argval)
                if to is not None:
                    try:
                        todo.append((to, depth + dis.stack_effect(ins.opcode, arg, jump=True)))
                    except ValueError:
                        pass
            if ins.opname in _NO_FALLTHROUGH:
                break
            try:
                depth += dis.stack_effect(ins.opcode, arg, jump=False)
            except ValueError:
                break
            n += 1
    if any(d is not None and d < 0 for d in depths):  # an instruction this walk does not model: no depths at all
        return (None,) * len(instrs)
    return tuple(depths)
