"""pyward's command line: argument parsing and subcommands only.

The logic lives in runner, report and config; each command here translates
arguments into one call and errors into one `[pyward][error]` line with a
meaningful exit status (2 for usage and configuration errors).
"""
from __future__ import annotations

import os
import sys

from . import __version__
from .config import OPTIONS, ConfigError, Option

TYPE_CHECKING = False  # importing typing costs milliseconds of startup
if TYPE_CHECKING:
    import argparse
    from typing import Any, NoReturn

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
)

#: Commands that run a program (their arguments split like `run`'s): name -> "module:function".
PROGRAM_COMMANDS: dict[str, str] = {
    # sandbox
    "learn": "pyward.sandbox.commands:cmd_learn",

    # heal
    "watch": "pyward.heal.watch:cmd_watch",

    # no engine: the program's audit events as they happen
    "trace": "pyward.trace:cmd_trace",
}

RUN_USAGE = "pyward run [options] (SCRIPT | -m MODULE | -c CODE | -) [ARGS...]"
TRACE_USAGE = "pyward trace [--events GLOB,...] [--log FILE] (SCRIPT | -m MODULE | -c CODE | -) [ARGS...]"


def _fail(message: str, status: int = 2) -> NoReturn:
    sys.stderr.write(f"[pyward][error] {message}\n")
    raise SystemExit(status)


def _parser_class() -> type:
    import argparse

    class Parser(argparse.ArgumentParser):
        """argparse, with one-line errors instead of a usage dump."""

        def error(self, message: str) -> NoReturn:
            _fail(f"{self.prog}: {message} (see '{self.prog} --help')")

    return Parser


def _add_options(parser: argparse.ArgumentParser, command: str) -> None:
    import argparse

    for option in OPTIONS:
        if command not in option.commands or not option.flags:
            continue
        kwargs: dict[str, Any] = {"dest": option.dest, "default": argparse.SUPPRESS, "help": option.help}
        if option.choices:
            kwargs["choices"] = option.choices
        if option.metavar:
            kwargs["metavar"] = option.metavar
        kwargs.update(option.cli)
        parser.add_argument(*option.flags, **kwargs)
    if command == "run":
        parser.add_argument("--no-report", dest="report", action="store_false", default=argparse.SUPPRESS,
                            help="do not write a report")


def _add_config_source(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("configuration")
    group.add_argument("--config", metavar="FILE", help="read settings from FILE instead of searching for one")
    group.add_argument("--no-config", action="store_true", help="ignore pyproject.toml and pyward.toml")


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The full argparse CLI: used for help, errors and every command but a plain `run`."""
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

        importlib.import_module(module).add_commands(commands, HANDLERS)
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
                    _fail(f"pyward run: argument {token[:2]}: expected one argument (see 'pyward run --help')")
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
    the rest, which `cmd_run` parses.  -h/--help prints the command's help."""
    flags = _run_flags()
    values: dict[str, Any] = {}
    rest: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        name, has_value, value = token.partition("=")
        if name in own:
            if not own[name]:
                if has_value:
                    _fail(f"pyward {command}: argument {name}: takes no value (see 'pyward {command} --help')")
                value = True
            elif not has_value:
                if i + 1 >= len(argv):
                    _fail(f"pyward {command}: argument {name}: expected one argument "
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
                out[option.dest] = option.cli.get("type", str)(value) if has_value else option.cli.get("const")
            except (TypeError, ValueError):
                return None
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
                    out[option.dest] = option.cli.get("type", str)(value)
                except (TypeError, ValueError):
                    return None
                if option.choices and out[option.dest] not in option.choices:
                    return None
        i += 1
    return out


def _settings(args: dict[str, Any], command: str) -> Any:
    from .config import load

    overrides = {o.key: args[o.dest] for o in OPTIONS if command in o.commands and o.dest in args}
    for key in ("log", "report", "heal.store", "checkpoint.key_file"):  # paths given on the command line are relative to the cwd
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


def cmd_run(argv: list[str], extra: dict[str, Any] | None = None, command: str = "run",
            engines: Any = None) -> int:
    """`pyward run`; commands that run a program (learn, ...) pass `extra` settings,
    or their own `engines(settings) -> [Engine]` instead of pyward's (trace)."""
    from .rerun import take_channel
    from .runner import TargetError, start

    channel = take_channel()  # a re-run's or a watched run's channel: first, before the environment is read
    args, target = parse_run(argv, command)
    try:
        settings = _settings(args, "run")
        if extra:
            settings.update(extra)
        session, prepared = start(settings, target, ["pyward", command, *argv], engines=engines, channel=channel)
    except (ConfigError, TargetError) as exc:
        if getattr(exc, "python_line", None):
            sys.stderr.write(exc.python_line + "\n")  # type: ignore[union-attr]
            raise SystemExit(exc.status) from None  # type: ignore[union-attr]
        _fail(str(exc), getattr(exc, "status", 2))
    return session.run(prepared)  # the program's own exit propagates from here


def cmd_verify(args: argparse.Namespace) -> int:
    from . import checkpoint, report

    if checkpoint.is_journal(args.report):  # the record of a run that did not end normally
        return checkpoint.verify_command(args.report, args.hmac_key_file, args.hmac_key_env)
    try:
        raw, data = report.load(args.report)
    except report.ReportError as exc:
        _fail(str(exc))
    verdict = report.verify(data)
    if not verdict.ok:
        sys.stderr.write(f"[pyward] verify: {args.report}: ALTERED: {verdict.problem}\n")
        return 1
    line = f"intact: {verdict.events} events, merkle root {verdict.merkle_root[:16]}…"
    if args.signature is not None:
        sig_path = args.signature or args.report + ".sig"
        sig = _load_signature(sig_path)
        try:
            key: dict[str, Any] = {}
            if sig.get("algorithm") == "hmac-sha256":
                key["hmac_key"] = report.hmac_key_from(args.hmac_key_file, args.hmac_key_env)
            elif sig.get("algorithm") == "ed25519" and args.public_key:
                key["public_key"] = report.load_ed25519_public(args.public_key)
            problem = report.check_signature(raw, sig, **key)
        except report.SigningKeyError as exc:
            _fail(str(exc))
        if problem:
            sys.stderr.write(f"[pyward] verify: {args.report}: BAD SIGNATURE: {problem}\n")
            return 1
        line += f"; signature ok ({sig['algorithm']}, key {sig.get('key_id')})"
    print(f"{args.report}: {line}")
    return 0


def _load_signature(path: str) -> dict[str, Any]:
    import json

    try:
        with open(path, encoding="utf-8") as f:
            sig = json.load(f)
    except OSError as exc:
        _fail(f"cannot read signature {path}: {exc.strerror or exc}")
    except ValueError as exc:
        _fail(f"{path} is not a signature file: {exc}")
    if not isinstance(sig, dict):
        _fail(f"{path} is not a signature file")
    return sig


def cmd_sign(args: argparse.Namespace) -> int:
    import json

    from . import report

    if args.ed25519_key and (args.hmac_key_file or args.hmac_key_env):
        _fail("pyward sign: give one key: an HMAC key or --ed25519-key, not both")
    try:
        raw, data = report.load(args.report)
        verdict = report.verify(data)
        if not verdict.ok:
            _fail(f"refusing to sign {args.report}: it is already altered: {verdict.problem}", 1)
        if args.ed25519_key:
            sig = report.sign(raw, data, ed25519_key=report.load_ed25519_private(args.ed25519_key))
        else:
            sig = report.sign(raw, data, hmac_key=report.hmac_key_from(args.hmac_key_file, args.hmac_key_env))
    except (report.ReportError, report.SigningKeyError) as exc:
        _fail(str(exc))
    out = args.output or args.report + ".sig"
    with open(out, "w", encoding="utf-8") as f:
        json.dump(sig, f, indent=1)
        f.write("\n")
    print(f"signed {args.report} ({sig['algorithm']}, key {sig['key_id']}): {out}")
    return 0


def cmd_keygen(args: argparse.Namespace) -> int:
    from . import report

    try:
        paths = report.generate_keys(args.output, args.kind)
    except FileExistsError:
        _fail(f"{args.output} already exists; not overwriting a key")
    except OSError as exc:
        _fail(f"cannot write {args.output}: {exc.strerror or exc}")
    except report.SigningKeyError as exc:
        _fail(str(exc))
    for path in paths:
        print(path)
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    try:
        settings = _settings(vars(args), "config")
    except ConfigError as exc:
        _fail(str(exc))
    print(f"# config file: {settings.source or '(none found; defaults)'}")
    for option in OPTIONS:
        print(f"{option.key} = {settings[option.key]!r}")
    return 0


HANDLERS: dict[str, Any] = {"verify": cmd_verify, "sign": cmd_sign, "keygen": cmd_keygen, "config": cmd_config}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "run":
        return cmd_run(argv[1:])
    if argv and argv[0] in PROGRAM_COMMANDS and not (len(argv) > 1 and argv[1] in ("-h", "--help")):
        import importlib

        module, _, function = PROGRAM_COMMANDS[argv[0]].partition(":")
        return getattr(importlib.import_module(module), function)(argv[1:])
    import signal

    # the offline commands (patches, explain, verify...) end quietly when their reader goes, like other unix
    # tools (`pyward patches | head`): killed by SIGPIPE, no traceback
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    parser, subs = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return HANDLERS[args.command](args)
