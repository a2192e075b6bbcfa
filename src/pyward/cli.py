"""pyward's command line: the entry point and the offline commands.

`main` dispatches: `pyward run` and the commands that run a program go
straight to their function (no argparse on that path: it costs startup);
every other command is parsed with the full parser (commandline.py) and
handed to its handler.  Each handler translates arguments into one call of
report or config, and errors into one `[pyward][error]` line.
"""
from __future__ import annotations

import sys

from .commandline import build_parser, fail, run_program, settings_from
from .config import OPTIONS, ConfigError

TYPE_CHECKING = False  # importing typing costs milliseconds of startup
if TYPE_CHECKING:
    import argparse
    from typing import Any

#: Commands that run a program (their arguments split like `run`'s): name -> "module:function".
PROGRAM_COMMANDS: dict[str, str] = {
    # sandbox
    "learn": "pyward.sandbox.commands:cmd_learn",

    # heal
    "watch": "pyward.heal.watch:cmd_watch",

    # no engine: the program's audit events as they happen
    "trace": "pyward.trace:cmd_trace",
}


def cmd_verify(args: argparse.Namespace) -> int:
    from . import report

    try:
        return _verify(args)
    except report.MALFORMED as exc:  # a crafted report: one line and status 2, never a traceback
        fail(report.malformed(args.report, exc))
    return 2


def _verify(args: argparse.Namespace) -> int:
    from . import checkpoint, report

    if checkpoint.is_journal(args.report):  # the record of a run that did not end normally
        return checkpoint.verify_command(args.report, args.hmac_key_file, args.hmac_key_env)
    try:
        raw, data = report.load(args.report)
    except report.ReportError as exc:
        fail(str(exc))
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
            fail(str(exc))
        if problem:
            sys.stderr.write(f"[pyward] verify: {args.report}: BAD SIGNATURE: {problem}\n")
            return 1
        line += f"; signature ok ({sig['algorithm']}, key {sig.get('key_id')})"
    ended = report.incomplete(data)
    if ended is not None:  # written by the recorder after the program's process ended without an end record
        print(f"{args.report}: {line}; {ended}: INCOMPLETE")
        return checkpoint.INCOMPLETE
    print(f"{args.report}: {line}")
    return 0


def _load_signature(path: str) -> dict[str, Any]:
    import json

    try:
        with open(path, encoding="utf-8") as f:
            sig = json.load(f)
    except OSError as exc:
        fail(f"cannot read signature {path}: {exc.strerror or exc}")
    except (ValueError, RecursionError) as exc:
        fail(f"{path} is not a signature file: {type(exc).__name__}: {exc}")
    if not isinstance(sig, dict) or not all(isinstance(sig.get(k, ""), str) for k in ("algorithm", "key_id")):
        fail(f"{path} is not a signature file")
    return sig


def cmd_sign(args: argparse.Namespace) -> int:
    import json

    from . import report

    if args.ed25519_key and (args.hmac_key_file or args.hmac_key_env):
        fail("pyward sign: give one key: an HMAC key or --ed25519-key, not both")
    try:
        raw, data = report.load(args.report)
        try:
            verdict = report.verify(data)
        except report.MALFORMED as exc:
            fail(report.malformed(args.report, exc))
        if not verdict.ok:
            fail(f"refusing to sign {args.report}: it is already altered: {verdict.problem}", 1)
        if args.ed25519_key:
            sig = report.sign(raw, data, ed25519_key=report.load_ed25519_private(args.ed25519_key))
        else:
            sig = report.sign(raw, data, hmac_key=report.hmac_key_from(args.hmac_key_file, args.hmac_key_env))
    except (report.ReportError, report.SigningKeyError) as exc:
        fail(str(exc))
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
        fail(f"{args.output} already exists; not overwriting a key")
    except OSError as exc:
        fail(f"cannot write {args.output}: {exc.strerror or exc}")
    except report.SigningKeyError as exc:
        fail(str(exc))
    for path in paths:
        print(path)
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    try:
        settings = settings_from(vars(args), "config")
    except ConfigError as exc:
        fail(str(exc))
    print(f"# config file: {settings.source or '(none found; defaults)'}")
    for option in OPTIONS:
        print(f"{option.key} = {settings[option.key]!r}")
    return 0


HANDLERS: dict[str, Any] = {"verify": cmd_verify, "sign": cmd_sign, "keygen": cmd_keygen, "config": cmd_config}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "run":
        return run_program(argv[1:])
    if argv and argv[0] in PROGRAM_COMMANDS and not (len(argv) > 1 and argv[1] in ("-h", "--help")):
        import importlib

        module, _, function = PROGRAM_COMMANDS[argv[0]].partition(":")
        return getattr(importlib.import_module(module), function)(argv[1:])
    import signal

    # the offline commands (patches, explain, verify...) end quietly when their reader goes, like other unix
    # tools (`pyward patches | head`): killed by SIGPIPE, no traceback
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    parser, subs = build_parser(HANDLERS)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return HANDLERS[args.command](args)
