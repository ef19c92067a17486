"""Real e-invoice files for the tests, made with the factur-x library (the XML of
each profile, checked against its schema, and the PDF/A-3 with the XML embedded)
and pypdf (a PDF with an attachment of another name)."""

from __future__ import annotations

import datetime
import io
from typing import Any

from facturx import generate_from_binary, xml_check_xsd
from facturx.generate_xml import LEVEL2BT_24, generate_xml
from lxml import etree
from pypdf import PdfReader, PdfWriter

from tikos_outbox.samples import make_pdf

RAM = "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"
BASIC = "urn:cen.eu:en16931:2017#compliant#urn:factur-x.eu:1p0:basic"
MINIMUM = "urn:factur-x.eu:1p0:minimum"
XRECHNUNG = "urn:cen.eu:en16931:2017#compliant#urn:xeinkauf.de:kosit:xrechnung_3.0"

#: profile name -> how the XML is made: (the library's level, the BT-24 to write)
PROFILES = {
    "MINIMUM": ("basicwl", MINIMUM),
    "BASIC WL": ("basicwl", LEVEL2BT_24["basicwl"]),
    "BASIC": ("en16931", BASIC),
    "EN 16931": ("en16931", LEVEL2BT_24["en16931"]),
    "EXTENDED": ("extended", LEVEL2BT_24["extended"]),
    "XRECHNUNG": ("en16931", XRECHNUNG),
}


def _data(docno: str, customer: str, buyer_email: str | None, minimal: bool) -> dict[str, Any]:
    def party(name: str, city: str, code: str, street: str) -> dict[str, Any]:
        p: dict[str, Any] = {"name": name, "country_code": "DE"}
        if not minimal:
            p.update(city=city, postcode=code, addr_l1=street)
        return p

    seller = party("Wäscherei Muster GmbH", "Berlin", "10115", "Wäschestraße 5")
    seller["vat_identifier"] = "DE123456789"
    buyer = party("Hotel Zur Post GmbH", "München", "80331", "Hauptstraße 1")
    if buyer_email and not minimal:
        buyer.update(einvoicing_addr=buyer_email, einvoicing_addr_schemeid="EM")
    data: dict[str, Any] = {
        "BT-1": docno, "BT-2": datetime.date(2027, 1, 15), "BT-3": "380", "BT-5": "EUR",
        "BT-10": customer, "BG-4": seller, "BG-7": buyer,
        "BT-106": "100.00", "BT-109": "100.00", "BT-110": "19.00", "BT-112": "119.00",
        "BT-115": "119.00",
        "BG-23": [{"BT-116": "100.00", "BT-117": "19.00", "BT-118": "S", "BT-119": "19.00"}],
    }
    if not minimal:
        data.update({
            "BT-9": datetime.date(2027, 2, 15), "BT-72": datetime.date(2027, 1, 14),
            "BG-25": [{"BT-126": "1", "BT-129": "10", "BT-130": "KGM", "BT-131": "100.00",
                       "BT-146": "10.00", "BT-151": "S", "BT-152": "19.00",
                       "BT-153": "Wäsche waschen und mangeln"}],
        })
    return data


def _strip_to_minimum(root: etree._Element) -> None:
    """What MINIMUM does not allow, taken out of a BASIC WL document."""
    for path in ("ApplicableTradeTax", "LineTotalAmount", "SpecifiedTradePaymentTerms"):
        for el in list(root.iter(f"{{{RAM}}}{path}")):
            parent = el.getparent()
            assert parent is not None
            parent.remove(el)
    for el in root.iter(f"{{{RAM}}}ApplicableHeaderTradeDelivery"):
        for child in list(el):
            el.remove(child)
        el.attrib.clear()  # the builder's xsi:nil on an empty element
        el.text = None


def invoice_xml(profile: str, docno: str = "10023", customer: str = "4716",
                buyer_email: str | None = "einkauf@hotel-post.test") -> bytes:
    """The CII XML of one profile, valid against that profile's schema."""
    level, guideline = PROFILES[profile]
    minimal = profile == "MINIMUM"
    xml = generate_xml(_data(docno, customer, buyer_email, minimal), flavor="factur-x",
                       level=level, check_xsd=False, check_schematron=False)
    root = etree.fromstring(xml)
    gid = root.find(f".//{{{RAM}}}GuidelineSpecifiedDocumentContextParameter/{{{RAM}}}ID")
    assert gid is not None
    gid.text = guideline
    if minimal:
        _strip_to_minimum(root)
    xml_check_xsd(root)  # the file is what its profile says
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def ubl_xml(docno: str = "10023", customer: str = "4716",
            buyer_email: str | None = "einkauf@hotel-post.test",
            guideline: str = XRECHNUNG) -> bytes:
    """An XRechnung in UBL 2.1 syntax (an XML file of its own)."""
    data = _data(docno, customer, buyer_email, False)
    xml = generate_xml(data, flavor="ubl-2.1", level="en16931", check_schematron=False)
    root = etree.fromstring(xml)
    cbc = "urn:oasis:names:specification:ubl:schema:xsd:CommonBasicComponents-2"
    gid = root.find(f"{{{cbc}}}CustomizationID")
    assert gid is not None
    gid.text = guideline
    xml_check_xsd(root)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def einvoice_pdf(profile: str, docno: str = "10023", customer: str = "4716",
                 buyer_email: str | None = "einkauf@hotel-post.test") -> bytes:
    """A PDF/A-3 invoice with its XML embedded as factur-x.xml (the library's own)."""
    xml = invoice_xml(profile, docno, customer, buyer_email)
    pdf = make_pdf([f"Rechnung {docno}", f"Kunde {customer}", "Summe 119,00 EUR"])
    level = PROFILES[profile][0] if profile != "MINIMUM" else "minimum"
    return bytes(generate_from_binary(pdf, xml, flavor="factur-x", level=level,
                                      check_xsd=False, lang="de-DE"))


def pdf_with_attachment(name: str, content: bytes, docno: str = "10023") -> bytes:
    """A PDF with one embedded file, written by pypdf (no PDF/A, no XMP)."""
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(make_pdf([f"Rechnung {docno}"]))))
    writer.add_attachment(name, content)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


FERD = "urn:ferd:CrossIndustryDocument:invoice:1p0"
RAM12 = "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:12"
UDT15 = "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:15"


def zugferd1_xml(profile: str = "comfort", docno: str = "10023",
                 customer: str = "4716") -> bytes:
    """A ZUGFeRD 1.0 invoice (CrossIndustryDocument, before EN 16931) in the profile
    BASIC, COMFORT or EXTENDED, written as ZUGFeRD 1.0 writers did and valid against
    its schema (the factur-x library's ZUGFeRD 1.0 XSD)."""
    tax = ("<ram:ApplicableTradeTax><ram:CalculatedAmount currencyID='EUR'>19.00"
           "</ram:CalculatedAmount><ram:TypeCode>VAT</ram:TypeCode><ram:BasisAmount"
           " currencyID='EUR'>100.00</ram:BasisAmount><ram:CategoryCode>S</ram:CategoryCode>"
           "<ram:ApplicablePercent>19.00</ram:ApplicablePercent></ram:ApplicableTradeTax>")

    def party(name: str, code: str, street: str, city: str) -> str:
        return (f"<ram:Name>{name}</ram:Name><ram:PostalTradeAddress><ram:PostcodeCode>{code}"
                f"</ram:PostcodeCode><ram:LineOne>{street}</ram:LineOne><ram:CityName>{city}"
                "</ram:CityName><ram:CountryID>DE</ram:CountryID></ram:PostalTradeAddress>")

    text = f"""<?xml version='1.0' encoding='UTF-8'?>
<rsm:CrossIndustryDocument xmlns:rsm="{FERD}" xmlns:ram="{RAM12}" xmlns:udt="{UDT15}">
<rsm:SpecifiedExchangedDocumentContext><ram:GuidelineSpecifiedDocumentContextParameter>
<ram:ID>urn:ferd:CrossIndustryDocument:invoice:1p0:{profile}</ram:ID>
</ram:GuidelineSpecifiedDocumentContextParameter></rsm:SpecifiedExchangedDocumentContext>
<rsm:HeaderExchangedDocument><ram:ID>{docno}</ram:ID><ram:Name>RECHNUNG</ram:Name>
<ram:TypeCode>380</ram:TypeCode><ram:IssueDateTime>
<udt:DateTimeString format="102">20270115</udt:DateTimeString>
</ram:IssueDateTime></rsm:HeaderExchangedDocument>
<rsm:SpecifiedSupplyChainTradeTransaction>
<ram:ApplicableSupplyChainTradeAgreement><ram:BuyerReference>{customer}</ram:BuyerReference>
<ram:SellerTradeParty>{party("Wäscherei Muster GmbH", "10115", "Wäschestraße 5", "Berlin")}
<ram:SpecifiedTaxRegistration><ram:ID schemeID="VA">DE123456789</ram:ID>
</ram:SpecifiedTaxRegistration></ram:SellerTradeParty>
<ram:BuyerTradeParty>{party("Hotel Zur Post GmbH", "80331", "Hauptstraße 1", "München")}
</ram:BuyerTradeParty></ram:ApplicableSupplyChainTradeAgreement>
<ram:ApplicableSupplyChainTradeDelivery><ram:ActualDeliverySupplyChainEvent>
<ram:OccurrenceDateTime><udt:DateTimeString format="102">20270114</udt:DateTimeString>
</ram:OccurrenceDateTime></ram:ActualDeliverySupplyChainEvent>
</ram:ApplicableSupplyChainTradeDelivery>
<ram:ApplicableSupplyChainTradeSettlement><ram:PaymentReference>{docno}</ram:PaymentReference>
<ram:InvoiceCurrencyCode>EUR</ram:InvoiceCurrencyCode>{tax}
<ram:SpecifiedTradeSettlementMonetarySummation>
<ram:LineTotalAmount currencyID="EUR">100.00</ram:LineTotalAmount>
<ram:ChargeTotalAmount currencyID="EUR">0.00</ram:ChargeTotalAmount>
<ram:AllowanceTotalAmount currencyID="EUR">0.00</ram:AllowanceTotalAmount>
<ram:TaxBasisTotalAmount currencyID="EUR">100.00</ram:TaxBasisTotalAmount>
<ram:TaxTotalAmount currencyID="EUR">19.00</ram:TaxTotalAmount>
<ram:GrandTotalAmount currencyID="EUR">119.00</ram:GrandTotalAmount>
<ram:DuePayableAmount currencyID="EUR">119.00</ram:DuePayableAmount>
</ram:SpecifiedTradeSettlementMonetarySummation></ram:ApplicableSupplyChainTradeSettlement>
<ram:IncludedSupplyChainTradeLineItem>
<ram:AssociatedDocumentLineDocument><ram:LineID>1</ram:LineID>
</ram:AssociatedDocumentLineDocument>
<ram:SpecifiedSupplyChainTradeAgreement><ram:NetPriceProductTradePrice>
<ram:ChargeAmount currencyID="EUR">10.00</ram:ChargeAmount>
<ram:BasisQuantity unitCode="KGM">1</ram:BasisQuantity></ram:NetPriceProductTradePrice>
</ram:SpecifiedSupplyChainTradeAgreement>
<ram:SpecifiedSupplyChainTradeDelivery><ram:BilledQuantity unitCode="KGM">10</ram:BilledQuantity>
</ram:SpecifiedSupplyChainTradeDelivery>
<ram:SpecifiedSupplyChainTradeSettlement>{tax}
<ram:SpecifiedTradeSettlementMonetarySummation>
<ram:LineTotalAmount currencyID="EUR">100.00</ram:LineTotalAmount>
</ram:SpecifiedTradeSettlementMonetarySummation></ram:SpecifiedSupplyChainTradeSettlement>
<ram:SpecifiedTradeProduct><ram:Name>Wäsche waschen und mangeln</ram:Name>
</ram:SpecifiedTradeProduct></ram:IncludedSupplyChainTradeLineItem>
</rsm:SpecifiedSupplyChainTradeTransaction></rsm:CrossIndustryDocument>
"""
    root = etree.fromstring(text.encode())
    xml_check_xsd(root, flavor="zugferd")  # the file is what ZUGFeRD 1.0 allows
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def zugferd1_pdf(profile: str = "comfort", docno: str = "10023", customer: str = "4716"
                 ) -> bytes:
    """A PDF with a ZUGFeRD 1.0 invoice embedded as ZUGFeRD-invoice.xml, the name
    ZUGFeRD 1.0 gave it (by pypdf: the factur-x library writes no 1.0 PDFs)."""
    return pdf_with_attachment("ZUGFeRD-invoice.xml", zugferd1_xml(profile, docno, customer),
                               docno)
