"""The session's one import hook (pyward.imports): code rewritten before it
runs, watchers called after, everything else left to the import system."""
import subprocess
import sys
import textwrap


def run(tmp_path, body):
    (tmp_path / "target_mod.py").write_text("VALUE = 1\nprint('ran', VALUE)\n")
    program = textwrap.dedent("""
        import sys
        from pyward.imports import ImportHook
        hook = ImportHook()
        sys.meta_path.insert(0, hook)
    """) + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", program], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)


def test_rewrite_then_watchers_on_one_module(tmp_path):
    out = run(tmp_path, """
        def rewrite(code, name):
            return code.replace(co_consts=tuple(2 if c == 1 else c for c in code.co_consts))
        hook.rewriters.append((lambda name: name == "target_mod", rewrite))
        hook.watched["target_mod"] = [lambda m: print("after", m.VALUE)]
        import target_mod
        print(type(target_mod.__spec__.loader).__name__, target_mod.__file__.endswith("target_mod.py"))
        import importlib
        importlib.reload(target_mod)  # watchers are one-shot; the rewrite holds on every import
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["ran 2", "after 2", "_HookedLoader True", "ran 2"]


def test_modules_it_has_no_work_for_are_untouched(tmp_path):
    out = run(tmp_path, """
        hook.rewriters.append((lambda name: name == "nothing_here", lambda code, name: code))
        import target_mod
        print(type(target_mod.__spec__.loader).__name__)
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["ran 1", "SourceFileLoader"]


def test_an_extension_module_is_watched_but_not_rewritten(tmp_path):
    out = run(tmp_path, """
        hook.rewriters.append((lambda name: name == "_decimal", lambda code, name: 1 / 0))
        hook.watched["_decimal"] = [lambda m: print("after", hasattr(m, "Decimal"))]
        import _decimal
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["after True"]


def test_a_missing_module_is_the_import_systems_error(tmp_path):
    out = run(tmp_path, """
        hook.rewriters.append((lambda name: True, lambda code, name: code))
        hook.watched["no_such_module_xyz"] = [print]
        try:
            import no_such_module_xyz
        except ModuleNotFoundError as e:
            print(e)
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["No module named 'no_such_module_xyz'"]
