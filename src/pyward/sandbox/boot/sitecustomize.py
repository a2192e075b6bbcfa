"""Loaded by Python child processes of a program pyward guards (PYTHONPATH points here).

It arms the child (pyward.sandbox.childboot: the environment the parent gave
it, the same sandbox policy), then runs the sitecustomize this one shadows, if any.
"""
import os
import sys


def _boot():
    payload = os.environ.get("PYWARD_SANDBOX")
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    if not payload:
        return
    try:
        try:
            from pyward.sandbox.childboot import arm
        except ImportError:
            _load_beside(here)
            from pyward.sandbox.childboot import arm

        arm(payload)
    except ImportError as exc:
        sys.stderr.write(f"[pyward][error] this Python cannot load pyward ({exc}); the sandbox "
                         "cannot guard it, so it does not run\n")
        sys.stderr.flush()
        os._exit(77)


def _load_beside(here):
    """pyward from where the parent loaded it (this file is pyward/sandbox/boot/ there), and
    nothing else of that directory: a virtualenv the program made (`python -m build`, tox, nox)
    has no pyward of its own, and must not see the parent's other packages."""
    from importlib.machinery import PathFinder
    from importlib.util import module_from_spec

    root = os.path.dirname(os.path.dirname(os.path.dirname(here)))
    spec = PathFinder.find_spec("pyward", [root])
    if spec is None or spec.loader is None:
        raise ImportError(f"No module named 'pyward' in {root}")
    module = module_from_spec(spec)
    sys.modules["pyward"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["pyward"]
        raise


def _chain():
    """Run the sitecustomize module that this one hides, if there is one."""
    me = sys.modules.pop("sitecustomize", None)
    try:
        import sitecustomize  # type: ignore[import-not-found]  # noqa: F401  (the site's own, found at run time)
    except ImportError:
        pass
    finally:
        sys.modules.setdefault("sitecustomize", me)


_boot()
_chain()
