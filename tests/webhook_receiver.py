"""A test webhook receiver: a real HTTP server on 127.0.0.1 (stdlib, in a thread) that records every
delivery and answers with scripted statuses (then 200), optionally holding an answer back."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float
    status: int  # what the receiver answered (or was about to, for a held answer)


class WebhookReceiver:
    """``url`` takes POSTs; ``fail(n)`` answers the next ``n`` with 500; ``hold(s)`` delays the next answer."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._received: list[Received] = []
        self._statuses: list[int] = []
        self._hold_s = 0.0
        self._release = threading.Event()  # set by stop(): held answers go out at once
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver._cond:
                    status = receiver._statuses.pop(0) if receiver._statuses else 200
                    hold, receiver._hold_s = receiver._hold_s, 0.0
                    receiver._received.append(Received({k.lower(): v for k, v in self.headers.items()}, body,
                                                       time.time(), status))  # fmt: skip
                    receiver._cond.notify_all()
                if hold:
                    receiver._release.wait(hold)
                try:
                    self.send_response(status)
                    self.send_header("content-length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except OSError:
                    pass  # the sender gave up (or died) while the answer was held

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = False  # server_close() joins the handlers: no socket outlives stop()
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook-receiver", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks"

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def fail(self, n: int, status: int = 500) -> None:
        with self._cond:
            self._statuses.extend([status] * n)

    def hold(self, seconds: float) -> None:
        with self._cond:
            self._hold_s = seconds

    @property
    def received(self) -> list[Received]:
        with self._cond:
            return list(self._received)

    def wait_for(self, n: int, timeout: float = 15.0) -> list[Received]:
        """The first ``n`` deliveries received, waiting for them up to ``timeout``; fails if they don't come."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._received) >= n, timeout):
                raise AssertionError(f"{len(self._received)} webhook deliveries arrived, expected {n}")
            return list(self._received)
