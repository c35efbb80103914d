"""Shared fixtures of the test_upstream_* modules (this module holds no tests).

- Upstream: tests/e2e/upstream_server.py as a harness.Proc on an ephemeral port;
- UpstreamStack: nats-server, `nats-http serve --upstream`, `nats-http gateway`;
- Conn: one keep-alive HTTP/1.1 connection over a raw socket, response by
  response, so that stray bytes of one response show up in the next;
- curl_full(): curl with the response head dumped and parsed;
- echo(): the JSON the upstream's echo endpoint answered with.
"""

from __future__ import annotations

import json
import pathlib
import re
import socket
import sys
import time
from typing import Sequence

import harness
from peers import Conn, build_request, curl_full, raw_request  # noqa: F401  (used by the upstream modules)

HERE = pathlib.Path(__file__).resolve().parent
UPSTREAM_SCRIPT = HERE / "upstream_server.py"
sys.path.insert(0, str(HERE))
import upstream_server  # noqa: E402  (download_blocks, COOKIES, GZIP_BODY)

# Header names of the wire format, which must never reach an HTTP peer.
WIRE_HEADERS = ("x-path", "x-query", "x-fragment", "x-status", "x-status-code")


def wire_leaks(headers) -> list[str]:
    return [k for k, _ in headers if k.lower() in WIRE_HEADERS or k.lower().startswith("natshttp-")]


class Upstream(harness.Proc):
    """upstream_server.py on a loopback ephemeral port; `.port`, `.base`."""

    def __init__(self, name: str = "upstream", **kw):
        super().__init__([sys.executable, "-u", str(UPSTREAM_SCRIPT)], name=name,
                         ready=r"upstream_server ready port=(\d+)", **kw)
        self.port = int(self.match.group(1))
        self.base = f"http://127.0.0.1:{self.port}"
        harness.wait_until(lambda: harness.port_open(self.port), harness.START_TIMEOUT, 0.02,
                           "upstream_server accepting")

    def stats(self, sid: str | None = None) -> dict:
        url = f"{self.base}/up/stats" + (f"?id={sid}" if sid else "")
        return json.loads(harness.http_get(url))


class UpstreamStack:
    """Everything between an HTTP client and the upstream, on fresh ports.

    upstream -> serve --upstream URL (subject `subject`) -> nats -> gateway.
    `url` overrides the upstream URL given to serve (a base path, a dead port).
    """

    def __init__(self, subject: str = "up", serve_args: Sequence[str] = (),
                 gateway_args: Sequence[str] = (), upstream: Upstream | None = None,
                 url: str | None = None, nats: harness.Nats | None = None):
        self.nats = nats or harness.Nats()
        self.upstream = upstream if upstream is not None else (Upstream() if url is None else None)
        self.url = url or self.upstream.base
        self.serve = harness.serve_upstream(self.nats, subject, self.url, *serve_args)
        self.gw = harness.gateway(self.nats, subject, *gateway_args)
        self.base = self.gw.base
        self.port = self.gw.port


def echo(body: bytes) -> dict:
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise AssertionError(f"not an echo answer: {body[:300]!r}") from e


def echoed_headers(e: dict, name: str) -> list[str]:
    return [v for k, v in e["headers"] if k.lower() == name.lower()]


# --------------------------------------------------------------------------
# Raw HTTP/1.1



# --------------------------------------------------------------------------
# curl


def upstream_lines(proc: harness.Proc, since: int = 0) -> list[str]:
    """Log lines of component "upstream" a serve process wrote after byte `since`."""
    text = proc.log_text().encode()[since:].decode("utf-8", "replace")
    return [l for l in text.splitlines() if re.search(r"\bupstream: ", l)]
