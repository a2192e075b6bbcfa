"""install_hook as PEP 578 hooks are written: alone in a plain python program,
every event or the ones named, blocking by raising; and the five
policy shapes of docs/hooks.md, run from that page, next to their `pyward run` equivalents."""
from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from helpers import clean_env

HOOKS_PAGE = Path(__file__).resolve().parents[2] / "docs" / "hooks.md"


def page_blocks(kind: str, lang: str) -> dict[str, str]:
    text = HOOKS_PAGE.read_text()
    pattern = rf"<!-- {kind}: (\w+) -->\n```{lang}\n(.*?)```"
    return dict(re.findall(pattern, text, re.S))


HOOKS = page_blocks("hook", "python")
EQUIVALENTS = page_blocks("run", "toml")

FILES = """
    with open("out/result.txt", "w") as f:
        f.write("ok")
    print("out ok")
    try:
        open("elsewhere.txt", "w")
    except PermissionError:
        print("elsewhere denied")
"""
NETWORK = """
    import socket
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    socket.create_connection(server.getsockname(), timeout=5).close()
    print("local ok")
    try:
        socket.create_connection(("192.0.2.1", 80), timeout=5)
    except PermissionError:
        print("remote denied")
"""
#: shape -> (docs/hooks.md blocks the program starts with, the program, what it prints either way)
SHAPES = {
    "log": (["log"], """
        open("notes.txt", "w").write("hi")
        print("wrote")
    """, "wrote\n"),
    "allowlist": (["allowlist"], """
        import os, subprocess
        print("listed", len(os.listdir(".")) > 0)
        try:
            subprocess.run(["true"])
        except PermissionError:
            print("process denied")
    """, "listed True\nprocess denied\n"),
    "files": (["files"], FILES, "out ok\nelsewhere denied\n"),
    "network": (["network"], NETWORK, "local ok\nremote denied\n"),
    "combined": (["files", "network", "combined"], FILES + NETWORK,
                 "out ok\nelsewhere denied\nlocal ok\nremote denied\n"),
}


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=120)


def test_the_hooks_page_shows_the_five_shapes_and_their_equivalents():
    assert set(HOOKS) == set(SHAPES) == set(EQUIVALENTS)
    for toml in EQUIVALENTS.values():
        assert re.search(r"-- or: pyward run (.*) app\.py", toml)


@pytest.mark.parametrize("shape", list(SHAPES))
def test_policy_shape_as_a_hook_in_plain_python(tmp_path, shape):
    blocks, driver, expected = SHAPES[shape]
    (tmp_path / "out").mkdir()
    program = "".join(HOOKS[name] + "\n" for name in blocks) + textwrap.dedent(driver)
    (tmp_path / "app.py").write_text(program)
    result = run([sys.executable, "app.py"], tmp_path)
    assert (result.stdout, result.returncode) == (expected, 0), result.stderr
    if shape == "log":
        assert "[audit] open: ('notes.txt', 'w'" in result.stderr
    else:
        assert "denied by the hook installed with pyward.sandbox.install_hook() (PermissionError: " in result.stderr
    assert not (tmp_path / "elsewhere.txt").exists()


@pytest.mark.parametrize("how", ["toml", "flags"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_policy_shape_under_pyward_run(tmp_path, shape, how):
    _, driver, expected = SHAPES[shape]
    (tmp_path / "out").mkdir()
    (tmp_path / "app.py").write_text(textwrap.dedent(driver))
    toml = EQUIVALENTS[shape]
    if how == "toml":
        (tmp_path / "pyward.toml").write_text(toml)
        cmd = [sys.executable, "-m", "pyward", "run", "--no-report", "app.py"]
    else:
        flags = shlex.split(re.search(r"-- or: pyward run (.*) app\.py", toml).group(1))
        cmd = [sys.executable, "-m", "pyward", "run", "--no-config", "--no-report", *flags, "app.py"]
    result = run(cmd, tmp_path)
    assert (result.stdout, result.returncode) == (expected, 0), result.stderr
    assert not (tmp_path / "elsewhere.txt").exists()
    if shape == "log":
        events = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
        assert any(e["name"].endswith("/notes.txt") and e["details"].get("permission") == "write" for e in events)
    else:
        assert "denied" in result.stderr


def program(tmp_path: Path, code: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "app.py").write_text(textwrap.dedent(code))
    return run([sys.executable, "app.py"], tmp_path)


RAISING = """
    import os, sys
    class Blocked(Exception):
        pass
    def hook(event, args):
        if event == "os.listdir" and args[0] == "/":
            raise Blocked("no listing of " + args[0])
    {install}
    try:
        os.listdir("/")
    except Blocked as exc:
        print(type(exc).__qualname__, exc, type(exc) is Blocked)
    os.listdir("/")
"""


def test_a_raising_hook_reaches_the_caller_with_its_own_exception(tmp_path):
    ours = program(tmp_path, RAISING.format(install="from pyward.sandbox import install_hook; install_hook(hook)"))
    raw = program(tmp_path, RAISING.format(install="sys.addaudithook(hook)"))
    assert ours.stdout == raw.stdout == "Blocked no listing of / True\n"
    assert ours.returncode == raw.returncode == 1
    traceback = [line for line in ours.stderr.splitlines() if not line.startswith("[pyward]")]
    assert traceback == raw.stderr.splitlines()  # the same traceback: the hook's frame, no frame of pyward
    assert traceback[-1] == "Blocked: no listing of /"
    journaled = [line for line in ours.stderr.splitlines() if line.startswith("[pyward]")]
    assert len(journaled) == 2 and all("os.listdir '/' denied by the hook" in line and "(Blocked: no listing of /)"
                                       in line for line in journaled), ours.stderr


def test_events_narrow_what_the_hook_sees_and_uninstall_removes_it(tmp_path):
    result = program(tmp_path, """
        import os, socket
        from pyward.sandbox import install_hook, uninstall_hook
        seen = []
        install_hook(lambda event, args: seen.append(event), events=["os.listdir", "socket.*"])
        os.listdir(".")
        socket.gethostname()
        open("app.py").close()
        uninstall_hook()
        os.listdir(".")
        print(seen)
        everything = []
        install_hook(lambda event, args: everything.append(event))
        open("app.py").close()
        compile("1", "<x>", "eval")
        uninstall_hook()
        print(everything)
    """)
    assert result.stdout == "['os.listdir', 'socket.gethostname']\n['open', 'compile']\n", result.stderr


def test_a_deny_answer_raises_access_denied_and_a_hook_may_open_files(tmp_path):
    result = program(tmp_path, """
        import os, pyward
        from pyward.sandbox import install_hook
        def hook(event, args):
            if event == "open" and args[0] != "hook.log":
                with open("hook.log", "a") as log:  # its own events do not come back to it
                    log.write(f"{args[0]}\\n")
            return "deny" if event == "os.listdir" else None
        install_hook(hook)
        open("app.py").close()
        try:
            os.listdir(".")
        except pyward.AccessDenied as exc:
            print(exc)
        print(open("hook.log").read().split())
    """)
    assert result.stdout == ("os.listdir denied by the hook installed with pyward.sandbox.install_hook()\n"
                             "['app.py']\n"), result.stderr
    assert "(it returned \"deny\")" in result.stderr


def test_a_hook_composes_with_a_policy_installed_later(tmp_path):
    result = program(tmp_path, """
        import pyward, pyward.sandbox as sandbox
        sandbox.install_hook(lambda event, args: "allow" if event == "open" and args[0] == "granted.txt" else None)
        sandbox.install(pyward.Policy.from_dict(allow={"read": ["."]}), mode="enforce")
        open("granted.txt", "w").close()
        try:
            open("other.txt", "w")
        except PermissionError:
            print("policy denies the rest")
    """)
    assert result.stdout == "policy denies the rest\n", result.stderr
    assert "granted.txt' allowed by the hook" in result.stderr


@pytest.mark.parametrize("call", ["install_hook(lambda event, args: None)", "uninstall_hook()",
                                  "install_hook(lambda event, args: None, events=['open'])"])
def test_under_pyward_run_the_program_cannot_install_a_hook(tmp_path, call):
    (tmp_path / "app.py").write_text(textwrap.dedent(f"""
        import pyward
        from pyward.sandbox import install_hook, uninstall_hook
        try:
            {call}
        except pyward.AccessDenied as exc:
            print("refused:", exc)
        try:
            open("/etc/hostname")
        except PermissionError:
            print("policy still applies")
    """))
    result = run([sys.executable, "-m", "pyward", "run", "--no-config", "--no-report", "--mode=enforce", "app.py"],
                 tmp_path)
    assert result.stdout.startswith("refused: the sandbox's callback is locked"), result.stderr
    assert result.stdout.endswith("policy still applies\n") and result.returncode == 0
