"""The commented config template that `tikos-outbox init` writes."""

from __future__ import annotations

from tikos_outbox.core.templates import DEFAULT_TEMPLATES

_TEMPLATE = '''\
# tikos-outbox configuration
# Relative paths are relative to this file. After editing, run `tikos-outbox check`.
# Each question of the onboarding form names the key it becomes.

[outbox]
database = "outbox.db"          # SQLite file here, or postgresql+psycopg://user@host/db
key_file = "tikos-outbox.key"   # Fernet key(s) that encrypt the stored password; keep a backup
keep_days = 90                  # `purge` removes stored copies of sent documents older than this
# log_file = "tikos-outbox.log" # default: tikos-outbox.log beside the database
# max_lifetime_days = 5         # a mail that keeps failing temporarily is given up after this
# language = "de"              # the office's language: the daily report and the "what to do" lines ("de" | "en")

[schedule]                      # form: "Versandzeiten"
timezone = "Europe/Berlin"
first = "08:00"                 # first send run of the day
last = "18:00"                  # last send run of the day (inclusive)
every_minutes = 60              # 08:00, 09:00, … 18:00
days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]

[smtp]                          # form: "Server und Port", "SSL", "Anonyme Authentifizierung"
host = "smtp.example.com"
port = 587
security = "starttls"           # "none" | "starttls" (usually 587) | "ssl" (implicit TLS, usually 465)
verify_tls = true               # check the server's certificate; ca_file = "ca.pem" adds a CA
auth = "password"               # "anonymous" (no login) | "password" | "oauth2"
username = "rechnung@example.com"
password = ""                   # `tikos-outbox secret set` writes it here, encrypted
timeout_s = 60
max_per_minute = 30             # pacing: mails spaced evenly (30 = one every 2 s); 0 = none
max_per_hour = 0                # quotas of this sending account (server + login), shared by
max_per_day = 0                 #   every process that sends with it; 0 = none. Set them below
max_recipients_per_day = 0      #   the provider's limits: README, section "Provider limits"
max_per_connection = 50         # reconnect after this many mails
# helo_name = "fileserver.waescherei.de"   # the name said in EHLO; default: this host's FQDN
# pipelining = false           # MAIL, RCPT and DATA are sent together where the server offers
#                               #   PIPELINING (RFC 2920); false only for a server that fails at it

# Examples (uncomment one instead of the values above):
# T-Online:      host = "securesmtp.t-online.de", port = 465, security = "ssl",
#                auth = "password", username = the full e-mail address,
#                password = the separate e-mail password from the T-Online customer centre
# Microsoft 365: host = "smtp.office365.com", port = 587, security = "starttls",
#                auth = "oauth2", username = "rechnung@yourdomain.de",
#                oauth2_tenant = "yourdomain.onmicrosoft.com", oauth2_client_id = "…",
#                oauth2_client_secret = set with `tikos-outbox secret set client-secret`

[sender]                        # form: "Absenderadresse", "Anzeigename", "Antwortadresse"
address = "rechnung@example.com"
name = "Musterwäscherei GmbH"
reply_to = "info@example.com"
bcc = []                        # optional copy of every mail, e.g. ["archiv@example.com"]
# signature = """Musterwäscherei GmbH · Industriestraße 5 · 12345 Musterstadt
# Geschäftsführer: Max Muster · Amtsgericht Musterstadt HRB 12345 · USt-IdNr. DE123456789"""
#                               # after every mail's text (a GmbH's e-mails need these, §35a GmbHG)

[watch]                         # form: "Archiv lokal oder im Netzwerk"
mode = "auto"                   # "events" | "polling" | "auto" (polling on network shares)
poll_interval_s = 10
settle_s = 5                    # a file must be unchanged this long before it is taken
baseline = true                 # first start: files already there are recorded as skipped
# max_size_mb = 20              # larger PDFs are held: providers reject such mails

[recipients]
# The query gets the parameters named in sql_params, in that order: "mandant" and the
# named groups of the mandant's pattern. It may return several rows; a value may hold
# several addresses separated by ";" or ",".
sql_dsn = "Driver={ODBC Driver 18 for SQL Server};Server=tikos-sql;Database=TIKOS;Trusted_Connection=yes;TrustServerCertificate=yes;"
sql_query = "SELECT EMail FROM Kunde WHERE Mandant = ? AND KundenNr = ?"
sql_params = ["mandant", "customer"]
# csv = "recipients.csv"        # instead of SQL (comment out the three sql_ lines): columns mandant;customer;email

[[mandant]]                     # form: "Welche Mandanten nehmen teil"; one table per mandant
id = 1
name = "Musterwäscherei"
enabled = true
folder = '\\\\fileserver\\SoCom$\\Archiv\\M1'   # or a local folder like 'D:\\SoCom\\Archiv\\M1'
pattern = '^(?P<doctype>RE|LS)_(?P<docno>\\d+)_(?P<customer>\\d+)\\.pdf$'
# [mandant.smtp] / [mandant.sender] may override any [smtp] / [sender] key for this mandant

# a second mandant: the whole table again, with its own id, folder and pattern
# [[mandant]]
# id = 2
# name = "Musterwäscherei Süd"
# folder = '\\\\fileserver\\SoCom$\\Archiv\\M2'
# pattern = '^(?P<doctype>RE|LS)_(?P<docno>\\d+)_(?P<customer>\\d+)\\.pdf$'

{templates}
# [report]
# to = "admin@example.com"      # after the last run of the day: failed and held entries

# Bounces: a mail the provider took can still come back from the customer's side
# ("user unknown"). tikos-outbox asks for those reports (DSN) and reads them from
# the mailbox they come back to; store its password with
# `tikos-outbox secret set bounce-password`.
# [bounces]
# imap_host = "imap.example.com"  # the mailbox of [sender] address (or of address below)
# imap_port = 993
# imap_security = "ssl"         # "ssl" (993) | "starttls" (143)
# auth = "password"             # "password" | "oauth2" (the [smtp] OAuth2 app)
# username = "rechnung@example.com"
# password = ""                 # written by `tikos-outbox secret set bounce-password`
# folder = "INBOX"              # where the reports arrive
# processed_folder = "tikos-outbox/verarbeitet"  # read bounces are moved here, never deleted
# poll_minutes = 15
# address = "bounces@example.com"  # optional: MAIL FROM for every mail, if not the sender

# E-invoices (E-Rechnung): ZUGFeRD, Factur-X and XRechnung are recognised in every
# document and shown in list, show and status. From 1 Jan 2027 a business with more
# than EUR 800,000 turnover must send B2B invoices as e-invoices (from 2028 every
# business); a plain PDF, or ZUGFeRD MINIMUM / BASIC WL, is then no valid invoice.
# [einvoice]
# required_from = 2027-01-01    # from this day on, invoices must be e-invoices
# doctypes = ["RE"]             # which document types are invoices
# action = "warn"               # "warn": sent, listed in the daily report | "hold": held
# An XRechnung as a file of its own: let the pattern take .xml too, e.g.
# pattern = '^(?P<doctype>RE|LS)_(?P<docno>\\d+)_(?P<customer>\\d+)\\.(pdf|xml)$'

# -- the web console (optional) -----------------------------------------------------
# The office finds an invoice's fate and sends it again from a browser. Users:
#   tikos-outbox user add anna --role admin     (viewer: search and read only)
# On another address than this machine's own (127.0.0.1), give it a certificate.
# [web]
# enabled = true                # serve it inside `run` (or: tikos-outbox web)
# host = "127.0.0.1"            # "0.0.0.0": every address; needs cert_file/key_file
# port = 8025
# cert_file = "console.pem"     # the server's certificate (PEM) and its key
# key_file = "console-key.pem"
# idle_minutes = 30             # a session ends after this long without a click
'''


def _templates() -> str:
    """The default texts of invoices and delivery notes, to edit in place."""
    out = []
    for doctype in ("RE", "LS"):
        subject, body = DEFAULT_TEMPLATES[doctype]
        out.append(f'[templates.{doctype}]\nsubject = "{subject}"\nbody = """{body}"""\n')
    return "\n".join(out)


TEMPLATE = _TEMPLATE.replace("{templates}", _templates())
