"""sqlite3: a file database in DIR (argument), a schema, executemany, a
transaction rolled back, a user function and aggregate, a backup into
:memory:, row factories and an iterdump."""
import os
import sqlite3
import sys

path = os.path.join(sys.argv[1], "shop.db")
con = sqlite3.connect(path)
con.executescript("""
    CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price REAL, qty INTEGER);
    CREATE INDEX item_name ON item(name);
""")
rows = [(f"item{i:02d}", round(1.5 * i, 2), i % 7) for i in range(30)]
with con:
    con.executemany("INSERT INTO item (name, price, qty) VALUES (?, ?, ?)", rows)
try:
    with con:
        con.execute("INSERT INTO item (name, price, qty) VALUES ('x', 1, 1)")
        con.execute("INSERT INTO item (name, price, qty) VALUES (NULL, 1, 1)")
except sqlite3.IntegrityError as exc:
    print("rolled back:", exc)
print("count:", con.execute("SELECT count(*) FROM item").fetchone()[0])

con.create_function("shout", 1, lambda s: s.upper() + "!")


class Spread:
    def __init__(self):
        self.lo, self.hi = None, None

    def step(self, v):
        self.lo = v if self.lo is None else min(self.lo, v)
        self.hi = v if self.hi is None else max(self.hi, v)

    def finalize(self):
        return self.hi - self.lo


con.create_aggregate("spread", 1, Spread)
print("shout:", con.execute("SELECT shout(name) FROM item WHERE id = 3").fetchone()[0])
print("spread:", con.execute("SELECT spread(price) FROM item").fetchone()[0])
con.row_factory = sqlite3.Row
for row in con.execute("SELECT qty, sum(price) AS total FROM item GROUP BY qty ORDER BY qty"):
    print("qty", row["qty"], "total", round(row["total"], 2))
mem = sqlite3.connect(":memory:")
con.backup(mem)
print("backup rows:", mem.execute("SELECT count(*) FROM item").fetchone()[0])
print("dump lines:", sum(1 for _ in mem.iterdump()))
mem.close()
con.close()
print("db size > 0:", os.path.getsize(path) > 0)
