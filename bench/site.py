"""A laundry site in a temporary folder for the benchmarks: config, key, archive."""

from __future__ import annotations

import os
import random
from pathlib import Path

from tikos_outbox.config import load_config
from tikos_outbox.credentials import create_key_file
from tikos_outbox.samples import make_pdf
from tikos_outbox.wiring import Outbox, open_outbox

CONFIG = """\
[outbox]
database = "outbox.db"

[schedule]
timezone = "Europe/Berlin"
first = "00:00"
last = "23:59"
every_minutes = {every}

[smtp]
host = "127.0.0.1"
port = {port}
max_per_minute = 0
max_per_connection = {per_connection}

[sender]
address = "rechnung@musterwaescherei.example"
name = "Musterwäscherei GmbH"

[watch]
mode = "{mode}"
settle_s = {settle}
poll_interval_s = 1
baseline = {baseline}

[recipients]
csv = "recipients.csv"

[[mandant]]
id = 1
folder = "archive"
pattern = '^(?P<doctype>RE|LS)_(?P<docno>\\d+)_(?P<customer>\\d+)\\.pdf$'
"""


def make_site(root: Path, *, port: int = 25, mode: str = "polling", settle: float = 0,
              every: int = 60, per_connection: int = 50, baseline: bool = False) -> Path:
    """Write the config and key; returns the config path. The archive is root/archive."""
    (root / "archive").mkdir(parents=True, exist_ok=True)
    config = root / "tikos-outbox.toml"
    config.write_text(CONFIG.format(port=port, mode=mode, settle=settle, every=every,
                                    per_connection=per_connection,
                                    baseline=str(baseline).lower()), encoding="utf-8")
    (root / "recipients.csv").write_text(
        "mandant;customer;email\n1;4711;kunde@example.org\n", encoding="utf-8")
    create_key_file(root / "tikos-outbox.key")
    return config


def open_site(config: Path) -> Outbox:
    """The site's outbox, opened by the composition root as the CLI opens it."""
    return open_outbox(load_config(config))


def write_pdfs(folder: Path, n: int, lo: int, hi: int, seed: int = 1, old: bool = True) -> int:
    """n PDFs of lo..hi bytes, named RE_<n>_4711.pdf; returns the total size."""
    rng = random.Random(seed)
    total = 0
    for i in range(n):
        data = make_pdf([f"Rechnung {i}"], padding=max(0, rng.randint(lo, hi) - 600))
        path = folder / f"RE_{100000 + i}_4711.pdf"
        path.write_bytes(data)
        total += len(data)
        if old:
            os.utime(path, (1764000000, 1764000000))
    return total
