"""The flush benchmark's provider 20 ms away, in its own process: an SMTP server
with STARTTLS and AUTH (aiosmtpd, the tests' server) behind a proxy on loopback
that holds every byte for half the round-trip time in each direction.

A userspace delay, not `tc netem` in a network namespace: this machine's kernel
has no netem qdisc (`tc qdisc add dev veth0 root netem delay 10ms` answers
"Specified qdisc kind is unknown"). The proxy delays each chunk by the same time
and keeps their order; it limits no bandwidth. The server
offers PIPELINING (RFC 2920), as Postfix and Exchange do.

    python -m bench.wan CERT_DIR RTT_MS USER PASSWORD   (prints "ready PORT")
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from pathlib import Path

from tests.helpers import Behaviour, SmtpServer, make_cert


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                delay_s: float) -> None:
    loop = asyncio.get_running_loop()
    try:
        while data := await reader.read(1 << 16):
            loop.call_later(delay_s, writer.write, data)  # same delay: order kept
    except ConnectionError:
        pass
    finally:
        loop.call_later(delay_s, writer.close)


async def _serve(target_port: int, delay_s: float, ready: threading.Event,
                 port: list[int]) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
        await asyncio.gather(_pipe(reader, up_writer, delay_s),
                             _pipe(up_reader, writer, delay_s))

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port.append(server.sockets[0].getsockname()[1])
    ready.set()
    async with server:
        await server.serve_forever()


class _OwnLegacy(logging.Filter):
    """aiosmtpd warns at every AUTH that it sets its own deprecated attribute."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "login_data is deprecated" not in record.getMessage()


def main() -> None:
    logging.getLogger("mail.log").addFilter(_OwnLegacy())
    cert_dir, rtt_ms, user, password = Path(sys.argv[1]), float(sys.argv[2]), *sys.argv[3:5]
    cert = make_cert(cert_dir)
    with SmtpServer(cert, "starttls", users={user: password}, data_size_limit=0,
                    behaviour=Behaviour(pipelining=True)) as smtp:
        ready, port = threading.Event(), list[int]()
        threading.Thread(target=asyncio.run, daemon=True,
                         args=(_serve(smtp.port, rtt_ms / 2000, ready, port),)).start()
        ready.wait(30)
        print(f"ready {port[0]}", flush=True)
        sys.stdin.read()  # until the benchmark closes our stdin


if __name__ == "__main__":
    main()
