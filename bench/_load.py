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
closed or reset before a complete response), responses with X-Pyward-Healed.
"""
from __future__ import annotations

import json
import socket
import sys
import threading
import time

CRASH_PATHS = ("/user/bob", "/ratio/1/0", "/setting/font")


class Target:
    def __init__(self, port: int, connections: int) -> None:
        self.port = port
        self.socks: list[tuple[socket.socket | None, bytes]] = [(None, b"")] * connections
        self.stats = {"seconds": 0.0, "statuses": {}, "errors": 0, "healed_header": 0}
        self.lock = threading.Lock()


def batch(target: Target, first: int, count: int, every: int) -> None:
    indices = iter(range(first, first + count))
    lock = threading.Lock()

    def worker(slot: int) -> None:
        sock, buffer = target.socks[slot]
        while True:
            with lock:
                i = next(indices, None)
            if i is None:
                break
            path = CRASH_PATHS[(i // every) % len(CRASH_PATHS)] if i % every == 0 else "/user/ann"
            request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
            try:
                if sock is None:
                    sock, buffer = socket.create_connection(("127.0.0.1", target.port), timeout=30), b""
                sock.sendall(request)
                status, head, buffer = read_response(sock, buffer)
            except OSError:
                with target.lock:
                    target.stats["errors"] += 1
                if sock is not None:
                    sock.close()
                sock = None
                continue
            with target.lock:
                statuses = target.stats["statuses"]
                statuses[status] = statuses.get(status, 0) + 1
                target.stats["healed_header"] += b"x-pyward-healed:" in head
            if b"connection: close" in head or head.startswith(b"http/1.0"):
                sock.close()
                sock = None
        target.socks[slot] = (sock, buffer)

    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(slot,)) for slot in range(len(target.socks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    target.stats["seconds"] += time.perf_counter() - start


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
            batch(target, first, min(size, total - first), every)
    for target in targets:
        for sock, _ in target.socks:
            if sock is not None:
                sock.close()
        print(json.dumps(target.stats))


if __name__ == "__main__":
    main()
