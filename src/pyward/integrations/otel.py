"""OpenTelemetry export: journal events at `notice` and above as OTLP log records.

`pyward run --otel` (or `otel = true` in `[tool.pyward]`, `enabled = true` in
`[tool.pyward.otel]`) starts one
exporter process next to the program, before any engine starts, and hands it
each exportable event as one JSON message over a socket pair
(`SOCK_SEQPACKET`: a record goes whole or not at all), from the program's
process and from the processes it forks.  The exporter
process (`python -m pyward.integrations.otel`) is the only place the
OpenTelemetry SDK is imported: the program's process never loads it, never
waits for it (a send that would block is dropped and counted), and never
holds a thread for it.  The exporter uses the SDK's logs API: a
`LoggerProvider` with the run's identity as its resource, a
`BatchLogRecordProcessor` and the OTLP/HTTP `OTLPLogExporter`, configured by
the standard `OTEL_EXPORTER_OTLP_*`, `OTEL_RESOURCE_ATTRIBUTES` and
`OTEL_SERVICE_NAME` variables, which `[tool.pyward.otel]` settings override.

At the end of the run the program's side sends an empty message; the exporter
flushes, shuts down and answers with what it sent and what failed, which is
journaled (one warning when the collector could not be reached).  pyward
waits for that answer at most `otel.timeout_ms` plus a second; the program's
exit status is never changed by export.

Needs `pip install 'pyward[otel]'`; without it `--otel` costs one warning.
"""
from __future__ import annotations

import errno as _errno
import os
import sys

from .._isolation import isolate_module
from ..canonical import dumps
from ..journal import _RANK, Sink

os = isolate_module(os)  # noqa: F811

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: pyward severity -> (OpenTelemetry SeverityNumber, text).  pyward ranks `alert`
#: (a tamper alert) below `error` (pyward itself failed), so both map into ERROR.
SEVERITY = {"debug": (5, "DEBUG"), "info": (9, "INFO"), "notice": (10, "NOTICE"), "warning": (13, "WARNING"),
            "alert": (17, "ALERT"), "error": (19, "ERROR")}
THRESHOLD = "notice"
ANSWER_FD = 3  # the exporter's answer channel, in the exporter process

#: The exporter process: at the lowest priority before anything else (importing the SDK takes
#: a CPU tenth of a second or more, which must not be taken from the program), then this module.
EXPORTER = ("import os; os.nice(19); import runpy; "
            "runpy.run_module('pyward.integrations.otel', run_name='__main__', alter_sys=True)")


class OtelSink(Sink):
    """The program's side: one non-blocking send per exportable event; nothing else."""

    def __init__(self, settings: Any, resource: dict[str, Any]) -> None:
        import _socket
        import select  # now, before the engines start: the run's end must load nothing the sandbox would judge

        self._select = select.select

        self.settings = settings
        self.endpoint = settings.get("otel.endpoint") or os.environ.get("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT") \
            or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or "http://localhost:4318"
        self.threshold = _RANK[settings.get("otel.severity") or THRESHOLD]
        self.sent = self.dropped = 0
        self.broken: str | None = None
        # SOCK_SEQPACKET: a record goes whole or not at all, so a send never waits and never tears a line
        ours, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
        answer_read, answer_write = os.pipe()
        self._flags = _socket.MSG_NOSIGNAL | _socket.MSG_DONTWAIT  # a dead exporter must not SIGPIPE the program
        config = {"endpoint": settings.get("otel.endpoint"), "timeout_ms": settings.get("otel.timeout_ms"),
                  "batch_ms": settings.get("otel.batch_ms"), "headers": settings.get("otel.headers"),
                  "resource": resource}
        env = dict(os.environ)
        package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (package_parent, env.get("PYTHONPATH"))))
        for name in [k for k in env if k.startswith("PYWARD_")]:  # not a guarded run, not a re-run
            del env[name]
        actions = [(os.POSIX_SPAWN_DUP2, theirs.fileno(), 0), (os.POSIX_SPAWN_DUP2, answer_write, ANSWER_FD)]
        devnull = os.open(os.devnull, os.O_WRONLY)
        actions.append((os.POSIX_SPAWN_DUP2, devnull, 1))
        try:
            self.pid = os.posix_spawn(sys.executable, [sys.executable, "-s", "-c", EXPORTER], env,
                                      file_actions=actions)
        finally:
            theirs.close()
            os.close(answer_write)
            os.close(devnull)
        self.sock: _socket.socket | None = ours
        self.answer = answer_read
        self._send(dumps(config).encode("ascii"))
        # a forked child (a server's worker, a multiprocessing fork) keeps the socket: its events are exported too,
        # each record one message, whole, with the child's process.pid; what it sends after the run's end is lost

    def _forget(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            sock.close()

    def _send(self, data: bytes) -> None:
        sock = self.sock
        if sock is None:
            return
        try:
            sock.send(data, self._flags)
        except BlockingIOError:  # the exporter is behind: this record is dropped, the program does not wait
            self.dropped += 1
            return
        except OSError as exc:
            if exc.errno == _errno.EMSGSIZE:  # a record larger than the socket's buffer
                self.dropped += 1
                return
            self.broken = exc.strerror or str(exc)
            self._forget()
            return
        self.sent += 1

    def write(self, event: Any) -> None:
        if _RANK[event.severity] < self.threshold or self.sock is None:
            return
        self._send(dumps(record(event)).encode("ascii"))

    def finish(self) -> dict[str, Any]:
        """End the export and wait (bounded) for the exporter's answer.  An empty
        message ends it: closing would not, while a forked child still holds the socket."""
        if self.sock is not None:
            try:
                self.sock.send(b"", self._flags)
            except OSError:
                pass
        self._forget()
        wait = (self.settings.get("otel.timeout_ms") or 5000) / 1000 + 1
        answer: dict[str, Any] = {}
        try:
            ready, _, _ = self._select([self.answer], [], [], wait)
            if ready:  # "EXPORTED FAILED [ERROR]" (see _answer)
                exported, _, rest = os.read(self.answer, 65536).decode("utf-8", "replace").partition(" ")
                failed, _, error = rest.strip().partition(" ")
                if exported.isdigit() and failed.isdigit():
                    answer = {"exported": int(exported), "failed": int(failed)}
                    if error:
                        answer["error"] = error
                else:
                    answer = {"error": "the exporter ended without an answer"}
            else:
                answer = {"error": f"no answer from the exporter within {wait:g} s (still sending, in the background)"}
        except (OSError, ValueError) as exc:
            answer = {"error": f"cannot read the exporter's answer: {exc}"}
        finally:
            os.close(self.answer)
        if self.dropped:
            answer["dropped"] = self.dropped
        if self.broken:
            answer["error"] = answer.get("error") or f"the exporter went away: {self.broken}"
        return answer


def record(event: Any) -> dict[str, Any]:
    """What the exporter needs of an event (OpenTelemetry attribute names)."""
    details = event.details
    attributes: dict[str, Any] = {"pyward.engine": event.engine, "pyward.kind": event.kind,
                                  "pyward.resource": event.name, "pyward.seq": event.seq,
                                  "process.pid": event.pid, "thread.name": event.thread}
    for key in ("operation", "rule", "permission"):
        value = details.get(key)
        if type(value) is str:
            attributes[f"pyward.{key}"] = value
    if event.policy is not None:
        attributes["policy.revision"] = event.policy
    if event.where:
        path, _, line = event.where.rpartition(":")
        attributes["code.file.path"] = path
        if line.isdigit():
            attributes["code.line.number"] = int(line)
    if event.function:
        attributes["code.function.name"] = event.function
    number, text = SEVERITY[event.severity]
    return {"t": int(event.time * 1e9), "n": f"pyward.{event.engine}.{event.kind}", "s": number, "st": text,
            "b": event.message, "a": attributes}


def start(session: Any) -> OtelSink | None:
    """The sink for a session with `otel.enabled`, or None (and a warning event) when it cannot start."""
    from importlib.machinery import PathFinder

    spec = PathFinder.find_spec("opentelemetry")  # looked up, not imported: the program's modules stay its own
    locations = (spec.submodule_search_locations or ()) if spec is not None else ()
    if not any(os.path.isdir(os.path.join(path, "sdk")) for path in locations):
        session.journal.emit("pyward", "otel.unavailable", "opentelemetry-sdk", severity="warning", where="",
                             message="--otel needs the OpenTelemetry SDK: pip install 'pyward[otel]'; "
                                     "nothing is exported")
        return None
    try:
        return OtelSink(session.settings, session.identity)
    except OSError as exc:
        session.journal.emit("pyward", "otel.unavailable", "exporter", severity="warning", where="",
                             message=f"cannot start the OpenTelemetry exporter: {exc.strerror or exc}; "
                                     "nothing is exported")
        return None


def report(session: Any, sink: OtelSink) -> None:
    """Journal how the export went (the run's end)."""
    answer = sink.finish()
    error, exported = answer.get("error"), answer.get("exported", 0)
    dropped = answer.get("dropped", 0)
    if error:
        session.journal.emit("pyward", "otel.failed", sink.endpoint, severity="warning", where="",
                             details=answer, message=f"OpenTelemetry export to {sink.endpoint} failed: {error} "
                             f"({answer.get('failed', sink.sent)} records not delivered); the run is unaffected")
    else:
        session.journal.emit("pyward", "otel.exported", sink.endpoint, severity="info", where="", details=answer,
                             message=f"{exported} records exported to {sink.endpoint}"
                                     + (f"; {dropped} dropped (the exporter was behind)" if dropped else ""))


# --- the exporter process ---------------------------------------------------------------------------


def _exporter_main() -> int:
    import json
    import socket

    channel = socket.socket(fileno=0)  # one record per message (SOCK_SEQPACKET); b"" once the run has ended
    config = json.loads(channel.recv(1 << 20) or b"{}")
    result: dict[str, Any] = {"exported": 0, "failed": 0}
    try:
        from opentelemetry._logs.severity import SeverityNumber
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs import export as sdk_export
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
        from opentelemetry.sdk.resources import Resource
    except ImportError as exc:
        result["error"] = f"the OpenTelemetry SDK cannot be imported: {exc}"
        return _answer(result)
    import logging

    logging.getLogger("opentelemetry").setLevel(logging.CRITICAL)  # failures are answered, not printed

    timeout_ms = config.get("timeout_ms") or 5000
    kwargs: dict[str, Any] = {"timeout": timeout_ms / 1000}
    if config.get("endpoint"):
        kwargs["endpoint"] = config["endpoint"].rstrip("/") + "/v1/logs" \
            if not config["endpoint"].rstrip("/").endswith("/v1/logs") else config["endpoint"]
    if config.get("headers"):
        kwargs["headers"] = dict(h.split("=", 1) for h in config["headers"] if "=" in h)
    exporter = OTLPLogExporter(**kwargs)

    # LogRecordExportResult since SDK 1.39 or so, LogExportResult before: compare by name
    failure = getattr(sdk_export, "LogRecordExportResult", None) or sdk_export.LogExportResult
    inner_export = exporter.export  # wrapped: count what was delivered and what could not be

    def export(batch: Any) -> Any:
        try:
            outcome = inner_export(batch)
        except Exception as exc:  # noqa: BLE001 - an exporter bug is a failed export, not a crash
            result["error"] = result.get("error") or f"{type(exc).__name__}: {exc}"
            result["failed"] += len(batch)
            return failure.FAILURE
        if getattr(outcome, "name", None) == "SUCCESS":
            result["exported"] += len(batch)
        else:
            result["failed"] += len(batch)
            result["error"] = result.get("error") or "the collector did not accept the records (unreachable, " \
                                                     "or it answered with an error)"
        return outcome

    exporter.export = export  # type: ignore[method-assign]
    resource = Resource.create({k: v for k, v in (config.get("resource") or {}).items() if v is not None})
    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(BatchLogRecordProcessor(
        exporter, schedule_delay_millis=config.get("batch_ms") or 1000, export_timeout_millis=timeout_ms))
    logger = provider.get_logger("pyward")
    while True:
        message = channel.recv(1 << 20)
        if not message:
            break
        try:
            item = json.loads(message)
        except ValueError:
            continue
        logger.emit(timestamp=item["t"], severity_number=SeverityNumber(item["s"]), severity_text=item["st"],
                    body=item["b"], attributes=item["a"], event_name=item["n"])
    provider.force_flush(timeout_millis=timeout_ms)
    provider.shutdown()
    return _answer(result)


def _answer(result: dict[str, Any]) -> int:
    """One line: `EXPORTED FAILED [ERROR]` (the program's side parses it without json)."""
    line = f"{result['exported']} {result['failed']} {result.get('error') or ''}".strip() + "\n"
    try:
        os.write(ANSWER_FD, line.encode())
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(_exporter_main())
