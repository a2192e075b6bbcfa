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
    """At least 40 crash programs (plus the scenario tests in test_heal.py), each bug and function covered."""
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


# -- where python would have caught it, and where the value goes ------------------------------------------
#
# Each program: (source, what plain python prints before the crash, what a healed run prints).  Under
# `pyward run --heal` the first run prints the crashed attempt's output and then the healed re-run's; the
# second run starts healed.  Careful callers (try/except) get their own result before and after the heal.

RECOVERY = {
    # A: a shared helper, a careful caller and a careless one
    "careful-caller-index": ("""
        def first(items):
            return items[0]
        def first_or_empty(items):
            try:
                return first(items)
            except IndexError:
                return "<empty>"
        print(first_or_empty([]))
        print(first([]))
        print(first_or_empty([]))
        print(first_or_empty([4]))
    """, "<empty>\n", "<empty>\nNone\n<empty>\n4\n"),
    "careful-caller-key": ("""
        CONFIG = {"a": 1}
        def setting(name):
            return CONFIG[name]
        def setting_or(name, default):
            try:
                return setting(name)
            except (LookupError, ValueError):
                return default
        print(setting_or("b", "dflt"))
        print(setting("b"))
        print(setting_or("b", "dflt"), setting("a"))
    """, "dflt\n", "dflt\nNone\ndflt 1\n"),
    "careful-caller-int": ("""
        def to_int(value):
            return int(value)
        def parse(value):
            try:
                return to_int(value)
            except ValueError:
                return "bad"
        print(parse("abc"))
        print(to_int(None))
        print(parse("abc"), to_int("12"))
    """, "bad\n", "bad\nNone\nbad 12\n"),
    "eafp-other-type-same-frame": ("""
        def parse(v):
            try:
                n = int(v)
            except ValueError:
                return "bad"
            return n
        print(parse("abc"))
        print(parse(None))
        print(parse("abc"), parse("7"))
    """, "bad\n", "bad\nNone\nbad 7\n"),
    "with-suppress-caller": ("""
        import contextlib
        def first(items):
            return items[0]
        with contextlib.suppress(IndexError):
            print("suppressed", first([]))
        print(first([]))
        with contextlib.suppress(IndexError):
            print("suppressed", first([]))
        print("end")
    """, "", "None\nend\n"),
    # C: a dict subclass and another mapping
    "ordereddict": ("""
        from collections import OrderedDict, UserDict
        def get(d, k):
            return d[k]
        print(get(OrderedDict(a=1), "a"))
        print(get(OrderedDict(a=1), "b"))
        print(get(UserDict(a=1), "b"), get({"a": 2}, "a"))
    """, "1\n", "1\nNone\nNone 2\n"),
    # B: the value goes into an accumulation: the statement is skipped, the loop goes on
    "accumulate-augassign": ("""
        prices = {"apple": 3, "pear": 2}
        def total(items):
            s = 0
            for item in items:
                s += prices[item]
            return s
        print(total(["apple", "kiwi", "pear"]))
    """, "", "5\n"),
    "accumulate-assign": ("""
        xs = [1, 2]
        total = 0
        for i in [0, 5, 1]:
            total = total + xs[i]
        print(total)
    """, "", "3\n"),
    "accumulate-append": ("""
        rates = {"a": "1", "b": "x", "c": "3"}
        out = []
        for k in rates:
            out.append(int(rates[k]))
        print(out)
    """, "", "[1, 3]\n"),
    "accumulate-division": ("""
        def spread(ns):
            s = 0
            for n in ns:
                s += 12 / n
            return s
        print(spread([2, 0, 3]))
    """, "", "10.0\n"),
    # B: an operand in a statement that binds nothing: skipped
    "operator-print": ("""
        xs = [1, 2]
        for i, j in [(0, 1), (0, 5), (1, 1)]:
            print(xs[i] * xs[j])
        print("end")
    """, "2\n", "2\n4\nend\n"),
    "format-call-print": ("""
        TEMPLATES = {"hi": "hello {name}"}
        for key in ["hi", "bye"]:
            print(TEMPLATES.get(key).format(**{"name": "ada"}))
        print("end")
    """, "hello ada\n", "hello ada\nend\n"),
    # B: an operand, a context manager, an iterable, a callable in a function: it returns its fallback
    "operator-key": ("""
        def port(cfg):
            p = cfg["port"] + 1
            print("computed", p)
            return p
        print(port({"port": 80}), port({}))
    """, "computed 81\n", "computed 81\n81 None\n"),
    "operator-null": ("""
        def label(prefix):
            return prefix.upper() + ":"
        print(label("a"), label(None))
    """, "", "A: None\n"),
    "operator-attribute": ("""
        class Entry:
            price = 2
        def cost(entry, qty):
            c = entry.price * qty
            print("cost", c)
            return c
        print(cost(Entry(), 3), cost(None, 3))
    """, "cost 6\n", "cost 6\n6 None\n"),
    "operator-int": ("""
        def next_age(age):
            return int(age) + 1
        print(next_age("41"), next_age("x"))
    """, "", "42 None\n"),
    "operator-str": ("""
        def tag(n):
            return ("n=" + n).upper()
        print(tag("5"), tag(5))
    """, "", "N=5 None\n"),
    "operator-index-stored": ("""
        def product(xs, i, j):
            a = xs[i]
            b = xs[j]
            return a * b
        print(product([1, 2], 0, 1), product([1, 2], 0, 5))
    """, "", "2 None\n"),
    "context-manager-open": ("""
        def load(path):
            with open(path) as f:
                return f.read()
        print(len(load(__file__)) > 0, load("/nonexistent/pyward-test"))
    """, "", "True None\n"),
    "format-call-stored": ("""
        def render(template, context):
            text = template.format(**context)
            return text.upper()
        print(render("hi {n}", {"n": 1}), render(None, {"n": 1}))
    """, "", "HI 1 None\n"),
    "iteration-key": ("""
        def total(order):
            t = 0
            for x in order["items"]:
                t += x
            return t
        print(total({"items": [1, 2]}), total({}))
    """, "", "3 None\n"),
    "iteration-null": ("""
        def words(text):
            n = 0
            for w in text.split():
                n += 1
            return n
        print(words("a b"), words(None))
    """, "", "2 None\n"),
    "call-key": ("""
        HANDLERS = {"a": lambda: "ran a"}
        def run(name):
            return HANDLERS[name]()
        print(run("a"), run("b"))
    """, "", "ran a None\n"),
    "call-callable": ("""
        def apply(fn, x):
            return fn(x) + 1
        print(apply(abs, -1), apply(None, -1))
    """, "", "2 None\n"),
    "call-strict-builtin": ("""
        def size(d):
            return len(d["items"])
        print(size({"items": [1]}), size({}))
    """, "", "1 None\n"),
    "return-value": ("""
        def ratio(a, b):
            return a / b
        print(ratio(1, 2), ratio(1, 0))
    """, "", "0.5 None\n"),
}

#: Crashes no recovery lets complete: python's traceback and status, nothing stored.
UNHEALED = {
    "module-level-operand": ("""
        CFG = {}
        print("start")
        port = CFG["port"] + 1
        print(port)
    """, "start\n", "KeyError: 'port'"),
    "module-level-with": ("""
        print("start")
        with open("/nonexistent/pyward-test") as f:
            print(f.read())
    """, "start\n", "FileNotFoundError"),
    "return-would-skip-with-exit": ("""
        import contextlib
        @contextlib.contextmanager
        def step():
            yield
            print("exit ran")
        def work(d):
            with step():
                v = d["k"] + 1
                print("after")
            return v
        print(work({}))
    """, "", "KeyError: 'k'"),
}


@pytest.mark.parametrize("name", sorted(RECOVERY))
def test_recovery_follows_the_value(tmp_path, name):
    source, before, healed = RECOVERY[name]
    (tmp_path / "app.py").write_text(textwrap.dedent(source))
    plain = subprocess.run([sys.executable, "app.py"], cwd=tmp_path, env=clean_env(), capture_output=True, text=True)
    assert plain.returncode == 1 and plain.stdout == before, plain.stderr  # the bug is real
    first = pyward("run", "--heal", "app.py", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "Traceback" not in first.stderr
    assert first.stdout.endswith(healed), first.stderr
    second = pyward("run", "--heal", "app.py", cwd=tmp_path)
    assert second.returncode == 0 and second.stdout == healed, second.stderr
    lines = pyward_lines(second.stderr)
    assert any(line.startswith("[pyward] already healed: ") for line in lines), lines
    assert not any("re-running" in line or "unhealed" in line for line in lines), lines


def test_recovery_is_journaled_stored_and_shown(tmp_path):
    source = textwrap.dedent(RECOVERY["accumulate-augassign"][0]) + textwrap.dedent("""
        def port(cfg):
            p = cfg["port"] + 1
            return p
        print(port({}))
    """)
    (tmp_path / "app.py").write_text(source)
    run = pyward("run", "--heal", "app.py", cwd=tmp_path)
    assert run.returncode == 0 and run.stdout.endswith("5\nNone\n"), run.stderr
    lines = pyward_lines(run.stderr)
    assert any("healed KeyError: 'kiwi' in total (key_guard on prices): the guard skips the statement when prices "
               "would fail" in line for line in lines), lines
    assert any("healed KeyError: 'port' in port (key_guard on cfg): the guard makes the function return None when "
               "cfg would fail" in line for line in lines), lines
    assert "[pyward] guard fired: total (key_guard on prices) -> statement skipped" in lines
    table = pyward("patches", cwd=tmp_path).stdout.splitlines()
    assert [row.split()[1:6] for row in table[1:]] == [["total", "key_guard", "prices", "none", "skip"],
                                                        ["port", "key_guard", "cfg", "none", "return"]]
    explained = pyward("explain", "port", cwd=tmp_path).stdout
    assert "recovery:     return: the function returns the fallback at once" in explained
    assert "RETURN_VALUE" in explained


def test_a_dict_subclass_is_healed_in_one_run(tmp_path):
    (tmp_path / "app.py").write_text(textwrap.dedent(RECOVERY["ordereddict"][0]))
    run = pyward("run", "--heal", "app.py", cwd=tmp_path)
    lines = pyward_lines(run.stderr)
    assert run.returncode == 0, run.stderr
    # one heal and one re-run: the guard made on the OrderedDict also fires for the UserDict at the same site
    assert sum("re-running the program" in line for line in lines) == 1, lines
    assert sum("healed KeyError" in line for line in lines) == 1, lines


@pytest.mark.parametrize("name", sorted(UNHEALED))
def test_no_recovery_no_heal(tmp_path, name):
    source, before, error = UNHEALED[name]
    (tmp_path / "app.py").write_text(textwrap.dedent(source))
    plain = subprocess.run([sys.executable, "app.py"], cwd=tmp_path, env=clean_env(), capture_output=True, text=True)
    run = pyward("run", "--heal", "app.py", cwd=tmp_path)
    assert (run.returncode, run.stdout) == (plain.returncode, plain.stdout) == (1, before)
    assert error in run.stderr and "Traceback (most recent call last)" in run.stderr
    assert any("unhealed" in line and "no recovery lets the statement complete" in line
               for line in pyward_lines(run.stderr)), run.stderr
    assert not (tmp_path / ".pyward" / "heal.db").exists() or "no patches" in pyward("patches", cwd=tmp_path).stdout


def test_a_test_runner_that_catches_everything_counts_as_catching(tmp_path):
    """Under a test runner's `except Exception`, python would not have crashed: no guard falls back there."""
    (tmp_path / "lib.py").write_text("def first(items):\n    return items[0]\n")
    (tmp_path / "app.py").write_text(textwrap.dedent("""
        import lib
        print(lib.first([]) if len(__import__("sys").argv) > 1 else "start")
        def runner(test):
            try:
                test()
            except Exception as exc:
                return f"failed: {type(exc).__name__}"
            return "passed"
        print(runner(lambda: lib.first([])))
    """))
    healed = pyward("run", "--heal", "app.py", "crash", cwd=tmp_path)  # learns the guard on lib.first
    assert healed.returncode == 0 and healed.stdout.endswith("None\nfailed: IndexError\n"), healed.stderr
    run = pyward("run", "--heal", "app.py", cwd=tmp_path)
    assert run.returncode == 0 and run.stdout == "start\nfailed: IndexError\n", run.stderr
