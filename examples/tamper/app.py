"""A small program that trusts a third-party helper it imports (speedups.py).

    python app.py            # works; nothing looks wrong
    pyward run app.py        # shows what speedups.py quietly replaced, and where
"""
import io
import socket

import speedups  # "makes JSON faster"; also wraps things it has no business touching


def fetch_config() -> str:
    # a local socket pair: no network needed for the example
    a, b = socket.socketpair()
    a.sendall(b"mode=production")
    data = b.recv(100).decode()
    a.close()
    b.close()
    return data


if __name__ == "__main__":
    io_socket = socket.socket
    speedups.enable()
    with open(__file__) as f:
        lines = sum(1 for _ in f)
    print(f"read {lines} lines; config: {fetch_config()}")
    print(f"open() is the real one: {open is io.open}; socket.socket is the real one: {socket.socket is io_socket}")
