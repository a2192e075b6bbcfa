"""The C module's stub (_pyward.pyi) and the built module agree: the same public names, of the same kinds."""
from __future__ import annotations

import ast
import os
import sys

import pytest

import pyward._native

STUB = os.path.join(os.path.dirname(pyward._native.__file__), "_pyward.pyi")


def _version_test(test: ast.expr) -> bool:
    """`sys.version_info >= (3, 12)` and the like, evaluated for this interpreter."""
    assert isinstance(test, ast.Compare) and ast.unparse(test.left) == "sys.version_info", ast.unparse(test)
    return bool(eval(compile(ast.Expression(test), STUB, "eval"), {"sys": sys}))  # (our own stub)


def _stub_names(body: list[ast.stmt]) -> dict[str, str]:
    """Public name -> "function", "class" or "constant", for this Python (version blocks resolved)."""
    names: dict[str, str] = {}
    for node in body:
        if isinstance(node, ast.If):
            names.update(_stub_names(node.body if _version_test(node.test) else node.orelse))
        elif isinstance(node, ast.FunctionDef):
            names[node.name] = "function"
        elif isinstance(node, ast.ClassDef):
            names[node.name] = "class"
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = "constant"
        elif isinstance(node, ast.Assign):
            names.update((t.id, "constant") for t in node.targets if isinstance(t, ast.Name))
    return {name: kind for name, kind in names.items() if not name.startswith("_")}


@pytest.fixture(scope="module")
def module():
    from pyward._native import _pyward

    return _pyward


@pytest.fixture(scope="module")
def stub() -> dict[str, str]:
    with open(STUB, encoding="utf-8") as f:
        return _stub_names(ast.parse(f.read()).body)


def test_stub_ships_beside_the_module():
    assert os.path.exists(STUB)
    assert os.path.exists(os.path.join(os.path.dirname(STUB), "..", "py.typed"))


def test_every_stub_name_is_in_the_module_and_the_other_way(module, stub):
    public = {name for name in vars(module) if not name.startswith("_")}
    assert sorted(set(stub) - public) == [], "in the stub, not in the module"
    assert sorted(public - set(stub)) == [], "in the module, not in the stub"


def test_kinds_agree(module, stub):
    for name, kind in stub.items():
        value = getattr(module, name)
        if kind == "function":
            assert callable(value) and not isinstance(value, type), name
        elif kind == "class":
            assert isinstance(value, type), name
        else:
            assert not callable(value), name


def test_monitor_callbacks_only_where_sys_monitoring_is(module, stub):
    """The stub's version block matches the C file's: the monitor callbacks exist from 3.12."""
    assert ("monitor_setup" in stub) == hasattr(sys, "monitoring") == hasattr(module, "monitor_setup")


def test_fast_guard_members(module):
    guard = module.FastGuard(module.GUARD_NOT_NONE, len)
    assert guard.slow is len
    with pytest.raises(AttributeError):
        guard.slow = print
    with pytest.raises(TypeError):
        type("Sub", (module.FastGuard,), {})  # final in the stub: not a base type in C either


def test_mypy_stubtest_agrees(tmp_path):
    """mypy's own stub checker on the built module (presence, kinds, constant values, what signatures C exposes)."""
    pytest.importorskip("mypy")
    import subprocess

    result = subprocess.run([sys.executable, "-m", "mypy.stubtest", "pyward._native._pyward"], capture_output=True,
                            text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
