"""The built-in types pyward tests objects against, named without importing `types`.

`types` costs ~1.2 M instructions at every `pyward run` (its helpers run at
import), and a program that python runs without importing it should not find
it loaded.  These are the very objects `types` names.
"""
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import BuiltinFunctionType, CodeType, FunctionType, MethodType, ModuleType
else:
    ModuleType = type(sys)
    FunctionType = type(lambda: None)
    CodeType = type((lambda: None).__code__)
    BuiltinFunctionType = type(len)

    class _Bound:
        def method(self) -> None: ...

    MethodType = type(_Bound().method)
    del _Bound

__all__ = ["BuiltinFunctionType", "CodeType", "FunctionType", "MethodType", "ModuleType"]
