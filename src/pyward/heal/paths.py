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
