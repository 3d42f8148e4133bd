"""The WebSocket transport against a local server: a close that arrives between two of our
messages ends the session with a TransportError (a reconnect), never a websockets exception
that would end the producer's feed."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator

import pytest
from cryptomon.producer.transport import TransportError, WSConnection
from websockets.sync.server import ServerConnection, serve


@pytest.fixture
def closing_server() -> Iterator[str]:
    """Sends one message, then closes with code 1000."""

    def handler(ws: ServerConnection) -> None:
        ws.send('{"hello": 1}')
        ws.close(1000)

    # The server logs on its own thread; keep that out of handlers other tests left on the root
    # logger (their streams are closed by then).
    quiet = logging.getLogger("test.ws-server")
    quiet.propagate = False
    quiet.addHandler(logging.NullHandler())
    with serve(handler, "127.0.0.1", 0, logger=quiet) as server:
        t = threading.Thread(target=server.serve_forever, daemon=True)
        t.start()
        host, port = server.socket.getsockname()[:2]
        yield f"ws://{host}:{port}/"
        server.shutdown()
    t.join(5)


def test_send_after_the_server_closed_raises_a_transport_error(closing_server: str) -> None:
    ws = WSConnection(closing_server, timeout=5)
    ws.settimeout(5)
    got: list[bytes] = []
    with pytest.raises(TransportError) as exc:
        while True:  # the message comes first, then the close
            got.extend(ws.receive())
            ws.send_text('{"method": "SUBSCRIBE"}')
    assert got == [b'{"hello": 1}']
    assert exc.value.clean and exc.value.close_code == 1000
    with pytest.raises(TransportError):  # and stays ended
        ws.send_text("again")
    ws.close()
