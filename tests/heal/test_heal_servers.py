"""Heal for servers, end to end: real servers on loopback, real
clients.  A hung connection fails the test through the client's timeout,
a reset one through the exception it raises."""
from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from helpers import clean_env

HEADER = "X-Pyward-Healed"

# The handlers every server below runs, each written the framework's way:
# five guard kinds on GET, a POST that writes before it crashes, a PUT that
# reads its body and then crashes, and a bug pyward cannot heal.
DATA = '''
import json, os
USERS = {"ann": {"name": "Ann", "profile": {"bio": "hi"}}, "bob": {"name": "Bob", "profile": None}}
NAMES = {"ann": "Ann"}
SETTINGS = {"theme": "dark"}
'''


class Server:
    """A server process, its address, and what it printed."""

    def __init__(self, argv: list[str], cwd, stop: int = signal.SIGINT, env=None) -> None:
        self.port = free_port()
        self.cwd, self.stop_signal = cwd, stop
        self.err_path = cwd / f"stderr-{self.port}.txt"
        argv = [a.replace("PORT", str(self.port)) for a in argv]
        with open(self.err_path, "w") as err:
            self.proc = subprocess.Popen(argv, cwd=cwd, env=env or clean_env(), stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"server did not start: {self.stderr()}") from None
                time.sleep(0.05)

    def request(self, method: str, path: str, body: bytes | None = None, conn=None, headers=None):
        """(status, headers, body); `conn`: an open keep-alive connection to reuse."""
        own = conn is None
        conn = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=15)
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        result = response.status, dict(response.getheaders()), data
        if own:
            conn.close()
        return result

    def json(self, method: str, path: str, body: bytes | None = None):
        status, headers, data = self.request(method, path, body)
        return status, headers.get(HEADER) or headers.get(HEADER.lower()), json.loads(data) if data else None

    def stderr(self) -> str:
        return self.err_path.read_text()

    def close(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(self.stop_signal)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.stderr()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pyward_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("[pyward]")]


def write(path, text: str) -> None:
    path.write_text(textwrap.dedent(text))


def check_common(server: Server) -> None:
    """The behaviour every integration must have, asserted through the handlers of DATA."""
    assert server.json("GET", "/user/ann") == (200, None, {"name": "Ann", "bio": "hi"})
    # healed and replayed: the real response, the header on that response only
    assert server.json("GET", "/user/bob") == (200, 'guard=chain_subscript_guard; target=u["profile"]["bio"]',
                                               {"name": "Bob", "bio": None})
    assert server.json("GET", "/user/bob") == (200, None, {"name": "Bob", "bio": None})
    assert server.json("GET", "/upper/zed") == (200, "guard=null_guard; target=NAMES.get(name)", {"upper": None})
    assert server.json("GET", "/setting/font") == (200, "guard=key_guard; target=SETTINGS", {"value": None})
    assert server.json("GET", "/ratio/1/0") == (200, "guard=division_guard; target=int(b)", {"ratio": None})
    assert server.json("GET", "/count/x") == (200, "guard=type_coercion_guard; target=n", {"count": None})
    assert server.json("GET", "/ratio/6/3") == (200, None, {"ratio": 2.0})
    # a POST that wrote before it crashed: healed, not replayed, an honest 503; the write happened once
    status, headers, data = server.request("POST", "/post", b'{"x": 1}')
    assert status == 503, data
    assert (headers.get(HEADER) or headers.get(HEADER.lower())) == "guard=key_guard; target=data"
    assert (headers.get("Retry-After") or headers.get("retry-after")) == "1"
    answer = json.loads(data)
    assert answer["healed"] == {"guard": "key_guard", "target": "data"}
    assert "POST request was not replayed because POST is not idempotent" in answer["detail"]
    assert (server.cwd / "posts.log").read_text() == '{"x": 1}\n'
    # the next POST uses the patch
    assert server.json("POST", "/post", b'{"x": 2}') == (200, None, {"got": None})
    assert (server.cwd / "posts.log").read_text() == '{"x": 1}\n{"x": 2}\n'
    # PUT is marked idempotent: replayed, its body read again from what was kept (not from the socket)
    assert server.json("PUT", "/first", b'{"items": []}') == (200, 'guard=index_guard; target=data["items"]',
                                                              {"first": None})
    assert server.json("PUT", "/first", b'{"items": [7]}') == (200, None, {"first": 7})
    # not healable: the server's own 500, journaled; the server keeps serving
    status, _, _ = server.request("GET", "/boom")
    assert status == 500
    assert server.json("GET", "/user/ann") == (200, None, {"name": "Ann", "bio": "hi"})


def check_journal(text: str, boundary: str, heals: int = 7) -> None:
    """`heals`: the seven of check_common, plus what the test did besides."""
    lines = pyward_lines(text)
    healed = [line for line in lines if line.startswith("[pyward][warning] healed")]
    assert len(healed) == heals, lines
    assert all(f"(boundary: {boundary} request)" in line for line in healed), healed
    assert "[pyward] GET /user/bob: replayed with the patched handler" in lines
    assert "[pyward] POST /post: 503 (not replayed: POST is not idempotent (heal.idempotent marks methods " \
           "that are))" in lines
    assert "[pyward] PUT /first: replayed with the patched handler" in lines
    assert any(line.startswith("[pyward][error] unhealed RuntimeError: kaboom") for line in lines), lines


HTTP_SERVER = DATA + '''
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, out):
        body = json.dumps(out).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        parts = self.path.strip("/").split("/")
        if parts[0] == "user":
            u = USERS.get(parts[1])
            self.reply({"name": u["name"], "bio": u["profile"]["bio"]})
        elif parts[0] == "upper":
            name = parts[1]
            self.reply({"upper": NAMES.get(name).upper()})
        elif parts[0] == "setting":
            self.reply({"value": SETTINGS[parts[1]]})
        elif parts[0] == "ratio":
            a, b = parts[1:]
            self.reply({"ratio": int(a) / int(b)})
        elif parts[0] == "count":
            n = parts[1]
            self.reply({"count": int(n)})
        elif parts[0] == "big":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.write(b"x" * 50)
            self.wfile.flush()
            self.reply({"never": USERS.get("zed")["name"]})
        else:
            raise RuntimeError("kaboom")

    def body(self):
        return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

    def do_POST(self):
        data = self.body()
        with open("posts.log", "a") as f:
            f.write(json.dumps(data) + "\\n")
        self.reply({"got": data["count"]})

    def do_PUT(self):
        data = self.body()
        self.reply({"first": data["items"][0]})

    def log_message(self, *args):
        pass

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
'''


def test_http_server_heals_replays_and_answers_honestly(tmp_path):
    write(tmp_path / "server.py", HTTP_SERVER)
    pyward_run = [sys.executable, "-m", "pyward", "run", "--heal", "--idempotent", "PUT", "server.py", "PORT"]
    server = Server(pyward_run, tmp_path, env=clean_env())
    try:
        check_common(server)
        # keep-alive: a healed and replayed request leaves the connection clean for the next ones
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=15)
        status, headers, data = server.request("GET", "/upper/nobody", conn=conn)
        assert (status, json.loads(data)) == (200, {"upper": None})
        assert server.request("GET", "/user/ann", conn=conn)[2] == b'{"name": "Ann", "bio": "hi"}'
        status, _, data = server.request("PUT", "/first", b'{"items": [1]}', conn=conn)
        assert (status, data) == (200, b'{"first": 1}')
        conn.close()
        # part of the response already sent (the handler flushed): no 503 can follow; the connection is
        # closed after what was sent, the crash is healed for later requests
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=15)
        conn.request("GET", "/big")
        response = conn.getresponse()
        assert response.status == 200
        with pytest.raises(http.client.IncompleteRead):
            response.read()
        conn.close()
    finally:
        err = server.close()
    check_journal(err, "http.server", heals=8)
    assert "Exception occurred during processing of request" in err  # http.server's own report of the 500
    assert "[pyward] GET /big: connection closed after what was sent (not replayed: part of the response was " \
           "already sent)" in pyward_lines(err)

    # the next run starts healed
    server = Server(pyward_run, tmp_path)
    try:
        assert server.json("GET", "/user/bob") == (200, None, {"name": "Bob", "bio": None})
    finally:
        err = server.close()
    assert '[pyward] already healed: Handler.do_GET (chain_subscript_guard on u["profile"]["bio"])' \
        in pyward_lines(err)


WSGI_APP = DATA + '''
import sys
from pyward.integrations.wsgi import Middleware

def handle(method, path, environ):
    parts = path.strip("/").split("/")
    if method == "POST":
        data = json.loads(environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"])))
        with open("posts.log", "a") as f:
            f.write(json.dumps(data) + "\\n")
        return {"got": data["count"]}
    if method == "PUT":
        data = json.loads(environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"])))
        return {"first": data["items"][0]}
    if parts[0] == "user":
        u = USERS.get(parts[1])
        return {"name": u["name"], "bio": u["profile"]["bio"]}
    if parts[0] == "upper":
        name = parts[1]
        return {"upper": NAMES.get(name).upper()}
    if parts[0] == "setting":
        return {"value": SETTINGS[parts[1]]}
    if parts[0] == "ratio":
        a, b = parts[1:]
        return {"ratio": int(a) / int(b)}
    if parts[0] == "count":
        n = parts[1]
        return {"count": int(n)}
    raise RuntimeError("kaboom")

def application(environ, start_response):
    out = handle(environ["REQUEST_METHOD"], environ["PATH_INFO"], environ)
    body = json.dumps(out).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]

app = Middleware(application)

if __name__ == "__main__":
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass
    make_server("127.0.0.1", int(sys.argv[1]), app, handler_class=Quiet).serve_forever()
'''

def test_a_wsgi_middleware_under_wsgiref_under_pyward_heal_answers_and_stops_on_sigint(tmp_path):
    """One boundary a request: wsgiref's handler serves the WSGI application without
    handle_one_request, so http.server's boundary stays out and the middleware answers.
    Ctrl-C right after a response stops the server every time.  "After" is once the
    server closed the connection: wsgiref's handler swallows a KeyboardInterrupt raised
    while it still runs (a bare except in BaseHandler.run), under plain python too."""
    write(tmp_path / "app.py", WSGI_APP)
    for attempt in range(10):
        shutil.rmtree(tmp_path / ".pyward", ignore_errors=True)  # each run heals afresh
        server = Server([sys.executable, "-m", "pyward", "run", "--heal", "app.py", "PORT"], tmp_path)
        try:
            assert server.json("GET", "/user/ann") == (200, None, {"name": "Ann", "bio": "hi"})
            assert server.json("GET", "/user/bob") == (
                200, 'guard=chain_subscript_guard; target=u["profile"]["bio"]', {"name": "Bob", "bio": None})
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=15)
            for path, value in (("/setting/theme", "dark"), ("/count/7", 7), ("/setting/theme", "dark")):
                status, headers, data = server.request("GET", path, conn=conn)
                assert status == 200 and HEADER not in headers and json.loads(data) in ({"value": value},
                                                                                       {"count": value})
            conn.close()
            with socket.create_connection(("127.0.0.1", server.port), timeout=15) as client:
                client.sendall(b"GET /user/ann HTTP/1.0\r\n\r\n")
                response = b""
                while chunk := client.recv(65536):  # to the end: the server closed the connection
                    response += chunk
            assert response.startswith(b"HTTP/1.0 200 OK") and response.endswith(b'{"name": "Ann", "bio": "hi"}')
            server.proc.send_signal(signal.SIGINT)
            try:
                status = server.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                raise AssertionError(f"run {attempt + 1}: the server did not stop on SIGINT") from None
            assert status in (-signal.SIGINT, 130), (attempt, status, server.stderr())
        finally:
            err = server.close()
        assert len([line for line in pyward_lines(err) if "healed KeyError" in line or "healed TypeError" in line]) \
            == 1, err


CONFIG = """
[tool.pyward.heal]
idempotent = ["PUT"]
"""


def test_wsgiref_under_plain_python_reads_the_configuration(tmp_path):
    """No `pyward run`: the middleware starts the heal engine itself, from pyproject.toml."""
    write(tmp_path / "app.py", WSGI_APP)
    write(tmp_path / "pyproject.toml", CONFIG)
    server = Server([sys.executable, "app.py", "PORT"], tmp_path)
    try:
        check_common(server)
    finally:
        err = server.close()
    check_journal(err, "wsgi")
    assert os.path.exists(tmp_path / ".pyward" / "heal.db")


FLASK_APP = DATA + '''
from flask import Flask, request, jsonify
from pyward.integrations.wsgi import Middleware

app = Flask(__name__)

@app.get("/user/<name>")
def user(name):
    u = USERS.get(name)
    return jsonify(name=u["name"], bio=u["profile"]["bio"], pid=os.getpid())

@app.get("/upper/<name>")
def upper(name):
    return jsonify(upper=NAMES.get(name).upper())

@app.get("/setting/<key>")
def setting(key):
    return jsonify(value=SETTINGS[key])

@app.get("/ratio/<a>/<b>")
def ratio(a, b):
    return jsonify(ratio=int(a) / int(b))

@app.get("/count/<n>")
def count(n):
    return jsonify(count=int(n))

@app.get("/pid")
def pid():
    return jsonify(pid=os.getpid())

@app.get("/boom")
def boom():
    raise RuntimeError("kaboom")

@app.post("/post")
def post():
    data = json.loads(request.get_data())
    with open("posts.log", "a") as f:
        f.write(json.dumps(data) + "\\n")
    return jsonify(got=data["count"])

@app.put("/first")
def first():
    data = json.loads(request.get_data())
    return jsonify(first=data["items"][0])

app.wsgi_app = Middleware(app.wsgi_app)
'''


def without_pid(result):
    status, header, body = result
    body.pop("pid", None)
    return status, header, body


def test_flask_under_gunicorn_workers_share_patches(tmp_path, monkeypatch):
    write(tmp_path / "app.py", FLASK_APP)
    # every request looks at the store, so whichever worker gets the next request uses the patch (the default,
    # once a second, is checked at the end)
    write(tmp_path / "pyproject.toml", CONFIG + "sync_interval = 0\n")
    server = Server([sys.executable, "-m", "gunicorn", "-w", "2", "-b", "127.0.0.1:PORT", "app:app"], tmp_path,
                    stop=signal.SIGTERM)
    original = server.json
    server.json = lambda *a, **k: without_pid(original(*a, **k))  # type: ignore[method-assign]
    try:
        pids = set()
        deadline = time.monotonic() + 20
        while len(pids) < 2 and time.monotonic() < deadline:  # both workers up and serving
            pids.add(original("GET", "/pid")[2]["pid"])
            time.sleep(0.02)
        assert len(pids) == 2
        check_common(server)
        served = set()
        deadline = time.monotonic() + 20
        while served != pids and time.monotonic() < deadline:
            status, header, body = original("GET", "/user/bob")
            assert (status, header, body["bio"]) == (200, None, None)
            served.add(body["pid"])
            time.sleep(0.02)
        assert served == pids
    finally:
        err = server.close()
    check_journal(err, "wsgi")  # each crash healed once, in one of the workers
    assert len(re.findall(r"already healed: user \(chain_subscript_guard", err)) == 1, pyward_lines(err)


def test_gunicorn_under_pyward_run_records_what_its_workers_heal(tmp_path):
    """`pyward run --heal -m gunicorn`: the workers are forks of the process pyward runs; what they heal is in
    the run's report and its summary, each event with the worker's pid."""
    write(tmp_path / "app.py", FLASK_APP.replace("app.wsgi_app = Middleware(app.wsgi_app)", ""))
    write(tmp_path / "pyproject.toml", CONFIG + "sync_interval = 0\n")  # the other worker reads the patch at once
    report = tmp_path / "r.json"
    server = Server([sys.executable, "-m", "pyward", "run", "--heal", "--report", str(report), "-m", "gunicorn",
                     "-w", "2", "-b", "127.0.0.1:PORT", "app:app"], tmp_path, stop=signal.SIGTERM)
    try:
        workers = set()
        deadline = time.monotonic() + 20
        while len(workers) < 2 and time.monotonic() < deadline:
            workers.add(server.json("GET", "/pid")[2]["pid"])
            time.sleep(0.02)
        assert server.json("GET", "/user/ann")[0] == 200
        status, header, body = server.json("GET", "/user/bob")
        assert (status, header, body["bio"]) == (200, 'guard=chain_subscript_guard; target=u["profile"]["bio"]', None)
        for _ in range(3):  # the guard fires in whichever worker serves it
            assert server.json("GET", "/user/bob")[0] == 200
    finally:
        err = server.close()
    data = json.loads(report.read_text())
    assert data["summary"]["guard_firings"] == 4  # the replay's and three more, counted by the workers
    healed = [e for e in data["events"] if e["engine"] == "heal" and e["kind"] == "healed"]
    assert len(healed) == 1 and healed[0]["pid"] in workers and healed[0]["pid"] != data["run"]["pid"], err
    assert data["summary"]["healed"] == 1
    assert "1 healed" in err.splitlines()[-1]
    assert subprocess.run([sys.executable, "-m", "pyward", "verify", str(report)], capture_output=True).returncode == 0


STARLETTE_APP = DATA + '''
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from pyward.integrations.asgi import Middleware

async def user(request):
    u = USERS.get(request.path_params["name"])
    return JSONResponse({"name": u["name"], "bio": u["profile"]["bio"]})

async def upper(request):
    name = request.path_params["name"]
    return JSONResponse({"upper": NAMES.get(name).upper()})

def setting(request):  # a sync endpoint: Starlette runs it in a thread
    return JSONResponse({"value": SETTINGS[request.path_params["key"]]})

async def ratio(request):
    a, b = request.path_params["a"], request.path_params["b"]
    return JSONResponse({"ratio": int(a) / int(b)})

async def count(request):
    n = request.path_params["n"]
    return JSONResponse({"count": int(n)})

async def boom(request):
    raise RuntimeError("kaboom")

async def post(request):
    data = json.loads(await request.body())
    with open("posts.log", "a") as f:
        f.write(json.dumps(data) + "\\n")
    return JSONResponse({"got": data["count"]})

async def first(request):
    data = json.loads(await request.body())
    return JSONResponse({"first": data["items"][0]})

app = Middleware(Starlette(routes=[
    Route("/user/{name}", user), Route("/upper/{name}", upper), Route("/setting/{key}", setting),
    Route("/ratio/{a}/{b}", ratio), Route("/count/{n}", count), Route("/boom", boom),
    Route("/post", post, methods=["POST"]), Route("/first", first, methods=["PUT"])]))
'''


def test_starlette_under_uvicorn(tmp_path):
    write(tmp_path / "app.py", STARLETTE_APP)
    write(tmp_path / "pyproject.toml", CONFIG)
    server = Server([sys.executable, "-m", "uvicorn", "--log-level", "warning", "--port", "PORT", "app:app"],
                    tmp_path, stop=signal.SIGTERM)
    try:
        check_common(server)
    finally:
        err = server.close()
    check_journal(err, "asgi")
    assert "Exception in ASGI application" in err  # uvicorn's own report of the unhealable crash


def test_an_unchanged_starlette_app_under_pyward_run_uvicorn(tmp_path):
    """`pyward run --heal -m uvicorn app:app`: uvicorn's loaded application goes through the middleware,
    so the program needs no change."""
    app = STARLETTE_APP.replace("app = Middleware(Starlette(", "app = (Starlette(")
    assert "Middleware(" not in app.replace("import Middleware", "")
    write(tmp_path / "app.py", app)
    write(tmp_path / "pyproject.toml", CONFIG)
    server = Server([sys.executable, "-m", "pyward", "run", "--heal", "-m", "uvicorn", "--log-level", "warning",
                     "--port", "PORT", "app:app"], tmp_path)
    try:
        check_common(server)
    finally:
        err = server.close()
    check_journal(err, "asgi")


@pytest.mark.parametrize("wrapped", [True, False], ids=["with the middleware", "unchanged"])
def test_flask_development_server(tmp_path, wrapped):
    """app.run() serves through werkzeug's handler, an http.server handler: the middleware inside it
    answers for the request (it sees Flask's own 500), once; http.server's boundary stays out.  Under
    `pyward run --heal` werkzeug's server gets the application inside the middleware, so an unchanged
    program is healed the same (and a wrapped one once)."""
    app = FLASK_APP if wrapped else FLASK_APP.replace("app.wsgi_app = Middleware(app.wsgi_app)", "")
    assert ("Middleware(app.wsgi_app)" in app) is wrapped
    write(tmp_path / "app.py", app + "\nimport sys\napp.run(port=int(sys.argv[1]))\n")
    server = Server([sys.executable, "-m", "pyward", "run", "--heal", "app.py", "PORT"], tmp_path)
    try:
        assert without_pid(server.json("GET", "/user/ann")) == (200, None, {"name": "Ann", "bio": "hi"})
        assert without_pid(server.json("GET", "/user/bob")) == (
            200, 'guard=chain_subscript_guard; target=u["profile"]["bio"]', {"name": "Bob", "bio": None})
        assert without_pid(server.json("GET", "/user/bob")) == (200, None, {"name": "Bob", "bio": None})
        status, headers, _ = server.request("POST", "/post", b'{"x": 1}')
        assert (status, headers.get(HEADER) or headers.get(HEADER.lower())) == (503, "guard=key_guard; target=data")
        assert (tmp_path / "posts.log").read_text() == '{"x": 1}\n'
        assert server.request("GET", "/boom")[0] == 500  # Flask's own
        assert without_pid(server.json("GET", "/user/ann")) == (200, None, {"name": "Ann", "bio": "hi"})
    finally:
        err = server.close()
    lines = pyward_lines(err)
    assert all("(boundary: wsgi request)" in line for line in lines if line.startswith("[pyward][warning] healed"))
    assert len([line for line in lines if line.startswith("[pyward][warning] healed")]) == 2, lines
    assert len([line for line in lines if line.startswith("[pyward][error] unhealed RuntimeError: kaboom")]) == 1


def test_flask_run_debug_reloads_into_a_child_that_is_guarded_and_healed(tmp_path):
    """`flask run --debug` as Flask users run it: werkzeug's reloader restarts `sys.orig_argv`, which is
    `pyward run ...` itself. In the child the sandbox armed, that `pyward run` runs the program under the
    run that armed it (one run, one report) and the heal engine the sandbox carried heals its requests."""
    write(tmp_path / "app.py", FLASK_APP.replace("app.wsgi_app = Middleware(app.wsgi_app)", ""))
    server = Server([sys.executable, "-m", "pyward", "run", "--heal", "--report", "r.json", "-m", "flask", "--app",
                     "app", "run", "--debug", "--port", "PORT"], tmp_path)
    try:
        assert without_pid(server.json("GET", "/user/ann")) == (200, None, {"name": "Ann", "bio": "hi"})
        if MONITORED:
            assert without_pid(server.json("GET", "/user/bob")) == (
                200, 'guard=chain_subscript_guard; target=u["profile"]["bio"]', {"name": "Bob", "bio": None})
            assert without_pid(server.json("GET", "/user/bob")) == (200, None, {"name": "Bob", "bio": None})
        else:  # werkzeug's debugger answers the crash with its own page: 3.11 has no sys.monitoring to see it
            status, headers, _ = server.request("GET", "/user/bob")
            assert status == 500 and HEADER not in headers
    finally:
        err = server.close()
    lines = pyward_lines(err)
    assert len([line for line in lines if "run end:" in line]) == 1, lines
    assert not any("could not start" in line or "heal does not follow" in line for line in lines), lines
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["summary"]["healed"] == (1 if MONITORED else 0), report["summary"]


def test_gunicorn_workers_pick_up_a_patch_within_the_sync_interval(tmp_path):
    """The default: a worker looks at the store at a request at most once a second."""
    write(tmp_path / "app.py", FLASK_APP)
    server = Server([sys.executable, "-m", "gunicorn", "-w", "2", "-b", "127.0.0.1:PORT", "app:app"], tmp_path,
                    stop=signal.SIGTERM)

    def both(path: str) -> set[int]:
        pids: set[int] = set()
        deadline = time.monotonic() + 20
        while len(pids) < 2 and time.monotonic() < deadline:
            status, header, body = server.json("GET", path)
            assert (status, header) == (200, None)
            pids.add(body["pid"])
            time.sleep(0.02)
        return pids

    try:
        pids = both("/pid")
        assert len(pids) == 2
        status, header, _ = server.json("GET", "/user/bob")
        assert (status, header) == (200, 'guard=chain_subscript_guard; target=u["profile"]["bio"]')
        time.sleep(1.2)
        assert both("/user/bob") == pids  # no header: every worker runs the patched view
    finally:
        err = server.close()
    assert err.count("healed TypeError") == 1, pyward_lines(err)
    assert err.count("already healed: user (chain_subscript_guard") == 1, pyward_lines(err)


def test_body_recorder_replays_what_the_handler_read_then_the_rest():
    import io

    from pyward.integrations.body import BodyRecorder

    body = BodyRecorder(io.BytesIO(b"one\ntwo\nthree\nfour"), limit=64)
    assert body.readline() == b"one\n" and body.read(3) == b"two"
    replay = body.replay()  # what the handler read, then the stream where the handler left it
    assert replay.readline() == b"one\n"
    assert replay.read(2) == b"tw"
    assert replay.read() == b"o\nthree\nfour"
    body = BodyRecorder(io.BytesIO(b"one\ntwo\nthree\nfour"), limit=64)
    assert body.readline() == b"one\n" and body.read(3) == b"two"
    split = BodyRecorder(io.BytesIO(b"one\ntwo\nthree"), limit=64)
    assert split.read(6) == b"one\ntw"
    assert split.replay().readlines() == [b"one\n", b"two\n", b"three"]  # a line across kept bytes and stream
    again = BodyRecorder(body.replay(), limit=64)
    assert list(again) == [b"one\n", b"two\n", b"three\n", b"four"]
    assert again.replay().read() == b"one\ntwo\nthree\nfour"
    small = BodyRecorder(io.BytesIO(b"0123456789"), limit=4)
    assert small.read(5) == b"01234" and small.over  # too big to keep: the request is not replayed


PLAIN_SERVER = DATA + '''
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

class Handler(BaseHTTPRequestHandler):  # HTTP/1.0, one request at a time
    def do_GET(self):
        u = USERS.get(self.path.strip("/"))
        body = json.dumps({"bio": u["profile"]["bio"]}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
'''


def test_plain_http_server(tmp_path):
    write(tmp_path / "server.py", PLAIN_SERVER)
    server = Server([sys.executable, "-m", "pyward", "run", "--heal", "server.py", "PORT"], tmp_path)
    try:
        assert server.json("GET", "/ann") == (200, None, {"bio": "hi"})
        assert server.json("GET", "/zed") == (200, 'guard=chain_subscript_guard; target=u["profile"]["bio"]',
                                              {"bio": None})
        assert server.json("GET", "/bob") == (200, None, {"bio": None})
    finally:
        server.close()


def test_the_middleware_does_nothing_under_pyward_run_without_heal(tmp_path):
    write(tmp_path / "app.py", WSGI_APP)
    server = Server([sys.executable, "-m", "pyward", "run", "app.py", "PORT"], tmp_path)
    try:
        for _ in range(2):
            status, headers, _ = server.request("GET", "/user/bob")
            assert status == 500 and HEADER not in headers  # wsgiref's own 500
    finally:
        err = server.close()
    assert pyward_lines(err).count("[pyward] the server integration does not heal: this run has no --heal") == 1
    assert "] healed" not in err
    assert not os.path.exists(tmp_path / ".pyward" / "heal.db")


# -- frameworks that answer a view's crash with their own 500 (heal/monitor.py) ------------------------------------

MONITORED = sys.version_info >= (3, 12)  # sys.monitoring: the crash behind a framework's own 500 is found

DJANGO_APP = DATA + '''
import sys
import django
from django.conf import settings

settings.configure(DEBUG=False, ROOT_URLCONF=__name__, ALLOWED_HOSTS=["*"], SECRET_KEY="test", MIDDLEWARE=[])
django.setup()
from django.core.wsgi import get_wsgi_application
from django.http import Http404, JsonResponse
from django.urls import path
from pyward.integrations.wsgi import Middleware

def user(request, name):
    u = USERS.get(name)
    return JsonResponse({"name": u["name"], "bio": u["profile"]["bio"]})

def upper(request, name):
    return JsonResponse({"upper": NAMES.get(name).upper()})

def setting(request, key):
    return JsonResponse({"value": SETTINGS[key]})

def ratio(request, a, b):
    return JsonResponse({"ratio": int(a) / int(b)})

def count(request, n):
    return JsonResponse({"count": int(n)})

def boom(request):
    raise RuntimeError("kaboom")

def post(request):
    data = json.loads(request.body)
    with open("posts.log", "a") as f:
        f.write(json.dumps(data) + "\\n")
    return JsonResponse({"got": data["count"]})

def first(request):
    data = json.loads(request.body)
    return JsonResponse({"first": data["items"][0]})

def missing(request):  # Django's own control flow: a 404, not a crash
    raise Http404("no such page")

def hook(pairs):
    return pairs["x"]

def caught(request):  # the KeyError escapes hook into json, comes back here and is caught: never patched
    try:
        return JsonResponse({"x": json.loads('{"y": 1}', object_hook=hook)})
    except KeyError:
        return JsonResponse({"error": "no x"}, status=500)

urlpatterns = [path("user/<name>", user), path("upper/<name>", upper), path("setting/<key>", setting),
               path("ratio/<a>/<b>", ratio), path("count/<n>", count), path("boom", boom), path("post", post),
               path("first", first), path("missing", missing), path("caught", caught)]
app = Middleware(get_wsgi_application())

if __name__ == "__main__":
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass
    make_server("127.0.0.1", int(sys.argv[1]), app, handler_class=Quiet).serve_forever()
'''


def test_django_answers_its_own_500(tmp_path):
    """Django catches a view's exception and answers 500 itself: on 3.12+ sys.monitoring saw the exception
    leave the view, so the crash is healed and replayed like any other; on 3.11 the 500 goes through and
    pyward says once why."""
    write(tmp_path / "app.py", DJANGO_APP)
    write(tmp_path / "pyproject.toml", CONFIG)
    server = Server([sys.executable, "-m", "pyward", "run", "--heal", "app.py", "PORT"], tmp_path)
    try:
        assert server.request("GET", "/missing")[0] == 404
        status, headers, body = server.request("GET", "/caught")
        assert (status, HEADER in headers, json.loads(body)) == (500, False, {"error": "no x"})
        if MONITORED:
            check_common(server)
        else:
            for path in ("/user/bob", "/user/bob", "/upper/zed"):
                status, headers, _ = server.request("GET", path)
                assert status == 500 and HEADER not in headers
    finally:
        err = server.close()
    lines = pyward_lines(err)
    assert not any("sys.monitoring tools registered" in line for line in lines), lines  # pyward's own tool
    if MONITORED:
        check_journal(err, "wsgi")
        assert not any("missing" in line or "caught" in line or "hook" in line for line in lines), lines
    else:
        assert not any(line.startswith("[pyward][warning] healed") for line in lines), lines
        assert lines.count("[pyward] the application answered a 5xx itself; Python 3.11 has no sys.monitoring, "
                           "so a crash a framework answers with its own 500 (Django, Bottle...) is not healed: "
                           "exceptions that reach the request boundary are (Flask's are heard through its "
                           "signal)") == 1, lines


def test_an_unchanged_wsgi_application_under_wsgiref_is_healed(tmp_path):
    """Under `pyward run --heal` the application wsgiref serves goes through the middleware without the
    program wrapping it: the same answers as with it."""
    write(tmp_path / "app.py", WSGI_APP.replace("app = Middleware(application)", "app = application"))
    write(tmp_path / "pyproject.toml", CONFIG)
    server = Server([sys.executable, "-m", "pyward", "run", "--heal", "app.py", "PORT"], tmp_path)
    try:
        check_common(server)
    finally:
        err = server.close()
    check_journal(err, "wsgi")


DJANGO_RUNSERVER = DJANGO_APP.replace("app = Middleware(get_wsgi_application())", "").replace(
    "from pyward.integrations.wsgi import Middleware\n", "").split('if __name__ == "__main__":')[0] + \
    """if __name__ == "__main__":
    from django.core.management import execute_from_command_line

    execute_from_command_line(["manage.py", "runserver", "--noreload", "127.0.0.1:" + sys.argv[1]])
"""


def test_django_runserver_unchanged_is_healed(tmp_path):
    """`manage.py runserver --noreload` serves in pyward's process through wsgiref's handler: its
    application is healed as if wrapped (on 3.12+, where sys.monitoring sees past Django's own 500)."""
    assert "Middleware" not in DJANGO_RUNSERVER
    err = serve_django(tmp_path, DJANGO_RUNSERVER)
    if MONITORED:
        check_journal(err, "wsgi")


def serve_django(tmp_path, app: str, *options: str) -> str:
    """Django's runserver of `app` under `pyward run --heal OPTIONS`: the common requests (on 3.12+, where
    sys.monitoring sees past Django's own 500; on 3.11 its 500 goes through); what it printed."""
    write(tmp_path / "app.py", app)
    write(tmp_path / "pyproject.toml", CONFIG)
    server = Server([sys.executable, "-m", "pyward", "run", "--heal", *options, "app.py", "PORT"], tmp_path)
    try:
        assert server.request("GET", "/missing")[0] == 404
        if MONITORED:
            check_common(server)
        else:
            status, headers, _ = server.request("GET", "/user/bob")
            assert status == 500 and HEADER not in headers
    finally:
        err = server.close()
    return err


def test_django_runserver_with_its_reloader_is_healed_in_the_child_it_serves_from(tmp_path):
    """`manage.py runserver` as Django users run it: the reloader (pyward's process) starts a Python child
    that serves. The sandbox arms that child and carries the heal engine to it: its requests are healed, its
    lines are on the run's stderr and its heals in the run's report."""
    app = DJANGO_RUNSERVER.replace('"runserver", "--noreload", ', '"runserver", ')
    assert "--noreload" not in app
    err = serve_django(tmp_path, app, "--report", "r.json")
    assert not any("heal does not follow" in line for line in pyward_lines(err)), err
    report = json.loads((tmp_path / "r.json").read_text())
    children = {e["pid"] for e in report["events"] if e["engine"] == "heal" and e["kind"] == "healed"}
    if MONITORED:
        check_journal(err, "wsgi")
        assert report["summary"]["healed"] == 7 and children and report["run"]["pid"] not in children


# In-process: a request through the middleware, the framework from site-packages, no server. The scripts
# below start with CLIENTS: a request to a WSGI or an ASGI application, made as a server would make it.
CLIENTS = '''
import asyncio, io, json

def wsgi_get(app, path):
    """[status line, X-Pyward-Healed or None, body] of a GET; the iterable closed as a server closes it."""
    out = {}
    def start_response(status, headers, exc_info=None):
        out["status"], out["headers"] = status, dict(headers)
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "SERVER_NAME": "x", "SERVER_PORT": "80",
               "wsgi.input": io.BytesIO(), "wsgi.errors": io.StringIO(), "wsgi.url_scheme": "http"}
    result = app(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    return [out["status"], out["headers"].get("X-Pyward-Healed"), body.decode()]

def asgi_request(app, path, *chunks, method="GET", on_send=None):
    """[status, X-Pyward-Healed or None, body, name of the exception raised or None]; the request body
    comes in `chunks` (one message each) and cannot be read twice from the server."""
    sent, left = [], list(chunks or [b""])
    async def receive():
        if left:
            return {"type": "http.request", "body": left.pop(0), "more_body": bool(left)}
        raise AssertionError("the request body was read again from the server")
    async def send(message):
        if on_send is not None:
            on_send(message)
        sent.append(message)
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": [],
             "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    try:
        asyncio.run(app(scope, receive, send))
        raised = None
    except Exception as exc:
        raised = type(exc).__name__
    healed = dict(sent[0].get("headers", [])).get(b"x-pyward-healed") if sent else None
    return [sent[0]["status"] if sent else None, healed.decode() if healed else None,
            b"".join(m.get("body", b"") for m in sent[1:]).decode(), raised]
'''

IN_PROCESS = DATA + CLIENTS + '''
import sys
from bottle import Bottle, HTTPError
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from pyward.integrations import asgi, wsgi

bottle_app = Bottle()

@bottle_app.get("/user/<name>")
def bottle_user(name):
    u = USERS.get(name)
    return {"name": u["name"], "bio": u["profile"]["bio"]}

@bottle_app.get("/gone")
def gone():
    raise HTTPError(410, "gone")

async def starlette_setting(request):
    return JSONResponse({"value": SETTINGS[request.path_params["key"]]})

def missing_key(request, exc):  # a handler for KeyError: Starlette answers it and does not re-raise
    return JSONResponse({"error": "missing"}, status_code=500)

starlette_app = Starlette(routes=[Route("/setting/{key}", starlette_setting)],
                          exception_handlers={KeyError: missing_key})

def code(response):  # status code, header, body; an ASGI application must not have raised
    assert len(response) == 3 or response[3] is None, response
    return [int(str(response[0])[:3]), *response[1:3]]

if "--hold-tools" in sys.argv:  # another tool already holds both ids pyward could take
    sys.monitoring.use_tool_id(3, "profiler-a")
    sys.monitoring.use_tool_id(4, "profiler-b")
bottle = wsgi.Middleware(bottle_app)
starlette = asgi.Middleware(starlette_app)
print(json.dumps({"bottle": [code(wsgi_get(bottle, path)) for path in ("/user/bob", "/user/bob", "/gone")],
                  "starlette": [code(asgi_request(starlette, path)) for path in ("/setting/theme", "/setting/font")],
                  "tools": [sys.monitoring.get_tool(i) for i in range(6)] if hasattr(sys, "monitoring") else None}))
'''


def run_script(tmp_path, script: str, *args: str, command: tuple[str, ...] = (), env=None) -> tuple[list, str]:
    """Run `script` as app.py: (each line it printed, as JSON; its stderr)."""
    write(tmp_path / "app.py", script)
    done = subprocess.run([*(command or (sys.executable,)), "app.py", *args], cwd=tmp_path, env=env or clean_env(),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()], done.stderr


def run_in_process(tmp_path, *args: str, command: tuple[str, ...] = (), env=None) -> tuple[dict, str]:
    printed, err = run_script(tmp_path, IN_PROCESS, *args, command=command, env=env)
    return printed[-1], err


BOB = '{"name": "Bob", "bio": null}'


def test_bottle_and_a_starlette_exception_handler_are_healed_in_process(tmp_path):
    result, err = run_in_process(tmp_path)
    if not MONITORED:  # 3.11: the frameworks' own 500s go through, and pyward says once why
        assert [r[:2] for r in result["bottle"]] == [[500, None], [500, None], [410, None]]
        assert result["starlette"] == [[200, None, '{"value":"dark"}'], [500, None, '{"error":"missing"}']]
        assert len([line for line in pyward_lines(err) if "answered a 5xx itself" in line]) == 1
        assert not [line for line in pyward_lines(err) if line.startswith("[pyward][warning] healed")]
        return
    guard = 'guard=chain_subscript_guard; target=u["profile"]["bio"]'
    assert result["bottle"][:2] == [[200, guard, BOB], [200, None, BOB]]
    assert result["bottle"][2][:2] == [410, None]  # the framework's own control flow: not a crash
    assert result["starlette"] == [[200, None, '{"value":"dark"}'],
                                   [200, "guard=key_guard; target=SETTINGS", '{"value":null}']]
    assert result["tools"][3] == "pyward"
    assert [line for line in pyward_lines(err) if "healed" in line and "warning" in line] == [
        '[pyward][warning] healed TypeError: \'NoneType\' object is not subscriptable in bottle_user '
        '(chain_subscript_guard on u["profile"]["bio"]): the guard returns None when u["profile"]["bio"] would '
        'fail (boundary: wsgi request)',
        "[pyward][warning] healed KeyError: 'font' in starlette_setting (key_guard on SETTINGS): the guard "
        "returns None when SETTINGS would fail (boundary: asgi request)"]


UNHEARD = DATA + CLIENTS + '''
import sys
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from pyward.integrations import asgi

CALLS, NOTES = [], []

async def setting(request):
    CALLS.append(request.url.path)
    return JSONResponse({"value": SETTINGS[request.path_params["key"]]})

async def note(request):
    NOTES.append((await request.body()).decode())  # a side effect, then the crash
    return JSONResponse({"saved": SETTINGS[NOTES[-1]]})

def missing_key(request, exc):  # Starlette answers a KeyError with this and does not re-raise
    return JSONResponse({"error": "missing"}, status_code=500)

app = asgi.Middleware(Starlette(routes=[Route("/setting/{key}", setting), Route("/note", note, methods=["POST"])],
                                exception_handlers={KeyError: missing_key}))

def watched():
    return hasattr(sys, "monitoring") and sys.monitoring.get_tool(3) == "pyward"

out = {"ok": asgi_request(app, "/setting/theme"), "watched_before": watched()}
if "--post-first" in sys.argv:
    out["posts"] = [asgi_request(app, "/note", body, method="POST") for body in (b"a", b"b")]
    out["notes"] = list(NOTES)
out["font"] = asgi_request(app, "/setting/font")
out["calls"], out["watched_after"] = CALLS, watched()
print(json.dumps(out))
'''


def test_monitoring_starts_at_the_first_5xx_nothing_was_heard_of(tmp_path):
    """Starlette re-raises what it answers with its 500, so no request pays for sys.monitoring until an
    exception handler answers a 5xx itself; that GET is tried once more, watched, and healed."""
    (result,), err = run_script(tmp_path, UNHEARD)
    assert result["ok"][:3] == [200, None, '{"value":"dark"}'] and not result["watched_before"]
    if not MONITORED:
        assert result["font"][:3] == [500, None, '{"error":"missing"}']
        assert len([line for line in pyward_lines(err) if "answered a 5xx itself" in line]) == 1
        return
    assert result["font"] == [200, "guard=key_guard; target=SETTINGS", '{"value":null}', None]
    assert result["calls"] == ["/setting/theme"] + ["/setting/font"] * 3  # unheard, watched, patched
    assert result["watched_after"]
    assert "[pyward] the application answered a 5xx itself, no exception reached the request boundary: from now " \
           "on sys.monitoring watches the exceptions that leave the program's code, so such crashes are healed " \
           "too (GET /setting/font is tried once more to find what crashed)" in pyward_lines(err)


@pytest.mark.skipif(not MONITORED, reason="sys.monitoring is 3.12+")
def test_a_post_answered_500_unheard_is_not_tried_again(tmp_path):
    """The first unheard 5xx of a POST goes out as the framework made it (the handler's effects happened
    once); watched from then on, the next one is healed and answered 503, still run once."""
    (result,), err = run_script(tmp_path, UNHEARD, "--post-first")
    first, second = result["posts"]
    assert first[:3] == [500, None, '{"error":"missing"}']
    assert second[:2] == [503, "guard=key_guard; target=SETTINGS"] and "not idempotent" in second[2]
    assert result["notes"] == ["a", "b"]
    assert result["font"][:2] == [200, "guard=key_guard; target=SETTINGS"]
    assert result["calls"] == ["/setting/theme", "/setting/font", "/setting/font"]  # heard at once, patched
    assert any(line.endswith("so such crashes are healed too") for line in pyward_lines(err))


@pytest.mark.skipif(not MONITORED, reason="sys.monitoring is 3.12+")
def test_tool_ids_held_by_others_are_a_journaled_conflict(tmp_path):
    result, err = run_in_process(tmp_path, "--hold-tools")
    assert result["tools"][3:5] == ["profiler-a", "profiler-b"]  # not taken from them
    assert result["bottle"][0][:2] == [500, None]  # Bottle's own 500: without monitoring, not heard
    assert "[pyward][warning] sys.monitoring tool ids 3='profiler-a', 4='profiler-b' are in use: crashes a " \
           "framework answers with its own 500 (Django, Bottle...) will not be healed; exceptions that reach " \
           "the request boundary will" in pyward_lines(err)


@pytest.mark.skipif(not MONITORED, reason="sys.monitoring is 3.12+")
def test_coverage_measures_alongside(tmp_path):
    """coverage.py on sys.monitoring (tool id 1) and pyward (3) in one process: both work."""
    result, err = run_in_process(tmp_path, command=(sys.executable, "-m", "coverage", "run", "--data-file=cov"),
                                 env=clean_env(COVERAGE_CORE="sysmon"))
    assert result["bottle"][0][1] == 'guard=chain_subscript_guard; target=u["profile"]["bio"]'
    assert result["tools"][1] == "coverage.py" and result["tools"][3] == "pyward"
    report = subprocess.run([sys.executable, "-m", "coverage", "json", "--data-file=cov", "-o", "-", "--include",
                             "app.py"], cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60)
    executed = json.loads(report.stdout)["files"]["app.py"]["executed_lines"]
    source = (tmp_path / "app.py").read_text().splitlines()
    assert source.index("def bottle_user(name):") + 2 in executed  # u = USERS.get(name), in the crashed view


STREAMING = DATA + CLIENTS + '''
from pyward.integrations import asgi

LIMITS = {"a": 1}

async def stream(scope, receive, send):
    kind, key = scope["path"].strip("/").split("/")
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    if kind == "late":
        await send({"type": "http.response.body", "body": b"first,", "more_body": True})
        await send({"type": "http.response.body", "body": f"limit={LIMITS[key]}".encode(), "more_body": True})
    else:
        await send({"type": "http.response.body", "body": f"value={SETTINGS[key]}".encode(), "more_body": True})
    await send({"type": "http.response.body", "body": b",end", "more_body": False})

EVENTS = []

async def background(scope, receive, send):  # work after a complete response (Starlette's BackgroundTask)
    key = scope["path"].strip("/").split("/")[1]
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"done", "more_body": False})
    EVENTS.append("after the response")
    EVENTS.append(f"limit={LIMITS[key]}")

def get(app, path):
    return asgi_request(app, path, on_send=lambda message: EVENTS.append("sent"))

app = asgi.Middleware(stream)
print(json.dumps([get(app, "/early/font"), get(app, "/early/theme"), get(app, "/late/b"), get(app, "/late/b")]))
EVENTS.clear()
after = asgi.Middleware(background)
print(json.dumps([get(after, "/bg/b"), list(EVENTS), get(after, "/bg/b")]))
'''


def test_a_response_is_replayed_until_its_first_body_message_and_goes_out_at_it(tmp_path):
    """A crash before the first streamed chunk: healed and replayed, the header on the replayed stream.
    A crash after it, or after a complete response: what was sent stays sent, the exception goes to the
    server, later requests use the patch."""
    printed, err = run_script(tmp_path, STREAMING, env=clean_env())
    early, unharmed, late, later = printed[0]
    assert early == [200, "guard=key_guard; target=SETTINGS", "value=None,end", None]
    assert unharmed == [200, None, "value=dark,end", None]
    assert late == [200, None, "first,", "KeyError"]  # no second start, no 500 after a 200 was sent
    assert later == [200, None, "first,limit=None,end", None]

    crashed, events, again = printed[1]
    # a complete response goes out before the work that follows it, which cannot take it back
    assert crashed == [200, None, "done", "KeyError"]
    assert events == ["sent", "sent", "after the response"]
    assert again == [200, None, "done", None]  # the background work healed for later requests
    assert "healed KeyError: 'b' in background (key_guard on LIMITS)" in err


REPLAY_BODY = CLIENTS + '''
from pyward.integrations import asgi

async def put(scope, receive, send):
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    data = json.loads(body)
    out = data["items"][0] if scope["path"] == "/first" else data["options"]["size"]
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": json.dumps(out).encode()})

app = asgi.Middleware(put)
print(json.dumps([asgi_request(app, "/first", b'{"items"', b': []}', method="PUT"),
                  asgi_request(app, "/size", b'{"options": {}, "pad": "', b'x' * 40, b'"}', method="PUT")]))
'''


def test_an_asgi_body_is_kept_for_the_replay_up_to_heal_replay_body(tmp_path):
    write(tmp_path / "pyproject.toml", CONFIG + "replay_body = 20\n")
    printed, _ = run_script(tmp_path, REPLAY_BODY, env=clean_env())
    small, large = printed[0]
    assert small == [200, 'guard=index_guard; target=data["items"]', "null", None]  # replayed from the kept chunks
    assert large[:2] == [503, 'guard=chain_subscript_guard; target=data["options"]["size"]']
    assert "its body is larger than heal.replay_body (20 bytes)" in json.loads(large[2])["detail"]


WSGI_STREAM = DATA + CLIENTS + '''
from pyward.integrations import wsgi

CLOSED = []

class Body:
    def __init__(self, key):
        self.key = key
    def __iter__(self):
        yield b""  # an empty chunk commits nothing
        yield f"value={SETTINGS[self.key]}".encode()
        yield b",end"
    def close(self):
        CLOSED.append(self.key)

def stream(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return Body(environ["PATH_INFO"].strip("/"))

app = wsgi.Middleware(stream)
print(json.dumps([wsgi_get(app, "/font"), wsgi_get(app, "/theme"), CLOSED]))
'''


def test_a_wsgi_iterable_is_read_to_its_first_non_empty_chunk_and_closed_once(tmp_path):
    printed, _ = run_script(tmp_path, WSGI_STREAM, env=clean_env())
    healed, unharmed, closed = printed[0]
    assert healed == ["200 OK", "guard=key_guard; target=SETTINGS", "value=None,end"]  # replayed
    assert unharmed == ["200 OK", None, "value=dark,end"]
    assert closed == ["font", "font", "theme"]  # the crashed attempt's iterable too, each once


FROZEN = DATA + CLIENTS + '''
import gc
from pyward.integrations.wsgi import Middleware

def respond(start_response, value):
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(value).encode()]

class Views:
    @staticmethod
    def user(name):
        u = USERS.get(name)
        return {"name": u["name"], "bio": u["profile"]["bio"]}

ROUTES = {"ratio": lambda a, b: {"ratio": int(a) / int(b)}}

class Holder:  # an instance attribute: where pyward does not look
    pass

def setting(key):
    return {"value": SETTINGS[key]}

holder = Holder()
holder.setting = setting
del setting

def app(environ, start_response):
    kind, *args = environ["PATH_INFO"].strip("/").split("/")
    view = {"user": Views.user, "ratio": ROUTES["ratio"], "setting": holder.setting}[kind]
    return respond(start_response, view(*args))

wrapped = Middleware(app)
gc.freeze()  # what a pre-forking server does so that its workers share memory
out = {}
for path in ("/user/bob", "/ratio/1/0", "/user/bob"):
    out[path] = out.get(path, []) + [wsgi_get(wrapped, path)]
try:
    wsgi_get(wrapped, "/setting/font")
except KeyError as exc:
    out["setting"] = repr(exc)
print(json.dumps(out))
'''


def test_functions_gc_freeze_hid_are_healed_and_one_not_found_is_not_called_healed(tmp_path):
    """After gc.freeze(), the collector's lists (gc.get_referrers) miss every function made before it: the
    heal finds them in the module's namespace; a function it cannot find leaves the crash unhealed, said so."""
    (result,), err = run_script(tmp_path, FROZEN)
    assert result["/user/bob"] == [["200 OK", 'guard=chain_subscript_guard; target=u["profile"]["bio"]',
                                    '{"name": "Bob", "bio": null}'], ["200 OK", None, '{"name": "Bob", "bio": null}']]
    assert result["/ratio/1/0"] == [["200 OK", "guard=division_guard; target=int(b)", '{"ratio": null}']]
    assert result["setting"] == "KeyError('font')"  # the server's own error behaviour, not a 503 loop
    lines = pyward_lines(err)
    assert "[pyward][error] unhealed KeyError: 'font': no live function runs the code of setting (pyward looks in " \
           "the collector's lists and, after gc.freeze(), in the module's namespace)" in lines
    assert not [line for line in lines if "healed KeyError" in line and "warning" in line]


FROZEN_VIEWS = DATA + '''
def ratio(a, b):
    return {"ratio": int(a) / int(b)}

def app(environ, start_response):
    _, a, b = environ["PATH_INFO"].strip("/").split("/")
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(ratio(a, b)).encode()]
'''

OTHER_WORKER = CLIENTS + '''
from pyward.integrations.wsgi import Middleware
import views
print(json.dumps(wsgi_get(Middleware(views.app), "/ratio/1/0")))
'''

FROZEN_WORKER = CLIENTS + '''
import gc, subprocess, sys
from pyward.integrations.wsgi import Middleware
import views

app = Middleware(views.app)
first = wsgi_get(app, "/ratio/4/2")  # this process's engine starts
gc.freeze()
other = subprocess.run([sys.executable, "other.py"], capture_output=True, text=True, check=True).stdout
print(json.dumps({"first": first, "other": json.loads(other), "here": wsgi_get(app, "/ratio/1/0")}))
'''


def test_a_patch_another_worker_saved_reaches_functions_gc_freeze_hid(tmp_path):
    """The store sync (HealEngine.refresh) finds its functions after gc.freeze() too: the patch the other
    worker saved guards this one's next request, which is answered without a heal of its own."""
    write(tmp_path / "views.py", FROZEN_VIEWS)
    write(tmp_path / "other.py", OTHER_WORKER)
    write(tmp_path / "pyward.toml", "[heal]\nsync_interval = 0\n")
    (result,), err = run_script(tmp_path, FROZEN_WORKER)
    assert result["first"] == ["200 OK", None, '{"ratio": 2.0}']
    assert result["other"] == ["200 OK", "guard=division_guard; target=int(b)", '{"ratio": null}']
    assert result["here"] == ["200 OK", None, '{"ratio": null}']  # guarded before it ran: no heal, no header
    assert not [line for line in pyward_lines(err) if line.startswith("[pyward][warning] healed")]


REPLAY_CONTEXT = CLIENTS + '''
from pyward.integrations import asgi, wsgi

CALLS = []

async def asgi_app(scope, receive, send):
    CALLS.append("asgi")
    if CALLS.count("asgi") == 1:
        return {}["font"]  # healed, then the request is replayed
    raise RuntimeError("broken on the replay")  # not healable

def wsgi_app(environ, start_response):
    CALLS.append("wsgi")
    if CALLS.count("wsgi") == 1:
        return {}["font"]
    raise RuntimeError("broken on the replay")

def context_of(call):
    try:
        call()
    except RuntimeError as exc:
        return repr(exc.__context__)
    return "nothing raised"

scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
         "path": "/", "raw_path": b"/", "query_string": b"", "root_path": "", "headers": [],
         "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}

async def receive():
    return {"type": "http.request", "body": b"", "more_body": False}

async def send(message):
    pass

print(json.dumps([context_of(lambda: asyncio.run(asgi.Middleware(asgi_app)(scope, receive, send))),
                  context_of(lambda: wsgi_get(wsgi.Middleware(wsgi_app), "/")), CALLS]))
'''


def test_an_exception_on_the_replay_is_not_chained_to_the_crash_that_was_healed(tmp_path):
    # the replay runs after the first attempt's exception was handled: a framework logging the replay's own
    # crash must not show the healed one as "during handling of the above exception"
    printed, err = run_script(tmp_path, REPLAY_CONTEXT)
    assert printed[0] == ["None", "None", ["asgi", "asgi", "wsgi", "wsgi"]], err


NESTED = DATA + CLIENTS + '''
from pyward.integrations import wsgi

class Counted(wsgi.Held):
    made = 0

    def __init__(self):
        Counted.made += 1

wsgi.Held = Counted  # every held response a boundary makes
CALLS = []

def application(environ, start_response):
    CALLS.append(environ["PATH_INFO"])
    u = USERS.get(environ["PATH_INFO"].strip("/"))
    body = json.dumps({"bio": u["profile"]["bio"]}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]

app = wsgi.Middleware(wsgi.Middleware(application))
healed = [wsgi_get(app, "/bob"), list(CALLS), Counted.made]
print(json.dumps([*healed, wsgi_get(app, "/ann"), Counted.made]))
'''


def test_an_inner_boundary_passes_straight_through(tmp_path):
    """A middleware wrapped in another: one heal, one replay, one held response an attempt."""
    printed, err = run_script(tmp_path, NESTED, command=(sys.executable, "-m", "pyward", "run", "--heal"))
    healed, calls, held, unharmed, held_after = printed[0]
    assert healed == ["200 OK", 'guard=chain_subscript_guard; target=u["profile"]["bio"]', '{"bio": null}']
    assert calls == ["/bob", "/bob"]  # the crash and its replay
    assert held == 2  # one held response for each attempt: the inner middleware holds nothing
    assert unharmed == ["200 OK", None, '{"bio": "hi"}'] and held_after == 3
    assert len([line for line in pyward_lines(err) if "] healed " in line]) == 1, err
    assert len([line for line in pyward_lines(err) if "GET /bob: replayed with the patched handler" in line]) == 1


HANDLER_ITSELF = """
import json, threading, urllib.error, urllib.request
from wsgiref.simple_server import WSGIRequestHandler, make_server
from pyward.integrations.wsgi import Middleware

USERS = {"ada": {"name": "Ada", "langs": ["en"]}, "bob": {"name": "Bob"}}

def app(environ, start_response):
    user = USERS[environ["PATH_INFO"].strip("/")]  # /carl: a KeyError in the handler the server called
    body = json.dumps({"name": user["name"], "lang": user["langs"][0]}).encode()  # /bob: in a value
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]

class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass

server = make_server("127.0.0.1", 0, Middleware(app), handler_class=Quiet)
threading.Thread(target=server.serve_forever, daemon=True).start()
for path in ["/ada", "/bob", "/carl", "/ada"]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_address[1]}{path}") as r:
            print(path, r.status, r.read().decode())
    except urllib.error.HTTPError as e:
        print(path, e.code)
server.shutdown()
"""


def test_a_handler_is_never_made_to_return_a_fallback_to_its_server(tmp_path):
    """A crash in the WSGI application's own body whose only recovery would make it
    return None to the server is not healed: the server's own 500, nothing stored."""
    (tmp_path / "app.py").write_text(HANDLER_ITSELF)
    run = subprocess.run([sys.executable, "-m", "pyward", "run", "--heal", "app.py"], cwd=tmp_path, env=clean_env(),
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == ['/ada 200 {"name": "Ada", "lang": "en"}',
                                       '/bob 200 {"name": "Bob", "lang": null}',
                                       "/carl 500", '/ada 200 {"name": "Ada", "lang": "en"}'], run.stderr
    assert "unhealed KeyError: 'carl': no recovery lets the request complete (app is the handler the server " \
           "called: it would give the server None instead of a response)" in run.stderr
    assert "'NoneType' object is not iterable" not in run.stderr
    patches = subprocess.run([sys.executable, "-m", "pyward", "patches"], cwd=tmp_path, env=clean_env(),
                             capture_output=True, text=True)
    rows = patches.stdout.splitlines()[1:]
    assert len(rows) == 1 and "chain_subscript_guard" in rows[0], patches.stdout


# Servers that are not wsgiref, werkzeug, gunicorn or uvicorn, with the program unchanged: one good route, one
# crashing route, compared with plain python.  Their packages are pinned in pyproject.toml's test extra.
PINNED = {"waitress": "3.0.2", "hypercorn": "0.18.0", "falcon": "4.4.0", "fastapi": "0.165.0", "aiohttp": "3.14.5",
          "tornado": "6.6.1"}


def need(*packages: str) -> None:
    """Skip, saying why, when a pinned framework cannot be imported (reported by -ra, never a silent pass)."""
    import importlib

    for package in packages:
        try:
            importlib.import_module(package)
        except ImportError as error:
            pytest.skip(f"not run: {package}=={PINNED[package]} cannot be imported ({error})")


SMALL = {
    "flask-waitress": ('''
from flask import Flask, jsonify
import sys, waitress
USERS = {"ann": {"name": "Ann"}}
app = Flask(__name__)
@app.route("/good")
def good():
    return jsonify(name=USERS["ann"]["name"])
@app.route("/bad")
def bad():
    return jsonify(name=USERS.get("zed")["name"])
waitress.serve(app, host="127.0.0.1", port=int(sys.argv[1]), _quiet=True)
''', ("flask", "waitress"), "bad", "wsgi"),
    "falcon-waitress": ('''
import falcon, sys, waitress
USERS = {"ann": {"name": "Ann"}}
class Good:
    def on_get(self, req, resp):
        resp.media = {"name": USERS["ann"]["name"]}
class Bad:
    def on_get(self, req, resp):
        resp.media = {"name": USERS.get("zed")["name"]}
app = falcon.App()
app.add_route("/good", Good())
app.add_route("/bad", Bad())
waitress.serve(app, host="127.0.0.1", port=int(sys.argv[1]), _quiet=True)
''', ("falcon", "waitress"), "Bad.on_get", "wsgi"),
    "fastapi-hypercorn": ('''
import asyncio, sys
from fastapi import FastAPI
from hypercorn.asyncio import serve
from hypercorn.config import Config
USERS = {"ann": {"name": "Ann"}}
app = FastAPI()
@app.get("/good")
async def good():
    return {"name": USERS["ann"]["name"]}
@app.get("/bad")
async def bad():
    return {"name": USERS.get("zed")["name"]}
config = Config()
config.bind = [f"127.0.0.1:{sys.argv[1]}"]
config.loglevel = "WARNING"
asyncio.run(serve(app, config))
''', ("fastapi", "hypercorn"), "bad", "asgi"),
}


@pytest.mark.parametrize("name", SMALL)
def test_more_servers_unchanged_under_pyward_run_heal(tmp_path, name):
    """waitress (Flask, Falcon) and hypercorn (FastAPI): under python the bad route is the framework's 500;
    under `pyward run --heal` it is healed and replayed, the good route stays byte-identical, the server
    keeps serving and the run counts the heal."""
    source, packages, function, boundary = SMALL[name]
    need(*packages)
    write(tmp_path / "server.py", source)
    plain = Server([sys.executable, "server.py", "PORT"], tmp_path, stop=signal.SIGTERM)
    try:
        good = plain.request("GET", "/good")
        assert plain.request("GET", "/bad")[0] == 500
    finally:
        plain.close()
    server = Server([sys.executable, "-m", "pyward", "run", "--heal", "server.py", "PORT"], tmp_path)
    if boundary == "wsgi" and not MONITORED:
        # 3.11: the framework's own 500 goes out as under python (Flask's signal is not heard under waitress)
        try:
            assert server.request("GET", "/good")[::2] == good[::2]
            assert [server.request("GET", "/bad")[0] for _ in range(2)] == [500, 500]
        finally:
            err = server.close()
        assert "Python 3.11 has no sys.monitoring" in err and "0 healed" in pyward_lines(err)[-1]
        return
    try:
        assert server.request("GET", "/good")[::2] == good[::2]
        status, headers, body = server.request("GET", "/bad")
        healed_by = {k.lower(): v for k, v in headers.items()}.get(HEADER.lower())
        assert (status, healed_by, json.loads(body)) == (
            200, 'guard=subscript_guard; target=USERS.get("zed")', {"name": None})
        status, headers, body = server.request("GET", "/bad")
        assert (status, {k.lower() for k in headers} & {HEADER.lower()}, json.loads(body)) == (
            200, set(), {"name": None})
        assert server.request("GET", "/good")[::2] == good[::2]
    finally:
        err = server.close()
    lines = pyward_lines(err)
    healed = [line for line in lines if line.startswith("[pyward][warning] healed")]
    assert len(healed) == 1 and f"in {function} (subscript_guard" in healed[0], lines
    assert f"(boundary: {boundary} request)" in healed[0]
    assert "[pyward] GET /bad: replayed with the patched handler" in lines
    assert "1 healed" in lines[-1] and "2 guard firings" in lines[-1], lines


NO_BOUNDARY = {
    "aiohttp": '''
import sys
from aiohttp import web
USERS = {"ann": {"name": "Ann"}}
async def good(request):
    return web.json_response({"name": USERS["ann"]["name"]})
async def bad(request):
    return web.json_response({"name": USERS.get("zed")["name"]})
app = web.Application()
app.add_routes([web.get("/good", good), web.get("/bad", bad)])
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
''',
    "tornado": '''
import asyncio, sys
import tornado.web
USERS = {"ann": {"name": "Ann"}}
class Good(tornado.web.RequestHandler):
    def get(self):
        self.write({"name": USERS["ann"]["name"]})
class Bad(tornado.web.RequestHandler):
    def get(self):
        self.write({"name": USERS.get("zed")["name"]})
async def main():
    tornado.web.Application([(r"/good", Good), (r"/bad", Bad)]).listen(int(sys.argv[1]), "127.0.0.1")
    await asyncio.Event().wait()
asyncio.run(main())
''',
}


@pytest.mark.parametrize("name", NO_BOUNDARY)
def test_servers_heal_holds_no_boundary_in_behave_as_under_python_and_say_so(tmp_path, name):
    """aiohttp and tornado are neither WSGI nor ASGI: their 500 goes out as under python, nothing is healed
    or fired, and the run says once that heal holds no request boundary there."""
    need(name)
    write(tmp_path / "server.py", NO_BOUNDARY[name])
    answers = []
    for argv in ([sys.executable, "server.py", "PORT"],
                 [sys.executable, "-m", "pyward", "run", "--heal", "server.py", "PORT"]):
        server = Server(argv, tmp_path)
        try:
            answers.append([server.request("GET", path)[::2] for path in ("/good", "/bad", "/bad", "/good")])
        finally:
            err = server.close()
    assert answers[0] == answers[1] and [status for status, _ in answers[0]] == [200, 500, 500, 200]
    lines = pyward_lines(err)
    assert lines.count(f"[pyward] heal holds no request boundary in {name} (neither WSGI nor ASGI): a handler's "
                       f"crash gets {name}'s own 500 and is not healed") == 1, lines
    assert not any("healed TypeError" in line or "guard fired" in line for line in lines), lines
    assert "0 healed" in lines[-1]


ONE_REQUEST = {
    "http.server": '''
import http.server, threading, urllib.request

class Refused(Exception):
    pass

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        raise Refused("nope")

    def log_message(self, *args):
        pass

server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
''',
    "wsgiref": '''
import threading, urllib.request
from wsgiref.simple_server import WSGIRequestHandler, make_server

class Refused(Exception):
    pass

def application(environ, start_response):
    raise Refused("nope")

class Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass

server = make_server("127.0.0.1", 0, application, handler_class=Quiet)
''',
}


@pytest.mark.parametrize("name", sorted(ONE_REQUEST))
def test_a_crash_heal_cannot_answer_reaches_the_server_with_pythons_traceback(tmp_path, name):
    """What the server logs for an exception heal leaves alone is what it logs under python: the
    server's frames, then the application's, none of pyward's boundary in between."""
    write(tmp_path / "app.py", ONE_REQUEST[name] + '''
served = threading.Thread(target=server.handle_request)
served.start()
try:
    urllib.request.urlopen("http://127.0.0.1:%d/" % server.server_address[1])
except OSError:
    pass
served.join()
''')

    def logged(*pyward: str) -> list[str]:
        result = subprocess.run([sys.executable, *pyward, "app.py"], cwd=tmp_path, env=clean_env(),
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result
        return [re.sub(r"\d{4,}", "N", line) for line in result.stderr.splitlines()
                if not line.startswith("[pyward]")]

    plain = logged()
    assert any("raise Refused" in line for line in plain), plain
    assert logged("-m", "pyward", "run", "--no-config", "--no-report", "--heal") == plain
