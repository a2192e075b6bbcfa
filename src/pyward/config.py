"""Settings: one table of options, read from TOML and overridden by flags.

Every option is declared once in `OPTIONS`: its key (dotted for sub-tables,
`heal.retries` is `retries` in `[tool.pyward.heal]`), its type, its default,
and the command-line flags that set it.  The CLI builds its arguments from
this table and config files are validated against it, so the two can never
disagree.

Discovery works like ruff or pytest: from the working directory upwards, the
first `pyward.toml` (options at top level) or `pyproject.toml` that has a
`[tool.pyward]` table.  `--config FILE` names one; `--no-config` ignores them.
Precedence: defaults < config file < command line.
"""
from __future__ import annotations

import os

from ._isolation import isolate_module

os = isolate_module(os)  # noqa: F811

TYPE_CHECKING = False  # importing typing costs milliseconds of startup
if TYPE_CHECKING:
    from typing import Any, Callable


#: The seven permissions of the policy (policy/): each has its allow and deny
#: settings and flags.
PERMISSIONS = ("read", "write", "net", "run", "env", "ffi", "import")

#: Fallback strategies per heal guard kind (heal/guards.py); the first is the
#: default.  The default is always "none": pyward never invents a value that
#: changes meaning (x / 0 is not x, a missing key is not 0) unless configured.
HEAL_FALLBACKS: dict[str, tuple[str, ...]] = {
    "null_guard": ("none",),
    "key_guard": ("none", "empty", "zero"),
    "subscript_guard": ("none", "empty", "zero"),
    "chain_subscript_guard": ("none", "empty", "zero"),
    "index_guard": ("none", "empty", "zero"),
    "type_coercion_guard": ("none", "zero"),
    "division_guard": ("none", "zero"),
    "str_coerce_guard": ("none", "str"),
    "file_guard": ("none", "empty"),
    "callable_guard": ("none",),
}


#: What `--fail-on` can name, gravest first, and the exit status of a run that
#: succeeded although it happened: the statuses of the engines' own stops
#: (77: --on-deny exit, 78: --fail-closed, 79: heal).  When several happened
#: the gravest decides.  The program's own non-zero status always wins.
FAIL_ON: dict[str, int] = {"tamper": 78, "denied": 77, "heal": 79}


def check_fail_on(value: str) -> list[str]:
    """`--fail-on LIST` as the command line gives it: ValueError names what is known."""
    kinds = as_list(value)
    unknown = [k for k in kinds if k not in FAIL_ON and k != "all"]
    if unknown or not kinds:
        import argparse

        class FailOnError(argparse.ArgumentTypeError, ValueError):
            """argparse shows its message; parse_run_options falls back to argparse on a ValueError."""

        raise FailOnError(f"unknown {', '.join(map(repr, unknown)) or 'empty list'}: expected a comma-separated "
                          f"list of {', '.join(FAIL_ON)} (or all)")
    return kinds


class ConfigError(Exception):
    """A configuration problem; the message names the file and key (exit status 2)."""


class Option:
    """A setting: TOML key, type, default, and optional command-line flags.

    `kind` is one of bool, int, str, path, enum, list, report.  `path` values
    from a file are relative to that file's directory; `report` is a path or
    `false` (no report).  `cli` holds extra argparse keyword arguments;
    with `"nargs": "?"` a flag takes a value only in its `--flag=VALUE` form,
    so `--allow-read app.py` never swallows the script.
    """

    __slots__ = ("key", "kind", "default", "help", "flags", "choices", "metavar", "cli", "commands")

    def __init__(self, key: str, kind: str, default: Any, help: str, *, flags: tuple[str, ...] = (),
                 choices: tuple[str, ...] = (), metavar: str | None = None, cli: dict[str, Any] | None = None,
                 commands: tuple[str, ...] = ("run",)) -> None:
        self.key, self.kind, self.default, self.help = key, kind, default, help
        self.flags, self.choices, self.metavar = flags, choices, metavar
        self.cli = cli or {}
        if kind == "int" and "action" not in self.cli:
            self.cli["type"] = int
        self.commands = commands

    @property
    def dest(self) -> str:
        return self.key.replace(".", "_")


OPTIONS: list[Option] = [
    Option("quiet", "bool", False, "print nothing on stderr except errors that stop the run",
           flags=("-q", "--quiet"), cli={"action": "store_true"}),
    Option("verbose", "int", 0, "show more events on stderr (-v: info, -vv: debug)",
           flags=("-v", "--verbose"), cli={"action": "count"}),
    Option("color", "enum", "auto", "colour on stderr: auto (only on a TTY, honours NO_COLOR), always, never",
           flags=("--color",), choices=("auto", "always", "never")),
    Option("log", "path", None, "also write every event to FILE as JSON lines",
           flags=("--log",), metavar="FILE"),
    Option("report", "report", True,
           "write the end-of-run report to FILE (default: .pyward/reports/<time>-<pid>.json); "
           "false in a config file disables it",
           flags=("--report",), metavar="FILE"),
    Option("keep_reports", "int", 50,
           "keep the newest N reports in .pyward/reports/ and remove older ones there (0: keep all); "
           "reports written elsewhere with --report are never removed",
           flags=("--keep-reports",), metavar="N"),
    # CI
    Option("fail_on", "list", None,
           "exit with a non-zero status when the program succeeded but any of these happened: denied (77), "
           "tamper (78: a tamper alert), heal (79), or all; the gravest decides, in that order: tamper, denied, "
           "heal. The program's own failure always wins", flags=("--fail-on",), metavar="LIST",
           cli={"type": check_fail_on}),
    Option("sarif", "path", None, "also write the run's findings as SARIF 2.1.0 to FILE at the end of the run",
           flags=("--sarif",), metavar="FILE"),
    # the record: identity, sealed checkpoints, export (identity.py, checkpoint.py, integrations/otel.py)
    Option("service", "str", None,
           "the service name in the report and exported records (default: $OTEL_SERVICE_NAME, else the "
           "program's name)", flags=("--service",), metavar="NAME"),
    Option("checkpoint.enabled", "bool", True,
           "do not keep the journal at the report path while the run goes (a killed run then leaves no record)",
           flags=("--no-checkpoints",), cli={"action": "store_false"}),
    Option("checkpoint.events", "int", 100, "seal a checkpoint at the latest every N events (0: only by time)",
           flags=("--checkpoint-events",), metavar="N"),
    Option("checkpoint.interval_ms", "int", 1000,
           "seal a checkpoint at the first event MS milliseconds or more after the last one (0: only by count)",
           flags=("--checkpoint-interval",), metavar="MS"),
    Option("checkpoint.key_file", "path", None,
           "sign checkpoints with the HMAC key in FILE (default: $PYWARD_HMAC_KEY if set; else unsigned)",
           flags=("--checkpoint-key-file",), metavar="FILE"),
    Option("otel.enabled", "bool", False,
           "export events at notice and above as OpenTelemetry log records over OTLP/HTTP (needs pyward[otel]; "
           "configured by the OTEL_EXPORTER_OTLP_* variables and [tool.pyward.otel])",
           flags=("--otel",), cli={"action": "store_true"}),
    Option("otel.endpoint", "str", None,
           "the collector's OTLP/HTTP base URL, e.g. http://localhost:4318 (default: $OTEL_EXPORTER_OTLP_ENDPOINT)"),
    Option("otel.headers", "list", None, "extra HTTP headers, as KEY=VALUE strings"),
    Option("otel.severity", "enum", "notice", "export events of this severity and above",
           choices=("debug", "info", "notice", "warning", "alert", "error")),
    Option("otel.timeout_ms", "int", 5000, "give up an export after MS milliseconds; pyward waits at most this "
           "long (plus a second) at exit for the last records to go"),
    Option("otel.batch_ms", "int", 1000, "send a batch at least every MS milliseconds"),
    # sandbox
    Option("mode", "enum", None,
           "sandbox mode: watch (journal, block nothing), enforce (deny what is not allowed), prompt (ask on "
           "a terminal), off. Default: enforce when any permission is configured, else watch",
           flags=("--mode",), choices=("watch", "enforce", "prompt", "off")),
    Option("on_deny", "enum", "raise",
           "raise: a denied operation raises pyward.AccessDenied (a PermissionError) in the program; "
           "exit: stop the program at once with exit status 77",
           flags=("--on-deny",), choices=("raise", "exit")),
    Option("inherit", "bool", True, "Python child processes run under the same policy (--no-inherit: they do not)",
           flags=("--no-inherit",), cli={"action": "store_false"}),
    Option("kernel", "bool", True,
           "under enforce, also restrict the program and its children in the kernel (Landlock) to the files and "
           "TCP ports the policy allows (--no-kernel: the audit layer alone)",
           flags=("--no-kernel",), cli={"action": "store_false"}),
    Option("permissions.all", "bool", False, "allow everything (deny rules still apply)",
           flags=("-A", "--allow-all"), cli={"action": "store_true"}),
    *(Option(f"permissions.{perm}", "perm", None,
             f"allow {perm}: everything, or only --allow-{perm}=LIST (comma-separated, repeatable; the "
             "value is never taken from the next argument)", flags=(f"--allow-{perm}",),
             metavar="LIST", cli={"nargs": "?", "const": True}) for perm in PERMISSIONS),
    *(Option(f"permissions.deny.{perm}", "perm", None,
             f"deny {perm} for LIST (all when no LIST; repeatable); deny wins over allow", flags=(f"--deny-{perm}",),
             metavar="LIST", cli={"nargs": "?", "const": True}) for perm in PERMISSIONS),

    # tamper
    Option("tamper.enabled", "bool", True,
           "turn the tamper engine off: no seals, no reports of changed functions (it is on by default)",
           flags=("--no-tamper",), cli={"action": "store_false"}),
    Option("tamper.watch", "list", None,
           "also seal these dotted names (globs allowed: mypkg.secure.*, os.exec*); comma-separated",
           flags=("--watch",), metavar="LIST"),
    Option("tamper.allow", "list", None,
           "changes made from these modules are authorised, not alerts (e.g. gevent.monkey,freezegun)",
           flags=("--allow-patcher",), metavar="LIST"),
    Option("tamper.restore", "bool", False, "put the original back when a sealed target changes",
           flags=("--restore",), cli={"action": "store_true"}),
    Option("tamper.fail_closed", "bool", False,
           "a change to a sealed target raises pyward.TamperError (module attributes) or stops the run "
           "with exit status 78", flags=("--fail-closed",), cli={"action": "store_true"}),
    Option("tamper.interval", "int", 0, "Python 3.11 (no watchers): also compare seals every N seconds",
           flags=("--interval",), metavar="SECONDS"),
    Option("tamper.check_modules", "bool", False, "report modules in sys.modules replaced by other objects",
           flags=("--check-modules",), cli={"action": "store_true"}),

    # heal
    Option("heal.enabled", "bool", False, "heal structural crashes: guard the failing bytecode, save the patch, "
           "re-run when the crash had no side effects", flags=("--heal",), cli={"action": "store_true"}),
    Option("heal.retries", "int", 3, "re-run a healed script at most N times (0: never re-run)",
           flags=("--retries",), metavar="N"),
    Option("heal.rerun_side_effects", "bool", False,
           "re-run even when the crashed attempt wrote files, connected or started processes (they repeat)",
           flags=("--rerun-side-effects",), cli={"action": "store_true"}),
    Option("heal.fail_on_heal", "bool", False,
           "a run that needed healing exits with status 79 instead of 0 (for CI): the same as --fail-on heal",
           flags=("--fail-on-heal",), cli={"action": "store_true"}),
    Option("heal.dry_run", "bool", False, "prove the guard can be built and verified; patch and save nothing",
           flags=("--dry-run",), cli={"action": "store_true"}),
    Option("heal.shadow", "bool", False,
           "warn when a guard's fallback flows into output or into an operation that fails on it",
           flags=("--shadow",), cli={"action": "store_true"}),
    Option("heal.ttl", "int", 7, "warn on every run about patches older than DAYS (0: never)",
           flags=("--ttl",), metavar="DAYS"),
    Option("heal.store", "path", None, "the patch store (default: .pyward/heal.db in the working directory)",
           flags=("--store",), metavar="FILE"),
    Option("heal.idempotent", "list", None,
           "servers: also replay requests with these methods after a heal (GET, HEAD and OPTIONS always are), "
           "e.g. PUT,DELETE", flags=("--idempotent",), metavar="METHODS"),
    Option("heal.replay_body", "int", 1048576,
           "servers: request bodies up to this many bytes are kept so the request can be replayed; larger ones "
           "are not replayed"),
    Option("heal.retry_after", "int", 1, "servers: the Retry-After (seconds) of the 503 sent when a healed "
           "request cannot be replayed"),
    Option("heal.sync_interval", "int", 1,
           "servers: look for patches other worker processes saved at most every N seconds (at a request)"),
    *(Option(f"heal.fallback.{kind}", "enum", values[0], f"fallback of {kind}: {', '.join(values)}",
             choices=values) for kind, values in HEAL_FALLBACKS.items()),
]

_BY_KEY = {o.key: o for o in OPTIONS}
SECTIONS = {o.key.rsplit(".", i)[0] for o in OPTIONS for i in range(1, o.key.count(".") + 1)}

_TYPE_WORDS = {"bool": "a boolean (true or false)", "int": "an integer", "str": "a string", "path": "a path string",
               "list": "a list of strings", "report": "a path string or false",
               "perm": "a list of strings, or true (everything) / false"}


def merged(before: Any, value: Any) -> Any:
    """A list flag given again adds to what it said (`--deny-read=a --deny-read=b` is
    `--deny-read=a,b`: taking the last alone would drop a rule without a word); given
    bare (`True`: everything) once, it is everything."""
    if before is None:
        return value
    if before is True or value is True:
        return True
    if isinstance(before, list) or isinstance(value, list):  # a flag whose type made a list (--fail-on)
        return as_list(before) + as_list(value)
    return f"{before},{value}"


def as_list(value: Any) -> list[str]:
    """A "list" setting's value: a list from a config file, or a comma-separated string from the command line."""
    if not value:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


def _describe_value(value: Any) -> str:
    kind = {bool: "boolean", int: "integer", float: "float", str: "string", list: "list", dict: "table"}
    word = kind.get(type(value), type(value).__name__)
    shown = repr(value) if not isinstance(value, (list, dict)) else ""
    return f"the {word} {shown}".rstrip()


def check(option: Option, value: Any) -> Any:
    """Validate one TOML value; returns it or raises ValueError with what was expected."""
    kind = option.kind
    ok: Callable[[Any], bool]
    if kind == "bool":
        ok = lambda v: type(v) is bool  # noqa: E731
    elif kind == "int":
        ok = lambda v: type(v) is int and v >= 0  # noqa: E731
    elif kind in ("str", "path"):
        ok = lambda v: type(v) is str and v != ""  # noqa: E731
    elif kind == "enum":
        if type(value) is str and value in option.choices:
            return value
        raise ValueError(f"expected one of {', '.join(map(repr, option.choices))}, got {_describe_value(value)}")
    elif kind == "list":
        ok = lambda v: type(v) is list and all(type(x) is str for x in v)  # noqa: E731
    elif kind == "report":
        ok = lambda v: (type(v) is str and v != "") or v is False  # noqa: E731
    elif kind == "perm":
        ok = lambda v: type(v) is bool or (type(v) is list and all(type(x) is str and x for x in v))  # noqa: E731
    else:  # pragma: no cover - a programming error in OPTIONS
        raise AssertionError(kind)
    if not ok(value):
        expected = _TYPE_WORDS[kind] + (" (zero or more)" if kind == "int" else "")
        raise ValueError(f"expected {expected}, got {_describe_value(value)}")
    if kind == "list" and "type" in option.cli:  # the flag's own check of its items (--fail-on)
        option.cli["type"](",".join(value))
    return value


class Settings(dict):
    """Effective settings by option key; `source` is the config file used, if any."""

    source: str | None = None
    cli_keys: frozenset[str] = frozenset()  # keys set by command-line flags
    #: the file's deny rules a flag of the same permission was given beside: they hold too (a flag
    #: adds deny rules to the file's, never drops one)
    file_denies: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:  # settings.quiet, for readability
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def defaults() -> Settings:
    return Settings((o.key, o.default) for o in OPTIONS)


def _suggest(word: str, choices: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def validate(table: dict[str, Any], source: str, header: str) -> dict[str, Any]:
    """Flatten and validate a config table into {key: value}."""
    out: dict[str, Any] = {}

    def walk(node: dict[str, Any], prefix: str) -> None:
        for name, value in node.items():
            key = f"{prefix}{name}"
            table = ".".join(filter(None, (header, prefix.rstrip("."))))
            where = f"{display_path(source)}:" + (f" [{table}]" if table else "")
            if key in SECTIONS and type(value) is bool and f"{key}.enabled" in _BY_KEY:
                out[f"{key}.enabled"] = value  # `otel = true` is short for `[otel] enabled = true`
                continue
            if key in SECTIONS:
                if not isinstance(value, dict):
                    raise ConfigError(f"{where} {name}: expected a table, got {_describe_value(value)}")
                walk(value, key + ".")
                continue
            option = _BY_KEY.get(key)
            if option is None:
                known = sorted({k[len(prefix):].split(".")[0] for k in list(_BY_KEY) + list(SECTIONS)
                                if k.startswith(prefix)})
                raise ConfigError(f"{where} unknown key {name!r}{_suggest(name, known)}; "
                                  f"known keys: {', '.join(known)}")
            try:
                value = check(option, value)
            except ValueError as exc:
                raise ConfigError(f"{where} {name}: {exc}") from None
            if option.kind in ("path", "report") and isinstance(value, str):
                value = os.path.join(os.path.dirname(os.path.abspath(source)), os.path.expanduser(value))
            out[key] = value

    walk(table, "")
    return out


def _read_toml(path: str) -> dict[str, Any]:
    import tomllib

    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{display_path(path)}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{display_path(path)}: cannot read: {exc.strerror or exc}") from None


def _table_of(path: str) -> tuple[dict[str, Any] | None, str]:
    """The pyward table in a file, and how to name it in messages."""
    data = _read_toml(path)
    if os.path.basename(path) == "pyproject.toml":
        tool = data.get("tool")
        table = tool.get("pyward") if isinstance(tool, dict) else None
        if table is not None and not isinstance(table, dict):
            raise ConfigError(f"{display_path(path)}: [tool.pyward] must be a table")
        return table, "tool.pyward"
    return data, ""


def discover(start: str) -> str | None:
    """The config file that applies in `start`, searching upwards, or None."""
    directory = os.path.abspath(start)
    while True:
        candidate = os.path.join(directory, "pyward.toml")
        if os.path.isfile(candidate):
            return candidate
        candidate = os.path.join(directory, "pyproject.toml")
        if os.path.isfile(candidate) and _mentions_pyward(candidate) and _table_of(candidate)[0] is not None:
            return candidate
        parent = os.path.dirname(directory)
        if parent == directory:
            return None
        directory = parent


def _mentions_pyward(path: str) -> bool:
    """Cheap pre-check so that unrelated pyproject.toml files are not parsed."""
    try:
        with open(path, "rb") as f:
            return b"pyward" in f.read()
    except OSError:
        return False


def display_path(path: str) -> str:
    """`path` relative to the working directory when it lies below it (as given when there is
    no working directory: the program removed it)."""
    try:
        rel = os.path.relpath(path)
    except (ValueError, OSError):
        return path
    return path if rel.startswith("..") else rel


def load(config: str | None = None, *, use_files: bool = True, cwd: str | None = None,
         overrides: dict[str, Any] | None = None) -> Settings:
    """Effective settings: defaults, then the config file, then `overrides`."""
    settings = defaults()
    path = None
    if config is not None:
        path = os.path.abspath(config)
        if not os.path.isfile(path):
            raise ConfigError(f"{config}: no such config file")
    elif use_files:
        path = discover(cwd or os.getcwd())
    if path is not None:
        table, header = _table_of(path)
        if table is None:
            raise ConfigError(f"{display_path(path)}: no [tool.pyward] table")
        settings.update(validate(table, path, header))
        settings.source = path
    if overrides:
        settings.file_denies = {key: settings[key] for key in overrides
                                if key.startswith("permissions.deny.") and settings.get(key) not in (None, False)}
        settings.update(overrides)
        settings.cli_keys = frozenset(overrides)
    return settings
