#!/usr/bin/env python3
"""Memory benchmark: peak RSS of `nats-http gateway` and `nats-http serve`
against body size and client speed, protocol v2 and v1 side by side.

    python3 bench/memory.py [--slow-seconds S] [--protocols 2,1] [--window BYTES]

For each scenario and protocol it starts a fresh nats-server, `serve --dir`
and `gateway` (both `--protocol P`), downloads one file with curl through the
gateway into a hashing sink (curl's stdout read and sha256-summed here; no
disk), then reads VmHWM from /proc/PID/status of gateway and serve:

    16 MiB, 256 MiB, 1 GiB     full speed
    256 MiB                    curl --limit-rate 8M, stopped after --slow-seconds
                               (default 15; 0 runs it to the end, about 32 s)

The files are sparse (all zeros), so file reads cost nothing and the figures
are the protocol's and the processes' own. Uses the binaries in build/
(NATSHTTP_BIN overrides), and tests/e2e/harness.py to run the processes on
ephemeral ports. See bench/README.md for the columns.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "e2e"))
import harness  # noqa: E402

MIB = 1024 * 1024


def zero_sha256(size: int) -> str:
    h = hashlib.sha256()
    block = bytes(MIB)
    while size > 0:
        n = min(size, MIB)
        h.update(block[:n])
        size -= n
    return h.hexdigest()


class Sink:
    """curl's stdout, read and hashed on a thread."""

    def __init__(self, cmd):
        self.p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  stdin=subprocess.DEVNULL)
        self.n = 0
        self.h = hashlib.sha256()
        self.t = threading.Thread(target=self._pump, daemon=True)
        self.t.start()

    def _pump(self):
        while True:
            b = self.p.stdout.read1(1 << 20)
            if not b:
                return
            self.h.update(b)
            self.n += len(b)


def run_one(root: Path, proto: int, name: str, size: int, rate: str | None,
            stop_after: float | None, window: int | None) -> dict:
    extra = ["--protocol", str(proto)]
    if window:
        extra += ["--window", str(window)]
    nats = harness.Nats()
    serve = harness.serve(nats, "bench", root, *extra)
    gw = harness.gateway(nats, "bench", *extra)
    idle = (gw.peak_rss_kib(), serve.peak_rss_kib())
    cmd = [harness.CURL, "-sS", "--noproxy", "*"]
    if rate:
        cmd += ["--limit-rate", rate]
    cmd += [f"{gw.base}/{name}"]
    t0 = time.monotonic()
    sink = Sink(cmd)
    stopped = False
    try:
        sink.p.wait(stop_after)
    except subprocess.TimeoutExpired:
        sink.p.kill()
        sink.p.wait()
        stopped = True
    elapsed = time.monotonic() - t0
    sink.t.join(10)
    err = sink.p.stderr.read().decode("utf-8", "replace").strip()
    sink.p.stdout.close()
    sink.p.stderr.close()
    peak = (gw.peak_rss_kib(), serve.peak_rss_kib())
    slow = nats.varz().get("slow_consumers", 0)
    for p in (gw, serve):
        p.stop()
    nats.stop()
    if stopped:
        result = f"stopped at {sink.n / MIB:.0f} MiB"
    elif sink.p.returncode == 0 and sink.n == size and sink.h.hexdigest() == zero_sha256(size):
        result = "ok"
    else:
        result = f"CUT at {sink.n / MIB:.1f} MiB (curl {sink.p.returncode})"
        if err:
            result += f": {err.splitlines()[-1][:60]}"
    if slow:
        result += f", {slow} slow consumer(s)"
    return {"mibs": sink.n / MIB / elapsed if elapsed > 0 else 0.0,
            "gw": peak[0] / 1024, "serve": peak[1] / 1024,
            "gw_idle": idle[0] / 1024, "serve_idle": idle[1] / 1024, "result": result}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--slow-seconds", type=float, default=15,
                    help="stop the rate-limited download after this long (0: run to the end)")
    ap.add_argument("--protocols", default="2,1", help="comma-separated, in column order")
    ap.add_argument("--window", type=int, default=0, help="--window for both (default: theirs)")
    args = ap.parse_args()
    protos = [int(p) for p in args.protocols.split(",")]

    print("command: " + " ".join(shlex.quote(a) for a in [sys.executable] + sys.argv))
    print(f"machine: nproc {os.cpu_count()} ({len(os.sched_getaffinity(0))} usable), "
          f"{platform.system()} {platform.release()}, {platform.machine()}")
    print(f"nats-http: {harness.BIN}")
    print(f"nats-server: {subprocess.run([harness.NATS_SERVER, '--version'], capture_output=True, text=True).stdout.strip()}")
    print(f"curl: {subprocess.run([harness.CURL, '--version'], capture_output=True, text=True).stdout.splitlines()[0]}")

    root = harness.tmpdir("bench-files")
    sizes = {"16 MiB": 16 * MIB, "256 MiB": 256 * MIB, "1 GiB": 1024 * MIB}
    for label, size in sizes.items():
        with open(root / f"zero-{size}.bin", "wb") as f:
            f.truncate(size)
    slow_stop = args.slow_seconds if args.slow_seconds > 0 else None
    scenarios = [(label, size, None, None) for label, size in sizes.items()]
    scenarios.append(("256 MiB", 256 * MIB, "8M", slow_stop))

    rows = []
    for label, size, rate, stop in scenarios:
        row = {"body": label, "rate": f"{rate}B/s" if rate else "full speed", "by": {}}
        for proto in protos:
            print(f"... {label} {row['rate']} --protocol {proto}", file=sys.stderr, flush=True)
            row["by"][proto] = run_one(root, proto, f"zero-{size}.bin", size, rate, stop,
                                       args.window or None)
        rows.append(row)

    # the table
    print()
    hdr1 = f"{'body':>8}  {'client':>10}"
    hdr2 = f"{'':>8}  {'':>10}"
    for proto in protos:
        hdr1 += f" | {'--protocol ' + str(proto):^34}"
        hdr2 += f" | {'MiB/s':>7} {'gateway MiB':>12} {'serve MiB':>10} "
    print(hdr1)
    print(hdr2)
    print("-" * len(hdr2))
    idle = rows[0]["by"]
    line = f"{'(idle)':>8}  {'':>10}"
    for proto in protos:
        line += f" | {'':>7} {idle[proto]['gw_idle']:>12.1f} {idle[proto]['serve_idle']:>10.1f} "
    print(line)
    notes = []
    for row in rows:
        line = f"{row['body']:>8}  {row['rate']:>10}"
        for proto in protos:
            r = row["by"][proto]
            mark = "" if r["result"] == "ok" else "*"
            if mark:
                notes.append(f"  * {row['body']} {row['rate']}, --protocol {proto}: {r['result']}")
            line += f" | {r['mibs']:>7.1f} {r['gw']:>12.1f} {r['serve']:>10.1f}{mark or ' '}"
        print(line)
    print()
    print("peak RSS = VmHWM of the process after the download (includes start-up);")
    print("(idle) = VmHWM right after start, before any request.")
    if notes:
        print("not a whole body (see bench/README.md):")
        print("\n".join(notes))
    harness.cleanup_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
