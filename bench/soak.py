"""The soak: `run` for a long time at a steady trickle, its memory sampled.

A PDF every `pdf_every_s` seconds is written into the archive, a send run comes
every minute (to the benchmark's sink), and the RSS of the `run` process is read
from /proc every `sample_s` seconds. The figure is the slope of a least-squares
line through the samples after the first `warmup_min` minutes, in MB a minute,
with the same line for the process's anonymous heap (/proc/PID/smaps_rollup) and,
from inside the process (bench/probe.py), for the memory malloc holds in use and
for SQLite's share of it, with the prepared statements of its connections, for
pymalloc's arenas and live blocks, and the Python object types that grew most.

    python -m bench.soak MINUTES [PDF_EVERY_S] [CSV] [PROBE_JSONL] [PER_FOLDER]
      (CSV: every RSS sample; PROBE_JSONL: a copy of every probe sample; PER_FOLDER:
      a new folder every so many PDFs, as an archive of days has; 0, the default:
      every PDF in one folder, which each poll then lists whole)
    python -m bench.soak --report PROBE_JSONL   (the figures of a kept probe file)
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.site import make_site, open_site
from tikos_outbox.samples import make_pdf


def _kb(path: str, key: str) -> int:
    with open(path, encoding="ascii") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    return 0


def _slope(points: list[tuple[float, float]]) -> float:
    if len(points) < 3:
        return 0.0
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return statistics.linear_regression(xs, ys).slope


def soak(minutes: float, pdf_every_s: float = 2.0, sample_s: float = 10.0,
         warmup_min: float = 3.0, samples_csv: Path | None = None,
         probe_copy: Path | None = None, per_folder: int = 0) -> dict[str, Any]:
    from bench.cases import sink, workdir

    with workdir() as root, sink(minutes * 60 + 600) as port:
        config = make_site(root, port=port, every=1)
        svc = open_site(config)
        probed = root / "probe.jsonl"
        proc = subprocess.Popen([sys.executable, "-m", "bench.probe", str(probed), str(sample_s),
                                 "--config", str(config), "run"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stop = threading.Event()
        written = [0]

        def writer() -> None:
            while not stop.wait(pdf_every_s):
                i = written[0]
                folder = root / "archive"  # per_folder: a new folder every so many, as days
                if per_folder:
                    folder = folder / f"{i // per_folder:05d}"
                    folder.mkdir(exist_ok=True)
                path = folder / f"RE_{200000 + i}_4711.pdf"
                path.write_bytes(make_pdf([f"Rechnung {i}"], padding=40_000 + i % 20_000))
                written[0] += 1

        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        rows: list[tuple[float, float, float]] = []
        started = time.monotonic()
        try:
            while (elapsed := time.monotonic() - started) < minutes * 60:
                if proc.poll() is not None:
                    raise RuntimeError(f"run ended with {proc.returncode} during the soak")
                rows.append((elapsed / 60, _kb(f"/proc/{proc.pid}/status", "VmRSS:") / 1024,
                             _kb(f"/proc/{proc.pid}/smaps_rollup", "Anonymous:") / 1024))
                stop.wait(sample_s)
        finally:
            stop.set()
            thread.join()
            if os.environ.get("TIKOS_BENCH_SMAPS") and proc.poll() is None:
                Path(os.environ["TIKOS_BENCH_SMAPS"]).write_text(
                    Path(f"/proc/{proc.pid}/smaps").read_text(encoding="ascii"), encoding="ascii")
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        counts = svc.store.queries.counts()
        svc.store.close()
        native = _native(probed, started, warmup_min)
        if probe_copy is not None:
            shutil.copyfile(probed, probe_copy)
    if samples_csv is not None:
        with samples_csv.open("w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([("minute", "rss_mb", "anon_mb"), *rows])
    steady = [r for r in rows if r[0] >= warmup_min]
    return {"minutes": minutes, "pdfs": written[0], "sent": counts.get("sent", 0),
            "rss_mb_start": round(steady[0][1], 1) if steady else None,
            "rss_mb_end": round(rows[-1][1], 1) if rows else None,
            "rss_mb_per_min": round(_slope([(r[0], r[1]) for r in steady]), 3),
            "anon_mb_per_min": round(_slope([(r[0], r[2]) for r in steady]), 3), **native}


#: SQLite's page cache per connection when `PRAGMA cache_size` is not set (-2000: KiB)
SQLITE_CACHE_CAP_KB = 2000


def _native(probed: Path, started: float, warmup_min: float) -> dict[str, Any]:
    """The probe's samples after the warm-up, in MB a minute over the whole time and
    over each half (a slope that falls from the first half to the second levels off):
    malloc's memory in use apart from SQLite's ("ours": Python's objects above
    pymalloc's small blocks, the libraries'), SQLite's page caches and prepared
    statements (bounded: a cache per connection, 128 statements per connection),
    malloc's free memory (fragmentation) and pymalloc's live blocks."""
    rows = [json.loads(line) for line in probed.read_text(encoding="utf-8").splitlines()]
    steady = [r for r in rows if (r["at"] - started) / 60 >= warmup_min]
    if len(steady) < 6:
        return {}
    series: dict[str, Callable[[dict[str, Any]], float]] = {
        "ours": lambda r: r["malloc_used_kb"] - r["sqlite_kb"],
        "sqlite_cache": lambda r: sum(c["cache_kb"] for c in r["connections"]),
        "sqlite_statements": lambda r: sum(c["statements_kb"] for c in r["connections"]),
        "malloc_free": lambda r: r["malloc_free_kb"],
        "py_blocks": lambda r: r["py_blocks_kb"],
    }
    half = len(steady) // 2

    def per_min(part: list[dict[str, Any]], value: Callable[[dict[str, Any]], float]) -> float:
        return round(_slope([((r["at"] - started) / 60, value(r) / 1024) for r in part]), 4)

    first, last = steady[0], steady[-1]
    grown = Counter(last["types"])
    grown.subtract(first["types"])
    out: dict[str, Any] = {}
    for name, value in series.items():
        out[f"{name}_mb_per_min"] = per_min(steady, value)
        out[f"{name}_mb_per_min_halves"] = [per_min(steady[:half], value),
                                            per_min(steady[half:], value)]
        out[f"{name}_mb"] = [round(value(first) / 1024, 2), round(value(last) / 1024, 2)]
    return {**out, "sqlite_cache_cap_mb": round(
                len(last["connections"]) * SQLITE_CACHE_CAP_KB / 1024, 2),
            "py_arenas": [first["py_arenas"], last["py_arenas"]],
            "gc_objects": [first["gc_objects"], last["gc_objects"]],
            "fds": [first["fds"], last["fds"]], "threads": [first["threads"], last["threads"]],
            "types_grown": dict(grown.most_common(8))}


def report(probed: Path, warmup_min: float = 3.0) -> dict[str, Any]:
    """The native figures of a kept probe file (its first sample is the start)."""
    with probed.open(encoding="utf-8") as f:
        started = json.loads(f.readline())["at"]
    return _native(probed, started, warmup_min)


def main() -> None:
    if sys.argv[1] == "--report":  # python -m bench.soak --report PROBE_JSONL
        print(json.dumps(report(Path(sys.argv[2])), indent=1), flush=True)
        return
    minutes = float(sys.argv[1])
    every = float(sys.argv[2]) if len(sys.argv) > 2 else 2.0
    csv_path = Path(sys.argv[3]) if len(sys.argv) > 3 else None
    probe_copy = Path(sys.argv[4]) if len(sys.argv) > 4 else None
    per_folder = int(sys.argv[5]) if len(sys.argv) > 5 else 0
    print(soak(minutes, every, samples_csv=csv_path, probe_copy=probe_copy,
               per_folder=per_folder), flush=True)


if __name__ == "__main__":
    main()
