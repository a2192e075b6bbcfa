"""Prompt mode: where the answers given at the terminal are saved, and the offer to save them."""
from __future__ import annotations

import os

from .._isolation import isolate_builtins, isolate_module
from .context import stdin_is_tty  # noqa: F401 - the prompt's own question, asked by the decider too

isolate_builtins(globals())

os = isolate_module(os)  # noqa: F811

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def prompt_target(source: str | None, cwd: str) -> str | None:
    """Where prompt answers are saved: the pyward.toml in use, or a new one in
    the current directory; never a pyproject.toml (not pyward's to rewrite)."""
    if source:
        return os.path.realpath(source) if os.path.basename(source) == "pyward.toml" else None
    return os.path.join(os.path.realpath(cwd), "pyward.toml")


def file_digest(path: str) -> str | None:
    import hashlib

    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError:
        return None


def offer_to_save(answers: list[tuple[str, str]], source: str | None, target: str | None, session: Any) -> None:
    """At the end of a prompt-mode run: save the answers into pyward.toml, if the user says so."""
    from ..policy.learn import merge_answers

    if target is None:
        lines = ", ".join(f"{perm} += {scope!r}" for perm, scope in answers)
        session.journal.emit("sandbox", "prompt.unsaved", source or "", severity="notice", where="",
                             message=f"answers given at the prompt ({lines}) are not saved into {source}: "
                                     "add them to [tool.pyward.permissions] to keep them")
        return
    try:
        fd = os.open("/dev/tty", os.O_RDWR)
        try:
            os.write(fd, f"[pyward] Save {len(answers)} answer(s) into {target}? [y/N] > ".encode())
            reply = b""
            while not reply.endswith(b"\n"):
                byte = os.read(fd, 1)
                if not byte:
                    break
                reply += byte
        finally:
            os.close(fd)
    except OSError:
        return
    if reply.decode(errors="replace").strip()[:1] not in ("y", "Y"):
        return
    try:
        backup = merge_answers(target, answers, getattr(session, "start_env", None))
    except (OSError, ValueError) as exc:
        session.journal.emit("sandbox", "prompt.unsaved", target, severity="warning", where="",
                             message=f"could not save the answers into {target}: {exc}")
        return
    kept = f" (previous version kept as {backup})" if backup else ""
    session.journal.emit("sandbox", "prompt.saved", target, severity="notice", where="",
                         message=f"saved {len(answers)} answer(s) into {target}{kept}")
