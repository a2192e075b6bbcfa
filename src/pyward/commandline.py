"""The grammar of pyward's command line, shared by every command.

The parser with every subcommand, the split of `run`'s arguments into
pyward's options, the target and the program's own, settings from parsed
arguments, and running a program: what `pyward run` does and what the
commands that run a program (learn, watch, trace) reuse.  Errors end here as
one `[pyward][error]` line and exit status 2 (usage and configuration).
"""
from __future__ import annotations

import os
import sys

from ._version import __version__
from .config import OPTIONS, ConfigError, Option, merged

TYPE_CHECKING = False  # importing typing costs milliseconds of startup
if TYPE_CHECKING:
    import argparse
    from typing import Any, Callable, NoReturn

DESCRIPTION = """\
Run any Python program under a guard.  The program behaves exactly as under
`python`; pyward speaks only on stderr, in lines starting with [pyward], and
writes a tamper-evident report of everything it saw at the end of the run."""

EPILOG = """\
examples:
  pyward run app.py --port 8000        run a script with its own arguments
  pyward run -m http.server 8000       run a module, like python -m
  pyward run --log events.jsonl app.py also stream events as JSON lines
  pyward verify .pyward/reports/X.json check a report has not been altered
  pyward trace -m json.tool f.json     print every audit event of a program

Configuration comes from [tool.pyward] in pyproject.toml or from pyward.toml,
found from the working directory upwards; flags override it.
Every command explains itself: pyward COMMAND --help (pyward run --help lists
every option of a run)."""

#: Kinds of option whose flag, given again, adds to what it said (config.merged).
LISTS = ("perm", "list")

#: Commands that run a program and take every option of `run` besides their own.
RUNS_A_PROGRAM = ("learn", "watch")

#: Modules that add engine subcommands: `add_commands(subparsers, handlers)`
#: adds parsers and registers `handlers[name] = fn(args) -> int`.  Imported
#: only when the full parser is built, never for a plain `pyward run`.
ENGINE_COMMANDS: tuple[str, ...] = (
    # sandbox
    "pyward.sandbox.commands",

    # tamper

    # heal
    "pyward.heal.commands",

    # CI outputs: pyward report
    "pyward.outputs",
)

RUN_USAGE = "pyward run [options] (SCRIPT | -m MODULE | -c CODE | -) [ARGS...]"
TRACE_USAGE = "pyward trace [--events GLOB,...] [--log FILE] (SCRIPT | -m MODULE | -c CODE | -) [ARGS...]"


def fail(message: str, status: int = 2) -> NoReturn:
    """One `[pyward][error]` line on stderr, then exit with `status`."""
    sys.stderr.write(f"[pyward][error] {message}\n")
    raise SystemExit(status)


def _parser_class() -> type:
    import argparse

    class Parser(argparse.ArgumentParser):
        """argparse, with one-line errors instead of a usage dump."""

        def error(self, message: str) -> NoReturn:
            fail(f"{self.prog}: {message} (see '{self.prog} --help')")

    return Parser


def _add_options(parser: argparse._ActionsContainer, command: str) -> None:
    import argparse

    class Merge(argparse.Action):
        """A list flag given again adds to it (config.merged)."""

        def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                     option_string: str | None = None) -> None:
            setattr(namespace, self.dest, merged(getattr(namespace, self.dest, None), values))

    for option in OPTIONS:
        if command not in option.commands or not option.flags:
            continue
        kwargs: dict[str, Any] = {"dest": option.dest, "default": argparse.SUPPRESS, "help": option.help}
        if option.choices:
            kwargs["choices"] = option.choices
        if option.metavar:
            kwargs["metavar"] = option.metavar
        kwargs.update(option.cli)
        if option.kind in LISTS and "action" not in kwargs:
            kwargs["action"] = Merge
        parser.add_argument(*option.flags, **kwargs)
    if command == "run":
        parser.add_argument("--no-report", dest="report", action="store_false", default=argparse.SUPPRESS,
                            help="do not write a report")


def _add_config_source(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("configuration")
    group.add_argument("--config", metavar="FILE", help="read settings from FILE instead of searching for one")
    group.add_argument("--no-config", action="store_true", help="ignore pyproject.toml and pyward.toml")


def build_parser(handlers: dict[str, Any] | None = None
                 ) -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The full argparse CLI: used for help, errors and every command but a plain `run`.
    The engines' commands register their handlers in `handlers` (name -> fn(args) -> int)."""
    import argparse

    Parser = _parser_class()
    parser = Parser(prog="pyward", description=DESCRIPTION, epilog=EPILOG,
                    formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("--version", action="version",
                        version=f"pyward {__version__} (python {sys.version.split()[0]})")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    subs: dict[str, argparse.ArgumentParser] = {}

    run = commands.add_parser(
        "run", help="run a program under pyward", usage=RUN_USAGE, allow_abbrev=False,
        description="Run SCRIPT, -m MODULE, -c CODE or - (stdin) exactly as python would, under pyward. "
                    "pyward's options come before the program; everything after it is the program's.",
    )
    _add_options(run, "run")
    _add_config_source(run)
    subs["run"] = run

    verify = commands.add_parser(
        "verify", help="check that a report is intact (and its signature)", allow_abbrev=False,
        description="Recompute a report's hash chain, Merkle root and summary. Exit status 0: intact; "
                    "1: altered (the first bad event is named) or bad signature; 2: unreadable; "
                    "3: the run did not end normally, its journal is intact up to its last checkpoint.",
    )
    verify.add_argument("report", metavar="REPORT")
    verify.add_argument("--signature", nargs="?", const="", metavar="SIG",
                        help="also check the signature in SIG (default: REPORT.sig)")
    _add_key_options(verify, public=True)
    subs["verify"] = verify

    sign = commands.add_parser(
        "sign", help="sign a report with HMAC-SHA256 or Ed25519", allow_abbrev=False,
        description="Sign REPORT, writing REPORT.sig. The key comes from a file or an environment variable, "
                    "never from the command line. Ed25519 needs the 'cryptography' package (pyward[sign]).",
    )
    sign.add_argument("report", metavar="REPORT")
    sign.add_argument("-o", "--output", metavar="SIG", help="where to write the signature (default: REPORT.sig)")
    _add_key_options(sign, public=False)
    subs["sign"] = sign

    keygen = commands.add_parser("keygen", help="create a signing key", allow_abbrev=False,
                                 description="Create a new signing key, readable only by you (mode 0600).")
    kind = keygen.add_mutually_exclusive_group(required=True)
    kind.add_argument("--ed25519", dest="kind", action="store_const", const="ed25519",
                      help="an Ed25519 key pair: FILE (private, PEM) and FILE.pub")
    kind.add_argument("--hmac", dest="kind", action="store_const", const="hmac",
                      help="a random 256-bit HMAC key (hex)")
    keygen.add_argument("-o", "--output", metavar="FILE", required=True)
    subs["keygen"] = keygen

    for module in ENGINE_COMMANDS:
        import importlib

        importlib.import_module(module).add_commands(commands, {} if handlers is None else handlers)
    subs.update(commands.choices)  # the engines' commands too, for their --help
    for name in RUNS_A_PROGRAM:  # their --help lists the options they pass on to `run`
        if name in subs:
            _add_options(subs[name].add_argument_group("options of pyward run (see pyward run --help)"), "run")
            _add_config_source(subs[name])

    trace = commands.add_parser(
        "trace", help="run a program and print every audit event it raises, as it happens", usage=TRACE_USAGE,
        allow_abbrev=False,
        description="Run SCRIPT, -m MODULE, -c CODE or - exactly as python would, with no engine, and print each "
                    "PEP 578 audit event the program raises on stderr as one line, `[audit] event: args` (long "
                    "arguments shortened, bytes and code objects summarised). The program's stdout is untouched. "
                    "The trace starts at the program's first instruction and ends after its last exit handler: "
                    "pyward's own start-up and end are not in it, so it matches what a sys.addaudithook printer "
                    "installed before the program would print. Child processes are not traced.")
    trace.add_argument("--events", metavar="GLOB,...",
                       help="only events matching one of these shell-style patterns (fnmatch), e.g. 'open,socket.*'")
    trace.add_argument("--log", metavar="FILE", help="also write each event to FILE as a JSON line")
    subs["trace"] = trace

    config = commands.add_parser("config", help="show the settings pyward would use here", allow_abbrev=False,
                                 description="Show the configuration file found and the effective settings.")
    _add_config_source(config)
    subs["config"] = config
    return parser, subs


def _add_key_options(parser: argparse.ArgumentParser, public: bool) -> None:
    keys = parser.add_argument_group("keys")
    keys.add_argument("--hmac-key-file", metavar="FILE", help="HMAC-SHA256 key from FILE")
    keys.add_argument("--hmac-key-env", metavar="VAR",
                      help="HMAC-SHA256 key from environment variable VAR (PYWARD_HMAC_KEY when none is given)")
    if public:
        keys.add_argument("--public-key", metavar="FILE", help="Ed25519 public key (PEM) to check against")
    else:
        keys.add_argument("--ed25519-key", metavar="FILE",
                          help="Ed25519 private key (PEM; passphrase from PYWARD_KEY_PASSPHRASE)")


# Options of `run` that are not settings: where settings come from.
_SOURCE_FLAGS = {"--config": True, "--no-config": False}  # flag -> takes a value


def _run_flags() -> dict[str, Option | None]:
    """Every `run` flag, mapped to its Option (None for --config/--no-config/--no-report)."""
    flags: dict[str, Option | None] = {flag: None for flag in (*_SOURCE_FLAGS, "--no-report")}
    for option in OPTIONS:
        if "run" in option.commands:
            for flag in option.flags:
                flags[flag] = option
    return flags


def _takes_value(flag: str, option: Option | None) -> bool:
    """Whether `flag` consumes the next argument (an optional value never does)."""
    if option is None:
        return _SOURCE_FLAGS.get(flag, False)
    if option.cli.get("nargs") == "?":
        return False
    return option.cli.get("action") not in ("store_true", "store_false", "store_const", "count")


def split_run_args(argv: list[str]) -> tuple[list[str], Any, list[str]]:
    """Split `run`'s arguments into pyward's options, the target, and the program's arguments.

    pyward's options end at the first argument that is not one of them (the
    script), at `-m`/`-c`/`-`, or after `--`; everything later belongs to
    the program, even if it looks like a pyward option.
    """
    from .runner import Target

    flags = _run_flags()
    options: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if token == "--":
            if i + 1 >= len(argv):
                break
            return options, Target("script", argv[i + 1]), argv[i + 2:]
        if token[:2] in ("-m", "-c"):
            value = token[2:]
            if not value:
                if i + 1 >= len(argv):
                    fail(f"pyward run: argument {token[:2]}: expected one argument (see 'pyward run --help')")
                value = argv[i + 1]
                i += 1
            return options, Target("module" if token[1] == "m" else "code", value), argv[i + 1:]
        if token == "-":
            return options, Target("stdin", "-"), argv[i + 1:]
        if token.startswith("-"):
            options.append(token)
            name, has_value, _ = token.partition("=")
            if name in flags and not has_value and _takes_value(name, flags[name]) and i + 1 < len(argv):
                options.append(argv[i + 1])
                i += 1
            i += 1
            continue
        return options, Target("script", token), argv[i + 1:]
    return options, None, []


def split_own_options(argv: list[str], command: str, own: dict[str, bool]) -> tuple[dict[str, Any], list[str]]:
    """For commands that run a program (learn, watch): take `command`'s own
    options (flag -> takes a value) out of `argv`, wherever they sit among
    `run`'s options before the program.  Returns {flag: value or True} and
    the rest, which `run_program` parses.  -h/--help prints the command's help."""
    flags = _run_flags()
    values: dict[str, Any] = {}
    rest: list[str] = []
    value: str | bool
    i = 0
    while i < len(argv):
        token = argv[i]
        name, has_value, value = token.partition("=")
        if name in own:
            if not own[name]:
                if has_value:
                    fail(f"pyward {command}: argument {name}: takes no value (see 'pyward {command} --help')")
                value = True
            elif not has_value:
                if i + 1 >= len(argv):
                    fail(f"pyward {command}: argument {name}: expected one argument "
                          f"(see 'pyward {command} --help')")
                value, i = argv[i + 1], i + 1
            values[name] = value
            i += 1
            continue
        if token in ("-h", "--help"):
            build_parser()[1][command].print_help()
            sys.exit(0)
        if token == "--" or token == "-" or token[:2] in ("-m", "-c") or not token.startswith("-"):
            rest += argv[i:]
            break
        rest.append(token)
        if name in flags and not has_value and _takes_value(name, flags[name]) and i + 1 < len(argv):
            rest.append(argv[i + 1])
            i += 1
        i += 1
    return values, rest


def parse_run_options(tokens: list[str]) -> dict[str, Any] | None:
    """Parse `run` options without argparse (it costs milliseconds of startup).

    Returns {dest: value} like argparse's namespace would hold, or None for
    anything beyond plain flags (help, unknown options, bad values, clustered
    short flags): then argparse parses, and prints help or the error.
    """
    flags = _run_flags()
    out: dict[str, Any] = {"config": None, "no_config": False}
    i = 0
    while i < len(tokens):
        name, has_value, value = tokens[i].partition("=")
        if name not in flags:
            return None
        option = flags[name]
        if option is not None and option.cli.get("nargs") == "?":
            try:
                given = option.cli.get("type", str)(value) if has_value else option.cli.get("const")
            except (TypeError, ValueError):
                return None
            out[option.dest] = merged(out.get(option.dest), given) if option.kind in LISTS else given
        elif not _takes_value(name, option):
            if has_value:
                return None
            if option is None:
                out["report" if name == "--no-report" else "no_config"] = name != "--no-report"
            elif option.cli.get("action") == "count":
                out[option.dest] = out.get(option.dest, 0) + 1
            else:
                out[option.dest] = option.cli.get("action") == "store_true"
        else:
            if not has_value:
                if i + 1 >= len(tokens):
                    return None
                i += 1
                value = tokens[i]
            if option is None:
                out["config"] = value
            else:
                try:
                    given = option.cli.get("type", str)(value)
                except (TypeError, ValueError):
                    return None
                out[option.dest] = merged(out.get(option.dest), given) if option.kind in LISTS else given
                if option.choices and out[option.dest] not in option.choices:
                    return None
        i += 1
    return out


def settings_from(args: dict[str, Any], command: str) -> Any:
    """The settings of `command` from its parsed arguments (config file, then flags)."""
    from .config import load

    overrides = {o.key: args[o.dest] for o in OPTIONS if command in o.commands and o.dest in args}
    for key in ("log", "report", "heal.store", "sarif", "checkpoint.key_file"):  # relative to the cwd
        if isinstance(overrides.get(key), str):
            overrides[key] = os.path.abspath(overrides[key])
    return load(args["config"], use_files=not args["no_config"], overrides=overrides)


def parse_run(argv: list[str], command: str = "run") -> tuple[dict[str, Any], Any]:
    """`run`'s options (as argparse's namespace would hold them) and the
    target, its arguments set; help, errors and a missing target exit here."""
    options, target, program_args = split_run_args(argv)
    args = parse_run_options(options)
    if args is None or target is None:
        parser = build_parser()[1]["run"]
        parser.prog = f"pyward {command}"
        args = vars(parser.parse_args(options))  # help, or the error, exits here
        if target is None:
            parser.error("nothing to run: give a SCRIPT, -m MODULE, -c CODE or - (stdin)")
    target.args = program_args
    return args, target


#: rerun.RERUN_VARIABLE and rerun.TAP_VARIABLE: a run without them has no channel, and rerun.py
#: (the supervisor of re-runs, ~1.3 M instructions to import) is not imported for it
CHANNEL_VARIABLES = ("PYWARD_RERUN", "PYWARD_TAP")


def take_channel() -> tuple[int, int | None, int | None]:
    """rerun.take_channel(): (attempt, channel fd, tap fd); (1, None, None) without a channel."""
    if not any(name in os.environ for name in CHANNEL_VARIABLES):
        return 1, None, None
    from .rerun import take_channel as take

    return take()


def run_program(argv: list[str], extra: dict[str, Any] | None = None, command: str = "run",
                engines: Callable[[Any], list[Any]] | None = None) -> int:
    """`pyward run`; commands that run a program (learn, ...) pass `extra` settings,
    or their own `engines(settings) -> [Engine]` instead of pyward's (trace)."""
    collecting = pause_collections()
    try:
        from .runner import TargetError, start

        channel = take_channel()  # a re-run's or a watched run's channel: first, before the environment is read
        args, target = parse_run(argv, command)
        from . import children

        if children.armed:  # a guarded run's Python child: that run guards this program
            from .runner import run_as_child

            try:
                return run_as_child(target)
            except TargetError as exc:
                if exc.python_line:
                    sys.stderr.write(exc.python_line + "\n")
                    raise SystemExit(exc.status) from None
                fail(str(exc), exc.status)
        try:
            settings = settings_from(args, "run")
            if extra:
                settings.update(extra)
            session, prepared = start(settings, target, ["pyward", command, *argv], engines=engines,
                                      channel=channel)
        except (ConfigError, TargetError) as exc:
            if isinstance(exc, TargetError) and exc.python_line:
                sys.stderr.write(exc.python_line + "\n")
                raise SystemExit(exc.status) from None
            fail(str(exc), getattr(exc, "status", 2))
    finally:
        resume_collections(collecting)
    return session.run(prepared)  # the program's own exit propagates from here


def pause_collections() -> bool:
    """No cyclic garbage collection while pyward starts; whether collections were on.

    pyward's start-up allocates tens of thousands of objects that all stay alive
    (modules, seals, the decider): the collections their allocations would trigger
    (a full one among them) free nothing: ~2 M instructions more than one pass over them."""
    import gc

    collecting = gc.isenabled()
    gc.disable()
    return collecting


def resume_collections(collecting: bool) -> None:
    """Collections back on, as the program expects them, before its first line (the
    first one scans what pyward allocated, once; not gc.freeze: it would hide those
    objects from gc.get_objects, and unfreezing would release what python froze)."""
    import gc

    if collecting:
        gc.enable()
