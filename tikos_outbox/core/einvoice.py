"""E-invoices (EN 16931): what a document's structured data is, whether it is a
valid invoice under the German rules from 2025/2027, and the `[einvoice]` rule
that holds or flags an invoice that is not one. No I/O: the bytes are read by
`tikos_outbox.einvoices`.

Sources: EN 16931-1:2017; Factur-X 1.0.07 / ZUGFeRD 2.3 specification (the
guideline IDs of BT-24); XRechnung 3.0 (KoSIT); BMF letters of 15 Oct 2024 and
15 Oct 2025 (§ 14 UStG: from 2025 an e-invoice is one in a structured format
after EN 16931 — XRechnung, ZUGFeRD from 2.0.1 in the profiles BASIC, EN 16931,
EXTENDED, XRECHNUNG; MINIMUM and BASIC WL are no e-invoices; a PDF alone is
none; issuing them becomes mandatory from 1 Jan 2027 above € 800,000 turnover
and from 1 Jan 2028 for every business).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import date
from enum import StrEnum


class Action(StrEnum):
    WARN = "warn"  # sent, and listed in the daily report
    HOLD = "hold"  # held until an administrator releases it


class Format(StrEnum):
    FACTURX = "Factur-X"
    ZUGFERD = "ZUGFeRD"
    XRECHNUNG = "XRechnung"
    XML = "XML"  # an XML file of its own that names no XRechnung (e.g. Peppol UBL)


class Syntax(StrEnum):
    CII = "CII"  # UN/CEFACT Cross Industry Invoice (ZUGFeRD, Factur-X, XRechnung)
    UBL = "UBL"  # OASIS UBL 2.1 Invoice / CreditNote (XRechnung, Peppol)
    ZUGFERD1 = "ZUGFeRD 1.0"  # CrossIndustryDocument: before EN 16931


#: BT-24 (the specification identifier) -> profile; "valid" is whether such a file
#: is an e-invoice after EN 16931 (an invoice), "invalid" what it is instead
_EN16931 = "urn:cen.eu:en16931:2017"
_PROFILES: dict[str, tuple[str, bool]] = {
    "urn:factur-x.eu:1p0:minimum": ("MINIMUM", False),
    "urn:zugferd.de:2p0:minimum": ("MINIMUM", False),
    "urn:factur-x.eu:1p0:basicwl": ("BASIC WL", False),
    "urn:zugferd.de:2p0:basicwl": ("BASIC WL", False),
    f"{_EN16931}#compliant#urn:factur-x.eu:1p0:basic": ("BASIC", True),
    f"{_EN16931}#compliant#urn:zugferd.de:2p0:basic": ("BASIC", True),
    _EN16931: ("EN 16931", True),
    f"{_EN16931}#conformant#urn:factur-x.eu:1p0:extended": ("EXTENDED", True),
    f"{_EN16931}#conformant#urn:zugferd.de:2p0:extended": ("EXTENDED", True),
}
_XRECHNUNG = f"{_EN16931}#compliant#urn:xeinkauf.de:kosit:xrechnung_"
_PEPPOL = f"{_EN16931}#compliant#urn:fdc:peppol.eu:2017:poacc:billing:3.0"


def profile_of(guideline: str) -> tuple[str, bool]:
    """The profile a specification identifier (BT-24) names, and whether a file of
    it is an e-invoice (an invoice under § 14 UStG from 2025)."""
    gid = guideline.strip()
    if gid in _PROFILES:
        return _PROFILES[gid]
    if gid.startswith(_XRECHNUNG):
        return f"XRECHNUNG {gid[len(_XRECHNUNG):]}".strip(), True
    if gid == _PEPPOL:
        return "PEPPOL BIS 3.0", True
    if gid.startswith(f"{_EN16931}#compliant#"):
        return "EN 16931 (CIUS)", True  # a core invoice restricted for a community
    if gid.startswith("urn:ferd:CrossIndustryDocument:invoice:1p0:"):
        return f"1.0 {gid.rsplit(':', 1)[-1].upper()}", False
    return gid or "?", False


@dataclass(frozen=True)
class EInvoice:
    """What a document's structured invoice data is (None on an entry: there is none).

    `valid_invoice`: an e-invoice after EN 16931 whose XML passed its schema;
    `problem` says why not, in words, when it is not. `buyer_email`: the buyer's
    electronic address (BT-49) when its scheme is EM (e-mail)."""

    format: Format
    profile: str
    syntax: Syntax
    valid_invoice: bool
    problem: str | None = None
    buyer_email: str | None = None
    guideline: str = ""  # BT-24 as written
    attachment: str = ""  # the embedded file's name in a PDF; "" for an XML file
    number: str = ""  # BT-1, the invoice number in the XML
    fault: str = ""  # "" | "profile" | "schema" | "unreadable": what `problem` is about

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> EInvoice | None:
        if not text:
            return None
        try:
            raw = json.loads(text)
            return cls(**{**raw, "format": Format(raw["format"]),
                          "syntax": Syntax(raw["syntax"])})
        except (ValueError, TypeError, KeyError):
            return None

    def as_contract(self) -> dict[str, object]:
        """`show --json`'s "einvoice" (the contract's keys first)."""
        return {"format": self.format.value, "profile": self.profile,
                "valid_invoice": self.valid_invoice, "buyer_email": self.buyer_email,
                "syntax": self.syntax.value, "guideline": self.guideline,
                "problem": self.problem, "attachment": self.attachment or None,
                "number": self.number or None}


def judged(format_: Format, syntax: Syntax, guideline: str, schema_error: str | None, *,
           buyer_email: str | None = None, attachment: str = "", number: str = "",
           ) -> EInvoice:
    """An e-invoice's facts with the verdict: the profile's, then the schema's."""
    profile, valid = profile_of(guideline)
    if syntax is Syntax.ZUGFERD1:
        valid = False
    problem, fault = None, ""
    if not valid:
        why = ("ZUGFeRD 1.0 is older than the standard" if syntax is Syntax.ZUGFERD1
               else "it does not carry every field an invoice needs")
        problem = f"the profile {profile} is no e-invoice after EN 16931 ({why})"
        fault = "profile"
    elif schema_error:
        valid = False
        problem, fault = f"the XML does not pass its schema: {schema_error}", "schema"
    if guideline.strip().startswith(_XRECHNUNG):
        format_ = Format.XRECHNUNG
    return EInvoice(format=format_, profile=profile, syntax=syntax, valid_invoice=valid,
                    problem=problem, guideline=guideline, buyer_email=buyer_email,
                    attachment=attachment, number=number, fault=fault)


def unreadable(format_: Format, syntax: Syntax, why: str, attachment: str = "") -> EInvoice:
    """E-invoice data that is there but cannot be read (not well-formed, no BT-24)."""
    return EInvoice(format=format_, profile="?", syntax=syntax, valid_invoice=False,
                    problem=f"the XML cannot be read: {why}", attachment=attachment,
                    fault="unreadable")


@dataclass(frozen=True)
class Rule:
    """`[einvoice]`: from `required_from`, documents of `doctypes` that are not a
    valid e-invoice are held or flagged; before it (or without it) only reported."""

    required_from: date | None = None
    doctypes: tuple[str, ...] = ("RE",)
    action: Action = Action.WARN

    def applies(self, doctype: str, day: date) -> bool:
        """Whether a document of this type, recorded on this local day, must be an
        e-invoice."""
        return (self.required_from is not None and day >= self.required_from
                and doctype.upper() in self.doctypes)

    def covers(self, doctype: str) -> bool:
        """Whether the type is an invoice type for the counts in `status`."""
        return doctype.upper() in self.doctypes


def shortfall(found: EInvoice | None) -> str:
    """Why a document is not a valid e-invoice, in words (for logs and reasons)."""
    if found is None:
        return "a PDF without e-invoice data (no ZUGFeRD, Factur-X or XRechnung XML)"
    return f"{found.format} {found.profile}: {found.problem}"


def shortfall_facts(found: EInvoice | None) -> dict[str, str]:
    """The same as facts, for the office's line in its language (core.attention)."""
    if found is None:
        return {"why": "plain"}
    facts = {"why": found.fault or "profile", "profile": f"{found.format} {found.profile}"}
    if found.fault in ("schema", "unreadable") and found.problem:
        facts["detail"] = found.problem.split(": ", 1)[-1]
    return facts
