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
        from pyward.sandbox.childboot import arm

        arm(payload)
    except ImportError as exc:
        sys.stderr.write(f"[pyward][error] this Python cannot load pyward ({exc}); the sandbox "
                         "cannot guard it, so it does not run\n")
        sys.stderr.flush()
        os._exit(77)


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
