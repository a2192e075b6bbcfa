"""Helpers shared by pyward's tests: run the CLI in a subprocess, cleanly."""
from __future__ import annotations

import os
import subprocess
import sys


def clean_env(**extra: str) -> dict[str, str]:
    """The environment for a child: no PYWARD_* or PYTHONPATH leaking in, no colour."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYWARD", "PYTHON", "FORCE_COLOR"))}
    env["NO_COLOR"] = "1"
    env.update(extra)
    return env


def pyward(*args: str, cwd: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None,
           input: bytes | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`python -m pyward ARGS`, text output."""
    return subprocess.run([sys.executable, "-m", "pyward", *args], cwd=cwd, env=env or clean_env(),
                          input=input.decode() if input is not None else None, capture_output=True, text=True,
                          timeout=timeout)


def pyward_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("[pyward]")]


def recorders_of(pid: int) -> list[int]:
    """The recorder processes of the pyward run `pid`: forked from it, so with its command line, in another
    session."""
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        cmdline = f.read()
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != pid:
            try:
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    if f.read() == cmdline and os.getsid(int(name)) != os.getsid(pid):
                        found.append(int(name))
            except OSError:
                pass
    return found


def wait_for_text(path: str | os.PathLike[str], needle: str, count: int = 1, timeout: float = 30) -> bool:
    """Wait until the file at `path` holds `needle` `count` times (a recorder catching up with a run)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                if f.read().count(needle) >= count:
                    return True
        except FileNotFoundError:
            pass
        time.sleep(0.05)
    return False
