"""A request body kept for a replay (wsgi.py, httpserver.py).

`BodyRecorder` wraps the stream the handler reads and keeps what it reads,
up to a limit; `replay()` gives the next attempt those bytes first, then the
rest of the real stream, which is never read twice.
"""
from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class BodyRecorder:
    """A request body stream that keeps what the handler reads (up to a
    limit), so a replay reads the same bytes without touching the socket again."""

    __slots__ = ("stream", "kept", "limit", "over")

    def __init__(self, stream: Any, limit: int) -> None:
        self.stream, self.limit, self.kept, self.over = stream, limit, bytearray(), False

    def _keep(self, data: bytes) -> bytes:
        if not self.over:
            if len(self.kept) + len(data) > self.limit:
                self.over, self.kept = True, bytearray()
            else:
                self.kept += data
        return data

    def read(self, *args: Any) -> bytes:
        return self._keep(self.stream.read(*args))

    def read1(self, *args: Any) -> bytes:
        return self._keep(self.stream.read1(*args))

    def readline(self, *args: Any) -> bytes:
        return self._keep(self.stream.readline(*args))

    def readlines(self, hint: int = -1) -> list[bytes]:
        return [self._keep(line) for line in self.stream.readlines(hint)]

    def readinto(self, buffer: Any) -> int:
        n = self.stream.readinto(buffer)
        if n:
            self._keep(bytes(memoryview(buffer)[:n]))
        return n

    def __iter__(self) -> Any:
        return iter(self.readline, b"")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)

    def replay(self) -> BodyReplay:
        return BodyReplay(bytes(self.kept), self.stream)


class BodyReplay:
    """The kept bytes first, then the rest of the real stream (never re-read)."""

    __slots__ = ("kept", "pos", "stream")

    def __init__(self, kept: bytes, stream: Any) -> None:
        self.kept, self.pos, self.stream = kept, 0, stream

    def read(self, size: int | None = -1) -> bytes:
        left = self.kept[self.pos:]
        if size is None or size < 0:
            self.pos = len(self.kept)
            return left + self.stream.read()
        if left:
            chunk = left[:size]
            self.pos += len(chunk)
            return chunk
        return self.stream.read(size)

    read1 = read

    def readline(self, size: int | None = -1) -> bytes:
        limit = -1 if size is None or size < 0 else size
        if self.pos < len(self.kept):
            end = self.kept.find(b"\n", self.pos)
            end = len(self.kept) if end < 0 else end + 1
            if limit >= 0:
                end = min(end, self.pos + limit)
            line = self.kept[self.pos:end]
            self.pos = end
            if line.endswith(b"\n") or len(line) == limit or self.pos < len(self.kept):
                return line
            # the kept bytes end inside the line: the rest of it is still in the stream
            return line + self.stream.readline(-1 if limit < 0 else limit - len(line))
        return self.stream.readline(limit)

    def readlines(self, hint: int = -1) -> list[bytes]:
        return list(iter(self.readline, b""))

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def __iter__(self) -> Any:
        return iter(self.readline, b"")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)
