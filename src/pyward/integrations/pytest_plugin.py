"""`pytest --pyward-tamper`: report the sealed targets a test left patched.

A test that patches `builtins.open` or `subprocess.Popen` and forgets to undo
it pollutes every test that runs after it; the failure shows up somewhere
else, by luck.  With --pyward-tamper, pyward fingerprints the targets it seals
by default (see pyward.tamper.seals.DEFAULT_TARGETS) plus --pyward-tamper-watch
before each test and compares them after its teardown.  Registered through the
`pytest11` entry point; inert unless the option is given.
"""
from __future__ import annotations

from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pyward")
    group.addoption("--pyward-tamper", action="store_true", default=False,
                    help="report sealed targets (builtins.open, socket.socket, ...) a test left patched")
    group.addoption("--pyward-tamper-watch", default="", metavar="LIST",
                    help="also check these dotted names (comma-separated, globs allowed)")
    group.addoption("--pyward-tamper-fail", action="store_true", default=False,
                    help="with --pyward-tamper: fail the session when a test leaves a target patched")


class TamperCheck:
    def __init__(self, extra: list[str], fail: bool) -> None:
        from ..tamper.seals import DEFAULT_TARGETS

        self.targets = [t for t in DEFAULT_TARGETS if not t.startswith("pyward.")] + extra
        self.fail = fail
        self.leaks: list[tuple[str, str, str, str]] = []  # (nodeid, target, before, after)

    def snapshot(self) -> dict[str, tuple[Any, str, Any, Any]]:
        from ..tamper.seals import fingerprint, resolve

        out = {}
        for spec in self.targets:
            seals, _ = resolve(spec, "pytest")
            for seal in seals:
                out[seal.name] = (seal.owner, seal.attr, seal.original, fingerprint(seal.original))
        return out

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: Any) -> Any:
        from ..tamper.seals import MISSING, describe, fingerprint

        before = self.snapshot()
        yield
        for name, (owner, attr, value, print_) in before.items():
            now = owner.__dict__.get(attr, MISSING)
            if now is not value or (print_ is not None and fingerprint(now) != print_):
                self.leaks.append((item.nodeid, name, describe(value), describe(now)))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.leaks:
            terminalreporter.write_line("pyward tamper: no test left a sealed target patched")
            return
        terminalreporter.section("pyward tamper: sealed targets left patched", sep="-", yellow=True)
        for nodeid, name, before, after in self.leaks:
            terminalreporter.write_line(f"{nodeid}: {name} left as {after} (was {before})")

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.fail and self.leaks and exitstatus == 0:
            session.exitstatus = 1


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("pyward_tamper"):
        extra = [t.strip() for t in config.getoption("pyward_tamper_watch").split(",") if t.strip()]
        config.pluginmanager.register(TamperCheck(extra, config.getoption("pyward_tamper_fail")),
                                      "pyward-tamper-check")
