"""An SMTP sink for the flush benchmark, in its own process (so it does not share
the GIL with the sender being measured): accepts and discards every message."""

from __future__ import annotations

import sys
import threading
from typing import Any

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.count += 1
        return "250 2.0.0 Ok: discarded"


def main() -> None:
    port = int(sys.argv[1])
    controller = Controller(Sink(), hostname="127.0.0.1", port=port, data_size_limit=0)
    controller.start()
    print("ready", flush=True)
    threading.Event().wait(float(sys.argv[2]) if len(sys.argv) > 2 else 3600)
    controller.stop()


if __name__ == "__main__":
    main()
