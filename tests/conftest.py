import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

pytest_plugins = ["testworld.pytest_plugin"]


@dataclass
class SilentServer:
    """A real listening socket that accepts connections and never answers (a hung server:
    slower than any timeout), holding each connection it accepted."""

    port: int
    accepted: list[socket.socket] = field(default_factory=list)


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    server = SilentServer(listener.getsockname()[1])
    stop = threading.Event()

    def hold() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            server.accepted.append(conn)  # never read, never answered

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    yield server
    stop.set()
    thread.join()
    for conn in server.accepted:
        conn.close()
    listener.close()
