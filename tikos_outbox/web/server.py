"""Serving the console with uvicorn: in the foreground (`tikos-outbox web`) or on a
thread beside the service loop (`run` with `[web] enabled = true`)."""

from __future__ import annotations

import logging
import socket
import threading

import uvicorn

from tikos_outbox.core.settings import WebSettings
from tikos_outbox.web.app import ConsoleApp
from tikos_outbox.wiring import Outbox

log = logging.getLogger("tikos_outbox")


class WebServer:
    def __init__(self, outbox: Outbox, settings: WebSettings, host: str | None = None,
                 port: int | None = None) -> None:
        self.settings = settings
        self.host = host or settings.host
        self.port = settings.port if port is None else port
        cert, key = settings.cert_file, settings.key_file
        self.app = ConsoleApp(outbox, settings)
        self.server = uvicorn.Server(uvicorn.Config(
            self.app.asgi(), host=self.host, port=self.port, log_config=None,
            access_log=False, lifespan="off", server_header=False, proxy_headers=False,
            ssl_certfile=str(cert) if cert else None, ssl_keyfile=str(key) if key else None))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.settings.tls else 'http'}://{host}:{self.port}/"

    def bind(self) -> socket.socket:
        """The listening socket, bound now: a port in use is said at once, and a client
        may connect before the server's loop has started (it waits in the backlog)."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise OSError(f"the web console cannot listen on {self.host}:{self.port}:"
                          f" {exc.strerror or exc}") from None
        sock.listen(128)
        self.port = sock.getsockname()[1]
        return sock

    def serve(self, sock: socket.socket | None = None) -> None:
        """Until stopped (Ctrl+C, SIGTERM, or `stop`)."""
        sock = sock or self.bind()
        log.info("web console at %s", self.url)
        self.server.run(sockets=[sock])

    def start(self) -> None:
        sock = self.bind()
        self._thread = threading.Thread(target=self.serve, args=(sock,), name="web",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout_s)
