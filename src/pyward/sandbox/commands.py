"""Sandbox subcommands: `pyward learn` and `pyward trust`."""
from __future__ import annotations

import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

LEARN_USAGE = "pyward learn [-o FILE] [--force] [run options] (SCRIPT | -m MODULE | -c CODE) [ARGS...]"


def add_commands(commands: Any, handlers: dict[str, Any]) -> None:
    learn = commands.add_parser(
        "learn", help="run a program and write the least-privilege policy it needs", usage=LEARN_USAGE,
        description="Run the program in watch mode, then write a policy (default pyward.toml) that lets the same "
                    "run pass under enforce with no denials. Paths are generalised (a directory, not every file); "
                    "environment variable values are never written. Takes the options of `pyward run`.")
    learn.add_argument("-o", "--output", metavar="FILE", default="pyward.toml", help="where to write the policy")
    learn.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    trust = commands.add_parser(
        "trust", help="accept a policy file a guarded program modified",
        description="pyward refuses a policy file that a program it guarded wrote (watch mode lets such a write "
                    "happen). Review the file, then trust it again with this command.")
    trust.add_argument("file", metavar="FILE")
    handlers["trust"] = cmd_trust


def cmd_learn(argv: list[str]) -> int:
    from ..commandline import fail, run_program, split_own_options

    own, rest = split_own_options(argv, "learn", {"-o": True, "--output": True, "--force": False})
    output = own.get("-o", own.get("--output", "pyward.toml"))
    force = own.get("--force", False)
    if os.path.exists(output) and not force:
        fail(f"pyward learn: {output} exists; use --force to overwrite it or -o to write elsewhere")
    if os.path.basename(output) == "pyproject.toml":
        fail("pyward learn: writing into pyproject.toml is not supported; write a pyward.toml (-o) and "
              "copy its [permissions] table into [tool.pyward.permissions]")
    return run_program(rest, extra={"sandbox.learn": os.path.abspath(output), "mode": "watch"}, command="learn")


def cmd_trust(args: argparse.Namespace) -> int:
    import json

    path = os.path.join(os.getcwd(), ".pyward", "tainted-policy.json")
    target = os.path.realpath(args.file)
    try:
        with open(path, encoding="utf-8") as f:
            tainted = json.load(f)
    except (OSError, ValueError):
        tainted = {}
    if target not in tainted:
        print(f"{args.file}: not marked as modified by a guarded program; nothing to do")
        return 0
    del tainted[target]
    with open(path, "w", encoding="utf-8") as f:
        json.dump(tainted, f, indent=1)
    print(f"{args.file}: trusted again")
    sys.stdout.flush()
    return 0
