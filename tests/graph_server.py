"""A loopback HTTPS stand-in for Microsoft's token endpoint and Microsoft Graph, that
answers as Graph documents it and keeps what it received:

- the token endpoint issues one token per scope (an unknown scope: 400 invalid_scope),
  and Graph takes only the token issued for its own scope (the audience);
- sendMail 202; a draft 201; a file attachment 201; createUploadSession 201, but 400
  ErrorAttachmentSizeShouldNotBeLessThanMinimumSize under 3 MB; upload ranges 200, the
  last 201; send 202; DELETE of a draft 204; a request body over 4 MB 413;
- errors as {"error": {"code", "message"}}; a scripted reply can also be a redirect
  (with its Location) or no answer at all (the connection closed)."""

from __future__ import annotations

import base64
import json
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.helpers import Cert, serving_tls

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
OUTLOOK_SCOPE = "https://outlook.office365.com/.default"
#: Graph's limit for one request, and the smallest attachment an upload session takes
REQUEST_LIMIT = 4 * 1024 * 1024
UPLOAD_MINIMUM = 3 * 1024 * 1024


@dataclass
class Scripted:
    """One reply instead of the normal one: status, headers, Graph error code; with
    `drop`, no reply at all (the connection is closed)."""

    status: int = 0
    code: str = ""
    message: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False


@dataclass
class GraphState:
    token: str = "stand-in-graph-token-Qm9rZ3Jh"  # issued for Graph's scope, taken by Graph
    outlook_token: str = "stand-in-outlook-token-T3V0bG9v"  # for Exchange Online's scope
    tokens_issued: int = 0
    scopes: list[str] = field(default_factory=list)  # the scope of each token request
    sent: list[bytes] = field(default_factory=list)  # the MIME of each mail sent
    requests: list[tuple[str, str, int]] = field(default_factory=list)  # method, path, status
    script: dict[int, Scripted] = field(default_factory=dict)  # n-th sendMail -> reply
    queue: dict[str, list[Scripted]] = field(default_factory=dict)  # step -> next replies
    always: Scripted | None = None  # every Graph request gets this
    send_calls: int = 0
    drafts: dict[str, dict[str, Any]] = field(default_factory=dict)
    chunks: list[int] = field(default_factory=list)  # sizes of the uploaded ranges
    auth_headers: set[str] = field(default_factory=set)
    elsewhere: list[tuple[str, str, str]] = field(default_factory=list)  # GET: path, auth
    lock: threading.Lock = field(default_factory=threading.Lock)

    def token_for(self, scope: str) -> str | None:
        return {GRAPH_SCOPE: self.token, OUTLOOK_SCOPE: self.outlook_token}.get(scope)

    def open_drafts(self) -> list[dict[str, Any]]:
        return [d for d in self.drafts.values() if d["status"] == "draft"]


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

    def _error(self, status: int, code: str, message: str,
               headers: dict[str, str] | None = None) -> None:
        self._reply(status, {"error": {"code": code, "message": message}}, headers)

    def _scripted(self, s: Scripted | None) -> bool:
        """Answers as scripted (True), or leaves the normal answer to the caller."""
        if s is None:
            return False
        if s.drop:
            with self.state.lock:
                self.state.requests.append((self.command, self.path, 0))
            self.close_connection = True
            return True
        self._error(s.status, s.code, s.message, s.headers)
        return True

    def _next(self, step: str) -> Scripted | None:
        with self.state.lock:
            queue = self.state.queue.get(step) or []
            return queue.pop(0) if queue else None

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _draft(self, draft_id: str) -> dict[str, Any] | None:
        draft = self.state.drafts.get(draft_id)
        if draft is None or draft["status"] != "draft":
            self._error(404, "ErrorItemNotFound", "The specified object was not found in the"
                                                  " store.")
            return None
        return draft

    def do_POST(self) -> None:
        body = self._body()
        st = self.state
        if self.path == "/token":
            self._token(body)
            return
        if not self._authorized():
            return
        if self._scripted(st.always):
            return
        parts = self.path.split("/")  # /v1.0/users/{mailbox}/...
        step = parts[-1] if parts[-1] in ("sendMail", "messages", "attachments",
                                          "createUploadSession", "send") else ""
        if step == "sendMail":
            with st.lock:
                st.send_calls += 1
                scripted = st.script.get(st.send_calls)
            if self._scripted(scripted):
                return
        if self._scripted(self._next(step)):
            return
        if len(body) > REQUEST_LIMIT:
            self._error(413, "RequestEntityTooLarge", "The request size exceeds the maximum"
                                                      " limit.")
        elif step == "sendMail":
            assert self.headers["Content-Type"] == "text/plain"
            with st.lock:
                st.sent.append(base64.b64decode(body))
            self._reply(202)
        elif step == "messages":
            with st.lock:
                draft_id = f"draft-{len(st.drafts) + 1}"
                st.drafts[draft_id] = {"mime": base64.b64decode(body), "upload": b"",
                                       "size": 0, "attachments": [], "status": "draft"}
            self._reply(201, {"id": draft_id})
        elif step == "attachments" and (draft := self._draft(parts[-2])) is not None:
            item = json.loads(body)
            assert item["@odata.type"] == "#microsoft.graph.fileAttachment"
            draft["attachments"].append({"name": item["name"],
                                         "contentType": item["contentType"],
                                         "data": base64.b64decode(item["contentBytes"])})
            self._reply(201, {"id": f"att-{len(draft['attachments'])}"})
        elif step == "createUploadSession" and (draft := self._draft(parts[-3])) is not None:
            item = json.loads(body)["AttachmentItem"]
            if item["size"] < UPLOAD_MINIMUM:
                self._error(400, "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize",
                            "Attachment size should not be less than the minimum size.")
                return
            draft.update(size=item["size"], name=item["name"], contentType=item["contentType"])
            self._reply(201, {"uploadUrl": f"{self.base}/upload/{parts[-3]}",
                              "nextExpectedRanges": ["0-"]})
        elif step == "send" and (draft := self._draft(parts[-2])) is not None:
            if len(draft["upload"]) != draft["size"]:
                self._error(400, "ErrorInvalidRequest", "The upload is not complete.")
                return
            with st.lock:
                draft["status"] = "sent"
                st.sent.append(draft["mime"])
            self._reply(202)
        elif not step:
            self._error(404, "NotFound", self.path)

    def do_PUT(self) -> None:
        body = self._body()
        if self._scripted(self._next("upload")):
            return
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

    def do_DELETE(self) -> None:
        if not self._authorized() or self._scripted(self._next("delete")):
            return
        if (draft := self._draft(self.path.rsplit("/", 1)[-1])) is not None:
            draft["status"] = "deleted"
            self._reply(204)

    def do_GET(self) -> None:
        """Anything else (a portal a redirect points to): 200 and a page."""
        with self.state.lock:
            self.state.elsewhere.append(("GET", self.path,
                                         self.headers.get("Authorization", "")))
        self._reply(200, {"page": "Anmeldung am Proxy"})

    def _token(self, body: bytes) -> None:
        form = dict(urllib.parse.parse_qsl(body.decode()))
        with self.state.lock:
            self.state.tokens_issued += 1
            self.state.scopes.append(form.get("scope", ""))
        token = self.state.token_for(form.get("scope", ""))
        if token is None:
            self._reply(400, {"error": "invalid_scope", "error_description":
                              f"AADSTS70011: The provided value for scope {form.get('scope')}"
                              " is not valid."})
            return
        self._reply(200, {"access_token": token, "expires_in": 3600, "token_type": "Bearer"})

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        with self.state.lock:
            self.state.auth_headers.add(header)
        if header != f"Bearer {self.state.token}":  # another scope's token: not Graph's
            self._error(401, "InvalidAuthenticationToken",
                        "Access token has expired or is not yet valid.")
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
    with serving_tls(srv, cert):
        yield base, state
