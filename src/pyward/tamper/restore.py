"""Putting a sealed original back, exactly.

The raw namespace entry is written (a class through type.__setattr__), and a
function whose code, defaults or kwdefaults were swapped gets the ones it was
sealed with: they are remembered when the function is sealed.
"""
from __future__ import annotations

from .. import _types as types  # not the stdlib's: see _types.py
from .._isolation import isolate_builtins
from .seals import MISSING, Seal, fingerprint

isolate_builtins(globals())

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: id(original code) -> (code, defaults, kwdefaults), kept when a function is sealed
_CODES: dict[int, tuple[Any, Any, Any]] = {}


def remember_code(seal: Seal) -> None:
    """Keep what a sealed function runs (read when it was sealed), to put it back after a code swap."""
    if seal.fingerprint is not None and seal.runs is not None:
        _CODES.setdefault(seal.fingerprint[0], seal.runs)


def put_back(seal: Seal, native: Any) -> None:
    """Write the seal's original back (quietly for the watchers, when there are some)."""
    def write() -> None:
        if seal.original is MISSING:  # sealed as absent (an inherited method, an instance's own method)
            if seal.attr in seal.namespace():
                if isinstance(seal.owner, type):
                    type.__delattr__(seal.owner, seal.attr)
                else:
                    del seal.namespace()[seal.attr]
        elif isinstance(seal.owner, type):
            type.__setattr__(seal.owner, seal.attr, seal.original)
        else:
            seal.namespace()[seal.attr] = seal.original
        original = seal.original
        if type(original) is types.FunctionType and seal.fingerprint is not None:
            code_id = seal.fingerprint[0]
            if id(original.__code__) != code_id or fingerprint(original) != seal.fingerprint:
                saved = _CODES.get(code_id)
                if saved is not None:
                    original.__code__ = saved[0]
                    original.__defaults__, original.__kwdefaults__ = saved[1], saved[2]

    if native is not None:
        native.tamper_quiet(write)
    else:
        write()
