"""The patch store: recipes in an SQLite file, never code.

A recipe names a function (module, qualname, file), the hash of its
original code, the Python minor version and pyward version it was made
with, the guard kind, the site (instruction index, operand) and the
fallback.  On load the guard is synthesised again and verified again; a
recipe whose code hash no longer matches (the source was fixed) is stale
and is not applied.

SQLite in WAL mode with a busy timeout: several processes (workers of one
service, parallel test runs) read and write the same store safely.
"""
from __future__ import annotations

import os
import sqlite3
import sys
import time

from .._isolation import isolate_module

time = isolate_module(time)  # noqa: F811 - a recipe's age is real time, under freezegun too

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Iterator

PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"

SCHEMA = """
CREATE TABLE IF NOT EXISTS recipes (
    id          INTEGER PRIMARY KEY,
    module      TEXT NOT NULL,
    qualname    TEXT NOT NULL,
    file        TEXT NOT NULL,
    firstlineno INTEGER NOT NULL,
    code_hash   TEXT NOT NULL,
    python      TEXT NOT NULL,
    pyward      TEXT NOT NULL,
    kind        TEXT NOT NULL,
    operand     TEXT NOT NULL,
    fallback    TEXT NOT NULL,
    lineno      INTEGER,
    site        TEXT NOT NULL,
    exception   TEXT NOT NULL,
    created     REAL NOT NULL,
    hits        INTEGER NOT NULL DEFAULT 0,
    last_hit    REAL,
    UNIQUE (code_hash, python, qualname, site)
);
CREATE TABLE IF NOT EXISTS shapes (
    shape       TEXT PRIMARY KEY,
    template    TEXT NOT NULL,
    origin      TEXT NOT NULL,
    created     REAL NOT NULL
);
"""


class Recipe:
    """One stored patch: which code it applies to (module, qualname, file, first line, the code's hash,
    the Python and pyward that made it), the guard (kind, operand, fallback, line, the site as JSON, the
    exception it was made for) and its use (created, hits, last hit; epoch seconds).  A plain class with
    typed fields rather than a dataclass: `dataclasses` costs ~15 ms to import on a --heal start."""

    __slots__ = ("id", "module", "qualname", "file", "firstlineno", "code_hash", "python", "pyward", "kind",
                 "operand", "fallback", "lineno", "site", "exception", "created", "hits", "last_hit")

    def __init__(self, *, module: str, qualname: str, file: str, firstlineno: int, code_hash: str, python: str,
                 pyward: str, kind: str, operand: str, fallback: str, lineno: int | None, site: str, exception: str,
                 created: float, id: int | None = None, hits: int = 0, last_hit: float | None = None) -> None:
        self.id = id
        self.module, self.qualname, self.file, self.firstlineno = module, qualname, file, firstlineno
        self.code_hash, self.python, self.pyward = code_hash, python, pyward
        self.kind, self.operand, self.fallback, self.lineno = kind, operand, fallback, lineno
        self.site, self.exception = site, exception
        self.created, self.hits, self.last_hit = created, hits, last_hit

    def label(self) -> str:
        return f"{self.qualname} ({self.kind} on {self.operand})"

    def saved_id(self) -> int:
        """The id of a recipe read from or saved to the store (a new one has none until it is saved)."""
        if self.id is None:
            raise ValueError(f"{self.label()} is not in the store")
        return self.id

    def site_data(self) -> dict[str, Any]:
        import json

        return json.loads(self.site)

    def recovery(self) -> str:
        """How the program goes on when the guard falls back (recovery.py); "" for a recipe that
        names none (its recovery is chosen from the code when it is applied)."""
        return self.site_data().get("recovery", "")

    def age_days(self, now: float | None = None) -> float:
        return ((now or time.time()) - self.created) / 86400


class Store:
    """One SQLite patch store; opened lazily, only under --heal or by commands."""

    def __init__(self, path: str, create: bool = True) -> None:
        self.path = path
        if create:
            directory = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(directory):
                os.makedirs(directory, exist_ok=True)
                if os.path.basename(directory) == ".pyward":
                    with open(os.path.join(directory, ".gitignore"), "w") as f:
                        f.write("# created by pyward\n*\n")
        elif not os.path.exists(path):
            raise FileNotFoundError(path)
        self.db = sqlite3.connect(path, timeout=10, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA busy_timeout = 10000")
        if create:
            try:
                self.db.execute("PRAGMA journal_mode = WAL")
            except sqlite3.OperationalError:  # e.g. a file system without shared memory
                pass
            self.db.executescript(SCHEMA)
        if self.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
            # a commit then waits for no fsync (a checkpoint does): a power cut may lose the last recipes, relearned
            # at their next crash, never corrupt the store; a heal in a server saves ~1 ms a recipe.  Outside WAL
            # (a rollback journal) that could corrupt it: the default, a sync per commit, stays
            self.db.execute("PRAGMA synchronous = NORMAL")

    def close(self) -> None:
        self.db.close()

    def _rows(self, sql: str, args: tuple[Any, ...] = ()) -> Iterator[Recipe]:
        cursor = self.db.execute(sql, args)
        names = [d[0] for d in cursor.description]
        for row in cursor.fetchall():
            yield Recipe(**dict(zip(names, row)))

    def all(self) -> list[Recipe]:
        return list(self._rows("SELECT * FROM recipes ORDER BY id"))

    def for_python(self, python: str = PYTHON, after: int = 0) -> list[Recipe]:
        """This Python's recipes (`after`: only those saved after recipe id `after`)."""
        return list(self._rows("SELECT * FROM recipes WHERE python = ? AND id > ? ORDER BY id", (python, after)))

    def save(self, recipe: Recipe) -> int:
        fields = [n for n in Recipe.__slots__ if n not in ("id", "hits", "last_hit")]
        values = tuple(getattr(recipe, n) for n in fields)
        self.db.execute(f"INSERT OR IGNORE INTO recipes ({', '.join(fields)}) "
                        f"VALUES ({', '.join('?' for _ in fields)})", values)
        row = self.db.execute("SELECT id FROM recipes WHERE code_hash = ? AND python = ? AND qualname = ? AND "
                              "site = ?", (recipe.code_hash, recipe.python, recipe.qualname, recipe.site)).fetchone()
        recipe.id = row[0]
        return recipe.id

    def add_hits(self, hits: dict[int, int]) -> None:
        now = time.time()
        with self.db:
            for rid, count in hits.items():
                self.db.execute("UPDATE recipes SET hits = hits + ?, last_hit = ? WHERE id = ?", (count, now, rid))

    def shapes(self) -> dict[str, tuple[str, str]]:
        """The crash-shape registry (fingerprint.py): shape -> (site template, function it was learned in)."""
        rows = self.db.execute("SELECT shape, template, origin FROM shapes").fetchall()
        return {shape: (template, origin) for shape, template, origin in rows}

    def save_shape(self, shape: str, template: str, origin: str) -> None:
        self.db.execute("INSERT OR IGNORE INTO shapes (shape, template, origin, created) VALUES (?, ?, ?, ?)",
                        (shape, template, origin, time.time()))

    def delete(self, ids: list[int]) -> None:
        with self.db:
            self.db.executemany("DELETE FROM recipes WHERE id = ?", [(i,) for i in ids])
