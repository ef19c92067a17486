"""A loopback HTTPS stand-in for Microsoft's token endpoint and Microsoft Graph, that
answers as Graph documents it (sendMail 202, messages 201, createUploadSession,
upload ranges, send 202; errors as {"error": {"code", "message"}}), and keeps what
it received."""

from __future__ import annotations

import base64
import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.helpers import Cert


@dataclass
class Scripted:
    """One reply instead of the normal one: status, headers, Graph error code."""

    status: int
    code: str = ""
    message: str = ""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class GraphState:
    token: str = "token-1"
    tokens_issued: int = 0
    sent: list[bytes] = field(default_factory=list)  # the MIME of each mail sent
    requests: list[tuple[str, str, int]] = field(default_factory=list)  # method, path, status
    script: dict[int, Scripted] = field(default_factory=dict)  # n-th sendMail -> reply
    always: Scripted | None = None  # every Graph request gets this
    send_calls: int = 0
    drafts: dict[str, dict[str, Any]] = field(default_factory=dict)
    chunks: list[int] = field(default_factory=list)  # sizes of the uploaded ranges
    auth_headers: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    state: GraphState
    base: str

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: dict[str, Any] | None = None,
               headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        with self.state.lock:
            self.state.requests.append((self.command, self.path, status))

    def _error(self, s: Scripted) -> None:
        self._reply(s.status, {"error": {"code": s.code, "message": s.message}}, s.headers)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_POST(self) -> None:
        body = self._body()
        st = self.state
        if self.path == "/token":
            with st.lock:
                st.tokens_issued += 1
            self._reply(200, {"access_token": st.token, "expires_in": 3600,
                              "token_type": "Bearer"})
            return
        if not self._authorized():
            return
        if st.always is not None:
            self._error(st.always)
            return
        parts = self.path.split("/")  # /v1.0/users/{mailbox}/...
        if parts[-1] == "sendMail":
            with st.lock:
                st.send_calls += 1
                scripted = st.script.get(st.send_calls)
            if scripted is not None:
                self._error(scripted)
                return
            assert self.headers["Content-Type"] == "text/plain"
            with st.lock:
                st.sent.append(base64.b64decode(body))
            self._reply(202)
        elif parts[-1] == "messages":
            draft = f"draft-{len(st.drafts) + 1}"
            st.drafts[draft] = {"mime": base64.b64decode(body), "upload": b"", "size": 0}
            self._reply(201, {"id": draft})
        elif parts[-1] == "createUploadSession":
            draft = parts[-3]
            item = json.loads(body)["AttachmentItem"]
            st.drafts[draft].update(size=item["size"], name=item["name"],
                                    contentType=item["contentType"])
            self._reply(201, {"uploadUrl": f"{self.base}/upload/{draft}",
                              "nextExpectedRanges": ["0-"]})
        elif parts[-1] == "send":
            with st.lock:
                st.sent.append(st.drafts[parts[-2]]["mime"])
            self._reply(202)
        else:
            self._reply(404, {"error": {"code": "NotFound", "message": self.path}})

    def do_PUT(self) -> None:
        body = self._body()
        draft = self.state.drafts[self.path.rsplit("/", 1)[-1]]
        assert "Authorization" not in self.headers  # the upload URL carries its own auth
        first, rest = self.headers["Content-Range"].removeprefix("bytes ").split("-")
        last, total = rest.split("/")
        assert int(first) == len(draft["upload"]) and int(total) == draft["size"]
        assert int(last) - int(first) + 1 == len(body)
        draft["upload"] += body
        self.state.chunks.append(len(body))
        done = len(draft["upload"]) == draft["size"]
        self._reply(201 if done else 200, {} if done else {
            "nextExpectedRanges": [f"{len(draft['upload'])}-"]})

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        with self.state.lock:
            self.state.auth_headers.add(header)
        if header != f"Bearer {self.state.token}":
            self._reply(401, {"error": {"code": "InvalidAuthenticationToken",
                                        "message": "Access token has expired or is not yet"
                                                   " valid."}})
            return False
        return True


@contextmanager
def graph_server(cert: Cert) -> Iterator[tuple[str, GraphState]]:
    """The stand-in on 127.0.0.1; yields its base URL and its state."""
    state = GraphState()
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    base = f"https://127.0.0.1:{srv.server_address[1]}"
    handler = type("Handler", (_Handler,), {"state": state, "base": base})
    srv.RequestHandlerClass = handler
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert.cert), str(cert.key))
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield base, state
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(10)
