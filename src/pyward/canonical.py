"""JSON for the run path, without importing `json`.

`json` imports `re`, which costs ~6 ms on every `pyward run` that writes a
report or a log.  pyward only ever serialises exact dict/list/tuple/str/int/
float/bool/None values (see journal.jsonable), so a dozen lines over
CPython's C string quoting do the job.  The output is byte-identical to
`json.dumps(obj, sort_keys=..., indent=..., ensure_ascii=True)` with compact
separators when there is no indent; tests/test_canonical.py checks that
property on generated data.  `loads` reads what a Python child is handed (its
sandbox's payload) with CPython's C scanner, as `json.loads` does, where a child's
start would otherwise import `json`, `re` and `enum` (python's own `-c pass` loads
none of them).  Reading reports (verify) uses the real `json`.
"""
from __future__ import annotations

from _json import encode_basestring_ascii as _quote
from _json import make_scanner as _make_scanner

from ._isolation import isolate_builtins

isolate_builtins(globals())

_INF = float("inf")
_STR = {str}


def dumps(obj: object, *, sort_keys: bool = True, indent: int | None = None) -> str:
    """Serialise `obj`; sort_keys + no indent is pyward's canonical form."""
    parts: list[str] = []
    _encode(obj, parts, sort_keys, indent, 0)
    return "".join(parts)


def _encode(obj: object, out: list[str], sort_keys: bool, indent: int | None, level: int) -> None:
    kind = type(obj)
    if kind is str:
        out.append(_quote(obj))  # type: ignore[arg-type]  # mypy does not narrow `obj` through `kind`
    elif obj is None:
        out.append("null")
    elif obj is True:
        out.append("true")
    elif obj is False:
        out.append("false")
    elif kind is int:
        out.append(int.__repr__(obj))
    elif kind is float:
        if obj != obj or obj == _INF or obj == -_INF:
            raise ValueError(f"{obj!r} is not valid JSON")
        out.append(float.__repr__(obj))
    elif kind is list or kind is tuple:
        if not obj:
            out.append("[]")
            return
        inner, sep, close = _layout(indent, level)
        if set(map(type, obj)) == _STR:  # type: ignore[call-overload]  # a list of names (the seals at exit):
            out.append("[" + inner + sep.join(map(_quote, obj)) + close + "]")  # type: ignore[call-overload]
            return  # quoted and joined in C
        out.append("[" + inner)
        for i, item in enumerate(obj):  # type: ignore[arg-type,var-annotated]  # a list or tuple (`kind` above)
            if i:
                out.append(sep)
            _encode(item, out, sort_keys, indent, level + 1)
        out.append(close + "]")
    elif kind is dict:
        if not obj:
            out.append("{}")
            return
        inner, sep, close = _layout(indent, level)
        items = sorted(obj.items()) if sort_keys else obj.items()  # type: ignore[attr-defined]  # a dict (`kind` above)
        out.append("{" + inner)
        for i, (key, value) in enumerate(items):
            if type(key) is not str:
                raise TypeError(f"keys must be str, not {type(key).__name__}")
            if i:
                out.append(sep)
            out.append(_quote(key) + (": " if indent is not None else ":"))
            _encode(value, out, sort_keys, indent, level + 1)
        out.append(close + "}")
    else:
        raise TypeError(f"{kind.__name__} is not JSON serialisable here")


def _layout(indent: int | None, level: int) -> tuple[str, str, str]:
    """(after the opening bracket, between items, before the closing bracket)."""
    if indent is None:
        return "", ",", ""
    pad = "\n" + " " * (indent * (level + 1))
    return pad, "," + pad, "\n" + " " * (indent * level)


class _Reading:
    """What CPython's C scanner reads of a decoder: json.loads's defaults."""
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    @staticmethod
    def parse_constant(name: str) -> float:
        return {"NaN": float("nan"), "Infinity": _INF, "-Infinity": -_INF}[name]


_scan = _make_scanner(_Reading())  # type: ignore[arg-type]  # typeshed wants a JSONDecoder: it reads these


def loads(text: str) -> object:
    """`json.loads(text)` for a document of pyward's own making (ValueError when it is not JSON)."""
    text = text.strip(" \t\n\r")
    try:
        value, end = _scan(text, 0)
    except StopIteration as stop:
        raise ValueError(f"not JSON at character {stop.value}") from None
    if end != len(text):
        raise ValueError(f"not JSON: extra data at character {end}")
    return value
