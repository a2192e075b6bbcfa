"""Servers kept up by heal, under load, against the same servers without pyward.

    python bench/serve.py [--work real|hello] [--requests N] [--rounds N] [--only NAME] [--same] [--otel] [--json]
    python bench/serve.py --count [--work real|hello] [--only NAME] [--crash-every N] [--json]

`--work real` (the default): the usual request does what a web handler does,
a SQLite query (a few dozen rows of an on-disk database, one connection per
thread), those rows as JSON and a page rendered from them with
string.Template; `--work hello`: it answers a small JSON object from a dict,
which shows the boundary's own cost at its largest.

Three servers, each run with and without pyward, `--rounds` times (default 11):

* http.server (ThreadingHTTPServer, HTTP/1.1 keep-alive): `pyward run --heal
  server.py` (all engines, as a user would type it) against `python server.py`;
* Flask under gunicorn (2 sync workers): the app wrapped in
  `pyward.integrations.wsgi.Middleware` against the bare app;
* Starlette under uvicorn (one process): the app wrapped in
  `pyward.integrations.asgi.Middleware` against the bare app.

A load generator (bench/_load.py, its own process) sends `--requests`
(default 20,000) GET requests over 8 connections; one request in 100 goes to
a crash path (a chain subscript through None, a division by zero, a missing
key, in turn).  Under pyward each path crashes once, is healed and replayed,
and is guarded from then on; without pyward http.server drops the connection
on each crash (the client reconnects), Flask and Starlette answer 500.  A fresh patch
store every round.

Throughput is complete responses a second (any status); a request lost on a
connection the server closed counts as an error, not as served.

Both servers of a pair are up at once and loaded in alternating batches of
100 requests, so a slow moment of the machine hits both alike (the spread of
an A/A run's ratios: 1.5% against 2.3% with batches of 500); which server
goes first changes from batch to batch (the second finds the machine
warmer). On a machine with two CPUs or more the servers run on the last CPU
and the load generator on the first (each pinned), so that they do not trade
places. A round gives one paired ratio (requests a second under pyward /
without); the figure judged is the median of the rounds' ratios. Also
printed: the best round of each side, and the servers' CPU time per request
(Linux), which a busy moment of the machine moves much less than throughput.
Targets: no connection error under pyward, and throughput at
least 0.97x the same server without pyward. `--same` runs the plain server
on both sides: the spread of its ratios is the machine's noise floor.

`--otel`: what OpenTelemetry export costs a served program. http.server under
`pyward run --heal --otel`, with a collector on loopback (an OTLP/HTTP
receiver in this process, bench/record.py's), against the same `pyward run
--heal` without `--otel`; every heal is a notice the exporter sends. Target:
within 1.02x (throughput at least 0.98x).

`--count`: instructions instead of time, which a loaded machine does not
move.  Each server runs alone under valgrind (cachegrind, its children
included: gunicorn's workers, pyward's recorder), is loaded with 500 and
then 2,500 requests (in two runs, the load generator outside valgrind), and
the figure is the difference over the 2,000 requests: a request's
instructions, start-up and the heals of the first requests left out.
PYTHONHASHSEED is fixed on both sides (dictionaries' probe lengths move a
request's count by up to 0.3% from process to process); what remains is the
C allocator's state (about 1% from one run to another on real handlers), so
a count decides between two versions of the middleware to within that, and
the in-process cost of the middleware is best counted on its own.  Plain
python answers each crash path with a 500 and, for Starlette and
http.server, a closed connection on which the client's next request is
lost: it does less work per request than pyward, which heals and answers
them all (`--crash-every 1000000000`: no crash but the first request).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

from _common import print_results, python_version, pyward_cmd

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))

HELLO = '''
USERS = {"ann": {"name": "Ann", "profile": {"bio": "hi"}}, "bob": {"name": "Bob", "profile": None}}
SETTINGS = {"theme": "dark"}

def user_page(name):
    u = USERS.get(name)
    return {"name": u["name"], "bio": u["profile"]["bio"]}
'''

REAL = '''
import json, sqlite3, string, threading
USERS = {"ann": {"name": "Ann", "profile": {"bio": "hi"}}, "bob": {"name": "Bob", "profile": None}}
SETTINGS = {"theme": "dark"}
_local = threading.local()
PAGE = string.Template("<html><head><title>$name</title></head><body><h1>$name</h1><p>$bio</p>"
                       "<table><tr><th>id</th><th>item</th><th>qty</th><th>price</th></tr>$rows</table>"
                       "<p>$count orders, total $total</p></body></html>")
ROW = string.Template("<tr><td>$id</td><td>$item</td><td>$qty</td><td>$price</td></tr>")

def orders(user):
    db = getattr(_local, "db", None)
    if db is None:  # one connection per thread, as a threaded server's handlers would keep
        db = _local.db = sqlite3.connect("orders.db", check_same_thread=False)
    rows = db.execute("SELECT id, item, qty, price FROM orders WHERE user = ? ORDER BY id LIMIT 40", (user,))
    return [{"id": i, "item": item, "qty": qty, "price": price} for i, item, qty, price in rows]

def user_page(name):
    u = USERS.get(name)
    rows = orders(name)
    html = PAGE.substitute(name=u["name"], bio=u["profile"]["bio"], rows="".join(ROW.substitute(r) for r in rows),
                           count=len(rows), total=f"{sum(r['qty'] * r['price'] for r in rows):.2f}")
    return {"name": u["name"], "orders": rows, "html": html}
'''


def make_db(path: str) -> None:
    """The database the real handlers read: 400 orders of two users."""
    import sqlite3

    db = sqlite3.connect(path)
    db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, user TEXT, item TEXT, qty INTEGER, price REAL)")
    db.execute("CREATE INDEX orders_user ON orders (user, id)")
    db.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?)",
                   [(i, ("ann", "bob")[i % 2], f"item {i} <b>", i % 7 + 1, round(i * 1.25, 2)) for i in range(400)])
    db.commit()
    db.close()

HTTP_SERVER = '''
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # http.server writes the head and the body in two sends: without TCP_NODELAY, keep-alive meets Nagle and
    # delayed ACKs (~40 ms a response).  pyward's response buffer sends once, so it would win by that alone.
    disable_nagle_algorithm = True

    def do_GET(self):
        parts = self.path.strip("/").split("/")
        if parts[0] == "user":
            out = user_page(parts[1])
        elif parts[0] == "ratio":
            out = {"ratio": int(parts[1]) / int(parts[2])}
        else:
            out = {"value": SETTINGS[parts[1]]}
        body = json.dumps(out).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

    def log_error(self, *args):
        pass

class Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address):  # quiet: one traceback per crash would be the bench
        pass

Server(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
'''

FLASK_APP = '''
import logging, os
from flask import Flask, jsonify

app = Flask(__name__)
app.logger.disabled = True
logging.getLogger("werkzeug").disabled = True

@app.get("/user/<name>")
def user(name):
    return jsonify(user_page(name))

@app.get("/ratio/<a>/<b>")
def ratio(a, b):
    return jsonify(ratio=int(a) / int(b))

@app.get("/setting/<key>")
def setting(key):
    return jsonify(value=SETTINGS[key])

if os.environ.get("GUARDED"):
    from pyward.integrations.wsgi import Middleware
    app.wsgi_app = Middleware(app.wsgi_app)
'''

STARLETTE_APP = '''
import os
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

async def user(request):
    return JSONResponse(user_page(request.path_params["name"]))

async def ratio(request):
    return JSONResponse({"ratio": int(request.path_params["a"]) / int(request.path_params["b"])})

async def setting(request):
    return JSONResponse({"value": SETTINGS[request.path_params["key"]]})

app = Starlette(routes=[Route("/user/{name}", user), Route("/ratio/{a}/{b}", ratio), Route("/setting/{key}", setting)])
if os.environ.get("GUARDED"):
    from pyward.integrations.asgi import Middleware
    app = Middleware(app)
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpus() -> tuple[set[int] | None, set[int] | None]:
    """(the servers' CPUs, the load generator's): the last and the first CPU, or None (not pinned)."""
    try:
        mine = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return None, None
    return ({mine[-1]}, {mine[0]}) if len(mine) > 1 else (None, None)


def pinned(cpu: set[int] | None) -> Any:
    return None if cpu is None else (lambda: os.sched_setaffinity(0, cpu))


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process and its children (gunicorn's workers); None without /proc."""
    try:
        total = 0.0
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:  # gone meanwhile
                continue
            if int(entry) == pid or int(fields[1]) == pid:  # fields[1]: the parent's pid
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total
    except (OSError, ValueError, IndexError):
        return None


def start(argv: list[str], cwd: str, env: dict[str, str]) -> tuple[subprocess.Popen, int]:
    port = free_port()
    argv = [a.replace("PORT", str(port)) for a in argv]
    server = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              preexec_fn=pinned(cpus()[0]))
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server, port
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"server did not start: {' '.join(argv)}\n{server.stderr.read()}") from None
            time.sleep(0.05)


def stop(server: subprocess.Popen) -> None:
    server.send_signal(signal.SIGTERM if "gunicorn" in server.args or "uvicorn" in server.args else signal.SIGINT)
    try:
        server.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
        server.communicate()


def load_both(sides: dict[str, tuple[list[str], dict[str, str]]], cwd: str, env: dict[str, str],
              requests: int, crash_every: int = 100, keep: str | None = None) -> dict[str, dict]:
    """Both servers up at once, loaded in alternating batches (bench/_load.py); each side's
    statistics gain `cpu`: its server's CPU seconds during the load (None without /proc).
    `keep`: where to copy the round's pyward files (journal, reports, patch store) when the
    guarded server answered anything but 200, so that the answer can be read afterwards."""
    shutil.rmtree(os.path.join(cwd, ".pyward"), ignore_errors=True)  # a fresh patch store each round
    servers = {}
    try:
        for side, (argv, extra) in sides.items():
            servers[side] = start(argv, cwd, {**env, **extra})
        time.sleep(0.5)  # gunicorn: let the second worker boot
        ports = ",".join(str(port) for _, port in servers.values())
        before = {side: cpu_seconds(server.pid) for side, (server, _) in servers.items()}
        load = subprocess.run([sys.executable, os.path.join(HERE, "_load.py"), ports, str(requests), "8",
                               str(crash_every), "100"],
                              capture_output=True, text=True, check=True, preexec_fn=pinned(cpus()[1]))
        stats = dict(zip(servers, map(json.loads, load.stdout.splitlines())))
        for side, (server, _) in servers.items():
            after, first = cpu_seconds(server.pid), before[side]
            stats[side]["cpu"] = None if after is None or first is None else after - first
    finally:
        for server, _ in servers.values():
            stop(server)
    odd = {status: n for status, n in stats["pyward"]["statuses"].items() if status != "200"}
    if keep is not None and odd and os.path.isdir(os.path.join(cwd, ".pyward")):
        shutil.copytree(os.path.join(cwd, ".pyward"), keep, dirs_exist_ok=True)
        print(f"\n[serve.py] the guarded server answered {odd}: its journal and reports are kept in {keep}",
              file=sys.stderr)
    return stats


COUNT_LOADS = (500, 2500)  # requests of the two runs whose difference --count divides


def counted_run(argv: list[str], cwd: str, env: dict[str, str], requests: int, crash_every: int) -> int:
    """Instructions of one server process tree (valgrind) that served `requests` requests."""
    shutil.rmtree(os.path.join(cwd, ".pyward"), ignore_errors=True)
    port = free_port()
    argv = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
            "--trace-children=yes", *(a.replace("PORT", str(port)) for a in argv)]
    server = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300  # a server starts ~50 times slower under valgrind
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                why = server.stderr.read()
                raise SystemExit(f"server did not start under valgrind: {' '.join(argv)}\n{why}") from None
            time.sleep(0.2)
    time.sleep(2)  # gunicorn: let the second worker boot
    subprocess.run([sys.executable, os.path.join(HERE, "_load.py"), str(port), str(requests), "8", str(crash_every),
                    "100"], capture_output=True, text=True, check=True)
    server.send_signal(signal.SIGTERM if "gunicorn" in argv or "uvicorn" in argv else signal.SIGINT)
    _, err = server.communicate(timeout=600)
    counts = [int(line.rsplit(None, 1)[-1].replace(",", "")) for line in err.splitlines()
              if "I refs:" in line or "I   refs:" in line]
    if not counts:
        raise SystemExit(f"valgrind printed no instruction count for {' '.join(argv)}:\n{err[-2000:]}")
    return sum(counts)


def counted(arms: dict[str, dict[str, tuple[list[str], dict[str, str]]]], cwd: str, env: dict[str, str],
            crash_every: int) -> dict[str, Any]:
    """Each server's instructions per request, without and with pyward (see --count)."""
    env = {**env, "PYTHONHASHSEED": "0"}
    results = {}
    for name, sides in arms.items():
        per = {}
        for side, (argv, extra) in sides.items():
            print(f"\r[serve.py] counting {name}, {side}{' ' * 20}", end="", file=sys.stderr, flush=True)
            low, high = (counted_run(argv, cwd, {**env, **extra}, n, crash_every) for n in COUNT_LOADS)
            per[side] = (high - low) / (COUNT_LOADS[1] - COUNT_LOADS[0])
        results[name] = {"python": per["python"], "pyward": per["pyward"], "added": per["pyward"] - per["python"],
                         "ratio": per["pyward"] / per["python"], "target": "(instructions; for information)",
                         "met": True}
    print("\r" + " " * 60 + "\r", end="", file=sys.stderr, flush=True)
    return results


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", choices=("real", "hello"), default="real",
                        help="what the usual request does: a query, JSON and a template (real), or a dict (hello)")
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--crash-every", type=int, default=100,
                        help="one request in N goes to a crash path (a large N: none)")
    parser.add_argument("--only", default="", help="run only the servers whose name contains this (e.g. uvicorn)")
    parser.add_argument("--same", action="store_true",
                        help="the noise floor: both sides without pyward "
                             "(the 'pyward' column is a second plain server)")
    parser.add_argument("--otel", action="store_true",
                        help="http.server under pyward run --heal, with --otel and a collector on loopback against "
                             "without --otel (target: within 1.02x)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--count", action="store_true",
                        help="count a request's instructions with valgrind instead of timing (slow, repeatable)")
    args = parser.parse_args()
    collector = None
    work = tempfile.mkdtemp(prefix="pyward-bench-serve-")
    try:
        handlers = REAL if args.work == "real" else HELLO
        make_db(os.path.join(work, "orders.db"))
        for name, source in (("server.py", HTTP_SERVER), ("app.py", FLASK_APP), ("asgi_app.py", STARLETTE_APP)):
            with open(os.path.join(work, name), "w") as f:
                f.write(textwrap.dedent(handlers) + textwrap.dedent(source))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYWARD", "OTEL_"))}
        gunicorn = [sys.executable, "-m", "gunicorn", "-w", "2", "-b", "127.0.0.1:PORT", "app:app"]
        uvicorn = [sys.executable, "-m", "uvicorn", "--log-level", "critical", "--port", "PORT", "asgi_app:app"]
        arms = {
            "http.server": {"python": ([sys.executable, "server.py", "PORT"], {}),
                            "pyward": ([*pyward_cmd(), "run", "--heal", "-q", "server.py", "PORT"], {})},
            "Flask + gunicorn": {"python": (gunicorn, {}), "pyward": (gunicorn, {"GUARDED": "1"})},
            "Starlette + uvicorn": {"python": (uvicorn, {}), "pyward": (uvicorn, {"GUARDED": "1"})},
        }
        if args.otel:
            from record import Collector

            collector = Collector()
            env["OTEL_EXPORTER_OTLP_ENDPOINT"] = f"http://127.0.0.1:{collector.server_address[1]}"
            guarded = arms["http.server"]["pyward"][0]
            with_otel = [*guarded[:-2], "--otel", *guarded[-2:]]
            arms = {"http.server --otel": {"python": (guarded, {}), "pyward": (with_otel, {})}}
        arms = {name: sides for name, sides in arms.items() if args.only.lower() in name.lower()}
        if args.same:
            arms = {name: {"python": sides["python"], "pyward": sides["python"]} for name, sides in arms.items()}
        if not arms:
            parser.error(f"--only {args.only!r} matches none of the servers")
        if args.count:
            results = counted(arms, work, env, args.crash_every)
            if args.json:
                print(json.dumps({"bench": "serve-count", "work": args.work, "python": python_version(),
                                  "results": results}))
            else:
                print_results(f"Servers, instructions per request ({args.work} handlers, valgrind), Python "
                              f"{python_version()}: the difference of {COUNT_LOADS[1]} and {COUNT_LOADS[0]} "
                              f"requests, 1 in {args.crash_every} to a crash path", results)
            return
        runs: dict[str, dict[str, list[dict]]] = {name: {"python": [], "pyward": []} for name in arms}
        for number in range(args.rounds):
            for name, sides in arms.items():
                print(f"\r[serve.py] round {number + 1}/{args.rounds}: {name:<20}", end="", file=sys.stderr, flush=True)
                keep = None if args.same else os.path.join(
                    HERE, "results", f"serve-{time.strftime('%Y%m%d-%H%M%S')}-round{number + 1}-"
                    + "".join(c if c.isalnum() else "-" for c in name))
                for side, stats in load_both(sides, work, env, args.requests, args.crash_every, keep).items():
                    runs[name][side].append(stats)
        print("\r" + " " * 60 + "\r", end="", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if collector is not None:
            collector.shutdown()
    floor = 1 / 1.02 if args.otel else 0.97
    results = {name: summary(sides, args.requests, args.rounds, floor) for name, sides in runs.items()}
    if collector is not None:
        print(f"  the collector received {collector.records} OTLP requests", file=sys.stderr)
    if args.json:
        print(json.dumps({"bench": "serve", "work": args.work, "python": python_version(), "results": results}))
        return
    print_results(f"Servers under load ({args.work} handlers), Python {python_version()}: {args.requests} requests x "
                  f"{args.rounds} rounds, "
                  "1% to crash paths; req/s of the median round (higher is better), ratio: median of the rounds' "
                  "paired ratios", results)
    for name, r in results.items():
        cpu = "n/a" if r["cpu_us_python"] is None else \
            f"{r['cpu_us_python']:.1f} vs {r['cpu_us_pyward']:.1f} us ({r['cpu_ratio']:.3f}x)"
        print(f"  {name}: rounds' ratios {' '.join(f'{x:.3f}' for x in r['ratios'])}; best rounds "
              f"{r['best_python']:.0f} vs {r['best_pyward']:.0f} req/s ({r['best_ratio']:.3f}x); server CPU per "
              f"request {cpu}; connection errors python {r['errors_python']}, pyward {r['errors_pyward']}; "
              f"statuses (all rounds) python {r['statuses_python']}, pyward {r['statuses_pyward']}; "
              "X-Pyward-Healed responses "
              f"{r['healed_header']}")


def summary(sides: dict[str, list[dict]], requests: int, rounds: int, floor: float = 0.97) -> dict[str, Any]:
    """One server's row: the median of the rounds' paired ratios (judged), and what else a reader needs."""
    # responses a second: a request lost on a connection the server closed (plain Starlette and
    # http.server after a crash) was not served, and is not counted as if it had been
    rates = {side: [sum(s["statuses"].values()) / s["seconds"] for s in samples] for side, samples in sides.items()}
    ratios = [g / p for p, g in zip(rates["python"], rates["pyward"])]
    middle = sorted(range(len(ratios)), key=ratios.__getitem__)[len(ratios) // 2]  # the median round
    ratio = statistics.median(ratios)
    errors = sum(s["errors"] for s in sides["pyward"])
    cpu = {side: [s["cpu"] for s in samples] for side, samples in sides.items()}
    cpu_us = {side: None if None in c else statistics.median(c) / requests * 1e6 for side, c in cpu.items()}
    best = {side: max(r) for side, r in rates.items()}
    return {
        "python": rates["python"][middle], "pyward": rates["pyward"][middle],
        "added": rates["pyward"][middle] - rates["python"][middle], "ratio": ratio, "ratios": ratios,
        "target": f">= {floor:.2f}x, 0 connection errors", "met": ratio >= floor and errors == 0,
        "best_python": best["python"], "best_pyward": best["pyward"], "best_ratio": best["pyward"] / best["python"],
        "cpu_us_python": cpu_us["python"], "cpu_us_pyward": cpu_us["pyward"],
        "cpu_ratio": None if cpu_us["python"] is None else cpu_us["pyward"] / cpu_us["python"],
        "errors_python": sum(s["errors"] for s in sides["python"]), "errors_pyward": errors,
        "statuses_python": _total(s["statuses"] for s in sides["python"]),
        "statuses_pyward": _total(s["statuses"] for s in sides["pyward"]),
        "healed_header": sides["pyward"][-1]["healed_header"], "requests": requests, "rounds": rounds}


def _total(counts: Any) -> dict[str, int]:
    """Status counts summed over the rounds."""
    total: dict[str, int] = {}
    for statuses in counts:
        for status, n in statuses.items():
            total[status] = total.get(status, 0) + n
    return total


if __name__ == "__main__":
    main()
