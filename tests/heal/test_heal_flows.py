"""Every guard kind, with its guarded value flowing into each consumer.

For each guard kind and each place its result can go (an operator, an
accumulation, a return, a context manager, an iteration, a call, an argument
of a builtin that refuses None), a program feeds a valid input, a bad one,
then a valid one again.  What a healed run must print is computed by python
itself from an oracle: the same program where the bad input's failure is
caught at the place the recovery is documented to act (the element's
contribution is left out of an accumulation; otherwise the function gives
None).  So a heal is right when its output is exactly the oracle's, and no
fallback is ever handed to an operator, a `with`, a `for` or a call.

A combination appears where the guarded operation can give a value of a type
the consumer accepts: `int()` never gives a context manager, `open()` never
an operand of `*`.  Those that cannot appear in a working program are listed
in IMPOSSIBLE, so the grid is complete by construction (test_the_grid_is_complete).
"""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from helpers import clean_env, pyward, pyward_lines

# What a guarded operation gives, by type: the value X its valid input makes it give.
#   any: any object X (the operation fetches X from somewhere); int, float, str, file: its own type.
#: guard kind -> (expression of v, result type, valid input making X, bad input)
KINDS = {
    "null_guard": ("v.a", "any", "types.SimpleNamespace(a=X)", "None"),
    "key_guard": ("v['k']", "any", "{'k': X}", "{}"),
    "subscript_guard": ("v['k']", "any", "{'k': X}", "None"),
    "chain_subscript_guard": ("v['a']['b']", "any", "{'a': {'b': X}}", "{'a': None}"),
    "index_guard": ("v[1]", "any", "[0, X]", "[0]"),
    "callable_guard": ("v()", "any", "(lambda: X)", "None"),
    "type_coercion_guard": ("int(v)", "int", "'7'", "'x7'"),
    "division_guard": ("10 / v", "float", "4", "0"),
    "str_coerce_guard": ("'n=' + v", "str", "'5'", "5"),
    "file_guard": ("open(v)", "file", "'data.txt'", "'/nonexistent/pyward-test'"),
}

#: flow -> (function body using EXPR; the oracle's body, where the failure is caught at the recovery's place)
FLOWS = {
    "operator": ("y = EXPR * 2\nreturn y", None),
    "accumulation": ("t = START\nfor v in vs:\n    t += EXPR\nreturn t",
                     "t = START\nfor v in vs:\n    try:\n        t += EXPR\n    except Exception:\n        pass\n"
                     "return t"),
    "return": ("return EXPR", None),
    "context manager": ("with EXPR as x:\n    r = str(x)[:2]\nreturn r", None),
    "iteration": ("n = 0\nfor x in EXPR:\n    n += 1\nreturn n", None),
    "call": ("return EXPR('abc')", None),
    "argument": ("return STRICT(EXPR)", None),
}

#: the X an "any" operation fetches, chosen so the consumer accepts it; and the strict builtin per type
ANY_VALUE = {"operator": "3", "accumulation": "3", "return": "'x'", "context manager": "contextlib.nullcontext('cm')",
             "iteration": "[1, 2]", "call": "len", "argument": "[1, 2]"}
STRICT = {"any": "len", "int": "abs", "float": "abs", "str": "len", "file": "sorted"}
START = {"any": "0", "int": "0", "float": "0", "str": "''"}

#: what a type never is, so the flow cannot occur in a program that works on its valid input
IMPOSSIBLE = {
    "int": {"context manager", "iteration", "call"},
    "float": {"context manager", "iteration", "call"},
    "str": {"context manager", "call"},
    "file": {"operator", "accumulation", "call"},
}

GRID = [(kind, flow) for kind, (_, rtype, _, _) in KINDS.items() for flow in FLOWS
        if flow not in IMPOSSIBLE.get(rtype, ())]


def _program(kind: str, flow: str, oracle: bool) -> str:
    expr, rtype, good, bad = KINDS[kind]
    good = good.replace("X", ANY_VALUE[flow])
    body, caught = FLOWS[flow]
    if oracle and caught is not None:
        body = caught
    body = body.replace("EXPR", expr).replace("STRICT", STRICT[rtype]).replace("START", START.get(rtype, "0"))
    arg = "vs" if flow == "accumulation" else "v"
    source = f"import contextlib, types\n\ndef f({arg}):\n{textwrap.indent(body, '    ')}\n\n"
    source += "def show(r):\n    return 'a file' if hasattr(r, 'read') else repr(r)\n\n"
    if oracle and caught is None:  # the function gives None where the bad input fails
        source += "def g(v):\n    try:\n        return f(v)\n    except Exception:\n        return None\n\n"
    call = "g" if oracle and caught is None else "f"
    if flow == "accumulation":
        source += f"print(show({call}([{good}, {bad}, {good}])))\n"
    else:
        source += f"for v in [{good}, {bad}, {good}]:\n    print(show({call}(v)))\n"
    return source + "print('end')\n"


def test_the_grid_is_complete():
    """Every kind meets every flow, unless its result type can never be that consumer's operand."""
    from itertools import product
    for kind, flow in product(KINDS, FLOWS):
        rtype = KINDS[kind][1]
        assert ((kind, flow) in GRID) != (flow in IMPOSSIBLE.get(rtype, ())), (kind, flow)
    assert {k for k, _ in GRID} == set(KINDS) and {f for _, f in GRID} == set(FLOWS)


@pytest.mark.parametrize("kind,flow", GRID, ids=[f"{k}-{f.replace(' ', '-')}" for k, f in GRID])
def test_the_recovery_lets_the_value_flow_on(tmp_path, kind, flow):
    (tmp_path / "data.txt").write_text("one\ntwo\nthree\n")
    (tmp_path / "app.py").write_text(_program(kind, flow, oracle=False))
    (tmp_path / "oracle.py").write_text(_program(kind, flow, oracle=True))
    plain = subprocess.run([sys.executable, "app.py"], cwd=tmp_path, env=clean_env(), capture_output=True, text=True)
    oracle = subprocess.run([sys.executable, "oracle.py"], cwd=tmp_path, env=clean_env(), capture_output=True,
                            text=True)
    assert plain.returncode == 1 and oracle.returncode == 0, (plain.stderr, oracle.stderr)  # the bug is real
    assert oracle.stdout.startswith(plain.stdout) and oracle.stdout.endswith("end\n")

    first = pyward("run", "--heal", "app.py", cwd=tmp_path)
    lines = pyward_lines(first.stderr)
    assert first.returncode == 0 and "Traceback" not in first.stderr, first.stderr
    assert any(f"({kind} on " in line and "healed" in line for line in lines), lines
    # the crashed attempt's output, then the healed re-run's, which is the oracle's
    assert first.stdout == plain.stdout + oracle.stdout, first.stderr

    second = pyward("run", "--heal", "app.py", cwd=tmp_path)
    assert (second.returncode, second.stdout) == (0, oracle.stdout), second.stderr
    lines = pyward_lines(second.stderr)
    assert any(line.startswith("[pyward] already healed: ") for line in lines), lines
    assert not any("re-running" in line for line in lines), lines
