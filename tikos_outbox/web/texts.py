"""The console's words, in German (the office's default) and English
(`[outbox] language = "en"`). Every text on a page comes from here."""

from __future__ import annotations

from tikos_outbox.core.attention import Language

STATES_DE = {"pending": "wartet", "sending": "wird gesendet", "sent": "versendet",
             "deferred": "wird wiederholt", "failed": "fehlgeschlagen", "held": "angehalten",
             "skipped": "übersprungen", "bounced": "unzustellbar"}
DELIVERY_DE = {"pending": "wartet", "deferred": "wird wiederholt", "delivered": "zugestellt",
               "refused": "abgelehnt", "bounced": "unzustellbar", "delayed": "verzögert"}
ROLES_DE = {"to": "Kunde", "bcc": "Kopie (Bcc)"}
MOVES_DE = {"requeue": "erneut eingereiht", "hold": "angehalten", "release": "freigegeben",
            "release_forced": "trotz Dateiproblem freigegeben", "user_add": "Benutzer angelegt",
            "user_remove": "Benutzer entfernt", "user_password": "Passwort geändert"}
MOVES_EN = {"requeue": "requeued", "hold": "held", "release": "released",
            "release_forced": "released despite the file problem", "user_add": "user added",
            "user_remove": "user removed", "user_password": "password changed"}

DE: dict[str, str] = {
    "lang": "de",
    "title": "TIKOS-Postausgang",
    "overview": "Übersicht", "search": "Suche", "audit": "Protokoll", "logout": "Abmelden",
    "login": "Anmelden", "user": "Benutzer", "password": "Passwort",
    "login_failed": "Benutzername oder Passwort ist falsch.",
    "login_slowed": "Zu viele Fehlversuche. Bitte in {seconds} Sekunden erneut versuchen.",
    "login_busy": "Gerade melden sich viele an. Bitte gleich noch einmal versuchen.",
    "session_ended": "Die Sitzung ist abgelaufen. Bitte erneut anmelden.",
    "counts": "Einträge nach Zustand", "state": "Zustand", "entries": "Einträge",
    "attention": "Braucht Aufmerksamkeit", "attention_none": "Nichts zu tun.",
    "attention_more": "… und weitere: Suche mit Zustand",
    "service": "Dienst", "running": "läuft", "not_running": "läuft nicht",
    "last_seen": "zuletzt gesehen", "last_run": "Letzter Versandlauf",
    "next_run": "Nächster Versandlauf", "last_error": "Letzter Fehler", "none": "—",
    "chart": "Versendete Mails pro Tag (letzte 30 Tage)", "sent_on": "versendet am",
    "search_text": "Belegnummer, Kunde, Adresse oder Dateiname", "find": "Suchen",
    "all_states": "alle Zustände", "mandant": "Mandant", "all_mandants": "alle Mandanten",
    "from": "von", "to": "bis", "no_results": "Keine Einträge gefunden.",
    "newer": "« neuere", "older": "ältere »", "page": "Seite",
    "id": "Nr.", "created": "aufgenommen", "sent": "versendet", "doc": "Beleg",
    "customer": "Kunde", "file": "Datei", "recipients": "Empfänger",
    "entry": "Eintrag", "document": "Dokument", "download": "herunterladen",
    "no_document": "Die Datei ist nicht mehr vorhanden (Kopie gelöscht, Archivdatei geändert).",
    "delivery": "Zustellung je Empfänger", "address": "Adresse", "role": "Rolle",
    "reply": "Antwort des Servers", "at": "Zeit",
    "attempts": "Versuche", "server": "Server", "outcome": "Ergebnis", "code": "Code",
    "history": "Verlauf", "who": "von", "what": "was",
    "actions": "Aktionen", "requeue": "Erneut senden", "hold": "Anhalten",
    "release": "Freigeben", "release_force": "Trotz Dateiproblem freigeben",
    "confirm_resend": "Ja, der Kunde soll den Beleg ein zweites Mal erhalten",
    "resend_needs_confirm": "Dieser Beleg wurde schon versendet. Bitte bestätigen, dass er"
                            " noch einmal gesendet werden soll.",
    "done": "Erledigt: Eintrag {id} {move}.",
    "problem": "Problem", "reason": "Grund", "notes": "Bitte prüfen", "einvoice": "E-Rechnung",
    "einvoice_valid": "gültige E-Rechnung", "einvoice_invalid": "keine gültige E-Rechnung",
    "no_einvoice": "nur PDF", "message_id": "Message-ID", "sha256": "SHA-256",
    "unread": "— (Altbestand, Inhalt noch nicht gelesen)",
    "export": "Versandnachweis (CSV)", "export_hint": "Alle Zustellungen im Zeitraum, für"
                                                     " Excel (UTF-8, Semikolon).",
    "export_button": "Herunterladen",
    "audit_title": "Protokoll der Aktionen", "no_actions": "Noch keine Aktionen.",
    "forbidden": "Dafür fehlt die Berechtigung (nur für Administratoren).",
    "csrf": "Die Anfrage kam nicht aus diesem Formular (Sicherheitsprüfung). Bitte die Seite"
            " neu laden und erneut versuchen.",
    "not_found": "Diese Seite oder diesen Eintrag gibt es nicht.",
    "bad_request": "Die Eingabe ist ungültig: {what}",
    "store_down": "Die Postausgangs-Datenbank ist gerade nicht erreichbar; Einzelheiten"
                  " stehen im Protokoll (tikos-outbox.log). Bitte später erneut versuchen.",
    "viewer_note": "Nur Lesen (Rolle: Betrachter).",
    "yes": "ja", "no": "nein", "back": "zurück",
}

EN: dict[str, str] = {
    "lang": "en",
    "title": "TIKOS outbox",
    "overview": "Overview", "search": "Search", "audit": "Audit log", "logout": "Log out",
    "login": "Log in", "user": "User", "password": "Password",
    "login_failed": "The user name or the password is wrong.",
    "login_slowed": "Too many failed attempts. Please try again in {seconds} seconds.",
    "login_busy": "Many are logging in right now. Please try again in a moment.",
    "session_ended": "The session has ended. Please log in again.",
    "counts": "Entries by state", "state": "State", "entries": "Entries",
    "attention": "Needs attention", "attention_none": "Nothing to do.",
    "attention_more": "… and more: search by state",
    "service": "Service", "running": "running", "not_running": "not running",
    "last_seen": "last seen", "last_run": "Last send run", "next_run": "Next send run",
    "last_error": "Last error", "none": "—",
    "chart": "Mails sent per day (last 30 days)", "sent_on": "sent on",
    "search_text": "Document number, customer, address or file name", "find": "Search",
    "all_states": "all states", "mandant": "Mandant", "all_mandants": "all mandants",
    "from": "from", "to": "to", "no_results": "No entries found.",
    "newer": "« newer", "older": "older »", "page": "Page",
    "id": "No.", "created": "recorded", "sent": "sent", "doc": "Document",
    "customer": "Customer", "file": "File", "recipients": "Recipients",
    "entry": "Entry", "document": "Document", "download": "download",
    "no_document": "The file is gone (copy purged, archive file changed).",
    "delivery": "Delivery per recipient", "address": "Address", "role": "Role",
    "reply": "Server's reply", "at": "Time",
    "attempts": "Attempts", "server": "Server", "outcome": "Outcome", "code": "Code",
    "history": "History", "who": "by", "what": "what",
    "actions": "Actions", "requeue": "Send again", "hold": "Hold", "release": "Release",
    "release_force": "Release despite the file problem",
    "confirm_resend": "Yes, the customer shall get this document a second time",
    "resend_needs_confirm": "This document was sent already. Please confirm that it shall"
                            " be sent again.",
    "done": "Done: entry {id} {move}.",
    "problem": "Problem", "reason": "Reason", "notes": "Please check", "einvoice": "E-invoice",
    "einvoice_valid": "valid e-invoice", "einvoice_invalid": "not a valid e-invoice",
    "no_einvoice": "PDF only", "message_id": "Message-ID", "sha256": "SHA-256",
    "unread": "— (history, its content not read yet)",
    "export": "Send log (CSV)", "export_hint": "Every delivery in the range, for Excel"
                                               " (UTF-8, semicolons).",
    "export_button": "Download",
    "audit_title": "Log of actions", "no_actions": "No actions yet.",
    "forbidden": "You may not do this (administrators only).",
    "csrf": "The request did not come from this form (security check). Please reload the"
            " page and try again.",
    "not_found": "There is no such page or entry.",
    "bad_request": "The input is not valid: {what}",
    "store_down": "The outbox database cannot be reached right now; the details are in the"
                  " log (tikos-outbox.log). Please try again later.",
    "viewer_note": "Read only (role: viewer).",
    "yes": "yes", "no": "no", "back": "back",
}


def texts(language: Language) -> dict[str, str]:
    return EN if language is Language.EN else DE


def state_word(state: str, language: Language) -> str:
    return state if language is Language.EN else STATES_DE.get(state, state)


def delivery_word(state: str, language: Language) -> str:
    return state if language is Language.EN else DELIVERY_DE.get(state, state)


def role_word(role: str, language: Language) -> str:
    if language is Language.EN:
        return {"to": "customer", "bcc": "copy (Bcc)"}.get(role, role)
    return ROLES_DE.get(role, role)


def move_word(move: str, language: Language) -> str:
    return (MOVES_EN if language is Language.EN else MOVES_DE).get(move, move)
