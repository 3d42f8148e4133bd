"""A small RFC 6455 WebSocket server on the stdlib: handshake, masked client frames,
fragmentation, ping/pong, close codes. One reader thread per connection; any thread may send.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import socket
import struct
import threading
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger("cryptomon.replay")

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MAX_MESSAGE = 1 << 20


class ConnectionClosed(Exception):
    pass


def _unmask(payload: bytes, mask: bytes) -> bytes:
    n = len(payload)
    if not n:
        return payload
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
    n = len(payload)
    first = (0x80 if fin else 0) | opcode
    if n < 126:
        header = struct.pack(">BB", first, n)
    elif n < 1 << 16:
        header = struct.pack(">BBH", first, 126, n)
    else:
        header = struct.pack(">BBQ", first, 127, n)
    return header + payload


class WSConnection:
    def __init__(self, sock: socket.socket, path: str, headers: dict[str, str]) -> None:
        self.sock = sock
        self.path = path
        self.headers = headers
        self.closed = threading.Event()
        self._send_lock = threading.Lock()
        url = urlsplit(path)
        self.route = url.path
        self.query = parse_qs(url.query)

    # --- sending -----------------------------------------------------------------------
    def _send(self, data: bytes) -> None:
        if self.closed.is_set():
            raise ConnectionClosed()
        try:
            with self._send_lock:
                self.sock.sendall(data)
        except OSError as exc:
            self.closed.set()
            raise ConnectionClosed(str(exc)) from None

    def send_text(self, text: str) -> None:
        self._send(frame(OP_TEXT, text.encode()))

    def send_frames(self, texts: list[str]) -> None:
        """Many text messages in one syscall (bursts at high replay rates)."""
        self._send(b"".join(frame(OP_TEXT, t.encode()) for t in texts))

    def send_binary(self, data: bytes) -> None:
        self._send(frame(OP_BINARY, data))

    def send_raw_bytes(self, data: bytes) -> None:
        """Anything at all on the wire (for protocol-violation tests)."""
        self._send(data)

    def ping(self, payload: bytes = b"") -> None:
        self._send(frame(OP_PING, payload))

    def pong(self, payload: bytes = b"") -> None:
        self._send(frame(OP_PONG, payload))

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Send a close frame, then end the TCP connection."""
        if not self.closed.is_set():
            try:
                self._send(frame(OP_CLOSE, struct.pack(">H", code) + reason.encode()[:120]))
            except ConnectionClosed:
                pass
        self.abort()

    def abort(self) -> None:
        """Drop the TCP connection without a close frame (a network failure)."""
        self.closed.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    # --- receiving ---------------------------------------------------------------------
    def _recv_exact(self, n: int) -> bytes:
        chunks = []
        while n:
            try:
                chunk = self.sock.recv(n)
            except OSError as exc:
                raise ConnectionClosed(str(exc)) from None
            if not chunk:
                raise ConnectionClosed("eof")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def recv_frame(self) -> tuple[int, bytes, bool]:
        b1, b2 = self._recv_exact(2)
        fin, opcode, masked, n = bool(b1 & 0x80), b1 & 0x0F, b2 & 0x80, b2 & 0x7F
        if n == 126:
            (n,) = struct.unpack(">H", self._recv_exact(2))
        elif n == 127:
            (n,) = struct.unpack(">Q", self._recv_exact(8))
        if not masked:
            self.close(1002, "client frames must be masked")
            raise ConnectionClosed("unmasked client frame")
        if n > MAX_MESSAGE:
            self.close(1009, "message too big")
            raise ConnectionClosed("message too big")
        mask = self._recv_exact(4)
        return opcode, _unmask(self._recv_exact(n), mask), fin

    def recv_message(self) -> tuple[int, bytes]:
        """Next message: (OP_TEXT|OP_BINARY, data) or a control frame (OP_PING/OP_PONG/OP_CLOSE)."""
        parts: list[bytes] = []
        first_op = None
        while True:
            opcode, data, fin = self.recv_frame()
            if opcode >= 0x8:
                return opcode, data
            if opcode != OP_CONT:
                first_op = opcode
            parts.append(data)
            if fin:
                return first_op or OP_TEXT, b"".join(parts)


Handler = Callable[[WSConnection], None]
# A plain HTTP GET (the exchange's REST symbol list): path -> (status, JSON body).
HttpHandler = Callable[[str], tuple[int, bytes]]
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests", 500: "Internal Server Error"}


class WSServer:
    """Accepts WebSocket connections and runs `handler(conn)` on a thread per connection.

    `http` answers plain GET requests on the same port (the REST symbol lists); `admit` is
    asked before each WebSocket handshake and may refuse it (HTTP 429, a connection-rate limit).
    """

    def __init__(self, handler: Handler, host: str = "127.0.0.1", port: int = 0,
                 http: HttpHandler | None = None, admit: Callable[[], bool] | None = None) -> None:
        self.handler = handler
        self.http = http
        self.admit = admit
        self._sock = socket.create_server((host, port), reuse_port=False)
        self.host, self.port = self._sock.getsockname()[:2]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connections: list[WSConnection] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    def start(self) -> WSServer:
        self._thread = threading.Thread(target=self._accept_loop, name=f"ws-accept-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        try:
            self._sock.close()
        except OSError:
            pass
        with self._lock:
            conns = list(self.connections)
        for conn in conns:
            conn.abort()
        if self._thread:
            self._thread.join(5)

    def live(self) -> list[WSConnection]:
        with self._lock:
            self.connections = [c for c in self.connections if not c.closed.is_set()]
            return list(self.connections)

    def _accept_loop(self) -> None:
        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                sock, _addr = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        sock.settimeout(10)
        try:
            conn = self._handshake(sock)
        except (OSError, ValueError) as exc:
            log.debug("handshake failed: %s", exc)
            sock.close()
            return
        if conn is None:
            return
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self.connections.append(conn)
        try:
            self.handler(conn)
        except ConnectionClosed:
            pass
        except Exception:  # one broken connection must not stop the server
            log.exception("handler failed")
        finally:
            conn.abort()

    def _handshake(self, sock: socket.socket) -> WSConnection | None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk or len(data) > 16384:
                raise ValueError("incomplete HTTP request")
            data += chunk
        head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
        request, *lines = head.split("\r\n")
        method, path, _version = request.split(" ", 2)
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        key = headers.get("sec-websocket-key")
        upgrade = headers.get("upgrade", "").lower() == "websocket"
        if method == "GET" and not upgrade and self.http is not None:
            status, body = self.http(path)
            self._respond(sock, status, body)
            return None
        if method != "GET" or not upgrade or not key:
            self._respond(sock, 400, b"")
            return None
        if self.admit is not None and not self.admit():
            self._respond(sock, 429, b'{"code":-1003,"msg":"Too many connection attempts."}')
            return None
        accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        sock.sendall(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept}\r\n\r\n".encode()
        )
        return WSConnection(sock, path, headers)

    @staticmethod
    def _respond(sock: socket.socket, status: int, body: bytes) -> None:
        head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n")
        try:
            sock.sendall(head.encode() + body)
        finally:
            sock.close()
