"""What an executable file runs before its own code: the program its `#!` line
names (through `env` too) and the dynamic loader its ELF header names.

Read from the file's first bytes, never by running it: the kernel wall grants
what a command it lets run needs, and `pyward learn` tells a Python command
(armed and learned) from one that is not.
"""
from __future__ import annotations

import os


def shebang(head: bytes) -> list[str]:
    """The programs a `#!` line runs, first the interpreter it names, then, when that is `env`, the
    command env looks up (`#!/usr/bin/env -S python3 -u` gives ["/usr/bin/env", "python3"]);
    [] for a file without one."""
    if head[:2] != b"#!":
        return []
    words = [os.fsdecode(word) for word in head[2:].split(b"\n", 1)[0].split()]
    if not words:
        return []
    if os.path.basename(words[0]) == "env":
        for word in words[1:]:
            if not word.startswith("-") and "=" not in word:  # env's options and assignments come first
                return [words[0], word]
    return words[:1]


def elf_interpreter(head: bytes) -> str | None:
    """The PT_INTERP path of a 64-bit little-endian ELF file's first bytes, if it names one."""
    if head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
        return None
    phoff = int.from_bytes(head[32:40], "little")
    size, count = int.from_bytes(head[54:56], "little"), int.from_bytes(head[56:58], "little")
    for i in range(count):
        at = phoff + i * size
        if at + 56 > len(head):
            return None
        if int.from_bytes(head[at:at + 4], "little") == 3:  # PT_INTERP
            offset = int.from_bytes(head[at + 8:at + 16], "little")
            length = int.from_bytes(head[at + 32:at + 40], "little")
            return os.fsdecode(head[offset:offset + length].rstrip(b"\x00")) or None
    return None
