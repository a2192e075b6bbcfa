"""What every request served under heal makes: the WSGI middleware's held response
(PEP 3333 behaviour), http.server's response buffer and the ASGI middleware's
exchange, checked here one edge at a time."""
from __future__ import annotations

import asyncio
import gc
import types
import weakref

import pytest

from pyward.integrations import asgi, httpserver, wsgi


@pytest.fixture
def Held():
    return wsgi.Held


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
    assert server.log == [("start", "200 OK",
                           [("Content-Type", "text/plain"), ("X-Pyward-Healed", "guard=g; target=t")])]
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


def test_start_response_takes_its_arguments_by_name_and_refuses_others(Held):
    def app(environ, start_response):
        start_response(headers=[("A", "1")], status="201 Created", exc_info=None)
        return [b"made"]

    held, server = Held(), Server()
    held.run(app, {})
    assert server.serve(held.commit(server.start_response, None)) == [("start", "201 Created", [("A", "1")]),
                                                                        ("chunk", b"made")]
    for args, kwargs in [(("200 OK",), {"status": "200 OK", "headers": []}), (("200 OK", []), {"code": 200}),
                         ((), {"status": "200 OK"}), (("200 OK", [], None, None), {})]:
        with pytest.raises(TypeError):
            Held().run(lambda environ, start_response: start_response(*args, **kwargs), {})  # noqa: B023 (run now)


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

    held = wsgi.Held()
    held.run(app, {})
    alive = weakref.ref(held.result)
    del held
    gc.collect()
    assert alive() is None


@pytest.fixture
def ResponseBuffer():
    return httpserver.ResponseBuffer


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
        _ = out.missing
    buffer = bytearray(b"x")
    out.write(buffer)  # after the commit: passed on as it is
    assert real.writes[-1] == b"x"


@pytest.fixture
def Exchange():
    return asgi.Exchange


START = {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]}
BODY = {"type": "http.response.body", "body": b"ok"}


class Asgi:
    """The server's side of an ASGI exchange: what was sent, what receive() gives next.
    Its send and receive pass through the event loop once (as uvicorn's can)."""

    def __init__(self, *incoming, fail_on=None):
        self.sent, self.incoming, self.fail_on = [], list(incoming), fail_on

    async def send(self, message):
        await asyncio.sleep(0)
        if message is self.fail_on:
            raise OSError("the client went away")
        self.sent.append(message)

    async def receive(self):
        await asyncio.sleep(0)
        return self.incoming.pop(0)


def run(coroutine):
    return asyncio.run(coroutine)


def test_the_response_is_held_until_its_first_body_message(Exchange):
    server = Asgi()
    exchange = Exchange(server.send, server.receive, -1)
    send = exchange  # what the application is given as send: calling it is exchange.send

    async def app():
        await send(START)
        assert server.sent == [] and exchange.status == 200 and not exchange.sent
        await send({**BODY, "more_body": True})
        assert server.sent == [START, {**BODY, "more_body": True}] and exchange.sent
        await exchange.send(BODY)  # once out, straight to the server
        await exchange.commit()  # nothing left to send
    run(app())
    assert server.sent == [START, {**BODY, "more_body": True}, BODY]
    with pytest.raises(TypeError):
        send()
    with pytest.raises(TypeError):
        send(START, BODY)


def test_a_complete_5xx_is_held_until_the_commit_and_a_replay_adds_the_header(Exchange):
    server = Asgi()
    exchange = Exchange(server.send, server.receive, -1)
    error = {"type": "http.response.start", "status": 500, "headers": [(b"content-type", b"text/plain")]}
    failed = {"type": "http.response.body", "body": b"Internal Server Error"}

    async def crashed():
        await exchange.send(error)
        await exchange.send(failed)
        assert server.sent == [] and exchange.status == 500
    run(crashed())
    attempt = exchange.replay(["healed"], b"guard=key_guard; target=SETTINGS")
    assert attempt.heals == ["healed"] and attempt.status == 0 and not attempt.sent
    run(attempt.send(START))
    run(attempt.send(BODY))
    healed = {**START, "headers": [*START["headers"], (b"x-pyward-healed", b"guard=key_guard; target=SETTINGS")]}
    assert server.sent == [healed, BODY]  # the crashed attempt's 500 dropped
    assert START["headers"] == [(b"content-type", b"text/plain")]  # the application's message unchanged
    run(exchange.commit())  # an unhealed 500 goes out as the application sent it
    assert server.sent[2:] == [error, failed]


def test_a_streamed_5xx_and_messages_before_the_start_go_out_at_once(Exchange):
    server = Asgi()
    exchange = Exchange(server.send, server.receive, -1)
    push = {"type": "http.response.push", "path": "/style.css", "headers": []}
    run(exchange.send(push))
    assert server.sent == [push] and not exchange.sent
    error = {"type": "http.response.start", "status": 503, "headers": []}
    chunk = {"type": "http.response.body", "body": b"part", "more_body": True}
    run(exchange.send(error))
    run(exchange.send(chunk))
    assert server.sent == [push, error, chunk] and exchange.sent


def test_the_request_body_is_kept_up_to_the_limit_and_received_again_by_the_replay(Exchange):
    first, second = ({"type": "http.request", "body": b"12345", "more_body": more} for more in (True, False))
    server = Asgi(first, second, {"type": "http.disconnect"})
    exchange = Exchange(server.send, server.receive, 10)
    assert run(exchange.receive()) is first and run(exchange.receive()) is second and not exchange.over()
    attempt = exchange.replay([], b"")
    got = [run(attempt.receive()) for _ in range(3)]
    assert got == [first, second, {"type": "http.disconnect"}]  # the kept messages, then the server's
    again = attempt.replay([], b"")  # a second replay has them too
    assert run(again.receive()) is first

    larger = Exchange(server.send, Asgi(first, second, first).receive, 7)
    for _ in range(3):
        run(larger.receive())
    assert larger.over()
    assert run(larger.replay([], b"").commit()) is None  # nothing held: a commit does nothing
    none_kept = Exchange(server.send, Asgi(first).receive, -1)
    run(none_kept.receive())
    assert not none_kept.over()


def test_an_error_from_the_servers_send_reaches_the_application_and_stops_the_rest(Exchange):
    error = {"type": "http.response.start", "status": 500, "headers": []}
    failed = {"type": "http.response.body", "body": b"x"}
    server = Asgi(fail_on=error)
    exchange = Exchange(server.send, server.receive, -1)
    run(exchange.send(error))
    run(exchange.send(failed))
    with pytest.raises(OSError, match="the client went away"):
        run(exchange.commit())
    assert server.sent == []  # the held body is not sent after a failed start


def test_cancelling_the_application_cancels_the_servers_send(Exchange):
    steps = []

    async def send(message):
        steps.append("sending")
        try:
            await asyncio.Event().wait()  # a client that does not read
        finally:
            steps.append("send ended")

    exchange = Exchange(send, None, -1)

    async def main():
        await exchange.send(START)
        task = asyncio.ensure_future(exchange.send(BODY))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    run(main())
    assert steps == ["sending", "send ended"]


def test_awaitables_of_every_kind_are_awaited_and_a_non_awaitable_is_a_type_error(Exchange):
    sent = []

    class Later:
        def __init__(self, message):
            self.message = message

        def __await__(self):
            yield from asyncio.sleep(0).__await__()
            sent.append(self.message)

    @types.coroutine
    def old_style(message):
        yield from asyncio.sleep(0).__await__()
        sent.append(message)

    def future(message):
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        sent.append(message)
        return done

    async def main():
        for send in (Later, old_style, future):
            exchange = Exchange(send, None, -1)
            await exchange.send(START)
            await exchange.send(BODY)
        with pytest.raises(TypeError, match="can't be used in 'await' expression"):
            await Exchange(lambda message: None, None, -1).send(BODY)  # sent at once: no start held
    run(main())
    assert sent == [START, BODY] * 3


def test_what_the_servers_awaitable_yields_goes_to_the_caller_and_throw_and_close_go_to_it(Exchange):
    seen = []

    @types.coroutine
    def send(message):
        try:
            reply = yield ("to the loop", message["type"])
            seen.append(reply)
        except ValueError as exc:
            seen.append(f"caught {exc}")
            return
        finally:
            seen.append("finally")

    exchange = Exchange(send, None, -1)
    with pytest.raises(StopIteration):  # held: done at once
        exchange.send(START).__await__().send(None)
    relay = exchange.send(BODY).__await__()
    assert relay.send(None) == ("to the loop", "http.response.start")
    assert relay.send("resumed") == ("to the loop", "http.response.body")  # the start's send returned
    with pytest.raises(StopIteration):  # the inner awaitable returned, and nothing was left to send
        relay.throw(ValueError("stop"))
    assert seen == ["resumed", "finally", "caught stop", "finally"]

    closing = Exchange(send, None, -1)
    with pytest.raises(StopIteration):
        closing.send(START).__await__().send(None)
    relay = closing.send(BODY).__await__()
    assert relay.send(None) == ("to the loop", "http.response.start")
    relay.close()
    assert seen[4:] == ["finally"]  # closed where it waited
    with pytest.raises((StopIteration, RuntimeError)):  # and not resumed (a coroutine says so louder)
        relay.send(None)
    assert seen[4:] == ["finally"]


def test_the_boundary_binds_as_a_method_and_drops_only_pywards_leading_frames():
    """boundary.unwound: a method still gets its instance and its arguments; an exception leaves it
    with the traceback starting at the first frame that is not pyward's; one raised by pyward alone
    keeps its whole traceback."""
    import traceback

    from pyward.heal import boundary

    namespace = {"__name__": "pyward.integrations.fake"}
    exec("def serve(self, app, *args, **kwargs):\n    return app(self, *args, **kwargs)\n"
         "def fail(self):\n    raise LookupError('pyward itself')\n", namespace)

    class Served:
        __call__ = boundary.unwound(namespace["serve"])
        fail = boundary.unwound(namespace["fail"])

    def app(instance, a, b=0):
        if b < 0:
            raise ValueError("the application's")
        return (type(instance).__name__, a, b)

    served = Served()
    assert served(app, 1, b=2) == ("Served", 1, 2)
    assert Served.__call__.__wrapped__ is namespace["serve"]
    with pytest.raises(ValueError) as caught:
        served(app, 1, b=-1)
    names = [frame.name for frame in traceback.extract_tb(caught.value.__traceback__)]
    assert names == ["test_the_boundary_binds_as_a_method_and_drops_only_pywards_leading_frames", "app"], names
    with pytest.raises(LookupError) as caught:
        served.fail()
    assert [frame.name for frame in traceback.extract_tb(caught.value.__traceback__)][-1] == "fail"


@pytest.mark.parametrize("native", ["C", "none"])
def test_http_server_handlers_are_wrapped_once(monkeypatch, native):
    """install() leaves a class it wrapped already as it is, whether its handle_one_request is the boundary
    from C around the wrapper or (without the C extension) the wrapper itself."""
    import contextlib
    import http.server

    from pyward.heal import boundary

    if native == "none":
        monkeypatch.setattr(boundary, "native", None)

    class Heal:
        def started(self):
            return self

        def acting(self, name):
            return contextlib.nullcontext()

    handler = type("Handler", (http.server.BaseHTTPRequestHandler,), {})
    module = types.SimpleNamespace(BaseHTTPRequestHandler=handler)
    httpserver.install(Heal(), module)
    wrapped = handler.__dict__["handle_one_request"], handler.__dict__["parse_request"]
    httpserver.install(Heal(), module)
    assert (handler.__dict__["handle_one_request"], handler.__dict__["parse_request"]) == wrapped
    assert (type(wrapped[0]).__name__ == "Boundary") == (native == "C")
