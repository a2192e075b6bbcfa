"""The heal corpus: every guard kind in every kind of function, end to end.

Each program feeds a valid input, a bad one, then a valid one again through
a function with a structural bug.  Under `pyward run --heal` the first run
is patched and re-run (nothing was written, so re-running is safe), the
second run starts already healed; both print exactly what the program
prints when the bad input yields None, and the valid inputs print exactly
what plain python prints for them.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from helpers import clean_env, pyward, pyward_lines

#: guard kind -> (expression of v, valid input, bad input, repr of the valid result)
BUGS = {
    "null_guard": ("v.upper()", "'ab'", "None", "'AB'"),
    "key_guard": ("v['k']", "{'k': 1}", "{}", "1"),
    "subscript_guard": ("v['k']", "{'k': 1}", "None", "1"),
    "chain_subscript_guard": ("v['a']['b']", "{'a': {'b': 2}}", "{'a': None}", "2"),
    "index_guard": ("v[3]", "[0, 1, 2, 3]", "[1]", "3"),
    "type_coercion_guard": ("int(v)", "'7'", "'x7'", "7"),
    "division_guard": ("10 / v", "4", "0", "2.5"),
    "str_coerce_guard": ("'n=' + v", "'5'", "5", "'n=5'"),
    "file_guard": ("open(v)", "__file__", "'/nonexistent/pyward-test'", None),
    "callable_guard": ("v(5)", "str", "None", "'5'"),
    # calls with keyword arguments (KW_NAMES on 3.11/3.12, CALL_KW on 3.13)
    "callable_guard/kw": ("v(a=5)", "dict", "None", "{'a': 5}"),
    "type_coercion_guard/kw": ("int(v, base=16)", "'ff'", "'zz'", "255"),
    "null_guard/kw": ("v.split(sep=',')", "'a,b'", "None", "['a', 'b']"),
    "file_guard/kw": ("open(v, encoding='utf-8')", "__file__", "'/nonexistent/pyward-test'", None),
}

#: function kind -> (definition using EXPR, call of it with v)
FUNCTIONS = {
    "function": ("def f(v):\n    return EXPR\n", "f(v)"),
    "method": ("class C:\n    def f(self, v):\n        return EXPR\n", "C().f(v)"),
    "staticmethod": ("class C:\n    @staticmethod\n    def f(v):\n        return EXPR\n", "C.f(v)"),
    "classmethod": ("class C:\n    @classmethod\n    def f(cls, v):\n        return EXPR\n", "C.f(v)"),
    "closure": ("def outer():\n    k = 1\n    def f(v):\n        return k and EXPR\n    return f\n", "outer()(v)"),
    "lambda": ("f = lambda v: EXPR\n", "f(v)"),
    "comprehension": ("def f(v):\n    return [EXPR for _ in range(1)][0]\n", "f(v)"),
    "generator": ("def g(v):\n    yield EXPR\n", "next(g(v))"),
    "async": ("import asyncio\nasync def f(v):\n    return EXPR\n", "asyncio.run(f(v))"),
    "imported": ("from helper import f\n", "f(v)"),
    "module-level": ("", "EXPR"),
}

#: Each kind in plain functions, methods, closures and at module level; the
#: other function kinds with a few kinds each.
CASES = [(kind, fn) for kind in BUGS if "/" not in kind for fn in ("function", "method", "closure", "module-level")]
CASES += [(kind, fn) for kind in BUGS if "/" in kind for fn in ("function", "module-level")] + [
    (kind, fn) for fn, kinds in {
        "staticmethod": ("key_guard", "division_guard"),
        "classmethod": ("null_guard", "index_guard"),
        "lambda": ("subscript_guard", "str_coerce_guard"),
        "comprehension": ("null_guard", "chain_subscript_guard", "type_coercion_guard"),
        "generator": ("key_guard", "callable_guard"),
        "async": ("null_guard", "division_guard"),
        "imported": ("index_guard", "file_guard", "chain_subscript_guard"),
    }.items() for kind in kinds]


def _program(kind: str, fn: str) -> tuple[str, str | None]:
    expr, good, bad, _ = BUGS[kind]
    definition, call = FUNCTIONS[fn]
    call = call.replace("EXPR", expr)
    shown = "r is not None" if kind.startswith("file_guard") else "r"
    body = f"for v in [{good}, {bad}, {good}]:\n    r = {call}\n    print(repr({shown}))\nprint('end')\n"
    if fn == "imported":
        return definition + body, "def f(v):\n    return EXPR\n".replace("EXPR", expr)
    return definition.replace("EXPR", expr) + body, None


def _expected(kind: str) -> str:
    valid = BUGS[kind][3] or "True"
    bad = "False" if kind.startswith("file_guard") else "None"
    return f"{valid}\n{bad}\n{valid}\nend\n"


@pytest.mark.parametrize("kind,fn", CASES, ids=[f"{k}-{f}" for k, f in CASES])
def test_heal_corpus(tmp_path, kind, fn):
    source, helper = _program(kind, fn)
    (tmp_path / "app.py").write_text(source)
    if helper is not None:
        (tmp_path / "helper.py").write_text(helper)
    valid = BUGS[kind][3] or "True"

    plain = subprocess.run([sys.executable, "app.py"], cwd=tmp_path, env=clean_env(), capture_output=True, text=True)
    assert plain.returncode == 1 and plain.stdout == f"{valid}\n", plain.stderr  # the bug is real

    first = pyward("run", "--heal", "app.py", cwd=tmp_path)
    lines = pyward_lines(first.stderr)
    assert first.returncode == 0, first.stderr
    guard = kind.split("/")[0]
    assert any(f"({guard} on " in line and "healed" in line for line in lines), lines
    assert any("re-running the program (attempt 2 of 4)" in line for line in lines), lines
    # the crashed attempt's output, then the healed re-run's
    assert first.stdout == f"{valid}\n" + _expected(kind), first.stderr
    assert "Traceback" not in first.stderr

    second = pyward("run", "--heal", "app.py", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert second.stdout == _expected(kind), second.stderr
    lines = pyward_lines(second.stderr)
    assert any(line.startswith("[pyward] already healed: ") and f"({guard} on " in line for line in lines), lines
    assert not any("re-running" in line for line in lines)
    assert lines[-1].startswith("[pyward] run end: exit=0") and "1 healed" in lines[-1], lines


def test_corpus_size():
    """The issue asks for at least 40 crash programs (plus the scenario tests in test_heal.py)."""
    assert len(CASES) >= 40
    assert {k for k, _ in CASES} == set(BUGS) and {f for _, f in CASES} == set(FUNCTIONS)


def test_valid_inputs_are_never_patched(tmp_path):
    """A run where nothing fails creates no patch, and the program's output is python's."""
    source = textwrap.dedent("""
        def f(d, xs, n):
            return d['k'], xs[0], 10 / n, int('3'), 'a' + 'b'
        for _ in range(3):
            print(f({'k': 1}, [5], 2))
    """)
    (tmp_path / "app.py").write_text(source)
    run = pyward("run", "--heal", "app.py", cwd=tmp_path)
    assert run.returncode == 0 and run.stdout == "(1, 5, 5.0, 3, 'ab')\n" * 3
    assert not (tmp_path / ".pyward" / "heal.db").exists()  # no store is even created
