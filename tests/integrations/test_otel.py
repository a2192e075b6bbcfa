"""OpenTelemetry export, end to end: a real run under --otel, a real OTLP/HTTP receiver on loopback,
the protobuf decoded with opentelemetry-proto."""
from __future__ import annotations

import http.server
import json
import os
import threading

import pytest

from helpers import clean_env, pyward, pyward_lines

logs_service = pytest.importorskip("opentelemetry.proto.collector.logs.v1.logs_service_pb2")

PROGRAM = """\
import os

def lookup(name):
    try:
        return os.environ.get(name)
    except PermissionError:
        return None

for name in ("API_TOKEN", "DB_PASSWORD"):
    lookup(name)
print("done")
"""


class Receiver(http.server.ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[tuple[str, dict, object]] = []
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def records(self) -> list[tuple[dict, object]]:
        """(resource attributes, log record) for every record received."""
        out = []
        for path, headers, request in self.requests:
            assert path == "/v1/logs" and headers["Content-Type"] == "application/x-protobuf"
            for resource_logs in request.resource_logs:
                resource = {a.key: value(a.value) for a in resource_logs.resource.attributes}
                for scope_logs in resource_logs.scope_logs:
                    out += [(resource, r) for r in scope_logs.log_records]
        return out


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = logs_service.ExportLogsServiceRequest()
        request.ParseFromString(body)
        self.server.requests.append((self.path, {"Content-Type": self.headers.get("Content-Type")}, request))
        reply = logs_service.ExportLogsServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: object) -> None:
        pass


def value(any_value) -> object:
    kind = any_value.WhichOneof("value")
    return getattr(any_value, kind) if kind else None


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.shutdown()
    server.server_close()


def test_denials_arrive_as_log_records_with_their_attributes(tmp_path, receiver):
    (tmp_path / "app.py").write_text(PROGRAM)
    env = clean_env(OTEL_SERVICE_NAME="checkout", OTEL_RESOURCE_ATTRIBUTES="deployment.environment=test",
                    K8S_POD_NAME="checkout-1", OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url)
    result = pyward("run", "--report", "r.json", "--otel", "-A", "--deny-env", "app.py", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "done\n"
    records = receiver.records()
    denied = [(res, r) for res, r in records if r.event_name == "pyward.sandbox.denied"]
    assert len(denied) == 2, [r.event_name for _, r in records]
    report = json.loads((tmp_path / "r.json").read_text())
    resource, first = denied[0]
    assert resource["service.name"] == "checkout"
    assert resource["host.name"] == os.uname().nodename
    assert resource["process.pid"] == report["run"]["pid"]
    assert resource["k8s.pod.name"] == "checkout-1" and resource["deployment.environment"] == "test"
    attributes = {a.key: value(a.value) for a in first.attributes}
    assert first.severity_number == 13 and first.severity_text == "WARNING"
    assert first.body.string_value.startswith("environment variable 'API_TOKEN' (read) denied by --deny-env")
    assert attributes["pyward.resource"] == "API_TOKEN"
    assert attributes["pyward.operation"] == "read" and attributes["pyward.rule"] == "--deny-env"
    assert attributes["code.file.path"] == str(tmp_path / "app.py")
    assert attributes["code.line.number"] == 5 and attributes["code.function.name"] == "lookup"
    assert attributes["process.pid"] == report["run"]["pid"]
    assert attributes["policy.revision"] == report["run"]["policy"]["id"]
    assert all(r.severity_number >= 10 for _, r in records)  # notice and above only
    exported = [e for e in report["events"] if e["kind"] == "otel.exported"]
    assert exported and exported[0]["details"]["exported"] == len(records), [e["message"] for e in report["events"]]


def test_a_collector_that_is_down_costs_one_warning(tmp_path):
    (tmp_path / "app.py").write_text(PROGRAM)
    (tmp_path / "pyward.toml").write_text('[otel]\nenabled = true\nendpoint = "http://127.0.0.1:9"\n'
                                          'timeout_ms = 1000\nbatch_ms = 100\n')
    result = pyward("run", "--report", "r.json", "-A", "--deny-env", "app.py", cwd=tmp_path)
    assert result.returncode == 0 and result.stdout == "done\n"
    warnings = [line for line in pyward_lines(result.stderr) if "OpenTelemetry" in line]
    assert len(warnings) == 1 and warnings[0].startswith("[pyward][warning] OpenTelemetry export to "
                                                         "http://127.0.0.1:9 failed")
    events = json.loads((tmp_path / "r.json").read_text())["events"]
    assert [e["kind"] for e in events if e["kind"].startswith("otel.")] == ["otel.failed"]


def test_the_program_never_imports_the_sdk(tmp_path, receiver):
    (tmp_path / "app.py").write_text("import sys\nprint(sorted(m for m in sys.modules if 'opentelemetry' in m))\n")
    result = pyward("run", "-q", "--otel", "app.py", cwd=tmp_path,
                    env=clean_env(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url))
    assert result.returncode == 0 and result.stdout == "[]\n"


def test_otel_true_is_short_for_the_table(tmp_path):
    from pyward.config import load

    (tmp_path / "pyproject.toml").write_text("[tool.pyward]\notel = true\n")
    assert load(cwd=str(tmp_path))["otel.enabled"] is True
    (tmp_path / "pyproject.toml").write_text("[tool.pyward.otel]\nenabled = false\n")
    assert load(cwd=str(tmp_path))["otel.enabled"] is False


FORKING = """\
import os, sys, time

def lookup(name):
    try:
        return os.environ.get(name)
    except PermissionError:
        return None

ready, told = os.pipe()
pid = os.fork()
if pid == 0:
    lookup("CHILD_TOKEN")
    print("child", os.getpid(), flush=True)
    os.write(told, b"x")  # journaled: the parent may end now
    if sys.argv[1] == "linger":  # still holding the export socket when the parent's run ends
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.dup2(null, 2)  # (not the test's pipes: their reader would wait for this child)
        time.sleep(60)
    os._exit(0)
os.read(ready, 1)
if sys.argv[1] != "linger":
    os.waitpid(pid, 0)
lookup("PARENT_TOKEN")
print("parent", os.getpid(), flush=True)
"""


@pytest.mark.parametrize("child", ["waited", "linger"])
def test_a_forked_childs_events_are_exported_too(tmp_path, receiver, child):
    (tmp_path / "app.py").write_text(FORKING)
    result = pyward("run", "--report", "r.json", "--otel", "-A", "--deny-env", "app.py", child, cwd=tmp_path,
                    env=clean_env(OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url))
    pids = dict(line.split() for line in result.stdout.splitlines())
    try:
        assert result.returncode == 0, result.stderr
        denied = {}
        for _, r in receiver.records():
            attributes = {a.key: value(a.value) for a in r.attributes}
            if r.event_name == "pyward.sandbox.denied":
                denied[attributes["pyward.resource"]] = attributes["process.pid"]
        assert denied == {"CHILD_TOKEN": int(pids["child"]), "PARENT_TOKEN": int(pids["parent"])}
        events = json.loads((tmp_path / "r.json").read_text())["events"]
        exported = [e for e in events if e["kind"].startswith("otel.")]
        # the lingering child holds the socket: the parent's end of the export is not left waiting for it
        assert [e["kind"] for e in exported] == ["otel.exported"], [e["message"] for e in exported]
    finally:
        if child == "linger":
            try:
                os.kill(int(pids["child"]), 9)
            except ProcessLookupError:
                pass
