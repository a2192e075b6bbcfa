"""What an executable runs first, read from its first bytes."""
from __future__ import annotations

import os
import shutil
import sys

import pytest

from pyward.executable import elf_interpreter, shebang
from pyward.policy.learn import not_python


@pytest.mark.parametrize("line, programs", [
    (b"#!/usr/bin/python3\n", ["/usr/bin/python3"]),
    (b"#! /usr/bin/python3 -u\nprint()\n", ["/usr/bin/python3"]),
    (b"#!/usr/bin/env python3\n", ["/usr/bin/env", "python3"]),
    (b"#!/usr/bin/env -S python3 -X dev\n", ["/usr/bin/env", "python3"]),
    (b"#!/usr/bin/env -i LANG=C python3\n", ["/usr/bin/env", "python3"]),
    (b"#!/bin/sh\nexec python3 \"$0\"\n", ["/bin/sh"]),
    (b"#!\n", []),
    (b"print('no #! line')\n", []),
    (b"", []),
])
def test_shebang_names_the_programs_run(line: bytes, programs: list[str]) -> None:
    assert shebang(line) == programs


def test_elf_interpreter_of_a_dynamic_executable() -> None:
    sh = shutil.which("sh")
    assert sh is not None
    with open(os.path.realpath(sh), "rb") as f:
        loader = elf_interpreter(f.read(4096))
    assert loader is not None and os.path.isfile(loader) and "ld-linux" in os.path.basename(loader)
    assert elf_interpreter(b"#!/bin/sh\n") is None


def test_learn_tells_a_python_script_through_env_options(tmp_path) -> None:
    """A console script whose `#!` runs `env -S python3` is Python (armed and learned), not a command
    whose files learn cannot see; a shell script is."""
    py = tmp_path / "tool"
    py.write_text(f"#!/usr/bin/env -S {os.path.basename(sys.executable)} -u\nprint('hi')\n")
    sh = tmp_path / "tool.sh"
    sh.write_text("#!/bin/sh\necho hi\n")
    assert not_python([str(py), str(sh)]) == [str(sh)]
