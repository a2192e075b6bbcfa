"""The load generator of bench/serve.py, run in its own process.

    python bench/_load.py PORTS REQUESTS CONNECTIONS CRASH_EVERY BATCH

Sends REQUESTS GET requests to each server of PORTS (comma-separated), in
batches of BATCH taken in turn from each server, so that a slow moment of
the machine hits every server alike; which server goes first changes from
one batch to the next.  Each server is loaded over
CONNECTIONS keep-alive connections (a new one when the server closes one).
Request number i of a server goes to a crash path when i % CRASH_EVERY == 0,
else to /user/ann.  Prints one JSON object per server, in PORTS order:
seconds spent in its batches, statuses, connection errors (a connection
closed or reset before a complete response, or a malformed one), responses
with X-Pyward-Healed.
"""
from __future__ import annotations

import json
import socket
import sys
import threading
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

CRASH_PATHS = ("/user/bob", "/ratio/1/0", "/setting/font")


class Target:
    """One server under load: its keep-alive connections, each driven by a
    worker thread that lives for the whole run, so that a batch costs only
    waking the workers (thread starts would weigh on short batches)."""

    def __init__(self, port: int, connections: int) -> None:
        self.port = port
        self.stats = {"seconds": 0.0, "statuses": {}, "errors": 0, "healed_header": 0}
        self.lock = threading.Lock()
        self.indices: Iterator[int] | None = None  # the batch's request numbers; None: the workers end
        self.every = 1
        self.go = threading.Semaphore(0)
        self.done = threading.Semaphore(0)
        self.workers = [threading.Thread(target=self.work, daemon=True) for _ in range(connections)]
        for worker in self.workers:
            worker.start()

    def batch(self, first: int, count: int, every: int) -> None:
        self.indices, self.every = iter(range(first, first + count)), every
        start = time.perf_counter()
        self.go.release(len(self.workers))
        for _ in self.workers:
            self.done.acquire()
        self.stats["seconds"] += time.perf_counter() - start

    def close(self) -> None:
        self.indices = None
        self.go.release(len(self.workers))
        for worker in self.workers:
            worker.join()

    def work(self) -> None:
        sock: socket.socket | None = None
        buffer = b""
        while True:
            self.go.acquire()
            if self.indices is None:
                break
            while True:
                with self.lock:
                    i = next(self.indices, None)
                if i is None:
                    break
                sock, buffer = self.request(sock, buffer, i)
            self.done.release()
        if sock is not None:
            sock.close()

    def request(self, sock: socket.socket | None, buffer: bytes, i: int) -> tuple[socket.socket | None, bytes]:
        """Request number i over `sock` (a new connection when None): the connection to go on with."""
        every = self.every
        path = CRASH_PATHS[(i // every) % len(CRASH_PATHS)] if i % every == 0 else "/user/ann"
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
        try:
            if sock is None:
                sock, buffer = socket.create_connection(("127.0.0.1", self.port), timeout=30), b""
            sock.sendall(request)
            status, head, buffer = read_response(sock, buffer)
        except (OSError, ValueError, IndexError):  # closed, reset, or a malformed response: counted, not fatal
            with self.lock:
                self.stats["errors"] += 1
            if sock is not None:
                sock.close()
            return None, b""
        with self.lock:
            statuses = self.stats["statuses"]
            statuses[status] = statuses.get(status, 0) + 1
            self.stats["healed_header"] += b"x-pyward-healed:" in head
        if b"connection: close" in head or head.startswith(b"http/1.0"):
            sock.close()
            return None, b""
        return sock, buffer


def read_response(sock: socket.socket, buffer: bytes) -> tuple[str, bytes, bytes]:
    """(status code, lower-cased head, bytes after the response); OSError when the connection ends early."""
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed before a complete response")
        buffer += data
    head, _, rest = buffer.partition(b"\r\n\r\n")
    head = head.lower()
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line.startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    while len(rest) < length:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed before a complete response")
        rest += data
    return head.split(b" ", 2)[1].decode(), head, rest[length:]


def main() -> None:
    ports = [int(p) for p in sys.argv[1].split(",")]
    total, connections, every, size = (int(a) for a in sys.argv[2:6])
    targets = [Target(port, connections) for port in ports]
    for number, first in enumerate(range(0, total, size)):
        # Rotate which server goes first: whichever runs second in a batch
        # finds the machine warmer (an A/A run favoured it by ~1.5%).
        shift = number % len(targets)
        for target in targets[shift:] + targets[:shift]:
            target.batch(first, min(size, total - first), every)
    for target in targets:
        target.close()
        print(json.dumps(target.stats))


if __name__ == "__main__":
    main()
