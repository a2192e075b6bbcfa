"""`pyward patches`, `pyward explain [NAME]`, `pyward rollback NAME | --all`
(and the help of `pyward watch`, which runs programs: watch.py).

Offline commands over the patch store: they never run the program.  A
recipe's status is computed from the source as it is now: `active` when
the function's code still hashes the same (the guard applies), `stale` when
it changed (fixed, most likely), `missing` when the function or file is gone.
"""
from __future__ import annotations

import functools
import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import CodeType
    from typing import Any

    from .store import Recipe, Store

FALLBACK_WORDS = {"none": "None", "zero": "0", "empty": "an empty string or file", "str": "str() of the operand"}

FIXES = {
    "null_guard": "check for None before using it: `if {operand} is not None:` (or find why it is None)",
    "key_guard": "the key may be missing: use `.get(key)` or test `key in {operand}` first",
    "subscript_guard": "{operand} may be None: test it before indexing",
    "chain_subscript_guard": "each level may be missing or None: `(d.get('a') or {{}}).get('b')`, or validate the "
                             "data when it arrives",
    "index_guard": "check the index against `len({operand})` before indexing",
    "type_coercion_guard": "validate the input before converting it, or catch ValueError where it is read",
    "division_guard": "decide what a zero divisor means here: `if {operand} == 0: ...`",
    "str_coerce_guard": "convert explicitly: `str({operand})` or use an f-string",
    "file_guard": "check that the file exists (`os.path.exists`) or handle FileNotFoundError where it is opened",
    "callable_guard": "{operand} may be None: test it before calling it",
}


def add_commands(commands: Any, handlers: dict[str, Any]) -> None:
    store_help = "the patch store (default: .pyward/heal.db in the working directory)"
    patches = commands.add_parser(
        "patches", help="list the heal patches in the store",
        description="One line per patch: function, guard kind, operand, fallback, hits, age, where, status "
                    "(active: still applies; stale: the function changed; missing: it is gone).")
    patches.add_argument("--store", metavar="FILE", help=store_help)
    handlers["patches"] = cmd_patches
    explain = commands.add_parser(
        "explain", help="explain a heal patch in plain language",
        description="What failed, what the guard does, the source line, the bytecode difference and a "
                    "suggested fix in the source. NAME is a function name, qualified name or patch id; "
                    "without NAME every patch is explained.")
    explain.add_argument("name", metavar="NAME", nargs="?")
    explain.add_argument("--store", metavar="FILE", help=store_help)
    handlers["explain"] = cmd_explain
    rollback = commands.add_parser(
        "rollback", help="remove heal patches from the store",
        description="Remove the patches of function NAME (or patch id), or all of them with --all. The next "
                    "run starts without them.")
    rollback.add_argument("name", metavar="NAME", nargs="?")
    rollback.add_argument("--all", action="store_true", help="remove every patch")
    rollback.add_argument("--dry-run", action="store_true", help="say what would be removed, remove nothing")
    rollback.add_argument("--store", metavar="FILE", help=store_help)
    handlers["rollback"] = cmd_rollback
    from .watch import add_command

    add_command(commands)


def _open(args: Any) -> Store:
    from ..commandline import fail
    from .store import Store

    path = args.store or os.path.join(os.getcwd(), ".pyward", "heal.db")
    try:
        return Store(path, create=False)
    except FileNotFoundError:
        fail(f"no patch store at {path} (pyward run --heal creates it)", 1)
    except Exception as exc:
        fail(f"cannot read the patch store {path}: {exc}", 1)


def _select(recipes: list[Recipe], name: str | None) -> list[Recipe]:
    if name is None:
        return recipes
    return [r for r in recipes if name in (str(r.id), r.qualname, r.qualname.rsplit(".", 1)[-1])]


@functools.lru_cache(maxsize=None)
def _compiled(path: str) -> CodeType | None:
    """A source file's module code as it is now, compiled once per command (many recipes share a file)."""
    try:
        with open(path, "rb") as f:
            return compile(f.read(), path, "exec", dont_inherit=True)
    except (OSError, SyntaxError, ValueError):
        return None


def find_code(recipe: Recipe) -> tuple[CodeType | None, str]:
    """The function's code as the source is now, and the recipe's status."""
    from .store import PYTHON
    from .synth import code_hash, walk

    if recipe.python != PYTHON:
        return None, f"python {recipe.python}"
    module = _compiled(recipe.file)
    if module is None:
        return None, "missing"
    for code in walk(module):
        if code.co_qualname == recipe.qualname or (recipe.qualname == "<module>" and code is module):
            return code, "active" if code_hash(code) == recipe.code_hash else "stale"
    return None, "missing"


def _age(recipe: Recipe) -> str:
    seconds = time.time() - recipe.created
    if seconds < 3600:
        return f"{int(seconds // 60)}m"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h"
    return f"{int(seconds // 86400)}d"


def _where(recipe: Recipe) -> str:
    from ..config import display_path

    return f"{display_path(recipe.file)}:{recipe.lineno}"


def cmd_patches(args: Any) -> int:
    store = _open(args)
    recipes = store.all()
    store.close()
    if not recipes:
        print("no patches in the store")
        return 0
    rows = [("ID", "FUNCTION", "GUARD", "OPERAND", "FALLBACK", "RECOVERY", "HITS", "AGE", "WHERE", "STATUS")]
    for r in recipes:
        code, status = find_code(r)
        rows.append((str(r.id), r.qualname, r.kind, r.operand, r.fallback, _recovery(r, code), str(r.hits), _age(r),
                     _where(r), status))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


RECOVERY_WORDS = {
    "value": "the failing operation gives the fallback and the statement goes on with it",
    "skip": "the statement is skipped (its contribution is left out) and the program goes on with the next one",
    "return": "the function returns the fallback at once (it fails soft)",
}


def _recovery(recipe: Recipe, code: CodeType | None) -> str:
    """The recipe's recovery; for a recipe made without one, the one chosen from the code now."""
    stored = recipe.recovery()
    if stored or code is None:
        return stored or "-"
    from .analyse import Site, Unhealable
    from .recovery import plan

    try:
        return plan(code, Site.from_json(recipe.site_data())).recovery
    except Unhealable:
        return "none"
    except Exception:
        return "-"


def cmd_explain(args: Any) -> int:
    import linecache

    from ..commandline import fail
    from .guards import DESCRIPTIONS

    store = _open(args)
    recipes = _select(store.all(), args.name)
    store.close()
    if not recipes:
        fail(f"no patch named {args.name!r} (see `pyward patches`)" if args.name else "no patches in the store", 1)
    for n, r in enumerate(recipes):
        if n:
            print()
        what, returns = DESCRIPTIONS[r.kind]
        code, status = find_code(r)
        print(f"patch {r.id}: {r.qualname} in {_where(r)} ({status}, {r.hits} hits, made {_age(r)} ago "
              f"with pyward {r.pyward} on python {r.python})")
        print(f"  what failed:  {r.exception}")
        print(f"  guard:        {r.kind}: {what}")
        print(f"  it does:      when {r.operand} would make it fail and nothing in the program would catch the "
              f"error, {returns} (fallback {r.fallback!r}: {FALLBACK_WORDS[r.fallback]}); valid values take the "
              "original path, unchanged")
        recovery = _recovery(r, code)
        print(f"  recovery:     {recovery}: {RECOVERY_WORDS.get(recovery, 'not applied: no recovery fits the code')}")
        line = linecache.getline(r.file, r.lineno or 0).rstrip()
        if line:
            print(f"  source line:  {r.lineno}: {line.strip()}")
        print(f"  suggested fix: {FIXES[r.kind].format(operand=r.operand)}")
        if code is not None and status == "active":
            print("  bytecode ('+' inserted by the guard):")
            for text in _diff(code, r):
                print(f"    {text}")
        elif status == "stale":
            print("  the function changed since the patch was made: it is no longer applied "
                  f"(`pyward rollback {r.id}` removes it)")
    return 0


def _diff(code: CodeType, recipe: Recipe) -> list[str]:
    from .analyse import Site, Unhealable
    from .guards import Guard, fallback_value, helper
    from .recovery import plan
    from .synth import RefusedPatch, diff, synthesise

    site = Site.from_json(recipe.site_data())
    try:
        site.plan = plan(code, site)
    except Unhealable as exc:
        return [f"(no recovery fits the code: {exc})"]
    site.plan.value = fallback_value(recipe.fallback)
    guard = Guard(recipe.kind, recipe.operand, recipe.fallback, None, "", site.plan.recovery, site.catches)
    try:
        patched, inserted = synthesise(code, [site], lambda s, link: helper(link.kind, guard, link.detail,
                                                                              link.method))
    except RefusedPatch as exc:
        return [f"(the guard no longer verifies: {exc})"]
    lines = diff(patched, inserted)
    marked = [i for i, text in enumerate(lines) if text.startswith("+")]
    keep = {j for i in marked for j in range(i - 3, i + 4) if 0 <= j < len(lines)}
    out, last = [], -1
    for i in sorted(keep):
        if last >= 0 and i != last + 1:
            out.append("  ...")
        out.append(lines[i])
        last = i
    return out


def cmd_rollback(args: Any) -> int:
    from ..commandline import fail

    if not args.all and not args.name:
        fail("pyward rollback: give a NAME (function or patch id) or --all (see 'pyward rollback --help')")
    if args.all and args.name:
        fail("pyward rollback: give either NAME or --all, not both")
    store = _open(args)
    recipes = _select(store.all(), None if args.all else args.name)
    if not recipes:
        store.close()
        fail(f"no patch named {args.name!r} (see `pyward patches`)" if args.name else "no patches in the store", 1)
    verb = "would remove" if args.dry_run else "removed"
    for r in recipes:
        print(f"{verb} patch {r.id}: {r.label()} at {_where(r)}")
    if not args.dry_run:
        store.delete([r.saved_id() for r in recipes])
    store.close()
    return 0

