"""Shared fixtures of the test_static_* modules (this module holds no tests).

- make_tree(): the served tree `<tmp>/www` with every file the static tests
  fetch, the sibling `<tmp>/www-leak/secret.txt` and symlinks pointing out;
- Conn: one keep-alive HTTP/1.1 connection over a raw socket, request by
  request, so that a response that carries stray bytes (or too few) shows up
  in the next one;
- curl_get(): curl with the response head dumped, parsed;
- wire_leaks(): response header names that belong to the NATS wire format
  and must never reach an HTTP client.
"""

from __future__ import annotations

import email.utils
import os
import pathlib
import random
import re
import socket
import time
from typing import Sequence

import harness

# Header names of the v1 wire (protocol.md sections 2 and 5).
WIRE_HEADERS = ("x-path", "x-query", "x-fragment", "x-status", "x-status-code")

# IMF-fixdate, RFC 9110 5.6.7.
IMF_FIXDATE = (r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|"
               r"Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d GMT$")
# A strong entity-tag, RFC 9110 8.8.3: DQUOTE *etagc DQUOTE.
STRONG_ETAG = r'^"[\x21\x23-\x7e\x80-\xff]+"$'

# A fixed, old modification time for the files whose Last-Modified is checked.
MTIME = 1577934245          # Thu, 02 Jan 2020 03:04:05 GMT
MTIME_TEXT = "Thu, 02 Jan 2020 03:04:05 GMT"


def wire_leaks(headers: Sequence[tuple[str, str]]) -> list[str]:
    """Names in `headers` that are wire-format names (X-Path, Natshttp-*, ...)."""
    return [k for k, _ in headers
            if k.lower() in WIRE_HEADERS or k.lower().startswith("natshttp-")]


def http_date(t: float) -> str:
    return email.utils.formatdate(t, usegmt=True)


def rand_bytes(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


class Tree:
    """The served directory. `files` maps URL path (decoded) -> exact bytes."""

    def __init__(self, base: pathlib.Path):
        self.base = base
        self.root = base / "www"
        self.leak = base / "www-leak"
        self.secret = b"SECRET-" + rand_bytes(16, 99).hex().encode() + b"\n"
        self.files: dict[str, bytes] = {}

    def add(self, rel: str, data: bytes, mtime: float | None = MTIME) -> bytes:
        p = self.root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        if mtime is not None:
            os.utime(p, (mtime, mtime))
        self.files["/" + rel] = data
        return data

    def path(self, url_path: str) -> pathlib.Path:
        return self.root / url_path.lstrip("/")

    def etag_shape_ok(self, etag: str | None) -> bool:
        return etag is not None and re.match(STRONG_ETAG, etag) is not None


def make_tree(base: pathlib.Path) -> Tree:
    t = Tree(base)
    t.root.mkdir()
    t.leak.mkdir()
    (t.leak / "secret.txt").write_bytes(t.secret)
    t.add("index.html", b"<!DOCTYPE html>\n<title>root</title>\n<p>root index</p>\n")
    t.add("small.txt", b"hello, natshttp\n")
    t.add("empty.txt", b"")
    t.add("file.bin", rand_bytes(1192, 1))
    t.add("big.nar", rand_bytes(5882, 2))
    t.add("nix-cache-info", b"StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 30\n")
    t.add("abc.narinfo", b"StorePath: /nix/store/abc-hello\nURL: nar/abc.nar.xz\n"
                         b"Compression: xz\n")
    t.add("nar/abc.nar.xz", rand_bytes(3001, 3))
    t.add("nar/abc.nar.zst", rand_bytes(2002, 4))
    t.add("nar/abc.nar", rand_bytes(1003, 5))
    t.add("page.html", b"<!DOCTYPE html>\n<p>page</p>\n")
    # names a v1 subject cannot carry
    t.add("a b.txt", b"a file with a space in its name\n")
    t.add("star*.txt", b"a star in the name\n")
    t.add("gt>.txt", b"a greater-than in the name\n")
    t.add("100%.txt", b"a literal percent sign\n")
    t.add("caf\u00e9.txt", "caf\u00e9 in UTF-8\n".encode())
    t.add("d/index.html", b"<!DOCTYPE html>\n<p>index of d</p>\n")
    t.add("d/inner.txt", b"inside d\n")
    t.add("sp ace/index.html", b"<!DOCTYPE html>\n<p>index of sp ace</p>\n")
    t.add("sub/index.html", b"<!DOCTYPE html>\n<p>index of sub</p>\n")
    t.add("noindex/one.txt", b"one\n")
    t.add("noindex/x&y.txt", b"x and y\n")
    (t.root / "noindex" / "two dir").mkdir()
    # symlinks: one that stays inside (allowed), three that leave the root
    os.symlink("small.txt", t.root / "link-in.txt")
    os.symlink("../www-leak/secret.txt", t.root / "link-out.txt")
    os.symlink("/etc/passwd", t.root / "link-abs")
    os.symlink("../www-leak", t.root / "link-dir")
    return t


# --------------------------------------------------------------------------
# A keep-alive connection over a raw socket

def build_request(method: str, target: str, headers: Sequence[tuple[str, str]] = (),
                  body: bytes | None = None, host: str = "gw.example") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    lines += [f"{k}: {v}" for k, v in headers]
    if body is not None and not any(k.lower() in ("content-length", "transfer-encoding")
                                    for k, _ in headers):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


class Conn:
    """One HTTP/1.1 connection: send requests, read exactly one response at a time."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 15):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.timeout = timeout
        self.buf = b""
        self.closed = False

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _need_more(self, method: str) -> bool:
        try:
            resp, _ = harness.parse_http_response(self.buf, method)
        except ValueError:
            return True
        if not resp.complete:
            return True
        bodyless = (method.upper() == "HEAD" or 100 <= resp.status < 200
                    or resp.status in (204, 304))
        delimited = (resp.header("Content-Length") is not None
                     or "chunked" in (resp.header("Transfer-Encoding") or "").lower())
        return not bodyless and not delimited and not self.closed  # close-delimited

    def response(self, method: str = "GET", timeout: float | None = None) -> harness.HttpResponse:
        """The next final response (1xx are skipped); raises on timeout or early close."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            while self._need_more(method):
                if self.closed:
                    raise ConnectionError(f"connection closed inside a response: {self.buf[:300]!r}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no complete response: have {self.buf[:300]!r}")
                self.sock.settimeout(left)
                try:
                    chunk = self.sock.recv(1 << 20)
                except socket.timeout:
                    continue
                except ConnectionResetError:
                    chunk = b""
                if not chunk:
                    self.closed = True
                else:
                    self.buf += chunk
            resp, self.buf = harness.parse_http_response(self.buf, method)
            if not 100 <= resp.status < 200:
                return resp

    def request(self, method: str, target: str, headers: Sequence[tuple[str, str]] = (),
                body: bytes | None = None) -> harness.HttpResponse:
        self.send(build_request(method, target, headers, body))
        return self.response(method)

    def at_eof(self, wait: float = 0.5) -> bool:
        """True if the peer closed the connection and sent nothing more."""
        if self.buf:
            return False
        if self.closed:
            return True
        self.sock.settimeout(wait)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True
        self.buf += chunk
        return not chunk


def raw_get(port: int, target: str, headers: Sequence[tuple[str, str]] = (),
            method: str = "GET") -> harness.HttpResponse:
    """One request on a fresh connection with `Connection: close`; the parsed answer."""
    data = harness.raw_http(port, build_request(method, target,
                                                [*headers, ("Connection", "close")]))
    resp, rest = harness.parse_http_response(data, method)
    if rest:
        raise AssertionError(f"{len(rest)} stray bytes after the response to {method} "
                             f"{target}: {rest[:100]!r}")
    return resp


# --------------------------------------------------------------------------
# curl

def curl_get(url: str, *args, out: pathlib.Path | None = None):
    """curl URL with the response head dumped: (rc, HttpResponse-like, body, stderr).

    With `out` the body goes to that file and `body` is b"".
    """
    d = harness.tmpdir("curl")
    hfile = d / "head"
    bfile = out or d / "body"
    rc, _, err = harness.curl("--path-as-is", "-D", hfile, "-o", bfile, *args, url)
    head = hfile.read_bytes() if hfile.exists() else b""
    # the last head block (after any 1xx)
    blocks = [b for b in head.split(b"\r\n\r\n") if b.strip()]
    resp = None
    if blocks:
        resp, _ = harness.parse_http_response(blocks[-1] + b"\r\n\r\n", "HEAD")
    body = b"" if out else (bfile.read_bytes() if bfile.exists() else b"")
    return rc, resp, body, err
