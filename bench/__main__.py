"""python -m bench [--quick] [--json] [--only NAME …]"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from typing import Any

from bench import cases, scale

SIZES = {
    #            quick                full
    "ingest_burst": (2_000, 10_000),
    "idle_poll": (50_000, 200_000),
    "flush": (500, 5_000),
    "memory": (20_000, 1_000_000),
    "query": (20_000, 100_000),
    "latency": (200, 200),
    "cli": (100_000, 100_000),
    "web_search": (100_000, 100_000),
    "first_start": (20_000, 200_000),
    "flush_wan": (100, 500),
    "month_end": (500, 5_000),
    "workers": (500, 5_000),
    "message": (100, 500),
}

GOALS = {
    "ingest_burst": "ratio <= 1.5",
    "idle_poll": "ratio <= 0.1",
    "flush": ">= 0.8 x limit and >= 3 x naive",
    "memory": "peak_rss_mb <= 120, not growing with rows",
    "query": "<= 50 ms each at 100,000 rows",
    "latency": "p95_s <= settle_s + 1",
    "cli": "status, list, show <= 0.35 s; --help <= 0.15 s (at 100,000 entries)",
    "web_search": "server_ms <= 100 for each search at 100,000 entries",
    "first_start": "ratio <= 1.5 (no file contents read for history)",
    "flush_wan": ">= 0.8 x limit and >= 3 x naive (20 ms round trip, STARTTLS, AUTH)",
    "month_end": ">= 0.8 x limit; duplicates 0, missing 0",
    "workers": "duplicates 0, missing 0; not slower than one worker",
    "message": "build_ratio <= 1 (no slower than the email package's own), dot-stuffing"
               " faster than smtplib's",
}


def machine() -> dict[str, Any]:
    return {"python": platform.python_version(), "system": platform.platform(),
            "cpus": os.cpu_count(), "processor": platform.machine()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="small sizes: about a minute")
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    p.add_argument("--only", nargs="*", choices=sorted(SIZES), help="run only these")
    args = p.parse_args(argv)
    results: dict[str, Any] = {"machine": machine(), "quick": args.quick}
    for name, (quick, full) in SIZES.items():
        if args.only and name not in args.only:
            continue
        size = quick if args.quick else full
        started = time.perf_counter()
        if name == "memory":
            figures = cases.memory(size, compare=not args.quick)  # each size waits for a slot
        else:
            figures = getattr(scale if hasattr(scale, name) else cases, name)(size)
        figures["goal"] = GOALS[name]
        figures["wall_s"] = round(time.perf_counter() - started, 1)
        results[name] = figures
        if not args.json:
            shown = ", ".join(f"{k}={v}" for k, v in figures.items())
            print(f"{name:13s} {shown}", flush=True)
    if args.json:
        json.dump(results, sys.stdout, indent=2)
        sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
