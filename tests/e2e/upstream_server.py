"""A small HTTP/1.1 upstream for the `serve --upstream` e2e tests.

    python3 upstream_server.py [--port 0]

prints `upstream_server ready port=N` on stderr once it listens (loopback,
ephemeral port by default) and serves until SIGTERM. Responses are written
as raw bytes so that tests control every header line and every byte.

Every path not under /up/ is the echo endpoint: a JSON object with the
method, the raw request-target, path and query exactly as received, the
header fields in order with their case, and the body's length and sha256.

/up/... endpoints (query parameters in brackets):
  status/<code>[body,location,reason]  that status, with that body / Location
  file.bin                 1192 bytes, Accept-Ranges; HEAD gives the head only
  cookies                  three Set-Cookie lines (BR-12), body "ok"
  hop                      hop-by-hop response fields (BR-10) and End-To-End: yes
  empty-field              "X-Empty:" with an empty value, then X-After: yes
  chunked[n,size,pause]    n chunks of size bytes, pause seconds apart
  sse[n,interval]          text/event-stream, one event per interval; each
                           event's data is {"seq": i, "t": <send time>}
  close-mid[cl,send]       Content-Length cl, send bytes, then reset
  close-mid-chunked[n]     n chunks, then reset before the last chunk
  die-before-body[cl]      a head with Content-Length cl, then reset
  reset                    reset without answering
  never                    read the request, never answer
  slow-head[delay]         the head after delay seconds
  download[size]           size bytes from download_blocks(); Content-Length
  sink[rate]               reads the body (Content-Length or chunked), at most
                           rate bytes/s when given; answers {"length", "sha256"}
  gzip                     a gzip-encoded body (Content-Encoding: gzip)
  big-head[n]              200 "ok" with an X-Big field of n bytes ('b' * n)
  304[stray]               304 with ETag and Content-Length: 5; stray=1 writes
                           "hello" after the head
  204                      204, keeps the connection open
  dup-cl                   Content-Length: 3 and Content-Length: 10
  close-delimited[size]    neither length nor chunked; the body ends at close
  forever[id]              64 KiB every 10 ms until the peer goes away;
                           stats?id= then tells bytes sent and whether it ended
  stats[id]                {"connections", "requests", "active" (requests in
                           progress, this one not counted), "stream": {...}}
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import http.server
import json
import random
import select
import signal
import socket
import socketserver
import struct
import sys
import threading
import time
import urllib.parse

BLOCK = 1 << 20
_BASE = random.Random(20260303).randbytes(BLOCK)
GZIP_PLAIN = b"natshttp passes Content-Encoding through untouched\n" * 200
GZIP_BODY = gzip.compress(GZIP_PLAIN, mtime=0)


def download_blocks(size: int):
    """The bytes of /up/download?size=N, block by block (each block numbered)."""
    i = 0
    left = size
    while left > 0:
        block = struct.pack(">Q", i) + _BASE[8:]
        yield block[:left] if left < BLOCK else block
        left -= BLOCK
        i += 1


def download_sha256(size: int) -> str:
    h = hashlib.sha256()
    for b in download_blocks(size):
        h.update(b)
    return h.hexdigest()


COOKIES = [
    "session_id=abc123; Path=/; HttpOnly",
    "logout_flag=deleted; Expires=Thu, 01 Jan 1970 00:00:01 GMT; Max-Age=0; Path=/",
    "pref=dark; Path=/",
]


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr):
        super().__init__(addr, Handler)
        self.lock = threading.Lock()
        self.connections = 0
        self.requests = 0
        self.active = 0
        self.streams: dict[str, dict] = {}

    def process_request(self, request, client_address):
        with self.lock:
            self.connections += 1
        super().process_request(request, client_address)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # As streaming servers do: else a head and a first event written separately
    # meet the proxy's delayed ACK on a reused connection (40 ms on Linux).
    disable_nagle_algorithm = True
    server_version = "upstream_server"

    def log_message(self, fmt, *args):  # one line per request on stderr
        sys.stderr.write("upstream_server: %s\n" % (fmt % args))

    # -- plumbing
    def send_raw(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()

    def head(self, status: int, reason: str, fields: list[tuple[str, str]]) -> bytes:
        lines = [f"HTTP/1.1 {status} {reason}".rstrip()]
        lines += [f"{k}: {v}" if v != "" else f"{k}:" for k, v in fields]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def reply(self, status: int, body: bytes = b"", fields=(), reason: str | None = None,
              ctype: str = "text/plain") -> None:
        f = [("Content-Type", ctype), ("Content-Length", str(len(body))), *fields]
        if reason is None:
            reason = self.responses.get(status, ("",))[0]
        no_body = self.command == "HEAD" or status in (204, 304) or status < 200
        self.send_raw(self.head(status, reason, f) + (b"" if no_body else body))

    def chunk(self, data: bytes) -> None:
        self.send_raw(b"%x\r\n" % len(data) + data + b"\r\n")

    def reset(self) -> None:
        """Close with an RST (SO_LINGER 0), whatever is in flight."""
        self.close_connection = True
        try:
            self.wfile.flush()
        except OSError:
            pass
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.rfile.close()
        self.wfile.close()
        self.connection.close()

    def peer_gone(self, wait: float) -> bool:
        """True once the peer closed its side (waits up to `wait` seconds)."""
        r, _, _ = select.select([self.connection], [], [], wait)
        if not r:
            return False
        try:
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def read_body(self, sink) -> int:
        """Feeds the request body to sink(bytes); returns its length."""
        n = 0
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return n
                left = size
                while left:
                    b = self.rfile.read(min(left, BLOCK))
                    if not b:
                        raise ConnectionError("body cut off")
                    sink(b)
                    n += len(b)
                    left -= len(b)
                self.rfile.readline(3)
        cl = self.headers.get("Content-Length")
        left = int(cl) if cl else 0
        while left:
            b = self.rfile.read(min(left, BLOCK))
            if not b:
                raise ConnectionError("body cut off")
            sink(b)
            n += len(b)
            left -= len(b)
        return n

    # -- dispatch
    def handle_one_request(self):
        try:
            super().handle_one_request()
        except (ConnectionError, BrokenPipeError, ValueError, OSError):
            self.close_connection = True

    def __getattr__(self, name):
        if name.startswith("do_"):
            return self.dispatch
        raise AttributeError(name)

    def dispatch(self):
        with self.server.lock:
            self.server.requests += 1
            self.server.active += 1
        try:
            self.route()
        finally:
            with self.server.lock:
                self.server.active -= 1

    def route(self):
        split = urllib.parse.urlsplit(self.path)
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(split.query).items()}
        if split.path.startswith("/up/"):
            name = split.path[4:]
            fn = getattr(self, "up_" + name.split("/")[0].replace("-", "_").replace(".", "_"),
                         None)
            if fn:
                return fn(name, q)
        return self.echo()

    # -- endpoints
    def echo(self):
        h = hashlib.sha256()
        n = self.read_body(h.update)
        target = self.path
        path, _, query = target.partition("?")
        out = {
            "method": self.command,
            "target": target,
            "path": path,
            "query": query if "?" in target else None,
            "version": self.request_version,
            "headers": [[k, v] for k, v in self.headers.raw_items()],
            "body_length": n,
            "body_sha256": h.hexdigest(),
        }
        body = json.dumps(out).encode()
        self.reply(200, body, ctype="application/json")

    def up_status(self, name, q):
        code = int(name.split("/")[1])
        self.read_body(lambda b: None)
        fields = [("Location", q["location"])] if "location" in q else []
        self.reply(code, q.get("body", "").encode(), fields, reason=q.get("reason"))

    def up_file_bin(self, name, q):
        data = random.Random(1).randbytes(1192)
        self.reply(200, data, [("Accept-Ranges", "bytes")], ctype="application/octet-stream")

    def up_cookies(self, name, q):
        self.reply(200, b"ok", [("Set-Cookie", c) for c in COOKIES], ctype="text/html")

    def up_hop(self, name, q):
        self.reply(200, b"hop", [("Connection", "X-Upstream-Only"), ("X-Upstream-Only", "1"),
                                 ("Keep-Alive", "timeout=5, max=100"),
                                 ("Proxy-Authenticate", "Basic realm=up"),
                                 ("End-To-End", "yes")])

    def up_empty_field(self, name, q):
        self.reply(200, b"e", [("X-Empty", ""), ("X-After", "yes")])

    def up_chunked(self, name, q):
        n, size, pause = int(q.get("n", 3)), int(q.get("size", 10)), float(q.get("pause", 0))
        self.send_raw(self.head(200, "OK", [("Content-Type", "application/octet-stream"),
                                            ("Transfer-Encoding", "chunked")]))
        for i in range(n):
            if i and pause:
                time.sleep(pause)
            self.chunk(bytes([0x41 + i % 26]) * size)
        self.send_raw(b"0\r\n\r\n")

    def up_sse(self, name, q):
        n, interval = int(q.get("n", 5)), float(q.get("interval", 0.2))
        self.send_raw(self.head(200, "OK", [("Content-Type", "text/event-stream"),
                                            ("Cache-Control", "no-cache"),
                                            ("Transfer-Encoding", "chunked")]))
        for i in range(n):
            if i:
                time.sleep(interval)
            ev = json.dumps({"seq": i, "t": time.time()})
            self.chunk(f"id: {i}\ndata: {ev}\n\n".encode())
        self.send_raw(b"0\r\n\r\n")

    def up_close_mid(self, name, q):
        cl, send = int(q.get("cl", 1000000)), int(q.get("send", 300000))
        self.send_raw(self.head(200, "OK", [("Content-Type", "application/octet-stream"),
                                            ("Content-Length", str(cl))]))
        self.send_raw(b"x" * send)
        time.sleep(0.2)
        self.reset()

    def up_close_mid_chunked(self, name, q):
        n = int(q.get("n", 3))
        self.send_raw(self.head(200, "OK", [("Content-Type", "application/octet-stream"),
                                            ("Transfer-Encoding", "chunked")]))
        for i in range(n):
            self.chunk(b"y" * 1000)
        time.sleep(0.2)
        self.reset()

    def up_die_before_body(self, name, q):
        self.send_raw(self.head(200, "OK", [("Content-Type", "application/octet-stream"),
                                            ("Content-Length", q.get("cl", "1000"))]))
        time.sleep(0.2)
        self.reset()

    def up_reset(self, name, q):
        self.reset()

    def up_never(self, name, q):
        self.read_body(lambda b: None)   # so that only the peer's close makes it readable
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not self.peer_gone(0.2):
            pass
        self.close_connection = True

    def up_slow_head(self, name, q):
        self.read_body(lambda b: None)
        deadline = time.monotonic() + float(q.get("delay", 5))
        while time.monotonic() < deadline:
            if self.peer_gone(0.05):
                self.close_connection = True
                return
        self.reply(200, b"late\n")

    def up_download(self, name, q):
        size = int(q.get("size", 1 << 20))
        self.send_raw(self.head(200, "OK", [("Content-Type", "application/octet-stream"),
                                            ("Content-Length", str(size))]))
        for b in download_blocks(size):
            self.wfile.write(b)
        self.wfile.flush()

    def up_sink(self, name, q):
        h = hashlib.sha256()
        t0 = time.monotonic()
        rate = float(q.get("rate", 0))   # bytes per second, 0 = as fast as it comes
        got = [0]

        def take(b):
            h.update(b)
            got[0] += len(b)
            if rate:
                ahead = got[0] / rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)

        n = self.read_body(take)
        body = json.dumps({"length": n, "sha256": h.hexdigest(),
                           "seconds": time.monotonic() - t0}).encode()
        self.reply(200, body, ctype="application/json")

    def up_big_head(self, name, q):
        self.reply(200, b"ok", [("X-Big", "b" * int(q.get("n", 0)))])

    def up_gzip(self, name, q):
        self.reply(200, GZIP_BODY, [("Content-Encoding", "gzip"), ("Vary", "Accept-Encoding")])

    def up_304(self, name, q):
        self.send_raw(self.head(304, "Not Modified", [("ETag", '"v1"'), ("Content-Length", "5")])
                      + (b"hello" if q.get("stray") else b""))

    def up_204(self, name, q):
        self.read_body(lambda b: None)
        self.send_raw(self.head(204, "No Content", [("X-Deleted", "7")]))

    def up_dup_cl(self, name, q):
        self.send_raw(self.head(200, "OK", [("Content-Length", "3"), ("Content-Length", "10")])
                      + b"abcdefghij")
        self.close_connection = True

    def up_close_delimited(self, name, q):
        size = int(q.get("size", 100000))
        self.send_raw(self.head(200, "OK", [("Content-Type", "application/octet-stream"),
                                            ("Connection", "close")]))
        for b in download_blocks(size):
            self.wfile.write(b)
        self.wfile.flush()
        self.close_connection = True

    def up_forever(self, name, q):
        sid = q.get("id", "x")
        st = {"bytes": 0, "ended": False, "ended_at": None, "started_at": time.time()}
        with self.server.lock:
            self.server.streams[sid] = st
        self.send_raw(self.head(200, "OK", [("Content-Type", "application/octet-stream"),
                                            ("Transfer-Encoding", "chunked")]))
        piece = b"z" * 65536
        try:
            while time.time() - st["started_at"] < 120:
                self.chunk(piece)
                st["bytes"] += len(piece)
                time.sleep(0.01)
        except OSError:
            pass
        st["ended"] = True
        st["ended_at"] = time.time()
        self.close_connection = True

    def up_stats(self, name, q):
        with self.server.lock:
            out = {"connections": self.server.connections, "requests": self.server.requests,
                   "active": self.server.active - 1,
                   "stream": self.server.streams.get(q.get("id", ""))}
        self.reply(200, json.dumps(out).encode(), ctype="application/json")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    srv = Server(("127.0.0.1", args.port))
    signal.signal(signal.SIGTERM, lambda *a: threading.Thread(target=srv.shutdown).start())
    sys.stderr.write(f"upstream_server ready port={srv.server_address[1]}\n")
    sys.stderr.flush()
    srv.serve_forever(poll_interval=0.1)
    srv.server_close()


if __name__ == "__main__":
    main()
