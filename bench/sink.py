"""An SMTP sink for the send benchmarks, in its own process (so it does not share
the GIL with the sender being measured): accepts and discards every message.

    python -m bench.sink PORT [LIFETIME_S] [--pipelining] [--ids FILE]

`--pipelining` offers PIPELINING (RFC 2920), as Exchange and Postfix do;
`--ids FILE` appends each message's Message-ID to FILE, to count duplicates.
"""

from __future__ import annotations

import argparse
import re
import threading
from typing import IO, Any

from aiosmtpd.controller import Controller

_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(\S+)", re.IGNORECASE | re.MULTILINE)


class Sink:
    def __init__(self, pipelining: bool, ids: IO[bytes] | None) -> None:
        self.count = 0
        self.pipelining = pipelining
        self.ids = ids

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        if self.pipelining:
            return [*responses[:-1], "250-PIPELINING", responses[-1]]
        return responses

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.count += 1
        if self.ids is not None:
            head = envelope.original_content.split(b"\r\n\r\n", 1)[0]
            found = _MESSAGE_ID.search(head)
            self.ids.write((found.group(1) if found else b"-") + b"\n")
            self.ids.flush()
        return "250 2.0.0 Ok: discarded"


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.sink")
    p.add_argument("port", type=int)
    p.add_argument("lifetime_s", type=float, nargs="?", default=3600)
    p.add_argument("--pipelining", action="store_true")
    p.add_argument("--ids")
    args = p.parse_args()
    with open(args.ids, "ab") if args.ids else open("/dev/null", "ab") as ids:
        handler = Sink(args.pipelining, ids if args.ids else None)
        controller = Controller(handler, hostname="127.0.0.1", port=args.port,
                                data_size_limit=0)
        controller.start()
        print("ready", flush=True)
        threading.Event().wait(args.lifetime_s)
        controller.stop()


if __name__ == "__main__":
    main()
