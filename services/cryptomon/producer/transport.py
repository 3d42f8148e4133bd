"""A blocking WebSocket client connection on the `websockets` library's Sans-I/O protocol.

Why not websocket-client: it reads each frame with two or more small recv() calls and builds
an object per frame, about 18 µs per small frame on the development VM, which alone caps one
process at ~55k frames/s (Binance sends one trade per frame). Here the socket is read in large
chunks and `websockets.client.ClientProtocol` parses the frames (about 6 µs each), answers
pings, validates close frames and enforces the message-size cap (close code 1009) before a
payload is buffered. One connection belongs to one thread.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterable

from websockets.client import ClientProtocol
from websockets.exceptions import InvalidState, InvalidURI, PayloadTooBig
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

_READ = 1 << 18  # bytes per recv(): many frames per system call at high rates


class TransportError(Exception):
    """The connection cannot go on; `reason` is one line for the log."""

    def __init__(self, reason: str, close_code: int | None = None, clean: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.close_code = close_code
        self.clean = clean  # the server closed with a close frame (1000/1001)


class FrameTooLarge(TransportError):
    """An incoming message exceeded the size cap."""


def check_url(url: str) -> None:
    """Raise ValueError when `url` is not a ws:// or wss:// URL this client can open."""
    try:
        uri = parse_uri(url)
    except InvalidURI as exc:
        raise ValueError(str(exc)) from None
    if not uri.host:
        raise ValueError("no host")


class WSConnection:
    def __init__(self, url: str, *, timeout: float = 10.0, max_size: int = 4 << 20) -> None:
        self.url = url
        self.max_size = max_size
        uri = parse_uri(url)
        try:
            sock = socket.create_connection((uri.host, uri.port), timeout=timeout)
        except OSError as exc:
            raise TransportError(f"connect to {url} failed: {exc.__class__.__name__}: {exc}") from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if uri.secure:
                sock = ssl.create_default_context().wrap_socket(sock, server_hostname=uri.host)
        except (OSError, ssl.SSLError) as exc:
            sock.close()
            raise TransportError(f"TLS to {url} failed: {exc}") from None
        self.sock = sock
        self.protocol = ClientProtocol(uri, max_size=max_size)
        self._fragments: list[bytes] = []
        self._pending: list[Frame] = []
        self._error: TransportError | None = None  # raised by the next receive()
        self.pings = 0  # pings received (the protocol answers them)
        try:
            self._handshake(timeout)
        except BaseException:
            self.abort()
            raise

    # --- opening handshake ---------------------------------------------------------------
    def _handshake(self, timeout: float) -> None:
        p = self.protocol
        p.send_request(p.connect())
        self._flush()
        self.sock.settimeout(timeout)
        while True:
            try:
                data = self._recv()
            except TimeoutError:
                raise TransportError(f"handshake with {self.url} timed out after {timeout:.0f}s") from None
            if not data:
                raise TransportError(f"handshake with {self.url} failed: connection closed")
            p.receive_data(data)
            events = p.events_received()
            if p.handshake_exc is not None:
                raise TransportError(f"handshake with {self.url} failed: {p.handshake_exc}")
            if events and isinstance(events[0], Response):
                self._pending = [e for e in events[1:] if isinstance(e, Frame)]
                return

    # --- I/O -----------------------------------------------------------------------------
    def _recv(self) -> bytes:
        try:
            return self.sock.recv(_READ)
        except TimeoutError:
            raise
        except (OSError, ssl.SSLError) as exc:
            raise TransportError(f"connection lost: {exc.__class__.__name__}: {exc}") from None

    def _flush(self) -> None:
        out = self.protocol.data_to_send()
        if out:
            data = b"".join(out)
            if data:
                try:
                    self.sock.sendall(data)
                except OSError as exc:
                    raise TransportError(f"connection lost: {exc.__class__.__name__}: {exc}") from None

    def settimeout(self, timeout: float) -> None:
        self.sock.settimeout(timeout)

    def send_text(self, text: str) -> None:
        """Raises TransportError when the connection is closing or gone: a server may close
        between two of our subscribe messages, and that is a reconnect, not a crash."""
        if self._error is not None:
            raise self._error
        try:
            self.protocol.send_text(text.encode())
        except InvalidState:
            self._error = self._closed()
            raise self._error from None
        self._flush()

    def receive(self) -> list[bytes]:
        """Messages received within the socket timeout (possibly none).

        Raises TransportError when the connection ended, FrameTooLarge when a message
        exceeds the cap (the connection is then closed with code 1009). Messages that came
        before a close frame are returned first; the next call raises."""
        if self._error is not None:
            raise self._error
        if self._pending:
            frames, self._pending = self._pending, []
            return self._messages(frames)
        try:
            data = self._recv()
        except TimeoutError:
            return []
        p = self.protocol
        if not data:
            p.receive_eof()
            return self._messages(p.events_received(), eof=True)
        p.receive_data(data)
        self._flush()  # pongs to the server's pings, our half of a closing handshake
        return self._messages(p.events_received())

    def _messages(self, frames: Iterable[Frame], eof: bool = False) -> list[bytes]:
        out: list[bytes] = []
        fragments = self._fragments
        for frame in frames:
            op = frame.opcode
            if op is Opcode.TEXT or op is Opcode.BINARY:
                if frame.fin:
                    out.append(frame.data)
                else:
                    fragments.append(frame.data)
            elif op is Opcode.CONT:
                fragments.append(frame.data)
                if frame.fin:
                    out.append(b"".join(fragments))
                    fragments.clear()
            elif op is Opcode.PING:
                self.pings += 1
            elif op is Opcode.CLOSE:
                self._error = self._closed()
        exc = self.protocol.parser_exc
        if isinstance(exc, PayloadTooBig):
            self._flush()  # our close frame, code 1009
            raise FrameTooLarge(f"incoming message larger than {self.max_size} bytes ({exc})", 1009)
        if (exc is not None or eof) and self._error is None:
            self._error = self._closed()
        if not out and self._error is not None:
            raise self._error
        return out

    def _closed(self) -> TransportError:
        p = self.protocol
        rcvd = p.close_rcvd
        if rcvd is None:
            detail = f": {p.parser_exc}" if p.parser_exc is not None else ""
            return TransportError(f"connection lost without a close frame{detail}")
        return TransportError(f"server closed the connection (code {rcvd.code} {rcvd.reason!r})",
                              close_code=rcvd.code, clean=rcvd.code in (1000, 1001))

    def close(self, code: int = 1000) -> None:
        """Best-effort closing handshake, then the socket goes."""
        try:
            if self.protocol.close_sent is None and self.protocol.close_rcvd is None:
                self.protocol.send_close(code)
                self._flush()
        except Exception:  # noqa: BLE001 - the peer may be gone already
            pass
        self.abort()

    def abort(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
