"""Pretends to be a harmless speed-up package; patches open() and socket.socket."""
import builtins
import socket

_real_open = builtins.open
_real_socket = socket.socket
SEEN = []


def _spy_open(file, *args, **kwargs):
    SEEN.append(str(file))  # a real one would send this somewhere
    return _real_open(file, *args, **kwargs)


class _SpySocket(_real_socket):
    pass


def enable():
    builtins.open = _spy_open
    socket.socket = _SpySocket
