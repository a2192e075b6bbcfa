"""Compiling the policy into plain data: tuples and strings the decider matches.

Paths are resolved now (symlinks, variables), network scopes parsed, and the
directories and files python itself reads are listed as implicit reads.
"""
from __future__ import annotations

import _thread
import os
import sys

from .._isolation import isolate_builtins, isolate_module
from .._native import native
from ..policy import PERMISSIONS, Policy, expand, path_variables
from ..runner import TargetError
from ._decide import own_proc

isolate_builtins(globals())

os = isolate_module(os)  # noqa: F811

GLOB_CHARS = ("*", "?", "[")
MIME_FILES = ("/etc/mime.types", "/etc/httpd/mime.types", "/etc/httpd/conf/mime.types", "/etc/apache/mime.types",
              "/etc/apache2/mime.types", "/usr/local/etc/httpd/conf/mime.types",
              "/usr/local/lib/netscape/mime.types", "/usr/local/etc/mime.types")
SYSTEM_FILES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/etc/localtime",
                "/etc/timezone", *MIME_FILES)
#: Writing to these changes nothing anywhere: implicit, like reading the system files.
SINK_FILES = ("/dev/null",)
SYSTEM_DIRS = ("/usr/share/zoneinfo", "/usr/share/locale", "/usr/lib/locale")
INODE_WALK_LIMIT = 20000


def compile_rules(policy: Policy) -> tuple[dict[str, tuple[list[tuple], list[tuple], str | None]],
                                           dict[str, dict[str, int]]]:
    """RULES[perm] = (allow rules, deny rules, blanket-allow origin) as tuples
    (see _decide.matches), and DENY_INODES for hard links to denied files."""
    variables = path_variables()
    rules: dict[str, tuple[list[tuple], list[tuple], str | None]] = {}
    inodes: dict[str, dict[str, int]] = {}
    for perm in PERMISSIONS:
        allow = [compile_rule(perm, r.scope, r.origin, policy.base_dirs.get(r.origin, os.getcwd()), variables)
                 for r in policy.allows(perm)]
        deny = [compile_rule(perm, r.scope, r.origin, policy.base_dirs.get(r.origin, os.getcwd()), variables)
                for r in policy.denies(perm)]
        rules[perm] = (allow, deny, policy.allow_all.get(perm))
        if perm in ("read", "write"):
            for rule in deny:
                if rule[0] == 0:
                    try:
                        info = os.stat(rule[1])
                    except OSError:
                        continue
                    if os.path.isdir(rule[1]):
                        for key in linked_inodes(rule[1]):
                            inodes.setdefault(perm, {})[key] = 1
                    else:
                        inodes.setdefault(perm, {})[f"{info.st_dev}:{info.st_ino}"] = 1
    return rules, inodes


def linked_inodes(top: str) -> list[str]:
    """The files under a denied directory that have other hard links (st_nlink > 1):
    a link to them elsewhere must be denied too.  The walk is bounded (see docs/sandbox.md)."""
    found: list[str] = []
    stack, seen = [top], 0
    while stack and seen < INODE_WALK_LIMIT:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            seen += 1
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                    continue
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if info.st_nlink > 1 and not entry.is_symlink():
                found.append(f"{info.st_dev}:{info.st_ino}")
    return found


def compile_rule(perm: str, scope: str, origin: str, base: str, variables: dict[str, str]) -> tuple:
    if scope == "*" and perm not in ("net",):
        return (6, None, origin)
    if perm in ("read", "write") and scope[:1] == "(" and scope[-1:] == ")":
        # what pyward cannot name by a path ("(a database name computed in SQL)": SQLite's ATTACH ?):
        # allowed by this very name only, as `learn` writes it (the kernel wall has no path for it)
        return (2, (scope,), origin)
    if perm in ("read", "write"):
        path = expand(scope, base, variables)
        if any(c in path for c in GLOB_CHARS):
            segments = path.split("/")
            fixed = []
            for segment in segments:
                if any(c in segment for c in GLOB_CHARS):
                    break
                fixed.append(segment)
            real = own_proc(realpath("/".join(fixed) or "/"), os.getpid(), _thread.get_native_id())
            return (1, tuple(real.split("/") + segments[len(fixed):]) if real != "/" else
                    tuple([""] + segments[len(fixed):]), origin)
        return (0, own_proc(realpath(path), os.getpid(), _thread.get_native_id()), origin)
    if perm == "run":
        if "/" in scope:
            return (4, realpath(expand(scope, base, variables)), origin)
        return (3, scope, origin)
    if perm == "net":
        return compile_net(scope, origin, base, variables)
    return (2, tuple(scope.split("*")), origin)


def realpath(path: str) -> str:
    """os.path.realpath(path), resolved by libc where it can be: the Python one costs
    ~0.15 M instructions a path, and start-up resolves a dozen paths that do not exist
    (the mime.types candidates, a missing zip on sys.path)."""
    real = native.realpath(path) if native is not None else None
    if real:
        return real
    head, tail = os.path.split(path)
    if native is not None and tail not in ("", ".", "..") and head != path and os.path.isabs(path) \
            and _absent(path):
        # not even a dangling link: os.path.realpath would resolve the directory and append the name
        parent = realpath(head)
        return parent + tail if parent.endswith("/") else f"{parent}/{tail}"
    return os.path.realpath(path)


def _absent(path: str) -> bool:
    try:
        os.lstat(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return False


def expand_name(name: str, variables: dict[str, str]) -> str:
    """An abstract socket name's leading $VARIABLE ($TMP: a name spelled after a temporary
    directory), expanded as in a path but never made absolute or normalised."""
    for variable, value in variables.items():
        if name == f"${variable}" or name.startswith(f"${variable}/"):
            return value + name[len(variable) + 1:]
    return name


def compile_net(scope: str, origin: str, base: str = "", variables: dict[str, str] | None = None) -> tuple:
    """(5, host kind, origin, host, port, network, prefix, bits); kinds: 0 name,
    1 *.suffix, 2 address/network, 3 any host, 4 unix socket (a socket file, or
    every socket below a directory; $TMP and the other path variables expand),
    5 raw."""
    text = scope.strip().lower()
    if text.startswith("unix:"):
        raw = scope.strip()[5:]
        if raw[:1] == "@":  # an abstract name: no file to resolve, and its case counts
            return (5, 4, origin, "unix:@" + expand_name(raw[1:], variables or {}), None, 0, 0, 0)
        path = realpath(expand(raw, base or os.getcwd(), variables or {}))
        return (5, 4, origin, "unix:" + path, None, 0, 0, 0)
    if text == "raw":
        return (5, 5, origin, "raw", None, 0, 0, 0)
    port = None
    if text.startswith("["):
        close = text.find("]")
        host, rest = text[1:close], text[close + 1:]
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, tail = text.partition(":")
        if not tail.isdigit() and tail != "*":
            raise TargetError(f"{origin}: bad network scope {scope!r}: the port must be a number", 2)
        port = int(tail) if tail.isdigit() else None
    else:
        host = text
    if host in ("*", ""):
        return (5, 3, origin, None, port, 0, 0, 0)
    if host.startswith("*."):
        return (5, 1, origin, host[1:], port, 0, 0, 0)
    if host[0].isdigit() or ":" in host:
        import ipaddress

        try:
            network = ipaddress.ip_network(host, strict=False)
        except ValueError:
            raise TargetError(f"{origin}: bad network scope {scope!r}: not an address or network", 2) from None
        mapped = getattr(network.network_address, "ipv4_mapped", None)
        if mapped is not None and network.prefixlen >= 96:  # ::ffff:a.b.c.d is the v4 address a.b.c.d
            network = ipaddress.ip_network(f"{mapped}/{network.prefixlen - 96}")
            host = str(mapped)
        return (5, 2, origin, host, port, int(network.network_address), network.prefixlen, network.max_prefixlen)
    return (5, 0, origin, host, port, 0, 0, 0)


def implicit_roots(program_dir: str, search_path: tuple[str, ...] | None = None) -> tuple[tuple[str, ...],
                                                                                         frozenset[str]]:
    """Directories and files python itself needs to read: the search path (sys.path
    but its first entry unless given), the stdlib, site-packages, pyward, the
    program's directory, a few system files."""
    import site

    roots = set()
    path = sys.path[1:] if search_path is None else search_path
    entries = [program_dir, *path, os.path.dirname(os.__file__),
               os.path.dirname(os.path.dirname(os.path.abspath(__file__))), *SYSTEM_DIRS]
    try:
        entries += site.getsitepackages() + [site.getusersitepackages()]
    except AttributeError:  # virtualenv's old site.py
        pass
    for entry in entries:
        real = realpath(entry or os.getcwd())
        roots.add(real.rstrip("/") + "/")
    files = {realpath(f) for f in SYSTEM_FILES}
    # the interpreter's own executable: platform.libc_ver() and packaging's wheel tags (pip, build) read it
    files |= {realpath(exe) for exe in (sys.executable, getattr(sys, "_base_executable", "")) if exe}
    files |= {r.rstrip("/") for r in roots}  # the directories themselves (listing, zip files)
    return tuple(sorted(roots)), frozenset(files)
