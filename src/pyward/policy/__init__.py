"""The permission model: what a program may do, in the spirit of Deno's flags.

Seven permissions (`PERMISSIONS`), each granted for everything (`True`) or
for a list of scopes, and each optionally denied for scopes; deny always
wins.  A `Policy` remembers where every rule came from (a flag, a config file
line), so a denial can name the exact flag or line that would allow it.

Scopes by permission:

* read, write: paths, directories (everything below), or globs (`*`, `**`,
  `?`).  Variables: `$CWD`, `$HOME`, `$TMP`, `$PYTHON` (the interpreter's
  library directories).  Relative paths are relative to the working
  directory for flags, to the file's directory for config files.
* net: `host`, `host:port`, `*.example.com`, `10.0.0.0/8`, `[::1]:8080`,
  `unix:/run/x.sock`, `unix:@name` (an abstract socket; `unix:@$TMP` is every
  name spelled after the temporary directory).
* run: an executable name (`git`) or path (`/usr/bin/git`); `fork` allows
  os.fork().
* env: variable names or globs (`AWS_*`).
* ffi: library names or paths; `self` for ctypes.CDLL(None); `bytecode`
  for constructing code objects; `subinterpreters`; `introspection` and
  `tracing` for the ways around audit hooks (gc walks, other threads'
  frames, trace/profile/monitoring callbacks).
* import: top-level package names of modules not in the standard library
  and not the program's own.
"""
from __future__ import annotations

import os

from ..config import PERMISSIONS

#: the sandbox's event kinds that say what the program did: what `pyward learn` learns from
OBSERVED = ("observed", "allowed", "would_deny")
#: the operation of a bind whose port code the sandbox does not see connects to: a gRPC server's (its
#: channels connect in C); journaled so by the decider, read by learn (see learn.ephemeral_to_host)
SERVER_BIND = "bind (gRPC server)"

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Mapping

VERBS = {"read": "read", "write": "write to", "net": "network access to", "run": "running",
         "env": "environment variable", "ffi": "native code", "import": "importing"}


class PolicyError(Exception):
    """A policy that cannot be used; the message names the file and rule."""


class Rule:
    """One scope of one permission, with where it came from."""

    __slots__ = ("perm", "scope", "deny", "origin")

    def __init__(self, perm: str, scope: str, deny: bool, origin: str) -> None:
        self.perm, self.scope, self.deny, self.origin = perm, scope, deny, origin

    def __repr__(self) -> str:
        return f"Rule({'deny' if self.deny else 'allow'} {self.perm} {self.scope!r} from {self.origin})"


class Policy:
    """Allow and deny rules per permission, plus where they came from.

    `allow_all[perm]` is the origin of a blanket grant (`--allow-read` with
    no list, `read = true`, `-A`), or absent.
    """

    def __init__(self) -> None:
        self.rules: list[Rule] = []
        self.allow_all: dict[str, str] = {}
        self.source: str | None = None  # the config file, if any
        self.base_dirs: dict[str, str] = {}  # origin -> directory relative scopes are resolved from

    # -- building -----------------------------------------------------------

    def grant(self, perm: str, scopes: Any, origin: str, base: str, deny: bool = False) -> None:
        """Add `scopes` (True, False, a list, or a comma-separated string)."""
        if perm not in PERMISSIONS:
            raise PolicyError(f"{origin}: unknown permission {perm!r}; known: {', '.join(PERMISSIONS)}")
        if scopes is False or scopes is None:
            return
        if scopes is True:
            if deny:
                self.rules.append(Rule(perm, "*", True, origin))
            else:
                self.allow_all[perm] = origin
            return
        if isinstance(scopes, str):
            scopes = [s for s in (part.strip() for part in scopes.split(",")) if s]
        for scope in scopes:
            if not isinstance(scope, str) or not scope:
                raise PolicyError(f"{origin}: scopes must be non-empty strings, got {scope!r}")
            self.rules.append(Rule(perm, scope, deny, origin))
        self.base_dirs[origin] = base

    @property
    def configured(self) -> bool:
        return bool(self.rules or self.allow_all)

    def allows(self, perm: str) -> list[Rule]:
        return [r for r in self.rules if r.perm == perm and not r.deny]

    def denies(self, perm: str) -> list[Rule]:
        return [r for r in self.rules if r.perm == perm and r.deny]

    @classmethod
    def from_settings(cls, settings: Any) -> Policy:
        """The policy in effect: config file rules, then flags per permission.

        An allow flag replaces the file's allow rules for that permission, like
        any other flag; a deny flag adds to the file's deny rules (a deny rule
        is never dropped by a flag: `--no-config` leaves the file out).
        """
        policy = cls()
        policy.source = settings.source
        file_base = os.path.dirname(settings.source) if settings.source else os.getcwd()
        cwd = os.getcwd()
        cli: set[str] = getattr(settings, "cli_keys", set())
        for perm in PERMISSIONS:
            for deny in (False, True):
                key = f"permissions.{'deny.' if deny else ''}{perm}"
                value = settings.get(key)
                if key in cli:
                    origin, base = f"--{'deny' if deny else 'allow'}-{perm}", cwd
                    kept = getattr(settings, "file_denies", {}).get(key)
                    if kept is not None:  # the file's deny rules hold beside the flag's
                        policy.grant(perm, kept, _file_origin(settings.source, perm, True), file_base, True)
                else:
                    origin, base = _file_origin(settings.source, perm, deny), file_base
                policy.grant(perm, value, origin, base, deny)
        if settings.get("permissions.all"):
            origin = "-A/--allow-all" if "permissions.all" in cli else _file_origin(settings.source, "all", False)
            for perm in PERMISSIONS:
                policy.allow_all.setdefault(perm, origin)
        return policy

    @classmethod
    def from_file(cls, path: str) -> Policy:
        """A policy from a pyward.toml or pyproject.toml (the Python API)."""
        from ..config import ConfigError, load

        try:
            return cls.from_settings(load(path))
        except ConfigError as exc:
            raise PolicyError(str(exc)) from None

    @classmethod
    def from_dict(cls, allow: dict[str, Any] | None = None, deny: dict[str, Any] | None = None,
                  origin: str = "Policy()", base: str | None = None) -> Policy:
        """`Policy.from_dict(allow={"read": ["./data"], "net": True}, deny={"read": ["./data/secret"]})`."""
        policy = cls()
        base = base or os.getcwd()
        for deny_flag, table in ((False, allow or {}), (True, deny or {})):
            for perm, scopes in table.items():
                policy.grant(perm, scopes, f"{origin} {'deny' if deny_flag else 'allow'} {perm}", base, deny_flag)
        return policy

    # -- serialising (children inherit the policy) ---------------------------

    def to_json(self) -> dict[str, Any]:
        return {"rules": [[r.perm, r.scope, r.deny, r.origin] for r in self.rules], "all": self.allow_all,
                "source": self.source, "bases": self.base_dirs}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Policy:
        policy = cls()
        policy.rules = [Rule(*item) for item in data["rules"]]
        policy.allow_all = dict(data["all"])
        policy.source = data.get("source")
        policy.base_dirs = dict(data.get("bases", {}))
        return policy

    # -- explaining ---------------------------------------------------------

    def how_to_allow(self, perm: str, scope: str) -> str:
        """The flag or config line that would allow `scope` for `perm`."""
        flag = f"--allow-{perm}={scope}"
        where = self.source and os.path.basename(self.source)
        if where == "pyproject.toml":
            return f"{flag}, or add {scope!r} to {perm} in [tool.pyward.permissions] of {self.source}"
        if where:
            return f"{flag}, or add {scope!r} to {perm} in [permissions] of {self.source}"
        return f"{flag} (or {perm} = [{scope!r}] in [tool.pyward.permissions] of pyproject.toml)"


def _file_origin(source: str | None, perm: str, deny: bool) -> str:
    if source is None:
        return "default"
    table = "tool.pyward.permissions" if os.path.basename(source) == "pyproject.toml" else "permissions"
    if deny:
        table += ".deny"
    return f"{perm} in [{table}] of {source}"


def expand(scope: str, base: str, variables: dict[str, str]) -> str:
    """Expand $VARIABLES and ~, and make a path scope absolute (not resolved)."""
    for name, value in variables.items():
        if scope == f"${name}" or scope.startswith(f"${name}/"):
            scope = value + scope[len(name) + 1:]
            break
    scope = os.path.expanduser(scope)
    if not os.path.isabs(scope):
        scope = os.path.join(base, scope)
    return os.path.normpath(scope)


def temp_dir(environ: Mapping[str, str] | None = None) -> str:
    """The temporary directory, as tempfile would choose it (without importing
    tempfile, which costs milliseconds at start-up)."""
    for name in ("TMPDIR", "TEMP", "TMP"):
        value = (os.environ if environ is None else environ).get(name)
        if value and os.path.isdir(value):
            return os.path.realpath(value)
    return os.path.realpath("/tmp")


def home_dir(environ: Mapping[str, str]) -> str:
    """`~` as os.path.expanduser reads it, from `environ`."""
    home = environ.get("HOME")
    if home:
        return home.rstrip("/") or "/"
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_dir.rstrip("/") or "/"
    except KeyError:
        return "~"


#: $HOME and $TMP as pyward first read them, at its start (see path_variables)
_FROM_ENVIRONMENT: dict[str, str] = {}


def path_variables(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """$CWD, $HOME, $TMP and $PYTHON (the interpreter's standard library). $HOME and $TMP come
    from `environ` when given (the environment a run started with: the recorder's), else from
    the environment as pyward first read it, before the program's first line: read again once
    the program runs, through its view of the environment that the sandbox judges, they would
    be journaled (and learned) as variables the program read."""
    if environ is not None:
        home, tmp = home_dir(environ), temp_dir(environ)
    else:
        if not _FROM_ENVIRONMENT:
            _FROM_ENVIRONMENT.update(HOME=os.path.expanduser("~"), TMP=temp_dir())
        home, tmp = _FROM_ENVIRONMENT["HOME"], _FROM_ENVIRONMENT["TMP"]
    return {"CWD": os.getcwd(), "HOME": home, "TMP": tmp, "PYTHON": os.path.dirname(os.__file__)}
