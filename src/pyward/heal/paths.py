"""Where the heal engine's files live, and how messages show a file name."""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ..config import Settings


def store_path(settings: Settings, cwd: str) -> str:
    """Where the patch store of this run lives (`heal.store`, else .pyward/heal.db)."""
    import os

    # relative to the working directory the run started in (a bare name too: `--store h.db`)
    return os.path.join(cwd, settings.get("heal.store") or os.path.join(".pyward", "heal.db"))


def store_files(path: str) -> list[str]:
    """Every file SQLite may write for the store (pyward's own output, not the program's)."""
    import os

    return [path, f"{path}-wal", f"{path}-shm", f"{path}-journal", os.path.dirname(path),
            os.path.join(os.path.dirname(path), ".gitignore")]


def short_path(path: str) -> str:
    """A file name as messages show it (relative when under the working directory)."""
    from ..config import display_path

    return display_path(path) if not path.startswith("<") else path


_LIBRARY_DIRS: tuple[str, ...] = ()


def library_dirs() -> tuple[str, ...]:
    """Directories whose code is never patched: the standard library, site-packages, pyward (computed once)."""
    global _LIBRARY_DIRS
    if not _LIBRARY_DIRS:
        _LIBRARY_DIRS = _find_library_dirs()
    return _LIBRARY_DIRS


def _find_library_dirs() -> tuple[str, ...]:
    """From what the interpreter already knows, reading no environment variable
    (sysconfig does, which an enforcing sandbox would refuse)."""
    import os
    import site
    import sys

    dirs = {os.path.dirname(os.path.realpath(os.__file__)) + os.sep}  # the standard library, lib-dynload in it
    places = [*getattr(site, "getsitepackages", lambda: [])(), getattr(site, "USER_SITE", None),
              *(p for p in sys.path if os.path.basename(p) in ("site-packages", "dist-packages"))]
    for path in places:
        if path:
            dirs.add(os.path.realpath(path) + os.sep)
    dirs.add(os.path.dirname(os.path.dirname(os.path.realpath(__file__))) + os.sep)
    return tuple(sorted(dirs))
