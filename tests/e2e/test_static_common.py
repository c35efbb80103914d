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
from peers import Conn, build_request, curl_full, raw_request  # noqa: F401  (used by the static modules)

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

def raw_get(port: int, target: str, headers: Sequence[tuple[str, str]] = (),
            method: str = "GET") -> harness.HttpResponse:
    """One request on a fresh connection with `Connection: close`; the parsed answer."""
    return raw_request(port, method, target, headers, read_timeout=5)


# --------------------------------------------------------------------------
# curl

def curl_get(url: str, *args, out: pathlib.Path | None = None):
    """curl URL with the response head dumped: (rc, HttpResponse-like, body, stderr).

    With `out` the body goes to that file and `body` is b"".
    """
    return curl_full(url, *args, out=out, max_time=harness.CURL_MAX_TIME)


class StaticBase(harness.E2ETestCase):
    """One nats-server, serve --dir on make_tree() and a gateway, for a whole class."""
    timeout = 30

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.tree = make_tree(harness.tmpdir("tree"))
        cls.nats = harness.Nats()
        cls.serve = harness.serve(cls.nats, "site", cls.tree.root)
        cls.gw = harness.gateway(cls.nats, "site")
