"""The raw limit: a minimal hand-written RESP client on a blocking socket.

No reconnection, no error handling beyond "fail loudly", no validation: the
least Python that can move the same bytes. Every baseline figure called
"raw" in the report comes from here, so the project's figures read as a
fraction of what Python on this machine can do at all.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from urllib.parse import urlsplit


def command(*parts: bytes) -> bytes:
    """One RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)


def connect(url: str) -> socket.socket:
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class RawWriter:
    """Pipelined writes; replies (all integers here) are counted, not parsed."""

    def __init__(self, url: str) -> None:
        self.sock = connect(url)
        self.sent = 0
        self.replies = 0
        self._tail = b""

    def send(self, buf: bytes, commands: int) -> None:
        self.sock.sendall(buf)
        self.sent += commands
        self._drain(blocking=False)

    def _drain(self, blocking: bool) -> None:
        flags = 0 if blocking else socket.MSG_DONTWAIT
        while True:
            try:
                data = self.sock.recv(1 << 20, flags)
            except BlockingIOError:
                return
            if not data:
                raise ConnectionError("redis closed the connection")
            if data.startswith(b"-") or b"\r\n-" in data:
                raise RuntimeError(f"redis error: {data[:200]!r}")
            data = self._tail + data
            self.replies += data.count(b"\r\n")
            self._tail = b"" if data.endswith(b"\r\n") else data[data.rfind(b"\r\n") + 2:]
            if not blocking or self.replies >= self.sent:
                return

    def wait_all(self) -> None:
        while self.replies < self.sent:
            self._drain(blocking=True)

    def close(self) -> None:
        self.sock.close()


class RawSubscriber:
    """Subscribes and hands each message's (channel, payload) to a callback, parsing RESP by hand."""

    def __init__(self, url: str, channels: list[bytes]) -> None:
        self.sock = connect(url)
        self.sock.sendall(command(b"SUBSCRIBE", *channels))
        self._buf = b""
        self._confirmations = len(channels)

    def wait_subscribed(self) -> None:
        while self._confirmations:
            self._buf += self.sock.recv(1 << 16)
            while self._confirmations and self._buf.count(b"\r\n") >= 6:
                # *3 $9 subscribe $n channel :n  -> 6 lines
                for _ in range(6):
                    self._buf = self._buf[self._buf.index(b"\r\n") + 2:]
                self._confirmations -= 1

    def read(self, callback: Callable[[bytes, bytes], bool]) -> None:
        """Call ``callback(channel, data)`` for every message; stop when it returns True."""
        buf = self._buf
        recv = self.sock.recv
        pos = 0
        while True:
            chunk = recv(1 << 20)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            buf = buf[pos:] + chunk if pos < len(buf) else chunk
            pos = 0
            end = len(buf)
            while True:
                # b"*3\r\n$7\r\nmessage\r\n$" is 18 bytes
                if end - pos < 18:
                    break
                i = buf.find(b"\r\n", pos + 18)
                if i < 0:
                    break
                clen = int(buf[pos + 18:i])
                c0 = i + 2
                c1 = c0 + clen
                if c1 + 3 > end:
                    break
                j = buf.find(b"\r\n", c1 + 3)
                if j < 0:
                    break
                dlen = int(buf[c1 + 3:j])
                d0 = j + 2
                d1 = d0 + dlen
                if d1 + 2 > end:
                    break
                pos = d1 + 2
                if callback(buf[c0:c1], buf[d0:d1]):
                    self._buf = buf[pos:]
                    return

    def close(self) -> None:
        self.sock.close()
