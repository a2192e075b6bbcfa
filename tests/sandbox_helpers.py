"""Helpers for the sandbox tests: run a program under pyward and read its journal."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from helpers import clean_env


class Run:
    def __init__(self, result: subprocess.CompletedProcess[str], log: list[dict]) -> None:
        self.result, self.log = result, log
        self.stdout, self.stderr, self.status = result.stdout, result.stderr, result.returncode

    def events(self, kind: str | None = None, engine: str = "sandbox") -> list[dict]:
        return [e for e in self.log if e["engine"] == engine and (kind is None or e["kind"] == kind)]

    @property
    def denied(self) -> list[dict]:
        return self.events("denied")

    def __repr__(self) -> str:
        return f"<Run status={self.status}\nstdout={self.stdout}\nstderr={self.stderr}>"


def guard(tmp_path, code: str, *flags: str, args: tuple[str, ...] = (), env: dict[str, str] | None = None,
          name: str = "app.py", input: str | None = None, timeout: float = 60, config: bool = False) -> Run:
    """Write `code` to tmp_path/app.py and run `pyward run FLAGS app.py ARGS` with a JSON-lines log."""
    (tmp_path / name).write_text(textwrap.dedent(code))
    log = tmp_path / "events.jsonl"
    no_config = () if config else ("--no-config",)
    result = subprocess.run([sys.executable, "-m", "pyward", "run", *no_config, "--log", str(log), *flags, name,
                             *args], cwd=tmp_path, env=env or clean_env(), capture_output=True, text=True,
                            input=input, timeout=timeout)
    events = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return Run(result, events)
