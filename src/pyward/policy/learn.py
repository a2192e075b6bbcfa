"""`pyward learn`: turn what a program did in one run into a least-privilege policy.

Observations are (permission, resource, operation) from a watch-mode run.
Paths are generalised sensibly: three or more entries in one directory become
that directory (repeatedly, but never a system-wide directory such as /, /usr
or $HOME itself), temporary files become $TMP, paths below the policy file's
directory are written relative to it and paths below $HOME as $HOME/...
Environment variables are recorded by name; values are never written.
"""
from __future__ import annotations

import os
import time

from . import PERMISSIONS, path_variables

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterable

COLLAPSE_AT = 3
TOO_BROAD = {"/", "/home", "/usr", "/etc", "/var", "/proc", "/sys", "/dev", "/opt", "/root", "/srv", "/mnt"}


def generalise(observations: Iterable[tuple[str, str, str]], base: str) -> dict[str, list[str]]:
    """Rules per permission, each list sorted; `base` is the policy file's directory."""
    variables = path_variables()
    seen: dict[str, set[str]] = {perm: set() for perm in PERMISSIONS}
    for perm, resource, _op in observations:
        if perm in seen and resource:
            seen[perm].add(resource)
    rules: dict[str, list[str]] = {}
    for perm in ("read", "write"):
        rules[perm] = [display_path(p, base, variables) for p in collapse(seen[perm], variables)]
    net = seen["net"]
    covered = {resource.rpartition(":")[0] for resource in net if ":" in resource and not resource.startswith("[")}
    rules["net"] = sorted(r for r in net if not (":" not in r and r in covered))
    for perm in ("run", "env", "ffi", "import"):
        rules[perm] = sorted(seen[perm] - {"*"}) + (["*"] if "*" in seen[perm] else [])
    return {perm: sorted(set(values)) for perm, values in rules.items() if values}


def collapse(paths: set[str], variables: dict[str, str]) -> set[str]:
    tmp, home = variables["TMP"], variables["HOME"]
    out = set()
    for path in paths:
        out.add(tmp if path == tmp or path.startswith(tmp + "/") else path)
    changed = True
    while changed:
        changed = False
        by_parent: dict[str, set[str]] = {}
        for path in out:
            by_parent.setdefault(os.path.dirname(path), set()).add(path)
        for parent, children in by_parent.items():
            if len(children) >= COLLAPSE_AT and parent not in TOO_BROAD and parent != home and parent != tmp:
                out -= children
                out.add(parent)
                changed = True
                break
    # a path below another rule is covered by it
    return {p for p in out if not any(p != q and p.startswith(q.rstrip("/") + "/") for q in out)}


def display_path(path: str, base: str, variables: dict[str, str]) -> str:
    if path == variables["TMP"] or path.startswith(variables["TMP"] + "/"):
        return "$TMP" + path[len(variables["TMP"]):]
    if path == base:
        return "."
    if path.startswith(base.rstrip("/") + "/"):
        return "./" + path[len(base.rstrip("/")) + 1:]
    home = variables["HOME"]
    if path.startswith(home.rstrip("/") + "/"):
        return "$HOME/" + path[len(home.rstrip("/")) + 1:]
    return path


def toml_string(value: str) -> str:
    out = ['"']
    for char in value:
        code = ord(char)
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\u{code:04x}")
        elif 0xD800 <= code <= 0xDFFF:
            raise ValueError(f"{value!r} is not valid UTF-8 and cannot be written to TOML")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def render(rules: dict[str, list[str]], command: list[str]) -> tuple[str, int]:
    lines = [
        f"# pyward policy learned by `pyward learn` on {time.strftime('%Y-%m-%d %H:%M')} from:",
        "#   " + " ".join(command),
        "# Every rule below is something the program did in that run. Review it before",
        "# trusting it; anything not listed is denied (reads Python needs are implicit).",
        'mode = "enforce"',
        "",
        "[permissions]",
    ]
    count = 0
    skipped = []
    for perm in PERMISSIONS:
        values = rules.get(perm)
        if not values:
            continue
        items = []
        for value in values:
            try:
                items.append(toml_string(value))
            except ValueError:
                skipped.append(value)
        if items:
            lines.append(f"{perm} = [")
            lines += [f"  {item}," for item in items]
            lines.append("]")
            count += len(items)
    for value in skipped:
        lines.append(f"# not representable in TOML (non-UTF-8 name), allow it on the command line: {value!r}")
    return "\n".join(lines) + "\n", count


def write_learned(path: str, observations: list[tuple[str, str, str]], session: Any) -> tuple[str, int]:
    base = os.path.dirname(os.path.abspath(path))
    text, count = render(generalise(observations, base), session.invocation)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path, count
