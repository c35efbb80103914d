"""Shared fixtures of the test_flow_* modules (protocol v2: flow control,
integrity, cancellation). Holds no tests.

    import test_flow_common as fc
    fc.zero_file(path, 1 << 30)               # sparse, all zeros
    fc.zero_sha256(1 << 30)                   # its sha256
    sink = fc.UploadSink()                    # HTTP upstream that hashes request bodies
    fc.assert_rss_below(self, proc, 32)       # VmHWM bound (skipped under sanitizers)
    dl = fc.Download(url, "--limit-rate", "4M")   # curl into a hashing sink
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
import time

import harness
import peers

MIB = 1024 * 1024
KIB = 1024
WINDOW = 4 * MIB            # nats-http's default --window

# ---------------------------------------------------------------------------
# Sanitizer builds: ASan's shadow memory and quarantine make RSS figures
# meaningless, so memory bounds are asserted only on a normal build.


@functools.lru_cache(maxsize=None)
def sanitized() -> bool:
    """True when the nats-http under test was built with AddressSanitizer:
    NATSHTTP_SANITIZED=1 (set by e2e.cmake), else the binary is looked at."""
    env = os.environ.get("NATSHTTP_SANITIZED")
    if env in ("0", "1"):
        return env == "1"
    try:
        with open(harness.BIN, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


def rss_report(label: str, procs) -> str:
    """One line: the peak RSS (VmHWM) of each (name, proc), in MiB."""
    parts = []
    for name, p in procs:
        kib = p.peak_rss_kib()
        parts.append(f"{name} {kib / 1024:.1f} MiB" if kib is not None else f"{name} gone")
    line = f"[rss] {label}: peak " + ", ".join(parts)
    if sanitized():
        line += " (sanitizer build: bounds not asserted)"
    print("\n" + line, file=sys.stderr, flush=True)
    return line


def assert_rss_below(test, proc: harness.Proc, bound_mib: float, name: str | None = None):
    """Assert proc's VmHWM is below bound_mib MiB (only on a non-sanitizer build)."""
    kib = proc.peak_rss_kib()
    test.assertIsNotNone(kib, f"{name or proc.name} is gone: no VmHWM to read")
    if sanitized():
        return
    test.assertLess(kib, bound_mib * 1024,
                    f"{name or proc.name}: peak RSS {kib} KiB, bound {bound_mib} MiB")


# ---------------------------------------------------------------------------
# Files


def zero_file(path, size: int):
    """A sparse file of `size` zero bytes (instant, takes no disk space)."""
    with open(path, "wb") as f:
        f.truncate(size)
    return path


def sha256_prefix(path, n: int) -> str:
    """sha256 of the first n bytes of the file at path."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        left = n
        while left > 0:
            b = f.read(min(left, MIB))
            if not b:
                raise AssertionError(f"{path} is shorter than {n} bytes")
            h.update(b)
            left -= len(b)
    return h.hexdigest()


@functools.lru_cache(maxsize=None)
def zero_sha256(size: int) -> str:
    h = hashlib.sha256()
    block = bytes(MIB)
    left = size
    while left > 0:
        n = min(left, MIB)
        h.update(block[:n])
        left -= n
    return h.hexdigest()


# ---------------------------------------------------------------------------
# A download into a hashing sink


class Download:
    """`curl -sS --noproxy '*' ARGS... URL` with stdout read, counted and hashed
    by a thread (no file on disk). `.wait()` returns (rc, size, sha256, stderr).

    `.received` is the byte count so far (for "the download is under way").
    With stop_after=N the sink stops reading and closes curl's output once it
    has N bytes or more, as `curl URL | head -c N` would.
    """

    def __init__(self, url: str, *args, max_time: float = 300, stop_after: int | None = None):
        self.cmd = [harness.CURL, "-sS", "--noproxy", "*", "--max-time", str(max_time),
                    *map(str, args), url]
        self.p = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  stdin=subprocess.DEVNULL)
        self.received = 0
        self.stop_after = stop_after
        self.h = hashlib.sha256()
        self.started = time.monotonic()
        self.ended: float | None = None
        self._err = b""
        self._t = threading.Thread(target=self._pump, daemon=True)
        self._t.start()
        self._te = threading.Thread(target=self._errpump, daemon=True)
        self._te.start()

    def _pump(self):
        while True:
            b = self.p.stdout.read1(1 << 20)
            if not b:
                break
            self.h.update(b)
            self.received += len(b)
            if self.stop_after is not None and self.received >= self.stop_after:
                self.p.stdout.close()       # like `| head -c N`: curl's next write fails
                break

    def _errpump(self):
        self._err = self.p.stderr.read()

    def wait_received(self, n: int, timeout: float = 30):
        harness.wait_until(lambda: self.received >= n or self.p.poll() is not None, timeout,
                           0.02, f"curl received {n} bytes")
        return self.received

    def kill(self):
        if self.p.poll() is None:
            self.p.kill()

    def wait(self, timeout: float | None = None):
        rc = self.p.wait(timeout)
        self._t.join(10)
        self._te.join(10)
        self.p.stdout.close()
        self.p.stderr.close()
        if self.ended is None:
            self.ended = time.monotonic()
        return rc, self.received, self.h.hexdigest(), self._err.decode("utf-8", "replace")


# ---------------------------------------------------------------------------
# An HTTP upstream for `serve --upstream`: hashes every request body

_SINK = r'''
import hashlib, json, random, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, fmt, *args):
        sys.stderr.write("sink: " + (fmt % args) + "\n")
    def _body(self):
        h = hashlib.sha256(); n = 0
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        cl = self.headers.get("Content-Length")
        if "chunked" in te:
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                left = size
                while left:
                    b = self.rfile.read(min(left, 1 << 20))
                    if not b:
                        raise ConnectionError("body cut off")
                    h.update(b); n += len(b); left -= len(b)
                self.rfile.readline()
        elif cl is not None:
            left = int(cl)
            while left:
                b = self.rfile.read(min(left, 1 << 20))
                if not b:
                    raise ConnectionError("body cut off")
                h.update(b); n += len(b); left -= len(b)
        return n, h.hexdigest(), "chunked" in te, cl
    def _answer(self):
        n, sha, chunked, cl = self._body()
        out = json.dumps({"method": self.command, "path": self.path, "length": n,
                          "sha256": sha, "chunked": chunked,
                          "content_length": cl}).encode() + b"\n"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
    def do_GET(self):
        # /chunked/SIZE/SEED: SIZE pseudo-random bytes (random.Random(SEED)), chunked
        parts = self.path.split("/")
        if len(parts) == 4 and parts[1] == "chunked":
            size, seed = int(parts[2]), int(parts[3])
            rng = random.Random(seed)
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            left = size
            while left:
                n = min(left, 1 << 20)
                b = rng.randbytes(n)
                for i in range(0, n, 65536):
                    piece = b[i:i + 65536]
                    self.wfile.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
                left -= n
            self.wfile.write(b"0\r\n\r\n")
            return
        self._answer()
    do_POST = do_PUT = do_PATCH = do_DELETE = _answer

srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
sys.stderr.write("sink ready port %d\n" % srv.server_address[1]); sys.stderr.flush()
srv.serve_forever()
'''


class UploadSink(harness.Proc):
    """A Python HTTP/1.1 server that answers every request with the JSON
    {method, path, length, sha256, chunked, content_length} of its body;
    except GET /chunked/SIZE/SEED, answered with a chunked body of SIZE bytes:
    random_bytes(SIZE, SEED)."""

    def __init__(self, name: str = "sink", **kw):
        d = harness.tmpdir(name)
        script = d / "sink.py"
        script.write_text(_SINK)
        super().__init__([sys.executable, "-u", str(script)], name=name,
                         ready=r"sink ready port (\d+)", directory=d, **kw)
        self.port = int(self.match.group(1))
        self.base = f"http://127.0.0.1:{self.port}"


def random_bytes(size: int, seed: int) -> bytes:
    """What make_random_file writes, and what UploadSink's /chunked/ sends."""
    import random
    rng = random.Random(seed)
    out = bytearray()
    while len(out) < size:
        out += rng.randbytes(min(size - len(out), MIB))
    return bytes(out)


def sink_json(body: bytes) -> dict:
    try:
        return json.loads(body.decode())
    except (UnicodeDecodeError, ValueError) as e:
        raise AssertionError(f"not an upload sink answer: {body[:300]!r}") from e


# ---------------------------------------------------------------------------
# Raw HTTP over a socket


def read_head(sock, timeout: float = 10) -> tuple[int, dict, bytes]:
    """Read a response head: (status, {lower-case name: value}, body bytes already read)."""
    raw, _elapsed, rest = peers.read_head(sock, timeout)
    status_line, _, fields = raw[:-4].partition(b"\r\n")
    m = re.match(rb"HTTP/1\.\d (\d{3})", status_line)
    if not m:
        raise AssertionError(f"bad status line {status_line!r}")
    headers = {}
    for line in fields.split(b"\r\n"):
        k, _, v = line.partition(b":")
        headers[k.strip().lower().decode("latin-1")] = v.strip().decode("latin-1")
    return int(m.group(1)), headers, rest


def log_lines(proc: harness.Proc, pattern: str, since: int = 0) -> list[str]:
    """Lines of proc's stderr (from byte `since`) that match `pattern`."""
    with open(proc.log_path, "rb") as f:
        f.seek(since)
        text = f.read().decode("utf-8", "replace")
    rx = re.compile(pattern)
    return [line for line in text.splitlines() if rx.search(line)]


if __name__ == "__main__":  # pragma: no cover
    print(__doc__, file=sys.stderr)
