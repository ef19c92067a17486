"""E-invoices (#18): an XML file, or the XML in a PDF, cannot make the service expand
entities (a billion laughs), read a local file or reach the network. Recorded from
a real folder; a read of the local file is seen by a named pipe's writer, a request
by an HTTP server on loopback."""

from __future__ import annotations

import http.server
import json
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest

from tests.einvoice_files import invoice_xml, pdf_with_attachment
from tests.helpers import Cert, SmtpServer
from tests.test_einvoices import site_for

DECLARATION = b"<?xml version='1.0' encoding='UTF-8'?>"

#: how the invoice is in the archive: (file name, its bytes from the XML)
CARRIERS: dict[str, tuple[str, Callable[[bytes], bytes]]] = {
    "xml": ("RE_9001_4716.xml", lambda xml: xml),
    "pdf": ("RE_9001_4716.pdf", lambda xml: pdf_with_attachment("factur-x.xml", xml, "9001")),
}


def hostile(doctype: str, number: str) -> bytes:
    """A real XRechnung (CII) with a document type declaration and `number` (an
    entity reference) as its invoice number (BT-1)."""
    xml = invoice_xml("XRECHNUNG", "9001")
    assert DECLARATION in xml and b">9001<" in xml
    return (xml.replace(DECLARATION, DECLARATION + b"\n" + doctype.encode())
            .replace(b">9001<", f">{number}<".encode()))


def recorded(tmp_path: Path, cert: Cert, capsys: pytest.CaptureFixture[str], carrier: str,
             xml: bytes) -> tuple[dict[str, Any], str]:
    """The file recorded by `scan`: its e-invoice data and all `show --json` says."""
    name, wrap = CARRIERS[carrier]
    with SmtpServer(cert, "none") as srv:
        site = site_for(tmp_path, srv)
        (site.mandant_folder() / name).write_bytes(wrap(xml))
        assert site.cli("scan") == 0
        capsys.readouterr()
        assert site.cli("show", "1", "--json") == 0
        out = capsys.readouterr().out
    found: dict[str, Any] = json.loads(out)["einvoice"]
    return found, out


@pytest.mark.parametrize("carrier", CARRIERS)
def test_an_internal_entity_is_not_expanded(tmp_path: Path, cert: Cert, carrier: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A billion laughs, small: 'lol' a hundred times if the entities were expanded."""
    laughs = ('<!DOCTYPE x [<!ENTITY a "lol"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
              '<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>')
    found, out = recorded(tmp_path, cert, capsys, carrier, hostile(laughs, "&c;"))
    assert found["profile"] == "XRECHNUNG 3.0"  # read, as an e-invoice
    assert found["number"] is None and "lol" not in out


@contextmanager
def watched_file(path: Path) -> Iterator[threading.Event]:
    """A named pipe at `path` whose writer sets the event when anything opens it to
    read (it then reads a DTD with an entity); released and joined at the end."""
    os.mkfifo(path)
    opened, done = threading.Event(), threading.Event()

    def writer() -> None:
        with path.open("wb") as f:  # returns once a reader has opened the pipe
            if not done.is_set():
                opened.set()
            with suppress(BrokenPipeError):  # the test's own release reads nothing
                f.write(b'<!ENTITY s "GEHEIMNIS">')

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        yield opened
    finally:
        done.set()
        reader = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # lets the writer finish
        thread.join(10)
        os.close(reader)
        assert not thread.is_alive()


#: each way a document type declaration can name another file: the external DTD, an
#: external parameter entity, an external general entity
REFERENCES = {
    "dtd": '<!DOCTYPE x SYSTEM "{url}">',
    "parameter entity": '<!DOCTYPE x [<!ENTITY % d SYSTEM "{url}"> %d;]>',
    "entity": '<!DOCTYPE x [<!ENTITY s SYSTEM "{url}">]>',
}


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
@pytest.mark.parametrize("carrier", CARRIERS)
@pytest.mark.parametrize("reference", REFERENCES)
def test_a_local_file_named_in_the_xml_is_never_opened(
        tmp_path: Path, cert: Cert, carrier: str, reference: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    pipe = tmp_path / "geheim.dtd"
    with watched_file(pipe) as opened:
        xml = hostile(REFERENCES[reference].format(url=pipe.as_uri()), "&s;")
        found, out = recorded(tmp_path, cert, capsys, carrier, xml)
        assert not opened.is_set()
    assert found["profile"] == "XRECHNUNG 3.0" and found["number"] is None
    assert "GEHEIMNIS" not in out


class _Requests(http.server.BaseHTTPRequestHandler):
    seen: list[str]

    def do_GET(self) -> None:
        self.seen.append(self.path)
        body = b'<!ENTITY s "GEHEIMNIS">'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.mark.parametrize("carrier", CARRIERS)
@pytest.mark.parametrize("reference", REFERENCES)
def test_no_url_named_in_the_xml_is_fetched(
        tmp_path: Path, cert: Cert, carrier: str, reference: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Each request would be answered (and recorded) before the parser goes on, so
    once `scan` is back, the server has seen every request there was."""
    seen: list[str] = []
    handler = type("Handler", (_Requests,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/geheim.dtd"
        xml = hostile(REFERENCES[reference].format(url=url), "&s;")
        found, out = recorded(tmp_path, cert, capsys, carrier, xml)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
    assert seen == []
    assert found["profile"] == "XRECHNUNG 3.0" and "GEHEIMNIS" not in out
