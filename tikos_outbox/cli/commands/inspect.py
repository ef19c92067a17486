"""status, list, show: what the outbox holds."""

from __future__ import annotations

from datetime import tzinfo

from tikos_outbox.cli.context import Context, UsageError
from tikos_outbox.cli.output import einvoice_text, entry_json, fmt_time, print_json, table
from tikos_outbox.cli.parser import EXIT_OK
from tikos_outbox.core.intake import is_unread
from tikos_outbox.core.views import EntryView, ListFilter
from tikos_outbox.usecases.monitoring import AccountStatus


def run_status(ctx: Context) -> int:
    st = ctx.outbox.monitor.status()
    if ctx.json:
        print_json(st.as_json())
        return EXIT_OK
    tz = ctx.config.window.tz
    print(table(["state", "entries"], [[s, str(n)] for s, n in st.counts.items()]))
    if st.attention:
        print(f"\n{st.attention} entr{'y needs' if st.attention == 1 else 'ies need'} attention:"
              " tikos-outbox list --attention")
    svc = st.service
    print(f"\nservice:    {'running' if svc.running else 'not running'}"
          f" (last seen {fmt_time(svc.last_seen, tz)})")
    if not svc.config_current:
        print(f"            it runs an older version of {ctx.config.path}: restart it to use"
              " your changes (systemctl restart tikos-outbox, or restart the Windows service)")
    print(f"last run:   {fmt_time(st.last_run, tz)}")
    print(f"next run:   {fmt_time(st.next_run, tz)}")
    err = st.last_error
    print(f"last error: {err['text']} ({fmt_time(err['at'], tz)})" if err else "last error: —")
    for acc in st.accounts:
        print(_account_line(acc, tz))
    b = st.bounces
    if b["enabled"]:
        last = b["last_pass"]
        print(f"bounces:    last read {fmt_time(last['at'], tz)}: {last['text']}" if last
              else "bounces:    the bounce mailbox was not read yet")
        if b["last_error"]:
            print(f"            FAILED {fmt_time(b['last_error_at'], tz)}: {b['last_error']}")
    e = st.einvoice
    then = "held" if e["action"] == "hold" else "sent with a warning"
    print(f"e-invoices: {e['month']} ({', '.join(e['doctypes'])}): {e['valid']} valid,"
          f" {e['invalid']} not valid, {e['none']} PDF only; "
          + (f"from {e['required_from']} the others are {then}" if e["required_from"]
             else "no rule set ([einvoice] required_from)"))
    if st.history_unread:
        print(f"history:    {st.history_unread} files from before the first start not read"
              " yet (`run` reads them in the background; one that changes before is held)")
    for mandant in st.first_pass_waiting:
        print(f"mandant {mandant}: the first complete pass over its folder is still due (it"
              " could not be listed); files modified before the first start stay history")
    return EXIT_OK


def _account_line(acc: AccountStatus, tz: tzinfo) -> str:
    """One sending account: what it sent against its limits, and why it waits."""
    lim = acc.limits
    sent = acc.state
    parts = [f"{sent.sent_last_hour if sent else 0}"
             + (f" of {lim.per_hour}" if lim.per_hour else "") + " in the last hour",
             f"{sent.sent_last_day if sent else 0}"
             + (f" of {lim.per_day}" if lim.per_day else "") + " in the last 24 h"]
    if lim.recipients_per_day:
        parts.append(f"{sent.recipients_last_day if sent else 0} of"
                     f" {lim.recipients_per_day} recipients in the last 24 h")
    if lim.per_minute:
        parts.append(f"paced {lim.per_minute}/min")
    line = f"sending:    {acc.name}: " + ", ".join(parts)
    if acc.problem is not None:
        line += f"\n            STOPPED until the set-up is mended: {acc.problem}"
    if acc.paused_until is not None:
        what = "URGENT, blocked by the provider" if acc.blocked else "waits"
        until = fmt_time(acc.paused_until.isoformat(), tz)
        line += f"\n            {what} until {until}: {acc.paused_because}"
    return line


def run_list(ctx: Context) -> int:
    a = ctx.args
    rows = ctx.outbox.admin.entries(ListFilter(
        states=tuple(a.state or ()), mandant=a.mandant, since=ctx.since, customer=a.customer,
        docno=a.docno, attention=a.attention, limit=a.limit))
    if ctx.json:
        print_json([entry_json(v, full=False) for v in rows])
        return EXIT_OK
    if not rows:
        print("no entries match")
        return EXIT_OK
    tz = ctx.config.window.tz
    print(table(["id", "state", "mandant", "file", "customer", "recipients", "created",
                 "e-invoice", "note"],
                [[str(v.id), v.state, str(v.mandant), v.path, v.customer,
                  ", ".join(v.recipients or []) or "—", fmt_time(v.created_at, tz),
                  einvoice_text(v), _note(v)]
                 for v in rows]))
    if a.limit and len(rows) >= a.limit:
        print(f"(the newest {a.limit} shown; there may be more: --limit 1000, or narrow with"
              " --state, --since, --customer)")
    return EXIT_OK


def _note(v: EntryView) -> str:
    if v.attention:
        return v.attention
    if v.notices:
        return "; ".join(v.notices)
    return (v.last_error if v.state in ("deferred", "failed") else v.reason) or ""


def _copy(view: EntryView) -> str:
    if view.stored_copy:
        return "in the outbox database"
    if view.state == "skipped" and view.sent_at is None:
        return "none (not to be mailed, so not kept)"
    return "purged (past keep_days)"


def _einvoice_line(view: EntryView) -> str:
    e = view.einvoice
    if e is None:
        return "none (a PDF without ZUGFeRD, Factur-X or XRechnung data)"
    verdict = "a valid e-invoice" if e.valid_invoice else f"NOT a valid invoice: {e.problem}"
    where = f", {e.attachment} in the PDF" if e.attachment else ""
    buyer = f", buyer address (BT-49) {e.buyer_email}" if e.buyer_email else ""
    number = f", invoice number {e.number}" if e.number else ""
    return f"{e.format} {e.profile} ({e.syntax}{where}{number}{buyer}): {verdict}"


def run_show(ctx: Context) -> int:
    view = ctx.outbox.admin.entry(ctx.args.id)
    if view is None:
        raise UsageError(f"there is no entry {ctx.args.id}")
    if ctx.json:
        print_json(entry_json(view, full=True))
        return EXIT_OK
    tz = ctx.config.window.tz
    m = ctx.config.mandant(view.mandant)
    archive = str(m.folder / view.path) if m else f"? (mandant {view.mandant} is not configured)"
    lines = [
        f"entry {view.id}: {view.state}" + (f" — {view.reason}" if view.reason else ""),
        *([f"  TO DO:       {view.attention}"] if view.attention else []),
        *([f"  held for:    {view.problem}"] if view.problem else []),
        *[f"  NOTE:        {line}" for line in view.notices],
        f"  document:    {view.path} (mandant {view.mandant}, {view.doctype} {view.docno},"
        f" customer {view.customer})",
        f"  archive:     {archive}",
        f"  e-invoice:   {_einvoice_line(view)}",
        f"  stored copy: {_copy(view)} ("
        + ("history, its content not read yet" if is_unread(view.sha256)
           else f"sha256 {view.sha256[:16]}…") + f", {view.size} bytes)",
        "  recipients:  " + (", ".join(view.recipients) if view.recipients
                             else "— none found" if view.recipients is not None
                             or (view.attention and "E-Mail-Adresse" in view.attention)
                             else "— (not looked up yet)"),
        f"  message-id:  {view.message_id}",
        f"  recorded:    {fmt_time(view.created_at, tz)}",
        f"  sent:        {fmt_time(view.sent_at, tz)}",
    ]
    if view.next_attempt_at and view.state == "deferred":
        lines.append(f"  next try:    {fmt_time(view.next_attempt_at, tz)}")
    for d in view.deliveries:
        when = fmt_time(d.at, tz) if d.at else ""
        lines.append(f"  {d.role.value + ':':<12} {d.address}  {d.state.value}  {when}"
                     f"  {d.reply or ''}".rstrip())
    for b in view.bounces:
        lines.append(f"  {b.kind.value + ':':<12} {b.address}  {fmt_time(b.at, tz)}"
                     f"  {b.diagnostic} (reported back by the customer's mail server)")
    if view.last_error:
        lines.append(f"  last error:  {view.last_error}")
    lines.append(f"  attempts:    {len(view.attempts)}")
    for at in view.attempts:
        code = at.code if at.code is not None else "—"
        lines.append(f"    {fmt_time(at.at, tz)}  {at.server or '—'}  {at.outcome}"
                     f"  {code} {at.reply}")
    print("\n".join(lines))
    return EXIT_OK
