"""What every request served under heal makes, in C (_native/serving.c) and its Python
fallback: the WSGI middleware's held response (the same PEP 3333 behaviour from both) and
http.server's response buffer, checked here one edge at a time for both."""
from __future__ import annotations

import gc
import weakref

import pytest

from pyward._native import native
from pyward.integrations import httpserver, wsgi

IMPLEMENTATIONS = {"native": native.Held, "python": wsgi._Response}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def Held(request):
    return IMPLEMENTATIONS[request.param]


class Server:
    """What a server does with a WSGI response: its start_response, write() and the body it reads."""

    def __init__(self):
        self.log = []

    def start_response(self, status, headers, exc_info=None):
        self.log.append(("start", status, list(headers)))
        return lambda data: self.log.append(("write", data))

    def serve(self, body):
        try:
            for chunk in body:
                self.log.append(("chunk", chunk))
        finally:
            if hasattr(body, "close"):
                body.close()
        return self.log


class Body:
    """An application's iterable that records how far it was read and whether it was closed."""

    def __init__(self, *chunks, fail_at=None, close_fails=False):
        self.chunks, self.fail_at, self.close_fails = chunks, fail_at, close_fails
        self.read, self.closed = 0, 0

    def __iter__(self):
        for i, chunk in enumerate(self.chunks):
            if i == self.fail_at:
                raise KeyError("in the body")
            self.read += 1
            yield chunk

    def close(self):
        self.closed += 1
        if self.close_fails:
            raise OSError("close failed")


def app_returning(result, status="200 OK", headers=(("Content-Type", "text/plain"),)):
    def app(environ, start_response):
        start_response(status, list(headers))
        return result
    return app


def test_a_list_is_returned_as_is_with_the_extra_header(Held):
    held, body, server = Held(), [b"a", b"b"], Server()
    assert held.status == ""
    held.run(app_returning(body), {})
    assert held.status == "200 OK" and held.headers == [("Content-Type", "text/plain")]
    assert held.commit(server.start_response, ("X-Pyward-Healed", "guard=g; target=t")) is body
    assert server.log == [("start", "200 OK", [("Content-Type", "text/plain"), ("X-Pyward-Healed", "guard=g; target=t")])]
    assert held.headers == [("Content-Type", "text/plain")]  # the application's list is not changed


def test_a_body_is_read_to_its_first_non_empty_chunk_then_handed_out_in_order_and_closed_once(Held):
    held, body, server = Held(), Body(b"", b"", b"first", b"second"), Server()
    held.run(app_returning(body), {})
    assert body.read == 3 and server.log == []  # nothing sent before the commit
    out = held.commit(server.start_response, None)
    assert server.serve(out) == [("start", "200 OK", [("Content-Type", "text/plain")]),
                                 ("chunk", b""), ("chunk", b""), ("chunk", b"first"), ("chunk", b"second")]
    assert body.closed == 1


def test_a_body_of_empty_chunks_is_read_to_its_end(Held):
    held, body, server = Held(), Body(b"", b""), Server()
    held.run(app_returning(body), {})
    assert body.read == 2
    assert [entry[0] for entry in server.serve(held.commit(server.start_response, None))] == ["start", "chunk", "chunk"]
    assert body.closed == 1


def test_an_empty_body_is_returned_as_the_application_returned_it(Held):
    held, body = Held(), Body()
    held.run(app_returning(body), {})
    assert held.commit(Server().start_response, None) is body


def test_a_file_wrapper_is_not_read_ahead(Held):
    class FileWrapper:
        def __iter__(self):
            raise AssertionError("read ahead")

    held, result = Held(), FileWrapper()
    held.run(app_returning(result), {"wsgi.file_wrapper": FileWrapper})
    assert held.commit(Server().start_response, None) is result


def test_writes_are_held_until_the_commit_and_then_go_straight_out(Held):
    def app(environ, start_response):
        write = start_response("200 OK", [])
        write(b"one")
        write(b"two")
        environ["write"] = write
        return []

    held, server, environ = Held(), Server(), {}
    held.run(app, environ)
    assert server.log == []
    held.commit(server.start_response, None)
    environ["write"](b"three")
    assert server.log == [("start", "200 OK", []), ("write", b"one"), ("write", b"two"), ("write", b"three")]


def test_start_response_with_exc_info_replaces_the_head_before_the_commit_and_raises_after(Held):
    def app(environ, start_response):
        start_response("200 OK", [("A", "1")])
        try:
            raise ValueError("late")
        except ValueError as exc:
            environ["exc_info"] = (ValueError, exc, exc.__traceback__)
        start_response("500 Internal Server Error", [("B", "2")], exc_info=environ["exc_info"])
        environ["start_response"] = start_response
        return [b"x"]

    held, environ = Held(), {}
    held.run(app, environ)
    assert held.status == "500 Internal Server Error" and held.headers == [("B", "2")]
    held.commit(Server().start_response, None)
    with pytest.raises(ValueError, match="late"):
        environ["start_response"]("500 Internal Server Error", [], environ["exc_info"])
    with pytest.raises(TypeError):
        environ["start_response"]("200 OK")


def test_an_exception_reading_ahead_propagates_and_discard_closes_quietly(Held):
    held, body = Held(), Body(b"", b"x", fail_at=1, close_fails=True)
    with pytest.raises(KeyError):
        held.run(app_returning(body), {})
    held.discard()  # close() raised OSError: an attempt that is not answered does not fail on it
    assert body.closed == 1


def test_the_servers_close_reports_a_failing_close(Held):
    held, body = Held(), Body(b"x", close_fails=True)
    held.run(app_returning(body), {})
    out = held.commit(Server().start_response, None)
    with pytest.raises(OSError, match="close failed"):
        Server().serve(out)


def test_an_application_that_raises_leaves_nothing_to_close(Held):
    def app(environ, start_response):
        raise ZeroDivisionError

    held = Held()
    with pytest.raises(ZeroDivisionError):
        held.run(app, {})
    held.discard()
    assert held.result is None


def test_a_cycle_through_the_held_response_is_collected():
    class Result(list):
        pass

    def app(environ, start_response):
        start_response("200 OK", [])
        result = Result([b"x"])
        result.start_response = start_response  # the application keeps its start_response
        return result

    held = native.Held()
    held.run(app, {})
    alive = weakref.ref(held.result)
    del held
    gc.collect()
    assert alive() is None


BUFFERS = {"native": native.ResponseBuffer, "python": httpserver._ResponseBuffer}


@pytest.fixture(params=sorted(BUFFERS))
def ResponseBuffer(request):
    return BUFFERS[request.param]


class Wfile:
    """A handler's socket writer: what reached the client, in how many writes."""

    closed = False

    def __init__(self):
        self.writes, self.flushes = [], 0

    def write(self, data):
        self.writes.append(bytes(data))
        return len(data)

    def flush(self):
        self.flushes += 1


def test_writes_are_held_and_go_out_in_one_write_at_the_commit(ResponseBuffer):
    real = Wfile()
    out = ResponseBuffer(real, 100)
    assert out.write(b"HTTP/1.1 200 OK\r\n\r\n") == 19 and out.write(memoryview(b"body")) == 4
    assert real.writes == [] and not out.sent
    out.flush()
    assert real.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"] and real.flushes == 1 and out.sent
    out.write(b"more")  # once part of the response is sent, writes go straight out
    out.commit()
    assert real.writes[1:] == [b"more"]


def test_a_response_over_the_limit_goes_out_as_it_is_written(ResponseBuffer):
    real = Wfile()
    out = ResponseBuffer(real, 5)
    out.write(b"abc")
    assert real.writes == []
    out.write(b"def")
    assert real.writes == [b"abcdef"] and out.sent


def test_discard_drops_what_is_held_and_the_buffer_passes_other_attributes_through(ResponseBuffer):
    real = Wfile()
    out = ResponseBuffer(real, 100)
    out.write(b"a crashed attempt")
    out.discard()
    out.write(b"the replay")
    out.commit()
    assert real.writes == [b"the replay"]
    assert out.closed is False and out.real is real
    out.rfile, out.rule = "rfile", "rule"
    assert (out.rfile, out.body, out.rule) == ("rfile", None, "rule")
    with pytest.raises(AttributeError):
        out.missing
    buffer = bytearray(b"x")
    out.write(buffer)  # after the commit: passed on as it is
    assert real.writes[-1] == b"x"
