"""Loaded by Python child processes of a program pyward guards (PYTHONPATH points here).

It restores the environment the parent gave the child, installs the same
sandbox policy, and then runs the sitecustomize this one shadows, if any.
"""
import os
import sys


def _boot():
    payload = os.environ.get("PYWARD_SANDBOX")
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    if not payload:
        return
    original = os.environ.pop("PYWARD_ORIG_PYTHONPATH", None)
    if original is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = original
    del os.environ["PYWARD_SANDBOX"]
    # a sandboxed parent's child is armed as strongly as this Python allows: no variable
    # (set by a shell the program ran, say) turns it into the weaker pure-Python sandbox
    os.environ.pop("PYWARD_DISABLE_NATIVE", None)
    try:
        from pyward.sandbox.child import install_child
    except ImportError as exc:
        sys.stderr.write(f"[pyward][error] this Python cannot load pyward ({exc}); the sandbox "
                         "cannot guard it, so it does not run\n")
        sys.stderr.flush()
        os._exit(77)
    install_child(payload)


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
