"""Mail texts: the defaults (the one source for the config and for the template
that `init` writes), and filling a template safely."""

from __future__ import annotations

import string
from collections.abc import Mapping

from tikos_outbox.core.addresses import clean_text

#: Fields every template may use, besides the named groups of the patterns.
BASE_FIELDS = frozenset(
    {"doctype", "docno", "customer", "mandant", "mandant_name", "sender_name",
     "sender_address", "file_name", "date"}
)

_BODY = ("Sehr geehrte Damen und Herren,\n\nanbei erhalten Sie {what} {{docno}} als PDF-Datei."
         "\n\nMit freundlichen Grüßen\n{{sender_name}}\n")

#: doctype -> (subject, body); "default" serves every other doctype.
DEFAULT_TEMPLATES: dict[str, tuple[str, str]] = {
    "RE": ("Ihre Rechnung {docno}", _BODY.format(what="Ihre Rechnung")),
    "LS": ("Ihr Lieferschein {docno}", _BODY.format(what="Ihren Lieferschein")),
    "default": ("Ihr Dokument {docno}", _BODY.format(what="Ihr Dokument")),
}


class TemplateError(ValueError):
    """A template names a field that no document has."""


def template_fields(template: str) -> set[str]:
    """The field names a template uses; raises TemplateError for anything but plain names."""
    names: set[str] = set()
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise TemplateError(str(exc)) from None
    for _, field, spec, conversion in parsed:
        if field is None:
            continue
        if not field.isidentifier() or spec or conversion:
            raise TemplateError(f"'{{{field}}}' is not a plain field name like {{docno}}")
        names.add(field)
    return names


def render(template: str, fields: Mapping[str, str]) -> str:
    """Fill a template; every field value is first made a single clean line."""
    clean = {k: clean_text(v) for k, v in fields.items()}
    return template.format_map(clean)
