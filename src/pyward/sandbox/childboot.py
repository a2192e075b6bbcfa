"""Arming a Python child of a guarded program, before its first line runs.

Two ways in, one arming: the `sitecustomize` in boot/ (PYTHONPATH points the
child there), and `pyward_boot.pth` in site-packages for children that ignore
the environment's PYTHON* variables (`python -I`, `python -E`): site still
reads `.pth` files, and the policy is still in the environment they inherit.
A child started with `-S` imports no site at all: only the kernel wall holds it.
"""
import os


def arm(payload: str) -> None:
    """Give the child the environment the program gave it, then the parent's policy."""
    original = os.environ.pop("PYWARD_ORIG_PYTHONPATH", None)
    if original is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = original
    os.environ.pop("PYWARD_SANDBOX", None)
    # a sandboxed parent's child is armed as strongly as this Python allows: no variable
    # (set by a shell the program ran, say) turns it into the weaker pure-Python sandbox
    os.environ.pop("PYWARD_DISABLE_NATIVE", None)
    from .. import children
    from .child import install_child

    children.armed = True
    install_child(payload)

